/* Times a model emitted by `kiln emit-c --weights-file --threads --name net`:
 *   c_harness WEIGHTS THREADS RUNS  -> prints "median_ms X"
 * Inputs are fixed pseudo-random data (timing does not depend on values).
 * Threads run on a small persistent pthread pool behind net_run_parallel. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net.h"

typedef struct pool {
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  int n, pending, stop;
  unsigned long gen;
  void (*body)(void *, int64_t, int64_t);
  void *arg;
  int64_t total;
  pthread_t th[64];
} pool;

typedef struct warg { pool *p; int id; } warg;

static void chunk(pool *p, int id, int64_t *lo, int64_t *hi) {
  int64_t each = p->total / p->n, extra = p->total % p->n;
  *lo = id * each + (id < extra ? id : extra);
  *hi = *lo + each + (id < extra);
}

static void *worker(void *a) {
  warg *w = a;
  pool *p = w->p;
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
    if (p->stop) { pthread_mutex_unlock(&p->mu); return NULL; }
    seen = p->gen;
    pthread_mutex_unlock(&p->mu);
    int64_t lo, hi;
    chunk(p, w->id, &lo, &hi);
    if (lo < hi) p->body(p->arg, lo, hi);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
}

static void par_for(void *ctx, void (*body)(void *, int64_t, int64_t), void *arg, int64_t n) {
  pool *p = ctx;
  pthread_mutex_lock(&p->mu);
  p->body = body;
  p->arg = arg;
  p->total = n;
  p->pending = p->n - 1;
  p->gen++;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  int64_t lo, hi;
  chunk(p, 0, &lo, &hi);
  if (lo < hi) body(arg, lo, hi);
  pthread_mutex_lock(&p->mu);
  while (p->pending) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
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
  pool p = {0};
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.go, NULL);
  pthread_cond_init(&p.done, NULL);
  p.n = threads < 1 ? 1 : threads > 64 ? 64 : threads;
  warg args[64];
  for (int i = 1; i < p.n; i++) {
    args[i].p = &p;
    args[i].id = i;
    pthread_create(&p.th[i], NULL, worker, &args[i]);
  }
  double *t = malloc(sizeof *t * (size_t)(runs + 3));
  for (int r = 0; r < runs + 3; r++) { /* 3 warm-up runs */
    double s = now_ms();
    if (p.n > 1) net_run_parallel(w, ins, outs, ws, par_for, &p);
    else net_run_v(w, ins, outs, ws);
    t[r] = now_ms() - s;
  }
  qsort(t + 3, (size_t)runs, sizeof *t, cmp);
  printf("median_ms %.4f\n", t[3 + runs / 2]);
  return 0;
}
