/* Lane runs (c_lanes.c): a run of stores that differ only lane by lane,
 * as one loop over lane arrays, for C compilers' vectorisers.  Internal
 * to the C printer. */
#ifndef KILN_C_LANES_H
#define KILN_C_LANES_H

#include "../../ir/loop.h"

/* A lane array: `buf` (a LOCAL-scope stand-in, printed by the emitter as
 * laneK), element j holding local first_local + j. */
typedef struct kiln_c_lane_array {
  const kiln_buf *buf;
  int first_local;
} kiln_c_lane_array;

typedef struct kiln_c_lanes {
  int n;                      /* statements in the run */
  kiln_ls loop;               /* for (index_var < n) the run's store, lane by lane */
  kiln_c_lane_array *arrays;  /* filled before the loop */
  int narrays;
} kiln_c_lanes;

/* The name of every lane array's stand-in buffer (compared by address). */
extern const char kiln_c_lane_name[];

/* The run starting at s: its length n >= 4 and *out, or 0 (print s as
 * it is).  Nodes are allocated in a. */
int kiln_c_lane_run(const kiln_ls *s, kiln_arena *a, int index_var, kiln_c_lanes *out);

#endif
