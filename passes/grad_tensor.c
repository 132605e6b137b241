/* Gradients of the data-movement ops and ReduceMax (ops.def `grad`); see
 * grad.h for the contract.
 *
 * Most are other data-movement ops run backwards, built from ordinary
 * rows of the table: Concat's gradient is a Slice of dY per input, Split's
 * a Concat of the dYs (zeros for an output nobody differentiates),
 * Transpose's the inverse permutation, Expand's an unbroadcast, constant
 * Pad's a Pad by the negated pads (a negative pad crops; the border modes
 * fold each border back onto what it copied), ReduceMax's a
 * mask of the first maximum (ArgMax) selecting dY.  Slice's gradient puts
 * dY back where it was read: reversed (a Slice with step -1) on axes the
 * forward walked backwards, spread out with zeros between (Reshape to
 * [m, 1], Pad to [m, k], Reshape to m*k) where |step| = k > 1, then padded
 * with zeros into X's shape (a negative end pad crops the last k - 1
 * zeros).  Gather and Resize scatter: their gradients are the gradient-only
 * ops kiln.GatherGrad (passes/lower_gather_grad.c) and kiln.ResizeGrad
 * (passes/lower_resize.c), which add every dY element into dX in a fixed
 * order.  Nothing here knows the loop IR. */
#include <limits.h>
#include <string.h>

#include "../ir/shape.h"
#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)           \
  do {                   \
    if (!(x)) return -1; \
  } while (0)

/* A zero tensor of dtype t and the given shape (a scalar 0 expanded:
 * constant folding makes it a constant). */
static kiln_value *zeros(kiln_grad_ctx *c, kiln_dtype t, int rank, const kiln_dim *dims) {
  int64_t d[KILN_MAX_RANK];
  for (int i = 0; i < rank; i++) d[i] = dims[i];
  kiln_value *z = kiln_grad_scalar(c, t, 0);
  return z ? kiln_grad_apply2(c, KILN_OP_EXPAND, z, kiln_grad_ints(c, rank, d)) : NULL;
}

/* Slice(x, starts, ends, axes, steps), na entries each (steps NULL: 1). */
static kiln_value *slice(kiln_grad_ctx *c, kiln_value *x, int na, const int64_t *starts, const int64_t *ends,
                         const int64_t *axes, const int64_t *steps) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_SLICE, steps ? 5 : 4, 1);
  kiln_node_set_input(m, 0, x);
  kiln_node_set_input(m, 1, kiln_grad_ints(c, na, starts));
  kiln_node_set_input(m, 2, kiln_grad_ints(c, na, ends));
  kiln_node_set_input(m, 3, kiln_grad_ints(c, na, axes));
  if (steps) kiln_node_set_input(m, 4, kiln_grad_ints(c, na, steps));
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* Pad(x, pads) with zeros; pads: begins of every axis, then ends. */
static kiln_value *pad_zeros(kiln_grad_ctx *c, kiln_value *x, const int64_t *pads) {
  for (int i = 0; i < 2 * x->rank; i++)
    if (pads[i]) return kiln_grad_apply2(c, KILN_OP_PAD, x, kiln_grad_ints(c, 2 * x->rank, pads));
  return x;
}

static kiln_value *transpose(kiln_grad_ctx *c, kiln_value *x, const int64_t *perm) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_TRANSPOSE, 1, 1);
  int64_t *p = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)(x->rank ? x->rank : 1), sizeof *p);
  memcpy(p, perm, (size_t)x->rank * sizeof *p);
  ((kiln_attrs_transpose *)m->attrs)->perm = (kiln_ints){x->rank, p};
  kiln_node_set_input(m, 0, x);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static kiln_value *reshape(kiln_grad_ctx *c, kiln_value *x, int rank, const int64_t *dims) {
  return kiln_grad_apply2(c, KILN_OP_RESHAPE, x, kiln_grad_ints(c, rank, dims));
}

int kiln_grad_transpose(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_transpose *a = n->attrs;
  if (!WANT(0)) return 0;
  int64_t inv[KILN_MAX_RANK];
  for (int i = 0; i < a->perm.n; i++) inv[a->perm.v[i]] = i;
  TRY(dx[0] = transpose(c, dy[0], inv));
  return 0;
}

int kiln_grad_expand(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_unbroadcast(c, dy[0], n->in[0]));
  return 0;
}

/* Concat: input k is dY's part [off_k, off_k + len_k) along the axis
 * (shape inference made the axis non-negative). */
int kiln_grad_concat(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_concat *a = n->attrs;
  int64_t ax = a->axis, off = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t len = n->in[k]->dims[ax];
    if (WANT(k)) {
      int64_t e = off + len;
      TRY(dx[k] = slice(c, dy[0], 1, &off, &e, &ax, NULL));
    }
    off += len;
  }
  return 0;
}

/* Split: dX is the dYs concatenated, zeros for outputs without one. */
int kiln_grad_split(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_split *a = n->attrs;
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  int ax = (int)(a->axis < 0 ? a->axis + x->rank : a->axis), np = 0;
  kiln_value **parts = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)n->nout, sizeof *parts);
  int64_t off = 0;
  for (int k = 0; k < n->nout; k++) {
    kiln_value *y = n->out[k];
    if (!y) { /* an output nobody asked for: its place along the axis from the sizes */
      if (n->nin > 1 && n->in[1] && n->in[1]->data && kiln_value_numel(n->in[1], 1) == n->nout) {
        int64_t len = (int64_t)kiln_dtype_load_i(n->in[1]->dtype, n->in[1]->data, (size_t)k);
        kiln_dim d[KILN_MAX_RANK];
        memcpy(d, x->dims, sizeof d);
        d[ax] = len;
        if (len > 0) TRY(parts[np++] = zeros(c, dy[0] ? dy[0]->dtype : x->dtype, x->rank, d));
        off += len;
        continue;
      }
      return kiln_grad_fail(c, "Split output %d is absent and its size is not given by 'split'", k);
    }
    off += y->dims[ax];
    if (y->dims[ax] == 0) continue;
    if (dy[k]) parts[np++] = dy[k];
    else TRY(parts[np++] = zeros(c, y->dtype, y->rank, y->dims));
  }
  if (off != x->dims[ax]) return kiln_grad_fail(c, "internal: Split parts cover %lld of %lld", (long long)off, (long long)x->dims[ax]);
  if (np == 0) { /* an empty axis: nothing flows */
    TRY(dx[0] = zeros(c, x->dtype, x->rank, x->dims));
    return 0;
  }
  if (np == 1) {
    dx[0] = parts[0];
    return 0;
  }
  kiln_node *m = kiln_grad_node(c, KILN_OP_CONCAT, np, 1);
  ((kiln_attrs_concat *)m->attrs)->axis = ax;
  for (int k = 0; k < np; k++) kiln_node_set_input(m, k, parts[k]);
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

/* ir/shape_tensor.c: Slice's constant inputs as per-axis start/step. */
int kiln_slice_params(kiln_shape_ctx *c, const kiln_node *n, int64_t *start, int64_t *step, kiln_dim *out);

/* Slice: see the top of the file.  Element j of axis a came from
 * start + j * step; with step -k (k > 0) the same elements are, reversed,
 * start - (m-1)k + j' k. */
int kiln_grad_slice(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  int r = x->rank;
  int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
  kiln_dim m[KILN_MAX_RANK];
  kiln_diag sd = {0};
  kiln_shape_ctx sc = {kiln_grad_graph(c), &sd, 0};
  if (kiln_slice_params(&sc, n, start, step, m)) return kiln_grad_fail(c, "%s", sd.msg);
  for (int i = 0; i < r; i++)
    if (m[i] == 0) {
      TRY(dx[0] = zeros(c, x->dtype, r, x->dims));
      return 0;
    }
  kiln_value *g = dy[0];
  /* reverse the axes walked backwards */
  int64_t rs[KILN_MAX_RANK], re[KILN_MAX_RANK], ra[KILN_MAX_RANK], rp[KILN_MAX_RANK];
  int nr = 0;
  for (int i = 0; i < r; i++) {
    if (step[i] > 0) continue;
    int64_t k = -step[i];
    start[i] -= (m[i] - 1) * k;
    step[i] = k;
    if (m[i] > 1) {
      rs[nr] = -1, re[nr] = -(m[i] + 1), ra[nr] = i, rp[nr] = -1;
      nr++;
    }
  }
  if (nr) TRY(g = slice(c, g, nr, rs, re, ra, rp));
  /* spread the strided axes: [.., m, ..] -> [.., m, 1, ..] -> pad -> [.., m*k, ..] */
  int64_t wide[2 * KILN_MAX_RANK], wpads[4 * KILN_MAX_RANK] = {0}, merged[KILN_MAX_RANK], span[KILN_MAX_RANK];
  int nw = 0, strided = 0;
  for (int i = 0; i < r; i++) {
    span[i] = m[i];
    merged[i] = m[i];
    wide[nw++] = m[i];
    if (step[i] > 1 && m[i] > 1) {
      if (m[i] > INT64_MAX / step[i]) return kiln_grad_fail(c, "Slice step %lld is too large", (long long)step[i]);
      span[i] = merged[i] = m[i] * step[i];
      wide[nw++] = 1;
      strided = 1;
    }
  }
  if (strided) {
    if (nw > KILN_MAX_RANK)
      return kiln_grad_fail(c, "the gradient of a Slice with steps > 1 on %d axes of a rank-%d tensor is not implemented", nw - r, r);
    for (int i = 0, w = 0; i < r; i++, w++)
      if (step[i] > 1 && m[i] > 1) {
        w++;
        wpads[nw + w] = step[i] - 1; /* end pad of the inserted axis */
      }
    TRY(g = reshape(c, g, nw, wide));
    TRY(g = pad_zeros(c, g, wpads));
    TRY(g = reshape(c, g, r, merged));
  }
  int64_t pads[2 * KILN_MAX_RANK];
  for (int i = 0; i < r; i++) {
    pads[i] = start[i];
    pads[r + i] = x->dims[i] - start[i] - span[i]; /* >= -(k-1): crops the spread's trailing zeros */
  }
  TRY(dx[0] = pad_zeros(c, g, pads));
  return 0;
}

enum { PAD_EDGE, PAD_REFLECT, PAD_WRAP };

/* One axis of a border-mode Pad run backwards: g's axis a holds B + m + E
 * positions (B, E: the positive pads, m: the length kept after any crop);
 * returns the gradient of the m kept positions: the middle, plus each
 * border folded back onto the positions it copied (edge: summed into the
 * end element; reflect: reversed onto 1..B and m-1-E..m-2; wrap: onto the
 * other end). */
static kiln_value *border_axis(kiln_grad_ctx *c, kiln_value *g, int a, int64_t B, int64_t E, int64_t m, int mode) {
  int r = g->rank;
  int64_t ax = a, s = B, e = B + m, minus1 = -1;
  kiln_value *acc = slice(c, g, 1, &s, &e, &ax, NULL);
  for (int side = 0; side < 2 && acc; side++) {
    int64_t p = side ? E : B, s0 = side ? B + m : 0, e0 = s0 + p, before, len = p;
    if (!p) continue;
    kiln_value *part;
    if (mode == PAD_EDGE) {
      part = slice(c, g, 1, &s0, &e0, &ax, NULL);
      part = part ? kiln_grad_sum_axes(c, part, 1, &ax, 1) : NULL;
      before = side ? m - 1 : 0;
      len = 1;
    } else if (mode == PAD_REFLECT) {
      int64_t st = e0 - 1, en = s0 - 1 - g->dims[a]; /* down to s0 (a negative end counts from the end) */
      part = slice(c, g, 1, &st, &en, &ax, &minus1);
      before = side ? m - 1 - p : 1;
    } else {
      part = slice(c, g, 1, &s0, &e0, &ax, NULL);
      before = side ? 0 : m - p;
    }
    int64_t pads[2 * KILN_MAX_RANK] = {0};
    pads[a] = before;
    pads[r + a] = m - before - len;
    part = part ? pad_zeros(c, part, pads) : NULL;
    acc = part ? kiln_grad_apply2(c, KILN_OP_ADD, acc, part) : NULL;
  }
  return acc;
}

/* Pad: Y[o] = X[map(o - pad_begin)] per axis (negative pads crop first).
 * Constant mode: dX = dY padded by the negated pads (zeros where X was
 * cropped, cropping where Y was padded).  Edge, reflect, wrap: every
 * mode's map is separable, so the gradient is each axis' border folded
 * back (border_axis), then zeros where X was cropped. */
int kiln_grad_pad(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_pad *a = n->attrs;
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0], *pv = n->in[1], *av = n->nin > 3 ? n->in[3] : NULL;
  int r = x->rank;
  int64_t np = kiln_value_numel(pv, 1);
  if (!pv->data || np > 2 * KILN_MAX_RANK || np % 2) return kiln_grad_fail(c, "pads must be a constant of at most %d entries", 2 * KILN_MAX_RANK);
  if (!strcmp(a->mode, "constant")) {
    int64_t neg[2 * KILN_MAX_RANK];
    for (int64_t i = 0; i < np; i++) neg[i] = -(int64_t)kiln_dtype_load_i(pv->dtype, pv->data, (size_t)i);
    kiln_node *m = kiln_grad_node(c, KILN_OP_PAD, av ? 4 : 2, 1);
    kiln_node_set_input(m, 0, dy[0]);
    kiln_node_set_input(m, 1, kiln_grad_ints(c, (int)np, neg));
    if (av) kiln_node_set_input(m, 3, (kiln_value *)av);
    TRY(!kiln_grad_emit(c, m, 1));
    dx[0] = m->out[0];
    return 0;
  }
  int mode = !strcmp(a->mode, "edge") ? PAD_EDGE : !strcmp(a->mode, "reflect") ? PAD_REFLECT : PAD_WRAP;
  int64_t pb[KILN_MAX_RANK] = {0}, pe[KILN_MAX_RANK] = {0}, na = np / 2;
  if (av && (!av->data || kiln_value_numel(av, 1) != na)) return kiln_grad_fail(c, "axes must be a constant of %lld entries", (long long)na);
  for (int64_t i = 0; i < na; i++) {
    int64_t ax = av ? (int64_t)kiln_dtype_load_i(av->dtype, av->data, (size_t)i) : i;
    if (ax < 0) ax += r;
    if (ax < 0 || ax >= r) return kiln_grad_fail(c, "axes entry out of range");
    pb[ax] = (int64_t)kiln_dtype_load_i(pv->dtype, pv->data, (size_t)i);
    pe[ax] = (int64_t)kiln_dtype_load_i(pv->dtype, pv->data, (size_t)(i + na));
  }
  kiln_value *g = dy[0];
  int64_t crop[2 * KILN_MAX_RANK];
  for (int i = 0; i < r; i++) {
    int64_t B = pb[i] > 0 ? pb[i] : 0, E = pe[i] > 0 ? pe[i] : 0;
    crop[i] = pb[i] < 0 ? -pb[i] : 0;
    crop[r + i] = pe[i] < 0 ? -pe[i] : 0;
    int64_t m = x->dims[i] - crop[i] - crop[r + i];
    if (!B && !E) continue;
    if (m <= 0 || (mode == PAD_REFLECT && (B >= m || E >= m)) || (mode == PAD_WRAP && (B > m || E > m)))
      return kiln_grad_fail(c, "Pad in '%s' mode with pads reaching past the kept %lld elements of axis %d is not "
                            "differentiable yet", a->mode, (long long)m, i);
    TRY(g = border_axis(c, g, i, B, E, m, mode));
  }
  TRY(dx[0] = pad_zeros(c, g, crop));
  return 0;
}

/* Gather: dX = kiln.GatherGrad(dY, indices, shape of X), a scatter-add. */
int kiln_grad_gather(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  int64_t d[KILN_MAX_RANK];
  for (int i = 0; i < x->rank; i++) d[i] = x->dims[i];
  kiln_node *m = kiln_grad_node(c, KILN_OP_GATHER_GRAD, 3, 1);
  ((kiln_attrs_gather *)m->attrs)->axis = ((const kiln_attrs_gather *)n->attrs)->axis;
  kiln_node_set_input(m, 0, dy[0]);
  kiln_node_set_input(m, 1, n->in[1]);
  kiln_node_set_input(m, 2, kiln_grad_ints(c, x->rank, d));
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

/* Resize: dX = kiln.ResizeGrad(dY, shape of X, roi, scales, sizes) with
 * the forward's attributes: the transpose of the interpolation. */
int kiln_grad_resize(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_resize *a = n->attrs;
  if (!WANT(0)) return 0;
  if (strcmp(a->mode, "nearest") && strcmp(a->mode, "linear"))
    return kiln_grad_fail(c, "Resize in '%s' mode is not differentiable yet (nearest and linear are)", a->mode);
  const kiln_value *x = n->in[0];
  int64_t d[KILN_MAX_RANK];
  for (int i = 0; i < x->rank; i++) d[i] = x->dims[i];
  kiln_node *m = kiln_grad_node(c, KILN_OP_RESIZE_GRAD, 5, 1);
  *(kiln_attrs_resize *)m->attrs = *a;
  kiln_node_set_input(m, 0, dy[0]);
  kiln_node_set_input(m, 1, kiln_grad_ints(c, x->rank, d));
  for (int k = 1; k <= 3; k++)
    if (k < n->nin && n->in[k]) kiln_node_set_input(m, k + 1, n->in[k]);
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

/* ReduceMax: dY goes to the first maximum of each reduced group.  X is
 * transposed so the reduced axes come last and viewed as [K, R]; ArgMax
 * over R (the first maximum, NaN counting as one) compared with 0..R-1
 * selects where dY lands; the result is viewed and transposed back. */
int kiln_grad_reduce_max(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_reduce *a = n->attrs;
  if (!WANT(0)) return 0;
  kiln_value *x = n->in[0];
  int r = x->rank, red[KILN_MAX_RANK] = {0}, naxes = 0;
  const kiln_value *av = n->nin > 1 ? n->in[1] : NULL;
  if (av) {
    if (!av->data) return kiln_grad_fail(c, "axes must be a constant");
    naxes = (int)kiln_value_numel(av, 1);
    for (int i = 0; i < naxes; i++) {
      int64_t ax = (int64_t)kiln_dtype_load_i(av->dtype, av->data, (size_t)i);
      if (ax < 0) ax += r;
      if (ax < 0 || ax >= r) return kiln_grad_fail(c, "axes entry out of range");
      red[ax] = 1;
    }
  }
  if (naxes == 0) {
    if (a->noop_with_empty_axes) {
      TRY(dx[0] = kiln_grad_reshape_like(c, dy[0], x));
      return 0;
    }
    for (int i = 0; i < r; i++) red[i] = 1;
  }
  int64_t perm[KILN_MAX_RANK], tdims[KILN_MAX_RANK], inv[KILN_MAX_RANK], K = 1, R = 1;
  int np = 0, ident = 1;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < r; i++)
      if (red[i] == pass) {
        perm[np] = i;
        tdims[np++] = x->dims[i];
        if (pass) R *= x->dims[i];
        else K *= x->dims[i];
      }
  for (int i = 0; i < r; i++) {
    ident &= perm[i] == i;
    inv[perm[i]] = i;
  }
  if (K == 0 || R == 0) {
    TRY(dx[0] = zeros(c, x->dtype, r, x->dims));
    return 0;
  }
  if (R > INT_MAX) return kiln_grad_fail(c, "the reduced groups are too large (%lld elements)", (long long)R);
  kiln_value *xt = x;
  if (!ident) TRY(xt = transpose(c, x, perm));
  kiln_value *x2 = reshape(c, xt, 2, (int64_t[]){K, R});
  TRY(x2);
  kiln_node *am = kiln_grad_node(c, KILN_OP_ARGMAX, 1, 1);
  ((kiln_attrs_argmax *)am->attrs)->axis = 1;
  ((kiln_attrs_argmax *)am->attrs)->keepdims = 1;
  kiln_node_set_input(am, 0, x2);
  TRY(!kiln_grad_emit(c, am, 1));
  int64_t *iota = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)R, sizeof *iota);
  for (int64_t i = 0; i < R; i++) iota[i] = i;
  kiln_value *mask = kiln_grad_apply2(c, KILN_OP_EQUAL, am->out[0], kiln_grad_ints(c, (int)R, iota));
  kiln_value *g2 = reshape(c, dy[0], 2, (int64_t[]){K, 1});
  TRY(mask && g2);
  kiln_value *in[3] = {mask, g2, kiln_grad_scalar(c, dy[0]->dtype, 0)};
  kiln_value *g = kiln_grad_apply(c, KILN_OP_WHERE, 3, in);
  TRY(g && (g = reshape(c, g, r, tdims)));
  if (!ident) TRY(g = transpose(c, g, inv));
  dx[0] = g;
  return 0;
}
