/* Host program for the emit-c --threads test: runs the model serially and
 * with a two-thread parallel_for callback and checks both give the same
 * bytes.  Built against net.h from `kiln emit-c --threads --name net`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

typedef struct job { void (*body)(void *, int64_t, int64_t); void *arg; int64_t lo, hi; } job;

static void *run_job(void *p) {
  job *j = p;
  j->body(j->arg, j->lo, j->hi);
  return NULL;
}

static void two_threads(void *ctx, void (*body)(void *, int64_t, int64_t), void *arg, int64_t n) {
  (void)ctx;
  pthread_t t;
  job a = {body, arg, 0, n / 2}, b = {body, arg, n / 2, n};
  pthread_create(&t, NULL, run_job, &b);
  run_job(&a);
  pthread_join(t, NULL);
}

int main(void) {
  static float in[NET_INPUT_SIZE], out1[NET_LOGITS_SIZE], out2[NET_LOGITS_SIZE];
  for (int i = 0; i < NET_INPUT_SIZE; i++) in[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
  void *ws = malloc(net_workspace_size());
  const void *ins[1] = {in};
  void *o1[1] = {out1}, *o2[1] = {out2};
  if (!ws || net_run_v(0, ins, o1, ws) || net_run_parallel(0, ins, o2, ws, two_threads, 0)) return 1;
  free(ws);
  if (memcmp(out1, out2, sizeof out1)) {
    fprintf(stderr, "threaded run differs from the serial one\n");
    return 1;
  }
  printf("threads: identical outputs\n");
  return 0;
}
