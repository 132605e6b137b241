/* kiln.GatherGrad: the gradient of Gather, a scatter-add.
 *
 *   dX = 0;  dX[pre, idx[j...], post] += dY[pre, j..., post]
 *
 * One kernel: a pass zeroing dX, then one over dY in row-major order.
 * Repeated indices add up, in the order of j (deterministic); negative
 * indices count from the end and any index still outside [0, dim) is
 * clamped into it, as Gather's lowering reads (constant indices were
 * range-checked by the shape function).  Only the loops over pre and post
 * are parallel: two iterations of the j loops may add into one element.
 * The sums are in the compute type and stored in dX's buffer as they go;
 * with an epilogue (fused elementwise ops) one last pass stores every
 * element through it (lower_store.c). */
#include "lower.h"

#define B (&L->b)

static kiln_lx *ci(kiln_lctx *L, int64_t v) { return kiln_lx_const_i(B, v); }

static kiln_lx *as(kiln_lctx *L, kiln_dtype t, kiln_lx *v) { return v->dtype == t ? v : kiln_lx_cast(B, t, v); }

int kiln_lower_gather_grad(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_gather *a = n->attrs;
  const kiln_value *dy = n->in[0], *ind = n->in[1], *dx = n->out[0];
  int ax = (int)a->axis, q = ind->rank;
  if (ax < 0 || ax >= dx->rank) return kiln_lower_fail(L, n, "axis %lld is out of range", (long long)a->axis);
  kiln_buf *yb = kiln_lower_buf(L, dy), *ib = kiln_lower_buf(L, ind), *xb = kiln_lower_buf(L, dx);
  kiln_dtype ct = kiln_lower_ctype(dx->dtype);
  int64_t dim = dx->dims[ax];
  if (kiln_value_numel(dx, 1) == 0) return 0; /* nothing to compute: no kernel */
  kiln_lower_begin(L, n);
  kiln_lx *xi[KILN_MAX_RANK];
  kiln_lower_loops(L, dx, xi);
  kiln_lb_store(B, xb, kiln_lower_addr(L, dx, xi), as(L, dx->dtype, kiln_lx_const_f(B, ct, 0)));
  kiln_lower_close(L, dx->rank);
  if (kiln_value_numel(dy, 1) > 0) {
    kiln_lx *idx[2 * KILN_MAX_RANK];
    int gd = -1;
    for (int d = 0; d < dy->rank; d++) {
      kiln_sched s = {.parallel = d < ax || d >= ax + q};
      idx[d] = kiln_lx_index(B, kiln_lb_for(B, dy->dims[d], s));
      if (q > 0 && d == ax + q - 1) { /* every index dim open: read the index */
        int raw = kiln_lb_decl(B, KILN_DT_I64, as(L, KILN_DT_I64, kiln_lx_load(B, ib, kiln_lower_addr(L, ind, idx + ax))));
        kiln_lx *g = kiln_lx_local(B, raw);
        g = kiln_lx_select(B, kiln_lx_bin(B, KILN_BIN_LT, g, ci(L, 0)), kiln_lx_iadd(B, g, ci(L, dim)), g);
        g = kiln_lx_bin(B, KILN_BIN_MIN, kiln_lx_bin(B, KILN_BIN_MAX, g, ci(L, 0)), ci(L, dim - 1));
        gd = kiln_lb_decl(B, KILN_DT_I64, g);
      }
    }
    if (q == 0) { /* a scalar index: read once */
      kiln_lx *g = as(L, KILN_DT_I64, kiln_lx_load(B, ib, ci(L, 0)));
      g = kiln_lx_select(B, kiln_lx_bin(B, KILN_BIN_LT, g, ci(L, 0)), kiln_lx_iadd(B, g, ci(L, dim)), g);
      gd = kiln_lb_decl(B, KILN_DT_I64, kiln_lx_bin(B, KILN_BIN_MIN, kiln_lx_bin(B, KILN_BIN_MAX, g, ci(L, 0)), ci(L, dim - 1)));
    }
    for (int i = 0; i < dx->rank; i++) xi[i] = i < ax ? idx[i] : i == ax ? kiln_lx_local(B, gd) : idx[i + q - 1];
    kiln_lx *at = kiln_lower_addr(L, dx, xi);
    kiln_lx *sum = kiln_lx_bin(B, KILN_BIN_ADD, as(L, ct, kiln_lx_load(B, xb, at)), as(L, ct, kiln_lx_load(B, yb, kiln_lower_addr(L, dy, idx))));
    kiln_lb_store(B, xb, at, as(L, dx->dtype, sum));
    kiln_lower_close(L, dy->rank);
  }
  if (kiln_lower_has_epilogue(n)) {
    kiln_lower_loops(L, dx, xi);
    kiln_lower_store_output(L, n, 0, xi, as(L, ct, kiln_lx_load(B, xb, kiln_lower_addr(L, dx, xi))));
    kiln_lower_close(L, dx->rank);
  }
  return 0;
}
