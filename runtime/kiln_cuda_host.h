/* kiln_cuda_host.h: runs kiln's generated CUDA C on the host, without a
 * GPU (`kiln run --target cuda-host`, the conformance tests).  The .cu file
 * kiln prints includes it when compiled by a host C compiler (C99, `cc -x
 * c`); NVRTC never sees it.
 *
 * How a launch runs: blocks one after another, and in each block its
 * threads one after another, each running the whole kernel body.  That is
 * exact for kernels without barriers, and those are the only kernels this
 * emulation accepts: kiln's GPU mapping (passes/schedule_gpu.c) gives each
 * thread its own elements and no shared memory, so threads never
 * communicate.  A kernel using __syncthreads() or __shared__ memory does
 * not compile here (the macros below expand to undeclared names): those
 * need the threads of a block interleaved at barriers (loop_eval.c's
 * emulation does that for the IR; this header does not yet).
 *
 * Per-thread variables: blockIdx, threadIdx, blockDim and gridDim read a
 * context the launcher passes to each kernel call (its second parameter),
 * so there is no global or thread-local state and two runs can go on at
 * once on different threads. */
#ifndef KILN_CUDA_HOST_H
#define KILN_CUDA_HOST_H

#include <stdint.h>

#define __device__
#define __global__
#define __restrict__ restrict
#define __shared__ kiln_cuda_host_has_no_shared_memory
#define __syncthreads() kiln_cuda_host_has_no_barriers

typedef struct kiln_cuh_dim3 { unsigned x, y, z; } kiln_cuh_dim3;
typedef struct kiln_cuh_ctx {
  kiln_cuh_dim3 block_idx, thread_idx, block_dim, grid_dim;
} kiln_cuh_ctx;

#define blockIdx (kiln_cuh->block_idx)
#define threadIdx (kiln_cuh->thread_idx)
#define blockDim (kiln_cuh->block_dim)
#define gridDim (kiln_cuh->grid_dim)

/* (a one-thread kernel reads no index: the context may go unused) */
#define KILN_KERNEL(name, threads) \
  static void name(void *const *bufs, const kiln_cuh_ctx *kiln_cuh __attribute__((unused)))
typedef void (*kiln_cuh_kernel)(void *const *bufs, const kiln_cuh_ctx *kiln_cuh);

/* kernel<<<grid, block>>>(bufs): every block, every thread, in order. */
static inline void kiln_cuh_launch(kiln_cuh_kernel kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                   unsigned by, unsigned bz, void *const *bufs) {
  kiln_cuh_ctx c;
  c.grid_dim.x = gx; c.grid_dim.y = gy; c.grid_dim.z = gz;
  c.block_dim.x = bx; c.block_dim.y = by; c.block_dim.z = bz;
  for (c.block_idx.z = 0; c.block_idx.z < gz; c.block_idx.z++)
    for (c.block_idx.y = 0; c.block_idx.y < gy; c.block_idx.y++)
      for (c.block_idx.x = 0; c.block_idx.x < gx; c.block_idx.x++)
        for (c.thread_idx.z = 0; c.thread_idx.z < bz; c.thread_idx.z++)
          for (c.thread_idx.y = 0; c.thread_idx.y < by; c.thread_idx.y++)
            for (c.thread_idx.x = 0; c.thread_idx.x < bx; c.thread_idx.x++) kernel(bufs, &c);
}
#define KILN_LAUNCH(name, gx, gy, gz, bx, by, bz, bufs) kiln_cuh_launch(name, gx, gy, gz, bx, by, bz, bufs)

#endif
