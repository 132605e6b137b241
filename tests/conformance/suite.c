/* Suite listing and the expectations file format:
 *   # comment
 *   <case>  <status>  [reason...]
 * one case per line, columns separated by spaces. */
#include "suite.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
