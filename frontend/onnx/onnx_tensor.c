/* TensorProto decoding: dtype and dims checks, the raw_data / typed-field /
 * external-data forms, and .pb test-data files.  Weights are not copied
 * where the protobuf already holds them in kiln's layout: raw_data and
 * float/int64/double fields are used in place, and external data is
 * mmap'd.  Only narrow types packed into int32_data are converted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx_internal.h"

enum { MAX_ELEMENTS_LOG2 = 40 };

/* The name for messages: proto2 leaves an unset string field NULL, and
 * Constant nodes' tensors are often unnamed. */
static const char *tname(const Onnx__TensorProto *t) { return t->name ? t->name : ""; }

static int tensor_shape(kiln_diag *d, const kiln_loc *loc, const Onnx__TensorProto *t, const char *what,
                        kiln_dtype *dt, int *rank, int64_t *dims, int64_t *numel) {
  *rank = 0; /* outputs are defined on the error paths too */
  *numel = 0;
  int code = t->has_data_type ? t->data_type : 0;
  if (code <= 0 || code >= KILN_DT_MAX_CODE || !kiln_dtype_size((kiln_dtype)code))
    return kiln_error(d, loc, "%s '%s' has unsupported element type %s", what, tname(t),
                      kiln_onnx_dtype_name(code));
  *dt = (kiln_dtype)code;
  if (t->n_dims > KILN_MAX_RANK)
    return kiln_error(d, loc, "%s '%s' has rank %zu; kiln supports up to %d", what, tname(t), t->n_dims, KILN_MAX_RANK);
  int64_t n = 1;
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0) return kiln_error(d, loc, "%s '%s' has negative dim %lld", what, tname(t), (long long)t->dims[i]);
    if (t->dims[i] > ((int64_t)1 << MAX_ELEMENTS_LOG2) || (n && t->dims[i] && n > (((int64_t)1 << MAX_ELEMENTS_LOG2) / t->dims[i])))
      return kiln_error(d, loc, "%s '%s' is too large (dims overflow)", what, tname(t));
    n *= t->dims[i];
    dims[i] = t->dims[i];
  }
  *rank = (int)t->n_dims;
  *numel = n;
  return 0;
}

static void unmap(void *p) {
  size_t *hdr = p; /* [length, then the mapping address] */
  munmap((void *)hdr[1], hdr[0]);
  free(hdr);
}

/* The containment rule for every file a model names (ONNX external data,
 * a .kiln network's weights file): relative, no ".." component, and inside
 * base_dir once symlinks are resolved. */
kiln_path_status kiln_path_contained(const char *base_dir, const char *rel, char *out) {
  if (!rel || !rel[0]) return KILN_PATH_EMPTY;
  if (rel[0] == '/' || rel[0] == '\\') return KILN_PATH_ABSOLUTE;
  for (const char *p = rel; *p;) {
    const char *e = p + strcspn(p, "/\\");
    if (e - p == 2 && p[0] == '.' && p[1] == '.') return KILN_PATH_DOTDOT;
    p = *e ? e + 1 : e;
  }
  char joined[PATH_MAX], base[PATH_MAX];
  if (snprintf(joined, sizeof joined, "%s/%s", base_dir, rel) >= (int)sizeof joined) return KILN_PATH_TOO_LONG;
  if (!realpath(base_dir, base) || !realpath(joined, out)) return KILN_PATH_MISSING;
  size_t bl = strlen(base);
  if (strncmp(out, base, bl) != 0 || (out[bl] != '/' && out[bl] != 0 && strcmp(base, "/") != 0)) return KILN_PATH_OUTSIDE;
  return KILN_PATH_OK;
}

/* Resolves an external-data location under base_dir (kiln_path_contained). */
static int external_path(onnx_importer *im, const kiln_loc *loc, const char *tname, const char *rel, char *out) {
  if (!im->base_dir) return kiln_error(im->d, loc, "tensor '%s' uses external data, which is not allowed here", tname);
  switch (kiln_path_contained(im->base_dir, rel, out)) {
  case KILN_PATH_OK: return 0;
  case KILN_PATH_EMPTY: return kiln_error(im->d, loc, "tensor '%s': external data has no location", tname);
  case KILN_PATH_ABSOLUTE: return kiln_error(im->d, loc, "tensor '%s': external data path '%s' is absolute", tname, rel);
  case KILN_PATH_DOTDOT:
    return kiln_error(im->d, loc, "tensor '%s': external data path '%s' leaves the model's folder", tname, rel);
  case KILN_PATH_TOO_LONG: return kiln_error(im->d, loc, "tensor '%s': external data path is too long", tname);
  case KILN_PATH_MISSING:
    return kiln_error(im->d, loc, "tensor '%s': cannot open external data '%s': %s", tname, rel, strerror(errno));
  case KILN_PATH_OUTSIDE:
    return kiln_error(im->d, loc, "tensor '%s': external data '%s' resolves outside the model's folder", tname, rel);
  }
  return -1;
}

static int external_data(onnx_importer *im, const Onnx__TensorProto *t, const kiln_loc *loc, size_t nbytes,
                         const void **data) {
  const char *location = NULL;
  long long offset = 0, length = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = t->external_data[i];
    if (!e->key || !e->value) continue;
    char *end;
    if (!strcmp(e->key, "location")) location = e->value;
    else if (!strcmp(e->key, "offset") || !strcmp(e->key, "length")) {
      errno = 0;
      long long v = strtoll(e->value, &end, 10);
      if (errno || *end || v < 0) return kiln_error(im->d, loc, "tensor '%s': external data %s '%s' is invalid", tname(t), e->key, e->value);
      if (!strcmp(e->key, "offset")) offset = v; else length = v;
    }
  }
  char path[PATH_MAX];
  if (external_path(im, loc, tname(t), location, path)) return -1;
  if (length >= 0 && (size_t)length != nbytes)
    return kiln_error(im->d, loc, "tensor '%s': external data length %lld, but its shape needs %zu bytes", tname(t), length, nbytes);
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) close(fd);
    return kiln_error(im->d, loc, "tensor '%s': cannot read external data '%s'", tname(t), location);
  }
  if ((unsigned long long)offset > (unsigned long long)st.st_size || nbytes > (size_t)(st.st_size - offset)) {
    close(fd);
    return kiln_error(im->d, loc, "tensor '%s': external data '%s' is too short (%lld bytes, needs %zu at offset %lld)",
                      tname(t), location, (long long)st.st_size, nbytes, offset);
  }
  if (nbytes == 0) { close(fd); *data = NULL; return 0; }
  long page = sysconf(_SC_PAGESIZE);
  off_t start = (off_t)(offset / page * page);
  size_t len = nbytes + (size_t)(offset - start);
  void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, start);
  close(fd);
  if (m == MAP_FAILED) return kiln_error(im->d, loc, "tensor '%s': cannot map external data: %s", tname(t), strerror(errno));
  size_t *hdr = malloc(2 * sizeof *hdr);
  if (!hdr) { munmap(m, len); return kiln_error(im->d, loc, "out of memory"); }
  hdr[0] = len;
  hdr[1] = (size_t)m;
  kiln_graph_on_free(im->g, unmap, hdr);
  *data = (const char *)m + (offset - start);
  return 0;
}

/* Points *data at the tensor's contents, converting only where needed.
 * arena == NULL means "copy into malloc'd memory" (test-data files). */
static int tensor_data(onnx_importer *im, kiln_arena *arena, const Onnx__TensorProto *t, const kiln_loc *loc,
                       kiln_dtype dt, int64_t numel, const void **data) {
  size_t es = kiln_dtype_size(dt), nbytes = (size_t)numel * es;
  kiln_diag *d = im->d;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return external_data(im, t, loc, nbytes, data);
  if (t->has_raw_data) {
    if (t->raw_data.len != nbytes)
      return kiln_error(d, loc, "tensor '%s' has %zu bytes of raw_data, its shape needs %zu", tname(t), t->raw_data.len, nbytes);
    *data = t->raw_data.data;
    return 0;
  }
  size_t count = 0;
  const void *src = NULL;
  switch (dt) {
  case KILN_DT_F32: count = t->n_float_data; src = t->float_data; break;
  case KILN_DT_I64: count = t->n_int64_data; src = t->int64_data; break;
  case KILN_DT_F64: count = t->n_double_data; src = t->double_data; break;
  case KILN_DT_U64: count = t->n_uint64_data; src = t->uint64_data; break;
  case KILN_DT_I32: count = t->n_int32_data; src = t->int32_data; break;
  case KILN_DT_U32: count = t->n_uint64_data; break;
  default: count = t->n_int32_data; break; /* narrow types travel in int32_data */
  }
  if (count != (size_t)numel)
    return kiln_error(d, loc, "tensor '%s' has %zu data entries, its shape needs %lld", tname(t), count, (long long)numel);
  if (numel == 0) { *data = NULL; return 0; }
  if (src) { *data = src; return 0; }
  void *out = arena ? kiln_arena_alloc(arena, nbytes) : NULL;
  if (!out) return kiln_error(d, loc, "out of memory");
  for (int64_t i = 0; i < numel; i++) {
    if (dt == KILN_DT_U32) kiln_dtype_store_i(dt, out, (size_t)i, (long long)t->uint64_data[i]);
    else if (dt == KILN_DT_F16 || dt == KILN_DT_BF16) { /* bit patterns */
      unsigned short h = (unsigned short)t->int32_data[i];
      memcpy((char *)out + 2 * i, &h, 2);
    } else kiln_dtype_store_i(dt, out, (size_t)i, t->int32_data[i]);
  }
  *data = out;
  return 0;
}

int onnx_tensor_to_value(onnx_importer *im, const Onnx__TensorProto *t, const kiln_loc *loc, kiln_value *v) {
  int64_t numel;
  if (tensor_shape(im->d, loc, t, "tensor", &v->dtype, &v->rank, v->dims, &numel)) return -1;
  const void *data = NULL;
  if (tensor_data(im, &im->g->arena, t, loc, v->dtype, numel, &data)) return -1;
  if (!data) data = kiln_arena_alloc(&im->g->arena, 8); /* empty tensors still count as constant */
  v->data = data;
  return 0;
}

int kiln_onnx_read_tensor_file(const char *path, kiln_tensor *out, kiln_diag *d) {
  memset(out, 0, sizeof *out);
  kiln_loc loc = {.file = path, .node_index = -1};
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(d, &loc, "cannot open: %s", strerror(errno));
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 1 << 16;
      unsigned char *nb = realloc(buf, cap);
      if (!nb) { free(buf); fclose(f); return kiln_error(d, &loc, "out of memory"); }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  fclose(f);
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
  free(buf);
  if (!t) return kiln_error(d, &loc, "not a valid serialized TensorProto");
  kiln_arena tmp;
  kiln_arena_init(&tmp);
  onnx_importer im = {.d = d};
  int64_t numel;
  const void *data = NULL;
  int rc = tensor_shape(d, &loc, t, "tensor", &out->dtype, &out->rank, out->dims, &numel);
  if (!rc && t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    rc = kiln_error(d, &loc, "external data is not supported in tensor files");
  if (!rc) rc = tensor_data(&im, &tmp, t, &loc, out->dtype, numel, &data);
  if (!rc) {
    out->nbytes = (size_t)numel * kiln_dtype_size(out->dtype);
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    out->name = strdup(t->name ? t->name : "");
    if (!out->data || !out->name) rc = kiln_error(d, &loc, "out of memory");
    else if (out->nbytes) memcpy(out->data, data, out->nbytes);
  }
  kiln_arena_free(&tmp);
  onnx__tensor_proto__free_unpacked(t, NULL);
  if (rc) kiln_tensor_free(out);
  return rc;
}

void kiln_tensor_free(kiln_tensor *t) {
  free(t->data);
  free((void *)t->name);
  memset(t, 0, sizeof *t);
}
