/* The shape function of the elementwise gradient rows (ops.def
 * "kiln.ReluGrad", "kiln.SigmoidGrad", ...): autodiff makes these nodes,
 * but they are ordinary graph nodes that every pass verifies, so the
 * function checks them like any model's: input 0 is dY (floating point),
 * every other data input has dY's element type and broadcasts to dY's
 * shape without widening it (PRelu's slope; X and Y have dY's shape), and
 * the `#` inputs (Clip's bounds) are constant scalars.  dX has dY's type
 * and shape. */
#include <string.h>

#include "shape.h"

int kiln_shape_elementwise_grad(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_op_info *info = kiln_op_get(n->op);
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *dy = n->in[0];
  if (!kiln_dtype_is_float(dy->dtype))
    return kiln_shape_fail(c, n, "dY must be floating point, got %s", kiln_dtype_name(dy->dtype));
  for (int k = 1; k < n->nin; k++) {
    kiln_slot s;
    char nm[64];
    if (!kiln_sig_slot(info->inputs, k, &s)) return kiln_shape_fail(c, n, "too many inputs (%d)", n->nin);
    if (s.constant) {
      double v;
      int present;
      if (kiln_shape_const_scalar(c, n, k, &v, &present)) return -1;
      continue;
    }
    if (kiln_shape_need(c, n, k)) return -1;
    const kiln_value *v = n->in[k];
    if (v->dtype != dy->dtype)
      return kiln_shape_fail(c, n, "input '%s' (%s) must have dY's element type %s",
                             kiln_slot_name(n, k, 0, nm, sizeof nm), kiln_dtype_name(v->dtype),
                             kiln_dtype_name(dy->dtype));
    kiln_dim out[KILN_MAX_RANK];
    int r;
    if (kiln_shape_broadcast(c, n, dy, v, out, &r)) return -1;
    if (r != dy->rank || memcmp(out, dy->dims, (size_t)r * sizeof *out))
      return kiln_shape_fail(c, n, "input '%s' %s does not broadcast to dY %s", kiln_slot_name(n, k, 0, nm, sizeof nm),
                             kiln_shape_str(c, v), kiln_shape_str(c, dy));
  }
  kiln_shape_copy(n, 0, dy);
  return 0;
}
