/* Gradients of the arithmetic, matrix and reshaping ops (ops.def `grad`),
 * built from ordinary ops; see grad.h for the contract. */
#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)             \
  do {                     \
    if (!(x)) return -1;   \
  } while (0)

/* Add / Sub: dA = dY, dB = +-dY, each summed over its broadcast axes. */
static int add_sub(kiln_grad_ctx *c, const kiln_node *n, kiln_value *dy, kiln_value **dx, int sub) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_unbroadcast(c, dy, n->in[0]));
  if (WANT(1)) {
    kiln_value *g = sub ? kiln_grad_apply1(c, KILN_OP_NEG, dy) : dy;
    TRY(g && (dx[1] = kiln_grad_unbroadcast(c, g, n->in[1])));
  }
  return 0;
}

int kiln_grad_add(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return add_sub(c, n, dy[0], dx, 0);
}

int kiln_grad_sub(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return add_sub(c, n, dy[0], dx, 1);
}

int kiln_grad_mul(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  for (int k = 0; k < 2; k++)
    if (WANT(k)) {
      kiln_value *g = kiln_grad_apply2(c, KILN_OP_MUL, dy[0], n->in[1 - k]);
      TRY(g && (dx[k] = kiln_grad_unbroadcast(c, g, n->in[k])));
    }
  return 0;
}

/* Y = A / B: dA = dY / B, dB = -dY * A / (B * B). */
int kiln_grad_div(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  kiln_value *a = n->in[0], *b = n->in[1];
  if (WANT(0)) {
    kiln_value *g = kiln_grad_apply2(c, KILN_OP_DIV, dy[0], b);
    TRY(g && (dx[0] = kiln_grad_unbroadcast(c, g, a)));
  }
  if (WANT(1)) {
    kiln_value *num = kiln_grad_apply2(c, KILN_OP_MUL, dy[0], a);
    kiln_value *b2 = kiln_grad_apply2(c, KILN_OP_MUL, b, b);
    TRY(num && b2);
    kiln_value *q = kiln_grad_apply2(c, KILN_OP_DIV, num, b2);
    kiln_value *g = q ? kiln_grad_apply1(c, KILN_OP_NEG, q) : NULL;
    TRY(g && (dx[1] = kiln_grad_unbroadcast(c, g, b)));
  }
  return 0;
}

int kiln_grad_neg(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_apply1(c, KILN_OP_NEG, dy[0]));
  return 0;
}

/* Sum of N inputs: each input gets dY (unbroadcast); Mean: dY / N. */
static int sum_mean(kiln_grad_ctx *c, const kiln_node *n, kiln_value *dy, kiln_value **dx, int mean) {
  kiln_value *g = dy;
  if (mean) TRY(g = kiln_grad_apply2(c, KILN_OP_DIV, dy, kiln_grad_scalar(c, dy->dtype, n->nin)));
  for (int k = 0; k < n->nin; k++)
    if (WANT(k)) TRY(dx[k] = kiln_grad_unbroadcast(c, g, n->in[k]));
  return 0;
}

int kiln_grad_sum(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return sum_mean(c, n, dy[0], dx, 0);
}

int kiln_grad_mean(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return sum_mean(c, n, dy[0], dx, 1);
}

/* Identity, Dropout in inference, Reshape, Flatten, Squeeze, Unsqueeze:
 * the same elements in another shape; dX is dY in X's shape. */
int kiln_grad_reshape(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (WANT(0)) TRY(dx[0] = kiln_grad_reshape_like(c, dy[0], n->in[0]));
  return 0;
}

/* Cast between float types: the gradient cast back. */
int kiln_grad_cast(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  if (dy[0]->dtype == n->in[0]->dtype) {
    dx[0] = dy[0];
    return 0;
  }
  kiln_node *m = kiln_grad_node(c, KILN_OP_CAST, 1, 1);
  ((kiln_attrs_cast *)m->attrs)->to = n->in[0]->dtype; /* kiln_dtype codes are ONNX's */
  kiln_node_set_input(m, 0, dy[0]);
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

/* ReduceSum / ReduceMean: dY (with the reduced axes put back as 1s)
 * expanded to X's shape; ReduceMean also divides by the count. */
static int reduce_sum_mean(kiln_grad_ctx *c, const kiln_node *n, kiln_value *dy, kiln_value **dx, int mean) {
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  const kiln_value *y = n->out[0];
  /* the reduced shape with keepdims: every axis where X and Y differ, or
   * all of them when Y lost rank */
  int64_t keep[KILN_MAX_RANK], xd[KILN_MAX_RANK];
  int64_t count = 1;
  for (int i = 0; i < x->rank; i++) xd[i] = x->dims[i];
  if (y->rank == x->rank) {
    for (int i = 0; i < x->rank; i++) keep[i] = y->dims[i];
  } else {
    /* keepdims = 0: the axes input says which went; the shape function
     * accepted the node, so the surviving dims are in order */
    int64_t ax[KILN_MAX_RANK];
    int na = 0;
    if (n->nin > 1 && n->in[1] && n->in[1]->data) {
      na = (int)kiln_value_numel(n->in[1], 1);
      for (int i = 0; i < na; i++) {
        ax[i] = kiln_dtype_load_i(n->in[1]->dtype, n->in[1]->data, (size_t)i);
        if (ax[i] < 0) ax[i] += x->rank;
      }
    }
    for (int i = 0; i < x->rank; i++) {
      int reduced = na == 0;
      for (int j = 0; j < na; j++) reduced |= ax[j] == i;
      keep[i] = reduced ? 1 : x->dims[i];
    }
  }
  for (int i = 0; i < x->rank; i++)
    if (keep[i] != x->dims[i]) count *= x->dims[i];
  kiln_value *g = dy;
  if (y->rank != x->rank) TRY(g = kiln_grad_apply2(c, KILN_OP_RESHAPE, g, kiln_grad_ints(c, x->rank, keep)));
  if (mean && count > 1) TRY(g = kiln_grad_apply2(c, KILN_OP_DIV, g, kiln_grad_scalar(c, g->dtype, (double)count)));
  TRY(dx[0] = kiln_grad_apply2(c, KILN_OP_EXPAND, g, kiln_grad_ints(c, x->rank, xd)));
  return 0;
}

int kiln_grad_reduce_sum(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return reduce_sum_mean(c, n, dy[0], dx, 0);
}

int kiln_grad_reduce_mean(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  return reduce_sum_mean(c, n, dy[0], dx, 1);
}

static kiln_value *gemm(kiln_grad_ctx *c, kiln_value *a, kiln_value *b, int ta, int tb, float alpha) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_GEMM, 2, 1);
  kiln_attrs_gemm *at = m->attrs;
  at->transA = ta;
  at->transB = tb;
  at->alpha = alpha;
  kiln_node_set_input(m, 0, a);
  kiln_node_set_input(m, 1, b);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* Y = alpha op(A) op(B) + beta C, op = transpose when transA/transB. */
int kiln_grad_gemm(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  const kiln_attrs_gemm *a = n->attrs;
  kiln_value *A = n->in[0], *B = n->in[1], *g = dy[0];
  int ta = a->transA != 0, tb = a->transB != 0;
  if (WANT(0)) /* dA = alpha dY op(B)^T, transposed back when transA */
    TRY(dx[0] = ta ? gemm(c, B, g, tb, 1, a->alpha) : gemm(c, g, B, 0, !tb, a->alpha));
  if (WANT(1)) /* dB = alpha op(A)^T dY, transposed back when transB */
    TRY(dx[1] = tb ? gemm(c, g, A, 1, ta, a->alpha) : gemm(c, A, g, !ta, 0, a->alpha));
  if (WANT(2)) {
    kiln_value *s = g;
    if (a->beta != 1.0f) TRY(s = kiln_grad_apply2(c, KILN_OP_MUL, g, kiln_grad_scalar(c, g->dtype, a->beta)));
    TRY(dx[2] = kiln_grad_unbroadcast(c, s, n->in[2]));
  }
  return 0;
}

/* X with its last two axes swapped. */
static kiln_value *swap_last(kiln_grad_ctx *c, kiln_value *x) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_TRANSPOSE, 1, 1);
  int64_t *perm = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)x->rank, sizeof *perm);
  for (int i = 0; i < x->rank; i++) perm[i] = i;
  perm[x->rank - 2] = x->rank - 1;
  perm[x->rank - 1] = x->rank - 2;
  ((kiln_attrs_transpose *)m->attrs)->perm = (kiln_ints){x->rank, perm};
  kiln_node_set_input(m, 0, x);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* Y = A B (batched, broadcasting the leading axes): dA = dY B^T and
 * dB = A^T dY, each summed over the batch axes it was broadcast along. */
int kiln_grad_matmul(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  kiln_value *A = n->in[0], *B = n->in[1], *g = dy[0];
  if (A->rank < 2 || B->rank < 2)
    return kiln_grad_fail(c, "the gradient of a MatMul with a 1-D operand is not implemented; reshape it to 2-D");
  if (WANT(0)) {
    kiln_value *bt = swap_last(c, B);
    kiln_value *p = bt ? kiln_grad_apply2(c, KILN_OP_MATMUL, g, bt) : NULL;
    TRY(p && (dx[0] = kiln_grad_unbroadcast(c, p, A)));
  }
  if (WANT(1)) {
    kiln_value *at = swap_last(c, A);
    kiln_value *p = at ? kiln_grad_apply2(c, KILN_OP_MATMUL, at, g) : NULL;
    TRY(p && (dx[1] = kiln_grad_unbroadcast(c, p, B)));
  }
  return 0;
}

/* Where(cond, X, Y): dX = Where(cond, dY, 0), dY = Where(cond, 0, dY). */
int kiln_grad_where(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  kiln_value *zero = kiln_grad_scalar(c, dy[0]->dtype, 0);
  for (int k = 1; k <= 2; k++)
    if (WANT(k)) {
      kiln_value *in[3] = {n->in[0], k == 1 ? dy[0] : zero, k == 1 ? zero : dy[0]};
      kiln_value *g = kiln_grad_apply(c, KILN_OP_WHERE, 3, in);
      TRY(g && (dx[k] = kiln_grad_unbroadcast(c, g, n->in[k])));
    }
  return 0;
}
