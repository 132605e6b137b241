/* kiln_shuffle.h: the order in which kiln's training programs visit a
 * data set, specified exactly so that every implementation (the C written
 * by `kiln emit-c --train`, `kiln train`, a NumPy reference in a test)
 * visits the very same samples in the very same mini-batches.
 *
 * Generator: splitmix64 (Steele, Lea, Flood 2014; the seeding generator of
 * xoshiro), 64-bit state s, starting at s = seed:
 *     s += 0x9E3779B97F4A7C15
 *     z  = s
 *     z  = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9     (mod 2^64)
 *     z  = (z ^ (z >> 27)) * 0x94D049BB133111EB     (mod 2^64)
 *     return z ^ (z >> 31)
 * Epoch order: one generator for the whole run, seeded once.  At the start
 * of every epoch the order is reset to 0, 1, ..., n-1 and shuffled by
 * Fisher-Yates from the top: for i = n-1 down to 1, j = next() mod (i+1),
 * swap order[i] and order[j].  (The modulo's bias is below n / 2^64.)
 * Mini-batches are order[b*B .. b*B+B-1] for b = 0 .. floor(n/B)-1: the
 * last, short batch is dropped.
 *
 * Plain C99, header-only, no global state. */
#ifndef KILN_SHUFFLE_H
#define KILN_SHUFFLE_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t kiln_splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* One epoch's order of n samples (order has n entries), drawn from *s. */
static inline void kiln_shuffle_epoch(uint64_t *s, int64_t *order, int64_t n) {
  int64_t i;
  for (i = 0; i < n; i++) order[i] = i;
  for (i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(kiln_splitmix64(s) % (uint64_t)(i + 1));
    int64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

#endif
