/* GPU kernels in the loop IR (ir/loop.h's GPU section) on hand-built
 * programs: a block-sum reduction through a SHARED buffer, emulated by
 * loop_eval.c and checked against sums computed here; the same kernel
 * with a barrier dropped (a race the emulation must report); the dump;
 * and the verifier's GPU rules, each broken once with the exact error. */
#include <stdlib.h>

#include "ir/loop.h"
#include "ir_test.h"

static kiln_program *P;
static kiln_buf *in24, *out3;
static kiln_lb B;

/* in: f32[24] input, out: f32[3] output; one kernel "k0_sum" of node
 * 'sum0' (ReduceSum). */
static void setup(void) {
  graph_setup();
  P = t_program();
  in24 = t_buf(P, "in", 24, KILN_BUF_INPUT, NULL);
  out3 = t_buf(P, "out", 3, KILN_BUF_OUTPUT, NULL);
  B = (kiln_lb){.p = P};
  kiln_lb_kernel(&B, "k0_sum", t_node(KILN_OP_REDUCE_SUM, "sum0", "ReduceSum"));
}

TestSuite(gpu, .init = setup, .fini = graph_teardown);

static kiln_lx *ci(int64_t v) { return kiln_lx_const_i(&B, v); }
static kiln_lx *idx(int v) { return kiln_lx_index(&B, v); }
static kiln_lx *bin(kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(&B, op, a, b); }

static void verifies(void) {
  kiln_diag d = {0};
  int n = kiln_loop_verify(P, &d);
  cr_assert_eq(n, 0, "unexpected: %s", d.msg);
}

static void fails(const char *want) {
  kiln_diag d = {0};
  int n = kiln_loop_verify(P, &d);
  cr_assert_eq(n, 1, "want 1 error, got %d: %s", n, d.msg);
  cr_assert_str_eq(d.msg, want);
}

#define PREFIX "m.onnx: node 'sum0' (ReduceSum): loop IR: kernel 'k0_sum': "

/* out[b] = sum of in[8b .. 8b+8), 3 blocks of 8 threads:
 *   for b in 3 blockIdx.x:
 *     alloc shared sh[8]
 *     for t in 8 threadIdx.x:
 *       sh[t] = in[8b + t]; barrier
 *       for s in 3: (stride 4 >> s)  if t < stride: sh[t] += sh[t + stride]
 *                   barrier (unless drop_barrier)
 *       if t == 0: out[b] = sh[0] */
static void block_sum(int drop_barrier) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  kiln_buf *sh = kiln_lb_alloc(&B, "sh", KILN_SCOPE_SHARED, KILN_DT_F32, 8);
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_store(&B, sh, idx(t), kiln_lx_load(&B, in24, bin(KILN_BIN_ADD, bin(KILN_BIN_MUL, idx(b), ci(8)), idx(t))));
  kiln_lb_barrier(&B);
  int s = kiln_lb_for(&B, 3, (kiln_sched){0});
  kiln_lx *stride = kiln_lx_select( /* 4 >> s */&B, bin(KILN_BIN_EQ, idx(s), ci(0)), ci(4),
                          kiln_lx_select(&B, bin(KILN_BIN_EQ, idx(s), ci(1)), ci(2), ci(1)));
  kiln_lb_if(&B, bin(KILN_BIN_LT, idx(t), stride));
  kiln_lb_store(&B, sh, idx(t),
                bin(KILN_BIN_ADD, kiln_lx_load(&B, sh, idx(t)), kiln_lx_load(&B, sh, bin(KILN_BIN_ADD, idx(t), stride))));
  kiln_lb_end(&B);
  if (!drop_barrier) kiln_lb_barrier(&B);
  kiln_lb_end(&B);
  kiln_lb_if(&B, bin(KILN_BIN_EQ, idx(t), ci(0)));
  kiln_lb_store(&B, out3, idx(b), kiln_lx_load(&B, sh, ci(0)));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
}

static int run_sum(float *out) {
  float in[24];
  for (int i = 0; i < 24; i++) in[i] = (float)(i * i % 7) - 2.5f; /* exact in f32, sums too */
  void *mem[2] = {in, out};
  return kiln_loop_eval(P, P->kernels[0], mem);
}

Test(gpu, block_sum_emulated) {
  block_sum(0);
  verifies();
  cr_assert_eq(P->kernels[0]->launch->grid[0], 3);
  cr_assert_eq(P->kernels[0]->launch->block[0], 8);
  float out[3] = {0};
  cr_assert_eq(run_sum(out), 0);
  for (int b = 0; b < 3; b++) {
    double want = 0;
    for (int i = 8 * b; i < 8 * b + 8; i++) want += (double)(i * i % 7) - 2.5;
    cr_assert_eq(out[b], want, "block %d: %g, expected %g", b, out[b], want);
  }
}

/* Without the barrier in the tree loop thread t may read sh[t + stride]
 * before its owner adds to it: a race, whatever order happens to give. */
Test(gpu, missing_barrier_is_a_race) {
  block_sum(1);
  verifies();
  float out[3] = {0};
  cr_assert_eq(run_sum(out), -1);
}

Test(gpu, dump_shows_launch_bindings_scopes_barriers) {
  block_sum(0);
  char buf[4096] = {0};
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  kiln_program_print(P, f);
  fclose(f);
  cr_assert(strstr(buf, "kernel k0_sum launch grid(3, 1, 1) block(8, 1, 1):\n"), "%s", buf);
  cr_assert(strstr(buf, "  for i0 in 0..3 blockIdx.x:\n    alloc shared %sh : f32[8]\n    for i1 in 0..8 threadIdx.x:\n"),
            "%s", buf);
  cr_assert(strstr(buf, "      barrier\n"), "%s", buf);
}

/* A thread-bound nest with one barrier; cond (if not NULL) wraps the barrier. */
static void one_block(kiln_lx *(*cond)(int b, int t)) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_store(&B, out3, idx(b), kiln_lx_load(&B, in24, idx(t)));
  if (cond) kiln_lb_if(&B, cond(b, t));
  kiln_lb_barrier(&B);
  if (cond) kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
}
static kiln_lx *thread_cond(int b, int t) { (void)b; return bin(KILN_BIN_LT, idx(t), ci(4)); }
static kiln_lx *block_cond(int b, int t) { (void)t; return bin(KILN_BIN_LT, idx(b), ci(2)); }

Test(gpu, barrier_under_divergent_if) {
  one_block(thread_cond);
  fails(PREFIX "barrier under an IF whose condition may differ between threads");
}

Test(gpu, barrier_under_uniform_if_is_fine) {
  one_block(block_cond);
  verifies();
}

Test(gpu, shared_buffer_outside_a_block_loop) {
  kiln_lb_alloc(&B, "sh", KILN_SCOPE_SHARED, KILN_DT_F32, 8);
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_barrier(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  fails(PREFIX "shared buffer 'sh' allocated outside any block-bound loop");
  (void)t;
}

Test(gpu, shared_buffer_under_thread_loops) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_alloc(&B, "sh", KILN_SCOPE_SHARED, KILN_DT_F32, 8);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  fails(PREFIX "shared buffer 'sh' allocated outside the block body (under thread-bound or sequential loops)");
  (void)b, (void)t;
}

Test(gpu, shared_buffer_in_a_cpu_kernel) {
  kiln_lb_alloc(&B, "sh", KILN_SCOPE_SHARED, KILN_DT_F32, 8);
  fails(PREFIX "shared buffer 'sh' allocated in a CPU kernel (no launch)");
}

Test(gpu, local_buffer_outside_the_thread_loops) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  kiln_lb_alloc(&B, "acc", KILN_SCOPE_LOCAL, KILN_DT_F32, 4);
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  fails(PREFIX "local buffer 'acc' allocated outside the thread-bound loops");
  (void)b, (void)t;
}

/* kernel 1 reads kernel 0's LOCAL buffer: scoped buffers do not outlive their kernel */
Test(gpu, local_buffer_used_by_another_kernel) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_buf *acc = kiln_lb_alloc(&B, "acc", KILN_SCOPE_LOCAL, KILN_DT_F32, 4);
  kiln_lb_store(&B, acc, ci(0), kiln_lx_load(&B, in24, idx(t)));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  verifies();
  kiln_lb_kernel(&B, "k1_next", P->kernels[0]->node);
  b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_if(&B, bin(KILN_BIN_EQ, idx(t), ci(0)));
  kiln_lb_store(&B, out3, idx(b), kiln_lx_load(&B, acc, ci(0)));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  fails("m.onnx: node 'sum0' (ReduceSum): loop IR: kernel 'k1_next': local buffer 'acc' used outside the kernel that "
        "allocates it");
}

Test(gpu, store_outside_the_thread_loops) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  kiln_lb_store(&B, out3, idx(b), kiln_lx_const_f(&B, KILN_DT_F32, 0));
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  fails(PREFIX "a store outside the thread-bound loops (every thread of the block would run it)");
  (void)t;
}

Test(gpu, launch_must_match_the_bound_loops) {
  one_block(NULL);
  ((kiln_launch *)P->kernels[0]->launch)->block[0] = 16;
  fails(PREFIX "recorded launch grid(3, 1, 1) block(16, 1, 1) is not its bound loops' grid(3, 1, 1) block(8, 1, 1)");
}

Test(gpu, bound_loop_needs_a_launch) {
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_end(&B);
  fails(PREFIX "loop i0 is GPU-bound in a kernel with no launch");
  (void)t;
}

Test(gpu, thread_loops_under_a_sequential_loop) {
  int b = kiln_lb_for(&B, 3, (kiln_sched){.gpu = 1});
  int s = kiln_lb_for(&B, 2, (kiln_sched){0});
  int t = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  /* two errors: the loop itself runs per thread, and the nest is under it */
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(P, &d), 2, "%s", d.msg);
  cr_assert_str_eq(d.msg, PREFIX "a sequential loop outside the thread-bound loops (every thread of the block would run it)");
  (void)b, (void)s, (void)t;
}

/* ---- TF32 (ir/loop.h, "TF32"): the warp MMA and tf32() ---- */

/* One block of `threads`: every lane's A and B fragments all ones (B
 * tf32-rounded), C zero, one MMA; thread 0 stores D's c0 (= 8: eight
 * products of 1) into out[0]; cond (if not NULL) wraps the MMA. */
static void one_mma(int threads, kiln_lx *(*cond)(int b, int t)) {
  int b = kiln_lb_for(&B, 1, (kiln_sched){.gpu = 1});
  int t = kiln_lb_for(&B, threads, (kiln_sched){.gpu = 4});
  kiln_buf *a = kiln_lb_alloc(&B, "a", KILN_SCOPE_LOCAL, KILN_DT_F32, 4);
  kiln_buf *bf = kiln_lb_alloc(&B, "b", KILN_SCOPE_LOCAL, KILN_DT_F32, 2);
  kiln_buf *c = kiln_lb_alloc(&B, "c", KILN_SCOPE_LOCAL, KILN_DT_F32, 4);
  for (int r = 0; r < 4; r++) {
    kiln_lb_store(&B, a, ci(r), kiln_lx_const_f(&B, KILN_DT_F32, 1));
    kiln_lb_store(&B, c, ci(r), kiln_lx_const_f(&B, KILN_DT_F32, 0));
  }
  for (int r = 0; r < 2; r++)
    kiln_lb_store(&B, bf, ci(r), kiln_lx_un(&B, KILN_UN_TF32, kiln_lx_const_f(&B, KILN_DT_F32, 1.0000001)));
  if (cond) kiln_lb_if(&B, cond(b, t));
  kiln_lb_mma(&B, c, a, bf, 1, 1);
  if (cond) kiln_lb_end(&B);
  kiln_lb_if(&B, bin(KILN_BIN_EQ, idx(t), ci(0)));
  kiln_lb_store(&B, out3, ci(0), kiln_lx_load(&B, c, ci(0)));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
}

Test(gpu, warp_mma_verifies_and_emulates) {
  one_mma(32, NULL);
  verifies();
  float out[3] = {0}, in[24] = {0};
  void *mem[2] = {in, out};
  cr_assert_eq(kiln_loop_eval(P, P->kernels[0], mem), 0);
  cr_assert_eq(out[0], 8.0f, "%.9g", out[0]); /* 1.0000001 rounds to 1 in TF32 */
  char buf[4096] = {0};
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  kiln_program_print(P, f);
  fclose(f);
  cr_assert(strstr(buf, "%c += mma_m16n8k8_tf32 x1x1(%a, %b)\n") && strstr(buf, "tf32("), "%s", buf);
}

Test(gpu, warp_mma_under_divergent_if) {
  one_mma(32, thread_cond);
  fails(PREFIX "warp mma under an IF whose condition may differ between threads");
}

Test(gpu, warp_mma_in_a_partial_warp) {
  one_mma(16, NULL);
  fails(PREFIX "warp mma in a block of 16 threads, not whole warps");
}

Test(gpu, tf32_in_a_cpu_kernel) {
  kiln_lb_store(&B, out3, ci(0), kiln_lx_un(&B, KILN_UN_TF32, kiln_lx_load(&B, in24, ci(0))));
  fails(PREFIX "tf32 rounding of a f32 value in a CPU kernel (f32 in GPU kernels only)");
}
