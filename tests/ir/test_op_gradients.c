/* The op table's gradient column (ir/ops.def `grad`) is complete: every
 * op has a gradient function or is marked `nondiff` (no gradient flows:
 * integer results, comparisons, kiln's own gradient rows). */
#include <stdio.h>

#include "ir_test.h"
#include "passes/grad.h"

Test(op_gradients, every_op_has_a_gradient_or_is_nondiff) {
  char missing[4096] = "";
  int n = 0, len = 0;
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)op);
    if (info->grad) continue;
    n++;
    if (len < (int)sizeof missing - 64) len += snprintf(missing + len, sizeof missing - (size_t)len, " %s", info->name);
  }
  cr_assert_eq(n, 0, "%d op(s) with neither a gradient nor `nondiff` in ir/ops.def:%s", n, missing);
}

/* The differentiable ops, spot-checked by name: each has its own function
 * (not `nondiff`, which would silently drop the gradient). */
Test(op_gradients, differentiable_ops_have_their_own_function) {
  const char *const names[] = {"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish",
                               "Tanh", "Softplus", "Clip", "Erf", "Exp", "Log", "Sqrt", "Abs", "Reciprocal", "Pow",
                               "Max", "Min", "Softmax", "LogSoftmax", "Conv", "ConvTranspose", "MaxPool",
                               "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
                               "InstanceNormalization", "LRN", "Dropout", "Concat", "Split", "Slice", "Pad",
                               "Transpose", "Expand", "Gather", "Resize", "ReduceMax", "Gemm", "MatMul"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)kiln_op_find(names[i]));
    cr_assert(info && info->grad && info->grad != kiln_grad_nondiff, "%s", names[i]);
  }
}
