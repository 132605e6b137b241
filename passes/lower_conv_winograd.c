/* Conv 3x3, stride 1, as Winograd's minimal filtering F(m x m, 3 x 3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
 * 2016): ResNet's, VGG's and U-Net's 3x3 layers.
 *
 * Each m x m tile of outputs of one channel pair is
 *
 *   Y_tile = AT [ (G w GT) (.) (BT d BT') ] A        (.): elementwise
 *
 * over the a x a input tile d (a = m + 2) the outputs read and the 3x3
 * filter w; summed over input channels c, the elementwise products become
 * a x a independent GEMMs (one per point t of the transformed tile):
 *
 *   Mt[t, m, p] = sum over c of U[t, m, c] * V[t, c, p]
 *
 * with U = G w GT (per channel pair, computed here at compile time, in
 * double, rounded once) and V = BT d B (per input channel and tile p).
 * F(2x2, 3x3) does 16 products for 4 outputs where the direct sum does 36
 * (2.25x fewer), F(4x4, 3x3) 36 for 16 (4x fewer).  When the whole
 * plane's V and Mt fit in the memory the plain plan leaves free beside
 * this kernel (plan_scratch), the kernel runs three parallel loops:
 *
 *   V[n, t, c, p]   = BT d(n, c, p) B        per (n, c): every tile of the plane
 *   Mt[n, t, m, p]  = U[t] x V[n, t]         per (n, t)
 *   Y[n, m, tile p] = AT Mt(n, ., m, p) A + B[m], through the output store
 *                                            per (n, m): bias, Relu, residual Add
 *
 * When a zero-padded copy Xp of X fits there too, a fourth loop comes
 * first (emit_pad, per (n, c)) and the first step reads Xp: one loop nest
 * with no bounds checks, where reading X takes up to nine copies of the
 * transform (interior and border rows and columns, their taps checked):
 * ResNet-50's object 177 -> 141 KB, the copy a few microseconds a layer.
 * Else one parallel loop over a slot per core, each running the three
 * steps on bands of rows of tiles in V and Mt of its own (emit_banded).
 *
 * The GEMM tile is the transposed one of lower_conv_gemmt.c with the roles
 * swapped: vectors along tiles p (V's and Mt's rows, padded to whole
 * vectors: Pp), pb output channels broadcast from U re-laid as
 * [t, block of pb, c, pb] (M rounded up to whole blocks with zero
 * weights); 6 x RV sums stay in registers over the whole c loop: pb = 6
 * rows of RV lanes, or more rows of fewer vectors on planes of fewer
 * tiles (block_rows, group_of).  The transforms
 * are scalar loops over the tiles of a row (LLVM's cost model declines to
 * vectorise their loads m apart); border tiles read through a bounds
 * check.  Measured on a 2-vCPU Zen 5 (AVX-512), one thread, against the
 * register path: 64 channels at 56x56 1.06 -> 0.54 ms, 128 at 28x28 1.10 ->
 * 0.54, 256 at 14x14 1.13 -> 0.53 (F(4x4)).
 *
 * Accuracy: the transforms' coefficients are exact in float32; F(2x2)'s
 * error is a few times the direct sum's, F(4x4)'s transforms weigh inputs
 * by up to 5x5 (BT) and 8x8 (AT), so its rounding error is tens of times
 * the direct sum's relative to the outputs' scale (the bound
 * tests/passes/test_conv_winograd.py checks; ~1e-6 of the logits on the
 * bench networks).  Which m a layer gets: pick_m.  KILN_WINOGRAD=0 in the
 * environment turns the schedule off, =2 or =4 forces that tile where the
 * shape and the memory allow (for comparing them in one benchmark). */
#include "conv_def.h"

#include <stdlib.h>
#include <string.h>

#include "lower_macros.h"

static const kiln_sched seq = {0};
static const kiln_sched par = {.parallel = 1};

/* WG_SKEW: V's and Mt's points lie C x Pp (M x Pp) floats apart plus 16
 * (64 bytes).  Each transform touches the same tile at every point: 16 or
 * 36 streams at that stride, which with 128 channels of 208 tiles is
 * 26 x 4096 bytes, every stream in the same set of the L1 (12 ways): the
 * input transform of a 128-channel 28x28 layer ran 0.89 ms on those
 * conflict misses.  The skew puts stream t t lines further on. */
enum { WG_PB = 6, WG_PB_MAX = 24, WG_A_MAX = 6, WG_SKEW = 16 };
/* The GEMM's slices of V: at most WG_V_SLICE bytes (see gemm_point). */
#define WG_V_SLICE ((int64_t)256 << 10)

/* F(2x2, 3x3) and F(4x4, 3x3) with points 0, +-1, +-2 (Lavin and Gray's). */
static const double bt2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const double g2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
static const double at2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const double bt4[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                 {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const double g4[6][3] = {{1 / 4.0, 0, 0},           {-1 / 6.0, -1 / 6.0, -1 / 6.0}, {-1 / 6.0, 1 / 6.0, -1 / 6.0},
                                {1 / 24.0, 1 / 12.0, 1 / 6.0}, {1 / 24.0, -1 / 12.0, 1 / 6.0}, {0, 0, 1}};
static const double at4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

typedef struct wino {
  const kiln_conv_geom *g;
  int64_t m, a, T;            /* outputs per tile side, input tile side, points (a*a) */
  int64_t th, tw, P, Pp;      /* tiles down, across, in all, padded to whole vectors */
  int64_t vs, ms;             /* V's and Mt's stride from one point to the next (see WG_SKEW) */
  int64_t band, slots;        /* banded (emit_banded): rows of tiles a band, slots; else 0 */
  int64_t RV, pb, nmb, lanes; /* GEMM tile lanes; channels a block (block_rows), blocks; the target's lanes */
  double bt[WG_A_MAX][WG_A_MAX], gm[WG_A_MAX][3], at[WG_A_MAX - 2][WG_A_MAX];
  int64_t hp, wp;             /* the zero-padded copy's rows and columns (emit_pad), or 0: none */
  int64_t pk[2];              /* a fused pool's window (fuse_pool.c), or 0: none */
  const kiln_buf *x, *u, *v, *mt, *bias, *xp;
  kiln_dtype ct;
  int fma;
} wino;

static int64_t vectors(const kiln_target *t) { return t->vector_bytes >= 64 ? 4 : 2; }

/* pick_m on an Intel core (kiln_target.intel_core), where F(4x4)'s
 * gains measured on Zen 5 (pick_m's comments) do not hold.  Per kernel against F(2x2)
 * and the direct schedules, one Intel AVX-512 core (2 FMA pipes, 2 MiB
 * L2; bench/ab_kernels.py, least of 3 alternating rounds, ms):
 *   ResNet-50 256 ch 14x14: F(4x4) 1.65, direct 1.30, F(2x2) 0.92-0.99
 *   ResNet-50 128 ch 28x28: F(4x4) 1.11, direct 1.23, F(2x2) 0.85
 *   VGG-16 512 ch 14x14:    F(4x4) 6.1, F(2x2) 3.4
 *   VGG-16 512 ch 28x28:    F(4x4) 8.3, F(2x2) 11.4 (256 -> 512: 4.3, 5.5)
 *   VGG-16 256 ch 56x56:    F(4x4) 7.5, F(2x2) 12.3 (128 -> 256: 4.3, 6.2)
 *   VGG-16 128 ch 112x112:  F(4x4) 9.1, F(2x2) 10.5
 *   DenseNet-121 128 -> 32 56x56: F(4x4) 1.27-1.37, F(2x2) 0.90-1.05
 *   DenseNet-121 128 -> 32 28x28: F(4x4) 0.40, F(2x2) 0.34
 *   ResNet-50 512 ch 7x7 (U 16.8 MB): F(2x2) 2.56-2.64, the transposed
 *     GEMM over im2col rows 2.24-2.40
 * so F(4x4) only on large maps with many channels in and out, F(2x2) elsewhere, and
 * small maps whose F(2x2) U is past twice the L2 stay direct. */
static int64_t pick_m_intel(const kiln_lctx *L, const kiln_conv_geom *g) {
  int64_t lo = g->out[0] < g->out[1] ? g->out[0] : g->out[1];
  if (g->osz <= 169 && 16 * g->M * g->C * 4 > 2 * L->target->l2_bytes) return 0;
  if (g->M >= 128 && ((lo >= 28 && g->C >= 256) || (lo >= 56 && g->C >= 128))) return 4;
  return 2;
}

/* The tile size for g on target t, or 0: not a Winograd convolution. */
static int64_t pick_m(const kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  const char *env = getenv("KILN_WINOGRAD"); /* 0: off, 2 or 4: that tile everywhere it applies */
  int64_t force = env && *env ? atoi(env) : -1;
  if (force == 0) return 0;
  if (L->target->kind == KILN_TARGET_GPU || g->sp != 2 || g->G != 1) return 0;
  for (int i = 0; i < 2; i++)
    if (g->K[i] != 3 || g->s[i] != 1 || g->d[i] != 1 || g->pb[i] > 2) return 0;
  if (kiln_lower_ctype(n->out[0]->dtype) != KILN_DT_F32 || !kiln_lower_fixed_weight(L, n->in[1])) return 0;
  if (g->C < 32 || g->M < 32) return 0;
  if (force == 2 || force == 4) return g->out[0] >= 4 && g->out[1] >= 4 ? force : 0;
  /* measured per layer on ResNet-50 and VGG-16 (2-vCPU Zen 5, 1 thread,
   * against the register path): F(4x4) wins at 14x14 and 28x28 with 128
   * channels and more (0.54 against F(2x2)'s 0.67 ms, 256 channels at
   * 14x14), F(2x2) with fewer (64 at 56x56: 0.54 against 0.68) */
  if (g->out[0] < 7 || g->out[1] < 7) return 0;
  if (L->target->intel_core) return pick_m_intel(L, g);
  /* 7x7 to 9x9 maps: F(2x2), whatever U weighs.  Their 16 to 25 tiles
   * are one or two vectors, which the GEMM's tile covers with more rows
   * (block_rows): ResNet-50's 512-channel 7x7s (U 16.8 MB, streamed once
   * a run) 2.71-2.81 -> 1.92-2.00 ms against the transposed GEMM over
   * im2col rows.  With 6 rows of one vector they had lost. */
  if (g->out[0] < 10 || g->out[1] < 10) return 2;
  /* 13x13 and smaller, where the transposed GEMM (lower_conv_gemmt.c)
   * already runs near the peak: only with U small enough to stay near the
   * core (SqueezeNet's expand3x3, 64 -> 256 channels, U 1 MB: 0.25 -> 0.22
   * ms); AlexNet's 192 -> 384 (U 4.7 MB) lost, 1.76 -> 2.11 ms */
  if (g->osz <= 169 && 16 * g->M * g->C * 4 > 2 * L->target->l2_bytes) return 0;
  int64_t lo = g->out[0] < g->out[1] ? g->out[0] : g->out[1], hi = g->out[0] + g->out[1] - lo;
  if (lo >= 14 && g->C >= 128 && g->M >= 128) return 4;
  /* 14x14 to 28x28 maps with 96 input channels or more take F(4x4)
   * whatever M (its tiles' one to four vectors in blocks of up to 24 rows,
   * block_rows).  Best of three runs, one thread: DenseNet-121's 128 -> 32
   * 3x3s at 28x28 0.41-0.45 -> 0.37-0.38 ms and at 14x14 0.12-0.13 ->
   * 0.10; GoogLeNet's inception 3a (96 -> 128 at 28x28) 1.04 -> 0.85, 4a
   * and 4b (96 -> 208, 112 -> 224 at 14x14) 0.45 -> 0.32 and 0.53 ->
   * 0.40.  At 56x56 F(2x2) stays ahead (DenseNet's 128 -> 32: 1.41
   * against 1.50 ms). */
  if (lo >= 14 && hi <= 28 && g->C >= 96) return 4;
  return 2;
}


/* Output channels a GEMM block holds (the tile's rows, broadcast from U)
 * for V rows of pp positions.  The tile keeps 6 x vectors(target) sums in
 * registers (24 with AVX-512's 32 registers, 12 with AVX2's 16): 6 rows
 * of whole chunks of RV positions when there is at least one; a plane of
 * fewer positions (ResNet-50's and VGG-16's 14x14 layers with F(4x4):
 * 16 tiles, one vector) gets the same sums as more rows of fewer vectors,
 * the count among them that pads M least (more rows on a tie: each
 * vector of V loaded serves more of them).  With 6 rows of one vector
 * the tile had 6 independent FMA chains, fewer than the FMA latency
 * times the pipes needs, and loaded 7 values a 6 FMAs: 256 channels at
 * 14x14 ran its GEMM at 55% of the FMA peak. */
static int64_t block_rows(const wino *f, const kiln_conv_geom *g, int64_t pp) {
  int64_t nv = pp / f->lanes;
  if (pp >= f->RV || nv < 1) return WG_PB;
  int64_t most = WG_PB * (f->RV / f->lanes) / nv, best = WG_PB;
  if (most > WG_PB_MAX) most = WG_PB_MAX;
  for (int64_t r = WG_PB; r <= most; r++)
    if ((g->M + r - 1) / r * r <= (g->M + best - 1) / best * best) best = r;
  return best;
}

/* V and Mt for `rows` rows of tiles of one image, in bytes. */
static int64_t scratch_bytes(const wino *f, const kiln_conv_geom *g, int64_t rows) {
  int64_t pp = (rows * f->tw + f->lanes - 1) / f->lanes * f->lanes, pb = block_rows(f, g, pp);
  return f->T * ((g->C + (g->M + pb - 1) / pb * pb) * pp + 2 * WG_SKEW) * 4;
}

/* Where V and Mt live (f->band, f->slots; 0: the whole plane), or -1:
 * nowhere.  They take only what the plain plan leaves free while this
 * kernel runs (kiln_lower_scratch_room), so the
 * network's peak workspace does not grow (issue #10's bar): the whole
 * plane's when it fits, else bands (emit_banded) of at least one row of
 * tiles a slot; a network whose peak is this layer's own input and output
 * (a lone convolution) computes it directly. */
static int plan_scratch(const kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, wino *f) {
  int64_t room = kiln_lower_scratch_room(L, n), whole = g->N * scratch_bytes(f, g, f->th);
  if (room < 0) room = 0;
  int64_t hp = f->th * f->m + 2, wp = f->tw * f->m + 2, padded = g->N * g->C * hp * wp * 4;
  if (whole + padded <= room) { /* the input transform reads a zero-padded copy: no border tiles */
    f->hp = hp, f->wp = wp;
    return 0;
  }
  if (whole <= room) return 0;
  int64_t slots = L->target->cores < 1 ? 1 : L->target->cores, band = f->th;
  /* at most an L2 a slot: 64 channels at 112x112 in bands of 12 rows of
   * tiles (2.8 MB a slot) ran 6.6-9.0 ms, in bands of 4 (one L2) 3.8 */
  while (band >= 1 && (slots * scratch_bytes(f, g, band) > room || (band > 1 && scratch_bytes(f, g, band) > L->target->l2_bytes)))
    band--;
  if (band < 1) return -1;
  /* of the bands that fit, the one whose rows of tiles pad least to whole
   * vectors, the smallest on a tie: ResNet-50's 64-channel 56x56 layers
   * (28 tiles a row), one thread, where 3 rows fit: bands of 3 rows (84
   * tiles in 96 lanes) 1.66-1.74 ms, 2 rows 1.58-1.61, 1 row 1.45, and 4
   * rows (112 tiles, no padding) 1.35-1.50 where they fit */
  int64_t best = band;
  for (int64_t b = band - 1; b >= 1; b--) {
    int64_t pb = (b * f->tw + f->lanes - 1) / f->lanes * f->lanes, pbest = (best * f->tw + f->lanes - 1) / f->lanes * f->lanes;
    if (pb * best * f->tw <= pbest * b * f->tw) best = b; /* pb / (b tw) <= pbest / (best tw) */
  }
  band = best;
  int64_t nb = (f->th + band - 1) / band;
  f->band = band, f->slots = slots < g->N * nb ? slots : g->N * nb;
  /* no padded copy for bands: copying each slot's rows of X (ResNet-50's
   * 64-channel 56x56 layers, F(2x2)) cost about what their transform
   * does, 1.18-1.30 -> 1.31-1.48 ms */
  return 0;
}

/* One channel pair's G k GT (a x a points, a = A) into U at u, point t
 * at u + t * ts.  A is a constant in each caller, so the loops unroll and
 * G stays in registers: ResNet-50's 913K pairs took 870M instructions
 * with `a` a variable and G read through f (2.1 -> 0.3 s under callgrind,
 * a tenth of the compile). */
static inline void transform_pair(int A, const double gm[WG_A_MAX][3], const double k[9], float *u, int64_t ts) {
  double gk[WG_A_MAX][3];
#pragma GCC unroll 6
  for (int i = 0; i < A; i++)
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++) gk[i][j] = gm[i][0] * k[j] + gm[i][1] * k[3 + j] + gm[i][2] * k[6 + j];
#pragma GCC unroll 6
  for (int i = 0; i < A; i++)
#pragma GCC unroll 6
    for (int j = 0; j < A; j++) u[(i * A + j) * ts] = (float)(gk[i][0] * gm[j][0] + gk[i][1] * gm[j][1] + gk[i][2] * gm[j][2]);
}

/* U[t, blk, c, r] = (G W[blk*6 + r, c] GT)[t] (0 past M), in double,
 * rounded once: a weight buffer made here. */
static const kiln_buf *transformed_weights(kiln_lctx *L, const kiln_node *n, const wino *f) {
  const kiln_value *w = n->in[1];
  const kiln_conv_geom *g = f->g;
  int64_t C = g->C, M = g->M, a = f->a, pb = f->pb, numel = f->T * f->nmb * C * pb, ts = f->nmb * C * pb;
  float *data = kiln_arena_array(L->b.p->arena, (size_t)numel + 1, sizeof *data); /* zero: the padding */
  double gm[WG_A_MAX][3];
  memcpy(gm, f->gm, sizeof gm);
  const float *wf = w->dtype == KILN_DT_F32 ? w->data : NULL;
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) {
      double k[9];
      size_t at = (size_t)((m * C + c) * 9);
#pragma GCC unroll 9
      for (int i = 0; i < 9; i++) k[i] = wf ? wf[at + i] : kiln_dtype_load_f(w->dtype, w->data, at + i);
      float *u = data + (m / pb) * C * pb + c * pb + m % pb;
      if (a == 4) transform_pair(4, gm, k, u, ts);
      else transform_pair(6, gm, k, u, ts);
    }
  return kiln_lower_weight_data(L, w, KILN_DT_F32, data, numel, "winograd");
}

/* sum over j < len of coef[j] * x[j] (locals), skipping zeros; +-1 as adds. */
static kiln_lx *combine(kiln_lctx *L, const wino *f, const double *coef, const int *x, int64_t len) {
  kiln_lx *s = NULL;
  int64_t first = 0; /* a positive term first: no negation to start from */
  while (first < len && coef[first] <= 0) first++;
  if (first == len) first = 0;
  for (int64_t jj = 0; jj < len; jj++) {
    int64_t j = jj == 0 ? first : jj <= first ? jj - 1 : jj;
    double c = coef[j];
    if (c == 0) continue;
    kiln_lx *v = LOCAL(x[j]);
    if (!s) s = c == 1 ? v : c == -1 ? kiln_lx_un(B, KILN_UN_NEG, v) : BIN(MUL, kiln_lx_const_f(B, f->ct, c), v);
    else if (c == 1) s = BIN(ADD, s, v);
    else if (c == -1) s = BIN(SUB, s, v);
    else if (f->fma) s = kiln_lx_fma(B, kiln_lx_const_f(B, f->ct, c), v, s);
    else s = BIN(ADD, s, BIN(MUL, kiln_lx_const_f(B, f->ct, c), v));
  }
  return s ? s : kiln_lx_const_f(B, f->ct, 0);
}

/* Column k of mat is read by one of its first n rows. */
static int reads(const double (*mat)[WG_A_MAX], int64_t n, int64_t k) {
  for (int64_t i = 0; i < n; i++)
    if (mat[i][k] != 0) return 1;
  return 0;
}

/* out[i * nc + j] = sum_k sum_l mat[i][k] d[k][l] mat[j][l] for i < nr,
 * j < nc, over the a x a locals d (only those the sum reads need exist:
 * reads(mat, nr, k) and reads(mat, nc, l); partial output tiles leave some
 * out, and so some loads, unused, which a C compiler warns of). */
static void sandwich(kiln_lctx *L, const wino *f, const double (*mat)[WG_A_MAX], int64_t nr, int64_t nc, const int *d,
                     int *out) {
  int tmp[WG_A_MAX * WG_A_MAX], col[WG_A_MAX];
  int64_t a = f->a;
  for (int64_t i = 0; i < nr; i++)
    for (int64_t l = 0; l < a; l++) {
      if (!reads(mat, nc, l)) continue;
      for (int64_t k = 0; k < a; k++) col[k] = d[k * a + l];
      tmp[i * a + l] = kiln_lb_decl(B, f->ct, combine(L, f, mat[i], col, a));
    }
  for (int64_t i = 0; i < nr; i++)
    for (int64_t j = 0; j < nc; j++) out[i * nc + j] = kiln_lb_decl(B, f->ct, combine(L, f, mat[j], &tmp[i * a], a));
}

/* Tiles ty x [tx0, tx1) of plane xb into V at vb (point 0, position of
 * tile (ty, 0): prow); rows/cols checked against the input's extent when
 * chk_r / chk_c (border tiles). */
static void input_tiles(kiln_lctx *L, const wino *f, kiln_lx *xb, kiln_lx *vb, kiln_lx *ty, kiln_lx *prow,
                        int64_t tx0, int64_t tx1, int chk_r, int chk_c) {
  const kiln_conv_geom *g = f->g;
  if (tx0 >= tx1) return;
  int64_t a = f->a, H = g->in[0], W = g->in[1];
  kiln_lx *tx = IADD(IDX(kiln_lb_for(B, tx1 - tx0, seq)), CI(tx0));
  int d[WG_A_MAX * WG_A_MAX], v[WG_A_MAX * WG_A_MAX];
  for (int64_t i = 0; i < a; i++)
    for (int64_t j = 0; j < a; j++) {
      kiln_lx *r = IADD(IMUL(ty, f->m), CI(i - g->pb[0])), *c = IADD(IMUL(tx, f->m), CI(j - g->pb[1]));
      kiln_lx *off = IADD(xb, IADD(IMUL(r, W), c)), *ok = NULL;
      if (chk_r) ok = BIN(AND, BIN(LE, CI(0), r), BIN(LT, r, CI(H)));
      if (chk_c) {
        kiln_lx *okc = BIN(AND, BIN(LE, CI(0), c), BIN(LT, c, CI(W)));
        ok = ok ? BIN(AND, ok, okc) : okc;
      }
      kiln_lx *x;
      if (ok) /* read at the plane's first element where outside: always in bounds */
        x = kiln_lx_select(B, ok, kiln_lower_load(L, f->x, kiln_lx_select(B, ok, off, xb)), kiln_lx_const_f(B, f->ct, 0));
      else x = kiln_lower_load(L, f->x, off);
      d[i * a + j] = kiln_lb_decl(B, f->ct, x);
    }
  sandwich(L, f, f->bt, a, a, d, v);
  kiln_lx *p = IADD(prow, tx);
  for (int64_t t = 0; t < f->T; t++) kiln_lb_store(B, f->v, IADD(IADD(vb, IMUL(CI(t), f->vs)), p), LOCAL(v[t]));
  kiln_lb_end(B);
}

/* The first tile whose window starts at or past 0 and the one past the
 * last that ends inside `in`, along one dim (border tiles: the others). */
static void interior(const wino *f, int64_t pad, int64_t in, int64_t ntiles, int64_t *lo, int64_t *hi) {
  *lo = (pad + f->m - 1) / f->m;
  if (*lo > ntiles) *lo = ntiles;
  int64_t last = in - f->a + pad; /* tile t is inside when t*m <= last */
  *hi = last < 0 ? *lo : last / f->m + 1;
  if (*hi > ntiles) *hi = ntiles;
  if (*hi < *lo) *hi = *lo;
}

/* One row ty of tiles of plane xb: border columns checked, the rows
 * checked when chk_r. */
static void input_row(kiln_lctx *L, const wino *f, kiln_lx *xb, kiln_lx *vb, kiln_lx *ty, kiln_lx *prow, int chk_r) {
  int64_t cl[4];
  interior(f, f->g->pb[1], f->g->in[1], f->tw, &cl[1], &cl[2]);
  cl[0] = 0, cl[3] = f->tw;
  for (int j = 0; j < 3; j++) input_tiles(L, f, xb, vb, ty, prow, cl[j], cl[j + 1], chk_r, j != 1);
}

/* Zero the padding positions [from, Pp) of every point's row at vb. */
static void zero_pad(kiln_lctx *L, const wino *f, kiln_lx *vb, int64_t from) {
  if (f->Pp <= from) return;
  kiln_lx *t = IDX(kiln_lb_for(B, f->T, seq)), *q = IADD(IDX(kiln_lb_for(B, f->Pp - from, seq)), CI(from));
  kiln_lb_store(B, f->v, IADD(IADD(vb, IMUL(t, f->vs)), q), kiln_lx_const_f(B, f->ct, 0));
  kiln_lower_close(L, 2);
}

/* Padded rows rr < nrows at xpb in Xp (wp floats each) from input rows
 * row0 + rr of plane xb: g->pb[1] zero columns, the row, zeros to wp; all
 * zeros for a row outside X. */
static void pad_rows(kiln_lctx *L, const wino *f, kiln_lx *xb, kiln_lx *xpb, kiln_lx *row0, int64_t nrows) {
  const kiln_conv_geom *g = f->g;
  int64_t H = g->in[0], W = g->in[1], left = g->pb[1], right = f->wp - left - W;
  kiln_lx *zero = kiln_lx_const_f(B, f->ct, 0), *rr = IDX(kiln_lb_for(B, nrows, seq));
  int row = kiln_lb_decl(B, KILN_DT_I64, IADD(row0, rr));
  kiln_lx *dst = IADD(xpb, IMUL(rr, f->wp));
  kiln_lb_if(B, BIN(AND, BIN(LE, CI(0), LOCAL(row)), BIN(LT, LOCAL(row), CI(H))));
  for (int part = 0; part < 2; part++) { /* the zero columns left, then right */
    int64_t c0 = part ? left + W : 0, n0 = part ? right : left;
    if (n0 <= 0) continue;
    kiln_lx *c = IDX(kiln_lb_for(B, n0, seq));
    kiln_lb_store(B, f->xp, IADD(dst, IADD(c, CI(c0))), zero);
    kiln_lb_end(B);
  }
  kiln_lx *c = IDX(kiln_lb_for(B, W, seq));
  kiln_lb_store(B, f->xp, IADD(dst, IADD(c, CI(left))), kiln_lx_load(B, f->x, IADD(xb, IADD(IMUL(LOCAL(row), W), c))));
  kiln_lb_end(B);
  kiln_lb_else(B);
  kiln_lx *q = IDX(kiln_lb_for(B, f->wp, seq));
  kiln_lb_store(B, f->xp, IADD(dst, q), zero);
  kiln_lower_close(L, 3); /* q, the IF, rr */
}

/* Xp[n, c] = X[n, c] with pb zero rows and columns before and enough
 * after for every tile's window (hp x wp): parallel over (n, c). */
static void emit_pad(kiln_lctx *L, const wino *f) {
  const kiln_conv_geom *g = f->g;
  kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par));
  pad_rows(L, f, IMUL(nc, g->isz), IMUL(nc, f->hp * f->wp), CI(-g->pb[0]), f->hp);
  kiln_lb_end(B);
}

/* Every tile of the padded plane at xpb into V at vb (point 0): one loop
 * nest, no checks. */
static void padded_tiles(kiln_lctx *L, const wino *f, kiln_lx *xpb, kiln_lx *vb) {
  int64_t a = f->a;
  kiln_lx *ty = IDX(kiln_lb_for(B, f->th, seq)), *tx = IDX(kiln_lb_for(B, f->tw, seq));
  kiln_lx *base = IADD(IADD(xpb, IMUL(ty, f->m * f->wp)), IMUL(tx, f->m));
  int d[WG_A_MAX * WG_A_MAX], v[WG_A_MAX * WG_A_MAX];
  for (int64_t i = 0; i < a; i++)
    for (int64_t j = 0; j < a; j++)
      d[i * a + j] = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->xp, IADD(base, CI(i * f->wp + j))));
  sandwich(L, f, f->bt, a, a, d, v);
  kiln_lx *p = IADD(IMUL(ty, f->tw), tx);
  for (int64_t t = 0; t < f->T; t++) kiln_lb_store(B, f->v, IADD(IADD(vb, IMUL(CI(t), f->vs)), p), LOCAL(v[t]));
  kiln_lower_close(L, 2);
}

/* Whole plane: one parallel loop over (n, c), every tile of the plane. */
static void emit_input_transform(kiln_lctx *L, const wino *f) {
  const kiln_conv_geom *g = f->g;
  kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par));
  kiln_lx *nv = g->N == 1 ? CI(0) : BIN(DIV, nc, CI(g->C)), *c = g->N == 1 ? nc : BIN(REM, nc, CI(g->C));
  /* the plane in X, or in the padded copy Xp */
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(nc, f->xp ? f->hp * f->wp : g->isz));
  int vb = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(nv, f->T * f->vs), IMUL(c, f->Pp)));
  if (f->xp) { /* from the padded copy: one loop nest, no border tiles */
    padded_tiles(L, f, LOCAL(xb), LOCAL(vb));
    zero_pad(L, f, LOCAL(vb), f->P);
    kiln_lb_end(B);
    return;
  }
  int64_t r[4];
  interior(f, g->pb[0], g->in[0], f->th, &r[1], &r[2]);
  r[0] = 0, r[3] = f->th;
  for (int i = 0; i < 3; i++) {
    if (r[i] >= r[i + 1]) continue;
    kiln_lx *ty = IADD(IDX(kiln_lb_for(B, r[i + 1] - r[i], seq)), CI(r[i]));
    input_row(L, f, LOCAL(xb), LOCAL(vb), ty, IMUL(ty, f->tw), i != 1);
    kiln_lb_end(B);
  }
  /* the padding tiles of every point's row: zero (read by the GEMM's
   * last vector, never stored out) */
  zero_pad(L, f, LOCAL(vb), f->P);
  kiln_lb_end(B);
}

/* One GEMM tile: nblk x f->pb rows (channels) from nblk consecutive
 * blocks, the first at ub / mb (U's blocks C x pb floats apart, Mt's rows
 * Pp apart), lanes p0 .. p0+rvl (tiles). */
static void gemm_tile(kiln_lctx *L, const wino *f, kiln_lx *ub, kiln_lx *vb, kiln_lx *mb, kiln_lx *p0, int64_t rvl,
                      int64_t nblk) {
  const kiln_conv_geom *g = f->g;
  int64_t rows = nblk * f->pb;
  int acc[WG_PB * 64], vl[64]; /* rows x rvl <= 6 x RV (block_rows, group_of) */
  for (int64_t r = 0; r < rows; r++)
    for (int64_t l = 0; l < rvl; l++) acc[r * rvl + l] = kiln_lb_decl(B, f->ct, kiln_lx_const_f(B, f->ct, 0));
  kiln_lx *k = IDX(kiln_lb_for(B, g->C, seq));
  kiln_lx *vr = IADD(IADD(vb, IMUL(k, f->Pp)), p0), *ur = IADD(ub, IMUL(k, f->pb));
  for (int64_t l = 0; l < rvl; l++) vl[l] = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->v, IADD(vr, CI(l))));
  for (int64_t r = 0; r < rows; r++) {
    int64_t uo = r / f->pb * g->C * f->pb + r % f->pb;
    int ul = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->u, IADD(ur, CI(uo))));
    for (int64_t l = 0; l < rvl; l++) {
      int s = acc[r * rvl + l];
      kiln_lx *x = LOCAL(ul), *w = LOCAL(vl[l]), *sv = LOCAL(s);
      kiln_lb_assign(B, s, f->fma ? kiln_lx_fma(B, x, w, sv) : BIN(ADD, sv, BIN(MUL, x, w)));
    }
  }
  kiln_lb_end(B);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t l = 0; l < rvl; l++)
      kiln_lb_store(B, f->mt, IADD(IADD(mb, IMUL(CI(r), f->Pp)), IADD(p0, CI(l))), LOCAL(acc[r * rvl + l]));
}

/* Blocks a tile of rvl lanes takes at once: the tile's 6 x vectors(target)
 * sums (24 with AVX-512, 12 with AVX2) as more rows when rvl is fewer
 * vectors.  A band's last chunk is often narrower than RV (ResNet-50's
 * 56x56 layers in bands of 3 rows of 28 tiles: 64 + 32 lanes), and 6 rows
 * of 2 vectors there ran the band's GEMM at 12 sums. */
static int64_t group_of(const wino *f, int64_t rvl) {
  int64_t nv = (rvl + f->lanes - 1) / f->lanes, most = WG_PB * (f->RV / f->lanes) / (f->pb * nv);
  if (most < 1) most = 1;
  return most < f->nmb ? most : f->nmb;
}

/* Every block of f->pb channels (the last one's rows past M: zero weights,
 * sums stored into Mt's padding rows) of nq chunks of rvl tiles from p0,
 * point t (V of the point at vb, Mt at mtb), group_of blocks a tile, the
 * blocks left over in a last, smaller tile: blocks outside, chunks inside,
 * so a group's U (C x pb floats a block) stays in the L1 across the
 * chunks. */
static void gemm_blocks(kiln_lctx *L, const wino *f, kiln_lx *t, kiln_lx *vb, kiln_lx *mtb, kiln_lx *p0, int64_t nq,
                        int64_t rvl) {
  const kiln_conv_geom *g = f->g;
  int64_t gk = group_of(f, rvl), ng = f->nmb / gk, left = f->nmb % gk;
  for (int part = 0; part < 2; part++) {
    int64_t nblk = part == 0 ? gk : left;
    if (part == 0 ? ng < 1 : left < 1) continue;
    kiln_lx *blk = part == 0 ? IMUL(IDX(kiln_lb_for(B, ng, seq)), gk) : CI(ng * gk);
    kiln_lx *q = nq > 1 ? IMUL(IDX(kiln_lb_for(B, nq, seq)), f->RV) : CI(0);
    kiln_lx *ub = IMUL(IADD(IMUL(t, f->nmb), blk), g->C * f->pb);
    gemm_tile(L, f, ub, vb, IADD(mtb, IMUL(blk, f->pb * f->Pp)), IADD(p0, q), rvl, nblk);
    kiln_lower_close(L, (part == 0) + (nq > 1));
  }
}

/* Point t's GEMM over all Pp positions: chunks of RV in groups whose V
 * slice (C x RV x group floats, the group a divisor of the chunks) stays
 * in the L2 across the blocks (U read once a group: a 512-channel U is
 * 1 MB a point), then the tail. */
static void gemm_point(kiln_lctx *L, const wino *f, kiln_lx *t, kiln_lx *vb, kiln_lx *mtb) {
  int64_t nfull = f->Pp / f->RV, rest = f->Pp % f->RV, gs = WG_V_SLICE / (f->g->C * f->RV * 4);
  if (gs > nfull) gs = nfull;
  while (gs > 1 && nfull % gs) gs--;
  if (nfull) {
    if (gs < 1) gs = 1;
    kiln_lx *grp = nfull / gs > 1 ? IDX(kiln_lb_for(B, nfull / gs, seq)) : CI(0);
    gemm_blocks(L, f, t, vb, mtb, IMUL(grp, gs * f->RV), gs, f->RV);
    if (nfull / gs > 1) kiln_lb_end(B);
  }
  if (rest) gemm_blocks(L, f, t, vb, mtb, CI(nfull * f->RV), 1, rest);
}

/* Whole plane: one parallel loop over (n, t). */
static void emit_gemm(kiln_lctx *L, const wino *f) {
  kiln_lx *nt = IDX(kiln_lb_for(B, f->g->N * f->T, par));
  kiln_lx *t = f->g->N == 1 ? nt : BIN(REM, nt, CI(f->T));
  gemm_point(L, f, t, IMUL(nt, f->vs), IMUL(nt, f->ms));
  kiln_lb_end(B);
}

/* Tiles ty x [tx0, tx1) of output plane (n, m), Mt at mb (point 0, tile
 * (ty, 0) at prow): of each, the rows x cols outputs inside Y.  The tile
 * loop vectorises across tiles (contiguous loads from Mt, interleaved
 * stores into Y); a row shorter than a vector (13 tiles at 27x27) is one
 * masked vector (kiln_lower_short_loop), not 13 scalar transforms. */
static void output_tiles(kiln_lctx *L, const kiln_node *n, const wino *f, kiln_lx *nv, kiln_lx *mv, kiln_lx *mb,
                         kiln_lx *ty, kiln_lx *prow, int64_t tx0, int64_t tx1, int64_t rows, int64_t cols) {
  const kiln_conv_geom *g = f->g;
  /* a fused pool: the tile's whole windows (m is a multiple of the
   * window, so the tile's first output starts one), the outputs past
   * them dropped, as the pool's floor drops them */
  int64_t pr = f->pk[0] ? rows / f->pk[0] : 0, pc = f->pk[0] ? cols / f->pk[1] : 0;
  if (f->pk[0]) rows = pr * f->pk[0], cols = pc * f->pk[1];
  if (tx0 >= tx1 || !rows || !cols) return;
  kiln_lx *tx = IADD(IDX(kiln_lb_for(B, tx1 - tx0, kiln_lower_short_loop(L, tx1 - tx0, f->ct))), CI(tx0));
  kiln_lx *p = IADD(prow, tx);
  int s[WG_A_MAX * WG_A_MAX], y[16];
  for (int64_t t = 0; t < f->T; t++)
    if (reads(f->at, rows, t / f->a) && reads(f->at, cols, t % f->a))
      s[t] = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->mt, IADD(IADD(mb, IMUL(CI(t), f->ms)), p)));
  sandwich(L, f, f->at, rows, cols, s, y);
  kiln_lx *bias = f->bias ? kiln_lower_load(L, f->bias, mv) : NULL;
  for (int64_t i = 0; i < pr; i++)
    for (int64_t j = 0; j < pc; j++) {
      kiln_lx *vals[WG_A_MAX * WG_A_MAX];
      for (int64_t a = 0; a < f->pk[0]; a++)
        for (int64_t b = 0; b < f->pk[1]; b++) {
          kiln_lx *val = LOCAL(y[(i * f->pk[0] + a) * cols + j * f->pk[1] + b]);
          vals[a * f->pk[1] + b] = bias ? BIN(ADD, val, bias) : val;
        }
      kiln_lx *pidx[4] = {nv, mv, IADD(IMUL(ty, f->m / f->pk[0]), CI(i)), IADD(IMUL(tx, f->m / f->pk[1]), CI(j))};
      kiln_lower_store_window(L, n, pidx, vals, 0);
    }
  for (int64_t i = 0; i < rows && !f->pk[0]; i++)
    for (int64_t j = 0; j < cols; j++) {
      kiln_lx *oy = IADD(IMUL(ty, f->m), CI(i)), *ox = IADD(IMUL(tx, f->m), CI(j));
      kiln_lx *idx[4] = {nv, mv, oy, ox};
      kiln_lx *flat = IADD(IMUL(IADD(IMUL(nv, g->M), mv), g->osz), IADD(IMUL(oy, g->out[1]), ox));
      kiln_lx *val = LOCAL(y[i * cols + j]);
      kiln_lower_store(L, n, 0, idx, flat, bias ? BIN(ADD, val, bias) : val);
    }
  kiln_lb_end(B);
}

/* One row ty of output tiles with `rows` outputs each (the last row of a
 * map that is not whole tiles: fewer), the last column likewise. */
static void output_row(kiln_lctx *L, const kiln_node *n, const wino *f, kiln_lx *nv, kiln_lx *mv, kiln_lx *mb,
                       kiln_lx *ty, kiln_lx *prow, int64_t rows) {
  int64_t fx = f->g->out[1] / f->m, rx = f->g->out[1] % f->m;
  output_tiles(L, n, f, nv, mv, mb, ty, prow, 0, fx, rows, f->m);
  if (rx) output_tiles(L, n, f, nv, mv, mb, ty, prow, fx, fx + 1, rows, rx);
}

/* Whole plane: one parallel loop over (n, m), every tile of the plane. */
static void emit_output_transform(kiln_lctx *L, const kiln_node *n, const wino *f) {
  const kiln_conv_geom *g = f->g;
  kiln_lx *nm = IDX(kiln_lb_for(B, g->N * g->M, par));
  int nv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? CI(0) : BIN(DIV, nm, CI(g->M)));
  int mv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? nm : BIN(REM, nm, CI(g->M)));
  int mb = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(LOCAL(nv), f->T * f->ms), IMUL(LOCAL(mv), f->Pp)));
  int64_t fy = g->out[0] / f->m, ry = g->out[0] % f->m;
  if (fy) {
    kiln_lx *ty = IDX(kiln_lb_for(B, fy, seq));
    output_row(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), ty, IMUL(ty, f->tw), f->m);
    kiln_lb_end(B);
  }
  if (ry) output_row(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), CI(fy), CI(fy * f->tw), ry);
  kiln_lb_end(B);
}

/* ---- banded: scratch for a few rows of tiles per thread ----
 *
 * A plane of many tiles and few channels (ResNet's 56x56 stage, VGG's and
 * U-Net's large maps) would need V and Mt of 16 (36) floats per tile and
 * channel: 6.4 MB for a 64-channel 56x56 layer, more than the layer's
 * input and output together, and the network's peak workspace with it.
 * Such a layer runs instead as one parallel loop over f->slots slots, each
 * with its own V and Mt for one band of f->band rows of tiles: slot s
 * takes bands s, s + slots, ... and runs all three steps on each, in
 * order, so its V and Mt (a few hundred KB) stay in the L2 between them.
 * U, small for so few channels, is read once a band. */
static void emit_banded(kiln_lctx *L, const kiln_node *n, const wino *f) {
  const kiln_conv_geom *g = f->g;
  int64_t nb = (f->th + f->band - 1) / f->band, all = g->N * nb, per = (all + f->slots - 1) / f->slots;
  int64_t fy = g->out[0] / f->m, ry = g->out[0] % f->m;
  kiln_lx *s = IDX(kiln_lb_for(B, f->slots, par));
  kiln_lx *j = IDX(kiln_lb_for(B, per, seq));
  int bi = kiln_lb_decl(B, KILN_DT_I64, IADD(s, IMUL(j, f->slots)));
  if (per * f->slots > all) kiln_lb_if(B, BIN(LT, LOCAL(bi), CI(all)));
  int nv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? CI(0) : BIN(DIV, LOCAL(bi), CI(nb)));
  int ty0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(g->N == 1 ? LOCAL(bi) : BIN(REM, LOCAL(bi), CI(nb)), f->band));
  int sv = kiln_lb_decl(B, KILN_DT_I64, IMUL(s, f->T * f->vs)), sm = kiln_lb_decl(B, KILN_DT_I64, IMUL(s, f->T * f->ms));
  int rows = f->th % f->band != 0; /* the last band is shorter */
  /* V: every channel's tiles of the band */
  {
    kiln_lx *c = IDX(kiln_lb_for(B, g->C, seq));
    int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->C), c), g->isz));
    int vb = kiln_lb_decl(B, KILN_DT_I64, IADD(LOCAL(sv), IMUL(c, f->Pp)));
    kiln_lx *r = IDX(kiln_lb_for(B, f->band, seq));
    kiln_lx *ty = IADD(LOCAL(ty0), r);
    int64_t ri[2]; /* rows of tiles inside the input: no row checks */
    interior(f, g->pb[0], g->in[0], f->th, &ri[0], &ri[1]);
    if (rows) kiln_lb_if(B, BIN(LT, ty, CI(f->th)));
    if (ri[0] < ri[1]) {
      kiln_lb_if(B, BIN(AND, BIN(LE, CI(ri[0]), ty), BIN(LT, ty, CI(ri[1]))));
      input_row(L, f, LOCAL(xb), LOCAL(vb), ty, IMUL(r, f->tw), 0);
      kiln_lb_else(B);
    }
    input_row(L, f, LOCAL(xb), LOCAL(vb), ty, IMUL(r, f->tw), 1);
    if (ri[0] < ri[1]) kiln_lb_end(B);
    if (rows) kiln_lb_end(B);
    kiln_lb_end(B);
    zero_pad(L, f, LOCAL(vb), f->P);
    kiln_lb_end(B);
  }
  /* Mt: every point's GEMM over the band */
  {
    kiln_lx *t = IDX(kiln_lb_for(B, f->T, seq));
    gemm_point(L, f, t, IADD(LOCAL(sv), IMUL(t, f->vs)), IADD(LOCAL(sm), IMUL(t, f->ms)));
    kiln_lb_end(B);
  }
  /* Y: every channel's outputs of the band */
  {
    kiln_lx *mv = IDX(kiln_lb_for(B, g->M, seq));
    int mb = kiln_lb_decl(B, KILN_DT_I64, IADD(LOCAL(sm), IMUL(mv, f->Pp)));
    kiln_lx *r = IDX(kiln_lb_for(B, f->band, seq));
    kiln_lx *ty = IADD(LOCAL(ty0), r), *prow = IMUL(r, f->tw);
    kiln_lb_if(B, BIN(LT, ty, CI(fy)));
    output_row(L, n, f, LOCAL(nv), mv, LOCAL(mb), ty, prow, f->m);
    if (ry) {
      kiln_lb_else(B);
      kiln_lb_if(B, BIN(EQ, ty, CI(fy)));
      output_row(L, n, f, LOCAL(nv), mv, LOCAL(mb), ty, prow, ry);
      kiln_lb_end(B);
    }
    kiln_lb_end(B);
    kiln_lower_close(L, 2);
  }
  if (per * f->slots > all) kiln_lb_end(B);
  kiln_lower_close(L, 2);
}

/* f for tile size m: sizes, matrices and where the scratch lives; -1 when
 * it fits nowhere (plan_scratch). */
static int setup(const kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, int64_t m, wino *f_out) {
  wino f = {0};
  f.g = g;
  f.ct = KILN_DT_F32;
  f.m = m;
  f.a = f.m + 2;
  f.T = f.a * f.a;
  for (int64_t i = 0; i < f.a; i++) {
    for (int64_t j = 0; j < f.a; j++) f.bt[i][j] = f.m == 2 ? bt2[i][j] : bt4[i][j];
    for (int j = 0; j < 3; j++) f.gm[i][j] = f.m == 2 ? g2[i][j] : g4[i][j];
  }
  for (int64_t i = 0; i < f.m; i++)
    for (int64_t j = 0; j < f.a; j++) f.at[i][j] = f.m == 2 ? at2[i][j] : at4[i][j];
  int64_t lanes = f.lanes = kiln_target_lanes(L->target, f.ct);
  f.th = (g->out[0] + f.m - 1) / f.m, f.tw = (g->out[1] + f.m - 1) / f.m;
  f.RV = vectors(L->target) * lanes;
  if (plan_scratch(L, n, g, &f)) return -1;
  f.P = (f.band ? f.band : f.th) * f.tw;
  f.Pp = (f.P + lanes - 1) / lanes * lanes;
  f.pb = block_rows(&f, g, f.Pp);
  f.nmb = (g->M + f.pb - 1) / f.pb;
  f.vs = g->C * f.Pp + WG_SKEW, f.ms = f.nmb * f.pb * f.Pp + WG_SKEW;
  f.fma = kiln_target_has_fma(L->target);
  *f_out = f;
  return 0;
}

/* The tile size pick_m asks for, else F(2x2) when F(4x4)'s scratch fits
 * nowhere, else 0. */
static int64_t choose(const kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, wino *f) {
  int64_t m = pick_m(L, n, g);
  if (m && !setup(L, n, g, m, f)) return m;
  if (m == 4 && !setup(L, n, g, 2, f)) return 2;
  return 0;
}

int kiln_lower_conv_winograd(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  wino f;
  if (!choose(L, n, g, &f)) return -1; /* declined: nothing emitted */
  const kiln_node *pool = kiln_lower_pool_step(n);
  if (pool) { /* windows inside tiles only */
    int64_t k[3];
    kiln_lower_pool_window(pool, k);
    if (f.m % k[0] || f.m % k[1]) return 1;
    f.pk[0] = k[0], f.pk[1] = k[1];
  }
  f.u = transformed_weights(L, n, &f);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  f.x = kiln_lower_buf(L, n->in[0]);
  char name[256];
  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "Winograd F(%lldx%lld, 3x3), GEMM blocks of %lld channels%s", (long long)f.m, (long long)f.m, (long long)f.pb,
                      f.band ? ", in bands of tile rows" : "");
  int64_t copies = f.band ? f.slots : g->N; /* V and Mt: one a slot, or one an image */
  snprintf(name, sizeof name, "%s.winograd_in", n->out[0]->name);
  f.v = kiln_lower_scratch(L, name, f.ct, copies * f.T * f.vs);
  snprintf(name, sizeof name, "%s.winograd_out", n->out[0]->name);
  f.mt = kiln_lower_scratch(L, name, f.ct, copies * f.T * f.ms);
  B->k->reused_vectors = 1;
  if (f.hp) { /* the padded copy (whole plane only): one an image */
    snprintf(name, sizeof name, "%s.winograd_pad", n->out[0]->name);
    f.xp = kiln_lower_scratch(L, name, f.ct, copies * g->C * f.hp * f.wp);
  }
  if (f.band) {
    /* not explicit_vectors: its one function holds the transforms too,
     * which the tiled tier's short pipeline left slow (the GEMM's tile
     * is what default<O3> makes of it either way): 64 channels at 56x56
     * 0.80 -> 0.56 ms */
    emit_banded(L, n, &f);
    return 0;
  }
  B->k->explicit_vectors = 1;
  if (f.xp) emit_pad(L, &f);
  emit_input_transform(L, &f);
  emit_gemm(L, &f);
  emit_output_transform(L, n, &f);
  return 0;
}
