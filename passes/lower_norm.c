/* Normalisations: Softmax, LogSoftmax, BatchNormalization,
 * InstanceNormalization.  Everything is computed in kiln_lower_ctype
 * (f16/bf16 in f32) with scalar locals for the statistics; each node is
 * one kernel whose outermost loop is parallel. */
#include "lower.h"

#define LB (&L->b)



static kiln_lx *bin(kiln_lctx *L, kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(LB, op, a, b); }
static kiln_lx *loc(kiln_lctx *L, int t) { return kiln_lx_local(LB, t); }
static kiln_lx *kf(kiln_lctx *L, kiln_dtype t, double v) { return kiln_lx_const_f(LB, t, v); }

static int64_t prod(const kiln_value *v, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= v->dims[i];
  return p;
}

/* Softmax / LogSoftmax over axis (or, with _coerce_2d, jointly over axes
 * [axis, rank)): the input is viewed as [outer, R, inner] and each of the
 * outer*inner rows is normalised after subtracting its max:
 *   softmax    y = exp(x - m) / sum(exp(x - m))
 *   logsoftmax y = (x - m) - log(sum(exp(x - m)))
 * Softmax stores exp(x - m) on the sum pass and scales it by 1/sum after
 * (recomputing exp instead when Y's storage is narrower than the compute
 * type). */
int kiln_lower_softmax(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_softmax *a = n->attrs;
  const kiln_value *X = n->in[0], *Y = n->out[0];
  int ax = (int)a->axis, r = X->rank;
  if (ax < 0 || ax >= r) return kiln_lower_fail(L, n, "axis %d out of range for rank %d", ax, r);
  int64_t outer = prod(X, 0, ax);
  int64_t R = a->_coerce_2d ? prod(X, ax, r) : X->dims[ax];
  int64_t inner = a->_coerce_2d ? 1 : prod(X, ax + 1, r);
  int logsm = n->op == KILN_OP_LOG_SOFTMAX;
  kiln_buf *xb = kiln_lower_buf(L, X), *yb = kiln_lower_buf(L, Y);
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  int keep_exp = !logsm && yb->dtype == ct;
  kiln_lower_begin(L, n);
  if (outer * R * inner == 0) return 0; /* empty: nothing to compute */
  kiln_nest ns = {0};
  kiln_lx *o = kiln_nest_for(L, &ns, outer, 1);
  kiln_lx *in = kiln_nest_for(L, &ns, inner, 1);
  kiln_lx *base = kiln_lx_iadd(LB, kiln_lx_imul(LB, o, R * inner), in);
#define XOFF(rr) kiln_lx_iadd(LB, base, kiln_lx_imul(LB, (rr), inner))
  /* m = max_r x */
  int m = kiln_lb_decl(LB, ct, kiln_lower_load(L, xb, base));
  kiln_lx *rr = kiln_nest_for(L, &ns, R, 0);
  kiln_lx *x = kiln_lower_load(L, xb, XOFF(rr));
  kiln_lb_assign(LB, m, kiln_lx_select(LB, bin(L, KILN_BIN_LT, loc(L, m), x), x, loc(L, m)));
  kiln_nest_end(L, &ns);
  /* s = sum_r exp(x - m) */
  int s = kiln_lb_decl(LB, ct, kf(L, ct, 0));
  rr = kiln_nest_for(L, &ns, R, 0);
  kiln_lx *e = kiln_lx_un(LB, KILN_UN_EXP, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, XOFF(rr)), loc(L, m)));
  if (keep_exp) {
    kiln_lb_store(LB, yb, XOFF(rr), e);
    e = kiln_lx_load(LB, yb, XOFF(rr));
  }
  kiln_lb_assign(LB, s, bin(L, KILN_BIN_ADD, loc(L, s), e));
  kiln_nest_end(L, &ns);
  /* normalise */
  if (logsm) {
    int ls = kiln_lb_decl(LB, ct, kiln_lx_un(LB, KILN_UN_LOG, loc(L, s)));
    rr = kiln_nest_for(L, &ns, R, 0);
    kiln_lx *v = bin(L, KILN_BIN_SUB, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, XOFF(rr)), loc(L, m)), loc(L, ls));
    kiln_lb_store(LB, yb, XOFF(rr), v);
    kiln_nest_end(L, &ns);
  } else {
    int inv = kiln_lb_decl(LB, ct, bin(L, KILN_BIN_DIV, kf(L, ct, 1), loc(L, s)));
    rr = kiln_nest_for(L, &ns, R, 0);
    kiln_lx *ev = keep_exp ? kiln_lx_load(LB, yb, XOFF(rr))
                           : kiln_lx_un(LB, KILN_UN_EXP, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, XOFF(rr)), loc(L, m)));
    kiln_lb_store(LB, yb, XOFF(rr), bin(L, KILN_BIN_MUL, ev, loc(L, inv)));
    kiln_nest_end(L, &ns);
  }
#undef XOFF
  kiln_nest_end(L, &ns);
  kiln_nest_end(L, &ns);
  return 0;
}

/* Statistics of the rows of X viewed as [.., S] at `base + (nn*nstride + s)`
 * for nn in [0, nrep), s in [0, S): mean and (population) variance into
 * new locals *mean and *var, two passes. */
static void moments(kiln_lctx *L, kiln_nest *ns, const kiln_buf *xb, kiln_lx *base, int64_t nrep, int64_t nstride,
                    int64_t S, kiln_dtype ct, int *mean, int *var) {
  double cnt = (double)nrep * (double)S;
  int sum = kiln_lb_decl(LB, ct, kf(L, ct, 0));
  kiln_lx *nn = kiln_nest_for(L, ns, nrep, 0);
  kiln_lx *s = kiln_nest_for(L, ns, S, 0);
  kiln_lx *off = kiln_lx_iadd(LB, base, kiln_lx_iadd(LB, kiln_lx_imul(LB, nn, nstride), s));
  kiln_lb_assign(LB, sum, bin(L, KILN_BIN_ADD, loc(L, sum), kiln_lower_load(L, xb, off)));
  kiln_nest_end(L, ns);
  kiln_nest_end(L, ns);
  *mean = kiln_lb_decl(LB, ct, bin(L, KILN_BIN_DIV, loc(L, sum), kf(L, ct, cnt)));
  int sq = kiln_lb_decl(LB, ct, kf(L, ct, 0));
  nn = kiln_nest_for(L, ns, nrep, 0);
  s = kiln_nest_for(L, ns, S, 0);
  off = kiln_lx_iadd(LB, base, kiln_lx_iadd(LB, kiln_lx_imul(LB, nn, nstride), s));
  kiln_lx *d = bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, off), loc(L, *mean));
  kiln_lb_assign(LB, sq, bin(L, KILN_BIN_ADD, loc(L, sq), bin(L, KILN_BIN_MUL, d, d)));
  kiln_nest_end(L, ns);
  kiln_nest_end(L, ns);
  *var = kiln_lb_decl(LB, ct, bin(L, KILN_BIN_DIV, loc(L, sq), kf(L, ct, cnt)));
}

/* y = (x - mean) * k + shift over the same view as moments(), where
 * k = scale / sqrt(var + eps) (a local). */
static void normalise(kiln_lctx *L, kiln_nest *ns, const kiln_buf *xb, const kiln_buf *yb, kiln_lx *base, int64_t nrep,
                      int64_t nstride, int64_t S, kiln_lx *mean, int k, kiln_lx *shift) {
  kiln_lx *nn = kiln_nest_for(L, ns, nrep, 0);
  kiln_lx *s = kiln_nest_for(L, ns, S, 0);
  kiln_lx *off = kiln_lx_iadd(LB, base, kiln_lx_iadd(LB, kiln_lx_imul(LB, nn, nstride), s));
  kiln_lx *v = bin(L, KILN_BIN_MUL, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, off), mean), loc(L, k));
  kiln_lb_store(LB, yb, off, bin(L, KILN_BIN_ADD, v, shift));
  kiln_nest_end(L, ns);
  kiln_nest_end(L, ns);
}

static int scale_factor(kiln_lctx *L, kiln_lx *scale, kiln_lx *var, double eps) {
  kiln_dtype ct = scale->dtype;
  kiln_lx *den = kiln_lx_un(LB, KILN_UN_SQRT, bin(L, KILN_BIN_ADD, var, kf(L, ct, eps)));
  return kiln_lb_decl(LB, ct, bin(L, KILN_BIN_DIV, scale, den));
}

/* BatchNormalization on X = [N, C, D...] (S = prod D):
 *   inference:  y = (x - mean[c]) * (scale[c] / sqrt(var[c] + eps)) + B[c]
 *   training_mode=1: mean and var are the batch statistics of channel c
 *     (population variance, over N and S); the optional outputs
 *     running_mean / running_var are input_mean * momentum +
 *     batch_mean * (1 - momentum) (and the same for var), as in the ONNX
 *     reference.
 * One kernel: c (parallel), then n, s. */
int kiln_lower_batch_norm(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_batchnorm *a = n->attrs;
  const kiln_value *X = n->in[0], *Y = n->out[0];
  int64_t N = X->dims[0], C = X->dims[1], S = prod(X, 2, X->rank);
  kiln_buf *xb = kiln_lower_buf(L, X), *yb = kiln_lower_buf(L, Y);
  kiln_buf *sb = kiln_lower_buf(L, n->in[1]), *bb = kiln_lower_buf(L, n->in[2]);
  kiln_buf *mb = kiln_lower_buf(L, n->in[3]), *vb = kiln_lower_buf(L, n->in[4]);
  kiln_buf *rmb = n->nout > 1 && n->out[1] ? kiln_lower_buf(L, n->out[1]) : NULL;
  kiln_buf *rvb = n->nout > 2 && n->out[2] ? kiln_lower_buf(L, n->out[2]) : NULL;
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  kiln_lower_begin(L, n);
  kiln_nest ns = {0};
  kiln_lx *c = kiln_nest_for(L, &ns, C, 1);
  kiln_lx *base = kiln_lx_imul(LB, c, S);
  kiln_lx *scale = kiln_lx_cast(LB, ct, kiln_lower_load(L, sb, c)), *shift = kiln_lx_cast(LB, ct, kiln_lower_load(L, bb, c));
  if (a->training_mode) {
    int mean, var;
    moments(L, &ns, xb, base, N, C * S, S, ct, &mean, &var);
    int k = scale_factor(L, scale, loc(L, var), a->epsilon);
    normalise(L, &ns, xb, yb, base, N, C * S, S, loc(L, mean), k, shift);
    double mom = a->momentum;
    if (rmb) {
      kiln_lx *old = kiln_lx_cast(LB, ct, kiln_lower_load(L, mb, c));
      kiln_lb_store(LB, rmb, c,
                    bin(L, KILN_BIN_ADD, bin(L, KILN_BIN_MUL, old, kf(L, ct, mom)),
                        bin(L, KILN_BIN_MUL, loc(L, mean), kf(L, ct, 1 - mom))));
    }
    if (rvb) {
      kiln_lx *old = kiln_lx_cast(LB, ct, kiln_lower_load(L, vb, c));
      kiln_lb_store(LB, rvb, c,
                    bin(L, KILN_BIN_ADD, bin(L, KILN_BIN_MUL, old, kf(L, ct, mom)),
                        bin(L, KILN_BIN_MUL, loc(L, var), kf(L, ct, 1 - mom))));
    }
  } else {
    int k = scale_factor(L, scale, kiln_lx_cast(LB, ct, kiln_lower_load(L, vb, c)), a->epsilon);
    int mean = kiln_lb_decl(LB, ct, kiln_lx_cast(LB, ct, kiln_lower_load(L, mb, c)));
    normalise(L, &ns, xb, yb, base, N, C * S, S, loc(L, mean), k, shift);
    /* inference: the running statistics pass through unchanged */
    if (rmb) kiln_lb_store(LB, rmb, c, kiln_lower_load(L, mb, c));
    if (rvb) kiln_lb_store(LB, rvb, c, kiln_lower_load(L, vb, c));
  }
  kiln_nest_end(L, &ns);
  return 0;
}

/* InstanceNormalization on X = [N, C, D...]: each (n, c) row of S = prod D
 * elements is normalised by its own mean and population variance, then
 * y = (x - mean) * (scale[c] / sqrt(var + eps)) + B[c].
 * One kernel: nc = n*C + c (parallel), then s. */
int kiln_lower_instance_norm(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_epsilon *a = n->attrs;
  const kiln_value *X = n->in[0], *Y = n->out[0];
  int64_t N = X->dims[0], C = X->dims[1], S = prod(X, 2, X->rank);
  kiln_buf *xb = kiln_lower_buf(L, X), *yb = kiln_lower_buf(L, Y);
  kiln_buf *sb = kiln_lower_buf(L, n->in[1]), *bb = kiln_lower_buf(L, n->in[2]);
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  kiln_lower_begin(L, n);
  kiln_nest ns = {0};
  kiln_lx *nc = kiln_nest_for(L, &ns, N * C, 1);
  kiln_lx *c = C == 1 ? kiln_lx_const_i(LB, 0) : N == 1 ? nc : bin(L, KILN_BIN_REM, nc, kiln_lx_const_i(LB, C));
  kiln_lx *base = kiln_lx_imul(LB, nc, S);
  kiln_lx *scale = kiln_lx_cast(LB, ct, kiln_lower_load(L, sb, c)), *shift = kiln_lx_cast(LB, ct, kiln_lower_load(L, bb, c));
  int mean, var;
  moments(L, &ns, xb, base, 1, 0, S, ct, &mean, &var);
  int k = scale_factor(L, scale, loc(L, var), a->epsilon);
  normalise(L, &ns, xb, yb, base, 1, 0, S, loc(L, mean), k, shift);
  kiln_nest_end(L, &ns);
  return 0;
}
