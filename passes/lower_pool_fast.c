/* MaxPool / AveragePool by static regions: the fast form of lower_pool.c.
 *
 * Along each spatial dim the outputs split into a left border (windows
 * that start in the padding), an interior (every tap inside the input)
 * and a right border (windows that end in the padding or, with
 * ceil_mode, past it).  Which taps of a border output are inside is known
 * at compile time, so each border output is emitted on its own with
 * exactly its taps, and the interior as one loop with every tap: no
 * bounds check anywhere, and the AveragePool divisor of every region is a
 * constant.  The window is unrolled in the loop IR (a chain of locals,
 * in the generic form's tap order), so the innermost loop is the output
 * width with a straight-line body and contiguous stores, which the
 * backends' loop vectorisers widen (a stride-s load becomes an
 * interleaved load, no per-element gather of indices):
 *
 *   for nc in N*C (parallel)            one (batch, channel) plane
 *     [dim 0: border o0 = 0 ..] [for o0 in interior (parallel)] [border ..]
 *       [dim 1: the same] ...
 *         acc = X[tap 0]; acc = max_nan(acc, X[tap 1]) | acc + X[tap 1] ...
 *         Y[...] = acc (/ count, a constant per region)
 *
 * Stride-1 2-D windows over rows as wide as the input's (3x3 pad 1) do
 * their interior rows as one flat loop first (emit_flat: rows of 14 do not
 * fill a 16-lane vector; GoogLeNet's branch pools at 14x14 0.25 -> 0.10 ms).
 * Strided 2-D windows over short rows go by scratch instead: max pools
 * separably over small planes (emit_separable), the rest row by row at
 * every input column (emit_strided).  Max rows strided 2 that neither
 * takes, of one to two vectors of interior outputs or with border columns,
 * are written in groups of the target's lanes for the LLVM lane printer
 * (emit_lane_groups: GoogLeNet's and ResNet's 112 -> 56 pools).
 *
 * Taken only when that stays small: no Indices output (lower_pool.c keeps
 * the explicit (value, index) update), at most MAX_TAPS taps per window,
 * at most MAX_BORDER border outputs per dim, at most MAX_CODE taps emitted
 * over all regions together, and an AveragePool window
 * short enough for a float32 sum (kiln_sum_dtype: the long ones are
 * lower_pool.c's accurate sums).  Results equal the generic form's: the
 * same taps combined in the same order in the same type; padding never
 * wins a max nor adds to a sum; a NaN in a window gives NaN (a max: the
 * default quiet NaN, not the tap's payload). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower.h"

#include "lower_macros.h"

enum {
  MAX_TAPS = 64,  /* window taps unrolled per output */
  MAX_BORDER = 4, /* border outputs emitted one by one, per dim */
  MAX_CODE = 2048, /* taps emitted over all regions (compile time) */
  MAX_SP = 3
};

typedef struct pool_geom {
  const kiln_node *n;
  const kiln_buf *X;
  kiln_dtype ct;
  int sp, is_max, include_pad;
  int64_t in[MAX_SP], out[MAX_SP], K[MAX_SP], s[MAX_SP], d[MAX_SP], pb[MAX_SP], pe[MAX_SP];
  int64_t lo[MAX_SP], hi[MAX_SP]; /* interior outputs [lo, hi) per dim */
  int64_t xstr[MAX_SP], ystr[MAX_SP], isz, osz;
  int flat; /* the interior rows were computed flat (emit_flat): only their border columns are left */
  int64_t lanes; /* > 1: the last dim's interior in groups of this many outputs (emit_lane_groups) */
} pool_geom;

/* Taps of dim i for output o (-1: the interior, all of them) that read
 * inside the input: k with 0 <= o*s - pb + k*d < in; the count, with taps[]
 * filled.  *counted gets the AveragePool divisor's share: the taps inside
 * [0, in) or, with count_include_pad, inside [-pb, in + pe). */
static int dim_taps(const pool_geom *G, int i, int64_t o, int64_t *taps, int64_t *counted) {
  int nt = 0;
  int64_t c = 0;
  for (int64_t k = 0; k < G->K[i]; k++) {
    if (o < 0) {
      taps[nt++] = k;
      c++;
      continue;
    }
    int64_t pos = o * G->s[i] - G->pb[i] + k * G->d[i];
    if (pos >= 0 && pos < G->in[i]) taps[nt++] = k;
    int64_t lo = G->include_pad ? -G->pb[i] : 0, hi = G->include_pad ? G->in[i] + G->pe[i] : G->in[i];
    if (pos >= lo && pos < hi) c++;
  }
  *counted = c;
  return nt;
}

/* The taps at X offsets off[0..total), in that order (the generic form's
 * row-major tap order), combined into one value: the max or the sum (the
 * caller divides). */
static kiln_lx *combine_taps(kiln_lctx *L, const pool_geom *G, const kiln_buf *X, kiln_lx **off, int64_t total) {
  kiln_lx *r;
  if (total == 0) { /* every tap in the padding: the reduction's identity, as the generic form */
    r = G->is_max ? kiln_lx_reduce_identity(B, KILN_RED_MAX_NAN, G->ct) : kiln_lx_const_f(B, G->ct, 0);
  } else {
    /* a float max: the plain max (a select the backends print as one
     * vmaxps, keeping acc when either is NaN) and, beside it, whether any
     * tap was NaN (one unordered compare per pair of taps once LLVM folds
     * the ORs): half the operations of max_nan's compare, NaN test, OR and
     * select per tap; the windows of 3x3 pools are that long chain */
    int split = G->is_max && kiln_dtype_is_float(G->ct) && total > 1;
    int acc = -1, nan = -1;
    for (int64_t t = 0; t < total; t++) {
      kiln_lx *v = kiln_lx_cast(B, G->ct, kiln_lx_load(B, X, off[t]));
      if (G->is_max && (acc >= 0 || split)) v = kiln_lx_local(B, kiln_lb_decl(B, G->ct, v)); /* read twice */
      if (split) {
        kiln_lx *isnan = kiln_lx_un(B, KILN_UN_ISNAN, v);
        if (nan < 0) nan = kiln_lb_decl(B, isnan->dtype, isnan);
        else kiln_lb_assign(B, nan, kiln_lx_bin(B, KILN_BIN_OR, kiln_lx_local(B, nan), isnan));
      }
      if (acc < 0) {
        acc = kiln_lb_decl(B, G->ct, v);
        continue;
      }
      kiln_lx *a = kiln_lx_local(B, acc);
      kiln_lx *next = split        ? kiln_lx_select(B, kiln_lx_bin(B, KILN_BIN_LT, a, v), v, a)
                      : G->is_max ? kiln_lower_max_nan(L, 1, a, v)
                                  : kiln_lx_bin(B, KILN_BIN_ADD, a, v);
      kiln_lb_assign(B, acc, next);
    }
    r = kiln_lx_local(B, acc);
    if (split) r = kiln_lx_select(B, kiln_lx_local(B, nan), kiln_lx_const_f(B, G->ct, NAN), r);
  }
  return r;
}

/* X's offsets of every combination of the dims' taps for the output at
 * o, in row-major tap order (the generic form's); their count. */
static int64_t tap_offsets(kiln_lctx *L, const pool_geom *G, kiln_lx *nc, kiln_lx **o, int64_t (*taps)[64], int *nt,
                           kiln_lx **off) {
  int64_t total = 1;
  for (int i = 0; i < G->sp; i++) total *= nt[i];
  for (int64_t t = 0; t < total; t++) {
    int64_t rest = t, kk[MAX_SP];
    for (int i = G->sp - 1; i >= 0; i--) {
      kk[i] = taps[i][rest % nt[i]];
      rest /= nt[i];
    }
    off[t] = IMUL(nc, G->isz);
    for (int i = 0; i < G->sp; i++)
      off[t] = IADD(off[t], IMUL(IADD(IMUL(o[i], G->s[i]), CI(kk[i] * G->d[i] - G->pb[i])), G->xstr[i]));
  }
  return total;
}

/* The innermost body: every combination of the dims' taps, in row-major
 * tap order (the generic form's), combined into one value and stored. */
static void emit_body(kiln_lctx *L, const pool_geom *G, kiln_lx *nc, kiln_lx **o, int64_t (*taps)[64], int *nt,
                      int64_t count) {
  kiln_lx *off[MAX_TAPS];
  int64_t total = tap_offsets(L, G, nc, o, taps, nt, off);
  kiln_lx *r = combine_taps(L, G, G->X, off, total);
  if (!G->is_max) r = kiln_lx_bin(B, KILN_BIN_DIV, r, kiln_lx_const_f(B, G->ct, (double)count));
  kiln_lx *yoff = IMUL(nc, G->osz);
  for (int i = 0; i < G->sp; i++) yoff = IADD(yoff, IMUL(o[i], G->ystr[i]));
  kiln_lower_store_flat(L, G->n, 0, yoff, r);
}

/* W outputs of the last dim at once, o[sp-1] the first (all interior
 * columns), as W statements per step, one per lane, in the order the LLVM
 * lane printer (backends/llvm/llvm_lanes.c) prints as one vector
 * statement: per tap W loads into consecutive locals (the taps of a
 * stride-2 window, every other element: one load of twice the lanes and a
 * shuffle), the max as W selects per tap, and W stores.  The loop
 * vectoriser, given these rows as a loop of single outputs, took the three
 * taps of a stride-2 row as one interleaved pair and one gather of scalar
 * loads (GoogLeNet's 112x112 -> 56x56 pool, ceil_mode: 0.146 ms; the same
 * pool with pad 1 paired its taps the other way round and ran in 0.064).
 * The values are combine_taps' split form's: the same compares and
 * selects in the same tap order, NaN (the default one) when any tap is. */
static void emit_lane_body(kiln_lctx *L, const pool_geom *G, kiln_lx *nc, kiln_lx **o, int64_t (*taps)[64], int *nt,
                           int64_t w) {
  int64_t last = G->sp - 1;
  kiln_lx *off[MAX_TAPS];
  int64_t total = tap_offsets(L, G, nc, o, taps, nt, off);
  int v[MAX_TAPS];
  for (int64_t t = 0; t < total; t++) {
    for (int64_t j = 0; j < w; j++) {
      int var = kiln_lb_decl(B, G->ct, kiln_lx_load(B, G->X, IADD(off[t], CI(j * G->s[last]))));
      if (j == 0) v[t] = var;
    }
  }
  int acc = -1;
  for (int64_t j = 0; j < w; j++) {
    int var = kiln_lb_decl(B, G->ct, LOCAL(v[0] + (int)j));
    if (j == 0) acc = var;
  }
  for (int64_t t = 1; t < total; t++)
    for (int64_t j = 0; j < w; j++) {
      kiln_lx *a = LOCAL(acc + (int)j), *x = LOCAL(v[t] + (int)j);
      kiln_lb_assign(B, acc + (int)j, kiln_lx_select(B, BIN(LT, a, x), x, a));
    }
  kiln_lx *yoff = IMUL(nc, G->osz);
  for (int i = 0; i < G->sp; i++) yoff = IADD(yoff, IMUL(o[i], G->ystr[i]));
  for (int64_t j = 0; j < w; j++) {
    kiln_lx *nan = kiln_lx_un(B, KILN_UN_ISNAN, LOCAL(v[0] + (int)j));
    for (int64_t t = 1; t < total; t++) nan = BIN(OR, nan, kiln_lx_un(B, KILN_UN_ISNAN, LOCAL(v[t] + (int)j)));
    kiln_lx *r = kiln_lx_select(B, nan, kiln_lx_const_f(B, G->ct, NAN), LOCAL(acc + (int)j));
    kiln_lower_store_flat(L, G->n, 0, IADD(yoff, CI(j)), r);
  }
}

/* The last dim's interior [lo, hi) in groups of G->lanes outputs; when
 * they are not whole groups, one more group over the last lanes,
 * overlapping the one before (it stores the same values again). */
static void emit_lane_groups(kiln_lctx *L, const pool_geom *G, kiln_lx *nc, kiln_lx **o, int64_t (*taps)[64], int *nt) {
  int last = G->sp - 1;
  int64_t w = G->lanes, n = G->hi[last] - G->lo[last], groups = n / w;
  o[last] = IADD(IMUL(IDX(kiln_lb_for(B, groups, (kiln_sched){0})), w), CI(G->lo[last]));
  emit_lane_body(L, G, nc, o, taps, nt, w);
  kiln_lb_end(B);
  if (n > groups * w) {
    o[last] = CI(G->hi[last] - w);
    emit_lane_body(L, G, nc, o, taps, nt, w);
  }
}

/* Dim i and the ones after it: border outputs one by one, the interior as
 * a loop.  inner: every dim before i is in its interior (with G->flat, the
 * last dim's interior is then done already). */
static void emit_dim(kiln_lctx *L, const pool_geom *G, int i, kiln_lx *nc, kiln_lx **o, int64_t (*taps)[64], int *nt,
                     int64_t count, int inner) {
  if (i >= G->sp || i >= MAX_SP) { /* the second test: GCC -O3 cannot see sp <= MAX_SP */
    emit_body(L, G, nc, o, taps, nt, count);
    return;
  }
  int64_t c;
  for (int64_t v = 0; v < G->lo[i]; v++) {
    nt[i] = dim_taps(G, i, v, taps[i], &c);
    o[i] = CI(v);
    emit_dim(L, G, i + 1, nc, o, taps, nt, count * c, 0);
  }
  if (G->lanes > 1 && i == G->sp - 1) {
    nt[i] = dim_taps(G, i, -1, taps[i], &c);
    emit_lane_groups(L, G, nc, o, taps, nt);
  } else if (G->hi[i] > G->lo[i] && !(G->flat && inner && i == G->sp - 1)) {
    nt[i] = dim_taps(G, i, -1, taps[i], &c);
    int var = kiln_lb_for(B, G->hi[i] - G->lo[i], (kiln_sched){.parallel = 1});
    o[i] = IADD(kiln_lx_index(B, var), CI(G->lo[i]));
    emit_dim(L, G, i + 1, nc, o, taps, nt, count * c, inner);
    kiln_lb_end(B);
  }
  for (int64_t v = G->hi[i]; v < G->out[i]; v++) {
    nt[i] = dim_taps(G, i, v, taps[i], &c);
    o[i] = CI(v);
    emit_dim(L, G, i + 1, nc, o, taps, nt, count * c, 0);
  }
}

/* A stride-1 2-D window over rows as wide as the input's (3x3 pad 1:
 * GoogLeNet's branch pools) narrower than FLAT_MAX_W: every tap of output
 * (oh, ow) is at a fixed offset from oh*W + ow, so the interior rows are one
 * flat run of the plane, from the first interior output to the last, that
 * vectorises whole (rows of 14 or 28 do not fill 16-lane vectors one by
 * one).  Its outputs in border columns read taps wrapped from the next or
 * previous row (inside the plane: between the first and last interior
 * outputs' taps); emit_dim then stores the right values over them. */
enum { FLAT_MAX_W = 64 };

static int flat_wanted(const pool_geom *G) {
  return G->sp == 2 && G->s[0] == 1 && G->s[1] == 1 && G->d[0] == 1 && G->d[1] == 1 && G->out[1] == G->in[1] &&
         G->out[1] < FLAT_MAX_W && G->hi[0] > G->lo[0] && G->hi[1] > G->lo[1];
}

static void emit_flat(kiln_lctx *L, const pool_geom *G, kiln_lx *nc, int64_t (*taps)[64], int *nt) {
  int64_t c0, c1, W = G->out[1];
  int64_t first = G->lo[0] * W + G->lo[1], end = (G->hi[0] - 1) * W + G->hi[1];
  nt[0] = dim_taps(G, 0, -1, taps[0], &c0);
  nt[1] = dim_taps(G, 1, -1, taps[1], &c1);
  kiln_lx *o[MAX_SP] = {CI(0), IADD(kiln_lx_index(B, kiln_lb_for(B, end - first, (kiln_sched){.parallel = 1})), CI(first))};
  emit_body(L, G, nc, o, taps, nt, c0 * c1);
  kiln_lb_end(B);
}

/* A 2-D window strided along the rows (3x3 stride 2: SqueezeNet's,
 * AlexNet's, GoogLeNet's pools) that never reaches the padding: the body
 * above loads its taps s apart, a loop the vectoriser leaves scalar (13 or
 * 27 outputs a row).  Here each output row is first computed at every
 * input column, T[x] = the window at column x for x <= (OW-1)*s, a
 * contiguous loop that vectorises whole, into a row of scratch per slot
 * (one slot a core: slot s takes planes s, s + slots, ...), then picked
 * every s-th: Y[oh, ow] = T[ow*s] (/ count), through the output store.
 * s times the window's work in a sixteenth of the instructions; the same
 * taps combined in the same order, so the same results.  Measured on a
 * 2-vCPU Zen 5 (AVX-512): SqueezeNet 1.1's 27x27 -> 13x13 pool (256
 * channels) 0.077 -> 0.035 ms (ONNX Runtime, on NCHWc: 0.012).  Max pools
 * take the separable form below first, where it applies (0.025 ms there):
 * this one is left for AveragePool and planes too big for that one. */
enum { STRIDED_MAX_W = 4096 };

static int strided_wanted(const kiln_lctx *L, const pool_geom *G) {
  if (L->target->kind == KILN_TARGET_GPU || G->sp != 2 || G->s[1] < 2 || G->d[0] != 1 || G->d[1] != 1 ||
      G->in[1] > STRIDED_MAX_W)
    return 0;
  for (int i = 0; i < 2; i++)
    if (G->lo[i] != 0 || G->hi[i] != G->out[i]) return 0; /* a window reaches the padding */
  /* rows of at least a vector's outputs vectorise in the body above (the
   * loads of a stride-2 window as interleaved loads): 55 outputs a row ran
   * in 0.069 ms there, 0.17 ms here */
  int64_t lanes = kiln_target_lanes(L->target, G->ct);
  return G->out[1] < lanes && (G->out[1] - 1) * G->s[1] + 1 >= lanes;
}

static void emit_strided(kiln_lctx *L, const pool_geom *G, int64_t planes) {
  int64_t slots = L->target->cores < 1 ? 1 : L->target->cores;
  if (slots > planes) slots = planes;
  int64_t per = (planes + slots - 1) / slots, len = (G->out[1] - 1) * G->s[1] + 1, ntaps = G->K[0] * G->K[1];
  /* each slot's row on cache lines of its own: rows of 25 floats side by
   * side had two threads writing one line (2 threads: 0.035 -> 0.047 ms) */
  int64_t es = (int64_t)kiln_dtype_size(G->ct), stride = (len * es + 63) / 64 * 64 / es;
  char name[256];
  snprintf(name, sizeof name, "%s.rows", G->n->out[0]->name);
  const kiln_buf *T = kiln_lower_scratch(L, name, G->ct, slots * stride);
  kiln_lx *s = IDX(kiln_lb_for(B, slots, (kiln_sched){.parallel = 1}));
  kiln_lx *j = IDX(kiln_lb_for(B, per, (kiln_sched){0}));
  int nc = kiln_lb_decl(B, KILN_DT_I64, IADD(s, IMUL(j, slots)));
  if (per * slots > planes) kiln_lb_if(B, BIN(LT, LOCAL(nc), CI(planes)));
  kiln_lx *oh = IDX(kiln_lb_for(B, G->out[0], (kiln_sched){0}));
  int tb = kiln_lb_decl(B, KILN_DT_I64, IMUL(s, stride));
  int xb = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(LOCAL(nc), G->isz), IMUL(oh, G->s[0] * G->xstr[0])));
  kiln_lx *x = IDX(kiln_lb_for(B, len, (kiln_sched){0}));
  kiln_lx *off[MAX_TAPS];
  for (int64_t t = 0; t < ntaps; t++)
    off[t] = IADD(IADD(LOCAL(xb), x), CI((t / G->K[1]) * G->xstr[0] + t % G->K[1]));
  kiln_lb_store(B, T, IADD(LOCAL(tb), x), combine_taps(L, G, G->X, off, ntaps));
  kiln_lb_end(B);
  kiln_lx *ow = IDX(kiln_lb_for(B, G->out[1], (kiln_sched){0}));
  kiln_lx *r = kiln_lx_load(B, T, IADD(LOCAL(tb), IMUL(ow, G->s[1])));
  if (!G->is_max) r = kiln_lx_bin(B, KILN_BIN_DIV, r, kiln_lx_const_f(B, G->ct, (double)ntaps));
  kiln_lower_store_flat(L, G->n, 0, IADD(IADD(IMUL(LOCAL(nc), G->osz), IMUL(oh, G->ystr[0])), ow), r);
  kiln_lb_end(B);
  kiln_lb_end(B);
  if (per * slots > planes) kiln_lb_end(B);
  kiln_lb_end(B);
  kiln_lb_end(B);
}

/* A 2-D max window strided along the rows, any padding or ceil_mode
 * partial windows (3x3 stride 2: SqueezeNet's, GoogLeNet's and AlexNet's
 * pools): separable, in long contiguous runs that vectorise whole, where
 * the forms above run rows of 6 to 28 outputs with a scalar tail of up to
 * 15 outputs of 9 taps each.  Per plane, on planes small enough for two of
 * them in L1, into two planes of scratch per slot (slot s takes the s-th
 * run of consecutive planes):
 *   R[r, x] = max over the window's rows kh of X[r - pb0 + kh, x] for the
 *             window start rows r: on a small plane every r <= (OH-1)*s0,
 *             the rows whose taps are all inside as one flat run over the
 *             plane (the rows between the needed ones too: s0 times the
 *             work, in whole vectors), the few others one by one with
 *             their inside taps;
 *   T[f]    = max over kw of R[f + kw], one flat run (windows wrapping
 *             past a row's end land in columns no interior output picks);
 *   Y[oh, ow] = T[oh's row, ow*s1 - pb1] for interior columns, and for
 *             the border columns the max over their inside taps of R.
 * The same taps as the generic form, combined column by column: the same
 * value, NaN when a tap is NaN (a max of +0 and -0 may keep the other
 * zero).  Measured on a 2-vCPU Zen 5 (AVX-512): bench/README, "Strided
 * max pools". */
enum { SEP_MAX_PLANE = 4096 }; /* R's values per slot (16 KB of f32: R and T in L1) */

typedef struct sep_ctx {
  const kiln_buf *R;
  int rb, tb, xb, nc; /* locals: R's and T's base, the plane's X base, the plane */
  int64_t W, rh;      /* row length; R's rows: (OH-1)*s0 + 1 */
} sep_ctx;

static int64_t sep_rows_needed(const pool_geom *G) { return (G->out[0] - 1) * G->s[0] + 1; }

/* R's rows [*rlo, *rhi): those whose window rows are all inside (the
 * flat run); the others are border rows. */
static void sep_flat_rows(const pool_geom *G, int64_t *rlo, int64_t *rhi) {
  int64_t rh = sep_rows_needed(G), lo = G->pb[0], hi = G->in[0] - G->K[0] + 1 + G->pb[0];
  if (lo > rh) lo = rh;
  if (hi > rh) hi = rh;
  if (hi < lo) hi = lo;
  *rlo = lo;
  *rhi = hi;
}

static int separable_wanted(const kiln_lctx *L, const pool_geom *G, int64_t lanes_taken) {
  if (L->target->kind == KILN_TARGET_GPU || G->sp != 2 || !G->is_max || G->s[1] < 2 || G->d[0] != 1 ||
      G->d[1] != 1 || G->hi[1] <= G->lo[1])
    return 0;
  int64_t rh = sep_rows_needed(G), rlo, rhi;
  if (rh * G->in[1] > SEP_MAX_PLANE) return 0;
  sep_flat_rows(G, &rlo, &rhi);
  if (rlo + (rh - rhi) > 2 * MAX_BORDER) return 0; /* border rows are emitted one by one: a few */
  /* rows of a vector's outputs or more vectorise well enough in
   * emit_dim's body (SqueezeNet's 55x55 -> 27x27 ran 0.049 ms there,
   * 0.054 here), unless a border column follows each row's interior and
   * they fill less than two vectors (GoogLeNet's 56x56 -> 28x28 with
   * ceil_mode: 0.133 -> 0.094 ms in 16 lanes; in 8 lanes 0.097 -> 0.111),
   * unless those rows take whole lane groups (emit_lane_groups: the same
   * 56x56 pool of GoogLeNet's 192 channels 0.080 -> 0.039 ms).  Rows
   * shorter than a vector stay here: narrower groups lost (SqueezeNet's
   * 27 -> 13 0.023 -> 0.031 ms, GoogLeNet's 28 -> 14 0.052 -> 0.078). */
  int64_t lanes = kiln_target_lanes(L->target, G->ct);
  int borders = G->lo[1] > 0 || G->hi[1] < G->out[1];
  return G->out[1] < lanes || (borders && G->out[1] < 2 * lanes && lanes_taken < lanes);
}

/* One value of R: at ri, the max over the window's rows kh inside the
 * input, read at xi + kh's row * W.  r >= 0: start row r - pb0, only the
 * taps inside; r < 0: every tap inside, kh's row relative to xi's. */
static void sep_R(kiln_lctx *L, const pool_geom *G, const sep_ctx *S, kiln_lx *ri, kiln_lx *xi, int64_t r) {
  kiln_lx *off[MAX_TAPS];
  int n = 0;
  for (int64_t kh = 0; kh < G->K[0]; kh++) {
    int64_t row = r - G->pb[0] + kh;
    if (r >= 0 && (row < 0 || row >= G->in[0])) continue;
    off[n++] = IADD(xi, CI((r < 0 ? kh - G->pb[0] : row) * G->xstr[0]));
  }
  kiln_lb_store(B, S->R, ri, combine_taps(L, G, G->X, off, n));
}

/* T over R's S->rh rows: the max along each row at every start column an
 * interior output picks (and those between). */
static void sep_T(kiln_lctx *L, const pool_geom *G, const sep_ctx *S) {
  int64_t first = G->lo[1] * G->s[1] - G->pb[1];
  int64_t len = (S->rh - 1) * S->W + (G->hi[1] - 1) * G->s[1] - G->pb[1] + 1 - first;
  kiln_lx *f = IADD(IDX(kiln_lb_for(B, len, (kiln_sched){0})), CI(first));
  kiln_lx *off[MAX_TAPS];
  for (int64_t kw = 0; kw < G->K[1]; kw++) off[kw] = IADD(IADD(LOCAL(S->rb), f), CI(kw));
  kiln_lb_store(B, S->R, IADD(LOCAL(S->tb), f), combine_taps(L, G, S->R, off, G->K[1]));
  kiln_lb_end(B);
}

/* Output row oh, whose window starts at R's row offset `row`. */
static void sep_pick(kiln_lctx *L, const pool_geom *G, const sep_ctx *S, kiln_lx *oh, kiln_lx *row) {
  kiln_lx *ybase = IADD(IMUL(LOCAL(S->nc), G->osz), IMUL(oh, G->ystr[0])), *off[MAX_TAPS];
  for (int64_t ow = 0; ow < G->out[1]; ow++) {
    if (ow == G->lo[1]) {
      kiln_lx *o = IADD(IDX(kiln_lb_for(B, G->hi[1] - G->lo[1], (kiln_sched){0})), CI(G->lo[1]));
      kiln_lx *t = kiln_lx_load(B, S->R, IADD(IADD(LOCAL(S->tb), row), IADD(IMUL(o, G->s[1]), CI(-G->pb[1]))));
      kiln_lower_store_flat(L, G->n, 0, IADD(ybase, o), t);
      kiln_lb_end(B);
      ow = G->hi[1] - 1;
      continue;
    }
    int n = 0;
    for (int64_t kw = 0; kw < G->K[1]; kw++) {
      int64_t col = ow * G->s[1] - G->pb[1] + kw;
      if (col >= 0 && col < S->W) off[n++] = IADD(IADD(LOCAL(S->rb), row), CI(col));
    }
    kiln_lower_store_flat(L, G->n, 0, IADD(ybase, CI(ow)), combine_taps(L, G, S->R, off, n));
  }
}

/* A small plane: R's every start row, T, then every output row. */
static void sep_plane(kiln_lctx *L, const pool_geom *G, const sep_ctx *S) {
  int64_t W = S->W, rh = S->rh, rlo, rhi;
  sep_flat_rows(G, &rlo, &rhi);
  for (int64_t r = 0; r < rh; r++) {
    if (r == rlo && rhi > rlo) {
      kiln_lx *f = IADD(IDX(kiln_lb_for(B, (rhi - rlo) * W, (kiln_sched){0})), CI(rlo * W));
      sep_R(L, G, S, IADD(LOCAL(S->rb), f), IADD(LOCAL(S->xb), f), -1);
      kiln_lb_end(B);
      r = rhi - 1;
      continue;
    }
    kiln_lx *x = IDX(kiln_lb_for(B, W, (kiln_sched){0}));
    sep_R(L, G, S, IADD(LOCAL(S->rb), IADD(x, CI(r * W))), IADD(LOCAL(S->xb), x), r);
    kiln_lb_end(B);
  }
  sep_T(L, G, S);
  kiln_lx *oh = IDX(kiln_lb_for(B, G->out[0], (kiln_sched){0}));
  sep_pick(L, G, S, oh, IMUL(oh, G->s[0] * W));
  kiln_lb_end(B);
}

static void emit_separable(kiln_lctx *L, const pool_geom *G, int64_t planes) {
  sep_ctx S = {.W = G->in[1], .rh = sep_rows_needed(G)};
  int64_t slots = L->target->cores < 1 ? 1 : L->target->cores;
  if (slots > planes) slots = planes;
  int64_t per = (planes + slots - 1) / slots;
  /* each slot's scratch on cache lines of its own (see emit_strided) */
  int64_t es = (int64_t)kiln_dtype_size(G->ct), stride = (S.rh * S.W * es + 63) / 64 * 64 / es;
  char name[256];
  snprintf(name, sizeof name, "%s.rows", G->n->out[0]->name);
  S.R = kiln_lower_scratch(L, name, G->ct, 2 * slots * stride);
  kiln_lx *s = IDX(kiln_lb_for(B, slots, (kiln_sched){.parallel = 1}));
  kiln_lx *j = IDX(kiln_lb_for(B, per, (kiln_sched){0}));
  S.nc = kiln_lb_decl(B, KILN_DT_I64, IADD(IMUL(s, per), j));
  if (per * slots > planes) kiln_lb_if(B, BIN(LT, LOCAL(S.nc), CI(planes)));
  S.rb = kiln_lb_decl(B, KILN_DT_I64, IMUL(s, 2 * stride));
  S.tb = kiln_lb_decl(B, KILN_DT_I64, IADD(LOCAL(S.rb), CI(stride)));
  S.xb = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(S.nc), G->isz));
  sep_plane(L, G, &S);
  if (per * slots > planes) kiln_lb_end(B);
  kiln_lb_end(B);
  kiln_lb_end(B);
}

/* Max windows strided 2 along rows of at least a vector of interior
 * outputs, or of a half or a quarter of one (kiln_target_group_lanes), in
 * float32 (the lane printer's vectors): emit_lane_groups, in groups of
 * the lanes returned (0: not).  Narrow groups measured against the loop,
 * 1-D rows of 14 outputs 0.0026 -> 0.0009 ms, 3-D 32 x 16^3 (8 outputs a
 * row, 4 lanes) 0.107 -> 0.040, 32 x 28^3 0.55 -> 0.18 (AVX-512).
 * Measured against emit_dim's loop (bench/README, "Stride-2 max rows in
 * lane groups"): 64 x 112x112 with ceil_mode 0.147 -> 0.054 ms, with pad
 * 1 0.066 -> 0.053, SqueezeNet's 111 -> 55 0.059 -> 0.048 (AVX-512). */
static int64_t lanes_wanted(const kiln_lctx *L, const pool_geom *G) {
  int last = G->sp - 1;
  if (!L->target->lane_statements || !G->is_max || G->ct != KILN_DT_F32 || G->X->dtype != KILN_DT_F32 ||
      G->s[last] != 2 || G->d[last] != 1)
    return 0;
  /* 2-wide windows over rows of two vectors or more: the loop
   * vectoriser's interleaved pair is the groups' code without their
   * overlap (VGG's 224 -> 112 with 8 lanes: 0.170 ms there, 0.194 here).
   * Rows shorter than a vector: groups of half or a quarter of it. */
  int64_t vw = kiln_target_lanes(L->target, G->ct), n = G->hi[last] - G->lo[last];
  int64_t w = kiln_target_group_lanes(L->target, G->ct, n);
  return w > 1 && (G->K[last] > 2 || n < 2 * vw) ? w : 0;
}

/* 1: lowered n; 0: not a case for this form (nothing emitted). */
int kiln_lower_pool_fast(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_pool *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  pool_geom G = {.n = n, .sp = x->rank - 2, .is_max = n->op == KILN_OP_MAX_POOL, .include_pad = a->count_include_pad};
  if (n->op == KILN_OP_MAX_POOL && n->nout > 1 && n->out[1]) return 0; /* Indices */
  if (G.sp < 1 || G.sp > MAX_SP) return 0;
  G.ct = kiln_lower_ctype(x->dtype);
  int64_t taps = 1, regions = 1;
  for (int i = 0; i < G.sp; i++) {
    G.in[i] = x->dims[2 + i];
    G.out[i] = y->dims[2 + i];
    G.K[i] = a->kernel_shape.v[i];
    G.s[i] = a->strides.v[i];
    G.d[i] = a->dilations.v[i];
    G.pb[i] = a->pads.v[i];
    G.pe[i] = a->pads.v[i + G.sp];
    if (G.K[i] < 1 || G.K[i] > MAX_TAPS || G.s[i] < 1 || G.d[i] < 1) return 0;
    taps *= G.K[i];
    if (taps > MAX_TAPS) return 0;
    /* interior: o*s - pb >= 0 and o*s - pb + (K-1)*d <= in - 1 */
    int64_t lo = (G.pb[i] + G.s[i] - 1) / G.s[i], last = G.in[i] - 1 + G.pb[i] - (G.K[i] - 1) * G.d[i];
    int64_t hi = last < 0 ? 0 : last / G.s[i] + 1;
    if (lo > G.out[i]) lo = G.out[i];
    if (hi > G.out[i]) hi = G.out[i];
    if (hi < lo) hi = lo;
    G.lo[i] = lo;
    G.hi[i] = hi;
    if (lo + (G.out[i] - hi) > MAX_BORDER) return 0;
    if (G.K[i] > 1 && G.d[i] > G.in[i] + G.pb[i] + G.pe[i]) return 0; /* never for inferred shapes */
    regions *= lo + (G.out[i] - hi) + (hi > lo);
  }
  if (regions * taps > MAX_CODE) return 0; /* unrolled taps in all regions together */
  if (!G.is_max && kiln_sum_dtype(G.ct, taps) != G.ct) return 0; /* an accurate long sum */
  G.isz = G.osz = 1;
  for (int i = G.sp - 1; i >= 0; i--) {
    G.xstr[i] = G.isz;
    G.isz *= G.in[i];
    G.ystr[i] = G.osz;
    G.osz *= G.out[i];
  }
  G.X = kiln_lower_buf(L, x);

  const char *lanes_env = getenv("KILN_POOL_LANES"); /* 0: off; full: whole vectors only (A/B runs, bench/README) */
  int64_t lanes = lanes_env && !strcmp(lanes_env, "0") ? 0 : lanes_wanted(L, &G);
  if (lanes_env && !strcmp(lanes_env, "full") && lanes < kiln_target_lanes(L->target, G.ct)) lanes = 0;

  kiln_lower_begin(L, n);
  const char *sep_env = getenv("KILN_POOL_SEPARABLE"); /* 0: off, for A/B runs (bench/README) */
  if (separable_wanted(L, &G, lanes) && !(sep_env && !strcmp(sep_env, "0"))) {
    kiln_lower_schedule(L, "separable over each plane: window rows, then along rows, then picked");
    emit_separable(L, &G, x->dims[0] * x->dims[1]);
    return 1;
  }
  if (strided_wanted(L, &G)) {
    kiln_lower_schedule(L, "rows at every input column into scratch, then every %lld-th picked", (long long)G.s[1]);
    emit_strided(L, &G, x->dims[0] * x->dims[1]);
    return 1;
  }
  kiln_lx *nc = kiln_lx_index(B, kiln_lb_for(B, x->dims[0] * x->dims[1], (kiln_sched){.parallel = 1}));
  kiln_lx *o[MAX_SP];
  int64_t tap_list[MAX_SP][64];
  int nt[MAX_SP];
  G.flat = flat_wanted(&G);
  if (!G.flat) G.lanes = lanes;
  if (G.lanes > 1) B->k->explicit_vectors = 1;
  kiln_lower_schedule(L, "%s%s", G.flat ? "interior rows as one flat run, borders one by one"
                                       : "window unrolled, borders one by one",
                      G.lanes > 1 ? ", stride-2 rows in lane groups" : "");
  if (G.flat) emit_flat(L, &G, nc, tap_list, nt);
  emit_dim(L, &G, 0, nc, o, tap_list, nt, 1, 1);
  kiln_lb_end(B);
  return 1;
}
