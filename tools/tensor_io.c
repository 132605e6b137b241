/* .npy and .pb tensor files.  The .npy header is a Python dict literal;
 * we accept exactly the keys numpy writes ('descr', 'fortran_order',
 * 'shape') and reject anything else with a clear message.  Every size in a
 * header is hostile: each dim and the running product are checked before
 * they are used (no signed overflow), and the payload's size is compared
 * with what the file holds before anything is allocated. */
#include "tensor_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.pb-c.h"

static const struct { const char *descr; kiln_dtype t; } npy_types[] = {
    {"<f4", KILN_DT_F32}, {"<f8", KILN_DT_F64}, {"<f2", KILN_DT_F16}, {"|u1", KILN_DT_U8}, {"|i1", KILN_DT_I8},
    {"<i2", KILN_DT_I16}, {"<u2", KILN_DT_U16}, {"<i4", KILN_DT_I32}, {"<u4", KILN_DT_U32}, {"<i8", KILN_DT_I64},
    {"<u8", KILN_DT_U64}, {"|b1", KILN_DT_BOOL}, {"<V2", KILN_DT_BF16},
};

static const char *ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix) ? s + n - m : NULL;
}

int kiln_tensor_read(const char *path, kiln_tensor *t, kiln_diag *d) {
  if (ends_with(path, ".npy")) return kiln_npy_read(path, t, d);
  return kiln_onnx_read_tensor_file(path, t, d);
}

int kiln_tensor_write(const char *path, const kiln_tensor *t, kiln_diag *d) {
  if (ends_with(path, ".pb")) return kiln_pb_write(path, t, d);
  return kiln_npy_write(path, t, d);
}

int kiln_write_atomic(const char *path, const void *data, size_t len, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  size_t n = strlen(path);
  char *tmp = malloc(n + 32);
  if (!tmp) return kiln_error(d, &loc, "out of memory");
  snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    kiln_error(d, &loc, "cannot write: %s", strerror(errno));
    free(tmp);
    return -1;
  }
  int ok = fwrite(data, 1, len, f) == len;
  ok &= fflush(f) == 0;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) {
    kiln_error(d, &loc, "cannot write: %s", strerror(errno));
    unlink(tmp);
    free(tmp);
    return -1;
  }
  free(tmp);
  return 0;
}

int kiln_npy_read(const char *path, kiln_tensor *t, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(d, &loc, "cannot open: %s", strerror(errno));
  unsigned char magic[12];
  size_t got = fread(magic, 1, 10, f);
  if (got < 10 || memcmp(magic, "\x93NUMPY", 6)) { fclose(f); return kiln_error(d, &loc, "not a .npy file"); }
  unsigned major = magic[6];
  size_t hlen = magic[8] | (size_t)magic[9] << 8;
  if (major >= 2) {
    if (fread(magic + 10, 1, 2, f) != 2) { fclose(f); return kiln_error(d, &loc, "truncated .npy header"); }
    hlen |= (size_t)magic[10] << 16 | (size_t)magic[11] << 24;
  }
  if (major < 1 || major > 3) { fclose(f); return kiln_error(d, &loc, "unsupported .npy version %u", major); }
  if (hlen > (1 << 20)) { fclose(f); return kiln_error(d, &loc, ".npy header is too long (%zu bytes)", hlen); }
  char *h = calloc(1, hlen + 1);
  if (!h || fread(h, 1, hlen, f) != hlen) { free(h); fclose(f); return kiln_error(d, &loc, "truncated .npy header"); }
  int rc = -1;
  const char *descr = strstr(h, "'descr'"), *fo = strstr(h, "'fortran_order'"), *sh = strstr(h, "'shape'");
  if (!descr || !fo || !sh) { kiln_error(d, &loc, ".npy header lacks descr/fortran_order/shape"); goto out; }
  if (strncmp(fo + 15, ": False", 7) && strncmp(fo + 15, ":False", 6)) { kiln_error(d, &loc, "Fortran-order arrays are not supported; save with np.ascontiguousarray"); goto out; }
  const char *q = strchr(descr + 7, '\'');
  if (!q) { kiln_error(d, &loc, "bad .npy descr"); goto out; }
  t->dtype = KILN_DT_UNDEF;
  for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
    if (!strncmp(q + 1, npy_types[i].descr, 3) && q[4] == '\'') t->dtype = npy_types[i].t;
  if (t->dtype == KILN_DT_UNDEF) { kiln_error(d, &loc, "unsupported .npy dtype '%.6s' (big-endian, object or complex?)", q + 1); goto out; }
  const char *p = strchr(sh, '(');
  if (!p) { kiln_error(d, &loc, "bad .npy shape"); goto out; }
  p++;
  const int64_t max_elems = (int64_t)1 << 40;
  int64_t numel = 1;
  for (;;) {
    while (*p == ' ' || *p == ',') p++;
    if (*p == ')') break;
    if (*p < '0' || *p > '9') { kiln_error(d, &loc, "bad .npy shape (dims must be non-negative integers)"); goto out; }
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno == ERANGE || v > max_elems) { kiln_error(d, &loc, ".npy shape has a dim out of range"); goto out; }
    if (t->rank == KILN_MAX_RANK) { kiln_error(d, &loc, ".npy array has more than %d dims", KILN_MAX_RANK); goto out; }
    t->dims[t->rank++] = v;
    if (__builtin_mul_overflow(numel, (int64_t)v, &numel) || numel > max_elems) {
      kiln_error(d, &loc, ".npy array is too large");
      goto out;
    }
    p = end;
  }
  /* numel <= 2^40 and an element is at most 8 bytes: no overflow below */
  t->nbytes = (size_t)numel * kiln_dtype_size(t->dtype);
  struct stat st;
  long here = ftell(f);
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && /* pipes: fread below finds out */
      (here < 0 || (uint64_t)st.st_size < (uint64_t)here || (uint64_t)st.st_size - (uint64_t)here < t->nbytes)) {
    kiln_error(d, &loc, "truncated .npy data (expected %zu bytes)", t->nbytes);
    goto out;
  }
  t->data = aligned_alloc(64, (t->nbytes + 64) & ~(size_t)63); /* as the workspace: vector loads within lines */
  t->name = strdup("");
  if (!t->data || !t->name) { kiln_error(d, &loc, "out of memory"); goto out; }
  if (fread(t->data, 1, t->nbytes, f) != t->nbytes) {
    kiln_error(d, &loc, "truncated .npy data (expected %zu bytes)", t->nbytes);
    goto out;
  }
  rc = 0;
out:
  free(h);
  fclose(f);
  if (rc) kiln_tensor_free(t);
  return rc;
}

int kiln_npy_write(const char *path, const kiln_tensor *t, kiln_diag *d) {
  const char *descr = NULL;
  for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
    if (npy_types[i].t == t->dtype) descr = npy_types[i].descr;
  char shape[256] = ""; /* rank 0: "()" */
  int n = 0;
  for (int i = 0; i < t->rank; i++) n += snprintf(shape + n, sizeof shape - (size_t)n, "%lld,%s", (long long)t->dims[i], i + 1 < t->rank ? " " : "");
  if (t->rank > 1) shape[n - 1] = 0; /* numpy writes (1, 3) but (3,) */
  char header[512];
  int h = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
  int total = 10 + h + 1, pad = (64 - total % 64) % 64;
  size_t len = (size_t)(total + pad) + t->nbytes;
  unsigned char *buf = malloc(len);
  if (!buf) return kiln_error(d, NULL, "out of memory");
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  int hl = h + pad + 1;
  buf[8] = (unsigned char)(hl & 255);
  buf[9] = (unsigned char)(hl >> 8);
  memcpy(buf + 10, header, (size_t)h);
  memset(buf + 10 + h, ' ', (size_t)pad);
  buf[10 + h + pad] = '\n';
  memcpy(buf + total + pad, t->data, t->nbytes);
  int rc = kiln_write_atomic(path, buf, len, d);
  free(buf);
  return rc;
}

int kiln_pb_write(const char *path, const kiln_tensor *t, kiln_diag *d) {
  Onnx__TensorProto p = ONNX__TENSOR_PROTO__INIT;
  int64_t dims[KILN_MAX_RANK];
  for (int i = 0; i < t->rank; i++) dims[i] = t->dims[i];
  p.n_dims = (size_t)t->rank;
  p.dims = dims;
  p.has_data_type = 1;
  p.data_type = t->dtype;
  p.name = (char *)(t->name ? t->name : "");
  p.has_raw_data = 1;
  p.raw_data.len = t->nbytes;
  p.raw_data.data = t->data;
  size_t len = onnx__tensor_proto__get_packed_size(&p);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return kiln_error(d, NULL, "out of memory");
  onnx__tensor_proto__pack(&p, buf);
  int rc = kiln_write_atomic(path, buf, len, d);
  free(buf);
  return rc;
}
