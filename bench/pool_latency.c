/* Hand-off latency of the runtime's thread pool (runtime/kiln_runtime.c):
 *   pool_latency [THREADS [N [WORK_US]]]   (defaults 2, 10000, 0)
 * times N back-to-back kiln_rt_parallel_for calls of a kernel over THREADS
 * iterations (one chunk per thread), each iteration busy for WORK_US
 * microseconds (0: an empty kernel), after 1000 warm-up calls, and prints
 * the mean and the median, 90th and 99th percentile of one call in
 * microseconds, and the share of chunks the workers ran (the caller runs
 * any chunk no worker has claimed yet, so with an empty kernel a slow
 * hand-off shows as a low share rather than a long call) and, over the
 * calls a worker took part in, the median delay from the call's start to
 * the first worker's chunk starting.  A call's cost
 * beyond WORK_US is what threading a kernel costs: schedule-threads'
 * thread_min_work (ir/target.c) is set from it.  Build: cmake target `pool_latency`, or
 *   cc -O2 bench/pool_latency.c runtime/kiln_runtime.c -Iruntime -pthread */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kiln_runtime.h"

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

/* bufs[0]: the work per iteration (double, us); bufs[1]: the caller's
 * thread id; bufs[2]: chunks run by other threads (long, atomic);
 * bufs[3]: when the call started (double, us); bufs[4]: the delay until
 * the first worker started a chunk of it (double, us; stays -1 if none). */
static void kernel(void **bufs, int64_t lo, int64_t hi) {
  double work = *(const double *)bufs[0];
  if (!pthread_equal(pthread_self(), *(const pthread_t *)bufs[1])) {
    double *wake = bufs[4], d = now_us() - *(const double *)bufs[3];
    if (*wake < 0 || d < *wake) *wake = d; /* one worker a chunk: the job is not shared */
  }
  if (work > 0) {
    double end = now_us() + work * (double)(hi - lo);
    while (now_us() < end) {}
  }
  if (!pthread_equal(pthread_self(), *(const pthread_t *)bufs[1]))
    __atomic_add_fetch((long *)bufs[2], 1, __ATOMIC_RELAXED);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  long n = argc > 2 ? atol(argv[2]) : 10000;
  double work = argc > 3 ? atof(argv[3]) : 0;
  if (threads < 1 || threads > 1024 || n < 1 || n > 100000000 || !(work >= 0 && work < 1e6)) {
    fprintf(stderr, "usage: %s [THREADS [N [WORK_US]]]\n", argv[0]);
    return 2;
  }
  kiln_rt_pool *pool = kiln_rt_pool_create(threads);
  double *t = malloc(sizeof *t * (size_t)n), *w = malloc(sizeof *w * (size_t)n);
  long nw = 0;
  if (!pool || !t || !w) { fprintf(stderr, "pool_latency: cannot start %d threads\n", threads); return 1; }
  pthread_t self = pthread_self();
  long by_workers = 0;
  double call_start = 0, wake = -1;
  void *bufs[5] = {&work, &self, &by_workers, &call_start, &wake};
  for (int i = 0; i < 1000; i++) kiln_rt_parallel_for(pool, kernel, bufs, threads);
  by_workers = 0;
  double start = now_us();
  for (long i = 0; i < n; i++) {
    wake = -1;
    double s = call_start = now_us();
    kiln_rt_parallel_for(pool, kernel, bufs, threads);
    t[i] = now_us() - s;
    if (wake >= 0) w[nw++] = wake;
  }
  double total = now_us() - start;
  qsort(t, (size_t)n, sizeof *t, cmp);
  qsort(w, (size_t)nw, sizeof *w, cmp);
  printf("threads %d  calls %ld  work_us %.2f  mean_us %.3f  p50_us %.3f  p90_us %.3f  p99_us %.3f  by_workers %.1f%%",
         threads, n, work, total / (double)n, t[n / 2], t[n * 9 / 10], t[n * 99 / 100],
         threads > 1 ? 100.0 * (double)by_workers / ((double)n * (threads - 1)) : 0.0);
  if (nw) printf("  worker_start_p50_us %.3f (%ld calls)", w[nw / 2], nw);
  printf("\n");
  free(t);
  free(w);
  kiln_rt_pool_destroy(pool);
  return 0;
}
