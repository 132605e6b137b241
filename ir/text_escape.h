/* Model strings on a terminal or in a text report.  A model's names, its
 * producer, a symbolic dim's name are hostile input: a newline forges a
 * line of a report, ESC [ ... drives the user's terminal, invalid UTF-8
 * garbles what follows.  Every model string that kiln prints for a person
 * (inspect, run's summary, the graph and loop IR dumps, error messages) goes
 * through the display door; `inspect --json` goes through the JSON door.
 *
 * Display (one rule, reversible: read `\\` as `\` and `\xHH` as that byte):
 *   printable ASCII kept, backslash written `\\`;
 *   control bytes (0x00-0x1f), DEL and every byte of invalid UTF-8 as \xHH;
 *   well-formed UTF-8 kept, except the characters a terminal or a reader
 *   would obey rather than show -- C1 controls (U+0080-U+009F, which some
 *   terminals take as CSI etc.), the line and paragraph separators and the
 *   bidirectional embeddings, overrides and isolates -- whose bytes are
 *   written as \xHH too.
 *
 * JSON (RFC 8259 string, quotes included): `\"`, `\\`, the same controls
 * and characters as \uXXXX (exact: json.loads gives the name back), other
 * well-formed UTF-8 kept, and each byte of invalid UTF-8 as \ufffd (JSON
 * cannot carry it), so the output is always valid UTF-8 JSON. */
#ifndef KILN_TEXT_ESCAPE_H
#define KILN_TEXT_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* Writes s (NULL prints nothing) in display form; returns the columns it
 * takes (a UTF-8 character counts as one), for padding tables. */
int kiln_put_display(FILE *f, const char *s);
/* Writes s in display form then spaces up to `width` columns. */
void kiln_put_display_pad(FILE *f, const char *s, int width);

/* Display form of s into dst (size > 0): whole escapes and characters only,
 * always terminated; stops early when dst is full.  Returns the number of
 * bytes of s consumed (strlen(s) when all of it fit). */
size_t kiln_display_escape(char *dst, size_t size, const char *s);

/* Writes s as a JSON string, quotes included. */
void kiln_put_json_string(FILE *f, const char *s);

#endif
