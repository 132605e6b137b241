/* Shape functions of convolution, pooling and matrix products.  They also
 * complete the window attributes into canonical form: kernel_shape,
 * strides, dilations and pads always explicit, auto_pad resolved to
 * NOTSET, so lowering never re-derives them. */
#include <string.h>

#include "shape.h"

static kiln_ints ints_fill(kiln_graph *g, int n, int64_t v) {
  int64_t *p = kiln_arena_array(&g->arena, (size_t)n, sizeof *p);
  for (int i = 0; i < n; i++) p[i] = v;
  return (kiln_ints){n, p};
}

/* Window geometry shared by Conv and the pools. */
typedef struct window {
  kiln_ints *kernel, *strides, *dilations, *pads;
  const char **auto_pad;
} window;

static int window_complete(kiln_shape_ctx *c, kiln_node *n, window w, int sp, const kiln_dim *kernel_from_w) {
  if (w.kernel->n == 0 && kernel_from_w) {
    int64_t *k = kiln_arena_array(&c->g->arena, (size_t)sp, sizeof *k);
    for (int i = 0; i < sp; i++) k[i] = kernel_from_w[i];
    *w.kernel = (kiln_ints){sp, k};
  }
  if (w.kernel->n != sp)
    return kiln_shape_fail(c, n, "kernel_shape has %d entries, input has %d spatial dims", w.kernel->n, sp);
  if (w.strides->n == 0) *w.strides = ints_fill(c->g, sp, 1);
  if (w.dilations->n == 0) *w.dilations = ints_fill(c->g, sp, 1);
  if (w.pads->n == 0) *w.pads = ints_fill(c->g, 2 * sp, 0);
  if (w.strides->n != sp) return kiln_shape_fail(c, n, "strides has %d entries, expected %d", w.strides->n, sp);
  if (w.dilations->n != sp) return kiln_shape_fail(c, n, "dilations has %d entries, expected %d", w.dilations->n, sp);
  if (w.pads->n != 2 * sp) return kiln_shape_fail(c, n, "pads has %d entries, expected %d", w.pads->n, 2 * sp);
  for (int i = 0; i < sp; i++) {
    if (w.kernel->v[i] < 1) return kiln_shape_fail(c, n, "kernel_shape[%d] = %lld must be positive", i, (long long)w.kernel->v[i]);
    if (w.strides->v[i] < 1) return kiln_shape_fail(c, n, "strides[%d] = %lld must be positive", i, (long long)w.strides->v[i]);
    if (w.dilations->v[i] < 1) return kiln_shape_fail(c, n, "dilations[%d] = %lld must be positive", i, (long long)w.dilations->v[i]);
    if (w.pads->v[i] < 0 || w.pads->v[i + sp] < 0) return kiln_shape_fail(c, n, "pads must not be negative");
    if (w.kernel->v[i] > (1 << 20) || w.strides->v[i] > (1 << 20) || w.dilations->v[i] > (1 << 20) ||
        w.pads->v[i] > (1 << 24) || w.pads->v[i + sp] > (1 << 24))
      return kiln_shape_fail(c, n, "window attributes are implausibly large");
  }
  const char *ap = *w.auto_pad;
  if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
    return kiln_shape_fail(c, n, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
  return 0;
}

/* A symbolic spatial extent (inspect keeps H and W symbolic): the output
 * extent is a new symbolic dim named by its formula, e.g. floor((H-1)/2)+1,
 * or the input's own when the window keeps the size. */
static int sym_window_out(kiln_shape_ctx *c, kiln_node *n, window w, int sp, int i, kiln_dim in, int ceil_mode,
                          kiln_dim *out) {
  const char *h = c->g->syms[-in - 1], *ap = *w.auto_pad;
  int plain = 1;
  for (const char *p = h; *p; p++) plain &= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
  const char *x = plain ? h : kiln_arena_printf(&c->g->arena, "(%s)", h);
  long long k = w.kernel->v[i], s = w.strides->v[i], d = w.dilations->v[i], dk = (k - 1) * d + 1;
  const char *name;
  if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
    name = s == 1 ? NULL : kiln_arena_printf(&c->g->arena, "ceil(%s/%lld)", x, s);
  } else {
    long long pads = strcmp(ap, "VALID") ? (long long)(w.pads->v[i] + w.pads->v[i + sp]) : 0, off = pads - dk;
    if (s == 1) name = off + 1 == 0 ? NULL : kiln_arena_printf(&c->g->arena, "%s%+lld", x, off + 1);
    else if (off == 0) name = kiln_arena_printf(&c->g->arena, "%s(%s/%lld)+1", ceil_mode ? "ceil" : "floor", x, s);
    else name = kiln_arena_printf(&c->g->arena, "%s((%s%+lld)/%lld)+1", ceil_mode ? "ceil" : "floor", x, off, s);
  }
  if (!name) { *out = in; return 0; }
  int known = 0;
  for (int j = 0; j < c->g->nsyms; j++) known |= !strcmp(c->g->syms[j], name);
  if (!known && c->g->nsyms == KILN_MAX_SYMS)
    return kiln_shape_fail(c, n, "too many symbolic spatial dims: bind them (--dim NAME=N)");
  *out = kiln_graph_sym(c->g, name);
  return 0;
}

/* Output extent of a sliding window; resolves auto_pad into pads (left
 * as written when a spatial dim is symbolic: inspect does not lower). */
static int window_out(kiln_shape_ctx *c, kiln_node *n, window w, int sp, const kiln_dim *in, int ceil_mode,
                      kiln_dim *out) {
  int64_t *pads = kiln_arena_array(&c->g->arena, (size_t)(2 * sp), sizeof *pads);
  memcpy(pads, w.pads->v, (size_t)(2 * sp) * sizeof *pads);
  const char *ap = *w.auto_pad;
  int sym = 0;
  for (int i = 0; i < sp; i++) {
    if (KILN_DIM_IS_SYM(in[i])) {
      if (sym_window_out(c, n, w, sp, i, in[i], ceil_mode, &out[i])) return -1;
      sym = 1;
      continue;
    }
    int64_t k = w.kernel->v[i], s = w.strides->v[i], d = w.dilations->v[i];
    int64_t dk = (k - 1) * d + 1, o;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      o = (in[i] + s - 1) / s;
      int64_t total = (o - 1) * s + dk - in[i];
      if (total < 0) total = 0;
      int64_t small = total / 2, big = total - small;
      pads[i] = !strcmp(ap, "SAME_UPPER") ? small : big;
      pads[i + sp] = !strcmp(ap, "SAME_UPPER") ? big : small;
    } else {
      if (!strcmp(ap, "VALID")) pads[i] = pads[i + sp] = 0;
      int64_t span = in[i] + pads[i] + pads[i + sp] - dk;
      if (span < 0)
        return kiln_shape_fail(c, n, "window of extent %lld does not fit spatial dim %d of size %lld (+%lld padding)",
                               (long long)dk, i, (long long)in[i], (long long)(pads[i] + pads[i + sp]));
      o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
      /* the last window must start inside the input or its left padding */
      if (ceil_mode && (o - 1) * s >= in[i] + pads[i]) o--;
    }
    out[i] = o;
  }
  if (sym) return 0;
  *w.pads = (kiln_ints){2 * sp, pads};
  *w.auto_pad = "NOTSET";
  return 0;
}

static int check_float(kiln_shape_ctx *c, kiln_node *n, int k) {
  if (!kiln_dtype_is_float(n->in[k]->dtype))
    return kiln_shape_fail(c, n, "input '%s' must be a floating-point tensor, got %s", n->in[k]->name,
                           kiln_dtype_name(n->in[k]->dtype));
  return 0;
}

int kiln_shape_conv(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_conv *a = n->attrs;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || check_float(c, n, 0)) return -1;
  const kiln_value *x = n->in[0], *wt = n->in[1];
  int r = x->rank, sp = r - 2;
  if (r < 3 || r > 5) return kiln_shape_fail(c, n, "X must be (N, C, D1[, D2[, D3]]), got %s", kiln_shape_str(c, x));
  if (wt->rank != r)
    return kiln_shape_fail(c, n, "W %s must have the same rank as X %s", kiln_shape_str(c, wt), kiln_shape_str(c, x));
  if (x->dtype != wt->dtype) return kiln_shape_fail(c, n, "X is %s but W is %s", kiln_dtype_name(x->dtype), kiln_dtype_name(wt->dtype));
  if (a->group < 1) return kiln_shape_fail(c, n, "group must be positive, got %lld", (long long)a->group);
  kiln_dim cin = x->dims[1], m = wt->dims[0];
  if (KILN_DIM_IS_SYM(cin)) return kiln_shape_fail(c, n, "the channel dim must be static");
  if (cin % a->group || m % a->group)
    return kiln_shape_fail(c, n, "group %lld does not divide input channels %lld and output channels %lld",
                           (long long)a->group, (long long)cin, (long long)m);
  if (wt->dims[1] * a->group != cin)
    return kiln_shape_fail(c, n, "expects %lld input channels (W %s, group %lld), got %lld",
                           (long long)(wt->dims[1] * a->group), kiln_shape_str(c, wt), (long long)a->group, (long long)cin);
  if (a->kernel_shape.n)
    for (int i = 0; i < sp && i < a->kernel_shape.n; i++)
      if (a->kernel_shape.v[i] != wt->dims[2 + i])
        return kiln_shape_fail(c, n, "kernel_shape does not match W %s", kiln_shape_str(c, wt));
  if (n->nin > 2 && n->in[2]) {
    if (kiln_shape_need(c, n, 2)) return -1;
    if (n->in[2]->rank != 1 || n->in[2]->dims[0] != m)
      return kiln_shape_fail(c, n, "B must have shape [%lld], got %s", (long long)m, kiln_shape_str(c, n->in[2]));
  }
  window w = {&a->kernel_shape, &a->strides, &a->dilations, &a->pads, &a->auto_pad};
  kiln_dim out[KILN_MAX_RANK];
  if (window_complete(c, n, w, sp, wt->dims + 2) || window_out(c, n, w, sp, x->dims + 2, 0, out + 2)) return -1;
  out[0] = x->dims[0];
  out[1] = m;
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_conv_transpose(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_conv *a = n->attrs;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || check_float(c, n, 0)) return -1;
  const kiln_value *x = n->in[0], *wt = n->in[1];
  int r = x->rank, sp = r - 2;
  if (r < 3 || r > 5) return kiln_shape_fail(c, n, "X must be (N, C, D1[, D2[, D3]]), got %s", kiln_shape_str(c, x));
  if (wt->rank != r)
    return kiln_shape_fail(c, n, "W %s must have the same rank as X %s", kiln_shape_str(c, wt), kiln_shape_str(c, x));
  if (a->group < 1) return kiln_shape_fail(c, n, "group must be positive, got %lld", (long long)a->group);
  if (wt->dims[0] != x->dims[1])
    return kiln_shape_fail(c, n, "expects %lld input channels (W %s), got %lld", (long long)wt->dims[0],
                           kiln_shape_str(c, wt), (long long)x->dims[1]);
  if (x->dims[1] % a->group) return kiln_shape_fail(c, n, "group %lld does not divide input channels", (long long)a->group);
  kiln_dim m = wt->dims[1] * a->group;
  if (n->nin > 2 && n->in[2]) {
    if (kiln_shape_need(c, n, 2)) return -1;
    if (n->in[2]->rank != 1 || n->in[2]->dims[0] != m)
      return kiln_shape_fail(c, n, "B must have shape [%lld], got %s", (long long)m, kiln_shape_str(c, n->in[2]));
  }
  window w = {&a->kernel_shape, &a->strides, &a->dilations, &a->pads, &a->auto_pad};
  if (window_complete(c, n, w, sp, wt->dims + 2)) return -1;
  if (a->output_padding.n == 0) a->output_padding = ints_fill(c->g, sp, 0);
  if (a->output_padding.n != sp) return kiln_shape_fail(c, n, "output_padding has %d entries, expected %d", a->output_padding.n, sp);
  if (a->output_shape.n && a->output_shape.n != sp && a->output_shape.n != r)
    return kiln_shape_fail(c, n, "output_shape has %d entries, expected %d", a->output_shape.n, sp);
  kiln_dim out[KILN_MAX_RANK];
  int64_t *pads = kiln_arena_array(&c->g->arena, (size_t)(2 * sp), sizeof *pads);
  int64_t *opad = kiln_arena_array(&c->g->arena, (size_t)sp, sizeof *opad);
  memcpy(pads, a->pads.v, (size_t)(2 * sp) * sizeof *pads);
  memcpy(opad, a->output_padding.v, (size_t)sp * sizeof *opad);
  for (int i = 0; i < sp; i++) {
    int64_t in = x->dims[2 + i], s = a->strides.v[i], dk = (a->kernel_shape.v[i] - 1) * a->dilations.v[i] + 1;
    int64_t op = a->output_padding.v[i];
    if (KILN_DIM_IS_SYM(in)) return kiln_shape_fail(c, n, "spatial dims must be static: bind them (--dim NAME=N)");
    int64_t full = s * (in - 1) + op + dk;
    int same = !strcmp(a->auto_pad, "SAME_UPPER") || !strcmp(a->auto_pad, "SAME_LOWER");
    if (a->output_shape.n || same) {
      int64_t want = a->output_shape.n ? a->output_shape.v[a->output_shape.n - sp + i] : in * s;
      int64_t total = full - want;
      /* a target past the full extent: the excess is output padding, kept
       * in the attribute so the canonical (NOTSET) form infers it again */
      if (total < 0) opad[i] += -total, total = 0;
      /* ConvTranspose puts the odd pad at the end for SAME_UPPER */
      int upper = strcmp(a->auto_pad, "SAME_LOWER") != 0;
      pads[i] = upper ? total / 2 : total - total / 2;
      pads[i + sp] = total - pads[i];
      out[2 + i] = want;
    } else {
      if (!strcmp(a->auto_pad, "VALID")) pads[i] = pads[i + sp] = 0;
      out[2 + i] = full - pads[i] - pads[i + sp];
    }
    if (out[2 + i] < 1) return kiln_shape_fail(c, n, "output spatial dim %d would be %lld", i, (long long)out[2 + i]);
  }
  a->pads = (kiln_ints){2 * sp, pads};
  a->output_padding = (kiln_ints){sp, opad};
  a->auto_pad = "NOTSET";
  out[0] = x->dims[0];
  out[1] = m;
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

/* kiln.ConvGradWeight (X, dY -> dW), the weight gradient of Conv: the
 * window attributes are the forward Conv's (kernel_shape required: there
 * is no W to take it from), completed into canonical form like Conv's;
 * dY must have exactly the shape that Conv of X with them produces. */
int kiln_shape_conv_grad_weight(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_conv *a = n->attrs;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || check_float(c, n, 0)) return -1;
  const kiln_value *x = n->in[0], *dy = n->in[1];
  int r = x->rank, sp = r - 2;
  if (r < 3 || r > 5) return kiln_shape_fail(c, n, "X must be (N, C, D1[, D2[, D3]]), got %s", kiln_shape_str(c, x));
  if (dy->rank != r)
    return kiln_shape_fail(c, n, "dY %s must have the same rank as X %s", kiln_shape_str(c, dy), kiln_shape_str(c, x));
  if (x->dtype != dy->dtype) return kiln_shape_fail(c, n, "X is %s but dY is %s", kiln_dtype_name(x->dtype), kiln_dtype_name(dy->dtype));
  if (a->group < 1) return kiln_shape_fail(c, n, "group must be positive, got %lld", (long long)a->group);
  kiln_dim cin = x->dims[1], m = dy->dims[1];
  if (KILN_DIM_IS_SYM(cin) || KILN_DIM_IS_SYM(m)) return kiln_shape_fail(c, n, "the channel dims must be static");
  if (cin % a->group || m % a->group)
    return kiln_shape_fail(c, n, "group %lld does not divide input channels %lld and output channels %lld",
                           (long long)a->group, (long long)cin, (long long)m);
  if (x->dims[0] != dy->dims[0])
    return kiln_shape_fail(c, n, "X %s and dY %s differ in batch", kiln_shape_str(c, x), kiln_shape_str(c, dy));
  if (a->kernel_shape.n != sp)
    return kiln_shape_fail(c, n, "kernel_shape must have %d entries, got %d", sp, a->kernel_shape.n);
  window w = {&a->kernel_shape, &a->strides, &a->dilations, &a->pads, &a->auto_pad};
  kiln_dim out[KILN_MAX_RANK];
  if (window_complete(c, n, w, sp, NULL) || window_out(c, n, w, sp, x->dims + 2, 0, out + 2)) return -1;
  for (int i = 0; i < sp; i++)
    if (out[2 + i] != dy->dims[2 + i])
      return kiln_shape_fail(c, n, "dY %s does not have the spatial shape the convolution of X %s gives", kiln_shape_str(c, dy),
                             kiln_shape_str(c, x));
  out[0] = m;
  out[1] = cin / a->group;
  for (int i = 0; i < sp; i++) out[2 + i] = a->kernel_shape.v[i];
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_pool(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_pool *a = n->attrs;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  int r = x->rank, sp = r - 2;
  if (r < 3 || r > 5) return kiln_shape_fail(c, n, "X must be (N, C, D1[, D2[, D3]]), got %s", kiln_shape_str(c, x));
  window w = {&a->kernel_shape, &a->strides, &a->dilations, &a->pads, &a->auto_pad};
  kiln_dim out[KILN_MAX_RANK];
  if (window_complete(c, n, w, sp, NULL) || window_out(c, n, w, sp, x->dims + 2, (int)a->ceil_mode, out + 2)) return -1;
  out[0] = x->dims[0];
  out[1] = x->dims[1];
  kiln_shape_set(n, 0, x->dtype, r, out);
  kiln_shape_set(n, 1, KILN_DT_I64, r, out);
  return 0;
}

int kiln_shape_global_pool(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  if (x->rank < 3) return kiln_shape_fail(c, n, "X must be (N, C, D1, ...), got %s", kiln_shape_str(c, x));
  kiln_dim out[KILN_MAX_RANK];
  out[0] = x->dims[0];
  out[1] = x->dims[1];
  for (int i = 2; i < x->rank; i++) out[i] = 1;
  kiln_shape_set(n, 0, x->dtype, x->rank, out);
  return 0;
}

int kiln_shape_gemm(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_gemm *a = n->attrs;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  const kiln_value *A = n->in[0], *B = n->in[1];
  if (A->rank != 2 || B->rank != 2)
    return kiln_shape_fail(c, n, "A %s and B %s must be matrices", kiln_shape_str(c, A), kiln_shape_str(c, B));
  if (A->dtype != B->dtype) return kiln_shape_fail(c, n, "A is %s but B is %s", kiln_dtype_name(A->dtype), kiln_dtype_name(B->dtype));
  kiln_dim M = a->transA ? A->dims[1] : A->dims[0], K = a->transA ? A->dims[0] : A->dims[1];
  kiln_dim K2 = a->transB ? B->dims[1] : B->dims[0], N = a->transB ? B->dims[0] : B->dims[1];
  if (K != K2 && !KILN_DIM_IS_SYM(K) && !KILN_DIM_IS_SYM(K2))
    return kiln_shape_fail(c, n, "inner dims differ: A %s%s has K=%lld, B %s%s has K=%lld", kiln_shape_str(c, A),
                           a->transA ? "^T" : "", (long long)K, kiln_shape_str(c, B), a->transB ? "^T" : "", (long long)K2);
  kiln_dim out[2] = {M, N};
  if (n->nin > 2 && n->in[2]) {
    if (kiln_shape_need(c, n, 2)) return -1;
    kiln_value y = {0};
    y.rank = 2;
    y.dims[0] = M;
    y.dims[1] = N;
    y.name = "Y";
    kiln_dim bo[KILN_MAX_RANK];
    int br;
    if (kiln_shape_broadcast(c, n, &y, n->in[2], bo, &br)) return -1;
    if (br != 2 || bo[0] != M || bo[1] != N)
      return kiln_shape_fail(c, n, "C %s does not broadcast to [%lld,%lld]", kiln_shape_str(c, n->in[2]), (long long)M, (long long)N);
  }
  kiln_shape_set(n, 0, A->dtype, 2, out);
  return 0;
}

int kiln_shape_matmul(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  const kiln_value *A = n->in[0], *B = n->in[1];
  if (A->rank < 1 || B->rank < 1) return kiln_shape_fail(c, n, "inputs must have rank >= 1");
  if (A->dtype != B->dtype) return kiln_shape_fail(c, n, "A is %s but B is %s", kiln_dtype_name(A->dtype), kiln_dtype_name(B->dtype));
  /* numpy: 1-D operands get a dim prepended (A) / appended (B), removed after */
  kiln_value a2 = *A, b2 = *B;
  if (A->rank == 1) { a2.rank = 2; a2.dims[0] = 1; a2.dims[1] = A->dims[0]; }
  if (B->rank == 1) { b2.rank = 2; b2.dims[0] = B->dims[0]; b2.dims[1] = 1; }
  kiln_dim K = a2.dims[a2.rank - 1], K2 = b2.dims[b2.rank - 2];
  if (K != K2) return kiln_shape_fail(c, n, "inner dims differ: A %s, B %s", kiln_shape_str(c, A), kiln_shape_str(c, B));
  kiln_value ab = a2, bb = b2; /* batch parts */
  ab.rank -= 2;
  bb.rank -= 2;
  kiln_dim out[KILN_MAX_RANK];
  int r;
  if (kiln_shape_broadcast(c, n, &ab, &bb, out, &r)) return -1;
  if (r + 2 > KILN_MAX_RANK) return kiln_shape_fail(c, n, "result rank too large");
  if (A->rank > 1) out[r++] = a2.dims[a2.rank - 2];
  if (B->rank > 1) out[r++] = b2.dims[b2.rank - 1];
  kiln_shape_set(n, 0, A->dtype, r, out);
  return 0;
}

/* ---- multiply-accumulate counts (symbolic batch counted as 1) ---- */
/* MAC counts saturate at INT64_MAX: every tensor is bounded, but a count
 * multiplies an output's size by a weight's (a bound of 2^80, not 2^63).
 * Symbolic dims count as 1, as in kiln_value_numel. */
static int64_t macs_mul(int64_t a, kiln_dim b) {
  if (KILN_DIM_IS_SYM(b)) b = 1;
  return b && a > INT64_MAX / b ? INT64_MAX : a * b;
}

int64_t kiln_macs_conv(const kiln_node *n) {
  const kiln_value *y = n->out[0], *w = n->in[1];
  if (!y || y->rank < 0 || w->rank < 0) return 0;
  int64_t m = kiln_value_numel(y, 1);
  for (int i = 1; i < w->rank; i++) m = macs_mul(m, w->dims[i]); /* Cin/group * kernel */
  return m;
}

int64_t kiln_macs_conv_transpose(const kiln_node *n) {
  const kiln_value *x = n->in[0], *w = n->in[1];
  if (x->rank < 0 || w->rank < 0) return 0;
  int64_t m = kiln_value_numel(x, 1); /* each input element scatters into Cout/group * kernel outputs */
  for (int i = 1; i < w->rank; i++) m = macs_mul(m, w->dims[i]);
  return m;
}

int64_t kiln_macs_conv_grad_weight(const kiln_node *n) {
  const kiln_value *dy = n->in[1], *dw = n->out[0];
  if (!dw || dw->rank < 0 || dy->rank < 0) return 0;
  int64_t m = kiln_value_numel(dw, 1); /* each dW element sums N * output positions products */
  for (int i = 0; i < dy->rank; i++)
    if (i != 1) m = macs_mul(m, dy->dims[i]);
  return m;
}

int64_t kiln_macs_gemm(const kiln_node *n) {
  const kiln_attrs_gemm *a = n->attrs;
  const kiln_value *A = n->in[0], *y = n->out[0];
  if (!y || y->rank != 2 || A->rank != 2) return 0;
  return macs_mul(kiln_value_numel(y, 1), a->transA ? A->dims[0] : A->dims[1]);
}

int64_t kiln_macs_matmul(const kiln_node *n) {
  const kiln_value *A = n->in[0], *y = n->out[0];
  if (!y || y->rank < 0 || A->rank < 1) return 0;
  return macs_mul(kiln_value_numel(y, 1), A->dims[A->rank - 1]);
}

/* kiln.MaxPoolGrad (X, dY) and kiln.AveragePoolGrad (dY, #x_shape): dX has
 * X's shape (MaxPoolGrad: X's; AveragePoolGrad: the constant x_shape) and
 * dY must be exactly the pool's output for that shape and these window
 * attributes (autodiff copies them, already canonical, from the forward
 * pool).  Static shapes only: gradients are built after dims are bound. */
int kiln_shape_pool_grad(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_pool *a = n->attrs;
  int is_max = n->op == KILN_OP_MAX_POOL_GRAD, dyk = is_max ? 1 : 0;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, dyk)) return -1;
  const kiln_value *dy = n->in[dyk];
  kiln_dim xd[KILN_MAX_RANK];
  int r;
  if (is_max) {
    r = n->in[0]->rank;
    for (int i = 0; i < r; i++) xd[i] = n->in[0]->dims[i];
    if (n->in[0]->dtype != dy->dtype)
      return kiln_shape_fail(c, n, "X is %s but dY is %s", kiln_dtype_name(n->in[0]->dtype), kiln_dtype_name(dy->dtype));
  } else {
    int64_t v[KILN_MAX_RANK];
    if (kiln_shape_const_ints(c, n, 1, v, KILN_MAX_RANK, &r)) return -1;
    for (int i = 0; i < r; i++) {
      if (v[i] < 1 || v[i] > ((int64_t)1 << 40)) return kiln_shape_fail(c, n, "x_shape[%d] = %lld is not a valid extent", i, (long long)v[i]);
      xd[i] = v[i];
    }
  }
  if (r < 3 || r > 5) return kiln_shape_fail(c, n, "X must be (N, C, D1[, D2[, D3]]), got rank %d", r);
  if (check_float(c, n, dyk)) return -1;
  for (int i = 0; i < r; i++)
    if (KILN_DIM_IS_SYM(xd[i]) || KILN_DIM_IS_SYM(dy->dims[i]))
      return kiln_shape_fail(c, n, "a pooling gradient needs static shapes (bind symbolic dims with --dim)");
  int sp = r - 2;
  window w = {&a->kernel_shape, &a->strides, &a->dilations, &a->pads, &a->auto_pad};
  kiln_dim out[KILN_MAX_RANK];
  if (window_complete(c, n, w, sp, NULL) || window_out(c, n, w, sp, xd + 2, (int)a->ceil_mode, out + 2)) return -1;
  out[0] = xd[0];
  out[1] = xd[1];
  int same = dy->rank == r;
  for (int i = 0; same && i < r; i++) same = dy->dims[i] == out[i];
  if (!same) return kiln_shape_fail(c, n, "dY %s is not the pool's output shape for this X", kiln_shape_str(c, dy));
  kiln_shape_set(n, 0, dy->dtype, r, xd);
  return 0;
}
