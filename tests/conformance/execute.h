/* Running a prepared case through a backend and checking its outputs:
 * shared by conformance_llvm.c and conformance_c.c. */
#ifndef KILN_TEST_EXECUTE_H
#define KILN_TEST_EXECUTE_H

#include "../../passes/lower.h"
#include "suite.h"

typedef struct suite_backend {
  const char *name;
  /* Compiles p; returns a handle or NULL with d set. */
  void *(*compile)(const kiln_program *p, const suite_case *c, kiln_diag *d);
  /* bufs: p->nbufs + 1 entries, inputs/outputs/weights/workspace bound. */
  void (*run)(void *handle, const kiln_program *p, void **bufs);
  void (*release)(void *handle);
  /* What the pipeline lowers and schedules for (NULL: kiln_target_default()). */
  const kiln_target *target;
  /* 1: the backend runs a one-image program once per image, as kiln run,
   * compile and emit-c do (passes/per_image.c): batched cases take it. */
  int per_image;
} suite_backend;

/* Every test data set of c through backend b; fills r. */
void suite_execute(const suite_case *c, suite_run *r, const suite_backend *b);

#endif
