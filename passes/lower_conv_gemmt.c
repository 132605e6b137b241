/* Conv as a transposed GEMM, vectors over output channels: the schedule
 * for 1x1 convolutions on small maps (7x7, 13x13) with many
 * channels (ResNet-50's last stage, SqueezeNet's classifier, MobileNetV2's
 * last layers).
 *
 * The register path (lower_conv.c) puts vectors along the output
 * positions: a map of 49 or 169 positions fills its 64-position tile
 * badly (a tile of 48 and one of a single position, or 2 of 64 and a
 * tail of 41 done as 32 + 9), and its weights, one scalar per output
 * channel and input channel, stream from 6 or 8 rows K floats apart.
 * Here a 1x1 stride-1 unpadded convolution is the GEMM
 *
 *   Y[n, m, p] = B[m] + sum over k < C of Wt[m, k] * X[n, k, p]
 *
 * computed with vectors along m: the weights are re-laid out once, at
 * compile time, into blocks of RV = R x VW output channels (VW the
 * target's lanes), Wt[blk, k, 0..RV) contiguous, the last block padded
 * with zero rows (NCHWc-style blocked weights, as ONNX Runtime's
 * NchwcTransformer and oneDNN lay them out).  A tile holds PB positions by
 * RV channels of sums in registers (PB x R vectors: 6 x 4 with 32 vector
 * registers, 6 x 2 with 16), and for each input channel k loads R
 * contiguous weight vectors and broadcasts PB input values, X[n, k, p0..]:
 *
 *   for (n, chunk of positions, block of RV channels m0..)  parallel
 *     for tiles of PB positions p0 (the last one shorter)
 *       acc[p][l] = B[m0+l]                     p < PB, l < RV
 *       for k < C:
 *         w[l] = Wt[blk, k, l]                  R vector loads
 *         acc[p][l] = fma(X[n, k, p0+p], w[l], acc[p][l])   broadcast
 *       Yt[n, blk, p0+p, l] = acc[p][l]
 *     Y[n, m0+l, p] = epilogue(Yt[n, blk, p, l])   (l < the block's channels)
 *
 * No lane is spent on positions that do not exist; only the copy out,
 * one load and store per output (Yt runs along m, Y along p), is not
 * whole vectors: with C >= 32 products per output it weighs little.
 * Sums are stored as whole vectors into a scratch Yt [n, block, p, RV]
 * (the block's own, still in cache) and copied out of it into Y through
 * the node's output store (kiln_lower_store_rest: a residual Add and what
 * follows it applied there; the leading pointwise steps, Relu, Clip,
 * float16 rounding, are applied to the tile's vectors before Yt, which took
 * the float16 SqueezeNet's 512->1000 classifier from 0.838 to 0.782 ms,
 * its 13x13 expand1x1s from 0.046 to 0.035): stored straight into Y, one scalar per output, the
 * tile left LLVM's SLP vectoriser no seed (no consecutive stores) and ran
 * scalar (32-37 ms against 1.3 for 512->1000 at 13x13).  When there are fewer blocks than twice the
 * target's cores, the positions are cut into chunks of whole tiles in
 * the parallel loop too, so a 64-channel projection still splits across
 * threads.  A GlobalAveragePool fused after the Conv (fuse_pool.c) is
 * summed out of Yt in place of the copy out (pool_out), where a block's
 * positions are one iteration (no chunks of them).
 * As in the register path, the accumulators are scalar locals and the
 * tile is fully unrolled in the loop IR; products are fused multiply-adds
 * where the target has them.  It needs W's contents (an initializer):
 * a W computed at run time stays on the register path.
 *
 * Convolutions with taps, strides or pads on such maps (ResNet-50's last
 * 3x3s at 7x7, SqueezeNet's and AlexNet's 3x3s at 13x13) are the same GEMM
 * over im2col rows: X is packed into Xc [N, K = C x taps, P]
 * (kiln_conv_im2col_pack, the im2col schedule's pack), which the tiles
 * read as a 1x1 convolution's X; W [M, C, taps] is already [M, K].  The
 * register path puts these maps on a padded virtual grid (7 positions of
 * every 9) in tiles of 48 or 64 positions with a partial one per map.
 * Every tile reads its block's K x RV weights, and with them outgrowing
 * the L2 (512 x 9 x 64 floats: 1.2 MB) streamed them from L3 again; k
 * runs in chunks whose weights stay in the L1 across the tiles
 * (pick_k_chunks), the sums waiting in Yt between chunks, and each
 * chunk's tiles prefetch the next chunk's weights (prefetch_next).
 * Chunks in the L2 alone, measured on a 2-vCPU Zen 5 (AVX-512), best of
 * four alternating runs: ResNet-50's 3x3s at 7x7 1.63 -> 1.43 ms,
 * SqueezeNet 1.1's 13x13 expand3x3 0.29 -> 0.245 ms; whole networks:
 * ResNet-50 43.9 -> 42.2 ms, SqueezeNet 1.1 4.00 -> 3.84, AlexNet 20.4 ->
 * 19.1; chunks in the L1 took a tenth more off on an Intel Xeon. */
#include "conv_def.h"

#include <stdlib.h>
#include <string.h>

#include "lower_macros.h"

static const kiln_sched seq = {0};
static const kiln_sched par = {.parallel = 1};

/* Tile: GT_PB positions by R vectors of channels.  Maps of at most
 * GT_P_MAX positions (13x13) take this schedule (packed: the rule in
 * kiln_conv_gemmt_wanted).  Measured on the shared
 * 2-vCPU Sapphire Rapids VM (load 10-20, same minute, main's binary
 * against this one): 512->1000 at 13x13 + Relu 1.82 -> 1.26 ms, 2048->512
 * and 512->2048 at 7x7 1.3 -> 0.74-0.84 ms; at 14x14 (196 positions: 3
 * register tiles of 64 and 4 left over) 256->1024 and 1024->256 were no
 * faster and, on two threads, slower (0.68-0.84 -> 0.87-1.35 ms).  That
 * was before the chunks of k and their prefetch: 1x1s at 14x14 with many
 * channels now gain (GT_P_MAX_1X1, kiln_conv_gemmt_wanted). */
enum { GT_PB = 6, GT_P_MAX = 169, GT_P_MAX_1X1 = 196, GT_WIDE = 256, GT_RV_MAX = 64 };

static int64_t vectors(const kiln_target *t) { return t->vector_bytes >= 64 ? 4 : 2; }

/* 1x1, stride 1, unpadded: X is the GEMM's right-hand side as it is. */
static int is_direct(const kiln_conv_geom *g) {
  for (int i = 0; i < g->sp; i++)
    if (g->K[i] != 1 || g->s[i] != 1 || g->pb[i] != 0 || g->in[i] != g->out[i]) return 0;
  return 1;
}

int kiln_conv_gemmt_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  const kiln_target *t = L->target;
  const kiln_value *w = n->in[1];
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  int fixed = kiln_lower_fixed_weight(L, w);
  /* X in the compute type: an f16 X would be converted at every one of its
   * M/lanes reads (measured on the float16 SqueezeNet's classifier: slower
   * than the register path, which converts once in its pack) */
  if (g->G != 1 || (ct != KILN_DT_F32 && ct != KILN_DT_F64) || n->in[0]->dtype != ct || !fixed) return 0;
  int64_t lanes = kiln_target_lanes(t, ct);
  /* 1x1s at 14x14 too (196 positions: 3 register tiles of 64 and 4 left
   * over on the register path); measured on a 2-vCPU Intel Xeon (AVX-512),
   * ResNet-50, 1 thread, alternating rounds: its 1024->256s 0.63 -> 0.59
   * ms, 256->1024s 0.70 -> 0.66, the stride-2 512->1024 downsample 1.51
   * -> 1.30.  Only with GT_WIDE channels in and out: MobileNetV2's 14x14
   * expands (64->384, 96->576) ran slower, 0.036 -> 0.052 ms at 2 threads.
   * Not under a fused pool, which the tiles here take only when global:
   * DenseNet's transition3 (1024->512, then a 2x2 AveragePool) was level
   * with its pool as a kernel of its own, 0.69 + 0.026 ms at 2 threads.
   * Windows with taps at 14x14 stay on their schedules: layer3.0's 3x3
   * stride-2 ran 1.50 -> 1.84 over im2col rows of K 2304. */
  int64_t pmax = g->ksz == 1 && g->Cg >= GT_WIDE && g->M >= GT_WIDE && !kiln_lower_pool_step(n) ? GT_P_MAX_1X1 : GT_P_MAX;
  if (g->Cg * g->ksz < KILN_CONV_RB_MIN_TERMS || g->osz > pmax || g->M < lanes || vectors(t) * lanes > GT_RV_MAX)
    return 0;
  /* packed (taps, strides, pads): only where it measured faster than the
   * register path, a map whose positions leave a partial vector (7x7, 13x13;
   * 8x8's 64 ran no faster and would only add the Xc scratch) and at least
   * one whole block of channels (DenseNet's 32-channel 3x3s lose: two
   * weight vectors and six broadcasts for 12 products per k) */
  return is_direct(g) || (g->osz % lanes != 0 && g->M >= vectors(t) * lanes);
}

/* Wt[blk, k, l] = W[blk*rv + l, k] (0 past M), a weight buffer made here. */
static size_t blocked_at(int64_t src, const int64_t *shape) { /* shape: K, rv */
  int64_t m = src / shape[0], k = src % shape[0], rv = shape[1];
  return (size_t)(((m / rv) * shape[0] + k) * rv + m % rv);
}

const kiln_buf *kiln_conv_blocked_weights(kiln_lctx *L, const kiln_value *v, int64_t M, int64_t K, int64_t rv,
                                          kiln_dtype ct) {
  const int64_t shape[2] = {K, rv};
  return kiln_lower_relaid_weight(L, v, ct, (M + rv - 1) / rv * K * rv, "blocked", blocked_at, shape, K, rv);
}

typedef struct gemmt {
  const kiln_node *n;
  const kiln_conv_geom *g;
  const kiln_buf *x, *wt, *bias, *yt;  /* yt: the sums, [n, block, p, RV] */
  kiln_dtype ct;
  int64_t M, K, P, RV;  /* the GEMM: M rows (channels; ConvTranspose: phase x channel), K, P positions */
  int64_t phases;       /* ConvTranspose with kernel == stride: taps (row m = phase * g->M + channel); else 0 */
  int64_t KC, nkc;  /* k in nkc chunks of KC: a block's weights for one chunk stay in the L1 across its tiles */
  int pre;          /* leading epilogue steps applied to the sums in registers, before Yt */
  int prefetch;     /* tiles prefetch the weights the block reads after this chunk (prefetch_next) */
  const kiln_node *gap; /* a fused GlobalAveragePool (fuse_pool.c): pool_out instead of copy_out */
  kiln_lx *nimg, *m0, *xb, *wb, *tb;  /* per block: image, first channel, X of image n, Wt and Yt of the block */
  int fma;
} gemmt;

/* B's index for GEMM row m: its channel (ConvTranspose: m % M). */
static kiln_lx *bias_index(kiln_lctx *L, const gemmt *f, kiln_lx *m) {
  return f->phases ? BIN(REM, m, CI(f->g->M)) : m;
}

/* Prefetch of the weights the block reads after this chunk: the next
 * chunk's, or after the last one the next block's (the thread's next
 * iteration, blocks being contiguous), Wt[wb + (k0 + KC) * RV ..], KC x RV
 * values many pages away, where the hardware prefetchers do not look.
 * Without it each chunk starts with its weights in DRAM or L3 (the layer
 * before read other data): ResNet-50's 512-channel 3x3s at 7x7, KC x RV =
 * 1536 x 64 floats, spent a quarter of their time waiting.  The first of
 * the chunk's `count` tiles (tile t) fetch the lines spread over their k
 * loop, one or more a k step, so the requests trickle out while the FMAs
 * run instead of queueing all at once.  kk: the k loop's var. */
static void prefetch_next(kiln_lctx *L, const gemmt *f, kiln_lx *t, int64_t count, kiln_lx *kk, kiln_lx *k0) {
  int64_t es = (int64_t)kiln_dtype_size(f->ct), line = 64 / es;
  int64_t lines = (f->KC * f->RV * es + 63) / 64, per_k = (lines + f->KC - 1) / f->KC;
  int64_t npf = count < per_k ? count : per_k, q = (per_k + npf - 1) / npf;
  int64_t last = f->wt->numel - 1;
  kiln_lx *next = IADD(f->wb, IMUL(IADD(k0, CI(f->KC)), f->RV));
  if (npf < count) kiln_lb_if(B, BIN(LT, t, CI(npf)));
  for (int64_t j = 0; j < q; j++) {
    kiln_lx *ln = IADD(IMUL(IADD(IMUL(t, f->KC), kk), q), CI(j));
    ln = BIN(MIN, ln, CI(lines - 1));
    kiln_lb_prefetch(B, f->wt, BIN(MIN, IADD(next, IMUL(ln, line)), CI(last)));
  }
  if (npf < count) kiln_lb_end(B);
}

/* One tile: pb positions from p0 by rvl lanes of channels, mv of them
 * stored; tile t of count in this chunk of k (k0..). */
static void emit_tile(kiln_lctx *L, const gemmt *f, kiln_lx *p0, int64_t pb, int64_t rvl, int64_t mv, kiln_lx *k0,
                      int from_yt, kiln_lx *t, int64_t count) {
  int acc[GT_PB * GT_RV_MAX], wl[GT_RV_MAX], bl[GT_RV_MAX];
  /* declared position by position, consecutive channels together: the
   * order SLP vectorisers group the accumulators in (a vector of lanes) */
  for (int64_t l = 0; l < rvl && !from_yt; l++)
    bl[l] = kiln_lb_decl(B, f->ct, f->bias && l < mv ? kiln_lower_load(L, f->bias, bias_index(L, f, IADD(f->m0, CI(l))))
                                                     : kiln_lx_const_f(B, f->ct, 0));
  for (int64_t p = 0; p < pb; p++)
    for (int64_t l = 0; l < rvl; l++) {
      kiln_lx *yt = kiln_lx_load(B, f->yt, IADD(IADD(f->tb, IMUL(IADD(p0, CI(p)), f->RV)), CI(l)));
      acc[p * rvl + l] = kiln_lb_decl(B, f->ct, from_yt ? yt : LOCAL(bl[l])); /* a later chunk goes on from Yt */
    }
  B->k->explicit_vectors = 1;
  B->k->reused_vectors = 1; /* wl[] serve every row p */
  kiln_lx *kk = IDX(kiln_lb_for(B, f->KC, seq)), *k = IADD(kk, k0);
  if (f->prefetch && t) prefetch_next(L, f, t, count, kk, k0);
  kiln_lx *wr = IADD(f->wb, IMUL(k, f->RV)), *xr = IADD(IADD(f->xb, IMUL(k, f->P)), p0);
  for (int64_t l = 0; l < rvl; l++) wl[l] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->wt, IADD(wr, CI(l))));
  for (int64_t p = 0; p < pb; p++) {
    int xl = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->x, IADD(xr, CI(p))));
    for (int64_t l = 0; l < rvl; l++) {
      int a = acc[p * rvl + l];
      kiln_lx *s = LOCAL(a), *x = LOCAL(xl), *w = LOCAL(wl[l]);
      kiln_lb_assign(B, a, f->fma ? kiln_lx_fma(B, x, w, s) : BIN(ADD, s, BIN(MUL, x, w)));
    }
  }
  kiln_lb_end(B);
  for (int64_t p = 0; p < pb; p++)
    for (int64_t l = 0; l < rvl; l++)
      kiln_lb_store(B, f->yt, IADD(IADD(f->tb, IMUL(IADD(p0, CI(p)), f->RV)), CI(l)),
                    kiln_lower_apply_steps(L, f->n, LOCAL(acc[p * rvl + l]), f->pre));
}

/* Y[n, m0 + l, p0 + p] = Yt[block, p0 + p, l] for l < mv, p < np, through
 * the output store. */
static void copy_out(kiln_lctx *L, const kiln_node *n, const gemmt *f, kiln_lx *p0, int64_t np, int64_t mv) {
  kiln_lx *l = IDX(kiln_lb_for(B, mv, seq)), *p = IADD(p0, IDX(kiln_lb_for(B, np, seq)));
  kiln_lx *flat = IADD(IMUL(IADD(IMUL(f->nimg, f->g->M), IADD(f->m0, l)), f->P), p);
  kiln_lower_store_rest(L, n, NULL, flat, kiln_lx_load(B, f->yt, IADD(IADD(f->tb, IMUL(p, f->RV)), l)), f->pre);
  kiln_lower_close(L, 2);
}

/* The fused GlobalAveragePool's outputs of one block, pooled[n, m0 + l]
 * for l < mv: the mean over every position p of Yt[block, p, l] through
 * the epilogue steps before the pool, the sum in the unfused pool's order
 * (kiln_gap_sum_begin), so fused and unfused are equal bit for bit.  The
 * Conv's own output is never stored. */
static void pool_out(kiln_lctx *L, const kiln_node *n, const gemmt *f, int64_t mv) {
  const kiln_value *x = f->gap->in[0], *py = f->gap->out[0];
  kiln_dtype ct = kiln_lower_ctype(x->dtype);
  kiln_lx *l = IDX(kiln_lb_for(B, mv, seq));
  int m = kiln_lb_decl(B, KILN_DT_I64, IADD(f->m0, l));
  int acc = kiln_gap_sum_begin(L, ct, f->P);
  kiln_lx *p = IDX(kiln_lb_for(B, f->P, seq));
  kiln_lx *flat = IADD(IMUL(IADD(IMUL(f->nimg, f->g->M), LOCAL(m)), f->P), p);
  kiln_lx *v = kiln_lower_pool_input(L, n, flat, kiln_lx_load(B, f->yt, IADD(IADD(f->tb, IMUL(p, f->RV)), l)), f->pre);
  if (v) kiln_lb_combine(B, acc, v);
  kiln_lb_end(B);
  kiln_lb_reduce_end(B);
  kiln_lx *pidx[KILN_MAX_RANK] = {f->nimg, LOCAL(m)};
  for (int i = 2; i < py->rank; i++) pidx[i] = CI(0);
  kiln_lb_store(B, kiln_lower_buf(L, py), kiln_lower_addr(L, py, pidx),
                kiln_lx_cast(B, py->dtype, kiln_sum_result(L, acc, ct, CI(f->P))));
  kiln_lb_end(B);
}

/* count tiles of pb positions from c0, over every chunk of k: the first
 * chunk from the bias, the others from the sums stored in Yt.  tail: the
 * block's last positions, after its whole tiles (which prefetched what
 * comes next: this one does not). */
static void emit_tiles(kiln_lctx *L, const gemmt *f, kiln_lx *c0, int64_t count, int64_t pb, int64_t rvl, int64_t mv,
                       int tail) {
  for (int later = 0; later < (f->nkc > 1 ? 2 : 1); later++) {
    kiln_lx *k0 = CI(0);
    if (later) k0 = IMUL(IADD(IDX(kiln_lb_for(B, f->nkc - 1, seq)), CI(1)), f->KC);
    kiln_lx *t = count > 1 ? IDX(kiln_lb_for(B, count, seq)) : CI(0);
    emit_tile(L, f, IADD(c0, IMUL(t, pb)), pb, rvl, mv, k0, later, tail ? NULL : t, count);
    kiln_lower_close(L, (count > 1) + later);
  }
}

/* Chunk ch (of nch) of one block's positions: its tpc tiles (rvl lanes
 * computed, mv channels stored), and in the last chunk the positions
 * past the whole tiles; then those outputs out of Yt. */
static void emit_block(kiln_lctx *L, const kiln_node *n, const gemmt *f, kiln_lx *ch, int64_t nch, int64_t rvl,
                       int64_t mv) {
  int64_t nt = f->P / GT_PB, rest = f->P % GT_PB, tpc = nt / nch;
  kiln_lx *c0 = IMUL(ch, tpc * GT_PB);
  if (f->gap) { /* one chunk (emit_gemmt): all positions, then their mean */
    if (tpc) emit_tiles(L, f, c0, tpc, GT_PB, rvl, mv, 0);
    if (rest) emit_tiles(L, f, CI(nt * GT_PB), 1, rest, rvl, mv, tpc > 0);
    pool_out(L, n, f, mv);
    return;
  }
  if (tpc) {
    emit_tiles(L, f, c0, tpc, GT_PB, rvl, mv, 0);
    copy_out(L, n, f, c0, tpc * GT_PB, mv);
  }
  if (rest) {
    if (nch > 1) kiln_lb_if(B, BIN(EQ, ch, CI(nch - 1)));
    emit_tiles(L, f, CI(nt * GT_PB), 1, rest, rvl, mv, tpc > 0);
    copy_out(L, n, f, CI(nt * GT_PB), rest, mv);
    if (nch > 1) kiln_lb_end(B);
  }
}

/* ConvTranspose (f->phases): input row `row` (positions row*W .. +W, W
 * the last spatial extent) of one block: its tiles, then its outputs:
 * GEMM row m0 + l is phase r, channel m (r * M + m), so input position u
 * lands at Y[n, m, s*u + r]; along the row that is every s-th output. */
static void emit_row(kiln_lctx *L, const kiln_node *n, const gemmt *f, kiln_lx *row, int64_t rvl, int64_t mv) {
  const kiln_conv_geom *g = f->g;
  int last = g->sp - 1;
  int64_t W = g->in[last], nt = W / GT_PB, rest = W % GT_PB;
  kiln_lx *c0 = IMUL(row, W);
  if (nt) emit_tiles(L, f, c0, nt, GT_PB, rvl, mv, 0);
  if (rest) emit_tiles(L, f, IADD(c0, CI(nt * GT_PB)), 1, rest, rvl, mv, nt > 0);
  kiln_lx *l = IDX(kiln_lb_for(B, mv, seq));
  int gr = kiln_lb_decl(B, KILN_DT_I64, IADD(f->m0, l));
  int r = kiln_lb_decl(B, KILN_DT_I64, BIN(DIV, LOCAL(gr), CI(g->M)));
  int m = kiln_lb_decl(B, KILN_DT_I64, BIN(REM, LOCAL(gr), CI(g->M)));
  /* the row's first output: (s*u_i + r_i) per spatial dim, u_last = 0 */
  kiln_lx *o = BIN(REM, LOCAL(r), CI(g->K[last]));
  for (int i = 0; i < last; i++) {
    kiln_lx *u = BIN(REM, BIN(DIV, row, CI(g->xstr[i] / W)), CI(g->in[i]));
    kiln_lx *ri = BIN(REM, BIN(DIV, LOCAL(r), CI(g->kstr[i])), CI(g->K[i]));
    o = IADD(o, IMUL(IADD(IMUL(u, g->s[i]), ri), g->ystr[i]));
  }
  int ob = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(IADD(IMUL(f->nimg, g->M), LOCAL(m)), g->osz), o));
  kiln_lx *uw = IDX(kiln_lb_for(B, W, seq));
  kiln_lx *flat = IADD(LOCAL(ob), IMUL(uw, g->s[last]));
  kiln_lower_store_rest(L, n, NULL, flat, kiln_lx_load(B, f->yt, IADD(IADD(f->tb, IMUL(IADD(c0, uw), f->RV)), l)), f->pre);
  kiln_lower_close(L, 2);
}

/* Chunks of k: a tile reads its block's weights, K x RV values, once per
 * k step, and every tile of the block reads them again; in chunks of KC
 * rows (the largest divisor of K whose weights fill at most half the L1
 * data cache, at least 64) they stay in the L1 across the block's tiles,
 * and the sums wait in Yt between chunks (a load and a store of each
 * accumulator a chunk: 24 vectors against 24 x KC FMAs).  Unchunked, a
 * 13x13 map's 29 tiles each streamed a 512 x 64 block (128 KB) from the
 * L2 at four lines a k step, beside the X line.  prefetch_next fetches
 * the next chunk while this one runs.  Measured on a 2-vCPU Intel Xeon
 * (AVX-512, 48 KB L1, 2 MiB L2, 1 thread, bench/ab_kernels.py, least of
 * 3-4 alternating rounds) against chunks of a twelfth of the L2 (KC 512
 * to 576): ResNet-50's 3x3s at 7x7 2.10 -> 1.85 ms, its 2048 -> 512 1x1s
 * 0.74-0.79 -> 0.65-0.70, all its kernels 51.1 -> 49.1 ms (2 threads
 * 27.7 -> 26.9); SqueezeNet's 512 -> 1000 classifier at 13x13 1.04 ->
 * 0.98; one 3x3 512 -> 512 at 7x7 alone, by KC: 576 2.67 ms, 384 1.76,
 * 256 1.68, 128 1.61, 64 1.56. */
static void pick_k_chunks(const kiln_lctx *L, gemmt *f) {
  int64_t es = (int64_t)kiln_dtype_size(f->ct), fit = L->target->l1d_bytes / 2 / (f->RV * es);
  f->KC = f->K, f->nkc = 1;
  if (f->K <= fit) return;
  for (int64_t d = fit; d >= 64; d--)
    if (f->K % d == 0) {
      f->KC = d, f->nkc = f->K / d;
      return;
    }
}

/* The kernel: f's M, K, P, RV, wt, bias and ct set; X packed into im2col
 * rows first when `packed`. */
static int emit_gemmt(kiln_lctx *L, const kiln_node *n, gemmt *f, int packed) {
  const kiln_conv_geom *g = f->g;
  int64_t lanes = kiln_target_lanes(L->target, f->ct);
  f->fma = kiln_target_has_fma(L->target);
  pick_k_chunks(L, f);
  {
    const char *env = getenv("KILN_GEMMT_PREFETCH"); /* 0: off, for A/B runs (bench/README) */
    f->prefetch = !(env && env[0] == '0');
  }
  /* Relu, rounding...: on the sums while they are vectors of channels in
   * registers, so the copy out of Yt (one scalar load and store per
   * output: Yt runs along m, Y along p) carries only what needs the
   * output's position.  Not with chunks of k: Yt then holds partial sums. */
  f->n = n;
  f->pre = f->nkc == 1 ? kiln_lower_pointwise_steps(n) : 0;
  int64_t nimg = g->N;
  int64_t nb = (f->M + f->RV - 1) / f->RV, nbfull = f->M / f->RV, mtail = f->M % f->RV;
  /* few blocks: the positions in nch chunks of whole tiles (nch divides
   * them), so every core of the target gets two iterations or more */
  int64_t nt = f->P / GT_PB, want = 2 * (int64_t)L->target->cores, nch = 1;
  if (f->phases) nch = f->P / g->in[g->sp - 1]; /* ConvTranspose: one input row an iteration (emit_row) */
  else if (nimg * nb < want && nt > 1)
    for (int64_t d = 1; d <= nt && d <= (want + nimg * nb - 1) / (nimg * nb); d++)
      if (nt % d == 0) nch = d;
  /* Threads take contiguous ranges of the blocks, and each reads all of X
   * for its blocks.  Where X outweighs a quarter of W (ResNet-50's 14x14
   * 1024->256s: X 800 KB, W 1 MB), one chunk of positions a core makes
   * them split X instead (each reads all of W): on the Intel Xeon, 2
   * threads, those 1x1s 0.44 -> 0.37 ms against splitting the blocks.
   * Not with a fused GlobalAveragePool (one iteration a block, below). */
  const kiln_node *pool = kiln_lower_pool_step(n);
  int64_t cores = L->target->cores;
  if (nch == 1 && !f->phases && !pool && cores > 1 && nt >= cores && 4 * f->P >= f->M) /* 4 K P >= M K */
    for (int64_t d = 2; d <= cores; d++)
      if (nt % d == 0) nch = d;
  /* a fused GlobalAveragePool sums a block's positions in one iteration:
   * declined (1, nothing emitted) where they are cut into chunks */
  if (pool && (!kiln_pool_is_gap(pool) || nch > 1 || f->phases)) return 1;
  f->gap = pool;
  char name[256];
  snprintf(name, sizeof name, "%s.blocked", n->out[0]->name);
  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "transposed GEMM, vectors along output channels, weights blocked by %lld%s", (long long)f->RV,
                      packed ? ", over im2col rows" : "");
  if (nch > 1 && !f->phases) kiln_lower_schedule(L, "%s, positions in %lld chunks", B->k->schedule, (long long)nch);
  f->yt = kiln_lower_scratch(L, name, f->ct, nimg * nb * f->P * f->RV);
  if (packed) {
    snprintf(name, sizeof name, "%s.im2col", n->out[0]->name);
    f->x = kiln_lower_scratch(L, name, f->ct, g->N * f->K * f->P);
    kiln_conv_im2col_pack(L, g, kiln_lower_buf(L, n->in[0]), f->x, f->ct);
  } else f->x = kiln_lower_buf(L, n->in[0]);
  kiln_lx *blk = IDX(kiln_lb_for(B, nimg * nch * nb, par));
  int nv = kiln_lb_decl(B, KILN_DT_I64, nimg == 1 ? CI(0) : BIN(DIV, blk, CI(nch * nb)));
  int ch = kiln_lb_decl(B, KILN_DT_I64, nch == 1 ? CI(0) : BIN(REM, BIN(DIV, blk, CI(nb)), CI(nch)));
  int bi = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? CI(0) : BIN(REM, blk, CI(nb)));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(bi), f->RV));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(nv), f->K * f->P));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(bi), f->K * f->RV));
  int tb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), nb), LOCAL(bi)), f->P * f->RV));
  f->nimg = LOCAL(nv), f->m0 = LOCAL(m0), f->xb = LOCAL(xb), f->wb = LOCAL(wb), f->tb = LOCAL(tb);
  if (nbfull && mtail) kiln_lb_if(B, BIN(LT, LOCAL(bi), CI(nbfull)));
  int64_t rvt = (mtail + lanes - 1) / lanes * lanes;
  if (nbfull && f->phases) emit_row(L, n, f, LOCAL(ch), f->RV, f->RV);
  else if (nbfull) emit_block(L, n, f, LOCAL(ch), nch, f->RV, f->RV);
  if (nbfull && mtail) kiln_lb_else(B);
  if (mtail && f->phases) emit_row(L, n, f, LOCAL(ch), rvt, mtail);
  else if (mtail) emit_block(L, n, f, LOCAL(ch), nch, rvt, mtail);
  if (nbfull && mtail) kiln_lb_end(B);
  kiln_lb_end(B);
  return 0;
}

int kiln_lower_conv_gemmt(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  gemmt f = {0};
  f.g = g;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.M = g->M;
  f.K = g->Cg * g->ksz; /* W [M, C, taps] is already [M, K] */
  f.P = g->osz;
  f.RV = vectors(L->target) * kiln_target_lanes(L->target, f.ct);
  f.wt = kiln_conv_blocked_weights(L, n->in[1], g->M, f.K, f.RV, f.ct);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  /* taps, strides or pads: X packed into im2col rows Xc [N, K, P]
   * (passes/lower_conv_im2col.c), which the GEMM then reads as a 1x1
   * convolution's X */
  return emit_gemmt(L, n, &f, !is_direct(g));
}

/* ---- ConvTranspose with kernel == stride (U-Net's 2x2 upsampling) ----
 *
 * With no pads, no dilation and out == in * s, output o = s*u + r takes
 * exactly one tap, r, from input u: each phase r is a 1x1 convolution,
 * Y[n, m, s*u + r] = B[m] + sum over c of W[c, m, r] * X[n, c, u].  All
 * phases together are one GEMM of M*taps rows (row r*M + m), K = C and
 * P = the input's positions, which the tiles above compute from X as it is;
 * the copy-out places row r*M + m, position u at Y[n, m, s*u + r].  The
 * general phase path (lower_conv.c) summed such a layer at 25-57% of the
 * FMA peak. */
static size_t convt_blocked_at(int64_t src, const int64_t *shape) { /* shape: C, RV, M, taps */
  int64_t C = shape[0], rv = shape[1], M = shape[2], S = shape[3];
  int64_t c = src / (M * S), m = src / S % M, r = src % S, row = r * M + m;
  (void)C;
  return (size_t)(((row / rv) * shape[0] + c) * rv + row % rv);
}

int kiln_convt_gemmt_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  const kiln_target *t = L->target;
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  if (t->kind == KILN_TARGET_GPU || g->G != 1 || (ct != KILN_DT_F32 && ct != KILN_DT_F64) || n->in[0]->dtype != ct ||
      !kiln_lower_fixed_weight(L, n->in[1]))
    return 0;
  for (int i = 0; i < g->sp; i++)
    if (g->K[i] != g->s[i] || g->pb[i] != 0 || g->d[i] != 1 || g->out[i] != g->in[i] * g->s[i]) return 0;
  int64_t lanes = kiln_target_lanes(t, ct);
  return g->C >= KILN_CONV_RB_MIN_TERMS && g->M * g->ksz >= lanes && vectors(t) * lanes <= GT_RV_MAX;
}

int kiln_lower_convt_gemmt(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  gemmt f = {0};
  f.g = g;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.phases = g->ksz;
  f.M = g->M * g->ksz;
  f.K = g->C;
  f.P = g->isz;
  f.RV = vectors(L->target) * kiln_target_lanes(L->target, f.ct);
  const int64_t shape[4] = {g->C, f.RV, g->M, g->ksz};
  f.wt = kiln_lower_relaid_weight(L, n->in[1], f.ct, (f.M + f.RV - 1) / f.RV * f.K * f.RV, "blocked", convt_blocked_at,
                                  shape, 1, 1);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  return emit_gemmt(L, n, &f, 0);
}
