/* fold_batchnorm: graph -> graph where each inference BatchNormalization
 * that reads a private Conv/ConvTranspose/Gemm with constant weights is
 * folded into those weights, and no-op Cast/Identity nodes and Transpose
 * pairs that compose to the identity are bypassed.
 *
 * BN computes y = (x - mean) * s + beta per channel (dim 1), with
 * s = scale / sqrt(var + eps).  When x is a convolution's output that
 * nothing else reads, y = conv(W', B') with W' = W * s[m] (m the output
 * channel of each weight) and B' = (B - mean) * s + beta.  The new
 * weights are computed in float64 from the stored values and rounded once
 * to f32, so they differ from the exact product by at most half an ulp;
 * the kernel then reassociates (x*W)*s into x*(W*s), a relative change
 * of a few ulps per product.  Only f32 weights and BN parameters fold:
 * for f16/bf16 the pass declines, because W*s can leave the f16 range
 * (s is large when var is tiny) or flush to zero where the unfolded
 * model, computing s separately, would not, and no reference run covers
 * that.  The conv node keeps its place and takes over BN's output value
 * (which keeps its name: it may be a graph output); the BN node and the
 * conv's old output are dropped by kiln_graph_prune.  BN parameters that
 * are state (updated in place at run time) never fold.
 *
 * The bypasses rewire consumers of the no-op's output to its input; they
 * skip values that are graph outputs (their name must survive), state
 * and in-place updates. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "passes.h"

/* A constant that stays constant (not state the run updates). */
static int is_fixed(const kiln_value *v) {
  return v && v->data && !v->aliases && (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_CONST);
}

static int is_f32_fixed(const kiln_value *v) { return is_fixed(v) && v->dtype == KILN_DT_F32; }

/* Only `v` read by one slot, not a graph output, not aliased. */
static int private_value(const kiln_value *v) { return v && v->uses == 1 && !v->is_output && !v->aliases; }

/* Rewires every live reader of `from` to read `to` instead. */
static void replace_uses(kiln_graph *g, kiln_value *from, kiln_value *to) {
  for (int i = 0; i < g->nnodes && from->uses > 0; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k] == from) kiln_node_set_input(n, k, to);
  }
}

/* A constant named after `base`, made unique among the graph's values. */
static kiln_value *new_const(kiln_graph *g, const kiln_value *base, const char *tag, int rank, const int64_t *dims,
                             void *data) {
  const char *name = kiln_graph_unique_name(g, base->name, tag);
  return kiln_value_const(g, name, KILN_DT_F32, rank, dims, data);
}

/* The node producing BN's input, when the pair may fold; NULL otherwise. */
static kiln_node *foldable(const kiln_node *bn) {
  const kiln_attrs_batchnorm *a = bn->attrs;
  if (a->training_mode != 0 || bn->nin < 5 || !bn->out[0]) return NULL;
  for (int k = 1; k < bn->nout; k++)
    if (bn->out[k] && (bn->out[k]->uses || bn->out[k]->is_output || bn->out[k]->aliases)) return NULL;
  for (int k = 1; k < 5; k++)
    if (!is_f32_fixed(bn->in[k]) || bn->in[k]->rank != 1) return NULL;
  const kiln_value *x = bn->in[0];
  if (!private_value(x) || !x->producer || x->producer_slot != 0 || x->rank < 2 || x->dtype != KILN_DT_F32) return NULL;
  kiln_node *p = x->producer;
  if (p->dead || p->epi.nsteps || p->fused_into) return NULL;
  if (p->op != KILN_OP_CONV && p->op != KILN_OP_CONV_TRANSPOSE && p->op != KILN_OP_GEMM) return NULL;
  if (!is_f32_fixed(p->in[1]) || (p->nin > 2 && p->in[2] && !is_f32_fixed(p->in[2]))) return NULL;
  int64_t m = x->dims[1];
  if (KILN_DIM_IS_SYM(m) || m <= 0) return NULL;
  if (p->op == KILN_OP_CONV_TRANSPOSE) { /* the layout channel_of assumes */
    int64_t group = ((const kiln_attrs_conv *)p->attrs)->group;
    const kiln_value *w = p->in[1];
    if (group <= 0 || w->rank < 2 || w->dims[0] % group || m != w->dims[1] * group) return NULL;
  } else if (p->op == KILN_OP_CONV && (p->in[1]->rank < 2 || p->in[1]->dims[0] != m)) return NULL;
  else if (p->op == KILN_OP_GEMM && p->in[1]->rank != 2) return NULL;
  for (int k = 1; k < 5; k++)
    if (bn->in[k]->dims[0] != m) return NULL;
  return p;
}

/* Output channel (of m) that element i of weight w scales. */
static int64_t channel_of(const kiln_node *p, const kiln_value *w, int64_t m, int64_t i) {
  int64_t inner = 1;
  for (int k = 2; k < w->rank; k++) inner *= w->dims[k];
  if (p->op == KILN_OP_CONV) return i / (inner * w->dims[1]);
  if (p->op == KILN_OP_CONV_TRANSPOSE) {
    /* W is [C_in, M/group, k...]: input channel c belongs to group
     * c / (C_in/group), whose outputs are group*(M/group) + j. */
    int64_t group = ((const kiln_attrs_conv *)p->attrs)->group;
    int64_t c = i / (inner * w->dims[1]), j = (i / inner) % w->dims[1];
    return c / (w->dims[0] / group) * (m / group) + j;
  }
  /* Gemm: B is [K, M] (or [M, K] with transB). */
  return ((const kiln_attrs_gemm *)p->attrs)->transB ? i / w->dims[1] : i % w->dims[1];
}

/* Folds bn into p; 1 (declined, nothing changed) when a folded number
 * would not be finite, where the unfolded model might still compute
 * finite values (or different non-finite ones). */
static int fold_pair(kiln_graph *g, kiln_node *p, kiln_node *bn) {
  const kiln_attrs_batchnorm *a = bn->attrs;
  const kiln_value *x = bn->in[0], *w = p->in[1], *b = p->nin > 2 ? p->in[2] : NULL;
  int64_t m = x->dims[1];
  double *s = kiln_arena_array(&g->arena, (size_t)(m ? m : 1), sizeof *s);
  for (int64_t c = 0; c < m; c++)
    s[c] = kiln_dtype_load_f(KILN_DT_F32, bn->in[1]->data, (size_t)c) /
           sqrt(kiln_dtype_load_f(KILN_DT_F32, bn->in[4]->data, (size_t)c) + (double)a->epsilon);
  double alpha = 1, beta = 1;
  kiln_attrs_gemm *ga = p->op == KILN_OP_GEMM ? p->attrs : NULL;
  if (ga) alpha = ga->alpha, beta = ga->beta;
  int64_t nw = kiln_value_numel(w, 1);
  float *wd = kiln_arena_array(&g->arena, (size_t)(nw ? nw : 1), sizeof *wd);
  /* a Conv's weights are [M, C/group, k...]: output channel c's are one
   * run, so its scale is looked up once per run (ResNet-50: 25M weights) */
  int64_t run = p->op == KILN_OP_CONV && m > 0 && nw % m == 0 ? nw / m : 1;
  /* w is f32 (is_f32_fixed): read it straight, not through
   * kiln_dtype_load_f's call and switch per weight (80 ms of ResNet-50's
   * compile); one finiteness test per run, so the loop vectorises */
  const char *wf = w->data;
  for (int64_t i0 = 0; i0 < nw; i0 += run) {
    double sc = s[channel_of(p, w, m, i0)];
    int bad = 0;
    for (int64_t i = i0; i < i0 + run; i++) {
      float wi;
      memcpy(&wi, wf + sizeof wi * (size_t)i, sizeof wi); /* initializer data need not be aligned */
      double v = alpha * (double)wi * sc;
      int ok = fabs(v) <= FLT_MAX; /* false for NaN too */
      bad |= !ok;
      wd[i] = (float)(ok ? v : 0); /* converting an out-of-range double is undefined */
    }
    if (bad) return 1; /* a folded weight not finite (or NaN) */
  }
  float *bd = kiln_arena_array(&g->arena, (size_t)(m ? m : 1), sizeof *bd);
  int64_t nb = b ? kiln_value_numel(b, 1) : 0;
  for (int64_t c = 0; c < m; c++) {
    double bc = nb ? beta * kiln_dtype_load_f(KILN_DT_F32, b->data, (size_t)(nb == 1 ? 0 : c)) : 0;
    double mean = kiln_dtype_load_f(KILN_DT_F32, bn->in[3]->data, (size_t)c);
    double v = (bc - mean) * s[c] + kiln_dtype_load_f(KILN_DT_F32, bn->in[2]->data, (size_t)c);
    if (!(fabs(v) <= FLT_MAX)) return 1;
    bd[c] = (float)v;
  }
  if (ga) ga->alpha = 1, ga->beta = 1; /* both folded into the new B and C */
  kiln_node_set_input(p, 1, new_const(g, w, "bnfold", w->rank, w->dims, wd));
  int64_t bdims[1] = {m};
  if (p->nin < 3) { /* the bias slot was left out: make room for it */
    kiln_value **in = kiln_arena_array(&g->arena, 3, sizeof *in);
    memcpy(in, p->in, (size_t)p->nin * sizeof *in);
    p->in = in;
    p->nin = 3;
  }
  kiln_node_set_input(p, 2, new_const(g, b ? b : w, b ? "bnfold" : "bnfold_bias", 1, bdims, bd));
  kiln_value *old = p->out[0], *y = bn->out[0];
  for (int k = 0; k < bn->nin; k++) kiln_node_set_input(bn, k, NULL);
  bn->dead = 1;
  old->producer = NULL;
  kiln_node_set_output(p, 0, y);
  return 0;
}

/* Gemm's C may fold only when it is one value or one per output column
 * (anything else varies by row, which a per-channel bias cannot hold). */
static int gemm_bias_ok(const kiln_node *p, int64_t m) {
  const kiln_value *c = p->nin > 2 ? p->in[2] : NULL;
  if (!c) return 1;
  int64_t n = kiln_value_numel(c, 1);
  if (n == 1) return 1;
  return n == m && c->dims[c->rank - 1] == m;
}

/* True when the two perms (empty: reverse) compose to the identity. */
static int cancels(const kiln_node *t1, const kiln_node *t2) {
  const kiln_attrs_transpose *a = t1->attrs, *b = t2->attrs;
  int r = t1->in[0]->rank;
  for (int k = 0; k < r; k++) {
    int64_t q = b->perm.n ? b->perm.v[k] : r - 1 - k;
    if (q < 0 || q >= r) return 0;
    int64_t p = a->perm.n ? a->perm.v[q] : r - 1 - q;
    if (p != k) return 0;
  }
  return 1;
}

/* The value a no-op node passes through unchanged, or NULL. */
static kiln_value *passes_through(const kiln_node *n) {
  kiln_value *y = n->out[0];
  if (!y || y->is_output || y->aliases || y->uses == 0) return NULL;
  kiln_value *x = n->in[0];
  if (!x || x->kind == KILN_VALUE_STATE || x->aliases || x->dtype != y->dtype) return NULL;
  if (n->op == KILN_OP_IDENTITY || n->op == KILN_OP_CAST) return x;
  if (n->op != KILN_OP_TRANSPOSE || !x->producer || x->producer->op != KILN_OP_TRANSPOSE || x->producer->dead) return NULL;
  kiln_value *src = x->producer->in[0];
  if (!src || src->kind == KILN_VALUE_STATE || src->aliases || !cancels(x->producer, n)) return NULL;
  return src;
}

int kiln_pass_fold_batchnorm(kiln_graph *g, kiln_diag *d) {
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead || n->epi.nsteps || n->fused_into) continue;
    kiln_value *src = passes_through(n);
    if (src) {
      replace_uses(g, n->out[0], src);
      continue;
    }
    if (n->op != KILN_OP_BATCH_NORM) continue;
    kiln_node *p = foldable(n);
    if (p && (p->op != KILN_OP_GEMM || gemm_bias_ok(p, n->in[0]->dims[1]))) (void)fold_pair(g, p, n);
  }
  kiln_graph_prune(g);
  return kiln_graph_verify(g, d);
}
