/* Parameter initializers.  Each parameter draws from its own stream, seeded
 * from the network's seed (or the layer's seed=) and the parameter's name,
 * so adding a layer leaves every other layer's weights unchanged and the
 * same file always gives the same weights, on every machine: the generator
 * is SplitMix64 (integer only), uniforms are 24-bit exact, normals come
 * from Box-Muller in double precision.  No global state.
 *
 * Fans follow PyTorch (fan_in = input channels per group x receptive field):
 *   he / he_normal / kaiming   N(0, 2 / fan_in)          (ReLU networks)
 *   he_uniform                 U(-a, a), a = sqrt(6 / fan_in)
 *   xavier / glorot (uniform)  U(-a, a), a = sqrt(6 / (fan_in + fan_out))
 *   xavier_normal              N(0, 2 / (fan_in + fan_out))
 *   lecun                      N(0, 1 / fan_in)
 *   normal(s), uniform(a), constant(v), zeros, ones */
#include <math.h>
#include <string.h>

#include "dsl_internal.h"

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
  return h;
}

/* Uniform in (0, 1): 24 random bits, never exactly 0 (Box-Muller takes a log). */
static double uniform01(uint64_t *st) { return ((double)(splitmix64(st) >> 40) + 0.5) / 16777216.0; }

int dsl_init_by_name(const char *name, dsl_val *out) {
  static const struct { const char *name; dsl_init_kind kind; double arg; } names[] = {
      {"he", I_HE_NORMAL, 0},           {"he_normal", I_HE_NORMAL, 0},         {"kaiming", I_HE_NORMAL, 0},
      {"kaiming_normal", I_HE_NORMAL, 0}, {"he_uniform", I_HE_UNIFORM, 0},     {"kaiming_uniform", I_HE_UNIFORM, 0},
      {"xavier", I_XAVIER_UNIFORM, 0},  {"xavier_uniform", I_XAVIER_UNIFORM, 0}, {"glorot", I_XAVIER_UNIFORM, 0},
      {"glorot_uniform", I_XAVIER_UNIFORM, 0}, {"xavier_normal", I_XAVIER_NORMAL, 0},
      {"glorot_normal", I_XAVIER_NORMAL, 0}, {"lecun", I_LECUN_NORMAL, 0},     {"lecun_normal", I_LECUN_NORMAL, 0},
      {"zeros", I_CONSTANT, 0},         {"ones", I_CONSTANT, 1},
  };
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(name, names[i].name)) {
      *out = (dsl_val){.kind = V_INIT, .i = names[i].kind, .f = names[i].arg};
      return 0;
    }
  return -1;
}

void dsl_init_fill(float *out, int64_t n, const dsl_val *init, uint64_t seed, const char *name, int64_t fan_in,
                   int64_t fan_out) {
  uint64_t st = seed;
  st = splitmix64(&st) ^ fnv1a(name);
  double fi = fan_in > 0 ? (double)fan_in : 1, fo = fan_out > 0 ? (double)fan_out : 1;
  double std = 0, lim = 0;
  int normal = 0;
  switch ((dsl_init_kind)init->i) {
  case I_HE_NORMAL: normal = 1; std = sqrt(2.0 / fi); break;
  case I_HE_UNIFORM: lim = sqrt(6.0 / fi); break;
  case I_XAVIER_NORMAL: normal = 1; std = sqrt(2.0 / (fi + fo)); break;
  case I_XAVIER_UNIFORM: lim = sqrt(6.0 / (fi + fo)); break;
  case I_LECUN_NORMAL: normal = 1; std = sqrt(1.0 / fi); break;
  case I_NORMAL: normal = 1; std = init->f; break;
  case I_UNIFORM: lim = init->f; break;
  case I_CONSTANT:
    for (int64_t i = 0; i < n; i++) out[i] = (float)init->f;
    return;
  }
  if (!normal) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)(lim * (2.0 * uniform01(&st) - 1.0));
    return;
  }
  for (int64_t i = 0; i < n; i += 2) { /* Box-Muller gives two normals per pair of uniforms */
    double r = std * sqrt(-2.0 * log(uniform01(&st))), th = 2.0 * M_PI * uniform01(&st);
    out[i] = (float)(r * cos(th));
    if (i + 1 < n) out[i + 1] = (float)(r * sin(th));
  }
}
