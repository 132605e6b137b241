/* Ops whose lowering is not written yet: each reports that clearly.  A
 * lowering moves out of this file into its own lower_*.c when it lands. */
#include "lower.h"

#define PENDING(fn)                                                                                  \
  int fn(kiln_lctx *L, const kiln_node *n) {                                                         \
    return kiln_lower_fail(L, n, "%s is not yet supported by kiln's code generators", kiln_op_get(n->op)->name); \
  }
PENDING(kiln_lower_conv)
PENDING(kiln_lower_conv_transpose)
PENDING(kiln_lower_batch_norm)
PENDING(kiln_lower_instance_norm)
PENDING(kiln_lower_lrn)
PENDING(kiln_lower_pool)
PENDING(kiln_lower_global_pool)
PENDING(kiln_lower_softmax)
PENDING(kiln_lower_gemm)
PENDING(kiln_lower_matmul)
PENDING(kiln_lower_transpose)
PENDING(kiln_lower_concat)
PENDING(kiln_lower_split)
PENDING(kiln_lower_slice)
PENDING(kiln_lower_pad)
PENDING(kiln_lower_expand)
PENDING(kiln_lower_gather)
PENDING(kiln_lower_shape)
PENDING(kiln_lower_constant_of_shape)
PENDING(kiln_lower_resize)
PENDING(kiln_lower_reduce)
PENDING(kiln_lower_argmax)
