/* schedule-threads (passes/schedule_threads.c): a batch-1 elementwise
 * kernel big enough for the target gets one threaded loop (its one flat
 * loop; a conv's too-short batch loop is collapsed with the channel loop
 * inside it, below); a tiny one gets
 * none; a one-core target threads nothing; and collapsing computes the
 * same values, bit for bit, as the unscheduled program (kiln_loop_eval on
 * both, seeded input), which still verifies.  Every loop of an
 * elementwise kernel is marked parallel (legality), not just the first. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/dsl/kiln_dsl.h"
#include "passes/lower.h"
#include "passes/pipeline.h"

static kiln_graph *load(const char *src) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_dsl_load_buffer(src, strlen(src), "t.kiln", NULL, NULL, &d);
  cr_assert(g, "%s", d.msg);
  return g;
}

/* The pipeline on src through `until` for target t. */
static kiln_program *compile(const char *src, const kiln_target *t, kiln_pass_id until, kiln_graph **gp) {
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_pipeline_opts o = {.graph = load(src), .until = until, .target = t};
  cr_assert_eq(kiln_pipeline_run(&o, &pl, &d), 0, "%s", d.msg);
  *gp = pl.graph;
  return pl.program;
}

/* Threaded top-level loops of kernel k (and the extent of the last one). */
static int threaded(const kiln_kernel *k, int64_t *extent) {
  int n = 0;
  for (const kiln_ls *s = k->body; s; s = s->next)
    if (s->kind == KILN_LS_FOR && s->sched.threads) {
      n++;
      if (extent) *extent = s->extent;
    }
  return n;
}

static const kiln_kernel *kernel_of(const kiln_program *p, kiln_op op) {
  for (int i = 0; i < p->nkernels; i++)
    if (p->kernels[i]->node && p->kernels[i]->node->op == op) return p->kernels[i];
  cr_assert_fail("no kernel of that op");
  return NULL;
}

static const char big_relu[] = "network n {\n  input x: [1, 64, 320, 320]\n  relu\n}\n";
static const char tiny_relu[] = "network n {\n  input x: [1, 4, 8, 8]\n  relu\n}\n";

Test(schedule_threads, big_batch1_elementwise_gets_one_threaded_loop) {
  kiln_target t = kiln_target_cpu("test", 64, 2);
  kiln_graph *g;
  kiln_program *p = compile(big_relu, &t, KILN_PASS_NONE, &g);
  const kiln_kernel *k = kernel_of(p, KILN_OP_RELU);
  int64_t ext = 0;
  cr_assert_eq(threaded(k, &ext), 1);
  /* an elementwise node without broadcasting is one flat loop over its
   * elements (lower_elementwise.c): threaded whole */
  cr_assert_eq(ext, 64 * 320 * 320);
  cr_assert_geq(kiln_schedule_work(k->body), t.thread_min_work);
  kiln_graph_free(g);
}

Test(schedule_threads, every_output_loop_of_elementwise_is_parallel) {
  kiln_target t = kiln_target_cpu("test", 64, 2);
  kiln_graph *g;
  kiln_program *p = compile(tiny_relu, &t, KILN_PASS_LOWER, &g);
  const kiln_ls *s = kernel_of(p, KILN_OP_RELU)->body;
  int depth = 0;
  for (; s && s->kind == KILN_LS_FOR; s = s->body, depth++) cr_assert(s->sched.parallel, "loop at depth %d", depth);
  cr_assert_geq(depth, 1); /* one flat loop (no broadcasting) */
  kiln_graph_free(g);
}

Test(schedule_threads, tiny_kernel_and_one_core_thread_nothing) {
  kiln_target t = kiln_target_cpu("test", 64, 2);
  kiln_graph *g;
  kiln_program *p = compile(tiny_relu, &t, KILN_PASS_NONE, &g);
  for (int i = 0; i < p->nkernels; i++) cr_assert_eq(threaded(p->kernels[i], NULL), 0);
  kiln_graph_free(g);
  kiln_target one = kiln_target_cpu("test", 64, 1);
  p = compile(big_relu, &one, KILN_PASS_NONE, &g);
  for (int i = 0; i < p->nkernels; i++) cr_assert_eq(threaded(p->kernels[i], NULL), 0);
  kiln_graph_free(g);
}

/* Runs every kernel of p on a seeded input; returns the output (malloc'd). */
static float *eval(const kiln_program *p, size_t *nout) {
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  float *out = NULL;
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_WEIGHT) { bufs[i] = (void *)b->data; continue; }
    bufs[i] = calloc((size_t)b->numel + 1, kiln_dtype_size(b->dtype));
    if (b->kind == KILN_BUF_INPUT) {
      cr_assert_eq(b->dtype, KILN_DT_F32);
      uint32_t s = 12345;
      for (int64_t j = 0; j < b->numel; j++) {
        s = s * 1664525u + 1013904223u;
        ((float *)bufs[i])[j] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
      }
    }
    if (b->kind == KILN_BUF_OUTPUT) { out = bufs[i]; *nout = (size_t)b->numel; }
  }
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  for (int i = 0; i < p->nbufs; i++)
    if (bufs[i] != out && p->bufs[i]->kind != KILN_BUF_WEIGHT) free(bufs[i]);
  free(bufs);
  return out;
}

/* A conv (batch 1, 4 output channels), pooling and a relu (after the
 * pooling, so it is a kernel of its own, not fused into the conv; the
 * windows overlap, so the pool is not fused into the conv either,
 * fuse_pool.c): with a hand-off threshold of 1 every kernel with a
 * parallel top-level loop is threaded, and the short ones (extent 1 or
 * 4 < 2 cores x 4) collapse. */
static const char net[] = "network n {\n"
                          "  input x: [1, 3, 12, 12]\n"
                          "  c1: conv(4, 3x3, pad=1) -> maxpool(2x2, stride=1) -> relu\n"
                          "}\n";

Test(schedule_threads, collapsing_computes_the_same_values) {
  kiln_target t = kiln_target_cpu("test", 64, 2);
  t.thread_min_work = 1;
  kiln_graph *g;
  kiln_program *p = compile(net, &t, KILN_PASS_SIMPLIFY_INDEX, &g);
  size_t n0 = 0, n1 = 0;
  float *before = eval(p, &n0);
  kiln_schedule_threads(p);
  int nthreaded = 0, collapsed = 0;
  for (int i = 0; i < p->nkernels; i++) {
    int64_t ext = 0;
    if (threaded(p->kernels[i], &ext)) {
      nthreaded++;
      collapsed += ext >= 8;
    }
  }
  cr_assert_geq(nthreaded, 2, "relu and maxpool at least");
  cr_assert_geq(collapsed, 2, "their batch-1 (or 4-channel) loops collapsed to >= 8 iterations");
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  float *after = eval(p, &n1);
  cr_assert_eq(n0, 1 * 4 * 11 * 11);
  cr_assert_eq(n0, n1);
  cr_assert_eq(memcmp(before, after, n0 * sizeof *before), 0, "same values, bit for bit");
  free(before);
  free(after);
  kiln_graph_free(g);
}
