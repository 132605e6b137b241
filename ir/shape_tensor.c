/* Shape functions of data-movement, shape-manipulation and reduction ops.
 * Most of them read a constant input (a shape, axes, pads, sizes): kiln
 * compiles for static shapes, and the folding in passes/infer_shapes.c
 * turns the Shape -> Gather -> Concat chains exporters emit into such
 * constants before these functions run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shape.h"

enum { MAXV = 64 }; /* longest constant shape/axes/pads list accepted */

/* A product of dims: the static factor times at most one symbolic dim. */
typedef struct prod { int64_t stat; kiln_dim sym; int nsym; } prod;
/* The static factor saturates at INT64_MAX (a zero dim still makes it 0):
 * a target shape's entries are bounded one by one, not their product. */
static void prod_mul(prod *p, kiln_dim d) {
  if (KILN_DIM_IS_SYM(d)) { p->sym = d; p->nsym++; }
  else p->stat = d && p->stat > INT64_MAX / d ? INT64_MAX : p->stat * d;
}

static int64_t too_big = (int64_t)1 << 40;

int kiln_shape_flatten(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_flatten *a = n->attrs;
  int ax;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  if (kiln_shape_axis(c, n, a->axis, x->rank, 1, "axis", &ax)) return -1;
  prod outer = {1, 0, 0}, inner = {1, 0, 0};
  for (int i = 0; i < x->rank; i++) prod_mul(i < ax ? &outer : &inner, x->dims[i]);
  if (inner.nsym || outer.nsym > 1 || (outer.nsym && outer.stat != 1))
    return kiln_shape_fail(c, n, "cannot flatten %s at axis %d with a symbolic dim; bind the batch size", kiln_shape_str(c, x), ax);
  kiln_dim out[2] = {outer.nsym ? outer.sym : outer.stat, inner.stat};
  kiln_shape_set(n, 0, x->dtype, 2, out);
  return 0;
}

int kiln_shape_reshape(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_reshape *a = n->attrs;
  int64_t s[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  if (kiln_shape_const_ints(c, n, 1, s, MAXV, &k)) return -1;
  const kiln_value *x = n->in[0];
  if (k > KILN_MAX_RANK) return kiln_shape_fail(c, n, "target rank %d exceeds kiln's limit of %d", k, KILN_MAX_RANK);
  kiln_dim out[KILN_MAX_RANK];
  int infer = -1;
  int copied[KILN_MAX_RANK] = {0};
  prod in = {1, 0, 0}, known = {1, 0, 0};
  for (int i = 0; i < k; i++) {
    if (n->in[1]->sym_data && KILN_SYM_DECODE(s[i])) {
      out[i] = KILN_SYM_DECODE(s[i]); /* a symbolic dim carried through Shape */
    } else if (s[i] == 0 && !a->allowzero) {
      if (i >= x->rank) return kiln_shape_fail(c, n, "shape[%d] = 0 copies a dim the input (rank %d) lacks", i, x->rank);
      out[i] = x->dims[i];
      copied[i] = 1;
    } else if (s[i] == -1) {
      if (infer >= 0) return kiln_shape_fail(c, n, "shape has more than one -1");
      infer = i;
      out[i] = 1;
      continue;
    } else if (s[i] < -1) {
      return kiln_shape_fail(c, n, "shape[%d] = %lld is invalid", i, (long long)s[i]);
    } else {
      out[i] = s[i];
    }
    if (!KILN_DIM_IS_SYM(out[i]) && out[i] > too_big) return kiln_shape_fail(c, n, "shape[%d] is too large", i);
    if (!copied[i] || !KILN_DIM_IS_SYM(out[i])) prod_mul(&known, out[i]);
  }
  for (int i = 0; i < x->rank; i++)
    if (!(i < k && copied[i] && KILN_DIM_IS_SYM(x->dims[i]))) prod_mul(&in, x->dims[i]);
  if (in.nsym == 1 && known.nsym == 1 && in.sym == known.sym) in.nsym = known.nsym = 0; /* N on both sides */
  if (in.nsym > 1 || known.nsym)
    return kiln_shape_fail(c, n, "cannot reshape %s with symbolic dims; bind the batch size", kiln_shape_str(c, x));
  if (infer >= 0) {
    if (known.stat == 0 || in.stat % known.stat)
      return kiln_shape_fail(c, n, "cannot reshape %s into a shape with -1 and %lld known elements",
                             kiln_shape_str(c, x), (long long)known.stat);
    int64_t q = in.stat / known.stat;
    if (in.nsym) {
      if (q != 1) return kiln_shape_fail(c, n, "cannot infer -1 for %s with a symbolic dim; bind the batch size", kiln_shape_str(c, x));
      out[infer] = in.sym;
    } else {
      out[infer] = q;
    }
  } else if (in.nsym || in.stat != known.stat) {
    return kiln_shape_fail(c, n, "cannot reshape %s (%lld elements) into %lld elements", kiln_shape_str(c, x),
                           (long long)in.stat, (long long)known.stat);
  }
  kiln_shape_set(n, 0, x->dtype, k, out);
  return 0;
}

int kiln_shape_transpose(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_transpose *a = n->attrs;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  int r = x->rank;
  if (a->perm.n == 0) {
    int64_t *p = kiln_arena_array(&c->g->arena, (size_t)(r ? r : 1), sizeof *p);
    for (int i = 0; i < r; i++) p[i] = r - 1 - i;
    a->perm = (kiln_ints){r, p};
  }
  if (a->perm.n != r) return kiln_shape_fail(c, n, "perm has %d entries, input has rank %d", a->perm.n, r);
  int seen[KILN_MAX_RANK] = {0};
  kiln_dim out[KILN_MAX_RANK];
  for (int i = 0; i < r; i++) {
    int64_t p = a->perm.v[i];
    if (p < 0 || p >= r || seen[p]) return kiln_shape_fail(c, n, "perm is not a permutation of 0..%d", r - 1);
    seen[p] = 1;
    out[i] = x->dims[p];
  }
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_squeeze(kiln_shape_ctx *c, kiln_node *n) {
  int64_t axes[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_const_ints(c, n, 1, axes, MAXV, &k)) return -1;
  const kiln_value *x = n->in[0];
  int drop[KILN_MAX_RANK] = {0};
  for (int i = 0; i < k; i++) {
    int ax;
    if (kiln_shape_axis(c, n, axes[i], x->rank, 0, "axes entry", &ax)) return -1;
    if (x->dims[ax] != 1)
      return kiln_shape_fail(c, n, "cannot squeeze axis %d of %s: its size is not 1", ax, kiln_shape_str(c, x));
    drop[ax] = 1;
  }
  if (k < 0)
    for (int i = 0; i < x->rank; i++) drop[i] = x->dims[i] == 1;
  kiln_dim out[KILN_MAX_RANK];
  int r = 0;
  for (int i = 0; i < x->rank; i++)
    if (!drop[i]) out[r++] = x->dims[i];
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_unsqueeze(kiln_shape_ctx *c, kiln_node *n) {
  int64_t axes[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || kiln_shape_const_ints(c, n, 1, axes, MAXV, &k)) return -1;
  const kiln_value *x = n->in[0];
  int r = x->rank + k;
  if (r > KILN_MAX_RANK) return kiln_shape_fail(c, n, "result rank %d exceeds kiln's limit of %d", r, KILN_MAX_RANK);
  int ins[KILN_MAX_RANK] = {0};
  for (int i = 0; i < k; i++) {
    int ax;
    if (kiln_shape_axis(c, n, axes[i], r, 0, "axes entry", &ax)) return -1;
    if (ins[ax]) return kiln_shape_fail(c, n, "axes has a duplicate entry %d", ax);
    ins[ax] = 1;
  }
  kiln_dim out[KILN_MAX_RANK];
  for (int i = 0, j = 0; i < r; i++) out[i] = ins[i] ? 1 : x->dims[j++];
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_concat(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_concat *a = n->attrs;
  int ax;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x0 = n->in[0];
  if (x0->rank == 0) return kiln_shape_fail(c, n, "cannot concatenate scalars");
  if (kiln_shape_axis(c, n, a->axis, x0->rank, 0, "axis", &ax)) return -1;
  a->axis = ax;
  kiln_dim out[KILN_MAX_RANK];
  memcpy(out, x0->dims, sizeof out);
  for (int k = 1; k < n->nin; k++) {
    if (kiln_shape_need(c, n, k)) return -1;
    const kiln_value *x = n->in[k];
    if (x->rank != x0->rank || x->dtype != x0->dtype)
      return kiln_shape_fail(c, n, "input '%s' is %s%s, input '%s' is %s%s", x0->name, kiln_dtype_name(x0->dtype),
                             kiln_shape_str(c, x0), x->name, kiln_dtype_name(x->dtype), kiln_shape_str(c, x));
    for (int i = 0; i < x->rank; i++) {
      if (i == ax) continue;
      if (x->dims[i] != x0->dims[i])
        return kiln_shape_fail(c, n, "inputs %s ('%s') and %s ('%s') differ outside axis %d", kiln_shape_str(c, x0),
                               x0->name, kiln_shape_str(c, x), x->name, ax);
    }
    if (KILN_DIM_IS_SYM(out[ax]) || KILN_DIM_IS_SYM(x->dims[ax]))
      return kiln_shape_fail(c, n, "cannot concatenate along a symbolic dim");
    out[ax] += x->dims[ax];
  }
  kiln_shape_set(n, 0, x0->dtype, x0->rank, out);
  return 0;
}

int kiln_shape_split(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_split *a = n->attrs;
  int64_t split[MAXV];
  int k, ax;
  if (kiln_shape_need(c, n, 0) || kiln_shape_const_ints(c, n, 1, split, MAXV, &k)) return -1;
  const kiln_value *x = n->in[0];
  if (kiln_shape_axis(c, n, a->axis, x->rank, 0, "axis", &ax)) return -1;
  kiln_dim len = x->dims[ax];
  if (KILN_DIM_IS_SYM(len)) return kiln_shape_fail(c, n, "cannot split along a symbolic dim");
  int parts = n->nout;
  if (parts > MAXV) return kiln_shape_fail(c, n, "too many outputs");
  if (k >= 0) {
    if (k != parts) return kiln_shape_fail(c, n, "split has %d entries for %d outputs", k, parts);
  } else {
    if (a->num_outputs && a->num_outputs != parts)
      return kiln_shape_fail(c, n, "num_outputs is %lld but the node has %d outputs", (long long)a->num_outputs, parts);
    int64_t each = (len + parts - 1) / parts; /* last part may be smaller */
    for (int i = 0; i < parts; i++) {
      int64_t left = len - each * i;
      split[i] = left < each ? (left > 0 ? left : 0) : each;
    }
    if (!a->num_outputs && len % parts)
      return kiln_shape_fail(c, n, "axis length %lld does not split evenly into %d outputs", (long long)len, parts);
  }
  int64_t sum = 0;
  for (int i = 0; i < parts; i++) {
    if (split[i] < 0) return kiln_shape_fail(c, n, "split[%d] is negative", i);
    if (split[i] > len) /* and so the sum cannot overflow */
      return kiln_shape_fail(c, n, "split[%d] = %lld exceeds axis %d of size %lld", i, (long long)split[i], ax, (long long)len);
    sum += split[i];
  }
  if (sum != len) return kiln_shape_fail(c, n, "split sizes sum to %lld, axis %d has %lld", (long long)sum, ax, (long long)len);
  for (int i = 0; i < parts; i++) {
    kiln_dim out[KILN_MAX_RANK];
    memcpy(out, x->dims, sizeof out);
    out[ax] = split[i];
    kiln_shape_set(n, i, x->dtype, x->rank, out);
  }
  return 0;
}

/* ONNX Slice clamping, shared with the folder. Returns the output length. */
int64_t kiln_slice_range(int64_t dim, int64_t *start, int64_t *end, int64_t step) {
  int64_t s = *start, e = *end;
  if (s < 0) s += dim;
  if (e < 0) e += dim;
  if (step > 0) {
    s = s < 0 ? 0 : s > dim ? dim : s;
    e = e < 0 ? 0 : e > dim ? dim : e;
  } else {
    /* the spec clamps start to [0, dim-1] (not numpy's -1, which would
     * make start=-dim-1 an empty slice instead of element 0); end to
     * [-1, dim-1] so a reversed slice can reach element 0 */
    s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
    e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
  }
  *start = s;
  *end = e;
  /* ceil(|e - s| / |step|), written so that a huge step cannot overflow */
  if (step > 0) return e > s ? (e - s - 1) / step + 1 : 0;
  return s > e ? (step == INT64_MIN ? 0 : (s - e - 1) / -step) + 1 : 0;
}

/* Reads Slice's constant inputs into per-axis start/step; shared with fold. */
int kiln_slice_params(kiln_shape_ctx *c, const kiln_node *n, int64_t *start, int64_t *step, kiln_dim *out) {
  int64_t st[MAXV], en[MAXV], ax[MAXV], sp[MAXV];
  int ks, ke, ka, kp;
  const kiln_value *x = n->in[0];
  if (kiln_shape_const_ints(c, n, 1, st, MAXV, &ks) || kiln_shape_const_ints(c, n, 2, en, MAXV, &ke) ||
      kiln_shape_const_ints(c, n, 3, ax, MAXV, &ka) || kiln_shape_const_ints(c, n, 4, sp, MAXV, &kp))
    return -1;
  if (ks < 0 || ke != ks) return kiln_shape_fail(c, n, "starts and ends must have the same length");
  if ((ka >= 0 && ka != ks) || (kp >= 0 && kp != ks))
    return kiln_shape_fail(c, n, "axes and steps must have as many entries as starts");
  int used[KILN_MAX_RANK] = {0};
  for (int i = 0; i < x->rank; i++) { start[i] = 0; step[i] = 1; out[i] = x->dims[i]; }
  for (int i = 0; i < ks; i++) {
    int a;
    if (kiln_shape_axis(c, n, ka >= 0 ? ax[i] : i, x->rank, 0, "axes entry", &a)) return -1;
    if (used[a]) return kiln_shape_fail(c, n, "axis %d is sliced twice", a);
    used[a] = 1;
    int64_t s = st[i], e = en[i], p = kp >= 0 ? sp[i] : 1;
    if (p == 0) return kiln_shape_fail(c, n, "steps must not be 0");
    if (KILN_DIM_IS_SYM(x->dims[a])) return kiln_shape_fail(c, n, "cannot slice a symbolic dim");
    out[a] = kiln_slice_range(x->dims[a], &s, &e, p);
    start[a] = s;
    step[a] = p;
  }
  return 0;
}

int kiln_shape_slice(kiln_shape_ctx *c, kiln_node *n) {
  int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
  kiln_dim out[KILN_MAX_RANK];
  if (kiln_shape_need(c, n, 0) || kiln_slice_params(c, n, start, step, out)) return -1;
  kiln_shape_set(n, 0, n->in[0]->dtype, n->in[0]->rank, out);
  return 0;
}

int kiln_shape_pad(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_pad *a = n->attrs;
  int64_t pads[2 * MAXV], axes[MAXV];
  int kp, ka;
  double cv;
  int present;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  if (kiln_shape_const_ints(c, n, 1, pads, 2 * MAXV, &kp) || kiln_shape_const_ints(c, n, 3, axes, MAXV, &ka)) return -1;
  if (n->nin > 2 && n->in[2] && kiln_value_numel(n->in[2], 1) > 0 && kiln_shape_const_scalar(c, n, 2, &cv, &present)) return -1;
  if (strcmp(a->mode, "constant") && strcmp(a->mode, "reflect") && strcmp(a->mode, "edge") && strcmp(a->mode, "wrap"))
    return kiln_shape_fail(c, n, "mode '%s' is not one of constant, reflect, edge, wrap", a->mode);
  const kiln_value *x = n->in[0];
  int na = ka >= 0 ? ka : x->rank;
  if (kp != 2 * na) return kiln_shape_fail(c, n, "pads has %d entries, expected %d", kp, 2 * na);
  kiln_dim out[KILN_MAX_RANK];
  memcpy(out, x->dims, sizeof out);
  for (int i = 0; i < na; i++) {
    int ax = i;
    if (ka >= 0 && kiln_shape_axis(c, n, axes[i], x->rank, 0, "axes entry", &ax)) return -1;
    if (KILN_DIM_IS_SYM(x->dims[ax])) {
      if (pads[i] || pads[i + na]) return kiln_shape_fail(c, n, "cannot pad a symbolic dim");
      continue;
    }
    /* Negative pads crop; bounding both signs keeps the sum from overflowing. */
    if (pads[i] > too_big || pads[i + na] > too_big || pads[i] < -too_big || pads[i + na] < -too_big)
      return kiln_shape_fail(c, n, "pads are too large");
    out[ax] = x->dims[ax] + pads[i] + pads[i + na];
    if (out[ax] < 0) return kiln_shape_fail(c, n, "pads make axis %d negative", ax);
    if (!strcmp(a->mode, "reflect") && (pads[i] >= x->dims[ax] || pads[i + na] >= x->dims[ax]))
      return kiln_shape_fail(c, n, "reflect pads must be smaller than the padded axis (%lld)", (long long)x->dims[ax]);
  }
  kiln_shape_set(n, 0, x->dtype, x->rank, out);
  return 0;
}

int kiln_shape_expand(kiln_shape_ctx *c, kiln_node *n) {
  int64_t s[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1) || kiln_shape_const_ints(c, n, 1, s, MAXV, &k)) return -1;
  if (k > KILN_MAX_RANK) return kiln_shape_fail(c, n, "target rank %d exceeds kiln's limit", k);
  kiln_value t = {0};
  t.rank = k;
  t.name = n->in[1]->name;
  for (int i = 0; i < k; i++) {
    if (s[i] < 0 || s[i] > too_big) return kiln_shape_fail(c, n, "shape[%d] = %lld is invalid", i, (long long)s[i]);
    t.dims[i] = s[i];
  }
  kiln_dim out[KILN_MAX_RANK];
  int r;
  if (kiln_shape_broadcast(c, n, n->in[0], &t, out, &r)) return -1;
  kiln_shape_set(n, 0, n->in[0]->dtype, r, out);
  return 0;
}

int kiln_shape_gather(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_gather *a = n->attrs;
  int ax;
  if (kiln_shape_need(c, n, 0) || kiln_shape_need(c, n, 1)) return -1;
  const kiln_value *x = n->in[0], *idx = n->in[1];
  if (x->rank == 0) return kiln_shape_fail(c, n, "data must have rank >= 1");
  if (idx->dtype != KILN_DT_I64 && idx->dtype != KILN_DT_I32)
    return kiln_shape_fail(c, n, "indices must be int32 or int64, got %s", kiln_dtype_name(idx->dtype));
  if (kiln_shape_axis(c, n, a->axis, x->rank, 0, "axis", &ax)) return -1;
  a->axis = ax;
  int r = x->rank - 1 + idx->rank;
  if (r > KILN_MAX_RANK) return kiln_shape_fail(c, n, "result rank %d exceeds kiln's limit", r);
  if (idx->data && !KILN_DIM_IS_SYM(x->dims[ax])) {
    int64_t m = kiln_value_numel(idx, 1);
    for (int64_t i = 0; i < m; i++) {
      long long v = kiln_dtype_load_i(idx->dtype, idx->data, (size_t)i);
      if (v < -x->dims[ax] || v >= x->dims[ax])
        return kiln_shape_fail(c, n, "index %lld is out of range for axis %d of size %lld", v, ax, (long long)x->dims[ax]);
    }
  }
  kiln_dim out[KILN_MAX_RANK];
  int j = 0;
  for (int i = 0; i < ax; i++) out[j++] = x->dims[i];
  for (int i = 0; i < idx->rank; i++) out[j++] = idx->dims[i];
  for (int i = ax + 1; i < x->rank; i++) out[j++] = x->dims[i];
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

static void shape_range(const kiln_attrs_shape *a, int r, int *lo, int *hi) {
  int64_t s = a->start, e = a->end;
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = s < 0 ? 0 : s > r ? r : s;
  e = e < 0 ? 0 : e > r ? r : e;
  *lo = (int)s;
  *hi = (int)(e > s ? e : s);
}

int kiln_shape_shape(kiln_shape_ctx *c, kiln_node *n) {
  int lo, hi;
  if (kiln_shape_need(c, n, 0)) return -1;
  shape_range(n->attrs, n->in[0]->rank, &lo, &hi);
  kiln_dim out[1] = {hi - lo};
  kiln_shape_set(n, 0, KILN_DT_I64, 1, out);
  return 0;
}

int kiln_fold_shape(kiln_shape_ctx *c, kiln_node *n) {
  int lo, hi;
  const kiln_value *x = n->in[0];
  shape_range(n->attrs, x->rank, &lo, &hi);
  int64_t *d = kiln_arena_array(&c->g->arena, (size_t)(hi - lo + 1), sizeof *d);
  int sym = 0;
  for (int i = lo; i < hi; i++) {
    d[i - lo] = KILN_DIM_IS_SYM(x->dims[i]) ? KILN_SYM_VALUE(x->dims[i]) : x->dims[i];
    sym |= KILN_DIM_IS_SYM(x->dims[i]);
  }
  kiln_fold_set(c, n, 0, d);
  n->out[0]->sym_data = sym;
  return 0;
}

int kiln_shape_constant_of_shape(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_constant_of_shape *a = n->attrs;
  int64_t s[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_const_ints(c, n, 0, s, MAXV, &k)) return -1;
  if (k > KILN_MAX_RANK) return kiln_shape_fail(c, n, "target rank %d exceeds kiln's limit", k);
  kiln_dim out[KILN_MAX_RANK];
  for (int i = 0; i < k; i++) {
    if (s[i] < 0 || s[i] > too_big) return kiln_shape_fail(c, n, "shape[%d] = %lld is invalid", i, (long long)s[i]);
    out[i] = s[i];
  }
  if (a->value.dtype != KILN_DT_UNDEF && a->value.count != 1)
    return kiln_shape_fail(c, n, "value must hold exactly one element");
  kiln_shape_set(n, 0, a->value.dtype == KILN_DT_UNDEF ? KILN_DT_F32 : a->value.dtype, k, out);
  return 0;
}

int kiln_shape_resize(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_resize *a = n->attrs;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  int r = x->rank;
  const kiln_value *scales = n->nin > 2 ? n->in[2] : NULL, *sizes = n->nin > 3 ? n->in[3] : NULL;
  if (scales && scales->rank >= 0 && kiln_value_numel(scales, 1) == 0) scales = NULL;
  if (sizes && sizes->rank >= 0 && kiln_value_numel(sizes, 1) == 0) sizes = NULL;
  if (!scales == !sizes) return kiln_shape_fail(c, n, "exactly one of 'scales' and 'sizes' must be given");
  int na = a->axes.n ? a->axes.n : r;
  int axes[KILN_MAX_RANK];
  for (int i = 0; i < na; i++) {
    if (i >= KILN_MAX_RANK) return kiln_shape_fail(c, n, "too many axes");
    if (a->axes.n) {
      if (kiln_shape_axis(c, n, a->axes.v[i], r, 0, "axes entry", &axes[i])) return -1;
    } else {
      axes[i] = i;
    }
  }
  static const char *const modes[] = {"nearest", "linear", "cubic"};
  int mode_ok = 0;
  for (int i = 0; i < 3; i++) mode_ok |= !strcmp(a->mode, modes[i]);
  if (!mode_ok) return kiln_shape_fail(c, n, "mode '%s' is not one of nearest, linear, cubic", a->mode);
  kiln_dim out[KILN_MAX_RANK];
  memcpy(out, x->dims, sizeof out);
  if (scales) {
    if (!scales->data) return kiln_shape_fail(c, n, "input 'scales' must be a constant");
    if (kiln_value_numel(scales, 1) != na)
      return kiln_shape_fail(c, n, "scales has %lld entries, expected %d", (long long)kiln_value_numel(scales, 1), na);
    double roi_span[KILN_MAX_RANK];
    for (int i = 0; i < na; i++) roi_span[i] = 1.0;
    const kiln_value *roi = n->nin > 1 ? n->in[1] : NULL;
    if (!strcmp(a->coordinate_transformation_mode, "tf_crop_and_resize") && roi && roi->data &&
        kiln_value_numel(roi, 1) == 2 * na)
      for (int i = 0; i < na; i++)
        roi_span[i] = kiln_dtype_load_f(roi->dtype, roi->data, (size_t)(na + i)) - kiln_dtype_load_f(roi->dtype, roi->data, (size_t)i);
    for (int i = 0; i < na; i++) {
      double s = kiln_dtype_load_f(scales->dtype, scales->data, (size_t)i);
      if (!(s > 0) || s > 1e6) return kiln_shape_fail(c, n, "scales[%d] = %g must be positive", i, s);
      kiln_dim d = x->dims[axes[i]];
      if (KILN_DIM_IS_SYM(d)) {
        if (s == 1.0 && roi_span[i] == 1.0) continue;
        /* inspect keeps H and W symbolic: the result is a formula dim */
        const char *h = c->g->syms[-d - 1];
        const char *name = roi_span[i] == 1.0 && s == floor(s) ? kiln_arena_printf(&c->g->arena, "%g*(%s)", s, h)
                                                               : kiln_arena_printf(&c->g->arena, "floor((%s)*%g)", h, roi_span[i] * s);
        int known = 0;
        for (int j = 0; j < c->g->nsyms; j++) known |= !strcmp(c->g->syms[j], name);
        if (!known && c->g->nsyms == KILN_MAX_SYMS)
          return kiln_shape_fail(c, n, "too many symbolic dims: bind them (--dim NAME=N)");
        out[axes[i]] = kiln_graph_sym(c->g, name);
        continue;
      }
      double o = floor((double)d * roi_span[i] * s + 1e-9);
      /* roi comes from the model too: out-of-range doubles must not reach the cast */
      if (!(o >= 0 && o <= (double)too_big))
        return kiln_shape_fail(c, n, "scales[%d] = %g gives an invalid size for axis %d of size %lld", i, s, axes[i], (long long)d);
      out[axes[i]] = (kiln_dim)o;
    }
  } else {
    int64_t sz[MAXV];
    int k;
    if (kiln_shape_const_ints(c, n, 3, sz, MAXV, &k)) return -1;
    if (k != na) return kiln_shape_fail(c, n, "sizes has %d entries, expected %d", k, na);
    const char *pol = a->keep_aspect_ratio_policy;
    if (strcmp(pol, "stretch") && strcmp(pol, "not_larger") && strcmp(pol, "not_smaller"))
      return kiln_shape_fail(c, n, "keep_aspect_ratio_policy '%s' is invalid", pol);
    double scale = !strcmp(pol, "not_larger") ? INFINITY : 0.0;
    for (int i = 0; i < na; i++) {
      if (sz[i] < 0 || sz[i] > too_big) return kiln_shape_fail(c, n, "sizes[%d] = %lld is invalid", i, (long long)sz[i]);
      kiln_dim d = x->dims[axes[i]];
      if (KILN_DIM_IS_SYM(d)) return kiln_shape_fail(c, n, "cannot resize a symbolic dim");
      double s = (double)sz[i] / (double)d;
      if (!strcmp(pol, "not_larger") && s < scale) scale = s;
      if (!strcmp(pol, "not_smaller") && s > scale) scale = s;
      out[axes[i]] = sz[i];
    }
    if (strcmp(pol, "stretch"))
      for (int i = 0; i < na; i++) out[axes[i]] = (kiln_dim)floor((double)x->dims[axes[i]] * scale + 0.5);
  }
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_reduce(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_attrs_reduce *a = n->attrs;
  int64_t axes[MAXV];
  int k;
  if (kiln_shape_need(c, n, 0) || kiln_shape_const_ints(c, n, 1, axes, MAXV, &k)) return -1;
  const kiln_value *x = n->in[0];
  int red[KILN_MAX_RANK] = {0};
  if (k <= 0) {
    if (a->noop_with_empty_axes) { kiln_shape_copy(n, 0, x); return 0; }
    for (int i = 0; i < x->rank; i++) red[i] = 1;
  }
  for (int i = 0; i < k; i++) {
    int ax;
    if (kiln_shape_axis(c, n, axes[i], x->rank, 0, "axes entry", &ax)) return -1;
    red[ax] = 1;
  }
  kiln_dim out[KILN_MAX_RANK];
  int r = 0;
  for (int i = 0; i < x->rank; i++) {
    if (!red[i]) out[r++] = x->dims[i];
    else if (a->keepdims) out[r++] = 1;
  }
  kiln_shape_set(n, 0, x->dtype, r, out);
  return 0;
}

int kiln_shape_argmax(kiln_shape_ctx *c, kiln_node *n) {
  kiln_attrs_argmax *a = n->attrs;
  int ax;
  if (kiln_shape_need(c, n, 0)) return -1;
  const kiln_value *x = n->in[0];
  if (kiln_shape_axis(c, n, a->axis, x->rank, 0, "axis", &ax)) return -1;
  a->axis = ax;
  kiln_dim out[KILN_MAX_RANK];
  int r = 0;
  for (int i = 0; i < x->rank; i++) {
    if (i != ax) out[r++] = x->dims[i];
    else if (a->keepdims) out[r++] = 1;
  }
  kiln_shape_set(n, 0, KILN_DT_I64, r, out);
  return 0;
}
