/* Formatting of located diagnostics. */
#include "diag.h"
#include "text_escape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kiln_loc_format(const kiln_loc *loc, char *buf, int size) {
  int n = 0;
  buf[0] = 0;
  if (!loc) return;
#define PUT(...)                                                      \
  do {                                                                \
    if (n < size) n += snprintf(buf + n, (size_t)(size - n), __VA_ARGS__); \
  } while (0)
  if (loc->file) PUT("%s", loc->file);
  if (loc->line > 0) PUT(":%d:%d", loc->line, loc->col);
  if (loc->op_type && loc->line > 0) { /* DSL: the layer as the user wrote it */
    if (n) PUT(": ");
    if (loc->node_name && loc->node_name[0]) PUT("%s '%s'", loc->op_type, loc->node_name);
    else PUT("%s", loc->op_type);
  } else if (loc->op_type) {
    if (n) PUT(": ");
    if (loc->node_name && loc->node_name[0])
      PUT("node '%s' (%s)", loc->node_name, loc->op_type);
    else
      PUT("node #%d (%s)", loc->node_index, loc->op_type);
  }
#undef PUT
}

/* Appends "\n  12 | <source line>\n     |     ^" (the line cut at 160 bytes
 * and shown in display form, tabs kept; the caret line holds one space per
 * column of what is shown before the caret, a tab where the line has one). */
static void append_excerpt(char *msg, size_t size, const kiln_loc *loc) {
  const char *p = loc->source;
  for (int l = 1; l < loc->line && *p; p++)
    if (*p == '\n') l++;
  int len = 0;
  while (p[len] && p[len] != '\n' && p[len] != '\r' && len < 160) len++;
  size_t n = strlen(msg);
  if (n >= size) return;
  int w = snprintf(msg + n, size - n, "\n%5d | ", loc->line);
  if (w < 0 || (size_t)w >= size - n) return;
  n += (size_t)w;
  /* The line in pieces between tabs, so tabs stay tabs. */
  for (int i = 0; i < len && n + 1 < size;) {
    char piece[161];
    int k = 0;
    while (i + k < len && p[i + k] != '\t') { piece[k] = p[i + k]; k++; }
    piece[k] = 0;
    size_t used = kiln_display_escape(msg + n, size - n, piece);
    n += strlen(msg + n);
    if ((int)used < k) return; /* msg is full */
    i += k;
    if (i < len && n + 1 < size) { msg[n++] = '\t'; msg[n] = 0; i++; }
  }
  /* Columns before the caret: the display width of the first col-1 bytes. */
  char head[161];
  int hl = loc->col - 1 < len ? loc->col - 1 : len;
  memcpy(head, p, (size_t)(hl > 0 ? hl : 0));
  head[hl > 0 ? hl : 0] = 0;
  w = snprintf(msg + n, size - n, "\n      | ");
  if (w < 0 || (size_t)w >= size - n) return;
  n += (size_t)w;
  for (int i = 0; head[i] && n + 2 < size;) {
    if (head[i] == '\t') { msg[n++] = '\t'; i++; continue; }
    int k = 0;
    char piece[161];
    while (head[i + k] && head[i + k] != '\t') { piece[k] = head[i + k]; k++; }
    piece[k] = 0;
    char shown[161 * 4 + 1];
    kiln_display_escape(shown, sizeof shown, piece);
    /* one column per shown character: count UTF-8 lead bytes */
    for (const unsigned char *c = (const unsigned char *)shown; *c && n + 2 < size; c++)
      if ((*c & 0xC0) != 0x80) msg[n++] = ' ';
    i += k;
  }
  if (n + 2 <= size) { msg[n++] = '^'; msg[n] = 0; }
}

int kiln_verror(kiln_diag *d, const kiln_loc *loc, const char *fmt, va_list ap) {
  if (!d || d->failed) return -1;
  d->failed = 1;
  char where[512], raw[sizeof d->msg];
  kiln_loc_format(loc, where, sizeof where);
  int n = 0;
  if (where[0]) n = snprintf(raw, sizeof raw, "%s: ", where);
  if (n < 0 || n >= (int)sizeof raw) n = 0;
  vsnprintf(raw + n, sizeof raw - (size_t)n, fmt, ap);
  kiln_display_escape(d->msg, sizeof d->msg, raw);
  if (loc && loc->line > 0 && loc->source) append_excerpt(d->msg, sizeof d->msg, loc);
  return -1;
}

int kiln_error(kiln_diag *d, const kiln_loc *loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(d, loc, fmt, ap);
  va_end(ap);
  return -1;
}

void kiln_assert_fail(const char *what, const char *file, int line) {
  fprintf(stderr, "kiln: internal error: %s:%d: assertion '%s' failed\n", file, line, what);
  abort();
}
