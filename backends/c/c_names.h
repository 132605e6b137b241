/* Model strings in generated C: every name, producer or doc string that a
 * model carries is hostile input, and must never become C that the model
 * author wrote.  Everything kiln prints into C source, headers, example
 * programs and Makefiles goes through one of these three doors:
 *
 *   kiln_c_put_comment  text inside a comment (block, line or Makefile `#`)
 *   kiln_c_put_string   the body of a C string literal (exact bytes)
 *   kiln_c_idents       identifiers: distinct, deterministic, bounded
 *
 * Their output is printable ASCII only, so a generated file is ASCII too. */
#ifndef KILN_C_NAMES_H
#define KILN_C_NAMES_H

#include <stdio.h>

#include "../../ir/arena.h"

/* Writes s for use inside any comment: no newline, no comment terminator or
 * opener, no trigraph, no line splice; bytes outside printable ASCII (and
 * the characters that could form those) are shown as \xHH.  At most max
 * bytes of s are shown, then "...(N bytes)"; names use KILN_C_NAME_SHOWN. */
void kiln_c_put_comment(FILE *f, const char *s, size_t max);
enum { KILN_C_NAME_SHOWN = 160 };

/* Writes s as the inside of a C string literal (without the quotes): the
 * literal's value is exactly s.  Safe for -std=c99 (trigraphs) and -Wall. */
void kiln_c_put_string(FILE *f, const char *s);

/* Writes the comment-safe text of s (at most KILN_C_NAME_SHOWN bytes of it)
 * as a C string literal, quotes included: for names an example program
 * prints on a terminal, where control bytes must not arrive raw. */
void kiln_c_put_display_string(FILE *f, const char *s);

/* n distinct identifier fragments for names[0..n): letters and digits joined
 * by single underscores, no leading or trailing underscore, at most 52
 * characters, never equal to one of `taken` (NULL-terminated list, may be
 * NULL).  A name that is not already such a fragment, and whose fragment
 * another name shares (or is taken, or empty), gets a suffix "_h" and 8 hex
 * digits of a hash of its exact bytes, so `a.b` and `a-b` differ whatever
 * their order; remaining collisions (equal names) get "_2", "_3", ... in
 * order.  upper: letters
 * upper-cased (for macros).  Callers join them after a prefix (`in_`, `X_`),
 * so the result is never a keyword or reserved identifier by itself. */
char **kiln_c_idents(kiln_arena *a, const char *const *names, int n, int upper, const char *const *taken);

#endif
