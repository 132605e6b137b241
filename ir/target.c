/* Target descriptions (target.h): plain values built by constructors.
 *
 * The hand-off threshold: a threaded kernel pays the pool's hand-off and
 * join on top of half its work.  With the spinning pool
 * (runtime/kiln_runtime.c) a worker starts its chunk a median 0.46 us
 * after the call (bench/pool_latency: 2 threads, 20 us chunks, on the
 * shared 2-vCPU Sapphire Rapids VM; the condition-variable pool before it
 * took 21 us, and 3 us for an empty kernel).  The threshold asks each
 * threaded kernel to take at least ~10 us on one core, 20x that
 * hand-off, even at the fastest rate kernels reach: about 1e11
 * kiln_sched_work units a second for a vectorised convolution
 * (MobileNetV2's 1x1 convolutions under `kiln run --profile`; elementwise
 * kernels run ~1.2e10, so they get ~80 us).  10 us x 1e11/s = 1 M units
 * (about 0.33 M multiply-adds: kiln_sched_work counts ~3 units per MAC).
 * The old threshold, 12 M units (4 M MACs), was set for a hand-off of tens
 * of microseconds and left MobileNetV2's BatchNorm, Clip and depthwise
 * kernels (0.1-0.6 ms each) on one thread.
 * That 1 M, in turn, left loops that do not vectorise, and so run nearer
 * 1e10 units a second, serial for 40-100 us: Winograd's input transforms
 * at 14x14 (DenseNet-121's third block: 0.086 ms on one thread, 0.079 on
 * two), pools, short copies.  At 250 K units a vectorised loop still takes
 * 2.5 us, five hand-offs; measured on the 2-vCPU Zen 5, 2 threads, sum of
 * the kernels' best times, two rounds: DenseNet-121 15.4/16.3 -> 14.7/15.4
 * ms, float16 SqueezeNet 1.93/1.85 -> 1.76/1.78, MobileNetV2 2.15/2.30 ->
 * 2.12/2.10, GoogLeNet 8.84/8.51 -> 8.51/8.49, ResNet-50 19.1/19.2 against
 * 19.5/18.4 (noise).
 *
 * The host's cores and caches come from sysconf; vector widths come from
 * whoever generates the code (the LLVM backend knows the CPU it targets). */
#include "target.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { THREAD_MIN_WORK = 250000 };
#define L1D_DEFAULT ((int64_t)48 * 1024)
#define L2_DEFAULT ((int64_t)2 * 1024 * 1024)

int kiln_target_host_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
static int64_t cache_size(int name, int64_t fallback) {
  long v = sysconf(name);
  return v > 0 ? (int64_t)v : fallback;
}
#endif

static kiln_target cpu(const char *name, int vector_bytes, int cores, int64_t l1d, int64_t l2) {
  kiln_target t = {0};
  t.kind = KILN_TARGET_CPU;
  snprintf(t.name, sizeof t.name, "%s", name ? name : "cpu");
  t.vector_bytes = vector_bytes >= 16 ? vector_bytes : 16;
  t.cores = cores >= 1 ? cores : 1;
  t.l1d_bytes = l1d;
  t.l2_bytes = l2;
  t.thread_min_work = THREAD_MIN_WORK;
  return t;
}

kiln_target kiln_target_cpu(const char *name, int vector_bytes, int cores) {
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  return cpu(name, vector_bytes, cores, cache_size(_SC_LEVEL1_DCACHE_SIZE, L1D_DEFAULT),
             cache_size(_SC_LEVEL2_CACHE_SIZE, L2_DEFAULT));
#else
  return cpu(name, vector_bytes, cores, L1D_DEFAULT, L2_DEFAULT);
#endif
}

/* Fixed, not this host's: emit-c prints the same C for a model on any
 * machine.  8 cores: threading is marked for loops that pay on a
 * multi-core CPU (a single-threaded host's parallel_for runs them in turn). */
kiln_target kiln_target_c(void) { return cpu("c99", 64, 8, L1D_DEFAULT, L2_DEFAULT); }

kiln_target kiln_target_default(void) { return kiln_target_c(); }

/* FP32 by default (tf32 = 0): TF32 tensor cores only when asked (--tf32). */
kiln_target kiln_target_gpu_default(void) {
  kiln_target t = {0};
  t.kind = KILN_TARGET_GPU;
  snprintf(t.name, sizeof t.name, "sm_80");
  t.vector_bytes = 16; /* one thread's widest load: float4 */
  t.cores = 108;
  t.l1d_bytes = 192 * 1024; /* per SM, shared with shared memory */
  t.l2_bytes = 40 * 1024 * 1024;
  t.thread_min_work = 0;
  t.sms = 108;
  t.warp = 32;
  t.smem_per_block = 48 * 1024;
  t.max_threads_per_block = 1024;
  return t;
}

int kiln_target_lanes(const kiln_target *t, kiln_dtype dt) {
  size_t sz = kiln_dtype_size(dt);
  if (!t || sz == 0) return 1;
  int n = (int)((size_t)t->vector_bytes / sz);
  return n >= 1 ? n : 1;
}

int kiln_target_group_lanes(const kiln_target *t, kiln_dtype dt, int64_t n) {
  int vw = kiln_target_lanes(t, dt);
  for (int w = vw; w >= 4 && 4 * w >= vw; w /= 2)
    if (w <= n) return w;
  return 0;
}

int kiln_target_has_fma(const kiln_target *t) { return t->kind == KILN_TARGET_GPU || t->vector_bytes >= 32; }
