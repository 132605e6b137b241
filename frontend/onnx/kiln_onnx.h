/* ONNX importer: reads an ONNX model (IR versions 3..10, default-domain
 * opsets 6..21 and newer files whose ops are unchanged) into kiln's graph
 * IR, upgrading older op forms to the canonical (newest) form.  Every
 * problem with the file is a located diagnostic, never a crash. */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include <stddef.h>

#include "../../ir/graph.h"

enum { KILN_ONNX_MIN_OPSET = 6, KILN_ONNX_MAX_TESTED_OPSET = 21 };

/* Loads a model file.  External data is read relative to its folder.
 * Returns NULL with d set on any error. */
kiln_graph *kiln_onnx_load(const char *path, kiln_diag *d);
/* Same, from memory (fuzzing, tests).  base_dir: where external data lives,
 * or NULL to reject external data. */
kiln_graph *kiln_onnx_load_buffer(const void *buf, size_t len, const char *name, const char *base_dir, kiln_diag *d);

/* Writes g (shape-inferred) as an ONNX model: opset 17, or newer where a
 * node's form needs it; weights as raw_data initializers.  The file is
 * replaced atomically.  Returns 0, or -1 with d set. */
int kiln_onnx_export(const kiln_graph *g, const char *path, kiln_diag *d);

/* A tensor read from a serialized TensorProto (.pb test data). */
typedef struct kiln_tensor {
  const char *name;
  kiln_dtype dtype;
  int rank;
  int64_t dims[KILN_MAX_RANK];
  void *data;   /* malloc'd, little-endian, dense */
  size_t nbytes;
} kiln_tensor;
int kiln_onnx_read_tensor_file(const char *path, kiln_tensor *t, kiln_diag *d);

/* Files a model names (ONNX external data, `weights "FILE"` in a .kiln
 * network) must stay in the model's folder: rel must be relative, have no
 * ".." component, and resolve, symlinks followed, inside base_dir.  On
 * KILN_PATH_OK out (PATH_MAX bytes) holds the resolved path; on
 * KILN_PATH_MISSING errno says why realpath failed. */
typedef enum kiln_path_status {
  KILN_PATH_OK,
  KILN_PATH_EMPTY,    /* no path given */
  KILN_PATH_ABSOLUTE, /* starts with / or \ */
  KILN_PATH_DOTDOT,   /* has a ".." component */
  KILN_PATH_TOO_LONG, /* base_dir/rel exceeds PATH_MAX */
  KILN_PATH_MISSING,  /* cannot be resolved (errno) */
  KILN_PATH_OUTSIDE,  /* resolves (through a symlink) outside base_dir */
} kiln_path_status;
kiln_path_status kiln_path_contained(const char *base_dir, const char *rel, char *out);
void kiln_tensor_free(kiln_tensor *t);

#endif
