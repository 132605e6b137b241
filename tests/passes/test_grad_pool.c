/* Gradients of MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool
 * (passes/grad_pool.c, lowered by passes/lower_pool_grad.c) against
 * central finite differences (tests/passes/gradcheck.h: f64 < 1e-6, f32
 * < 1e-3 relative), over window geometries: overlapping windows
 * (stride < kernel), pads, dilations, ceil_mode windows that hang past
 * the end padding, 1-D/2-D/3-D, count_include_pad both ways.  MaxPool's
 * inputs are a shuffled permutation of distinct values spaced 2/n apart
 * (>= 4e-3 here), far beyond the finite-difference step (1e-6) and f32
 * rounding, so no window has a tie and no step moves its maximum: the
 * function is smooth where it is evaluated. */
#include "gradcheck.h"

typedef struct pool_case {
  kiln_op op;
  int sp;
  int64_t x[5];
  int64_t k[3], s[3], d[3], pads[6];
  int ceil_mode, cip;
} pool_case;

static kiln_ints ints(kiln_graph *g, int n, const int64_t *v) {
  int64_t *p = kiln_arena_array(&g->arena, (size_t)n, sizeof *p);
  memcpy(p, v, (size_t)n * sizeof *p);
  return (kiln_ints){n, p};
}

static kiln_graph *pool(kiln_dtype t, const void *ctx) {
  const pool_case *pc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, pc->sp + 2, pc->x);
  kiln_node *n = gc_node(g, pc->op, 1, (kiln_value *[]){x}, 1);
  if (pc->op == KILN_OP_MAX_POOL || pc->op == KILN_OP_AVERAGE_POOL) {
    kiln_attrs_pool *a = n->attrs;
    a->kernel_shape = ints(g, pc->sp, pc->k);
    a->strides = ints(g, pc->sp, pc->s);
    a->dilations = ints(g, pc->sp, pc->d);
    a->pads = ints(g, 2 * pc->sp, pc->pads);
    a->ceil_mode = pc->ceil_mode;
    a->count_include_pad = pc->cip;
  }
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* A shuffled permutation of n distinct values in [-1, 1). */
static void distinct(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)k, (void)ctx;
  for (int64_t i = 0; i < n; i++) x[i] = -1 + 2.0 * (double)i / (double)n;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)gc_uniform(rng, 0, (double)(i + 1));
    if (j > i) j = i;
    double t = x[i];
    x[i] = x[j];
    x[j] = t;
  }
}

/* Geometries shared by MaxPool and AveragePool. */
static const pool_case geometries[] = {
    /* 2-D 3x3 stride 1, pads 1: every element in up to 9 windows */
    {0, 2, {2, 2, 5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 0, 0},
    /* 2-D 2x2 stride 2: disjoint windows */
    {0, 2, {1, 3, 4, 4}, {2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}, 0, 0},
    /* 2-D 3x2, strides 2x1, dilation 2x1, asymmetric pads, ceil_mode */
    {0, 2, {1, 2, 7, 6}, {3, 2}, {2, 1}, {2, 1}, {1, 0, 1, 1}, 1, 0},
    /* 1-D k3 s2 pads 1/1 ceil_mode: the last window hangs past the end pad */
    {0, 1, {2, 3, 6}, {3}, {2}, {1}, {1, 1}, 1, 0},
    /* 1-D k4 s3 dilation 2, no pads, ceil_mode */
    {0, 1, {1, 2, 13}, {4}, {3}, {2}, {0, 0}, 1, 0},
    /* 3-D 2x3x2, strides 1x2x1, pads on some sides: overlapping */
    {0, 3, {1, 2, 3, 5, 3}, {2, 3, 2}, {1, 2, 1}, {1, 1, 1}, {1, 1, 0, 0, 1, 1}, 0, 0},
    /* 3-D 2x2x2 stride 2 ceil_mode with odd extents */
    {0, 3, {1, 1, 3, 3, 5}, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}, 1, 0},
};
#define NGEOM ((int)(sizeof geometries / sizeof geometries[0]))

Test(grad_pool, max_pool_overlapping_padded_dilated_ceil_1d_2d_3d) {
  for (int i = 0; i < NGEOM; i++) {
    pool_case pc = geometries[i];
    pc.op = KILN_OP_MAX_POOL;
    char what[64];
    snprintf(what, sizeof what, "MaxPool geometry %d", i);
    gradcheck(what, pool, distinct, &pc);
  }
}

Test(grad_pool, average_pool_with_and_without_count_include_pad) {
  for (int cip = 0; cip < 2; cip++)
    for (int i = 0; i < NGEOM; i++) {
      pool_case pc = geometries[i];
      pc.op = KILN_OP_AVERAGE_POOL;
      pc.cip = cip;
      char what[80];
      snprintf(what, sizeof what, "AveragePool geometry %d count_include_pad=%d", i, cip);
      gradcheck(what, pool, NULL, &pc);
    }
}

/* The finite-difference check cannot see a divisor that is wrong by the
 * same factor in the forward and the gradient, so one AveragePool case is
 * also checked against hand-derived values: 1-D [0..6) k3 s2 pads 1/1
 * ceil_mode, loss sum(y * R) with dY = 1 per output: windows
 * {-1,0,1} {1,2,3} {3,4,5} {5,6,7}.  count_include_pad=1 counts the taps
 * in [-1, 7): 3, 3, 3, 2; =0 counts those in [0, 6): 2, 3, 3, 1. */
static kiln_graph *avg_ones(kiln_dtype t, const void *ctx) {
  const int *cip = ctx;
  pool_case pc = {KILN_OP_AVERAGE_POOL, 1, {1, 1, 6}, {3}, {2}, {1}, {1, 1}, 1, *cip};
  return pool(t, &pc);
}

Test(grad_pool, average_pool_ceil_mode_divisors_by_hand) {
  /* dX[i] = sum over windows holding i of 1 / count(window) */
  const double want[2][6] = {
      {1.0 / 3, 1.0 / 3 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 1.0 / 2},
      {1.0 / 2, 1.0 / 2 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 1.0 / 1},
  };
  for (int ci = 0; ci < 2; ci++) {
    int cip = 1 - ci;
    kiln_graph *g = avg_ones(KILN_DT_F64, &cip);
    kiln_diag d = {0};
    cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
    kiln_value *y = g->outputs[0];
    cr_assert_eq(y->dims[2], 4);
    kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){y}, 1);
    ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
    g->noutputs = 0; /* the loss is the output (nodes reaching no output are dead) */
    y->is_output = 0;
    kiln_graph_add_output(g, rs->out[0]);
    cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
    kiln_value *x = g->inputs[0], *gx = NULL;
    cr_assert_eq(kiln_autodiff(g, rs->out[0], 1, &x, &gx, &d), 0, "%s", d.msg);
    cr_assert(gx);
    gx->name = "gx";
    kiln_graph_add_output(g, gx);
    kiln_pipeline pl;
    kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
    cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
    kiln_program *p = pl.program;
    void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
    double xin[6] = {0}, out[6] = {0}, loss = 0;
    void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
    for (int b = 0; b < p->nbufs; b++) {
      const kiln_buf *bf = p->bufs[b];
      bufs[b] = bf->kind == KILN_BUF_INPUT ? (void *)xin
              : bf->kind == KILN_BUF_OUTPUT ? (!strcmp(bf->name, "gx") ? (void *)out : (void *)&loss)
              : bf->kind == KILN_BUF_WEIGHT ? (void *)bf->data : (char *)ws + bf->offset;
    }
    for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
    for (int i = 0; i < 6; i++)
      cr_assert(fabs(out[i] - want[ci][i]) < 1e-15, "count_include_pad=%d dX[%d] = %.17g, want %.17g", cip, i, out[i],
                want[ci][i]);
    free(bufs);
    free(ws);
    kiln_graph_free(g);
  }
}

Test(grad_pool, global_average_and_max_pool_2d_3d) {
  const pool_case cases[] = {
      {KILN_OP_GLOBAL_AVERAGE_POOL, 2, {2, 3, 4, 5}},
      {KILN_OP_GLOBAL_AVERAGE_POOL, 3, {1, 2, 2, 3, 2}},
      {KILN_OP_GLOBAL_AVERAGE_POOL, 1, {2, 2, 7}},
      {KILN_OP_GLOBAL_MAX_POOL, 2, {2, 3, 4, 5}},
      {KILN_OP_GLOBAL_MAX_POOL, 3, {1, 2, 2, 3, 2}},
      {KILN_OP_GLOBAL_MAX_POOL, 1, {2, 2, 7}},
  };
  for (int i = 0; i < 6; i++) {
    char what[64];
    snprintf(what, sizeof what, "%s case %d", kiln_op_get(cases[i].op)->name, i);
    gradcheck(what, pool, cases[i].op == KILN_OP_GLOBAL_MAX_POOL ? distinct : NULL, &cases[i]);
  }
}

/* MaxPool with the Indices output: the gradient flows through Y only. */
static kiln_graph *pool_indices(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 4, (int64_t[]){1, 2, 5, 4});
  kiln_node *n = gc_node(g, KILN_OP_MAX_POOL, 1, (kiln_value *[]){x}, 2);
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = ints(g, 2, (int64_t[]){2, 2});
  a->strides = ints(g, 2, (int64_t[]){1, 1});
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad_pool, max_pool_with_indices_output) { gradcheck("MaxPool with Indices", pool_indices, distinct, NULL); }

/* Ties: the whole gradient of a window goes to its first maximum in
 * window order (PyTorch's and ONNX Indices' rule), padding never wins.
 * X = all equal (1-D, 5 elements), k3 s1 pads 1: windows {-1,0,1}
 * {0,1,2} {1,2,3} {2,3,4} {3,4,5}; first maxima 0, 0, 1, 2, 3. */
Test(grad_pool, max_pool_ties_go_to_the_first_maximum) {
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 3, (int64_t[]){1, 1, 5});
  kiln_node *n = gc_node(g, KILN_OP_MAX_POOL, 1, (kiln_value *[]){x}, 1);
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = ints(g, 1, (int64_t[]){3});
  a->pads = ints(g, 2, (int64_t[]){1, 1});
  kiln_diag d = {0};
  kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){n->out[0]}, 1);
  ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
  kiln_graph_add_output(g, rs->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *gx = NULL;
  cr_assert_eq(kiln_autodiff(g, rs->out[0], 1, &x, &gx, &d), 0, "%s", d.msg);
  cr_assert(gx);
  gx->name = "gx";
  kiln_graph_add_output(g, gx);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  float xin[5] = {2, 2, 2, 2, 2}, y[5], out[5] = {0};
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *bf = p->bufs[b];
    bufs[b] = bf->kind == KILN_BUF_INPUT ? (void *)xin
            : bf->kind == KILN_BUF_OUTPUT ? (!strcmp(bf->name, "gx") ? (void *)out : (void *)y)
            : bf->kind == KILN_BUF_WEIGHT ? (void *)bf->data : (char *)ws + bf->offset;
  }
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  const float want[5] = {2, 1, 1, 1, 0};
  for (int i = 0; i < 5; i++) cr_assert_eq(out[i], want[i], "dX[%d] = %g, want %g", i, out[i], want[i]);
  free(bufs);
  free(ws);
  kiln_graph_free(g);
}

/* f16 (and so the accumulate-in-f32-scratch path of lower_pool_grad.c):
 * loss = ReduceSum(Pool(x)) in f16 vs the same in f32, on inputs exact in
 * f16 (multiples of 1/64, distinct for MaxPool).  MaxPool's gradient is
 * a count of windows (exact in both); AveragePool's sums of 1/count are
 * accumulated in f32 and rounded to f16 once on the store: within half
 * an f16 ulp, 2^-11 = 4.9e-4 relative, of the f32 result. */
static int run_sum_grad(const pool_case *pc, kiln_dtype t, const double *xin, int64_t n, double *gx_out) {
  kiln_graph *g = pool(t, pc);
  kiln_value *y = g->outputs[0];
  kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){y}, 1);
  ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
  g->noutputs = 0;
  y->is_output = 0;
  kiln_graph_add_output(g, rs->out[0]);
  kiln_diag d = {0};
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *x = g->inputs[0], *gx = NULL;
  cr_assert_eq(kiln_autodiff(g, rs->out[0], 1, &x, &gx, &d), 0, "%s", d.msg);
  cr_assert(gx && gx->dtype == t);
  gx->name = "gx";
  kiln_graph_add_output(g, gx);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  size_t es = kiln_dtype_size(t);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  char *xb = calloc((size_t)n, es), *gb = calloc((size_t)n, es), loss[8];
  for (int64_t i = 0; i < n; i++) kiln_dtype_store_f(t, xb, (size_t)i, xin[i]);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *bf = p->bufs[b];
    bufs[b] = bf->kind == KILN_BUF_INPUT ? (void *)xb
            : bf->kind == KILN_BUF_OUTPUT ? (!strcmp(bf->name, "gx") ? (void *)gb : (void *)loss)
            : bf->kind == KILN_BUF_WEIGHT ? (void *)bf->data : (char *)ws + bf->offset;
  }
  int nk = p->nkernels;
  for (int k = 0; k < nk; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  for (int64_t i = 0; i < n; i++) gx_out[i] = kiln_dtype_load_f(t, gb, (size_t)i);
  free(bufs);
  free(xb);
  free(gb);
  free(ws);
  kiln_graph_free(g);
  return nk;
}

Test(grad_pool, f16_accumulates_in_f32) {
  for (int o = 0; o < 2; o++)
    for (int i = 0; i < NGEOM; i++) {
      pool_case pc = geometries[i];
      pc.op = o ? KILN_OP_AVERAGE_POOL : KILN_OP_MAX_POOL;
      pc.cip = 1;
      int64_t n = 1;
      for (int k = 0; k < pc.sp + 2; k++) n *= pc.x[k];
      double *x = calloc((size_t)n, sizeof *x), *g16 = calloc((size_t)n, sizeof *g16), *g32 = calloc((size_t)n, sizeof *g32);
      uint64_t s = 5;
      distinct(0, x, n, &s, NULL);
      for (int64_t k = 0; k < n; k++) x[k] = round(x[k] * 64) / 64; /* n <= 128: still distinct */
      run_sum_grad(&pc, KILN_DT_F16, x, n, g16);
      run_sum_grad(&pc, KILN_DT_F32, x, n, g32);
      for (int64_t k = 0; k < n; k++)
        cr_assert(fabs(g16[k] - g32[k]) <= 4.9e-4 * fabs(g32[k]), "%s geometry %d: dX[%lld] f16 %.6g vs f32 %.6g",
                  kiln_op_get(pc.op)->name, i, (long long)k, g16[k], g32[k]);
      free(x);
      free(g16);
      free(g32);
    }
}

/* The gradient ops' shape function checks what it is given: a dY that is
 * not the pool's output for X, or an invalid x_shape, is one located
 * error line, not a crash. */
Test(grad_pool, gradient_op_shape_errors_are_one_line) {
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 4, (int64_t[]){1, 2, 6, 6});
  kiln_value *dy = gc_input(g, "dy", KILN_DT_F32, 4, (int64_t[]){1, 2, 4, 4});
  kiln_node *m = gc_node(g, KILN_OP_MAX_POOL_GRAD, 2, (kiln_value *[]){x, dy}, 1);
  kiln_attrs_pool *a = m->attrs;
  a->kernel_shape = ints(g, 2, (int64_t[]){2, 2});
  a->strides = ints(g, 2, (int64_t[]){2, 2}); /* output 3x3, not 4x4 */
  kiln_graph_add_output(g, m->out[0]);
  kiln_diag d = {0};
  cr_assert_neq(kiln_pass_infer_shapes(g, &d), 0);
  cr_assert(strstr(d.msg, "kiln.MaxPoolGrad") && strstr(d.msg, "not the pool's output") && !strchr(d.msg, '\n'),
            "%s", d.msg);
  kiln_graph_free(g);

  g = gc_graph();
  dy = gc_input(g, "dy", KILN_DT_F32, 4, (int64_t[]){1, 2, 3, 3});
  static const int64_t bad[4] = {1, 2, -6, 6};
  kiln_value *shape = kiln_value_const(g, "x_shape", KILN_DT_I64, 1, (int64_t[]){4}, bad);
  m = gc_node(g, KILN_OP_AVERAGE_POOL_GRAD, 2, (kiln_value *[]){dy, shape}, 1);
  a = m->attrs;
  a->kernel_shape = ints(g, 2, (int64_t[]){2, 2});
  a->strides = ints(g, 2, (int64_t[]){2, 2});
  kiln_graph_add_output(g, m->out[0]);
  memset(&d, 0, sizeof d);
  cr_assert_neq(kiln_pass_infer_shapes(g, &d), 0);
  cr_assert(strstr(d.msg, "x_shape[2]") && !strchr(d.msg, '\n'), "%s", d.msg);
  kiln_graph_free(g);
}
