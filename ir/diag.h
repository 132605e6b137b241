/* Diagnostics: library code never prints or exits on a user error.  It
 * records one formatted message (the first error wins: later ones are
 * usually consequences) and returns a failure status; the CLI prints it as
 * `kiln: error: MSG`.  A location names the file and either the ONNX node
 * (name and index) or a DSL line:column; a DSL location that carries its
 * source text also gets the source line and a caret under the column.
 * The message is stored in display form (ir/text_escape.h): the model
 * strings it quotes cannot break its line or reach the terminal raw. */
#ifndef KILN_DIAG_H
#define KILN_DIAG_H

#include <stdarg.h>
#include <stdio.h>

typedef struct kiln_loc {
  const char *file;      /* model path, or NULL */
  const char *node_name; /* ONNX node name ("" when the model has none) */
  const char *op_type;   /* ONNX op type as written in the model */
  int node_index;        /* position in the source graph, -1 if none */
  int line, col;         /* DSL source position (1-based, col in bytes), 0 if none */
  const char *source;    /* DSL: the whole source text, for the line + caret
                            excerpt under a message; NULL otherwise */
} kiln_loc;

typedef struct kiln_diag {
  int failed;         /* non-zero once an error was recorded */
  char msg[1024];     /* the first error, fully formatted with location */
  char note[512];     /* an optional second line of advice */
} kiln_diag;

/* Records "FILE: node 'NAME' (Op): <fmt>" (only the parts loc has); for a
 * DSL location "FILE:LINE:COL: kind 'NAME': <fmt>", then, when loc->source
 * is set, the source line and a caret on two more lines.
 * Returns -1 so callers can `return kiln_error(...)`. */
int kiln_error(kiln_diag *d, const kiln_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kiln_verror(kiln_diag *d, const kiln_loc *loc, const char *fmt, va_list ap);
/* Formats just the location prefix ("FILE: node 'x' (Conv)") into buf. */
void kiln_loc_format(const kiln_loc *loc, char *buf, int size);

#define KILN_ASSERT(cond)                                                   \
  do {                                                                      \
    if (!(cond)) kiln_assert_fail(#cond, __FILE__, __LINE__);               \
  } while (0)
_Noreturn void kiln_assert_fail(const char *what, const char *file, int line);

#endif
