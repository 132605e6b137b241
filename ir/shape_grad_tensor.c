/* Shape functions of the data-movement ops' gradient-only rows
 * (kiln.GatherGrad, kiln.ResizeGrad; passes/grad_tensor.c makes them).
 * Each output is dX, of the constant `shape` (the forward input's) and
 * dY's dtype; the check is that dY is what the forward op would have made
 * from an input of that shape, so a gradient node whose inputs disagree
 * is a located error, never a kernel indexing out of bounds. */
#include <string.h>

#include "shape.h"

enum { MAXS = 64 };

/* The constant `shape` input k: rank <= KILN_MAX_RANK, dims in range. */
static int read_shape(kiln_shape_ctx *c, kiln_node *n, int k, kiln_dim *dims, int *rank) {
  int64_t s[MAXS];
  if (kiln_shape_need(c, n, k) || kiln_shape_const_ints(c, n, k, s, MAXS, rank)) return -1;
  if (*rank < 0 || *rank > KILN_MAX_RANK) return kiln_shape_fail(c, n, "shape has %d entries", *rank);
  for (int i = 0; i < *rank; i++) {
    if (s[i] < 0 || s[i] > ((int64_t)1 << 40)) return kiln_shape_fail(c, n, "shape[%d] = %lld is invalid", i, (long long)s[i]);
    dims[i] = s[i];
  }
  return 0;
}

static int float_dy(kiln_shape_ctx *c, kiln_node *n) {
  if (kiln_shape_need(c, n, 0)) return -1;
  if (!kiln_dtype_is_float(n->in[0]->dtype))
    return kiln_shape_fail(c, n, "dY must be floating-point, got %s", kiln_dtype_name(n->in[0]->dtype));
  return 0;
}

/* dY [pre, indices..., post] scattered into dX [pre, shape[axis], post]. */
int kiln_shape_gather_grad(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_gather *a = n->attrs;
  kiln_dim dims[KILN_MAX_RANK];
  int r, ax;
  if (float_dy(c, n) || kiln_shape_need(c, n, 1) || read_shape(c, n, 2, dims, &r)) return -1;
  const kiln_value *dy = n->in[0], *idx = n->in[1];
  if (idx->dtype != KILN_DT_I64 && idx->dtype != KILN_DT_I32)
    return kiln_shape_fail(c, n, "indices must be int32 or int64, got %s", kiln_dtype_name(idx->dtype));
  if (r == 0) return kiln_shape_fail(c, n, "shape must have rank >= 1");
  if (kiln_shape_axis(c, n, a->axis, r, 0, "axis", &ax)) return -1;
  a->axis = ax;
  kiln_dim want[2 * KILN_MAX_RANK];
  int j = 0;
  for (int i = 0; i < ax; i++) want[j++] = dims[i];
  for (int i = 0; i < idx->rank; i++) want[j++] = idx->dims[i];
  for (int i = ax + 1; i < r; i++) want[j++] = dims[i];
  int same = j == dy->rank;
  for (int i = 0; same && i < j; i++) same = want[i] == dy->dims[i];
  if (!same) return kiln_shape_fail(c, n, "dY is %s, not what Gather makes from indices %s", kiln_shape_str(c, dy), kiln_shape_str(c, idx));
  if (idx->data) {
    int64_t m = kiln_value_numel(idx, 1);
    for (int64_t i = 0; i < m; i++) {
      long long v = kiln_dtype_load_i(idx->dtype, idx->data, (size_t)i);
      if (v < -dims[ax] || v >= dims[ax])
        return kiln_shape_fail(c, n, "index %lld is out of range for axis %d of size %lld", v, ax, (long long)dims[ax]);
    }
  }
  kiln_shape_set(n, 0, dy->dtype, r, dims);
  return 0;
}

/* dY must be what Resize makes from an input of `shape` with the same
 * attributes, roi, scales and sizes: the forward shape function says. */
int kiln_shape_resize_grad(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_resize *a = n->attrs;
  kiln_dim dims[KILN_MAX_RANK];
  int r;
  if (float_dy(c, n) || read_shape(c, n, 1, dims, &r)) return -1;
  if (strcmp(a->mode, "nearest") && strcmp(a->mode, "linear"))
    return kiln_shape_fail(c, n, "mode '%s': only nearest and linear resizing have a gradient", a->mode);
  const kiln_value *dy = n->in[0];
  kiln_value x = {0}, y = {0};
  x.name = "X";
  x.dtype = dy->dtype;
  x.rank = r;
  memcpy(x.dims, dims, sizeof dims);
  y.name = "Y";
  y.rank = -1;
  kiln_value *in[4] = {&x, n->nin > 2 ? n->in[2] : NULL, n->nin > 3 ? n->in[3] : NULL, n->nin > 4 ? n->in[4] : NULL};
  kiln_value *out[1] = {&y};
  kiln_node fwd = *n;
  fwd.op = KILN_OP_RESIZE;
  fwd.nin = 4;
  fwd.nout = 1;
  fwd.in = in;
  fwd.out = out;
  if (kiln_shape_resize(c, &fwd)) return -1;
  int same = y.rank == dy->rank;
  for (int i = 0; same && i < r; i++) same = y.dims[i] == dy->dims[i];
  if (!same) {
    return kiln_shape_fail(c, n, "dY is %s, Resize makes %s from %s", kiln_shape_str(c, dy), kiln_shape_str(c, &y),
                           kiln_shape_str(c, &x));
  }
  kiln_shape_set(n, 0, dy->dtype, r, dims);
  return 0;
}
