/* Preprocessing for `kiln run --image`: a decoded RGB image (floats 0..255)
 * becomes one item of the model's input tensor.  The steps, in order:
 *
 *  1. Resize.  exact: to the target H x W.  shorter: by s = max(H/h, W/w)
 *     so the image covers the target (new size round(h*s) x round(w*s),
 *     rounding half up), then crop the centre H x W (offset floor of half
 *     the excess on each axis).
 *  2. The filter is bilinear with antialiasing, defined per axis exactly as
 *     Pillow's Image.resize(..., BILINEAR) (and torchvision's antialias=True)
 *     computes its weights, but in floating point with no 8-bit rounding
 *     between the passes: for output pixel i of an axis resized from n to
 *     m, scale = n/m, f = max(scale, 1), centre = (i + 0.5) * scale, taps
 *     x from max((int)(centre - f + 0.5), 0) to min((int)(centre + f + 0.5), n)
 *     - 1, weight tri((x - centre + 0.5) / f) with tri(t) = max(0, 1 - |t|),
 *     normalised to sum 1.  Upscaling is plain bilinear (f = 1); when
 *     downscaling the triangle widens to cover every source pixel (f > 1),
 *     which is what keeps a 4000-pixel photo from aliasing at 224.
 *     Horizontal pass first, then vertical.
 *  3. Channels in the tensor's order (RGB or BGR), each value
 *     (pixel * scale - mean[c]) / std[c], c counted in the tensor's order,
 *     stored in the input's element type (f16 rounds to nearest even).
 *  4. Layout NCHW or NHWC.
 *
 * tests/tools/test_run_image.py implements the same definition in NumPy. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_io.h"

void kiln_image_prep_init(kiln_image_prep *p) {
  memset(p, 0, sizeof *p);
  p->resize = KILN_RESIZE_EXACT;
  p->scale = 1.0 / 255.0;
  for (int c = 0; c < 3; c++) p->std[c] = 1.0;
}

/* A finite number, or "A/B" (e.g. 1/255). */
static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s) return -1;
  if (*end == '/') {
    const char *t = end + 1;
    double q = strtod(t, &end);
    if (end == t || q == 0) return -1;
    v /= q;
  }
  while (*end == ' ') end++;
  if (*end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int parse_triple(const char *s, double out[3]) {
  char buf[256];
  if (strlen(s) >= sizeof buf) return -1;
  strcpy(buf, s);
  char *save = NULL, *tok = strtok_r(buf, ",", &save);
  for (int c = 0; c < 3; c++, tok = strtok_r(NULL, ",", &save))
    if (!tok || parse_number(tok, &out[c])) return -1;
  return tok ? -1 : 0;
}

int kiln_image_prep_set(kiln_image_prep *p, const char *key, const char *v, char *err, size_t errsize) {
  if (!strcmp(key, "resize")) {
    if (!strcmp(v, "exact")) p->resize = KILN_RESIZE_EXACT;
    else if (!strcmp(v, "shorter")) p->resize = KILN_RESIZE_SHORTER;
    else return snprintf(err, errsize, "resize must be exact or shorter"), -1;
  } else if (!strcmp(key, "channels")) {
    if (!strcmp(v, "rgb") || !strcmp(v, "bgr")) p->bgr = v[0] == 'b';
    else return snprintf(err, errsize, "channels must be rgb or bgr"), -1;
  } else if (!strcmp(key, "layout")) {
    if (!strcmp(v, "nchw") || !strcmp(v, "nhwc")) p->nhwc = !strcmp(v, "nhwc");
    else return snprintf(err, errsize, "layout must be nchw or nhwc"), -1;
  } else if (!strcmp(key, "scale")) {
    if (parse_number(v, &p->scale)) return snprintf(err, errsize, "scale must be a number (or A/B)"), -1;
  } else if (!strcmp(key, "mean")) {
    if (parse_triple(v, p->mean)) return snprintf(err, errsize, "mean must be three numbers a,b,c"), -1;
  } else if (!strcmp(key, "std")) {
    double s[3];
    if (parse_triple(v, s) || s[0] == 0 || s[1] == 0 || s[2] == 0)
      return snprintf(err, errsize, "std must be three non-zero numbers a,b,c"), -1;
    memcpy(p->std, s, sizeof s);
  } else {
    return snprintf(err, errsize, "unknown setting"), -1;
  }
  return 0;
}

int kiln_image_prep_from_meta(kiln_image_prep *p, const kiln_graph *g, kiln_diag *d) {
  static const char prefix[] = "kiln.image.";
  kiln_loc loc = {.file = g->file, .node_index = -1};
  for (int i = 0; i < g->nmeta; i++) {
    const char *k = g->meta_keys[i];
    if (strncmp(k, prefix, sizeof prefix - 1) || !strcmp(k + sizeof prefix - 1, "labels")) continue;
    char err[128];
    if (kiln_image_prep_set(p, k + sizeof prefix - 1, g->meta_values[i], err, sizeof err))
      return kiln_error(d, &loc, "metadata '%.64s': %s", k, err);
  }
  return 0;
}

/* Taps of one axis: for output i, weights w[i*taps + t] on source start[i] + t. */
typedef struct axis_coeffs {
  int taps;
  int *start;
  float *w;
} axis_coeffs;

static int axis_coeffs_make(axis_coeffs *a, int n, int m, int offset, int count) {
  double scale = (double)n / m, f = scale > 1 ? scale : 1;
  a->taps = (int)ceil(f) * 2 + 1;
  a->start = malloc(sizeof *a->start * (size_t)count);
  a->w = calloc((size_t)count * (size_t)a->taps, sizeof *a->w);
  double *ws = malloc(sizeof *ws * (size_t)a->taps);
  if (!a->start || !a->w || !ws) { free(ws); return -1; }
  for (int i = 0; i < count; i++) {
    double centre = (i + offset + 0.5) * scale;
    int lo = (int)(centre - f + 0.5), hi = (int)(centre + f + 0.5);
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    if (hi - lo > a->taps) hi = lo + a->taps;
    double sum = 0;
    for (int x = lo; x < hi; x++) {
      double t = fabs((x - centre + 0.5) / f);
      ws[x - lo] = t < 1 ? 1 - t : 0;
      sum += ws[x - lo];
    }
    a->start[i] = lo;
    for (int x = lo; x < hi; x++) a->w[(size_t)i * a->taps + (x - lo)] = (float)(sum > 0 ? ws[x - lo] / sum : 0);
  }
  free(ws);
  return 0;
}

static void axis_coeffs_free(axis_coeffs *a) {
  free(a->start);
  free(a->w);
}

static long round_half_up(double v) { return (long)floor(v + 0.5); }

int kiln_image_to_tensor(const kiln_image *im, const kiln_image_prep *p, kiln_dtype dt, void *dst, int64_t index) {
  const int H = p->height, W = p->width, h = im->height, w = im->width;
  int nh = H, nw = W, oy = 0, ox = 0;
  if (p->resize == KILN_RESIZE_SHORTER) {
    double s = (double)H / h > (double)W / w ? (double)H / h : (double)W / w;
    long rh = round_half_up(h * s), rw = round_half_up(w * s);
    nh = rh < H ? H : rh > 1 << 30 ? 1 << 30 : (int)rh;
    nw = rw < W ? W : rw > 1 << 30 ? 1 << 30 : (int)rw;
    oy = (nh - H) / 2;
    ox = (nw - W) / 2;
  }
  axis_coeffs ax = {0}, ay = {0};
  float *tmp = malloc(sizeof(float) * (size_t)h * (size_t)W * 3);
  int rc = -1;
  if (!tmp || axis_coeffs_make(&ax, w, nw, ox, W) || axis_coeffs_make(&ay, h, nh, oy, H)) goto done;
  /* Horizontal pass: h x w -> h x W. */
  for (int y = 0; y < h; y++) {
    const float *src = im->rgb + (size_t)y * w * 3;
    for (int x = 0; x < W; x++) {
      float acc[3] = {0, 0, 0};
      const float *wt = ax.w + (size_t)x * ax.taps;
      for (int t = 0; t < ax.taps && ax.start[x] + t < w; t++)
        for (int c = 0; c < 3; c++) acc[c] += wt[t] * src[(size_t)(ax.start[x] + t) * 3 + c];
      memcpy(tmp + ((size_t)y * W + x) * 3, acc, sizeof acc);
    }
  }
  /* Vertical pass and normalisation into the tensor. */
  const size_t item = (size_t)H * W * 3, plane = (size_t)H * W;
  for (int y = 0; y < H; y++) {
    const float *wt = ay.w + (size_t)y * ay.taps;
    for (int x = 0; x < W; x++) {
      double acc[3] = {0, 0, 0};
      for (int t = 0; t < ay.taps && ay.start[y] + t < h; t++)
        for (int c = 0; c < 3; c++) acc[c] += (double)wt[t] * tmp[((size_t)(ay.start[y] + t) * W + x) * 3 + c];
      for (int c = 0; c < 3; c++) { /* c: tensor channel */
        double v = acc[p->bgr ? 2 - c : c];
        v = (v * p->scale - p->mean[c]) / p->std[c];
        size_t at = (size_t)index * item + (p->nhwc ? ((size_t)y * W + x) * 3 + c : c * plane + (size_t)y * W + x);
        kiln_dtype_store_f(dt, dst, at, v);
      }
    }
  }
  rc = 0;
done:
  free(tmp);
  axis_coeffs_free(&ax);
  axis_coeffs_free(&ay);
  return rc;
}
