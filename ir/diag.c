/* Formatting of located diagnostics. */
#include "diag.h"

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

/* Appends "\n  12 | <source line>\n     |     ^" (the line cut at 160 bytes;
 * tabs are kept in the caret line so the caret lines up; a multi-byte UTF-8
 * character counts as one column). */
static void append_excerpt(char *msg, size_t size, const kiln_loc *loc) {
  const char *p = loc->source;
  for (int l = 1; l < loc->line && *p; p++)
    if (*p == '\n') l++;
  int len = 0;
  while (p[len] && p[len] != '\n' && p[len] != '\r' && len < 160) len++;
  size_t n = strlen(msg);
  if (n >= size) return;
  int w = snprintf(msg + n, size - n, "\n%5d | %.*s\n      | ", loc->line, len, p);
  if (w < 0 || (size_t)w >= size - n) return;
  n += (size_t)w;
  for (int i = 0; i < loc->col - 1 && i < len && n + 2 < size; i++) {
    unsigned char ch = (unsigned char)p[i];
    if ((ch & 0xC0) == 0x80) continue;
    msg[n++] = ch == '\t' ? '\t' : ' ';
  }
  if (n + 2 <= size) { msg[n++] = '^'; msg[n] = 0; }
}

/* Copies src into dst with control bytes (a model's names may hold
 * newlines or terminal escapes) written as \xHH: a message stays one line
 * and prints as text. */
static void copy_escaped(char *dst, size_t size, const char *src) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)src; *p && n + 1 < size; p++) {
    if (*p >= 0x20 && *p != 0x7f) dst[n++] = (char)*p;
    else if (n + 5 < size) n += (size_t)snprintf(dst + n, size - n, "\\x%02x", *p);
    else break;
  }
  dst[n] = 0;
}

void kiln_put_shown(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p != 0x7f) fputc(*p, f);
    else fprintf(f, "\\x%02x", *p);
  }
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
  copy_escaped(d->msg, sizeof d->msg, raw);
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
