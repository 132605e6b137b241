/* Elementwise ops: one shared lowering (a loop nest over the output,
 * broadcast loads of every data input) and, per op, its scalar meaning.
 * f16/bf16 are computed in f32.  Compile-time-constant inputs (#slots such
 * as Clip's bounds) are read here as numbers, not loaded. */
#include <math.h>

#include "../ir/shape.h"
#include "lower.h"

/* Whether node st reads every data operand at the output's own element
 * (same dims, or a single element) and all of them and its output are
 * plain: then the flat element number addresses everything. */
static int flat_operands(const kiln_node *st, const kiln_value *y) {
  const kiln_op_info *info = kiln_op_get(st->op);
  if (st->out[0]->layout != KILN_LAYOUT_PLAIN) return 0;
  for (int k = 0; k < st->nin; k++) {
    const kiln_value *v = st->in[k];
    kiln_slot s;
    kiln_sig_slot(info->inputs, k, &s);
    if (!v || s.constant) continue;
    int same = v->rank == y->rank;
    for (int i = 0; same && i < v->rank; i++) same = v->dims[i] == y->dims[i];
    if (v->layout != KILN_LAYOUT_PLAIN || (!same && kiln_value_numel(v, 1) != 1)) return 0;
  }
  return 1;
}

/* An elementwise node without broadcasting is one flat loop over its
 * elements rather than a nest over the output's dims: a long loop the
 * vectoriser runs at the full vector width, where rows of 7..111
 * elements (ResNet's, SqueezeNet's feature maps) leave most of the work
 * to remainder loops and make LLVM pick narrow vectors. */
static int flat_ok(const kiln_node *n) {
  const kiln_value *y = n->out[0];
  if (y->rank < 2 || !flat_operands(n, y)) return 0;
  for (int s = 0; s < n->epi.nsteps; s++)
    if (!flat_operands(n->epi.steps[s], y)) return 0;
  for (int k = 1; k < n->nout; k++)
    if (n->out[k] && n->out[k]->layout != KILN_LAYOUT_PLAIN) return 0;
  return 1;
}

int kiln_lower_elementwise(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *y = n->out[0];
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lower_begin(L, n);
  if (flat_ok(n)) {
    kiln_lx *i = kiln_lx_index(&L->b, kiln_lb_for(&L->b, kiln_value_numel(y, 1), (kiln_sched){.parallel = 1}));
    kiln_lx *r = kiln_lower_apply(L, n, NULL, NULL, y, NULL, i);
    if (!r) return -1;
    kiln_lower_store_flat(L, n, 0, i, r);
    if (n->op == KILN_OP_DROPOUT && n->nout > 1 && n->out[1]) /* inference: nothing dropped */
      kiln_lower_store_flat(L, n, 1, i, kiln_lx_const_f(&L->b, KILN_DT_BOOL, 1));
    kiln_lb_end(&L->b);
    return 0;
  }
  kiln_lower_loops(L, y, idx);
  /* the node itself is applied like an epilogue step (lower_store.c) */
  kiln_lx *r = kiln_lower_apply(L, n, NULL, NULL, y, idx, NULL);
  if (!r) return -1;
  kiln_lower_store_output(L, n, 0, idx, r);
  if (n->op == KILN_OP_DROPOUT && n->nout > 1 && n->out[1]) /* inference: nothing dropped */
    kiln_lower_store_output(L, n, 1, idx, kiln_lx_const_f(&L->b, KILN_DT_BOOL, 1));
  kiln_lower_close(L, y->rank);
  return 0;
}

/* Shorthands for scalar functions. */
#define B (&L->b)
#define K(v) kiln_lx_const_f(B, x->dtype, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define UN(op, a) kiln_lx_un(B, KILN_UN_##op, (a))
#define SEL(c, a, b) kiln_lx_select(B, (c), (a), (b))

/* The bits of the f32 2^n for a whole n in [-126, 127] held in an f32:
 * (n + 127) 2^23 as an i32.  n reaches the integers without a float ->
 * int conversion (LLVM scalarises the saturating one it would need): n +
 * 1.5 2^23 holds n in its low mantissa bits, so its bits minus those of
 * 1.5 2^23 (0x4b400000) are n.  Multiplied by 2^23, not shifted (the loop
 * IR has no shifts; LLVM makes it one); nothing overflows. */
static kiln_lx *pow2_bits(kiln_lctx *L, kiln_lx *n) {
  kiln_lx *nb = kiln_lx_un(B, KILN_UN_BITCAST, BIN(ADD, n, kiln_lx_const_f(B, KILN_DT_F32, 12582912.0)));
  kiln_lx *biased = BIN(ADD, nb, kiln_lx_const_f(B, KILN_DT_I32, 127 - 0x4b400000));
  return BIN(MUL, biased, kiln_lx_const_f(B, KILN_DT_I32, 1 << 23));
}

/* e^x.  f64: libm's exp.  f32 (and f16/bf16, computed in f32): plain
 * arithmetic that vectorises in every backend, where libm's expf is one
 * scalar call per element (Sigmoid, Softmax, Elu, Softplus all use it):
 *   n = floor(x log2(e) + 1/2), r = x - n ln 2 (ln 2 in two parts, Cody
 *   and Waite, so r is exact to an f32 ulp), |r| <= ln(2)/2;
 *   e^r by its Taylor polynomial to r^7 (truncation below 3e-9 relative);
 *   2^n from its bits (pow2_bits), as two normal factors so that n = -150
 *   and n = 128 need no third case: 1M values 1.0 -> 0.55 ms against the
 *   earlier product of powers of two, one select per bit of n.
 * x > 88.7228 gives +inf, x < -103.2789 gives 0 (below half the least
 * subnormal), NaN stays NaN.  Results in the subnormal range (x < -87.3)
 * lose precision as subnormals do.  Measured against float64 exp in
 * tests/passes/test_exp_f32.c. */
kiln_lx *kiln_lower_exp(kiln_lctx *L, kiln_lx *x) {
  if (x->dtype == KILN_DT_F64) return UN(EXP, x);
  kiln_dtype ct = x->dtype;
#define LOCAL(e) kiln_lx_local(B, kiln_lb_decl(B, ct, (e)))
  x = LOCAL(x);
  kiln_lx *xc = LOCAL(SEL(BIN(LT, x, K(-104)), K(-104), SEL(BIN(LT, K(89), x), K(89), x)));
  kiln_lx *nf = LOCAL(UN(FLOOR, BIN(ADD, BIN(MUL, xc, K(1.4426950408889634)), K(0.5))));
  kiln_lx *r = BIN(SUB, BIN(SUB, xc, BIN(MUL, nf, K(0.693359375))), BIN(MUL, nf, K(-2.12194440054690583e-4)));
  r = LOCAL(r);
  static const double c[] = {1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1};
  kiln_lx *p = K(c[0]);
  for (int k = 1; k < 8; k++) p = BIN(ADD, BIN(MUL, p, r), K(c[k]));
  /* 2^n, n in [-150, 128], as two factors 2^n1 2^n2 (n1 = floor(n/2), n2 =
   * n - n1, both in [-75, 64]: normal floats), each built from its bits,
   * (n + 127) 2^23 as an i32 bit cast to f32.  p 2^n1 is exact (normal);
   * the second product rounds once, also into the subnormals. */
  kiln_lx *n1 = LOCAL(UN(FLOOR, BIN(MUL, nf, K(0.5))));
  kiln_lx *n2 = BIN(SUB, nf, n1);
  kiln_lx *f1 = kiln_lx_un(B, KILN_UN_BITCAST, pow2_bits(L, n1)), *f2 = kiln_lx_un(B, KILN_UN_BITCAST, pow2_bits(L, n2));
  p = LOCAL(BIN(MUL, BIN(MUL, p, f1), f2));
  kiln_lx *res = SEL(BIN(LT, K(88.72283935546875), x), K(INFINITY), SEL(BIN(LT, x, K(-103.27892990343185)), K(0), p));
#undef LOCAL
  return res;
}

/* ln(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1], plus e ln 2 (e an exact
 * integer in f32): with s = f / (2 + f), ln(1 + f) = 2 atanh(s) = 2s +
 * s R(s^2), R(z) = 2/3 z + 2/5 z^2 + 2/7 z^3 + 2/9 z^4 (|s| <= 0.1716, so
 * the series' next term is below 2.1e-9 of the result), evaluated as
 * f - (f^2/2 - s (f^2/2 + R)) (the same value, since f - 2s = s f): the
 * rounding errors then sit in the correction, not in f.  e ln 2 in two
 * parts (exp's Cody and Waite constants): e * 0.693359375 is exact. */
static kiln_lx *log_reduced(kiln_lctx *L, kiln_dtype ct, kiln_lx *f, kiln_lx *e) {
#define KC(v) kiln_lx_const_f(B, ct, (v))
#define LOCAL(e) kiln_lx_local(B, kiln_lb_decl(B, ct, (e)))
  f = LOCAL(f);
  kiln_lx *s = LOCAL(BIN(DIV, f, BIN(ADD, KC(2), f)));
  kiln_lx *z = LOCAL(BIN(MUL, s, s));
  kiln_lx *r = KC(2.0 / 9);
  for (int k = 7; k >= 3; k -= 2) r = BIN(ADD, BIN(MUL, r, z), KC(2.0 / k));
  r = BIN(MUL, r, z);
  kiln_lx *hf = LOCAL(BIN(MUL, KC(0.5), BIN(MUL, f, f)));
  kiln_lx *lp = BIN(SUB, f, BIN(SUB, hf, BIN(MUL, s, BIN(ADD, hf, r))));
  if (!e) return lp;
  return BIN(ADD, BIN(MUL, e, KC(0.693359375)), BIN(ADD, lp, BIN(MUL, e, KC(-2.12194440054690583e-4))));
#undef LOCAL
#undef KC
}

/* ln x.  f64: libm's log.  f32 (and f16/bf16, computed in f32): plain
 * arithmetic that vectorises in every backend, where libm's logf is one
 * scalar call per element (Log over 1M values: 2.6 ms):
 *   x = m 2^e, m in [sqrt(1/2), sqrt(2)): e and m from x's bits (a
 *   subnormal x first scaled by 2^24, exactly);
 *   ln x = e ln 2 + ln(1 + f), f = m - 1 (exact), log_reduced.
 * ln 0 = -inf (also -0), ln x < 0 = NaN, ln inf = inf, NaN stays NaN (the
 * bits of those are never read as a number: the selects at the end).
 * Measured against float64 log in tests/passes/test_log_f32.c. */
kiln_lx *kiln_lower_log(kiln_lctx *L, kiln_lx *x) {
  if (x->dtype == KILN_DT_F64) return UN(LOG, x);
  kiln_dtype ct = x->dtype;
#define LOCAL(e) kiln_lx_local(B, kiln_lb_decl(B, ct, (e)))
#define I32(v) kiln_lx_const_f(B, KILN_DT_I32, (v))
  x = LOCAL(x);
  kiln_lx *sub = kiln_lx_local(B, kiln_lb_decl(B, KILN_DT_BOOL, BIN(LT, x, K(0x1p-126))));
  kiln_lx *xs = SEL(sub, BIN(MUL, x, K(0x1p24)), x);
  kiln_lx *bits = kiln_lx_local(B, kiln_lb_decl(B, KILN_DT_I32, kiln_lx_un(B, KILN_UN_BITCAST, xs)));
  /* x > 0 here (the rest is selected away): bits / 2^23 is the biased exponent */
  kiln_lx *e = BIN(ADD, kiln_lx_cast(B, ct, BIN(SUB, BIN(DIV, bits, I32(1 << 23)), I32(127))), SEL(sub, K(-24), K(0)));
  kiln_lx *m = LOCAL(kiln_lx_un(B, KILN_UN_BITCAST, BIN(ADD, BIN(REM, bits, I32(1 << 23)), I32(0x3f800000))));
  /* [1, 2) -> [sqrt(1/2), sqrt(2)) */
  kiln_lx *big = kiln_lx_local(B, kiln_lb_decl(B, KILN_DT_BOOL, BIN(LT, K(1.41421353816986083984375), m)));
  kiln_lx *mm = SEL(big, BIN(MUL, m, K(0.5)), m);
  kiln_lx *ee = LOCAL(SEL(big, BIN(ADD, e, K(1)), e));
  kiln_lx *r = log_reduced(L, ct, BIN(SUB, mm, K(1)), ee);
  /* x < inf is false for inf and NaN: both are their own logarithm */
  r = SEL(BIN(LT, x, K(0)), K(NAN), SEL(BIN(EQ, x, K(0)), K(-INFINITY), SEL(BIN(LT, x, K(INFINITY)), r, x)));
#undef I32
#undef LOCAL
  return r;
}

/* ln(1 + t) for t in [0, 1] (Softplus's ln(1 + e^-|x|)): t itself is f
 * below sqrt(2) - 1, so a tiny t keeps all its bits (ln(1 + t) = t to
 * within an ulp, where rounding 1 + t first would lose them); above it,
 * (1 + t) / 2 - 1 with e = 1.  f64: libm's log of 1 + t, as before. */
static kiln_lx *log1p_unit(kiln_lctx *L, kiln_lx *x) {
  if (x->dtype == KILN_DT_F64) return UN(LOG, BIN(ADD, K(1), x));
  kiln_dtype ct = x->dtype;
  kiln_lx *t = kiln_lx_local(B, kiln_lb_decl(B, ct, x));
  kiln_lx *small = kiln_lx_local(B, kiln_lb_decl(B, KILN_DT_BOOL, BIN(LT, t, K(0.41421353816986083984375))));
  kiln_lx *f = SEL(small, t, BIN(SUB, BIN(MUL, BIN(ADD, K(1), t), K(0.5)), K(1)));
  return log_reduced(L, ct, f, SEL(small, K(0), K(1)));
}

kiln_lx *kiln_scalar_relu(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  return SEL(BIN(LT, x, K(0)), K(0), x); /* keeps NaN, unlike max(x, 0) */
}

kiln_lx *kiln_scalar_leaky_relu(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_leaky_relu *a = n->attrs;
  kiln_lx *x = in[0];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, x, K(a->alpha)), x);
}

kiln_lx *kiln_scalar_prelu(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, x, in[1]), x);
}

kiln_lx *kiln_scalar_elu(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_elu *a = n->attrs;
  kiln_lx *x = in[0];
  return SEL(BIN(LT, x, K(0)), BIN(MUL, K(a->alpha), BIN(SUB, kiln_lower_exp(L, x), K(1))), x);
}

kiln_lx *kiln_scalar_selu(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_selu *a = n->attrs;
  kiln_lx *x = in[0];
  kiln_lx *neg = BIN(SUB, BIN(MUL, K(a->alpha), kiln_lower_exp(L, x)), K(a->alpha));
  return BIN(MUL, K(a->gamma), SEL(BIN(LE, x, K(0)), neg, x));
}

kiln_lx *kiln_scalar_sigmoid(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  return BIN(DIV, K(1), BIN(ADD, K(1), kiln_lower_exp(L, UN(NEG, x))));
}

static kiln_lx *clamp01(kiln_lctx *L, kiln_lx *x, kiln_lx *v) {
  return BIN(MAX, K(0), BIN(MIN, K(1), v));
}

kiln_lx *kiln_scalar_hard_sigmoid(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_hard_sigmoid *a = n->attrs;
  kiln_lx *x = in[0];
  return clamp01(L, x, BIN(ADD, BIN(MUL, K(a->alpha), x), K(a->beta)));
}

kiln_lx *kiln_scalar_hard_swish(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  return BIN(MUL, x, clamp01(L, x, BIN(ADD, BIN(MUL, K(1.0 / 6.0), x), K(0.5))));
}

/* tanh.  f64: libm's.  f32 (and f16/bf16, computed in f32): a rational
 * function of plain multiplies, adds and one divide, so the loop over a
 * tensor vectorises in every backend (libm's tanhf is a scalar call per
 * element: LeNet-5's forward pass spent 85% of its time in it).
 *   tanh(x) ~ x P(x^2) / Q(x^2), x clamped to [-9, 9], result to [-1, 1],
 *   exactly +-1 beyond +-9
 * P degree 6 and Q degree 3 in x^2, Q(0) = 1, fitted by kiln (weighted
 * linear least squares iterated toward minimax relative error, in float64
 * on [0, 9]): relative error 6.6e-9 in exact arithmetic; evaluated in f32
 * by Horner's rule, at most 5.7 ulp (3.4e-7 relative) from the float64
 * tanh over 4.2 million inputs in [-12, 12] and tiny ones down to 1e-30
 * (libm's tanhf: 1.4 ulp); tests/passes/test_tanh_f32.c checks this
 * bound.  Beyond |x| = 9, tanh is 1 to within 3e-8 (under half an f32 ulp
 * of 1).  NaN stays NaN (the clamp's comparisons are false), -0 stays -0. */
kiln_lx *kiln_scalar_tanh(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  if (x->dtype == KILN_DT_F64) return UN(TANH, x);
  static const double p[] = {1, 0.13084027171134949, 0.0031039752066135406, 1.1154503226862289e-05,
                             -2.0225986219202241e-08, 5.2782968967823862e-11, -8.4895598309511072e-14};
  static const double q[] = {1, 0.46417355537414551, 0.024495255202054977, 0.00025461727636866271};
  /* the loop IR's expressions are trees: a value used more than once is a
   * local (declared where the scalar function is applied, before its store) */
  kiln_dtype ct = x->dtype;
#define LOCAL(e) kiln_lx_local(B, kiln_lb_decl(B, ct, (e)))
  x = LOCAL(x);
  kiln_lx *xc = LOCAL(SEL(BIN(LT, x, K(-9)), K(-9), SEL(BIN(LT, K(9), x), K(9), x)));
  kiln_lx *z = LOCAL(BIN(MUL, xc, xc)), *pp = K(p[6]), *qq = K(q[3]);
  for (int k = 5; k >= 0; k--) pp = BIN(ADD, BIN(MUL, pp, z), K(p[k]));
  for (int k = 2; k >= 0; k--) qq = BIN(ADD, BIN(MUL, qq, z), K(q[k]));
  kiln_lx *t = LOCAL(BIN(DIV, BIN(MUL, xc, pp), qq));
#undef LOCAL
  t = SEL(BIN(LT, t, K(-1)), K(-1), SEL(BIN(LT, K(1), t), K(1), t));
  return SEL(BIN(LT, K(9), x), K(1), SEL(BIN(LT, x, K(-9)), K(-1), t));
}

/* log(1 + e^x) computed as max(x, 0) + log(1 + e^-|x|): no overflow. */
kiln_lx *kiln_scalar_softplus(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  kiln_lx *pos = SEL(BIN(LT, x, K(0)), K(0), x);
  return BIN(ADD, pos, log1p_unit(L, kiln_lower_exp(L, UN(NEG, UN(ABS, x)))));
}

kiln_lx *kiln_scalar_clip(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  kiln_lx *x = in[0];
  for (int k = 1; k < n->nin && k < 3; k++) {
    if (!n->in[k] || kiln_value_numel(n->in[k], 1) == 0) continue;
    double bound = kiln_dtype_load_f(n->in[k]->dtype, n->in[k]->data, 0);
    kiln_lx *c = K(bound);
    x = k == 1 ? SEL(BIN(LT, x, c), c, x) : SEL(BIN(LT, c, x), c, x);
  }
  return x;
}

kiln_lx *kiln_scalar_erf(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(ERF, in[0]); }
kiln_lx *kiln_scalar_exp(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return kiln_lower_exp(L, in[0]); }
kiln_lx *kiln_scalar_log(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return kiln_lower_log(L, in[0]); }
kiln_lx *kiln_scalar_sqrt(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(SQRT, in[0]); }
kiln_lx *kiln_scalar_abs(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(ABS, in[0]); }
kiln_lx *kiln_scalar_neg(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(NEG, in[0]); }
kiln_lx *kiln_scalar_floor(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(FLOOR, in[0]); }
kiln_lx *kiln_scalar_ceil(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)n; return UN(CEIL, in[0]); }
kiln_lx *kiln_scalar_identity(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { (void)L; (void)n; return in[0]; }

kiln_lx *kiln_scalar_reciprocal(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_lx *x = in[0];
  return BIN(DIV, K(1), x);
}

kiln_lx *kiln_scalar_dropout(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  double training = 0;
  if (n->nin > 2 && n->in[2]) training = kiln_dtype_load_f(n->in[2]->dtype, n->in[2]->data, 0);
  if (training != 0) {
    double ratio = n->nin > 1 && n->in[1] ? kiln_dtype_load_f(n->in[1]->dtype, n->in[1]->data, 0) : 0.5;
    if (ratio != 0) {
      kiln_lower_fail(L, n, "training-mode Dropout (random masks) is not supported; export the model in eval mode");
      return NULL;
    }
  }
  return in[0];
}

int kiln_dropout_mask_wanted(const kiln_node *n) {
  const kiln_value *m = n->nout > 1 ? n->out[1] : NULL;
  return m && (m->uses > 0 || m->is_output || m->aliases);
}

/* Dropout in inference mode passes its input through: without the mask
 * output (or with one nothing reads: exporters name it anyway, as the
 * float16 SqueezeNet's last Dropout) it is a copy (a view when views.c
 * allows, so no kernel), with the mask an elementwise kernel writing
 * both.  Training mode with a nonzero ratio is refused
 * (kiln_scalar_dropout). */
int kiln_lower_dropout(kiln_lctx *L, const kiln_node *n) {
  if (kiln_dropout_mask_wanted(n)) return kiln_lower_elementwise(L, n);
  if (!kiln_scalar_dropout(L, n, (kiln_lx *[]){kiln_lx_const_f(&L->b, KILN_DT_F32, 0)})) return -1;
  return kiln_lower_copy(L, n);
}

/* Cast: float -> int truncates toward zero (C semantics, as ONNX Runtime);
 * anything -> bool is "!= 0". */
kiln_lx *kiln_scalar_cast(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_cast *a = n->attrs;
  kiln_dtype to = (kiln_dtype)a->to;
  kiln_lx *x = in[0];
  if (to == KILN_DT_BOOL) {
    kiln_lx *w = kiln_lx_cast(B, kiln_lower_ctype(x->dtype), x);
    return kiln_lx_bin(B, KILN_BIN_NE, w, kiln_lx_const_f(B, w->dtype, 0));
  }
  return kiln_lx_cast(B, kiln_lower_ctype(to), kiln_lx_cast(B, kiln_lower_ctype(x->dtype), x));
}

/* kiln.RoundTo: through the narrow type `to` and back (f32 -> f16 -> f32),
 * never folded away: the round trip is the point (passes/widen_f16.c). */
kiln_lx *kiln_scalar_round_to(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  const kiln_attrs_cast *a = n->attrs;
  kiln_lx *x = in[0];
  return kiln_lx_cast(B, x->dtype, kiln_lx_cast(B, (kiln_dtype)a->to, x));
}

#define BINARY(fn, OPC)                                                        \
  kiln_lx *fn(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {               \
    (void)n;                                                                    \
    return kiln_lx_bin(B, KILN_BIN_##OPC, in[0], in[1]);                        \
  }
BINARY(kiln_scalar_add, ADD)
BINARY(kiln_scalar_sub, SUB)
BINARY(kiln_scalar_mul, MUL)
BINARY(kiln_scalar_div, DIV)
BINARY(kiln_scalar_equal, EQ)
BINARY(kiln_scalar_less, LT)
#undef BINARY

kiln_lx *kiln_scalar_greater(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  return kiln_lx_bin(B, KILN_BIN_LT, in[1], in[0]);
}

/* Pow: the exponent may have another type; the result has the base's. */
kiln_lx *kiln_scalar_pow(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  kiln_dtype t = in[0]->dtype;
  if (kiln_dtype_is_float(t)) return kiln_lx_bin(B, KILN_BIN_POW, in[0], kiln_lx_cast(B, t, in[1]));
  kiln_lx *p = kiln_lx_bin(B, KILN_BIN_POW, kiln_lx_cast(B, KILN_DT_F64, in[0]), kiln_lx_cast(B, KILN_DT_F64, in[1]));
  return kiln_lx_cast(B, t, p);
}

kiln_lx *kiln_scalar_where(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  (void)n;
  return kiln_lx_select(B, in[0], in[1], in[2]);
}

static kiln_lx *fold_inputs(kiln_lctx *L, const kiln_node *n, kiln_lx **in, kiln_lx_op op) {
  kiln_lx *acc = in[0];
  for (int k = 1; k < n->nin; k++) {
    if (op == KILN_BIN_MAX || op == KILN_BIN_MIN) acc = kiln_lower_max_nan(L, op == KILN_BIN_MAX, acc, in[k]);
    else acc = kiln_lx_bin(B, op, acc, in[k]);
  }
  return acc;
}

kiln_lx *kiln_scalar_sum(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { return fold_inputs(L, n, in, KILN_BIN_ADD); }
kiln_lx *kiln_scalar_max(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { return fold_inputs(L, n, in, KILN_BIN_MAX); }
kiln_lx *kiln_scalar_min(kiln_lctx *L, const kiln_node *n, kiln_lx **in) { return fold_inputs(L, n, in, KILN_BIN_MIN); }

kiln_lx *kiln_scalar_mean(kiln_lctx *L, const kiln_node *n, kiln_lx **in) {
  kiln_lx *s = fold_inputs(L, n, in, KILN_BIN_ADD);
  return kiln_lx_bin(B, KILN_BIN_DIV, s, kiln_lx_const_f(B, s->dtype, n->nin));
}
