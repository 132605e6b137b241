/* f16 <-> f32 casts in the LLVM backend, hardware against bit manipulation.
 *
 * Where the target CPU has F16C the backend converts with LLVM's
 * fpext/fptrunc (one instruction per vector) and fixes up NaNs; elsewhere
 * (the x86-64 baseline, --portable) with integer bit manipulation.  Both
 * must give ir/loop.h's bits: round to nearest even, subnormals, overflow
 * to Inf, f32 NaN -> f16 0x7e00 with the sign, f16 -> f32 exact (a NaN's
 * sign and payload kept).  One hand-built kernel casts every one of the
 * 65536 f16 values to f32, and a sweep of f32 values to f16 (and back to f32,
 * the round trip kiln.RoundTo prints as one pattern): every
 * exponent x every 10-bit f16 mantissa x low bits at and around the tie
 * (0, 1, 0x800, 0xfff, 0x1000, 0x1001, 0x1fff, 0x1abc), plus the ties of
 * every shift that subnormal results round at (f32 exponents 98..114), so
 * rounding ties, subnormals, overflow and every NaN payload (quiet and
 * signalling) are covered.  The kernel runs compiled for this host
 * (native conversions when it has F16C) and for KILN_CPU=x86-64 (bit
 * manipulation); both are compared bit for bit with ir/dtype.c's
 * kiln_f16_to_f32 / kiln_f32_to_f16, written from the definition.  Which
 * path a CPU gets is checked without running code for it: x86-64-v3 (any
 * F16C CPU) is native, x86-64 and --portable are not. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm/kiln_llvm.h"
#include "ir/dtype.h"
#include "../../ir/ir_test.h"

TestSuite(f16_native, .init = graph_setup, .fini = graph_teardown);

enum { NH = 65536 };

static kiln_buf *buf(kiln_program *p, const char *name, kiln_dtype t, int64_t n, kiln_buf_kind kind) {
  kiln_value v = {.name = name, .dtype = t, .rank = 1, .dims = {n}, .id = -1};
  return kiln_program_add_buf(p, &v, kind);
}

/* f_out[i] = f32(h_in[i]) for i < NH; h_out[i] = f16(f_in[i]) and
 * r_out[i] = f32(f16(f_in[i])) (kiln.RoundTo's round trip, printed as one
 * pattern where native) for i < nf. */
static kiln_program *build(int64_t nf) {
  kiln_program *p = t_program();
  kiln_buf *h_in = buf(p, "h_in", KILN_DT_F16, NH, KILN_BUF_INPUT);
  kiln_buf *f_in = buf(p, "f_in", KILN_DT_F32, nf, KILN_BUF_INPUT);
  kiln_buf *f_out = buf(p, "f_out", KILN_DT_F32, NH, KILN_BUF_OUTPUT);
  kiln_buf *h_out = buf(p, "h_out", KILN_DT_F16, nf, KILN_BUF_OUTPUT);
  kiln_buf *r_out = buf(p, "r_out", KILN_DT_F32, nf, KILN_BUF_OUTPUT);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_casts", NULL);
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, NH, (kiln_sched){.parallel = 1}));
  kiln_lb_store(&B, f_out, i, kiln_lx_cast(&B, KILN_DT_F32, kiln_lx_load(&B, h_in, i)));
  kiln_lb_end(&B);
  i = kiln_lx_index(&B, kiln_lb_for(&B, nf, (kiln_sched){.parallel = 1}));
  kiln_lb_store(&B, h_out, i, kiln_lx_cast(&B, KILN_DT_F16, kiln_lx_load(&B, f_in, i)));
  kiln_lb_store(&B, r_out, i, kiln_lx_cast(&B, KILN_DT_F32, kiln_lx_cast(&B, KILN_DT_F16, kiln_lx_load(&B, f_in, i))));
  kiln_lb_end(&B);
  return p;
}

/* The f32 sweep described at the top; returns the count (buffer may be NULL). */
static int64_t sweep(uint32_t *out) {
  static const uint32_t low[] = {0, 1, 0x800, 0xfff, 0x1000, 0x1001, 0x1fff, 0x1abc};
  int64_t n = 0;
  for (uint32_t s = 0; s < 2; s++)
    for (uint32_t e = 0; e < 256; e++)
      for (uint32_t m = 0; m < 1024; m++)
        for (size_t l = 0; l < sizeof low / sizeof low[0]; l++, n++)
          if (out) out[n] = s << 31 | e << 23 | m << 13 | low[l];
  /* subnormal results round at bit `sh` (14..24): ties and their neighbours */
  for (uint32_t e = 98; e <= 114; e++)
    for (uint32_t sh = 14; sh <= 24; sh++)
      for (uint32_t k = 0; k < (sh < 23 ? 1u << (23 - sh) : 1u); k++)
        for (int d = -1; d <= 1; d++, n++) {
          uint32_t tie = 1u << (sh - 1), m = ((k << sh) | (uint32_t)((int)tie + d)) & 0x7fffff;
          if (out) out[n] = e << 23 | m;
        }
  return n;
}

/* Runs p compiled for KILN_CPU=cpu (NULL: this host). */
static void run(const kiln_program *p, const char *cpu, const uint16_t *h_in, const uint32_t *f_in, uint32_t *f_out,
                uint16_t *h_out, uint32_t *r_out) {
  if (cpu) cr_assert_eq(setenv("KILN_CPU", cpu, 1), 0);
  else unsetenv("KILN_CPU");
  kiln_diag d = {0};
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert_not_null(j, "%s", d.msg);
  void *bufs[6] = {(void *)h_in, (void *)f_in, f_out, h_out, r_out, NULL};
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  unsetenv("KILN_CPU");
}

Test(f16_native, every_f16_and_an_f32_sweep_bit_exact) {
  int64_t nf = sweep(NULL);
  uint16_t *h_in = malloc(NH * sizeof *h_in);
  uint32_t *f_in = malloc((size_t)nf * sizeof *f_in);
  uint32_t *f_want = malloc(NH * sizeof *f_want);
  uint16_t *h_want = malloc((size_t)nf * sizeof *h_want);
  uint32_t *r_want = malloc((size_t)nf * sizeof *r_want);
  cr_assert(h_in && f_in && f_want && h_want && r_want);
  for (uint32_t h = 0; h < NH; h++) {
    h_in[h] = (uint16_t)h;
    float f = kiln_f16_to_f32((unsigned short)h);
    memcpy(&f_want[h], &f, 4);
  }
  sweep(f_in);
  for (int64_t i = 0; i < nf; i++) {
    float f;
    memcpy(&f, &f_in[i], 4);
    h_want[i] = kiln_f32_to_f16(f);
    float r = kiln_f16_to_f32(h_want[i]);
    memcpy(&r_want[i], &r, 4);
  }
  kiln_program *p = build(nf);
  const char *cpus[2] = {NULL, "x86-64"};
  for (int c = 0; c < 2; c++) {
    uint32_t *f_out = calloc(NH, sizeof *f_out);
    uint16_t *h_out = calloc((size_t)nf, sizeof *h_out);
    uint32_t *r_out = calloc((size_t)nf, sizeof *r_out);
    cr_assert(f_out && h_out && r_out);
    run(p, cpus[c], h_in, f_in, f_out, h_out, r_out);
    const char *what = cpus[c] ? "x86-64 (bit manipulation)" : "this host";
    for (uint32_t h = 0; h < NH; h++)
      cr_assert_eq(f_out[h], f_want[h], "%s: f16 0x%04x -> f32 0x%08x, want 0x%08x", what, h, f_out[h], f_want[h]);
    for (int64_t i = 0; i < nf; i++)
      cr_assert_eq(h_out[i], h_want[i], "%s: f32 0x%08x -> f16 0x%04x, want 0x%04x", what, f_in[i], h_out[i],
                   h_want[i]);
    for (int64_t i = 0; i < nf; i++)
      cr_assert_eq(r_out[i], r_want[i], "%s: f32 0x%08x -> f16 -> f32 0x%08x, want 0x%08x", what, f_in[i], r_out[i],
                   r_want[i]);
    free(r_out);
    free(f_out);
    free(h_out);
  }
  cr_log_info("this host converts f16 %s; %lld f32 values swept", kiln_llvm_native_f16(0) ? "natively" : "by bit ops",
              (long long)nf);
  free(h_in);
  free(f_in);
  free(f_want);
  free(h_want);
  free(r_want);
}

static int native_for(const char *cpu, int portable) {
  cr_assert_eq(setenv("KILN_CPU", cpu, 1), 0);
  int r = kiln_llvm_native_f16(portable);
  unsetenv("KILN_CPU");
  return r;
}

Test(f16_native, f16c_cpus_convert_natively_baseline_does_not) {
  cr_assert_eq(native_for("x86-64-v3", 0), 1, "x86-64-v3 has F16C: hardware conversions");
  cr_assert_eq(native_for("znver3", 0), 1, "Zen 3 has F16C");
  cr_assert_eq(native_for("x86-64", 0), 0, "the baseline has no F16C: bit manipulation");
  cr_assert_eq(native_for("znver3", 1), 0, "--portable is the baseline");
}
