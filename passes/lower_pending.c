/* Ops whose lowering is not written yet: each reports that clearly.  A
 * lowering moves out of this file into its own lower_*.c when it lands. */
#include "lower.h"

#define PENDING(fn)                                                                                  \
  int fn(kiln_lctx *L, const kiln_node *n) {                                                         \
    return kiln_lower_fail(L, n, "%s is not yet supported by kiln's code generators", kiln_op_get(n->op)->name); \
  }
