/* Bump-pointer arena: every allocation of one compilation lives here and is
 * released at once by kiln_arena_free.  Nothing allocated from an arena is
 * freed individually, so IR code never has to decide who owns a node or a
 * shape array.  Allocation failure is fatal (an out-of-memory compiler has
 * no sensible way to continue): the process aborts with one line. */
#ifndef KILN_ARENA_H
#define KILN_ARENA_H

#include <stddef.h>

typedef struct kiln_arena_block kiln_arena_block;

typedef struct kiln_arena {
  kiln_arena_block *head; /* newest block; older blocks chain behind it */
  size_t total;           /* bytes handed out, for summaries */
} kiln_arena;

void kiln_arena_init(kiln_arena *a);
void kiln_arena_free(kiln_arena *a);
/* Zero-filled, 16-byte aligned (64 for sizes >= 64 so tensors vectorise). */
void *kiln_arena_alloc(kiln_arena *a, size_t size);
/* Like kiln_arena_alloc but n*size with overflow check. */
void *kiln_arena_array(kiln_arena *a, size_t n, size_t size);
char *kiln_arena_strdup(kiln_arena *a, const char *s);
char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n);
char *kiln_arena_printf(kiln_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t n);

#endif
