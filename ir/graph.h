/* The graph IR: values (tensors) and nodes (op applications) in SSA form.
 *
 * A value is defined once: by a graph input, by constant data (an
 * initializer or a folded result), or by exactly one node output.  Nodes
 * are kept in topological order.  All memory belongs to the graph's arena;
 * constant data may instead point into a buffer the graph keeps alive
 * (the parsed model, or an mmap of external data) so weights are not
 * copied.  See ir/README.md for how training, layouts and memory planning
 * extend this. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "diag.h"
#include "dtype.h"
#include "ops.h"

enum { KILN_MAX_RANK = 8, KILN_MAX_SYMS = 64 };

/* A dim >= 0 is static; a negative dim d is symbolic, named
 * graph->syms[-d - 1] (the batch dimension "N", typically). */
typedef int64_t kiln_dim;
#define KILN_DIM_IS_SYM(d) ((d) < 0)
/* In folded shape tensors (value->sym_data), symbolic dim d is encoded as
 * this out-of-range integer, so Shape -> Gather -> Concat -> Reshape chains
 * keep a symbolic batch dimension. */
#define KILN_SYM_VALUE(d) (((int64_t)1 << 50) + (-(d) - 1))
#define KILN_SYM_DECODE(v) (((v) >= ((int64_t)1 << 50) && (v) < ((int64_t)1 << 50) + KILN_MAX_SYMS) \
                                ? -((v) - ((int64_t)1 << 50)) - 1 : 0)

typedef enum kiln_value_kind {
  KILN_VALUE_ACTIVATION, /* produced by a node */
  KILN_VALUE_INPUT,      /* graph input, data supplied at run time */
  KILN_VALUE_PARAM,      /* initializer: learnable weight or model constant */
  KILN_VALUE_CONST,      /* constant made by kiln (Constant node, folding) */
  KILN_VALUE_STATE       /* mutable state updated in place (optimizer, BN stats) */
} kiln_value_kind;

typedef enum kiln_layout {
  KILN_LAYOUT_PLAIN, /* row-major in dim order (NCHW for images) */
  KILN_LAYOUT_NCHWC  /* channel-blocked: N, C/b, H, W, b with b = layout_block */
} kiln_layout;

typedef struct kiln_node kiln_node;

/* The elementwise nodes fused after a node, empty by default (a fusion
 * pass, or a test, fills it through kiln_node_fuse).  The node's kernel
 * computes them too: at each output index, step 0 takes the node's result
 * in place of the input that reads it, each later step the previous one's,
 * their other operands are loaded at that index (broadcast), and only the
 * last step's output is stored (passes/lower_store.c). */
typedef struct kiln_epilogue {
  kiln_node **steps;  /* in order; steps[i] reads out[0] of the one before */
  int nsteps, cap;
} kiln_epilogue;

typedef struct kiln_value {
  const char *name;
  int id;                      /* index in graph->values */
  kiln_value_kind kind;
  kiln_dtype dtype;            /* KILN_DT_UNDEF until inferred */
  int rank;                    /* -1 until inferred */
  kiln_dim dims[KILN_MAX_RANK];
  kiln_layout layout;
  int layout_block;
  const void *data;            /* constant contents, or NULL */
  kiln_node *producer;         /* NULL for inputs and constants */
  int producer_slot;
  int uses;                    /* number of node input slots reading it */
  int is_output;               /* listed in graph->outputs */
  int sym_data;                /* folded integers that encode symbolic dims
                                  (KILN_SYM_VALUE): valid only as shapes */
  int buffer;                  /* memory plan: buffer index, -1 = unplanned */
  struct kiln_value *aliases;  /* written in place into this value's storage
                                  (optimizer updates of parameters), or NULL */
} kiln_value;

struct kiln_node {
  kiln_op op;
  const char *name;   /* ONNX node name, may be "" */
  int id;             /* stable creation index */
  int nin, nout;
  kiln_value **in;    /* NULL entries: absent optional inputs */
  kiln_value **out;   /* NULL entries: outputs nobody asked for */
  void *attrs;        /* kiln_attrs_<kind> per the op table */
  kiln_loc loc;       /* source location for diagnostics */
  int dead;           /* removed (folded or pruned); skipped everywhere */
  kiln_epilogue epi;  /* nodes fused after this one (computed by its kernel) */
  kiln_node *fused_into; /* set on an epilogue step: the node whose kernel computes it */
};

typedef struct kiln_graph {
  kiln_arena arena;
  const char *name;
  const char *file;          /* source path for diagnostics */
  const char *producer;      /* e.g. "pytorch 2.1" */
  int64_t ir_version, opset;
  kiln_value **values; int nvalues, cap_values;
  kiln_node **nodes; int nnodes, cap_nodes;
  kiln_value **inputs; int ninputs;   /* run-time inputs, in order */
  kiln_value **outputs; int noutputs;
  const char *syms[KILN_MAX_SYMS]; int nsyms; /* symbolic dim names */
  /* > 1: the graph was rewritten for one image (passes/per_image.c) and
   * runs this many times, once per image of the caller's batch: the graph
   * inputs' and outputs' first dim is 1 here, `images` to the caller. */
  int64_t images;
  /* Model metadata (ONNX metadata_props), key/value pairs in file order;
   * read by tools (e.g. `kiln run --image` preprocessing defaults). */
  const char **meta_keys, **meta_values; int nmeta;
  /* Resources released with the graph (parsed protobuf, mmaps). */
  struct kiln_release { void (*fn)(void *); void *p; struct kiln_release *next; } *release;
} kiln_graph;

kiln_graph *kiln_graph_new(void);
void kiln_graph_free(kiln_graph *g);
void kiln_graph_on_free(kiln_graph *g, void (*fn)(void *), void *p);

kiln_value *kiln_value_new(kiln_graph *g, const char *name, kiln_value_kind kind);
/* A constant value owning a copy of nothing: data must outlive the graph. */
kiln_value *kiln_value_const(kiln_graph *g, const char *name, kiln_dtype t, int rank,
                             const int64_t *dims, const void *data);
/* A run-time graph input of dtype t and shape dims, appended to g->inputs. */
kiln_value *kiln_graph_new_input(kiln_graph *g, const char *name, kiln_dtype t, int rank, const kiln_dim *dims);
kiln_node *kiln_node_new(kiln_graph *g, kiln_op op, const char *name, int nin, int nout);
void kiln_graph_add_input(kiln_graph *g, kiln_value *v);
void kiln_graph_add_output(kiln_graph *g, kiln_value *v);
void kiln_node_set_input(kiln_node *n, int slot, kiln_value *v);
void kiln_node_set_output(kiln_node *n, int slot, kiln_value *v);
int kiln_graph_sym(kiln_graph *g, const char *name); /* returns the negative dim */
/* "BASE_TAG", or "BASE_TAGn" with the first n that names no value of g
 * (names come from the model: a new value must not take one). */
const char *kiln_graph_unique_name(kiln_graph *g, const char *base, const char *tag);
/* Appends `step` to into's epilogue (see kiln_epilogue); the lowering
 * checks that the chain is one it can compute. */
void kiln_node_fuse(kiln_graph *g, kiln_node *into, kiln_node *step);

/* Element count (symbolic dims count as sym_value) and byte size. */
int64_t kiln_value_numel(const kiln_value *v, int64_t sym_value);
size_t kiln_value_nbytes(const kiln_value *v);
int kiln_value_is_static(const kiln_value *v);
/* "f32[N,3,224,224]" into buf. */
void kiln_value_type_str(const kiln_graph *g, const kiln_value *v, char *buf, int size);

/* Sorts nodes topologically (stable: keeps source order where possible).
 * Fails on cycles, naming a node on one. */
int kiln_graph_toposort(kiln_graph *g, kiln_diag *d);
/* Drops dead nodes and nodes whose outputs nobody reads. */
void kiln_graph_prune(kiln_graph *g);
/* Checks SSA, arity, types, shapes and order; the first violation goes to d. */
int kiln_graph_verify(const kiln_graph *g, kiln_diag *d);
/* Stable, diff-friendly textual form (kiln inspect --ir). */
void kiln_graph_print(const kiln_graph *g, FILE *f);
/* " {name=value, ...}" for attributes that differ from their defaults. */
void kiln_node_print_attrs(FILE *f, const kiln_node *n);
/* Location of node n, for diagnostics. */
static inline const kiln_loc *kiln_node_loc(const kiln_node *n) { return &n->loc; }

#endif
