/* Gradients of the activations, the other elementwise ops and
 * Softmax/LogSoftmax (ops.def `grad`; the contract is in grad.h).
 *
 * An activation's backward is one node of its own elementwise gradient
 * row (ops.def "kiln.ReluGrad" ..., scalar functions in
 * lower_elementwise_grad.c), so it is one kernel that fuse_epilogue can
 * put into the store of whatever computes dY.  Where the derivative is
 * cheaper from the forward output (Sigmoid, Tanh, Sqrt, Reciprocal, Exp)
 * the row reads Y, which the forward kept anyway.  The rest are a few
 * existing ops: Exp (dY Y), Log (dY / X), Pow, Max/Min, Softmax.
 *
 * Kinks take the forward's own branch (see lower_elementwise_grad.c);
 * Max/Min ties split dY evenly between the inputs that attain the result
 * (as PyTorch does for two), so the gradient of Max(x, x) is dY. */
#include <string.h>

#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)           \
  do {                   \
    if (!(x)) return -1; \
  } while (0)

/* op(dY, in1[, in2]) with n's attributes when op shares n's attribute
 * kind (LeakyRelu's alpha, Elu's, Selu's, HardSigmoid's). */
static kiln_value *grad_row(kiln_grad_ctx *c, const kiln_node *n, kiln_op op, kiln_value *dy, kiln_value *in1,
                            kiln_value *in2) {
  const kiln_op_info *info = kiln_op_get(op);
  kiln_node *m = kiln_grad_node(c, op, in2 ? 3 : 2, 1);
  if (info->attrs == kiln_op_get(n->op)->attrs) memcpy(m->attrs, n->attrs, info->attrs->size);
  kiln_node_set_input(m, 0, dy);
  kiln_node_set_input(m, 1, in1);
  if (in2) kiln_node_set_input(m, 2, in2);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* The unary activations: dX = op(dY, X or Y). */
static int unary(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx, kiln_op op, int from_y) {
  if (WANT(0)) TRY(dx[0] = grad_row(c, n, op, dy[0], from_y ? n->out[0] : n->in[0], NULL));
  return 0;
}

#define UNARY(name, OP, from_y)                                                                        \
  int kiln_grad_##name(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) { \
    return unary(c, n, dy, dx, KILN_OP_##OP, from_y);                                                  \
  }
UNARY(relu, RELU_GRAD, 1)
UNARY(elu, ELU_GRAD, 0)
UNARY(selu, SELU_GRAD, 0)
UNARY(sigmoid, SIGMOID_GRAD, 1)
UNARY(hard_sigmoid, HARD_SIGMOID_GRAD, 0)
UNARY(hard_swish, HARD_SWISH_GRAD, 0)
UNARY(tanh, TANH_GRAD, 1)
UNARY(softplus, SOFTPLUS_GRAD, 0)
UNARY(erf, ERF_GRAD, 0)
UNARY(abs, ABS_GRAD, 0)
UNARY(sqrt, SQRT_GRAD, 1)
UNARY(reciprocal, RECIPROCAL_GRAD, 1)
#undef UNARY

/* With alpha > 0, Y has X's sign, so the row can test Y: X is then read
 * by the forward alone, which keeps LeakyRelu fusable into its producer.
 * (The one difference: where alpha X underflows to -0, within 1e-43 of
 * the kink in f32, Y takes the X >= 0 side.) */
int kiln_grad_leaky_relu(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return unary(c, n, dy, dx, KILN_OP_LEAKY_RELU_GRAD, ((const kiln_attrs_leaky_relu *)n->attrs)->alpha > 0);
}

/* PRelu(X, slope): dX = X < 0 ? slope dY : dY; dslope = X < 0 ? X dY : 0,
 * summed over the axes where slope was broadcast (per channel: N, H, W). */
int kiln_grad_prelu(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  kiln_value *x = n->in[0], *slope = n->in[1];
  if (WANT(0)) TRY(dx[0] = grad_row(c, n, KILN_OP_PRELU_GRAD, dy[0], x, slope));
  if (WANT(1)) {
    kiln_value *g = grad_row(c, n, KILN_OP_PRELU_SLOPE_GRAD, dy[0], x, NULL);
    TRY(g && (dx[1] = kiln_grad_unbroadcast(c, g, slope)));
  }
  return 0;
}

/* Clip(X, min, max) with constant bounds (ops.def `#`): dY where
 * min < X < max.  The bounds get no gradient (they are constants). */
int kiln_grad_clip(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  kiln_node *m = kiln_grad_node(c, KILN_OP_CLIP_GRAD, 2 + (n->nin > 1 ? n->nin - 1 : 0), 1);
  kiln_node_set_input(m, 0, dy[0]);
  kiln_node_set_input(m, 1, n->in[0]);
  for (int k = 1; k < n->nin && k < 3; k++)
    if (n->in[k]) kiln_node_set_input(m, k + 1, n->in[k]);
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

/* Exp: dX = dY Y (Y is e^X, already computed). */
int kiln_grad_exp(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_apply2(c, KILN_OP_MUL, dy[0], n->out[0]));
  return 0;
}

/* Log: dX = dY / X. */
int kiln_grad_log(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_apply2(c, KILN_OP_DIV, dy[0], n->in[0]));
  return 0;
}

static kiln_value *cast_to(kiln_grad_ctx *c, kiln_value *v, kiln_dtype t) {
  if (v->dtype == t) return v;
  kiln_node *m = kiln_grad_node(c, KILN_OP_CAST, 1, 1);
  ((kiln_attrs_cast *)m->attrs)->to = t; /* kiln_dtype codes are ONNX's */
  kiln_node_set_input(m, 0, v);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* Z = X^E (E may have another type: computed in X's):
 * dX = dY E X^(E-1), dE = dY Z log X (defined for X > 0). */
int kiln_grad_pow(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  kiln_value *x = n->in[0], *e = n->in[1], *z = n->out[0];
  kiln_value *ef = cast_to(c, e, x->dtype);
  TRY(ef);
  if (WANT(0)) {
    kiln_value *em1 = kiln_grad_apply2(c, KILN_OP_SUB, ef, kiln_grad_scalar(c, x->dtype, 1));
    kiln_value *p = em1 ? kiln_grad_apply2(c, KILN_OP_POW, x, em1) : NULL;
    kiln_value *d = p ? kiln_grad_apply2(c, KILN_OP_MUL, ef, p) : NULL;
    kiln_value *g = d ? kiln_grad_apply2(c, KILN_OP_MUL, dy[0], d) : NULL;
    TRY(g && (dx[0] = kiln_grad_unbroadcast(c, g, x)));
  }
  if (WANT(1)) {
    kiln_value *lx = kiln_grad_apply1(c, KILN_OP_LOG, x);
    kiln_value *d = lx ? kiln_grad_apply2(c, KILN_OP_MUL, z, lx) : NULL;
    kiln_value *g = d ? kiln_grad_apply2(c, KILN_OP_MUL, dy[0], d) : NULL;
    g = g ? kiln_grad_unbroadcast(c, g, ef) : NULL;
    TRY(g && (dx[1] = cast_to(c, g, e->dtype)));
  }
  return 0;
}

/* Max/Min of N broadcast inputs: input k receives dY where it equals the
 * result, divided by how many inputs do there (ties split evenly; a NaN
 * result equals none, so no input gets a gradient there). */
static int select_grad(kiln_grad_ctx *c, const kiln_node *n, kiln_value *dy, kiln_value **dx) {
  if (n->nin == 1) {
    if (WANT(0)) dx[0] = dy;
    return 0;
  }
  kiln_value *y = n->out[0], **eq = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)n->nin, sizeof *eq);
  kiln_value **cnt = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)n->nin, sizeof *cnt);
  for (int k = 0; k < n->nin; k++) {
    TRY(eq[k] = kiln_grad_apply2(c, KILN_OP_EQUAL, n->in[k], y));
    TRY(cnt[k] = cast_to(c, eq[k], dy->dtype));
  }
  kiln_value *count = kiln_grad_apply(c, KILN_OP_SUM, n->nin, cnt);
  kiln_value *share = count ? kiln_grad_apply2(c, KILN_OP_DIV, dy, count) : NULL;
  kiln_value *zero = kiln_grad_scalar(c, dy->dtype, 0);
  TRY(share);
  for (int k = 0; k < n->nin; k++)
    if (WANT(k)) {
      kiln_value *g = kiln_grad_apply(c, KILN_OP_WHERE, 3, (kiln_value *[]){eq[k], share, zero});
      TRY(g && (dx[k] = kiln_grad_unbroadcast(c, g, n->in[k])));
    }
  return 0;
}

int kiln_grad_max(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return select_grad(c, n, dy[0], dx);
}

int kiln_grad_min(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return select_grad(c, n, dy[0], dx);
}

/* The axes Softmax normalises over: `axis` (made non-negative by the shape
 * function), or axis..rank-1 in the pre-opset-13 form (_coerce_2d). */
static int softmax_axes(const kiln_node *n, int64_t *axes) {
  const kiln_attrs_softmax *a = n->attrs;
  int r = n->in[0]->rank, na = 0;
  for (int64_t i = a->axis; i < (a->_coerce_2d ? r : a->axis + 1); i++) axes[na++] = i;
  return na;
}

/* Y = softmax(X): dX = Y (dY - sum(dY Y)) over the softmax axes. */
int kiln_grad_softmax(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  int64_t axes[KILN_MAX_RANK];
  int na = softmax_axes(n, axes);
  kiln_value *y = n->out[0];
  kiln_value *p = kiln_grad_apply2(c, KILN_OP_MUL, dy[0], y);
  kiln_value *s = p ? kiln_grad_sum_axes(c, p, na, axes, 1) : NULL;
  kiln_value *d = s ? kiln_grad_apply2(c, KILN_OP_SUB, dy[0], s) : NULL;
  TRY(d && (dx[0] = kiln_grad_apply2(c, KILN_OP_MUL, y, d)));
  return 0;
}

/* Y = log softmax(X): dX = dY - e^Y sum(dY) over the softmax axes. */
int kiln_grad_log_softmax(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  int64_t axes[KILN_MAX_RANK];
  int na = softmax_axes(n, axes);
  kiln_value *s = kiln_grad_sum_axes(c, dy[0], na, axes, 1);
  kiln_value *e = kiln_grad_apply1(c, KILN_OP_EXP, n->out[0]);
  kiln_value *p = s && e ? kiln_grad_apply2(c, KILN_OP_MUL, e, s) : NULL;
  TRY(p && (dx[0] = kiln_grad_apply2(c, KILN_OP_SUB, dy[0], p)));
  return 0;
}
