/* Training data readers (see train_data.h for the forms).  The form of a
 * folder is decided by the files in it: x.npy/y.npy, then idx files, then
 * class sub-folders.  .npy files go through tensor_io.c's reader (which
 * checks its header against the file's size); idx files are read through
 * zlib's gzread (plain or gzip alike) into buffers that grow only as bytes
 * arrive, so a header claiming a billion images costs nothing until the
 * bytes are really there; images through image_io.c. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "image_io.h"
#include "tensor_io.h"
#include "train_data.h"

enum { MAX_IMAGE_PIXELS = 1 << 24 }; /* larger files are refused unread (the size error names them) */
static const int64_t MAX_TOTAL = (int64_t)1 << 34; /* floats in one dataset: 64 GiB, beyond any machine here */

void kiln_dataset_free(kiln_dataset *ds) {
  free(ds->x);
  free(ds->y);
  free(ds->yf);
  memset(ds, 0, sizeof *ds);
}

static int file_exists(const char *dir, const char *name, char *out, size_t size) {
  struct stat st;
  snprintf(out, size, "%s/%s", dir, name);
  return stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

/* n * m, or -1 when it overflows or passes MAX_TOTAL. */
static int64_t mul_checked(int64_t n, int64_t m) {
  if (n < 0 || m < 0) return -1;
  if (m && n > MAX_TOTAL / m) return -1;
  return n * m;
}

/* Fits sample dims `have` (rank r) to what the model wants: equal, or
 * (pad set) the last two smaller, to be zero-padded around the centre. */
static int check_sample_dims(const char *file, const int64_t *have, int r, const kiln_data_want *w, int pad_ok,
                             kiln_diag *d) {
  char hs[128] = "", ws[128] = "";
  for (int i = 0; i < r; i++) snprintf(hs + strlen(hs), sizeof hs - strlen(hs), "%s%lld", i ? " x " : "", (long long)have[i]);
  for (int i = 0; i < w->xrank; i++)
    snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%s%lld", i ? " x " : "", (long long)w->xdims[i]);
  int ok = r == w->xrank;
  for (int i = 0; ok && i < r; i++)
    ok = have[i] == w->xdims[i] || (pad_ok && i >= r - 2 && have[i] < w->xdims[i]);
  if (!ok) return kiln_error(d, NULL, "%s: samples are %s but the model's input wants %s", file, hs, ws);
  return 0;
}

static int check_labels(const char *file, const int64_t *y, int64_t count, int64_t per, const kiln_data_want *w,
                        kiln_diag *d) {
  for (int64_t i = 0; i < count; i++)
    if (y[i] < 0 || (w->nclasses > 0 && y[i] >= w->nclasses)) {
      if (per > 1)
        return kiln_error(d, NULL, "%s: sample %lld: label %lld at element %lld is out of range for the model's %lld classes",
                          file, (long long)(i / per), (long long)y[i], (long long)(i % per), (long long)w->nclasses);
      return kiln_error(d, NULL, "%s: label %lld at index %lld is out of range for the model's %lld classes", file,
                        (long long)y[i], (long long)i, (long long)w->nclasses);
    }
  return 0;
}

/* ---- x.npy + y.npy ---- */
static int load_npy(const char *dir, const kiln_data_want *w, kiln_dataset *ds, kiln_diag *d) {
  char xp[4096], yp[4096];
  int hx = file_exists(dir, "x.npy", xp, sizeof xp), hy = file_exists(dir, "y.npy", yp, sizeof yp);
  if (!hx || !hy) return kiln_error(d, NULL, "%s: missing (the folder has %s but not %s)", hx ? yp : xp, hx ? "x.npy" : "y.npy",
                                    hx ? "y.npy" : "x.npy");
  kiln_tensor tx = {0}, ty = {0};
  int rc = -1;
  if (kiln_npy_read(xp, &tx, d) || kiln_npy_read(yp, &ty, d)) goto out;
  if (tx.dtype != KILN_DT_F32 && tx.dtype != KILN_DT_U8) {
    kiln_error(d, NULL, "%s: samples must be float32 or uint8, got %s", xp, kiln_dtype_name(tx.dtype));
    goto out;
  }
  if (tx.rank < 2 || tx.rank - 1 > KILN_DATA_MAX_RANK) {
    kiln_error(d, NULL, "%s: expected N x C x H x W (or N x C x D x H x W) samples, got rank %d", xp, tx.rank);
    goto out;
  }
  if (check_sample_dims(xp, tx.dims + 1, tx.rank - 1, w, 0, d)) goto out;
  if (ty.rank < 1 || ty.dims[0] != tx.dims[0]) {
    kiln_error(d, NULL, "%s: %lld targets for %lld samples in x.npy", yp, ty.rank ? (long long)ty.dims[0] : 1LL,
               (long long)tx.dims[0]);
    goto out;
  }
  ds->n = tx.dims[0];
  ds->xrank = tx.rank - 1;
  ds->xsize = 1;
  for (int i = 1; i < tx.rank; i++) ds->xsize *= (ds->xdims[i - 1] = tx.dims[i]);
  int64_t total = mul_checked(ds->n, ds->xsize);
  if (ds->n < 1) { kiln_error(d, NULL, "%s: holds no samples", xp); goto out; }
  if (total < 0 || !(ds->x = malloc((size_t)total * sizeof(float)))) { kiln_error(d, NULL, "%s: too large", xp); goto out; }
  for (int64_t i = 0; i < total; i++)
    ds->x[i] = tx.dtype == KILN_DT_U8 ? (float)((const uint8_t *)tx.data)[i] / 255.0f : ((const float *)tx.data)[i];
  ds->yrank = ty.rank - 1;
  if (ds->yrank > KILN_DATA_MAX_RANK) { kiln_error(d, NULL, "%s: rank %d targets", yp, ty.rank); goto out; }
  ds->ysize = 1;
  for (int i = 1; i < ty.rank; i++) ds->ysize *= (ds->ydims[i - 1] = ty.dims[i]);
  int64_t ytotal = ds->n * ds->ysize; /* the reader checked it against the file's size */
  snprintf(ds->source, sizeof ds->source, "%s", yp);
  if (ty.dtype == KILN_DT_I64) {
    if (!(ds->y = malloc((size_t)ytotal * sizeof(int64_t) + 1))) { kiln_error(d, NULL, "%s: out of memory", yp); goto out; }
    memcpy(ds->y, ty.data, (size_t)ytotal * sizeof(int64_t));
    if (check_labels(yp, ds->y, ytotal, ds->ysize, w, d)) goto out;
  } else if (ty.dtype == KILN_DT_F32 && w->float_targets) {
    ds->yfloat = 1;
    if (!(ds->yf = malloc((size_t)ytotal * sizeof(float) + 1))) { kiln_error(d, NULL, "%s: out of memory", yp); goto out; }
    memcpy(ds->yf, ty.data, (size_t)ytotal * sizeof(float));
  } else {
    kiln_error(d, NULL, "%s: targets must be int64 class ids%s, got %s", yp, w->float_targets ? " or float32" : "",
               kiln_dtype_name(ty.dtype));
    goto out;
  }
  rc = 0;
out:
  kiln_tensor_free(&tx);
  kiln_tensor_free(&ty);
  return rc;
}

/* ---- idx (MNIST / Fashion-MNIST) ---- */
/* Reads file into a buffer holding exactly `want` bytes after a header of
 * hlen bytes (big-endian magic + dims), growing as data arrives. */
static int idx_read(const char *path, unsigned want_magic, int ndims, int64_t *dims, uint8_t **data, kiln_diag *d) {
  gzFile f = gzopen(path, "rb");
  if (!f) return kiln_error(d, NULL, "%s: cannot open: %s", path, strerror(errno));
  uint8_t h[16];
  int hlen = 4 + 4 * ndims, rc = -1;
  uint8_t *buf = NULL;
  if (gzread(f, h, (unsigned)hlen) != hlen) { kiln_error(d, NULL, "%s: truncated idx header", path); goto out; }
  unsigned magic = (unsigned)h[0] << 24 | (unsigned)h[1] << 16 | (unsigned)h[2] << 8 | h[3];
  if (magic != want_magic) {
    kiln_error(d, NULL, "%s: not an idx%d file of unsigned bytes (magic 0x%08x, expected 0x%08x)", path, ndims, magic, want_magic);
    goto out;
  }
  int64_t total = 1;
  for (int i = 0; i < ndims; i++) {
    const uint8_t *p = h + 4 + 4 * i;
    dims[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    if ((total = mul_checked(total, dims[i])) < 0) { kiln_error(d, NULL, "%s: idx header dims are too large", path); goto out; }
  }
  if (total == 0) { kiln_error(d, NULL, "%s: holds no samples", path); goto out; }
  size_t cap = 0, have = 0;
  for (;;) {
    if (have == cap) {
      size_t nc = cap ? cap * 2 : 1 << 16;
      if (nc > (size_t)total + 1) nc = (size_t)total + 1; /* one byte more: detects trailing data */
      if (nc == cap) break;
      uint8_t *nb = realloc(buf, nc);
      if (!nb) { kiln_error(d, NULL, "%s: out of memory", path); goto out; }
      buf = nb;
      cap = nc;
    }
    int got = gzread(f, buf + have, (unsigned)(cap - have > (1u << 30) ? (1u << 30) : cap - have));
    if (got < 0) { int e; kiln_error(d, NULL, "%s: cannot read: %s", path, gzerror(f, &e)); goto out; }
    if (got == 0) break;
    have += (size_t)got;
  }
  if ((int64_t)have < total) {
    kiln_error(d, NULL, "%s: truncated: the header promises %lld bytes of data, the file holds %zu", path, (long long)total, have);
    goto out;
  }
  if ((int64_t)have > total) { kiln_error(d, NULL, "%s: has data past what its header describes", path); goto out; }
  *data = buf;
  buf = NULL;
  rc = 0;
out:
  free(buf);
  gzclose(f);
  return rc;
}

static int find_idx(const char *dir, const char *stem, char *out, size_t size) {
  char name[128];
  snprintf(name, sizeof name, "%s", stem);
  if (file_exists(dir, name, out, size)) return 1;
  snprintf(name, sizeof name, "%s.gz", stem);
  return file_exists(dir, name, out, size);
}

static int load_idx(const char *dir, const char *prefix, const kiln_data_want *w, kiln_dataset *ds, kiln_diag *d) {
  char ip[4096], lp[4096], stem[64];
  snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", prefix);
  int hi = find_idx(dir, stem, ip, sizeof ip);
  snprintf(stem, sizeof stem, "%s-labels-idx1-ubyte", prefix);
  int hl = find_idx(dir, stem, lp, sizeof lp);
  if (!hi || !hl)
    return kiln_error(d, NULL, "%s/%s-%s-idx%d-ubyte[.gz]: missing (its %s file is there)", dir, prefix,
                      hi ? "labels" : "images", hi ? 1 : 3, hi ? "images" : "labels");
  int64_t idim[3] = {0}, ldim[1] = {0}; /* idx_read fills them on success only */
  uint8_t *img = NULL, *lab = NULL;
  int rc = -1;
  if (idx_read(ip, 0x803, 3, idim, &img, d) || idx_read(lp, 0x801, 1, ldim, &lab, d)) goto out;
  if (ldim[0] != idim[0]) {
    kiln_error(d, NULL, "%s: %lld labels for the %lld images of %s", lp, (long long)ldim[0], (long long)idim[0], ip);
    goto out;
  }
  int64_t have[3] = {1, idim[1], idim[2]};
  if (check_sample_dims(ip, have, 3, w, 1, d)) goto out;
  ds->n = idim[0];
  ds->xrank = 3;
  memcpy(ds->xdims, w->xdims, 3 * sizeof(int64_t));
  ds->xsize = w->xdims[1] * w->xdims[2];
  int64_t total = mul_checked(ds->n, ds->xsize);
  if (total < 0 || !(ds->x = calloc((size_t)total, sizeof(float)))) { kiln_error(d, NULL, "%s: too large", ip); goto out; }
  int64_t oy = (w->xdims[1] - idim[1]) / 2, ox = (w->xdims[2] - idim[2]) / 2; /* centred zero padding */
  for (int64_t s = 0; s < ds->n; s++)
    for (int64_t r = 0; r < idim[1]; r++)
      for (int64_t c = 0; c < idim[2]; c++)
        ds->x[s * ds->xsize + (r + oy) * w->xdims[2] + c + ox] = (float)img[(s * idim[1] + r) * idim[2] + c] / 255.0f;
  ds->yrank = 0;
  ds->ysize = 1;
  if (!(ds->y = malloc((size_t)ds->n * sizeof(int64_t)))) { kiln_error(d, NULL, "%s: out of memory", lp); goto out; }
  for (int64_t s = 0; s < ds->n; s++) ds->y[s] = lab[s];
  snprintf(ds->source, sizeof ds->source, "%s", lp);
  rc = check_labels(lp, ds->y, ds->n, 1, w, d);
out:
  free(img);
  free(lab);
  return rc;
}

/* ---- class sub-folders of images ---- */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted names in dir (sub-folders or regular files), "." entries
 * left out.  -1 with d set on failure. */
static int list_dir(const char *dir, int want_dirs, char ***names, int *count, kiln_diag *d) {
  DIR *dd = opendir(dir);
  *names = NULL;
  *count = 0;
  if (!dd) return kiln_error(d, NULL, "%s: cannot read: %s", dir, strerror(errno));
  struct dirent *e;
  int cap = 0;
  while ((e = readdir(dd))) {
    if (e->d_name[0] == '.') continue;
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) != 0 || (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(*names, (size_t)cap * sizeof *nn);
      if (!nn) { closedir(dd); return kiln_error(d, NULL, "%s: out of memory", dir); }
      *names = nn;
    }
    if (!((*names)[(*count)++] = strdup(e->d_name))) { closedir(dd); return kiln_error(d, NULL, "%s: out of memory", dir); }
  }
  closedir(dd);
  if (*count) qsort(*names, (size_t)*count, sizeof **names, cmp_str);
  return 0;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

static int load_images(const char *dir, const kiln_data_want *w, kiln_dataset *ds, kiln_diag *d) {
  char **classes = NULL;
  int nclass = 0, rc = -1;
  if (list_dir(dir, 1, &classes, &nclass, d)) goto out;
  if (!nclass)
    { kiln_error(d, NULL, "%s: no training data (x.npy + y.npy, idx files, or one sub-folder of images per class)", dir); goto out; }
  if (w->xrank != 3 || (w->xdims[0] != 1 && w->xdims[0] != 3)) {
    kiln_error(d, NULL, "%s: image folders need a model input of 1 or 3 channels x H x W", dir);
    goto out;
  }
  if (w->nclasses > 0 && nclass > w->nclasses) {
    kiln_error(d, NULL, "%s: %d class folders for the model's %lld classes", dir, nclass, (long long)w->nclasses);
    goto out;
  }
  int64_t C = w->xdims[0], H = w->xdims[1], W = w->xdims[2], cap = 0;
  ds->xrank = 3;
  memcpy(ds->xdims, w->xdims, 3 * sizeof(int64_t));
  ds->xsize = C * H * W;
  ds->ysize = 1;
  for (int k = 0; k < nclass; k++) {
    char cdir[4096];
    snprintf(cdir, sizeof cdir, "%s/%s", dir, classes[k]);
    char **files = NULL;
    int nf = 0;
    if (list_dir(cdir, 0, &files, &nf, d)) { free_names(files, nf); goto out; }
    for (int i = 0; i < nf; i++) {
      char fp[4096];
      snprintf(fp, sizeof fp, "%s/%s", cdir, files[i]);
      kiln_image im;
      if (kiln_image_read(fp, H * W > MAX_IMAGE_PIXELS ? H * W : MAX_IMAGE_PIXELS, &im, d)) { free_names(files, nf); goto out; }
      if (im.width != W || im.height != H) {
        kiln_error(d, NULL, "%s: the image is %dx%d but the model's input is %lldx%lld", fp, im.width, im.height,
                   (long long)W, (long long)H);
        kiln_image_free(&im);
        free_names(files, nf);
        goto out;
      }
      if (ds->n == cap) {
        cap = cap ? 2 * cap : 256;
        float *nx = mul_checked(cap, ds->xsize) < 0 ? NULL : realloc(ds->x, (size_t)(cap * ds->xsize) * sizeof(float));
        int64_t *ny = nx ? realloc(ds->y, (size_t)cap * sizeof(int64_t)) : NULL;
        if (nx) ds->x = nx;
        if (ny) ds->y = ny;
        if (!nx || !ny) { kiln_image_free(&im); free_names(files, nf); kiln_error(d, NULL, "%s: out of memory", dir); goto out; }
      }
      float *dst = ds->x + ds->n * ds->xsize;
      for (int64_t p = 0; p < H * W; p++) {
        const float *px = im.rgb + 3 * p;
        if (C == 3)
          for (int c = 0; c < 3; c++) dst[c * H * W + p] = px[c] / 255.0f;
        else if (im.file_channels <= 2) dst[p] = px[0] / 255.0f; /* a grey file: its value, exactly */
        else dst[p] = (0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2]) / 255.0f; /* colour: ITU-R BT.601 luma */
      }
      ds->y[ds->n++] = k;
      kiln_image_free(&im);
    }
    free_names(files, nf);
  }
  if (!ds->n) { kiln_error(d, NULL, "%s: the class folders hold no images", dir); goto out; }
  snprintf(ds->source, sizeof ds->source, "%s", dir);
  rc = 0;
out:
  free_names(classes, nclass);
  return rc;
}

int kiln_dataset_load(const char *dir, const kiln_data_want *w, int test, kiln_dataset *ds, kiln_diag *d) {
  memset(ds, 0, sizeof *ds);
  struct stat st;
  if (stat(dir, &st) != 0) return kiln_error(d, NULL, "%s: no such folder", dir);
  if (!S_ISDIR(st.st_mode)) return kiln_error(d, NULL, "%s: not a folder", dir);
  char p[4096];
  int rc;
  if (file_exists(dir, "x.npy", p, sizeof p) || file_exists(dir, "y.npy", p, sizeof p)) rc = load_npy(dir, w, ds, d);
  else {
    int has_train = find_idx(dir, "train-images-idx3-ubyte", p, sizeof p) || find_idx(dir, "train-labels-idx1-ubyte", p, sizeof p);
    int has_test = find_idx(dir, "t10k-images-idx3-ubyte", p, sizeof p) || find_idx(dir, "t10k-labels-idx1-ubyte", p, sizeof p);
    if (has_train || has_test) rc = load_idx(dir, (test && has_test) || !has_train ? "t10k" : "train", w, ds, d);
    else rc = load_images(dir, w, ds, d);
  }
  if (rc) kiln_dataset_free(ds);
  return rc;
}

int kiln_dataset_subset(const kiln_dataset *ds, const int64_t *idx, int64_t k, kiln_dataset *out, kiln_diag *d) {
  *out = *ds;
  out->n = k;
  out->x = malloc((size_t)(k * ds->xsize) * sizeof(float) + 1);
  out->y = ds->y ? malloc((size_t)(k * ds->ysize) * sizeof(int64_t) + 1) : NULL;
  out->yf = ds->yf ? malloc((size_t)(k * ds->ysize) * sizeof(float) + 1) : NULL;
  if (!out->x || (ds->y && !out->y) || (ds->yf && !out->yf)) {
    kiln_dataset_free(out);
    return kiln_error(d, NULL, "out of memory");
  }
  for (int64_t i = 0; i < k; i++) {
    memcpy(out->x + i * ds->xsize, ds->x + idx[i] * ds->xsize, (size_t)ds->xsize * sizeof(float));
    if (ds->y) memcpy(out->y + i * ds->ysize, ds->y + idx[i] * ds->ysize, (size_t)ds->ysize * sizeof(int64_t));
    if (ds->yf) memcpy(out->yf + i * ds->ysize, ds->yf + idx[i] * ds->ysize, (size_t)ds->ysize * sizeof(float));
  }
  return 0;
}
