/* ONNX conformance through the CUDA backend's host emulation: every case
 * lowered for a GPU target (schedule-gpu: every kernel one launch),
 * printed as CUDA C (backends/cuda/), compiled for the host with `cc -x c
 * -std=c99 -Wall -Wextra -Wpedantic -Werror` through runtime/
 * kiln_cuda_host.h (blocks and threads as loops), loaded and run on every
 * test data set; tolerances in execute.c, the same as every backend's.
 * usage as the other runners, plus KILN_CC to pick the compiler. */
#include <stdint.h>
#include <stdlib.h>

#include "../../backends/cuda/kiln_cuda.h"
#include "execute.h"

static void *ch_compile(const kiln_program *p, const suite_case *c, kiln_diag *d) {
  (void)c;
  return kiln_cuda_host_compile(p, d);
}

static void ch_run(void *h, const kiln_program *p, void **bufs) {
  (void)p;
  kiln_cuda_host_run(h, bufs);
}

static void ch_release(void *h) { kiln_cuda_host_free(h); }

static kiln_target gpu;
static const suite_backend cuda_host = {"cuda-host", ch_compile, ch_run, ch_release, &gpu};

static void run_case(const suite_case *c, suite_run *r) { suite_execute(c, r, &cuda_host); }

int main(int argc, char **argv) {
  gpu = kiln_target_gpu_default();
  return suite_main(argc, argv, "CUDA backend, host emulation (cc) + run", run_case);
}
