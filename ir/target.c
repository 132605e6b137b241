/* Target descriptions (target.h): plain values built by constructors.
 *
 * The hand-off threshold is the one lower_conv.c measured as PAR_MIN_MACS
 * (4 M multiply-adds): handing a loop to the pool costs tens of
 * microseconds on a busy 2-vCPU VM, more than a smaller kernel takes
 * (depthwise 3x3 on 960 x 7x7, 0.4 M MACs, ran 45 us on one thread and 94
 * us on two).  kiln_sched_work counts about 3 units per multiply-add of
 * the convolution's inner loop (the multiply, the add, and its share of
 * the loads and stores), so 4 M MACs are 12 M units.
 *
 * The host's cores and caches come from sysconf; vector widths come from
 * whoever generates the code (the LLVM backend knows the CPU it targets). */
#include "target.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { THREAD_MIN_WORK = 12000000 };
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

int kiln_target_has_fma(const kiln_target *t) { return t->kind == KILN_TARGET_GPU || t->vector_bytes >= 32; }
