/* kiln_cuda_host.h: runs kiln's generated CUDA C on the host, without a
 * GPU (`kiln run --target cuda-host`, the conformance tests).  The .cu file
 * kiln prints includes it when compiled by a host C compiler (C99 with
 * GNU extensions: `cc -x c`, gcc or clang); NVRTC never sees it.
 *
 * How a launch runs: blocks one after another.  A kernel without
 * barriers (KILN_LAUNCH) runs its block's threads one after another, each
 * the whole kernel body: exact, since its threads never wait for each
 * other.  A kernel with __syncthreads() (KILN_LAUNCH_SYNC, the printer
 * says which) runs each thread of the block as a coroutine (ucontext, its
 * own 64 KiB stack): the block's threads run in turn up to their next
 * barrier, and a round is over when every thread has reached it or
 * returned; then the next round starts.  That is __syncthreads()'s
 * guarantee (ir/loop.h: threads of a block meet at a barrier).
 * __shared__ variables are per-OS-thread statics (`static __thread`):
 * every emulated thread of a block runs on the one OS thread running the
 * launch, blocks one after another, so they share one copy, as a block
 * shares its shared memory, and two runs on different OS threads do not
 * meet.  Contents start undefined as on a GPU (here: the last block's).
 *
 * Per-thread variables: blockIdx, threadIdx, blockDim and gridDim read a
 * context the launcher passes to each kernel call (its second parameter),
 * so there is no global state besides the shared arrays above. */
#ifndef KILN_CUDA_HOST_H
#define KILN_CUDA_HOST_H

#include <stdint.h>
#include <stdlib.h>
#include <ucontext.h>

#define __device__
#define __global__
#define __restrict__ restrict
#define __shared__ static __thread
#define __syncthreads() kiln_cuh_sync(kiln_cuh)

typedef struct kiln_cuh_dim3 { unsigned x, y, z; } kiln_cuh_dim3;
typedef struct kiln_cuh_ctx {
  kiln_cuh_dim3 block_idx, thread_idx, block_dim, grid_dim;
  ucontext_t *self, *sched; /* KILN_LAUNCH_SYNC: this thread's coroutine and the block's scheduler */
  void *const *bufs;
  void (*kernel)(void *const *bufs, struct kiln_cuh_ctx *kiln_cuh);
  int done;
} kiln_cuh_ctx;

#define blockIdx (kiln_cuh->block_idx)
#define threadIdx (kiln_cuh->thread_idx)
#define blockDim (kiln_cuh->block_dim)
#define gridDim (kiln_cuh->grid_dim)

/* (a one-thread kernel reads no index: the context may go unused) */
#define KILN_KERNEL(name, threads) \
  static void name(void *const *bufs, kiln_cuh_ctx *kiln_cuh __attribute__((unused)))
typedef void (*kiln_cuh_kernel)(void *const *bufs, kiln_cuh_ctx *kiln_cuh);

/* kernel<<<grid, block>>>(bufs), no barriers: every block, every thread, in order. */
static inline void kiln_cuh_launch(kiln_cuh_kernel kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                   unsigned by, unsigned bz, void *const *bufs) {
  kiln_cuh_ctx c = {{0, 0, 0}, {0, 0, 0}, {bx, by, bz}, {gx, gy, gz}, 0, 0, bufs, kernel, 0};
  for (c.block_idx.z = 0; c.block_idx.z < gz; c.block_idx.z++)
    for (c.block_idx.y = 0; c.block_idx.y < gy; c.block_idx.y++)
      for (c.block_idx.x = 0; c.block_idx.x < gx; c.block_idx.x++)
        for (c.thread_idx.z = 0; c.thread_idx.z < bz; c.thread_idx.z++)
          for (c.thread_idx.y = 0; c.thread_idx.y < by; c.thread_idx.y++)
            for (c.thread_idx.x = 0; c.thread_idx.x < bx; c.thread_idx.x++) kernel(bufs, &c);
}
#define KILN_LAUNCH(name, gx, gy, gz, bx, by, bz, bufs) kiln_cuh_launch(name, gx, gy, gz, bx, by, bz, bufs)

/* __syncthreads(): back to the block's scheduler until the next round. */
static inline void kiln_cuh_sync(kiln_cuh_ctx *c) { swapcontext(c->self, c->sched); }

/* A coroutine's entry: makecontext passes ints, so the context pointer
 * travels as two halves. */
static inline void kiln_cuh_thread(unsigned hi, unsigned lo) {
  kiln_cuh_ctx *c = (kiln_cuh_ctx *)(uintptr_t)(((uint64_t)hi << 32) | lo);
  c->kernel(c->bufs, c);
  c->done = 1; /* returns to uc_link, the scheduler */
}

enum { KILN_CUH_STACK = 64 * 1024 };

/* Thread c's coroutine on its stack, returning to sched.  Apart (and not
 * inlined): getcontext returns twice, which no caller's locals should see.
 * (unused in a file without barriers) */
static __attribute__((noinline, unused)) void kiln_cuh_make_thread(ucontext_t *uc, kiln_cuh_ctx *c, char *stack,
                                                                  ucontext_t *sched) {
  uintptr_t p = (uintptr_t)c;
  getcontext(uc);
  uc->uc_stack.ss_sp = stack;
  uc->uc_stack.ss_size = KILN_CUH_STACK;
  uc->uc_link = sched;
  makecontext(uc, (void (*)(void))(uintptr_t)kiln_cuh_thread, 2, (unsigned)((uint64_t)p >> 32),
              (unsigned)(p & 0xffffffffu));
}

/* kernel<<<grid, block>>>(bufs) with barriers: per block, its threads as
 * coroutines run round by round (see the top).  Returns -1 out of memory. */
static inline int kiln_cuh_launch_sync(kiln_cuh_kernel kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                       unsigned by, unsigned bz, void *const *bufs) {
  size_t n = (size_t)bx * by * bz;
  ucontext_t sched, *uc = (ucontext_t *)calloc(n, sizeof *uc);
  kiln_cuh_ctx *cs = (kiln_cuh_ctx *)calloc(n, sizeof *cs);
  char *stacks = (char *)malloc(n * KILN_CUH_STACK);
  if (!uc || !cs || !stacks) { free(uc); free(cs); free(stacks); return -1; }
  kiln_cuh_dim3 b;
  for (b.z = 0; b.z < gz; b.z++)
    for (b.y = 0; b.y < gy; b.y++)
      for (b.x = 0; b.x < gx; b.x++) {
        size_t t = 0, alive = n;
        kiln_cuh_dim3 th;
        for (th.z = 0; th.z < bz; th.z++)
          for (th.y = 0; th.y < by; th.y++)
            for (th.x = 0; th.x < bx; th.x++, t++) {
              kiln_cuh_ctx c = {b, th, {bx, by, bz}, {gx, gy, gz}, &uc[t], &sched, bufs, kernel, 0};
              cs[t] = c;
              kiln_cuh_make_thread(&uc[t], &cs[t], stacks + t * KILN_CUH_STACK, &sched);
            }
        while (alive) /* one round: every live thread up to its next barrier */
          for (t = 0; t < n; t++) {
            if (cs[t].done) continue;
            swapcontext(&sched, &uc[t]);
            if (cs[t].done) alive--;
          }
      }
  free(uc);
  free(cs);
  free(stacks);
  return 0;
}
#define KILN_LAUNCH_SYNC(name, gx, gy, gz, bx, by, bz, bufs) \
  if (kiln_cuh_launch_sync(name, gx, gy, gz, bx, by, bz, bufs)) return -1

#endif
