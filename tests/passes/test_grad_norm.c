/* Gradients of BatchNormalization (training mode: through the batch
 * statistics; inference mode: the frozen per-channel affine map),
 * InstanceNormalization, LRN and Dropout (passes/grad_norm.c) against
 * central finite differences (tests/passes/gradcheck.h: f64 < 1e-6, f32 <
 * 1e-3 relative), with respect to X, scale and B.  Plus one MaxPool +
 * BatchNorm training gradient program run by the LLVM JIT, agreeing with
 * the loop-IR interpreter. */
#include "../../backends/llvm/kiln_llvm.h"
#include "gradcheck.h"

typedef struct norm_case {
  kiln_op op;
  int rank;
  int64_t x[5];
  int training, running_outputs;
  float eps;
} norm_case;

/* A constant [C] tensor of dtype t (running mean: small values around 0,
 * running var: in [0.5, 1.5]). */
static kiln_value *channel_const(kiln_graph *g, const char *name, kiln_dtype t, int64_t C, double base, double step) {
  void *p = kiln_arena_array(&g->arena, (size_t)C, kiln_dtype_size(t));
  for (int64_t i = 0; i < C; i++) kiln_dtype_store_f(t, p, (size_t)i, base + step * (double)i);
  return kiln_value_const(g, name, t, 1, (int64_t[]){C}, p);
}

static kiln_graph *norm(kiln_dtype t, const void *ctx) {
  const norm_case *nc = ctx;
  kiln_graph *g = gc_graph();
  int64_t C = nc->x[1];
  kiln_value *x = gc_input(g, "x", t, nc->rank, nc->x);
  kiln_value *scale = gc_input(g, "scale", t, 1, (int64_t[]){C}), *b = gc_input(g, "B", t, 1, (int64_t[]){C});
  kiln_node *n;
  if (nc->op == KILN_OP_BATCH_NORM) {
    kiln_value *mean = channel_const(g, "mean", t, C, -0.2, 0.15), *var = channel_const(g, "var", t, C, 0.5, 0.3);
    n = gc_node(g, KILN_OP_BATCH_NORM, 5, (kiln_value *[]){x, scale, b, mean, var}, nc->running_outputs ? 3 : 1);
    kiln_attrs_batchnorm *a = n->attrs;
    a->training_mode = nc->training;
    a->epsilon = nc->eps;
  } else {
    n = gc_node(g, KILN_OP_INSTANCE_NORM, 3, (kiln_value *[]){x, scale, b}, 1);
    ((kiln_attrs_epsilon *)n->attrs)->epsilon = nc->eps;
  }
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

Test(grad_norm, batch_norm_training_through_the_batch_statistics) {
  const norm_case cases[] = {
      {KILN_OP_BATCH_NORM, 4, {4, 3, 2, 2}, 1, 0, 1e-5f},
      {KILN_OP_BATCH_NORM, 4, {2, 2, 3, 3}, 1, 1, 1e-3f}, /* with the running-statistics outputs */
      {KILN_OP_BATCH_NORM, 3, {5, 2, 3}, 1, 0, 1e-5f},    /* 1-D */
      {KILN_OP_BATCH_NORM, 5, {2, 2, 2, 2, 3}, 1, 0, 1e-5f}, /* 3-D */
      {KILN_OP_BATCH_NORM, 2, {6, 3}, 1, 0, 1e-5f},       /* no spatial dims (after a Gemm) */
  };
  for (int i = 0; i < 5; i++) {
    char what[64];
    snprintf(what, sizeof what, "BatchNorm training case %d", i);
    gradcheck(what, norm, NULL, &cases[i]);
  }
}

Test(grad_norm, batch_norm_inference_mode_frozen_statistics) {
  const norm_case cases[] = {
      {KILN_OP_BATCH_NORM, 4, {2, 3, 2, 2}, 0, 0, 1e-5f},
      {KILN_OP_BATCH_NORM, 3, {3, 4, 5}, 0, 1, 1e-2f},
  };
  for (int i = 0; i < 2; i++) {
    char what[64];
    snprintf(what, sizeof what, "BatchNorm inference case %d", i);
    gradcheck(what, norm, NULL, &cases[i]);
  }
}

Test(grad_norm, instance_norm_1d_2d_3d) {
  const norm_case cases[] = {
      {KILN_OP_INSTANCE_NORM, 3, {2, 3, 5}, 0, 0, 1e-5f},
      {KILN_OP_INSTANCE_NORM, 4, {2, 2, 3, 3}, 0, 0, 1e-3f},
      {KILN_OP_INSTANCE_NORM, 5, {1, 2, 2, 3, 2}, 0, 0, 1e-5f},
  };
  for (int i = 0; i < 3; i++) {
    char what[64];
    snprintf(what, sizeof what, "InstanceNorm case %d", i);
    gradcheck(what, norm, NULL, &cases[i]);
  }
}

typedef struct lrn_case {
  int rank;
  int64_t x[5];
  int64_t size;
  float alpha, beta, bias;
} lrn_case;

static kiln_graph *lrn(kiln_dtype t, const void *ctx) {
  const lrn_case *lc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, lc->rank, lc->x);
  kiln_node *n = gc_node(g, KILN_OP_LRN, 1, (kiln_value *[]){x}, 1);
  kiln_attrs_lrn *a = n->attrs;
  a->size = lc->size, a->alpha = lc->alpha, a->beta = lc->beta, a->bias = lc->bias;
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* alpha large enough that the cross-channel term matters (with ONNX's
 * default 1e-4 dX would be dY * bias^-beta to 4 digits). */
Test(grad_norm, lrn_odd_and_even_windows) {
  const lrn_case cases[] = {
      {4, {2, 5, 3, 2}, 3, 0.5f, 0.75f, 1.0f},
      {4, {1, 6, 2, 2}, 4, 0.8f, 0.6f, 2.0f}, /* even size: window 1 before, 2 after */
      {3, {2, 4, 3}, 5, 1.0f, 0.75f, 1.5f},   /* window wider than some channels' neighbourhoods */
      {4, {1, 3, 2, 2}, 1, 0.3f, 0.5f, 1.0f}, /* size 1: no cross-channel term */
  };
  for (int i = 0; i < 4; i++) {
    char what[64];
    snprintf(what, sizeof what, "LRN case %d", i);
    gradcheck(what, lrn, NULL, &cases[i]);
  }
}

typedef struct drop_case { int training; float ratio; } drop_case;

static kiln_graph *dropout(kiln_dtype t, const void *ctx) {
  const drop_case *dc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 2, (int64_t[]){3, 4});
  float *r = kiln_arena_array(&g->arena, 1, sizeof *r);
  unsigned char *tm = kiln_arena_array(&g->arena, 1, 1);
  *r = dc->ratio;
  *tm = (unsigned char)dc->training;
  kiln_value *rv = kiln_value_const(g, "ratio", KILN_DT_F32, 0, NULL, r);
  kiln_value *tv = kiln_value_const(g, "training_mode", KILN_DT_BOOL, 0, NULL, tm);
  kiln_node *n = gc_node(g, KILN_OP_DROPOUT, 3, (kiln_value *[]){x, rv, tv}, 1);
  /* y = Dropout(x) * x: the gradient is 2x when Dropout is the identity */
  kiln_node *m = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){n->out[0], x}, 1);
  kiln_graph_add_output(g, m->out[0]);
  return g;
}

/* Training mode outside the train pass (which rewrites it with a mask:
 * tests/passes/test_grad_dropout.c) has no mask to differentiate with. */
Test(grad_norm, dropout_inference_is_the_identity_and_training_outside_a_step_is_refused_by_name) {
  drop_case inf = {0, 0.5f}, zero = {1, 0.0f};
  gradcheck("Dropout inference mode", dropout, NULL, &inf);
  gradcheck("Dropout training mode, ratio 0", dropout, NULL, &zero);
  drop_case train = {1, 0.3f};
  kiln_diag d = {0};
  gc_prog p;
  cr_assert_neq(gc_compile(dropout, &train, KILN_DT_F32, &p, &d), 0, "training-mode Dropout must be refused");
  cr_assert(strstr(d.msg, "Dropout") && strstr(d.msg, "training-mode") && strstr(d.msg, "train pass") &&
            !strchr(d.msg, '\n'), "%s", d.msg);
  kiln_graph_free(p.g);
}

/* ---- MaxPool + BatchNorm training gradients: JIT vs interpreter ---- */

/* x [2, 3, 6, 6] -> BatchNorm (training) -> MaxPool 3x3 stride 2 pads 1
 * (overlapping windows) -> y. */
static kiln_graph *bn_pool(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  int64_t C = 3;
  kiln_value *x = gc_input(g, "x", t, 4, (int64_t[]){2, C, 6, 6});
  kiln_value *scale = gc_input(g, "scale", t, 1, (int64_t[]){C}), *b = gc_input(g, "B", t, 1, (int64_t[]){C});
  kiln_value *mean = channel_const(g, "mean", t, C, 0, 0), *var = channel_const(g, "var", t, C, 1, 0);
  kiln_node *bn = gc_node(g, KILN_OP_BATCH_NORM, 5, (kiln_value *[]){x, scale, b, mean, var}, 1);
  ((kiln_attrs_batchnorm *)bn->attrs)->training_mode = 1;
  kiln_node *mp = gc_node(g, KILN_OP_MAX_POOL, 1, (kiln_value *[]){bn->out[0]}, 1);
  kiln_attrs_pool *a = mp->attrs;
  int64_t *k = kiln_arena_array(&g->arena, 8, sizeof *k);
  k[0] = k[1] = 3, k[2] = k[3] = 2, k[4] = k[5] = k[6] = k[7] = 1;
  a->kernel_shape = (kiln_ints){2, k};
  a->strides = (kiln_ints){2, k + 2};
  a->pads = (kiln_ints){4, k + 4};
  kiln_graph_add_output(g, mp->out[0]);
  return g;
}

/* x: a shuffled permutation (no ties within a pooling window, so both
 * runs pick the same maxima); scale, B: uniform. */
static void bn_pool_fill(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)ctx;
  if (k == 0) {
    for (int64_t i = 0; i < n; i++) x[i] = -1 + 2.0 * (double)i / (double)n;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)gc_uniform(rng, 0, (double)(i + 1));
      if (j > i) j = i;
      double t = x[i];
      x[i] = x[j];
      x[j] = t;
    }
  } else {
    for (int64_t i = 0; i < n; i++) x[i] = gc_uniform(rng, 0.5, 1.5);
  }
}

Test(grad_norm, max_pool_batch_norm_gradients_by_finite_differences) {
  gradcheck("BatchNorm training -> MaxPool", bn_pool, bn_pool_fill, NULL);
}

/* The same f32 program by the JIT: it differs from the interpreter only in
 * how sums are associated (lanes, f32 blocks: expand_reduce.c) and in FMA
 * contraction, each ~1e-7 relative per rounding; the gradients pass through
 * a few sums of <= 72 terms, so they must agree to 1e-5 relative (L2 over
 * each gradient), two orders below the f32 gradient-check bound. */
Test(grad_norm, max_pool_batch_norm_gradient_program_jit_agrees_with_interpreter) {
  kiln_diag d = {0};
  gc_prog p;
  cr_assert_eq(gc_compile(bn_pool, NULL, KILN_DT_F32, &p, &d), 0, "%s", d.msg);
  uint64_t s = 99;
  for (int k = 0; k < p.nin; k++) {
    double *v = calloc((size_t)p.numel[k], sizeof *v);
    bn_pool_fill(k, v, p.numel[k], &s, NULL);
    for (int64_t i = 0; i < p.numel[k]; i++) ((float *)p.bufs[p.in_buf[k]])[i] = (float)v[i];
    free(v);
  }
  double loss_interp = gc_run(&p);
  float *ref[8];
  for (int k = 0; k < p.nin; k++) {
    cr_assert(p.grad_buf[k] >= 0, "input %d has a gradient", k);
    ref[k] = malloc((size_t)p.numel[k] * sizeof *ref[k]);
    memcpy(ref[k], p.bufs[p.grad_buf[k]], (size_t)p.numel[k] * sizeof *ref[k]);
    memset(p.bufs[p.grad_buf[k]], 0, (size_t)p.numel[k] * sizeof *ref[k]);
  }
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p.p, &d);
  cr_assert(j, "%s", d.msg);
  void **jb = calloc((size_t)p.p->nbufs + 1, sizeof *jb);
  void *ws = calloc(1, (size_t)p.p->workspace_bytes + 64);
  kiln_llvm_jit_bind(p.p, jb, ws);
  for (int b = 0; b < p.p->nbufs; b++) {
    kiln_buf_kind kind = p.p->bufs[b]->kind;
    if (kind == KILN_BUF_INPUT || kind == KILN_BUF_OUTPUT) jb[b] = p.bufs[b];
  }
  kiln_llvm_jit_run(j, jb);
  double loss_jit = kiln_dtype_load_f(KILN_DT_F32, p.bufs[p.loss_buf], 0);
  cr_assert(fabs(loss_jit - loss_interp) <= 1e-5 * fabs(loss_interp) + 1e-6, "loss: JIT %.9g, interpreter %.9g",
            loss_jit, loss_interp);
  for (int k = 0; k < p.nin; k++) {
    const float *g = p.bufs[p.grad_buf[k]];
    double e = 0, nr = 0;
    for (int64_t i = 0; i < p.numel[k]; i++) {
      e += ((double)g[i] - ref[k][i]) * ((double)g[i] - ref[k][i]);
      nr += (double)ref[k][i] * ref[k][i];
    }
    cr_assert(nr > 0, "input %d: zero gradient", k);
    cr_assert(sqrt(e / nr) < 1e-5, "input %d: JIT vs interpreter relative error %.3g", k, sqrt(e / nr));
    free(ref[k]);
  }
  kiln_llvm_jit_free(j);
  free(jb);
  free(ws);
  gc_free(&p);
}
