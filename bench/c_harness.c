/* Times a model emitted by `kiln emit-c --weights-file --threads --name net`:
 *   c_harness WEIGHTS THREADS RUNS  -> prints "median_ms X"
 * Inputs are fixed pseudo-random data (timing does not depend on values).
 * Threads run on the runtime's pool (runtime/kiln_runtime.c, compiled in
 * by bench.py) behind net_run_parallel. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln_runtime.h"
#include "net.h"

/* emit-c's parallel_for callback on the runtime's pool (kiln_runtime.c:
 * spinning hand-off, the caller takes part), the one `kiln run` uses. */
static void par_for(void *ctx, void (*body)(void *, int64_t, int64_t), void *arg, int64_t n) {
  kiln_rt_parallel_run(ctx, body, arg, n);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s WEIGHTS THREADS RUNS\n", argv[0]); return 2; }
  FILE *f = fopen(argv[1], "rb");
  size_t wlen = NET_WEIGHTS_SIZE;
  void *w = malloc(wlen + 1);
  if (!f || !w || fread(w, 1, wlen, f) != wlen) { fprintf(stderr, "cannot read weights\n"); return 1; }
  fclose(f);
  int threads = atoi(argv[2]), runs = atoi(argv[3]);
  static const long long in_bytes[] = NET_INPUT_BYTES, out_bytes[] = NET_OUTPUT_BYTES;
  const void *ins[NET_NUM_INPUTS + 1];
  void *outs[NET_NUM_OUTPUTS + 1];
  for (int i = 0; i < NET_NUM_INPUTS; i++) {
    float *x = malloc((size_t)in_bytes[i] + 4);
    for (long long k = 0; k < in_bytes[i] / 4; k++) x[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f;
    ins[i] = x;
  }
  for (int i = 0; i < NET_NUM_OUTPUTS; i++) outs[i] = malloc((size_t)out_bytes[i] + 4);
  void *ws = malloc(net_workspace_size());
  kiln_rt_pool *pool = threads > 1 ? kiln_rt_pool_create(threads) : NULL;
  if (threads > 1 && !pool) { fprintf(stderr, "cannot start %d threads\n", threads); return 1; }
  double *t = malloc(sizeof *t * (size_t)(runs + 3));
  for (int r = 0; r < runs + 3; r++) { /* 3 warm-up runs */
    double s = now_ms();
    if (pool) net_run_parallel(w, ins, outs, ws, par_for, pool);
    else net_run_v(w, ins, outs, ws);
    t[r] = now_ms() - s;
  }
  qsort(t + 3, (size_t)runs, sizeof *t, cmp);
  printf("median_ms %.4f\n", t[3 + runs / 2]);
  kiln_rt_pool_destroy(pool);
  return 0;
}
