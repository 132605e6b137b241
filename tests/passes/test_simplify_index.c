/* Golden tests for passes/simplify_index.c: small loop nests built with the
 * builder API, simplified, and printed with kiln_program_print; each
 * expected text is written by hand from the rule the test names (integer
 * algebra under two's-complement wrap, truncating division, loop index v
 * in [0, extent)).  The C printer's division guard is checked the same way
 * on kiln_c_emit's source. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/kiln_c.h"
#include "passes/lower.h"

static kiln_graph *g;
static kiln_program *p;
static kiln_lb lb, *B = &lb;
static kiln_buf *X, *Y, *W, *IDX;

static kiln_buf *buf(const char *name, kiln_dtype t, int64_t n, kiln_buf_kind kind) {
  kiln_value v = {0};
  v.name = name;
  v.dtype = t;
  v.rank = 1;
  v.dims[0] = n;
  return kiln_program_add_buf(p, &v, kind);
}

static void setup(void) {
  g = kiln_graph_new();
  p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  memset(B, 0, sizeof *B);
  B->p = p;
  X = buf("x", KILN_DT_F32, 1000, KILN_BUF_INPUT);
  Y = buf("y", KILN_DT_F32, 1000, KILN_BUF_OUTPUT);
  W = buf("w", KILN_DT_F32, 1000, KILN_BUF_WEIGHT);
  IDX = buf("idx", KILN_DT_I64, 1000, KILN_BUF_INPUT);
  kiln_lb_kernel(B, "k", NULL);
}
static void teardown(void) { kiln_graph_free(g); }

/* The kernel's text after simplification (buffer lines left out). */
static char *simplified(void) {
  kiln_simplify_index(p);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_program_print(p, f);
  fclose(f);
  char *k = strstr(text, "kernel k:\n");
  cr_assert(k, "no kernel in:\n%s", text);
  char *out = strdup(k);
  free(text);
  return out;
}

#define EXPECT(str)                                                              \
  do {                                                                           \
    char *got_ = simplified();                                                   \
    cr_expect_str_eq(got_, str, "got:\n%s\nexpected:\n%s", got_, str);           \
    free(got_);                                                                  \
  } while (0)

#define CI(v) kiln_lx_const_i(B, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define FOR(n) kiln_lx_index(B, kiln_lb_for(B, (n), (kiln_sched){0}))
#define END() kiln_lb_end(B)
#define LD(buf, i) kiln_lx_load(B, (buf), (i))

TestSuite(simplify_index, .init = setup, .fini = teardown);

Test(simplify_index, div_mul_plus_rem_is_the_dividend) {
  kiln_lx *i = FOR(21);
  /* (i/7)*7 + i%7 == i for every i (truncating division), so no bounds needed */
  kiln_lx *idx = BIN(ADD, BIN(MUL, BIN(DIV, i, CI(7)), CI(7)), BIN(REM, i, CI(7)));
  kiln_lb_store(B, Y, idx, LD(X, i));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..21:\n"
         "    %y[i0] = %x[i0]\n");
}

Test(simplify_index, div_and_rem_below_the_divisor) {
  kiln_lx *i = FOR(5);
  /* 0 <= i < 5 < 8: i/8 = 0, i%8 = i */
  kiln_lb_store(B, Y, BIN(ADD, BIN(DIV, i, CI(8)), BIN(REM, i, CI(8))), LD(X, i));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..5:\n"
         "    %y[i0] = %x[i0]\n");
}

Test(simplify_index, identities) {
  kiln_lx *i = FOR(10);
  /* ((i*1 + 0) / 1) + (i % 1) + (i - i) == i */
  kiln_lx *a = BIN(DIV, BIN(ADD, BIN(MUL, i, CI(1)), CI(0)), CI(1));
  kiln_lb_store(B, Y, BIN(ADD, BIN(ADD, a, BIN(REM, i, CI(1))), BIN(SUB, i, i)), LD(X, i));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..10:\n"
         "    %y[i0] = %x[i0]\n");
}

Test(simplify_index, constants_fold_and_offsets_merge) {
  kiln_lx *i = FOR(10);
  /* ((i + 3) + 4) * 2 - 1 = 2i + 13; (6 * 7) folds to 42 */
  kiln_lx *a = BIN(SUB, BIN(MUL, BIN(ADD, BIN(ADD, i, CI(3)), CI(4)), CI(2)), CI(1));
  kiln_lb_store(B, Y, a, LD(X, BIN(MUL, CI(6), CI(7))));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..10:\n"
         "    %y[((i0 * 2) + 13)] = %x[42]\n");
}

Test(simplify_index, sums_ordered_outer_loop_first_constant_last) {
  kiln_lx *i = FOR(4);
  kiln_lx *j = FOR(5);
  /* 1 + j + i*5 + 2 -> i*5 + j + 3 */
  kiln_lb_store(B, Y, BIN(ADD, BIN(ADD, BIN(ADD, CI(1), j), BIN(MUL, i, CI(5))), CI(2)), LD(X, j));
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..4:\n"
         "    for i1 in 0..5:\n"
         "      %y[(((i0 * 5) + i1) + 3)] = %x[i1]\n");
}

Test(simplify_index, nested_division_merges) {
  kiln_lx *i = FOR(100);
  /* (i/2)/3 = i/6 (truncating, any i); 100 > 6 so it stays a division */
  kiln_lb_store(B, Y, i, LD(X, BIN(DIV, BIN(DIV, i, CI(2)), CI(3))));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..100:\n"
         "    %y[i0] = %x[(i0 / 6)]\n");
}

Test(simplify_index, division_split_by_ranges) {
  kiln_lx *i = FOR(4);
  kiln_lx *j = FOR(3);
  /* (i*6 + j*2 + 1) / 6 = i and % 6 = j*2 + 1, since 0 <= j*2 + 1 <= 5 < 6 */
  kiln_lx *n = BIN(ADD, BIN(ADD, BIN(MUL, i, CI(6)), BIN(MUL, j, CI(2))), CI(1));
  kiln_lb_store(B, Y, BIN(DIV, n, CI(6)), LD(X, BIN(REM, n, CI(6))));
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..4:\n"
         "    for i1 in 0..3:\n"
         "      %y[i0] = %x[((i1 * 2) + 1)]\n");
}

Test(simplify_index, unknown_sign_keeps_division) {
  kiln_lx *i = FOR(4);
  /* a loaded index may be negative: idx[i] / 4 stays; i - 2 may be negative: (i - 2) / 4 stays */
  kiln_lb_store(B, Y, BIN(DIV, LD(IDX, i), CI(4)), LD(X, BIN(DIV, BIN(SUB, i, CI(2)), CI(4))));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..4:\n"
         "    %y[(%idx[i0] / 4)] = %x[((i0 - 2) / 4)]\n");
}

Test(simplify_index, decided_conditions_fold) {
  kiln_lx *i = FOR(8);
  /* 0 <= i is always true, i < 10 too: the IF goes; i < 4 stays */
  kiln_lb_if(B, BIN(AND, BIN(LE, CI(0), i), BIN(LT, i, CI(10))));
  kiln_lb_store(B, Y, i, LD(X, i));
  END();
  kiln_lb_if(B, BIN(LT, i, CI(4)));
  kiln_lb_store(B, Y, i, LD(W, i));
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..8:\n"
         "    %y[i0] = %x[i0]\n"
         "    if (i0 < 4):\n"
         "      %y[i0] = %w[i0]\n");
}

Test(simplify_index, invariants_hoisted_and_shared) {
  kiln_lx *a = FOR(2);
  kiln_lx *b = FOR(3);
  kiln_lx *c = FOR(4);
  /* a*100 + b*10 is invariant in the c loop: bound once at the top of the b
   * loop, shared by both stores (offsets +0 and +5 stay at the use) */
  kiln_lx *base = BIN(ADD, BIN(MUL, a, CI(100)), BIN(MUL, b, CI(10)));
  kiln_lb_store(B, Y, BIN(ADD, base, c), LD(X, c));
  kiln_lb_store(B, Y, BIN(ADD, BIN(ADD, c, CI(5)), base), LD(X, c));
  END();
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..2:\n"
         "    for i1 in 0..3:\n"
         "      out_base0 : i64 = ((i0 * 100) + (i1 * 10))\n"
         "      for i2 in 0..4:\n"
         "        %y[(out_base0 + i2)] = %x[i2]\n"
         "        %y[((out_base0 + i2) + 5)] = %x[i2]\n");
}

Test(simplify_index, loads_never_hoisted) {
  kiln_lx *a = FOR(5);
  kiln_lx *b = FOR(3);
  /* w[a*8 + a%3]: the index is invariant in the b loop and is hoisted,
   * the load stays where it was (a store in the loop might change w) */
  kiln_lx *wi = BIN(ADD, BIN(MUL, a, CI(8)), BIN(REM, a, CI(3)));
  kiln_lb_store(B, Y, b, kiln_lx_bin(B, KILN_BIN_ADD, LD(W, wi), LD(X, b)));
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..5:\n"
         "    w_base0 : i64 = ((i0 * 8) + (i0 % 3))\n"
         "    for i1 in 0..3:\n"
         "      %y[i1] = (%w[w_base0] + %x[i1])\n");
}

Test(simplify_index, float_math_not_reassociated) {
  kiln_lx *i = FOR(4);
  /* (x + 1) + 2 in f32 is not x + 3 */
  kiln_lx *v = BIN(ADD, BIN(ADD, LD(X, i), kiln_lx_const_f(B, KILN_DT_F32, 1)), kiln_lx_const_f(B, KILN_DT_F32, 2));
  kiln_lb_store(B, Y, i, v);
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..4:\n"
         "    %y[i0] = ((%x[i0] + 1) + 2)\n");
}

Test(simplify_index, constant_locals_propagate) {
  kiln_lx *i = FOR(4);
  /* t = 0 (declared once, never assigned) disappears into its uses */
  int t = kiln_lb_decl(B, KILN_DT_I64, CI(0));
  kiln_lb_store(B, Y, BIN(ADD, BIN(MUL, kiln_lx_local(B, t), CI(64)), i), LD(X, i));
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..4:\n"
         "    %y[i0] = %x[i0]\n");
}

Test(simplify_index, extent_one_loop_index_is_zero) {
  kiln_lx *a = FOR(1);
  kiln_lx *b = FOR(6);
  kiln_lb_store(B, Y, BIN(ADD, BIN(MUL, a, CI(6)), b), LD(X, b));
  END();
  END();
  EXPECT("kernel k:\n"
         "  for i0 in 0..1:\n"
         "    for i1 in 0..6:\n"
         "      %y[i1] = %x[i1]\n");
}

/* The C printer guards a division only where the divisor may be 0 or -1. */
Test(simplify_index, c_printer_guards_only_non_constant_divisors) {
  kiln_lx *i = FOR(50);
  kiln_lb_store(B, Y, i, kiln_lx_cast(B, KILN_DT_F32, BIN(DIV, LD(IDX, i), CI(7))));
  kiln_lb_store(B, Y, BIN(ADD, i, CI(1)), kiln_lx_cast(B, KILN_DT_F32, BIN(DIV, LD(IDX, i), LD(IDX, BIN(ADD, i, CI(1))))));
  kiln_lb_store(B, Y, BIN(ADD, i, CI(2)), kiln_lx_cast(B, KILN_DT_F32, BIN(REM, LD(IDX, i), CI(0))));
  END();
  kiln_simplify_index(p);
  kiln_c_options o = {.prefix = "m", .model = "test", .weights_file = 1};
  kiln_c_output out;
  kiln_diag d = {0};
  cr_assert_eq(kiln_c_emit(p, &o, &out, &d), 0);
  const char *src = out.source;
  cr_expect(strstr(src, "x_y[i0] = ((float)((x_idx[i0] / 7)));"), "constant divisor guarded:\n%s", src);
  /* guarded divisions go through the helpers that define x / 0 and
   * MIN / -1 (ir/loop.h) */
  cr_expect(strstr(src, "kiln_div_i64(x_idx[i0], x_idx[i0 + 1])"), "variable divisor unguarded:\n%s", src);
  cr_expect(strstr(src, "kiln_rem_i64(x_idx[i0], INT64_C(0))"), "zero divisor unguarded:\n%s", src);
  cr_expect(strstr(src, "static int64_t kiln_div_i64(int64_t a, int64_t b) { return b == 0 ? 0 :"),
            "division helper missing:\n%s", src);
  kiln_c_output_free(&out);
}
