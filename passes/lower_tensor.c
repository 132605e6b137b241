/* Data-movement ops: Transpose, Concat, Split, Slice, Pad, Expand, Gather,
 * Shape, ConstantOfShape.  Shapes are static and every '#' input (Slice's
 * starts/ends, Pad's pads, Split's sizes, Expand's shape) is a constant
 * here, so all addressing is affine in the loop indices except Gather's
 * run-time indices and Pad's border mapping.  Outer loops are parallel;
 * loops walk the output in row-major order so the innermost loop writes
 * contiguous memory. */
#include <string.h>

#include "../ir/shape.h"
#include "lower.h"

/* ir/shape_tensor.c: Slice's constant inputs as per-axis start/step. */
int kiln_slice_params(kiln_shape_ctx *c, const kiln_node *n, int64_t *start, int64_t *step, kiln_dim *out);

#define B (&L->b)

static const kiln_sched PAR = {.parallel = 1};

static kiln_lx *ci(kiln_lctx *L, int64_t v) { return kiln_lx_const_i(B, v); }
static kiln_lx *iadd(kiln_lctx *L, kiln_lx *a, kiln_lx *b) { return kiln_lx_iadd(B, a, b); }
static kiln_lx *imul(kiln_lctx *L, kiln_lx *a, int64_t k) { return kiln_lx_imul(B, a, k); }
static kiln_lx *imin(kiln_lctx *L, kiln_lx *a, int64_t k) { return kiln_lx_bin(B, KILN_BIN_MIN, a, ci(L, k)); }
static kiln_lx *imax(kiln_lctx *L, kiln_lx *a, int64_t k) { return kiln_lx_bin(B, KILN_BIN_MAX, a, ci(L, k)); }
static kiln_lx *iclamp(kiln_lctx *L, kiln_lx *a, int64_t lo, int64_t hi) { return imin(L, imax(L, a, lo), hi); }

/* A constant of dtype t: integers keep all 64 bits (no trip through double). */
static kiln_lx *konst(kiln_lctx *L, kiln_dtype t, double f, int64_t i) {
  if (kiln_dtype_is_float(t)) return kiln_lx_const_f(B, t, f);
  kiln_lx *e = kiln_lx_const_i(B, i);
  e->dtype = t;
  if (t == KILN_DT_BOOL) e->i = i != 0;
  e->f = (double)e->i;
  return e;
}

/* Element k of constant value v as a constant of compute type t. */
static kiln_lx *konst_elem(kiln_lctx *L, kiln_dtype t, kiln_dtype vt, const void *data, size_t k) {
  if (kiln_dtype_is_float(vt)) {
    double f = kiln_dtype_load_f(vt, data, k);
    return konst(L, t, f, (int64_t)f);
  }
  int64_t i = (int64_t)kiln_dtype_load_i(vt, data, k);
  return konst(L, t, (double)i, i);
}

static void strides_of(const kiln_value *v, int64_t *st) {
  int64_t s = 1;
  for (int i = v->rank - 1; i >= 0; i--) {
    st[i] = s;
    s *= v->dims[i];
  }
}

/* dst[o * dst_row + dst_off + j] = src[o * src_row + src_off + j] for
 * o < outer, j < len: Concat's and Split's pieces, one contiguous run per
 * outer index; both loops are parallel (independent iterations). */
static void copy_rows(kiln_lctx *L, const kiln_node *n, int slot, int64_t dst_row, int64_t dst_off, kiln_buf *src, int64_t src_row,
                      int64_t src_off, int64_t outer, int64_t len) {
  if (outer <= 0 || len <= 0) return;
  kiln_lx *o = NULL;
  if (outer > 1) o = kiln_lx_index(B, kiln_lb_for(B, outer, PAR));
  kiln_lx *j = kiln_lx_index(B, kiln_lb_for(B, len, PAR));
  kiln_lx *di = ci(L, dst_off), *si = ci(L, src_off);
  if (o) {
    di = iadd(L, imul(L, o, dst_row), di);
    si = iadd(L, imul(L, o, src_row), si);
  }
  kiln_lower_store_flat(L, n, slot, iadd(L, di, j), kiln_lx_load(B, src, iadd(L, si, j)));
  kiln_lb_end(B);
  if (o) kiln_lb_end(B);
}

/* ---- Transpose ---------------------------------------------------------
 * Output dims whose input dims are also adjacent (in the same order) are
 * merged, and size-1 dims dropped, so e.g. NCHW -> NHWC becomes a 3-D
 * loop nest.  out[o] = in[sum o_g * in_stride_g]. */
int kiln_lower_transpose(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_transpose *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  kiln_buf *in = kiln_lower_buf(L, x);
  int r = x->rank;
  if (a->perm.n != r) return kiln_lower_fail(L, n, "perm has %d entries, input has rank %d", a->perm.n, r);
  int64_t xs[KILN_MAX_RANK], gdim[KILN_MAX_RANK], gstr[KILN_MAX_RANK];
  strides_of(x, xs);
  int ng = 0;
  for (int i = 0; i < r; i++) {
    int p = (int)a->perm.v[i];
    int64_t d = x->dims[p];
    if (d == 1) continue;
    if (ng > 0 && gstr[ng - 1] == xs[p] * d) { /* continues the previous run */
      gdim[ng - 1] *= d;
      gstr[ng - 1] = xs[p];
      continue;
    }
    gdim[ng] = d;
    gstr[ng] = xs[p];
    ng++;
  }
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *oo = ci(L, 0), *io = ci(L, 0);
  for (int g = 0; g < ng; g++) {
    kiln_lx *v = kiln_lx_index(B, kiln_lb_for(B, gdim[g], PAR));
    oo = iadd(L, imul(L, oo, gdim[g]), v);
    io = iadd(L, io, imul(L, v, gstr[g]));
  }
  kiln_lower_store_flat(L, n, 0, oo, kiln_lx_load(B, in, io));
  kiln_lower_close(L, ng);
  return 0;
}

/* ---- Concat / Split ----------------------------------------------------
 * Viewed as [outer, axis * inner]: each input (output) is one contiguous
 * run per outer index. */
int kiln_lower_concat(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_concat *a = n->attrs;
  const kiln_value *y = n->out[0];
  int ax = (int)a->axis;
  if (ax < 0) ax += y->rank;
  if (ax < 0 || ax >= y->rank) return kiln_lower_fail(L, n, "axis %lld is out of range", (long long)a->axis);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; i++) outer *= y->dims[i];
  for (int i = ax + 1; i < y->rank; i++) inner *= y->dims[i];
  int64_t row = y->dims[ax] * inner, off = 0;
  if (outer * row == 0) return 0; /* nothing to copy: no kernel */
  /* inputs whose bytes already are their slice's (views.c: same root, same
   * place) were written there by their producers: only the others are
   * copied; none left, no kernel */
  int begun = 0;
  for (int k = 0; k < n->nin; k++) {
    const kiln_value *x = n->in[k];
    if (!x) continue;
    int64_t len = x->dims[ax] * inner;
    kiln_buf *in = kiln_lower_buf(L, x);
    int64_t in_at, out_at;
    const kiln_buf *in_root = kiln_buf_root(in, &in_at), *out_root = kiln_buf_root(kiln_lower_buf(L, y), &out_at);
    if (kiln_lower_has_epilogue(n) ||
        !(in_root == out_root && outer == 1 && in_at == out_at + off * (int64_t)kiln_dtype_size(y->dtype))) {
      if (!begun++) kiln_lower_begin(L, n);
      copy_rows(L, n, 0, row, off, in, len, 0, outer, len);
    }
    off += len;
  }
  return 0;
}

int kiln_lower_split(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_split *a = n->attrs;
  const kiln_value *x = n->in[0];
  kiln_buf *in = kiln_lower_buf(L, x);
  int ax = (int)a->axis;
  if (ax < 0) ax += x->rank;
  if (ax < 0 || ax >= x->rank) return kiln_lower_fail(L, n, "axis %lld is out of range", (long long)a->axis);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; i++) outer *= x->dims[i];
  for (int i = ax + 1; i < x->rank; i++) inner *= x->dims[i];
  int64_t row = x->dims[ax] * inner, off = 0;
  if (outer * row == 0) return 0; /* nothing to copy: no kernel */
  kiln_lower_begin(L, n);
  for (int k = 0; k < n->nout; k++) {
    const kiln_value *y = n->out[k];
    /* an output nobody reads still occupies its part of the axis: its
     * length comes from the split input, or the equal-parts rule */
    if (!y) {
      int64_t sz[64];
      int cnt;
      kiln_shape_ctx c = {L->g, L->d, 0};
      if (kiln_shape_const_ints(&c, n, 1, sz, 64, &cnt)) return -1;
      if (cnt <= k) {
        /* equal parts (the last may be shorter): as kiln_shape_split */
        int64_t each = (x->dims[ax] + n->nout - 1) / n->nout, left = x->dims[ax] - each * k;
        off += (left < each ? (left > 0 ? left : 0) : each) * inner;
      } else {
        off += sz[k] * inner;
      }
      continue;
    }
    int64_t len = y->dims[ax] * inner;
    copy_rows(L, n, k, len, 0, in, row, off, outer, len);
    off += len;
  }
  return 0;
}

/* ---- Slice -------------------------------------------------------------
 * out[o] = in[sum (start_i + o_i * step_i) * stride_i]; steps may be
 * negative (starts were clamped by shape inference's rules). */
int kiln_lower_slice(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK], xs[KILN_MAX_RANK];
  kiln_dim od[KILN_MAX_RANK];
  kiln_shape_ctx c = {L->g, L->d, 0};
  if (kiln_slice_params(&c, n, start, step, od)) return -1;
  kiln_buf *in = kiln_lower_buf(L, x);
  strides_of(x, xs);
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lower_loops(L, y, idx);
  int64_t base = 0;
  kiln_lx *io = ci(L, 0);
  for (int i = 0; i < x->rank; i++) {
    base += start[i] * xs[i];
    io = iadd(L, io, imul(L, idx[i], step[i] * xs[i]));
  }
  kiln_lower_store_output(L, n, 0, idx, kiln_lx_load(B, in, iadd(L, io, ci(L, base))));
  kiln_lower_close(L, y->rank);
  return 0;
}

/* ---- Pad ---------------------------------------------------------------
 * Negative pads crop: per axis the input region [lo, lo + len) is kept
 * (lo = the begin crop), then padded by the positive pads.  Output index o
 * maps to region coordinate c = o - pad_begin, which the mode brings back
 * into [0, len): constant selects the pad value outside, edge clamps,
 * reflect mirrors about the end elements, wrap takes c mod len.  Every
 * load index is clamped into the input, so the constant case reads no
 * out-of-bounds element either. */
int kiln_lower_pad(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_pad *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  kiln_shape_ctx c = {L->g, L->d, 0};
  int64_t pads[2 * 64], axes[64];
  int kp, ka, r = x->rank;
  if (kiln_shape_const_ints(&c, n, 1, pads, 2 * 64, &kp) || kiln_shape_const_ints(&c, n, 3, axes, 64, &ka)) return -1;
  int na = ka >= 0 ? ka : r;
  if (kp != 2 * na) return kiln_lower_fail(L, n, "pads has %d entries, expected %d", kp, 2 * na);
  int64_t pb[KILN_MAX_RANK] = {0}, pe[KILN_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int64_t ax = ka >= 0 ? axes[i] : i;
    if (ax < 0) ax += r;
    if (ax < 0 || ax >= r) return kiln_lower_fail(L, n, "axes entry %lld is out of range", (long long)axes[i]);
    pb[ax] = pads[i];
    pe[ax] = pads[i + na];
  }
  enum { CONSTANT, EDGE, REFLECT, WRAP } mode = !strcmp(a->mode, "edge") ? EDGE : !strcmp(a->mode, "reflect") ? REFLECT
                                                 : !strcmp(a->mode, "wrap") ? WRAP : CONSTANT;
  kiln_buf *in = kiln_lower_buf(L, x);
  kiln_dtype ct = kiln_lower_ctype(y->dtype);
  kiln_lx *cv = konst(L, ct, 0, 0);
  const kiln_value *cvv = n->nin > 2 ? n->in[2] : NULL;
  if (cvv && kiln_value_numel(cvv, 1) > 0) {
    if (!cvv->data) return kiln_lower_fail(L, n, "constant_value must be a constant");
    cv = konst_elem(L, ct, cvv->dtype, cvv->data, 0);
  }
  int64_t lo[KILN_MAX_RANK], len[KILN_MAX_RANK], xs[KILN_MAX_RANK];
  int empty = 0;
  strides_of(x, xs);
  for (int i = 0; i < r; i++) {
    lo[i] = pb[i] < 0 ? -pb[i] : 0;
    len[i] = x->dims[i] - lo[i] - (pe[i] < 0 ? -pe[i] : 0);
    if (len[i] <= 0) empty = 1;
  }
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  if (empty && mode != CONSTANT)
    return kiln_lower_fail(L, n, "%s padding of an empty (or fully cropped) axis", a->mode);
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lower_loops(L, y, idx);
  kiln_lx *io = ci(L, 0), *inside = NULL;
  for (int i = 0; i < r && !empty; i++) {
    int64_t b = pb[i] > 0 ? pb[i] : 0, e = pe[i] > 0 ? pe[i] : 0, m = len[i];
    kiln_lx *cc = iadd(L, idx[i], ci(L, -b)), *src = cc;
    if (b || e) {
      switch (mode) {
      case CONSTANT: {
        kiln_lx *ok = NULL;
        if (b) ok = kiln_lx_bin(B, KILN_BIN_LE, ci(L, 0), cc);
        if (e) {
          kiln_lx *hi = kiln_lx_bin(B, KILN_BIN_LT, cc, ci(L, m));
          ok = ok ? kiln_lx_bin(B, KILN_BIN_AND, ok, hi) : hi;
        }
        inside = inside ? kiln_lx_bin(B, KILN_BIN_AND, inside, ok) : ok;
        src = iclamp(L, cc, 0, m - 1);
        break;
      }
      case EDGE: src = iclamp(L, cc, 0, m - 1); break;
      case REFLECT: {
        /* one mirror each side (shape inference keeps pads < dim); the
         * clamp guards the cropped-and-reflected corner case */
        kiln_lx *neg = kiln_lx_bin(B, KILN_BIN_LT, cc, ci(L, 0));
        kiln_lx *c1 = kiln_lx_select(B, neg, kiln_lx_un(B, KILN_UN_NEG, cc), cc);
        kiln_lx *over = kiln_lx_bin(B, KILN_BIN_LT, ci(L, m - 1), c1);
        kiln_lx *c2 = kiln_lx_select(B, over, kiln_lx_bin(B, KILN_BIN_SUB, ci(L, 2 * (m - 1)), c1), c1);
        src = iclamp(L, c2, 0, m - 1);
        break;
      }
      case WRAP: {
        int64_t k = (b + m - 1) / m; /* makes c + k*m >= 0 */
        src = kiln_lx_bin(B, KILN_BIN_REM, iadd(L, idx[i], ci(L, k * m - b)), ci(L, m));
        break;
      }
      }
    }
    io = iadd(L, io, imul(L, iadd(L, src, ci(L, lo[i])), xs[i]));
  }
  kiln_lx *v;
  if (empty) {
    v = cv;
  } else {
    v = kiln_lx_cast(B, ct, kiln_lx_load(B, in, io));
    if (inside) v = kiln_lx_select(B, inside, v, cv);
  }
  kiln_lower_store_output(L, n, 0, idx, v);
  kiln_lower_close(L, y->rank);
  return 0;
}

/* ---- Expand: a broadcast copy. ---- */
int kiln_lower_expand(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  kiln_buf *in = kiln_lower_buf(L, x);
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lower_loops(L, y, idx);
  kiln_lower_store_output(L, n, 0, idx, kiln_lx_load(B, in, kiln_lower_bcast_offset(L, x, y->rank, idx)));
  kiln_lower_close(L, y->rank);
  return 0;
}

/* ---- Gather ------------------------------------------------------------
 * out[pre, j..., post] = data[pre, idx[j...], post].  Indices are read at
 * run time: negative ones count from the end, and any index still outside
 * [0, dim) is clamped into it, so a bad index reads a valid element (the
 * nearest end) instead of memory outside the tensor.  Constant indices
 * were range-checked by shape inference. */
int kiln_lower_gather(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_gather *a = n->attrs;
  const kiln_value *x = n->in[0], *ind = n->in[1], *y = n->out[0];
  kiln_buf *in = kiln_lower_buf(L, x), *ib = kiln_lower_buf(L, ind);
  int ax = (int)a->axis, q = ind->rank;
  if (ax < 0) ax += x->rank;
  if (ax < 0 || ax >= x->rank) return kiln_lower_fail(L, n, "axis %lld is out of range", (long long)a->axis);
  int64_t xs[KILN_MAX_RANK], dim = x->dims[ax];
  strides_of(x, xs);
  if (kiln_value_numel(y, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *idx[KILN_MAX_RANK];
  int gd = -1, last = ax + q; /* the index is read once the loops over its dims are open */
  for (int d = 0; d <= y->rank; d++) {
    if (d == last && dim > 0) {
      kiln_lx *jo = kiln_lower_addr(L, ind, idx + ax);
      int raw = kiln_lb_decl(B, KILN_DT_I64, kiln_lx_load(B, ib, jo));
      kiln_lx *g = kiln_lx_local(B, raw);
      g = kiln_lx_select(B, kiln_lx_bin(B, KILN_BIN_LT, g, ci(L, 0)), iadd(L, g, ci(L, dim)), g);
      /* an index outside [-dim, dim) is clamped into [0, dim): never read out of bounds */
      gd = kiln_lb_decl(B, KILN_DT_I64, iclamp(L, g, 0, dim - 1));
    }
    if (d == y->rank) break;
    idx[d] = kiln_lx_index(B, kiln_lb_for(B, y->dims[d], PAR));
  }
  kiln_lx *v;
  if (dim == 0) { /* every index is out of range: nothing to read */
    v = konst(L, y->dtype, 0, 0);
  } else {
    kiln_lx *io = ci(L, 0);
    for (int i = 0; i < x->rank; i++) {
      kiln_lx *e = i < ax ? idx[i] : i == ax ? kiln_lx_local(B, gd) : idx[i + q - 1];
      io = iadd(L, io, imul(L, e, xs[i]));
    }
    v = kiln_lx_load(B, in, io);
  }
  kiln_lower_store_output(L, n, 0, idx, v);
  kiln_lower_close(L, y->rank);
  return 0;
}

/* ---- Shape (normally folded away): the dims are compile-time numbers. ---- */
int kiln_lower_shape(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_shape *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  int r = x->rank;
  int64_t s = a->start, e = a->end;
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = s < 0 ? 0 : s > r ? r : s;
  e = e < 0 ? 0 : e > r ? r : e;
  if (e <= s) return 0; /* empty: no kernel */
  kiln_lower_begin(L, n);
  for (int64_t i = s; i < e; i++) kiln_lower_store_flat(L, n, 0, ci(L, i - s), konst(L, y->dtype, (double)x->dims[i], x->dims[i]));
  return 0;
}

/* ---- ConstantOfShape: fill with the `value` attribute (default f32 0). ---- */
int kiln_lower_constant_of_shape(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_constant_of_shape *a = n->attrs;
  const kiln_value *y = n->out[0];
  kiln_dtype ct = kiln_lower_ctype(y->dtype);
  kiln_lx *v = a->value.dtype != KILN_DT_UNDEF && a->value.count > 0
                   ? konst_elem(L, ct, a->value.dtype, a->value.data, 0)
                   : konst(L, ct, 0, 0);
  int64_t m = kiln_value_numel(y, 1);
  if (m == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *i = kiln_lx_index(B, kiln_lb_for(B, m, PAR));
  kiln_lower_store_flat(L, n, 0, i, v);
  kiln_lb_end(B);
  return 0;
}
