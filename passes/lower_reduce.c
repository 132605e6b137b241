/* Reductions: ReduceMean, ReduceSum, ReduceMax and ArgMax.  One kernel
 * per node: loops over the kept dims (outermost parallel), the reduced
 * dims inside them, stated as one loop-IR reduction per output element
 * (ir/loop.h: ReduceSum/ReduceMean an ADD, ReduceMax a MAX_NAN) in
 * kiln_lower_ctype (f16/bf16 in f32) and one store per output element.
 * Neighbouring reduced dims are merged into one loop, and sums are
 * accurate sums (lower_sum.c: long float32 sums are declared f64, which
 * expand_reduce.c blocks into f32 partials of a float64 total).
 *
 * Reduce: axes come from the constant `axes` input; absent or empty axes
 * mean every axis, or, with noop_with_empty_axes, a plain copy.  Over an
 * empty set ReduceSum gives 0, ReduceMax the lowest value (-inf), ReduceMean
 * 0/0.  ReduceMax propagates NaN like numpy's maximum.reduce.
 *
 * ArgMax: index (i64) of the first maximum along axis, or the last with
 * select_last_index; a NaN counts as the maximum (numpy's argmax).  It
 * keeps explicit code: its state is a (value, index) pair, which no
 * single-value combiner of the reduction construct carries. */
#include "lower.h"

#define LB (&L->b)


static kiln_lx *bin(kiln_lctx *L, kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(LB, op, a, b); }

/* Row-major offset of idx over the dims of v selected by sel[i] (all when sel is NULL). */
static kiln_lx *offset_sel(kiln_lctx *L, const kiln_value *v, kiln_lx **idx, const int *sel, int want) {
  kiln_lx *off = kiln_lx_const_i(LB, 0);
  int64_t stride = 1;
  for (int i = v->rank - 1; i >= 0; i--) {
    if (sel && sel[i] != want) continue;
    off = kiln_lx_iadd(LB, off, kiln_lx_imul(LB, idx[i], stride));
    stride *= v->dims[i];
  }
  return off;
}

/* A row-major view of X with extent-1 dims dropped and each run of
 * neighbouring dims that are all reduced (or all kept) merged into one
 * dim: ReduceMean over H and W of NCHW is one row of H*W contiguous
 * values, which the accurate sum blocks as a whole. */
typedef struct reduce_view {
  int n;
  int64_t ext[KILN_MAX_RANK], xstride[KILN_MAX_RANK], ystride[KILN_MAX_RANK];
  int red[KILN_MAX_RANK];
} reduce_view;

static void view_of(const kiln_value *X, const int *red, reduce_view *v) {
  v->n = 0;
  for (int i = 0; i < X->rank; i++) {
    if (X->dims[i] == 1) continue;
    if (v->n > 0 && v->red[v->n - 1] == red[i]) {
      v->ext[v->n - 1] *= X->dims[i];
      continue;
    }
    v->ext[v->n] = X->dims[i];
    v->red[v->n] = red[i];
    v->n++;
  }
  int64_t xs = 1, ys = 1;
  for (int i = v->n - 1; i >= 0; i--) {
    v->xstride[i] = xs;
    xs *= v->ext[i];
    v->ystride[i] = v->red[i] ? 0 : ys;
    if (!v->red[i]) ys *= v->ext[i];
  }
}

int kiln_lower_reduce(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_reduce *a = n->attrs;
  const kiln_value *X = n->in[0], *Y = n->out[0];
  const kiln_value *axes = n->nin > 1 ? n->in[1] : NULL;
  int r = X->rank, red[KILN_MAX_RANK] = {0}, naxes = 0;
  if (axes) {
    if (!axes->data) return kiln_lower_fail(L, n, "axes must be a compile-time constant");
    naxes = (int)kiln_value_numel(axes, 1);
    for (int i = 0; i < naxes; i++) {
      long long ax = kiln_dtype_load_i(axes->dtype, axes->data, (size_t)i);
      if (ax < 0) ax += r;
      if (ax < 0 || ax >= r) return kiln_lower_fail(L, n, "axes entry %lld out of range for rank %d", ax, r);
      red[ax] = 1;
    }
  }
  if (naxes == 0) {
    if (a->noop_with_empty_axes) return kiln_lower_copy(L, n);
    for (int i = 0; i < r; i++) red[i] = 1;
  }
  kiln_buf *xb = kiln_lower_buf(L, X);
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  int64_t count = 1;
  for (int i = 0; i < r; i++)
    if (red[i]) count *= X->dims[i];
  kiln_lower_begin(L, n);
  if (kiln_value_numel(Y, 1) == 0) return 0;
  reduce_view v;
  view_of(X, red, &v);
  int last = -1; /* the innermost reduced dim of the view: the sum's row */
  for (int i = 0; i < v.n; i++)
    if (v.red[i]) last = i;
  kiln_nest ns = {0};
  kiln_lx *xoff = kiln_lx_const_i(LB, 0), *yoff = kiln_lx_const_i(LB, 0);
  for (int i = 0; i < v.n; i++)
    if (!v.red[i]) {
      kiln_lx *k = kiln_nest_for(L, &ns, v.ext[i], 1);
      xoff = kiln_lx_iadd(LB, xoff, kiln_lx_imul(LB, k, v.xstride[i]));
      yoff = kiln_lx_iadd(LB, yoff, kiln_lx_imul(LB, k, v.ystride[i]));
    }
  kiln_lx *res;
  if (n->op == KILN_OP_REDUCE_MAX) { /* NaN propagates (numpy's maximum.reduce) */
    int acc = kiln_lb_reduce_begin(LB, KILN_RED_MAX_NAN, ct, NULL, (kiln_sched){0});
    for (int i = 0; i < v.n; i++)
      if (v.red[i]) xoff = kiln_lx_iadd(LB, xoff, kiln_lx_imul(LB, kiln_nest_for(L, &ns, v.ext[i], 0), v.xstride[i]));
    kiln_lb_combine(LB, acc, kiln_lx_cast(LB, ct, kiln_lx_load(LB, xb, xoff)));
    for (int i = 0; i < v.n; i++)
      if (v.red[i]) kiln_nest_end(L, &ns);
    kiln_lb_reduce_end(LB);
    res = kiln_lx_local(LB, acc);
  } else { /* an accurate sum (lower_sum.c); the last reduced dim is its row */
    int sum = kiln_sum_begin(L, ct, count);
    for (int i = 0; i < last; i++)
      if (v.red[i]) xoff = kiln_lx_iadd(LB, xoff, kiln_lx_imul(LB, kiln_nest_for(L, &ns, v.ext[i], 0), v.xstride[i]));
    int64_t row = last >= 0 ? v.ext[last] : count, stride = last >= 0 ? v.xstride[last] : 0;
    if (row > 0) {
      kiln_lx *j = kiln_lx_index(LB, kiln_lb_for(LB, row, (kiln_sched){0}));
      kiln_lb_combine(LB, sum, kiln_lx_cast(LB, ct, kiln_lx_load(LB, xb, kiln_lx_iadd(LB, xoff, kiln_lx_imul(LB, j, stride)))));
      kiln_lb_end(LB);
    }
    for (int i = 0; i < last; i++)
      if (v.red[i]) kiln_nest_end(L, &ns);
    kiln_lb_reduce_end(LB);
    /* ReduceMean over an empty set is 0/0 (NaN) */
    res = kiln_sum_result(L, sum, ct, n->op == KILN_OP_REDUCE_MEAN ? kiln_lx_const_i(LB, count) : NULL);
  }
  kiln_lower_store_flat(L, n, 0, yoff, res);
  for (int i = 0; i < v.n; i++)
    if (!v.red[i]) kiln_nest_end(L, &ns);
  return 0;
}

int kiln_lower_argmax(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_argmax *a = n->attrs;
  const kiln_value *X = n->in[0], *Y = n->out[0];
  int r = X->rank, ax = (int)a->axis;
  if (ax < 0 || ax >= r) return kiln_lower_fail(L, n, "axis %d out of range for rank %d", ax, r);
  kiln_buf *xb = kiln_lower_buf(L, X);
  kiln_dtype ct = kiln_lower_ctype(X->dtype);
  int sel[KILN_MAX_RANK] = {0};
  sel[ax] = 1;
  kiln_lower_begin(L, n);
  if (kiln_value_numel(Y, 1) == 0) return 0;
  if (X->dims[ax] == 0) return kiln_lower_fail(L, n, "ArgMax over an empty axis");
  kiln_nest ns = {0};
  kiln_lx *idx[KILN_MAX_RANK];
  for (int i = 0; i < r; i++)
    if (i != ax) idx[i] = kiln_nest_for(L, &ns, X->dims[i], 1);
  idx[ax] = kiln_lx_const_i(LB, 0);
  int best = kiln_lb_decl(LB, ct, kiln_lx_cast(LB, ct, kiln_lx_load(LB, xb, kiln_lower_addr(L, X, idx))));
  int at = kiln_lb_decl(LB, KILN_DT_I64, kiln_lx_const_i(LB, 0));
  idx[ax] = kiln_nest_for(L, &ns, X->dims[ax], 0);
  kiln_lx *x = kiln_lx_cast(LB, ct, kiln_lx_load(LB, xb, kiln_lower_addr(L, X, idx)));
  kiln_lx *b = kiln_lx_local(LB, best), *take;
  if (a->select_last_index) {
    take = bin(L, KILN_BIN_LE, b, x);
    if (kiln_dtype_is_float(ct)) take = bin(L, KILN_BIN_OR, take, kiln_lx_un(LB, KILN_UN_ISNAN, x));
  } else {
    take = bin(L, KILN_BIN_LT, b, x);
    if (kiln_dtype_is_float(ct))
      take = bin(L, KILN_BIN_OR, take,
                 bin(L, KILN_BIN_AND, kiln_lx_un(LB, KILN_UN_ISNAN, x), kiln_lx_un(LB, KILN_UN_NOT, kiln_lx_un(LB, KILN_UN_ISNAN, b))));
  }
  kiln_lb_if(LB, take);
  kiln_lb_assign(LB, best, x);
  kiln_lb_assign(LB, at, idx[ax]);
  kiln_lb_end(LB);
  kiln_nest_end(L, &ns);
  kiln_lower_store_flat(L, n, 0, offset_sel(L, X, idx, sel, 0), kiln_lx_local(LB, at));
  for (int i = 0; i < r; i++)
    if (i != ax) kiln_nest_end(L, &ns);
  return 0;
}
