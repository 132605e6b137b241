/* Resize (and Upsample, which the importer turns into Resize).
 *
 * Resampling is separable: along each resized axis an output coordinate x
 * maps to an input coordinate x_ori (coordinate_transformation_mode), and
 * the output value is a weighted sum over a few neighbouring input
 * positions ("taps") per axis, nested in axis order like the ONNX
 * reference (the innermost axis is interpolated first).  Per axis:
 *
 *   x_ori  = transform(x)                        (f64, in the reference's
 *                                                 operation order)
 *   L      = ceil(x_ori) - 1, ratio = x_ori - L  (ratio in (0, 1]: an
 *                                                 integer x_ori sits on L+1)
 *   taps   i in [start, start + n) at L + i, weight K(|i - ratio| * sc)
 *
 * with K the tent (linear) or Keys cubic kernel (cubic_coeff_a).  Without
 * antialias sc = 1 and n = 2 (linear) or 4 (cubic); with antialias the
 * kernel is stretched by 1/min(scale, 1) when downsampling (more taps) and
 * the weights are normalised to sum 1.  exclude_outside zeroes the weights
 * of taps outside the input and renormalises.  Tap positions outside the
 * input read the edge element (the reference pads by edge replication), so
 * every load index is clamped into the input.  nearest picks one tap: the
 * rounding of x_ori by nearest_mode (an integer x_ori is itself).
 * tf_crop_and_resize gives extrapolation_value wherever some axis' x_ori
 * falls outside [0, in - 1].
 *
 * All per-axis quantities are computed once per index of that axis, in
 * locals declared at that axis' loop level; the innermost loop only loads
 * and accumulates (in the element compute type; f64 for integer data,
 * which is then rounded half to even and saturated, as the reference).
 * Many taps (antialiased downsampling by a large factor) are looped over
 * instead of unrolled.
 * Axes whose mapping is the identity (scale 1 and x_ori == x everywhere,
 * checked at compile time) are plain indices. */
#include <math.h>
#include <string.h>

#include "../ir/shape.h"
#include "lower.h"

#define B (&L->b)

enum { MAXTAPS = 64, UNROLL_LIMIT = 64 };

typedef enum { NEAREST, LINEAR, CUBIC } rs_mode;
typedef enum { HALF_PIXEL, HALF_PIXEL_SYM, PYTORCH_HALF_PIXEL, ALIGN_CORNERS, ASYMMETRIC, TF_CROP } rs_ctm;
typedef enum { ROUND_PREFER_FLOOR, ROUND_PREFER_CEIL, FLOOR, CEIL } rs_nearest;

typedef struct rs_axis {
  int resized;        /* 0: output index = input index */
  int64_t in, out;    /* input and output extent */
  double s;           /* scale factor */
  double ow;          /* s * in: the reference's (fractional) output width */
  double span, roi0w; /* tf_crop_and_resize: roi_end - roi_start, roi_start * (in - 1) */
  double sym_off;     /* half_pixel_symmetric's offset */
  double sc;          /* kernel scale: min(s, 1) with antialias, else 1 */
  int start, ntaps;   /* taps at L + start .. L + start + ntaps - 1 */
  /* locals, valid inside this axis' loop */
  int nearest_idx, left, ratio, sum, outside;
  int cidx[MAXTAPS], coef[MAXTAPS];
} rs_axis;

typedef struct rs {
  rs_mode mode;
  rs_ctm ctm;
  rs_nearest nm;
  double A, extrap;
  int exclude, antialias, normalize, unrolled;
  kiln_dtype ct; /* compute type of the weighted sums */
  int r;
  rs_axis ax[KILN_MAX_RANK];
} rs;

/* ---- the coordinate transform, in C (identity check) and in loop IR ---- */

static double coord_c(const rs *R, const rs_axis *a, int64_t x) {
  double xd = (double)x, w = (double)a->in;
  switch (R->ctm) {
  case ALIGN_CORNERS: return a->ow == 1 ? 0.0 : (double)(x * (a->in - 1)) / (a->ow - 1);
  case ASYMMETRIC: return xd / a->s;
  case TF_CROP: return (a->ow == 1 ? a->span * (w - 1) / 2 : xd * a->span * (w - 1) / (a->ow - 1)) + a->roi0w;
  case PYTORCH_HALF_PIXEL:
    if (a->ow == 1) return -0.5;
    return (xd + 0.5) / a->s - 0.5;
  case HALF_PIXEL: return (xd + 0.5) / a->s - 0.5;
  case HALF_PIXEL_SYM: return a->sym_off + (xd + 0.5) / a->s - 0.5;
  }
  return xd;
}

static kiln_lx *fc(kiln_lctx *L, double v) { return kiln_lx_const_f(B, KILN_DT_F64, v); }
static kiln_lx *fbin(kiln_lctx *L, kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(B, op, a, b); }

static kiln_lx *coord_ir(kiln_lctx *L, const rs *R, const rs_axis *a, kiln_lx *x) {
  kiln_lx *xd = kiln_lx_cast(B, KILN_DT_F64, x);
  double w = (double)a->in;
  switch (R->ctm) {
  case ALIGN_CORNERS:
    if (a->ow == 1) return fc(L, 0.0);
    return fbin(L, KILN_BIN_DIV, kiln_lx_cast(B, KILN_DT_F64, kiln_lx_imul(B, x, a->in - 1)), fc(L, a->ow - 1));
  case ASYMMETRIC: return fbin(L, KILN_BIN_DIV, xd, fc(L, a->s));
  case TF_CROP: {
    kiln_lx *v = a->ow == 1 ? fc(L, a->span * (w - 1) / 2)
                            : fbin(L, KILN_BIN_DIV, fbin(L, KILN_BIN_MUL, fbin(L, KILN_BIN_MUL, xd, fc(L, a->span)), fc(L, w - 1)),
                                   fc(L, a->ow - 1));
    return fbin(L, KILN_BIN_ADD, v, fc(L, a->roi0w));
  }
  case PYTORCH_HALF_PIXEL:
    if (a->ow == 1) return fc(L, -0.5);
    /* fallthrough */
  case HALF_PIXEL:
  case HALF_PIXEL_SYM: {
    kiln_lx *v = fbin(L, KILN_BIN_DIV, fbin(L, KILN_BIN_ADD, xd, fc(L, 0.5)), fc(L, a->s));
    if (R->ctm == HALF_PIXEL_SYM) v = fbin(L, KILN_BIN_ADD, fc(L, a->sym_off), v);
    return fbin(L, KILN_BIN_SUB, v, fc(L, 0.5));
  }
  }
  return xd;
}

static kiln_lx *iclamp(kiln_lctx *L, kiln_lx *v, int64_t lo, int64_t hi) {
  v = kiln_lx_bin(B, KILN_BIN_MAX, v, kiln_lx_const_i(B, lo));
  return kiln_lx_bin(B, KILN_BIN_MIN, v, kiln_lx_const_i(B, hi));
}

/* Unnormalised weight of tap position i (i64 expression: L + i is the
 * input index) for this axis' ratio local. */
static kiln_lx *tap_weight(kiln_lctx *L, const rs *R, const rs_axis *a, kiln_lx *i) {
  kiln_lx *ratio = kiln_lx_local(B, a->ratio);
  kiln_lx *d = kiln_lx_un(B, KILN_UN_ABS, fbin(L, KILN_BIN_SUB, kiln_lx_cast(B, KILN_DT_F64, i), ratio));
  if (a->sc != 1.0) d = fbin(L, KILN_BIN_MUL, d, fc(L, a->sc));
  kiln_lx *w;
  if (R->mode == LINEAR) {
    w = fbin(L, KILN_BIN_MAX, fbin(L, KILN_BIN_SUB, fc(L, 1.0), d), fc(L, 0.0));
  } else {
    double A = R->A;
    /* |d| <= 1: ((A+2)d - (A+3)) d^2 + 1;  1 < |d| < 2: ((A d - 5A) d + 8A) d - 4A */
    kiln_lx *near = fbin(L, KILN_BIN_ADD,
                         fbin(L, KILN_BIN_MUL, fbin(L, KILN_BIN_MUL, fbin(L, KILN_BIN_SUB, fbin(L, KILN_BIN_MUL, fc(L, A + 2), d),
                                                                          fc(L, A + 3)), d), d),
                         fc(L, 1.0));
    kiln_lx *far = fbin(L, KILN_BIN_SUB,
                        fbin(L, KILN_BIN_MUL,
                             fbin(L, KILN_BIN_ADD, fbin(L, KILN_BIN_MUL, fbin(L, KILN_BIN_SUB, fbin(L, KILN_BIN_MUL, fc(L, A), d),
                                                                          fc(L, 5 * A)), d),
                                  fc(L, 8 * A)),
                             d),
                        fc(L, 4 * A));
    w = kiln_lx_select(B, fbin(L, KILN_BIN_LE, d, fc(L, 1.0)), near,
                       kiln_lx_select(B, fbin(L, KILN_BIN_LT, d, fc(L, 2.0)), far, fc(L, 0.0)));
  }
  if (R->exclude) {
    kiln_lx *u = kiln_lx_iadd(B, kiln_lx_local(B, a->left), i);
    kiln_lx *in = kiln_lx_bin(B, KILN_BIN_AND, kiln_lx_bin(B, KILN_BIN_LE, kiln_lx_const_i(B, 0), u),
                              kiln_lx_bin(B, KILN_BIN_LT, u, kiln_lx_const_i(B, a->in)));
    w = kiln_lx_select(B, in, w, fc(L, 0.0));
  }
  return w;
}

/* Normalised weight of tap position i. */
static kiln_lx *tap_weight_n(kiln_lctx *L, const rs *R, const rs_axis *a, kiln_lx *i) {
  kiln_lx *w = tap_weight(L, R, a, i);
  return R->normalize ? fbin(L, KILN_BIN_DIV, w, kiln_lx_local(B, a->sum)) : w;
}

/* Clamped input index of tap position i. */
static kiln_lx *tap_index(kiln_lctx *L, const rs_axis *a, kiln_lx *i) {
  return iclamp(L, kiln_lx_iadd(B, kiln_lx_local(B, a->left), i), 0, a->in - 1);
}

/* Per-axis locals, emitted inside the loop over output index x of axis a. */
static void emit_axis(kiln_lctx *L, const rs *R, rs_axis *a, kiln_lx *x) {
  int xo = kiln_lb_decl(B, KILN_DT_F64, coord_ir(L, R, a, x));
  kiln_lx *xv = kiln_lx_local(B, xo);
  if (R->ctm == TF_CROP)
    a->outside = kiln_lb_decl(B, KILN_DT_BOOL, kiln_lx_bin(B, KILN_BIN_OR, fbin(L, KILN_BIN_LT, xv, fc(L, 0.0)),
                                                           fbin(L, KILN_BIN_LT, fc(L, (double)(a->in - 1)), xv)));
  int fl = kiln_lb_decl(B, KILN_DT_F64, kiln_lx_un(B, KILN_UN_FLOOR, xv));
  kiln_lx *fli = kiln_lx_cast(B, KILN_DT_I64, kiln_lx_local(B, fl)), *frac = NULL;
  if (R->mode != NEAREST || R->nm != FLOOR) /* floor needs no fraction (and no unused local) */
    frac = kiln_lx_local(B, kiln_lb_decl(B, KILN_DT_F64, fbin(L, KILN_BIN_SUB, xv, kiln_lx_local(B, fl))));
  if (R->mode == NEAREST) {
    kiln_lx *up = NULL; /* round up to floor + 1 (frac == 0: x_ori itself) */
    switch (R->nm) {
    case ROUND_PREFER_FLOOR: up = fbin(L, KILN_BIN_LT, fc(L, 0.5), frac); break;
    case ROUND_PREFER_CEIL: up = fbin(L, KILN_BIN_LE, fc(L, 0.5), frac); break;
    case FLOOR: break;
    case CEIL: up = fbin(L, KILN_BIN_LT, fc(L, 0.0), frac); break;
    }
    kiln_lx *idx = fli;
    if (up) idx = kiln_lx_iadd(B, idx, kiln_lx_select(B, up, kiln_lx_const_i(B, 1), kiln_lx_const_i(B, 0)));
    a->nearest_idx = kiln_lb_decl(B, KILN_DT_I64, iclamp(L, idx, 0, a->in - 1));
    return;
  }
  kiln_lx *isint = fbin(L, KILN_BIN_EQ, frac, fc(L, 0.0));
  a->ratio = kiln_lb_decl(B, KILN_DT_F64, kiln_lx_select(B, isint, fc(L, 1.0), frac));
  a->left = kiln_lb_decl(B, KILN_DT_I64, kiln_lx_bin(B, KILN_BIN_SUB, fli,
                                                     kiln_lx_select(B, isint, kiln_lx_const_i(B, 1), kiln_lx_const_i(B, 0))));
  if (R->unrolled) {
    kiln_lx *sum = NULL;
    for (int k = 0; k < a->ntaps; k++) {
      kiln_lx *i = kiln_lx_const_i(B, a->start + k);
      a->cidx[k] = kiln_lb_decl(B, KILN_DT_I64, tap_index(L, a, i));
      a->coef[k] = kiln_lb_decl(B, KILN_DT_F64, tap_weight(L, R, a, i));
      kiln_lx *c = kiln_lx_local(B, a->coef[k]);
      sum = sum ? fbin(L, KILN_BIN_ADD, sum, c) : c;
    }
    if (R->normalize) {
      a->sum = kiln_lb_decl(B, KILN_DT_F64, sum);
      for (int k = 0; k < a->ntaps; k++)
        kiln_lb_assign(B, a->coef[k], fbin(L, KILN_BIN_DIV, kiln_lx_local(B, a->coef[k]), kiln_lx_local(B, a->sum)));
    }
  } else if (R->normalize) {
    a->sum = kiln_lb_decl(B, KILN_DT_F64, fc(L, 0.0));
    kiln_sched seq = {0};
    kiln_lx *t = kiln_lx_index(B, kiln_lb_for(B, a->ntaps, seq));
    kiln_lx *w = tap_weight(L, R, a, kiln_lx_iadd(B, t, kiln_lx_const_i(B, a->start)));
    kiln_lb_assign(B, a->sum, fbin(L, KILN_BIN_ADD, kiln_lx_local(B, a->sum), w));
    kiln_lb_end(B);
  }
}

/* Unrolled weighted sum over the taps of axes d.. (nested like the
 * reference: outer axis over inner results). */
static kiln_lx *accum(kiln_lctx *L, const rs *R, int d, kiln_lx *off, kiln_lx **idx, const kiln_buf *in,
                      const int64_t *xs) {
  if (d == R->r) {
    kiln_lx *v = kiln_lx_load(B, in, off);
    return R->mode == NEAREST ? v : kiln_lx_cast(B, R->ct, v);
  }
  const rs_axis *a = &R->ax[d];
  if (!a->resized) return accum(L, R, d + 1, kiln_lx_iadd(B, off, kiln_lx_imul(B, idx[d], xs[d])), idx, in, xs);
  if (R->mode == NEAREST)
    return accum(L, R, d + 1, kiln_lx_iadd(B, off, kiln_lx_imul(B, kiln_lx_local(B, a->nearest_idx), xs[d])), idx, in, xs);
  kiln_lx *sum = NULL;
  for (int k = 0; k < a->ntaps; k++) {
    kiln_lx *o = kiln_lx_iadd(B, off, kiln_lx_imul(B, kiln_lx_local(B, a->cidx[k]), xs[d]));
    kiln_lx *t = kiln_lx_bin(B, KILN_BIN_MUL, kiln_lx_cast(B, R->ct, kiln_lx_local(B, a->coef[k])), accum(L, R, d + 1, o, idx, in, xs));
    sum = sum ? kiln_lx_bin(B, KILN_BIN_ADD, sum, t) : t;
  }
  return sum;
}

/* x is resized into y with n's attributes and the roi, scales and sizes
 * inputs in rss[0..3) (NULL: absent); kiln.ResizeGrad passes its dX and
 * dY. */
static int parse(kiln_lctx *L, const kiln_node *n, const kiln_value *x, const kiln_value *y,
                 const kiln_value *const *rss, rs *R) {
  const kiln_attrs_resize *at = n->attrs;
  memset(R, 0, sizeof *R);
  R->r = x->rank;
  if (!strcmp(at->mode, "nearest")) R->mode = NEAREST;
  else if (!strcmp(at->mode, "linear")) R->mode = LINEAR;
  else if (!strcmp(at->mode, "cubic")) R->mode = CUBIC;
  else return kiln_lower_fail(L, n, "mode '%s' is not one of nearest, linear, cubic", at->mode);
  static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                     "align_corners", "asymmetric", "tf_crop_and_resize"};
  int found = 0;
  for (int i = 0; i < 6; i++)
    if (!strcmp(at->coordinate_transformation_mode, ctms[i])) { R->ctm = (rs_ctm)i; found = 1; }
  if (!found)
    return kiln_lower_fail(L, n, "coordinate_transformation_mode '%s' is not supported", at->coordinate_transformation_mode);
  static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  found = 0;
  for (int i = 0; i < 4; i++)
    if (!strcmp(at->nearest_mode, nms[i])) { R->nm = (rs_nearest)i; found = 1; }
  if (!found && R->mode == NEAREST) return kiln_lower_fail(L, n, "nearest_mode '%s' is not supported", at->nearest_mode);
  R->A = at->cubic_coeff_a;
  R->extrap = at->extrapolation_value;
  R->exclude = at->exclude_outside != 0;
  R->antialias = at->antialias != 0 && R->mode != NEAREST;
  if (at->antialias && R->mode == NEAREST)
    return kiln_lower_fail(L, n, "antialias is defined for linear and cubic modes only, not nearest");
  R->normalize = R->antialias || R->exclude;
  R->ct = kiln_dtype_is_float(x->dtype) ? kiln_lower_ctype(x->dtype) : KILN_DT_F64;

  /* the resized axes and their scales */
  int na = at->axes.n ? at->axes.n : R->r, axes[KILN_MAX_RANK];
  if (na > KILN_MAX_RANK) return kiln_lower_fail(L, n, "too many axes");
  for (int i = 0; i < na; i++) {
    int64_t a = at->axes.n ? at->axes.v[i] : i;
    if (a < 0) a += R->r;
    if (a < 0 || a >= R->r) return kiln_lower_fail(L, n, "axes entry %lld is out of range", (long long)a);
    axes[i] = (int)a;
  }
  const kiln_value *roi = rss[0], *scales = rss[1], *sizes = rss[2];
  if (roi && (kiln_value_numel(roi, 1) == 0 || !roi->data)) roi = NULL;
  if (scales && kiln_value_numel(scales, 1) == 0) scales = NULL;
  if (sizes && kiln_value_numel(sizes, 1) == 0) sizes = NULL;
  if ((scales && !scales->data) || (sizes && !sizes->data) || (!scales && !sizes))
    return kiln_lower_fail(L, n, "scales or sizes must be a constant");
  if (R->ctm == TF_CROP && roi && kiln_value_numel(roi, 1) != 2 * na)
    return kiln_lower_fail(L, n, "roi has %lld entries, expected %d", (long long)kiln_value_numel(roi, 1), 2 * na);
  double common = 0;
  int policy = strcmp(at->keep_aspect_ratio_policy, "not_larger") == 0   ? 1
               : strcmp(at->keep_aspect_ratio_policy, "not_smaller") == 0 ? 2
                                                                          : 0;
  if (!scales && policy) {
    common = policy == 1 ? INFINITY : 0;
    for (int i = 0; i < na; i++) {
      double s = (double)kiln_dtype_load_i(sizes->dtype, sizes->data, (size_t)i) / (double)x->dims[axes[i]];
      common = policy == 1 ? fmin(common, s) : fmax(common, s);
    }
  }
  for (int i = 0; i < na; i++) {
    rs_axis *a = &R->ax[axes[i]];
    a->resized = 1;
    a->in = x->dims[axes[i]];
    a->out = y->dims[axes[i]];
    if (scales) a->s = kiln_dtype_load_f(scales->dtype, scales->data, (size_t)i);
    else if (policy) a->s = common;
    else a->s = (double)kiln_dtype_load_i(sizes->dtype, sizes->data, (size_t)i) / (double)a->in;
    a->ow = a->s * (double)a->in;
    double r0 = 0, r1 = 1;
    if (roi) {
      r0 = kiln_dtype_load_f(roi->dtype, roi->data, (size_t)i);
      r1 = kiln_dtype_load_f(roi->dtype, roi->data, (size_t)(na + i));
    }
    if (roi && roi->dtype == KILN_DT_F32) { /* the reference's float32 arithmetic */
      a->span = (double)((float)r1 - (float)r0);
      a->roi0w = (double)((float)r0 * (float)(a->in - 1));
    } else {
      a->span = r1 - r0;
      a->roi0w = r0 * (double)(a->in - 1);
    }
    a->sym_off = ((double)a->in / 2) * (1 - (double)a->out / a->ow);
  }
  for (int d = 0; d < R->r; d++) {
    rs_axis *a = &R->ax[d];
    if (!a->resized) continue;
    if (a->out > 0 && a->in == 0) return kiln_lower_fail(L, n, "cannot resize an empty axis %d to %lld", d, (long long)a->out);
    if (!(a->s > 0)) return kiln_lower_fail(L, n, "axis %d has a non-positive scale", d);
    a->sc = R->antialias && a->s < 1 ? a->s : 1.0;
    if (R->mode == NEAREST) {
      a->start = 0;
      a->ntaps = 1;
    } else {
      a->start = (int)floor((R->mode == LINEAR ? -1.0 : -2.0) / a->sc) + 1;
      a->ntaps = 2 - 2 * a->start;
    }
    if (a->ntaps > MAXTAPS) return kiln_lower_fail(L, n, "antialias scale %g on axis %d needs too many taps", a->s, d);
    /* identity: same extent and x_ori == x for every output index */
    int ident = a->out == a->in;
    for (int64_t xx = 0; ident && xx < a->out; xx++) ident = coord_c(R, a, xx) == (double)xx;
    if (ident) a->resized = 0;
  }
  int64_t combos = 1;
  for (int d = 0; d < R->r; d++)
    if (R->ax[d].resized) combos *= R->ax[d].ntaps;
  R->unrolled = combos <= UNROLL_LIMIT;
  return 0;
}

int kiln_lower_resize(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  rs R;
  const kiln_value *rss[3];
  for (int k = 0; k < 3; k++) rss[k] = k + 1 < n->nin ? n->in[k + 1] : NULL;
  if (parse(L, n, x, y, rss, &R)) return -1;
  kiln_buf *in = kiln_lower_buf(L, x);
  int64_t xs[KILN_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  for (int d = 0; d < R.r; d++) {
    kiln_sched sc = {.parallel = 1}; /* one output element per iteration */
    idx[d] = kiln_lx_index(B, kiln_lb_for(B, y->dims[d], sc));
    if (R.ax[d].resized) emit_axis(L, &R, &R.ax[d], idx[d]);
  }
  kiln_lx *v;
  if (R.unrolled || R.mode == NEAREST) {
    v = accum(L, &R, 0, kiln_lx_const_i(B, 0), idx, in, xs);
  } else {
    /* many taps (antialiased downsampling): loops over the taps */
    int acc = kiln_lb_decl(B, R.ct, kiln_lx_const_f(B, R.ct, 0));
    int nt = 0;
    kiln_lx *off = kiln_lx_const_i(B, 0), *w = NULL;
    for (int d = 0; d < R.r; d++) {
      const rs_axis *a = &R.ax[d];
      if (!a->resized) {
        off = kiln_lx_iadd(B, off, kiln_lx_imul(B, idx[d], xs[d]));
        continue;
      }
      kiln_sched seq = {0};
      kiln_lx *t = kiln_lx_iadd(B, kiln_lx_index(B, kiln_lb_for(B, a->ntaps, seq)), kiln_lx_const_i(B, a->start));
      nt++;
      off = kiln_lx_iadd(B, off, kiln_lx_imul(B, tap_index(L, a, t), xs[d]));
      kiln_lx *wd = tap_weight_n(L, &R, a, t);
      w = w ? kiln_lx_bin(B, KILN_BIN_MUL, w, wd) : wd;
    }
    kiln_lx *term = kiln_lx_bin(B, KILN_BIN_MUL, kiln_lx_cast(B, R.ct, w), kiln_lx_cast(B, R.ct, kiln_lx_load(B, in, off)));
    kiln_lb_assign(B, acc, kiln_lx_bin(B, KILN_BIN_ADD, kiln_lx_local(B, acc), term));
    kiln_lower_close(L, nt);
    v = kiln_lx_local(B, acc);
  }
  if (R.ctm == TF_CROP) {
    kiln_lx *any = NULL;
    for (int d = 0; d < R.r; d++) {
      if (!R.ax[d].resized) continue;
      kiln_lx *o = kiln_lx_local(B, R.ax[d].outside);
      any = any ? kiln_lx_bin(B, KILN_BIN_OR, any, o) : o;
    }
    if (any) {
      kiln_dtype t = v->dtype;
      kiln_lx *e = kiln_dtype_is_float(t) ? kiln_lx_const_f(B, t, R.extrap) : kiln_lx_cast(B, t, fc(L, R.extrap));
      v = kiln_lx_select(B, any, e, v);
    }
  }
  /* integer data: round half to even, then the store's saturating cast
   * (as the reference's saturate_cast) */
  if (R.mode != NEAREST && !kiln_dtype_is_float(y->dtype)) v = kiln_lx_un(B, KILN_UN_ROUND_EVEN, v);
  kiln_lower_store_output(L, n, 0, idx, v);
  kiln_lower_close(L, R.r);
  return 0;
}

/* ---- kiln.ResizeGrad: the transpose of the interpolation ---------------
 * dX = 0, then for every dY element, in row-major order (the forward's
 * loops over its output), every tap the forward read there gets weight *
 * dY added: the same per-axis locals (emit_axis), each load turned into a
 * read-modify-write of dX.  A clamped tap (edge replication) adds into
 * the edge element, as the forward read it; tf_crop_and_resize positions
 * that gave extrapolation_value add nothing.  Loops over axes that are
 * not resized are parallel (they address disjoint parts of dX); resized
 * axes are sequential, so every sum is taken in one fixed order.  Tap
 * weights multiply in f64 and meet dY in the compute type. */
static void scatter(kiln_lctx *L, const rs *R, int d, kiln_lx *off, kiln_lx *w, kiln_lx **idx, const kiln_buf *xb,
                    const int64_t *xs, kiln_lx *g) {
  if (d == R->r) {
    kiln_lx *v = w ? kiln_lx_bin(B, KILN_BIN_MUL, kiln_lx_cast(B, R->ct, w), g) : g;
    kiln_lx *old = kiln_lx_load(B, xb, off);
    if (old->dtype != R->ct) old = kiln_lx_cast(B, R->ct, old);
    kiln_lx *sum = kiln_lx_bin(B, KILN_BIN_ADD, old, v);
    kiln_lb_store(B, xb, off, sum->dtype == xb->dtype ? sum : kiln_lx_cast(B, xb->dtype, sum));
    return;
  }
  const rs_axis *a = &R->ax[d];
  if (!a->resized) {
    scatter(L, R, d + 1, kiln_lx_iadd(B, off, kiln_lx_imul(B, idx[d], xs[d])), w, idx, xb, xs, g);
    return;
  }
  if (R->mode == NEAREST) {
    scatter(L, R, d + 1, kiln_lx_iadd(B, off, kiln_lx_imul(B, kiln_lx_local(B, a->nearest_idx), xs[d])), w, idx, xb, xs, g);
    return;
  }
  for (int k = 0; k < a->ntaps; k++) {
    kiln_lx *c = kiln_lx_local(B, a->coef[k]);
    scatter(L, R, d + 1, kiln_lx_iadd(B, off, kiln_lx_imul(B, kiln_lx_local(B, a->cidx[k]), xs[d])),
            w ? fbin(L, KILN_BIN_MUL, w, c) : c, idx, xb, xs, g);
  }
}

int kiln_lower_resize_grad(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *dy = n->in[0], *dx = n->out[0];
  rs R;
  const kiln_value *rss[3];
  for (int k = 0; k < 3; k++) rss[k] = k + 2 < n->nin ? n->in[k + 2] : NULL;
  if (parse(L, n, dx, dy, rss, &R)) return -1;
  if (R.mode == CUBIC) return kiln_lower_fail(L, n, "cubic resizing has no gradient yet");
  if (!R.unrolled && R.mode != NEAREST)
    return kiln_lower_fail(L, n, "the gradient of antialiased downsampling by this factor is not implemented");
  kiln_buf *yb = kiln_lower_buf(L, dy), *xb = kiln_lower_buf(L, dx);
  int64_t xs[KILN_MAX_RANK], s = 1;
  for (int i = dx->rank - 1; i >= 0; i--) {
    xs[i] = s;
    s *= dx->dims[i];
  }
  if (kiln_value_numel(dx, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lx *zero = kiln_lx_const_f(B, R.ct, 0);
  kiln_lower_loops(L, dx, idx);
  kiln_lb_store(B, xb, kiln_lower_offset(L, dx, idx), zero->dtype == dx->dtype ? zero : kiln_lx_cast(B, dx->dtype, zero));
  kiln_lower_close(L, dx->rank);
  if (kiln_value_numel(dy, 1) > 0) {
    for (int d = 0; d < R.r; d++) {
      kiln_sched sc = {.parallel = !R.ax[d].resized};
      idx[d] = kiln_lx_index(B, kiln_lb_for(B, dy->dims[d], sc));
      if (R.ax[d].resized) emit_axis(L, &R, &R.ax[d], idx[d]);
    }
    kiln_lx *gv = kiln_lx_load(B, yb, kiln_lower_addr(L, dy, idx));
    if (gv->dtype != R.ct) gv = kiln_lx_cast(B, R.ct, gv);
    kiln_lx *g = kiln_lx_local(B, kiln_lb_decl(B, R.ct, gv));
    kiln_lx *any = NULL;
    for (int d = 0; R.ctm == TF_CROP && d < R.r; d++)
      if (R.ax[d].resized) {
        kiln_lx *o = kiln_lx_local(B, R.ax[d].outside);
        any = any ? kiln_lx_bin(B, KILN_BIN_OR, any, o) : o;
      }
    if (any) kiln_lb_if(B, kiln_lx_un(B, KILN_UN_NOT, any));
    scatter(L, &R, 0, kiln_lx_const_i(B, 0), NULL, idx, xb, xs, g);
    if (any) kiln_lb_end(B);
    kiln_lower_close(L, R.r);
  }
  if (kiln_lower_has_epilogue(n)) {
    kiln_lower_loops(L, dx, idx);
    kiln_lx *v = kiln_lx_load(B, xb, kiln_lower_offset(L, dx, idx));
    kiln_lower_store_output(L, n, 0, idx, v->dtype == R.ct ? v : kiln_lx_cast(B, R.ct, v));
    kiln_lower_close(L, dx->rank);
  }
  return 0;
}
