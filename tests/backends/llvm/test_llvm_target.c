/* The LLVM backend's target description (kiln_llvm_target): the vector
 * width comes from the CPU the code is generated for, as KILN_CPU and
 * --portable pick it: AVX2-only znver3 gives 32-byte vectors, AVX-512
 * skylake-avx512 64, the x86-64 baseline (and --portable) 16. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "backends/llvm/kiln_llvm.h"

static kiln_target for_cpu(const char *cpu, int portable) {
  cr_assert_eq(setenv("KILN_CPU", cpu, 1), 0);
  kiln_target t = kiln_llvm_target(portable);
  unsetenv("KILN_CPU");
  return t;
}

Test(llvm_target, znver3_has_32_byte_vectors) {
  kiln_target t = for_cpu("znver3", 0);
  cr_assert_str_eq(t.name, "znver3");
  cr_assert_eq(t.kind, KILN_TARGET_CPU);
  cr_assert_eq(t.vector_bytes, 32);
  cr_assert_eq(kiln_target_lanes(&t, KILN_DT_F32), 8);
}

Test(llvm_target, avx512_cpu_has_64_byte_vectors) {
  kiln_target t = for_cpu("skylake-avx512", 0);
  cr_assert_eq(t.vector_bytes, 64);
  cr_assert_eq(kiln_target_lanes(&t, KILN_DT_F32), 16);
}

Test(llvm_target, baseline_and_portable_have_16_byte_vectors) {
  cr_assert_eq(for_cpu("x86-64", 0).vector_bytes, 16);
  kiln_target p = for_cpu("znver3", 1);
  cr_assert_str_eq(p.name, "x86-64", "--portable overrides KILN_CPU, as kiln_llvm_emit_object does");
  cr_assert_eq(p.vector_bytes, 16);
}

/* kiln_target.intel_core (Winograd's tile rule) follows KILN_CPU's name;
 * --portable and the generic baseline keep the Zen rule (0). */
Test(llvm_target, intel_core_follows_the_named_cpu) {
  cr_assert_eq(for_cpu("znver3", 0).intel_core, 0);
  cr_assert_eq(for_cpu("znver5", 0).intel_core, 0);
  cr_assert_eq(for_cpu("x86-64-v4", 0).intel_core, 0);
  cr_assert_eq(for_cpu("skylake-avx512", 0).intel_core, 1);
  cr_assert_eq(for_cpu("sapphirerapids", 0).intel_core, 1);
  cr_assert_eq(for_cpu("sapphirerapids", 1).intel_core, 0, "--portable");
}

Test(llvm_target, host_cores_and_caches) {
  unsetenv("KILN_CPU");
  kiln_target t = kiln_llvm_target(0);
  cr_assert_geq(t.cores, 1);
  cr_assert_eq(t.cores, kiln_target_host_cores());
  cr_assert(t.vector_bytes == 16 || t.vector_bytes == 32 || t.vector_bytes == 64, "%d", t.vector_bytes);
  cr_assert_gt(t.l1d_bytes, 0);
}
