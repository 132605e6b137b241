/* Shape functions of elementwise, broadcasting and normalisation ops. */
#include <string.h>

#include "shape.h"

int kiln_shape_unary(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0)) return -1;
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

/* The ops ONNX defines on floating-point tensors only (Exp, Log, Sigmoid,
 * Tanh...): an integer input is refused here, with the node named, where
 * the lowering's float arithmetic (kiln_lower_exp's bit tricks) would
 * otherwise meet it, in constant folding too (a fuzzed Exp of an int64
 * constant reached an internal assertion). */
int kiln_shape_unary_float(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0)) return -1;
  if (!kiln_dtype_is_float(n->in[0]->dtype))
    return kiln_shape_fail(c, n, "needs a floating-point input, got %s", kiln_dtype_name(n->in[0]->dtype));
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

int kiln_shape_clip(kiln_shape_ctx *c, kiln_node *n) {
  double v;
  int present;
  if (kiln_shape_need(c, n, 0)) return -1;
  for (int k = 1; k < n->nin && k < 3; k++)
    if (kiln_shape_const_scalar(c, n, k, &v, &present)) return -1;
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

int kiln_shape_cast(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_cast *a = n->attrs;
  if (kiln_shape_need(c, n, 0)) return -1;
  if (a->to <= 0 || a->to >= KILN_DT_MAX_CODE || !kiln_dtype_size((kiln_dtype)a->to))
    return kiln_shape_fail(c, n, "cast to %s is not supported", kiln_onnx_dtype_name((int)a->to));
  kiln_shape_set(n, 0, (kiln_dtype)a->to, n->in[0]->rank, n->in[0]->dims);
  return 0;
}

int kiln_shape_dropout(kiln_shape_ctx *c, kiln_node *n) {
  double v;
  int present;
  if (kiln_shape_need(c, n, 0)) return -1;
  if (kiln_shape_const_scalar(c, n, 1, &v, &present)) return -1;
  if (present && (v < 0 || v >= 1)) return kiln_shape_fail(c, n, "ratio %g is outside [0, 1)", v);
  if (kiln_shape_const_scalar(c, n, 2, &v, &present)) return -1;
  kiln_shape_copy(n, 0, n->in[0]);
  kiln_shape_set(n, 1, KILN_DT_BOOL, n->in[0]->rank, n->in[0]->dims);
  return 0;
}

int kiln_shape_dropout_mask(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_dropout_mask *a = n->attrs;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  if (!kiln_dtype_is_float(n->in[0]->dtype))
    return kiln_shape_fail(c, n, "X is %s; the mask is for float tensors", kiln_dtype_name(n->in[0]->dtype));
  if (!kiln_dtype_is_float(n->in[1]->dtype) || n->in[1]->rank != 0)
    return kiln_shape_fail(c, n, "step must be a float scalar (rank 0)");
  if (!(a->ratio >= 0 && a->ratio < 1)) return kiln_shape_fail(c, n, "ratio %g is outside [0, 1)", (double)a->ratio);
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

/* Opset < 7 broadcasting: B's dims align with A's from `axis` on.  Rewrites
 * a constant B to the equivalent numpy shape (trailing 1s). */
static int legacy_broadcast(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_binary *a = n->attrs;
  const kiln_value *A = n->in[0], *B = n->in[1];
  if (a->_legacy_axis < 0) return 0;
  int ax;
  if (kiln_shape_axis(c, n, a->_legacy_axis, A->rank, 0, "axis", &ax)) return -1;
  int pad = A->rank - ax - B->rank;
  if (pad < 0) return kiln_shape_fail(c, n, "B %s does not fit A %s at axis %d", kiln_shape_str(c, B), kiln_shape_str(c, A), ax);
  if (pad > 0) {
    if (!B->data) return kiln_shape_fail(c, n, "legacy axis broadcasting (opset < 7) needs a constant B");
    kiln_dim dims[KILN_MAX_RANK];
    for (int i = 0; i < B->rank; i++) dims[i] = B->dims[i];
    for (int i = 0; i < pad; i++) dims[B->rank + i] = 1;
    kiln_value *nb = kiln_value_const(c->g, kiln_arena_printf(&c->g->arena, "%s_bcast", B->name), B->dtype,
                                      B->rank + pad, dims, B->data);
    nb->kind = B->kind;
    kiln_node_set_input(n, 1, nb);
  }
  a->_legacy_axis = -1;
  return 0;
}

/* PRelu: slope broadcasts to X (one direction); the result has X's shape. */
int kiln_shape_prelu(kiln_shape_ctx *c, kiln_node *n) {
  kiln_dim out[KILN_MAX_RANK];
  int r;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || legacy_broadcast(c, n)) return -1;
  if (kiln_shape_broadcast(c, n, n->in[0], n->in[1], out, &r)) return -1;
  if (r != n->in[0]->rank || memcmp(out, n->in[0]->dims, (size_t)r * sizeof *out))
    return kiln_shape_fail(c, n, "slope %s does not broadcast to X %s", kiln_shape_str(c, n->in[1]),
                           kiln_shape_str(c, n->in[0]));
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

static int same_dtype(kiln_shape_ctx *c, kiln_node *n, int k0, int k1) {
  if (n->in[k0]->dtype != n->in[k1]->dtype)
    return kiln_shape_fail(c, n, "inputs '%s' (%s) and '%s' (%s) must have the same element type", n->in[k0]->name,
                           kiln_dtype_name(n->in[k0]->dtype), n->in[k1]->name, kiln_dtype_name(n->in[k1]->dtype));
  return 0;
}

static int broadcast_all(kiln_shape_ctx *c, kiln_node *n, int first, kiln_dtype out_type, int check_types) {
  kiln_value acc = {0};
  for (int k = first; k < n->nin; k++) {
    if (kiln_shape_need(c, n, k)) return -1;
    if (check_types && k > first && same_dtype(c, n, first, k)) return -1;
    if (k == first) {
      acc.rank = n->in[k]->rank;
      memcpy(acc.dims, n->in[k]->dims, sizeof acc.dims);
      acc.name = n->in[k]->name;
      continue;
    }
    kiln_dim out[KILN_MAX_RANK];
    int r;
    if (kiln_shape_broadcast(c, n, &acc, n->in[k], out, &r)) return -1;
    acc.rank = r;
    memcpy(acc.dims, out, sizeof out);
  }
  kiln_shape_set(n, 0, out_type, acc.rank, acc.dims);
  return 0;
}

int kiln_shape_binary(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || legacy_broadcast(c, n)) return -1;
  /* Pow allows a different exponent type; the result has the base's. */
  return broadcast_all(c, n, 0, n->in[0]->dtype, n->op != KILN_OP_POW);
}

int kiln_shape_compare(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  return broadcast_all(c, n, 0, KILN_DT_BOOL, 1);
}

int kiln_shape_variadic(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0)) return -1;
  return broadcast_all(c, n, 0, n->in[0]->dtype, 1);
}

int kiln_shape_where(kiln_shape_ctx *c, kiln_node *n) {
  for (int k = 0; k < 3; k++)
    if (kiln_shape_need(c, n, k)) return -1;
  if (n->in[0]->dtype != KILN_DT_BOOL)
    return kiln_shape_fail(c, n, "condition must be bool, got %s", kiln_dtype_name(n->in[0]->dtype));
  if (same_dtype(c, n, 1, 2)) return -1;
  return broadcast_all(c, n, 0, n->in[1]->dtype, 0);
}

int kiln_shape_softmax(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_softmax *a = n->attrs;
  int ax;
  if (kiln_shape_need(c, n, 0)) return -1;
  int r = n->in[0]->rank;
  if (r == 0) return kiln_shape_fail(c, n, "input must have rank >= 1");
  if (kiln_shape_axis(c, n, a->axis, r, 0, "axis", &ax)) return -1;
  a->axis = ax;
  if (a->_coerce_2d && ax == r - 1) a->_coerce_2d = 0; /* same meaning either way */
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

int kiln_shape_lrn(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_lrn *a = n->attrs;
  if (kiln_shape_need(c, n, 0)) return -1;
  if (n->in[0]->rank < 3) return kiln_shape_fail(c, n, "X must be (N, C, D1, ...), got rank %d", n->in[0]->rank);
  if (a->size < 1) return kiln_shape_fail(c, n, "size must be positive, got %lld", (long long)a->size);
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}

/* Per-channel parameter inputs [first, last] must be 1-D of length C. */
static int per_channel(kiln_shape_ctx *c, kiln_node *n, int first, int last) {
  const kiln_value *x = n->in[0];
  if (x->rank < 2) return kiln_shape_fail(c, n, "input must be (N, C, ...), got rank %d", x->rank);
  kiln_dim ch = x->dims[1];
  for (int k = first; k <= last; k++) {
    char nm[64];
    if (kiln_shape_need(c, n, k)) return -1;
    const kiln_value *p = n->in[k];
    if (p->rank != 1 || p->dims[0] != ch)
      return kiln_shape_fail(c, n, "input '%s' must have shape [%lld] (one per channel), got %s",
                             kiln_slot_name(n, k, 0, nm, sizeof nm), (long long)ch, kiln_shape_str(c, p));
  }
  return 0;
}

int kiln_shape_batchnorm(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0) || per_channel(c, n, 1, 4)) return -1;
  kiln_shape_copy(n, 0, n->in[0]);
  kiln_shape_copy(n, 1, n->in[3]);
  kiln_shape_copy(n, 2, n->in[4]);
  /* saved_mean / saved_var: opset < 14 training outputs (onnx_upgrade.c) */
  kiln_shape_set(n, 3, n->in[0]->dtype, n->in[3]->rank, n->in[3]->dims);
  kiln_shape_set(n, 4, n->in[0]->dtype, n->in[4]->rank, n->in[4]->dims);
  return 0;
}

int kiln_shape_instancenorm(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0) || per_channel(c, n, 1, 2)) return -1;
  if (n->in[0]->rank < 3) return kiln_shape_fail(c, n, "input must be (N, C, D1, ...), got rank %d", n->in[0]->rank);
  kiln_shape_copy(n, 0, n->in[0]);
  return 0;
}
