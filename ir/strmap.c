/* Open addressing with linear probing; grows at 50% load.  Old tables are
 * abandoned in the arena. */
#include "strmap.h"

#include <stdint.h>
#include <string.h>

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

void kiln_strmap_init(kiln_strmap *m, kiln_arena *a) {
  memset(m, 0, sizeof *m);
  m->arena = a;
}

void *kiln_strmap_get(const kiln_strmap *m, const char *key) {
  if (!m->cap) return NULL;
  for (uint64_t i = hash(key) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
    if (!m->keys[i]) return NULL;
    if (strcmp(m->keys[i], key) == 0) return m->vals[i];
  }
}

static void raw_put(const char **keys, void **vals, int cap, const char *key, void *val) {
  for (uint64_t i = hash(key) & (uint64_t)(cap - 1);; i = (i + 1) & (uint64_t)(cap - 1)) {
    if (!keys[i] || strcmp(keys[i], key) == 0) {
      keys[i] = key;
      vals[i] = val;
      return;
    }
  }
}

void kiln_strmap_put(kiln_strmap *m, const char *key, void *val) {
  if (2 * (m->count + 1) > m->cap) {
    int nc = m->cap ? m->cap * 2 : 64;
    const char **nk = kiln_arena_array(m->arena, (size_t)nc, sizeof *nk);
    void **nv = kiln_arena_array(m->arena, (size_t)nc, sizeof *nv);
    for (int i = 0; i < m->cap; i++)
      if (m->keys[i]) raw_put(nk, nv, nc, m->keys[i], m->vals[i]);
    m->keys = nk;
    m->vals = nv;
    m->cap = nc;
  }
  if (!kiln_strmap_get(m, key)) m->count++;
  raw_put(m->keys, m->vals, m->cap, key, val);
}
