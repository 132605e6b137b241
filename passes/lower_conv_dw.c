/* Depthwise convolution (group == C, one input channel per group, any
 * channel multiplier M/C), 1-D and 2-D, f32/f64 and f16/bf16 (computed in
 * f32): a schedule of conv_def.h's definition for a memory-bound kernel.
 *
 * Each output sums only kh*kw products of one input plane, so the general
 * fast path's passes (pack X into zero-padded phase planes, sum into a
 * scratch, copy out through the epilogue) cost three trips through memory
 * for a handful of FMAs.  This schedule reads X once and writes Y once:
 *
 *   for (n, m, row block) (parallel)       one output plane, or a band of it
 *     w[t] = W[m, 0, t], b = B[m]           scalars, broadcast by the vectoriser
 *     for output rows oh, for output columns ow (the vectorised loop)
 *       acc = b
 *       acc = fma(w[t], X[n, m / mult, oh*s + kh*d - p, ow*s + kw*d - p], acc)
 *                                           every tap t = (kh, kw), unrolled
 *       Y[n, m, oh, ow] = epilogue(acc)     bias, Clip, Relu, residual Add
 *
 * Rows and columns are split into a border before, an interior and a
 * border after (interval arithmetic on the tap positions): the interior
 * loads need no bounds checks; border rows and columns (a few, with pad
 * 1: one each side) are emitted one by one with the taps that fall outside
 * X left out, so they have no checks either; only a border wider than
 * EDGE_MAX (large pads) becomes a loop with an IF per tap that can fail.
 * Each output is one accumulator local summed in tap order (one rounding
 * per FMA where the target fuses, kiln_target_has_fma), i.e. what the
 * generic kernel computes.  With a stride the column loads are strided;
 * LLVM's vectoriser turns them into wide loads and shuffles (or gathers),
 * so stride-2 rows of a vector or more go in lane groups for the LLVM
 * lane printer instead (see "Stride-2 rows in lane groups").
 * Short stride-1 rows (fewer than a few vectors) would leave that loop in
 * its scalar remainder: they are one flat run instead (see "Short rows").
 * When N*M planes are too few to keep the thread pool busy, the interior
 * rows are split into bands (the plane loop then runs over plane x band).
 * Shapes outside this (3-D, more than TAPS_MAX taps) are declined before
 * anything is emitted and take lower_conv.c's paths. */
#include <stdlib.h>
#include <string.h>

#include "conv_def.h"

#include "lower_macros.h"

enum {
  TAPS_MAX = 64, /* kernel taps kept as scalar locals */
  EDGE_MAX = 4,  /* border rows/columns emitted one by one */
  BAND_MIN = 4   /* fewest interior rows per band */
};

static const kiln_sched par_sched = {.parallel = 1};

/* One spatial dim as the schedule sees it (1-D convolutions: rows are a
 * dim of extent 1 with one tap). */
typedef struct dw_dim {
  int64_t in, out, K, s, d, p;
  int64_t lo, hi; /* interior outputs [lo, hi): every tap inside X */
} dw_dim;

typedef struct dw {
  const kiln_node *n;
  int sp;
  dw_dim r, c;             /* rows (dim H), columns (dim W) */
  const kiln_buf *x, *w;
  kiln_dtype ct;
  int fma;
  int64_t vw;              /* the target's vector lanes of ct */
  int64_t gw;              /* stride-2 interior columns in groups of gw lanes (emit_lanes; 0: not) */
  int wl[TAPS_MAX], bl;    /* the plane's weights and bias (locals) */
  kiln_lx *xb, *yb;        /* plane offsets in X and Y */
  kiln_lx *nv, *mv;        /* n and m (the output store's logical index) */
} dw;

static int64_t fdiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static dw_dim dim_of(const kiln_conv_geom *g, int i) {
  dw_dim d = {g->in[i], g->out[i], g->K[i], g->s[i], g->d[i], g->pb[i], 0, 0};
  /* o*s - p >= 0 and o*s + (K-1)*d - p <= in - 1 */
  d.lo = min64(fdiv(d.p + d.s - 1, d.s), d.out);
  d.hi = max64(d.lo, min64(d.out, fdiv(d.in - 1 - (d.K - 1) * d.d + d.p, d.s) + 1));
  return d;
}

/* A range of outputs along one dim: the index expression and the static
 * interval [a, b] it takes. */
typedef struct span {
  kiln_lx *o;
  int64_t a, b;
} span;

/* Tap k along dim d for outputs in sp: 0 outside X for every output (left
 * out), 1 inside for every one, 2 when it depends (needs a check). */
static int tap_class(const dw_dim *d, const span *sp, int64_t k) {
  int64_t lo = sp->a * d->s + k * d->d - d->p, hi = sp->b * d->s + k * d->d - d->p;
  if (hi < 0 || lo >= d->in) return 0;
  return lo >= 0 && hi < d->in ? 1 : 2;
}

/* 0 <= pos < in as a condition, only the halves that can fail. */
static kiln_lx *in_range(kiln_lctx *L, const dw_dim *d, const span *sp, int64_t k, kiln_lx *pos) {
  int64_t lo = sp->a * d->s + k * d->d - d->p, hi = sp->b * d->s + k * d->d - d->p;
  kiln_lx *a = lo < 0 ? BIN(LE, CI(0), pos) : NULL, *b = hi >= d->in ? BIN(LT, pos, CI(d->in)) : NULL;
  return !a ? b : !b ? a : BIN(AND, a, b);
}

/* The outputs at rows rs x columns cs: one accumulator, every tap that
 * can land inside X, the store through the epilogue. */
static void emit_point(kiln_lctx *L, const dw *f, const span *rs, const span *cs) {
  int acc = kiln_lb_decl(B, f->ct, LOCAL(f->bl));
  for (int64_t kh = 0; kh < f->r.K; kh++) {
    int rc = tap_class(&f->r, rs, kh);
    if (!rc) continue;
    kiln_lx *ih = IADD(IMUL(rs->o, f->r.s), CI(kh * f->r.d - f->r.p));
    for (int64_t kw = 0; kw < f->c.K; kw++) {
      int cc = tap_class(&f->c, cs, kw);
      if (!cc) continue;
      kiln_lx *iw = IADD(IMUL(cs->o, f->c.s), CI(kw * f->c.d - f->c.p));
      kiln_lx *ok = NULL;
      if (rc == 2) ok = in_range(L, &f->r, rs, kh, ih);
      if (cc == 2) {
        kiln_lx *c = in_range(L, &f->c, cs, kw, iw);
        ok = ok ? BIN(AND, ok, c) : c;
      }
      if (ok) kiln_lb_if(B, ok);
      kiln_lx *xv = kiln_lower_load(L, f->x, IADD(IADD(f->xb, IMUL(ih, f->c.in)), iw));
      kiln_lx *wv = LOCAL(f->wl[kh * f->c.K + kw]);
      kiln_lb_assign(B, acc, f->fma ? kiln_lx_fma(B, wv, xv, LOCAL(acc)) : BIN(ADD, LOCAL(acc), BIN(MUL, wv, xv)));
      if (ok) kiln_lb_end(B);
    }
  }
  kiln_lx *idx[4] = {f->nv, f->mv, rs->o, cs->o};
  if (f->sp == 1) idx[2] = cs->o;
  kiln_lx *flat = IADD(IADD(f->yb, IMUL(rs->o, f->c.out)), cs->o);
  kiln_lower_store(L, f->n, 0, idx, flat, LOCAL(acc));
}

/* Outputs [a, b) along a dim: one by one when at most `unroll` (a
 * border: taps decided statically), else a loop; calls fn per span. */
typedef void (*span_fn)(kiln_lctx *L, const dw *f, const span *outer, const span *sp);

static void each_span(kiln_lctx *L, const dw *f, const span *outer, int64_t a, int64_t b, int64_t unroll, span_fn fn) {
  if (b <= a) return;
  if (b - a <= unroll) {
    for (int64_t o = a; o < b; o++) fn(L, f, outer, &(span){CI(o), o, o});
    return;
  }
  kiln_lx *o = IADD(IDX(kiln_lb_for(B, b - a, par_sched)), CI(a));
  fn(L, f, outer, &(span){o, a, b - 1});
  kiln_lb_end(B);
}

static void col_fn(kiln_lctx *L, const dw *f, const span *rs, const span *cs) { emit_point(L, f, rs, cs); }

/* ---- Stride-2 rows in lane groups ----
 *
 * The vw interior outputs from column o0 of rows rs as vw statements per
 * step, one per lane, which the LLVM lane printer (backends/llvm/
 * llvm_lanes.c) prints as one vector statement: the accumulators, per tap
 * one fma each (the tap's loads every other element: one load of twice
 * the lanes and a shuffle), the stores through the epilogue.  As a loop
 * the vectoriser's stride-2 rows ran 1.5-3x slower (MobileNetV2's 27-wide
 * features.4 rows 0.048 -> 0.029 ms; bench/README, "Stride-2 max and
 * depthwise rows").  The sums are emit_point's: the same taps in the
 * same order from the bias.  Every row tap is inside X or outside for
 * every row of rs (tap_class 0 or 1: lane_groups checks). */
static void emit_lanes(kiln_lctx *L, const dw *f, const span *rs, kiln_lx *o0) {
  int acc = -1;
  for (int64_t j = 0; j < f->gw; j++) {
    int v = kiln_lb_decl(B, f->ct, LOCAL(f->bl));
    if (j == 0) acc = v;
  }
  for (int64_t kh = 0; kh < f->r.K; kh++) {
    if (!tap_class(&f->r, rs, kh)) continue;
    kiln_lx *ih = IADD(IMUL(rs->o, f->r.s), CI(kh * f->r.d - f->r.p));
    for (int64_t kw = 0; kw < f->c.K; kw++) {
      kiln_lx *base = IADD(IADD(f->xb, IMUL(ih, f->c.in)), IADD(IMUL(o0, f->c.s), CI(kw * f->c.d - f->c.p)));
      kiln_lx *wv = LOCAL(f->wl[kh * f->c.K + kw]);
      for (int64_t j = 0; j < f->gw; j++) {
        kiln_lx *xv = kiln_lx_load(B, f->x, IADD(base, CI(j * f->c.s))), *a = LOCAL(acc + (int)j);
        kiln_lb_assign(B, acc + (int)j, f->fma ? kiln_lx_fma(B, wv, xv, a) : BIN(ADD, a, BIN(MUL, wv, xv)));
      }
    }
  }
  for (int64_t j = 0; j < f->gw; j++) {
    kiln_lx *ow = IADD(o0, CI(j));
    kiln_lx *idx[4] = {f->nv, f->mv, rs->o, ow};
    if (f->sp == 1) idx[2] = ow;
    kiln_lower_store(L, f->n, 0, idx, IADD(IADD(f->yb, IMUL(rs->o, f->c.out)), ow), LOCAL(acc + (int)j));
  }
}

/* Interior columns [lo, hi) of rows rs in groups of f->gw lanes: whole groups
 * as a loop, then one more over the last gw columns, overlapping (the same
 * values again, as row_fn's stride-1 overlap); 0: not done. */
static int lane_groups(kiln_lctx *L, const dw *f, const span *rs, int64_t lo, int64_t hi) {
  for (int64_t kh = 0; kh < f->r.K; kh++)
    if (tap_class(&f->r, rs, kh) == 2) return 0;
  int64_t groups = (hi - lo) / f->gw;
  kiln_lx *g = IDX(kiln_lb_for(B, groups, (kiln_sched){0}));
  emit_lanes(L, f, rs, IADD(IMUL(g, f->gw), CI(lo)));
  kiln_lb_end(B);
  if (hi - lo > groups * f->gw) emit_lanes(L, f, rs, CI(hi - f->gw));
  return 1;
}

/* One row span: left border columns, the interior loop, right border.
 * A stride-1 interior of whole vectors and a few columns more (MobileNetV2's
 * 110 = 6 x 16 + 14) would leave those columns in the vectoriser's scalar
 * remainder (features.1.dw on the LLVM backend: 0.122 ms; 0.080 ms
 * overlapped).  So the whole vectors run as one loop and the last vector's
 * worth of columns as a second loop of exactly vw, overlapping the first
 * (stride 2 keeps its remainder: its 16-long strided loop measured slower
 * than the remainder).  The overlap computes the same values
 * again from the same inputs (Y is never X or a residual input here: the
 * kernel has many stores, so plan_inplace never runs it in place). */
static void row_fn(kiln_lctx *L, const dw *f, const span *unused, const span *rs) {
  (void)unused;
  int64_t lo = f->c.lo, hi = f->c.hi, w = hi - lo;
  each_span(L, f, rs, 0, lo, EDGE_MAX, col_fn);
  if (f->gw && lane_groups(L, f, rs, lo, hi)) {
    /* done */
  } else if (f->c.s == 1 && f->vw > 1 && w > f->vw && w % f->vw) {
    each_span(L, f, rs, lo, lo + w / f->vw * f->vw, 0, col_fn);
    each_span(L, f, rs, hi - f->vw, hi, 0, col_fn);
  } else {
    each_span(L, f, rs, lo, hi, 0, col_fn);
  }
  each_span(L, f, rs, hi, f->c.out, EDGE_MAX, col_fn);
}

/* ---- Short rows: one flat run ----
 *
 * Rows much shorter than a few vectors (MobileNetV2's 14x14 and 7x7
 * planes) leave the column loop mostly in its scalar remainder.  With
 * stride 1 and OW == W (Y's and X's pitch alike) the interior rows are one
 * run of positions v = oh*W + ow, every tap at the constant offset
 * (kh*dh - ph)*W + kw*dw - pw from v: one long vector loop.  A border
 * column inside the run would read an element of the neighbouring row; a
 * column tap that can fall outside X is therefore combined under a mask,
 * acc = mask ? fma(w, x, acc) : acc, from a compile-time table (1 where
 * the column is inside X) indexed by the position within a chunk of whole
 * rows (the pattern repeats every row).  The run starts after the first
 * interior row's left border and ends before the last one's right border
 * (emitted as points), so every read lies inside the plane. */
enum { FLAT_ROWS_MAX = 4, FLAT_CHUNK = 512 };

static int flat_ok(const dw *f, int64_t vw) {
  return f->sp == 2 && f->r.s == 1 && f->c.s == 1 && f->c.out == f->c.in && f->r.hi > f->r.lo &&
         f->c.hi > f->c.lo && f->c.out < FLAT_ROWS_MAX * vw;
}

/* Positions [v0, v0 + len) of the run; mask table mb (row m of masked
 * column tap kw at masked[kw] * cl, or NULL). */
static void emit_run(kiln_lctx *L, const dw *f, kiln_lx *v0, int64_t len, const kiln_buf *mb, const int *masked,
                     int64_t cl) {
  kiln_lx *j = IDX(kiln_lb_for(B, len, par_sched)), *v = IADD(v0, j);
  int acc = kiln_lb_decl(B, f->ct, LOCAL(f->bl));
  for (int64_t kh = 0; kh < f->r.K; kh++)
    for (int64_t kw = 0; kw < f->c.K; kw++) {
      int64_t off = (kh * f->r.d - f->r.p) * f->c.in + kw * f->c.d - f->c.p;
      kiln_lx *xv = kiln_lower_load(L, f->x, IADD(IADD(f->xb, v), CI(off)));
      kiln_lx *wv = LOCAL(f->wl[kh * f->c.K + kw]);
      kiln_lx *sum = f->fma ? kiln_lx_fma(B, wv, xv, LOCAL(acc)) : BIN(ADD, LOCAL(acc), BIN(MUL, wv, xv));
      if (masked[kw] >= 0) {
        kiln_lx *m = kiln_lx_load(B, mb, IADD(j, CI(masked[kw] * cl)));
        sum = kiln_lx_select(B, BIN(LT, kiln_lx_const_f(B, KILN_DT_F32, 0), m), sum, LOCAL(acc));
      }
      kiln_lb_assign(B, acc, sum);
    }
  kiln_lower_store(L, f->n, 0, NULL, IADD(f->yb, v), LOCAL(acc));
  kiln_lb_end(B);
}

static void emit_flat(kiln_lctx *L, const dw *f) {
  const dw_dim *r = &f->r, *c = &f->c;
  int64_t W = c->in, v0 = r->lo * W + c->lo, len = (r->hi - 1) * W + c->hi - v0;
  int64_t cl = (FLAT_CHUNK + W - 1) / W * W, nchunk = len / cl, tail = len % cl, tl = nchunk ? cl : tail;
  span first = {CI(r->lo), r->lo, r->lo}, last = {CI(r->hi - 1), r->hi - 1, r->hi - 1}, all = {NULL, 0, c->out - 1};
  each_span(L, f, &first, 0, c->lo, EDGE_MAX, col_fn);
  int masked[TAPS_MAX], nmask = 0;
  for (int64_t kw = 0; kw < c->K; kw++) masked[kw] = tap_class(c, &all, kw) == 1 ? -1 : nmask++;
  const kiln_buf *mb = NULL;
  if (nmask) {
    float *data = kiln_arena_array(L->b.p->arena, (size_t)(nmask * tl), sizeof *data);
    for (int64_t kw = 0; kw < c->K; kw++)
      for (int64_t t = 0; masked[kw] >= 0 && t < tl; t++) {
        int64_t iw = (v0 + t) % W + kw * c->d - c->p;
        data[masked[kw] * tl + t] = iw >= 0 && iw < W ? 1.0f : 0.0f;
      }
    char name[256];
    snprintf(name, sizeof name, "%s.colmask", f->n->out[0]->name);
    kiln_value mv = {0};
    mv.name = kiln_arena_strdup(L->b.p->arena, name);
    mv.id = -1;
    mv.dtype = KILN_DT_F32;
    mv.rank = 1;
    mv.dims[0] = nmask * tl;
    mv.data = data;
    mb = kiln_program_add_buf(L->b.p, &mv, KILN_BUF_WEIGHT);
  }
  if (nchunk) {
    kiln_lx *k = IDX(kiln_lb_for(B, nchunk, par_sched));
    emit_run(L, f, IADD(IMUL(k, cl), CI(v0)), cl, mb, masked, tl);
    kiln_lb_end(B);
  }
  if (tail) emit_run(L, f, CI(v0 + nchunk * cl), tail, mb, masked, tl);
  each_span(L, f, &last, c->hi, c->out, EDGE_MAX, col_fn);
}

int kiln_lower_conv_dw(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  if (g->Cg != 1 || g->G != g->C || g->sp > 2 || g->ksz > TAPS_MAX) return -1;
  dw f = {.n = n, .sp = g->sp};
  f.c = dim_of(g, g->sp - 1);
  f.r = g->sp == 2 ? dim_of(g, 0) : (dw_dim){1, 1, 1, 1, 1, 0, 0, 1};
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.fma = kiln_target_has_fma(L->target) && (f.ct == KILN_DT_F32 || f.ct == KILN_DT_F64);
  f.vw = kiln_target_lanes(L->target, f.ct);
  f.x = kiln_lower_buf(L, n->in[0]);
  f.w = kiln_lower_weight_ct(L, n->in[1]);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  /* bands of interior rows when the planes alone leave cores idle */
  int64_t planes = g->N * g->M, inner = f.r.hi - f.r.lo, want = 4 * (int64_t)L->target->cores;
  int flat = flat_ok(&f, f.vw);
  int64_t nb = planes >= want || flat ? 1 : min64((want + planes - 1) / planes, inner / BAND_MIN);
  if (nb < 1) nb = 1;
  int64_t rpb = (inner + nb - 1) / nb;
  if (rpb > 0) nb = (inner + rpb - 1) / rpb;

  /* stride-2 rows of a vector of interior outputs or more, for a printer
   * that makes lane statements vectors (kiln_target.lane_statements); rows
   * shorter than a vector in groups of half or a quarter of it (MobileNetV2's
   * 13 and 6 interior columns with AVX-512: 8 and 4 lanes).
   * KILN_DW_LANES=0: off; =full: whole vectors only (for A/B runs, bench/README) */
  const char *lanes_env = getenv("KILN_DW_LANES");
  int lanes_ok = L->target->lane_statements && !(lanes_env && !strcmp(lanes_env, "0")) && f.c.s == 2 &&
                 f.c.d == 1 && f.ct == KILN_DT_F32 && f.x->dtype == KILN_DT_F32 && f.vw > 1;
  f.gw = lanes_ok ? kiln_target_group_lanes(L->target, f.ct, f.c.hi - f.c.lo) : 0;
  if (lanes_env && !strcmp(lanes_env, "full") && f.gw < f.vw) f.gw = 0;

  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "depthwise, one pass, %s%s", flat ? "the plane as one flat run" : "row by row",
                      f.gw ? ", stride-2 rows in lane groups" : "");
  if (f.gw) B->k->explicit_vectors = 1;
  kiln_lx *blk = IDX(kiln_lb_for(B, planes * nb, par_sched));
  kiln_lx *nm = nb == 1 ? blk : BIN(DIV, blk, CI(nb)), *band = nb == 1 ? CI(0) : BIN(REM, blk, CI(nb));
  int nml = kiln_lb_decl(B, KILN_DT_I64, nm);
  int nvl = kiln_lb_decl(B, KILN_DT_I64, g->M == 1 ? LOCAL(nml) : BIN(DIV, LOCAL(nml), CI(g->M)));
  int mvl = kiln_lb_decl(B, KILN_DT_I64, g->M == 1 ? CI(0) : BIN(REM, LOCAL(nml), CI(g->M)));
  int bandl = nb == 1 ? -1 : kiln_lb_decl(B, KILN_DT_I64, band);
  f.nv = LOCAL(nvl), f.mv = LOCAL(mvl);
  /* input channel m / mult of image n */
  kiln_lx *cin = g->Mg == 1 ? f.mv : BIN(DIV, f.mv, CI(g->Mg));
  f.xb = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(f.nv, g->C), cin), g->isz)));
  f.yb = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(nml), g->osz)));
  /* the weights of the taps some output reads (a tap outside X for every
   * output, as in a 1x1 plane with pads, is never combined) */
  span rall = {NULL, 0, f.r.out - 1}, call = {NULL, 0, f.c.out - 1};
  for (int64_t t = 0; t < g->ksz; t++)
    f.wl[t] = !tap_class(&f.r, &rall, t / f.c.K) || !tap_class(&f.c, &call, t % f.c.K)
                  ? -1
                  : kiln_lb_decl(B, f.ct, kiln_lower_load(L, f.w, IADD(IMUL(f.mv, g->ksz), CI(t))));
  f.bl = kiln_lb_decl(B, f.ct, bias ? kiln_lower_load(L, kiln_lower_weight_ct(L, bias), f.mv) : kiln_lx_const_f(B, f.ct, 0));

  span none = {CI(0), 0, 0};
  if (nb > 1) kiln_lb_if(B, BIN(EQ, LOCAL(bandl), CI(0)));
  each_span(L, &f, &none, 0, f.r.lo, EDGE_MAX, row_fn);
  if (nb > 1) kiln_lb_end(B);
  if (flat) {
    emit_flat(L, &f);
  } else if (nb == 1) {
    each_span(L, &f, &none, f.r.lo, f.r.hi, 0, row_fn);
  } else if (inner > 0) {
    /* band b: interior rows lo + b*rpb + i, i < rpb, the last band shorter */
    kiln_lx *i = IDX(kiln_lb_for(B, rpb, par_sched));
    kiln_lx *oh = IADD(IADD(IMUL(LOCAL(bandl), rpb), i), CI(f.r.lo));
    int guard = nb * rpb != inner;
    if (guard) kiln_lb_if(B, BIN(LT, oh, CI(f.r.hi)));
    row_fn(L, &f, &none, &(span){oh, f.r.lo, f.r.hi - 1});
    if (guard) kiln_lb_end(B);
    kiln_lb_end(B);
  }
  if (nb > 1) kiln_lb_if(B, BIN(EQ, LOCAL(bandl), CI(nb - 1)));
  each_span(L, &f, &none, f.r.hi, f.r.out, EDGE_MAX, row_fn);
  if (nb > 1) kiln_lb_end(B);
  kiln_lb_end(B);
  return 0;
}
