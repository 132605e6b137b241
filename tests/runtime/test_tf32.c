/* TF32 in the host emulation (runtime/kiln_cuda_host.h) and the loop
 * interpreter (ir/dtype.c, used by ir/loop_eval.c): the rounding is PTX
 * cvt.rna.tf32.f32 bit for bit, and the warp MMA uses the PTX ISA's
 * m16n8k8 .tf32 fragment layout.
 *
 * Rounding: expected bit patterns worked out by hand from the definition
 * (round to nearest, ties away from zero, to 10 mantissa bits; the low 13
 * bits zero) and the SASS cvt.rna.tf32.f32 compiles to on sm_80/sm_86
 * (IADD 0x1000 unless |x| >= inf or NaN, then LOP3 & 0xffffe000): ties,
 * a tie where to-even would go the other way, overflow to inf, inf, NaN
 * (sign and top payload kept; a payload only in the low 13 bits is lost),
 * subnormals (rounded like normals, up into the smallest normal), -0.
 *
 * MMA: one warp multiplies a 16x8 A by an 8x8 B (values chosen so every
 * product is exact and every partial sum an integer: no rounding at all,
 * the result must be exact) with fragments placed by the formulas of PTX
 * ISA 9.7.14.5.7 written out here; a lane or element swapped anywhere
 * moves a term and changes the value. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ir/dtype.h"
#include "runtime/kiln_cuda_host.h"

static float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

Test(tf32, rounding_edge_cases_bit_exact) {
  static const uint32_t cases[][2] = {
      {0x3f800000u, 0x3f800000u}, /* 1.0: exact */
      {0x3f800fffu, 0x3f800000u}, /* just below half a TF32 ulp: down */
      {0x3f801000u, 0x3f802000u}, /* exactly half, kept mantissa even: away (to-even would go down) */
      {0x3f803000u, 0x3f804000u}, /* exactly half, kept mantissa odd: away */
      {0x3f801001u, 0x3f802000u}, /* just above half: up */
      {0xbf801000u, 0xbf802000u}, /* negative tie: away from zero (magnitude up) */
      {0xbf800fffu, 0xbf800000u},
      {0x3fffffffu, 0x40000000u}, /* carry into the exponent */
      {0x7f7fffffu, 0x7f800000u}, /* FLT_MAX: past the largest TF32, to +inf */
      {0x7f7ff000u, 0x7f800000u}, /* tie above the largest TF32 (0x7f7fe000): +inf */
      {0x7f7fefffu, 0x7f7fe000u}, /* largest TF32 */
      {0xff7fffffu, 0xff800000u}, /* -FLT_MAX: -inf */
      {0x7f800000u, 0x7f800000u}, /* +inf */
      {0xff800000u, 0xff800000u}, /* -inf */
      {0x7fc00000u, 0x7fc00000u}, /* quiet NaN */
      {0x7fc01fffu, 0x7fc00000u}, /* NaN: low payload bits cleared, never rounded up */
      {0xffc12345u, 0xffc12000u}, /* negative NaN keeps its sign and top payload */
      {0x7f800001u, 0x7f800000u}, /* NaN whose payload is only in the low 13 bits: inf, as the hardware */
      {0x00000000u, 0x00000000u}, /* +0 */
      {0x80000000u, 0x80000000u}, /* -0 stays -0 */
      {0x00000001u, 0x00000000u}, /* smallest subnormal: down to +0 */
      {0x80000fffu, 0x80000000u}, /* negative subnormal below half: -0 */
      {0x00001000u, 0x00002000u}, /* subnormal tie: away */
      {0x80001000u, 0x80002000u},
      {0x007ff000u, 0x00800000u}, /* largest subnormals round up into the smallest normal */
      {0x00800fffu, 0x00800000u},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t host = u_of(kiln_tf32(f_of(cases[i][0]))), ir = u_of(kiln_f32_to_tf32(f_of(cases[i][0])));
    cr_expect_eq(host, cases[i][1], "kiln_cuda_host.h: tf32(0x%08x) = 0x%08x, expected 0x%08x", cases[i][0], host,
                 cases[i][1]);
    cr_expect_eq(ir, cases[i][1], "ir: tf32(0x%08x) = 0x%08x, expected 0x%08x", cases[i][0], ir, cases[i][1]);
  }
}

/* Every finite positive f32 with a 13-bit tail sampled: the result is the
 * TF32 value nearest x, ties away, and both implementations agree. */
Test(tf32, nearest_tf32_everywhere) {
  for (uint32_t hi = 0; hi < 0x7f800000u; hi = hi < 0x7f7fe000u - 0x2000u * 97u ? hi + 0x2000u * 97u : hi + 0x2000u)
    for (uint32_t lo = 0; lo < 0x2000u; lo += 0x3ffu) {
      uint32_t u = hi + lo, down = u & 0xffffe000u, up = down + 0x2000u; /* up may be inf's bits: 2^128 */
      double x = f_of(u), dd = x - f_of(down), du = (up >= 0x7f800000u ? ldexp(1.0, 128) : f_of(up)) - x;
      uint32_t want = dd < du ? down : up; /* a tie (dd == du) goes away from zero: up */
      cr_assert_eq(u_of(kiln_tf32(f_of(u))), want, "0x%08x", u);
      cr_assert_eq(u_of(kiln_f32_to_tf32(f_of(u))), want, "0x%08x", u);
    }
}

/* ---- the warp MMA of the host emulation ---- */
static float Am[16][8], Bm[8][8], Dm[16][8];

/* One warp (32 threads): load fragments by the PTX ISA formulas, one MMA
 * onto C = 1, store D by the accumulator formula. */
KILN_KERNEL(mma_warp, 32) {
  (void)bufs;
  unsigned lane = threadIdx.x, g = lane >> 2, t = lane % 4;
  float a[4], b[2], c[4] = {1, 1, 1, 1};
  a[0] = Am[g][t], a[1] = Am[g + 8][t], a[2] = Am[g][t + 4], a[3] = Am[g + 8][t + 4];
  b[0] = Bm[t][g], b[1] = Bm[t + 4][g];
  KILN_MMA_TF32(c, a, b, 1, 1);
  Dm[g][2 * t] = c[0], Dm[g][2 * t + 1] = c[1], Dm[g + 8][2 * t] = c[2], Dm[g + 8][2 * t + 1] = c[3];
}

static int run_mma(void) {
  KILN_LAUNCH_SYNC(mma_warp, 1, 1, 1, 32, 1, 1, NULL);
  return 0;
}

Test(tf32, warp_mma_fragment_layout) {
  for (int i = 0; i < 16; i++)
    for (int k = 0; k < 8; k++) Am[i][k] = (float)((i * 8 + k) % 13 - 6);       /* small integers: exact */
  for (int k = 0; k < 8; k++)
    for (int j = 0; j < 8; j++) Bm[k][j] = (float)((k * 8 + j * 3) % 11 - 5) * 0.25f;
  cr_assert_eq(run_mma(), 0);
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 8; j++) {
      double want = 1;
      for (int k = 0; k < 8; k++) want += (double)Am[i][k] * Bm[k][j];
      cr_expect_eq(Dm[i][j], (float)want, "D[%d][%d] = %g, expected %g", i, j, Dm[i][j], want);
    }
}

/* Operands are used as TF32: a value with low bits set contributes its
 * top 19 bits only (the schedule rounds first; the core truncates). */
Test(tf32, warp_mma_reads_tf32_operands) {
  memset(Am, 0, sizeof Am);
  memset(Bm, 0, sizeof Bm);
  Am[3][5] = f_of(0x3f800fffu); /* 1 + (2^-11 - 2^-23): read as 1 */
  Bm[5][6] = 1;
  cr_assert_eq(run_mma(), 0);
  cr_expect_eq(Dm[3][6], 2.0f, "%.9g", Dm[3][6]);
}
