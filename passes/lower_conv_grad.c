/* kiln.ConvGradWeight (ops.def), the weight gradient of Conv, lowered:
 *
 *   dW[m, c, k] = sum over n < N and output positions o of
 *                 dY[n, m, o] * X[n, grp*Cg + c, o*s + k*d - pb]
 *
 * with grp = m / Mg and X zero outside: Conv's definition (conv_def.h)
 * summed over (n, o) instead of (c, k), so its index terms are conv_def's
 * (kiln_conv_in_pos, kiln_conv_in_bounds) on a kiln_conv_geom whose
 * "out" is dY's spatial shape.  The schedule:
 *
 *   for e in M * Cg * (taps of every spatial dim but the last)   parallel
 *     m, c and those taps k' from e (the only div/mod, once per row of dW)
 *     for each tap kl of the last dim (emitted one after another: the
 *                     output positions it reaches along the contiguous
 *                     width are a constant range [lo, hi), no bounds test)
 *       tot = reduce add from 0        (f64 for long f32 sums: kiln_sum_dtype)
 *         for n < N, for the outer output dims o' (a bounds IF per dim,
 *                     only where it can fail)
 *           row = reduce add, `lanes` interleaved partial sums
 *             for j < hi - lo:  dY[n, m, o', lo + j] * X[n, ch, pos', (lo + j)*s + kl*d - pb]
 *           combine tot <- row
 *       dW[m, c, k', kl] = tot                 (kiln_lower_store: epilogues)
 *
 * Every dW element is one accumulator in a reduction (ir/loop.h); the
 * innermost loop reads dY contiguously and X with the stride, and its
 * partial sums are independent chains the vectoriser packs
 * (expand_reduce.c, lanes).  The rows are short (an output row), so each
 * row's f32 sum is short and the long sum over rows is accurate.  A last
 * dim with more than KL_UNROLL taps keeps them a loop, with the bounds
 * test inside the row (rare: wide 1-D kernels). */
#include "conv_def.h"

#define B (&L->b)
#define CI(v) kiln_lx_const_i(B, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define IADD(a, b) kiln_lx_iadd(B, (a), (b))
#define IMUL(a, k) kiln_lx_imul(B, (a), (k))
#define IDX(v) kiln_lx_index(B, (v))
#define LOCAL(v) kiln_lx_local(B, (v))

enum { KL_UNROLL = 16 };

/* The geometry from X, dY and the (canonical) attributes: C from X, M
 * from dY, "out" = dY's spatial dims. */
static int grad_weight_geom(kiln_lctx *L, const kiln_node *n, kiln_conv_geom *g) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *dy = n->in[1], *dw = n->out[0];
  if (x->layout != KILN_LAYOUT_PLAIN || dy->layout != KILN_LAYOUT_PLAIN || dw->layout != KILN_LAYOUT_PLAIN)
    return kiln_lower_fail(L, n, "blocked layouts are not lowered for %s", kiln_op_get(n->op)->name);
  if (!kiln_dtype_is_float(x->dtype) || dy->dtype != x->dtype)
    return kiln_lower_fail(L, n, "needs floating-point X and dY of one type, got %s and %s", kiln_dtype_name(x->dtype),
                           kiln_dtype_name(dy->dtype));
  int sp = g->sp = x->rank - 2;
  if (sp < 1 || sp > 3 || dy->rank != x->rank || a->kernel_shape.n != sp || a->strides.n != sp ||
      a->dilations.n != sp || a->pads.n != 2 * sp || a->group < 1)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = dy->dims[1];
  g->G = a->group;
  g->Cg = g->C / g->G;
  g->Mg = g->M / g->G;
  if (dw->dims[0] != g->M || dw->dims[1] != g->Cg)
    return kiln_lower_fail(L, n, "dW does not match X, dY and group (run shape inference first)");
  g->isz = g->osz = g->ksz = 1;
  for (int i = sp - 1; i >= 0; i--) {
    g->in[i] = x->dims[2 + i];
    g->out[i] = dy->dims[2 + i];
    g->K[i] = a->kernel_shape.v[i];
    g->s[i] = a->strides.v[i];
    g->d[i] = a->dilations.v[i];
    g->pb[i] = a->pads.v[i];
    g->xstr[i] = g->isz;
    g->ystr[i] = g->osz;
    g->kstr[i] = g->ksz;
    g->isz *= g->in[i];
    g->osz *= g->out[i];
    g->ksz *= g->K[i];
  }
  return 0;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* Lanes for a row of len terms: a power of two up to the target's vector
 * width with at least two iterations per lane (0: one plain chain). */
static int row_lanes(kiln_lctx *L, kiln_dtype ct, int64_t len) {
  int vw = kiln_target_lanes(L->target, ct), w = 1;
  if (vw > 16) vw = 16;
  while (w * 2 <= vw && w * 4 <= len) w *= 2;
  return w >= 2 ? w : 0;
}

/* Per-row context: the locals e decodes into. */
typedef struct gw_row {
  const kiln_conv_geom *g;
  kiln_dtype ct, tt;  /* compute type; the total's type */
  kiln_lx *k[3];      /* taps of dims 0..sp-2 */
  int xch, ych;       /* X offset of channel grp*Cg + c, dY offset of channel m (batch 0) */
} gw_row;

/* The total for tap kl of the last dim (a constant with [lo, lo + len)
 * the positions it reaches, or a loop index with masked true: every
 * position, each tested); returns the total's local. */
static int tap_total(kiln_lctx *L, const kiln_node *n, const gw_row *r, kiln_lx *kl, int64_t lo, int64_t len, int masked) {
  const kiln_conv_geom *g = r->g;
  int last = g->sp - 1;
  const kiln_buf *xb = kiln_lower_buf(L, n->in[0]), *yb = kiln_lower_buf(L, n->in[1]);
  int tot = kiln_lb_reduce_begin(B, KILN_RED_ADD, r->tt, NULL, (kiln_sched){0});
  kiln_nest ns = {0};
  kiln_lx *nv = kiln_nest_for(L, &ns, g->N, 0);
  kiln_lx *xoff = IADD(LOCAL(r->xch), IMUL(nv, g->C * g->isz));
  kiln_lx *yoff = IADD(LOCAL(r->ych), IMUL(nv, g->M * g->osz));
  int ifs = 0;
  for (int i = 0; i < last; i++) {
    kiln_lx *o = kiln_nest_for(L, &ns, g->out[i], 0);
    kiln_lx *pos = kiln_conv_in_pos(B, g, i, o, r->k[i]);
    kiln_lx *ok = kiln_conv_in_bounds(B, g, i, pos);
    if (ok) {
      kiln_lb_if(B, ok);
      ifs++;
    }
    xoff = IADD(xoff, IMUL(pos, g->xstr[i]));
    yoff = IADD(yoff, IMUL(o, g->ystr[i]));
  }
  int row = kiln_lb_reduce_begin(B, KILN_RED_ADD, r->ct, NULL, (kiln_sched){.vector = masked ? 0 : row_lanes(L, r->ct, len)});
  kiln_lx *o = IADD(IDX(kiln_lb_for(B, len, (kiln_sched){0})), CI(lo));
  kiln_lx *pos = kiln_conv_in_pos(B, g, last, o, kl);
  kiln_lx *ok = masked ? kiln_conv_in_bounds(B, g, last, pos) : NULL;
  if (ok) kiln_lb_if(B, ok);
  kiln_lx *prod = BIN(MUL, kiln_lower_load(L, yb, IADD(yoff, o)), kiln_lower_load(L, xb, IADD(xoff, pos)));
  kiln_lb_combine(B, row, prod);
  if (ok) kiln_lb_end(B);
  kiln_lb_end(B);
  kiln_lb_reduce_end(B);
  kiln_lb_combine(B, tot, r->tt == r->ct ? LOCAL(row) : kiln_lx_cast(B, r->tt, LOCAL(row)));
  kiln_lower_close(L, ifs);
  kiln_nest_end(L, &ns);
  kiln_lb_reduce_end(B);
  return tot;
}

int kiln_lower_conv_grad_weight(kiln_lctx *L, const kiln_node *n) {
  kiln_conv_geom g;
  if (grad_weight_geom(L, n, &g)) return -1;
  int last = g.sp - 1;
  int64_t kl_n = g.K[last], kin = g.ksz / kl_n; /* taps of the last dim; of the others */
  gw_row r = {.g = &g, .ct = kiln_lower_ctype(n->out[0]->dtype)};
  r.tt = kiln_sum_dtype(r.ct, g.N * g.osz);
  kiln_lower_begin(L, n);
  kiln_lx *e = IDX(kiln_lb_for(B, g.M * g.Cg * kin, (kiln_sched){.parallel = 1}));
  int mv = kiln_lb_decl(B, KILN_DT_I64, BIN(DIV, e, CI(g.Cg * kin)));
  int cv = kiln_lb_decl(B, KILN_DT_I64, g.Cg == 1 ? CI(0) : BIN(REM, BIN(DIV, e, CI(kin)), CI(g.Cg)));
  int64_t step = 1; /* e's stride of tap k[i]: the outer taps are e's last digits */
  for (int i = last - 1; i >= 0; step *= g.K[i], i--)
    r.k[i] = g.K[i] == 1 ? CI(0) : LOCAL(kiln_lb_decl(B, KILN_DT_I64, BIN(REM, BIN(DIV, e, CI(step)), CI(g.K[i]))));
  kiln_lx *grp = g.G == 1 ? CI(0) : BIN(DIV, LOCAL(mv), CI(g.Mg));
  r.xch = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(grp, g.Cg), LOCAL(cv)), g.isz));
  r.ych = kiln_lb_decl(B, KILN_DT_I64, IMUL(LOCAL(mv), g.osz));
  kiln_lx *idx[5] = {LOCAL(mv), LOCAL(cv)};
  for (int i = 0; i < last; i++) idx[2 + i] = r.k[i];
  kiln_lx *base = IMUL(e, kl_n); /* dW's flat offset of tap 0 of the last dim */
  if (kl_n <= KL_UNROLL) {
    for (int64_t kl = 0; kl < kl_n; kl++) {
      /* positions o with 0 <= o*s + kl*d - pb < in along the last dim */
      int64_t t = kl * g.d[last] - g.pb[last];
      int64_t lo = -floor_div(t, g.s[last]), hi = floor_div(g.in[last] - 1 - t, g.s[last]) + 1;
      if (lo < 0) lo = 0;
      if (hi > g.out[last]) hi = g.out[last];
      idx[2 + last] = CI(kl);
      kiln_lx *v = hi > lo ? kiln_lx_cast(B, r.ct, LOCAL(tap_total(L, n, &r, CI(kl), lo, hi - lo, 0)))
                           : kiln_lx_const_f(B, r.ct, 0);
      kiln_lower_store(L, n, 0, idx, IADD(base, CI(kl)), v);
    }
  } else {
    kiln_lx *kl = IDX(kiln_lb_for(B, kl_n, (kiln_sched){.parallel = 1}));
    idx[2 + last] = kl;
    kiln_lx *v = kiln_lx_cast(B, r.ct, LOCAL(tap_total(L, n, &r, kl, 0, g.out[last], 1)));
    kiln_lower_store(L, n, 0, idx, IADD(base, kl), v);
    kiln_lb_end(B);
  }
  kiln_lb_end(B);
  return 0;
}
