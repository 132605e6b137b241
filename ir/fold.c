/* Constant folding of data movement: computes an op's outputs at compile
 * time when all its inputs are constants, for the shape arithmetic
 * exporters emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape).
 * These folders only copy elements; ops that compute (elementwise math,
 * casts, comparisons, Where) fold through their lowering instead
 * (passes/fold_lowered.c), so their meaning is defined once.  A folder
 * returns 0 (folded), 1 (declined: left for run time) or -1 (error). */
#include <math.h>
#include <string.h>

#include "shape.h"

int64_t kiln_slice_range(int64_t dim, int64_t *start, int64_t *end, int64_t step);
int kiln_slice_params(kiln_shape_ctx *c, const kiln_node *n, int64_t *start, int64_t *step, kiln_dim *out);

static void *out_buf(kiln_shape_ctx *c, const kiln_value *v) {
  return kiln_arena_alloc(&c->g->arena, kiln_value_nbytes(v) + 8);
}

/* Walks out's index space; for each element gives the linear offset into
 * an input of rank r with dims d broadcast against out. */
typedef struct bcast { int r; int64_t stride[KILN_MAX_RANK]; } bcast;
static bcast bcast_of(const kiln_value *out, const kiln_value *in) {
  bcast b = {out->rank, {0}};
  int64_t s = 1;
  for (int i = in->rank - 1; i >= 0; i--) {
    int oi = i + out->rank - in->rank;
    b.stride[oi] = in->dims[i] == 1 ? 0 : s;
    s *= in->dims[i];
  }
  return b;
}
static int64_t bcast_off(const bcast *b, const int64_t *idx) {
  int64_t o = 0;
  for (int i = 0; i < b->r; i++) o += idx[i] * b->stride[i];
  return o;
}
static void idx_next(const kiln_value *v, int64_t *idx) {
  for (int i = v->rank - 1; i >= 0; i--) {
    if (++idx[i] < v->dims[i]) return;
    idx[i] = 0;
  }
}

int kiln_fold_copy(kiln_shape_ctx *c, kiln_node *n) {
  /* Same bytes, new shape: share the input's storage. */
  kiln_fold_set(c, n, 0, (void *)n->in[0]->data);
  return 0;
}

int kiln_fold_expand(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  bcast b = bcast_of(y, x);
  char *d = out_buf(c, y);
  int64_t idx[KILN_MAX_RANK] = {0}, m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++, idx_next(y, idx))
    memcpy(d + (size_t)i * es, (const char *)x->data + (size_t)bcast_off(&b, idx) * es, es);
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_transpose(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_transpose *a = n->attrs;
  const kiln_value *x = n->in[0], *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  int64_t xs[KILN_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) { xs[i] = s; s *= x->dims[i]; }
  char *d = out_buf(c, y);
  int64_t idx[KILN_MAX_RANK] = {0}, m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++, idx_next(y, idx)) {
    int64_t o = 0;
    for (int k = 0; k < y->rank; k++) o += idx[k] * xs[a->perm.v[k]];
    memcpy(d + (size_t)i * es, (const char *)x->data + (size_t)o * es, es);
  }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_concat(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_concat *a = n->attrs;
  const kiln_value *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  int64_t outer = 1;
  /* An empty result copies nothing, though the dims before axis may
   * still be huge (looping over them would hang, multiplying overflow). */
  if (kiln_value_numel(y, 1) == 0) outer = 0;
  for (int i = 0; i < a->axis && outer; i++) outer *= y->dims[i];
  char *d = out_buf(c, y), *p = d;
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < n->nin; k++) {
      const kiln_value *x = n->in[k];
      size_t chunk = (size_t)(kiln_value_numel(x, 1) / (outer ? outer : 1)) * es;
      memcpy(p, (const char *)x->data + (size_t)o * chunk, chunk);
      p += chunk;
    }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_slice(kiln_shape_ctx *c, kiln_node *n) {
  int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
  kiln_dim od[KILN_MAX_RANK];
  const kiln_value *x = n->in[0], *y = n->out[0];
  if (kiln_slice_params(c, n, start, step, od)) return -1;
  size_t es = kiln_dtype_size(y->dtype);
  int64_t xs[KILN_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) { xs[i] = s; s *= x->dims[i]; }
  char *d = out_buf(c, y);
  int64_t idx[KILN_MAX_RANK] = {0}, m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++, idx_next(y, idx)) {
    int64_t o = 0;
    for (int k = 0; k < y->rank; k++) o += (start[k] + idx[k] * step[k]) * xs[k];
    memcpy(d + (size_t)i * es, (const char *)x->data + (size_t)o * es, es);
  }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_gather(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_gather *a = n->attrs;
  const kiln_value *x = n->in[0], *idx = n->in[1], *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  int64_t outer = 1, inner = 1, len = x->dims[a->axis], ni = kiln_value_numel(idx, 1);
  for (int64_t j = 0; j < ni; j++) {
    long long k = kiln_dtype_load_i(idx->dtype, idx->data, (size_t)j);
    if (k < -len || k >= len) return kiln_shape_fail(c, n, "index %lld is out of range", k);
  }
  /* An empty result copies nothing, though outer may still be huge
   * (looping over it would hang, multiplying the dims overflow). */
  if (kiln_value_numel(y, 1) == 0) outer = 0;
  for (int i = 0; i < a->axis && outer; i++) outer *= x->dims[i];
  for (int i = a->axis + 1; i < x->rank && outer; i++) inner *= x->dims[i];
  char *d = out_buf(c, y), *p = d;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < ni; j++) {
      long long k = kiln_dtype_load_i(idx->dtype, idx->data, (size_t)j);
      if (k < 0) k += len;
      memcpy(p, (const char *)x->data + (size_t)((o * len + k) * inner) * es, (size_t)inner * es);
      p += (size_t)inner * es;
    }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_constant_of_shape(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_constant_of_shape *a = n->attrs;
  const kiln_value *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  char *d = out_buf(c, y);
  int64_t m = kiln_value_numel(y, 1);
  if (a->value.dtype != KILN_DT_UNDEF)
    for (int64_t i = 0; i < m; i++) memcpy(d + (size_t)i * es, a->value.data, es);
  kiln_fold_set(c, n, 0, d);
  return 0;
}
