/* Image decoding for `kiln run --image`: PNG through libpng, JPEG through
 * libjpeg-turbo, both from a buffer in memory (so the fuzz target drives
 * exactly this code).  Images are hostile input, so:
 *
 *  - neither library may print or abort: libpng gets error/warning hooks
 *    and libjpeg an error manager whose error_exit longjmps back here with
 *    the library's message, and whose emit_message turns every warning
 *    (libjpeg's word for corrupt or truncated data it would otherwise paper
 *    over with grey) into an error too;
 *  - the size is checked (width * height <= max_pixels, checked arithmetic)
 *    before any pixel buffer is allocated, and progressive JPEGs are
 *    limited to 1,000 scans (a known decompression-time bomb);
 *  - a PNG's trailing chunks are read to IEND, so truncation anywhere is
 *    reported rather than silently ignored.
 *
 * Every format ends as 3-channel RGB floats 0..255: gray is replicated,
 * alpha is dropped (not composited: what the photo's pixels say, as
 * Pillow's convert("RGB") does), 16-bit samples are scaled by 255/65535
 * (kept as fractions, not rounded to 8 bits), palettes and 1/2/4-bit gray
 * are expanded.  Colour-management chunks (gAMA, iCCP) are ignored, as
 * most training pipelines (Pillow, OpenCV) ignore them. */
#include "image_io.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

enum { MAX_JPEG_SCANS = 1000 };
#define MAX_IMAGE_FILE_BYTES ((size_t)1 << 30)

static int too_big(int64_t w, int64_t h, int64_t max_pixels) {
  return w <= 0 || h <= 0 || w > max_pixels || h > max_pixels / w;
}

static float *alloc_rgb(int64_t w, int64_t h) {
  size_t n = (size_t)w * (size_t)h; /* w * h <= max_pixels, checked */
  if (n > SIZE_MAX / (3 * sizeof(float))) return NULL;
  return malloc(n * 3 * sizeof(float));
}

/* --- PNG ---------------------------------------------------------------- */

typedef struct png_ctx {
  jmp_buf jb;
  char msg[200];
  const unsigned char *data;
  size_t len, pos;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  longjmp(c->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* benign (e.g. an ancillary chunk's CRC): the pixels are intact */
}

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
  png_ctx *c = png_get_io_ptr(png);
  if (n > c->len - c->pos) png_error(png, "file is truncated");
  memcpy(out, c->data + c->pos, n);
  c->pos += n;
}

static int decode_png(const unsigned char *data, size_t len, const char *name, int64_t max_pixels,
                      kiln_image *im, kiln_diag *d) {
  kiln_loc loc = {.file = name, .node_index = -1};
  png_ctx c = {.data = data, .len = len};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
  if (!png) return kiln_error(d, &loc, "out of memory");
  png_infop info = png_create_info_struct(png);
  unsigned char *volatile raw = NULL;
  png_bytep *volatile rows = NULL;
  float *volatile rgb = NULL;
  if (!info) { png_destroy_read_struct(&png, NULL, NULL); return kiln_error(d, &loc, "out of memory"); }
  if (setjmp(c.jb)) {
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    free(rgb);
    return kiln_error(d, &loc, "corrupt or truncated PNG: %s", c.msg);
  }
  png_set_read_fn(png, &c, png_read_mem);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  png_uint_32 w, h;
  int bit_depth, color_type, interlace;
  png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
  if (too_big(w, h, max_pixels)) {
    png_destroy_read_struct(&png, &info, NULL);
    return kiln_error(d, &loc, "PNG is %ux%u pixels; kiln reads images of at most %lld pixels", (unsigned)w,
                      (unsigned)h, (long long)max_pixels);
  }
  int file_channels = (color_type & PNG_COLOR_MASK_COLOR ? 3 : 1) + (color_type & PNG_COLOR_MASK_ALPHA ? 1 : 0);
  if (color_type == PNG_COLOR_TYPE_PALETTE) file_channels = 3;
  png_set_expand(png); /* palette -> RGB, 1/2/4-bit gray -> 8-bit, tRNS -> alpha */
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info), bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  size_t rowbytes = png_get_rowbytes(png, info);
  if (ch < 1 || ch > 4 || rowbytes != (size_t)w * (size_t)ch * (size_t)bytes) png_error(png, "unexpected row layout");
  raw = malloc(rowbytes * h);
  rows = malloc(sizeof(png_bytep) * h);
  rgb = alloc_rgb(w, h);
  if (!raw || !rows || !rgb) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + (size_t)y * rowbytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  const float k = bytes == 2 ? 255.0f / 65535.0f : 1.0f;
  const int gray = ch <= 2;
  for (size_t p = 0, n = (size_t)w * h; p < n; p++) {
    const unsigned char *s = raw + p * (size_t)ch * (size_t)bytes;
    for (int o = 0; o < 3; o++) {
      const unsigned char *q = s + (gray ? 0 : o) * bytes;
      unsigned v = bytes == 2 ? (unsigned)q[0] << 8 | q[1] : q[0];
      rgb[3 * p + (size_t)o] = (float)v * k;
    }
  }
  png_destroy_read_struct(&png, &info, NULL);
  free(raw);
  free(rows);
  im->width = (int)w;
  im->height = (int)h;
  im->rgb = rgb;
  im->file_channels = file_channels;
  im->file_bits = bit_depth == 16 ? 16 : 8;
  return 0;
}

/* --- JPEG --------------------------------------------------------------- */

typedef struct jpeg_ctx {
  struct jpeg_error_mgr pub; /* first: libjpeg sees a jpeg_error_mgr */
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
  cinfo->err->format_message(cinfo, c->msg);
  longjmp(c->jb, 1);
}

/* level -1: a warning, i.e. corrupt data libjpeg would skip or fill in; an
 * error here.  level >= 0: trace messages, ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_on_error(cinfo);
}

static void jpeg_quiet(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_on_progress(j_common_ptr cinfo) {
  if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > MAX_JPEG_SCANS) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    snprintf(c->msg, sizeof c->msg, "more than %d progressive scans", MAX_JPEG_SCANS);
    longjmp(c->jb, 1);
  }
}

static int decode_jpeg(const unsigned char *data, size_t len, const char *name, int64_t max_pixels,
                       kiln_image *im, kiln_diag *d) {
  kiln_loc loc = {.file = name, .node_index = -1};
  struct jpeg_decompress_struct cinfo;
  struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
  jpeg_ctx c;
  memset(&c, 0, sizeof c);
  cinfo.err = jpeg_std_error(&c.pub);
  c.pub.error_exit = jpeg_on_error;
  c.pub.emit_message = jpeg_on_message;
  c.pub.output_message = jpeg_quiet;
  unsigned char *volatile row = NULL;
  float *volatile rgb = NULL;
  if (setjmp(c.jb)) {
    jpeg_destroy_decompress(&cinfo);
    free(row);
    free(rgb);
    return kiln_error(d, &loc, "corrupt or truncated JPEG: %s", c.msg);
  }
  jpeg_create_decompress(&cinfo);
  cinfo.progress = &progress;
  if (len > (unsigned long)-1) { snprintf(c.msg, sizeof c.msg, "file too large"); longjmp(c.jb, 1); }
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  int file_channels = cinfo.num_components;
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return kiln_error(d, &loc, "CMYK JPEG images are not supported (convert to RGB)");
  }
  if (too_big(cinfo.image_width, cinfo.image_height, max_pixels)) {
    int64_t w = cinfo.image_width, h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return kiln_error(d, &loc, "JPEG is %lldx%lld pixels; kiln reads images of at most %lld pixels", (long long)w,
                      (long long)h, (long long)max_pixels);
  }
  int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  cinfo.dct_method = JDCT_ISLOW; /* the library default, stated: the exact IDCT */
  jpeg_start_decompress(&cinfo);
  int ch = cinfo.output_components;
  int64_t w = cinfo.output_width, h = cinfo.output_height;
  if (ch != (gray ? 1 : 3) || too_big(w, h, max_pixels)) {
    snprintf(c.msg, sizeof c.msg, "unexpected output format");
    longjmp(c.jb, 1);
  }
  row = malloc((size_t)w * (size_t)ch);
  rgb = alloc_rgb(w, h);
  if (!row || !rgb) { snprintf(c.msg, sizeof c.msg, "out of memory"); longjmp(c.jb, 1); }
  while (cinfo.output_scanline < cinfo.output_height) {
    size_t y = cinfo.output_scanline;
    JSAMPROW rp = row;
    if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) { snprintf(c.msg, sizeof c.msg, "no scanline"); longjmp(c.jb, 1); }
    float *out = rgb + y * (size_t)w * 3;
    for (int64_t x = 0; x < w; x++)
      for (int o = 0; o < 3; o++) out[3 * x + o] = row[x * ch + (gray ? 0 : o)];
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(row);
  im->width = (int)w;
  im->height = (int)h;
  im->rgb = rgb;
  im->file_channels = file_channels;
  im->file_bits = 8;
  return 0;
}

/* --- entry points ---------------------------------------------------------- */

int kiln_image_decode(const void *data, size_t len, const char *name, int64_t max_pixels, kiln_image *im,
                      kiln_diag *d) {
  kiln_loc loc = {.file = name, .node_index = -1};
  const unsigned char *p = data;
  memset(im, 0, sizeof *im);
  if (len == 0) return kiln_error(d, &loc, "file is empty");
  if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return decode_png(p, len, name, max_pixels, im, d);
  if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return decode_jpeg(p, len, name, max_pixels, im, d);
  return kiln_error(d, &loc, "not a PNG or JPEG image");
}

int kiln_image_read(const char *path, int64_t max_pixels, kiln_image *im, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  memset(im, 0, sizeof *im);
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(d, &loc, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return kiln_error(d, &loc, "not a regular file");
  }
  if ((uint64_t)st.st_size > MAX_IMAGE_FILE_BYTES) {
    fclose(f);
    return kiln_error(d, &loc, "file is larger than 1 GiB");
  }
  size_t len = (size_t)st.st_size;
  unsigned char *buf = malloc(len ? len : 1);
  if (!buf) { fclose(f); return kiln_error(d, &loc, "out of memory"); }
  size_t got = fread(buf, 1, len, f);
  fclose(f);
  if (got != len) { free(buf); return kiln_error(d, &loc, "cannot read: %s", strerror(errno)); }
  int rc = kiln_image_decode(buf, len, path, max_pixels, im, d);
  free(buf);
  return rc;
}

void kiln_image_free(kiln_image *im) {
  free(im->rgb);
  im->rgb = NULL;
}
