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
  if (loc->op_type) {
    if (n) PUT(": ");
    if (loc->node_name && loc->node_name[0])
      PUT("node '%s' (%s)", loc->node_name, loc->op_type);
    else
      PUT("node #%d (%s)", loc->node_index, loc->op_type);
  }
#undef PUT
}

int kiln_verror(kiln_diag *d, const kiln_loc *loc, const char *fmt, va_list ap) {
  if (!d || d->failed) return -1;
  d->failed = 1;
  char where[512];
  kiln_loc_format(loc, where, sizeof where);
  int n = 0;
  if (where[0]) n = snprintf(d->msg, sizeof d->msg, "%s: ", where);
  if (n < 0 || n >= (int)sizeof d->msg) n = 0;
  vsnprintf(d->msg + n, sizeof d->msg - (size_t)n, fmt, ap);
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
