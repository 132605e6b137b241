/* Shape functions, constant folders and MAC counters named in ops.def,
 * plus the helpers they share.  A shape function checks a node's inputs
 * (dtypes, ranks, sizes, constant-ness), completes its attributes into
 * canonical form (explicit pads, strides, kernel), and sets every output's
 * dtype and dims.  It returns 0, or -1 with a located diagnostic. */
#ifndef KILN_SHAPE_H
#define KILN_SHAPE_H

#include "graph.h"

typedef struct kiln_shape_ctx {
  kiln_graph *g;
  kiln_diag *d;
  int64_t fold_limit; /* largest output (elements) constant folding may make */
} kiln_shape_ctx;

/* Declarations of every function ops.def names. */
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) \
  int shape(kiln_shape_ctx *c, kiln_node *n);
#include "ops.def"
#undef KILN_OP
int kiln_fold_copy(kiln_shape_ctx *c, kiln_node *n);
/* Lowers the node and interprets its kernel (passes/fold_lowered.c). */
int kiln_fold_lowered(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_transpose(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_concat(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_slice(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_expand(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_gather(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_shape(kiln_shape_ctx *c, kiln_node *n);
int kiln_fold_constant_of_shape(kiln_shape_ctx *c, kiln_node *n);
int64_t kiln_macs_conv(const kiln_node *n);
int64_t kiln_macs_conv_transpose(const kiln_node *n);
int64_t kiln_macs_conv_grad_weight(const kiln_node *n);
int64_t kiln_macs_gemm(const kiln_node *n);
int64_t kiln_macs_matmul(const kiln_node *n);

/* ---- helpers shared by the shape_*.c files ---- */
int kiln_shape_fail(kiln_shape_ctx *c, const kiln_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Input k must be present with a known shape; names the slot otherwise. */
int kiln_shape_need(kiln_shape_ctx *c, const kiln_node *n, int k);
/* Reads constant integer input k (any int dtype) into out[max]; *count gets
 * its length.  Absent optional input: *count = -1.  Not constant: error. */
int kiln_shape_const_ints(kiln_shape_ctx *c, const kiln_node *n, int k, int64_t *out, int max, int *count);
/* Reads constant float/int input k (scalar or 1-element) as double. */
int kiln_shape_const_scalar(kiln_shape_ctx *c, const kiln_node *n, int k, double *out, int *present);
/* Normalises axis a of a rank-r tensor (a in [-r, r-1], or [-r, r] when
 * allow_end); errors name the attribute. */
int kiln_shape_axis(kiln_shape_ctx *c, const kiln_node *n, int64_t a, int r, int allow_end, const char *what, int *out);
/* Numpy broadcasting of two shapes into out (rank returned via *rank). */
int kiln_shape_broadcast(kiln_shape_ctx *c, const kiln_node *n, const kiln_value *a, const kiln_value *b,
                         kiln_dim *out, int *rank);
void kiln_shape_set(kiln_node *n, int k, kiln_dtype t, int rank, const kiln_dim *dims);
void kiln_shape_copy(kiln_node *n, int k, const kiln_value *from);
/* Formats a shape "[1,3,224,224]" for messages (uses a per-ctx buffer ring). */
const char *kiln_shape_str(kiln_shape_ctx *c, const kiln_value *v);
const char *kiln_slot_name(const kiln_node *n, int k, int output, char *buf, int size);
/* Marks output k of n constant with the given data (folding). */
void kiln_fold_set(kiln_shape_ctx *c, kiln_node *n, int k, void *data);
int kiln_fold_inputs_const(const kiln_node *n);

#endif
