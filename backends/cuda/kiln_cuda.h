/* The CUDA backend: the loop IR of a GPU-scheduled program (every kernel
 * one launch: passes/schedule_gpu.c) printed as CUDA C, and a host
 * emulation that runs that same text on the CPU (`kiln run --target
 * cuda-host`, the conformance tests) where no GPU is.
 *
 * The printer is the C printer (backends/c/c_emit.c) with the CUDA
 * dialect's hooks (c_emit.h): kernels become `KILN_KERNEL(kN, threads)`
 * functions (under NVRTC `extern "C" __global__ void
 * __launch_bounds__(threads) kN(void *const *bufs)`), block- and
 * thread-bound loops read blockIdx / threadIdx, SHARED buffers are
 * `__shared__`, barriers `__syncthreads()`.  Everything else --
 * expressions with ir/loop.h's exact edge cases, helpers, pointer
 * bindings, names, the host entry points -- is the C printer's.
 *
 * One .cu file compiles two ways: NVRTC (`__CUDACC__`: the kernels and
 * their __device__ helpers; the host part is left out) and the host C
 * compiler (`cc -x c`), which includes runtime/kiln_cuda_host.h and gets
 * PREFIX_run_v running every launch as loops over blocks and threads. */
#ifndef KILN_CUDA_H
#define KILN_CUDA_H

#include "../c/kiln_c.h"

typedef struct kiln_cuda_options {
  const char *prefix;  /* C identifier prefixing every public symbol */
  const char *model;   /* source file name, for comments */
} kiln_cuda_options;

/* PREFIX.h (the C API, as emit-c's), PREFIX.cu (out->source) and the
 * weights blob (out->blob: run_v's `weights`).  Fails (one line in d)
 * on a kernel with no launch: schedule-gpu gives every kernel one. */
int kiln_cuda_emit(const kiln_program *p, const kiln_cuda_options *o, kiln_c_output *out, kiln_diag *d);

/* ---- the host emulation (cuda_host_run.c) ---- */
typedef struct kiln_cuda_host kiln_cuda_host;
/* Prints p as CUDA C, compiles it for the host with `cc` (or $KILN_CC)
 * into a shared object in a private temporary folder (removed again) and
 * loads it.  NULL with one line in d when that fails. */
kiln_cuda_host *kiln_cuda_host_compile(const kiln_program *p, kiln_diag *d);
/* Runs p once: bufs as kiln_llvm_jit_run's (p->nbufs entries; inputs and
 * outputs bound; the rest ignored).  The workspace and state are the
 * instance's own (state persists across runs).  Returns 0, or -1 out of
 * memory (a launch with barriers allocates its threads' stacks). */
int kiln_cuda_host_run(kiln_cuda_host *h, void **bufs);
void kiln_cuda_host_free(kiln_cuda_host *h);

/* runtime/kiln_cuda_host.h's text (embedded at build time). */
extern const char kiln_cuda_host_h_source[];

/* ---- `--target cuda` (cuda_gpu_run.c): NVRTC + runtime/kiln_cuda_rt ---- */
typedef struct kiln_cuda_gpu kiln_cuda_gpu;
/* The GPU's architecture (10 * major + minor), or -1 with one line in d
 * naming `what` (no driver, no device). */
int kiln_cuda_gpu_arch(const char *what, kiln_diag *d);
/* Prints p as CUDA C, compiles it with NVRTC for archs[0..narchs) (cubins,
 * + PTX for the newest when ptx is 1), opens the runtime on the GPU
 * (weights copied).  NULL with one line in d naming `what`. */
kiln_cuda_gpu *kiln_cuda_gpu_compile(const kiln_program *p, const int *archs, int narchs, int ptx, const char *what,
                                     kiln_diag *d);
/* Runs p once on the GPU: bufs as kiln_cuda_host_run's.  -1 with one line. */
int kiln_cuda_gpu_run(kiln_cuda_gpu *g, void **bufs, kiln_diag *d);
/* "sm_90 cubin" or the PTX, as loaded. */
const char *kiln_cuda_gpu_image(const kiln_cuda_gpu *g);
void kiln_cuda_gpu_free(kiln_cuda_gpu *g);

#endif
