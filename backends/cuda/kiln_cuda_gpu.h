/* `--target cuda`: a GPU-scheduled program as what the runtime
 * (runtime/kiln_cuda_rt.h) runs.  Two steps:
 *
 *  - cuda_nvrtc.c: NVRTC compiles kiln_cuda_emit's CUDA C to a cubin per
 *    requested architecture, plus PTX for the newest one (a newer GPU's
 *    driver JIT-compiles it).  NVRTC is opened with dlopen at compile
 *    time (no link-time dependency: without the CUDA toolkit kiln builds
 *    and `--target cuda` fails with one line).
 *  - cuda_module.c: the program's kernels (name, graph node, launch
 *    shape) and buffers (the static memory plan) as a kiln_cuda_rt_module,
 *    in memory for `kiln run`, or printed as C (PREFIX_cuda.c, the loader
 *    `kiln compile --target cuda` writes, images embedded). */
#ifndef KILN_CUDA_GPU_H
#define KILN_CUDA_GPU_H

#include <stdio.h>

#include "../../runtime/kiln_cuda_rt.h"
#include "kiln_cuda.h"

enum { KILN_CUDA_MAX_ARCHS = 8 };

/* "sm_80,sm_90" (or "80,90") -> archs (sorted, distinct); the count, or -1
 * with one line in d. */
int kiln_cuda_parse_archs(const char *s, int *archs, kiln_diag *d);

/* The images: images[0..narchs) cubins in archs' order, then the PTX (for
 * the newest arch).  Each data malloc'd; the PTX NUL-terminated. */
typedef struct kiln_cuda_images {
  int n;
  kiln_cuda_rt_image im[KILN_CUDA_MAX_ARCHS + 1];
} kiln_cuda_images;

/* NVRTC: source -> out (the PTX only when ptx is 1: `kiln run` on the
 * GPU it compiled for needs no PTX).  -1 with one line in d naming `what`
 * (the model): no NVRTC, or its first error line. */
int kiln_cuda_nvrtc_compile(const char *source, const int *archs, int narchs, int ptx, kiln_cuda_images *out,
                            const char *what, kiln_diag *d);
void kiln_cuda_images_free(kiln_cuda_images *im);
/* 0 when NVRTC can be opened, else -1 with kiln_cuda_nvrtc_compile's
 * one line: `kiln compile` asks before any work or progress line. */
int kiln_cuda_nvrtc_check(const char *what, kiln_diag *d);

/* p's kernels and buffers (m.images left to the caller). */
typedef struct kiln_cuda_module {
  kiln_cuda_rt_module m;
  kiln_cuda_rt_kernel *kernels;
  kiln_cuda_rt_buf *bufs;
} kiln_cuda_module;
int kiln_cuda_module_build(const kiln_program *p, kiln_cuda_module *out, kiln_diag *d);
void kiln_cuda_module_free(kiln_cuda_module *m);

/* PREFIX_cuda.c and PREFIX_cuda.h: the module m (images included) as C,
 * with PREFIX_cuda_open(weights, err, n) / PREFIX_cuda_run / kiln_cuda_rt_close. */
void kiln_cuda_module_print(FILE *c, FILE *h, const kiln_cuda_rt_module *m, const char *prefix);

/* The runtime's sources (embedded at build time), shipped by `kiln compile`. */
extern const char kiln_cuda_rt_c_source[], kiln_cuda_rt_h_source[];

#endif
