/* The GPU schedule of Gemm and MatMul (passes/schedule_gemm_gpu.c: the
 * shared-memory tiled product of schedule_conv_gpu.c with a plain B),
 * checked by emulation as test_schedule_conv_gpu.c checks convolutions:
 * the scheduled kernel is verified, run by the loop evaluator's GPU
 * emulation (blocks in turn, threads between barriers, races reported),
 * and every output compared with a float64 reference computed here from
 * the ONNX definitions (Gemm: alpha * op(A) op(B) + beta * C; MatMul with
 * numpy batching), then the fused epilogue (+ R, Relu) where the case has
 * one.  The CPU lowering of the same node is checked the same way.
 *
 * Tolerance: float32 products and sums in any order, then at most four
 * more rounded operations (alpha, beta * C, + C, + R): each output within
 * gamma(K + 4) * (|alpha| sum |a b| + |beta C| + |R|), gamma(n) = n u /
 * (1 - n u), u = 2^-24 (Higham, 2nd ed., eq. 3.5 and sec. 4.2, for any
 * summation order); Relu is exact.  A wrong index is off by whole terms. */
#include <math.h>
#include <stdlib.h>

#include "ir/loop.h"
#include "passes/conv_def.h"
#include "../ir/ir_test.h"
#include "gpu_sched_test.h"

TestSuite(gemm_gpu, .init = graph_setup, .fini = graph_teardown);

typedef struct gshape {
  kiln_op op;          /* KILN_OP_GEMM or KILN_OP_MATMUL */
  int64_t Z, M, N, K;  /* MatMul: A [Z, M, K]; B [K, N] ([K] when bvec) shared by the batch */
  int transA, transB;  /* Gemm */
  int cmode;           /* Gemm's C: 0 none, 1 [N] (a bias), 2 [M, N] */
  double alpha, beta;
  int res;             /* fused epilogue: + R (an input of Y's shape), then Relu */
  int bvec;            /* MatMul: a 1-D B (Y [Z, M]) */
} gshape;


typedef struct built {
  kiln_node *n;
  kiln_program *p;
  void **mem;
  float *a, *r;
  const float *b, *c;
  const kiln_buf *yb;
} built;

static built build(const gshape *s) {
  built r = {0};
  int64_t N = s->bvec ? 1 : s->N, bn = s->K * N, cn = s->cmode == 2 ? s->M * N : N;
  float *b = malloc((size_t)bn * sizeof *b), *c = malloc((size_t)cn * sizeof *c);
  for (int64_t i = 0; i < bn; i++) b[i] = gst_frand();
  for (int64_t i = 0; i < cn; i++) c[i] = gst_frand();
  kiln_value *av, *bv, *cv = NULL;
  if (s->op == KILN_OP_GEMM) {
    av = t_input("a", KILN_DT_F32, 2, s->transA ? I64S(s->K, s->M) : I64S(s->M, s->K));
    bv = t_const("b", KILN_DT_F32, 2, s->transB ? I64S(N, s->K) : I64S(s->K, N), b);
    if (s->cmode) cv = t_const("c", KILN_DT_F32, s->cmode, s->cmode == 2 ? I64S(s->M, N) : I64S(N), c);
    r.n = cv ? NODE(KILN_OP_GEMM, "fc", av, bv, cv) : NODE(KILN_OP_GEMM, "fc", av, bv);
    kiln_attrs_gemm *at = r.n->attrs;
    at->transA = s->transA;
    at->transB = s->transB;
    at->alpha = (float)s->alpha;
    at->beta = (float)s->beta;
  } else {
    av = t_input("a", KILN_DT_F32, 3, I64S(s->Z, s->M, s->K));
    bv = s->bvec ? t_const("b", KILN_DT_F32, 1, I64S(s->K), b) : t_const("b", KILN_DT_F32, 2, I64S(s->K, N), b);
    r.n = NODE(KILN_OP_MATMUL, "mm", av, bv);
  }
  kiln_value *yv = r.n->out[0];
  if (s->res) {
    kiln_diag d0 = {0};
    cr_assert_eq(kiln_pass_infer_shapes(g, &d0), 0, "%s", d0.msg);
    kiln_value *rv = t_input("r", KILN_DT_F32, yv->rank, yv->dims);
    yv = NODE(KILN_OP_ADD, "residual", yv, rv)->out[0];
    g->noutputs = 0;
    for (int i = 0; i < g->nvalues; i++) g->values[i]->is_output = 0;
    yv = NODE(KILN_OP_RELU, "relu", yv)->out[0];
  }
  infer_ok();
  r.b = bv->data;
  r.c = cv ? cv->data : NULL;
  free(b);
  free(c);
  kiln_diag d = {0};
  if (s->res) {
    cr_assert_eq(kiln_pass_fuse_epilogue(g, &d), 0, "%s", d.msg);
    cr_assert_eq(r.n->epi.nsteps, 2, "epilogue not fused");
  }
  /* lowered for a GPU target: the kernel the schedule replaces reads B
   * as it is (on a CPU target a constant B^T is re-laid) */
  kiln_target gpu = kiln_target_gpu_default();
  r.p = kiln_lower_with(g, &gpu, &d);
  cr_assert(r.p, "%s", d.msg);
  r.mem = gst_mem(r.p, gst_frand);
  for (int i = 0; i < r.p->nbufs; i++) {
    const kiln_buf *bf = r.p->bufs[i];
    if (bf->kind == KILN_BUF_INPUT) *(bf->name == av->name ? &r.a : &r.r) = r.mem[i];
    if (bf->name == yv->name) r.yb = bf;
  }
  cr_assert(r.a && r.yb && (!s->res || r.r));
  return r;
}

static void unbuild(built *r) { gst_free(r->p, r->mem); }

static void check(const gshape *s, const built *r, const float *y, const char *what) {
  int64_t N = s->bvec ? 1 : s->N, Z = s->op == KILN_OP_GEMM ? 1 : s->Z;
  const double u = 0x1p-24, gam = (s->K + 4) * u / (1 - (s->K + 4) * u);
  double worst = 0;
  for (int64_t z = 0; z < Z; z++)
    for (int64_t i = 0; i < s->M; i++)
      for (int64_t j = 0; j < N; j++) {
        double sum = 0, mag = 0;
        for (int64_t k = 0; k < s->K; k++) {
          double a = s->op == KILN_OP_GEMM ? r->a[s->transA ? k * s->M + i : i * s->K + k] : r->a[(z * s->M + i) * s->K + k];
          double b = s->op == KILN_OP_GEMM && s->transB ? r->b[j * s->K + k] : r->b[k * N + j];
          sum += a * b;
          mag += fabs(a * b);
        }
        if (s->op == KILN_OP_GEMM) {
          sum *= s->alpha;
          mag *= fabs(s->alpha);
          if (r->c && s->beta != 0) {
            double c = s->beta * r->c[s->cmode == 2 ? i * N + j : j];
            sum += c;
            mag += fabs(c);
          }
        }
        int64_t yo = (z * s->M + i) * N + j;
        if (s->res) {
          sum += r->r[yo];
          mag += fabs(r->r[yo]);
          sum = sum > 0 ? sum : 0;
        }
        double got = y[yo], err = fabs(got - sum), tol = gam * mag;
        cr_assert(err <= tol, "%s: Y[%lld, %lld, %lld] = %.9g, float64 reference %.9g (error %.3g > bound %.3g)", what,
                  (long long)z, (long long)i, (long long)j, got, sum, err, tol);
        if (mag > 0 && err / mag > worst) worst = err / mag;
      }
  cr_log_info("%s: worst error %.3g of sum |terms| (bound %.3g)", what, worst, gam);
}

static void run_shape(const gshape *s, kiln_conv_gpu_tile t) {
  built r = build(s);
  int ncpu = r.p->nkernels;
  for (int k = 0; k < ncpu; k++) cr_assert_eq(kiln_loop_eval(r.p, r.p->kernels[k], r.mem), 0);
  check(s, &r, r.mem[r.yb->id], "CPU lowering");
  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_gemm_gpu(r.p, r.n, &t, &d), 0, "%s", d.msg);
  cr_assert_eq(r.p->nkernels, ncpu + 1);
  gst_run_gpu(r.p, r.p->kernels[ncpu], r.mem, r.yb);
  check(s, &r, r.mem[r.yb->id], "GPU schedule");
  unbuild(&r);
}

static const kiln_conv_gpu_tile small = {.bm = 8, .bn = 16, .bk = 4, .rm = 2, .rn = 2};

Test(gemm_gpu, plain_odd_sizes) {
  gshape s = {KILN_OP_GEMM, 1, 13, 21, 11, 0, 0, 0, 1, 1, 0, 0};
  run_shape(&s, small);
}

Test(gemm_gpu, exact_tiles) {
  gshape s = {KILN_OP_GEMM, 1, 8, 16, 8, 0, 0, 1, 1, 1, 0, 0};
  run_shape(&s, small);
}

Test(gemm_gpu, transposed_alpha_beta_matrix_c) {
  gshape s = {KILN_OP_GEMM, 1, 9, 17, 7, 1, 1, 2, 0.5, -2, 0, 0};
  run_shape(&s, small);
}

Test(gemm_gpu, bias_residual_relu_epilogue) {
  gshape s = {KILN_OP_GEMM, 1, 5, 19, 10, 0, 1, 1, 1.5, 1, 1, 0};
  run_shape(&s, (kiln_conv_gpu_tile){.bm = 4, .bn = 8, .bk = 3, .rm = 1, .rn = 2});
}

/* a batch-1 classifier: one row, the small-M tile (16 columns, 64 deep) */
Test(gemm_gpu, one_row_classifier) {
  gshape s = {KILN_OP_GEMM, 1, 1, 37, 130, 0, 0, 1, 1, 1, 0, 0};
  run_shape(&s, (kiln_conv_gpu_tile){.bm = 1, .bn = 16, .bk = 64, .rm = 1, .rn = 1});
}

Test(gemm_gpu, matmul_batched_shared_b) {
  gshape s = {KILN_OP_MATMUL, 3, 5, 9, 6, 0, 0, 0, 1, 1, 0, 0};
  run_shape(&s, small);
}

Test(gemm_gpu, matmul_vector_b_residual_relu) {
  gshape s = {KILN_OP_MATMUL, 2, 7, 1, 12, 0, 0, 0, 1, 1, 1, 1};
  run_shape(&s, small);
}

/* The whole pass on a GPU target: launch shapes of the chosen tiles. */
Test(gemm_gpu, pass_launch_shapes) {
  struct {
    gshape s;
    int64_t grid0, grid1, block0, block1;
  } cases[] = {
      /* 100 rows: 64x64 tiles, 16 x 16 threads */
      {{KILN_OP_GEMM, 1, 100, 70, 20, 0, 0, 1, 1, 1, 0, 0}, 2, 2, 16, 16},
      /* one row: 16 columns a block, one per thread, 1 row */
      {{KILN_OP_GEMM, 1, 1, 70, 20, 0, 0, 1, 1, 1, 0, 0}, 5, 1, 16, 1},
      /* 5 rows: an 8-row tile */
      {{KILN_OP_GEMM, 1, 5, 33, 20, 0, 0, 1, 1, 1, 1, 0}, 3, 1, 16, 8},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    graph_teardown();
    graph_setup();
    built r = build(&cases[i].s);
    r.p->target = kiln_target_gpu_default();
    kiln_schedule_gpu(r.p);
    const kiln_kernel *k = NULL;
    for (int j = 0; j < r.p->nkernels; j++)
      if (r.p->kernels[j]->node == r.n) k = r.p->kernels[j];
    cr_assert(k && k->launch && k->nallocs >= 2, "case %zu: not the tiled schedule", i);
    cr_assert_eq(k->launch->grid[0], cases[i].grid0, "case %zu", i);
    cr_assert_eq(k->launch->grid[1], cases[i].grid1, "case %zu", i);
    cr_assert_eq(k->launch->block[0], cases[i].block0, "case %zu", i);
    cr_assert_eq(k->launch->block[1], cases[i].block1, "case %zu", i);
    gst_run_gpu(r.p, k, r.mem, r.yb);
    check(&cases[i].s, &r, r.mem[r.yb->id], "GPU pass");
    unbuild(&r);
  }
}
