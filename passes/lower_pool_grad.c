/* Gradients of MaxPool and AveragePool (kiln.MaxPoolGrad, kiln.AveragePoolGrad,
 * made by autodiff: passes/grad_pool.c): dX from dY by scattering each
 * output's gradient back onto its window.
 *
 * Loop structure (one kernel per node):
 *   for nc in N*C (parallel)             one (batch, channel) plane
 *     A[plane] = 0                       the accumulator plane
 *     for o0 .. o_{k-1} (sequential)     every output position
 *       MaxPool: best = first maximum of the window (strict <, window
 *                order, padding skipped: ONNX's Indices rule and
 *                PyTorch's), then A[best] += dY[o]
 *       AveragePool: A[tap] += dY[o] / count(o) for every tap inside X
 *     (A != dX: one pass dX[plane] = A[plane] through the final store)
 * A scatter, not a gather: windows overlap when stride < kernel (and
 * dilation interleaves them), so an element of X receives from several
 * outputs; the output loops stay sequential for that reason, while
 * planes are independent.  The work is MaxPool's forward plus one add
 * per output (AveragePool: one per tap), instead of a gather's
 * (taps)^2 per element.  A is dX's own buffer when dX is f32/f64 and the
 * node has no epilogue; otherwise a scratch plane buffer in the compute
 * type, stored through kiln_lower_store_flat (so f16 accumulates in f32
 * and fused steps apply once, to the finished sum).  count(o) follows
 * lower_pool.c's AveragePool divisor exactly (count_include_pad both
 * ways; a ceil_mode window hanging past the end padding counts only the
 * taps inside input + pads). */
#include "lower.h"

#include "lower_macros.h"

static const kiln_sched seq_sched = {0};
static const kiln_sched par_sched = {.parallel = 1};



int kiln_lower_pool_grad(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_pool *a = n->attrs;
  int is_max = n->op == KILN_OP_MAX_POOL_GRAD;
  const kiln_value *dy = n->in[is_max ? 1 : 0], *dx = n->out[0];
  int sp = dx->rank - 2;
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && n->in[k]->layout != KILN_LAYOUT_PLAIN)
      return kiln_lower_fail(L, n, "input '%s' has a blocked layout, which a pooling gradient does not lower",
                             n->in[k]->name);
  if (dx->layout != KILN_LAYOUT_PLAIN)
    return kiln_lower_fail(L, n, "output '%s' has a blocked layout, which a pooling gradient does not lower", dx->name);
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  if (!kiln_dtype_is_float(dx->dtype))
    return kiln_lower_fail(L, n, "a pooling gradient needs a floating-point dY, got %s", kiln_dtype_name(dx->dtype));
  kiln_dtype ct = kiln_lower_ctype(dx->dtype);
  kiln_buf *X = is_max ? kiln_lower_buf(L, n->in[0]) : NULL, *DY = kiln_lower_buf(L, dy);
  kiln_buf *DX = kiln_lower_buf(L, dx);
  int direct = DX->dtype == ct && !kiln_lower_has_epilogue(n);

  int64_t in[3], out[3], K[3], s[3], d[3], pb[3], pe[3], xstr[3], ystr[3], isz = 1, osz = 1;
  for (int i = 0; i < sp; i++) {
    in[i] = dx->dims[2 + i];
    out[i] = dy->dims[2 + i];
    K[i] = a->kernel_shape.v[i];
    s[i] = a->strides.v[i];
    d[i] = a->dilations.v[i];
    pb[i] = a->pads.v[i];
    pe[i] = a->pads.v[i + sp];
  }
  for (int i = sp - 1; i >= 0; i--) { xstr[i] = isz; isz *= in[i]; ystr[i] = osz; osz *= out[i]; }
  int64_t NC = dx->dims[0] * dx->dims[1];
  kiln_buf *A = DX;
  if (!direct) {
    char name[64];
    snprintf(name, sizeof name, "pool_grad_acc%d", n->id);
    A = kiln_lower_scratch(L, name, ct, NC * isz);
  }

  kiln_lower_begin(L, n);
  if (NC * isz == 0) return 0;
  kiln_lx *nc = IDX(kiln_lb_for(B, NC, par_sched));
  kiln_lx *xbase = IMUL(nc, isz);
  kiln_lx *i = IDX(kiln_lb_for(B, isz, par_sched));
  kiln_lb_store(B, A, IADD(xbase, i), kiln_lx_const_f(B, ct, 0));
  kiln_lb_end(B);

  if (osz > 0) {
    kiln_lx *o[3];
    for (int k = 0; k < sp; k++) o[k] = IDX(kiln_lb_for(B, out[k], seq_sched)); /* scatter: sequential */
    kiln_lx *yoff = IMUL(nc, osz);
    for (int k = 0; k < sp; k++) yoff = IADD(yoff, IMUL(o[k], ystr[k]));
    int g = kiln_lb_decl(B, ct, kiln_lx_cast(B, ct, kiln_lx_load(B, DY, yoff)));
    if (!is_max) {
      kiln_lx *cnt = CI(1);
      for (int k = 0; k < sp; k++) {
        int64_t lo = a->count_include_pad ? -pb[k] : 0, hi = a->count_include_pad ? in[k] + pe[k] : in[k];
        kiln_lx *c = kiln_lower_pool_taps(L, o[k], s[k], pb[k], K[k], d[k], lo, hi, out[k]);
        cnt = cnt->kind == KILN_LX_CONST && c->kind == KILN_LX_CONST ? CI(cnt->i * c->i) : BIN(MUL, cnt, c);
      }
      /* a window with no tap inside X (count 0) scatters nothing: the
       * quotient is never stored */
      kiln_lb_assign(B, g, BIN(DIV, kiln_lx_local(B, g), kiln_lx_cast(B, ct, cnt)));
    }
    int best = is_max ? kiln_lb_decl(B, KILN_DT_I64, CI(-1)) : -1;
    int bv = is_max ? kiln_lb_decl(B, ct, kiln_lx_reduce_identity(B, KILN_RED_MAX, ct)) : -1;
    int open = 0;
    kiln_lx *off = xbase;
    for (int k = 0; k < sp; k++) {
      kiln_lx *t = IDX(kiln_lb_for(B, K[k], seq_sched));
      open++;
      kiln_lx *pos = IADD(IADD(IMUL(o[k], s[k]), IMUL(t, d[k])), CI(-pb[k]));
      int need_hi = (out[k] - 1) * s[k] - pb[k] + (K[k] - 1) * d[k] >= in[k];
      kiln_lx *ok = kiln_lower_in_range(L, pos, pb[k] > 0, need_hi, in[k]);
      if (ok) { kiln_lb_if(B, ok); open++; }
      off = IADD(off, IMUL(pos, xstr[k]));
    }
    if (is_max) {
      /* the first maximum in window order wins (strict <); a NaN never does */
      kiln_lx *v = kiln_lx_local(B, kiln_lb_decl(B, ct, kiln_lx_cast(B, ct, kiln_lx_load(B, X, off))));
      kiln_lx *first = BIN(OR, BIN(LT, kiln_lx_local(B, best), CI(0)), BIN(LT, kiln_lx_local(B, bv), v));
      kiln_lb_if(B, BIN(AND, first, BIN(EQ, v, v))); /* v == v: not NaN */
      kiln_lb_assign(B, bv, v);
      kiln_lb_assign(B, best, off);
      kiln_lb_end(B);
    } else {
      kiln_lb_store(B, A, off, BIN(ADD, kiln_lx_load(B, A, off), kiln_lx_local(B, g)));
    }
    kiln_lower_close(L, open);
    if (is_max) {
      kiln_lx *bi = kiln_lx_local(B, best);
      kiln_lb_if(B, BIN(LE, CI(0), bi));
      kiln_lb_store(B, A, bi, BIN(ADD, kiln_lx_load(B, A, bi), kiln_lx_local(B, g)));
      kiln_lb_end(B);
    }
    kiln_lower_close(L, sp);
  }

  if (!direct) {
    kiln_lx *j = IDX(kiln_lb_for(B, isz, par_sched));
    kiln_lx *f = IADD(xbase, j);
    kiln_lower_store_flat(L, n, 0, f, kiln_lx_load(B, A, f));
    kiln_lb_end(B);
  }
  kiln_lb_end(B);
  return 0;
}
