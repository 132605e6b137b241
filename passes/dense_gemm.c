/* dense_gemm: graph -> graph where every float Gemm with transB = 1 over a
 * run-time B (on a GPU target: over any B) reads B^T with transB = 0, and
 * every Conv whose one window covers its whole input is a Gemm between
 * Flatten(X) and W^T (on a CPU target and a constant W: W viewed as
 * [M, K], with transB = 1), reshaped back.
 *
 * Why: Gemm lowers to two forms (lower_linalg.c).  Without transB, B's
 * rows are contiguous along the output columns and the row form's inner
 * loop is a vector FMA over a row of Y: 40+ GFLOP/s on one AVX-512 core
 * for LeNet's layers.  With transB (how exporters write Linear layers)
 * it is the dot form, a reduction per output: 5 GFLOP/s on F6 (84 x 120).
 * A Conv whose only window is the whole input (group 1, no pads, no
 * dilation, kernel = input size: LeNet's C5, classifiers written as convs)
 * computes one position per output channel, where the conv schedules
 * vectorise over positions: 7 GFLOP/s on C5.  Both are the same products
 * in the same order per output (a sum over k of X[n, k] W[m, k] plus the
 * bias), only laid out for the row form.
 *
 * B^T: a constant (an initializer, not state the run updates) stays as it
 * is on a CPU target: the lowering re-lays it for the row form
 * (lower_linalg.c, chunk_weights_t) in one copy, where a transposed
 * constant made here was a second (VGG-16's fc6: 400 MB more fresh
 * memory, 0.7-1.3 s of compile time).  On a GPU target it is transposed
 * here once, into a new constant, which the GPU GEMM's tiles read
 * (schedule_gemm_gpu.c).  Otherwise (a trained parameter, an activation)
 * a Transpose node computes it at run time, a copy that is small next to
 * the product.  The Conv's output value moves
 * to the Reshape (it keeps its name: it may be a graph output, or read by
 * a gradient).  Integer Gemms and symbolic shapes are left alone.  Runs
 * after fold-batchnorm (which folds BN into the Conv's weights first) and
 * before fuse-epilogue (which then fuses the activation into the Gemm or
 * the Reshape). */
#include <string.h>

#include "../ir/shape.h"
#include "../ir/target.h"
#include "passes.h"

static int is_fixed(const kiln_value *v) {
  return v && v->data && !v->aliases && (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_CONST);
}

static int is_float(kiln_dtype t) { return t == KILN_DT_F32 || t == KILN_DT_F64; }

/* Runs n's shape function (its inputs are shaped): 0 or -1 with d set. */
static int shape(kiln_graph *g, kiln_node *n, kiln_diag *d) {
  for (int k = 0; k < n->nout; k++)
    if (!n->out[k]) kiln_node_set_output(n, k, kiln_value_new(g, kiln_graph_unique_name(g, n->name, "out"), KILN_VALUE_ACTIVATION));
  kiln_shape_ctx sc = {g, d, 0};
  return kiln_op_get(n->op)->shape(&sc, n);
}

static kiln_node *node(kiln_graph *g, kiln_op op, const kiln_node *at, const char *tag, int nin) {
  return kiln_node_new(g, op, kiln_graph_unique_name(g, at->name, tag), nin, 1);
}

/* t = s^T, s [rows, cols] of es-byte elements, in 64 x 64 tiles: element
 * by element, each write a cache line of its own, VGG's fc6 (25088 x 4096)
 * took 1.3 s of a 4 s compile. */
static inline void transpose_into(char *t, const char *s, int64_t rows, int64_t cols, size_t es) {
  enum { TB = 64 };
  for (int64_t r0 = 0; r0 < rows; r0 += TB)
    for (int64_t c0 = 0; c0 < cols; c0 += TB)
      for (int64_t c = c0; c < c0 + TB && c < cols; c++)
        for (int64_t r = r0; r < r0 + TB && r < rows; r++)
          memcpy(t + (size_t)(c * rows + r) * es, s + (size_t)(r * cols + c) * es, es);
}

/* w viewed as [rows, cols] (row-major), transposed: [cols, rows]. */
static kiln_value *transposed(kiln_graph *g, const kiln_node *at, kiln_value *w, int64_t rows, int64_t cols,
                              kiln_diag *d) {
  int64_t dims[2] = {cols, rows};
  if (is_fixed(w)) {
    size_t es = kiln_dtype_size(w->dtype);
    char *t = kiln_arena_array(&g->arena, (size_t)(rows * cols > 0 ? rows * cols : 1), es);
    if (es == 4) transpose_into(t, w->data, rows, cols, 4); /* a constant size: plain loads and stores */
    else transpose_into(t, w->data, rows, cols, es);
    return kiln_value_const(g, kiln_graph_unique_name(g, w->name, "T"), w->dtype, 2, dims, t);
  }
  kiln_value *w2 = w;
  if (w->rank != 2) { /* Flatten to [rows, cols] first */
    kiln_node *f = node(g, KILN_OP_FLATTEN, at, "wflat", 1);
    ((kiln_attrs_flatten *)f->attrs)->axis = 1;
    kiln_node_set_input(f, 0, w);
    if (shape(g, f, d)) return NULL;
    w2 = f->out[0];
  }
  kiln_node *t = node(g, KILN_OP_TRANSPOSE, at, "wT", 1);
  int64_t *perm = kiln_arena_array(&g->arena, 2, sizeof *perm);
  perm[0] = 1, perm[1] = 0;
  ((kiln_attrs_transpose *)t->attrs)->perm = (kiln_ints){2, perm};
  kiln_node_set_input(t, 0, w2);
  return shape(g, t, d) ? NULL : t->out[0];
}

static int static_dims(const kiln_value *v) {
  for (int i = 0; i < v->rank; i++)
    if (KILN_DIM_IS_SYM(v->dims[i])) return 0;
  return v->rank >= 0;
}

static int gemm_transb(kiln_graph *g, kiln_node *n, int gpu, kiln_diag *d) {
  kiln_attrs_gemm *a = n->attrs;
  kiln_value *b = n->in[1];
  if (!a->transB || !is_float(b->dtype) || b->rank != 2 || !static_dims(b) || n->epi.nsteps || n->fused_into) return 0;
  if (is_fixed(b) && !gpu) return 0; /* the CPU lowering re-lays a constant B^T itself, in its one copy */
  kiln_value *bt = transposed(g, n, b, b->dims[0], b->dims[1], d);
  if (!bt) return -1;
  kiln_node_set_input(n, 1, bt);
  a->transB = 0;
  return 0;
}

/* The Conv's only window covers its whole input (see the top). */
static int one_dense_window(const kiln_node *n) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  int sp = x->rank - 2;
  if (sp < 1 || !y || !static_dims(x) || !static_dims(w) || !static_dims(y) || !is_float(x->dtype) ||
      w->dtype != x->dtype || a->group != 1 || a->kernel_shape.n != sp || a->pads.n != 2 * sp || a->dilations.n != sp ||
      strcmp(a->auto_pad, "NOTSET") || n->epi.nsteps || n->fused_into)
    return 0;
  if (n->nin > 2 && n->in[2] && (n->in[2]->dtype != x->dtype || n->in[2]->rank != 1)) return 0;
  for (int i = 0; i < sp; i++)
    if (a->pads.v[i] || a->pads.v[sp + i] || a->dilations.v[i] != 1 || a->kernel_shape.v[i] != x->dims[2 + i]) return 0;
  return 1;
}

static int conv_as_gemm(kiln_graph *g, kiln_node *n, int gpu, kiln_diag *d) {
  kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  int64_t m = w->dims[0], k = kiln_value_numel(w, 1) / (m ? m : 1);
  kiln_node *f = node(g, KILN_OP_FLATTEN, n, "xflat", 1);
  ((kiln_attrs_flatten *)f->attrs)->axis = 1;
  kiln_node_set_input(f, 0, x);
  if (shape(g, f, d)) return -1;
  /* for a CPU, a constant W is B given transposed: W's own bytes viewed
   * as [M, K], no copy (the lowering re-lays it); else W^T */
  int64_t wdims[2] = {m, k};
  int view = is_fixed(w) && !gpu;
  kiln_value *wt = view ? kiln_value_const(g, kiln_graph_unique_name(g, w->name, "2d"), w->dtype, 2, wdims, w->data)
                        : transposed(g, n, w, m, k, d);
  if (!wt) return -1;
  int bias = n->nin > 2 && n->in[2];
  kiln_node *mm = node(g, KILN_OP_GEMM, n, "gemm", bias ? 3 : 2);
  ((kiln_attrs_gemm *)mm->attrs)->transB = view;
  kiln_node_set_input(mm, 0, f->out[0]);
  kiln_node_set_input(mm, 1, wt);
  if (bias) kiln_node_set_input(mm, 2, n->in[2]);
  if (shape(g, mm, d)) return -1;
  int64_t *dims = kiln_arena_array(&g->arena, (size_t)y->rank, sizeof *dims), sd[1] = {y->rank};
  for (int i = 0; i < y->rank; i++) dims[i] = y->dims[i];
  kiln_value *sv = kiln_value_const(g, kiln_graph_unique_name(g, n->name, "shape"), KILN_DT_I64, 1, sd, dims);
  kiln_node *r = node(g, KILN_OP_RESHAPE, n, "reshape", 2);
  kiln_node_set_input(r, 0, mm->out[0]);
  kiln_node_set_input(r, 1, sv);
  n->dead = 1;
  for (int i = 0; i < n->nin; i++)
    if (n->in[i]) kiln_node_set_input(n, i, NULL);
  kiln_node_set_output(r, 0, y);
  return shape(g, r, d);
}

int kiln_pass_dense_gemm(kiln_graph *g, const kiln_target *t, kiln_diag *d) {
  int changed = 0, nn = g->nnodes, gpu = t && t->kind == KILN_TARGET_GPU;
  for (int i = 0; i < nn; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    if (n->op == KILN_OP_GEMM && ((kiln_attrs_gemm *)n->attrs)->transB) {
      int before = n->in[1] && ((kiln_attrs_gemm *)n->attrs)->transB;
      if (gemm_transb(g, n, gpu, d)) return -1;
      changed |= before && !((kiln_attrs_gemm *)n->attrs)->transB;
    } else if (n->op == KILN_OP_CONV && one_dense_window(n)) {
      if (conv_as_gemm(g, n, gpu, d)) return -1;
      changed = 1;
    }
  }
  if (!changed) return 0;
  kiln_graph_prune(g);
  return kiln_graph_toposort(g, d);
}
