/* Tanh in f32 is a rational function (passes/lower_elementwise.c,
 * kiln_scalar_tanh), not libm's tanhf.  Its accuracy against the float64
 * tanh, through the whole pipeline and the LLVM JIT and the loop-IR
 * interpreter: at most 6 ulp of the exact value over a dense sweep of
 * [-12, 12] and tiny magnitudes down to 1e-30 (the fit was measured at
 * 5.69 ulp; 6 is that measurement rounded up, not a loosened bound), |y| <= 1,
 * tanh(+-inf) = +-1, NaN stays NaN, -0 stays -0. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "one_op_run.h"

enum { NDENSE = 1200001, NTINY = 2000, NSPECIAL = 6, NX = NDENSE + 2 * NTINY + NSPECIAL };

static kiln_graph *tanh_graph(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  int64_t dims[1] = {NX};
  kiln_value *x = gc_input(g, "X", t, 1, dims);
  kiln_node *n = gc_node(g, KILN_OP_TANH, 1, (kiln_value *[]){x}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

static void fill(float *x) {
  int64_t k = 0;
  for (int64_t i = 0; i < NDENSE; i++) x[k++] = (float)(-12.0 + 24.0 * (double)i / (NDENSE - 1));
  for (int64_t i = 0; i < NTINY; i++) {
    float v = (float)pow(10.0, -30.0 + 30.0 * (double)i / (NTINY - 1));
    x[k++] = v;
    x[k++] = -v;
  }
  const float special[NSPECIAL] = {INFINITY, -INFINITY, NAN, -0.0f, 0.0f, 9.0f};
  for (int i = 0; i < NSPECIAL; i++) x[k++] = special[i];
}

/* ulp of the f32 nearest to |v| (v's own float spacing). */
static double ulp_of(double v) {
  float f = fabsf((float)v);
  return (double)(nextafterf(f, INFINITY) - f);
}

static void check(const float *x, const float *y, const char *what) {
  double worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < NX; i++) {
    if (isnan(x[i])) {
      cr_assert(isnan(y[i]), "%s: tanh(NaN) = %g", what, y[i]);
      continue;
    }
    cr_assert(fabsf(y[i]) <= 1.0f, "%s: tanh(%.9g) = %.9g outside [-1, 1]", what, x[i], y[i]);
    if (isinf(x[i])) {
      cr_assert_eq(y[i], x[i] > 0 ? 1.0f : -1.0f, "%s: tanh(%g) = %.9g", what, x[i], y[i]);
      continue;
    }
    if (x[i] == 0) {
      cr_assert(y[i] == 0 && signbit(y[i]) == signbit(x[i]), "%s: tanh(%g) = %g keeps the sign of zero", what, x[i], y[i]);
      continue;
    }
    double ref = tanh((double)x[i]), e = fabs((double)y[i] - ref) / ulp_of(ref);
    if (e > worst) worst = e, at = i;
  }
  cr_log_info("%s: worst %.2f ulp at x = %.9g", what, worst, x[at]);
  cr_assert(worst <= 6, "%s: tanh(%.9g) = %.9g is %.2f ulp from %.9g (bound 6)", what, x[at], y[at], worst,
            tanh((double)x[at]));
}

Test(tanh_f32, within_6_ulp_in_the_jit_and_the_interpreter) {
  float *x = malloc(NX * sizeof *x), *yj = calloc(NX, sizeof *yj), *yi = calloc(NX, sizeof *yi);
  fill(x);
  run_jit_and_interpreter(tanh_graph(KILN_DT_F32, NULL), x, yj, yi);
  check(x, yj, "LLVM JIT");
  check(x, yi, "interpreter");
  free(x);
  free(yj);
  free(yi);
}
