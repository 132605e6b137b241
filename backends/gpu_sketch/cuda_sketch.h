/* A CUDA sketch of one GPU kernel of the loop IR (test-only: linked into
 * the tests, not into kiln).  It shows that the loop IR carries a real GPU
 * schedule: the text is CUDA C++ that NVRTC compiles (tests/backends/
 * gpu_sketch/).  The CUDA backend of the next issue grows from it. */
#ifndef KILN_CUDA_SKETCH_H
#define KILN_CUDA_SKETCH_H

#include <stdio.h>

#include "ir/loop.h"

/* Prints kernel k of p (k->launch set) as an `extern "C" __global__`
 * function taking the GLOBAL buffers it uses, in buffer order, preceded by
 * a comment giving its launch, `NAME<<<grid, block>>>(buffers)`.  Returns
 * 0, or -1 (with a line in *why) for a kernel with no launch or a construct
 * the sketch does not print (f16/bf16 buffers, float-to-integer casts,
 * integer arithmetic other than non-wrapping index arithmetic). */
int kiln_cuda_sketch_print(const kiln_program *p, const kiln_kernel *k, FILE *f, const char **why);

#endif
