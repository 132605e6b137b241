/* The loop IR's reduction construct (ir/loop.h, "Reductions") and its CPU
 * expansion (passes/expand_reduce.c).  Small hand-built kernels reduce
 * windows of an input with every combiner -- NaN inputs, masked taps,
 * windows that are entirely masked (the identity), a non-identity init --
 * and run through the interpreter (ir/loop_eval.c) before and after
 * kiln_expand_reduce, and through the LLVM JIT after it.  Expectations are
 * computed here, in double precision, from the definitions in ir/loop.h,
 * never by kiln:
 *   add       the exact sum (f32 windows of at most 7 small integers and
 *             halves: exact in f32 too, so compared exactly);
 *   max, min  NaN contributions ignored; empty -> the identity (-inf, +inf);
 *   max_nan, min_nan  any NaN -> NaN; empty -> the identity.
 * The long-sum case is tests/passes/test_long_sums.py's bound: 1e6 values
 * of 1000 + U(0,1) (f32) summed through the blocked expansion must be
 * within 1e-6 (relative) of the float64 sum; the plain float32 sum of the
 * same data is shown to miss that bound, so the case can fail. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm/kiln_llvm.h"
#include "ir/graph.h"
#include "passes/lower.h"

static kiln_graph *g;
static void setup(void) { g = kiln_graph_new(); }
static void teardown(void) { kiln_graph_free(g); }
TestSuite(expand_reduce, .init = setup, .fini = teardown);

static kiln_program *new_program(void) {
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  return p;
}

static kiln_buf *buf(kiln_program *p, const char *name, kiln_dtype t, int64_t n, kiln_buf_kind kind) {
  kiln_value v = {.dtype = t, .rank = 1, .dims = {n}, .id = -1, .name = name};
  return kiln_program_add_buf(p, &v, kind);
}

static int count_kind(const kiln_ls *s, kiln_ls_kind kind) {
  int n = 0;
  for (; s; s = s->next) n += (s->kind == kind) + count_kind(s->body, kind) + count_kind(s->orelse, kind);
  return n;
}

static char *dump(const kiln_program *p) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_program_print(p, f);
  fclose(f);
  return text;
}

/* ---- windows: y[o] = reduce OP over taps k in [0, W) of x[o*S + k - P], taps outside x masked ---- */
enum { NX = 10, W = 3, S = 2, P = 3, NO = 8 }; /* outputs 0 and 7 see no input tap at all */

static kiln_program *window_program(kiln_reduce_op op, kiln_lx *(*init)(kiln_lb *b)) {
  kiln_program *p = new_program();
  kiln_buf *x = buf(p, "x", KILN_DT_F32, NX, KILN_BUF_INPUT), *y = buf(p, "y", KILN_DT_F32, NO, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_window", NULL);
  kiln_lx *o = kiln_lx_index(&B, kiln_lb_for(&B, NO, (kiln_sched){0}));
  int t = kiln_lb_reduce_begin(&B, op, KILN_DT_F32, init ? init(&B) : NULL, (kiln_sched){0});
  kiln_lx *k = kiln_lx_index(&B, kiln_lb_for(&B, W, (kiln_sched){0}));
  kiln_lx *pos = kiln_lx_iadd(&B, kiln_lx_iadd(&B, kiln_lx_imul(&B, o, S), k), kiln_lx_const_i(&B, -P));
  kiln_lb_if(&B, kiln_lx_bin(&B, KILN_BIN_AND, kiln_lx_bin(&B, KILN_BIN_LE, kiln_lx_const_i(&B, 0), pos),
                             kiln_lx_bin(&B, KILN_BIN_LT, pos, kiln_lx_const_i(&B, NX))));
  kiln_lb_combine(&B, t, kiln_lx_load(&B, x, pos));
  kiln_lb_end(&B); /* if */
  kiln_lb_end(&B); /* k */
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, o, kiln_lx_local(&B, t));
  kiln_lb_end(&B); /* o */
  return p;
}

/* The expectation of window o, from ir/loop.h's definitions. */
static double window_ref(kiln_reduce_op op, const float *x, int o, double init) {
  double r = init;
  int nan = init != init;
  for (int k = 0; k < W; k++) {
    int pos = o * S + k - P;
    if (pos < 0 || pos >= NX) continue;
    double v = x[pos];
    if (v != v) { nan = 1; continue; }
    switch (op) {
    case KILN_RED_ADD: r += v; break;
    case KILN_RED_MAX: case KILN_RED_MAX_NAN: if (r < v) r = v; break; /* a NaN r stays */
    case KILN_RED_MIN: case KILN_RED_MIN_NAN: if (v < r) r = v; break;
    default: break;
    }
  }
  if (nan && (op == KILN_RED_ADD || op == KILN_RED_MAX_NAN || op == KILN_RED_MIN_NAN)) return NAN;
  return r;
}

static void check_window(const kiln_program *p, kiln_reduce_op op, const float *x, const float *y, double init,
                         const char *when) {
  for (int o = 0; o < NO; o++) {
    double want = window_ref(op, x, o, init);
    if (want != want) cr_expect(y[o] != y[o], "%s %s: y[%d] = %g, want NaN", kiln_reduce_op_name(op), when, o, y[o]);
    else cr_expect(y[o] == (float)want, "%s %s: y[%d] = %.9g, want %.9g", kiln_reduce_op_name(op), when, o, y[o], want);
  }
  (void)p;
}

static const float window_x[NX] = {1.5f, -2, 4, NAN, 0.5f, 3, -1, NAN, NAN, 2};

static void run_window(kiln_reduce_op op, kiln_lx *(*init)(kiln_lb *b), double init_v) {
  kiln_program *p = window_program(op, init);
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  float y[NO];
  void *bufs[3] = {(void *)window_x, y}; /* + the JIT's thread pool slot */
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  check_window(p, op, window_x, y, init_v, "interpreted");
  kiln_expand_reduce(p);
  cr_assert_eq(count_kind(p->kernels[0]->body, KILN_LS_REDUCE) + count_kind(p->kernels[0]->body, KILN_LS_COMBINE), 0);
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  memset(y, 0, sizeof y);
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  check_window(p, op, window_x, y, init_v, "expanded, interpreted");
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert_not_null(j, "%s", d.msg);
  memset(y, 0, sizeof y);
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  check_window(p, op, window_x, y, init_v, "expanded, LLVM");
}

/* The windows (taps -3.., stride 2) over window_x: o=0 none; o=1 x[0] only;
 * o=3 holds x[3] = NaN; o=5 x[7], x[8] = NaN, NaN; o=6 x[9] only; o=7 none. */
Test(expand_reduce, sum_over_masked_windows_with_nan_and_empty_ones) { run_window(KILN_RED_ADD, NULL, 0); }
Test(expand_reduce, max_ignores_nan_contributions) { run_window(KILN_RED_MAX, NULL, -INFINITY); }
Test(expand_reduce, min_ignores_nan_contributions) { run_window(KILN_RED_MIN, NULL, INFINITY); }
Test(expand_reduce, max_nan_propagates_nan) { run_window(KILN_RED_MAX_NAN, NULL, -INFINITY); }
Test(expand_reduce, min_nan_propagates_nan) { run_window(KILN_RED_MIN_NAN, NULL, INFINITY); }

static kiln_lx *init_five(kiln_lb *b) { return kiln_lx_const_f(b, KILN_DT_F32, 5); }
static kiln_lx *init_nan(kiln_lb *b) { return kiln_lx_const_f(b, KILN_DT_F32, NAN); }
Test(expand_reduce, sum_starts_from_its_init) { run_window(KILN_RED_ADD, init_five, 5); }
Test(expand_reduce, max_from_a_nan_init_stays_nan) { run_window(KILN_RED_MAX, init_nan, NAN); }

Test(expand_reduce, identities) {
  kiln_program *p = new_program();
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k", NULL);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_ADD, KILN_DT_F32)->f == 0);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MAX_NAN, KILN_DT_F32)->f == -INFINITY);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MIN, KILN_DT_F64)->f == INFINITY);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MAX, KILN_DT_I32)->i == INT32_MIN);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MIN, KILN_DT_I8)->i == 127);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MIN, KILN_DT_U8)->i == 255);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MAX, KILN_DT_U16)->i == 0);
  cr_expect(kiln_lx_reduce_identity(&B, KILN_RED_MAX, KILN_DT_I64)->i == INT64_MIN);
}

/* Integer sums wrap (ir/loop.h): INT32_MAX + 1 + 1 == INT32_MIN + 1; an
 * empty integer max is INT32_MIN. */
Test(expand_reduce, integer_sum_wraps_and_empty_max_is_the_minimum) {
  kiln_program *p = new_program();
  kiln_buf *x = buf(p, "x", KILN_DT_I32, 3, KILN_BUF_INPUT), *y = buf(p, "y", KILN_DT_I32, 2, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_int", NULL);
  int t = kiln_lb_reduce_begin(&B, KILN_RED_ADD, KILN_DT_I32, NULL, (kiln_sched){0});
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, 3, (kiln_sched){0}));
  kiln_lb_combine(&B, t, kiln_lx_load(&B, x, i));
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  int m = kiln_lb_reduce_begin(&B, KILN_RED_MAX_NAN, KILN_DT_I32, NULL, (kiln_sched){0});
  i = kiln_lx_index(&B, kiln_lb_for(&B, 0, (kiln_sched){0}));
  kiln_lb_combine(&B, m, kiln_lx_load(&B, x, i));
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 1), kiln_lx_local(&B, m));
  int32_t xs[3] = {INT32_MAX, 1, 1}, ys[2];
  void *bufs[2] = {xs, ys};
  for (int pass = 0; pass < 2; pass++) {
    kiln_diag d = {0};
    cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
    cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
    cr_expect_eq(ys[0], INT32_MIN + 1, "pass %d: %d", pass, ys[0]);
    cr_expect_eq(ys[1], INT32_MIN, "pass %d: %d", pass, ys[1]);
    kiln_expand_reduce(p);
  }
}

/* ---- lanes: y = sum_k a[k] * b[k] with 8 lanes, K with remainders 0, 1 and 5 ---- */
static void run_dot(int64_t K) {
  kiln_program *p = new_program();
  kiln_buf *a = buf(p, "a", KILN_DT_F64, K, KILN_BUF_INPUT), *bb = buf(p, "b", KILN_DT_F64, K, KILN_BUF_INPUT);
  kiln_buf *y = buf(p, "y", KILN_DT_F64, 1, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_dot", NULL);
  int t = kiln_lb_reduce_begin(&B, KILN_RED_ADD, KILN_DT_F64, NULL, (kiln_sched){.vector = 8});
  kiln_lx *k = kiln_lx_index(&B, kiln_lb_for(&B, K, (kiln_sched){0}));
  kiln_lb_combine(&B, t, kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, a, k), kiln_lx_load(&B, bb, k)));
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  double *av = malloc((size_t)K * sizeof *av), *bv = malloc((size_t)K * sizeof *bv), want = 0, yv = -1;
  for (int64_t i = 0; i < K; i++) {
    av[i] = (double)(i % 7) - 2; /* small integers: every order of summation is exact */
    bv[i] = (double)(i % 5) + 0.5;
    want += av[i] * bv[i];
  }
  void *bufs[3] = {av, bv, &yv};
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  cr_expect(yv == want, "K=%lld interpreted: %.17g, want %.17g", (long long)K, yv, want);
  kiln_expand_reduce(p);
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  /* 8 lane accumulators and the result; the main loop of K/8 and, for a
   * remainder of more than one, its loop */
  const kiln_ls *body = p->kernels[0]->body;
  cr_expect_eq(count_kind(body, KILN_LS_DECL), 9, "K=%lld", (long long)K);
  cr_expect_eq(count_kind(body, KILN_LS_FOR), K % 8 > 1 ? 2 : 1, "K=%lld", (long long)K);
  cr_expect_eq(count_kind(body, KILN_LS_ASSIGN), 8 + (K % 8 ? 1 : 0), "K=%lld", (long long)K);
  yv = -1;
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  cr_expect(yv == want, "K=%lld expanded: %.17g, want %.17g", (long long)K, yv, want);
  free(av);
  free(bv);
}

Test(expand_reduce, lanes_split_a_dot_product) {
  run_dot(64);
  run_dot(17);
  run_dot(37);
}

Test(expand_reduce, lanes_are_not_used_on_a_short_loop) {
  kiln_program *p = new_program();
  kiln_buf *a = buf(p, "a", KILN_DT_F32, 15, KILN_BUF_INPUT), *y = buf(p, "y", KILN_DT_F32, 1, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_short", NULL);
  int t = kiln_lb_reduce_begin(&B, KILN_RED_ADD, KILN_DT_F32, NULL, (kiln_sched){.vector = 8});
  kiln_lx *k = kiln_lx_index(&B, kiln_lb_for(&B, 15, (kiln_sched){0}));
  kiln_lb_combine(&B, t, kiln_lx_load(&B, a, k));
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  kiln_expand_reduce(p);
  cr_expect_eq(count_kind(p->kernels[0]->body, KILN_LS_DECL), 1, "one plain accumulator");
}

/* ---- accurate sums: rows x cols values of 1000 + U(0,1), an f64 sum of f32 values ---- */
static double uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) * 0x1p-53;
}

static void run_long_sum(int64_t rows, int64_t cols, const char *want_text) {
  int64_t n = rows * cols;
  kiln_program *p = new_program();
  kiln_buf *x = buf(p, "x", KILN_DT_F32, n, KILN_BUF_INPUT), *y = buf(p, "y", KILN_DT_F32, 1, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_sum", NULL);
  kiln_dtype wt = kiln_sum_dtype(KILN_DT_F32, n);
  cr_assert_eq(wt, KILN_DT_F64, "a long f32 sum is declared f64");
  int t = kiln_lb_reduce_begin(&B, KILN_RED_ADD, wt, NULL, (kiln_sched){0});
  kiln_lx *r = kiln_lx_index(&B, kiln_lb_for(&B, rows, (kiln_sched){0}));
  kiln_lx *c = kiln_lx_index(&B, kiln_lb_for(&B, cols, (kiln_sched){0}));
  kiln_lb_combine(&B, t, kiln_lx_load(&B, x, kiln_lx_iadd(&B, kiln_lx_imul(&B, r, cols), c)));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 0),
                kiln_lx_cast(&B, KILN_DT_F32, kiln_lx_bin(&B, KILN_BIN_DIV, kiln_lx_local(&B, t), kiln_lx_const_f(&B, wt, (double)n))));
  float *xs = malloc((size_t)n * sizeof *xs), naive = 0, yv = 0;
  uint64_t seed = 42;
  double exact = 0;
  for (int64_t i = 0; i < n; i++) {
    xs[i] = (float)(1000.0 + uniform(&seed));
    exact += xs[i]; /* 1e6 terms near 1000: the double sum errs by < 1e6 * 1e9 * 2^-53, about 1e-4 of 1e9 */
    naive += xs[i];
  }
  double mean = exact / (double)n;
  void *bufs[2] = {xs, &yv};
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  cr_expect(fabs(yv - mean) / mean <= 1e-6, "interpreted: %.9g vs %.9g", yv, mean);
  kiln_expand_reduce(p);
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  char *text = dump(p);
  cr_expect(strstr(text, want_text) != NULL, "blocked form (%s):\n%s", want_text, text);
  free(text);
  yv = 0;
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  double err = fabs(yv - mean) / mean, naive_err = fabs((double)naive / (double)n - mean) / mean;
  cr_expect(err <= 1e-6, "blocked: %.9g vs %.9g (relative error %.3g > 1e-6)", yv, mean, err);
  if (n >= 100000) cr_expect(naive_err > 1e-6, "the plain f32 sum errs by %.3g: the case would catch it", naive_err);
  free(xs);
}

Test(expand_reduce, long_f32_sum_is_blocked_into_an_f64_total) {
  run_long_sum(1, 1000000, "for i3 in 0..128:"); /* 7812 blocks of 128 and a tail of 64 */
  run_long_sum(1000, 1000, "in 0..104:");        /* rows of 1000: 7 blocks and a tail of 104 each */
}

Test(expand_reduce, short_rows_of_a_long_sum_go_straight_to_the_f64_total) {
  run_long_sum(300, 5, "t0 = (t0 + f64(%x[");
}

/* The verifier knows the construct. */
Test(expand_reduce, verifier_rejects_misplaced_reductions) {
  kiln_program *p = window_program(KILN_RED_ADD, NULL);
  kiln_diag d = {0};
  p->reductions_expanded = 1; /* claims expansion ran */
  cr_expect_gt(kiln_loop_verify(p, &d), 0);
  cr_expect(strstr(d.msg, "left after expand-reduce") != NULL, "%s", d.msg);
  p->reductions_expanded = 0;
  /* a COMBINE moved out of its REDUCE */
  kiln_ls *red = p->kernels[0]->body->body;
  cr_assert_eq(red->kind, KILN_LS_REDUCE);
  kiln_ls *comb = red->body->body->body;
  cr_assert_eq(comb->kind, KILN_LS_COMBINE);
  kiln_ls *moved = kiln_arena_alloc(&g->arena, sizeof *moved);
  *moved = *comb;
  kiln_lx *one = kiln_arena_alloc(&g->arena, sizeof *one);
  one->kind = KILN_LX_CONST;
  one->dtype = KILN_DT_F32;
  one->f = 1;
  moved->value = one;
  moved->next = red->next;
  red->next = moved;
  kiln_diag d2 = {0};
  cr_expect_gt(kiln_loop_verify(p, &d2), 0);
  cr_expect(strstr(d2.msg, "outside its reduction") != NULL, "%s", d2.msg);
}

/* An f64 sum of f64 values is not an accurate sum of f32 values: it stays
 * one f64 accumulator, in order (bit-identical to the sequential sum). */
Test(expand_reduce, f64_sum_of_f64_values_stays_plain) {
  enum { NV = 1000 };
  kiln_program *p = new_program();
  kiln_buf *x = buf(p, "x", KILN_DT_F64, NV, KILN_BUF_INPUT), *y = buf(p, "y", KILN_DT_F64, 1, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_sum64", NULL);
  int t = kiln_lb_reduce_begin(&B, KILN_RED_ADD, kiln_sum_dtype(KILN_DT_F64, NV), NULL, (kiln_sched){0});
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, NV, (kiln_sched){0}));
  kiln_lb_combine(&B, t, kiln_lx_load(&B, x, i));
  kiln_lb_end(&B);
  kiln_lb_reduce_end(&B);
  kiln_lb_store(&B, y, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  kiln_expand_reduce(p);
  cr_expect_eq(count_kind(p->kernels[0]->body, KILN_LS_DECL), 1, "one accumulator");
  cr_expect_eq(count_kind(p->kernels[0]->body, KILN_LS_FOR), 1, "one loop");
  double xs[NV], want = 0, yv = 0;
  uint64_t seed = 7;
  for (int k = 0; k < NV; k++) {
    xs[k] = 1e3 + uniform(&seed) * 1e-3;
    want += xs[k];
  }
  void *bufs[2] = {xs, &yv};
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  cr_expect(yv == want, "%.17g vs %.17g", yv, want);
}
