/* Strided 2-D convolutions reading X in place, vectors along output
 * channels: ResNet's and GoogLeNet's 7x7 stems, ResNet's stride-2 3x3s
 * and 1x1 downsamples.
 *
 * The register path (lower_conv.c) puts vectors along output positions.
 * With strides it first packs X into zero-padded phase planes S, as large
 * as X itself: on ResNet-50, layer2.0.conv2's S (1.7 MB) beside the
 * plain plan's 4.8 MB of live values was the network's peak workspace
 * (issue #10: peak within the plain plan), and where the rows are short
 * (14 outputs, 15 virtual positions a row) a seventh of its lanes are
 * padding.  Here the vectors run along output channels instead, as in
 * lower_conv_gemmt.c and ONNX Runtime's NCHWc kernels: the weights are
 * re-laid once, at compile time, into blocks of RV = R x VW output
 * channels (kiln_conv_blocked_weights, k = (c, ky, kx)), and a tile holds
 * PB consecutive outputs of one row by RV channels of sums in registers:
 *
 *   for slot < slots                                          parallel
 *     for the slot's items (n, block of RV channels m0.., output row oy)
 *       for tiles of PB outputs ox0.. of the row
 *         acc[p][l] = B[m0+l]
 *         for c, ky (the row iy = oy*s - pad + ky inside X), kx:
 *           w[l] = Wt[blk, (c, ky, kx), l]               R vector loads
 *           acc[p][l] += X[n, c, iy, (ox0+p)*s - pad + kx] * w[l]   broadcast
 *         Yt[slot, ox0+p, l] = acc[p][l]                 (leading Relu/Clip applied)
 *       Y[n, m0+l, oy, ox] = Yt[slot, ox, l], through the output store
 *
 * No copy of X: the broadcasts read it where it is, at any stride.  The
 * taps along a row (kx) are unrolled here, so a tile at either end of a
 * row, whose column is known when it is emitted, multiplies by a constant
 * zero where a column lies outside X (the definition's zero padding);
 * the tiles between run without checks.  Rows
 * outside X are skipped by a test per (c, ky).  The scratch is one row of
 * sums a slot (112 x 64 floats for a 7x7 stem).  Yt runs along channels
 * and Y along positions, so the copy out is one scalar load and store an
 * output; with 27 or more products an output it weighs little. */
#include "conv_def.h"

#include <stdlib.h>
#include <string.h>

#include "lower_macros.h"

static const kiln_sched seq = {0};
static const kiln_sched par = {.parallel = 1};

/* PB outputs a tile; taps along a row unrolled up to ST_K_MAX; at most
 * ST_RV_MAX channels a block. */
enum { ST_PB = KILN_CONV_NCHWC_PB, ST_K_MAX = KILN_CONV_NCHWC_K_MAX, ST_RV_MAX = 64 };

static int64_t vectors(const kiln_target *t) { return t->vector_bytes >= 64 ? 4 : 2; }

typedef struct strided {
  const kiln_node *n;
  const kiln_conv_geom *g;
  const kiln_buf *x, *wt, *bias, *yt;
  kiln_dtype ct;
  int64_t RV, K;      /* channels a block; K = C x taps, the weights' row */
  int pre, fma;       /* leading pointwise epilogue steps applied in registers; FMA */
  int row_check;      /* some rows of a window fall outside X */
  int64_t xblk, yblk; /* X's, the result's NCHWc block (layout_nchwc.c), 0: plain */
  kiln_lx *xb, *wb, *tb, *oy, *m0, *nimg, *yb;  /* per item (yb: the blocked result's row) */
} strided;

int kiln_conv_strided_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, int planes_fit) {
  const kiln_target *t = L->target;
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  /* tests and benchmarks: 1 wherever the shape allows ("1r": with Yt
   * rows whatever the room), 0 never */
  const char *env = getenv("KILN_STRIDED");
  int forced = env && env[0] == '1';
  if ((env && !strcmp(env, "0")) || (!forced && (!t->lean_memory || planes_fit))) return 0;
  if (t->kind == KILN_TARGET_GPU || g->sp != 2 || g->G != 1 || (ct != KILN_DT_F32 && ct != KILN_DT_F64) ||
      n->in[0]->dtype != ct || !kiln_lower_fixed_weight(L, n->in[1]))
    return 0;
  int64_t rv = vectors(t) * kiln_target_lanes(t, ct);
  if (rv > ST_RV_MAX || g->M < rv || g->Cg * g->ksz < KILN_CONV_RB_MIN_TERMS) return 0;
  for (int i = 0; i < 2; i++)
    if (g->s[i] < 2 || g->d[i] != 1 || g->pb[i] < 0) return 0;
  /* a row's first tile covers its left border (its columns known) */
  return g->K[1] <= ST_K_MAX && (g->pb[1] + g->s[1] - 1) / g->s[1] <= ST_PB;
}

/* One tile: pb outputs of row f->oy from column ox0 (ox0s >= 0: that
 * column, known here, and the columns outside X read as zero; -1: a tile
 * between the borders, all inside), rvl lanes of channels. */
static void emit_tile(kiln_lctx *L, const strided *f, kiln_lx *ox0, int64_t ox0s, int64_t pb, int64_t rvl, int64_t mv) {
  const kiln_conv_geom *g = f->g;
  int64_t H = g->in[0], W = g->in[1], K0 = g->K[0], K1 = g->K[1], s1 = g->s[1], p1 = g->pb[1];
  int acc[ST_PB * ST_RV_MAX], wl[ST_RV_MAX], bl[ST_RV_MAX];
  for (int64_t l = 0; l < rvl; l++)
    bl[l] = kiln_lb_decl(B, f->ct, f->bias && l < mv ? kiln_lower_load(L, f->bias, IADD(f->m0, CI(l)))
                                                     : kiln_lx_const_f(B, f->ct, 0));
  for (int64_t p = 0; p < pb; p++)
    for (int64_t l = 0; l < rvl; l++) acc[p * rvl + l] = kiln_lb_decl(B, f->ct, LOCAL(bl[l]));
  B->k->explicit_vectors = 1;
  B->k->reused_vectors = 1; /* wl[] serve every output p */
  /* blocked X: channel c = cb*b + ci is element ci of a position's line */
  int64_t xs = f->xblk ? f->xblk : 1;
  kiln_lx *cb = f->xblk ? IDX(kiln_lb_for(B, g->C / xs, seq)) : NULL;
  kiln_lx *ci = f->xblk ? IDX(kiln_lb_for(B, xs, seq)) : NULL;
  kiln_lx *c = f->xblk ? IADD(IMUL(cb, xs), ci) : IDX(kiln_lb_for(B, g->C, seq));
  kiln_lx *ky = K0 > 1 ? IDX(kiln_lb_for(B, K0, seq)) : CI(0);
  kiln_lx *iy = IADD(IADD(IMUL(f->oy, g->s[0]), ky), CI(-g->pb[0]));
  if (f->row_check) kiln_lb_if(B, BIN(AND, BIN(LE, CI(0), iy), BIN(LT, iy, CI(H))));
  int xr = kiln_lb_decl(B, KILN_DT_I64, f->xblk ? IADD(IADD(IADD(f->xb, IMUL(cb, H * W * xs)), IMUL(iy, W * xs)), ci)
                                                : IADD(IADD(f->xb, IMUL(c, H * W)), IMUL(iy, W)));
  int wr = kiln_lb_decl(B, KILN_DT_I64, IADD(f->wb, IMUL(IADD(IMUL(c, K0 * K1), IMUL(ky, K1)), f->RV)));
  for (int64_t kx = 0; kx < K1; kx++) {
    int inside[ST_PB], any = 0;
    for (int64_t p = 0; p < pb; p++) {
      int64_t ix = (ox0s + p) * s1 - p1 + kx;
      inside[p] = ox0s < 0 || (ix >= 0 && ix < W);
      any |= inside[p];
    }
    if (!any) continue;
    for (int64_t l = 0; l < rvl; l++)
      wl[l] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->wt, IADD(LOCAL(wr), CI(kx * f->RV + l))));
    for (int64_t p = 0; p < pb; p++) {
      /* a column outside X is X's zero padding: a product of 0, as the
       * definition has it (skipping it left LLVM shuffling the tile's lanes) */
      kiln_lx *col = ox0s >= 0 ? CI(((ox0s + p) * s1 - p1 + kx) * xs) : IADD(IMUL(ox0, s1 * xs), CI((p * s1 - p1 + kx) * xs));
      int xl = kiln_lb_decl(B, f->ct, inside[p] ? kiln_lower_load(L, f->x, IADD(LOCAL(xr), col)) : kiln_lx_const_f(B, f->ct, 0));
      for (int64_t l = 0; l < rvl; l++) {
        int a = acc[p * rvl + l];
        kiln_lx *s = LOCAL(a), *x = LOCAL(xl), *w = LOCAL(wl[l]);
        kiln_lb_assign(B, a, f->fma ? kiln_lx_fma(B, x, w, s) : BIN(ADD, s, BIN(MUL, x, w)));
      }
    }
  }
  kiln_lower_close(L, 1 + (f->xblk > 0) + (K0 > 1) + f->row_check);
  int64_t yb = f->yblk, plane = g->out[0] * g->out[1] * yb;
  for (int64_t p = 0; p < pb; p++)
    for (int64_t l = 0; l < rvl; l++) {
      if (yb) { /* blocked result: lane l is element l % b of block m0/b + l/b's line at (oy, ox0 + p) */
        kiln_lx *row = IADD(IADD(f->yb, CI(l / yb * plane)), IMUL(IADD(ox0, CI(p)), yb));
        kiln_lower_store_phys(L, f->n, IADD(row, CI(l % yb)), kiln_lower_apply_steps(L, f->n, LOCAL(acc[p * rvl + l]), f->pre),
                              f->pre);
      } else if (f->yt) {
        kiln_lb_store(B, f->yt, IADD(IADD(f->tb, IMUL(IADD(ox0, CI(p)), f->RV)), CI(l)),
                      kiln_lower_apply_steps(L, f->n, LOCAL(acc[p * rvl + l]), f->pre));
      } else if (l < mv) { /* no room for Yt: each sum straight to Y, the whole epilogue on the way */
        kiln_lx *flat = IADD(IMUL(IADD(IMUL(IADD(IMUL(f->nimg, g->M), IADD(f->m0, CI(l))), g->out[0]), f->oy), g->out[1]),
                             IADD(ox0, CI(p)));
        kiln_lower_store_flat(L, f->n, 0, flat, LOCAL(acc[p * rvl + l]));
      }
    }
}

/* Row f->oy of one block: tiles at the left border, between the borders
 * (a loop), at the right border; then the row out of Yt. */
static void emit_row(kiln_lctx *L, const strided *f, int64_t rvl, int64_t mv) {
  const kiln_conv_geom *g = f->g;
  int64_t OW = g->out[1], W = g->in[1], s1 = g->s[1], p1 = g->pb[1], K1 = g->K[1];
  /* outputs [lo, hi] have every tap of the row inside X */
  int64_t lo = (p1 + s1 - 1) / s1, hi = (W - K1 + p1) / s1;
  if (hi > OW - 1) hi = OW - 1;
  int64_t a = lo > 0 ? ST_PB : 0;
  if (a > OW) a = OW;
  int64_t nt = hi + 1 - a >= ST_PB ? (hi + 1 - a) / ST_PB : 0;
  if (a > 0) emit_tile(L, f, CI(0), 0, a, rvl, mv);
  if (nt > 0) {
    kiln_lx *t = nt > 1 ? IDX(kiln_lb_for(B, nt, seq)) : CI(0);
    emit_tile(L, f, IADD(IMUL(t, ST_PB), CI(a)), -1, ST_PB, rvl, mv);
    if (nt > 1) kiln_lb_end(B);
  }
  for (int64_t ox = a + nt * ST_PB; ox < OW; ox += ST_PB)
    emit_tile(L, f, CI(ox), ox, OW - ox < ST_PB ? OW - ox : ST_PB, rvl, mv);
  if (!f->yt) return;
  kiln_lx *l = IDX(kiln_lb_for(B, mv, seq)), *ox = IDX(kiln_lb_for(B, OW, seq));
  kiln_lx *flat = IADD(IMUL(IADD(IMUL(IADD(IMUL(f->nimg, g->M), IADD(f->m0, l)), g->out[0]), f->oy), OW), ox);
  kiln_lower_store_rest(L, f->n, NULL, flat, kiln_lx_load(B, f->yt, IADD(IADD(f->tb, IMUL(ox, f->RV)), l)), f->pre);
  kiln_lower_close(L, 2);
}

int kiln_lower_conv_strided(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  strided f = {0};
  f.n = n, f.g = g;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  int64_t lanes = kiln_target_lanes(L->target, f.ct);
  f.RV = vectors(L->target) * lanes;
  f.K = g->C * g->ksz;
  f.wt = kiln_conv_blocked_weights(L, n->in[1], g->M, f.K, f.RV, f.ct);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  f.x = kiln_lower_buf(L, n->in[0]);
  f.fma = kiln_target_has_fma(L->target);
  f.pre = kiln_lower_pointwise_steps(n);
  const kiln_value *res = kiln_lower_result(n, 0);
  f.xblk = n->in[0]->layout == KILN_LAYOUT_NCHWC ? n->in[0]->layout_block : 0;
  f.yblk = res->layout == KILN_LAYOUT_NCHWC ? res->layout_block : 0;
  if ((f.xblk && (f.xblk != lanes || g->C % f.xblk)) || (f.yblk && (f.yblk != lanes || g->M % f.yblk)) ||
      !kiln_lower_fixed_weight(L, n->in[1]) || g->sp != 2 || g->G != 1 || n->in[0]->dtype != f.ct)
    return kiln_lower_fail(L, n, "internal: a blocked layout on a convolution the NCHWc schedule does not take");
  f.row_check = g->pb[0] > 0 || (g->out[0] - 1) * g->s[0] - g->pb[0] + g->K[0] - 1 >= g->in[0];
  int64_t OH = g->out[0], OW = g->out[1], nb = (g->M + f.RV - 1) / f.RV, nbfull = g->M / f.RV, mtail = g->M % f.RV;
  int64_t items = g->N * nb * OH, cores = L->target->cores < 1 ? 1 : L->target->cores;
  int64_t slots = cores < items ? cores : items, per = (items + slots - 1) / slots;
  char name[256];
  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "direct, vectors along output channels, reading X in place, weights blocked by %lld%s%s",
                      (long long)f.RV, f.xblk ? ", X NCHWc" : "", f.yblk ? ", Y NCHWc" : "");
  /* a row of sums a slot, where the plain plan leaves room for them (the
   * copy out of them is vector stores and one scalar pass); else each sum
   * is stored straight into Y, a scalar store a lane (ResNet-50's
   * layer2.0.downsample runs where the plan peaks: no room at all) */
  int64_t room = kiln_lower_scratch_room(L, n), rows = slots * OW * f.RV;
  const char *env = getenv("KILN_STRIDED");
  if (f.yblk) {
    /* each output stored once, by one lane of one tile, as a vector of
     * its line; a residual read at its own offset: it may overwrite that input */
    L->b.k->stores_once = kiln_lower_buf(L, res);
  } else if (room < 0 || rows * (int64_t)kiln_dtype_size(f.ct) <= room || (env && !strcmp(env, "1r"))) {
    snprintf(name, sizeof name, "%s.rows", n->out[0]->name);
    f.yt = kiln_lower_scratch(L, name, f.ct, rows);
  } else {
    f.pre = 0;
    /* each output stored once, by one lane of one tile, reading its
     * residual (if any) at its own index: it may overwrite that input */
    L->b.k->stores_once = kiln_lower_buf(L, kiln_lower_result(n, 0));
  }
  kiln_lx *slot = IDX(kiln_lb_for(B, slots, par));
  kiln_lx *tb = f.yt ? LOCAL(kiln_lb_decl(B, KILN_DT_I64, IMUL(slot, OW * f.RV))) : NULL;
  kiln_lx *it = IADD(IMUL(slot, per), per > 1 ? IDX(kiln_lb_for(B, per, seq)) : CI(0));
  int guard = per * slots != items;
  if (guard) kiln_lb_if(B, BIN(LT, it, CI(items)));
  /* consecutive items share a block (rows innermost): its weights stay near */
  int nv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? CI(0) : BIN(DIV, it, CI(nb * OH)));
  int bi = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? CI(0) : BIN(REM, BIN(DIV, it, CI(OH)), CI(nb)));
  int oy = kiln_lb_decl(B, KILN_DT_I64, BIN(REM, it, CI(OH)));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(bi), f.RV));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(nv), g->C * g->isz));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(bi), f.K * f.RV));
  f.nimg = LOCAL(nv), f.oy = LOCAL(oy), f.m0 = LOCAL(m0), f.xb = LOCAL(xb), f.wb = LOCAL(wb), f.tb = tb;
  if (f.yblk) /* the item's row in block m0/b: ((n*(M/b) + m0/b)*OH + oy)*OW*b */
    f.yb = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(IADD(IMUL(LOCAL(nv), g->M / f.yblk), IMUL(LOCAL(bi), f.RV / f.yblk)), OH), LOCAL(oy)), OW * f.yblk)));
  if (nbfull && mtail) kiln_lb_if(B, BIN(LT, LOCAL(bi), CI(nbfull)));
  if (nbfull) emit_row(L, &f, f.RV, f.RV);
  if (nbfull && mtail) kiln_lb_else(B);
  if (mtail) emit_row(L, &f, (mtail + lanes - 1) / lanes * lanes, mtail);
  if (nbfull && mtail) kiln_lb_end(B);
  kiln_lower_close(L, guard + (per > 1));
  kiln_lb_end(B);
  return 0;
}
