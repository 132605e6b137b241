/* kiln.ConvGradWeight (ops.def), the weight gradient of Conv, lowered:
 *
 *   dW[m, c, k] = sum over n < N and output positions o of
 *                 dY[n, m, o] * X[n, grp*Cg + c, o*s + k*d - pb]
 *
 * with grp = m / Mg and X zero outside: Conv's definition (conv_def.h)
 * summed over (n, o) instead of (c, k), so its index terms are conv_def's
 * (kiln_conv_in_pos, kiln_conv_in_bounds) on a kiln_conv_geom whose
 * "out" is dY's spatial shape.  Two schedules of it: convolutions with
 * every stride 1 (most of a CNN's) pack X and dY into zero-padded planes
 * and sum flat runs in a register tile (lower_packed, below); strided
 * ones, and those whose packed planes would be huge, take the row form:
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
 * In the row form every dW element is one accumulator in a reduction
 * (ir/loop.h); the innermost loop reads dY contiguously and X with the stride, and its
 * partial sums are independent chains the vectoriser packs
 * (expand_reduce.c, lanes).  The rows are short (an output row), so each
 * row's f32 sum is short and the long sum over rows is accurate.  A last
 * dim with more than KL_UNROLL taps keeps them a loop, with the bounds
 * test inside the row (rare: wide 1-D kernels). */
#include "conv_def.h"

#include "lower_macros.h"

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
  kiln_conv_geom_window(g, a, x, dy);
  return 0;
}

/* Closes every loop of ns (kiln_nest_end closes one level). */
static void nest_close(kiln_lctx *L, kiln_nest *ns) {
  while (ns->depth > 0) kiln_nest_end(L, ns);
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
  nest_close(L, &ns);
  kiln_lb_reduce_end(B);
  return tot;
}

/* ---- stride 1: packed planes and a register tile ----
 *
 * With every stride 1, tap k reads X at o + k*d - pb.  X is copied once
 * into zero-padded planes P[n, c] (extents Pi = out_i + (K_i - 1)*d_i,
 * P[p] = X[p - pb], 0 outside X), and dY into "virtual" rows D[n, m, v]
 * with v = sum o_i * pstr_i (pstr: P's row-major strides; 0 where an inner
 * o_i >= out_i, and past V up to Vr, V rounded up to whole vectors).  Then
 *   dW[m, c, k] = sum over n, v < Vr of D[n, m, v] * P[n, grp*Cg + c, v + xo(k)]
 * with xo(k) = sum k_i*d_i*pstr_i a constant offset: no bounds tests, one
 * contiguous run of v per batch element.  (The zeros of D cost
 * (Pi - out_i)/out_i extra products along each inner dim: 40% on LeNet's
 * 5x5 on 14x14.)  The schedule is the register tile of a dot-product
 * GEMM: each iteration of the parallel loop owns MB output channels x KB
 * consecutive taps (one input channel) and keeps MB*KB vectors of VL
 * partial sums in scalar locals (unrolled in the loop IR, as the forward
 * register path in lower_conv.c does); a step loads MB vectors of D and
 * KB of P for MB*KB vector FMAs.  Every BLOCK_STEPS steps (and at the end
 * of each batch element's row) the partial sums are stored to a scratch F
 * (VL per dW element) and folded in halves into each element's total, f64
 * for long f32 sums (kiln_sum_dtype): so an f32 partial sum holds at most
 * BLOCK_STEPS terms.  The store is what makes LLVM's SLP vectoriser turn
 * the VL scalar chains into vector registers: folded straight from the
 * locals (no store to seed it; a float fold is not reassociated) they
 * stayed scalar.  Measured on LeNet's second conv at batch 8, one core
 * (AVX-512, a shared machine): 3.4 GMAC/s with the row form above, 8 with
 * one `lanes` reduction per dW element over these flat rows, 4 with the
 * tile folded from locals, 11-14 with the tile stored and folded (the
 * forward Conv of that layer: about 40; its ConvTranspose dX about 14). */
enum { BLOCK_STEPS = 64, KB_MAX = 8 };
#define SCRATCH_MAX ((int64_t)1 << 28) /* elements of any one scratch (1 GiB of f32) */

typedef struct gw_tile {
  int MB, KB, VL;
  kiln_dtype ct, tt;
  int fma;
  const kiln_buf *D, *P, *F; /* F: the partial sums, stored to be folded */
  kiln_lx *fofs;
  int acc[256];          /* [j][t][l]: MB x KB x VL partial sums */
  int tot[64];           /* [j][t]: the totals */
  kiln_lx *dofs[8];      /* D offset of row m0 + j for the current n */
  kiln_lx *pofs[KB_MAX]; /* P offset of tap t for the current n */
} gw_tile;

/* Accumulates `steps` vector steps from step `first` on, then folds the
 * partial sums into the totals. */
static void tile_block(kiln_lctx *L, gw_tile *T, kiln_lx *first, int64_t steps) {
  int n = T->MB * T->KB * T->VL;
  for (int a = 0; a < n; a++) T->acc[a] = kiln_lb_decl(B, T->ct, kiln_lx_const_f(B, T->ct, 0));
  kiln_lx *v0 = steps == 1 ? IMUL(first, T->VL) : IMUL(IADD(first, IDX(kiln_lb_for(B, steps, (kiln_sched){0}))), T->VL);
  for (int j = 0; j < T->MB; j++)
    for (int t = 0; t < T->KB; t++)
      for (int l = 0; l < T->VL; l++) {
        int a = (j * T->KB + t) * T->VL + l;
        kiln_lx *dv = kiln_lx_load(B, T->D, IADD(IADD(T->dofs[j], v0), CI(l)));
        kiln_lx *pv = kiln_lx_load(B, T->P, IADD(IADD(T->pofs[t], v0), CI(l)));
        kiln_lb_assign(B, T->acc[a], T->fma ? kiln_lx_fma(B, dv, pv, LOCAL(T->acc[a]))
                                            : BIN(ADD, LOCAL(T->acc[a]), BIN(MUL, dv, pv)));
      }
  if (steps != 1) kiln_lb_end(B);
  for (int a = 0; a < n; a++) kiln_lb_store(B, T->F, IADD(T->fofs, CI(a)), LOCAL(T->acc[a]));
  for (int jt = 0; jt < T->MB * T->KB; jt++) {
    kiln_lx *part[16];
    for (int l = 0; l < T->VL; l++) part[l] = kiln_lx_load(B, T->F, IADD(T->fofs, CI(jt * T->VL + l)));
    for (int w = T->VL; w > 1; w /= 2)
      for (int l = 0; l < w / 2; l++) part[l] = BIN(ADD, part[l], part[l + w / 2]);
    kiln_lx *s = T->tt == T->ct ? part[0] : kiln_lx_cast(B, T->tt, part[0]);
    kiln_lb_assign(B, T->tot[jt], BIN(ADD, LOCAL(T->tot[jt]), s));
  }
}

/* The largest divisor of n that is at most cap. */
static int divisor_upto(int64_t n, int cap) {
  for (int b = cap; b > 1; b--)
    if (n % b == 0) return b;
  return 1;
}

/* a * b into *r unless it overflows or passes SCRATCH_MAX elements */
static int size_mul(int64_t a, int64_t b, int64_t *r) {
  return __builtin_mul_overflow(a, b, r) || *r > SCRATCH_MAX;
}

/* Returns 1, having emitted nothing, when the scratch would pass
 * SCRATCH_MAX elements (huge pads: the row form needs none). */
static int lower_packed(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, kiln_dtype ct, kiln_dtype tt) {
  int sp = g->sp;
  gw_tile T = {.ct = ct, .tt = tt, .fma = kiln_target_has_fma(L->target)};
  T.VL = kiln_target_lanes(L->target, ct);
  if (T.VL > 16) T.VL = 16;
  T.VL = 1 << (T.VL >= 16 ? 4 : T.VL >= 8 ? 3 : T.VL >= 4 ? 2 : T.VL >= 2 ? 1 : 0);
  int accs = T.VL >= 16 ? 12 : 8; /* vector sums the registers hold beside the loaded vectors */
  T.KB = divisor_upto(g->ksz, KB_MAX);
  T.MB = divisor_upto(g->Mg, accs / T.KB < 4 ? (accs / T.KB < 1 ? 1 : accs / T.KB) : 4);
  int64_t P[3], pstr[3], psz = 1, V = 1;
  for (int i = sp - 1; i >= 0; i--) {
    P[i] = g->out[i] + (g->K[i] - 1) * g->d[i]; /* <= out + in + pads: shape inference fitted the window */
    pstr[i] = psz;
    if (size_mul(psz, P[i], &psz)) return 1;
  }
  for (int i = 0; i < sp; i++) V += (g->out[i] - 1) * pstr[i];
  int64_t Vr = (V + T.VL - 1) / T.VL * T.VL, pcs = psz + (Vr - V); /* P planes end with the reads past V */
  int64_t nkb = g->ksz / T.KB, nmb = g->M / T.MB, np, nd, nf;
  if (size_mul(g->N * g->C, pcs, &np) || size_mul(g->N * g->M, Vr, &nd) || size_mul(g->M * g->Cg * g->ksz, T.VL, &nf))
    return 1;
  char name[64];
  snprintf(name, sizeof name, "%s_xpad", L->b.k->name);
  T.P = kiln_lower_scratch(L, name, ct, np);
  snprintf(name, sizeof name, "%s_dyv", L->b.k->name);
  T.D = kiln_lower_scratch(L, name, ct, nd);
  snprintf(name, sizeof name, "%s_fold", L->b.k->name);
  T.F = kiln_lower_scratch(L, name, ct, nf);
  kiln_buf *pk = (kiln_buf *)T.P, *dv = (kiln_buf *)T.D;
  const kiln_buf *xb = kiln_lower_buf(L, n->in[0]), *yb = kiln_lower_buf(L, n->in[1]);
  const kiln_sched par = {.parallel = 1}, seq = {0};

  /* P[n, c] = X[n, c] placed at pb in zeros (the part of X any tap reads) */
  kiln_lx *nc = IDX(kiln_lb_for(B, g->N * g->C, par));
  kiln_lx *q = IDX(kiln_lb_for(B, pcs, seq));
  kiln_lb_store(B, pk, IADD(IMUL(nc, pcs), q), kiln_lx_const_f(B, ct, 0));
  kiln_lb_end(B);
  int64_t ext[3];
  int empty = 0;
  for (int i = 0; i < sp; i++) {
    ext[i] = g->in[i] < P[i] - g->pb[i] ? g->in[i] : P[i] - g->pb[i];
    empty |= ext[i] < 1;
  }
  if (!empty) {
    kiln_nest ns = {0};
    kiln_lx *src = IMUL(nc, g->isz), *dst = IMUL(nc, pcs);
    for (int i = 0; i < sp; i++) {
      kiln_lx *p = kiln_nest_for(L, &ns, ext[i], 0);
      src = IADD(src, IMUL(p, g->xstr[i]));
      dst = IADD(dst, IMUL(IADD(p, CI(g->pb[i])), pstr[i]));
    }
    kiln_lb_store(B, pk, dst, kiln_lower_load(L, xb, src));
    nest_close(L, &ns);
  }
  kiln_lb_end(B);

  /* D[n, m, v(o)] = dY[n, m, o], 0 at the virtual positions past a row */
  kiln_lx *nm = IDX(kiln_lb_for(B, g->N * g->M, par));
  q = IDX(kiln_lb_for(B, Vr, seq));
  kiln_lb_store(B, dv, IADD(IMUL(nm, Vr), q), kiln_lx_const_f(B, ct, 0));
  kiln_lb_end(B);
  {
    kiln_nest ns = {0};
    kiln_lx *src = IMUL(nm, g->osz), *dst = IMUL(nm, Vr);
    for (int i = 0; i < sp; i++) {
      kiln_lx *o = kiln_nest_for(L, &ns, g->out[i], 0);
      src = IADD(src, IMUL(o, g->ystr[i]));
      dst = IADD(dst, IMUL(o, pstr[i]));
    }
    kiln_lb_store(B, dv, dst, kiln_lower_load(L, yb, src));
    nest_close(L, &ns);
  }
  kiln_lb_end(B);

  /* one MB x KB tile of dW per iteration */
  kiln_lx *e = IDX(kiln_lb_for(B, nmb * g->Cg * nkb, par));
  int m0 = kiln_lb_decl(B, KILN_DT_I64, IMUL(BIN(DIV, e, CI(g->Cg * nkb)), T.MB));
  int cv = kiln_lb_decl(B, KILN_DT_I64, g->Cg == 1 ? CI(0) : BIN(REM, BIN(DIV, e, CI(nkb)), CI(g->Cg)));
  int kf0 = kiln_lb_decl(B, KILN_DT_I64, nkb == 1 ? CI(0) : IMUL(BIN(REM, e, CI(nkb)), T.KB));
  kiln_lx *grp = g->G == 1 ? CI(0) : BIN(DIV, LOCAL(m0), CI(g->Mg));
  int pch = kiln_lb_decl(B, KILN_DT_I64, IMUL(IADD(IMUL(grp, g->Cg), LOCAL(cv)), pcs));
  kiln_lx *kidx[KB_MAX][3];
  int xo[KB_MAX];
  for (int t = 0; t < T.KB; t++) {
    kiln_lx *kf = IADD(LOCAL(kf0), CI(t)), *off = LOCAL(pch);
    int64_t step = 1;
    for (int i = sp - 1; i >= 0; step *= g->K[i], i--) {
      kidx[t][i] = g->K[i] == 1 ? CI(0) : LOCAL(kiln_lb_decl(B, KILN_DT_I64, BIN(REM, BIN(DIV, kf, CI(step)), CI(g->K[i]))));
      off = IADD(off, IMUL(kidx[t][i], g->d[i] * pstr[i]));
    }
    xo[t] = kiln_lb_decl(B, KILN_DT_I64, off);
  }
  T.fofs = IMUL(e, T.MB * T.KB * T.VL);
  for (int jt = 0; jt < T.MB * T.KB; jt++) T.tot[jt] = kiln_lb_decl(B, tt, kiln_lx_const_f(B, tt, 0));
  kiln_nest ns = {0};
  kiln_lx *nv = kiln_nest_for(L, &ns, g->N, 0);
  for (int j = 0; j < T.MB; j++) T.dofs[j] = IMUL(IADD(IMUL(nv, g->M), IADD(LOCAL(m0), CI(j))), Vr);
  for (int t = 0; t < T.KB; t++) T.pofs[t] = IADD(LOCAL(xo[t]), IMUL(nv, g->C * pcs));
  int64_t steps = Vr / T.VL, bsteps = BLOCK_STEPS, nb = steps / bsteps, rem = steps % bsteps;
  if (nb > 0) {
    kiln_lx *blk = nb == 1 ? CI(0) : IDX(kiln_lb_for(B, nb, seq));
    tile_block(L, &T, IMUL(blk, bsteps), bsteps);
    if (nb > 1) kiln_lb_end(B);
  }
  if (rem > 0) tile_block(L, &T, CI(nb * bsteps), rem);
  nest_close(L, &ns);
  for (int j = 0; j < T.MB; j++)
    for (int t = 0; t < T.KB; t++) {
      kiln_lx *idx[5] = {IADD(LOCAL(m0), CI(j)), LOCAL(cv)};
      for (int i = 0; i < sp; i++) idx[2 + i] = kidx[t][i];
      kiln_lx *flat = IADD(IMUL(IADD(IMUL(IADD(LOCAL(m0), CI(j)), g->Cg), LOCAL(cv)), g->ksz), IADD(LOCAL(kf0), CI(t)));
      kiln_lower_store(L, n, 0, idx, flat, kiln_lx_cast(B, ct, LOCAL(T.tot[j * T.KB + t])));
    }
  kiln_lb_end(B);
  return 0;
}

int kiln_lower_conv_grad_weight(kiln_lctx *L, const kiln_node *n) {
  kiln_conv_geom g;
  if (grad_weight_geom(L, n, &g)) return -1;
  int last = g.sp - 1;
  int64_t kl_n = g.K[last], kin = g.ksz / kl_n; /* taps of the last dim; of the others */
  gw_row r = {.g = &g, .ct = kiln_lower_ctype(n->out[0]->dtype)};
  r.tt = kiln_sum_dtype(r.ct, g.N * g.osz);
  kiln_lower_begin(L, n);
  int strided = 0;
  for (int i = 0; i < g.sp; i++) strided |= g.s[i] != 1;
  if (!strided && !lower_packed(L, n, &g, r.ct, r.tt)) return 0;
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
