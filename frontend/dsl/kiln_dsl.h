/* kiln's network description language (docs/dsl.md): a .kiln file describes
 * a CNN as stacks of layers, reusable blocks with parameters, and
 * repetition.  kiln_dsl_load parses it, elaborates it (runs the blocks and
 * loops, creates each layer's parameters with a seeded initializer or loads
 * them by name from a weights file) and returns kiln's graph IR, one node
 * per ONNX-equivalent op, every node located at its DSL line:column and
 * every shape inferred.  Any problem is one located diagnostic, never a
 * crash. */
#ifndef KILN_DSL_H
#define KILN_DSL_H

#include <stddef.h>
#include <stdint.h>

#include "../../ir/graph.h"

/* Bounds on what one file may make kiln do (fuzzing lowers them). */
typedef struct kiln_dsl_limits {
  int64_t max_params;     /* parameter elements in the whole network */
  int64_t max_steps;      /* statements and layer applications executed */
  int max_repeat;         /* largest repeat count or range() length */
  int max_depth;          /* block calls nested (recursion) */
} kiln_dsl_limits;

/* The defaults: 2^28 parameters (1 GB of f32: VGG-16 has 138M), 2^20
 * steps, 10,000 repetitions, 64 levels of block calls. */
kiln_dsl_limits kiln_dsl_default_limits(void);

/* Loads a .kiln file; weights files it names are read relative to its
 * folder.  Returns NULL with d set on any error. */
kiln_graph *kiln_dsl_load(const char *path, kiln_diag *d);
/* Same, from memory.  base_dir: where weights files live, or NULL to refuse
 * them (fuzzing).  limits NULL: the defaults. */
kiln_graph *kiln_dsl_load_buffer(const char *src, size_t len, const char *name, const char *base_dir,
                                 const kiln_dsl_limits *limits, kiln_diag *d);

#endif
