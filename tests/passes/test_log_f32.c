/* Log and Softplus in f32 are plain arithmetic (passes/lower_elementwise.c,
 * kiln_lower_log and log1p_unit), not libm's logf.  Their accuracy against
 * float64, through the whole pipeline and the LLVM JIT and the loop-IR
 * interpreter:
 *  - Log over a sweep of the whole positive range, normal and subnormal
 *    (2^-149 ... 2^128, logarithmically spaced), a dense sweep of [0.5, 2]
 *    (where ln x is small and cancellation would show) and the specials:
 *    within LOG_ULP_BOUND = 2 ulp of the float64 log (an ulp of the result;
 *    the reduction is exact, the series' truncation is below 2.1e-9 relative,
 *    and the f32 evaluation rounds a few times in the correction term);
 *    ln 0 = ln -0 = -inf, ln x<0 = NaN, ln inf = inf, ln NaN = NaN, ln 1 = 0.
 *  - Softplus over [-110, 90] and tiny magnitudes: within SOFTPLUS_ULP_BOUND
 *    = 4 ulp of the float64 log1p(exp(x)) where the result is normal (exp's
 *    2 ulp carried through ln(1 + t), whose derivative t/(1+t) < 1 shrinks
 *    them, plus ln's own 2 and the final add), and within 2^-149 plus that
 *    bound where it is subnormal; NaN stays NaN, softplus(inf) = inf. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "one_op_run.h"

enum { LOG_ULP_BOUND = 2, SOFTPLUS_ULP_BOUND = 4, NLOGSWEEP = 400001, NUNIT = 400001, NSPECIAL = 8 };
enum { NLOG = NLOGSWEEP + NUNIT + NSPECIAL, NSP_DENSE = 800001, NSP_TINY = 2000, NSP = NSP_DENSE + 2 * NSP_TINY + 4 };

static kiln_graph *one_op_graph(kiln_op op, int64_t n) {
  kiln_graph *g = gc_graph();
  int64_t dims[1] = {n};
  kiln_value *x = gc_input(g, "X", KILN_DT_F32, 1, dims);
  kiln_node *nd = gc_node(g, op, 1, (kiln_value *[]){x}, 1);
  kiln_graph_add_output(g, nd->out[0]);
  return g;
}

static void fill_log(float *x) {
  int64_t k = 0;
  for (int64_t i = 0; i < NLOGSWEEP; i++) x[k++] = (float)exp2(-149.0 + 277.0 * (double)i / (NLOGSWEEP - 1));
  for (int64_t i = 0; i < NUNIT; i++) x[k++] = (float)(0.5 + 1.5 * (double)i / (NUNIT - 1));
  const float special[NSPECIAL] = {0.0f, -0.0f, -1.0f, -INFINITY, INFINITY, NAN, 1.0f, 0x1p-149f};
  for (int i = 0; i < NSPECIAL; i++) x[k++] = special[i];
}

static void fill_softplus(float *x) {
  int64_t k = 0;
  for (int64_t i = 0; i < NSP_DENSE; i++) x[k++] = (float)(-110.0 + 200.0 * (double)i / (NSP_DENSE - 1));
  for (int64_t i = 0; i < NSP_TINY; i++) {
    float v = (float)pow(10.0, -30.0 + 30.0 * (double)i / (NSP_TINY - 1));
    x[k++] = v;
    x[k++] = -v;
  }
  const float special[4] = {INFINITY, NAN, 0.0f, -0.0f};
  for (int i = 0; i < 4; i++) x[k++] = special[i];
}

/* ulp of the f32 nearest to |v| (v's own float spacing). */
static double ulp_of(double v) {
  float f = fabsf((float)v);
  return (double)(nextafterf(f, INFINITY) - f);
}

static void check_log(const float *x, const float *y, const char *what) {
  double worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < NLOG; i++) {
    if (isnan(x[i]) || x[i] < 0) {
      cr_assert(isnan(y[i]), "%s: log(%g) = %g, not NaN", what, x[i], y[i]);
      continue;
    }
    if (x[i] == 0) {
      cr_assert(isinf(y[i]) && y[i] < 0, "%s: log(%g) = %g, not -inf", what, x[i], y[i]);
      continue;
    }
    if (isinf(x[i])) {
      cr_assert(isinf(y[i]) && y[i] > 0, "%s: log(inf) = %g", what, y[i]);
      continue;
    }
    if (x[i] == 1) {
      cr_assert_eq(y[i], 0.0f, "%s: log(1) = %.9g", what, y[i]);
      continue;
    }
    double ref = log((double)x[i]);
    double e = fabs((double)y[i] - ref) / ulp_of(ref);
    if (e > worst) worst = e, at = i;
  }
  cr_log_info("%s: Log worst %.2f ulp at x = %.9g", what, worst, x[at]);
  cr_assert(worst <= LOG_ULP_BOUND, "%s: log(%.9g) = %.9g is %.2f ulp from %.9g (bound %d)", what, x[at], y[at], worst,
            log((double)x[at]), LOG_ULP_BOUND);
}

static void check_softplus(const float *x, const float *y, const char *what) {
  double worst = 0, worst_sub = 0;
  int64_t at = 0, at_sub = 0;
  for (int64_t i = 0; i < NSP; i++) {
    if (isnan(x[i])) {
      cr_assert(isnan(y[i]), "%s: softplus(NaN) = %g", what, y[i]);
      continue;
    }
    if (isinf(x[i])) {
      cr_assert(isinf(y[i]) && y[i] > 0, "%s: softplus(inf) = %g", what, y[i]);
      continue;
    }
    double ref = log1p(exp((double)x[i]));
    if (ref < 0x1p-126) { /* subnormal results: absolute, in units of the least subnormal */
      double e = fabs((double)y[i] - ref) / 0x1p-149;
      if (e > worst_sub) worst_sub = e, at_sub = i;
      continue;
    }
    double e = fabs((double)y[i] - ref) / ulp_of(ref);
    if (e > worst) worst = e, at = i;
  }
  cr_log_info("%s: Softplus worst %.2f ulp at x = %.9g; subnormal results %.2f x 2^-149 at x = %.9g", what, worst,
              x[at], worst_sub, x[at_sub]);
  cr_assert(worst <= SOFTPLUS_ULP_BOUND, "%s: softplus(%.9g) = %.9g is %.2f ulp from %.9g (bound %d)", what, x[at],
            y[at], worst, log1p(exp((double)x[at])), SOFTPLUS_ULP_BOUND);
  cr_assert(worst_sub <= 1.0 + SOFTPLUS_ULP_BOUND, "%s: softplus(%.9g) = %.9g is %.2f subnormal ulps from %.9g", what,
            x[at_sub], y[at_sub], worst_sub, log1p(exp((double)x[at_sub])));
}

Test(log_f32, within_its_bound_in_the_jit_and_the_interpreter) {
  float *x = malloc(NLOG * sizeof *x), *yj = calloc(NLOG, sizeof *yj), *yi = calloc(NLOG, sizeof *yi);
  fill_log(x);
  run_jit_and_interpreter(one_op_graph(KILN_OP_LOG, NLOG), x, yj, yi);
  check_log(x, yj, "LLVM JIT");
  check_log(x, yi, "interpreter");
  free(x);
  free(yj);
  free(yi);
}

Test(softplus_f32, within_its_bound_in_the_jit_and_the_interpreter) {
  float *x = malloc(NSP * sizeof *x), *yj = calloc(NSP, sizeof *yj), *yi = calloc(NSP, sizeof *yi);
  fill_softplus(x);
  run_jit_and_interpreter(one_op_graph(KILN_OP_SOFTPLUS, NSP), x, yj, yi);
  check_softplus(x, yj, "LLVM JIT");
  check_softplus(x, yi, "interpreter");
  free(x);
  free(yj);
  free(yi);
}
