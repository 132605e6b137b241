/* Gradients of Conv and ConvTranspose (ops.def `grad`; contract: grad.h),
 * 1-3 spatial dims, groups, strides, dilations, asymmetric pads.
 *
 * Shape inference has made the window attributes canonical (explicit
 * kernel_shape, strides, dilations, pads; auto_pad NOTSET; ConvTranspose's
 * output_shape and output_padding folded into its pads and output dims),
 * so both work from pads and the shapes alone.  With s, d, pb, pe, dk =
 * (K-1)*d + 1 per spatial dim:
 *
 * Conv Y = Conv(X, W) + B, W [M, C/G, K]:
 *   dX = ConvTranspose(dY, W): tap k carries dY[o] back to X[o*s + k*d - pb],
 *        exactly the positions Conv read; same group/strides/dilations/pads,
 *        output_padding = in + pb + pe - dk - s*(out - 1) (in [0, s): the
 *        input positions past the last window, which get no gradient) so the
 *        result has X's exact shape;
 *   dW = kiln.ConvGradWeight(X, dY) (lower_conv_grad.c);
 *   dB = dY summed over batch and spatial axes.
 * ConvTranspose Y = ConvT(X, W) + B, W [C, M/G, K]: Y[o] takes X[t] * W
 *   through tap k where o = t*s + k*d - pb, so
 *   dX = Conv(dY, W) with the same group/strides/dilations and pads pb and
 *        pe' = (in-1)*s + dk - out - pb, which makes its output exactly X's
 *        size; when pe' < 0 the last -pe' positions of dY were never
 *        reached from X (output_shape larger than the natural size) and are
 *        sliced off first;
 *   dW = kiln.ConvGradWeight(dY, X) with the same attributes: the roles of
 *        input and output swapped, its [channels of X, channels of dY / G,
 *        K] result is W's layout (group of X channel c: c / (C/G), reading
 *        dY channels grp*(M/G) + m');
 *   dB as above.
 *
 * A Conv whose one window covers the whole input (group 1, no pads, no
 * dilation, kernel = input size, so every output is 1 x ... x 1: LeNet's
 * C5, a classifier written as a conv) is a matrix product per sample,
 * and so are its gradients: with dY2 [N, M], X2 [N, C*K] and W2 [M, C*K]
 * the flattened tensors, dW = dY2^T X2 and dX = dY2 W2 (Gemm).  The
 * windowed forms would work too, but their schedules run a reduction over
 * the batch of 1 x 1 windows at a few percent of a Gemm's speed. */
#include <string.h>

#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)           \
  do {                   \
    if (!(x)) return -1; \
  } while (0)

static kiln_ints ints_copy(kiln_grad_ctx *c, int k, const int64_t *v) {
  int64_t *p = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)(k ? k : 1), sizeof *p);
  for (int i = 0; i < k; i++) p[i] = v[i];
  return (kiln_ints){k, p};
}

/* A node of op (Conv, ConvTranspose, kiln.ConvGradWeight) on a and b with
 * the forward node's window and the given pads; output_padding (may be
 * NULL) for ConvTranspose.  Returns its output. */
static kiln_value *windowed(kiln_grad_ctx *c, const kiln_node *n, kiln_op op, kiln_value *a, kiln_value *b,
                            const int64_t *pads, const int64_t *out_pad) {
  const kiln_attrs_conv *fa = n->attrs;
  int sp = fa->kernel_shape.n;
  kiln_node *m = kiln_grad_node(c, op, 2, 1);
  kiln_attrs_conv *at = m->attrs;
  at->group = fa->group;
  at->kernel_shape = ints_copy(c, sp, fa->kernel_shape.v);
  at->strides = ints_copy(c, sp, fa->strides.v);
  at->dilations = ints_copy(c, sp, fa->dilations.v);
  at->pads = ints_copy(c, 2 * sp, pads);
  if (out_pad) at->output_padding = ints_copy(c, sp, out_pad);
  kiln_node_set_input(m, 0, a);
  kiln_node_set_input(m, 1, b);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* The attributes in canonical form with static spatial dims on both sides. */
static int check_canonical(kiln_grad_ctx *c, const kiln_node *n) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  int sp = x->rank - 2;
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp ||
      strcmp(a->auto_pad, "NOTSET"))
    return kiln_grad_fail(c, "window attributes are not in canonical form (run shape inference first)");
  for (int i = 0; i < x->rank; i++)
    if (KILN_DIM_IS_SYM(x->dims[i]) || KILN_DIM_IS_SYM(y->dims[i]))
      return kiln_grad_fail(c, "needs static shapes: bind the symbolic dims (--dim NAME=N, --batch N)");
  return 0;
}

/* dB: dY summed over every axis but the channel one. */
static kiln_value *bias_grad(kiln_grad_ctx *c, kiln_value *dy) {
  int64_t axes[KILN_MAX_RANK];
  int na = 0;
  for (int i = 0; i < dy->rank; i++)
    if (i != 1) axes[na++] = i;
  return kiln_grad_sum_axes(c, dy, na, axes, 0);
}

static int same_dims(const kiln_value *a, const kiln_value *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* Whether conv node n's only window covers its whole input (see the top). */
static int one_dense_window(const kiln_node *n) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0];
  int sp = x->rank - 2;
  if (a->group != 1) return 0;
  for (int i = 0; i < sp; i++)
    if (a->pads.v[i] || a->pads.v[sp + i] || a->dilations.v[i] != 1 || a->kernel_shape.v[i] != x->dims[2 + i]) return 0;
  return 1;
}

static kiln_value *flatten2(kiln_grad_ctx *c, kiln_value *v) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_FLATTEN, 1, 1);
  ((kiln_attrs_flatten *)m->attrs)->axis = 1;
  kiln_node_set_input(m, 0, v);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static kiln_value *gemm(kiln_grad_ctx *c, kiln_value *a, kiln_value *b, int ta) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_GEMM, 2, 1);
  kiln_attrs_gemm *at = m->attrs;
  at->transA = ta;
  at->alpha = 1;
  at->beta = 1;
  kiln_node_set_input(m, 0, a);
  kiln_node_set_input(m, 1, b);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static int dense_window_grads(kiln_grad_ctx *c, const kiln_node *n, kiln_value *g, kiln_value **dx) {
  kiln_value *x = n->in[0], *w = n->in[1], *g2, *p;
  TRY(g2 = flatten2(c, g));
  if (WANT(0)) {
    kiln_value *w2;
    TRY(w2 = flatten2(c, w));
    TRY(p = gemm(c, g2, w2, 0));
    TRY(dx[0] = kiln_grad_reshape_like(c, p, x));
  }
  if (WANT(1)) {
    kiln_value *x2;
    TRY(x2 = flatten2(c, x));
    TRY(p = gemm(c, g2, x2, 1));
    TRY(dx[1] = kiln_grad_reshape_like(c, p, w));
  }
  if (WANT(2)) TRY(dx[2] = bias_grad(c, g));
  return 0;
}

int kiln_grad_conv(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (check_canonical(c, n)) return -1;
  const kiln_attrs_conv *a = n->attrs;
  kiln_value *x = n->in[0], *w = n->in[1], *g = dy[0];
  int sp = x->rank - 2;
  if (one_dense_window(n)) return dense_window_grads(c, n, g, dx);
  if (WANT(0)) {
    int64_t op[3];
    for (int i = 0; i < sp; i++) {
      int64_t dk = (a->kernel_shape.v[i] - 1) * a->dilations.v[i] + 1, s = a->strides.v[i];
      op[i] = x->dims[2 + i] + a->pads.v[i] + a->pads.v[sp + i] - dk - s * (g->dims[2 + i] - 1);
      if (op[i] < 0 || op[i] >= s) return kiln_grad_fail(c, "internal: output_padding %lld outside [0, %lld)", (long long)op[i], (long long)s);
    }
    TRY(dx[0] = windowed(c, n, KILN_OP_CONV_TRANSPOSE, g, w, a->pads.v, op));
    if (!same_dims(dx[0], x)) return kiln_grad_fail(c, "internal: the input gradient's shape differs from X's");
  }
  if (WANT(1)) TRY(dx[1] = windowed(c, n, KILN_OP_CONV_GRAD_WEIGHT, x, g, a->pads.v, NULL));
  if (WANT(2)) TRY(dx[2] = bias_grad(c, g));
  return 0;
}

int kiln_grad_conv_transpose(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (check_canonical(c, n)) return -1;
  const kiln_attrs_conv *a = n->attrs;
  kiln_value *x = n->in[0], *w = n->in[1], *g = dy[0];
  int sp = x->rank - 2;
  if (WANT(2)) TRY(dx[2] = bias_grad(c, g));
  if (!WANT(0) && !WANT(1)) return 0;
  int64_t pads[6], ends[3], axes[3];
  int cut = 0;
  for (int i = 0; i < sp; i++) {
    int64_t dk = (a->kernel_shape.v[i] - 1) * a->dilations.v[i] + 1, s = a->strides.v[i];
    int64_t reach = (x->dims[2 + i] - 1) * s + dk - a->pads.v[i]; /* dY positions X reaches: [0, reach) */
    if (reach < 1) return kiln_grad_fail(c, "no output position along spatial dim %d receives anything from X", i);
    pads[i] = a->pads.v[i];
    pads[sp + i] = reach - g->dims[2 + i];
    axes[i] = 2 + i;
    ends[i] = g->dims[2 + i];
    if (pads[sp + i] < 0) { /* positions past `reach`: only the bias reached them */
      ends[i] = reach;
      pads[sp + i] = 0;
      cut = 1;
    }
  }
  kiln_value *gr = g;
  if (cut) {
    int64_t zeros[3] = {0, 0, 0};
    kiln_value *in[4] = {g, kiln_grad_ints(c, sp, zeros), kiln_grad_ints(c, sp, ends), kiln_grad_ints(c, sp, axes)};
    TRY(gr = kiln_grad_apply(c, KILN_OP_SLICE, 4, in));
  }
  if (WANT(0)) {
    TRY(dx[0] = windowed(c, n, KILN_OP_CONV, gr, w, pads, NULL));
    if (!same_dims(dx[0], x)) return kiln_grad_fail(c, "internal: the input gradient's shape differs from X's");
  }
  if (WANT(1)) TRY(dx[1] = windowed(c, n, KILN_OP_CONV_GRAD_WEIGHT, gr, x, pads, NULL));
  return 0;
}
