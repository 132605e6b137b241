/* Gradients of the normalisations and Dropout (ops.def `grad`; see grad.h
 * for the contract): BatchNormalization (training and inference mode),
 * InstanceNormalization, LRN, Dropout.
 *
 * All of them are built from existing ops, not from dedicated kernels:
 * the backward graph is then elementwise ops (which the fusion pass
 * merges into few kernels) around a handful of ReduceSums (accurate sums,
 * lower_sum.c) and, for LRN, two AveragePools; every piece is an op whose
 * forward is already tested against ONNX Runtime.  A fused
 * kiln.BatchNormGrad kernel would read X and dY fewer times (it is a
 * possible later optimisation, the formula below is its specification).
 *
 * Normalisation over the reduction axes R (BatchNorm: N and the spatial
 * dims; InstanceNorm: the spatial dims), M elements per statistic,
 *   xhat = (x - mean) * inv,  inv = 1 / sqrt(var + eps)  (population var)
 *   y    = scale[c] * xhat + B[c]
 * gives (the standard result, the batch statistics depending on x):
 *   dB[c]     = sum over N, spatial of dy
 *   dscale[c] = sum over N, spatial of dy * xhat
 *   dx        = scale[c] * inv * (dy - mean_R(dy) - xhat * mean_R(dy * xhat))
 * The statistics are recomputed from X here (two-pass variance, as the
 * forward), not read from the forward's optional saved_mean/saved_var.
 * BatchNorm in inference mode (frozen layers) is a per-channel affine map
 * y = x * k[c] + (B[c] - mean[c] * k[c]), k = scale / sqrt(var + eps):
 *   dx = dy * k,  dscale = sum dy * (x - mean) / sqrt(var + eps),  dB = sum dy.
 * The running statistics are state, not parameters: no gradient flows
 * into input_mean/input_var, and the running/saved statistics outputs
 * pass none back (autodiff refuses a loss that depends on them). */
#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)           \
  do {                   \
    if (!(x)) return -1; \
  } while (0)

static kiln_value *mul(kiln_grad_ctx *c, kiln_value *a, kiln_value *b) { return a && b ? kiln_grad_apply2(c, KILN_OP_MUL, a, b) : NULL; }
static kiln_value *sub(kiln_grad_ctx *c, kiln_value *a, kiln_value *b) { return a && b ? kiln_grad_apply2(c, KILN_OP_SUB, a, b) : NULL; }
static kiln_value *add(kiln_grad_ctx *c, kiln_value *a, kiln_value *b) { return a && b ? kiln_grad_apply2(c, KILN_OP_ADD, a, b) : NULL; }
static kiln_value *scal(kiln_grad_ctx *c, kiln_value *a, double k) {
  return a ? kiln_grad_apply2(c, KILN_OP_MUL, a, kiln_grad_scalar(c, a->dtype, k)) : NULL;
}

/* A per-channel [C] value v reshaped to [C, 1, ...] (rank r - 1), so that
 * it broadcasts along axis 1 of a rank-r tensor. */
static kiln_value *per_channel(kiln_grad_ctx *c, kiln_value *v, int r) {
  if (!v) return NULL;
  int64_t d[KILN_MAX_RANK];
  d[0] = v->dims[0];
  for (int i = 1; i < r - 1; i++) d[i] = 1;
  return r - 1 == 1 ? v : kiln_grad_apply2(c, KILN_OP_RESHAPE, v, kiln_grad_ints(c, r - 1, d));
}

/* ReduceSum of x over axes, keepdims (NULL in, NULL out) */
static kiln_value *sum_keep(kiln_grad_ctx *c, kiln_value *x, int na, const int64_t *ax) {
  return x ? kiln_grad_sum_axes(c, x, na, ax, 1) : NULL;
}

/* 1 / sqrt(v + eps) */
static kiln_value *inv_std(kiln_grad_ctx *c, kiln_value *var, double eps) {
  if (!var) return NULL;
  kiln_value *s = add(c, var, kiln_grad_scalar(c, var->dtype, eps));
  s = s ? kiln_grad_apply1(c, KILN_OP_SQRT, s) : NULL;
  return s ? kiln_grad_apply1(c, KILN_OP_RECIPROCAL, s) : NULL;
}

/* sum of x over the channel-reducing axes [0, 2, ...] as a [C] value */
static kiln_value *channel_sum(kiln_grad_ctx *c, kiln_value *x) {
  if (!x) return NULL;
  int64_t ax[KILN_MAX_RANK];
  int na = 0;
  ax[na++] = 0;
  for (int i = 2; i < x->rank; i++) ax[na++] = i;
  return kiln_grad_sum_axes(c, x, na, ax, 0);
}

/* The training-mode (batch statistics) gradient shared by BatchNorm
 * (stats over axes [0, 2, ...]) and InstanceNorm (over [2, ...]). */
static int norm_grad(kiln_grad_ctx *c, const kiln_node *n, kiln_value *dy, kiln_value **dx, double eps, int batch) {
  kiln_value *x = n->in[0];
  int r = x->rank;
  if (r < 2) return kiln_grad_fail(c, "X must have rank >= 2, has %d", r);
  int64_t ax[KILN_MAX_RANK], M = 1;
  int na = 0;
  if (batch) ax[na++] = 0, M *= x->dims[0];
  for (int i = 2; i < r; i++) ax[na++] = i, M *= x->dims[i];
  kiln_dtype t = x->dtype;
  kiln_value *invM = kiln_grad_scalar(c, t, 1.0 / (double)M);
  /* the statistics, as the forward computes them: mean, then the mean
   * square deviation from it */
  kiln_value *mean = na ? mul(c, sum_keep(c, x, na, ax), invM) : x;
  kiln_value *xc = sub(c, x, mean);
  kiln_value *var = na ? mul(c, sum_keep(c, mul(c, xc, xc), na, ax), invM) : mul(c, xc, xc);
  TRY(var);
  kiln_value *inv = inv_std(c, var, eps);
  kiln_value *xhat = mul(c, xc, inv);
  kiln_value *dyx = mul(c, dy, xhat);
  TRY(dyx);
  if (WANT(0)) {
    kiln_value *mdy = na ? mul(c, sum_keep(c, dy, na, ax), invM) : dy;
    kiln_value *mdyx = na ? mul(c, sum_keep(c, dyx, na, ax), invM) : dyx;
    kiln_value *inner = sub(c, sub(c, dy, mdy), mul(c, xhat, mdyx));
    TRY(inner);
    kiln_value *k = mul(c, per_channel(c, n->in[1], r), inv);
    TRY(dx[0] = mul(c, k, inner));
  }
  if (WANT(1)) TRY(dx[1] = channel_sum(c, dyx));
  if (WANT(2)) TRY(dx[2] = channel_sum(c, dy));
  return 0;
}

int kiln_grad_batch_norm(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_batchnorm *a = n->attrs;
  for (int k = 1; k < n->nout; k++)
    if (dy[k])
      return kiln_grad_fail(c, "the loss depends on output %d (a running or saved statistic), through which kiln "
                            "passes no gradient", k);
  if (WANT(3) || WANT(4))
    return kiln_grad_fail(c, "input_mean/input_var are running statistics (state), not trainable parameters");
  if (!dy[0]) return 0;
  if (a->training_mode) return norm_grad(c, n, dy[0], dx, a->epsilon, 1);
  /* inference mode: a per-channel affine map */
  kiln_value *x = n->in[0];
  int r = x->rank;
  kiln_value *inv = per_channel(c, inv_std(c, n->in[4], a->epsilon), r);
  TRY(inv);
  if (WANT(0)) TRY(dx[0] = mul(c, dy[0], mul(c, per_channel(c, n->in[1], r), inv)));
  if (WANT(1)) {
    kiln_value *xhat = mul(c, sub(c, x, per_channel(c, n->in[3], r)), inv);
    TRY(dx[1] = channel_sum(c, mul(c, dy[0], xhat)));
  }
  if (WANT(2)) TRY(dx[2] = channel_sum(c, dy[0]));
  return 0;
}

int kiln_grad_instance_norm(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_epsilon *a = n->attrs;
  return norm_grad(c, n, dy[0], dx, a->epsilon, 0);
}

/* x [N, C, D...] as [N, 1, C, S] (S = prod D), and AveragePool over the
 * channel axis with a window of `size` padded by lo/hi, count_include_pad
 * (so every output is the window's sum / size), back in x's shape. */
static kiln_value *channel_window_mean(kiln_grad_ctx *c, kiln_value *v, int64_t size, int64_t lo, int64_t hi) {
  if (!v) return NULL;
  int64_t S = 1;
  for (int i = 2; i < v->rank; i++) S *= v->dims[i];
  kiln_value *r = kiln_grad_apply2(c, KILN_OP_RESHAPE, v, kiln_grad_ints(c, 4, (int64_t[]){v->dims[0], 1, v->dims[1], S}));
  if (!r) return NULL;
  kiln_graph *g = kiln_grad_graph(c);
  int64_t *k = kiln_arena_array(&g->arena, 2, sizeof *k), *p = kiln_arena_array(&g->arena, 4, sizeof *p);
  k[0] = size, k[1] = 1;
  p[0] = lo, p[1] = 0, p[2] = hi, p[3] = 0;
  kiln_node *m = kiln_grad_node(c, KILN_OP_AVERAGE_POOL, 1, 1);
  kiln_attrs_pool *a = m->attrs;
  a->kernel_shape = (kiln_ints){2, k};
  a->pads = (kiln_ints){4, p};
  a->count_include_pad = 1;
  kiln_node_set_input(m, 0, r);
  if (kiln_grad_emit(c, m, 1)) return NULL;
  return kiln_grad_reshape_like(c, m->out[0], v);
}

/* LRN: y_j = x_j * b_j^-beta, b_j = bias + alpha/size * sum_{i in W(j)} x_i^2,
 * W(j) = [j - before, j + after] (before = floor((size-1)/2)) clipped to
 * the channels.  Then
 *   dx_k = dy_k b_k^-beta
 *          - 2 alpha beta / size * x_k * sum_{j : k in W(j)} dy_j x_j b_j^(-beta-1)
 * and k in W(j) iff j in [k - after, k + before]: the same channel window
 * mirrored, i.e. an AveragePool (sum / size) with the pads swapped.  b is
 * recomputed with the forward's own window (an AveragePool padded
 * before/after, times alpha). */
int kiln_grad_lrn(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  const kiln_attrs_lrn *a = n->attrs;
  kiln_value *x = n->in[0], *g = dy[0];
  if (x->rank < 3) return kiln_grad_fail(c, "the gradient of LRN needs X of rank >= 3, has %d", x->rank);
  int64_t size = a->size, before = (size - 1) / 2, after = size - 1 - before;
  kiln_dtype t = x->dtype;
  kiln_value *b = channel_window_mean(c, mul(c, x, x), size, before, after);
  b = add(c, scal(c, b, a->alpha), kiln_grad_scalar(c, t, a->bias));
  TRY(b);
  kiln_value *p = kiln_grad_apply2(c, KILN_OP_POW, b, kiln_grad_scalar(c, t, -(double)a->beta)); /* b^-beta */
  TRY(p);
  kiln_value *z = kiln_grad_apply2(c, KILN_OP_DIV, mul(c, mul(c, g, x), p), b); /* dy x b^(-beta-1) */
  TRY(z);
  kiln_value *zs = channel_window_mean(c, z, size, after, before);
  kiln_value *corr = scal(c, mul(c, x, zs), 2.0 * (double)a->alpha * (double)a->beta);
  TRY(dx[0] = sub(c, mul(c, g, p), corr));
  return 0;
}

/* Dropout: in inference mode (or ratio 0) the identity.  In a training
 * step a Dropout with a nonzero ratio never gets here: the train pass has
 * made it Y = X * mask (passes/train_dropout.c), whose gradient is Mul's,
 * dX = dY * mask, with the mask the forward drew.  A training-mode Dropout
 * differentiated outside the train pass has no mask kiln can compute (its
 * forward is refused too, passes/lower_elementwise.c): a clear error
 * rather than the identity. */
int kiln_grad_dropout(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0) || !dy[0]) return 0;
  double training = 0, ratio = 0.5;
  if (n->nin > 2 && n->in[2] && n->in[2]->data) training = kiln_dtype_load_f(n->in[2]->dtype, n->in[2]->data, 0);
  if (n->nin > 1 && n->in[1] && n->in[1]->data) ratio = kiln_dtype_load_f(n->in[1]->dtype, n->in[1]->data, 0);
  if (training == 0 || ratio == 0) {
    TRY(dx[0] = kiln_grad_reshape_like(c, dy[0], n->in[0]));
    return 0;
  }
  return kiln_grad_fail(c, "training-mode Dropout (ratio %g) outside a training step has no mask; the train pass "
                        "(kiln train, --train) draws one, or export the model with Dropout in eval mode", ratio);
}
