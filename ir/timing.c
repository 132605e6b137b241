/* Stage timing (timing.h): the monotonic wall clock and the process's CPU
 * clock, one line a stage.  Both, because on a loaded machine wall time
 * includes waiting for a core; compilation is single-threaded, so its CPU
 * time is the stage's own cost. */
#include "timing.h"

#include <time.h>

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double kiln_timing_now(void) { return clock_s(CLOCK_MONOTONIC); }
double kiln_timing_cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

int kiln_timing_on(const kiln_timing *t) { return t && t->out; }

void kiln_timing_start(kiln_timing *t, FILE *out) {
  t->out = out;
  t->start = t->last = kiln_timing_now();
  t->start_cpu = t->last_cpu = kiln_timing_cpu();
}

static void line(kiln_timing *t, const char *what, double since, double since_cpu) {
  double now = kiln_timing_now(), cpu = kiln_timing_cpu();
  fprintf(t->out, "kiln: time: %-22s %9.1f ms wall %9.1f ms cpu\n", what, (now - since) * 1e3, (cpu - since_cpu) * 1e3);
  fflush(t->out);
  t->last = now;
  t->last_cpu = cpu;
}

void kiln_timing_mark(kiln_timing *t, const char *stage) {
  if (kiln_timing_on(t)) line(t, stage, t->last, t->last_cpu);
}

void kiln_timing_total(kiln_timing *t, const char *what) {
  if (kiln_timing_on(t)) line(t, what, t->start, t->start_cpu);
}
