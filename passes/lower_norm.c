/* Normalisations: Softmax, LogSoftmax, BatchNormalization,
 * InstanceNormalization.  Everything is computed in kiln_lower_ctype
 * (f16/bf16 in f32) with scalar locals for the statistics; each node is
 * one kernel whose outermost loop is parallel.  Softmax's max is a MAX
 * reduction (ir/loop.h) and sums (softmax denominators, means, variances)
 * are accurate sums (lower_sum.c): long float32 sums are added in blocks
 * into a float64 total (expand_reduce.c). */
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

/* exp(x[base + r*inner] - m). */
static kiln_lx *softmax_exp(kiln_lctx *L, const kiln_buf *xb, kiln_lx *off, int m) {
  return kiln_lower_exp(L, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, off), loc(L, m)));
}

/* Softmax / LogSoftmax over axis (or, with _coerce_2d, jointly over axes
 * [axis, rank)): the input is viewed as [outer, R, inner] and each of the
 * outer*inner rows is normalised after subtracting its max:
 *   softmax    y = exp(x - m) / sum(exp(x - m))
 *   logsoftmax y = (x - m) - log(sum(exp(x - m)))
 * The sum is an accurate sum (lower_sum.c: a long row is added in float32
 * blocks into a float64 total).
 * Softmax stores exp(x - m) into Y in a loop of its own, which vectorises
 * (the sum after it, a strict in-order reduction, does not: with the exp
 * inside it, 1000 classes took 0.024 ms, 60 scalar operations a class),
 * sums Y and scales it by 1/sum (recomputing exp instead when Y's storage
 * is narrower than the compute type). */
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
  int m = kiln_lb_reduce_begin(LB, KILN_RED_MAX, ct, kiln_lower_load(L, xb, base), (kiln_sched){0});
  kiln_lx *rr = kiln_nest_for(L, &ns, R, 0);
  kiln_lb_combine(LB, m, kiln_lower_load(L, xb, XOFF(rr)));
  kiln_nest_end(L, &ns);
  kiln_lb_reduce_end(LB);
  /* s = sum_r exp(x - m), accurately (lower_sum.c) */
  if (keep_exp) {
    rr = kiln_lx_index(LB, kiln_lb_for(LB, R, (kiln_sched){0}));
    kiln_lb_store(LB, yb, XOFF(rr), softmax_exp(L, xb, XOFF(rr), m));
    kiln_lb_end(LB);
  }
  int sum = kiln_sum_begin(L, ct, R);
  rr = kiln_lx_index(LB, kiln_lb_for(LB, R, (kiln_sched){0}));
  kiln_lb_combine(LB, sum, keep_exp ? kiln_lx_load(LB, yb, XOFF(rr)) : softmax_exp(L, xb, XOFF(rr), m));
  kiln_lb_end(LB);
  kiln_lb_reduce_end(LB);
  int s = kiln_lb_decl(LB, ct, kiln_sum_result(L, sum, ct, NULL));
  /* normalise */
  if (logsm) {
    int ls = kiln_lb_decl(LB, ct, kiln_lx_un(LB, KILN_UN_LOG, loc(L, s)));
    rr = kiln_nest_for(L, &ns, R, 0);
    kiln_lx *v = bin(L, KILN_BIN_SUB, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, XOFF(rr)), loc(L, m)), loc(L, ls));
    kiln_lower_store_flat(L, n, 0, XOFF(rr), v);
    kiln_nest_end(L, &ns);
  } else {
    int inv = kiln_lb_decl(LB, ct, bin(L, KILN_BIN_DIV, kf(L, ct, 1), loc(L, s)));
    rr = kiln_nest_for(L, &ns, R, 0);
    kiln_lx *ev = keep_exp ? kiln_lx_load(LB, yb, XOFF(rr))
                           : kiln_lower_exp(L, bin(L, KILN_BIN_SUB, kiln_lower_load(L, xb, XOFF(rr)), loc(L, m)));
    kiln_lower_store_flat(L, n, 0, XOFF(rr), bin(L, KILN_BIN_MUL, ev, loc(L, inv)));
    kiln_nest_end(L, &ns);
  }
#undef XOFF
  kiln_nest_end(L, &ns);
  kiln_nest_end(L, &ns);
  return 0;
}

/* The mean as an unevaluated sum hi + lo of two ct values (lo: a local,
 * or -1 when the mean came from a short sum and is hi alone).  Deviations
 * x - mean are then (x - hi) - lo: for data with a large common offset
 * (1000 + U(0,1)) the float32 mean alone is off by up to half an ulp of
 * 1000 (3e-5), which a float32 x - mean keeps and the normalisation divides
 * by the (small) standard deviation; hi + lo carries the float64 mean's
 * accuracy at one extra subtraction per element. */
typedef struct split_mean {
  int hi, lo;
} split_mean;

static kiln_lx *deviation(kiln_lctx *L, kiln_lx *x, split_mean m) {
  kiln_lx *d = bin(L, KILN_BIN_SUB, x, loc(L, m.hi));
  return m.lo < 0 ? d : bin(L, KILN_BIN_SUB, d, loc(L, m.lo));
}

typedef struct moment_term {
  const kiln_buf *xb;
  kiln_lx *base;          /* the row's first element */
  kiln_lx *shift;         /* mean pass: NULL, or x - shift */
  const split_mean *mean; /* NULL: the mean pass; else (x - mean)^2 */
} moment_term;

static kiln_lx *moment_load(kiln_lctx *L, const moment_term *t, kiln_lx *s) {
  kiln_lx *x = kiln_lower_load(L, t->xb, kiln_lx_iadd(LB, t->base, s));
  if (!t->mean) return t->shift ? bin(L, KILN_BIN_SUB, x, t->shift) : x;
  kiln_lx *d = deviation(L, x, *t->mean);
  return bin(L, KILN_BIN_MUL, d, d);
}

/* sum over nn in [0, nrep), s in [0, S) of term(base + nn*nstride + s) / cnt
 * (accurate sum, lower_sum.c) into a new local.  The mean of a long row
 * (a blocked sum) is computed as shift + sum(x - shift) / cnt with shift
 * the row's first element (the shifted-data method): with a large common
 * offset the block sums of x would round at the offset's scale (~3e-5
 * absolute for 1000 + U(0,1), two orders above what normalising by the
 * spread can tolerate), those of x - shift at the spread's scale.  Its
 * float64 result is split into hi + lo (split_mean). */
static split_mean moment(kiln_lctx *L, kiln_nest *ns, const kiln_buf *xb, kiln_lx *base, int64_t nrep, int64_t nstride,
                         int64_t S, kiln_dtype ct, const split_mean *mean) {
  kiln_dtype wt = kiln_sum_dtype(ct, nrep * S); /* f64: a long (blocked) float32 sum */
  int shift = !mean && wt != ct ? kiln_lb_decl(LB, ct, kiln_lower_load(L, xb, base)) : -1;
  int sum = kiln_sum_begin(L, ct, nrep * S);
  kiln_lx *nn = kiln_nest_for(L, ns, nrep, 0);
  moment_term t = {xb, kiln_lx_iadd(LB, base, kiln_lx_imul(LB, nn, nstride)), shift >= 0 ? loc(L, shift) : NULL, mean};
  if (S > 0) {
    kiln_lx *s = kiln_lx_index(LB, kiln_lb_for(LB, S, (kiln_sched){0}));
    kiln_lb_combine(LB, sum, moment_load(L, &t, s));
    kiln_lb_end(LB);
  }
  kiln_nest_end(L, ns);
  kiln_lb_reduce_end(LB);
  kiln_lx *cnt = kiln_lx_const_i(LB, nrep * S);
  if (shift < 0) return (split_mean){kiln_lb_decl(LB, ct, kiln_sum_result(L, sum, ct, cnt)), -1};
  kiln_lx *wide = bin(L, KILN_BIN_ADD, kiln_lx_cast(LB, wt, loc(L, shift)),
                      bin(L, KILN_BIN_DIV, loc(L, sum), kiln_lx_cast(LB, wt, cnt)));
  int w = kiln_lb_decl(LB, wt, wide);
  split_mean r = {kiln_lb_decl(LB, ct, kiln_lx_cast(LB, ct, loc(L, w))), -1};
  r.lo = kiln_lb_decl(LB, ct, kiln_lx_cast(LB, ct, bin(L, KILN_BIN_SUB, loc(L, w), kiln_lx_cast(LB, wt, loc(L, r.hi)))));
  return r;
}

/* Statistics of the rows of X viewed as [.., S] at `base + (nn*nstride + s)`
 * for nn in [0, nrep), s in [0, S): mean (split, see split_mean) and
 * (population) variance, two passes (the variance from deviations of the
 * mean, never E[x^2] - E[x]^2). */
static void moments(kiln_lctx *L, kiln_nest *ns, const kiln_buf *xb, kiln_lx *base, int64_t nrep, int64_t nstride,
                    int64_t S, kiln_dtype ct, split_mean *mean, int *var) {
  *mean = moment(L, ns, xb, base, nrep, nstride, S, ct, NULL);
  *var = moment(L, ns, xb, base, nrep, nstride, S, ct, mean).hi;
}

/* y = (x - mean) * k + shift over the same view as moments(), where
 * k = scale / sqrt(var + eps) (a local).  Each (nn, s) writes its own
 * element and assigns no local: both loops are parallel (a GPU target
 * maps them one element per thread under the channel loop). */
static void normalise(kiln_lctx *L, kiln_nest *ns, const kiln_buf *xb, const kiln_node *n, kiln_lx *base, int64_t nrep,
                      int64_t nstride, int64_t S, split_mean mean, int k, kiln_lx *shift) {
  kiln_lx *nn = kiln_nest_for(L, ns, nrep, 1);
  kiln_lx *s = kiln_nest_for(L, ns, S, 1);
  kiln_lx *off = kiln_lx_iadd(LB, base, kiln_lx_iadd(LB, kiln_lx_imul(LB, nn, nstride), s));
  kiln_lx *v = bin(L, KILN_BIN_MUL, deviation(L, kiln_lower_load(L, xb, off), mean), loc(L, k));
  kiln_lower_store_flat(L, n, 0, off, bin(L, KILN_BIN_ADD, v, shift));
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
 *     reference.  Opset < 14 files may also ask for saved_mean /
 *     saved_var (onnx_upgrade.c keeps them): the batch mean and variance,
 *     as the onnx package's _batchnorm_training_mode returns them.
 * One kernel: c (parallel), then n, s. */
int kiln_lower_batch_norm(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_batchnorm *a = n->attrs;
  const kiln_value *X = n->in[0];
  int64_t N = X->dims[0], C = X->dims[1], S = prod(X, 2, X->rank);
  kiln_buf *xb = kiln_lower_buf(L, X);
  kiln_buf *sb = kiln_lower_buf(L, n->in[1]), *bb = kiln_lower_buf(L, n->in[2]);
  kiln_buf *mb = kiln_lower_buf(L, n->in[3]), *vb = kiln_lower_buf(L, n->in[4]);
  kiln_buf *rmb = n->nout > 1 && n->out[1] ? kiln_lower_buf(L, n->out[1]) : NULL;
  kiln_buf *rvb = n->nout > 2 && n->out[2] ? kiln_lower_buf(L, n->out[2]) : NULL;
  kiln_buf *smb = n->nout > 3 && n->out[3] ? kiln_lower_buf(L, n->out[3]) : NULL;
  kiln_buf *svb = n->nout > 4 && n->out[4] ? kiln_lower_buf(L, n->out[4]) : NULL;
  if ((smb || svb) && !a->training_mode)
    return kiln_lower_fail(L, n, "outputs saved_mean/saved_var are computed only in training mode");
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  kiln_lower_begin(L, n);
  kiln_nest ns = {0};
  kiln_lx *c = kiln_nest_for(L, &ns, C, 1);
  kiln_lx *base = kiln_lx_imul(LB, c, S);
  kiln_lx *scale = kiln_lx_cast(LB, ct, kiln_lower_load(L, sb, c)), *shift = kiln_lx_cast(LB, ct, kiln_lower_load(L, bb, c));
  if (a->training_mode) {
    split_mean mean;
    int var;
    moments(L, &ns, xb, base, N, C * S, S, ct, &mean, &var);
    int k = scale_factor(L, scale, loc(L, var), a->epsilon);
    normalise(L, &ns, xb, n, base, N, C * S, S, mean, k, shift);
    double mom = a->momentum;
    /* opset < 14 training outputs: the batch statistics themselves */
    if (smb) kiln_lower_store_flat(L, n, 3, c, loc(L, mean.hi)); /* hi: the mean rounded to ct */
    if (svb) kiln_lower_store_flat(L, n, 4, c, loc(L, var));
    if (rmb) {
      kiln_lx *old = kiln_lx_cast(LB, ct, kiln_lower_load(L, mb, c));
      kiln_lower_store_flat(L, n, 1, c,
                    bin(L, KILN_BIN_ADD, bin(L, KILN_BIN_MUL, old, kf(L, ct, mom)),
                        bin(L, KILN_BIN_MUL, loc(L, mean.hi), kf(L, ct, 1 - mom))));
    }
    if (rvb) {
      kiln_lx *old = kiln_lx_cast(LB, ct, kiln_lower_load(L, vb, c));
      kiln_lower_store_flat(L, n, 2, c,
                    bin(L, KILN_BIN_ADD, bin(L, KILN_BIN_MUL, old, kf(L, ct, mom)),
                        bin(L, KILN_BIN_MUL, loc(L, var), kf(L, ct, 1 - mom))));
    }
  } else {
    int k = scale_factor(L, scale, kiln_lx_cast(LB, ct, kiln_lower_load(L, vb, c)), a->epsilon);
    split_mean mean = {kiln_lb_decl(LB, ct, kiln_lx_cast(LB, ct, kiln_lower_load(L, mb, c))), -1};
    normalise(L, &ns, xb, n, base, N, C * S, S, mean, k, shift);
    /* inference: the running statistics pass through unchanged */
    if (rmb) kiln_lower_store_flat(L, n, 1, c, kiln_lower_load(L, mb, c));
    if (rvb) kiln_lower_store_flat(L, n, 2, c, kiln_lower_load(L, vb, c));
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
  const kiln_value *X = n->in[0];
  int64_t N = X->dims[0], C = X->dims[1], S = prod(X, 2, X->rank);
  kiln_buf *xb = kiln_lower_buf(L, X);
  kiln_buf *sb = kiln_lower_buf(L, n->in[1]), *bb = kiln_lower_buf(L, n->in[2]);
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  kiln_lower_begin(L, n);
  kiln_nest ns = {0};
  kiln_lx *nc = kiln_nest_for(L, &ns, N * C, 1);
  kiln_lx *c = C == 1 ? kiln_lx_const_i(LB, 0) : N == 1 ? nc : bin(L, KILN_BIN_REM, nc, kiln_lx_const_i(LB, C));
  kiln_lx *base = kiln_lx_imul(LB, nc, S);
  kiln_lx *scale = kiln_lx_cast(LB, ct, kiln_lower_load(L, sb, c)), *shift = kiln_lx_cast(LB, ct, kiln_lower_load(L, bb, c));
  split_mean mean;
  int var;
  moments(L, &ns, xb, base, 1, 0, S, ct, &mean, &var);
  int k = scale_factor(L, scale, loc(L, var), a->epsilon);
  normalise(L, &ns, xb, n, base, 1, 0, S, mean, k, shift);
  kiln_nest_end(L, &ns);
  return 0;
}
