/* The per-element meaning of the elementwise gradient rows (ops.def
 * "kiln.ReluGrad" ...): in[0] is dY, in[1] what the derivative reads (X,
 * or the forward output Y), computed in the compute type like every
 * elementwise op.  They lower through kiln_lower_elementwise, so each is
 * one fusable kernel: fuse_epilogue puts it into the store of the node
 * computing dY (the dX of the next layer's Conv/Gemm).  The branch
 * conditions are the forward's own (lower_elementwise.c): where the
 * forward selects "x < 0", the gradient does too, so the two agree at
 * every point but the kinks, which the gradient assigns as commented. */
#include <math.h>

#include "lower.h"

#define B (&L->b)
#define K(v) kiln_lx_const_f(B, dy->dtype, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define UN(op, a) kiln_lx_un(B, KILN_UN_##op, (a))
#define SEL(c, a, b) kiln_lx_select(B, (c), (a), (b))

/* Relu: dY where Y > 0; 0 at the kink and where Y is NaN. */
kiln_lx *kiln_scalar_relu_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *y = in[1];
  return SEL(BIN(LT, K(0), y), dy, K(0));
}

/* LeakyRelu: the forward's "x < 0" test; autodiff may pass Y for X when
 * alpha > 0 (same sign). */
kiln_lx *kiln_scalar_leaky_relu_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_leaky_relu *a = n->attrs;
  kiln_lx *dy = in[0], *x = in[1];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, dy, K(a->alpha)), dy);
}

kiln_lx *kiln_scalar_prelu_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, dy, in[2]), dy);
}

/* d PRelu / d slope = min(X, 0), per element (summed over the broadcast
 * axes by the gradient function). */
kiln_lx *kiln_scalar_prelu_slope_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, dy, x), K(0));
}

kiln_lx *kiln_scalar_elu_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_elu *a = n->attrs;
  kiln_lx *dy = in[0], *x = in[1];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, dy, BIN(MUL, K(a->alpha), UN(EXP, x))), dy);
}

/* Selu's forward takes the exponential branch at x <= 0. */
kiln_lx *kiln_scalar_selu_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_selu *a = n->attrs;
  kiln_lx *dy = in[0], *x = in[1];
  kiln_lx *d = SEL(BIN(LE, x, K(0)), BIN(MUL, K(a->alpha), UN(EXP, x)), K(1));
  return BIN(MUL, dy, BIN(MUL, K(a->gamma), d));
}

kiln_lx *kiln_scalar_sigmoid_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *y = in[1];
  return BIN(MUL, dy, BIN(MUL, y, BIN(SUB, K(1), y)));
}

/* alpha where 0 < alpha x + beta < 1 (the unclamped part), else 0. */
kiln_lx *kiln_scalar_hard_sigmoid_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_hard_sigmoid *a = n->attrs;
  kiln_lx *dy = in[0], *x = in[1];
  kiln_lx *v = BIN(ADD, BIN(MUL, K(a->alpha), x), K(a->beta));
  return SEL(BIN(LT, K(0), v), SEL(BIN(LT, v, K(1)), BIN(MUL, dy, K(a->alpha)), K(0)), K(0));
}

/* HardSwish = x * clamp(x/6 + 1/2, 0, 1): with v = x/6 + 1/2, the
 * derivative is 0 for v <= 0, 1 for v >= 1, else v + x/6 = x/3 + 1/2. */
kiln_lx *kiln_scalar_hard_swish_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  kiln_lx *v = BIN(ADD, BIN(MUL, K(1.0 / 6.0), x), K(0.5));
  kiln_lx *mid = BIN(MUL, dy, BIN(ADD, BIN(MUL, K(1.0 / 3.0), x), K(0.5)));
  return SEL(BIN(LE, v, K(0)), K(0), SEL(BIN(LE, K(1), v), dy, mid));
}

kiln_lx *kiln_scalar_tanh_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *y = in[1];
  return BIN(MUL, dy, BIN(SUB, K(1), BIN(MUL, y, y)));
}

/* d softplus = sigmoid(x) = 1 / (1 + e^-x): e^-x overflowing to inf
 * gives 0, the limit. */
kiln_lx *kiln_scalar_softplus_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  return BIN(DIV, dy, BIN(ADD, K(1), UN(EXP, UN(NEG, x))));
}

/* dY where min < X < max (strictly: 0 where X sits on a bound, which is
 * where the forward clamps); the bounds are constants read here. */
kiln_lx *kiln_scalar_clip_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  kiln_lx *dy = in[0], *x = in[1], *r = dy;
  for (int k = 2; k < n->nin && k < 4; k++) {
    if (!n->in[k] || kiln_value_numel(n->in[k], 1) == 0) continue;
    kiln_lx *c = K(kiln_dtype_load_f(n->in[k]->dtype, n->in[k]->data, 0));
    r = SEL(k == 2 ? BIN(LT, c, x) : BIN(LT, x, c), r, K(0));
  }
  return r;
}

kiln_lx *kiln_scalar_erf_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  const double two_over_sqrt_pi = 1.12837916709551257389615890312154517;
  return BIN(MUL, dy, BIN(MUL, K(two_over_sqrt_pi), UN(EXP, UN(NEG, BIN(MUL, x, x)))));
}

/* sign(X) dY: 0 at X = 0 (the subgradient PyTorch and ONNX Runtime use). */
kiln_lx *kiln_scalar_abs_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *x = in[1];
  return SEL(BIN(LT, x, K(0)), UN(NEG, dy), SEL(BIN(LT, K(0), x), dy, K(0)));
}

kiln_lx *kiln_scalar_sqrt_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *y = in[1];
  return BIN(DIV, BIN(MUL, K(0.5), dy), y);
}

/* Y = 1/X: dX = -dY / X^2 = -dY Y^2. */
kiln_lx *kiln_scalar_reciprocal_grad(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *dy = in[0], *y = in[1];
  return UN(NEG, BIN(MUL, dy, BIN(MUL, y, y)));
}
