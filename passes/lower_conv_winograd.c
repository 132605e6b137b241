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
 * (2.25x fewer), F(4x4, 3x3) 36 for 16 (4x fewer).  The kernel runs three
 * parallel loops over scratch buffers:
 *
 *   V[n, t, c, p]   = BT d(n, c, p) B        per (n, c): every tile of the plane
 *   Mt[n, t, m, p]  = U[t] x V[n, t]         per (n, t, chunk of RV tiles)
 *   Y[n, m, tile p] = AT Mt(n, ., m, p) A + B[m], through the output store
 *                                            per (n, m): bias, Relu, residual Add
 *
 * The GEMM tile is the transposed one of lower_conv_gemmt.c with the roles
 * swapped: vectors along tiles p (V's and Mt's rows, padded to whole
 * vectors: Pp), six output channels broadcast from U re-laid as
 * [t, block of 6, c, 6]; 6 x RV sums stay in registers over the whole c
 * loop.  The transforms are loops over tiles along a row that LLVM's (and
 * GCC's) loop vectorisers turn into vectors (loads m apart: interleaved
 * groups); their border tiles read through a bounds check.
 *
 * Accuracy: the transforms' coefficients are exact in float32 and V and
 * Mt are one sum each more than the direct sum computes, so F(2x2)'s
 * error is of the direct sum's order; F(4x4)'s transforms weigh inputs by
 * up to 5x5 (BT) and 8x8 (AT), so its rounding error is tens of times
 * larger relative to the outputs' scale.  Which m a layer gets is in
 * kiln_conv_winograd_wanted. */
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
enum { WG_PB = 6, WG_A_MAX = 6, WG_SKEW = 16 };

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
  int64_t RV, nmb, lanes;     /* GEMM tile lanes; blocks of WG_PB channels; the target's lanes */
  double bt[WG_A_MAX][WG_A_MAX], gm[WG_A_MAX][3], at[WG_A_MAX - 2][WG_A_MAX];
  const kiln_buf *x, *u, *v, *mt, *bias;
  kiln_dtype ct;
  int fma;
} wino;

static int64_t vectors(const kiln_target *t) { return t->vector_bytes >= 64 ? 4 : 2; }

/* The tile size for g on target t, or 0: not a Winograd convolution. */
static int64_t pick_m(const kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  const char *env = getenv("KILN_WINOGRAD"); /* 0: off, 2 or 4: that tile everywhere it applies */
  int64_t force = env && *env ? atoi(env) : -1;
  if (force == 0) return 0;
  if (L->target->kind == KILN_TARGET_GPU || g->sp != 2 || g->G != 1) return 0;
  for (int i = 0; i < 2; i++)
    if (g->K[i] != 3 || g->s[i] != 1 || g->d[i] != 1 || g->pb[i] > 2) return 0;
  if (kiln_lower_ctype(n->out[0]->dtype) != KILN_DT_F32 || !kiln_lower_fixed_weight(L, n->in[1])) return 0;
  if (g->C < 32 || g->M < 32 || g->out[0] < 4 || g->out[1] < 4) return 0;
  if (force == 2 || force == 4) return force;
  return 2;
}

int kiln_conv_winograd_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  return pick_m(L, n, g) > 0;
}

/* U[t, blk, c, r] = (G W[blk*6 + r, c] GT)[t] (0 past M), in double,
 * rounded once: a weight buffer made here. */
static const kiln_buf *transformed_weights(kiln_lctx *L, const kiln_node *n, const wino *f) {
  const kiln_value *w = n->in[1];
  const kiln_conv_geom *g = f->g;
  int64_t C = g->C, M = g->M, a = f->a, numel = f->T * f->nmb * C * WG_PB;
  float *data = kiln_arena_array(L->b.p->arena, (size_t)numel + 1, sizeof *data); /* zero: the padding */
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) {
      double k[3][3], gk[WG_A_MAX][3];
      for (int i = 0; i < 9; i++) k[i / 3][i % 3] = kiln_dtype_load_f(w->dtype, w->data, (size_t)((m * C + c) * 9 + i));
      for (int64_t i = 0; i < a; i++)
        for (int j = 0; j < 3; j++) gk[i][j] = f->gm[i][0] * k[0][j] + f->gm[i][1] * k[1][j] + f->gm[i][2] * k[2][j];
      for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < a; j++) {
          double s = gk[i][0] * f->gm[j][0] + gk[i][1] * f->gm[j][1] + gk[i][2] * f->gm[j][2];
          data[((i * a + j) * f->nmb + m / WG_PB) * C * WG_PB + c * WG_PB + m % WG_PB] = (float)s;
        }
    }
  size_t len = strlen(w->name) + 10;
  char *name = kiln_arena_alloc(L->b.p->arena, len);
  snprintf(name, len, "%s.winograd", w->name);
  kiln_value u = *w;
  u.name = name;
  u.dtype = KILN_DT_F32;
  u.data = data;
  u.rank = 1;
  u.dims[0] = numel;
  return kiln_program_add_buf(L->b.p, &u, KILN_BUF_WEIGHT);
}

/* sum over j < len of coef[j] * x[j] (locals), skipping zeros; +-1 as adds. */
static kiln_lx *combine(kiln_lctx *L, const wino *f, const double *coef, const int *x, int64_t len) {
  kiln_lx *s = NULL;
  for (int64_t j = 0; j < len; j++) {
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

/* r = M x (rows x a) applied on both sides of the a x a locals d:
 * out[i][j] = sum_k sum_l M[i][k] d[k][l] M[j][l], i, j < rows. */
static void sandwich(kiln_lctx *L, const wino *f, const double (*mat)[WG_A_MAX], int64_t rows, const int *d, int *out) {
  int tmp[WG_A_MAX * WG_A_MAX], col[WG_A_MAX];
  int64_t a = f->a;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t l = 0; l < a; l++) {
      for (int64_t k = 0; k < a; k++) col[k] = d[k * a + l];
      tmp[i * a + l] = kiln_lb_decl(B, f->ct, combine(L, f, mat[i], col, a));
    }
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < rows; j++) out[i * rows + j] = kiln_lb_decl(B, f->ct, combine(L, f, mat[j], &tmp[i * a], a));
}

/* Tiles [ty0, ty1) x [tx0, tx1) of plane (n, c) into V; rows/cols checked
 * against the input's extent when chk_r / chk_c (border tiles). */
static void input_tiles(kiln_lctx *L, const wino *f, kiln_lx *xb, kiln_lx *vb, int64_t ty0, int64_t ty1, int64_t tx0,
                        int64_t tx1, int chk_r, int chk_c) {
  const kiln_conv_geom *g = f->g;
  if (ty0 >= ty1 || tx0 >= tx1) return;
  int64_t a = f->a, H = g->in[0], W = g->in[1];
  kiln_lx *ty = IADD(IDX(kiln_lb_for(B, ty1 - ty0, seq)), CI(ty0));
  kiln_sched vec = {.vector = !chk_c && tx1 - tx0 >= f->lanes ? (int)f->lanes : 0};
  kiln_lx *tx = IADD(IDX(kiln_lb_for(B, tx1 - tx0, vec)), CI(tx0));
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
  sandwich(L, f, f->bt, a, d, v);
  kiln_lx *p = IADD(IMUL(ty, f->tw), tx);
  for (int64_t t = 0; t < f->T; t++) kiln_lb_store(B, f->v, IADD(IADD(vb, IMUL(CI(t), f->vs)), p), LOCAL(v[t]));
  kiln_lower_close(L, 2);
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

static void emit_input_transform(kiln_lctx *L, const wino *f) {
  const kiln_conv_geom *g = f->g;
  kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par));
  kiln_lx *nv = g->N == 1 ? CI(0) : BIN(DIV, nc, CI(g->C)), *c = g->N == 1 ? nc : BIN(REM, nc, CI(g->C));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(nc, g->isz));
  int vb = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(nv, f->T * f->vs), IMUL(c, f->Pp)));
  int64_t r[4], cl[4];
  interior(f, g->pb[0], g->in[0], f->th, &r[1], &r[2]);
  interior(f, g->pb[1], g->in[1], f->tw, &cl[1], &cl[2]);
  r[0] = cl[0] = 0, r[3] = f->th, cl[3] = f->tw;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) input_tiles(L, f, LOCAL(xb), LOCAL(vb), r[i], r[i + 1], cl[j], cl[j + 1], i != 1, j != 1);
  /* the padding tiles of every point's row: zero (read by the GEMM's
   * last vector, never stored out) */
  if (f->Pp > f->P) {
    kiln_lx *t = IDX(kiln_lb_for(B, f->T, seq)), *q = IADD(IDX(kiln_lb_for(B, f->Pp - f->P, seq)), CI(f->P));
    kiln_lb_store(B, f->v, IADD(IADD(LOCAL(vb), IMUL(t, f->vs)), q), kiln_lx_const_f(B, f->ct, 0));
    kiln_lower_close(L, 2);
  }
  kiln_lb_end(B);
}

/* One GEMM tile: rows m0 .. m0+pb (channels), lanes p0 .. p0+rvl (tiles). */
static void gemm_tile(kiln_lctx *L, const wino *f, kiln_lx *ub, kiln_lx *vb, kiln_lx *mb, kiln_lx *p0, int64_t pb,
                      int64_t rvl) {
  const kiln_conv_geom *g = f->g;
  int acc[WG_PB * 64], vl[64];
  for (int64_t r = 0; r < pb; r++)
    for (int64_t l = 0; l < rvl; l++) acc[r * rvl + l] = kiln_lb_decl(B, f->ct, kiln_lx_const_f(B, f->ct, 0));
  kiln_lx *k = IDX(kiln_lb_for(B, g->C, seq));
  kiln_lx *vr = IADD(IADD(vb, IMUL(k, f->Pp)), p0), *ur = IADD(ub, IMUL(k, WG_PB));
  for (int64_t l = 0; l < rvl; l++) vl[l] = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->v, IADD(vr, CI(l))));
  for (int64_t r = 0; r < pb; r++) {
    int ul = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->u, IADD(ur, CI(r))));
    for (int64_t l = 0; l < rvl; l++) {
      int s = acc[r * rvl + l];
      kiln_lx *x = LOCAL(ul), *w = LOCAL(vl[l]), *sv = LOCAL(s);
      kiln_lb_assign(B, s, f->fma ? kiln_lx_fma(B, x, w, sv) : BIN(ADD, sv, BIN(MUL, x, w)));
    }
  }
  kiln_lb_end(B);
  for (int64_t r = 0; r < pb; r++)
    for (int64_t l = 0; l < rvl; l++)
      kiln_lb_store(B, f->mt, IADD(IADD(mb, IMUL(CI(r), f->Pp)), IADD(p0, CI(l))), LOCAL(acc[r * rvl + l]));
}

/* Every channel block of one chunk of rvl tiles from p0. */
static void gemm_chunk(kiln_lctx *L, const wino *f, kiln_lx *ntb, kiln_lx *p0, int64_t rvl) {
  const kiln_conv_geom *g = f->g;
  int64_t full = g->M / WG_PB, rest = g->M % WG_PB;
  /* ntb: n * T + t; U of point t, V and Mt of image n, point t */
  kiln_lx *t = g->N == 1 ? ntb : BIN(REM, ntb, CI(f->T));
  kiln_lx *vb = IMUL(ntb, f->vs), *mtb = IMUL(ntb, f->ms);
  if (full) {
    kiln_lx *blk = IDX(kiln_lb_for(B, full, seq));
    kiln_lx *ub = IMUL(IADD(IMUL(t, f->nmb), blk), g->C * WG_PB);
    gemm_tile(L, f, ub, vb, IADD(mtb, IMUL(blk, WG_PB * f->Pp)), p0, WG_PB, rvl);
    kiln_lb_end(B);
  }
  if (rest) {
    kiln_lx *ub = IMUL(IADD(IMUL(t, f->nmb), CI(full)), g->C * WG_PB);
    gemm_tile(L, f, ub, vb, IADD(mtb, CI(full * WG_PB * f->Pp)), p0, rest, rvl);
  }
}

static void emit_gemm(kiln_lctx *L, const wino *f) {
  int64_t nfull = f->Pp / f->RV, rest = f->Pp % f->RV, nch = nfull + (rest > 0);
  kiln_lx *it = IDX(kiln_lb_for(B, f->g->N * f->T * nch, par));
  int ntb = kiln_lb_decl(B, KILN_DT_I64, nch == 1 ? it : BIN(DIV, it, CI(nch)));
  int pc = kiln_lb_decl(B, KILN_DT_I64, nch == 1 ? CI(0) : BIN(REM, it, CI(nch)));
  kiln_lx *p0 = IMUL(LOCAL(pc), f->RV);
  if (nfull && rest) kiln_lb_if(B, BIN(LT, LOCAL(pc), CI(nfull)));
  if (nfull) gemm_chunk(L, f, LOCAL(ntb), p0, f->RV);
  if (nfull && rest) kiln_lb_else(B);
  if (rest) gemm_chunk(L, f, LOCAL(ntb), p0, rest);
  if (nfull && rest) kiln_lb_end(B);
  kiln_lb_end(B);
}

/* Tiles [ty0, ty1) x [tx0, tx1) of output plane (n, m): of each, the
 * rows x cols outputs inside Y. */
static void output_tiles(kiln_lctx *L, const kiln_node *n, const wino *f, kiln_lx *nv, kiln_lx *mv, kiln_lx *mb,
                         int64_t ty0, int64_t ty1, int64_t tx0, int64_t tx1, int64_t rows, int64_t cols) {
  const kiln_conv_geom *g = f->g;
  if (ty0 >= ty1 || tx0 >= tx1) return;
  kiln_lx *ty = IADD(IDX(kiln_lb_for(B, ty1 - ty0, seq)), CI(ty0));
  kiln_sched vec = {.vector = tx1 - tx0 >= f->lanes ? (int)f->lanes : 0};
  kiln_lx *tx = IADD(IDX(kiln_lb_for(B, tx1 - tx0, vec)), CI(tx0));
  kiln_lx *p = IADD(IMUL(ty, f->tw), tx);
  int s[WG_A_MAX * WG_A_MAX], y[16];
  for (int64_t t = 0; t < f->T; t++)
    s[t] = kiln_lb_decl(B, f->ct, kiln_lx_load(B, f->mt, IADD(IADD(mb, IMUL(CI(t), f->ms)), p)));
  sandwich(L, f, f->at, f->m, s, y);
  kiln_lx *bias = f->bias ? kiln_lower_load(L, f->bias, mv) : NULL;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      kiln_lx *oy = IADD(IMUL(ty, f->m), CI(i)), *ox = IADD(IMUL(tx, f->m), CI(j));
      kiln_lx *idx[4] = {nv, mv, oy, ox};
      kiln_lx *flat = IADD(IMUL(IADD(IMUL(nv, g->M), mv), g->osz), IADD(IMUL(oy, g->out[1]), ox));
      kiln_lx *val = LOCAL(y[i * f->m + j]);
      kiln_lower_store(L, n, 0, idx, flat, bias ? BIN(ADD, val, bias) : val);
    }
  kiln_lower_close(L, 2);
}

static void emit_output_transform(kiln_lctx *L, const kiln_node *n, const wino *f) {
  const kiln_conv_geom *g = f->g;
  kiln_lx *nm = IDX(kiln_lb_for(B, g->N * g->M, par));
  int nv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? CI(0) : BIN(DIV, nm, CI(g->M)));
  int mv = kiln_lb_decl(B, KILN_DT_I64, g->N == 1 ? nm : BIN(REM, nm, CI(g->M)));
  int mb = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(LOCAL(nv), f->T * f->ms), IMUL(LOCAL(mv), f->Pp)));
  int64_t fy = g->out[0] / f->m, fx = g->out[1] / f->m, ry = g->out[0] % f->m, rx = g->out[1] % f->m;
  output_tiles(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), 0, fy, 0, fx, f->m, f->m);
  if (rx) output_tiles(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), 0, fy, fx, fx + 1, f->m, rx);
  if (ry) output_tiles(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), fy, fy + 1, 0, fx, ry, f->m);
  if (ry && rx) output_tiles(L, n, f, LOCAL(nv), LOCAL(mv), LOCAL(mb), fy, fy + 1, fx, fx + 1, ry, rx);
  kiln_lb_end(B);
}

int kiln_lower_conv_winograd(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g) {
  wino f = {0};
  f.g = g;
  f.ct = KILN_DT_F32;
  f.m = pick_m(L, n, g);
  f.a = f.m + 2;
  f.T = f.a * f.a;
  for (int64_t i = 0; i < f.a; i++) {
    for (int64_t j = 0; j < f.a; j++) f.bt[i][j] = f.m == 2 ? bt2[i][j] : bt4[i][j];
    for (int j = 0; j < 3; j++) f.gm[i][j] = f.m == 2 ? g2[i][j] : g4[i][j];
  }
  for (int64_t i = 0; i < f.m; i++)
    for (int64_t j = 0; j < f.a; j++) f.at[i][j] = f.m == 2 ? at2[i][j] : at4[i][j];
  int64_t lanes = f.lanes = kiln_target_lanes(L->target, f.ct);
  f.th = (g->out[0] + f.m - 1) / f.m, f.tw = (g->out[1] + f.m - 1) / f.m, f.P = f.th * f.tw;
  f.Pp = (f.P + lanes - 1) / lanes * lanes;
  f.vs = g->C * f.Pp + WG_SKEW, f.ms = g->M * f.Pp + WG_SKEW;
  f.RV = vectors(L->target) * lanes;
  f.nmb = (g->M + WG_PB - 1) / WG_PB;
  f.fma = kiln_target_has_fma(L->target);
  f.u = transformed_weights(L, n, &f);
  f.bias = n->nin > 2 ? kiln_lower_weight_ct(L, n->in[2]) : NULL;
  f.x = kiln_lower_buf(L, n->in[0]);
  char name[256];
  kiln_lower_begin(L, n);
  snprintf(name, sizeof name, "%s.winograd_in", n->out[0]->name);
  f.v = kiln_lower_scratch(L, name, f.ct, g->N * f.T * f.vs);
  snprintf(name, sizeof name, "%s.winograd_out", n->out[0]->name);
  f.mt = kiln_lower_scratch(L, name, f.ct, g->N * f.T * f.ms);
  int skip = getenv("KILN_WG_SKIP") ? atoi(getenv("KILN_WG_SKIP")) : 0; /* DEV */
  if (!(skip & 1)) emit_input_transform(L, &f);
  B->k->explicit_vectors = 1;
  B->k->reused_vectors = 1;
  if (!(skip & 2)) emit_gemm(L, &f);
  if (!(skip & 4)) emit_output_transform(L, n, &f);
  return 0;
}
