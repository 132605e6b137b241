/* The runtime's thread pool (runtime/kiln_runtime.c): every iteration of a
 * parallel loop runs exactly once, in chunks of the static even partition,
 * for loop lengths around the thread count; thousands of back-to-back jobs
 * (the spinning hand-off) and jobs after the workers went to sleep (the
 * blocking one) lose nothing; pools are created and destroyed cleanly,
 * idle or busy. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "runtime/kiln_runtime.h"

enum { MAXN = 4096 };

/* bufs[0]: int per iteration, incremented by the iteration's run;
 * bufs[1]: int64 pair per call: the smallest and largest chunk seen. */
static void count(void **bufs, int64_t lo, int64_t hi) {
  int *hits = bufs[0];
  int64_t *span = bufs[1];
  for (int64_t i = lo; i < hi; i++) __atomic_add_fetch(&hits[i], 1, __ATOMIC_RELAXED);
  int64_t len = hi - lo, cur;
  while ((cur = __atomic_load_n(&span[0], __ATOMIC_RELAXED)) > len &&
         !__atomic_compare_exchange_n(&span[0], &cur, len, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  while ((cur = __atomic_load_n(&span[1], __ATOMIC_RELAXED)) < len &&
         !__atomic_compare_exchange_n(&span[1], &cur, len, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

static void check_once(kiln_rt_pool *pool, int threads, int64_t n) {
  static int hits[MAXN];
  int64_t span[2] = {INT64_MAX, -1};
  memset(hits, 0, sizeof hits);
  void *bufs[2] = {hits, span};
  kiln_rt_parallel_for(pool, count, bufs, n);
  for (int64_t i = 0; i < n; i++) cr_assert_eq(hits[i], 1, "n %lld: iteration %lld ran %d times", (long long)n, (long long)i, hits[i]);
  for (int64_t i = n; i < MAXN; i++) cr_assert_eq(hits[i], 0);
  if (n < 1) return;
  /* even chunks: n / t or n / t + 1 iterations each (or the whole loop) */
  int64_t chunks = n < threads ? n : threads;
  if (n < 2 || threads == 1) chunks = 1;
  cr_assert_geq(span[0], n / chunks, "n %lld: a chunk of %lld", (long long)n, (long long)span[0]);
  cr_assert_leq(span[1], n / chunks + (n % chunks != 0), "n %lld: a chunk of %lld", (long long)n, (long long)span[1]);
}

Test(pool, every_iteration_once) {
  const int threads[] = {1, 2, 3, 4, 7};
  for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
    kiln_rt_pool *pool = kiln_rt_pool_create(threads[t]);
    cr_assert_not_null(pool);
    for (int64_t n = 0; n <= 20; n++) check_once(pool, threads[t], n);
    check_once(pool, threads[t], 1000);
    check_once(pool, threads[t], MAXN);
    kiln_rt_pool_destroy(pool);
  }
}

Test(pool, null_pool_runs_serially) {
  check_once(NULL, 1, 0);
  check_once(NULL, 1, 5);
}

static void sum_range(void **bufs, int64_t lo, int64_t hi) {
  int64_t s = 0;
  for (int64_t i = lo; i < hi; i++) s += i;
  __atomic_add_fetch((int64_t *)bufs[0], s, __ATOMIC_RELAXED);
}

Test(pool, back_to_back_jobs) {
  kiln_rt_pool *pool = kiln_rt_pool_create(3);
  cr_assert_not_null(pool);
  int64_t total = 0, expect = 0;
  void *bufs[1] = {&total};
  for (int64_t k = 0; k < 20000; k++) {
    int64_t n = 2 + k % 37;
    kiln_rt_parallel_for(pool, sum_range, bufs, n);
    expect += n * (n - 1) / 2;
  }
  cr_assert_eq(total, expect);
  kiln_rt_pool_destroy(pool);
}

/* After a pause far longer than any spin the workers are blocked on the
 * condition variable: the next jobs must still wake them and complete. */
Test(pool, jobs_after_workers_block) {
  kiln_rt_pool *pool = kiln_rt_pool_create(2);
  cr_assert_not_null(pool);
  for (int round = 0; round < 3; round++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    check_once(pool, 2, 100);
  }
  kiln_rt_pool_destroy(pool);
}

Test(pool, create_destroy_idle) {
  for (int i = 0; i < 50; i++) kiln_rt_pool_destroy(kiln_rt_pool_create(1 + i % 4));
  kiln_rt_pool_destroy(NULL);
}

/* kiln_rt_parallel_run: emit-c's callback shape, same partition and pool. */
static void sum_arg(void *arg, int64_t lo, int64_t hi) {
  int64_t s = 0;
  for (int64_t i = lo; i < hi; i++) s += i;
  __atomic_add_fetch((int64_t *)arg, s, __ATOMIC_RELAXED);
}

Test(pool, parallel_run_and_for_interleaved) {
  kiln_rt_pool *pool = kiln_rt_pool_create(2);
  cr_assert_not_null(pool);
  int64_t a = 0, b = 0, expect = 0;
  void *bufs[1] = {&b};
  for (int64_t k = 0; k < 5000; k++) {
    int64_t n = 1 + k % 11;
    kiln_rt_parallel_run(pool, sum_arg, &a, n);
    kiln_rt_parallel_for(pool, sum_range, bufs, n);
    expect += n * (n - 1) / 2;
  }
  cr_assert_eq(a, expect);
  cr_assert_eq(b, expect);
  kiln_rt_parallel_run(NULL, sum_arg, &a, 4);
  cr_assert_eq(a, expect + 6);
  kiln_rt_pool_destroy(pool);
}
