/* A direct GPU schedule of depthwise convolution (group == C, any channel
 * multiplier, 1-D or 2-D), built from conv_def.h's definition, fused
 * epilogue included.  schedule_gpu.c chooses it before the implicit GEMM,
 * which would use 9 of its 16 reduction rows for a 3x3 depthwise tap
 * window and one channel row per tile.
 *
 * A depthwise output sums only KH*KW products of one input plane: the
 * kernel is bound by memory, and the schedule aims at reading X once
 * from global memory, coalesced, and writing Y once, coalesced:
 *
 *   for bx in ceil(OW/TW)   blockIdx.x    a tile of TW = tx*rw output columns
 *    for by in ceil(OH/ty)  blockIdx.y    a band of ty output rows
 *     for bz in ceil(P/tz)  blockIdx.z    tz planes (n, m) of P = N*M
 *      shared xs[tz][IHt][IWt]            the band's input rows with their halo:
 *                                         IHt = (ty-1)*sh + (KH-1)*dh + 1, IWt alike
 *      for tx, ty, tz       threadIdx.x/y/z
 *       xs[e] = X[n, m/mult, ih0 + r, iw0 + c] (0 outside X)
 *                                         e = tid, tid + T, ...: consecutive threads
 *                                         take consecutive input columns
 *       barrier
 *       if plane and row exist:
 *        w[t] = W[m, 0, t], acc[j] = B[m]  the taps' weights in registers
 *        acc[j] += w[t] * xs[tz][ty*sh + kh*dh][(tx + j*tx_n)*sw + kw*dw]
 *                                         every tap t = (kh, kw), j < rw, unrolled
 *        Y[n, m, oh, bx*TW + tx + j*tx_n] = epilogue(acc[j])   where the column exists
 *
 * Choices:
 *  - The halo is staged once per block, so each input element is read from
 *    global memory about (1 + halo/tile) times instead of KH*KW times, and
 *    the padding becomes zeros in the tile: the tap loop has no bounds
 *    checks.  Loads are cooperative over the whole tile (one flat index),
 *    consecutive threads on consecutive columns: coalesced for any stride.
 *  - Each thread computes rw outputs of one row, tx_n columns apart (not
 *    adjacent): consecutive threads then read consecutive shared words
 *    (no bank conflicts at stride 1; stride 2 reads every other word, the
 *    2-way conflict any stride-2 reader has) and store consecutive output
 *    columns (coalesced 128-byte stores).  Adjacent outputs per thread would
 *    let a thread reuse overlapping taps in registers but make a warp's
 *    shared reads rw-way bank conflicts, a loss at rw >= 2.  The rw outputs
 *    share the weights held in registers and the index arithmetic.
 *  - Tile shape from the output: rw = 4 for rows of >= 64 columns, 2 for
 *    >= 32, else 1; tx_n = ceil(OW/rw) up to 32 (a warp along a row); rows
 *    fill up to 256 threads; small planes (7x7, 14x14) put several planes
 *    in one block (threadIdx.z) so warps stay mostly full.  Bands and plane
 *    groups shrink until the grid has >= 264 blocks (2 per SM of a
 *    132-SM GPU) where the tensor allows, and the tile fits 48 KiB of
 *    shared memory (else the node is declined: the generic mapping runs).
 *  - Up to TAPS_MAX taps are unrolled with their weights in registers;
 *    larger windows run a loop over taps reading W (uniform across the
 *    block: a broadcast, cached load).
 *  - Sums are in the compute type (f32 for f16/bf16 tensors), the bias
 *    first then the taps in order, one FMA each: what the CPU depthwise
 *    schedule (lower_conv_dw.c) computes.  The store goes through
 *    kiln_lower_store (lower_store.c), which applies the node's fused
 *    epilogue (bias, Relu/Clip, residual Add) and the output's dtype. */
#include "conv_def.h"

#include "lower_macros.h"

enum {
  TAPS_MAX = 64,           /* taps unrolled with their weights in registers */
  RW_MAX = 8,              /* outputs per thread */
  THREADS_MAX = 256,       /* threads per block the chooser aims at */
  BLOCKS_MIN = 264,        /* 2 blocks per SM of a 132-SM GPU */
  SHARED_MAX = 48 * 1024,  /* bytes of shared memory without opting in */
  GRID_YZ_MAX = 65535      /* gridDim.y / gridDim.z limit */
};

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* One spatial dim: rows (the first of two) or columns (the last). */
typedef struct dwd {
  int64_t in, out, K, s, d, p;
} dwd;

static dwd dim_of(const kiln_conv_geom *g, int i) { return (dwd){g->in[i], g->out[i], g->K[i], g->s[i], g->d[i], g->pb[i]}; }
static dwd rows_of(const kiln_conv_geom *g) { return g->sp == 2 ? dim_of(g, 0) : (dwd){1, 1, 1, 1, 1, 0}; }

/* Input extent a tile of `t` outputs reads along d: the halo included. */
static int64_t span_in(const dwd *d, int64_t t) { return (t - 1) * d->s + (d->K - 1) * d->d + 1; }

static int64_t shared_bytes(const kiln_conv_geom *g, const kiln_dw_gpu_tile *t, kiln_dtype ct) {
  dwd r = rows_of(g), c = dim_of(g, g->sp - 1);
  return t->tz * span_in(&r, t->ty) * span_in(&c, t->tx * t->rw) * (int64_t)kiln_dtype_size(ct);
}

static int64_t blocks_of(const kiln_conv_geom *g, const kiln_dw_gpu_tile *t) {
  dwd r = rows_of(g), c = dim_of(g, g->sp - 1);
  return cdiv(c.out, t->tx * t->rw) * cdiv(r.out, t->ty) * cdiv(g->N * g->M, t->tz);
}

int kiln_dw_gpu_wanted(const kiln_conv_geom *g) { return g->Cg == 1 && g->G == g->C && g->sp >= 1 && g->sp <= 2; }

void kiln_dw_gpu_tile_for(const kiln_conv_geom *g, kiln_dtype ct, kiln_dw_gpu_tile *t) {
  dwd r = rows_of(g), c = dim_of(g, g->sp - 1);
  int64_t planes = g->N * g->M;
  t->rw = c.out >= 64 ? 4 : c.out >= 32 ? 2 : 1;
  t->tx = min64(32, cdiv(c.out, t->rw));
  t->ty = min64(r.out, THREADS_MAX / t->tx);
  t->ty = cdiv(r.out, cdiv(r.out, t->ty)); /* even bands */
  t->tz = min64(planes, THREADS_MAX / (t->tx * t->ty));
  if (t->tz < 1) t->tz = 1;
  while (t->tz > 1 && blocks_of(g, t) < BLOCKS_MIN) t->tz = cdiv(t->tz, 2);
  while (t->ty > 1 && blocks_of(g, t) < BLOCKS_MIN && t->tx * t->ty > 64) t->ty = cdiv(t->ty, 2);
  while (t->tz > 1 && shared_bytes(g, t, ct) > SHARED_MAX) t->tz = cdiv(t->tz, 2);
  while (t->ty > 1 && shared_bytes(g, t, ct) > SHARED_MAX) t->ty = cdiv(t->ty, 2);
  while (t->rw > 1 && shared_bytes(g, t, ct) > SHARED_MAX) t->rw /= 2;
  while (t->tx > 1 && shared_bytes(g, t, ct) > SHARED_MAX) t->tx = cdiv(t->tx, 2);
}

typedef struct sdw {
  const kiln_node *n;
  const kiln_conv_geom *g;
  kiln_dw_gpu_tile t;
  dwd r, c;
  int64_t planes, ihs, iws, T; /* N*M; the shared tile's rows and columns; threads */
  kiln_dtype ct;
  int fma;
  const kiln_buf *x, *w, *bias, *xs;
  kiln_lx *bx, *by, *bz, *tx, *ty, *tz;
} sdw;

/* a < k as a condition, or NULL when every value up to max passes. */
static kiln_lx *below(kiln_lctx *L, kiln_lx *a, int64_t max, int64_t k) { return max < k ? NULL : BIN(LT, a, CI(k)); }
static kiln_lx *and_opt(kiln_lctx *L, kiln_lx *a, kiln_lx *c) { return !a ? c : !c ? a : BIN(AND, a, c); }
static kiln_lx *let(kiln_lctx *L, kiln_lx *v) {
  if (v->kind == KILN_LX_CONST || v->kind == KILN_LX_INDEX || v->kind == KILN_LX_LOCAL) return v;
  return LOCAL(kiln_lb_decl(B, KILN_DT_I64, v));
}

/* 0 <= pos < ext for pos ranging over [lo, hi]: only the halves that can fail. */
static kiln_lx *inside(kiln_lctx *L, kiln_lx *pos, int64_t lo, int64_t hi, int64_t ext) {
  return and_opt(L, lo < 0 ? BIN(LE, CI(0), pos) : NULL, hi >= ext ? BIN(LT, pos, CI(ext)) : NULL);
}

/* The cooperative load of the block's input tile into xs. */
static void load_tile(kiln_lctx *L, const sdw *f) {
  int64_t plane_sz = f->ihs * f->iws, size = f->t.tz * plane_sz, nl = cdiv(size, f->T);
  kiln_lx *tid = let(L, IADD(IMUL(IADD(IMUL(f->tz, f->t.ty), f->ty), f->t.tx), f->tx));
  kiln_lx *e = tid;
  int open = 0;
  if (nl > 1) {
    e = let(L, IADD(IMUL(IDX(kiln_lb_for(B, nl, (kiln_sched){0})), f->T), tid));
    open++;
  }
  if (nl * f->T > size) {
    kiln_lb_if(B, BIN(LT, e, CI(size)));
    open++;
  }
  kiln_lx *pz = f->t.tz == 1 ? CI(0) : let(L, BIN(DIV, e, CI(plane_sz)));
  kiln_lx *rr = f->ihs == 1 ? CI(0) : let(L, BIN(REM, BIN(DIV, e, CI(f->iws)), CI(f->ihs)));
  kiln_lx *cc = f->iws == 1 ? CI(0) : let(L, BIN(REM, e, CI(f->iws)));
  kiln_lx *plane = let(L, IADD(IMUL(f->bz, f->t.tz), pz));
  int64_t npg = cdiv(f->planes, f->t.tz), nrt = cdiv(f->r.out, f->t.ty), nct = cdiv(f->c.out, f->t.tx * f->t.rw);
  /* input row ih = by*ty*sh - ph + rr, column iw = bx*TW*sw - pw + cc */
  kiln_lx *ih = let(L, IADD(IADD(IMUL(f->by, f->t.ty * f->r.s), rr), CI(-f->r.p)));
  kiln_lx *iw = let(L, IADD(IADD(IMUL(f->bx, f->t.tx * f->t.rw * f->c.s), cc), CI(-f->c.p)));
  kiln_lx *ok = below(L, plane, npg * f->t.tz - 1, f->planes);
  ok = and_opt(L, ok, inside(L, ih, -f->r.p, (nrt - 1) * f->t.ty * f->r.s - f->r.p + f->ihs - 1, f->r.in));
  ok = and_opt(L, ok, inside(L, iw, -f->c.p, (nct - 1) * f->t.tx * f->t.rw * f->c.s - f->c.p + f->iws - 1, f->c.in));
  if (ok) kiln_lb_if(B, ok);
  /* plane = n*M + m reads input channel m / mult of image n: (n*C + m/mult) */
  kiln_lx *nm = f->g->M == 1 ? CI(0) : BIN(REM, plane, CI(f->g->M));
  kiln_lx *xplane = IADD(IMUL(f->g->M == 1 ? plane : BIN(DIV, plane, CI(f->g->M)), f->g->C),
                         f->g->Mg == 1 ? nm : BIN(DIV, nm, CI(f->g->Mg)));
  kiln_lx *src = IADD(IADD(IMUL(xplane, f->r.in * f->c.in), IMUL(ih, f->c.in)), iw);
  kiln_lb_store(B, f->xs, e, kiln_lower_load(L, f->x, src));
  if (ok) {
    kiln_lb_else(B);
    kiln_lb_store(B, f->xs, e, kiln_lx_const_f(B, f->ct, 0));
    kiln_lb_end(B);
  }
  kiln_lower_close(L, open);
}

/* acc += w * x, one rounding where FMA is used. */
static kiln_lx *madd(kiln_lctx *L, const sdw *f, kiln_lx *w, kiln_lx *x, kiln_lx *acc) {
  return f->fma ? kiln_lx_fma(B, w, x, acc) : BIN(ADD, acc, BIN(MUL, w, x));
}

/* The thread's rw outputs of row oh in plane `plane`. */
static void compute(kiln_lctx *L, const sdw *f, kiln_lx *plane, kiln_lx *oh) {
  const kiln_conv_geom *g = f->g;
  int64_t rw = f->t.rw, tw = f->t.tx * rw, nct = cdiv(f->c.out, tw);
  kiln_lx *mv = let(L, g->M == 1 ? CI(0) : BIN(REM, plane, CI(g->M)));
  kiln_lx *nv = g->M == 1 ? plane : BIN(DIV, plane, CI(g->M)); /* read only by a broadcast epilogue operand */
  int acc[RW_MAX];
  kiln_lx *bias = f->bias ? kiln_lower_load(L, f->bias, mv) : kiln_lx_const_f(B, f->ct, 0);
  int bl = kiln_lb_decl(B, f->ct, bias);
  for (int64_t j = 0; j < rw; j++) acc[j] = kiln_lb_decl(B, f->ct, LOCAL(bl));
  /* xs[(tz*ihs + ty*sh + kh*dh)*iws + (tx + j*tx_n)*sw + kw*dw] */
  kiln_lx *row0 = let(L, IMUL(IADD(IMUL(f->tz, f->ihs), IMUL(f->ty, f->r.s)), f->iws));
  kiln_lx *base = let(L, IADD(row0, IMUL(f->tx, f->c.s)));
  kiln_lx *wbase = let(L, IMUL(mv, g->ksz));
  if (g->ksz <= TAPS_MAX) {
    int wl[TAPS_MAX];
    for (int64_t t = 0; t < g->ksz; t++) wl[t] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->w, IADD(wbase, CI(t))));
    for (int64_t kh = 0; kh < f->r.K; kh++)
      for (int64_t kw = 0; kw < f->c.K; kw++)
        for (int64_t j = 0; j < rw; j++) {
          int64_t off = kh * f->r.d * f->iws + j * f->t.tx * f->c.s + kw * f->c.d;
          kiln_lx *xv = kiln_lx_load(B, f->xs, IADD(base, CI(off)));
          kiln_lb_assign(B, acc[j], madd(L, f, LOCAL(wl[kh * f->c.K + kw]), xv, LOCAL(acc[j])));
        }
  } else { /* a large window: a loop over taps, W read per tap */
    kiln_lx *kh = IDX(kiln_lb_for(B, f->r.K, (kiln_sched){0}));
    kiln_lx *kw = IDX(kiln_lb_for(B, f->c.K, (kiln_sched){0}));
    kiln_lx *wv = let(L, IADD(IADD(wbase, IMUL(kh, f->c.K)), kw));
    int wl = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->w, wv));
    kiln_lx *xo = let(L, IADD(IADD(base, IMUL(kh, f->r.d * f->iws)), IMUL(kw, f->c.d)));
    for (int64_t j = 0; j < rw; j++) {
      kiln_lx *xv = kiln_lx_load(B, f->xs, IADD(xo, CI(j * f->t.tx * f->c.s)));
      kiln_lb_assign(B, acc[j], madd(L, f, LOCAL(wl), xv, LOCAL(acc[j])));
    }
    kiln_lower_close(L, 2);
  }
  kiln_lx *yrow = let(L, IMUL(IADD(IMUL(plane, f->r.out), oh), f->c.out));
  for (int64_t j = 0; j < rw; j++) {
    kiln_lx *ow = let(L, IADD(IADD(IMUL(f->bx, tw), f->tx), CI(j * f->t.tx)));
    kiln_lx *ok = below(L, ow, (nct - 1) * tw + (f->t.tx - 1) + j * f->t.tx, f->c.out);
    if (ok) kiln_lb_if(B, ok);
    kiln_lx *idx[4] = {nv, mv, oh, ow};
    if (g->sp == 1) idx[2] = ow;
    kiln_lower_store(L, f->n, 0, idx, IADD(yrow, ow), LOCAL(acc[j]));
    if (ok) kiln_lb_end(B);
  }
}

static int schedule(kiln_lctx *L, const kiln_node *n, const kiln_conv_def *def, const kiln_dw_gpu_tile *t) {
  const kiln_conv_geom *g = &def->g;
  sdw f = {.n = n, .g = g, .t = *t, .r = rows_of(g), .c = dim_of(g, g->sp - 1), .planes = g->N * g->M};
  if (!kiln_dw_gpu_wanted(g)) return kiln_lower_fail(L, n, "the depthwise GPU schedule needs group == C and 1 or 2 spatial dims");
  if (t->tx < 1 || t->ty < 1 || t->tz < 1 || t->rw < 1 || t->rw > RW_MAX || t->tx * t->ty * t->tz > 1024)
    return kiln_lower_fail(L, n, "depthwise GPU tile %lldx%lldx%lld threads, %lld outputs each: 1..1024 threads and "
                           "1..%d outputs per thread", (long long)t->tx, (long long)t->ty, (long long)t->tz,
                           (long long)t->rw, RW_MAX);
  f.ct = kiln_lower_ctype(def->y->dtype);
  f.fma = kiln_target_has_fma(L->target) && (f.ct == KILN_DT_F32 || f.ct == KILN_DT_F64);
  if (shared_bytes(g, t, f.ct) > SHARED_MAX)
    return kiln_lower_fail(L, n, "depthwise GPU tile needs %lld bytes of shared memory, over 48 KiB",
                           (long long)shared_bytes(g, t, f.ct));
  int64_t nct = cdiv(f.c.out, t->tx * t->rw), nrt = cdiv(f.r.out, t->ty), npg = cdiv(f.planes, t->tz);
  if (nrt > GRID_YZ_MAX || npg > GRID_YZ_MAX)
    return kiln_lower_fail(L, n, "depthwise GPU grid of %lldx%lldx%lld blocks: y and z are limited to %d",
                           (long long)nct, (long long)nrt, (long long)npg, GRID_YZ_MAX);
  if (kiln_lower_check_epilogue(L, n)) return -1;
  f.ihs = span_in(&f.r, t->ty);
  f.iws = span_in(&f.c, t->tx * t->rw);
  f.T = t->tx * t->ty * t->tz;
  f.x = kiln_lower_buf(L, def->x);
  f.w = kiln_lower_buf(L, def->w);
  f.bias = def->b ? kiln_lower_buf(L, def->b) : NULL;

  kiln_lower_begin(L, n);
  f.bx = IDX(kiln_lb_for(B, nct, (kiln_sched){.gpu = 1}));
  f.by = IDX(kiln_lb_for(B, nrt, (kiln_sched){.gpu = 2}));
  f.bz = IDX(kiln_lb_for(B, npg, (kiln_sched){.gpu = 3}));
  f.xs = kiln_lb_alloc(B, "X.tile", KILN_SCOPE_SHARED, f.ct, t->tz * f.ihs * f.iws);
  f.tx = IDX(kiln_lb_for(B, t->tx, (kiln_sched){.gpu = 4}));
  f.ty = IDX(kiln_lb_for(B, t->ty, (kiln_sched){.gpu = 5}));
  f.tz = IDX(kiln_lb_for(B, t->tz, (kiln_sched){.gpu = 6}));
  load_tile(L, &f);
  kiln_lb_barrier(B);
  kiln_lx *plane = let(L, IADD(IMUL(f.bz, t->tz), f.tz));
  kiln_lx *oh = let(L, IADD(IMUL(f.by, t->ty), f.ty));
  kiln_lx *ok = and_opt(L, below(L, plane, npg * t->tz - 1, f.planes), below(L, oh, nrt * t->ty - 1, f.r.out));
  if (ok) kiln_lb_if(B, ok);
  compute(L, &f, plane, oh);
  if (ok) kiln_lb_end(B);
  kiln_lower_close(L, 6);
  kiln_lb_launch(B);
  return L->d->failed ? -1 : 0; /* an epilogue step's scalar function may have failed */
}

int kiln_schedule_dw_gpu(kiln_program *p, const kiln_node *n, const kiln_dw_gpu_tile *t, kiln_diag *d) {
  kiln_lctx Lc, *L = &Lc;
  kiln_gpu_schedule_ctx(L, p, n, d); /* n's and its epilogue's values keep the lowering's buffers */
  if (n->op != KILN_OP_CONV) return kiln_lower_fail(L, n, "the depthwise GPU schedule covers Conv only");
  kiln_conv_def def;
  if (kiln_conv_def_of(L, n, &def)) return -1;
  kiln_dw_gpu_tile tt;
  if (!t) kiln_dw_gpu_tile_for(&def.g, kiln_lower_ctype(def.y->dtype), &tt);
  return schedule(L, n, &def, t ? t : &tt);
}
