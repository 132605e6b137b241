/* The GPU schedule of reductions (passes/schedule_reduce_gpu.c), checked
 * by emulation: a reduction node is lowered for a GPU target, scheduled,
 * expanded, verified, and run by the interpreter's GPU emulation
 * (ir/loop_eval.c: blocks in turn, threads segment by segment between
 * barriers; a SHARED element touched by two threads with no barrier
 * between, or a barrier reached unevenly, makes it fail), then compared
 * with a float64 reference computed here.
 *
 * Tolerances: Max is exact (NaN propagated, as ONNX ReduceMax); a float32
 * sum in any order, with float32 partial blocks of at most 128 terms and a
 * float64 total, is within 128u * sum|x| (u = 2^-24; Higham, eq. 3.5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/loop.h"
#include "passes/lower.h"
#include "../ir/ir_test.h"

TestSuite(reduce_gpu, .init = graph_setup, .fini = graph_teardown);

typedef struct run {
  kiln_program *p;
  void **mem;
  float *x, *y;
} run;

/* Lowers g for the GPU, schedules the reductions, expands them, verifies,
 * fills the input with data(i) and evaluates every kernel. */
static run lower_and_eval(float (*data)(int64_t)) {
  run r = {0};
  kiln_diag d = {0};
  kiln_target t = kiln_target_gpu_default();
  r.p = kiln_lower_with(g, &t, &d);
  cr_assert(r.p, "%s", d.msg);
  kiln_schedule_reduce_gpu(r.p);
  kiln_expand_reduce(r.p);
  cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg);
  r.mem = calloc((size_t)r.p->nbufs, sizeof *r.mem);
  for (int i = 0; i < r.p->nbufs; i++) {
    const kiln_buf *b = r.p->bufs[i];
    r.mem[i] = calloc((size_t)b->numel + 1, kiln_dtype_size(b->dtype));
    if (b->data) memcpy(r.mem[i], b->data, (size_t)b->numel * kiln_dtype_size(b->dtype));
    if (b->kind == KILN_BUF_INPUT) {
      r.x = r.mem[i];
      for (int64_t k = 0; k < b->numel; k++) r.x[k] = data(k);
    }
    if (b->kind == KILN_BUF_OUTPUT) r.y = r.mem[i];
  }
  for (int i = 0; i < r.p->nkernels; i++)
    cr_assert_eq(kiln_loop_eval(r.p, r.p->kernels[i], r.mem), 0, "kernel %s: out of bounds, a race or an uneven barrier",
                 r.p->kernels[i]->name);
  return r;
}

static void unrun(run *r) {
  for (int i = 0; i < r->p->nbufs; i++) free(r->mem[i]);
  free(r->mem);
}

static void expect_launch(const kiln_kernel *k, int64_t grid, int64_t block) {
  cr_assert(k->launch, "kernel %s has no launch", k->name);
  cr_expect_eq(k->launch->grid[0], grid, "grid %lld, expected %lld", (long long)k->launch->grid[0], (long long)grid);
  cr_expect_eq(k->launch->block[0], block, "block %lld, expected %lld", (long long)k->launch->block[0], (long long)block);
}

static float mixed(int64_t i) { return (float)((i * 7919 % 1000) / 250.0 - 1.0); } /* in [-1, 3) */

/* 7,500 values into one: one block of 256 threads, 30 terms each, a tree. */
Test(reduce_gpu, sum_of_all_one_block) {
  kiln_value *x = t_input("x", KILN_DT_F32, 4, I64S(1, 3, 50, 50));
  kiln_node *n = NODE(KILN_OP_REDUCE_SUM, "s", x);
  ((kiln_attrs_reduce *)n->attrs)->keepdims = 0;
  infer_ok();
  run r = lower_and_eval(mixed);
  expect_launch(r.p->kernels[0], 1, 256);
  double sum = 0, mag = 0;
  for (int64_t i = 0; i < 7500; i++) sum += r.x[i], mag += fabs(r.x[i]);
  double err = fabs(r.y[0] - sum);
  cr_expect(err <= 128 * 0x1p-24 * mag, "sum %.9g, float64 %.9g: error %.3g > 128u * %.6g", r.y[0], sum, err, mag);
  unrun(&r);
}

static float with_nan(int64_t i) { return i == 2 * 900 + 123 ? NAN : i == 4 * 900 + 899 ? 9.0f : mixed(i); }

/* 5 channels of 900: a block per channel; NaN wins in its channel, the
 * last element (the last thread's last strided step) in another. */
Test(reduce_gpu, max_per_channel_block_each) {
  kiln_value *x = t_input("x", KILN_DT_F32, 4, I64S(1, 5, 30, 30));
  NODE(KILN_OP_REDUCE_MAX, "m", x, CONST_INTS("axes", 2, 3));
  infer_ok();
  run r = lower_and_eval(with_nan);
  expect_launch(r.p->kernels[0], 5, 256);
  for (int c = 0; c < 5; c++) {
    float want = -INFINITY;
    int nan = 0;
    for (int64_t i = 0; i < 900; i++) {
      float v = r.x[c * 900 + i];
      nan |= v != v;
      if (v > want) want = v;
    }
    if (nan) cr_expect(isnan(r.y[c]), "channel %d: %g, expected NaN", c, r.y[c]);
    else cr_expect_eq(r.y[c], want, "channel %d: %.9g, expected %.9g", c, r.y[c], want);
  }
  cr_expect_eq(r.y[4], 9.0f);
  unrun(&r);
}

/* 16 values: nothing worth splitting, left to schedule_gpu (no launch yet). */
Test(reduce_gpu, short_sum_left_alone) {
  kiln_value *x = t_input("x", KILN_DT_F32, 2, I64S(1, 16));
  kiln_node *n = NODE(KILN_OP_REDUCE_SUM, "s", x);
  ((kiln_attrs_reduce *)n->attrs)->keepdims = 0;
  infer_ok();
  kiln_diag d = {0};
  kiln_target t = kiln_target_gpu_default();
  kiln_program *p = kiln_lower_with(g, &t, &d);
  cr_assert(p, "%s", d.msg);
  kiln_schedule_reduce_gpu(p);
  cr_expect_null(p->kernels[0]->launch);
}
