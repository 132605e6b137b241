/* Weights by name from a file, for `weights "FILE"` in a network:
 *
 *   .onnx  the initializers of an ONNX model (read with kiln's importer),
 *          e.g. one exported from PyTorch with matching layer names;
 *   .npz   NumPy's savez / savez_compressed archive: a zip of .npy files,
 *          one per parameter (`conv1.weight.npy`).  Stored entries are read
 *          directly; deflated ones (savez_compressed) need zlib, which kiln
 *          uses when it was found at configure time (KILN_HAVE_ZLIB).  Zip64
 *          records (numpy writes them) are understood.
 * Floating-point tensors of any width are converted to f32.  Every offset
 * and size read from the file is bounds-checked: a truncated or hostile
 * archive is a located error, like a missing tensor or a wrong shape. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#if KILN_HAVE_ZLIB
#include <zlib.h>
#endif

#include "../onnx/kiln_onnx.h"
#include "dsl_internal.h"

typedef struct wtensor {
  char *name;
  kiln_dtype dtype;
  int rank;
  int64_t dims[KILN_MAX_RANK];
  const unsigned char *data;  /* into the file buffer, an inflated buffer, or the ONNX graph */
} wtensor;

struct dsl_weights {
  const char *shown;          /* the name as the .kiln file wrote it */
  kiln_graph *onnx;
  unsigned char *file;
  void **owned; int nowned;   /* inflated entries */
  wtensor *t; int n;
};

static int werr(const kiln_loc *loc, kiln_diag *d, const char *shown, const char *what) {
  return kiln_error(d, loc, "weights file '%s': %s", shown, what);
}

void dsl_weights_close(dsl_weights *w) {
  if (!w) return;
  kiln_graph_free(w->onnx);
  free(w->file);
  for (int i = 0; i < w->nowned; i++) free(w->owned[i]);
  free(w->owned);
  for (int i = 0; i < w->n; i++) free(w->t[i].name);
  free(w->t);
  free(w);
}

static wtensor *add_tensor(dsl_weights *w, const char *name, size_t name_len) {
  if ((w->n & (w->n - 1)) == 0) {
    wtensor *nt = realloc(w->t, (size_t)(w->n ? w->n * 2 : 1) * sizeof *nt);
    if (!nt) return NULL;
    w->t = nt;
  }
  wtensor *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  t->name = malloc(name_len + 1);
  if (!t->name) return NULL;
  memcpy(t->name, name, name_len);
  t->name[name_len] = 0;
  w->n++;
  return t;
}

/* ---- .npy ---- */

/* Parses the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (64, 3, 7, 7), } */
static const char *npy_parse(wtensor *t, const unsigned char *p, size_t len) {
  if (len < 10 || memcmp(p, "\x93NUMPY", 6)) return "not a .npy array (bad magic)";
  size_t hl, off;
  if (p[6] == 1) { hl = (size_t)p[8] | (size_t)p[9] << 8; off = 10; }
  else if (p[6] == 2 || p[6] == 3) {
    if (len < 12) return "truncated .npy header";
    hl = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
    off = 12;
  } else return "unsupported .npy version";
  if (hl > len - off || hl > 65536) return "truncated .npy header";
  char h[1024];
  if (hl >= sizeof h) return ".npy header is too long";
  memcpy(h, p + off, hl);
  h[hl] = 0;
  const char *descr = strstr(h, "'descr'"), *fo = strstr(h, "'fortran_order'"), *sh = strstr(h, "'shape'");
  if (!descr || !fo || !sh) return ".npy header lacks descr, fortran_order or shape";
  descr = strchr(descr + 7, '\'');
  if (!descr) return "bad descr in .npy header";
  if (!strncmp(descr, "'<f4'", 5)) t->dtype = KILN_DT_F32;
  else if (!strncmp(descr, "'<f8'", 5)) t->dtype = KILN_DT_F64;
  else if (!strncmp(descr, "'<f2'", 5)) t->dtype = KILN_DT_F16;
  else return "only little-endian float arrays (<f2, <f4, <f8) can be weights";
  fo = strchr(fo + 15, ':');
  if (!fo) return "bad fortran_order in .npy header";
  while (*++fo == ' ') {}
  if (strncmp(fo, "False", 5)) return "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)";
  sh = strchr(sh + 7, '(');
  if (!sh) return "bad shape in .npy header";
  sh++;
  t->rank = 0;
  int64_t numel = 1;
  for (;;) {
    while (*sh == ' ' || *sh == ',') sh++;
    if (*sh == ')') break;
    if (*sh < '0' || *sh > '9') return "bad shape in .npy header";
    char *end;
    long long v = strtoll(sh, &end, 10);
    if (t->rank == KILN_MAX_RANK || v < 0 || v > ((int64_t)1 << 40) || __builtin_mul_overflow(numel, v, &numel))
      return "shape in .npy header is out of range";
    t->dims[t->rank++] = v;
    sh = end;
  }
  if ((uint64_t)numel > (len - off - hl) / kiln_dtype_size(t->dtype)) return "array data is truncated"; /* no overflow */
  t->data = p + off + hl;
  return NULL;
}

/* ---- .npz (zip) ---- */

static uint64_t rd(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static const char *npz_entry(dsl_weights *w, const unsigned char *z, size_t zlen, const unsigned char *ce, size_t celen,
                             size_t *adv) {
  if (celen < 46 || rd(ce, 4) != 0x02014b50) return "bad central directory entry";
  unsigned method = (unsigned)rd(ce + 10, 2);
  uint64_t csize = rd(ce + 20, 4), usize = rd(ce + 24, 4), lofs = rd(ce + 42, 4);
  size_t nlen = (size_t)rd(ce + 28, 2), xlen = (size_t)rd(ce + 30, 2), clen = (size_t)rd(ce + 32, 2);
  if (46 + nlen + xlen + clen > celen) return "bad central directory entry";
  *adv = 46 + nlen + xlen + clen;
  /* Zip64 extra field: the 64-bit values of the fields saturated above, in order. */
  const unsigned char *x = ce + 46 + nlen, *xe = x + xlen;
  while (xe - x >= 4) {
    size_t id = (size_t)rd(x, 2), sz = (size_t)rd(x + 2, 2);
    if ((size_t)(xe - x - 4) < sz) break;
    if (id == 1) {
      const unsigned char *q = x + 4, *qe = q + sz;
      if (usize == 0xFFFFFFFF && qe - q >= 8) { usize = rd(q, 8); q += 8; }
      if (csize == 0xFFFFFFFF && qe - q >= 8) { csize = rd(q, 8); q += 8; }
      if (lofs == 0xFFFFFFFF && qe - q >= 8) { lofs = rd(q, 8); q += 8; }
    }
    x += 4 + sz;
  }
  const char *name = (const char *)ce + 46;
  if (nlen < 5 || memcmp(name + nlen - 4, ".npy", 4)) return NULL; /* not an array: ignored */
  if (lofs > zlen || zlen - lofs < 30 || rd(z + lofs, 4) != 0x04034b50) return "bad local header";
  uint64_t data = lofs + 30 + rd(z + lofs + 26, 2) + rd(z + lofs + 28, 2);
  if (data > zlen || csize > zlen - data) return "entry data is truncated";
  const unsigned char *bytes = z + data;
  if (method == 8) {
#if KILN_HAVE_ZLIB
    if (usize > ((uint64_t)1 << 36)) return "entry is implausibly large";
    unsigned char *buf = malloc(usize ? (size_t)usize : 1);
    void **no = realloc(w->owned, (size_t)(w->nowned + 1) * sizeof *no);
    if (!buf || !no) { free(buf); if (no) w->owned = no; return "out of memory"; }
    w->owned = no;
    w->owned[w->nowned++] = buf;
    z_stream s = {0};
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) return "zlib failed to start";
    uint64_t in_left = csize, out_left = usize;
    s.next_in = (unsigned char *)bytes;
    s.next_out = buf;
    int rc = Z_OK;
    while (rc == Z_OK) { /* in chunks: avail_* are 32-bit */
      if (!s.avail_in) { s.avail_in = in_left > (1u << 30) ? (1u << 30) : (unsigned)in_left; in_left -= s.avail_in; }
      if (!s.avail_out) { s.avail_out = out_left > (1u << 30) ? (1u << 30) : (unsigned)out_left; out_left -= s.avail_out; }
      rc = inflate(&s, Z_NO_FLUSH);
      if (rc == Z_BUF_ERROR && (s.avail_in || in_left) && (s.avail_out || out_left)) rc = Z_OK;
    }
    uint64_t got = s.total_out;
    inflateEnd(&s);
    if (rc != Z_STREAM_END || got != usize) return "compressed entry is corrupt";
    bytes = buf;
#else
    return "entry is compressed (np.savez_compressed) and kiln was built without zlib: save with np.savez";
#endif
  } else if (method != 0) {
    return "entry uses a compression method other than stored or deflate";
  } else if (csize != usize) {
    return "stored entry has inconsistent sizes";
  }
  wtensor *t = add_tensor(w, name, nlen - 4);
  if (!t) return "out of memory";
  return npy_parse(t, bytes, (size_t)usize);
}

static const char *npz_read(dsl_weights *w, const unsigned char *z, size_t len) {
  if (len < 22) return "not a zip archive (too short)";
  size_t eocd = 0;
  int found = 0;
  for (size_t i = len - 22 + 1; i-- > 0 && len - i <= 22 + 65535;)
    if (rd(z + i, 4) == 0x06054b50) { eocd = i; found = 1; break; }
  if (!found) return "not a zip archive (no end of central directory)";
  uint64_t count = rd(z + eocd + 10, 2), cdsize = rd(z + eocd + 12, 4), cdofs = rd(z + eocd + 16, 4);
  if ((count == 0xFFFF || cdsize == 0xFFFFFFFF || cdofs == 0xFFFFFFFF) && eocd >= 20 &&
      rd(z + eocd - 20, 4) == 0x07064b50) { /* zip64 end of central directory */
    uint64_t z64 = rd(z + eocd - 20 + 8, 8);
    if (z64 > len || len - z64 < 56 || rd(z + z64, 4) != 0x06064b50) return "bad zip64 end of central directory";
    count = rd(z + z64 + 32, 8);
    cdsize = rd(z + z64 + 40, 8);
    cdofs = rd(z + z64 + 48, 8);
  }
  if (cdofs > len || cdsize > len - cdofs) return "central directory is out of bounds";
  if (count > (1 << 20)) return "too many entries";
  const unsigned char *ce = z + cdofs, *end = ce + cdsize;
  for (uint64_t i = 0; i < count; i++) {
    size_t adv = 0;
    const char *err = npz_entry(w, z, len, ce, (size_t)(end - ce), &adv);
    if (err) return err;
    ce += adv;
  }
  return NULL;
}

/* ---- opening and lookup ---- */

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* The file, if it stays in the network's folder: a network must not pull a
 * private file (an absolute path, "..", a symlink leading out) into a model. */
static int contained(const char *base_dir, const char *rel, char *path, const kiln_loc *loc, kiln_diag *d) {
  static const char *const why[] = {
      [KILN_PATH_EMPTY] = "is empty", [KILN_PATH_ABSOLUTE] = "is absolute: weights must be in the network's folder",
      [KILN_PATH_DOTDOT] = "leaves the network's folder ('..')", [KILN_PATH_TOO_LONG] = "has too long a path",
      [KILN_PATH_OUTSIDE] = "resolves outside the network's folder (symbolic link)"};
  kiln_path_status ps = kiln_path_contained(base_dir, rel, path);
  if (ps == KILN_PATH_MISSING) return kiln_error(d, loc, "weights file '%s' cannot be opened: %s", rel, strerror(errno));
  if (ps != KILN_PATH_OK) return kiln_error(d, loc, "weights file '%s' %s", rel, why[ps]);
  return 0;
}

dsl_weights *dsl_weights_open(const char *base_dir, const char *shown, const kiln_loc *loc, kiln_diag *d) {
  dsl_weights *w = calloc(1, sizeof *w);
  if (!w) { werr(loc, d, shown, "out of memory"); return NULL; }
  w->shown = shown;
  char path[PATH_MAX];
  if (!ends_with(shown, ".onnx") && !ends_with(shown, ".npz")) {
    werr(loc, d, shown, "unknown format: kiln reads weights from .onnx and .npz files");
    goto fail;
  }
  if (contained(base_dir, shown, path, loc, d)) goto fail;
  if (ends_with(shown, ".onnx")) { /* by the name written, not the resolved one */
    kiln_diag od = {0};
    w->onnx = kiln_onnx_load(path, &od);
    if (!w->onnx) {
      kiln_error(d, loc, "weights file '%s' cannot be read: %s", shown, od.msg);
      goto fail;
    }
    for (int i = 0; i < w->onnx->nvalues; i++) {
      kiln_value *v = w->onnx->values[i];
      if (v->kind != KILN_VALUE_PARAM || !v->data || !kiln_dtype_is_float(v->dtype)) continue;
      wtensor *t = add_tensor(w, v->name, strlen(v->name));
      if (!t) { werr(loc, d, shown, "out of memory"); goto fail; }
      t->dtype = v->dtype;
      t->rank = v->rank;
      memcpy(t->dims, v->dims, sizeof t->dims);
      t->data = v->data;
    }
    return w;
  }
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f) {
    kiln_error(d, loc, "weights file '%s' cannot be opened: %s", shown, strerror(errno));
    goto fail;
  }
  if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || !(w->file = malloc(st.st_size ? (size_t)st.st_size : 1)) ||
      fread(w->file, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    fclose(f);
    werr(loc, d, shown, "cannot be read");
    goto fail;
  }
  fclose(f);
  const char *err = npz_read(w, w->file, (size_t)st.st_size);
  if (err) { werr(loc, d, shown, err); goto fail; }
  return w;
fail:
  dsl_weights_close(w);
  return NULL;
}

static const char *dims_str(char *buf, size_t size, int rank, const int64_t *dims) {
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < rank && n < size; i++) n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)dims[i]);
  if (n < size) snprintf(buf + n, size - n, "]");
  return buf;
}

int dsl_weights_get(dsl_weights *w, const char *name, int rank, const int64_t *dims, float *out, const kiln_loc *loc,
                    kiln_diag *d) {
  const wtensor *t = NULL;
  for (int i = 0; i < w->n && !t; i++)
    if (!strcmp(w->t[i].name, name)) t = &w->t[i];
  if (!t) return kiln_error(d, loc, "weights file '%s' has no tensor '%s'", w->shown, name);
  int same = t->rank == rank;
  for (int i = 0; same && i < rank; i++) same = t->dims[i] == dims[i];
  if (!same) {
    char a[128], b[128];
    return kiln_error(d, loc, "weights file '%s' has '%s' of shape %s, this layer needs %s", w->shown, name,
                      dims_str(a, sizeof a, t->rank, t->dims), dims_str(b, sizeof b, rank, dims));
  }
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  if (t->dtype == KILN_DT_F32) memcpy(out, t->data, (size_t)n * sizeof *out);
  else
    for (int64_t i = 0; i < n; i++) out[i] = (float)kiln_dtype_load_f(t->dtype, t->data, (size_t)i);
  return 0;
}
