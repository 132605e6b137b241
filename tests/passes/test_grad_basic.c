/* Gradients of the arithmetic, matrix and reshaping ops against central
 * finite differences (tests/passes/gradcheck.h: f64 < 1e-6, f32 < 1e-3
 * relative), several attribute combinations each. */
#include "gradcheck.h"

typedef struct bin_case {
  kiln_op op;
  int ra, rb;
  int64_t da[4], db[4];
} bin_case;

static kiln_graph *binary(kiln_dtype t, const void *ctx) {
  const bin_case *bc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *a = gc_input(g, "a", t, bc->ra, bc->da), *b = gc_input(g, "b", t, bc->rb, bc->db);
  kiln_node *n = gc_node(g, bc->op, 2, (kiln_value *[]){a, b}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* Divisors kept away from 0. */
static void away_from_zero(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) {
    double v = gc_uniform(rng, 0.5, 1.5);
    x[i] = k == 1 && gc_uniform(rng, 0, 1) < 0.5 ? -v : (k == 1 ? v : gc_uniform(rng, -1, 1));
  }
}

Test(grad, elementwise_binary_with_broadcasting) {
  const kiln_op ops[] = {KILN_OP_ADD, KILN_OP_SUB, KILN_OP_MUL, KILN_OP_DIV};
  const bin_case shapes[] = {
      {0, 2, 2, {3, 4}, {3, 4}},       /* same shape */
      {0, 3, 1, {2, 3, 4}, {4}},       /* trailing broadcast */
      {0, 4, 3, {2, 3, 2, 2}, {3, 1, 1}}, /* per-channel, like a bias */
      {0, 2, 2, {3, 1}, {1, 4}},       /* both broadcast */
  };
  for (int o = 0; o < 4; o++)
    for (int s = 0; s < 4; s++) {
      bin_case bc = shapes[s];
      bc.op = ops[o];
      char what[64];
      snprintf(what, sizeof what, "%s shape case %d", kiln_op_get(ops[o])->name, s);
      gradcheck(what, binary, ops[o] == KILN_OP_DIV ? away_from_zero : NULL, &bc);
    }
}

typedef struct gemm_case { int ta, tb, has_c; float alpha, beta; int crank; } gemm_case;

static kiln_graph *gemm(kiln_dtype t, const void *ctx) {
  const gemm_case *gc = ctx;
  kiln_graph *g = gc_graph();
  int64_t M = 3, K = 4, N = 5;
  kiln_value *a = gc_input(g, "A", t, 2, gc->ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
  kiln_value *b = gc_input(g, "B", t, 2, gc->tb ? (int64_t[]){N, K} : (int64_t[]){K, N});
  kiln_value *cc = gc->has_c ? gc_input(g, "C", t, gc->crank, gc->crank == 2 ? (int64_t[]){M, N} : (int64_t[]){N}) : NULL;
  kiln_node *n = gc_node(g, KILN_OP_GEMM, gc->has_c ? 3 : 2, (kiln_value *[]){a, b, cc}, 1);
  kiln_attrs_gemm *at = n->attrs;
  at->transA = gc->ta, at->transB = gc->tb, at->alpha = gc->alpha, at->beta = gc->beta;
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad, gemm_every_transpose_with_alpha_beta_and_bias) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      gemm_case gc = {ta, tb, 1, 0.5f, 2.0f, 1 + (ta ^ tb)};
      char what[64];
      snprintf(what, sizeof what, "Gemm transA=%d transB=%d", ta, tb);
      gradcheck(what, gemm, NULL, &gc);
    }
  gemm_case plain = {0, 1, 0, 1.0f, 1.0f, 0};
  gradcheck("Gemm without C", gemm, NULL, &plain);
}

typedef struct mm_case { int ra, rb; int64_t da[4], db[4]; } mm_case;

static kiln_graph *matmul(kiln_dtype t, const void *ctx) {
  const mm_case *mc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *a = gc_input(g, "A", t, mc->ra, mc->da), *b = gc_input(g, "B", t, mc->rb, mc->db);
  kiln_node *n = gc_node(g, KILN_OP_MATMUL, 2, (kiln_value *[]){a, b}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad, matmul_2d_and_batched_with_broadcast) {
  mm_case cases[] = {{2, 2, {3, 4}, {4, 2}}, {3, 3, {2, 3, 4}, {2, 4, 5}}, {3, 2, {2, 3, 4}, {4, 2}}};
  for (int i = 0; i < 3; i++) {
    char what[64];
    snprintf(what, sizeof what, "MatMul case %d", i);
    gradcheck(what, matmul, NULL, &cases[i]);
  }
}

typedef struct red_case { kiln_op op; int keepdims; int naxes; int64_t axes[3]; } red_case;

static kiln_graph *reduce(kiln_dtype t, const void *ctx) {
  const red_case *rc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){2, 3, 4});
  kiln_value *in[2] = {x, NULL};
  if (rc->naxes) {
    int64_t *ax = kiln_arena_array(&g->arena, 3, sizeof *ax);
    memcpy(ax, rc->axes, sizeof rc->axes);
    in[1] = kiln_value_const(g, "axes", KILN_DT_I64, 1, (int64_t[]){rc->naxes}, ax);
  }
  kiln_node *n = gc_node(g, rc->op, rc->naxes ? 2 : 1, in, 1);
  ((kiln_attrs_reduce *)n->attrs)->keepdims = rc->keepdims;
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad, reduce_sum_and_mean_over_axes_with_and_without_keepdims) {
  const kiln_op ops[] = {KILN_OP_REDUCE_SUM, KILN_OP_REDUCE_MEAN};
  const red_case cases[] = {{0, 1, 1, {1}}, {0, 0, 2, {0, 2}}, {0, 0, 0, {0}}, {0, 1, 1, {-1}}};
  for (int o = 0; o < 2; o++)
    for (int i = 0; i < 4; i++) {
      red_case rc = cases[i];
      rc.op = ops[o];
      char what[64];
      snprintf(what, sizeof what, "%s case %d", kiln_op_get(ops[o])->name, i);
      gradcheck(what, reduce, NULL, &rc);
    }
}

static kiln_graph *chain(kiln_dtype t, const void *ctx) {
  (void)ctx;
  /* y = Reshape(x * x, [3, 4]) - Flatten(x): x reaches y along two paths */
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){3, 2, 2});
  kiln_node *sq = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){x, x}, 1);
  static const int64_t shape[2] = {3, 4};
  kiln_value *sv = kiln_value_const(g, "shape", KILN_DT_I64, 1, (int64_t[]){2}, shape);
  kiln_node *r = gc_node(g, KILN_OP_RESHAPE, 2, (kiln_value *[]){sq->out[0], sv}, 1);
  kiln_node *f = gc_node(g, KILN_OP_FLATTEN, 1, (kiln_value *[]){x}, 1);
  kiln_node *s = gc_node(g, KILN_OP_SUB, 2, (kiln_value *[]){r->out[0], f->out[0]}, 1);
  kiln_graph_add_output(g, s->out[0]);
  return g;
}

Test(grad, paths_add_up_through_reshapes) { gradcheck("x*x - x through reshapes", chain, NULL, NULL); }
