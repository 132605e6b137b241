/* `kiln run --volume/--dicom`: a model over a medical volume (see
 * tools/volume/volume.h for the conventions), with segmentation outputs. */
#ifndef KILN_CMD_RUN_VOLUME_H
#define KILN_CMD_RUN_VOLUME_H

typedef struct kiln_volume_opts {
  const char *nifti, *dicom;  /* the input: one of the two */
  const char *seg_out;        /* labels as NIfTI, or NULL */
  const char *overlay_out;    /* folder of axial PNG overlays, or NULL */
  int window;                 /* --window given */
  double center, width;
  int dump_after;             /* --dump-after (a kiln_pass_id; 0: none), set by kiln run */
} kiln_volume_opts;

/* If argv[*i] is a volume option, takes it (and its value, advancing *i)
 * and returns 1; 0 if it is not one; 2 after printing a usage error. */
int kiln_volume_parse_opt(kiln_volume_opts *o, int argc, char **argv, int *i);
/* Runs model on the volume; outdir (or NULL) gets the raw outputs in
 * format ("npy"/"pb"); slices of a 2-D model are stacked on the batch axis. */
int kiln_run_volume(const char *model, const kiln_volume_opts *o, int threads, const char *outdir,
                    const char *format);

#endif
