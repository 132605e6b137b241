/* Convolution: Conv and ConvTranspose, 1D/2D/3D, groups (depthwise
 * included), strides, dilations, asymmetric pads, optional bias.
 *
 * Both are written output-stationary, one kernel per node:
 *   for nm in N*M (parallel)             one (batch, output channel) plane
 *     n, m and the plane's base offsets  (the only div/mod, once per plane)
 *     for o0 .. o_{k-1}                  output spatial dims, the last
 *                                        (contiguous width) innermost
 *       acc = bias[m] or 0
 *       for k0 .. k_{k-1}                kernel taps; a bounds IF per dim
 *                                        only where it can fail
 *         for c in C/group               input channels of the group
 *           acc += X[...] * W[...]
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
#include "lower.h"

#define B (&L->b)
#define CI(v) kiln_lx_const_i(B, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define IADD(a, b) kiln_lx_iadd(B, (a), (b))
#define IMUL(a, k) kiln_lx_imul(B, (a), (k))
#define IDX(v) kiln_lx_index(B, (v))
#define LOCAL(v) kiln_lx_local(B, (v))

static const kiln_sched seq_sched = {0};
static const kiln_sched par_sched = {.parallel = 1};

/* The geometry both ops share. */
typedef struct conv_geom {
  int sp;                                       /* spatial dims, 1..3 */
  int64_t N, C, M, G, Cg, Mg;                   /* batch, in/out channels, groups */
  int64_t in[3], out[3], K[3], s[3], d[3], pb[3];
  int64_t xstr[3], ystr[3], kstr[3];            /* row-major spatial strides */
  int64_t isz, osz, ksz;                        /* spatial sizes */
} conv_geom;

static int conv_setup(kiln_lctx *L, const kiln_node *n, conv_geom *g) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && n->in[k]->layout != KILN_LAYOUT_PLAIN)
      return kiln_lower_fail(L, n, "input '%s' has a blocked layout, which %s does not lower yet", n->in[k]->name,
                             kiln_op_get(n->op)->name);
  if (y->layout != KILN_LAYOUT_PLAIN)
    return kiln_lower_fail(L, n, "output '%s' has a blocked layout, which %s does not lower yet", y->name,
                           kiln_op_get(n->op)->name);
  if (!kiln_dtype_is_float(x->dtype) || w->dtype != x->dtype)
    return kiln_lower_fail(L, n, "%s needs floating-point X and W of one type, got %s and %s",
                           kiln_op_get(n->op)->name, kiln_dtype_name(x->dtype), kiln_dtype_name(w->dtype));
  int sp = g->sp = x->rank - 2;
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = y->dims[1];
  g->G = a->group;
  g->Cg = g->C / g->G;
  g->Mg = g->M / g->G;
  g->isz = g->osz = g->ksz = 1;
  for (int i = sp - 1; i >= 0; i--) {
    g->in[i] = x->dims[2 + i];
    g->out[i] = y->dims[2 + i];
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

/* The output loops and the accumulator, initialised to B[m] or 0. */
static int open_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int mv, kiln_lx **o) {
  for (int i = 0; i < g->sp; i++) o[i] = IDX(kiln_lb_for(B, g->out[i], seq_sched));
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  const kiln_value *bias = n->nin > 2 ? n->in[2] : NULL;
  kiln_lx *init = bias ? kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, bias), LOCAL(mv)))
                       : kiln_lx_const_f(B, ct, 0);
  return kiln_lb_decl(B, ct, init);
}

/* Stores the accumulator and closes the output and plane loops. */
static void close_outputs(kiln_lctx *L, const kiln_node *n, const conv_geom *g, kiln_lx *nm, kiln_lx **o, int acc) {
  kiln_lx *yoff = IMUL(nm, g->osz);
  for (int i = 0; i < g->sp; i++) yoff = IADD(yoff, IMUL(o[i], g->ystr[i]));
  kiln_lb_store(B, kiln_lower_buf(L, n->out[0]), yoff, LOCAL(acc));
  kiln_lower_close(L, g->sp + 1);
}

/* for c in C/group: acc += X[xoff + c*xcs] * W[woff + c*wcs] */
static void channel_loop(kiln_lctx *L, const kiln_node *n, const conv_geom *g, int acc, kiln_lx *xoff, int64_t xcs,
                         kiln_lx *woff, int64_t wcs) {
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  kiln_lx *c = IDX(kiln_lb_for(B, g->Cg, seq_sched));
  kiln_lx *xv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, n->in[0]), IADD(xoff, IMUL(c, xcs))));
  kiln_lx *wv = kiln_lx_cast(B, ct, kiln_lx_load(B, kiln_lower_buf(L, n->in[1]), IADD(woff, IMUL(c, wcs))));
  kiln_lb_assign(B, acc, BIN(ADD, LOCAL(acc), BIN(MUL, xv, wv)));
  kiln_lb_end(B);
}

/* Conv: Y[n, m, o] = B[m] + sum_{k, c} X[n, grp*Cg + c, o*s - pb + k*d] * W[m, c, k]
 * with grp = m / (M/group). */
int kiln_lower_conv(kiln_lctx *L, const kiln_node *n) {
  conv_geom g;
  if (conv_setup(L, n, &g)) return -1;
  if (n->in[1]->dims[1] != g.Cg || n->in[1]->dims[0] != g.M)
    return kiln_lower_fail(L, n, "W does not match X, Y and group (run shape inference first)");
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
  close_outputs(L, n, &g, nm, o, acc);
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
  close_outputs(L, n, &g, nm, o, acc);
  return 0;
}
