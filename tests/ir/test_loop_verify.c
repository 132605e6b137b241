/* The loop-IR verifier (ir/loop_verify.c) on hand-built programs: each bad
 * program breaks one invariant and must give exactly the error written
 * here; the good ones (including a guarded padding read whose interval
 * leaves the buffer, and an index the analysis cannot decide) give none. */
#include "ir/loop.h"
#include "ir_test.h"


static kiln_program *P;
static kiln_buf *in8, *out8, *w4, *ws8;
static kiln_lb B;

/* in: f32[8] input, out: f32[8] output, w: f32[4] weight, ws: f32[8]
 * workspace; one kernel "k0_relu" computing node 'relu0' (Relu). */
static void setup(void) {
  static const float wd[4] = {1, 2, 3, 4};
  graph_setup();
  P = t_program();
  in8 = t_buf(P, "in", 8, KILN_BUF_INPUT, NULL);
  out8 = t_buf(P, "out", 8, KILN_BUF_OUTPUT, NULL);
  w4 = t_buf(P, "w", 4, KILN_BUF_WEIGHT, wd);
  ws8 = t_buf(P, "ws", 8, KILN_BUF_WORKSPACE, NULL);
  B = (kiln_lb){.p = P};
  kiln_lb_kernel(&B, "k0_relu", t_node(KILN_OP_RELU, "relu0", "Relu"));
}

TestSuite(verify, .init = setup, .fini = graph_teardown);

static kiln_lx *ci(int64_t v) { return kiln_lx_const_i(&B, v); }
static kiln_lx *idx(int v) { return kiln_lx_index(&B, v); }

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

/* for i in 0..8: out[i] = in[i] */
Test(verify, copy_is_clean) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){.parallel = 1});
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  verifies();
}

/* out[i] = w[i / 2] + ws[7 - i]: in range through DIV and SUB */
Test(verify, derived_indices_in_range) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lx *a = kiln_lx_load(&B, w4, kiln_lx_bin(&B, KILN_BIN_DIV, idx(i), ci(2)));
  kiln_lx *b = kiln_lx_load(&B, ws8, kiln_lx_bin(&B, KILN_BIN_SUB, ci(7), idx(i)));
  kiln_lb_store(&B, out8, idx(i), kiln_lx_bin(&B, KILN_BIN_ADD, a, b));
  kiln_lb_end(&B);
  verifies();
}

/* if i >= 1: out[i] = in[i - 1]  (i - 1 is in [-1, 6], but guarded) */
Test(verify, guarded_padding_read_is_not_reported) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_if(&B, kiln_lx_bin(&B, KILN_BIN_LE, ci(1), idx(i)));
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, in8, kiln_lx_bin(&B, KILN_BIN_SUB, idx(i), ci(1))));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  verifies();
}

/* out[i] = in[i * i]: [0, 49] over-approximates, not affine: undecided */
Test(verify, undecided_index_is_silent) {
  int i = kiln_lb_for(&B, 3, (kiln_sched){0});
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, in8, kiln_lx_bin(&B, KILN_BIN_MUL, idx(i), idx(i))));
  kiln_lb_end(&B);
  verifies();
}

Test(verify, constant_index_out_of_range) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, w4, ci(4)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': load index 4 of 'w' takes values in [4, 4], "
        "outside [0, 4)");
}

/* A kernel that computes an epilogue too names its nodes in the error. */
Test(verify, error_lists_the_fused_nodes) {
  kiln_node *add = kiln_node_new(g, KILN_OP_ADD, "add0", 2, 1);
  const kiln_node **nodes = kiln_arena_array(&g->arena, 2, sizeof *nodes);
  nodes[0] = B.k->node;
  nodes[1] = add;
  B.k->nodes = nodes;
  B.k->nnodes = 2;
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, w4, ci(4)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu' (with 'add0' (Add)): load index 4 of 'w' takes "
        "values in [4, 4], outside [0, 4)");
}

/* unconditional out[i + 1], i in [0, 8): affine, so i = 7 really writes out[8] */
Test(verify, unguarded_affine_store_past_the_end) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out8, kiln_lx_bin(&B, KILN_BIN_ADD, idx(i), ci(1)), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': store index (i0 + 1) of 'out' takes values in "
        "[1, 8], outside [0, 8)");
}

/* through a never-assigned local: t0 = i * 2; out[t0] over i in [0, 8) */
Test(verify, affine_through_local_past_the_end) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  int t = kiln_lb_decl(&B, KILN_DT_I64, kiln_lx_imul(&B, idx(i), 2));
  kiln_lb_store(&B, out8, kiln_lx_local(&B, t), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': store index t0 of 'out' takes values in [0, 14], "
        "outside [0, 8)");
}

Test(verify, use_before_decl) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lx *early = kiln_lx_local(&B, 0); /* t0 is declared below */
  early->dtype = KILN_DT_F32;
  kiln_lb_store(&B, out8, idx(i), early);
  kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': local t0 used before its declaration or outside "
        "its block");
}

/* a local declared in a loop body read after the loop */
Test(verify, local_out_of_scope) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  int t = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  kiln_lb_store(&B, out8, ci(0), kiln_lx_local(&B, t));
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': local t0 used before its declaration or outside "
        "its block");
}

Test(verify, loop_var_outside_its_loop) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  kiln_lb_store(&B, ws8, idx(i), kiln_lx_const_f(&B, KILN_DT_F32, 0));
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': loop var i0 used outside its loop");
}

Test(verify, store_to_input) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, in8, idx(i), kiln_lx_const_f(&B, KILN_DT_F32, 0));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': store to 'in', a read-only input buffer");
}

Test(verify, store_to_weight) {
  int i = kiln_lb_for(&B, 4, (kiln_sched){0});
  kiln_lb_store(&B, w4, idx(i), kiln_lx_const_f(&B, KILN_DT_F32, 0));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': store to 'w', a read-only weight buffer");
}

Test(verify, bin_operand_types_differ) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lx *x = kiln_lx_load(&B, in8, idx(i));
  kiln_lx *e = kiln_lx_bin(&B, KILN_BIN_ADD, x, x);
  e->b = kiln_lx_const_f(&B, KILN_DT_F64, 1); /* the builder asserts; corrupt it after */
  kiln_lb_store(&B, out8, idx(i), e);
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': operands of '+' have different types: f32 and f64");
}

Test(verify, index_not_i64) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out8, kiln_lx_cast(&B, KILN_DT_I32, idx(i)), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': store index of 'out' is i32, not i64");
}

Test(verify, if_condition_not_bool) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_if(&B, kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_store(&B, out8, idx(i), kiln_lx_const_f(&B, KILN_DT_F32, 1));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': if condition is f32, not bool");
}

/* prefetch w[i + 1] over i < 3: in [1, 3], clean; over i < 4 it reaches
 * w[4], past the end, which the verifier reports as it would a load */
static void prefetch_next_w(int64_t n) {
  int i = kiln_lb_for(&B, n, (kiln_sched){0});
  kiln_lb_prefetch(&B, w4, kiln_lx_iadd(&B, idx(i), ci(1)));
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, in8, idx(i)));
  kiln_lb_end(&B);
}

Test(verify, prefetch_in_bounds_is_clean) {
  prefetch_next_w(3);
  verifies();
}

Test(verify, prefetch_past_the_end) {
  prefetch_next_w(4);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': prefetch index (i0 + 1) of 'w' takes values "
        "in [1, 4], outside [0, 4)");
}

Test(verify, barrier_outside_gpu_loop) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){.parallel = 1});
  kiln_lb_store(&B, ws8, idx(i), kiln_lx_load(&B, in8, idx(i)));
  kiln_ls *bar = kiln_arena_alloc(&g->arena, sizeof *bar);
  bar->kind = KILN_LS_BARRIER;
  *B.tail = bar;
  B.tail = &bar->next;
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, ws8, idx(i)));
  kiln_lb_end(&B);
  fails("m.onnx: node 'relu0' (Relu): loop IR: kernel 'k0_relu': barrier outside any GPU-bound loop");
}

/* the same barrier under a thread-bound loop of a GPU kernel (one launch) is fine */
Test(verify, barrier_under_gpu_loop) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){.gpu = 4});
  kiln_lb_store(&B, ws8, idx(i), kiln_lx_load(&B, in8, idx(i)));
  kiln_ls *bar = kiln_arena_alloc(&g->arena, sizeof *bar);
  bar->kind = KILN_LS_BARRIER;
  *B.tail = bar;
  B.tail = &bar->next;
  kiln_lb_store(&B, out8, idx(i), kiln_lx_load(&B, ws8, idx(i)));
  kiln_lb_end(&B);
  kiln_lb_launch(&B);
  verifies();
}

/* A kernel without a graph node (an output copy) is named without one;
 * every error is counted, the first one recorded. */
Test(verify, errors_are_counted_first_recorded) {
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, in8, idx(i), kiln_lx_load(&B, w4, ci(-1)));
  kiln_lb_end(&B);
  P->kernels[0]->node = NULL;
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(P, &d), 2);
  cr_assert_str_eq(d.msg, "loop IR: kernel 'k0_relu': store to 'in', a read-only input buffer");
}
