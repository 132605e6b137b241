/* A training step on the GPU target through NVRTC (issue #12: every
 * network's kernels compile).  `kiln compile/train --target cuda` compile
 * inference only, so backends.cuda.nvrtc_networks cannot reach a training
 * graph; this builds one through the library: ResNet-8 (models/; Conv,
 * BatchNorm in training mode, residual Add, GlobalAveragePool, Gemm) as one
 * Adam step (the optimizer with the most update kernels) with cross-entropy, scheduled for the GPU
 * (schedule-gpu), printed by the CUDA backend and compiled by NVRTC
 * (kiln_cuda_nvrtc_compile) to cubins for sm_80 and sm_90 -- NVRTC runs
 * ptxas for those -- and PTX for compute_90.  Every kernel of the .cu must
 * be an entry of the PTX and a symbol of both cubins.  Skipped without
 * NVRTC.  Values of training kernels are checked on the CPU backends
 * (tests/passes/test_train*.c); the CUDA code's values through cuda-host
 * are not checked here. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../../backends/cuda/kiln_cuda.h"
#include "../../../backends/cuda/kiln_cuda_gpu.h"
#include "../../../passes/pipeline.h"
#include "../../../passes/train.h"

/* NVRTC keeps process-wide caches it never frees (as conformance_nvrtc). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnvrtc\nleak:libnvrtc-builtins\n"; }

static int holds(const void *data, size_t size, const char *name) {
  size_t n = strlen(name) + 1; /* the name with its NUL, as ELF string tables and PTX (+ "(") hold it */
  for (const char *p = data, *end = (const char *)data + size; p + n <= end; p++) {
    p = memchr(p, name[0], (size_t)(end - p));
    if (!p || p + n > end) return 0;
    if (!memcmp(p, name, n - 1) && (p[n - 1] == 0 || p[n - 1] == '(')) return 1;
  }
  return 0;
}

Test(nvrtc_train, resnet8_adam_step) {
  kiln_diag d = {0};
  if (kiln_cuda_nvrtc_check("test", &d)) cr_skip_test("%s", d.msg);
  kiln_train_opts t = kiln_train_defaults();
  t.optimizer = KILN_OPTIM_ADAM;
  kiln_target gpu = kiln_target_gpu_default();
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.path = KILN_SOURCE_DIR "/models/resnet8_cifar.onnx", .target = &gpu, .train = &t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_c_output out;
  kiln_cuda_options co = {.prefix = "net", .model = "resnet8_cifar.onnx"};
  cr_assert_eq(kiln_cuda_emit(pl.program, &co, &out, &d), 0, "%s", d.msg);
  int archs[] = {80, 90};
  kiln_cuda_images im;
  cr_assert_eq(kiln_cuda_nvrtc_compile(out.source, archs, 2, 1, &im, "resnet8_cifar.onnx", &d), 0, "%s", d.msg);
  cr_assert_eq(im.n, 3);
  int kernels = 0;
  for (const char *k = strstr(out.source, "\nKILN_KERNEL("); k; k = strstr(k + 1, "\nKILN_KERNEL(")) {
    char name[256];
    size_t len = strcspn(k + 13, ",");
    cr_assert_lt(len, sizeof name);
    memcpy(name, k + 13, len);
    name[len] = 0;
    for (int i = 0; i < im.n; i++)
      cr_expect(holds(im.im[i].data, im.im[i].size, name), "kernel %s missing from the %s for %d", name,
                im.im[i].ptx ? "PTX" : "cubin", im.im[i].arch);
    kernels++;
  }
  cr_assert_eq(kernels, pl.program->nkernels, "%d KILN_KERNEL lines, %d kernels", kernels, pl.program->nkernels);
  cr_assert_gt(kernels, 50, "a training step: forward, backward and update kernels (%d)", kernels);
  kiln_cuda_images_free(&im);
  kiln_c_output_free(&out);
  kiln_graph_free(pl.graph);
}

