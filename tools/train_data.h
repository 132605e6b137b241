/* Training data for `kiln train`: one folder read into memory as float
 * samples and integer (or float) targets, whatever its form:
 *   - x.npy + y.npy: x N x C x H x W or N x C x D x H x W, float32, or uint8
 *     (scaled by 1/255); y int64 class ids [N] or masks [N, H, W] /
 *     [N, D, H, W], or float32 targets of the output's shape (BCE, MSE);
 *   - Fashion-MNIST / MNIST idx files (train-images-idx3-ubyte[.gz] with
 *     train-labels-idx1-ubyte[.gz]; the t10k-* pair with `test` set),
 *     28 x 28 images zero-padded to the model's size when it is larger;
 *   - class sub-folders of PNG/JPEG images, classes in name order, grey or
 *     RGB as the model's channels, every image exactly the model's size.
 * Files are hostile: every size is checked before it is trusted, a header
 * that lies about its count cannot make a large allocation (buffers grow
 * only as data arrives) and every error is one line naming the file. */
#ifndef KILN_TRAIN_DATA_H
#define KILN_TRAIN_DATA_H

#include <stdint.h>

#include "../ir/diag.h"
#include "../ir/dtype.h"

enum { KILN_DATA_MAX_RANK = 8 };

typedef struct kiln_dataset {
  int64_t n;                             /* samples */
  int xrank;                             /* rank of one sample (C, H, W or C, D, H, W) */
  int64_t xdims[KILN_DATA_MAX_RANK];
  int64_t xsize;                         /* floats per sample */
  float *x;                              /* n * xsize */
  int yfloat;                            /* targets are floats (BCE/MSE), else int64 class ids */
  int yrank;                             /* rank of one sample's target: 0 (a class id) or a mask's */
  int64_t ydims[KILN_DATA_MAX_RANK];
  int64_t ysize;                         /* targets per sample */
  int64_t *y;                            /* n * ysize class ids (yfloat == 0) */
  float *yf;                             /* n * ysize floats (yfloat == 1) */
  char source[512];                      /* the file the targets came from, for messages */
} kiln_dataset;

/* What the model expects of one sample: its input's dims after the batch
 * (C, H, W or C, D, H, W) and, for class ids, the number of classes. */
typedef struct kiln_data_want {
  int xrank;
  int64_t xdims[KILN_DATA_MAX_RANK];
  int64_t nclasses;                      /* labels must lie in [0, nclasses); 0: no check */
  int float_targets;                     /* BCE/MSE: y may be float32 */
} kiln_data_want;

/* Reads folder dir (form detected from its files).  test: prefer the
 * idx test pair (t10k-*) over the training pair.  0, or -1 with d set. */
int kiln_dataset_load(const char *dir, const kiln_data_want *w, int test, kiln_dataset *ds, kiln_diag *d);
void kiln_dataset_free(kiln_dataset *ds);
/* Moves the samples idx[0..k) into a new dataset out (copies). */
int kiln_dataset_subset(const kiln_dataset *ds, const int64_t *idx, int64_t k, kiln_dataset *out, kiln_diag *d);

#endif
