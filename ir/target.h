/* What the code is compiled for: a target description.
 *
 * The loop IR says what is legal (a loop marked `parallel` has independent
 * iterations); the target says what pays on the machine the program will
 * run on: how wide its vectors are (the lowering pads rows and picks
 * blocks by it), how many cores it has and how much work a loop must hold
 * before handing it to the thread pool pays (the schedule-threads pass
 * decides by it), its cache sizes, and for a GPU its SMs, warp and shared
 * memory.  A target is a plain value: each command builds one (the LLVM
 * backend describes the CPU it generates code for, kiln_llvm_target;
 * emit-c uses kiln_target_c) and passes it through kiln_pipeline_opts to
 * the lowering (kiln_lctx.target) and the loop passes.  Nothing here is
 * global or mutable. */
#ifndef KILN_TARGET_H
#define KILN_TARGET_H

#include <stdint.h>

#include "dtype.h"

typedef enum kiln_target_kind {
  KILN_TARGET_CPU, /* threads over a pool, SIMD vectors */
  KILN_TARGET_GPU  /* grid of blocks of threads, shared memory */
} kiln_target_kind;

typedef struct kiln_target {
  kiln_target_kind kind;
  char name[48];            /* "sapphirerapids", "c99", "sm_80": dumps and errors */
  int vector_bytes;         /* SIMD width the generated code's loops use: 64 (AVX-512),
                               32 (AVX2), 16 (SSE2, portable objects) */
  int cores;                /* threads worth running at once (>= 1) */
  int64_t l1d_bytes;        /* per-core data caches */
  int64_t l2_bytes;
  int64_t thread_min_work;  /* least work (kiln_sched_work units: arithmetic ops
                               and stores) a loop must hold for the pool hand-off to pay */
  /* GPU only (0 on a CPU) */
  int sms;                  /* streaming multiprocessors */
  int warp;                 /* threads per warp */
  int64_t smem_per_block;   /* shared memory one block may use, bytes */
  int max_threads_per_block;
  int tf32;                 /* GPU: convolution inner products on TF32 tensor cores (`--tf32`,
                               sm_80+; operands keep 10 mantissa bits: see README, CUDA) */
  int keep_narrow;          /* CPU: f16/bf16 tensors stay narrow in memory (`--keep-f16`);
                               else f32 buffers holding the same values (passes/widen_f16.c) */
  int lane_statements;      /* CPU: the backend prints W consecutive statements that differ
                               lane by lane as one vector statement, loads 2 apart included
                               (the LLVM backend: backends/llvm/llvm_lanes.c); emit-c leaves
                               them to the C compiler, which kept a max pool's stride-2 taps
                               scalar (10x slower): lowerings that write rows as lane groups
                               only for their vectors ask for this */
  int lean_memory;          /* CPU: scratch only where the plain memory plan leaves room, counted
                               exactly, and strided convolutions that read X in place where the
                               phase planes fit nowhere (`--lean-memory`; passes/live_values.c) */
  int intel_core;           /* CPU: an Intel core (the LLVM backend: cpuid's vendor, or KILN_CPU's
                               name), where measured schedules differ from AMD's: Winograd's
                               tile (passes/lower_conv_winograd.c, pick_m); 0 for emit-c
                               and --portable, which print the same code on any machine */
  int layout_nchwc;         /* CPU: values between direct convolutions channel-blocked
                               (passes/layout_nchwc.c); `--layout plain` clears it */
} kiln_target;

/* A CPU with `vector_bytes`-wide vectors and `cores` cores (< 1: 1); the
 * rest from this machine's caches (or 48 KiB / 2 MiB) and the measured
 * hand-off threshold.  name is copied (truncated to fit). */
kiln_target kiln_target_cpu(const char *name, int vector_bytes, int cores);
/* emit-c's target: portable C99 compiled by the vendor for a CPU we do not
 * know, so rows are padded for the widest vectors (64 bytes: 16 f32 lanes,
 * as the C output has always been); fixed caches (48 KiB, 2 MiB) and 8
 * cores, never this host's, so the C printed for a model is the same on
 * every machine. */
kiln_target kiln_target_c(void);
/* An sm_80-like GPU (108 SMs, warps of 32, 48 KiB shared memory per block
 * without opting in, 1024 threads per block). */
kiln_target kiln_target_gpu_default(void);
/* The target a caller that names none gets: kiln_target_c's. */
kiln_target kiln_target_default(void);
/* Whether the target multiplies and adds with one rounding in hardware
 * (the loop IR's FMA pays): GPUs, and x86 CPUs with 32-byte vectors or
 * wider (every AVX2 and AVX-512 processor has FMA3); not SSE2-only ones,
 * where fma would be a libm call. */
int kiln_target_has_fma(const kiln_target *t);
/* Elements of dtype t in one vector (>= 1). */
int kiln_target_lanes(const kiln_target *t, kiln_dtype dt);
/* The lanes of the widest lane group (lane_statements) for n outputs of
 * dtype dt: W = kiln_target_lanes, or W/2 or W/4 when n is shorter, 4
 * lanes at least (an SSE register); 0 when n is shorter still.  The
 * LLVM lane printer takes such narrow groups only as whole sequences
 * (backends/llvm/llvm_lanes.c, narrow_width). */
int kiln_target_group_lanes(const kiln_target *t, kiln_dtype dt, int64_t n);
/* Cores this machine offers (>= 1). */
int kiln_target_host_cores(void);

#endif
