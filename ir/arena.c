/* Bump arena in chained blocks.  Large requests get a block of their own so
 * a 100 MB weight copy does not waste a following small block. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_arena_block {
  kiln_arena_block *next;
  void *raw; /* what calloc returned (the block sits 64-aligned inside it) */
  size_t used, cap;
  _Alignas(64) unsigned char data[];
};

enum { KILN_ARENA_BLOCK = 1 << 16 };

void kiln_arena_init(kiln_arena *a) { a->head = NULL; a->total = 0; }

void kiln_arena_free(kiln_arena *a) {
  kiln_arena_block *b = a->head;
  while (b) {
    kiln_arena_block *next = b->next;
    free(b->raw);
    b = next;
  }
  a->head = NULL;
  a->total = 0;
}

/* A zeroed block.  calloc, not aligned_alloc + memset: a large calloc is
 * fresh mmap'ed pages, zero already, so a 100 MB weight copy is touched once
 * (by whoever fills it), not twice (ResNet-50's compile spent ~100 ms
 * zeroing weight copies it then overwrote). */
static kiln_arena_block *new_block(size_t cap) {
  size_t need = sizeof(kiln_arena_block) + cap + 63;
  void *raw = need > cap ? calloc(1, need) : NULL;
  if (!raw) {
    fprintf(stderr, "kiln: fatal: out of memory (asked for %zu bytes)\n", cap);
    abort();
  }
  kiln_arena_block *b = (kiln_arena_block *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  b->raw = raw;
  b->next = NULL;
  b->used = 0;
  b->cap = cap;
  return b;
}

void *kiln_arena_alloc(kiln_arena *a, size_t size) {
  size_t align = size >= 64 ? 64 : 16;
  if (size == 0) size = 1;
  kiln_arena_block *b = a->head;
  size_t off = b ? (b->used + align - 1) & ~(align - 1) : 0;
  if (!b || off + size > b->cap) {
    if (size > KILN_ARENA_BLOCK / 4) {
      /* Own block, linked behind the head so the head keeps filling. */
      kiln_arena_block *big = new_block(size);
      big->used = size;
      if (b) { big->next = b->next; b->next = big; }
      else a->head = big;
      a->total += size;
      return big->data;
    }
    b = new_block(KILN_ARENA_BLOCK);
    b->next = a->head;
    a->head = b;
    off = 0;
  }
  b->used = off + size;
  a->total += size;
  return b->data + off; /* zero: blocks are calloc'ed and never reused */
}

void *kiln_arena_array(kiln_arena *a, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) {
    fprintf(stderr, "kiln: fatal: allocation size overflow\n");
    abort();
  }
  return kiln_arena_alloc(a, n * size);
}

char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n) {
  char *d = kiln_arena_alloc(a, n + 1);
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *kiln_arena_strdup(kiln_arena *a, const char *s) {
  return s ? kiln_arena_strndup(a, s, strlen(s)) : NULL;
}

void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t n) {
  void *d = kiln_arena_alloc(a, n);
  if (n) memcpy(d, p, n);
  return d;
}

char *kiln_arena_printf(kiln_arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *d = kiln_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
  va_start(ap, fmt);
  vsnprintf(d, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return d;
}
