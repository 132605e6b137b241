/* Shared by the GPU schedule tests (test_schedule_conv_gpu.c,
 * test_schedule_gemm_gpu.c): memory for a lowered program (weights
 * copied, inputs filled by the test's generator), and the run of one
 * scheduled kernel through the loop evaluator's GPU emulation, with its
 * output first poisoned (NaN) so that an element it fails to write shows. */
#ifndef KILN_TESTS_PASSES_GPU_SCHED_TEST_H
#define KILN_TESTS_PASSES_GPU_SCHED_TEST_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/loop.h"

/* xorshift: the same pseudo-random data in [-1, 1) on every run */
static uint32_t gst_rng = 12345;
static float gst_frand(void) {
  gst_rng ^= gst_rng << 13;
  gst_rng ^= gst_rng >> 17;
  gst_rng ^= gst_rng << 5;
  return (float)((gst_rng >> 8) / 16777216.0 * 2.0 - 1.0);
}

static void **gst_mem(const kiln_program *p, float (*rnd)(void)) {
  void **mem = calloc((size_t)p->nbufs, sizeof *mem);
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *bf = p->bufs[i];
    mem[i] = calloc((size_t)bf->numel + 1, kiln_dtype_size(bf->dtype));
    if (bf->data) memcpy(mem[i], bf->data, (size_t)bf->numel * kiln_dtype_size(bf->dtype));
    if (bf->kind == KILN_BUF_INPUT)
      for (int64_t k = 0; k < bf->numel; k++) ((float *)mem[i])[k] = rnd();
  }
  return mem;
}

static void gst_free(const kiln_program *p, void **mem) {
  for (int i = 0; i < p->nbufs; i++) free(mem[i]);
  free(mem);
}

/* Verifies p, poisons y (f32 buffer yb) and runs GPU kernel k. */
static void gst_run_gpu(const kiln_program *p, const kiln_kernel *k, void **mem, const kiln_buf *yb) {
  kiln_diag d = {0};
  cr_assert(k->launch);
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  float *y = mem[yb->id];
  for (int64_t i = 0; i < yb->numel; i++) y[i] = NAN; /* every output must be written */
  cr_assert_eq(kiln_loop_eval(p, k, mem), 0, "GPU emulation failed (out of bounds, race or divergent barrier)");
}

#endif
