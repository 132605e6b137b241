/* String -> pointer hash map in an arena (value names during import). */
#ifndef KILN_STRMAP_H
#define KILN_STRMAP_H

#include "arena.h"

typedef struct kiln_strmap {
  kiln_arena *arena;
  const char **keys;
  void **vals;
  int cap, count;
} kiln_strmap;

void kiln_strmap_init(kiln_strmap *m, kiln_arena *a);
void *kiln_strmap_get(const kiln_strmap *m, const char *key);
/* Inserts or replaces; the key must outlive the map. */
void kiln_strmap_put(kiln_strmap *m, const char *key, void *val);

#endif
