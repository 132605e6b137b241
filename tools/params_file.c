/* kiln's parameter files (the format is specified in tools/emit_c_train.c:
 * "KILNPAR1", a count, then name / dtype / shape / raw little-endian data
 * per tensor), read back into a model: each tensor replaces the float
 * initializer of the same name.  The file is hostile input: every length
 * is checked against what is left of the file, every shape's product
 * against its byte count, and a name must be an initializer of the model,
 * named once.  A shape may differ from the model's (a new classifier head
 * from --new-classes): shape inference, which runs after, checks it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct rd { const unsigned char *p; size_t left; } rd;

static int take(rd *r, void *out, size_t n) {
  if (n > r->left) return -1;
  if (out) memcpy(out, r->p, n);
  r->p += n;
  r->left -= n;
  return 0;
}

static int u32(rd *r, uint32_t *v) {
  unsigned char b[4];
  if (take(r, b, 4)) return -1;
  *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  return 0;
}

static int u64(rd *r, uint64_t *v) {
  uint32_t lo, hi;
  if (u32(r, &lo) || u32(r, &hi)) return -1;
  *v = (uint64_t)hi << 32 | lo;
  return 0;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *buf = NULL;
  long n;
  if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n + 1)) &&
      fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf) *len = (size_t)n;
  fclose(f);
  return buf;
}

int kiln_cli_apply_params(kiln_graph *g, const char *path, kiln_diag *d) {
  size_t len = 0;
  unsigned char *buf = slurp(path, &len);
  if (!buf) return kiln_error(d, NULL, "%s: cannot read the parameter file", path);
  rd r = {buf, len};
  uint32_t count;
  int rc = -1;
  char *seen = calloc((size_t)g->nvalues + 1, 1);
  if (!seen) { free(buf); return kiln_error(d, NULL, "%s: out of memory", path); }
  if (len < 12 || memcmp(buf, "KILNPAR1", 8) || take(&r, NULL, 8) || u32(&r, &count)) {
    kiln_error(d, NULL, "%s: not a kiln parameter file (KILNPAR1)", path);
    goto done;
  }
  for (uint32_t k = 0; k < count; k++) {
    uint32_t nlen, dtype, rank;
    if (u32(&r, &nlen) || nlen == 0 || nlen > 4096 || nlen > r.left) goto truncated;
    char *name = kiln_arena_alloc(&g->arena, nlen + 1);
    take(&r, name, nlen);
    name[nlen] = 0;
    if (strlen(name) != nlen) { kiln_error(d, NULL, "%s: tensor %u: a name with a NUL byte", path, k); goto done; }
    if (u32(&r, &dtype) || u32(&r, &rank)) goto truncated;
    if (dtype != 1 || rank > KILN_MAX_RANK) {
      kiln_error(d, NULL, "%s: tensor %u: dtype %u rank %u; kiln parameter files hold float32 (1) of rank <= %d", path,
                 k, dtype, rank, KILN_MAX_RANK);
      goto done;
    }
    int64_t dims[KILN_MAX_RANK];
    uint64_t numel = 1, nbytes;
    for (uint32_t i = 0; i < rank; i++) {
      uint64_t v;
      if (u64(&r, &v)) goto truncated;
      if (v > ((uint64_t)1 << 40) || (v && numel > ((uint64_t)1 << 40) / v)) {
        kiln_error(d, NULL, "%s: tensor %u: a dimension or element count too large", path, k);
        goto done;
      }
      dims[i] = (int64_t)v;
      numel *= v;
    }
    if (u64(&r, &nbytes)) goto truncated;
    if (nbytes != numel * 4) {
      kiln_error(d, NULL, "%s: tensor %u: %llu bytes for %llu float32 elements", path, k, (unsigned long long)nbytes,
                 (unsigned long long)numel);
      goto done;
    }
    if (nbytes > r.left) goto truncated;
    kiln_value *v = NULL;
    for (int i = 0; i < g->nvalues && !v; i++)
      if ((g->values[i]->kind == KILN_VALUE_PARAM || g->values[i]->kind == KILN_VALUE_STATE) && g->values[i]->data &&
          !g->values[i]->producer && !strcmp(g->values[i]->name, name))
        v = g->values[i];
    if (!v || v->dtype != KILN_DT_F32) {
      kiln_error(d, NULL, "%s: tensor %u: the model has no float32 initializer named '%s'", path, k, name);
      goto done;
    }
    if (seen[v->id]++) { kiln_error(d, NULL, "%s: tensor %u: '%s' given twice", path, k, name); goto done; }
    float *data = kiln_arena_array(&g->arena, numel ? (size_t)numel : 1, sizeof *data);
    for (uint64_t i = 0; i < numel; i++) {
      uint32_t bits = 0; /* u32 leaves it unset on a short file (checked after the loop) */
      u32(&r, &bits);
      memcpy(&data[i], &bits, 4);
    }
    v->data = data;
    v->rank = (int)rank;
    for (uint32_t i = 0; i < rank; i++) v->dims[i] = dims[i];
  }
  if (r.left) { kiln_error(d, NULL, "%s: %zu bytes after the last tensor", path, r.left); goto done; }
  rc = 0;
  goto done;
truncated:
  kiln_error(d, NULL, "%s: truncated or corrupt parameter file", path);
done:
  free(seen);
  free(buf);
  return rc;
}
