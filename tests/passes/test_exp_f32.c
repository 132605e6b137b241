/* Exp in f32 is plain arithmetic (passes/lower_elementwise.c,
 * kiln_lower_exp), not libm's expf.  Its accuracy against the float64 exp,
 * through the whole pipeline and the LLVM JIT and the loop-IR
 * interpreter, over a dense sweep of [-110, 90] and tiny magnitudes:
 * normal results within ULP_BOUND = 2 ulp (measured: 1.14; libm's expf
 * is within 1); subnormal results (x in [-103.3, -87.3]) within one
 * subnormal ulp (2^-149) plus the normal bound; exp(x > 88.7228) = +inf,
 * exp(x < -103.28) = 0, exp(+-inf) = inf / 0, NaN stays NaN, exp(0) = 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "one_op_run.h"

enum { ULP_BOUND = 2, NDENSE = 1200001, NTINY = 2000, NSPECIAL = 6, NX = NDENSE + 2 * NTINY + NSPECIAL };

static kiln_graph *tanh_graph(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  int64_t dims[1] = {NX};
  kiln_value *x = gc_input(g, "X", t, 1, dims);
  kiln_node *n = gc_node(g, KILN_OP_EXP, 1, (kiln_value *[]){x}, 1);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

static void fill(float *x) {
  int64_t k = 0;
  for (int64_t i = 0; i < NDENSE; i++) x[k++] = (float)(-110.0 + 200.0 * (double)i / (NDENSE - 1));
  for (int64_t i = 0; i < NTINY; i++) {
    float v = (float)pow(10.0, -30.0 + 30.0 * (double)i / (NTINY - 1));
    x[k++] = v;
    x[k++] = -v;
  }
  const float special[NSPECIAL] = {INFINITY, -INFINITY, NAN, -0.0f, 0.0f, 88.72283f};
  for (int i = 0; i < NSPECIAL; i++) x[k++] = special[i];
}

/* ulp of the f32 nearest to |v| (v's own float spacing). */
static double ulp_of(double v) {
  float f = fabsf((float)v);
  return (double)(nextafterf(f, INFINITY) - f);
}

static void check(const float *x, const float *y, const char *what) {
  double worst = 0, worst_sub = 0;
  int64_t at = 0, at_sub = 0;
  for (int64_t i = 0; i < NX; i++) {
    if (isnan(x[i])) {
      cr_assert(isnan(y[i]), "%s: exp(NaN) = %g", what, y[i]);
      continue;
    }
    double ref = exp((double)x[i]);
    if (x[i] > 88.72283935546875) {
      cr_assert(isinf(y[i]) && y[i] > 0, "%s: exp(%.9g) = %.9g, not +inf", what, x[i], y[i]);
      continue;
    }
    if (x[i] < -103.27892990343185) {
      cr_assert_eq(y[i], 0.0f, "%s: exp(%.9g) = %.9g, not 0", what, x[i], y[i]);
      continue;
    }
    if (x[i] == 0) {
      cr_assert_eq(y[i], 1.0f, "%s: exp(0) = %.9g", what, y[i]);
      continue;
    }
    if (ref < 0x1p-126) { /* subnormal results: absolute, in units of the least subnormal */
      double e = fabs((double)y[i] - ref) / 0x1p-149;
      if (e > worst_sub) worst_sub = e, at_sub = i;
      continue;
    }
    double e = fabs((double)y[i] - ref) / ulp_of(ref);
    if (e > worst) worst = e, at = i;
  }
  cr_log_info("%s: worst %.2f ulp at x = %.9g; subnormal results: worst %.2f x 2^-149 at x = %.9g", what, worst, x[at],
              worst_sub, x[at_sub]);
  cr_assert(worst <= ULP_BOUND, "%s: exp(%.9g) = %.9g is %.2f ulp from %.9g (bound %d)", what, x[at], y[at], worst,
            exp((double)x[at]), ULP_BOUND);
  cr_assert(worst_sub <= 1.0, "%s: exp(%.9g) = %.9g is %.2f subnormal ulps from %.9g", what, x[at_sub], y[at_sub],
            worst_sub, exp((double)x[at_sub]));
}

Test(exp_f32, within_its_bound_in_the_jit_and_the_interpreter) {
  float *x = malloc(NX * sizeof *x), *yj = calloc(NX, sizeof *yj), *yi = calloc(NX, sizeof *yi);
  fill(x);
  run_jit_and_interpreter(tanh_graph(KILN_DT_F32, NULL), x, yj, yi);
  check(x, yj, "LLVM JIT");
  check(x, yi, "interpreter");
  free(x);
  free(yj);
  free(yi);
}
