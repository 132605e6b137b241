/* Suite listing and the expectations file format:
 *   # comment
 *   <case>  <status>  [reason...]
 * one case per line, columns separated by spaces. */
#include "suite.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../passes/passes.h"

static int cmp_case(const void *a, const void *b) {
  return strcmp(((const suite_case *)a)->name, ((const suite_case *)b)->name);
}

int suite_list(const char *root, suite_case *cases, int max) {
  static const char *const parts[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
  int n = 0, found_any = 0;
  for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, parts[p]);
    DIR *d = opendir(dir);
    if (!d) continue;
    found_any = 1;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
      if (e->d_name[0] == '.') continue;
      char model[1400];
      struct stat st;
      snprintf(model, sizeof model, "%s/%s/model.onnx", dir, e->d_name);
      if (stat(model, &st) != 0) continue;
      snprintf(cases[n].name, sizeof cases[n].name, "%s/%s", parts[p], e->d_name);
      snprintf(cases[n].dir, sizeof cases[n].dir, "%s/%s", dir, e->d_name);
      n++;
    }
    closedir(d);
  }
  if (!found_any) return -1;
  qsort(cases, (size_t)n, sizeof *cases, cmp_case);
  return n;
}

int suite_read_expect(const char *path, suite_expect *e, int max) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < max) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0] || line[0] == '#') continue;
    char *name = strtok(line, " "), *status = strtok(NULL, " "), *reason = strtok(NULL, "");
    if (!name || !status) continue;
    while (reason && *reason == ' ') reason++;
    snprintf(e[n].name, sizeof e[n].name, "%s", name);
    snprintf(e[n].status, sizeof e[n].status, "%s", status);
    snprintf(e[n].reason, sizeof e[n].reason, "%s", reason ? reason : "");
    n++;
  }
  fclose(f);
  return n;
}

const suite_expect *suite_find_expect(const suite_expect *e, int n, const char *name) {
  int lo = 0, hi = n - 1; /* the file is kept sorted; fall back to a scan */
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(e[mid].name, name);
    if (!c) return &e[mid];
    if (c < 0) lo = mid + 1; else hi = mid - 1;
  }
  for (int i = 0; i < n; i++)
    if (!strcmp(e[i].name, name)) return &e[i];
  return NULL;
}

void suite_set(suite_run *r, const char *status, const char *reason) {
  snprintf(r->status, sizeof r->status, "%s", status);
  snprintf(r->reason, sizeof r->reason, "%s", reason);
  for (char *p = r->reason; *p; p++) if (*p == '\n') *p = ' ';
}

/* Drops the "FILE: " prefix so reasons do not depend on where the suite lives. */
static const char *strip_file(const char *msg, const char *file) {
  size_t n = strlen(file);
  if (!strncmp(msg, file, n) && msg[n] == ':') return msg + n + 2;
  return msg;
}

void suite_fail_diag(suite_run *r, const suite_case *c, const kiln_diag *d) {
  char model[1400];
  snprintf(model, sizeof model, "%s/model.onnx", c->dir);
  suite_set(r, "known-fail", strip_file(d->msg, model));
}

int suite_count_sets(const suite_case *c) {
  int n = 0;
  for (;; n++) {
    char path[1400];
    struct stat st;
    snprintf(path, sizeof path, "%s/test_data_set_%d", c->dir, n);
    if (stat(path, &st) != 0) return n;
  }
}

int suite_read_output(const suite_case *c, int set, int k, kiln_tensor *t, kiln_diag *d) {
  char path[1500];
  snprintf(path, sizeof path, "%s/test_data_set_%d/output_%d.pb", c->dir, set, k);
  return kiln_onnx_read_tensor_file(path, t, d);
}

int suite_prepare(const suite_case *c, int set, suite_run *r) {
  char model[1400], path[1500];
  memset(r, 0, sizeof *r);
  snprintf(model, sizeof model, "%s/model.onnx", c->dir);
  kiln_diag d = {0};
  r->g = kiln_onnx_load(model, &d);
  if (!r->g) {
    const char *msg = strip_file(d.msg, model);
    suite_set(r, strstr(msg, "unsupported op") ? "unsupported" : "known-fail", msg);
    return -1;
  }
  kiln_graph *g = r->g;
  r->nin = g->ninputs < SUITE_MAX_IO ? g->ninputs : SUITE_MAX_IO;
  for (int i = 0; i < r->nin; i++) r->inputs[i] = g->inputs[i];
  char *deciding = kiln_pass_shape_deciding(g);
  for (int i = 0; i < r->nin; i++) {
    kiln_value *v = r->inputs[i];
    kiln_tensor *t = &r->in[i];
    snprintf(path, sizeof path, "%s/test_data_set_%d/input_%d.pb", c->dir, set, i);
    if (kiln_onnx_read_tensor_file(path, t, &d)) {
      suite_set(r, "known-fail", strip_file(d.msg, c->dir));
      break;
    }
    if (t->rank != v->rank || t->dtype != v->dtype) {
      char why[600];
      snprintf(why, sizeof why, "input '%s' data is %s rank %d, model says %s rank %d", v->name,
               kiln_dtype_name(t->dtype), t->rank, kiln_dtype_name(v->dtype), v->rank);
      suite_set(r, "known-fail", why);
      break;
    }
    for (int k = 0; k < v->rank; k++)
      if (KILN_DIM_IS_SYM(v->dims[k])) kiln_pass_bind_sym(g, v->dims[k], t->dims[k]);
    if (deciding[v->id]) {
      if (kiln_pass_bind_input(g, v->name, t->dtype, t->rank, t->dims, t->data, &d)) {
        suite_set(r, "known-fail", strip_file(d.msg, model));
        break;
      }
      r->bound[i] = 1;
    }
  }
  free(deciding);
  if (r->status[0]) return -1;
  if (kiln_pass_infer_shapes(g, &d)) {
    suite_set(r, "known-fail", strip_file(d.msg, model));
    return -1;
  }
  return 0;
}

void suite_run_free(suite_run *r) {
  for (int i = 0; i < SUITE_MAX_IO; i++) kiln_tensor_free(&r->in[i]);
  kiln_graph_free(r->g);
  r->g = NULL;
}

typedef struct result { char status[32], reason[512]; } result;

/* --only A,B,C: a case runs when its name contains any of the substrings. */
static int selected(const char *name, const char *only) {
  if (!only) return 1;
  for (const char *p = only; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    for (const char *q = name; len && *q; q++)
      if (!strncmp(q, p, len)) return 1;
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

int suite_main(int argc, char **argv, const char *title, suite_case_fn fn) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SUITE_DIR EXPECT_FILE [--update] [--only SUBSTRING[,SUBSTRING...]]\n", argv[0]);
    return 2;
  }
  int update = 0;
  const char *only = NULL;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--update")) update = 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
  }
  static suite_case cases[SUITE_MAX_CASES];
  static suite_expect expect[SUITE_MAX_CASES];
  static result res[SUITE_MAX_CASES];
  int n = suite_list(argv[1], cases, SUITE_MAX_CASES);
  if (n < 0) {
    fprintf(stderr, "conformance: suite not found at %s\n", argv[1]);
    return 2;
  }
  int ne = suite_read_expect(argv[2], expect, SUITE_MAX_CASES);
  int pass = 0, unsupported = 0, known = 0, regressed = 0, unlisted = 0, ran = 0;
  for (int i = 0; i < n; i++) {
    if (!selected(cases[i].name, only)) continue;
    ran++;
    suite_run r;
    memset(&r, 0, sizeof r);
    fn(&cases[i], &r);
    if (!r.status[0]) suite_set(&r, "known-fail", "runner gave no verdict");
    snprintf(res[i].status, sizeof res[i].status, "%s", r.status);
    snprintf(res[i].reason, sizeof res[i].reason, "%s", r.reason);
    suite_run_free(&r);
    const suite_expect *e = suite_find_expect(expect, ne, cases[i].name);
    int ok = !strcmp(res[i].status, "pass");
    pass += ok;
    unsupported += !strcmp(res[i].status, "unsupported");
    known += !strcmp(res[i].status, "known-fail");
    if (!e) {
      unlisted++;
      if (!update) printf("NEW       %s: %s %s\n", cases[i].name, res[i].status, res[i].reason);
    } else if (!strcmp(e->status, "pass") && !ok) {
      regressed++;
      printf("REGRESSED %s: %s\n", cases[i].name, res[i].reason);
    } else if (strcmp(e->status, "pass") && ok) {
      printf("FIXED     %s (listed %s: update the expectations)\n", cases[i].name, e->status);
    }
  }
  printf("conformance (%s): %d cases: %d pass, %d known-fail, %d unsupported op\n", title, ran, pass, known,
         unsupported);
  if (update && !only) {
    FILE *f = fopen(argv[2], "w");
    if (!f) { perror(argv[2]); return 2; }
    fprintf(f, "# ONNX backend-suite expectations: %s.\n"
               "# Regenerate: build/tests/<runner> SUITE_DIR <this file> --update, then review the diff.\n"
               "# status: pass | known-fail (kiln supports the ops but not this case) | unsupported (an op\n"
               "# outside kiln's op set).  A `pass` that fails makes the test fail.\n", title);
    for (int i = 0; i < n; i++) {
      /* a reason a person wrote for an unchanged status is kept */
      const suite_expect *e = suite_find_expect(expect, ne, cases[i].name);
      const char *reason = e && !strcmp(e->status, res[i].status) && e->reason[0] ? e->reason : res[i].reason;
      fprintf(f, "%-72s %-12s %s\n", cases[i].name, res[i].status, reason);
    }
    fclose(f);
  }
  /* Unlisted cases (a suite regenerated by a newer onnx) are reported, not
   * failed: only a listed pass that stops passing is a regression. */
  if (unlisted && !update) printf("%d cases are not in the expectations file (listed NEW above)\n", unlisted);
  printf("%d passed, %d failed\n", ran - regressed, regressed);
  return regressed ? 1 : 0;
}
