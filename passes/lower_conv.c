/* Convolution: Conv and ConvTranspose, 1D/2D/3D, groups (depthwise
 * included), strides, dilations, asymmetric pads, optional bias.
 *
 * Both are written output-stationary, one kernel per node:
 *   for nm in N*M (parallel)             one (batch, output channel) plane
 *     n, m and the plane's base offsets  (the only div/mod, once per plane)
 *     for o0 .. o_{k-1}                  output spatial dims, the last
 *                                        (contiguous width) innermost
 *       acc = bias[m] or 0
 *       for k0 .. k_{k-1}                kernel taps; a bounds IF per dim
 *                                        only where it can fail
 *         for c in C/group               input channels of the group
 *           acc += X[...] * W[...]
 *       Y[...] = acc
 * Kernel taps sit outside the channel loop so each bounds check is paid
 * once per tap, not once per tap and channel.  ConvTranspose gathers: the
 * input position feeding output o through tap k is (o + pb - k*d) / s,
 * valid when it divides exactly and lands inside the input.
 *
 * Window attributes arrive canonical from shape inference (ir/shape_nn.c):
 * kernel_shape, strides, dilations, pads explicit, auto_pad resolved (for
 * ConvTranspose, output_shape and output_padding already folded into pads
 * and the output dims).  f16/bf16 compute in f32. */
#include "lower.h"

#include <stdlib.h>

#define B (&L->b)
#define CI(v) kiln_lx_const_i(B, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define IADD(a, b) kiln_lx_iadd(B, (a), (b))
#define IMUL(a, k) kiln_lx_imul(B, (a), (k))
#define IDX(v) kiln_lx_index(B, (v))
#define LOCAL(v) kiln_lx_local(B, (v))

static const kiln_sched seq_sched = {0};
static const kiln_sched par_sched = {.parallel = 1};

/* The geometry both ops share. */
typedef struct conv_geom {
  int sp;                                       /* spatial dims, 1..3 */
  int64_t N, C, M, G, Cg, Mg;                   /* batch, in/out channels, groups */
  int64_t in[3], out[3], K[3], s[3], d[3], pb[3];
  int64_t xstr[3], ystr[3], kstr[3];            /* row-major spatial strides */
  int64_t isz, osz, ksz;                        /* spatial sizes */
} conv_geom;

static int conv_setup(kiln_lctx *L, const kiln_node *n, conv_geom *g) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && n->in[k]->layout != KILN_LAYOUT_PLAIN)
      return kiln_lower_fail(L, n, "input '%s' has a blocked layout, which %s does not lower yet", n->in[k]->name,
                             kiln_op_get(n->op)->name);
  if (y->layout != KILN_LAYOUT_PLAIN)
    return kiln_lower_fail(L, n, "output '%s' has a blocked layout, which %s does not lower yet", y->name,
                           kiln_op_get(n->op)->name);
  if (!kiln_dtype_is_float(x->dtype) || w->dtype != x->dtype)
    return kiln_lower_fail(L, n, "%s needs floating-point X and W of one type, got %s and %s",
                           kiln_op_get(n->op)->name, kiln_dtype_name(x->dtype), kiln_dtype_name(w->dtype));
  int sp = g->sp = x->rank - 2;
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = y->dims[1];
  g->G = a->group;
  g->Cg = g->C / g->G;
  g->Mg = g->M / g->G;
  g->isz = g->osz = g->ksz = 1;
  for (int i = sp - 1; i >= 0; i--) {
    g->in[i] = x->dims[2 + i];
    g->out[i] = y->dims[2 + i];
    g->K[i] = a->kernel_shape.v[i];
    g->s[i] = a->strides.v[i];
    g->d[i] = a->dilations.v[i];
    g->pb[i] = a->pads.v[i];
    g->xstr[i] = g->isz;
    g->ystr[i] = g->osz;
    g->kstr[i] = g->ksz;
    g->isz *= g->in[i];
    g->osz *= g->out[i];
    g->ksz *= g->K[i];
  }
  return 0;
}

static kiln_lx *and_opt(kiln_lctx *L, kiln_lx *a, kiln_lx *c) {
  if (!a) return c;
  if (!c) return a;
  return BIN(AND, a, c);
}

/* The plane loop and n = nm / M, m = nm % M as locals. */
static kiln_lx *open_plane(kiln_lctx *L, const conv_geom *g, int *nv, int *mv) {
  kiln_lx *nm = IDX(kiln_lb_for(B, g->N * g->M, par_sched));
  *nv = kiln_lb_decl(B, KILN_DT_I64, g->M == 1 ? nm : BIN(DIV, nm, CI(g->M)));
  *mv = kiln_lb_decl(B, KILN_DT_I64, g->M == 1 ? CI(0) : BIN(REM, nm, CI(g->M)));
  return nm;
}

/* The output loops and the accumulator, initialised to B[m] or 0. */
static int open_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int mv, kiln_lx **o) {
  for (int i = 0; i < g->sp; i++) o[i] = IDX(kiln_lb_for(B, g->out[i], seq_sched));
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  kiln_lx *init = bias ? kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, bias), LOCAL(mv)))
                       : kiln_lx_const_f(B, ct, 0);
  return kiln_lb_decl(B, ct, init);
}

/* Stores the accumulator and closes the output and plane loops. */
static void close_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, kiln_lx *nm, kiln_lx **o, int acc) {
  kiln_lx *yoff = IMUL(nm, g->osz);
  for (int i = 0; i < g->sp; i++) yoff = IADD(yoff, IMUL(o[i], g->ystr[i]));
  kiln_lb_store(B, kiln_lower_buf(L, n->out[0]), yoff, LOCAL(acc));
  kiln_lower_close(L, g->sp + 1);
}

/* for c in C/group: acc += X[xoff + c*xcs] * W[woff + c*wcs] */
static void channel_loop(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int acc, kiln_lx *xoff, int64_t xcs,
                         kiln_lx *woff, int64_t wcs) {
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  kiln_lx *c = IDX(kiln_lb_for(B, g->Cg, seq_sched));
  kiln_lx *xv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, n->in[0]), IADD(xoff, IMUL(c, xcs))));
  kiln_lx *wv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, n->in[1]), IADD(woff, IMUL(c, wcs))));
  kiln_lb_assign(B, acc, BIN(ADD, LOCAL(acc), BIN(MUL, xv, wv)));
  kiln_lb_end(B);
}


/* ---- fast path: 1-D/2-D Conv with an f32/f64 output, as output rows ----
 *
 *   for (n, block of MB output channels)        parallel
 *     for oh (top border rows, interior rows, bottom border rows)
 *       Y[n, m0..m0+MB, oh, :] = B[m]                      (init)
 *       for channel block (CB input channels)
 *         for each group of taps (c, kh, kw)                (<= TMAX taps)
 *           w[j][t] = W[m0+j, c, kh, kw]                   (locals)
 *           for ow in the group's interior columns          (no checks)
 *             x[t] = X[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
 *             Y[.., m0+j, oh, ow] += sum_t w[j][t] * x[t]   for j < MB
 *           for each kw: the border columns where that kw is valid
 *
 * The innermost loop runs over contiguous output columns (and contiguous
 * input columns when sw == 1) and vectorises; each input value it loads
 * feeds MB output channels, each output it loads and stores takes T taps.
 * In interior rows every kh is valid and the taps span (c, kh, kw); in
 * border rows each kh is checked once per row.  1x1 stride-1 unpadded
 * convolutions are viewed as rows of the flattened spatial plane. */
typedef struct rowconv {
  int64_t H, W, OH, OW, KH, KW, sh, sw, dh, dw, ph, pw;
  int64_t MB, CB;
  const kiln_buf *x, *w, *y;
  kiln_dtype ct;
  int64_t Cg, isz, osz, ksz;          /* channels per group, plane sizes, taps per channel */
  kiln_lx *xplane, *wbase, *ybase;    /* per block: X(n, group ch 0), W(m0, 0), Y(n, m0) */
  int bias[8];                        /* locals: B[m0 + j] (or 0) */
} rowconv;

typedef struct tap { int64_t c, kh, kw; } tap;

static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Output columns [lo, hi) where tap column kw reads inside X. */
static void col_range(const rowconv *r, int64_t kw, int64_t *lo, int64_t *hi) {
  int64_t off = kw * r->dw - r->pw;
  *lo = clamp64(ceildiv(-off, r->sw), 0, r->OW);
  *hi = clamp64(floordiv(r->W - 1 - off, r->sw) + 1, *lo, r->OW);
}

/* Y[yrow_j + ow] (+)= sum_t w[j][t] * X[xrow + ow*sw + xoff_t] over ow in [a, b). */
static void emit_cols(kiln_lctx *L, const rowconv *r, const tap *t, int nt, kiln_lx *c0, kiln_lx *xrow,
                      kiln_lx *yrow, int64_t a, int64_t b) {
  if (b <= a || nt == 0) return;
  int wl[8][64];
  for (int j = 0; j < r->MB; j++)
    for (int k = 0; k < nt; k++) {
      int64_t wo = j * r->Cg * r->ksz + t[k].c * r->ksz + t[k].kh * r->KW + t[k].kw;
      kiln_lx *wi = IADD(IADD(r->wbase, IMUL(c0, r->ksz)), CI(wo));
      wl[j][k] = kiln_lb_decl(B, r->ct, kiln_lower_load(L, r->w, wi));
    }
  kiln_lx *ow = IADD(IDX(kiln_lb_for(B, b - a, seq_sched)), CI(a));
  kiln_lx *xb = IADD(IADD(xrow, IMUL(c0, r->isz)), IMUL(ow, r->sw));
  int xl[64];
  for (int k = 0; k < nt; k++) {
    int64_t xo = t[k].c * r->isz + t[k].kh * r->dh * r->W + t[k].kw * r->dw - r->pw;
    xl[k] = kiln_lb_decl(B, r->ct, kiln_lower_load(L, r->x, IADD(xb, CI(xo))));
  }
  for (int j = 0; j < r->MB; j++) {
    kiln_lx *yo = IADD(IADD(yrow, CI(j * r->osz)), ow);
    kiln_lx *v = kiln_lx_load(B, r->y, yo);
    for (int k = 0; k < nt; k++) v = BIN(ADD, v, BIN(MUL, LOCAL(wl[j][k]), LOCAL(xl[k])));
    kiln_lb_store(B, r->y, yo, v);
  }
  kiln_lb_end(B);
}

/* The whole row [0, OW) in one loop padded to a multiple of VW columns:
 * a tap's load is guarded where its column can fall outside X, the output
 * where the column is padding (masked loads and stores once vectorised). */
static void emit_masked(kiln_lctx *L, const rowconv *r, const tap *t, int nt, kiln_lx *c0, kiln_lx *xrow,
                        kiln_lx *yrow, int64_t vw) {
  int64_t owr = (r->OW + vw - 1) / vw * vw;
  int wl[8][64];
  for (int j = 0; j < r->MB; j++)
    for (int k = 0; k < nt; k++) {
      int64_t wo = j * r->Cg * r->ksz + t[k].c * r->ksz + t[k].kh * r->KW + t[k].kw;
      kiln_lx *wi = IADD(IADD(r->wbase, IMUL(c0, r->ksz)), CI(wo));
      wl[j][k] = kiln_lb_decl(B, r->ct, kiln_lower_load(L, r->w, wi));
    }
  kiln_lx *ow = IDX(kiln_lb_for(B, owr, seq_sched));
  kiln_lx *xb = IADD(IADD(xrow, IMUL(c0, r->isz)), IMUL(ow, r->sw));
  int xl[64];
  for (int k = 0; k < nt; k++) {
    int64_t xo = t[k].c * r->isz + t[k].kh * r->dh * r->W + t[k].kw * r->dw - r->pw;
    int64_t lo, hi;
    col_range(r, t[k].kw, &lo, &hi);
    kiln_lx *ld = kiln_lower_load(L, r->x, IADD(xb, CI(xo)));
    kiln_lx *ok = and_opt(L, lo > 0 ? BIN(LE, CI(lo), ow) : NULL, hi < owr ? BIN(LT, ow, CI(hi)) : NULL);
    if (!ok) { xl[k] = kiln_lb_decl(B, r->ct, ld); continue; }
    xl[k] = kiln_lb_decl(B, r->ct, kiln_lx_const_f(B, r->ct, 0));
    kiln_lb_if(B, ok);
    kiln_lb_assign(B, xl[k], ld);
    kiln_lb_end(B);
  }
  if (owr > r->OW) kiln_lb_if(B, BIN(LT, ow, CI(r->OW)));
  for (int j = 0; j < r->MB; j++) {
    kiln_lx *yo = IADD(IADD(yrow, CI(j * r->osz)), ow);
    kiln_lx *v = kiln_lx_load(B, r->y, yo);
    for (int k = 0; k < nt; k++) v = BIN(ADD, v, BIN(MUL, LOCAL(wl[j][k]), LOCAL(xl[k])));
    kiln_lb_store(B, r->y, yo, v);
  }
  if (owr > r->OW) kiln_lb_end(B);
  kiln_lb_end(B);
}

static int env_int(const char *n, int d) { const char *e = getenv(n); return e ? atoi(e) : d; }

/* One group of taps over a whole output row: the columns where all its
 * taps are valid in one loop, the rest per kw. */
static void emit_group(kiln_lctx *L, const rowconv *r, const tap *t, int nt, kiln_lx *c0, kiln_lx *xrow,
                       kiln_lx *yrow) {
  int vw = env_int("KILN_CONV_MASK", 0);
  if (vw) { emit_masked(L, r, t, nt, c0, xrow, yrow, vw); return; }
  int64_t a = 0, b = r->OW;
  for (int k = 0; k < nt; k++) {
    int64_t lo, hi;
    col_range(r, t[k].kw, &lo, &hi);
    if (lo > a) a = lo;
    if (hi < b) b = hi;
  }
  if (a >= b) a = b = r->OW; /* no common interior: everything per kw */
  emit_cols(L, r, t, nt, c0, xrow, yrow, a, b);
  for (int64_t kw = 0; kw < r->KW; kw++) {
    tap sub[64];
    int ns = 0;
    for (int k = 0; k < nt; k++)
      if (t[k].kw == kw) sub[ns++] = t[k];
    if (!ns) continue;
    int64_t lo, hi;
    col_range(r, kw, &lo, &hi);
    if (a >= b) { emit_cols(L, r, sub, ns, c0, xrow, yrow, lo, hi); continue; }
    emit_cols(L, r, sub, ns, c0, xrow, yrow, lo, a < hi ? a : hi);
    emit_cols(L, r, sub, ns, c0, xrow, yrow, b > lo ? b : lo, hi);
  }
}

static int row_tmax(void) { const char *e = getenv("KILN_CONV_T"); return e ? atoi(e) : 9; }

/* The taps of channels [0, cb) (relative to c0) and kernel rows [kh0, kh1)
 * in groups of at most TMAX. */
static void emit_taps(kiln_lctx *L, const rowconv *r, int64_t cb, int64_t kh0, int64_t kh1, kiln_lx *c0,
                      kiln_lx *xrow, kiln_lx *yrow) {
  int tmax = row_tmax();
  tap t[64];
  int nt = 0;
  for (int64_t c = 0; c < cb; c++)
    for (int64_t kh = kh0; kh < kh1; kh++) {
      /* keep a kernel row's taps in one group when they fit */
      if (nt && nt + r->KW > tmax) { emit_group(L, r, t, nt, c0, xrow, yrow); nt = 0; }
      for (int64_t kw = 0; kw < r->KW; kw++) {
        if (nt == tmax || nt == 64) { emit_group(L, r, t, nt, c0, xrow, yrow); nt = 0; }
        t[nt++] = (tap){c, kh, kw};
      }
    }
  if (nt) emit_group(L, r, t, nt, c0, xrow, yrow);
}

/* Rows oh in [o0, o1): `interior` when every kernel row is valid there. */
static void emit_rows(kiln_lctx *L, const rowconv *r, int64_t o0, int64_t o1, int interior) {
  if (o1 <= o0) return;
  kiln_lx *oh = IADD(IDX(kiln_lb_for(B, o1 - o0, seq_sched)), CI(o0));
  kiln_lx *ih0 = IADD(IMUL(oh, r->sh), CI(-r->ph));
  kiln_lx *xrow = IADD(r->xplane, IMUL(ih0, r->W));
  kiln_lx *yrow = IADD(r->ybase, IMUL(oh, r->OW));
  for (int j = 0; j < r->MB; j++) {
    kiln_lx *ow = IDX(kiln_lb_for(B, r->OW, seq_sched));
    kiln_lb_store(B, r->y, IADD(IADD(yrow, CI(j * r->osz)), ow), LOCAL(r->bias[j]));
    kiln_lb_end(B);
  }
  int64_t cb = r->CB, nblk = r->Cg / cb, rem = r->Cg % cb;
  for (int pass = 0; pass < 2; pass++) {
    int64_t n = pass == 0 ? nblk : (rem ? 1 : 0), width = pass == 0 ? cb : rem;
    if (!n) continue;
    kiln_lx *c0 = pass == 0 ? (n == 1 ? CI(0) : IMUL(IDX(kiln_lb_for(B, n, seq_sched)), cb)) : CI(nblk * cb);
    if (interior) {
      emit_taps(L, r, width, 0, r->KH, c0, xrow, yrow);
    } else {
      for (int64_t kh = 0; kh < r->KH; kh++) {
        kiln_lx *ih = IADD(ih0, CI(kh * r->dh));
        kiln_lb_if(B, BIN(AND, BIN(LE, CI(0), ih), BIN(LT, ih, CI(r->H))));
        emit_taps(L, r, width, kh, kh + 1, c0, xrow, yrow);
        kiln_lb_end(B);
      }
    }
    if (pass == 0 && n > 1) kiln_lb_end(B);
  }
  kiln_lb_end(B);
}


static int lower_conv_rows(kiln_lctx *L, const kiln_node *n, const conv_geom *g) {
  rowconv r = {0};
  int two = g->sp == 2;
  r.H = two ? g->in[0] : 1; r.W = g->in[two];
  r.OH = two ? g->out[0] : 1; r.OW = g->out[two];
  r.KH = two ? g->K[0] : 1; r.KW = g->K[two];
  r.sh = two ? g->s[0] : 1; r.sw = g->s[two];
  r.dh = two ? g->d[0] : 1; r.dw = g->d[two];
  r.ph = two ? g->pb[0] : 0; r.pw = g->pb[two];
  if (r.KH == 1 && r.KW == 1 && r.sh == 1 && r.sw == 1 && r.ph == 0 && r.pw == 0 && r.OH == r.H && r.OW == r.W) {
    /* pointwise: rows of the flattened plane, at most RMAX wide */
    int64_t P = r.H * r.W, rmax = env_int("KILN_CONV_RMAX", 512), w = 1;
    for (int64_t d = 1; d <= P && d <= rmax; d++)
      if (P % d == 0) w = d;
    if (P <= rmax) w = P;
    r.W = r.OW = w;
    r.H = r.OH = P / w;
  }
  int mbmax = env_int("KILN_CONV_MB", 4);
  r.MB = 1;
  for (int64_t mb = mbmax; mb > 1; mb /= 2)
    if (g->Mg % mb == 0) { r.MB = mb; break; }
  r.Cg = g->Cg;
  r.ksz = r.KH * r.KW;
  r.isz = g->isz;
  r.osz = g->osz;
  int tmax = row_tmax();
  r.CB = r.ksz >= tmax ? 1 : tmax / r.ksz;
  if (r.CB > r.Cg) r.CB = r.Cg;
  r.ct = kiln_lower_ctype(n->out[0]->dtype);
  r.x = kiln_lower_buf(L, n->in[0]);
  r.w = kiln_lower_buf(L, n->in[1]);
  r.y = kiln_lower_buf(L, n->out[0]);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;

  kiln_lower_begin(L, n);
  int64_t nb = g->M / r.MB;
  kiln_lx *blk = IDX(kiln_lb_for(B, g->N * nb, par_sched));
  int nv = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? blk : BIN(DIV, blk, CI(nb)));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? CI(0) : IMUL(BIN(REM, blk, CI(nb)), r.MB));
  kiln_lx *grp = g->G == 1 ? CI(0) : BIN(DIV, LOCAL(m0), CI(g->Mg));
  int xp = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->C), IMUL(grp, g->Cg)), g->isz));
  int yb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), g->osz));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(m0), g->Cg * r.ksz));
  r.xplane = LOCAL(xp);
  r.ybase = LOCAL(yb);
  r.wbase = LOCAL(wb);
  for (int j = 0; j < r.MB; j++)
    r.bias[j] = kiln_lb_decl(B, r.ct, bias ? kiln_lower_load(L, kiln_lower_buf(L, bias), IADD(LOCAL(m0), CI(j)))
                                           : kiln_lx_const_f(B, r.ct, 0));
  /* rows where every kernel row lands inside X */
  int64_t top = clamp64(ceildiv(r.ph, r.sh), 0, r.OH);
  int64_t bot = clamp64(floordiv(r.H - 1 + r.ph - (r.KH - 1) * r.dh, r.sh) + 1, top, r.OH);
  emit_rows(L, &r, 0, top, 0);
  emit_rows(L, &r, top, bot, 1);
  emit_rows(L, &r, bot, r.OH, 0);
  kiln_lb_end(B);
  return 0;
}

/* Conv: Y[n, m, o] = B[m] + sum_{k, c} X[n, grp*Cg + c, o*s - pb + k*d] * W[m, c, k]
 * with grp = m / (M/group). */
int kiln_lower_conv(kiln_lctx *L, const kiln_node *n) {
  conv_geom g;
  if (conv_setup(L, n, &g)) return -1;
  if (n->in[1]->dims[1] != g.Cg || n->in[1]->dims[0] != g.M)
    return kiln_lower_fail(L, n, "W does not match X, Y and group (run shape inference first)");
  kiln_dtype yt = n->out[0]->dtype;
  if (g.sp <= 2 && (yt == KILN_DT_F32 || yt == KILN_DT_F64) && !getenv("KILN_CONV_OLD")) return lower_conv_rows(L, n, &g);
  kiln_lower_begin(L, n);
  int nv, mv;
  kiln_lx *nm = open_plane(L, &g, &nv, &mv), *o[3];
  /* per plane: X offset of the group's first input channel, W offset of row m */
  kiln_lx *grp = g.G == 1 ? CI(0) : BIN(DIV, LOCAL(mv), CI(g.Mg));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g.C), IMUL(grp, g.Cg)), g.isz));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(mv), g.Cg * g.ksz));
  int acc = open_outputs(L, n, &g, mv, o);
  kiln_lx *xoff = LOCAL(xb), *woff = LOCAL(wb);
  int open = 0;
  for (int i = 0; i < g.sp; i++) {
    kiln_lx *k = IDX(kiln_lb_for(B, g.K[i], seq_sched));
    open++;
    kiln_lx *pos = IADD(IADD(IMUL(o[i], g.s[i]), IMUL(k, g.d[i])), CI(-g.pb[i]));
    int64_t last = (g.out[i] - 1) * g.s[i] - g.pb[i] + (g.K[i] - 1) * g.d[i];
    kiln_lx *ok = and_opt(L, g.pb[i] > 0 ? BIN(LE, CI(0), pos) : NULL, last >= g.in[i] ? BIN(LT, pos, CI(g.in[i])) : NULL);
    if (ok) { kiln_lb_if(B, ok); open++; }
    xoff = IADD(xoff, IMUL(pos, g.xstr[i]));
    woff = IADD(woff, IMUL(k, g.kstr[i]));
  }
  channel_loop(L, n, &g, acc, xoff, g.isz, woff, g.ksz);
  kiln_lower_close(L, open);
  close_outputs(L, n, &g, nm, o, acc);
  return 0;
}

/* ConvTranspose: Y[n, m, o] = B[m] + sum_{k, c} X[n, grp*Cg + c, i] * W[grp*Cg + c, m', k]
 * with grp = m / (M/group), m' = m % (M/group), over the taps where
 * t = o + pb - k*d is a multiple of s and i = t / s lies inside X. */
int kiln_lower_conv_transpose(kiln_lctx *L, const kiln_node *n) {
  conv_geom g;
  if (conv_setup(L, n, &g)) return -1;
  if (n->in[1]->dims[0] != g.C || n->in[1]->dims[1] != g.Mg)
    return kiln_lower_fail(L, n, "W does not match X, Y and group (run shape inference first)");
  kiln_lower_begin(L, n);
  int nv, mv;
  kiln_lx *nm = open_plane(L, &g, &nv, &mv), *o[3];
  /* per plane: X offset of the group's first input channel, and W offset
   * of [grp*Cg, m', 0...] (W is C x M/group x K) */
  kiln_lx *grp = g.G == 1 ? CI(0) : BIN(DIV, LOCAL(mv), CI(g.Mg));
  kiln_lx *mg = g.G == 1 ? LOCAL(mv) : BIN(REM, LOCAL(mv), CI(g.Mg));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g.C), IMUL(grp, g.Cg)), g.isz));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(grp, g.Cg * g.Mg), mg), g.ksz));
  int acc = open_outputs(L, n, &g, mv, o);
  kiln_lx *xoff = LOCAL(xb), *woff = LOCAL(wb);
  int open = 0;
  for (int i = 0; i < g.sp; i++) {
    kiln_lx *k = IDX(kiln_lb_for(B, g.K[i], seq_sched));
    open++;
    kiln_lx *t = IADD(IADD(o[i], CI(g.pb[i])), IMUL(k, -g.d[i]));
    int64_t tmin = g.pb[i] - (g.K[i] - 1) * g.d[i], tmax = g.out[i] - 1 + g.pb[i], hi = (g.in[i] - 1) * g.s[i];
    kiln_lx *ok = and_opt(L, tmin < 0 ? BIN(LE, CI(0), t) : NULL, tmax > hi ? BIN(LE, t, CI(hi)) : NULL);
    kiln_lx *pos = t;
    if (g.s[i] > 1) {
      ok = and_opt(L, ok, BIN(EQ, BIN(REM, t, CI(g.s[i])), CI(0)));
      pos = BIN(DIV, t, CI(g.s[i]));
    }
    if (ok) { kiln_lb_if(B, ok); open++; }
    xoff = IADD(xoff, IMUL(pos, g.xstr[i]));
    woff = IADD(woff, IMUL(k, g.kstr[i]));
  }
  channel_loop(L, n, &g, acc, xoff, g.isz, woff, g.Mg * g.ksz);
  kiln_lower_close(L, open);
  close_outputs(L, n, &g, nm, o, acc);
  return 0;
}
