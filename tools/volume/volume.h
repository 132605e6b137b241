/* Medical volumes for `kiln run --volume/--dicom`: a scalar 3-D image on a
 * voxel grid with its voxel-to-world affine, read from NIfTI (niftilib) or
 * from a DICOM series (GDCM), brought to the closest canonical orientation,
 * windowed and resampled for a model; per-voxel labels written back as
 * NIfTI on the input's own grid, and axial PNG overlays (libpng).
 *
 * Conventions (also in README.md):
 * - data is float32, index i fastest: data[(k*nj + j)*ni + i], so read as a
 *   C array it is [k][j][i] - the model's [D][H][W].
 * - affine maps (i, j, k, 1) to RAS+ world millimetres (NIfTI's convention;
 *   DICOM's LPS positions are negated in x and y).
 * - Canonical: nibabel's as_closest_canonical - each voxel axis, in order,
 *   takes the world axis its direction is closest to (largest |cosine|
 *   among those not yet taken), then axes are flipped and permuted so i
 *   runs to R, j to A, k to S.
 * - Windowing: v' = clamp((v - (C - W/2)) / W, 0, 1).
 * - Resampling: linear per axis (trilinear), half-pixel centres
 *   (align_corners=False): output o reads input x = (o + 0.5)*in/out - 0.5,
 *   x clamped to [0, in-1].  Labels go back by nearest neighbour with the
 *   same centres: canonical c reads model index floor((c + 0.5)*out/in). */
#ifndef KILN_VOLUME_H
#define KILN_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "../../ir/diag.h"

typedef struct kiln_volume {
  int64_t n[3];         /* voxels along i, j, k */
  double affine[4][4];  /* (i,j,k,1) -> RAS+ mm */
  float *data;          /* n[0]*n[1]*n[2] values, i fastest */
  void *nifti;          /* NIfTI input: its header (nifti_image *), kept so a
                           segmentation is written with the same geometry */
} kiln_volume;

/* Largest volume accepted (voxels): 2^31, 8 GiB of float. */
#define KILN_VOLUME_MAX_VOXELS (INT64_C(1) << 31)

/* NIfTI-1/-2, .nii or .nii.gz (or .hdr/.img).  3-D, or 4-D with one frame;
 * scl_slope/scl_inter applied.  -1 with d set ("PATH: what is wrong"). */
int kiln_volume_read_nifti(const char *path, kiln_volume *v, kiln_diag *d);
/* One DICOM series from the files of folder dir (files that are not DICOM
 * are ignored): sorted along the slice normal by ImagePositionPatient,
 * RescaleSlope/Intercept applied (Hounsfield units for CT).  Rejects a mix
 * of series, gaps, uneven spacing, tilted or differently shaped slices and
 * pixel data GDCM cannot decode. */
int kiln_volume_read_dicom(const char *dir, kiln_volume *v, kiln_diag *d);
void kiln_volume_free(kiln_volume *v);

/* The closest canonical orientation (see above): for canonical axis a
 * (0 = R, 1 = A, 2 = S) the source axis axis[a] and whether it is flipped. */
typedef struct kiln_canon {
  int axis[3];
  int flip[3];
  int64_t n[3];         /* canonical voxel counts */
} kiln_canon;
void kiln_volume_canon(const kiln_volume *v, kiln_canon *c);
/* src (i fastest, v's grid) -> dst (canonical grid), either direction;
 * elem is the element size in bytes. */
void kiln_volume_to_canon(const kiln_volume *v, const kiln_canon *c, const void *src, void *dst, size_t elem);
void kiln_volume_from_canon(const kiln_volume *v, const kiln_canon *c, const void *src, void *dst, size_t elem);

/* Windowing in place (width > 0). */
void kiln_volume_window(float *x, int64_t count, double center, double width);
/* Resamples a [nk][nj][ni] float grid to [ok][oj][oi] (trilinear, above). */
int kiln_volume_resample(const float *src, const int64_t n[3], float *dst, const int64_t o[3]);
/* Labels [mk][mj][mi] (model grid) to [nk][nj][ni] by nearest neighbour. */
void kiln_volume_labels_back(const uint8_t *src, const int64_t m[3], uint8_t *dst, const int64_t n[3]);

/* Writes labels (v's own grid, i fastest) as a uint8 NIfTI with v's
 * geometry (its header when v came from NIfTI; else sform = qform = the
 * affine), intent NIFTI_INTENT_LABEL; via a temporary file renamed into
 * place.  path must end in .nii or .nii.gz. */
int kiln_volume_write_labels(const char *path, const kiln_volume *v, const uint8_t *labels, kiln_diag *d);
/* One axial PNG overlay (RGB, 8-bit) of canonical slice gray/labels
 * [nj][ni], radiological view: patient's right on the image's left,
 * anterior up.  Grey = intensity clamped to [0,1]; labels > 0 tinted (50%
 * blend with a fixed palette).  *png is malloc'd. */
int kiln_volume_overlay_png(const float *gray, const uint8_t *labels, int64_t ni, int64_t nj, void **png,
                            size_t *len, kiln_diag *d);

#endif
