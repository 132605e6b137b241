/* kiln_cuda_host.h: runs kiln's generated CUDA C on the host, without a
 * GPU (`kiln run --target cuda-host`, the conformance tests).  The .cu file
 * kiln prints includes it when compiled by a host C compiler (C99 with
 * GNU extensions: `cc -x c`, gcc or clang); NVRTC never sees it.
 *
 * How a launch runs: blocks one after another.  A kernel without
 * barriers (KILN_LAUNCH) runs its block's threads one after another, each
 * the whole kernel body, as plain loops: exact, since its threads never
 * wait for each other.  A kernel with __syncthreads() (KILN_LAUNCH_SYNC,
 * the printer says which) runs each thread of the block as a coroutine
 * (its own 64 KiB stack): the block's threads run in turn up to their
 * next barrier, and a round is over when every thread has reached it or
 * returned; then the next round starts.  That is __syncthreads()'s
 * guarantee (ir/loop.h: threads of a block meet at a barrier).
 *
 * The switch between coroutines: on x86-64, kiln_cuh_swap below, a
 * dozen instructions saving what the System V ABI says a call preserves
 * (rbx, rbp, r12-r15, the stack pointer, MXCSR and the x87 control
 * word); elsewhere (or with KILN_CUH_UCONTEXT defined) ucontext's
 * swapcontext, which also saves and restores the signal mask: a
 * sigprocmask system call per switch, which made barrier-heavy kernels
 * (the implicit-GEMM convolution: two barriers per reduction step, 256
 * threads) dominate the emulation's time.  A coroutine never runs signal
 * handlers of its own, so the signal mask needs no switching.
 *
 * __shared__ variables are per-OS-thread statics (`static __thread`):
 * every emulated thread of a block runs on the one OS thread running the
 * launch, blocks one after another, so they share one copy, as a block
 * shares its shared memory, and two runs on different OS threads do not
 * meet.  Contents start undefined as on a GPU (here: the last block's).
 *
 * Per-thread variables: blockIdx, threadIdx, blockDim and gridDim read a
 * context the launcher passes to each kernel call (its second parameter),
 * so there is no global state besides the shared arrays above.
 *
 * TF32 (kiln run --tf32; semantics in ir/loop.h, "TF32"): kiln_tf32 is
 * cvt.rna.tf32.f32 bit for bit, and KILN_MMA_TF32 a warp's
 * mma.sync.m16n8k8 over its wm x wn tiles.  A warp's lanes are threads
 * 32w .. 32w + 31 of the block (linear ids, x fastest) and each lane's D
 * elements need the A and B fragments other lanes hold, so the MMA is a
 * meeting like __syncthreads: every thread copies its fragments into the
 * block's exchange area, waits for the round to end, then computes its own
 * D elements from the lanes the PTX layout names.  Two exchange areas
 * alternate (per-thread phase), so a fast thread writing its next MMA's
 * fragments never overwrites ones a slower thread is still reading. */
#ifndef KILN_CUDA_HOST_H
#define KILN_CUDA_HOST_H

#include <stdint.h>
#include <stdlib.h>

#define __device__
#define __global__
#define __restrict__ restrict
#define __shared__ static __thread
#define __syncthreads() kiln_cuh_sync(kiln_cuh)

typedef struct kiln_cuh_dim3 { unsigned x, y, z; } kiln_cuh_dim3;
typedef struct kiln_cuh_ctx {
  kiln_cuh_dim3 block_idx, thread_idx, block_dim, grid_dim;
  void *self, *sched; /* KILN_LAUNCH_SYNC: this thread's coroutine and the block's scheduler */
  void *const *bufs;
  void (*kernel)(void *const *bufs, struct kiln_cuh_ctx *kiln_cuh);
  int done;
  unsigned lin, mma_phase; /* linear thread id (x fastest); which exchange area the next MMA uses */
  float *mma_x;            /* KILN_LAUNCH_SYNC: the block's MMA exchange areas (2 x threads x KILN_CUH_MMA_FRAG) */
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
  kiln_cuh_ctx c = {{0, 0, 0}, {0, 0, 0}, {bx, by, bz}, {gx, gy, gz}, 0, 0, bufs, kernel, 0, 0, 0, 0};
  for (c.block_idx.z = 0; c.block_idx.z < gz; c.block_idx.z++)
    for (c.block_idx.y = 0; c.block_idx.y < gy; c.block_idx.y++)
      for (c.block_idx.x = 0; c.block_idx.x < gx; c.block_idx.x++)
        for (c.thread_idx.z = 0; c.thread_idx.z < bz; c.thread_idx.z++)
          for (c.thread_idx.y = 0; c.thread_idx.y < by; c.thread_idx.y++)
            for (c.thread_idx.x = 0; c.thread_idx.x < bx; c.thread_idx.x++) kernel(bufs, &c);
}
#define KILN_LAUNCH(name, gx, gy, gz, bx, by, bz, bufs) kiln_cuh_launch(name, gx, gy, gz, bx, by, bz, bufs)

enum { KILN_CUH_STACK = 64 * 1024 };
enum { KILN_CUH_MMA_FRAG = 64 }; /* floats a lane exchanges per MMA at most: 4 wm + 2 wn */

#if defined(__x86_64__) && !defined(KILN_CUH_UCONTEXT)
/* kiln_cuh_swap(&from, to): saves the callee-saved registers on the
 * current stack, stores the stack pointer in *from, continues on stack
 * `to` (a stack this function saved, or one kiln_cuh_make_thread laid
 * out).  A new coroutine starts at kiln_cuh_start with r12 = its context
 * and r13 = kiln_cuh_thread; kiln_cuh_thread never returns (a finished
 * thread switches back to the scheduler for good). */
__asm__(".text\n"
        ".p2align 4\n"
        "kiln_cuh_swap:\n"
        "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
        "\tsubq $8, %rsp\n\tstmxcsr (%rsp)\n\tfnstcw 4(%rsp)\n"
        "\tmovq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n"
        "\tldmxcsr (%rsp)\n\tfldcw 4(%rsp)\n\taddq $8, %rsp\n"
        "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
        "\tret\n"
        ".p2align 4\n"
        "kiln_cuh_start:\n"
        "\tmovq %r12, %rdi\n\tcallq *%r13\n\tud2\n");
__attribute__((visibility("hidden"))) void kiln_cuh_swap(void **from, void *to);
__attribute__((visibility("hidden"))) void kiln_cuh_start(void);

/* __syncthreads(): back to the block's scheduler until the next round. */
static inline void kiln_cuh_sync(kiln_cuh_ctx *c) { kiln_cuh_swap(&c->self, *(void **)c->sched); }
static inline void kiln_cuh_resume(void **sched, kiln_cuh_ctx *c) { kiln_cuh_swap(sched, c->self); }

static __attribute__((unused)) void kiln_cuh_thread(kiln_cuh_ctx *c) {
  c->kernel(c->bufs, c);
  c->done = 1;
  kiln_cuh_sync(c); /* never resumed */
}

/* Thread c's coroutine on its stack: the frame kiln_cuh_swap pops, with
 * the caller's MXCSR and x87 control word, returning into kiln_cuh_start
 * with the stack 16-byte aligned at its call (System V). */
static __attribute__((unused)) void kiln_cuh_make_thread(kiln_cuh_ctx *c, char *stack, void **sched) {
  uint32_t mxcsr;
  uint16_t fpcw;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpcw));
  uint64_t *top = (uint64_t *)(((uintptr_t)(stack + KILN_CUH_STACK) & ~(uintptr_t)15) - 16);
  uint64_t *sp = top - 8;
  sp[0] = (uint64_t)mxcsr | ((uint64_t)fpcw << 32);
  sp[1] = sp[2] = sp[5] = sp[6] = 0;     /* r15, r14, rbx, rbp */
  sp[3] = (uint64_t)(uintptr_t)kiln_cuh_thread; /* r13 */
  sp[4] = (uint64_t)(uintptr_t)c;        /* r12 */
  sp[7] = (uint64_t)(uintptr_t)kiln_cuh_start;
  c->self = sp;
  c->sched = sched;
}
#else
#include <ucontext.h>
/* The portable switch: ucontext (self and sched are ucontext_t pointers). */
static inline void kiln_cuh_sync(kiln_cuh_ctx *c) { swapcontext((ucontext_t *)c->self, (ucontext_t *)c->sched); }
static inline void kiln_cuh_resume(void **sched, kiln_cuh_ctx *c) {
  swapcontext((ucontext_t *)*sched, (ucontext_t *)c->self);
}

/* A coroutine's entry: makecontext passes ints, so the context pointer
 * travels as two halves. */
static inline void kiln_cuh_thread_uc(unsigned hi, unsigned lo) {
  kiln_cuh_ctx *c = (kiln_cuh_ctx *)(uintptr_t)(((uint64_t)hi << 32) | lo);
  c->kernel(c->bufs, c);
  c->done = 1; /* returns to uc_link, the scheduler */
}

/* Thread c's coroutine on its stack (its ucontext_t at the stack's
 * start), returning to the scheduler's.  Apart (and not inlined):
 * getcontext returns twice, which no caller's locals should see. */
static __attribute__((noinline, unused)) void kiln_cuh_make_thread(kiln_cuh_ctx *c, char *stack, void **sched) {
  ucontext_t *uc = (ucontext_t *)stack;
  uintptr_t p = (uintptr_t)c;
  getcontext(uc);
  uc->uc_stack.ss_sp = stack + sizeof(ucontext_t);
  uc->uc_stack.ss_size = KILN_CUH_STACK - sizeof(ucontext_t);
  uc->uc_link = (ucontext_t *)*sched;
  makecontext(uc, (void (*)(void))(uintptr_t)kiln_cuh_thread_uc, 2, (unsigned)((uint64_t)p >> 32),
              (unsigned)(p & 0xffffffffu));
  c->self = uc;
  c->sched = *sched;
}
#endif

/* kernel<<<grid, block>>>(bufs) with barriers: per block, its threads as
 * coroutines run round by round (see the top).  Returns -1 out of memory. */
static inline int kiln_cuh_launch_sync(kiln_cuh_kernel kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                       unsigned by, unsigned bz, void *const *bufs) {
  size_t n = (size_t)bx * by * bz;
  kiln_cuh_ctx *cs = (kiln_cuh_ctx *)calloc(n, sizeof *cs);
  char *stacks = (char *)malloc(n * KILN_CUH_STACK);
#if defined(__x86_64__) && !defined(KILN_CUH_UCONTEXT)
  void *sched_sp = 0, **sched = &sched_sp; /* the scheduler's saved stack pointer */
#else
  ucontext_t sched_uc;
  void *sched_p = &sched_uc, **sched = &sched_p;
#endif
  float *xch = (float *)malloc(2 * n * KILN_CUH_MMA_FRAG * sizeof(float));
  if (!cs || !stacks || !xch) { free(cs); free(stacks); free(xch); return -1; }
  kiln_cuh_dim3 b;
  for (b.z = 0; b.z < gz; b.z++)
    for (b.y = 0; b.y < gy; b.y++)
      for (b.x = 0; b.x < gx; b.x++) {
        size_t t = 0, alive = n;
        kiln_cuh_dim3 th;
        for (th.z = 0; th.z < bz; th.z++)
          for (th.y = 0; th.y < by; th.y++)
            for (th.x = 0; th.x < bx; th.x++, t++) {
              kiln_cuh_ctx c = {b, th, {bx, by, bz}, {gx, gy, gz}, 0, 0, bufs, kernel, 0, 0, 0, 0};
              cs[t] = c;
              cs[t].lin = (unsigned)t;
              cs[t].mma_x = xch;
              kiln_cuh_make_thread(&cs[t], stacks + t * KILN_CUH_STACK, sched);
            }
        while (alive) /* one round: every live thread up to its next barrier */
          for (t = 0; t < n; t++) {
            if (cs[t].done) continue;
            kiln_cuh_resume(sched, &cs[t]);
            if (cs[t].done) alive--;
          }
      }
  free(cs);
  free(stacks);
  free(xch);
  return 0;
}
/* cvt.rna.tf32.f32: finite x gets 0x1000 added to its bits (half a TF32
 * ulp: round to nearest, ties away from zero, carrying into the exponent,
 * up to inf past the largest TF32), then the low 13 bits are cleared;
 * inf and NaN are only cleared (the SASS the PTX compiles to on sm_80). */
static inline float kiln_tf32(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) < 0x7f800000u) u += 0x1000u;
  u &= 0xffffe000u;
  __builtin_memcpy(&x, &u, 4);
  return x;
}

/* The tensor core reads an operand's top 19 bits (TF32). */
static inline float kiln_cuh_tf32_operand(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  u &= 0xffffe000u;
  __builtin_memcpy(&x, &u, 4);
  return x;
}

/* KILN_MMA_TF32 (see the top): lane l = lin % 32 of warp lin / 32, g = l / 4,
 * t = l % 4 holds A(i) a[4i + r] at (row g + 8(r & 1), col t + 4(r >> 1)),
 * B(j) b[2j + r] at (row t + 4r, col g), D(i,j) c[4(i wn + j) + r] at
 * (row g + 8(r >> 1), col 2t + (r & 1)).  D(row, col) += the 8 products
 * A(row, k) B(k, col) in k order, each exact in f32, one rounding per add. */
static inline void kiln_cuh_mma_tf32(kiln_cuh_ctx *cx, float *c, const float *a, const float *b, int wm, int wn) {
  unsigned n = cx->block_dim.x * cx->block_dim.y * cx->block_dim.z;
  if (!cx->mma_x || 4 * wm + 2 * wn > KILN_CUH_MMA_FRAG || n % 32) __builtin_trap(); /* kiln never prints these */
  float *x = cx->mma_x + (size_t)cx->mma_phase * n * KILN_CUH_MMA_FRAG;
  float *mine = x + (size_t)cx->lin * KILN_CUH_MMA_FRAG;
  for (int i = 0; i < 4 * wm; i++) mine[i] = a[i];
  for (int j = 0; j < 2 * wn; j++) mine[4 * wm + j] = b[j];
  kiln_cuh_sync(cx); /* every lane's fragments are in */
  const float *warp = x + (size_t)(cx->lin & ~31u) * KILN_CUH_MMA_FRAG;
  unsigned l = cx->lin & 31u, g = l / 4, t = l % 4;
  for (int i = 0; i < wm; i++)
    for (int j = 0; j < wn; j++)
      for (unsigned r = 0; r < 4; r++) {
        unsigned row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
        float acc = c[4 * (i * wn + j) + r];
        for (unsigned k = 0; k < 8; k++) {
          const float *la = warp + (size_t)(4 * (row % 8) + k % 4) * KILN_CUH_MMA_FRAG; /* lane holding A(row, k) */
          const float *lb = warp + (size_t)(4 * col + k % 4) * KILN_CUH_MMA_FRAG;       /* lane holding B(k, col) */
          float av = kiln_cuh_tf32_operand(la[4 * i + (row >= 8) + 2 * (k >= 4)]);
          float bv = kiln_cuh_tf32_operand(lb[4 * wm + 2 * j + (k >= 4)]);
          acc = __builtin_fmaf(av, bv, acc);
        }
        c[4 * (i * wn + j) + r] = acc;
      }
  cx->mma_phase ^= 1u;
}
#define KILN_MMA_TF32(c, a, b, wm, wn) kiln_cuh_mma_tf32(kiln_cuh, c, a, b, wm, wn)

#define KILN_LAUNCH_SYNC(name, gx, gy, gz, bx, by, bz, bufs) \
  if (kiln_cuh_launch_sync(name, gx, gy, gz, bx, by, bz, bufs)) return -1

#endif
