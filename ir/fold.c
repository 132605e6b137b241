/* Constant folding: computes an op's outputs at compile time when all its
 * inputs are constants.  Its job is the shape arithmetic exporters emit
 * (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and cheap weight
 * transforms; it is a reference evaluator in double/int64 precision, not a
 * fast one.  A folder returns 0 (folded), 1 (declined: left for run time)
 * or -1 (error). */
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

/* Integer folding wraps around, like the int64 arithmetic it stands in
 * for; C's signed overflow (and INT64_MIN / -1) would be undefined
 * behaviour, which a fuzzed model reaches easily. */
static long long wrap_add(long long a, long long b) { return (long long)((unsigned long long)a + (unsigned long long)b); }
static long long wrap_sub(long long a, long long b) { return (long long)((unsigned long long)a - (unsigned long long)b); }
static long long wrap_mul(long long a, long long b) { return (long long)((unsigned long long)a * (unsigned long long)b); }
/* double -> int64, saturating (an out-of-range conversion is undefined). */
static long long sat_int(double v) {
  return v != v ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (long long)v;
}

int kiln_fold_copy(kiln_shape_ctx *c, kiln_node *n) {
  /* Same bytes, new shape: share the input's storage. */
  kiln_fold_set(c, n, 0, (void *)n->in[0]->data);
  return 0;
}

int kiln_fold_cast(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  void *d = out_buf(c, y);
  int64_t m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++) {
    if (kiln_dtype_is_float(x->dtype) || kiln_dtype_is_float(y->dtype))
      kiln_dtype_store_f(y->dtype, d, (size_t)i, kiln_dtype_load_f(x->dtype, x->data, (size_t)i));
    else
      kiln_dtype_store_i(y->dtype, d, (size_t)i, kiln_dtype_load_i(x->dtype, x->data, (size_t)i));
  }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_unary(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  int is_int = !kiln_dtype_is_float(x->dtype);
  switch (n->op) { /* shape arithmetic only; the rest runs at run time */
  case KILN_OP_NEG: case KILN_OP_ABS: case KILN_OP_FLOOR: case KILN_OP_CEIL: case KILN_OP_RELU: break;
  default: return 1;
  }
  void *d = out_buf(c, y);
  int64_t m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++) {
    double v = kiln_dtype_load_f(x->dtype, x->data, (size_t)i);
    long long iv = kiln_dtype_load_i(x->dtype, x->data, (size_t)i);
    switch (n->op) {
    case KILN_OP_NEG: v = -v; iv = wrap_sub(0, iv); break;
    case KILN_OP_ABS: v = fabs(v); iv = iv < 0 ? wrap_sub(0, iv) : iv; break;
    case KILN_OP_FLOOR: v = floor(v); break;
    case KILN_OP_CEIL: v = ceil(v); break;
    default: v = v > 0 ? v : 0; iv = iv > 0 ? iv : 0; break;
    }
    if (is_int) kiln_dtype_store_i(y->dtype, d, (size_t)i, iv);
    else kiln_dtype_store_f(y->dtype, d, (size_t)i, v);
  }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

static int fold_binary_pair(kiln_op op, int is_int, double a, double b, long long ia, long long ib,
                            double *r, long long *ir) {
  switch (op) {
  case KILN_OP_ADD: case KILN_OP_SUM: case KILN_OP_MEAN: *r = a + b; *ir = wrap_add(ia, ib); return 0;
  case KILN_OP_SUB: *r = a - b; *ir = wrap_sub(ia, ib); return 0;
  case KILN_OP_MUL: *r = a * b; *ir = wrap_mul(ia, ib); return 0;
  case KILN_OP_DIV:
    if (is_int) {
      if (ib == 0) return 1; /* leave the run-time behaviour to run time */
      *ir = ib == -1 ? wrap_sub(0, ia) : ia / ib;
    }
    *r = a / b;
    return 0;
  case KILN_OP_POW:
    /* the exponent may be a float even for an integer base (T1 != T):
     * use its real value b, not ib, which truncates 0.5 to 0 */
    *r = pow(a, b);
    *ir = sat_int(pow((double)ia, b));
    return 0;
  case KILN_OP_EQUAL: *r = *ir = is_int ? ia == ib : a == b; return 0;
  case KILN_OP_LESS: *r = *ir = is_int ? ia < ib : a < b; return 0;
  case KILN_OP_GREATER: *r = *ir = is_int ? ia > ib : a > b; return 0;
  case KILN_OP_MAX: *r = a > b ? a : b; *ir = ia > ib ? ia : ib; return 0;
  case KILN_OP_MIN: *r = a < b ? a : b; *ir = ia < ib ? ia : ib; return 0;
  default: return 1;
  }
}

int kiln_fold_binary(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_value *y = n->out[0], *x0 = n->in[0];
  int is_int = !kiln_dtype_is_float(x0->dtype);
  if (n->op == KILN_OP_MEAN && is_int) return 1;
  int64_t m = kiln_value_numel(y, 1);
  double *acc = kiln_arena_array(&c->g->arena, (size_t)m + 1, sizeof *acc);
  long long *iacc = kiln_arena_array(&c->g->arena, (size_t)m + 1, sizeof *iacc);
  int64_t idx[KILN_MAX_RANK];
  bcast b0 = bcast_of(y, x0);
  memset(idx, 0, sizeof idx);
  for (int64_t i = 0; i < m; i++, idx_next(y, idx)) {
    int64_t o = bcast_off(&b0, idx);
    acc[i] = kiln_dtype_load_f(x0->dtype, x0->data, (size_t)o);
    iacc[i] = kiln_dtype_load_i(x0->dtype, x0->data, (size_t)o);
  }
  for (int k = 1; k < n->nin; k++) {
    const kiln_value *x = n->in[k];
    bcast bk = bcast_of(y, x);
    memset(idx, 0, sizeof idx);
    for (int64_t i = 0; i < m; i++, idx_next(y, idx)) {
      int64_t o = bcast_off(&bk, idx);
      if (fold_binary_pair(n->op, is_int, acc[i], kiln_dtype_load_f(x->dtype, x->data, (size_t)o), iacc[i],
                           kiln_dtype_load_i(x->dtype, x->data, (size_t)o), &acc[i], &iacc[i]))
        return 1;
    }
  }
  void *d = out_buf(c, y);
  for (int64_t i = 0; i < m; i++) {
    if (n->op == KILN_OP_MEAN) acc[i] /= n->nin;
    if (is_int || y->dtype == KILN_DT_BOOL) kiln_dtype_store_i(y->dtype, d, (size_t)i, is_int ? iacc[i] : (long long)acc[i]);
    else kiln_dtype_store_f(y->dtype, d, (size_t)i, acc[i]);
  }
  kiln_fold_set(c, n, 0, d);
  return 0;
}

int kiln_fold_where(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_value *y = n->out[0];
  size_t es = kiln_dtype_size(y->dtype);
  const bcast b[3] = {bcast_of(y, n->in[0]), bcast_of(y, n->in[1]), bcast_of(y, n->in[2])};
  char *d = out_buf(c, y);
  int64_t idx[KILN_MAX_RANK] = {0}, m = kiln_value_numel(y, 1);
  for (int64_t i = 0; i < m; i++, idx_next(y, idx)) {
    int pick = ((const unsigned char *)n->in[0]->data)[bcast_off(&b[0], idx)] ? 1 : 2;
    memcpy(d + (size_t)i * es, (const char *)n->in[pick]->data + (size_t)bcast_off(&b[pick], idx) * es, es);
  }
  kiln_fold_set(c, n, 0, d);
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
