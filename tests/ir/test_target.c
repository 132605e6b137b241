/* Target descriptions (ir/target.c): lanes per dtype for 64-byte
 * (AVX-512), 32-byte (AVX2) and 16-byte (SSE2, portable) vectors; emit-c's
 * C target keeps 16 f32 lanes (what the C output was built with); the GPU
 * default is sm_80-like. */
#include <criterion/criterion.h>
#include <string.h>

#include "ir/target.h"

Test(target, lanes_per_dtype_for_each_vector_width) {
  kiln_target avx512 = kiln_target_cpu("skylake-avx512", 64, 2);
  kiln_target avx2 = kiln_target_cpu("znver3", 32, 2);
  kiln_target sse = kiln_target_cpu("x86-64", 16, 1);
  cr_assert_eq(kiln_target_lanes(&avx512, KILN_DT_F32), 16);
  cr_assert_eq(kiln_target_lanes(&avx512, KILN_DT_F64), 8);
  cr_assert_eq(kiln_target_lanes(&avx512, KILN_DT_I8), 64);
  cr_assert_eq(kiln_target_lanes(&avx512, KILN_DT_F16), 32);
  cr_assert_eq(kiln_target_lanes(&avx2, KILN_DT_F32), 8);
  cr_assert_eq(kiln_target_lanes(&avx2, KILN_DT_F64), 4);
  cr_assert_eq(kiln_target_lanes(&avx2, KILN_DT_I64), 4);
  cr_assert_eq(kiln_target_lanes(&sse, KILN_DT_F32), 4);
  cr_assert_eq(kiln_target_lanes(&sse, KILN_DT_F64), 2);
  cr_assert_eq(kiln_target_lanes(&sse, KILN_DT_U8), 16);
  cr_assert_eq(kiln_target_lanes(NULL, KILN_DT_F32), 1);
}

Test(target, cpu_fields_are_sane) {
  kiln_target t = kiln_target_cpu("a-very-long-cpu-name-that-does-not-fit-in-the-name-field-at-all", 8, 0);
  cr_assert_eq(t.kind, KILN_TARGET_CPU);
  cr_assert_eq(t.vector_bytes, 16, "narrower than SSE2 rounds up to 16 bytes");
  cr_assert_eq(t.cores, 1);
  cr_assert_eq(strlen(t.name), sizeof t.name - 1, "name truncated, terminated");
  cr_assert_gt(t.l1d_bytes, 0);
  cr_assert_geq(t.l2_bytes, t.l1d_bytes);
  cr_assert_eq(t.thread_min_work, 250000); /* ir/target.c: the hand-off threshold */
  cr_assert_eq(t.sms, 0);
}

Test(target, c_target_is_fixed_and_keeps_16_f32_lanes) {
  kiln_target a = kiln_target_c(), b = kiln_target_default();
  cr_assert_str_eq(a.name, "c99");
  cr_assert_eq(kiln_target_lanes(&a, KILN_DT_F32), 16);
  cr_assert_str_eq(a.name, b.name, "the default is the C target");
  cr_assert_eq(a.vector_bytes, b.vector_bytes);
  cr_assert_eq(a.cores, b.cores);
  cr_assert_eq(a.l1d_bytes, 48 * 1024, "emit-c output must not depend on the host");
  cr_assert_eq(a.cores, 8);
}

Test(target, gpu_default_is_sm80_like) {
  kiln_target t = kiln_target_gpu_default();
  cr_assert_eq(t.kind, KILN_TARGET_GPU);
  cr_assert_str_eq(t.name, "sm_80");
  cr_assert_eq(t.sms, 108);
  cr_assert_eq(t.warp, 32);
  cr_assert_eq(t.smem_per_block, 48 * 1024);
  cr_assert_eq(t.max_threads_per_block, 1024);
}
