/* Stage timing for `--time`: where compilation spends its time.
 *
 * A kiln_timing is owned by the command (no global state) and handed down
 * to the pipeline and the backend; each stage calls kiln_timing_mark when
 * it ends, which prints the time since the previous mark as one line on
 * the timing's stream (`kiln: time: STAGE  12.3 ms wall  11.9 ms cpu`):
 * wall time is what a user waits for; the process's CPU time is what the
 * stage costs, and stays meaningful on a machine shared with other work.  A NULL timing, or
 * one whose stream is NULL, makes every call a no-op, so code paths that
 * are not timed pass NULL and pay nothing. */
#ifndef KILN_TIMING_H
#define KILN_TIMING_H

#include <stdio.h>

typedef struct kiln_timing {
  FILE *out;    /* where marks are printed; NULL: timing off */
  double start, start_cpu; /* seconds (monotonic; process CPU) when kiln_timing_start ran */
  double last, last_cpu;   /* the same at the previous mark */
} kiln_timing;

/* Starts the clock; out NULL leaves timing off. */
void kiln_timing_start(kiln_timing *t, FILE *out);
/* Prints "kiln: time: STAGE  N ms wall  M ms cpu" for the time since the previous mark
 * (or the start) and restarts the stage clock. */
void kiln_timing_mark(kiln_timing *t, const char *stage);
/* Prints the total since kiln_timing_start as stage `what`. */
void kiln_timing_total(kiln_timing *t, const char *what);
/* True when t prints (callers skip work done only to be timed). */
int kiln_timing_on(const kiln_timing *t);
/* Monotonic seconds; the process's CPU seconds. */
double kiln_timing_now(void);
double kiln_timing_cpu(void);

#endif
