/* Pooling and LRN: MaxPool (with the optional Indices output),
 * AveragePool, GlobalAveragePool, GlobalMaxPool, LRN.
 *
 * Most windows take the fast form (lower_pool_fast.c: static border and
 * interior regions, the window unrolled, no bounds checks); this file's
 * generic form is for the rest (Indices, long windows or AveragePool sums,
 * many border outputs) and for every window on a GPU target (one thread
 * per output there, consecutive threads on consecutive output columns).
 *
 * Generic loop structure (one kernel per node):
 *   for nc in N*C (parallel)            one (batch, channel) plane
 *     for o0 .. o_{k-1}                 output spatial dims, the last
 *                                       (contiguous width) innermost
 *       acc = reduce (add|max_nan):     the loop IR's reduction (ir/loop.h)
 *         for k0 .. k_{k-1}             window, one bounds IF per dim
 *           combine acc <- X[...]       only where it has to be checked
 *       Y[...] = acc (/ count)
 * AveragePool and GlobalAveragePool are accurate sums (lower_sum.c), so
 * windows and planes of more than 256 values are summed in float32 blocks
 * into a float64 total (expand_reduce.c); short ones keep the single
 * accumulator.  MaxPool with Indices keeps an explicit (value, index)
 * update.  LRN's short channel-window sum of squares is an ADD too.
 * Padding positions are skipped by the bounds IFs, so they never win a max
 * and never add to a sum.  A NaN in a window makes its max NaN (as Max;
 * ONNX Runtime's 2-D MaxPool keeps a NaN only when no later tap replaces
 * it, its 1-D one drops NaN: kiln picks the rule Max and numpy follow).  Window attributes arrive canonical from shape
 * inference (ir/shape_nn.c): kernel_shape, strides, dilations and pads
 * explicit, auto_pad resolved to NOTSET.  f16/bf16 compute in f32. */
#include "lower.h"

#include "lower_macros.h"

static const kiln_sched seq_sched = {0};
static const kiln_sched par_sched = {.parallel = 1};

static int check_plain(kiln_lctx *L, const kiln_node *n) {
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && n->in[k]->layout != KILN_LAYOUT_PLAIN)
      return kiln_lower_fail(L, n, "input '%s' has a blocked layout, which %s does not lower yet", n->in[k]->name,
                             kiln_op_get(n->op)->name);
  for (int k = 0; k < n->nout; k++)
    if (n->out[k] && n->out[k]->layout != KILN_LAYOUT_PLAIN)
      return kiln_lower_fail(L, n, "output '%s' has a blocked layout, which %s does not lower yet", n->out[k]->name,
                             kiln_op_get(n->op)->name);
  return 0;
}

/* 0 <= i < hi (only the halves that can fail are emitted); NULL: always true. */
kiln_lx *kiln_lower_in_range(kiln_lctx *L, kiln_lx *i, int need_lo, int need_hi, int64_t hi) {
  kiln_lx *lo_ok = need_lo ? BIN(LE, CI(0), i) : NULL;
  kiln_lx *hi_ok = need_hi ? BIN(LT, i, CI(hi)) : NULL;
  if (lo_ok && hi_ok) return BIN(AND, lo_ok, hi_ok);
  return lo_ok ? lo_ok : hi_ok;
}

/* Number of window taps k in [0, K) with lo <= start + k*d < hi, where
 * start = o*s - pb: the AveragePool divisor along one dim (i64). */
kiln_lx *kiln_lower_pool_taps(kiln_lctx *L, kiln_lx *o, int64_t s, int64_t pb, int64_t K, int64_t d, int64_t lo,
                               int64_t hi, int64_t nout) {
  int64_t first = -pb, last = (nout - 1) * s - pb + (K - 1) * d;
  if (first >= lo && last < hi) return CI(K); /* never clipped */
  kiln_lx *os = IMUL(o, s);
  /* lo - start and hi - start */
  kiln_lx *below = BIN(SUB, CI(lo + pb), os), *above = BIN(SUB, CI(hi + pb), os);
  kiln_lx *kmin = BIN(MAX, CI(0), below);
  kiln_lx *kmax = BIN(MAX, CI(0), above);
  if (d > 1) { /* ceil(v / d) for v >= 0 */
    kmin = BIN(DIV, IADD(kmin, CI(d - 1)), CI(d));
    kmax = BIN(DIV, IADD(kmax, CI(d - 1)), CI(d));
  }
  kmax = BIN(MIN, CI(K), kmax);
  return BIN(MAX, CI(0), BIN(SUB, kmax, kmin));
}

/* AveragePool's terms along the innermost window dim: X at
 * base + pos*xstr, pos = start + k*d, where pos is inside [0, in). */
typedef struct window_term {
  const kiln_buf *X;
  kiln_dtype ct;
  kiln_lx *base, *start;
  int64_t d, xstr;
  int need_lo, need_hi;
  int64_t in;
} window_term;

static kiln_lx *window_load(kiln_lctx *L, void *ctx, kiln_lx *k, kiln_lx **cond) {
  window_term *t = ctx;
  kiln_lx *pos = IADD(t->start, IMUL(k, t->d));
  *cond = kiln_lower_in_range(L, pos, t->need_lo, t->need_hi, t->in);
  return kiln_lx_cast(B, t->ct, kiln_lx_load(B, t->X, IADD(t->base, IMUL(pos, t->xstr))));
}

/* MaxPool, AveragePool. */
int kiln_lower_pool(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_pool *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  const kiln_value *ind = n->op == KILN_OP_MAX_POOL && n->nout > 1 ? n->out[1] : NULL;
  int is_max = n->op == KILN_OP_MAX_POOL;
  int sp = x->rank - 2;
  if (check_plain(L, n)) return -1;
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  if (!is_max && !kiln_dtype_is_float(x->dtype))
    return kiln_lower_fail(L, n, "AveragePool needs a floating-point input, got %s", kiln_dtype_name(x->dtype));
  /* static regions, no bounds checks (lower_pool_fast.c): a CPU schedule
   * (a plane per iteration, rows vectorised).  A GPU target keeps the
   * generic nest: schedule_gpu maps it one output per thread, the output
   * column innermost, so consecutive threads load and store consecutive
   * columns (coalesced) and a plane is spread over many threads. */
  if (L->target->kind != KILN_TARGET_GPU && kiln_lower_pool_fast(L, n)) return 0;
  kiln_dtype ct = kiln_lower_ctype(x->dtype);
  kiln_buf *X = kiln_lower_buf(L, x), *I = ind ? kiln_lower_buf(L, ind) : NULL;

  int64_t in[3], out[3], K[3], s[3], d[3], pb[3], pe[3];
  int64_t xstr[3], ystr[3], colstr[3], isz = 1, osz = 1;
  for (int i = 0; i < sp; i++) {
    in[i] = x->dims[2 + i];
    out[i] = y->dims[2 + i];
    K[i] = a->kernel_shape.v[i];
    s[i] = a->strides.v[i];
    d[i] = a->dilations.v[i];
    pb[i] = a->pads.v[i];
    pe[i] = a->pads.v[i + sp];
  }
  for (int i = sp - 1; i >= 0; i--) { xstr[i] = isz; isz *= in[i]; ystr[i] = osz; osz *= out[i]; }
  int64_t cs = 1;
  for (int i = 0; i < sp; i++) { colstr[i] = cs; cs *= in[i]; } /* Indices, storage_order=1 */

  kiln_lower_begin(L, n);
  kiln_lx *nc = IDX(kiln_lb_for(B, x->dims[0] * x->dims[1], par_sched));
  kiln_lx *o[3];
  for (int i = 0; i < sp; i++) o[i] = IDX(kiln_lb_for(B, out[i], par_sched)); /* one output each */
  int64_t taps = 1;
  for (int i = 0; i < sp; i++) taps *= K[i];
  /* the window's reduction: a max (NaN propagating) or an accurate sum
   * (lower_sum.c); with Indices an explicit (value, index) update, which
   * a single-value combiner cannot carry */
  int acc = I ? kiln_lb_decl(B, ct, kiln_lx_reduce_identity(B, KILN_RED_MAX, ct))
          : is_max ? kiln_lb_reduce_begin(B, KILN_RED_MAX_NAN, ct, NULL, seq_sched)
                   : kiln_sum_begin(L, ct, taps);
  int best = I ? kiln_lb_decl(B, KILN_DT_I64, CI(-1)) : -1;

  /* window taps: pos = o*s - pb + k*d, checked against [0, in) per dim;
   * AveragePool's innermost window dim is the accurate sum's row */
  kiln_lx *pos[3];
  int open = 0, nloop = is_max ? sp : sp - 1;
  for (int i = 0; i < nloop; i++) {
    kiln_lx *k = IDX(kiln_lb_for(B, K[i], seq_sched));
    open++;
    pos[i] = IADD(IADD(IMUL(o[i], s[i]), IMUL(k, d[i])), CI(-pb[i]));
    int need_lo = pb[i] > 0, need_hi = (out[i] - 1) * s[i] - pb[i] + (K[i] - 1) * d[i] >= in[i];
    kiln_lx *ok = kiln_lower_in_range(L, pos[i], need_lo, need_hi, in[i]);
    if (ok) { kiln_lb_if(B, ok); open++; }
  }
  kiln_lx *xoff = IMUL(nc, isz);
  for (int i = 0; i < nloop; i++) xoff = IADD(xoff, IMUL(pos[i], xstr[i]));
  if (!is_max) {
    int l = sp - 1;
    window_term t = {X, ct, xoff, IADD(IMUL(o[l], s[l]), CI(-pb[l])), d[l], xstr[l], pb[l] > 0,
                     (out[l] - 1) * s[l] - pb[l] + (K[l] - 1) * d[l] >= in[l], in[l]};
    if (K[l] > 0) { /* the innermost window dim: the sum's row */
      kiln_lx *cond = NULL, *k = IDX(kiln_lb_for(B, K[l], seq_sched));
      kiln_lx *v = window_load(L, &t, k, &cond);
      if (cond) kiln_lb_if(B, cond);
      kiln_lb_combine(B, acc, v);
      if (cond) kiln_lb_end(B);
      kiln_lb_end(B);
    }
  } else {
    kiln_lx *v = kiln_lx_cast(B, ct, kiln_lx_load(B, X, xoff));
    if (I) v = kiln_lx_local(B, kiln_lb_decl(B, ct, v)); /* read twice below */
    if (I) {
      /* first maximum wins (strict >), as the ONNX reference */
      kiln_lx *flat = xoff;
      if (a->storage_order) {
        flat = IMUL(nc, isz);
        for (int i = 0; i < sp; i++) flat = IADD(flat, IMUL(pos[i], colstr[i]));
      }
      kiln_lb_if(B, BIN(OR, BIN(LT, kiln_lx_local(B, best), CI(0)), BIN(LT, kiln_lx_local(B, acc), v)));
      kiln_lb_assign(B, acc, v);
      kiln_lb_assign(B, best, flat);
      kiln_lb_end(B);
    } else {
      kiln_lb_combine(B, acc, v); /* NaN propagates */
    }
  }
  kiln_lower_close(L, open);
  if (!I) kiln_lb_reduce_end(B);

  kiln_lx *yoff = IMUL(nc, osz);
  for (int i = 0; i < sp; i++) yoff = IADD(yoff, IMUL(o[i], ystr[i]));
  kiln_lx *r = is_max ? kiln_lx_local(B, acc) : NULL;
  if (!is_max) {
    /* count_include_pad=0: taps inside the input; =1: taps inside input+pads
     * (a ceil_mode window hanging past the padded end counts only those) */
    kiln_lx *cnt = CI(1);
    for (int i = 0; i < sp; i++) {
      int64_t lo = a->count_include_pad ? -pb[i] : 0, hi = a->count_include_pad ? in[i] + pe[i] : in[i];
      kiln_lx *c = kiln_lower_pool_taps(L, o[i], s[i], pb[i], K[i], d[i], lo, hi, out[i]);
      cnt = cnt->kind == KILN_LX_CONST && c->kind == KILN_LX_CONST ? CI(cnt->i * c->i) : BIN(MUL, cnt, c);
    }
    r = kiln_sum_result(L, acc, ct, cnt);
  }
  kiln_lower_store_flat(L, n, 0, yoff, r);
  if (I) kiln_lower_store_flat(L, n, 1, yoff, kiln_lx_local(B, best));
  kiln_lower_close(L, sp + 1);
  return 0;
}

/* GlobalAveragePool, GlobalMaxPool: one reduction over each (n, c) plane. */
int kiln_lower_global_pool(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *x = n->in[0];
  int is_max = n->op == KILN_OP_GLOBAL_MAX_POOL;
  if (check_plain(L, n)) return -1;
  if (!is_max && !kiln_dtype_is_float(x->dtype))
    return kiln_lower_fail(L, n, "GlobalAveragePool needs a floating-point input, got %s", kiln_dtype_name(x->dtype));
  kiln_dtype ct = kiln_lower_ctype(x->dtype);
  kiln_buf *X = kiln_lower_buf(L, x);
  int64_t S = 1;
  for (int i = 2; i < x->rank; i++) S *= x->dims[i];

  kiln_lower_begin(L, n);
  kiln_lx *nc = IDX(kiln_lb_for(B, x->dims[0] * x->dims[1], par_sched));
  /* one reduction over the plane, read contiguously: a max (NaN
   * propagating) or a sum in kiln_sum_dtype's precision (lower_sum.c) */
  int acc = is_max ? kiln_lb_reduce_begin(B, KILN_RED_MAX_NAN, ct, NULL, seq_sched) : kiln_gap_sum_begin(L, ct, S);
  if (S > 0) {
    kiln_lx *i = IDX(kiln_lb_for(B, S, seq_sched));
    kiln_lb_combine(B, acc, kiln_lx_cast(B, ct, kiln_lx_load(B, X, IADD(IMUL(nc, S), i))));
    kiln_lb_end(B);
  }
  kiln_lb_reduce_end(B);
  kiln_lx *r = is_max ? kiln_lx_local(B, acc) : kiln_sum_result(L, acc, ct, CI(S));
  kiln_lower_store_flat(L, n, 0, nc, r);
  kiln_lb_end(B);
  return 0;
}

/* base^beta for LRN's divisor.  A beta of whole quarters up to 4 (AlexNet,
 * GoogLeNet and every CaffeNet-style export use 0.75) is built from square
 * roots and products: sqrt is exact to half an ulp and vectorises
 * everywhere, where pow is a scalar libm call per element (an LRN over
 * GoogLeNet's conv2 output, 192 x 56 x 56: 4.7 ms with pow, 0.28 ms with
 * square roots, both with the window below).  b^0.75 =
 * sqrt(b) * sqrt(sqrt(b)): each factor within 0.75 ulp, the product within
 * 2 ulp of b^0.75 (tests/passes/test_lrn.py measures it against float64).
 * Any other beta keeps pow. */
static kiln_lx *lrn_power(kiln_lctx *L, kiln_dtype ct, kiln_lx *base, double beta) {
  double q = beta * 4;
  if (!(q >= 1 && q <= 16 && q == (double)(int)q)) return BIN(POW, base, kiln_lx_const_f(B, ct, beta));
  int quarters = (int)q;
  kiln_lx *b = kiln_lx_local(B, kiln_lb_decl(B, ct, base)), *r = NULL;
  kiln_lx *s = quarters % 4 ? kiln_lx_local(B, kiln_lb_decl(B, ct, kiln_lx_un(B, KILN_UN_SQRT, b))) : NULL;
  for (int k = 0; k < quarters / 4; k++) r = r ? BIN(MUL, r, b) : b;
  if (quarters % 4 >= 2) r = r ? BIN(MUL, r, s) : s;
  if (quarters % 2) r = r ? BIN(MUL, r, kiln_lx_un(B, KILN_UN_SQRT, s)) : kiln_lx_un(B, KILN_UN_SQRT, s);
  return r;
}

/* One (n, c) plane of LRN: Y = X / (bias + alpha/size * sum of squares)^beta
 * over each position i of the plane.  `checked`: the window may reach
 * past the channels, and each neighbour is read at the clamped channel
 * and its square selected away (kiln_lower_lrn says why).  Otherwise
 * every neighbour exists and is read as it is. */
static void lrn_plane(kiln_lctx *L, const kiln_node *n, kiln_buf *X, kiln_dtype ct, kiln_lx *nc, int c, int img,
                      int checked) {
  const kiln_attrs_lrn *a = n->attrs;
  int64_t C = n->in[0]->dims[1], S = 1, size = a->size, before = (size - 1) / 2;
  for (int i = 2; i < n->in[0]->rank; i++) S *= n->in[0]->dims[i];
  kiln_lx *i = IDX(kiln_lb_for(B, S, par_sched)); /* one output each */
  kiln_lx *center = IADD(IMUL(nc, S), i);
  int acc = kiln_lb_reduce_begin(B, KILN_RED_ADD, ct, NULL, seq_sched);
  kiln_lx *j = IDX(kiln_lb_for(B, size, seq_sched));
  int cj = kiln_lb_decl(B, KILN_DT_I64, IADD(kiln_lx_local(B, c), IADD(j, CI(-before)))); /* neighbour channel */
  kiln_lx *cl = checked ? BIN(MIN, BIN(MAX, kiln_lx_local(B, cj), CI(0)), CI(C - 1)) : kiln_lx_local(B, cj);
  int v = kiln_lb_decl(B, ct, kiln_lx_cast(B, ct, kiln_lx_load(B, X, IADD(IADD(kiln_lx_local(B, img), IMUL(cl, S)), i))));
  kiln_lx *sq = BIN(MUL, kiln_lx_local(B, v), kiln_lx_local(B, v));
  if (checked) {
    kiln_lx *inside = BIN(AND, BIN(LE, CI(0), kiln_lx_local(B, cj)), BIN(LT, kiln_lx_local(B, cj), CI(C)));
    sq = kiln_lx_select(B, inside, sq, kiln_lx_const_f(B, ct, 0));
  }
  kiln_lb_combine(B, acc, sq);
  kiln_lb_end(B); /* j */
  kiln_lb_reduce_end(B);
  kiln_lx *base = BIN(ADD, kiln_lx_const_f(B, ct, a->bias),
                      BIN(MUL, kiln_lx_const_f(B, ct, (double)a->alpha / (double)size), kiln_lx_local(B, acc)));
  kiln_lx *xv = kiln_lx_cast(B, ct, kiln_lx_load(B, X, center));
  kiln_lower_store_flat(L, n, 0, center, BIN(DIV, xv, lrn_power(L, ct, base, a->beta)));
  kiln_lb_end(B); /* i */
}

/* LRN across channels:
 *   Y = X / (bias + alpha/size * sum_{c' in window(c)} X[c']^2)^beta
 * window(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, C).
 * A neighbour channel past the edge is read at the clamped channel and its
 * square selected away, instead of an IF around the read: every address
 * then lies inside this image's X, so the vectoriser's runtime overlap
 * check (which LLVM widens to the whole parallel chunk of planes) passes
 * whenever Y is another buffer.  With the IF, X's range reached two planes
 * past its end, into a Y placed right after it, and the check sent the
 * whole kernel to the scalar loop (GoogLeNet's conv2.norm2: 2.7 ms).
 * Planes whose window lies inside the channels (all but size - 1 of them)
 * take a copy of the loop without the clamp and the select: GCC's
 * vectoriser for AVX2 leaves a loop with that select scalar (the emitted
 * C's LRNs 15x slower than LLVM's).  The sums are the same: a selected-away
 * square adds +0. */
int kiln_lower_lrn(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_lrn *a = n->attrs;
  const kiln_value *x = n->in[0];
  if (check_plain(L, n)) return -1;
  if (!kiln_dtype_is_float(x->dtype))
    return kiln_lower_fail(L, n, "LRN needs a floating-point input, got %s", kiln_dtype_name(x->dtype));
  kiln_dtype ct = kiln_lower_ctype(x->dtype);
  kiln_buf *X = kiln_lower_buf(L, x);
  int64_t C = x->dims[1], S = 1, size = a->size, before = (size - 1) / 2, after = size - 1 - before;
  for (int i = 2; i < x->rank; i++) S *= x->dims[i];

  kiln_lower_begin(L, n);
  kiln_lx *nc = IDX(kiln_lb_for(B, x->dims[0] * C, par_sched));
  int c = kiln_lb_decl(B, KILN_DT_I64, BIN(REM, nc, CI(C)));
  int img = kiln_lb_decl(B, KILN_DT_I64, IMUL(BIN(SUB, nc, kiln_lx_local(B, c)), S)); /* image n's X */
  if (C > before + after) {
    kiln_lb_if(B, BIN(AND, BIN(LE, CI(before), kiln_lx_local(B, c)), BIN(LT, kiln_lx_local(B, c), CI(C - after))));
    lrn_plane(L, n, X, ct, nc, c, img, 0);
    kiln_lb_else(B);
  }
  lrn_plane(L, n, X, ct, nc, c, img, 1);
  if (C > before + after) kiln_lb_end(B); /* if */
  kiln_lb_end(B); /* nc */
  return 0;
}
