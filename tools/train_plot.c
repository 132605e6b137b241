/* curves.png (see train_plot.h).  A tiny raster plotter: a white RGB
 * canvas, per panel a frame, "nice" ticks (1, 2 or 5 x 10^k) with labels
 * and light grid lines, lines drawn as thick Bresenham segments, text in
 * a 5x7 pixel font scaled by two, and PNG encoding by libpng into memory
 * (setjmp error handling kept to one function) before an atomic write. */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_io.h"
#include "train_plot.h"

typedef struct canvas {
  int w, h;
  unsigned char *rgb;
} canvas;

typedef struct rgb_t { unsigned char r, g, b; } rgb_t;
static const rgb_t BLACK = {0, 0, 0}, GRID = {225, 225, 225}, TRAIN = {31, 119, 180}, VAL = {255, 127, 14};

/* 5x7 glyphs, one byte per row, bit 4 the leftmost pixel. */
static const struct { char c; unsigned char rows[7]; } font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},                 {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},                    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'a', {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F}},       {'c', {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}}, {'e', {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}}, {'i', {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'n', {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E}},       {'p', {0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'r', {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10}},       {'s', {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}}, {'u', {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D}},
    {'v', {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04}},       {'y', {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}}, {'g', {0, 0, 0x0F, 0x11, 0x0F, 0x01, 0x0E}},
    {'m', {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11}},
};
enum { SCALE = 2, GLYPH_W = 6 * SCALE, GLYPH_H = 7 * SCALE };

static void put(canvas *c, int x, int y, rgb_t col) {
  if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
  unsigned char *p = c->rgb + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
  p[0] = col.r;
  p[1] = col.g;
  p[2] = col.b;
}

static void text(canvas *c, int x, int y, const char *s, rgb_t col) {
  for (; *s; s++, x += GLYPH_W)
    for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
      if (font[g].c != *s) continue;
      for (int r = 0; r < 7; r++)
        for (int k = 0; k < 5; k++)
          if (font[g].rows[r] >> (4 - k) & 1)
            for (int dy = 0; dy < SCALE; dy++)
              for (int dx = 0; dx < SCALE; dx++) put(c, x + k * SCALE + dx, y + r * SCALE + dy, col);
    }
}

static int text_width(const char *s) { return (int)strlen(s) * GLYPH_W; }

/* A segment `thick` pixels wide; dash > 0 draws dash pixels on, dash off. */
static void line(canvas *c, int x0, int y0, int x1, int y1, rgb_t col, int thick, int dash) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy, k = 0;
  for (;;) {
    if (!dash || (k / dash) % 2 == 0)
      for (int a = 0; a < thick; a++)
        for (int b = 0; b < thick; b++) put(c, x0 + a - thick / 2, y0 + b - thick / 2, col);
    k++;
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) { err += dy; x0 += sx; }
    if (e2 <= dx) { err += dx; y0 += sy; }
  }
}

static double nice_step(double range, int want) {
  double raw = range / want, p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* One panel in the box x0..x0+w, y0..y0+h: series a (train) and b (val). */
static void panel(canvas *c, int x0, int y0, int w, int h, int n, const double *a, const double *b, double scale,
                  const char *title, const char *leg_a, const char *leg_b) {
  enum { ML = 80, MR = 15, MT = 40, MB = 50 };
  int px = x0 + ML, py = y0 + MT, pw = w - ML - MR, ph = h - MT - MB;
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (isfinite(a[i])) { lo = fmin(lo, a[i] * scale); hi = fmax(hi, a[i] * scale); }
    if (isfinite(b[i])) { lo = fmin(lo, b[i] * scale); hi = fmax(hi, b[i] * scale); }
  }
  if (!isfinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  double ystep = nice_step(hi - lo, 5);
  lo = floor(lo / ystep) * ystep;
  hi = ceil(hi / ystep) * ystep;
  int xmax = n > 1 ? n : 2;
  double xstep = fmax(1, round(nice_step(xmax - 1, 8)));
#define XP(e) (px + (int)lround((double)((e) - 1) / (xmax - 1) * pw))
#define YP(v) (py + ph - (int)lround(((v) - lo) / (hi - lo) * ph))
  char s[64];
  for (double v = lo; v <= hi + ystep / 2; v += ystep) {
    line(c, px, YP(v), px + pw, YP(v), GRID, 1, 0);
    line(c, px - 6, YP(v), px, YP(v), BLACK, 1, 0);
    snprintf(s, sizeof s, "%.4g", fabs(v) < ystep / 1e6 ? 0.0 : v);
    text(c, px - 10 - text_width(s), YP(v) - GLYPH_H / 2, s, BLACK);
  }
  for (double e = 1; e <= xmax + 1e-9; e += xstep) {
    line(c, XP(e), py, XP(e), py + ph, GRID, 1, 0);
    line(c, XP(e), py + ph, XP(e), py + ph + 6, BLACK, 1, 0);
    snprintf(s, sizeof s, "%d", (int)e);
    text(c, XP(e) - text_width(s) / 2, py + ph + 10, s, BLACK);
  }
  line(c, px, py, px, py + ph, BLACK, 1, 0); /* frame */
  line(c, px, py + ph, px + pw, py + ph, BLACK, 1, 0);
  line(c, px, py, px + pw, py, BLACK, 1, 0);
  line(c, px + pw, py, px + pw, py + ph, BLACK, 1, 0);
  text(c, px + pw / 2 - text_width("epoch") / 2, py + ph + 10 + GLYPH_H + 4, "epoch", BLACK);
  text(c, px, y0 + 12, title, BLACK);
  for (int sidx = 0; sidx < 2; sidx++) {
    const double *v = sidx ? b : a;
    rgb_t col = sidx ? VAL : TRAIN;
    for (int i = 0; i < n; i++) {
      if (!isfinite(v[i])) continue;
      int x = XP(i + 1), y = YP(v[i] * scale);
      for (int dy = -2; dy <= 2; dy++) line(c, x - 2, y + dy, x + 2, y + dy, col, 1, 0); /* marker */
      if (i + 1 < n && isfinite(v[i + 1])) line(c, x, y, XP(i + 2), YP(v[i + 1] * scale), col, 2, sidx ? 6 : 0);
    }
  }
  /* legend: one row in the top margin, right-aligned (never over the curves) */
  int lx = px + pw - (40 + text_width(leg_a) + 20 + 40 + text_width(leg_b)), ly = y0 + 12;
  line(c, lx, ly + GLYPH_H / 2, lx + 30, ly + GLYPH_H / 2, TRAIN, 2, 0);
  text(c, lx + 40, ly, leg_a, BLACK);
  lx += 40 + text_width(leg_a) + 20;
  line(c, lx, ly + GLYPH_H / 2, lx + 30, ly + GLYPH_H / 2, VAL, 2, 6);
  text(c, lx + 40, ly, leg_b, BLACK);
#undef XP
#undef YP
}

typedef struct membuf { unsigned char *p; size_t len, cap; int failed; } membuf;

static void png_write_mem(png_structp png, png_bytep data, png_size_t len) {
  membuf *m = png_get_io_ptr(png);
  if (m->failed) return;
  if (m->len + len > m->cap) {
    size_t nc = m->cap ? m->cap : 65536;
    while (nc < m->len + len) nc *= 2;
    unsigned char *np = realloc(m->p, nc);
    if (!np) { m->failed = 1; return; }
    m->p = np;
    m->cap = nc;
  }
  memcpy(m->p + m->len, data, len);
  m->len += len;
}

static void png_flush_mem(png_structp png) { (void)png; }

/* libpng's longjmp lands here; nothing with automatic storage changes
 * between setjmp and a possible longjmp but through volatile pointers. */
static int encode(const canvas *c, membuf *m) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) { png_destroy_write_struct(&png, NULL); return -1; }
  if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); return -1; }
  png_set_write_fn(png, m, png_write_mem, png_flush_mem);
  png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < c->h; y++) png_write_row(png, c->rgb + 3 * (size_t)y * (size_t)c->w);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return m->failed ? -1 : 0;
}

int kiln_plot_curves_png(int n, const double *train_loss, const double *val_loss, const double *train_acc,
                         const double *val_acc, const char *metric_name, unsigned char **png, size_t *len, kiln_diag *d) {
  canvas c = {KILN_PLOT_WIDTH, KILN_PLOT_HEIGHT, malloc(3 * (size_t)KILN_PLOT_WIDTH * KILN_PLOT_HEIGHT)};
  if (!c.rgb) return kiln_error(d, NULL, "out of memory");
  memset(c.rgb, 255, 3 * (size_t)c.w * (size_t)c.h);
  int dice = !strcmp(metric_name, "dice");
  panel(&c, 0, 0, c.w / 2, c.h, n, train_loss, val_loss, 1, "loss", "train", "val");
  panel(&c, c.w / 2, 0, c.w / 2, c.h, n, train_acc, val_acc, dice ? 1 : 100, dice ? "dice" : "accuracy (%)", "train", "val");
  membuf m = {0};
  int rc = encode(&c, &m);
  free(c.rgb);
  if (rc) { free(m.p); return kiln_error(d, NULL, "cannot encode the curves as PNG (out of memory)"); }
  *png = m.p;
  *len = m.len;
  return 0;
}

int kiln_plot_curves(const char *path, int n, const double *train_loss, const double *val_loss,
                     const double *train_acc, const double *val_acc, const char *metric_name, kiln_diag *d) {
  unsigned char *png;
  size_t len;
  if (kiln_plot_curves_png(n, train_loss, val_loss, train_acc, val_acc, metric_name, &png, &len, d)) return -1;
  int rc = kiln_write_atomic(path, png, len, d);
  free(png);
  return rc;
}

/* Shared with kiln explain's overlays (tools/cmd_explain.c). */
void kiln_plot_text(unsigned char *rgb, int w, int h, int x, int y, const char *s) {
  canvas c = {w, h, rgb};
  text(&c, x, y, s, BLACK);
}

int kiln_plot_png(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *len) {
  canvas c = {w, h, (unsigned char *)rgb};
  membuf m = {0};
  if (encode(&c, &m)) { free(m.p); return -1; }
  *png = m.p;
  *len = m.len;
  return 0;
}

/* The panel of kiln_plot_xy_png: as panel() above, with x values of any
 * scale on the horizontal axis (nice ticks over [x0, x[n-1]]). */
int kiln_plot_xy_png(int n, const double *x, const double *y, double yscale, const char *title, const char *xlabel,
                     unsigned char **png, size_t *len, kiln_diag *d) {
  enum { W = 640, H = 400, ML = 80, MR = 25, MT = 40, MB = 60 };
  canvas c = {W, H, malloc(3 * (size_t)W * H)};
  if (!c.rgb) return kiln_error(d, NULL, "out of memory");
  memset(c.rgb, 255, 3 * (size_t)W * H);
  int px = ML, py = MT, pw = W - ML - MR, ph = H - MT - MB;
  double ylo = INFINITY, yhi = -INFINITY, xlo = n ? x[0] : 0, xhi = n ? x[n - 1] : 1;
  for (int i = 0; i < n; i++)
    if (isfinite(y[i])) { ylo = fmin(ylo, y[i] * yscale); yhi = fmax(yhi, y[i] * yscale); }
  if (!isfinite(ylo)) { ylo = 0; yhi = 1; }
  if (yhi - ylo < 1e-9) { ylo -= 0.5; yhi += 0.5; }
  if (!(xhi - xlo > 1e-12)) { xlo -= 0.5; xhi += 0.5; }
  double ys = nice_step(yhi - ylo, 5), xs = nice_step(xhi - xlo, 6);
  ylo = floor(ylo / ys) * ys;
  yhi = ceil(yhi / ys) * ys;
#define XP(v) (px + (int)lround(((v) - xlo) / (xhi - xlo) * pw))
#define YP(v) (py + ph - (int)lround(((v) - ylo) / (yhi - ylo) * ph))
  char s[64];
  for (double v = ylo; v <= yhi + ys / 2; v += ys) {
    line(&c, px, YP(v), px + pw, YP(v), GRID, 1, 0);
    line(&c, px - 6, YP(v), px, YP(v), BLACK, 1, 0);
    snprintf(s, sizeof s, "%.4g", fabs(v) < ys / 1e6 ? 0.0 : v);
    text(&c, px - 10 - text_width(s), YP(v) - GLYPH_H / 2, s, BLACK);
  }
  for (double v = ceil(xlo / xs - 1e-9) * xs; v <= xhi + xs * 1e-6; v += xs) {
    line(&c, XP(v), py, XP(v), py + ph, GRID, 1, 0);
    line(&c, XP(v), py + ph, XP(v), py + ph + 6, BLACK, 1, 0);
    snprintf(s, sizeof s, "%.4g", fabs(v) < xs / 1e6 ? 0.0 : v);
    text(&c, XP(v) - text_width(s) / 2, py + ph + 10, s, BLACK);
  }
  line(&c, px, py, px, py + ph, BLACK, 1, 0);
  line(&c, px, py + ph, px + pw, py + ph, BLACK, 1, 0);
  line(&c, px, py, px + pw, py, BLACK, 1, 0);
  line(&c, px + pw, py, px + pw, py + ph, BLACK, 1, 0);
  text(&c, px + pw / 2 - text_width(xlabel) / 2, py + ph + 10 + GLYPH_H + 6, xlabel, BLACK);
  text(&c, px, 12, title, BLACK);
  for (int i = 0; i < n; i++) {
    if (!isfinite(y[i])) continue;
    int X = XP(x[i]), Y = YP(y[i] * yscale);
    for (int dy = -2; dy <= 2; dy++) line(&c, X - 2, Y + dy, X + 2, Y + dy, TRAIN, 1, 0);
    if (i + 1 < n && isfinite(y[i + 1])) line(&c, X, Y, XP(x[i + 1]), YP(y[i + 1] * yscale), TRAIN, 2, 0);
  }
#undef XP
#undef YP
  membuf m = {0};
  int rc = encode(&c, &m);
  free(c.rgb);
  if (rc) { free(m.p); return kiln_error(d, NULL, "cannot encode the plot as PNG (out of memory)"); }
  *png = m.p;
  *len = m.len;
  return 0;
}
