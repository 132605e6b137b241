/* Photos in: PNG (libpng) and JPEG (libjpeg-turbo) decoded to RGB floats
 * 0..255, and the preprocessing trained classifiers expect (resize, crop,
 * channel order, layout, scale/mean/std) written into an input tensor.
 * See docs/images.md for the user-facing definition. */
#ifndef KILN_IMAGE_IO_H
#define KILN_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/diag.h"
#include "../ir/dtype.h"
#include "../ir/graph.h"

/* A decoded image: always 3 channels (gray replicated, alpha dropped),
 * row-major HWC, values in 0..255 (16-bit files scaled by 255/65535). */
typedef struct kiln_image {
  int width, height;
  float *rgb;          /* height * width * 3 */
  int file_channels;   /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (as stored) */
  int file_bits;       /* 8 or 16 */
} kiln_image;

/* Decodes a PNG or JPEG held in memory (format from the magic bytes).
 * name is used in messages only.  Images over max_pixels are refused
 * before any large allocation.  Never prints; on error returns -1 with a
 * one-line message in d ("NAME: truncated PNG: ..."). */
int kiln_image_decode(const void *data, size_t len, const char *name, int64_t max_pixels,
                      kiln_image *im, kiln_diag *d);
/* Reads the file and decodes it. */
int kiln_image_read(const char *path, int64_t max_pixels, kiln_image *im, kiln_diag *d);
void kiln_image_free(kiln_image *im);

/* Preprocessing (image_prep.c). */
typedef enum kiln_resize_mode {
  KILN_RESIZE_EXACT,   /* stretch to the target height x width */
  KILN_RESIZE_SHORTER, /* scale so the image covers the target, then crop the centre */
} kiln_resize_mode;

typedef struct kiln_image_prep {
  kiln_resize_mode resize;
  int bgr;                /* tensor channel order: 0 RGB, 1 BGR */
  int nhwc;               /* tensor layout: 0 NCHW, 1 NHWC */
  double scale;           /* pixel (0..255) * scale ... */
  double mean[3], std[3]; /* ... - mean[c], / std[c]; c in tensor channel order */
  int height, width;      /* target size, from the model's input shape */
} kiln_image_prep;

/* Defaults: exact, RGB, NCHW, scale 1/255, mean 0, std 1. */
void kiln_image_prep_init(kiln_image_prep *p);
/* Sets one setting by name ("resize", "channels", "layout", "scale",
 * "mean", "std") from its text form; returns -1 and a message in err if
 * the name is unknown or the value invalid. */
int kiln_image_prep_set(kiln_image_prep *p, const char *key, const char *value, char *err, size_t errsize);
/* Applies the model's metadata_props keys "kiln.image.<setting>". */
int kiln_image_prep_from_meta(kiln_image_prep *p, const kiln_graph *g, kiln_diag *d);
/* Resamples, crops and normalises im into item `index` of a batch tensor
 * of element type dt (layout and size from p).  Returns -1 on out of memory. */
int kiln_image_to_tensor(const kiln_image *im, const kiln_image_prep *p, kiln_dtype dt, void *dst,
                         int64_t index);

#endif
