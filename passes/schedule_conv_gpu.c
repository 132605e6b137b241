/* A GPU schedule of convolution, built from its definition (conv_def.h):
 * the loop IR carries a whole CUDA-style kernel -- grid and block
 * bindings, SHARED tiles, LOCAL register tiles, barriers.  schedule_gpu.c
 * chooses it for a GPU target's convolutions; tests also emulate it with
 * loop_eval.c and print it with the CUDA sketch (backends/gpu_sketch/).
 *
 * Implicit GEMM, per group grp: Y[m, col] = B[m] + sum_kg A[m, kg] * X'[kg, col]
 * with m < Mg the group's output channels, col < N * osz (batch, output
 * position), kg < Cg * ksz (input channel, tap), A = W's rows (contiguous:
 * W[m, c, k] is A[m, c*ksz + k]) and X'[kg, col] = X[n, grp*Cg + c,
 * o*s + k*d - pb] (0 outside X), the definition's sum reordered.
 *
 *   for bx in ceil(cols/bn)  blockIdx.x     a tile of bn columns
 *    for by in ceil(Mg/bm)   blockIdx.y     a tile of bm output channels
 *     for bz in G            blockIdx.z     the group
 *      shared Ws[bk*bm], Xs[bk*bn]
 *      for tx in bn/rn       threadIdx.x    rn columns each
 *       for ty in bm/rm      threadIdx.y    rm channels each
 *        local acc[rm*rn] = 0;  tid = ty*(bn/rn) + tx
 *        for kt in ceil(K/bk)               one reduction step
 *          Ws[e] = A[.., kt*bk + e/bm]  for e = tid, tid + T, ...   (0 outside)
 *          Xs[e] = X'[kt*bk + e/bn, ..] for e = tid, tid + T, ...   (0 outside)
 *          barrier                          tiles complete
 *          acc[i*rn + j] += Ws[kk*bm + ty*rm + i] * Xs[kk*bn + tx*rn + j]
 *          barrier                          tiles free for the next step
 *        Y[..] = epi(acc + B[m])            where m and col exist
 *
 * The store adds the bias and applies the node's fused epilogue (folded
 * BatchNorm's scale and shift, activations, a residual Add reading
 * another tensor at the same index) through lower_store.c's
 * kiln_lower_store_flat: each step is its op's scalar function from
 * ops.def, as on the CPU, so the kernel computes every node fused into
 * the Conv.  The tile builder (kiln_gpu_gemm_build) knows nothing of
 * convolutions but the im2col gather of B: Gemm and MatMul
 * (schedule_gemm_gpu.c) build the same kernel with a plain B and their
 * own store.
 *
 * The loads are cooperative: the block's T threads fill each tile
 * together, consecutive threads taking consecutive elements.  Sums are in
 * the compute type (f32 for f16/bf16), in a different order than the CPU
 * kernels': equal up to float reassociation.
 *
 * TF32 tensor cores (target.tf32, `--tf32`): the inner product of a k-step
 * runs on mma.sync m16n8k8 (ir/loop.h, "TF32") instead of the FMA micro-
 * tile.  The block's warps tile the bm x bn block tile as nwm x nwn warp
 * tiles of wm x wn 16x8 MMA tiles (the split that loads the fewest
 * fragments per MMA); per 8-deep slice of the SHARED tiles each lane loads
 * its A and B fragments (the PTX layout, rounded with cvt.rna: TF32) into
 * LOCAL registers and the warp runs wm x wn MMAs into LOCAL f32
 * accumulator fragments.  After the last k-step the fragments go through a
 * SHARED bm x (bn + 4) tile (+4: rows g and g + 1 land in different banks)
 * back into the FMA path's acc layout (thread (tx, ty) owns rows ty*rm..,
 * columns tx*rn..), so the store side is the same for both: one round
 * trip through shared memory per block, small beside the K/8 MMA steps.
 * The fragment loads hit 4-way bank conflicts on Ws (rows t, t + 4 of a
 * k-slice are bm apart); padding Ws would change the load side, left as
 * it is.  Tiles the MMA shape does not divide (bm % 16, bn % 8, bk % 8,
 * whole warps) keep the FMA path. */
#include "conv_def.h"

#include <stdio.h>
#include <string.h>

#include "lower_macros.h"

static kiln_lx *and_opt(kiln_lctx *L, kiln_lx *a, kiln_lx *c) { return !a ? c : !c ? a : BIN(AND, a, c); }

/* An i64 local holding index value v (a constant or a bare var stays as is). */
static kiln_lx *let(kiln_lctx *L, kiln_lx *v) {
  if (v->kind == KILN_LX_CONST || v->kind == KILN_LX_INDEX || v->kind == KILN_LX_LOCAL) return v;
  return LOCAL(kiln_lb_decl(B, KILN_DT_I64, v));
}

/* a < k, or NULL when it always holds (a ranges below `max` + 1). */
static kiln_lx *below(kiln_lctx *L, kiln_lx *a, int64_t max, int64_t k) { return max < k ? NULL : BIN(LT, a, CI(k)); }

typedef struct gconv {
  const kiln_gpu_gemm *gm;
  kiln_conv_gpu_tile t;
  int64_t K, cols, T, tx_n;      /* reduction length, columns, threads, threads along x */
  kiln_dtype ct;
  const kiln_buf *ws, *xs;
  kiln_lx *bx, *by, *bz, *tid, *kt;
  /* TF32 tensor cores (nwm == 0: the FMA micro-tile) */
  int64_t nwm, nwn, wm, wn;      /* warps along rows / columns, MMA tiles per warp along each */
  const kiln_buf *cs, *af, *bf, *cf; /* SHARED staging tile; LOCAL A, B, accumulator fragments */
  kiln_lx *lg, *tq, *wr, *wc;    /* lane / 4, lane % 4, the warp tile's first row and column */
} gconv;

enum { CS_PAD = 4 }; /* the staging tile's row stride is bn + CS_PAD */

/* The warp split of the block tile for mma.sync m16n8k8, or nwm = 0 when
 * the tile does not fit it: whole warps, 16 | bm, 8 | bn, 8 | bk. */
static void mma_plan(gconv *c) {
  const kiln_conv_gpu_tile *t = &c->t;
  int64_t warps = c->T / 32, tm = t->bm / 16, tn = t->bn / 8, best = 0;
  c->nwm = 0;
  if (c->T % 32 || t->bm % 16 || t->bn % 8 || t->bk % 8 || c->ct != KILN_DT_F32) return;
  for (int64_t nwm = 1; nwm <= warps; nwm++) {
    if (warps % nwm || tm % nwm || tn % (warps / nwm)) continue;
    int64_t wm = tm / nwm, wn = tn / (warps / nwm);
    if (4 * wm + 2 * wn > 64 || 4 * wm * wn > 128) continue; /* exchange area, registers */
    int64_t cost = (4 * wm + 2 * wn) * 1000 / (wm * wn);      /* fragment loads per MMA */
    if (!best || cost < best) best = cost, c->nwm = nwm, c->nwn = warps / nwm, c->wm = wm, c->wn = wn;
  }
}

/* The k-step on tensor cores: for each 8-deep slice of the tiles, the
 * lane's fragments (rounded to TF32) then the warp's MMAs (see the top). */
static void mma_kstep(kiln_lctx *L, const gconv *c) {
  int64_t bm = c->t.bm, bn = c->t.bn;
  kiln_lx *ks = IMUL(IDX(kiln_lb_for(B, c->t.bk / 8, (kiln_sched){0})), 8);
  kiln_lx *i = IDX(kiln_lb_for(B, c->wm, (kiln_sched){.unroll = (int)c->wm}));
  for (int r = 0; r < 4; r++) { /* a[4i + r]: A(row g + 8(r & 1), col t + 4(r >> 1)) */
    kiln_lx *k = IADD(IADD(ks, c->tq), CI(4 * (r >> 1)));
    kiln_lx *m = IADD(IADD(c->wr, IMUL(i, 16)), IADD(c->lg, CI(8 * (r & 1))));
    kiln_lb_store(B, c->af, IADD(IMUL(i, 4), CI(r)),
                  kiln_lx_un(B, KILN_UN_TF32, kiln_lx_load(B, c->ws, IADD(IMUL(k, bm), m))));
  }
  kiln_lb_end(B);
  kiln_lx *j = IDX(kiln_lb_for(B, c->wn, (kiln_sched){.unroll = (int)c->wn}));
  for (int r = 0; r < 2; r++) { /* b[2j + r]: B(row t + 4r, col g) */
    kiln_lx *k = IADD(IADD(ks, c->tq), CI(4 * r));
    kiln_lx *col = IADD(IADD(c->wc, IMUL(j, 8)), c->lg);
    kiln_lb_store(B, c->bf, IADD(IMUL(j, 2), CI(r)),
                  kiln_lx_un(B, KILN_UN_TF32, kiln_lx_load(B, c->xs, IADD(IMUL(k, bn), col))));
  }
  kiln_lb_end(B);
  kiln_lb_mma(B, c->cf, c->af, c->bf, (int)c->wm, (int)c->wn);
  kiln_lb_end(B); /* ks */
}

/* After the last k-step: the accumulator fragments through the SHARED
 * staging tile into acc (thread (tx, ty)'s rm x rn micro-tile). */
static void mma_unstage(kiln_lctx *L, const gconv *c, const kiln_buf *acc, kiln_lx *tx, kiln_lx *ty) {
  int64_t ld = c->t.bn + CS_PAD;
  kiln_lx *i = IDX(kiln_lb_for(B, c->wm, (kiln_sched){.unroll = (int)c->wm}));
  kiln_lx *j = IDX(kiln_lb_for(B, c->wn, (kiln_sched){.unroll = (int)c->wn}));
  for (int r = 0; r < 4; r++) { /* c[4(i wn + j) + r]: D(row g + 8(r >> 1), col 2t + (r & 1)) */
    kiln_lx *row = IADD(IADD(c->wr, IMUL(i, 16)), IADD(c->lg, CI(8 * (r >> 1))));
    kiln_lx *col = IADD(IADD(c->wc, IMUL(j, 8)), IADD(IMUL(c->tq, 2), CI(r & 1)));
    kiln_lb_store(B, c->cs, IADD(IMUL(row, ld), col),
                  kiln_lx_load(B, c->cf, IADD(IMUL(IADD(IMUL(i, c->wn), j), 4), CI(r))));
  }
  kiln_lower_close(L, 2);
  kiln_lb_barrier(B);
  i = IDX(kiln_lb_for(B, c->t.rm, (kiln_sched){.unroll = (int)c->t.rm}));
  j = IDX(kiln_lb_for(B, c->t.rn, (kiln_sched){.unroll = (int)c->t.rn}));
  kiln_lx *src = IADD(IMUL(IADD(IMUL(ty, c->t.rm), i), ld), IADD(IMUL(tx, c->t.rn), j));
  kiln_lb_store(B, acc, IADD(IMUL(i, c->t.rn), j), kiln_lx_load(B, c->cs, src));
  kiln_lower_close(L, 2);
}

/* for l: e = l*T + tid; if e < size: body(e), with the guard only where
 * some thread's last e overshoots. */
static kiln_lx *coop_open(kiln_lctx *L, const gconv *c, int64_t size, int *open) {
  int64_t n = (size + c->T - 1) / c->T;
  kiln_lx *e = c->tid;
  *open = 0;
  if (n > 1) {
    e = let(L, IADD(IMUL(IDX(kiln_lb_for(B, n, (kiln_sched){0})), c->T), c->tid));
    ++*open;
  }
  if (n * c->T > size) {
    kiln_lb_if(B, BIN(LT, e, CI(size)));
    ++*open;
  }
  return e;
}

/* tile[e] = src[off] where ok (NULL: always), else 0. */
static void fill(kiln_lctx *L, const gconv *c, const kiln_buf *tile, kiln_lx *e, kiln_lx *ok, const kiln_buf *src,
                 kiln_lx *off) {
  if (ok) kiln_lb_if(B, ok);
  kiln_lb_store(B, tile, e, kiln_lower_load(L, src, off));
  if (ok) {
    kiln_lb_else(B);
    kiln_lb_store(B, tile, e, kiln_lx_const_f(B, c->ct, 0));
    kiln_lb_end(B);
  }
}

/* Ws[e] = A[z, m, kg] with m = by*bm + e % bm, kg = kt*bk + e / bm. */
static void load_w(kiln_lctx *L, const gconv *c) {
  const kiln_gpu_gemm *gm = c->gm;
  int open;
  kiln_lx *e = coop_open(L, c, c->t.bk * c->t.bm, &open);
  kiln_lx *kg = let(L, IADD(IMUL(c->kt, c->t.bk), BIN(DIV, e, CI(c->t.bm))));
  kiln_lx *m = let(L, IADD(IMUL(c->by, c->t.bm), BIN(REM, e, CI(c->t.bm))));
  int64_t gmr = (gm->M + c->t.bm - 1) / c->t.bm, nk = (c->K + c->t.bk - 1) / c->t.bk;
  kiln_lx *ok = and_opt(L, below(L, m, gmr * c->t.bm - 1, gm->M), below(L, kg, nk * c->t.bk - 1, c->K));
  kiln_lx *src = IADD(IADD(IMUL(c->bz, gm->a_z), IMUL(m, gm->a_m)), IMUL(kg, gm->a_k));
  fill(L, c, c->ws, e, ok, gm->a, src);
  kiln_lower_close(L, open);
}

/* Xs[e] = X'[kg, col] with kg = kt*bk + e / bn, col = bx*bn + e % bn:
 * the im2col element, 0 where the tap falls in the padding. */
static void load_x(kiln_lctx *L, const gconv *c) {
  const kiln_conv_geom *g = c->gm->conv;
  int open;
  kiln_lx *e = coop_open(L, c, c->t.bk * c->t.bn, &open);
  kiln_lx *kg = let(L, IADD(IMUL(c->kt, c->t.bk), BIN(DIV, e, CI(c->t.bn))));
  kiln_lx *col = let(L, IADD(IMUL(c->bx, c->t.bn), BIN(REM, e, CI(c->t.bn))));
  int64_t gn = (c->cols + c->t.bn - 1) / c->t.bn, nk = (c->K + c->t.bk - 1) / c->t.bk;
  kiln_lx *ok = and_opt(L, below(L, col, gn * c->t.bn - 1, c->cols), below(L, kg, nk * c->t.bk - 1, c->K));
  if (!g) { /* a plain B[z, kg, col] */
    const kiln_gpu_gemm *gm = c->gm;
    kiln_lx *src = IADD(IADD(IMUL(c->bz, gm->b_z), IMUL(kg, gm->b_k)), IMUL(col, gm->b_n));
    fill(L, c, c->xs, e, ok, gm->b, src);
    kiln_lower_close(L, open);
    return;
  }
  /* kg = (channel, tap), col = (batch, output position) */
  kiln_lx *ch = g->ksz == 1 ? kg : let(L, BIN(DIV, kg, CI(g->ksz))), *tap = g->ksz == 1 ? CI(0) : let(L, BIN(REM, kg, CI(g->ksz)));
  kiln_lx *nb = g->osz == 1 ? col : let(L, BIN(DIV, col, CI(g->osz))), *o = g->osz == 1 ? CI(0) : let(L, BIN(REM, col, CI(g->osz)));
  kiln_lx *src = IMUL(IADD(IADD(IMUL(nb, g->C), IMUL(c->bz, g->Cg)), ch), g->isz);
  for (int i = 0; i < g->sp; i++) {
    /* tap < ksz and o < osz: the outermost dim needs no REM, the innermost no DIV */
    kiln_lx *ki = g->K[i] == 1 ? CI(0) : g->kstr[i] == 1 ? tap : BIN(DIV, tap, CI(g->kstr[i]));
    if (g->K[i] > 1 && i > 0) ki = BIN(REM, ki, CI(g->K[i]));
    kiln_lx *oi = g->out[i] == 1 ? CI(0) : g->ystr[i] == 1 ? o : BIN(DIV, o, CI(g->ystr[i]));
    if (g->out[i] > 1 && i > 0) oi = BIN(REM, oi, CI(g->out[i]));
    kiln_lx *pos = let(L, kiln_conv_in_pos(B, g, i, oi, ki));
    ok = and_opt(L, ok, kiln_conv_in_bounds(B, g, i, pos));
    src = IADD(src, IMUL(pos, g->xstr[i]));
  }
  fill(L, c, c->xs, e, ok, c->gm->b, src);
  kiln_lower_close(L, open);
}

int kiln_gpu_gemm_build(kiln_lctx *L, const kiln_node *n, const kiln_gpu_gemm *gmm, const kiln_conv_gpu_tile *t) {
  gconv c = {.gm = gmm, .t = *t};
  int failed = L->d->failed;
  if (t->bm < 1 || t->bn < 1 || t->bk < 1 || t->rm < 1 || t->rn < 1 || t->bm % t->rm || t->bn % t->rn)
    return kiln_lower_fail(L, n, "GPU tile %lldx%lldx%lld with micro-tile %lldx%lld: sizes must be positive and "
                           "the micro-tile divide the tile", (long long)t->bm, (long long)t->bn, (long long)t->bk,
                           (long long)t->rm, (long long)t->rn);
  c.tx_n = t->bn / t->rn;
  c.T = c.tx_n * (t->bm / t->rm);
  if (c.T > 1024 || t->bm > 1024 || t->bn > 1024 || t->bk > 1024 || t->rm * t->rn > 256)
    return kiln_lower_fail(L, n, "GPU tile needs %lld threads or registers past a block's limits (1024 threads, "
                           "256 accumulators)", (long long)c.T);
  c.ct = gmm->ct;
  int64_t shared = t->bk * (t->bm + t->bn) * (int64_t)kiln_dtype_size(c.ct);
  if (L->b.p->target.tf32) mma_plan(&c);
  if (c.nwm && shared + t->bm * (t->bn + CS_PAD) * 4 > 48 * 1024) c.nwm = 0; /* no room to stage: FMA path */
  if (shared > 48 * 1024)
    return kiln_lower_fail(L, n, "GPU tiles need %lld bytes of shared memory, over 48 KiB", (long long)shared);
  c.K = gmm->K;
  c.cols = gmm->N;
  int64_t gn = (c.cols + t->bn - 1) / t->bn, gm = (gmm->M + t->bm - 1) / t->bm, nk = (c.K + t->bk - 1) / t->bk;

  kiln_lower_begin(L, n);
  c.bx = IDX(kiln_lb_for(B, gn, (kiln_sched){.gpu = 1}));
  c.by = IDX(kiln_lb_for(B, gm, (kiln_sched){.gpu = 2}));
  c.bz = IDX(kiln_lb_for(B, gmm->Z, (kiln_sched){.gpu = 3}));
  c.ws = kiln_lb_alloc(B, "W.tile", KILN_SCOPE_SHARED, c.ct, t->bk * t->bm);
  c.xs = kiln_lb_alloc(B, "X.tile", KILN_SCOPE_SHARED, c.ct, t->bk * t->bn);
  if (c.nwm) c.cs = kiln_lb_alloc(B, "C.stage", KILN_SCOPE_SHARED, c.ct, t->bm * (t->bn + CS_PAD));
  kiln_lx *tx = IDX(kiln_lb_for(B, c.tx_n, (kiln_sched){.gpu = 4}));
  kiln_lx *ty = IDX(kiln_lb_for(B, t->bm / t->rm, (kiln_sched){.gpu = 5}));
  const kiln_buf *acc = kiln_lb_alloc(B, "acc", KILN_SCOPE_LOCAL, c.ct, t->rm * t->rn);
  kiln_sched unr = {.unroll = (int)(t->rm * t->rn)};
  kiln_lx *r = IDX(kiln_lb_for(B, t->rm * t->rn, unr));
  kiln_lb_store(B, acc, r, kiln_lx_const_f(B, c.ct, 0));
  kiln_lb_end(B);
  c.tid = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(ty, c.tx_n), tx)));
  if (c.nwm) { /* lane and warp (tid is the CUDA linear id: tx is threadIdx.x) */
    c.af = kiln_lb_alloc(B, "A.frag", KILN_SCOPE_LOCAL, c.ct, 4 * c.wm);
    c.bf = kiln_lb_alloc(B, "B.frag", KILN_SCOPE_LOCAL, c.ct, 2 * c.wn);
    c.cf = kiln_lb_alloc(B, "C.frag", KILN_SCOPE_LOCAL, c.ct, 4 * c.wm * c.wn);
    kiln_lx *q = IDX(kiln_lb_for(B, 4 * c.wm * c.wn, (kiln_sched){0}));
    kiln_lb_store(B, c.cf, q, kiln_lx_const_f(B, c.ct, 0));
    kiln_lb_end(B);
    kiln_lx *lane = let(L, BIN(REM, c.tid, CI(32))), *warp = let(L, BIN(DIV, c.tid, CI(32)));
    c.lg = let(L, BIN(DIV, lane, CI(4)));
    c.tq = let(L, BIN(REM, lane, CI(4)));
    c.wr = let(L, IMUL(BIN(DIV, warp, CI(c.nwn)), 16 * c.wm));
    c.wc = let(L, IMUL(BIN(REM, warp, CI(c.nwn)), 8 * c.wn));
  }

  c.kt = IDX(kiln_lb_for(B, nk, (kiln_sched){0}));
  load_w(L, &c);
  load_x(L, &c);
  kiln_lb_barrier(B);
  kiln_lx *i, *j; /* a micro-tile row and column: the FMA k-step's, then the store's */
  if (c.nwm) mma_kstep(L, &c);
  else {
    kiln_lx *kk = IDX(kiln_lb_for(B, t->bk, (kiln_sched){0}));
    i = IDX(kiln_lb_for(B, t->rm, (kiln_sched){.unroll = (int)t->rm}));
    j = IDX(kiln_lb_for(B, t->rn, (kiln_sched){.unroll = (int)t->rn}));
    kiln_lx *a = kiln_lx_load(B, c.ws, IADD(IADD(IMUL(kk, t->bm), IMUL(ty, t->rm)), i));
    kiln_lx *xv = kiln_lx_load(B, c.xs, IADD(IADD(IMUL(kk, t->bn), IMUL(tx, t->rn)), j));
    kiln_lx *ai = IADD(IMUL(i, t->rn), j);
    kiln_lb_store(B, acc, ai, BIN(ADD, kiln_lx_load(B, acc, ai), BIN(MUL, a, xv)));
    kiln_lower_close(L, 3);
  }
  kiln_lb_barrier(B);
  kiln_lb_end(B); /* kt */
  if (c.nwm) mma_unstage(L, &c, acc, tx, ty);

  /* the finished sums, where m < M and col < N: the caller's store */
  i = IDX(kiln_lb_for(B, t->rm, (kiln_sched){.unroll = (int)t->rm}));
  j = IDX(kiln_lb_for(B, t->rn, (kiln_sched){.unroll = (int)t->rn}));
  kiln_lx *m = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IADD(IADD(IMUL(c.by, t->bm), IMUL(ty, t->rm)), i)));
  kiln_lx *col = LOCAL(kiln_lb_decl(B, KILN_DT_I64, IADD(IADD(IMUL(c.bx, t->bn), IMUL(tx, t->rn)), j)));
  kiln_lx *ok = and_opt(L, below(L, m, gm * t->bm - 1, gmm->M), below(L, col, gn * t->bn - 1, c.cols));
  if (ok) kiln_lb_if(B, ok);
  gmm->store(L, gmm, c.bz, m, col, kiln_lx_load(B, acc, IADD(IMUL(i, t->rn), j)));
  if (ok) kiln_lb_end(B);
  kiln_lower_close(L, 2 + 2 + 3); /* i, j; ty, tx; bz, by, bx */
  kiln_lb_launch(B);
  return L->d->failed > failed ? -1 : 0; /* an epilogue step's scalar function may have failed */
}

/* Y[nb, grp*Mg + m, o] = v + B[grp*Mg + m], through the node's epilogue. */
static void conv_store(kiln_lctx *L, const kiln_gpu_gemm *gm, kiln_lx *z, kiln_lx *m, kiln_lx *col, kiln_lx *v) {
  const kiln_conv_def *def = gm->ctx;
  const kiln_conv_geom *g = &def->g;
  kiln_lx *mg = let(L, IADD(IMUL(z, g->Mg), m));
  kiln_lx *nb = g->osz == 1 ? col : BIN(DIV, col, CI(g->osz)), *o = g->osz == 1 ? CI(0) : BIN(REM, col, CI(g->osz));
  if (def->b) v = BIN(ADD, v, kiln_lower_load(L, kiln_lower_buf(L, def->b), mg));
  kiln_lower_store_flat(L, gm->node, 0, IADD(IMUL(IADD(IMUL(nb, g->M), mg), g->osz), o), v);
}

/* b is f16/bf16 weight v's compute-type copy (kiln_lower_weight_ct's
 * NAME.f32): named so and holding v's values -- checked, since a model
 * may name another initializer that way. */
static int is_wide_copy(const kiln_buf *b, const kiln_value *v) {
  size_t len = strlen(v->name);
  const char *ct = kiln_dtype_name(kiln_lower_ctype(v->dtype));
  if (!b->data || b->kind != KILN_BUF_WEIGHT || b->dtype != kiln_lower_ctype(v->dtype) ||
      b->numel != kiln_value_numel(v, 1) || strncmp(b->name, v->name, len) || b->name[len] != '.' ||
      strcmp(b->name + len + 1, ct))
    return 0;
  for (int64_t i = 0; i < b->numel; i++)
    if (kiln_dtype_load_f(b->dtype, b->data, (size_t)i) != kiln_dtype_load_f(v->dtype, v->data, (size_t)i)) return 0;
  return 1;
}

void kiln_gpu_schedule_ctx(kiln_lctx *L, kiln_program *p, const kiln_node *n, kiln_diag *d) {
  kiln_graph *gr = (kiln_graph *)p->graph;
  *L = (kiln_lctx){.g = gr, .d = d, .target = &p->target};
  L->b.p = p;
  L->buf_of = kiln_arena_array(p->arena, (size_t)gr->nvalues + 1, sizeof *L->buf_of);
  /* the values of n and of its epilogue steps keep the buffers the
   * lowering gave them (same name pointer) */
  for (int s = -1; s < n->epi.nsteps; s++) {
    const kiln_node *m = s < 0 ? n : n->epi.steps[s];
    for (int k = 0; k < m->nin + m->nout; k++) {
      const kiln_value *v = k < m->nin ? m->in[k] : m->out[k - m->nin];
      for (int i = 0; v && i < p->nbufs; i++)
        if (p->bufs[i]->name == v->name) L->buf_of[v->id] = p->bufs[i];
      for (int i = 0; v && v->data && kiln_lower_ctype(v->dtype) != v->dtype && i < p->nbufs; i++)
        if (is_wide_copy(p->bufs[i], v)) L->buf_of[v->id] = p->bufs[i];
    }
  }
}

int kiln_schedule_conv_gpu(kiln_program *p, const kiln_node *n, const kiln_conv_gpu_tile *t, kiln_diag *d) {
  kiln_lctx Lc, *L = &Lc;
  kiln_gpu_schedule_ctx(L, p, n, d);
  if (n->op != KILN_OP_CONV) return kiln_lower_fail(L, n, "the GPU schedule covers Conv only");
  if (kiln_lower_check_epilogue(L, n)) return -1;
  kiln_conv_def def;
  if (kiln_conv_def_of(L, n, &def)) return -1;
  const kiln_conv_geom *g = &def.g;
  /* A = W's rows (W[grp*Mg + m, kg]), B = the im2col X' of group z */
  kiln_gpu_gemm gm = {.M = g->Mg, .N = g->N * g->osz, .K = g->Cg * g->ksz, .Z = g->G,
                      .ct = kiln_lower_ctype(def.y->dtype), .a = kiln_lower_buf(L, def.w), .a_z = g->Mg * g->Cg * g->ksz,
                      .a_m = g->Cg * g->ksz, .a_k = 1, .b = kiln_lower_buf(L, def.x), .conv = g,
                      .store = conv_store, .ctx = &def, .node = n};
  return kiln_gpu_gemm_build(L, n, &gm, t);
}
