/* PNG overlays of segmentations (libpng): one axial slice as 8-bit RGB,
 * encoded in memory so the caller can write it atomically.  libpng reports
 * errors by longjmp; the encoder below keeps every allocation outside the
 * setjmp region so an error leaks nothing. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "volume.h"

typedef struct membuf {
  unsigned char *p;
  size_t len, cap;
  int oom;
} membuf;

static void put(png_structp png, png_bytep data, png_size_t n) {
  membuf *m = png_get_io_ptr(png);
  if (m->oom) return;
  if (m->len + n > m->cap) {
    size_t cap = (m->cap ? m->cap * 2 : 4096) + n;
    unsigned char *q = realloc(m->p, cap);
    if (!q) { m->oom = 1; return; }
    m->p = q;
    m->cap = cap;
  }
  memcpy(m->p + m->len, data, n);
  m->len += n;
}

static void flush(png_structp png) { (void)png; }

/* Palette for labels 1..: distinct, saturated. */
static const unsigned char palette[8][3] = {{230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200},
                                             {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};

int kiln_volume_overlay_png(const float *gray, const uint8_t *labels, int64_t ni, int64_t nj, void **out,
                            size_t *len, kiln_diag *d) {
  *out = NULL;
  *len = 0;
  if (ni < 1 || nj < 1 || ni > 1 << 20 || nj > 1 << 20) return kiln_error(d, NULL, "overlay: bad slice size");
  unsigned char *rgb = malloc((size_t)(ni * nj * 3));
  png_bytep *rows = malloc((size_t)nj * sizeof *rows);
  membuf m = {0};
  if (!rgb || !rows) { free(rgb); free(rows); return kiln_error(d, NULL, "overlay: out of memory"); }
  for (int64_t r = 0; r < nj; r++) {
    int64_t j = nj - 1 - r; /* anterior up */
    rows[r] = rgb + r * ni * 3;
    for (int64_t c = 0; c < ni; c++) {
      int64_t i = ni - 1 - c; /* patient's right on the left */
      float g = gray[j * ni + i];
      double y = g > 0 ? (g < 1 ? g : 1) : 0;
      unsigned char *px = rows[r] + c * 3;
      int lab = labels[j * ni + i];
      for (int ch = 0; ch < 3; ch++) {
        double v = 255.0 * y;
        if (lab) v = 0.5 * v + 0.5 * palette[(lab - 1) % 8][ch];
        px[ch] = (unsigned char)(v + 0.5);
      }
    }
  }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  volatile int ok = 0;
  if (png && info && !setjmp(png_jmpbuf(png))) {
    png_set_write_fn(png, &m, put, flush);
    png_set_IHDR(png, info, (png_uint_32)ni, (png_uint_32)nj, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    ok = !m.oom;
  }
  png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
  free(rgb);
  free(rows);
  if (!ok) {
    free(m.p);
    return kiln_error(d, NULL, "overlay: cannot encode PNG");
  }
  *out = m.p;
  *len = m.len;
  return 0;
}
