/* Class names for `kiln run --image`: from a labels file or the model's
 * metadata, and the escaping that model- and user-derived text needs on a
 * terminal and in a CSV file. */
#ifndef KILN_LABELS_H
#define KILN_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/diag.h"
#include "../ir/graph.h"

typedef struct kiln_labels {
  char **names; /* names[i] is class i's name, or NULL */
  int64_t n;
} kiln_labels;

/* One class per line, or "INDEX,NAME" lines (as imagenet-labels.txt);
 * blank lines end nothing and are skipped only at the end.  src names the
 * origin in messages. */
int kiln_labels_parse(const char *text, size_t len, const char *src, kiln_labels *l, kiln_diag *d);
int kiln_labels_read(const char *path, kiln_labels *l, kiln_diag *d);
/* From metadata key "kiln.labels", else "character" (same format); no key: l->n == 0. */
int kiln_labels_from_meta(const kiln_graph *g, kiln_labels *l, kiln_diag *d);
const char *kiln_labels_get(const kiln_labels *l, int64_t i);
void kiln_labels_free(kiln_labels *l);

/* Text safe for a terminal: kiln_display_escape's display form (control
 * bytes, invalid UTF-8, C1 and bidi controls as \xNN, backslash as \\),
 * truncated to fit (always terminated). */
void kiln_text_escape(const char *s, char *out, size_t size);
/* A CSV field (RFC 4180): quoted, quotes doubled, the text escaped as
 * above, and a leading = + - @ prefixed with ' so spreadsheets do not
 * evaluate it as a formula. */
void kiln_csv_field(const char *s, char *out, size_t size);

#endif
