/* Sqrt in f32 for the emitted C (kiln_target.sqrt_libm) is plain
 * arithmetic (passes/lower_elementwise.c, kiln_lower_sqrt), not libm's
 * sqrtf, whose errno path keeps GCC from vectorising.  Its claim is
 * exactness: every f32 gets sqrtf's correctly rounded value (an
 * exhaustive run over all 2^32 inputs found none different when it was
 * written).  Checked here bit for bit against sqrtf, through the whole
 * pipeline lowered for a target with sqrt_libm set, run by the LLVM JIT
 * and the loop-IR interpreter (the emitted C itself runs it in
 * tests/passes/test_lrn.py --backend c and the C conformance suite):
 *  - 2^21 inputs whose top 21 bits take every value (every sign and
 *    exponent, and 2^12 mantissa prefixes each), the low 11 bits hashed;
 *  - squares k^2 of k = 1 ... 4096 and their neighbours one ulp either
 *    side, scaled by 2^-140, 2^-20 and 2^100 (exact roots, and the inputs
 *    whose roots lie nearest a rounding boundary), subnormals included;
 *  - the specials: +-0 (their own sign), +-inf, NaN, -1, the least
 *    subnormal and the largest float. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "one_op_run.h"

enum { NSPREAD = 1 << 21, NSQ = 4096 * 3 * 3, NSPECIAL = 9, N = NSPREAD + NSQ + NSPECIAL };

static kiln_graph *sqrt_graph(int64_t n) {
  kiln_graph *g = gc_graph();
  int64_t dims[1] = {n};
  kiln_value *x = gc_input(g, "X", KILN_DT_F32, 1, dims);
  kiln_node *nd = gc_node(g, KILN_OP_SQRT, 1, (kiln_value *[]){x}, 1);
  kiln_graph_add_output(g, nd->out[0]);
  return g;
}

static float of_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void fill(float *x) {
  int64_t k = 0;
  for (uint32_t i = 0; i < NSPREAD; i++) {
    uint32_t h = i * 2654435761u;
    x[k++] = of_bits(i << 11 | (h >> 21));
  }
  const double scale[3] = {0x1p-140, 0x1p-20, 0x1p100};
  for (int s = 0; s < 3; s++)
    for (int j = 1; j <= 4096; j++) {
      float sq = (float)((double)j * j * scale[s]);
      x[k++] = sq;
      x[k++] = nextafterf(sq, 0);
      x[k++] = nextafterf(sq, INFINITY);
    }
  const float special[NSPECIAL] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -1.0f, 0x1p-149f, 0x1.fffffep127f, 1.0f};
  for (int i = 0; i < NSPECIAL; i++) x[k++] = special[i];
}

static void check(const float *x, const float *y, const char *what) {
  for (int64_t i = 0; i < N; i++) {
    float want = sqrtf(x[i]);
    if (isnan(want)) {
      cr_assert(isnan(y[i]), "%s: sqrt(%a) = %a, not NaN", what, x[i], y[i]);
      continue;
    }
    cr_assert_eq(bits_of(y[i]), bits_of(want), "%s: sqrt(%a) = %a, sqrtf gives %a", what, x[i], y[i], want);
  }
}

Test(sqrt_f32, equals_sqrtf_in_the_jit_and_the_interpreter) {
  float *x = malloc(N * sizeof *x), *yj = calloc(N, sizeof *yj), *yi = calloc(N, sizeof *yi);
  fill(x);
  kiln_target t = kiln_llvm_target(0);
  t.sqrt_libm = 1; /* the emitted C's form, here compiled by the JIT */
  run_jit_and_interpreter_for(sqrt_graph(N), &t, x, yj, yi);
  check(x, yj, "LLVM JIT");
  check(x, yi, "interpreter");
  free(x);
  free(yj);
  free(yi);
}

/* The form really is the arithmetic one: no SQRT left in the loop IR. */
Test(sqrt_f32, no_libm_call_left_for_the_c_target) {
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_target t = kiln_target_c();
  kiln_pipeline_opts po = {.graph = sqrt_graph(64), .target = &t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_program_print(pl.program, f);
  fclose(f);
  cr_assert(!strstr(text, "sqrt"), "the C target's loop IR still takes a sqrt:\n%s", text);
  cr_assert(strstr(text, "bitcast"), "no bit cast in the C target's loop IR:\n%s", text);
  free(text);
  kiln_graph_free(po.graph);
}
