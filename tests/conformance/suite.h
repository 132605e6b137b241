/* Walking the ONNX backend test suite and its expectations file; shared by
 * the conformance runners (shape inference now, execution backends later). */
#ifndef KILN_TEST_SUITE_H
#define KILN_TEST_SUITE_H

#include <stdio.h>

#include "../../frontend/onnx/kiln_onnx.h"

enum { SUITE_MAX_CASES = 4096 };

typedef struct suite_case {
  char name[256];      /* "node/test_abs" */
  char dir[1024];      /* full path of the case folder */
} suite_case;

/* Lists the cases under root/{node,pytorch-converted,pytorch-operator,simple},
 * sorted by name.  Returns the count, or -1 if root is unreadable. */
int suite_list(const char *root, suite_case *cases, int max);

typedef struct suite_expect {
  char name[256];
  char status[32];     /* pass | known-fail | unsupported */
  char reason[512];
} suite_expect;

/* Reads an expectations file; returns the count (0 if it does not exist). */
int suite_read_expect(const char *path, suite_expect *e, int max);
const suite_expect *suite_find_expect(const suite_expect *e, int n, const char *name);

/* One case prepared for a test data set: model imported, test inputs read,
 * shape-deciding inputs bound as constants (kiln specialises on them),
 * symbolic dims bound to the data's dims, shapes inferred. */
enum { SUITE_MAX_IO = 64 };
typedef struct suite_run {
  kiln_graph *g;
  kiln_tensor in[SUITE_MAX_IO];      /* test_data_set_N/input_K.pb */
  kiln_value *inputs[SUITE_MAX_IO];  /* the model's run-time inputs, in order */
  int nin;
  int bound[SUITE_MAX_IO];           /* input K became a constant */
  char status[32];                   /* "" while fine, else unsupported / known-fail */
  char reason[512];
} suite_run;
int suite_prepare(const suite_case *c, int set, suite_run *r);
void suite_run_free(suite_run *r);
int suite_count_sets(const suite_case *c);
int suite_read_output(const suite_case *c, int set, int k, kiln_tensor *t, kiln_diag *d);
void suite_set(suite_run *r, const char *status, const char *reason);
/* known-fail with kiln's message, the model path dropped. */
void suite_fail_diag(suite_run *r, const suite_case *c, const kiln_diag *d);

/* The runners' shared main: runs fn on every case (fn fills r->status /
 * r->reason; suite_main frees r), compares with the expectations file,
 * prints regressions and counts, and with --update rewrites the file.
 * usage: RUNNER SUITE_DIR EXPECT_FILE [--update] [--only SUBSTRING] */
typedef void (*suite_case_fn)(const suite_case *c, suite_run *r);
int suite_main(int argc, char **argv, const char *title, suite_case_fn fn);

#endif
