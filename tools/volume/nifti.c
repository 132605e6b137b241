/* NIfTI volumes through niftilib (Debian libnifti2-dev; reads NIfTI-1 and
 * NIfTI-2, .nii/.nii.gz/.hdr+.img, gzip via znzlib).  The library prints
 * its own diagnostics only above debug level 0, so it is kept silent and
 * every failure becomes one kiln error line.  Hostile files: kiln reads and
 * checks the header itself first (niftilib prints on some malformed headers
 * whatever the debug level, and recurses without bound on others - found
 * by tests/fuzz/fuzz_volume_nifti), then lets niftilib parse it, and checks (dimensions, voxel count, data type; the file size
 * against the declared image, allowing deflate's maximum ratio for .gz)
 * before any voxel memory is allocated.
 * Labels are written with the input's own header when there was one (so
 * qform, sform, pixdim and units round-trip exactly), else with sform and
 * qform built from the affine. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti2_io.h>
#include <zlib.h>

#include "volume.h"

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static double voxel_at(const nifti_image *nim, int64_t e) {
  const void *p = nim->data;
  switch (nim->datatype) {
  case DT_UINT8: return ((const uint8_t *)p)[e];
  case DT_INT8: return ((const int8_t *)p)[e];
  case DT_INT16: return ((const int16_t *)p)[e];
  case DT_UINT16: return ((const uint16_t *)p)[e];
  case DT_INT32: return ((const int32_t *)p)[e];
  case DT_UINT32: return ((const uint32_t *)p)[e];
  case DT_INT64: return (double)((const int64_t *)p)[e];
  case DT_UINT64: return (double)((const uint64_t *)p)[e];
  case DT_FLOAT32: return ((const float *)p)[e];
  case DT_FLOAT64: return ((const double *)p)[e];
  default: return 0;
  }
}

static int type_ok(int dt) {
  return dt == DT_UINT8 || dt == DT_INT8 || dt == DT_INT16 || dt == DT_UINT16 || dt == DT_INT32 ||
         dt == DT_UINT32 || dt == DT_INT64 || dt == DT_UINT64 || dt == DT_FLOAT32 || dt == DT_FLOAT64;
}

static int64_t le(const unsigned char *p, int bytes, int swap) {
  uint64_t x = 0;
  for (int k = 0; k < bytes; k++) x |= (uint64_t)p[swap ? bytes - 1 - k : k] << (8 * k);
  if (bytes < 8 && (x >> (8 * bytes - 1)) & 1) x |= ~(uint64_t)0 << (8 * bytes); /* sign-extend */
  return (int64_t)x;
}

/* kiln's own check of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header,
 * plain or gzip'd: magic, dim[0] in 1..7, dims >= 1, a known data type
 * whose bitpix matches.  NULL when it looks sane, else what is wrong. */
static const char *check_header(const char *path) {
  gzFile z = gzopen(path, "rb");
  if (!z) return "cannot open";
  unsigned char h[540];
  int n = gzread(z, h, sizeof h);
  gzclose(z);
  if (n < 348) return n < 0 ? "not a readable NIfTI file (corrupt gzip)" : "not a NIfTI file (header too short)";
  int v2 = 0, swap = 0;
  if (le(h, 4, 0) == 348 || le(h, 4, 1) == 348) swap = le(h, 4, 1) == 348;
  else if (n == 540 && (le(h, 4, 0) == 540 || le(h, 4, 1) == 540)) v2 = 1, swap = le(h, 4, 1) == 540;
  else return "not a NIfTI-1/-2 file (bad header size field)";
  if (v2 ? memcmp(h + 4, "n+2\0\r\n\032\n", 8) && memcmp(h + 4, "ni2\0\r\n\032\n", 8)
         : memcmp(h + 344, "n+1", 4) && memcmp(h + 344, "ni1", 4))
    return "not a NIfTI-1/-2 file (bad magic)";
  int64_t dim[8];
  for (int k = 0; k < 8; k++) dim[k] = v2 ? le(h + 16 + 8 * k, 8, swap) : le(h + 40 + 2 * k, 2, swap);
  int dt = (int)le(h + (v2 ? 12 : 70), 2, swap), bitpix = (int)le(h + (v2 ? 14 : 72), 2, swap);
  if (dim[0] < 1 || dim[0] > 7) return "bad header: dim[0] is not in 1..7";
  for (int k = 1; k <= dim[0]; k++)
    if (dim[k] < 1 || dim[k] > KILN_VOLUME_MAX_VOXELS) return "bad header: a dimension is not in 1..2^31";
  int nbyper = 0, swapsize = 0;
  nifti_datatype_sizes(dt, &nbyper, &swapsize);
  if (nbyper == 0 || bitpix != 8 * nbyper) return "bad header: unknown data type or bitpix";
  return NULL;
}

/* niftilib reads exactly the voxel bytes, so zlib may never reach the gzip
 * trailer: read the whole stream once more so a bad CRC or length is seen. */
static int gz_intact(const char *path) {
  gzFile z = gzopen(path, "rb");
  if (!z) return 0;
  static const size_t chunk = 1 << 16;
  char *buf = malloc(chunk);
  int n = 0, err = 0;
  while (buf && (n = gzread(z, buf, (unsigned)chunk)) > 0) {}
  gzerror(z, &err);
  gzclose(z);
  free(buf);
  return buf && n == 0 && err == Z_OK;
}

int kiln_volume_read_nifti(const char *path, kiln_volume *v, kiln_diag *d) {
  memset(v, 0, sizeof *v);
  nifti_set_debug_level(0);
  struct stat st;
  if (stat(path, &st) != 0) return kiln_error(d, NULL, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return kiln_error(d, NULL, "%s: not a file", path);
  if (!nifti_is_complete_filename(path) && !ends_with(path, ".nii") && !ends_with(path, ".nii.gz"))
    return kiln_error(d, NULL, "%s: not a NIfTI file name (.nii, .nii.gz, .hdr)", path);
  const char *bad = check_header(path);
  if (bad) return kiln_error(d, NULL, "%s: %s", path, bad);
  nifti_image *nim = nifti_image_read(path, 0);
  if (!nim)
    return kiln_error(d, NULL, "%s: not a readable NIfTI file (bad header%s)", path,
                      ends_with(path, ".gz") ? ", or corrupt gzip" : "");
  const char *why = NULL;
  char msg[160];
  if (nim->dim[0] < 1 || nim->dim[0] > 7) why = "header dim[0] is out of range";
  for (int k = 1; !why && k <= nim->dim[0]; k++)
    if (nim->dim[k] < 1) why = "a dimension is not positive";
  int64_t extra = 1;
  for (int k = 4; !why && k <= nim->dim[0]; k++) /* saturating: dims are forged at will */
    if (__builtin_mul_overflow(extra, nim->dim[k] > 0 ? nim->dim[k] : 1, &extra)) extra = INT64_MAX;
  if (!why && extra != 1) {
    snprintf(msg, sizeof msg, "wrong dimensionality: %d-D with %lld%s volumes; kiln takes one 2-D or 3-D image",
             (int)nim->dim[0], (long long)extra, extra == INT64_MAX ? " or more" : "");
    why = msg;
  }
  if (!why && !type_ok(nim->datatype)) {
    snprintf(msg, sizeof msg, "unsupported voxel type %s (want an integer or real scalar type)",
             nifti_datatype_string(nim->datatype));
    why = msg;
  }
  int64_t n[3] = {nim->nx, nim->dim[0] >= 2 ? nim->ny : 1, nim->dim[0] >= 3 ? nim->nz : 1};
  for (int k = 0; k < 3; k++) if (n[k] < 1) n[k] = 1;
  if (!why && (n[0] > KILN_VOLUME_MAX_VOXELS / n[1] || n[0] * n[1] > KILN_VOLUME_MAX_VOXELS / n[2]))
    why = "too many voxels (more than 2^31)";
  int64_t count = why ? 0 : n[0] * n[1] * n[2];
  if (!why && ends_with(nim->iname ? nim->iname : "", ".gz")) {
    /* Deflate expands at most 1032:1: a small .gz cannot hold a huge image,
     * so a forged header is refused before its memory is allocated. */
    struct stat si;
    if (stat(nim->iname, &si) != 0) why = "its image file is missing";
    else if (count / 1032 > (si.st_size + 1) / nim->nbyper)
      why = "truncated or corrupt gzip: the file is far too small for the image its header declares";
  } else if (!why) {
    struct stat si;
    if (!nim->iname || stat(nim->iname, &si) != 0) why = "its image file is missing";
    else if (nim->iname_offset < 0 || si.st_size < nim->iname_offset ||
             (si.st_size - nim->iname_offset) / nim->nbyper < count)
      why = "truncated: the file is shorter than its header says";
  }
  nifti_dmat44 m = nim->sform_code > 0 ? nim->sto_xyz : nim->qto_xyz;
  for (int r = 0; !why && r < 4; r++)
    for (int c = 0; c < 4; c++)
      if (!isfinite(m.m[r][c])) why = "its affine (qform/sform) is not finite";
  for (int c = 0; !why && c < 3; c++)
    if (m.m[0][c] == 0 && m.m[1][c] == 0 && m.m[2][c] == 0) why = "its affine has a zero column";
  if (!why && nifti_image_load(nim) != 0) why = "cannot read the voxel data (truncated file or corrupt gzip)";
  if (!why && ends_with(nim->iname, ".gz") && !gz_intact(nim->iname)) why = "corrupt gzip (bad data, CRC or length)";
  if (why) {
    nifti_image_free(nim);
    return kiln_error(d, NULL, "%s: %s", path, why);
  }
  v->data = malloc((size_t)count * sizeof *v->data);
  if (!v->data) {
    nifti_image_free(nim);
    return kiln_error(d, NULL, "%s: out of memory for %lld voxels", path, (long long)count);
  }
  double slope = nim->scl_slope, inter = nim->scl_inter;
  int scaled = slope != 0 && isfinite(slope) && isfinite(inter);
  for (int64_t e = 0; e < count; e++) {
    double x = voxel_at(nim, e);
    v->data[e] = (float)(scaled ? slope * x + inter : x);
  }
  memcpy(v->n, n, sizeof n);
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 4; c++) v->affine[r][c] = m.m[r][c];
  free(nim->data);
  nim->data = NULL;
  v->nifti = nim;
  return 0;
}

void kiln_volume_free(kiln_volume *v) {
  free(v->data);
  if (v->nifti) nifti_image_free(v->nifti);
  memset(v, 0, sizeof *v);
}

int kiln_volume_write_labels(const char *path, const kiln_volume *v, const uint8_t *labels, kiln_diag *d) {
  nifti_set_debug_level(0);
  int gz = ends_with(path, ".nii.gz");
  if (!gz && !ends_with(path, ".nii")) return kiln_error(d, NULL, "%s: --seg-out must name a .nii or .nii.gz file", path);
  nifti_image *nim;
  if (v->nifti) {
    nim = nifti_copy_nim_info(v->nifti);
  } else {
    int64_t dims[8] = {3, v->n[0], v->n[1], v->n[2], 1, 1, 1, 1};
    nim = nifti_make_new_nim(dims, DT_UINT8, 0);
    if (nim) {
      nifti_dmat44 a;
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) a.m[r][c] = v->affine[r][c];
      double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
      nifti_dmat44_to_quatern(a, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
      nim->quatern_b = qb; nim->quatern_c = qc; nim->quatern_d = qd;
      nim->qoffset_x = qx; nim->qoffset_y = qy; nim->qoffset_z = qz;
      nim->qfac = qfac;
      nim->dx = nim->pixdim[1] = dx;
      nim->dy = nim->pixdim[2] = dy;
      nim->dz = nim->pixdim[3] = dz;
      nim->qform_code = nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
      nim->sto_xyz = a;
      nim->xyz_units = NIFTI_UNITS_MM;
      nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    }
  }
  if (!nim) return kiln_error(d, NULL, "%s: out of memory", path);
  int64_t dims[8] = {3, v->n[0], v->n[1], v->n[2], 1, 1, 1, 1};
  for (int k = 0; k < 8; k++) nim->dim[k] = dims[k];
  nifti_update_dims_from_array(nim);
  nifti_datatype_sizes(DT_UINT8, &nim->nbyper, &nim->swapsize);
  nim->datatype = DT_UINT8;
  nim->scl_slope = 1;
  nim->scl_inter = 0;
  nim->cal_min = 0;
  nim->cal_max = 0;
  for (int64_t e = 0; e < nim->nvox; e++) nim->cal_max = labels[e] > nim->cal_max ? labels[e] : nim->cal_max;
  nim->intent_code = NIFTI_INTENT_LABEL;
  memset(nim->intent_name, 0, sizeof nim->intent_name);
  snprintf(nim->descrip, sizeof nim->descrip, "kiln segmentation");
  /* One .nii file; NIfTI-2 when the input was, or when a dimension does
   * not fit NIfTI-1's int16. */
  int v2 = nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 || nim->nifti_type == NIFTI_FTYPE_NIFTI2_2;
  for (int k = 0; k < 3; k++) v2 |= v->n[k] > 32767;
  nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
  nifti_free_extensions(nim);
  /* Temporary name in the same folder, keeping the extension niftilib
   * picks the format from; renamed into place once written and re-read. */
  size_t len = strlen(path) + 48;
  char *tmp = malloc(len), *fin = strdup(path);
  if (!tmp || !fin) {
    free(tmp); free(fin);
    nifti_image_free(nim);
    return kiln_error(d, NULL, "%s: out of memory", path);
  }
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  snprintf(tmp, len, "%.*s.kiln-tmp-%ld-%s", dirlen, path, (long)getpid(), path + dirlen);
  free(nim->fname);
  free(nim->iname);
  nim->fname = strdup(tmp);
  nim->iname = strdup(tmp);
  nim->data = (void *)labels;
  nifti_image_write(nim);
  nim->data = NULL;
  nifti_image *back = nifti_image_read(tmp, 1);
  int ok = back && back->nvox == nim->nvox && back->datatype == DT_UINT8 &&
           !memcmp(back->data, labels, (size_t)back->nvox);
  if (back) nifti_image_free(back);
  nifti_image_free(nim);
  if (!ok || rename(tmp, fin) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp); free(fin);
    return kiln_error(d, NULL, "%s: cannot write the segmentation%s%s", path, ok ? ": " : "", ok ? strerror(e) : "");
  }
  free(tmp);
  free(fin);
  return 0;
}
