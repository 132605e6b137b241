/* The op table's gradient column (ir/ops.def `grad`) is complete: every
 * op has a gradient function or is marked `nondiff` (no gradient flows:
 * integer results, comparisons, kiln's own gradient rows), except the ops
 * listed in pending_in_other_branches[] below, whose gradients are being
 * written in parallel branches.  The list cannot go stale: an op listed
 * there that has a gradient, or that no longer exists, fails the test. */
#include <stdio.h>

#include "ir_test.h"
#include "passes/grad.h"

/* PENDING IN OTHER BRANCHES: the lead empties this array while merging
 * those branches (each op's name leaves it with the merge that gives the
 * op its gradient).  Nothing else may be added here. */
static const char *const pending_in_other_branches[] = {
    /* h-gconv: convolution */
    "Conv", "ConvTranspose",
    /* h-gpool: pooling and normalisation */
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "InstanceNormalization",
    "LRN", "Dropout",
    /* h-gtensor: data movement and selections */
    "Concat", "Split", "Slice", "Pad", "Transpose", "Expand", "Gather", "Resize", "ReduceMax",
};
enum { NPENDING = sizeof pending_in_other_branches / sizeof *pending_in_other_branches };

static int pending(const char *name) {
  for (int i = 0; i < NPENDING; i++)
    if (!strcmp(pending_in_other_branches[i], name)) return 1;
  return 0;
}

Test(op_gradients, every_op_has_a_gradient_or_is_nondiff) {
  char missing[4096] = "";
  int n = 0, len = 0;
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)op);
    if (info->grad || pending(info->name)) continue;
    n++;
    if (len < (int)sizeof missing - 64) len += snprintf(missing + len, sizeof missing - (size_t)len, " %s", info->name);
  }
  cr_assert_eq(n, 0, "%d op(s) with neither a gradient nor `nondiff` in ir/ops.def:%s", n, missing);
}

Test(op_gradients, every_pending_op_exists_and_still_lacks_its_gradient) {
  for (int i = 0; i < NPENDING; i++) {
    const char *name = pending_in_other_branches[i];
    int op = kiln_op_find(name);
    cr_assert_geq(op, 0, "pending_in_other_branches[] names '%s', which is not an op", name);
    const kiln_op_info *info = kiln_op_get((kiln_op)op);
    cr_assert_null(info->grad, "%s has a gradient now (%s): remove it from pending_in_other_branches[]", name,
                   info->grad == kiln_grad_nondiff ? "nondiff" : "a function");
    for (int j = 0; j < i; j++) cr_assert_str_neq(pending_in_other_branches[j], name, "'%s' is listed twice", name);
  }
}

/* The activations of this branch, spot-checked by name: each has its own
 * function (not `nondiff`, which would silently drop the gradient). */
Test(op_gradients, activations_and_softmax_are_differentiable) {
  const char *const names[] = {"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish",
                               "Tanh", "Softplus", "Clip", "Erf", "Exp", "Log", "Sqrt", "Abs", "Reciprocal", "Pow",
                               "Max", "Min", "Softmax", "LogSoftmax"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)kiln_op_find(names[i]));
    cr_assert(info && info->grad && info->grad != kiln_grad_nondiff, "%s", names[i]);
  }
}
