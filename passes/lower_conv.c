/* Convolution: Conv and ConvTranspose, 1D/2D/3D, groups (depthwise
 * included), strides, dilations, asymmetric pads, optional bias.
 *
 * Both take a fast path (lower_conv_fast, lower_convt_fast below): the
 * input packed into zero-padded scratch planes, products summed over
 * flat runs of output positions (the vectorised loop) in blocks of output
 * and input channels, with partial sums kept in the output (or a scratch
 * of it).  f16/bf16 convolutions compute in f32 there: the input is
 * packed as f32 (converted once, in the pack; a 1x1 convolution that
 * would read f32 X in place packs too), weights and bias are f32 copies
 * made at compile time (kiln_lower_weight_ct), partial sums live in an
 * f32 scratch and each output is rounded to f16 once, at the final store:
 * an f32 accumulation rounded once, as the generic kernel computes.
 * The shapes the fast paths decline use the generic kernel, one per node,
 * written output-stationary with one f32/f64 accumulator per output:
 *   for nm in N*M (parallel)             one (batch, output channel) plane
 *     n, m and the plane's base offsets  (the only div/mod, once per plane)
 *     for o0 .. o_{k-1}                  output spatial dims, the last
 *                                        (contiguous width) innermost
 *       acc = reduce add from bias[m] or 0   (ir/loop.h; the CPU form
 *                                        is one accumulator: expand_reduce.c)
 *         for k0 .. k_{k-1}              kernel taps; a bounds IF per dim
 *                                        only where it can fail
 *           for c in C/group             input channels of the group
 *             combine acc <- X[...] * W[...]
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
#include "conv_def.h"

#include <stdlib.h>
#include <string.h>

#include "lower_macros.h"

static const kiln_sched seq_sched = {0};
static const kiln_sched par_sched = {.parallel = 1};

/* The geometry both ops share: conv_def.h. */
typedef kiln_conv_geom conv_geom;
static int conv_setup(kiln_lctx *L, const kiln_node *n, conv_geom *g) { return kiln_conv_setup(L, n, g); }

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

/* The output loops and the output's sum (the loop IR's ADD reduction,
 * ir/loop.h), starting from B[m] or 0; close_outputs ends it. */
static int open_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int mv, kiln_lx **o) {
  for (int i = 0; i < g->sp; i++) o[i] = IDX(kiln_lb_for(B, g->out[i], par_sched)); /* one output each */
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  kiln_lx *init = bias ? kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_weight_ct(L, bias), LOCAL(mv)))
                       : kiln_lx_const_f(B, ct, 0);
  return kiln_lb_reduce_begin(B, KILN_RED_ADD, ct, init, seq_sched);
}

/* Ends the output's sum, stores it and closes the output and plane loops. */
static void close_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, kiln_lx *nm, int nv, int mv, kiln_lx **o,
                          int acc) {
  kiln_lb_reduce_end(B);
  kiln_lx *yoff = IMUL(nm, g->osz), *idx[5] = {LOCAL(nv), LOCAL(mv)};
  for (int i = 0; i < g->sp; i++) yoff = IADD(yoff, IMUL(o[i], g->ystr[i]));
  for (int i = 0; i < g->sp; i++) idx[2 + i] = o[i];
  kiln_lower_store(L, n, 0, idx, yoff, LOCAL(acc));
  kiln_lower_close(L, g->sp + 1);
}

/* for c in C/group: combine acc <- X[xoff + c*xcs] * W[woff + c*wcs] */
static void channel_loop(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int acc, kiln_lx *xoff, int64_t xcs,
                         kiln_lx *woff, int64_t wcs) {
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  kiln_lx *c = IDX(kiln_lb_for(B, g->Cg, seq_sched));
  kiln_lx *xv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, n->in[0]), IADD(xoff, IMUL(c, xcs))));
  kiln_lx *wv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_weight_ct(L, n->in[1]), IADD(woff, IMUL(c, wcs))));
  kiln_lb_combine(B, acc, BIN(MUL, xv, wv));
  kiln_lb_end(B);
}

/* ---- Conv fast path: f32/f64 output, 1 to 3 spatial dims ----
 *
 * Phase planes.  With stride s along a spatial dim, input index s*i + r is
 * element i of "phase" r.  Tap k of output o reads input o*s + k*d - p =
 * s*(o + q) + r with q = floor((k*d - p) / s) and r the remainder: element
 * o + q of phase r, a stride-1 access.  The kernel packs X into a scratch
 * S holding, per (n, c), the phases the taps use, each zero-padded to
 * extent Z = OUT + max q - min q per dim.  Position o of the output is
 * "virtual" position v = sum_i o_i * vs_i, where vs are the row-major
 * strides of the padded extents, and every tap then reads S at v + xo(k),
 * a constant offset: no bounds checks, no borders, one flat loop over v.
 * Virtual positions with an inner o_i >= OUT_i are computed and dropped.
 *
 *   pack:  S[n, c] = phases of X[n, c], zero-padded       parallel (n, c)
 *   for (n, block of MB output channels m0..)              parallel
 *     for tiles of v (at most TILE_MAX positions)
 *       Yv[m0+j, tile] = B[m0+j]                            j < MB
 *       for channel blocks c0 (CB channels), for taps k
 *         w[j][c] = W[m0+j, c0+c, k]                        (locals)
 *         for v in tile:
 *           x[c] = S[c0+c, v + xo(k)]
 *           Yv[m0+j, v] += sum_c w[j][c] * x[c]
 *     Y[n, m0+j, o] = Yv[m0+j, v(o)]
 *
 * The innermost loop is contiguous in S and Yv and vectorises; each S
 * value loaded feeds MB output channels and each Yv element loaded and
 * stored takes CB products, so the loop is bound by arithmetic rather than
 * by loads and stores.  MB = CB = 4 keeps the 16 weights, 4 inputs and 4
 * sums in vector registers; on one AVX-512 core (single-threaded, f32) it
 * measured best of MB in {2,4,8} x CB in {2..9}: ResNet-50's 3x3 and 1x1
 * layers at 56x56..14x14 run at 85-95 GFLOP/s (7x7 ones at 50-65: 64
 * virtual positions for 49 outputs, short loops).  Earlier designs, same
 * machine: the input channel innermost (strided, scalar) 1-3 GFLOP/s; one
 * output row per loop with bounds split into border loops 8-45 (rows of
 * 14 or 7 are too short to vectorise; strided rows gather); flat with 9
 * taps of one channel per pass 50-80.  The taps are a loop, not unrolled,
 * when xo is affine in them (every phase used), so a convolution is a
 * handful of vector loops and compiles quickly.  Tiles keep the MB
 * accumulated rows in L1.
 *
 * Special cases: a 1x1 unpadded stride-1 convolution reads X and writes Y
 * in place (S = X, Yv = Y); when the padded extents of the inner dims equal
 * the output's (1-D, or 1x1 with strides) Yv is Y.  Convolutions with few
 * taps in all (depthwise: C/group = 1) sum every tap in one pass that
 * stores B + sum; when their rows are at least VW wide they write Y
 * directly one row at a time, each row's loop rounded up to VW columns
 * (the excess lands in the next row, which overwrites it later; the last
 * row is exact).  A block that owns its input channels (one whole group
 * per block: depthwise) packs them itself, in the same parallel loop.
 * f16/bf16 outputs always sum in an f32 Yv. */
enum { MB_MAX = 4, T_CH = 4, SINGLE_MAX = 32, S_MAX = 16 };

/* ---- The register path: every Conv but the few-tap ones above ----
 *
 * Summing in Yv makes every product pay a load and a store of its sum, so
 * the loop above is bound by loads and stores.  The register path keeps a
 * tile of sums in registers for the whole reduction (oneDNN, MLAS and TVM's
 * x86 direct convolution do the same):
 *
 *   for (n, position supertile, group, block of MB rows m0..)     parallel
 *     for tiles of VL = R vectors of virtual positions v0..
 *       acc[j][l] = B[m0+j]                      j < MB, l < VL
 *       for c < C/group, for taps k:
 *         x[l] = S[c, v0 + l + xo(k)]            R contiguous vector loads
 *         acc[j][l] = fma(W[m0+j, c, k], x[l], acc[j][l])   weight broadcast
 *       y[m0+j, v0+l] = acc[j][l]
 *   Y[n, m, o] = Yv[n, m, v(o)]  (when y is Yv: the output store, epilogues)
 *
 * The accumulators are MB * VL scalar locals and the tile's statements are
 * fully unrolled in the loop IR: nothing a printer has to know about.
 * Measured on one tile (3x3, 64 channels, 56x56; one Sapphire Rapids core,
 * FMA peak about 179 GFLOP/s f32), this form ran at 160-170 GFLOP/s from
 * clang-19 and 120-157 from gcc 12, both keeping the sums in zmm registers;
 * an array of sums with constant-extent loops (a kernel-local buffer) ran
 * at 0.5-30 from clang (not promoted to registers) and 120-150 from gcc.
 * The products are summed by the loop IR's FMA where the target fuses in
 * hardware (kiln_target_has_fma): LLVM does not contract a multiply and
 * an add on its own (kiln's float semantics are exact), and a multiply and
 * an add are two instructions, half the FMA peak.  Shapes (kiln_conv_reg_shape): 6
 * rows of R = 4 vectors with 32 vector registers (AVX-512: 24 sums, 4
 * inputs, a weight), 8 rows of 3 where 8 divides the channels and 6 does
 * not, 6 rows of 2 with 16 registers (AVX2, SSE2: 12 sums).  Output
 * channels not a multiple of MB end in a shorter block; positions (V,
 * rounded up to whole vectors when S is packed) not a multiple of VL in a
 * shorter tile of whole vectors and, where S is X itself, one of the last
 * few positions.  Supertiles of positions keep the C/group input rows a
 * block reads in half the L2, so the blocks of one supertile reuse them;
 * where all of X passes half the L2, each tile is its own supertile and
 * prefetches the next (X streamed, emit_reg_blocks).
 * Convolutions summing fewer than RB_MIN_TERMS products per output stay on
 * the path above. */
enum { RB_MB = 6, RB_MB_MAX = KILN_CONV_RB_MB_MAX, RB_VL_MAX = KILN_CONV_RB_VL_MAX, RB_MIN_TERMS = KILN_CONV_RB_MIN_TERMS,
       RB_UNROLL_TAPS = 9 /* taps a register tile unrolls: up to a 3x3 window */,
       RB_L1_AHEAD = 6 /* input channels ahead a 1x1 tile's near prefetch reads (emit_reg_blocks) */ };

/* The vector width VW (elements of the compute type in one vector) is the
 * target's (kiln_target_lanes: 16 f32 lanes for 64-byte vectors).  Which
 * loops run on threads is not decided here: the block and pack loops are
 * marked parallel (independent iterations) and the schedule-threads pass
 * hands one to the pool when the target says the work pays for it.
 * The tile (TILE_MAX positions) keeps the MB_MAX accumulated f32 rows in a
 * third of the target's L1d: 1024 with 48 KiB. */
static int64_t tile_max(const kiln_target *t) {
  int64_t n = t->l1d_bytes / (3 * MB_MAX * (int64_t)sizeof(float));
  return n < 256 ? 256 : n > 4096 ? 4096 : n;
}

typedef struct fconv {
  int sp;
  int64_t out[3], K[3], s[3], d[3], p[3], kstr[3];
  int64_t qmin[3], Z[3], vs[3], nr[3], pst[3];  /* padded extents, virtual strides, phases */
  int rof[3][S_MAX];                            /* phase index of a remainder, -1: unused */
  int64_t psz, nph, V;                          /* one phase plane; phases; virtual positions */
  int64_t MB, Cg, ksz;
  const kiln_buf *x, *w, *pk, *y;               /* taps read pk (S or X); sums go to y (Y or Yv) */
  int64_t scs, ycs, wcs, wch;                   /* channel strides of S, y; W strides per output, input channel */
  kiln_lx *sbase, *ybase, *wbase;               /* per block: s at the group's first channel, y, W */
  kiln_dtype ct;
  int bias[MB_MAX];
  const int *acc;                               /* register path: acc[j*rvl + l], else NULL */
  const int *rbias;                             /* register path: bias locals per row */
  int64_t rmb, rvl;                             /* register path: rows, positions of the tile */
  int fma;                                      /* register path: products summed by FMA */
  const kiln_node *enode;                       /* register path with y = Y: the node whose final
                                                   store (epilogue included) the tile makes */
  const kiln_node *pnode;                       /* register path into Yv: the node whose leading */
  int pre;                                      /* `pre` pointwise epilogue steps the tile applies */
  int64_t bh;                                   /* bands packing their own rows (emit_banded): the rows
                                                   of dim 0 a band's planes hold, else 0 */
  kiln_lx *b0, *pbase;                          /* then: the band's first plane row; the S offset of
                                                   the channel emit_pack packs */
  int near_ahead;                               /* 1x1 tiles prefetch their rows RB_L1_AHEAD channels on into the L1 */
  kiln_lx *pfo;                                 /* register path streaming X (emit_reg_blocks): the
                                                   S offset, past the channel's, each channel step
                                                   of a tile prefetches; NULL: none */
} fconv;

static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Offset in a channel of S of tap index k along dim i (static k). */
static int64_t xo_static(const fconv *f, int i, int64_t k) {
  int64_t a = k * f->d[i] - f->p[i], q = floordiv(a, f->s[i]);
  return f->rof[i][a - q * f->s[i]] * f->pst[i] * f->psz + (q - f->qmin[i]) * f->vs[i];
}

/* The same for a tap index in a loop: needs every phase used along dim i
 * (the phase index is then the remainder itself). */
static kiln_lx *xo_dyn(kiln_lctx *L, const fconv *f, int i, kiln_lx *k) {
  int64_t s = f->s[i], p = f->p[i];
  if (s == 1) return IMUL(IADD(IMUL(k, f->d[i]), CI(-p - f->qmin[i])), f->vs[i]);
  int64_t e = ceildiv(p, s); /* k*d - p + s*e >= 0 */
  kiln_lx *a = IADD(IMUL(k, f->d[i]), CI(s * e - p));
  kiln_lx *r = BIN(REM, a, CI(s)), *q = BIN(DIV, a, CI(s));
  return IADD(IMUL(r, f->pst[i] * f->psz), IMUL(IADD(q, CI(-e - f->qmin[i])), f->vs[i]));
}

/* y[j, y0 + v] (= B[m0+j] |+=) sum_t w[j][t] * s[s0 + v + os[t]] over
 * v < len, one vector loop; tap t reads W at ow[t] past the block's row. */
static void emit_sum(kiln_lctx *L, const fconv *f, int nt, kiln_lx **ow, kiln_lx **os, kiln_lx *s0, kiln_lx *y0,
                     int64_t len, int store) {
  int wl[MB_MAX][SINGLE_MAX], xl[SINGLE_MAX];
  for (int j = 0; j < f->MB; j++)
    for (int t = 0; t < nt; t++)
      wl[j][t] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->w, IADD(IADD(f->wbase, CI(j * f->wcs)), ow[t])));
  kiln_lx *v = IDX(kiln_lb_for(B, len, seq_sched));
  kiln_lx *sv = IADD(IADD(f->sbase, s0), v);
  for (int t = 0; t < nt; t++) xl[t] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->pk, IADD(sv, os[t])));
  for (int j = 0; j < f->MB; j++) {
    kiln_lx *yo = IADD(IADD(IADD(f->ybase, CI(j * f->ycs)), y0), v);
    kiln_lx *acc = store ? LOCAL(f->bias[j]) : kiln_lx_load(B, f->y, yo);
    for (int t = 0; t < nt; t++) acc = BIN(ADD, acc, BIN(MUL, LOCAL(wl[j][t]), LOCAL(xl[t])));
    kiln_lb_store(B, f->y, yo, acc);
  }
  kiln_lb_end(B);
}

/* Every tap of every channel in one pass that stores (Cg * ksz <= SINGLE_MAX). */
static void emit_single(kiln_lctx *L, const fconv *f, kiln_lx *s0, kiln_lx *y0, int64_t len) {
  kiln_lx *ow[SINGLE_MAX], *os[SINGLE_MAX];
  int nt = 0;
  for (int64_t c = 0; c < f->Cg; c++)
    for (int64_t k = 0; k < f->ksz; k++, nt++) {
      int64_t xo = c * f->scs;
      for (int i = 0; i < f->sp; i++) xo += xo_static(f, i, k / f->kstr[i] % f->K[i]);
      ow[nt] = CI(c * f->wch + k);
      os[nt] = CI(xo);
    }
  emit_sum(L, f, nt, ow, os, s0, y0, len, 1);
}

/* Register path, one channel c and one tap (W offset k, S offset xo) of
 * the tile at v0: x[l] = S[c, v0 + l + xo] (rvl contiguous loads), then
 * per row j the weight W[m0 + j, c, k] (one scalar, broadcast) times every
 * x[l] into the accumulator acc[j][l].  Every accumulator is a scalar
 * local, the statements fully unrolled: what both C compilers and LLVM
 * turn into MB x R vector registers (see the top of the register path). */
static void emit_micro(kiln_lctx *L, const fconv *f, kiln_lx *c, kiln_lx *k, kiln_lx *xo, kiln_lx *v0) {
  int xl[RB_VL_MAX];
  kiln_lx *s = IADD(IADD(IADD(f->sbase, IMUL(c, f->scs)), xo), v0);
  kiln_lx *w = IADD(f->wbase, IADD(IMUL(c, f->wch), k));
  for (int64_t l = 0; l < f->rvl; l++) xl[l] = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->pk, IADD(s, CI(l))));
  for (int64_t j = 0; j < f->rmb; j++) {
    int wl = kiln_lb_decl(B, f->ct, kiln_lower_load(L, f->w, IADD(w, CI(j * f->wcs))));
    for (int64_t l = 0; l < f->rvl; l++) {
      int a = f->acc[j * f->rvl + l];
      kiln_lx *acc = LOCAL(a), *wx[2] = {LOCAL(wl), LOCAL(xl[l])};
      kiln_lb_assign(B, a, f->fma ? kiln_lx_fma(B, wx[0], wx[1], acc) : BIN(ADD, acc, BIN(MUL, wx[0], wx[1])));
    }
  }
}

/* Adds channels [c0, c0 + cb) over one tile: one vector loop per tap.
 * Dims from i on: k and xo are the W and S offsets of the dims before.
 * A dim's taps are a loop when its offset is affine in the tap index
 * (every phase used) and unrolled otherwise; t, when not NULL, is one
 * loop over all taps, used when every dim's offset is affine. */
static void emit_taps(kiln_lctx *L, const fconv *f, kiln_lx *c0, int64_t cb, kiln_lx *s0, kiln_lx *y0, int64_t len,
                      int i, kiln_lx *k, kiln_lx *xo, kiln_lx *t) {
  if (i == f->sp && f->acc) {
    emit_micro(L, f, c0, k, xo, s0);
    return;
  }
  if (i == f->sp) {
    kiln_lx *ow[T_CH], *os[T_CH];
    for (int64_t c = 0; c < cb; c++) {
      ow[c] = IADD(IMUL(IADD(c0, CI(c)), f->wch), k);
      os[c] = IADD(IMUL(IADD(c0, CI(c)), f->scs), xo);
    }
    emit_sum(L, f, (int)cb, ow, os, s0, y0, len, 0);
    return;
  }
  if (f->K[i] == 1) {
    emit_taps(L, f, c0, cb, s0, y0, len, i + 1, k, IADD(xo, CI(xo_static(f, i, 0))), t);
  } else if (t) {
    kiln_lx *ki = BIN(DIV, t, CI(f->kstr[i]));
    if (i > 0) ki = BIN(REM, ki, CI(f->K[i]));
    emit_taps(L, f, c0, cb, s0, y0, len, i + 1, IADD(k, IMUL(ki, f->kstr[i])), IADD(xo, xo_dyn(L, f, i, ki)), t);
  } else if (f->nr[i] == f->s[i] && !(f->acc && i == f->sp - 1 && f->K[i] <= RB_UNROLL_TAPS && f->ksz > f->K[i])) {
    kiln_lx *ki = IDX(kiln_lb_for(B, f->K[i], seq_sched));
    emit_taps(L, f, c0, cb, s0, y0, len, i + 1, IADD(k, IMUL(ki, f->kstr[i])), IADD(xo, xo_dyn(L, f, i, ki)), t);
    kiln_lb_end(B);
  } else {
    for (int64_t kv = 0; kv < f->K[i]; kv++)
      emit_taps(L, f, c0, cb, s0, y0, len, i + 1, IADD(k, CI(kv * f->kstr[i])), IADD(xo, CI(xo_static(f, i, kv))), t);
  }
}

/* One loop over all taps when every dim with K > 1 has them affine. */
static int taps_merged(const fconv *f) {
  int all = 1, many = 0;
  for (int i = 0; i < f->sp; i++) {
    all = all && (f->K[i] == 1 || f->nr[i] == f->s[i]);
    many += f->K[i] > 1;
  }
  return all && many > 1;
}

/* All products for `len` positions from s0 in S and y0 in y. */
static void emit_tile(kiln_lctx *L, const fconv *f, int single, kiln_lx *s0, kiln_lx *y0, int64_t len) {
  if (single) { emit_single(L, f, s0, y0, len); return; }
  kiln_lx *v = IDX(kiln_lb_for(B, len, seq_sched));
  for (int j = 0; j < f->MB; j++)
    kiln_lb_store(B, f->y, IADD(IADD(IADD(f->ybase, CI(j * f->ycs)), y0), v), LOCAL(f->bias[j]));
  kiln_lb_end(B);
  int merged = taps_merged(f);
  int64_t nblk = f->Cg / T_CH, rem = f->Cg % T_CH;
  for (int part = 0; part < 2; part++) {
    int64_t cb = part == 0 ? T_CH : rem;
    if (part == 0 ? nblk == 0 : rem == 0) continue;
    kiln_lx *c0 = part == 1 ? CI(nblk * T_CH) : nblk == 1 ? CI(0) : IMUL(IDX(kiln_lb_for(B, nblk, seq_sched)), T_CH);
    kiln_lx *t = merged ? IDX(kiln_lb_for(B, f->ksz, seq_sched)) : NULL;
    emit_taps(L, f, c0, cb, s0, y0, len, 0, CI(0), CI(0), t);
    if (merged) kiln_lb_end(B);
    if (part == 0 && nblk > 1) kiln_lb_end(B);
  }
}

/* Tile length for n positions: n itself when small, else a divisor of n
 * in [tmax/4, tmax] (a multiple of vw if there is one), else tmax with a
 * shorter last tile; tmax is the target's TILE_MAX (tile_max). */
static int64_t tile_len(int64_t n, int64_t vw, int64_t tmax) {
  if (n <= tmax) return n;
  int64_t best = 0;
  for (int64_t t = tmax; t >= tmax / 4; t--)
    if (n % t == 0 && (!best || (t % vw == 0 && best % vw != 0))) best = t;
  return best ? best : tmax;
}

/* Element copies the banded kernel makes (emit_banded): dst[d + i] =
 * src[s + i], or 0 without src, for i < n.  Its one function is in the
 * tiled tier, whose pipeline has no loop vectoriser (llvm_optimise.c), so
 * the loop is written as runs of W statements on consecutive elements,
 * which the printer makes vector statements (llvm_lanes.c), where a loop
 * would stay scalar.  `node`, when set, is the node whose output store
 * (its epilogue after the first `done` steps) the copy makes; idx[ilast]
 * is then the element's last-dim index. */
typedef struct lane_copy {
  const kiln_buf *dst, *src;
  kiln_lx *d, *s;                 /* offsets of element 0 */
  const kiln_node *node;          /* output store through the epilogue (kiln_lower_store_rest) */
  kiln_lx **idx;
  int ilast, done;
  kiln_dtype ct;
} lane_copy;

static void lane_copy_one(kiln_lctx *L, const lane_copy *c, kiln_lx *i) {
  kiln_lx *v = c->src ? kiln_lx_load(B, c->src, IADD(c->s, i)) : kiln_lx_const_f(B, c->ct, 0);
  if (c->node) {
    c->idx[c->ilast] = i;
    kiln_lower_store_rest(L, c->node, c->idx, IADD(c->d, i), v, c->done);
  } else {
    kiln_lb_store(B, c->dst, IADD(c->d, i), kiln_lx_cast(B, c->dst->dtype, v));
  }
}

static void lane_copies(kiln_lctx *L, const lane_copy *c, int64_t n) {
  int64_t W = kiln_target_lanes(L->target, c->ct), nv = n / W;
  if (nv) {
    kiln_lx *v = nv > 1 ? IMUL(IDX(kiln_lb_for(B, nv, seq_sched)), W) : CI(0);
    for (int64_t l = 0; l < W; l++) lane_copy_one(L, c, IADD(v, CI(l)));
    if (nv > 1) kiln_lb_end(B);
  }
  for (int64_t l = nv * W; l < n; l++) lane_copy_one(L, c, CI(l));
}

/* Copies [j0, j1) of the last dim for the given last-dim phases: S at
 * so + phase*psz + j, X at xo + s*(j + qmin) + r. */
static void pack_run(kiln_lctx *L, const fconv *f, kiln_lx *so, kiln_lx *xo, const int64_t *rs, int nrs, int64_t j0,
                     int64_t j1) {
  if (j1 <= j0) return;
  int i = f->sp - 1;
  if (f->bh && nrs == 1 && f->s[i] == 1) { /* contiguous: the banded kernel's runs of lanes */
    lane_copy c = {.dst = f->pk, .src = f->x, .ct = f->ct, .d = IADD(so, CI(f->rof[i][rs[0]] * f->psz + j0)),
                   .s = IADD(xo, CI(j0 + f->qmin[i] + rs[0]))};
    lane_copies(L, &c, j1 - j0);
    return;
  }
  kiln_lx *j = IADD(IDX(kiln_lb_for(B, j1 - j0, seq_sched)), CI(j0));
  for (int k = 0; k < nrs; k++) {
    kiln_lx *x = IADD(xo, IADD(IMUL(j, f->s[i]), CI(f->qmin[i] * f->s[i] + rs[k])));
    kiln_lb_store(B, f->pk, IADD(IADD(so, CI(f->rof[i][rs[k]] * f->psz)), j),
                  kiln_lx_cast(B, f->pk->dtype, kiln_lx_load(B, f->x, x)));
  }
  kiln_lb_end(B);
}

/* One row of the last dim: its phases together over [j0, j1), where all
 * lie inside X, then each phase's own columns [lo, hi) outside that. */
static void emit_pack_row(kiln_lctx *L, const fconv *f, kiln_lx *so, kiln_lx *xo, int64_t *rs, int nrs, int64_t j0,
                          int64_t j1, const int64_t *lo, const int64_t *hi) {
  pack_run(L, f, so, xo, rs, nrs, j0, j1);
  for (int k = 0; k < nrs; k++) {
    int64_t a = lo[rs[k]], b = hi[rs[k]];
    pack_run(L, f, so, xo, &rs[k], 1, a, b < j0 ? b : j0);
    pack_run(L, f, so, xo, &rs[k], 1, a > j1 ? a : j1, b);
  }
}

/* Packs plane nc (= n*C + c) of X into its phase planes in S: zeros,
 * unless the copies cover the planes, then per phase of the outer dims the
 * box of plane indices that land inside X.  The last dim's phases are
 * copied together, one loop reading consecutive X (an interleaved access
 * that vectorises, where one phase at a time would be strided), with the
 * few columns outside their common range on their own. */
static void emit_pack(kiln_lctx *L, const fconv *f, const conv_geom *g, kiln_lx *nc) {
  kiln_lx *sp = f->bh ? f->pbase : IMUL(nc, f->scs);
  int last = f->sp - 1;
  int64_t lo[3][S_MAX], hi[3][S_MAX], nouter = 1, area = 0, rs[S_MAX], j0 = 0, j1 = f->Z[last];
  int nrs = 0;
  for (int i = 0; i < f->sp; i++) {
    if (i < last) nouter *= f->s[i];
    for (int64_t r = 0; r < f->s[i]; r++) {
      lo[i][r] = clamp64(ceildiv(-r, f->s[i]) - f->qmin[i], 0, f->Z[i]);
      hi[i][r] = clamp64(floordiv(g->in[i] - 1 - r, f->s[i]) + 1 - f->qmin[i], lo[i][r], f->Z[i]);
    }
  }
  for (int64_t r = 0; r < f->s[last]; r++) {
    if (f->rof[last][r] < 0) continue;
    rs[nrs++] = r;
    j0 = lo[last][r] > j0 ? lo[last][r] : j0;
    j1 = hi[last][r] < j1 ? hi[last][r] : j1;
  }
  if (j1 < j0) j1 = j0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && area < f->scs && !f->bh) { /* a band's slot was zeroed once (emit_banded) */
      kiln_lx *i = IDX(kiln_lb_for(B, f->scs, seq_sched));
      kiln_lb_store(B, f->pk, IADD(sp, i), kiln_lx_const_f(B, f->pk->dtype, 0));
      kiln_lb_end(B);
    }
    for (int64_t ph = 0; ph < nouter; ph++) {
      int64_t r[3], idx = 0, rest = ph, box = 1;
      int used = 1;
      for (int i = last - 1; i >= 0; i--) {
        r[i] = rest % f->s[i];
        rest /= f->s[i];
        used = used && f->rof[i][r[i]] >= 0;
        if (used) idx += f->rof[i][r[i]] * f->pst[i];
        box *= hi[i][r[i]] - lo[i][r[i]];
      }
      if (!used || box == 0) continue;
      if (pass == 0) {
        for (int k = 0; k < nrs; k++) area += box * (hi[last][rs[k]] - lo[last][rs[k]]);
        continue;
      }
      kiln_lx *so = IADD(sp, CI(idx * f->psz)), *xo = IMUL(nc, g->isz);
      if (f->bh) { /* the band's rows of dim 0: copied where inside X, else zeroed (an earlier band's) */
        kiln_lx *jj = IDX(kiln_lb_for(B, f->bh, seq_sched)), *j = IADD(f->b0, jj);
        so = IADD(so, IMUL(jj, f->vs[0]));
        kiln_lb_if(B, BIN(AND, BIN(LE, CI(lo[0][r[0]]), j), BIN(LT, j, CI(hi[0][r[0]]))));
        xo = IADD(xo, IMUL(IADD(IMUL(j, f->s[0]), CI(f->qmin[0] * f->s[0] + r[0])), g->xstr[0]));
        for (int i = 1; i < last; i++) {
          kiln_lx *ji = IADD(IDX(kiln_lb_for(B, hi[i][r[i]] - lo[i][r[i]], seq_sched)), CI(lo[i][r[i]]));
          so = IADD(so, IMUL(ji, f->vs[i]));
          xo = IADD(xo, IMUL(IADD(IMUL(ji, f->s[i]), CI(f->qmin[i] * f->s[i] + r[i])), g->xstr[i]));
        }
        emit_pack_row(L, f, so, xo, rs, nrs, j0, j1, lo[last], hi[last]);
        kiln_lower_close(L, last - 1);
        kiln_lb_else(B);
        for (int k = 0; k < nrs; k++) { /* the row in each of the last dim's phase planes */
          lane_copy c = {.dst = f->pk, .ct = f->ct, .d = IADD(IADD(sp, CI((idx + f->rof[last][rs[k]]) * f->psz)), IMUL(jj, f->vs[0]))};
          lane_copies(L, &c, f->vs[0]);
        }
        kiln_lower_close(L, 2); /* the IF, the rows */
        continue;
      }
      for (int i = 0; i < last; i++) {
        kiln_lx *j = IADD(IDX(kiln_lb_for(B, hi[i][r[i]] - lo[i][r[i]], seq_sched)), CI(lo[i][r[i]]));
        so = IADD(so, IMUL(j, f->vs[i]));
        xo = IADD(xo, IMUL(IADD(IMUL(j, f->s[i]), CI(f->qmin[i] * f->s[i] + r[i])), g->xstr[i]));
      }
      emit_pack_row(L, f, so, xo, rs, nrs, j0, j1, lo[last], hi[last]);
      kiln_lower_close(L, last);
    }
  }
}

/* Rows and positions of the register tile for target t and Mg output
 * channels per group (see above): with 32 vector registers 6 rows of 4
 * vectors, or 8 rows of 3 when 8 divides Mg and 6 does not (ResNet's
 * 64..2048 channels: no short block); with 16, 6 rows of 2. */
void kiln_conv_reg_shape(const kiln_target *t, kiln_dtype ct, int64_t Mg, int64_t *mb, int64_t *vl) {
  int64_t r = t->vector_bytes >= 64 ? 4 : 2;
  *mb = RB_MB;
  if (r == 4 && Mg % RB_MB != 0 && Mg % 8 == 0) *mb = 8, r = 3;
  int64_t v = r * kiln_target_lanes(t, ct);
  *vl = v > RB_VL_MAX ? RB_VL_MAX : v;
}

/* One register tile: mb rows by vl positions from v0. */
static void emit_rtile(kiln_lctx *L, fconv *f, kiln_lx *v0, int64_t mb, int64_t vl) {
  int acc[RB_MB_MAX * RB_VL_MAX];
  for (int64_t j = 0; j < mb; j++)
    for (int64_t l = 0; l < vl; l++) acc[j * vl + l] = kiln_lb_decl(B, f->ct, LOCAL(f->rbias[j]));
  f->acc = acc, f->rmb = mb, f->rvl = vl;
  B->k->explicit_vectors = 1;
  kiln_lx *c = f->Cg == 1 ? CI(0) : IDX(kiln_lb_for(B, f->Cg, seq_sched));
  if (f->pfo) kiln_lb_prefetch(B, f->pk, IADD(IADD(f->sbase, IMUL(c, f->scs)), f->pfo));
  if (f->near_ahead && f->ksz == 1) { /* see emit_reg_blocks: this channel's lines RB_L1_AHEAD steps on */
    int64_t x0 = 0, lanes = kiln_target_lanes(L->target, f->ct);
    for (int i = 0; i < f->sp; i++) x0 += xo_static(f, i, 0);
    kiln_lx *ca = BIN(MIN, IADD(c, CI(RB_L1_AHEAD)), CI(f->Cg - 1));
    for (int64_t l = 0; l * lanes < vl; l++)
      kiln_lb_prefetch_l1(B, f->pk, IADD(IADD(f->sbase, IMUL(ca, f->scs)), IADD(v0, CI(x0 + l * lanes))));
  }
  /* a 3x3 window's taps unrolled (what LLVM's O3 did on its own): the
   * tile's loads and FMAs as one straight run per input channel.  Larger
   * windows of 2 or 3 dims (a 7x7 stem, 5x5s, 3x3x3s) loop over their rows
   * with the last dim's taps unrolled, offsets constant (emit_taps).  One
   * loop over all 49 taps of a stride-2 7x7 computed each tap's phase and
   * row with divisions, integer work on the ports the FMAs need: on an
   * Intel Xeon (AVX-512, 1 thread) ResNet-50's stem 1.77 -> 1.51 ms,
   * GoogLeNet's 1.72 -> 1.47, its 5x5s 20-25% faster, the 3-D CNN's
   * 3x3x3s 4.54 -> 4.16 ms in all */
  int merged = taps_merged(f) && f->ksz <= RB_UNROLL_TAPS;
  kiln_sched taps = {.unroll = (int)f->ksz};
  kiln_lx *t = merged ? IDX(kiln_lb_for(B, f->ksz, taps)) : NULL;
  emit_taps(L, f, c, 1, v0, v0, vl, 0, CI(0), CI(0), t);
  kiln_lower_close(L, merged + (f->Cg > 1));
  f->acc = NULL;
  for (int64_t j = 0; j < mb; j++)
    for (int64_t l = 0; l < vl; l++) {
      kiln_lx *off = IADD(IADD(f->ybase, CI(j * f->ycs)), IADD(v0, CI(l)));
      if (f->enode) kiln_lower_store_flat(L, f->enode, 0, off, LOCAL(acc[j * vl + l])); /* y is Y: row-major */
      else kiln_lb_store(B, f->y, off, kiln_lower_apply_steps(L, f->pnode, LOCAL(acc[j * vl + l]), f->pre));
    }
}

/* (blk / inner) % extent, folding the trivial cases. */
static kiln_lx *digit(kiln_lctx *L, kiln_lx *blk, int64_t inner, int64_t extent, int outer) {
  if (extent == 1) return CI(0);
  kiln_lx *q = inner == 1 ? blk : BIN(DIV, blk, CI(inner));
  return outer ? q : BIN(REM, q, CI(extent));
}

/* Opens part `part` of a block of output channels: the full blocks of MBr
 * rows (0) or the short last one of mtail (1), an IF on the block index bi
 * between them where both exist, and the block's bias locals in rb (rows
 * from local m0); returns its rows, 0 where the part has none. */
static int64_t block_part(kiln_lctx *L, fconv *f, const kiln_value *bias, int part, int64_t MBr, int64_t nbfull,
                          int64_t mtail, int bi, int m0, int *rb) {
  int64_t mb = part == 0 ? (nbfull ? MBr : 0) : mtail;
  if (!mb) return 0;
  if (part == 0 && mtail) kiln_lb_if(B, BIN(LT, LOCAL(bi), CI(nbfull)));
  if (part == 1 && nbfull) kiln_lb_else(B);
  for (int64_t j = 0; j < mb; j++)
    rb[j] = kiln_lb_decl(B, f->ct, bias ? kiln_lower_load(L, kiln_lower_buf(L, bias), IADD(LOCAL(m0), CI(j)))
                                        : kiln_lx_const_f(B, f->ct, 0));
  f->rbias = rb;
  return mb;
}

/* Whether n's kernel output (after its epilogue) is read by a depthwise
 * convolution, which splits over channels. */
static int feeds_depthwise(const kiln_lctx *L, const kiln_node *n) {
  const kiln_value *v = kiln_lower_result(n, 0);
  for (int i = 0; i < L->g->nnodes; i++) {
    const kiln_node *m = L->g->nodes[i];
    if (m->dead || m->fused_into || m->op != KILN_OP_CONV || m->in[0] != v) continue;
    if (((const kiln_attrs_conv *)m->attrs)->group > 1) return 1;
  }
  return 0;
}

/* The register path's block loop (see the top of it): sums over V virtual
 * positions into f->y (Y or Yv, channel stride f->ycs). */
static void emit_reg_blocks(kiln_lctx *L, const kiln_node *n, fconv *f, const conv_geom *g, const kiln_value *bias) {
  int64_t MBr, VL;
  kiln_conv_reg_shape(L->target, f->ct, g->Mg, &MBr, &VL);
  f->fma = kiln_target_has_fma(L->target) && (f->ct == KILN_DT_F32 || f->ct == KILN_DT_F64);
  int64_t nbg = (g->Mg + MBr - 1) / MBr, nbfull = g->Mg / MBr, mtail = g->Mg % MBr;
  int64_t nsub = f->V / VL, vtail = f->V % VL;
  /* supertiles: GT tiles whose input rows fit in half the L2 */
  int64_t row = (int64_t)kiln_dtype_size(f->pk->dtype) * g->Cg * f->nph * VL;
  int64_t gt = row > 0 ? L->target->l2_bytes / 2 / row : 1;
  if (gt < 1) gt = 1;
  int64_t cores = L->target->cores, xbytes = row / VL * f->V;
  int64_t lanes = kiln_target_lanes(L->target, f->ct), nlines = (VL + lanes - 1) / lanes;
  /* X streamed from memory.  Where X passes half the L2 (ResNet-50's
   * 256-channel 1x1s at 56x56: 3.2 MB), a supertile's first block read it
   * from DRAM at a few lines a k step, 256 pages apart (no hardware
   * prefetcher follows that), and ran memory-bound: 59% of the FMA peak
   * against 78% for the same layer at 28x28, whose X stays in L2.  Here
   * each tile is its own supertile, so a tile's blocks run back to back
   * (the tile's X in L1/L2), and every block's channel steps prefetch a
   * line of the next tile's rows, block bi the line bi % nlines: the next
   * tile arrives while this one computes, spread over its blocks.
   * KILN_X_STREAM=0: off (A/B runs). */
  /* A 1x1 tile reads one input channel's rows a step, a plane (a page or
   * more) after the last: no hardware prefetcher follows into the L1, and
   * where the tile's rows of all channels outgrow the L1 (48 positions by
   * 256 channels: 48 KB) every block loads them from the L2 and waits.
   * Each step prefetches (near, into the L1) its rows RB_L1_AHEAD channels
   * on.  On a 2-vCPU Intel Xeon (AVX-512), alternating rounds: 256->128 at
   * 56x56 alone 1.15 -> 1.07 ms (2 ahead: no change; 4, 8, 12: 1.10-1.14);
   * all kernels, 1 / 2 threads: ResNet-50 level / 26.6 -> 26.0 ms,
   * DenseNet-121 34.3 -> 33.8 / 21.8 -> 21.0, MobileNetV2 level / 2.77 ->
   * 2.69.  KILN_L1_PREFETCH=0: off (A/B runs). */
  const char *near_env = getenv("KILN_L1_PREFETCH");
  f->near_ahead = !(near_env && !strcmp(near_env, "0")) && f->ksz == 1 && g->Cg >= 2 * RB_L1_AHEAD;
  const char *stream_env = getenv("KILN_X_STREAM");
  int stream = !(stream_env && !strcmp(stream_env, "0")) && xbytes > L->target->l2_bytes / 2 && nsub > 1 && nbg > 1;
  if (stream) {
    gt = 1;
    kiln_lower_schedule(L, "%s, X streamed: threads split positions, tiles prefetch the next", B->k->schedule);
  }
  int64_t nst = nsub > gt ? (nsub + gt - 1) / gt : 1;
  /* Threads take contiguous ranges of the block loop.  With fewer
   * supertiles than cores they split the output channels, and every core
   * reads all of X, half of it (2 cores) written by the other core in the
   * kernel before: a copy between L2s every run.  Where X outweighs W 4
   * times (a 1x1 reducing channels at 28x28, a 3x3 at 56x56), one supertile a core
   * makes them split the positions: each core reads its part of X and all
   * of W.  Not where a depthwise convolution reads the output: it splits
   * channels, and would read half its input from the other core.  On the
   * Intel Xeon (2 threads): MobileNetV2's 28x28 projections 0.053-0.071 ->
   * 0.038-0.051 ms, ResNet-50's kernels 29.2 -> 28.5 ms in all; 1 thread
   * unchanged.  KILN_SPATIAL_SPLIT=0: off (A/B runs). */
  int64_t wbytes = f->w->numel * (int64_t)kiln_dtype_size(f->w->dtype) / g->G;
  const char *split_env = getenv("KILN_SPATIAL_SPLIT");
  if (!(split_env && !strcmp(split_env, "0")) && cores > 1 && nst < cores && nsub >= cores &&
      xbytes >= 4 * wbytes && !feeds_depthwise(L, n)) {
    nst = cores;
    kiln_lower_schedule(L, "%s, threads split positions", B->k->schedule);
  }
  /* evened: supertile st has q tiles, one more for the first r, so that
   * the parallel loop's even chunks carry even work (17 tiles as 5, 5, 5,
   * 2 put 10 on one of two threads and 7 on the other) */
  int64_t q = nsub / nst, r = nsub % nst;
  gt = nsub ? q + (r > 0) : 0;
  kiln_lx *blk = IDX(kiln_lb_for(B, g->N * nst * g->G * nbg, par_sched));
  int nv = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, nst * g->G * nbg, g->N, 1));
  int st = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, g->G * nbg, nst, 0));
  kiln_lx *grp = digit(L, blk, nbg, g->G, 0);
  int bi = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, 1, nbg, 0));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(grp, g->Mg), IMUL(LOCAL(bi), MBr)));
  int c0 = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(LOCAL(nv), g->C), IMUL(digit(L, blk, nbg, g->G, 0), g->Cg)));
  int sb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(c0), f->scs));
  int yb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), f->ycs));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(m0), f->wcs));
  f->sbase = LOCAL(sb), f->ybase = LOCAL(yb), f->wbase = LOCAL(wb);
  for (int part = 0; part < 2; part++) {
    int rb[RB_MB_MAX];
    int64_t mb = block_part(L, f, bias, part, MBr, nbfull, mtail, bi, m0, rb);
    if (!mb) continue;
    if (gt > 0) {
      kiln_lx *vt = gt > 1 ? IDX(kiln_lb_for(B, gt, seq_sched)) : CI(0);
      kiln_lx *first = r ? IADD(IMUL(LOCAL(st), q), BIN(MIN, LOCAL(st), CI(r))) : IMUL(LOCAL(st), q);
      kiln_lx *sub = IADD(first, vt);
      int guard = r > 0;
      if (guard) kiln_lb_if(B, BIN(OR, BIN(LT, vt, CI(q)), BIN(LT, LOCAL(st), CI(r))));
      if (stream) /* the next tile's line bi % nlines (the last tile: its own) */
        f->pfo = IADD(IMUL(BIN(MIN, IADD(sub, CI(1)), CI(nsub - 1)), VL), IMUL(BIN(REM, LOCAL(bi), CI(nlines)), lanes));
      emit_rtile(L, f, IMUL(sub, VL), mb, VL);
      f->pfo = NULL;
      kiln_lower_close(L, guard + (gt > 1));
    }
    if (vtail) { /* whole vectors, then the rest: a tile of 49 would be shuffled across lanes */
      int64_t whole = vtail / lanes * lanes;
      /* block bi's tail in supertile bi * nst / nbg: spread over the
       * supertiles, not all in the last one (ResNet-50's 14x14 1x1s: 4
       * tiles and a tail of 4 positions a block; with the tails in one
       * supertile, one of two threads had about a sixth more work) */
      if (nst > 1) kiln_lb_if(B, BIN(EQ, LOCAL(st), BIN(DIV, IMUL(LOCAL(bi), nst), CI(nbg))));
      if (whole) emit_rtile(L, f, CI(nsub * VL), mb, whole);
      if (vtail > whole) emit_rtile(L, f, CI(nsub * VL + whole), mb, vtail - whole);
      if (nst > 1) kiln_lb_end(B);
    }
    f->rbias = NULL;
  }
  if (mtail && nbfull) kiln_lb_end(B); /* the IF of full and short blocks */
  kiln_lb_end(B);
}

/* ---- Bands: the register path in the memory the plain plan leaves ----
 *
 * S holds the phase planes of every channel and Yv the sums of every
 * output channel at every virtual position: with the input and output
 * they can pass the plain plan's peak (issue #10's bar).  ResNet-50's
 * 7x7 stem kept a 3.3 MB Yv beside its 3.2 MB output (the network's peak:
 * 7.23 MB against a plain plan of 5.22).  Where the whole S and Yv do
 * not fit what the plan leaves free (kiln_lower_scratch_room), the kernel
 * runs in bands of dim 0's output rows (H of them), one slot a core:
 *
 *   S[n, c] = phases of X[n, c], zero-padded                  parallel (n, c)
 *   for slot < slots                                          parallel
 *     for the slot's bands (n, rows b0 .. b0 + H)
 *       for (group, block of MB output channels)
 *         register tiles over the band's virtual positions -> slot's Yv
 *         Y[n, m0+j, rows of the band] = Yv ..., through the output store
 *
 * A band's rows of S are at most half the L2, so every block reads them
 * from there; its Yv is one block's, copied out while in L1/L2.  Where the
 * whole S does not fit either, each slot holds a band's S of its own:
 * zeroed once (padding no band writes stays zero), each band packs its
 * rows before its blocks.  X then stays live over the kernel (it is read
 * band by band), so those bands take what is free beside X and Y. */
typedef struct band_plan { int64_t H, nb, slots, bV; int whole_s; } band_plan;

static int64_t band_bytes(const fconv *f, const conv_geom *g, int64_t H, int64_t VW, int64_t MBr, int64_t maxoff,
                          int64_t *bV) {
  int64_t v = (H * f->vs[0] + VW - 1) / VW * VW;
  if (bV) *bV = v;
  return (int64_t)kiln_dtype_size(f->ct) * (g->C * f->nph * (v + maxoff) + MBr * v);
}

/* Value v is in the arena in bytes of its own (not a graph input, output,
 * constant or view) and, when `dies` is given, read by no node but that
 * one: its bytes are free once that node's kernel has read it. */
static int own_storage(const kiln_lctx *L, const kiln_value *v, const kiln_node *dies) {
  if (!v->producer || v->data || v->is_output || (L->views && L->views->root[v->id])) return 0;
  for (int i = 0; dies && i < L->g->nnodes; i++) {
    const kiln_node *m = L->g->nodes[i];
    for (int j = 0; m != dies && !m->dead && j < m->nin; j++)
      if (m->in[j] == v) return 0;
  }
  return 1;
}

/* Whether the whole S and Yv fit what the plain plan leaves free beside
 * this kernel (or there is no estimate): what they add to the plan's
 * values is S beside X while it is packed (Y not written yet), then S and
 * Yv where X was, when no other kernel reads X. */
static int whole_planes_fit(const kiln_lctx *L, const kiln_node *n, const fconv *f, const conv_geom *g, int direct_y) {
  int64_t esz = (int64_t)kiln_dtype_size(f->ct), room = kiln_lower_scratch_room(L, n);
  if (room < 0) return 1;
  int64_t S = esz * g->N * g->C * f->nph * f->psz, Yv = direct_y ? 0 : esz * g->N * g->M * f->V;
  int64_t xb = own_storage(L, n->in[0], n) ? esz * g->N * g->C * g->isz : 0;
  int64_t yb = own_storage(L, kiln_lower_result(n, 0), NULL) ? esz * g->N * g->M * g->osz : 0;
  return S - yb <= room && S + Yv - xb <= room;
}

/* Bands for this convolution, or 0 where the whole S and Yv fit (or bands
 * would not help: one dim, or no room estimate). */
static int plan_bands(const kiln_lctx *L, const kiln_node *n, const fconv *f, const conv_geom *g, int64_t maxoff,
                      int64_t VW, int direct_y, band_plan *bp) {
  if (f->sp < 2 || f->out[0] < 2) return 0;
  int64_t MBr, VL, slots = L->target->cores < 1 ? 1 : L->target->cores, H = f->out[0];
  kiln_conv_reg_shape(L->target, f->ct, g->Mg, &MBr, &VL);
  /* tests: bands of that many rows wherever they apply, "Hs": over the
   * whole S; 0: never */
  const char *env = getenv("KILN_CONV_BANDS");
  if (env && !strcmp(env, "0")) return 0;
  if (env && atoll(env) > 0) {
    H = atoll(env) < H ? atoll(env) : H;
    bp->whole_s = strchr(env, 's') != NULL;
    goto chosen;
  }
  int64_t esz = (int64_t)kiln_dtype_size(f->ct), room = kiln_lower_scratch_room(L, n);
  if (room < 0 || whole_planes_fit(L, n, f, g, direct_y)) return 0;
  int64_t S = esz * g->N * g->C * f->nph * f->psz;
  int64_t xb = own_storage(L, n->in[0], n) ? esz * g->N * g->C * g->isz : 0;
  int64_t yb = own_storage(L, kiln_lower_result(n, 0), NULL) ? esz * g->N * g->M * g->osz : 0;
  /* every band reads all the weights again: from the L2 when they fit
   * half of it, else from further out (AlexNet's 2.5 MB conv2 in 2 bands:
   * 4.72 -> 5.17 ms, one thread) */
  if (esz * g->M * g->Cg * g->ksz > L->target->l2_bytes / 2) return 0;
  /* a band's planes in half the L2, all slots' bands in the room, and at
   * least two tiles a band (fewer: the tile's weight loads stop being
   * shared); where no band fits, the whole S and Yv as before: X is dead
   * once S is packed, where bands keep it */
  int64_t hmin = 1;
  while (hmin < f->out[0] && hmin * f->vs[0] < 2 * VL) hmin++;
  /* the slots are the kernel's parallel iterations: a band each for every
   * core where the rows allow (an image's bands, or several images'), and
   * at least half the cores busy (two of two), else the whole planes */
  int64_t per_image = (slots + g->N - 1) / g->N, busy = slots < 2 ? slots : slots / 2 > 2 ? slots / 2 : 2;
  H = (f->out[0] + per_image - 1) / per_image;
  if (H < hmin) H = hmin;
  for (;; H--) {
    if (H < hmin) return 0;
    int64_t s = slots < g->N * ((f->out[0] + H - 1) / H) ? slots : g->N * ((f->out[0] + H - 1) / H);
    if (s < busy) return 0;
    int64_t bV = (H * f->vs[0] + VW - 1) / VW * VW, planes = esz * g->C * f->nph * (bV + maxoff);
    if (planes > L->target->l2_bytes / 2) continue;
    /* the whole S packed first, as without bands, and only the sums in
     * bands: the pack is its own loop (vectorised: the banded function's
     * tier has no loop vectoriser, and a stride-2 pack does not make runs
     * of lanes), X dead once it is done.  Where S itself does not fit,
     * each band packs its own rows. */
    if (S - yb <= room && S + s * esz * MBr * bV - xb <= room) {
      bp->whole_s = 1;
      break;
    }
    if (s * band_bytes(f, g, H, VW, MBr, maxoff, NULL) <= room) break;
  }
  H = (f->out[0] + (f->out[0] + H - 1) / H - 1) / ((f->out[0] + H - 1) / H); /* as many bands, evened out */
chosen:;
  const kiln_node *pool = kiln_lower_pool_step(n);
  if (pool) { /* whole windows a band (band_pool): H a multiple of the window's rows, never more rows */
    int64_t k[3];
    kiln_lower_pool_window(pool, k);
    if (H < k[0]) return 0;
    H -= H % k[0];
  }
  bp->H = H, bp->nb = (f->out[0] + H - 1) / H;
  bp->slots = slots < g->N * bp->nb ? slots : g->N * bp->nb;
  band_bytes(f, g, H, VW, MBr, maxoff, &bp->bV);
  return 1;
}

/* A fused pool's window (extents k) of sums in Yv from its first one at
 * src, row-major over the window: vals[e], e < taps. */
static void window_loads(kiln_lctx *L, const fconv *f, const kiln_buf *Yv, kiln_lx *src, const int64_t *k, int taps,
                         kiln_lx **vals) {
  for (int e = 0; e < taps; e++) {
    int64_t off = 0;
    for (int i = f->sp - 1, r = e; i >= 0; r /= (int)k[i], i--) off += (r % k[i]) * f->vs[i];
    vals[e] = kiln_lx_load(B, Yv, IADD(src, CI(off)));
  }
}

/* A band's pooled outputs (a fused pool, fuse_pool.c) out of the slot's
 * Yv: the band's H rows are whole windows (plan_bands makes H a multiple
 * of the window), pooled rows past the pool's last one (a short last
 * band) skipped.  Plain loops: the banded function's tier has no loop
 * vectoriser, so these run scalar, the price of the band's small Yv. */
static void band_pool(kiln_lctx *L, const kiln_node *n, const conv_geom *g, const fconv *f, const band_plan *bp,
                      int64_t mb, kiln_lx *nv, kiln_lx *m0, kiln_lx *r0, kiln_lx *ys) {
  const kiln_node *pool = kiln_lower_pool_step(n);
  const kiln_value *py = pool->out[0];
  int64_t k[3];
  int taps = 1;
  kiln_lower_pool_window(pool, k);
  for (int i = 0; i < g->sp; i++) taps *= (int)k[i];
  kiln_lx *j = IDX(kiln_lb_for(B, mb, seq_sched)), *pr = IDX(kiln_lb_for(B, bp->H / k[0], seq_sched));
  kiln_lx *p0 = IADD(BIN(DIV, r0, CI(k[0])), pr);
  int short_last = bp->nb * (bp->H / k[0]) > py->dims[2];
  if (short_last) kiln_lb_if(B, BIN(LT, p0, CI(py->dims[2])));
  kiln_lx *idx[5] = {nv, IADD(m0, j), p0};
  kiln_lx *src = IADD(IADD(ys, IMUL(j, f->V)), IMUL(pr, k[0] * f->vs[0]));
  for (int i = 1; i < g->sp; i++) {
    idx[2 + i] = IDX(kiln_lb_for(B, py->dims[2 + i], seq_sched));
    src = IADD(src, IMUL(idx[2 + i], k[i] * f->vs[i]));
  }
  kiln_lx *vals[KILN_POOL_STEP_TAPS];
  window_loads(L, f, f->y, src, k, taps, vals);
  kiln_lower_store_window(L, n, idx, vals, f->pre);
  kiln_lower_close(L, g->sp - 1 + short_last + 2);
}

static void emit_banded(kiln_lctx *L, const kiln_node *n, const conv_geom *g, fconv *f, const kiln_value *bias,
                        const band_plan *bp, int64_t maxoff) {
  int64_t MBr, VL, H = bp->H, nb = bp->nb, slots = bp->slots, bV = bp->bV, lanes = kiln_target_lanes(L->target, f->ct);
  kiln_conv_reg_shape(L->target, f->ct, g->Mg, &MBr, &VL);
  f->fma = kiln_target_has_fma(L->target) && (f->ct == KILN_DT_F32 || f->ct == KILN_DT_F64);
  if (bp->whole_s) { /* every band's rows, the last band's past the output included */
    int64_t v = (nb * H * f->vs[0] + lanes - 1) / lanes * lanes;
    f->psz = (v > f->V ? v : f->V) + maxoff;
  } else {
    f->psz = bV + maxoff;
    f->bh = H + f->Z[0] - f->out[0];
  }
  f->scs = f->nph * f->psz;
  f->V = f->ycs = bV;
  int64_t sslot = g->C * f->scs, yslot = MBr * bV, nbg = (g->Mg + MBr - 1) / MBr, nbfull = g->Mg / MBr, mtail = g->Mg % MBr;
  char name[256];
  snprintf(name, sizeof name, "%s.packed", n->out[0]->name);
  f->pk = kiln_lower_scratch(L, name, f->ct, bp->whole_s ? g->N * sslot : slots * sslot);
  if (bp->whole_s) {
    kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par_sched));
    emit_pack(L, f, g, nc);
    kiln_lb_end(B);
  }
  snprintf(name, sizeof name, "%s.virtual", n->out[0]->name);
  f->y = kiln_lower_scratch(L, name, f->ct, slots * yslot);
  f->pnode = n;
  f->pre = kiln_lower_pointwise_steps(n);

  kiln_lx *slot = IDX(kiln_lb_for(B, slots, par_sched));
  int ss = kiln_lb_decl(B, KILN_DT_I64, bp->whole_s ? CI(0) : IMUL(slot, sslot));
  int ys = kiln_lb_decl(B, KILN_DT_I64, IMUL(slot, yslot));
  if (!bp->whole_s) {
    lane_copy zero = {.dst = f->pk, .ct = f->ct, .d = LOCAL(ss)};
    lane_copies(L, &zero, sslot);
  }
  int64_t per = (g->N * nb + slots - 1) / slots; /* a slot's bands are consecutive: their rows overlap in X */
  kiln_lx *it = IADD(IMUL(slot, per), per > 1 ? IDX(kiln_lb_for(B, per, seq_sched)) : CI(0));
  int guard = per * slots != g->N * nb;
  if (guard) kiln_lb_if(B, BIN(LT, it, CI(g->N * nb)));
  int nv = kiln_lb_decl(B, KILN_DT_I64, digit(L, it, nb, g->N, 1));
  int r0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(digit(L, it, 1, nb, 0), H));
  f->b0 = LOCAL(r0);
  if (!bp->whole_s) {
    kiln_lx *c = IDX(kiln_lb_for(B, g->C, seq_sched));
    f->pbase = IADD(LOCAL(ss), IMUL(c, f->scs));
    emit_pack(L, f, g, IADD(IMUL(LOCAL(nv), g->C), c));
    kiln_lb_end(B);
  }
  /* the band's first plane row in S: its image's in the whole S */
  kiln_lx *sband = bp->whole_s ? IADD(IMUL(LOCAL(nv), g->C * f->scs), IMUL(LOCAL(r0), f->vs[0])) : LOCAL(ss);

  kiln_lx *blk = IDX(kiln_lb_for(B, g->G * nbg, seq_sched));
  kiln_lx *grp = digit(L, blk, nbg, g->G, 1);
  int bi = kiln_lb_decl(B, KILN_DT_I64, digit(L, blk, 1, nbg, 0));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(grp, g->Mg), IMUL(LOCAL(bi), MBr)));
  int sb = kiln_lb_decl(B, KILN_DT_I64, IADD(sband, IMUL(grp, g->Cg * f->scs)));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(m0), f->wcs));
  f->sbase = LOCAL(sb), f->ybase = LOCAL(ys), f->wbase = LOCAL(wb);
  for (int part = 0; part < 2; part++) {
    int rb[RB_MB_MAX];
    int64_t mb = block_part(L, f, bias, part, MBr, nbfull, mtail, bi, m0, rb);
    if (!mb) continue;
    int64_t nsub = bV / VL, vtail = bV % VL, whole = vtail / lanes * lanes;
    if (nsub) {
      kiln_lx *t = nsub > 1 ? IDX(kiln_lb_for(B, nsub, seq_sched)) : CI(0);
      emit_rtile(L, f, IMUL(t, VL), mb, VL);
      if (nsub > 1) kiln_lb_end(B);
    }
    if (whole) emit_rtile(L, f, CI(nsub * VL), mb, whole);
    if (vtail > whole) emit_rtile(L, f, CI(nsub * VL + whole), mb, vtail - whole);
    if (kiln_lower_pool_step(n)) {
      band_pool(L, n, g, f, bp, mb, LOCAL(nv), LOCAL(m0), LOCAL(r0), LOCAL(ys));
      f->rbias = NULL;
      continue;
    }
    /* the block's rows of the band out of Yv: rows past the last one of
     * dim 0 (a short last band) are sums of zeros, left there */
    kiln_lx *j = IDX(kiln_lb_for(B, mb, seq_sched)), *r = IDX(kiln_lb_for(B, H, seq_sched));
    kiln_lx *o0 = IADD(LOCAL(r0), r);
    int short_last = nb * H != f->out[0];
    if (short_last) kiln_lb_if(B, BIN(LT, o0, CI(f->out[0])));
    kiln_lx *idx[5] = {LOCAL(nv), IADD(LOCAL(m0), j), o0};
    kiln_lx *yo = IADD(IMUL(IADD(IMUL(LOCAL(nv), g->M), idx[1]), g->osz), IMUL(o0, g->ystr[0]));
    kiln_lx *src = IADD(IADD(LOCAL(ys), IMUL(j, bV)), IMUL(r, f->vs[0]));
    for (int i = 1; i < f->sp - 1; i++) {
      kiln_lx *o = idx[2 + i] = IDX(kiln_lb_for(B, f->out[i], seq_sched));
      yo = IADD(yo, IMUL(o, g->ystr[i]));
      src = IADD(src, IMUL(o, f->vs[i]));
    }
    /* the last dim's stride is 1 in Y (row-major) and in Yv */
    lane_copy out = {.src = f->y, .ct = f->ct, .d = yo, .s = src, .node = n, .idx = idx, .ilast = 1 + f->sp, .done = f->pre};
    lane_copies(L, &out, f->out[f->sp - 1]);
    kiln_lower_close(L, f->sp - 2 + short_last + 2);
    f->rbias = NULL;
  }
  if (mtail && nbfull) kiln_lb_end(B);
  kiln_lb_end(B);                      /* blocks */
  kiln_lower_close(L, guard + (per > 1)); /* the band IF, the slot's bands */
  kiln_lb_end(B);                      /* slots */
}

/* The copy out of the virtual positions: for o over the output's spatial
 * dims, Y[yo + o . ystr] = Yv[src + o . vs] through the output store (which
 * applies the epilogue steps the tiles did not: f->pre of them, the
 * pointwise ones, went on the tile's vectors before Yv; float16
 * SqueezeNet's 55x55 expand3x3 0.281 -> 0.258 ms); idx[0..1] hold n and m. */
static void store_from_virtual(kiln_lctx *L, const kiln_node *n, const conv_geom *g, const fconv *f,
                               const kiln_buf *Yv, kiln_lx **idx, kiln_lx *yo, kiln_lx *src) {
  const kiln_node *pool = kiln_lower_pool_step(n);
  if (pool) { /* a fused pool (fuse_pool.c): one pooled output per iteration, its window read from Yv */
    int64_t k[3];
    int taps = 1;
    kiln_lower_pool_window(pool, k);
    for (int i = 0; i < g->sp; i++) {
      idx[2 + i] = IDX(kiln_lb_for(B, pool->out[0]->dims[2 + i], seq_sched));
      src = IADD(src, IMUL(idx[2 + i], k[i] * f->vs[i]));
      taps *= (int)k[i];
    }
    kiln_lx *vals[KILN_POOL_STEP_TAPS];
    window_loads(L, f, Yv, src, k, taps, vals);
    kiln_lower_store_window(L, n, idx, vals, f->pre);
    kiln_lower_close(L, g->sp);
    return;
  }
  for (int i = 0; i < g->sp; i++) {
    kiln_lx *o = idx[2 + i] = IDX(kiln_lb_for(B, f->out[i], seq_sched));
    yo = IADD(yo, IMUL(o, g->ystr[i]));
    src = IADD(src, IMUL(o, f->vs[i]));
  }
  kiln_lower_store_rest(L, n, idx, yo, kiln_lx_load(B, Yv, src), f->pre);
  kiln_lower_close(L, g->sp);
}

/* 0, or -1 (nothing emitted) where n ends in a fused pool that this
 * form's store cannot pool (the strided form): kiln_lower_conv then
 * lowers it without. */
static int lower_conv_fast(kiln_lctx *L, const kiln_node *n, const conv_geom *g) {
  fconv f = {0};
  int sp = f.sp = g->sp, last = sp - 1;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.Cg = g->Cg;
  f.ksz = g->ksz;
  f.wcs = g->Cg * g->ksz;
  f.wch = g->ksz;
  /* per dim: the phases the taps use and the spread of q */
  int64_t maxoff = 0, qmax[3];
  int direct_x = 1, direct_y = 1;
  for (int i = 0; i < sp; i++) {
    f.out[i] = g->out[i], f.K[i] = g->K[i], f.s[i] = g->s[i], f.d[i] = g->d[i], f.p[i] = g->pb[i];
    f.kstr[i] = g->kstr[i];
    for (int r = 0; r < S_MAX; r++) f.rof[i][r] = -1;
    for (int64_t k = 0; k < f.K[i]; k++) {
      int64_t a = k * f.d[i] - f.p[i], q = floordiv(a, f.s[i]);
      f.rof[i][a - q * f.s[i]] = 0;
      if (k == 0 || q < f.qmin[i]) f.qmin[i] = q;
      if (k == 0 || q > qmax[i]) qmax[i] = q;
    }
    for (int r = 0; r < f.s[i]; r++)
      if (f.rof[i][r] == 0) f.rof[i][r] = (int)f.nr[i]++;
      else f.rof[i][r] = -1;
    f.Z[i] = f.out[i] + qmax[i] - f.qmin[i];
    direct_x = direct_x && f.K[i] == 1 && f.p[i] == 0 && f.s[i] == 1 && g->in[i] == f.out[i] &&
               n->in[0]->dtype == f.ct;
    direct_y = direct_y && (i == 0 || f.Z[i] == f.out[i]);
  }
  for (int i = last; i >= 0; i--) {
    f.vs[i] = i == last ? 1 : f.vs[i + 1] * f.Z[i + 1];
    f.pst[i] = i == last ? 1 : f.pst[i + 1] * f.nr[i + 1];
    maxoff += (qmax[i] - f.qmin[i]) * f.vs[i];
  }
  f.nph = f.pst[0] * f.nr[0];
  f.MB = 1;
  for (int64_t mb = MB_MAX; mb > 1; mb /= 2)
    if (g->Mg % mb == 0) { f.MB = mb; break; }
  /* f16/bf16 outputs sum in an f32 Yv, never in their own storage */
  if (kiln_lower_ctype(n->out[0]->dtype) != n->out[0]->dtype) direct_y = 0;
  int epi = kiln_lower_has_epilogue(n);
  const int64_t VW = kiln_target_lanes(L->target, f.ct);
  int single = g->Cg * g->ksz <= (g->Mg == 1 ? SINGLE_MAX : 1);
  int64_t OW = f.out[last], owr = (OW + VW - 1) / VW * VW, R = g->osz / OW;
  int rows = single && !direct_y && OW >= VW && f.ct == n->out[0]->dtype && !epi;
  /* the register path (above) when each output sums RB_MIN_TERMS products
   * or more: with fewer, initialising and storing a tile of sums weighs as
   * much as the products, and the in-Yv path makes as few passes */
  int reg = !single && g->Cg * g->ksz >= RB_MIN_TERMS;
  /* an epilogue is applied once per element: by the register tile's final
   * store when it writes Y (its sums are whole there), else in the pass
   * out of Yv (the in-Yv path stores partial sums) */
  if (epi && !reg) direct_y = 0;
  /* a fused pool reads whole windows: from Yv, in the pass out of it */
  const kiln_node *pool = kiln_lower_pool_step(n);
  if (pool) direct_y = 0;
  int64_t nfull = owr == OW ? R : R - 1;
  /* virtual positions: all of them rounded up to VW (exactly the outputs
   * when y is Y); in rows mode the padded rows read up to VW further */
  f.V = direct_y || direct_x ? g->osz : (f.out[0] * f.vs[0] + VW - 1) / VW * VW;
  if (rows) f.V = f.out[0] * f.vs[0] + owr;
  f.psz = f.V + maxoff;
  const kiln_buf *X = kiln_lower_buf(L, n->in[0]), *Y = kiln_lower_buf(L, n->out[0]);
  f.x = X;
  f.w = kiln_lower_weight_ct(L, n->in[1]);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  band_plan bp = {0};
  if (reg && !direct_x && plan_bands(L, n, &f, g, maxoff, VW, direct_y, &bp)) {
    kiln_lower_begin(L, n);
    kiln_lower_schedule(L, "direct, register tiles of sums, in bands of %lld rows%s", (long long)bp.H,
                        bp.whole_s ? " over zero-padded phase planes" : " each packing its phase planes");
    emit_banded(L, n, g, &f, bias, &bp, maxoff);
    return 0;
  }
  /* lean_memory: where the phase planes fit neither whole nor in bands,
   * a strided convolution reads X in place (lower_conv_strided.c),
   * slower than these tiles (ResNet-50's layer2.0.conv2 2.4-2.7 -> 3.8-4.1
   * ms, one Zen 5 core) but with a row of sums a core for scratch */
  if (reg && !direct_x && (L->target->lean_memory || getenv("KILN_STRIDED")) &&
      kiln_conv_strided_wanted(L, n, g, whole_planes_fit(L, n, &f, g, direct_y))) {
    if (pool) return -1;
    kiln_lower_conv_strided(L, n, g);
    return 0;
  }
  /* a block that owns its input channels (a whole group: depthwise) packs
   * them itself, sparing the pass over all channels before the blocks */
  int own = !reg && !direct_x && f.MB == g->Mg && g->G > 1;
  char name[256];
  kiln_lower_begin(L, n);
  kiln_lower_schedule(L, "direct, %s%s", reg ? "register tiles of sums" : "sums kept in the output",
                      direct_x ? ", reading X in place" : ", over zero-padded phase planes");

  if (direct_x) {
    f.pk = X;
    f.scs = g->isz;
  } else {
    snprintf(name, sizeof name, "%s.packed", n->out[0]->name);
    f.scs = f.nph * f.psz;
    f.pk = kiln_lower_scratch(L, name, f.ct, g->N * g->C * f.scs);
    if (!own) {
      kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par_sched));
      emit_pack(L, &f, g, nc);
      kiln_lb_end(B);
    }
  }
  const kiln_buf *Yv = Y;
  f.ycs = g->osz;
  if (!direct_y && !rows) {
    snprintf(name, sizeof name, "%s.virtual", n->out[0]->name);
    f.ycs = f.V;
    Yv = kiln_lower_scratch(L, name, f.ct, g->N * g->M * f.V);
  }
  f.y = Yv;
  if (reg && Yv == Y) { /* each output stored once, by its tile (plan_inplace.c) */
    f.enode = n;
    L->b.k->stores_once = kiln_lower_buf(L, kiln_lower_result(n, 0));
  } else if (reg) { /* Relu, rounding...: on the tile's vectors, not in the pass out of Yv */
    f.pnode = n;
    f.pre = kiln_lower_pointwise_steps(n);
  }
  if (reg) {
    emit_reg_blocks(L, n, &f, g, bias);
    if (Yv != Y) { /* the outputs out of Yv, one (n, m) plane per iteration */
      kiln_lx *nm = IDX(kiln_lb_for(B, g->N * g->M, par_sched));
      kiln_lx *idx[5] = {digit(L, nm, g->M, g->N, 1), digit(L, nm, 1, g->M, 0)};
      kiln_lx *yo = IMUL(nm, g->osz), *src = IMUL(nm, f.V);
      store_from_virtual(L, n, g, &f, Yv, idx, yo, src);
      kiln_lower_close(L, 1);
    }
    return 0;
  }

  int64_t nb = g->M / f.MB;
  kiln_lx *blk = IDX(kiln_lb_for(B, g->N * nb, par_sched));
  int nv = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? blk : BIN(DIV, blk, CI(nb)));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? CI(0) : IMUL(BIN(REM, blk, CI(nb)), f.MB));
  kiln_lx *grp = g->G == 1 ? CI(0) : BIN(DIV, LOCAL(m0), CI(g->Mg));
  int c0 = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(LOCAL(nv), g->C), IMUL(grp, g->Cg)));
  int sb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(c0), f.scs));
  int yb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), f.ycs));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(m0), f.wcs));
  f.sbase = LOCAL(sb);
  f.ybase = LOCAL(yb);
  f.wbase = LOCAL(wb);
  for (int j = 0; j < f.MB; j++)
    f.bias[j] = kiln_lb_decl(B, f.ct, bias ? kiln_lower_load(L, kiln_lower_weight_ct(L, bias), IADD(LOCAL(m0), CI(j)))
                                           : kiln_lx_const_f(B, f.ct, 0));
  if (own) {
    kiln_lx *c = g->Cg == 1 ? CI(0) : IDX(kiln_lb_for(B, g->Cg, seq_sched));
    emit_pack(L, &f, g, IADD(LOCAL(c0), c));
    if (g->Cg > 1) kiln_lb_end(B);
  }
  if (rows) {
    /* row r (the outer output indices, row-major) starts at v = sum o_i*vs_i */
    if (nfull > 0) {
      kiln_lx *r = nfull > 1 ? IDX(kiln_lb_for(B, nfull, seq_sched)) : CI(0), *s0 = CI(0);
      for (int i = 0; i < last; i++) {
        int64_t rs = 1;
        for (int k = i + 1; k < last; k++) rs *= f.out[k];
        kiln_lx *oi = i == 0 ? BIN(DIV, r, CI(rs)) : BIN(REM, BIN(DIV, r, CI(rs)), CI(f.out[i]));
        s0 = IADD(s0, IMUL(r->kind == KILN_LX_CONST ? CI(0) : oi, f.vs[i]));
      }
      emit_tile(L, &f, single, s0, IMUL(r, OW), owr);
      if (nfull > 1) kiln_lb_end(B);
    }
    if (nfull < R) {
      int64_t s0 = 0;
      for (int i = 0; i < last; i++) s0 += (f.out[i] - 1) * f.vs[i];
      emit_tile(L, &f, single, CI(s0), CI((R - 1) * OW), OW);
    }
  } else {
    int64_t t = tile_len(f.V, VW, tile_max(L->target)), ntile = f.V / t, trem = f.V % t;
    kiln_lx *v0 = ntile > 1 ? IMUL(IDX(kiln_lb_for(B, ntile, seq_sched)), t) : CI(0);
    emit_tile(L, &f, single, v0, v0, t);
    if (ntile > 1) kiln_lb_end(B);
    if (trem) emit_tile(L, &f, single, CI(ntile * t), CI(ntile * t), trem);
  }
  if (Yv != Y) { /* the block's outputs out of Yv */
    kiln_lx *j = IDX(kiln_lb_for(B, f.MB, seq_sched));
    kiln_lx *yo = IMUL(IADD(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), j), g->osz);
    kiln_lx *src = IADD(LOCAL(yb), IMUL(j, f.V));
    kiln_lx *idx[5] = {LOCAL(nv), IADD(LOCAL(m0), j)};
    store_from_virtual(L, n, g, &f, Yv, idx, yo, src);
    kiln_lower_close(L, 1);
  }
  kiln_lb_end(B);
  return 0;
}

/* ---- ConvTranspose fast path: f32/f64 output, 1 to 3 spatial dims ----
 *
 * Output phases.  Output o = s*u + r receives tap k from input
 * i = (o + p - k*d) / s when that divides exactly, that is from the taps
 * with (r + p - k*d) = 0 mod s, at i = u + q, q = (r + p - k*d) / s.  So
 * each output phase r is a stride-1 correlation of X with its own taps:
 * X is packed zero-padded into S (extent max_r U_r + the spread of q, as
 * for Conv), each phase's products are summed over virtual positions v
 * into its part of Yv exactly as lower_conv_fast does (MB output channels,
 * CB input channels per vector loop), and the phase's outputs are then
 * scattered into Y at s*u + r.  (Kernel == stride with no pads, U-Net's
 * 2x2 upsampling, is one transposed GEMM instead: lower_conv_gemmt.c.) */
enum { CT_TAPS = 64 };

/* Adds channels of blocks of CB, for each of the nt static taps (W offset
 * tw, S offset ts), over `len` positions. */
static void emit_tap_list(kiln_lctx *L, const fconv *f, int nt, const int64_t *tw, const int64_t *ts, kiln_lx *s0,
                          kiln_lx *y0, int64_t len) {
  int64_t nblk = f->Cg / T_CH, rem = f->Cg % T_CH;
  for (int part = 0; part < 2; part++) {
    int64_t cb = part == 0 ? T_CH : rem;
    if (part == 0 ? nblk == 0 : rem == 0) continue;
    kiln_lx *c0 = part == 1 ? CI(nblk * T_CH) : nblk == 1 ? CI(0) : IMUL(IDX(kiln_lb_for(B, nblk, seq_sched)), T_CH);
    for (int t = 0; t < nt; t++) {
      kiln_lx *ow[T_CH], *os[T_CH];
      for (int64_t c = 0; c < cb; c++) {
        ow[c] = IADD(IMUL(IADD(c0, CI(c)), f->wch), CI(tw[t]));
        os[c] = IADD(IMUL(IADD(c0, CI(c)), f->scs), CI(ts[t]));
      }
      emit_sum(L, f, (int)cb, ow, os, s0, y0, len, 0);
    }
    if (part == 0 && nblk > 1) kiln_lb_end(B);
  }
}

/* Returns 0, or -1 when the shape is outside what this path handles. */
static int lower_convt_fast(kiln_lctx *L, const kiln_node *n, const conv_geom *g) {
  fconv f = {0};
  int sp = f.sp = g->sp, last = sp - 1;
  int64_t so[3], U[3], Ur[3][S_MAX], nt[3][S_MAX], tk[3][S_MAX][CT_TAPS], tq[3][S_MAX][CT_TAPS], qmax[3];
  int any[3] = {0, 0, 0};
  int64_t taps_max = 1;  /* bound on one phase's taps */
  for (int i = 0; i < sp; i++) {
    so[i] = g->s[i];
    if (so[i] > S_MAX || g->K[i] > CT_TAPS) return -1;
    U[i] = (g->out[i] + so[i] - 1) / so[i];
    for (int64_t r = 0; r < so[i]; r++) {
      Ur[i][r] = r < g->out[i] ? (g->out[i] - r + so[i] - 1) / so[i] : 0;
      nt[i][r] = 0;
      for (int64_t k = 0; k < g->K[i]; k++) {
        int64_t a = r + g->pb[i] - k * g->d[i], q = floordiv(a, so[i]);
        if (a != q * so[i]) continue;
        tk[i][r][nt[i][r]] = k;
        tq[i][r][nt[i][r]++] = q;
        if (!any[i] || q < f.qmin[i]) f.qmin[i] = q;
        if (!any[i] || q > qmax[i]) qmax[i] = q;
        any[i] = 1;
      }
    }
    if (!any[i]) f.qmin[i] = qmax[i] = 0;
    int64_t most = 0;
    for (int64_t r = 0; r < so[i]; r++) most = nt[i][r] > most ? nt[i][r] : most;
    taps_max *= most;
    /* S: one phase, stride 1, extent U plus the spread of q */
    f.out[i] = U[i], f.K[i] = 1, f.s[i] = 1, f.d[i] = 1, f.p[i] = 0, f.kstr[i] = g->kstr[i];
    f.Z[i] = U[i] + qmax[i] - f.qmin[i];
    f.nr[i] = 1;
    f.rof[i][0] = 0;
  }
  if (taps_max > CT_TAPS) return -1;
  int64_t maxoff = 0, nphase = 1;
  for (int i = last; i >= 0; i--) {
    f.vs[i] = i == last ? 1 : f.vs[i + 1] * f.Z[i + 1];
    f.pst[i] = 1;
    maxoff += (qmax[i] - f.qmin[i]) * f.vs[i];
    nphase *= so[i];
  }
  f.nph = 1;
  f.ct = kiln_lower_ctype(n->out[0]->dtype);
  f.Cg = g->Cg;
  f.ksz = g->ksz;
  f.wch = g->Mg * g->ksz;  /* W is C x M/group x K */
  f.wcs = g->ksz;
  f.MB = 1;
  for (int64_t mb = MB_MAX; mb > 1; mb /= 2)
    if (g->Mg % mb == 0) { f.MB = mb; break; }
  const int64_t VW = kiln_target_lanes(L->target, f.ct);
  f.V = (U[0] * f.vs[0] + VW - 1) / VW * VW;
  f.psz = f.V + maxoff;
  const kiln_buf *X = kiln_lower_buf(L, n->in[0]);
  f.x = X;
  f.w = kiln_lower_weight_ct(L, n->in[1]);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  char name[256];
  kiln_lower_begin(L, n);

  snprintf(name, sizeof name, "%s.packed", n->out[0]->name);
  f.scs = f.psz;
  f.pk = kiln_lower_scratch(L, name, f.ct, g->N * g->C * f.scs);
  kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par_sched));
  emit_pack(L, &f, g, nc);
  kiln_lb_end(B);
  snprintf(name, sizeof name, "%s.virtual", n->out[0]->name);
  f.ycs = nphase * f.V;
  f.y = kiln_lower_scratch(L, name, f.ct, g->N * g->M * f.ycs);

  int64_t nb = g->M / f.MB;
  kiln_lx *blk = IDX(kiln_lb_for(B, g->N * nb, par_sched));
  int nv = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? blk : BIN(DIV, blk, CI(nb)));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, nb == 1 ? CI(0) : IMUL(BIN(REM, blk, CI(nb)), f.MB));
  kiln_lx *grp = g->G == 1 ? CI(0) : BIN(DIV, LOCAL(m0), CI(g->Mg));
  kiln_lx *mg = g->G == 1 ? LOCAL(m0) : BIN(REM, LOCAL(m0), CI(g->Mg));
  int sb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->C), IMUL(grp, g->Cg)), f.scs));
  int yb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), f.ycs));
  int wb = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(grp, g->Cg * g->Mg), mg), g->ksz));
  f.sbase = LOCAL(sb);
  f.ybase = LOCAL(yb);
  f.wbase = LOCAL(wb);
  for (int j = 0; j < f.MB; j++)
    f.bias[j] = kiln_lb_decl(B, f.ct, bias ? kiln_lower_load(L, kiln_lower_weight_ct(L, bias), IADD(LOCAL(m0), CI(j)))
                                           : kiln_lx_const_f(B, f.ct, 0));
  int64_t t = tile_len(f.V, VW, tile_max(L->target)), ntile = f.V / t, trem = f.V % t;
  for (int64_t ph = 0; ph < nphase; ph++) {
    int64_t r[3], rest = ph, count = 1;
    for (int i = last; i >= 0; i--) {
      r[i] = rest % so[i];
      rest /= so[i];
      count *= Ur[i][r[i]];
    }
    if (count == 0) continue;
    /* the phase's taps: products of the per-dim lists */
    int64_t tw[CT_TAPS], ts[CT_TAPS], ntap = 1;
    for (int i = 0; i < sp; i++) ntap *= nt[i][r[i]];
    for (int64_t a = 0; a < ntap; a++) {
      int64_t rest2 = a;
      tw[a] = ts[a] = 0;
      for (int i = last; i >= 0; i--) {
        int64_t e = rest2 % nt[i][r[i]];
        rest2 /= nt[i][r[i]];
        tw[a] += tk[i][r[i]][e] * g->kstr[i];
        ts[a] += (tq[i][r[i]][e] - f.qmin[i]) * f.vs[i];
      }
    }
    for (int part = 0; part < 2; part++) {
      int64_t len = part == 0 ? t : trem;
      if (!len) continue;
      kiln_lx *v0 = part == 1 ? CI(ntile * t) : ntile > 1 ? IMUL(IDX(kiln_lb_for(B, ntile, seq_sched)), t) : CI(0);
      kiln_lx *y0 = IADD(v0, CI(ph * f.V));
      kiln_lx *v = IDX(kiln_lb_for(B, len, seq_sched));
      for (int j = 0; j < f.MB; j++)
        kiln_lb_store(B, f.y, IADD(IADD(IADD(f.ybase, CI(j * f.ycs)), y0), v), LOCAL(f.bias[j]));
      kiln_lb_end(B);
      emit_tap_list(L, &f, (int)ntap, tw, ts, v0, y0, len);
      if (part == 0 && ntile > 1) kiln_lb_end(B);
    }
    /* scatter: Y[.., s*u + r] = Yv[.., ph, v(u)] */
    kiln_lx *j = IDX(kiln_lb_for(B, f.MB, seq_sched));
    kiln_lx *yo = IMUL(IADD(IADD(IMUL(LOCAL(nv), g->M), LOCAL(m0)), j), g->osz);
    kiln_lx *src = IADD(IADD(LOCAL(yb), IMUL(j, f.ycs)), CI(ph * f.V));
    kiln_lx *idx[5] = {LOCAL(nv), IADD(LOCAL(m0), j)};
    for (int i = 0; i < sp; i++) {
      kiln_lx *u = IDX(kiln_lb_for(B, Ur[i][r[i]], seq_sched));
      yo = IADD(yo, IMUL(idx[2 + i] = IADD(IMUL(u, so[i]), CI(r[i])), g->ystr[i]));
      src = IADD(src, IMUL(u, f.vs[i]));
    }
    kiln_lower_store(L, n, 0, idx, yo, kiln_lx_load(B, f.y, src));
    kiln_lower_close(L, sp + 1);
  }
  kiln_lb_end(B);
  return 0;
}

/* n, whose epilogue ends in a pool its schedule cannot pool, as if
 * unfused: the Conv and the rest of its epilogue storing the pool's input
 * (a buffer of its own), then the pool's own kernel.  The epilogue loses
 * its last step for the Conv's lowering only. */
static int lower_without_pool(kiln_lctx *L, const kiln_node *n) {
  kiln_node *c = (kiln_node *)n;
  const kiln_node *pool = c->epi.steps[c->epi.nsteps - 1];
  c->epi.nsteps--;
  int rc = kiln_lower_conv(L, c);
  c->epi.nsteps++;
  return rc ? rc : kiln_op_get(pool->op)->lower(L, pool);
}

/* Conv: Y[n, m, o] = B[m] + sum_{k, c} X[n, grp*Cg + c, o*s - pb + k*d] * W[m, c, k]
 * with grp = m / (M/group). */
int kiln_lower_conv(kiln_lctx *L, const kiln_node *n) {
  conv_geom g;
  if (conv_setup(L, n, &g)) return -1;
  if (n->in[1]->dims[1] != g.Cg || n->in[1]->dims[0] != g.M)
    return kiln_lower_fail(L, n, "W does not match X, Y and group (run shape inference first)");
  /* a fused GlobalAveragePool (fuse_pool.c): the transposed GEMM sums it
   * from its scratch where it takes the Conv (1: declined, nothing
   * emitted); every other schedule stores the Conv and pools after */
  const kiln_node *pool = kiln_lower_pool_step(n);
  if (pool && kiln_pool_is_gap(pool)) {
    int gemmt = n->in[0]->layout == KILN_LAYOUT_PLAIN && kiln_conv_gemmt_wanted(L, n, &g);
    int rc = gemmt ? kiln_lower_conv_gemmt(L, n, &g) : 1;
    return rc == 1 ? lower_without_pool(L, n) : rc;
  }
  /* Winograd for the 3x3 stride-1 layers it takes (lower_conv_winograd.c),
   * then the GEMM schedules, for the shapes their rules name (conv_def.h):
   * convolutions on maps up to 13x13 (lower_conv_gemmt.c), 3x3 stems and 1x1 with
   * 8..31 input channels (lower_conv_im2col.c) */
  /* blocked X or result (layout_nchwc.c): the one schedule that takes them */
  if (n->in[0]->layout != KILN_LAYOUT_PLAIN || kiln_lower_result(n, 0)->layout != KILN_LAYOUT_PLAIN)
    return kiln_lower_conv_strided(L, n, &g);
  int wg = kiln_lower_conv_winograd(L, n, &g);
  if (!wg) return 0;
  /* a fused pool (fuse_pool.c) the schedule cannot pool: without it
   * (the depthwise form takes every one-channel group, grouped or not) */
  if (pool && (wg == 1 || g.G > 1 || g.Cg == 1 || kiln_conv_gemmt_wanted(L, n, &g) ||
               kiln_conv_im2col_wanted(&g, kiln_lower_ctype(n->out[0]->dtype))))
    return lower_without_pool(L, n);
  if (kiln_conv_gemmt_wanted(L, n, &g)) return kiln_lower_conv_gemmt(L, n, &g);
  if (kiln_conv_im2col_wanted(&g, kiln_lower_ctype(n->out[0]->dtype))) return kiln_lower_conv_im2col(L, n, &g);
  /* depthwise after them: a one-channel Conv (group == C == 1) with several
   * outputs is a GEMM's shape (the im2col rule takes it) */
  if (!kiln_lower_conv_dw(L, n, &g)) return 0; /* depthwise: lower_conv_dw.c */
  if (g.s[0] <= S_MAX && g.s[g.sp - 1] <= S_MAX && g.s[g.sp > 2 ? 1 : 0] <= S_MAX)
    return lower_conv_fast(L, n, &g) && pool ? lower_without_pool(L, n) : 0;
  if (pool) return lower_without_pool(L, n);
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
  close_outputs(L, n, &g, nm, nv, mv, o, acc);
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
  /* a shape the fast path declines has emitted nothing yet */
  int nk = L->b.p->nkernels;
  /* a GPU target takes the gather below: one output per thread once
   * schedule_gpu maps the plane and output loops (the fast path's phase
   * loops are a CPU schedule: a few coarse parallel iterations) */
  if (kiln_convt_gemmt_wanted(L, n, &g)) return kiln_lower_convt_gemmt(L, n, &g);
  if (L->target->kind != KILN_TARGET_GPU && !lower_convt_fast(L, n, &g)) return 0;
  KILN_ASSERT(L->b.p->nkernels == nk);
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
  close_outputs(L, n, &g, nm, nv, mv, o, acc);
  return 0;
}
