/* Walking the ONNX backend test suite and its expectations file; shared by
 * the conformance runners (shape inference now, execution backends later). */
#ifndef KILN_TEST_SUITE_H
#define KILN_TEST_SUITE_H

#include <stdio.h>

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

#endif
