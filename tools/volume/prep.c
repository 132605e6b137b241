/* Volume preparation for a model, and the way back: the closest canonical
 * orientation (nibabel's as_closest_canonical, without its polar
 * decomposition of sheared affines), intensity windowing, trilinear
 * resampling with half-pixel centres, and nearest-neighbour label
 * resampling back to the volume's grid.  Conventions in volume.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "volume.h"

void kiln_volume_canon(const kiln_volume *v, kiln_canon *c) {
  double r[3][3];
  for (int col = 0; col < 3; col++) {
    double z = 0;
    for (int row = 0; row < 3; row++) z += v->affine[row][col] * v->affine[row][col];
    z = z > 0 ? sqrt(z) : 1;
    for (int row = 0; row < 3; row++) r[row][col] = v->affine[row][col] / z;
  }
  int taken[3] = {0};
  for (int in = 0; in < 3; in++) { /* nibabel's io_orientation: greedy by voxel axis */
    int best = -1;
    for (int row = 0; row < 3; row++)
      if (!taken[row] && (best < 0 || fabs(r[row][in]) > fabs(r[best][in]))) best = row;
    taken[best] = 1;
    c->axis[best] = in;
    c->flip[best] = r[best][in] < 0;
    c->n[best] = v->n[in];
  }
}

/* Index of canonical voxel (a0, a1, a2) in the source grid. */
static int64_t source_index(const kiln_volume *v, const kiln_canon *c, const int64_t a[3]) {
  int64_t s[3];
  for (int w = 0; w < 3; w++) s[c->axis[w]] = c->flip[w] ? c->n[w] - 1 - a[w] : a[w];
  return (s[2] * v->n[1] + s[1]) * v->n[0] + s[0];
}

static void remap(const kiln_volume *v, const kiln_canon *c, const void *src, void *dst, size_t elem, int back) {
  int64_t a[3], e = 0;
  for (a[2] = 0; a[2] < c->n[2]; a[2]++)
    for (a[1] = 0; a[1] < c->n[1]; a[1]++)
      for (a[0] = 0; a[0] < c->n[0]; a[0]++, e++) {
        int64_t s = source_index(v, c, a);
        if (back) memcpy((char *)dst + (size_t)s * elem, (const char *)src + (size_t)e * elem, elem);
        else memcpy((char *)dst + (size_t)e * elem, (const char *)src + (size_t)s * elem, elem);
      }
}

void kiln_volume_to_canon(const kiln_volume *v, const kiln_canon *c, const void *src, void *dst, size_t elem) {
  remap(v, c, src, dst, elem, 0);
}

void kiln_volume_from_canon(const kiln_volume *v, const kiln_canon *c, const void *src, void *dst, size_t elem) {
  remap(v, c, src, dst, elem, 1);
}

void kiln_volume_window(float *x, int64_t count, double center, double width) {
  double lo = center - width / 2;
  for (int64_t e = 0; e < count; e++) {
    double y = ((double)x[e] - lo) / width;
    x[e] = (float)(y < 0 ? 0 : y > 1 ? 1 : y);
  }
}

/* Linear resampling along the middle axis of a grid [outer][n][inner] to
 * [outer][o][inner]. */
static void resample_axis(const float *src, float *dst, int64_t n, int64_t o, int64_t outer, int64_t inner) {
  for (int64_t q = 0; q < o; q++) {
    double x = ((double)q + 0.5) * (double)n / (double)o - 0.5;
    if (x < 0) x = 0;
    if (x > (double)(n - 1)) x = (double)(n - 1);
    int64_t i0 = (int64_t)floor(x), i1 = i0 + 1 < n ? i0 + 1 : i0;
    double t = x - (double)i0;
    for (int64_t a = 0; a < outer; a++)
      for (int64_t b = 0; b < inner; b++) {
        double y0 = src[(a * n + i0) * inner + b], y1 = src[(a * n + i1) * inner + b];
        dst[(a * o + q) * inner + b] = (float)(y0 + t * (y1 - y0));
      }
  }
}

int kiln_volume_resample(const float *src, const int64_t n[3], float *dst, const int64_t o[3]) {
  /* Separable: i (fastest) first, then j, then k; two scratch grids. */
  size_t s1 = (size_t)(o[0] * n[1] * n[2]), s2 = (size_t)(o[0] * o[1] * n[2]);
  float *t1 = malloc(s1 * sizeof *t1), *t2 = malloc(s2 * sizeof *t2);
  if (!t1 || !t2) { free(t1); free(t2); return -1; }
  resample_axis(src, t1, n[0], o[0], n[1] * n[2], 1);
  resample_axis(t1, t2, n[1], o[1], n[2], o[0]);
  resample_axis(t2, dst, n[2], o[2], 1, o[0] * o[1]);
  free(t1);
  free(t2);
  return 0;
}

static int64_t nearest(int64_t c, int64_t n, int64_t m) { /* floor((c + 0.5) * m / n), exact */
  int64_t q = ((2 * c + 1) * m) / (2 * n);
  return q < m ? q : m - 1;
}

void kiln_volume_labels_back(const uint8_t *src, const int64_t m[3], uint8_t *dst, const int64_t n[3]) {
  for (int64_t k = 0; k < n[2]; k++) {
    int64_t mk = nearest(k, n[2], m[2]);
    for (int64_t j = 0; j < n[1]; j++) {
      int64_t mj = nearest(j, n[1], m[1]);
      for (int64_t i = 0; i < n[0]; i++)
        dst[(k * n[1] + j) * n[0] + i] = src[(mk * m[1] + mj) * m[0] + nearest(i, n[0], m[0])];
    }
  }
}
