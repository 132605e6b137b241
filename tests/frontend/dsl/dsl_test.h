/* Helpers shared by the DSL tests: load a source string as "net.kiln"
 * (weights files, if any, from a per-test temporary folder), and check a
 * failure's message: its location prefix and what it says. */
#ifndef KILN_TESTS_DSL_TEST_H
#define KILN_TESTS_DSL_TEST_H

#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/dsl/kiln_dsl.h"
#include "passes/passes.h"

static char tmpdir[64];
static kiln_graph *g;
static kiln_diag d;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static inline void dsl_setup(void) {
  strcpy(tmpdir, "/tmp/kiln-dsl-test-XXXXXX");
  cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
  g = NULL;
  memset(&d, 0, sizeof d);
}

static inline void dsl_teardown(void) {
  kiln_graph_free(g);
  g = NULL;
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline kiln_graph *load_limited(const char *src, const kiln_dsl_limits *lim) {
  kiln_graph_free(g);
  memset(&d, 0, sizeof d);
  g = kiln_dsl_load_buffer(src, strlen(src), "net.kiln", tmpdir, lim, &d);
  return g;
}

static inline kiln_graph *load(const char *src) { return load_limited(src, NULL); }

/* Loads src, which must succeed. */
static inline kiln_graph *load_ok(const char *src) {
  kiln_graph *r = load(src);
  cr_assert(r, "load failed: %s", d.msg);
  cr_assert(!d.failed, "loaded, yet an error was recorded: %s", d.msg);
  return r;
}

/* Loads src, which must fail with a message starting with `where` and
 * containing `what`. */
#define load_fails(src, where, what)                                                          \
  do {                                                                                        \
    cr_assert_null(load(src), "expected an error");                                           \
    cr_assert(d.failed && d.msg[0], "failed without a message");                              \
    cr_assert(!strncmp(d.msg, where, strlen(where)), "message '%s' should start with '%s'", d.msg, where); \
    cr_assert(strstr(d.msg, what), "message '%s' should say '%s'", d.msg, what);              \
  } while (0)

/* The live node named `name`, or NULL. */
static inline kiln_node *node_named(const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i]->dead && !strcmp(g->nodes[i]->name, name)) return g->nodes[i];
  return NULL;
}

static inline kiln_value *value_named(const char *name) {
  for (int i = 0; i < g->nvalues; i++)
    if (!strcmp(g->values[i]->name, name)) return g->values[i];
  return NULL;
}

static inline void write_file(const char *rel, const void *buf, size_t len) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot create %s: %s", path, strerror(errno));
  cr_assert_eq(fwrite(buf, 1, len, f), len);
  fclose(f);
}

#define EXPECT_DIMS(v, ...)                                                               \
  do {                                                                                    \
    const int64_t want_[] = {__VA_ARGS__};                                                \
    int n_ = (int)(sizeof want_ / sizeof *want_);                                         \
    cr_assert_eq((v)->rank, n_, "rank %d, expected %d", (v)->rank, n_);                   \
    for (int i_ = 0; i_ < n_; i_++)                                                       \
      cr_assert_eq((v)->dims[i_], want_[i_], "dim %d is %lld, expected %lld", i_,         \
                   (long long)(v)->dims[i_], (long long)want_[i_]);                       \
  } while (0)

#endif
