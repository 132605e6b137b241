/* Winograd's tile per vendor (passes/lower_conv_winograd.c, pick_m and
 * pick_m_intel): the same 3x3 layers lowered for an AVX-512 target with
 * and without kiln_target.intel_core, and the schedule each kernel names.
 * The expected picks are the measured ones in bench/README.md ("An Intel
 * host"); the Zen rule is the one tests/passes/test_conv_winograd.py checks
 * through the C target. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../frontend/dsl/kiln_dsl.h"
#include "../../passes/pipeline.h"

/* The schedule of the 3x3 layer b (C -> M channels on an HxH map) of a
 * small network, lowered for an AVX-512 target with intel_core = intel. */
static void schedule_of(int intel, int C, int M, int H, char *out, size_t n) {
  char src[512];
  snprintf(src, sizeof src,
           /* the 4x map before the pool sets the plan's peak: room for
            * Winograd's scratch beside the 3x3 layer (plan_scratch) */
           "network w {\n  input x: [1, %d, %d, %d]\n  a: conv(%d, 1x1, bias=true) -> relu\n"
           "  maxpool(4x4, stride=4)\n"
           "  b: conv(%d, 3x3, pad=1, bias=true) -> relu\n  c: conv(%d, 1x1, bias=true) -> relu\n}\n",
           C, 4 * H, 4 * H, C, M, M);
  kiln_diag d = {0};
  kiln_graph *g = kiln_dsl_load_buffer(src, strlen(src), "w.kiln", NULL, NULL, &d);
  cr_assert(g, "%s", d.msg);
  kiln_target t = kiln_target_cpu("test", 64, 1);
  t.l2_bytes = 2 << 20;
  t.intel_core = intel;
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .target = &t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  out[0] = 0;
  for (int k = 0; k < pl.program->nkernels; k++) {
    const kiln_kernel *kk = pl.program->kernels[k];
    if (kk->node && !strcmp(kk->node->name, "b") && kk->schedule) snprintf(out, n, "%s", kk->schedule);
  }
  kiln_graph_free(g);
}

static void expect(int intel, int C, int M, int H, const char *want) {
  char s[256];
  schedule_of(intel, C, M, H, s, sizeof s);
  cr_assert(strstr(s, want), "intel_core=%d, %d -> %d channels at %dx%d: schedule '%s', expected '%s'", intel, C, M,
            H, H, s, want);
}

Test(winograd_vendor, intel_takes_f2_on_small_and_narrow_maps) {
  expect(1, 256, 256, 14, "F(2x2");  /* ResNet-50's layer3: F(4x4) 1.65 ms, F(2x2) 0.92 */
  expect(1, 128, 128, 28, "F(2x2");  /* layer2: 1.11 against 0.85 */
  expect(1, 128, 32, 56, "F(2x2");   /* DenseNet-121's block 1: 1.27 against 0.90 */
  expect(1, 256, 256, 56, "F(4x4");  /* VGG-16: 7.5 against 12.3 */
  expect(1, 256, 512, 28, "F(4x4");  /* VGG-16: 4.3 against 5.5 */
}

Test(winograd_vendor, intel_keeps_small_maps_with_large_u_direct) {
  char s[256];
  schedule_of(1, 512, 512, 7, s, sizeof s); /* U 16.8 MB past 2 x 2 MiB */
  cr_assert(!strstr(s, "Winograd"), "512 channels at 7x7 on Intel: '%s'", s);
}

Test(winograd_vendor, zen_rule_unchanged) {
  expect(0, 256, 256, 14, "F(4x4");
  expect(0, 128, 128, 28, "F(4x4");
  expect(0, 512, 512, 7, "F(2x2");
}
