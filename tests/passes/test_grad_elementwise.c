/* Gradients of the activations, the other elementwise ops and
 * Softmax/LogSoftmax (passes/grad_elementwise.c) against central finite
 * differences (tests/passes/gradcheck.h: f64 < 1e-6, f32 < 1e-3
 * relative), with attribute variants.  Inputs stay at least `margin` away
 * from every kink (a Relu's 0, a Clip's bounds, HardSigmoid's corners),
 * where the finite difference would straddle two branches; Max/Min inputs
 * lie on disjoint grids, so no two are ever within 0.03 of each other,
 * except in the tie cases, which check the documented rule (ties split
 * dY evenly: Max(x, x) has gradient dY).  Last, Relu's backward must fuse:
 * through the pipeline, kiln.ReluGrad lands in the epilogue of the Gemm
 * that computes its dY. */
#include "../../backends/llvm/kiln_llvm.h"
#include "gradcheck.h"

typedef struct un_case {
  const char *what;
  kiln_op op;
  int nattr;          /* how many of a, b to set: alpha (LeakyRelu, Elu, HardSigmoid, Selu), then beta/gamma */
  float a, b;
  double lo, hi;      /* inputs uniform in [lo, hi] ... */
  int nkinks;         /* ... at least margin away from each kink */
  double kink[2], margin;
  int has_min, has_max; /* Clip's constant bounds */
  double min, max;
} un_case;

static kiln_value *scalar_const(kiln_graph *g, const char *name, kiln_dtype t, double v) {
  void *p = kiln_arena_alloc(&g->arena, 8);
  kiln_dtype_store_f(t, p, 0, v);
  return kiln_value_const(g, name, t, 0, NULL, p);
}

static kiln_graph *unary(kiln_dtype t, const void *ctx) {
  const un_case *uc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){2, 3, 4});
  kiln_value *in[3] = {x, NULL, NULL};
  int nin = 1;
  if (uc->op == KILN_OP_CLIP) {
    if (uc->has_min) in[1] = scalar_const(g, "min", t, uc->min);
    if (uc->has_max) in[2] = scalar_const(g, "max", t, uc->max);
    nin = uc->has_max ? 3 : uc->has_min ? 2 : 1;
  }
  kiln_node *n = gc_node(g, uc->op, nin, in, 1);
  /* the op's first nattr attributes, in attrs.def order (alpha; then
   * LeakyRelu/Elu: none, Selu: gamma, HardSigmoid: beta), all floats */
  const kiln_attr_field *f = kiln_op_get(uc->op)->attrs->fields;
  for (int i = 0; i < uc->nattr; i++) {
    cr_assert(f[i].name && f[i].type == KILN_AT_FLOAT, "%s: attribute %d", uc->what, i);
    float v = i ? uc->b : uc->a;
    memcpy((char *)n->attrs + f[i].offset, &v, sizeof v);
  }
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

static void away_from_kinks(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  const un_case *uc = ctx;
  (void)k;
  for (int64_t i = 0; i < n; i++) {
    int ok;
    do {
      x[i] = gc_uniform(rng, uc->lo, uc->hi);
      ok = 1;
      for (int j = 0; j < uc->nkinks; j++) ok &= fabs(x[i] - uc->kink[j]) >= uc->margin;
    } while (!ok);
  }
}

static void check_unary(const un_case *cases, int n) {
  for (int i = 0; i < n; i++) gradcheck(cases[i].what, unary, away_from_kinks, &cases[i]);
}

Test(grad, relu_leaky_relu_elu_selu_with_alphas) {
  const un_case cases[] = {
      {"Relu", KILN_OP_RELU, 0, 0, 0, -1, 1, 1, {0}, 0.05},
      {"LeakyRelu default alpha", KILN_OP_LEAKY_RELU, 0, 0, 0, -1, 1, 1, {0}, 0.05},
      {"LeakyRelu alpha=0.2", KILN_OP_LEAKY_RELU, 1, 0.2f, 0, -1, 1, 1, {0}, 0.05},
      {"LeakyRelu alpha=-0.5 (tests X, not Y)", KILN_OP_LEAKY_RELU, 1, -0.5f, 0, -1, 1, 1, {0}, 0.05},
      {"LeakyRelu alpha=0", KILN_OP_LEAKY_RELU, 1, 0.0f, 0, -1, 1, 1, {0}, 0.05},
      {"Elu default alpha", KILN_OP_ELU, 0, 0, 0, -2, 2, 1, {0}, 0.05},
      {"Elu alpha=0.5", KILN_OP_ELU, 1, 0.5f, 0, -2, 2, 1, {0}, 0.05},
      {"Elu alpha=-1.5", KILN_OP_ELU, 1, -1.5f, 0, -2, 2, 1, {0}, 0.05},
      {"Selu default", KILN_OP_SELU, 0, 0, 0, -2, 2, 1, {0}, 0.05},
      {"Selu alpha=1.2 gamma=0.7", KILN_OP_SELU, 2, 1.2f, 0.7f, -2, 2, 1, {0}, 0.05},
  };
  check_unary(cases, sizeof cases / sizeof *cases);
}

Test(grad, sigmoid_hard_sigmoid_hard_swish_tanh_softplus) {
  const un_case cases[] = {
      {"Sigmoid", KILN_OP_SIGMOID, 0, 0, 0, -4, 4, 0, {0}, 0},
      {"HardSigmoid default (0.2, 0.5)", KILN_OP_HARD_SIGMOID, 0, 0, 0, -4, 4, 2, {-2.5, 2.5}, 0.05},
      {"HardSigmoid alpha=0.5 beta=0.25", KILN_OP_HARD_SIGMOID, 2, 0.5f, 0.25f, -2, 3, 2, {-0.5, 1.5}, 0.05},
      {"HardSigmoid alpha=-1 beta=0.5", KILN_OP_HARD_SIGMOID, 2, -1.0f, 0.5f, -1, 1, 2, {-0.5, 0.5}, 0.05},
      {"HardSwish", KILN_OP_HARD_SWISH, 0, 0, 0, -4, 4, 2, {-3, 3}, 0.05},
      {"Tanh", KILN_OP_TANH, 0, 0, 0, -2, 2, 0, {0}, 0},
      {"Softplus", KILN_OP_SOFTPLUS, 0, 0, 0, -4, 4, 0, {0}, 0},
  };
  check_unary(cases, sizeof cases / sizeof *cases);
}

Test(grad, clip_with_min_only_max_only_both_and_neither) {
  const un_case cases[] = {
      {"Clip min=-0.3", KILN_OP_CLIP, 0, 0, 0, -1, 1, 1, {-0.3}, 0.05, 1, 0, -0.3, 0},
      {"Clip max=0.4", KILN_OP_CLIP, 0, 0, 0, -1, 1, 1, {0.4}, 0.05, 0, 1, 0, 0.4},
      {"Clip [-0.5, 0.5]", KILN_OP_CLIP, 0, 0, 0, -1, 1, 2, {-0.5, 0.5}, 0.05, 1, 1, -0.5, 0.5},
      {"Clip without bounds", KILN_OP_CLIP, 0, 0, 0, -1, 1, 0, {0}, 0, 0, 0, 0, 0},
  };
  check_unary(cases, sizeof cases / sizeof *cases);
}

Test(grad, erf_exp_log_sqrt_abs_reciprocal) {
  const un_case cases[] = {
      {"Erf", KILN_OP_ERF, 0, 0, 0, -2, 2, 0, {0}, 0},
      {"Exp", KILN_OP_EXP, 0, 0, 0, -2, 2, 0, {0}, 0},
      {"Log", KILN_OP_LOG, 0, 0, 0, 0.2, 3, 0, {0}, 0},
      {"Sqrt", KILN_OP_SQRT, 0, 0, 0, 0.2, 3, 0, {0}, 0},
      {"Abs", KILN_OP_ABS, 0, 0, 0, -1, 1, 1, {0}, 0.05},
      {"Reciprocal", KILN_OP_RECIPROCAL, 0, 0, 0, -2, 2, 1, {0}, 0.5},
  };
  check_unary(cases, sizeof cases / sizeof *cases);
}

/* ---- PRelu: both inputs, the slope broadcast ---- */

typedef struct prelu_case { int rs; int64_t ds[3]; } prelu_case;

static kiln_graph *prelu(kiln_dtype t, const void *ctx) {
  const prelu_case *pc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 4, (int64_t[]){2, 3, 2, 2});
  kiln_value *s = gc_input(g, "slope", t, pc->rs, pc->ds);
  kiln_node *n = gc_node(g, KILN_OP_PRELU, 2, (kiln_value *[]){x, s}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* X away from the kink at 0; slopes in [-0.5, 0.5]. */
static void prelu_fill(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) {
    double v = gc_uniform(rng, 0.05, 1);
    x[i] = k == 0 ? (gc_uniform(rng, 0, 1) < 0.5 ? -v : v) : gc_uniform(rng, -0.5, 0.5);
  }
}

Test(grad, prelu_per_channel_scalar_and_full_slopes) {
  const prelu_case cases[] = {{3, {3, 1, 1}}, {1, {1}}, {3, {3, 2, 2}}, {1, {2}}};
  for (int i = 0; i < 4; i++) {
    char what[64];
    snprintf(what, sizeof what, "PRelu slope case %d", i);
    gradcheck(what, prelu, prelu_fill, &cases[i]);
  }
}

/* ---- Pow: both inputs, broadcast; an integer constant exponent ---- */

typedef struct pow_case { int int_exponent; } pow_case;

static kiln_graph *power(kiln_dtype t, const void *ctx) {
  const pow_case *pc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 2, (int64_t[]){2, 3});
  kiln_value *e;
  if (pc->int_exponent) {
    int64_t *p = kiln_arena_array(&g->arena, 1, sizeof *p);
    *p = 3;
    e = kiln_value_const(g, "three", KILN_DT_I64, 0, NULL, p);
  } else {
    e = gc_input(g, "e", t, 1, (int64_t[]){3});
  }
  kiln_node *n = gc_node(g, KILN_OP_POW, 2, (kiln_value *[]){x, e}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* X > 0 (log X in dE), exponents in [-1.5, 2.5]; with the integer
 * exponent X takes either sign. */
static void pow_fill(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  const pow_case *pc = ctx;
  for (int64_t i = 0; i < n; i++) x[i] = k == 1 ? gc_uniform(rng, -1.5, 2.5) : pc->int_exponent ? gc_uniform(rng, -1.5, 1.5) : gc_uniform(rng, 0.3, 2);
}

Test(grad, pow_base_and_broadcast_exponent_and_integer_exponent) {
  pow_case both = {0}, integer = {1};
  gradcheck("Pow(x[2,3], e[3])", power, pow_fill, &both);
  gradcheck("Pow(x, int64 3)", power, pow_fill, &integer);
}

/* ---- Max / Min: variadic, broadcast, ties ---- */

typedef struct sel_case { kiln_op op; int nin; int rank[3]; int64_t dims[3][3]; int tie; } sel_case;

static kiln_graph *select_op(kiln_dtype t, const void *ctx) {
  const sel_case *sc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *in[3];
  for (int k = 0; k < sc->nin; k++) {
    char name[8];
    snprintf(name, sizeof name, "x%d", k);
    in[k] = sc->tie && k > 0 ? in[0] : gc_input(g, kiln_arena_strdup(&g->arena, name), t, sc->rank[k], sc->dims[k]);
  }
  kiln_node *n = gc_node(g, sc->op, sc->nin, in, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* Input k on the grid 0.1 m + 0.031 k (m integer): any two inputs differ
 * by at least 0.031, so none ties and h never moves across another. */
static void grid_fill(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) x[i] = 0.1 * floor(gc_uniform(rng, -10, 10)) + 0.031 * k;
}

Test(grad, max_min_variadic_with_broadcasting) {
  const kiln_op ops[] = {KILN_OP_MAX, KILN_OP_MIN};
  const sel_case shapes[] = {
      {0, 1, {2}, {{3, 4}}, 0},
      {0, 2, {2, 2}, {{3, 4}, {3, 4}}, 0},
      {0, 3, {3, 2, 1}, {{2, 3, 4}, {3, 1}, {4}}, 0},
  };
  for (int o = 0; o < 2; o++)
    for (int s = 0; s < 3; s++) {
      sel_case sc = shapes[s];
      sc.op = ops[o];
      char what[64];
      snprintf(what, sizeof what, "%s of %d inputs", kiln_op_get(ops[o])->name, sc.nin);
      gradcheck(what, select_op, grid_fill, &sc);
    }
}

Test(grad, max_min_ties_split_dy_evenly) {
  /* Max(x, x) and Min(x, x, x) are x: each input slot gets dY / count,
   * and the shares add up to dY, which the finite difference confirms */
  sel_case two = {KILN_OP_MAX, 2, {2, 2}, {{3, 4}, {3, 4}}, 1};
  sel_case three = {KILN_OP_MIN, 3, {2, 2, 2}, {{3, 4}, {3, 4}, {3, 4}}, 1};
  gradcheck("Max(x, x)", select_op, NULL, &two);
  gradcheck("Min(x, x, x)", select_op, NULL, &three);
}

/* ---- Softmax / LogSoftmax ---- */

typedef struct sm_case { kiln_op op; int axis, coerce_2d; } sm_case;

static kiln_graph *softmax(kiln_dtype t, const void *ctx) {
  const sm_case *sc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){2, 3, 4});
  kiln_node *n = gc_node(g, sc->op, 1, &x, 1);
  kiln_attrs_softmax *a = n->attrs;
  a->axis = sc->axis;
  a->_coerce_2d = sc->coerce_2d;
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad, softmax_and_log_softmax_every_axis_and_the_coerce_2d_form) {
  const kiln_op ops[] = {KILN_OP_SOFTMAX, KILN_OP_LOG_SOFTMAX};
  const sm_case cases[] = {{0, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 2, 0}, {0, 1, 1}, {0, 0, 1}};
  for (int o = 0; o < 2; o++)
    for (int i = 0; i < 6; i++) {
      sm_case sc = cases[i];
      sc.op = ops[o];
      char what[80];
      snprintf(what, sizeof what, "%s axis=%d%s", kiln_op_get(ops[o])->name, sc.axis, sc.coerce_2d ? " (coerce_2d)" : "");
      gradcheck(what, softmax, NULL, &sc);
    }
}

/* ---- chains, and Relu's backward fused ---- */

/* y = Gemm(Relu(Gemm(x, W1)), W2): an MLP layer. */
static kiln_graph *mlp(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 2, (int64_t[]){3, 4});
  kiln_value *w1 = gc_input(g, "W1", t, 2, (int64_t[]){4, 5});
  kiln_value *w2 = gc_input(g, "W2", t, 2, (int64_t[]){5, 2});
  kiln_node *h = gc_node(g, KILN_OP_GEMM, 2, (kiln_value *[]){x, w1}, 1);
  kiln_node *r = gc_node(g, KILN_OP_RELU, 1, h->out, 1);
  kiln_node *y = gc_node(g, KILN_OP_GEMM, 2, (kiln_value *[]){r->out[0], w2}, 1);
  kiln_graph_add_output(g, y->out[0]);
  return g;
}

Test(grad, mlp_with_relu) { gradcheck("Gemm -> Relu -> Gemm", mlp, NULL, NULL); }

Test(grad, relu_backward_fuses_into_the_gemm_computing_its_dy) {
  kiln_diag d = {0};
  kiln_graph *g = mlp(KILN_DT_F32, NULL);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, g->outputs, 1);
  ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
  g->noutputs = 0;
  g->outputs[0]->is_output = 0;
  kiln_graph_add_output(g, rs->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *wrt[2] = {g->inputs[1], g->inputs[2]}, *grads[2];
  cr_assert_eq(kiln_autodiff(g, rs->out[0], 2, wrt, grads, &d), 0, "%s", d.msg);
  for (int k = 0; k < 2; k++) kiln_graph_add_output(g, grads[k]);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  const kiln_node *rg = NULL;
  int relus = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    if (n->op == KILN_OP_RELU_GRAD) {
      cr_assert_null(rg, "one kiln.ReluGrad expected");
      rg = n;
    }
    if (n->op == KILN_OP_RELU) { /* the backward reads Y, so the forward Relu still fuses */
      relus++;
      cr_assert(n->fused_into && n->fused_into->op == KILN_OP_GEMM, "the forward Relu is no longer fused");
    }
  }
  cr_assert(rg && relus == 1);
  cr_assert(rg->fused_into, "kiln.ReluGrad is a kernel of its own, not in an epilogue");
  /* in the loop IR: the ReluGrad is computed by exactly one kernel, a
   * Gemm's (dY = dZ W2^T), in its store; no kernel of its own */
  int in_kernels = 0;
  for (int k = 0; k < pl.program->nkernels; k++) {
    const kiln_kernel *kk = pl.program->kernels[k];
    cr_assert_neq(kk->node, rg, "kernel %s computes the ReluGrad alone", kk->name);
    for (int j = 0; j < kk->nnodes; j++)
      if (kk->nodes[j] == rg) {
        in_kernels++;
        cr_assert_eq(kk->node->op, KILN_OP_GEMM, "kiln.ReluGrad fused into kernel %s of a %s", kk->name,
                     kiln_op_get(kk->node->op)->name);
      }
  }
  cr_assert_eq(in_kernels, 1);
  kiln_graph_free(g);
}

/* ---- every op at once, and the same program through the LLVM JIT ---- */

static kiln_value *apply(kiln_graph *g, kiln_op op, int nin, kiln_value *const *in) {
  return gc_node(g, op, nin, in, 1)->out[0];
}

/* y = the sum of every op of this file applied to x (Log, Sqrt,
 * Reciprocal, Pow of e^x > 0): one backward graph holding every gradient
 * row, several of them reading the same values. */
static kiln_graph *every_op(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){2, 3, 4});
  kiln_value *s = gc_input(g, "slope", t, 2, (int64_t[]){3, 1});
  const kiln_op unary_ops[] = {KILN_OP_RELU, KILN_OP_LEAKY_RELU, KILN_OP_ELU, KILN_OP_SELU, KILN_OP_SIGMOID,
                               KILN_OP_HARD_SIGMOID, KILN_OP_HARD_SWISH, KILN_OP_TANH, KILN_OP_SOFTPLUS, KILN_OP_ERF,
                               KILN_OP_ABS, KILN_OP_SOFTMAX, KILN_OP_LOG_SOFTMAX};
  kiln_value *terms[32];
  int n = 0;
  for (size_t i = 0; i < sizeof unary_ops / sizeof *unary_ops; i++) terms[n++] = apply(g, unary_ops[i], 1, &x);
  kiln_value *e = apply(g, KILN_OP_EXP, 1, &x);
  terms[n++] = e;
  terms[n++] = apply(g, KILN_OP_LOG, 1, &e);
  terms[n++] = apply(g, KILN_OP_SQRT, 1, &e);
  terms[n++] = apply(g, KILN_OP_RECIPROCAL, 1, &e);
  terms[n++] = apply(g, KILN_OP_POW, 2, (kiln_value *[]){e, x});
  terms[n++] = apply(g, KILN_OP_PRELU, 2, (kiln_value *[]){x, s});
  terms[n++] = apply(g, KILN_OP_CLIP, 3, (kiln_value *[]){x, scalar_const(g, "min", t, -0.5), scalar_const(g, "max", t, 0.7)});
  terms[n++] = apply(g, KILN_OP_MAX, 2, (kiln_value *[]){x, terms[7]}); /* Max(x, tanh x): ties only at 0 */
  terms[n++] = apply(g, KILN_OP_MIN, 2, (kiln_value *[]){x, terms[4]}); /* Min(x, sigmoid x) */
  kiln_graph_add_output(g, apply(g, KILN_OP_SUM, n, terms));
  return g;
}

/* x in [-2, 2] at least 0.05 from 0 (Relu, Abs, Max's tie) and Clip's
 * bounds; HardSigmoid's and HardSwish's corners (+-2.5, +-3) lie outside. */
static void every_op_fill(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)ctx;
  static const double kinks[] = {0, -0.5, 0.7};
  for (int64_t i = 0; i < n; i++) {
    int ok;
    do {
      x[i] = k == 0 ? gc_uniform(rng, -2, 2) : gc_uniform(rng, -0.5, 0.5);
      ok = 1;
      for (int j = 0; j < 3 && k == 0; j++) ok &= fabs(x[i] - kinks[j]) >= 0.05;
    } while (!ok);
  }
}

Test(grad, every_op_in_one_graph) { gradcheck("every op of this file summed", every_op, every_op_fill, NULL); }

/* The backward program compiled by LLVM computes what the interpreter
 * does (which the finite differences above checked): the same loop IR, so
 * they differ only by rounding (FMA contraction, vector libm), bounded by
 * 1e-10 relative in f64 and 1e-5 in f32 over a few dozen ops. */
static void jit_matches_interpreter(kiln_dtype t, double tol) {
  kiln_diag d = {0};
  gc_prog gp;
  cr_assert_eq(gc_compile(every_op, NULL, t, &gp, &d), 0, "%s", d.msg);
  uint64_t rng = 99;
  for (int k = 0; k < gp.nin; k++) {
    double *x = calloc((size_t)gp.numel[k], sizeof *x);
    every_op_fill(k, x, gp.numel[k], &rng, NULL);
    for (int64_t i = 0; i < gp.numel[k]; i++) kiln_dtype_store_f(t, gp.bufs[gp.in_buf[k]], (size_t)i, x[i]);
    free(x);
  }
  gc_run(&gp);
  const kiln_program *p = gp.p;
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert(j, "%s", d.msg);
  void **jb = calloc((size_t)p->nbufs + 1, sizeof *jb), *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  kiln_llvm_jit_bind(p, jb, ws);
  for (int b = 0; b < p->nbufs; b++) {
    if (p->bufs[b]->kind == KILN_BUF_INPUT) jb[b] = gp.bufs[b];
    if (p->bufs[b]->kind == KILN_BUF_OUTPUT) jb[b] = calloc(1, (size_t)p->bufs[b]->numel * kiln_dtype_size(t) + 8);
  }
  kiln_llvm_jit_run(j, jb);
  for (int k = 0; k < gp.nin; k++) {
    int b = gp.grad_buf[k];
    cr_assert_geq(b, 0);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < gp.numel[k]; i++) {
      double a = kiln_dtype_load_f(t, gp.bufs[b], (size_t)i), c = kiln_dtype_load_f(t, jb[b], (size_t)i);
      err += (a - c) * (a - c);
      norm += a * a;
    }
    cr_assert(norm > 0 && sqrt(err / norm) < tol, "%s gradient of input %d: JIT vs interpreter relative %.3g",
              kiln_dtype_name(t), k, sqrt(err / norm));
  }
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_OUTPUT) free(jb[b]);
  free(jb);
  free(ws);
  kiln_llvm_jit_free(j);
  gc_free(&gp);
}

Test(grad, llvm_jit_computes_the_gradients_the_interpreter_does) {
  jit_matches_interpreter(KILN_DT_F64, 1e-10);
  jit_matches_interpreter(KILN_DT_F32, 1e-5);
}
