/* Training-mode Dropout (passes/train_dropout.c, passes/lower_dropout.c):
 * the graph x -> Dropout -> y, rewritten by kiln_train_dropout as the
 * train pass does, with loss = ReduceSum(y * R) and dx by autodiff.  With
 * x = 1 the output y is the mask itself (0 or s = 1 / (1 - ratio) in f32),
 * so the checks need no copy of kiln's hash:
 *   - the kept fraction over 2^20 elements is 1 - ratio within 5 binomial
 *     standard deviations (|kept - n(1-r)| <= 5 sqrt(n r (1-r)));
 *   - dx = dY * mask exactly (dY = R: one f32 multiply, as computed here);
 *   - the mask changes with the step input and the seed, and is bit-identical
 *     for the same step across two compilations, between the LLVM JIT
 *     and the loop-IR interpreter, and on 1 and 4 threads;
 *   - the finite-difference gradient check (gradcheck.h: f64 < 1e-6,
 *     f32 < 1e-3 relative) of y = Dropout(x) * x with the step held at a
 *     constant, so the mask is fixed;
 *   - ratio 0 is the identity (no mask kernel), ratio 1 a one-line error.
 * The hash's values themselves are checked against an independent Python
 * implementation in tests/passes/test_train_dropout.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/llvm/kiln_llvm.h"
#include "../../passes/train.h"
#include "gradcheck.h"

typedef struct drop_prog {
  kiln_graph *g;
  kiln_program *p;
  int64_t n;
  int x, step, y, dx, loss; /* buffer ids */
  int mask_threaded;        /* the mask kernel's loop runs on the thread pool */
  float *R;
} drop_prog;

/* x [4, n/4] -> Dropout(ratio, seed) -> y; the step a run-time input. */
static void drop_compile(drop_prog *dp, int64_t n, float ratio, int64_t seed) {
  kiln_diag d = {0};
  memset(dp, 0, sizeof *dp);
  kiln_graph *g = dp->g = gc_graph();
  dp->n = n;
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 2, (int64_t[]){4, n / 4});
  float *r = kiln_arena_array(&g->arena, 1, sizeof *r);
  *r = ratio;
  kiln_value *rv = kiln_value_const(g, "ratio", KILN_DT_F32, 0, NULL, r);
  kiln_node *drop = gc_node(g, KILN_OP_DROPOUT, 2, (kiln_value *[]){x, rv}, 1);
  ((kiln_attrs_dropout *)drop->attrs)->seed = seed;
  kiln_value *y = drop->out[0];
  y->name = "y";
  kiln_graph_add_output(g, y);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *step = kiln_graph_new_input(g, "step", KILN_DT_F32, 0, NULL);
  cr_assert_eq(kiln_train_dropout(g, step, &d), 0, "%s", d.msg);
  float *R = dp->R = kiln_arena_array(&g->arena, (size_t)n, sizeof *R);
  uint64_t s = 4242;
  for (int64_t i = 0; i < n; i++) R[i] = (float)gc_uniform(&s, -2, 2);
  kiln_value *Rv = kiln_value_const(g, "R", KILN_DT_F32, 2, (int64_t[]){4, n / 4}, R);
  kiln_node *m = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){y, Rv}, 1);
  kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){m->out[0]}, 1);
  ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
  rs->out[0]->name = "loss";
  kiln_graph_add_output(g, rs->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *dx;
  cr_assert_eq(kiln_autodiff(g, rs->out[0], 1, &x, &dx, &d), 0, "%s", d.msg);
  cr_assert(dx && dx->kind == KILN_VALUE_ACTIVATION, "x has a gradient");
  dx->name = "dx";
  kiln_graph_add_output(g, dx);
  kiln_pipeline pl;
  kiln_target t = kiln_llvm_target(0);
  t.cores = 4; /* big kernels go to the thread pool (checked below) */
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES, .target = &t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  dp->p = pl.program;
  dp->x = gc_buf_named(dp->p, "x"), dp->step = gc_buf_named(dp->p, "step"), dp->y = gc_buf_named(dp->p, "y");
  dp->dx = gc_buf_named(dp->p, "dx"), dp->loss = gc_buf_named(dp->p, "loss");
  cr_assert(dp->x >= 0 && dp->step >= 0 && dp->y >= 0 && dp->dx >= 0 && dp->loss >= 0, "the program's buffers");
  int masks = 0;
  for (int k = 0; k < dp->p->nkernels; k++)
    for (int j = 0; j < dp->p->kernels[k]->nnodes; j++)
      if (dp->p->kernels[k]->nodes[j]->op == KILN_OP_DROPOUT_MASK) {
        masks++;
        dp->mask_threaded = 0;
        for (const kiln_ls *st = dp->p->kernels[k]->body; st; st = st->next)
          if (st->kind == KILN_LS_FOR && st->sched.threads) dp->mask_threaded = 1;
      }
  cr_assert_eq(masks, 1, "one mask kernel, computed once for forward and backward (%d)", masks);
}

/* Runs the program at `step` with x = 1, by the JIT (interp 0; on
 * `threads` threads) or the interpreter; y and dx (n floats each) are
 * written. */
static void drop_run_on(drop_prog *dp, int interp, int threads, float step, float *y, float *dx) {
  const kiln_program *p = dp->p;
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  float *x = malloc((size_t)dp->n * sizeof *x), loss = 0;
  for (int64_t i = 0; i < dp->n; i++) x[i] = 1;
  kiln_diag d = {0};
  kiln_llvm_jit *j = NULL;
  if (interp) {
    for (int b = 0; b < p->nbufs; b++) {
      const kiln_buf *buf = p->bufs[b];
      if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
      else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    }
  } else {
    j = kiln_llvm_jit_compile(p, &d);
    cr_assert(j, "%s", d.msg);
    cr_assert_eq(kiln_llvm_jit_set_threads(j, threads), 0);
    kiln_llvm_jit_bind(p, bufs, ws);
  }
  bufs[dp->x] = x, bufs[dp->step] = &step, bufs[dp->y] = y, bufs[dp->dx] = dx, bufs[dp->loss] = &loss;
  if (interp)
    for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0, "kernel %d", k);
  else
    kiln_llvm_jit_run(j, bufs);
  if (j) kiln_llvm_jit_free(j);
  free(x);
  free(ws);
  free(bufs);
}

static void drop_run(drop_prog *dp, int interp, float step, float *y, float *dx) {
  drop_run_on(dp, interp, 1, step, y, dx);
}

static int64_t differing(const float *a, const float *b, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += memcmp(&a[i], &b[i], sizeof *a) != 0;
  return k;
}

Test(grad_dropout, kept_fraction_and_exact_gradient) {
  const float ratios[] = {0.1f, 0.5f, 0.75f};
  const int64_t n = (int64_t)1 << 20;
  float *y = malloc((size_t)n * sizeof *y), *dx = malloc((size_t)n * sizeof *dx);
  for (int c = 0; c < 3; c++) {
    drop_prog dp;
    drop_compile(&dp, n, ratios[c], 0);
    drop_run(&dp, 0, 1.0f, y, dx);
    const float s = (float)(1.0 / (1.0 - (double)ratios[c]));
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
      cr_assert(y[i] == 0 || y[i] == s, "ratio %g: y[%lld] = %.9g is neither 0 nor %.9g", (double)ratios[c],
                (long long)i, (double)y[i], (double)s);
      float want = y[i] != 0 ? dp.R[i] * s : 0.0f;
      cr_assert(memcmp(&dx[i], &want, sizeof want) == 0 || (want == 0 && dx[i] == 0),
                "ratio %g: dx[%lld] = %.9g, dY * mask = %.9g", (double)ratios[c], (long long)i, (double)dx[i],
                (double)want);
      kept += y[i] != 0;
    }
    double r = ratios[c], mean = (double)n * (1 - r), sd = sqrt((double)n * r * (1 - r));
    cr_assert(fabs((double)kept - mean) <= 5 * sd, "ratio %g: kept %lld of %lld, expected %.0f +- 5 x %.1f", r,
              (long long)kept, (long long)n, mean, sd);
    if (c == 1) { /* the pool's threads each take a slice: the same mask (no generator state to share) */
      cr_assert(dp.mask_threaded, "the mask kernel of 2^20 elements runs on the pool");
      float *y4 = malloc((size_t)n * sizeof *y4);
      drop_run_on(&dp, 0, 4, 1.0f, y4, dx);
      cr_assert_eq(differing(y, y4, n), 0, "1 and 4 threads draw the same mask");
      free(y4);
    }
    kiln_graph_free(dp.g);
  }
  free(y);
  free(dx);
}

Test(grad_dropout, mask_per_step_repeatable_and_same_in_jit_and_interpreter) {
  const int64_t n = 4196; /* 4 blocks of 1024 (lower_dropout.c) and a remainder of 100 */
  float *a = malloc(6 * (size_t)n * sizeof *a), *b = a + n, *c = b + n, *e = c + n, *f = e + n, *dx = f + n;
  drop_prog p1, p2, p3;
  drop_compile(&p1, n, 0.5f, 0);
  drop_compile(&p2, n, 0.5f, 0);
  drop_compile(&p3, n, 0.5f, 12345);
  drop_run(&p1, 0, 1.0f, a, dx);
  drop_run(&p1, 0, 2.0f, b, dx);
  /* masks of ratio 0.5 at two steps agree on about half the elements */
  int64_t diff = differing(a, b, n);
  cr_assert(diff > n / 4 && diff < 3 * n / 4, "step 1 vs step 2: %lld of %lld elements differ", (long long)diff,
            (long long)n);
  drop_run(&p2, 0, 1.0f, c, dx); /* a second compilation of the same model */
  cr_assert_eq(differing(a, c, n), 0, "the same step in two compilations gives the same mask");
  drop_run(&p1, 1, 1.0f, e, dx); /* the interpreter */
  cr_assert_eq(differing(a, e, n), 0, "JIT and interpreter agree at step 1");
  drop_run(&p1, 1, 2.0f, e, dx);
  cr_assert_eq(differing(b, e, n), 0, "JIT and interpreter agree at step 2");
  drop_run(&p1, 0, 1.0f, f, dx); /* the same instance again: no hidden generator state */
  cr_assert_eq(differing(a, f, n), 0, "rerunning step 1 gives step 1's mask");
  drop_run(&p3, 0, 1.0f, f, dx);
  diff = differing(a, f, n);
  cr_assert(diff > n / 4 && diff < 3 * n / 4, "seed 0 vs seed 12345: %lld of %lld elements differ", (long long)diff,
            (long long)n);
  kiln_graph_free(p1.g);
  kiln_graph_free(p2.g);
  kiln_graph_free(p3.g);
  free(a);
}

/* y = Dropout(x) * x in training mode at a constant step (3): with the
 * mask fixed the function is smooth, dx = 2 x mask. */
static kiln_graph *dropout_fixed_step(kiln_dtype t, const void *ctx) {
  float ratio = *(const float *)ctx;
  kiln_diag d = {0};
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 2, (int64_t[]){4, 6});
  float *r = kiln_arena_array(&g->arena, 2, sizeof *r);
  r[0] = ratio, r[1] = 3;
  kiln_value *rv = kiln_value_const(g, "ratio", KILN_DT_F32, 0, NULL, r);
  kiln_value *step = kiln_value_const(g, "step", KILN_DT_F32, 0, NULL, r + 1);
  kiln_node *n = gc_node(g, KILN_OP_DROPOUT, 2, (kiln_value *[]){x, rv}, 1);
  kiln_node *m = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){n->out[0], x}, 1);
  kiln_graph_add_output(g, m->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  cr_assert_eq(kiln_train_dropout(g, step, &d), 0, "%s", d.msg);
  return g;
}

Test(grad_dropout, finite_differences_with_the_step_held_fixed) {
  float ratio = 0.4f;
  gradcheck("training-mode Dropout, ratio 0.4, step 3", dropout_fixed_step, NULL, &ratio);
  /* and the mask is not trivial at this step: some of the 24 dropped, some kept */
  drop_prog dp;
  drop_compile(&dp, 24, 0.4f, 0);
  float y[24], dx[24];
  drop_run(&dp, 1, 3.0f, y, dx);
  int kept = 0;
  for (int i = 0; i < 24; i++) kept += y[i] != 0;
  cr_assert(kept > 0 && kept < 24, "step 3 keeps %d of 24", kept);
  kiln_graph_free(dp.g);
}

static kiln_graph *plain_dropout(float ratio, kiln_diag *d, int *rc) {
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 2, (int64_t[]){2, 3});
  float *r = kiln_arena_array(&g->arena, 1, sizeof *r);
  *r = ratio;
  kiln_value *rv = kiln_value_const(g, "ratio", KILN_DT_F32, 0, NULL, r);
  kiln_node *n = gc_node(g, KILN_OP_DROPOUT, 2, (kiln_value *[]){x, rv}, 1);
  kiln_graph_add_output(g, n->out[0]);
  *rc = kiln_pass_infer_shapes(g, d);
  if (!*rc) *rc = kiln_train_dropout(g, kiln_graph_new_input(g, "step", KILN_DT_F32, 0, NULL), d);
  return g;
}

Test(grad_dropout, ratio_zero_is_the_identity_and_ratio_one_is_refused) {
  kiln_diag d = {0};
  int rc;
  kiln_graph *g = plain_dropout(0.0f, &d, &rc);
  cr_assert_eq(rc, 0, "%s", d.msg);
  for (int i = 0; i < g->nnodes; i++)
    cr_assert(g->nodes[i]->op == KILN_OP_DROPOUT, "ratio 0: the Dropout stays (the identity), node %d is %s", i,
              kiln_op_get(g->nodes[i]->op)->name);
  kiln_graph_free(g);
  g = plain_dropout(1.0f, &d, &rc);
  cr_assert_neq(rc, 0, "ratio 1 must be refused");
  cr_assert(strstr(d.msg, "ratio 1 is outside [0, 1)") && strstr(d.msg, "Dropout") && !strchr(d.msg, '\n'), "%s",
            d.msg);
  kiln_graph_free(g);
}
