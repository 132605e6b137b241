/* Conv as a register-blocked GEMM over im2col rows: the schedule for
 * convolutions with few input channels (first layers: 3 channels by 3x3
 * taps; not yet 7x7, see the shape rule) and for 1x1 convolutions too
 * short for the register path.
 *
 * With K = C * taps products per output (27 for a 3x3 stem), the
 * register path of lower_conv.c walks 3 channels of a phase-packed
 * input, a few taps each: short loops, a stride-2 input split into four
 * phase planes, and every output computed on a padded
 * "virtual" grid, then copied out of a scratch.  A 1x1 convolution with
 * 16 input channels (MobileNetV2's expand, SqueezeNet's expand1x1) sums
 * too few products for that path and goes to the in-memory one, which
 * loads and stores its sums once per channel block.  Both measured 17-30
 * GFLOP/s on one Sapphire Rapids core (FMA peak ~170).
 *
 * Here the convolution is the GEMM it is:
 *
 *   Y[n, m, p] = B[m] + sum over k < K of W[m, k] * Xc[n, k, p]
 *
 * with p the flat output position and Xc the im2col matrix: row k = (c,
 * tap) holds, for every output position, the input value that tap reads
 * (zero in the padding).  A 1x1, stride-1, unpadded convolution's Xc is X
 * itself, read in place; otherwise Xc is packed in chunks of output rows
 * that fit the L2, each chunk packed and multiplied in one iteration of
 * the parallel loop over (image, chunk), with each tap's valid output range
 * known at compile time (zero runs and one copy loop per dim: no bounds
 * test per element, one per row and tap).  The GEMM is
 * the register path's tile (lower_conv.c, kiln_conv_reg_shape: 6 rows by 4 vectors of
 * positions with 32 vector registers, 8 by 3 when 8 divides M and 6 does
 * not, 6 by 2 with 16): MB x VL sums in scalar locals, fully unrolled, fed
 * by VL contiguous loads of an Xc row and MB broadcast weights per k, and
 * stored once, through the node's output store (kiln_lower_store: bias,
 * Relu/Clip, residual Add applied there), straight into Y: positions are
 * the outputs themselves, so there is no virtual grid and no copy pass.
 *
 *   for (n, chunk of output rows)                               parallel
 *     pack: Xc[n, chunk][c*taps + t, p] = X[n, c, pos(p, t)] or 0
 *     for (supertile of the chunk's positions, block of MB channels)
 *     for tiles of VL positions p0 in the supertile
 *       acc[j][l] = B[m0+j]
 *       for k < K: x[l] = Xc[n, k, p0+l]; acc[j][l] += W[m0+j, k] * x[l]
 *       Y[n, m0+j, p0+l] = epilogue(acc[j][l])
 *
 * Positions not a multiple of VL end in a tile of whole vectors and one of
 * the last few; channels not a multiple of MB in a shorter block.
 * Supertiles keep the K rows a block reads in half the L2, so the blocks
 * of one supertile reuse them (1x1 read in place: the parallel loop is
 * over images x supertiles x channel blocks).
 * f16/bf16 inputs are widened in the pack (or at the load, read in
 * place), weights and bias read as f32 copies (kiln_lower_weight_ct),
 * sums in f32, one rounding at the store.  The products are fused
 * multiply-adds where the target has them (kiln_target_has_fma). */
#include "conv_def.h"

#include "lower_macros.h"

static const kiln_sched seq = {0};
static const kiln_sched par = {.parallel = 1};

/* The shape rule.  im2col: one group, at most IM_CIN_MAX input channels,
 * more than one tap, K at most IM_K_MAX.  Larger K fell off a cliff on
 * the 2-vCPU Sapphire Rapids VM: 3 channels x 3x3 (K = 27) ran at 82-93
 * GFLOP/s, 4 x 3x3 at 110, 3 x 5x5 (75) at 16-66 and ResNet's 3 x 7x7
 * (147) at 9-22, no better than the register path (22-24); each k of a
 * tile reads a row of Xc 49 KiB from the last, and 147 such streams are
 * more than the prefetchers follow (not confirmed: padding the row
 * stride off the 4 KiB aliasing did not help).  So 7x7 stems stay on the
 * register path for now.
 * 1x1 in place: one group, stride 1, no padding, at least IM_1X1_MIN and
 * fewer than KILN_CONV_RB_MIN_TERMS input channels (more go to the
 * register path); fewer than IM_1X1_MIN sum too little to fill a tile's
 * loads with arithmetic.  Convolutions of fewer than IM_MIN_MACS
 * multiply-adds in all stay where they were (their unrolled tiles would
 * only lengthen the dumps). */
enum { IM_CIN_MAX = 4, IM_K_MAX = 64, IM_1X1_MIN = 8, IM_MIN_MACS = 65536 };

static int is_1x1_direct(const kiln_conv_geom *g) {
  for (int i = 0; i < g->sp; i++)
    if (g->K[i] != 1 || g->s[i] != 1 || g->pb[i] != 0 || g->in[i] != g->out[i]) return 0;
  return 1;
}

int kiln_conv_im2col_wanted(const kiln_conv_geom *g, kiln_dtype ct) {
  if (g->G != 1 || (ct != KILN_DT_F32 && ct != KILN_DT_F64)) return 0;
  if (g->N * g->osz * g->M * g->Cg * g->ksz < IM_MIN_MACS) return 0; /* tiny: a few microseconds either way */
  if (is_1x1_direct(g)) return g->Cg >= IM_1X1_MIN && g->Cg < KILN_CONV_RB_MIN_TERMS;
  return g->Cg <= IM_CIN_MAX && g->ksz > 1 && g->Cg * g->ksz <= IM_K_MAX;
}

static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

typedef struct im2col {
  const kiln_conv_geom *g;
  const kiln_buf *x, *xc, *w, *bias;
  kiln_dtype ct;
  int64_t K, P;           /* rows of Xc (products per output), Xc's row stride */
  int64_t np;             /* positions this chunk computes (<= P) */
  int64_t inner[3];       /* positions per step of output dim i */
  kiln_lx *xb, *wb, *m0;  /* per block: Xc row 0 of image n, W row m0, first channel */
  kiln_lx *nimg;          /* the image */
  kiln_lx *y0;            /* the chunk's first output position */
  int fma;
} im2col;

/* Zeros Xc[po .. po + len). */
static void zero_run(kiln_lctx *L, const im2col *f, kiln_lx *po, int64_t len) {
  if (len <= 0) return;
  kiln_lx *q = IDX(kiln_lb_for(B, len, seq));
  kiln_lb_store(B, f->xc, IADD(po, q), kiln_lx_const_f(B, f->ct, 0));
  kiln_lb_end(B);
}

/* Xc[po + o] = X[xo + o * xs] for o < n along the last dim: groups of the
 * target's lanes as that many consecutive statements (unrolled), then one
 * by one.  The packs sit inside the GEMM's parallel iteration, so they are
 * printed in the tiled tier, which has no loop vectoriser; its lane
 * printer (backends/llvm/llvm_lanes.c) makes each group one vector copy,
 * the loads of a stride-2 tap one load of twice the lanes and a shuffle;
 * a row that is not whole groups ends in one more group over its last
 * lanes, overlapping the one before (it copies the same values again).
 * As a loop of single copies the stride-2 packs of SqueezeNet's and
 * MobileNetV2's 3x3 stems stayed scalar: one load and one store an element. */
static void copy_run(kiln_lctx *L, const im2col *f, kiln_lx *po, kiln_lx *xo, int64_t n, int64_t xs) {
  int64_t w = f->ct == KILN_DT_F32 && f->x->dtype == KILN_DT_F32 && (xs == 1 || xs == 2) ? kiln_target_lanes(L->target, f->ct) : 1;
  int64_t groups = w > 1 ? n / w : 0;
  if (groups > 0) {
    kiln_lx *q = IMUL(IDX(kiln_lb_for(B, groups, seq)), w);
    kiln_lx *pg = IADD(po, q), *xg = IADD(xo, IMUL(q, xs));
    for (int64_t l = 0; l < w; l++) kiln_lb_store(B, f->xc, IADD(pg, CI(l)), kiln_lx_load(B, f->x, IADD(xg, CI(l * xs))));
    kiln_lb_end(B);
  }
  if (groups > 0 && n > groups * w) { /* the last w again, overlapping: the same values */
    kiln_lx *pg = IADD(po, CI(n - w)), *xg = IADD(xo, CI((n - w) * xs));
    for (int64_t l = 0; l < w; l++) kiln_lb_store(B, f->xc, IADD(pg, CI(l)), kiln_lx_load(B, f->x, IADD(xg, CI(l * xs))));
  } else if (n > groups * w) {
    kiln_lx *o = IADD(IDX(kiln_lb_for(B, n - groups * w, seq)), CI(groups * w));
    kiln_lb_store(B, f->xc, IADD(po, o), kiln_lx_cast(B, f->ct, kiln_lx_load(B, f->x, IADD(xo, IMUL(o, xs)))));
    kiln_lb_end(B);
  }
}

/* The part of tap t's Xc row from output dim i on: po is the row's offset
 * at this dim's first position, xo X's offset of the dims before.  Along
 * dim i the output positions [lo, hi) read inside X (known here: the tap
 * is static), the others read zero. */
static void pack_dim(kiln_lctx *L, const im2col *f, const int64_t *tap, int i, kiln_lx *po, kiln_lx *xo) {
  const kiln_conv_geom *g = f->g;
  int64_t a = tap[i] * g->d[i] - g->pb[i], in = f->inner[i];
  int64_t lo = clamp64(floordiv(-a + g->s[i] - 1, g->s[i]), 0, g->out[i]);
  int64_t hi = clamp64(floordiv(g->in[i] - 1 - a, g->s[i]) + 1, lo, g->out[i]);
  zero_run(L, f, po, lo * in);
  if (hi > lo && i == g->sp - 1 && in == 1) {
    copy_run(L, f, IADD(po, CI(lo)), IADD(xo, CI((lo * g->s[i] + a) * g->xstr[i])), hi - lo, g->s[i] * g->xstr[i]);
  } else if (hi > lo) {
    kiln_lx *o = IADD(IDX(kiln_lb_for(B, hi - lo, seq)), CI(lo));
    kiln_lx *xi = IADD(xo, IMUL(IADD(IMUL(o, g->s[i]), CI(a)), g->xstr[i])), *pi = IADD(po, IMUL(o, in));
    if (i == g->sp - 1)
      kiln_lb_store(B, f->xc, pi, kiln_lx_cast(B, f->ct, kiln_lx_load(B, f->x, xi)));
    else
      pack_dim(L, f, tap, i + 1, pi, xi);
    kiln_lb_end(B);
  }
  zero_run(L, f, IADD(po, CI(hi * in)), (g->out[i] - hi) * in);
}

/* Xc[c*taps + t, :] from f->xb for every tap t of channel c of image
 * f->nimg (nimgs > 1: of every image, each nimgs * K * P further on),
 * output rows [r0, r0 + nr) of the first dim (a chunk), one iteration
 * per (image, c, row) with two or more dims, the first dim's bounds tested
 * once per row and tap.  One dim: the whole row, one iteration per channel. */
static void emit_pack(kiln_lctx *L, const im2col *f, kiln_lx *r0, int64_t olo, int64_t ohi, int64_t nr, int64_t nimgs,
                      kiln_sched sched) {
  const kiln_conv_geom *g = f->g;
  int rows = g->sp > 1;
  int64_t o0n = rows ? nr : 1, per = g->C * o0n;
  kiln_lx *it = IDX(kiln_lb_for(B, nimgs * per, sched));
  kiln_lx *img = nimgs > 1 ? BIN(DIV, it, CI(per)) : f->nimg, *ci = nimgs > 1 ? BIN(REM, it, CI(per)) : it;
  kiln_lx *c = rows ? BIN(DIV, ci, CI(o0n)) : ci, *r = rows ? BIN(REM, ci, CI(o0n)) : NULL;
  kiln_lx *xo = IMUL(IADD(IMUL(img, g->C), c), g->isz);
  kiln_lx *base = nimgs > 1 ? IADD(f->xb, IMUL(img, f->K * f->P)) : f->xb; /* this image's Xc */
  for (int64_t t = 0; t < g->ksz; t++) {
    int64_t tap[3];
    for (int i = 0; i < g->sp; i++) tap[i] = t / g->kstr[i] % g->K[i];
    kiln_lx *po = IADD(base, IMUL(IADD(IMUL(c, g->ksz), CI(t)), f->P));
    if (!rows) {
      pack_dim(L, f, tap, 0, po, xo);
      continue;
    }
    /* the rows [olo, ohi] this pack covers (known here) decide whether the
     * tap's input row needs a test, or is never inside (a short last chunk) */
    int64_t a = tap[0] * g->d[0] - g->pb[0];
    kiln_lx *o0 = IADD(r0, r);
    kiln_lx *i0 = IADD(IMUL(o0, g->s[0]), CI(a));
    po = IADD(po, IMUL(r, f->inner[0]));
    if (ohi * g->s[0] + a < 0 || olo * g->s[0] + a >= g->in[0]) {
      zero_run(L, f, po, f->inner[0]);
      continue;
    }
    kiln_lx *ok = kiln_lower_in_range(L, i0, olo * g->s[0] + a < 0, ohi * g->s[0] + a >= g->in[0], g->in[0]);
    if (ok) kiln_lb_if(B, ok);
    pack_dim(L, f, tap, 1, po, IADD(xo, IMUL(i0, g->xstr[0])));
    if (ok) {
      kiln_lb_else(B);
      zero_run(L, f, po, f->inner[0]);
      kiln_lb_end(B);
    }
  }
  kiln_lb_end(B);
}

/* One register tile: mb channels from m0 by vl positions from p0. */
static void emit_tile(kiln_lctx *L, const kiln_node *n, const im2col *f, kiln_lx *p0, int64_t mb, int64_t vl) {
  int acc[KILN_CONV_RB_MB_MAX * KILN_CONV_RB_VL_MAX], rb[KILN_CONV_RB_MB_MAX], xl[KILN_CONV_RB_VL_MAX];
  for (int64_t j = 0; j < mb; j++)
    rb[j] = kiln_lb_decl(B, f->ct, f->bias ? kiln_lower_load(L, f->bias, IADD(f->m0, CI(j))) : kiln_lx_const_f(B, f->ct, 0));
  for (int64_t j = 0; j < mb; j++)
    for (int64_t l = 0; l < vl; l++) acc[j * vl + l] = kiln_lb_decl(B, f->ct, LOCAL(rb[j]));
  B->k->explicit_vectors = 1;
  kiln_lx *k = IDX(kiln_lb_for(B, f->K, seq));
  kiln_lx *xr = IADD(IADD(f->xb, IMUL(k, f->P)), p0), *wr = IADD(f->wb, k);
  for (int64_t l = 0; l < vl; l++) xl[l] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->xc, IADD(xr, CI(l))));
  for (int64_t j = 0; j < mb; j++) {
    int wl = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->w, IADD(wr, CI(j * f->K))));
    for (int64_t l = 0; l < vl; l++) {
      int a = acc[j * vl + l];
      kiln_lx *s = LOCAL(a), *w = LOCAL(wl), *x = LOCAL(xl[l]);
      kiln_lb_assign(B, a, f->fma ? kiln_lx_fma(B, w, x, s) : BIN(ADD, s, BIN(MUL, w, x)));
    }
  }
  kiln_lb_end(B);
  for (int64_t j = 0; j < mb; j++) {
    kiln_lx *row = IADD(IMUL(IADD(IMUL(f->nimg, f->g->M), IADD(f->m0, CI(j))), f->g->osz), f->y0);
    for (int64_t l = 0; l < vl; l++)
      kiln_lower_store(L, n, 0, NULL, IADD(IADD(row, p0), CI(l)), LOCAL(acc[j * vl + l]));
  }
}

/* (blk / inner) % extent, folding the trivial cases. */
static kiln_lx *digit(kiln_lctx *L, kiln_lx *blk, int64_t inner, int64_t extent, int outer) {
  if (extent == 1) return CI(0);
  kiln_lx *q = inner == 1 ? blk : BIN(DIV, blk, CI(inner));
  return outer ? q : BIN(REM, q, CI(extent));
}

/* The tiles of one block of mb channels: supertile st's full tiles, and
 * in the last supertile the positions past the full tiles. */
static void emit_block(kiln_lctx *L, const kiln_node *n, const im2col *f, int64_t mb, int64_t VL, int64_t lanes,
                       kiln_lx *st, int64_t nst, int64_t gt) {
  int64_t nsub = f->np / VL, vtail = f->np % VL;
  if (gt > 0) {
    kiln_lx *vt = gt > 1 ? IDX(kiln_lb_for(B, gt, seq)) : CI(0);
    kiln_lx *sub = IADD(IMUL(st, gt), vt);
    int guard = nst * gt != nsub;
    if (guard) kiln_lb_if(B, BIN(LT, sub, CI(nsub)));
    emit_tile(L, n, f, IMUL(sub, VL), mb, VL);
    kiln_lower_close(L, guard + (gt > 1));
  }
  if (vtail) { /* whole vectors, then the rest */
    int64_t whole = vtail / lanes * lanes;
    if (nst > 1) kiln_lb_if(B, BIN(EQ, st, CI(nst - 1)));
    if (whole) emit_tile(L, n, f, CI(nsub * VL), mb, whole);
    if (vtail > whole) emit_tile(L, n, f, CI(nsub * VL + whole), mb, vtail - whole);
    if (nst > 1) kiln_lb_end(B);
  }
}

/* The GEMM over f->np positions of nimgs images (1: image f->nimg): one
 * loop over images x supertiles x channel blocks. */
static void emit_gemm(kiln_lctx *L, const kiln_node *n, im2col *f, int64_t MB, int64_t VL, int64_t lanes, int64_t nimgs,
                      kiln_sched sched) {
  const kiln_conv_geom *g = f->g;
  /* supertiles: tiles whose K rows fit in half the L2 */
  int64_t nsub = f->np / VL, row = (int64_t)kiln_dtype_size(f->xc->dtype) * f->K * VL;
  int64_t gt = row > 0 ? L->target->l2_bytes / 2 / row : 1;
  if (gt < 1) gt = 1;
  int64_t nst = nsub > gt ? (nsub + gt - 1) / gt : 1;
  gt = nsub ? (nsub + nst - 1) / nst : 0;
  int64_t nb = (g->M + MB - 1) / MB, nbfull = g->M / MB, mtail = g->M % MB;
  kiln_lx *blk = IDX(kiln_lb_for(B, nimgs * nst * nb, sched));
  if (nimgs > 1) {
    int nv = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, nst * nb, nimgs, 1));
    f->nimg = LOCAL(nv);
    f->xb = IMUL(LOCAL(nv), f->K * f->P);
  }
  int st = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, nb, nst, nimgs == 1));
  int bi = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, 1, nb, 0));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(bi), MB));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(m0), f->K));
  f->m0 = LOCAL(m0), f->wb = LOCAL(wb);
  if (nbfull && mtail) kiln_lb_if(B, BIN(LT, LOCAL(bi), CI(nbfull)));
  if (nbfull) emit_block(L, n, f, MB, VL, lanes, LOCAL(st), nst, gt);
  if (nbfull && mtail) kiln_lb_else(B);
  if (mtail) emit_block(L, n, f, mtail, VL, lanes, LOCAL(st), nst, gt);
  if (nbfull && mtail) kiln_lb_end(B);
  kiln_lb_end(B);
}

/* Chunks: output rows of the first dim whose Xc fits the L2, each packed
 * and multiplied in one iteration of the parallel loop over (image,
 * chunk), so the GEMM reads the rows just packed from the L2, not from
 * memory (a 64^3 volume's stem has 28 MB of Xc per image).  The
 * parallel loop is over slots, one a core, each running its share of the
 * (image, chunk) pairs in turn in a slice of the scratch of its own (the
 * parallel loop is the kernel's top level, which is what the thread pool
 * runs; a serial loop over chunks around parallel ones ran on one
 * thread): the scratch is a chunk's Xc a core, not the whole Xc, which
 * put the 3-D CNN's peak workspace at 36.7 MB against a plain plan of
 * 9.4.  Enough chunks for two a core, and no more rows a chunk than all
 * slots' chunks fit in what the plain plan leaves free beside the kernel
 * (kiln_lower_scratch_room; one row at least); one dim: one chunk per image. */
static int64_t chunk_rows(const kiln_lctx *L, const kiln_node *n, const im2col *f) {
  const kiln_conv_geom *g = f->g;
  if (g->sp < 2) return g->out[0];
  int64_t row = (int64_t)kiln_dtype_size(f->ct) * f->K * f->inner[0];
  int64_t fit = row > 0 ? L->target->l2_bytes / row : g->out[0];
  int64_t want = 2 * (int64_t)L->target->cores, per_img = (want + g->N - 1) / g->N;
  int64_t r = (g->out[0] + per_img - 1) / per_img, room = kiln_lower_scratch_room(L, n);
  int64_t slots = L->target->cores < 1 ? 1 : L->target->cores;
  if (room >= 0 && row > 0 && room / (slots * row) < fit) fit = room / (slots * row);
  if (r > fit) r = fit;
  if (r < 1) r = 1;
  return r < g->out[0] ? r : g->out[0];
}

/* One chunk of nr rows from row r0 (an expression whose rows lie in
 * [olo, olo_last]), inside an iteration: pack, then GEMM. */
static void emit_chunk(kiln_lctx *L, const kiln_node *n, im2col *f, kiln_lx *r0, int64_t olo, int64_t olo_last,
                       int64_t nr, int64_t MB, int64_t VL, int64_t lanes) {
  int64_t per_row = f->g->sp > 1 ? f->inner[0] : 1;
  f->np = f->P = f->g->sp > 1 ? nr * per_row : f->g->osz; /* the chunk's Xc rows are its own length */
  f->y0 = f->g->sp > 1 ? IMUL(r0, per_row) : CI(0);
  emit_pack(L, f, r0, olo, olo_last, nr, 1, seq);
  emit_gemm(L, n, f, MB, VL, lanes, 1, seq);
}

void kiln_conv_im2col_pack(kiln_lctx *L, const kiln_conv_geom *g, const kiln_buf *x, const kiln_buf *xc, kiln_dtype ct) {
  im2col f = {0};
  f.g = g;
  f.ct = ct;
  f.K = g->Cg * g->ksz;
  f.P = g->osz;
  for (int i = g->sp - 1; i >= 0; i--) f.inner[i] = i == g->sp - 1 ? 1 : f.inner[i + 1] * g->out[i + 1];
  f.x = x;
  f.xc = xc;
  f.nimg = f.xb = CI(0);
  emit_pack(L, &f, CI(0), 0, g->out[0] - 1, g->sp > 1 ? g->out[0] : 1, g->N, par);
}

int kiln_lower_conv_im2col(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  im2col f = {0};
  f.g = g;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.K = g->Cg * g->ksz;
  for (int i = g->sp - 1; i >= 0; i--) f.inner[i] = i == g->sp - 1 ? 1 : f.inner[i + 1] * g->out[i + 1];
  f.x = kiln_lower_buf(L, n->in[0]);
  f.w = kiln_lower_weight_ct(L, n->in[1]);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  f.fma = kiln_target_has_fma(L->target);
  int64_t MB, VL, lanes = kiln_target_lanes(L->target, f.ct);
  kiln_conv_reg_shape(L->target, f.ct, g->M, &MB, &VL);
  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "GEMM over %s, register tiles of %lld channels x %lld positions",
                      is_1x1_direct(g) ? "X's rows" : "im2col rows", (long long)MB, (long long)VL);
  if (is_1x1_direct(g)) { /* Xc is X itself */
    f.xc = f.x;
    f.P = f.np = g->osz;
    f.y0 = f.nimg = f.xb = CI(0);
    emit_gemm(L, n, &f, MB, VL, lanes, g->N, par);
    return 0;
  }
  int64_t R = chunk_rows(L, n, &f), nfull = g->sp > 1 ? g->out[0] / R : 1, rtail = g->sp > 1 ? g->out[0] % R : 0;
  int64_t nch = nfull + (rtail > 0), pfull = g->sp > 1 ? R * f.inner[0] : g->osz;
  char name[256];
  snprintf(name, sizeof name, "%s.im2col", n->out[0]->name);
  int64_t niter = g->N * nch, slots = L->target->cores < 1 ? 1 : L->target->cores;
  if (slots > niter) slots = niter;
  int64_t per = (niter + slots - 1) / slots; /* a slot's pairs are consecutive: one image's rows, mostly */
  f.xc = kiln_lower_scratch(L, name, f.ct, slots * f.K * pfull); /* a slot's chunk: K x pfull at most */
  kiln_lx *slot = IDX(kiln_lb_for(B, slots, par));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(slot, f.K * pfull));
  kiln_lx *it = IADD(IMUL(slot, per), per > 1 ? IDX(kiln_lb_for(B, per, seq)) : CI(0));
  int guard = per * slots != niter;
  if (guard) kiln_lb_if(B, BIN(LT, it, CI(niter)));
  int nv = kiln_lb_decl(B, KILN_DT_I64, g->N > 1 ? BIN(DIV, it, CI(nch)) : CI(0));
  int ch = kiln_lb_decl(B, KILN_DT_I64, nch > 1 ? BIN(REM, it, CI(nch)) : CI(0));
  f.nimg = LOCAL(nv), f.xb = LOCAL(xb);
  if (rtail && nfull) kiln_lb_if(B, BIN(LT, LOCAL(ch), CI(nfull)));
  if (nfull) emit_chunk(L, n, &f, IMUL(LOCAL(ch), R), 0, nfull * R - 1, g->sp > 1 ? R : 1, MB, VL, lanes);
  if (rtail && nfull) kiln_lb_else(B);
  if (rtail) emit_chunk(L, n, &f, CI(nfull * R), nfull * R, g->out[0] - 1, rtail, MB, VL, lanes);
  if (rtail && nfull) kiln_lb_end(B);
  if (guard) kiln_lb_end(B);
  if (per > 1) kiln_lb_end(B);
  kiln_lb_end(B);
  return 0;
}
