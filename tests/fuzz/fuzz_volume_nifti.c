/* libFuzzer target for the NIfTI reader of `kiln run --volume`
 * (tools/volume/nifti.c over niftilib), then the preparation a model input
 * gets (canonical orientation, windowing, resampling to a small grid) and
 * the label path back.  The bytes are the file: written to a temporary
 * .nii, or .nii.gz when they start with the gzip magic, since niftilib reads
 * from a path.  Contract: any input reads or fails with a recorded message,
 * and never crashes, leaks or trips a sanitizer; a failure without a
 * message, or a success that left an error behind, aborts.  The reader
 * bounds memory by the file size (deflate's 1032:1 at most for .gz), so the
 * 2 GB rss limit of run.sh is a finding, not noise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/volume/volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bug(const char *what, const kiln_diag *d) {
  fprintf(stderr, "fuzz_volume_nifti: %s%s%s\n", what, d->failed ? ": " : "", d->failed ? d->msg : "");
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  char path[64];
  snprintf(path, sizeof path, "/tmp/kiln-fuzz-nifti-%ld.%s", (long)getpid(), gz ? "nii.gz" : "nii");
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  kiln_diag d = {0};
  kiln_volume v;
  int rc = kiln_volume_read_nifti(path, &v, &d);
  unlink(path);
  if (rc) {
    if (!d.failed || !d.msg[0]) bug("read failed without a message", &d);
    return 0;
  }
  if (d.failed) bug("read, yet an error was recorded", &d);
  kiln_canon c;
  kiln_volume_canon(&v, &c);
  int64_t count = c.n[0] * c.n[1] * c.n[2];
  float *canon = malloc((size_t)count * sizeof *canon), *grid = malloc(4 * 5 * 3 * sizeof *grid);
  uint8_t *lab = malloc(4 * 5 * 3), *back = malloc((size_t)count), *orig = malloc((size_t)count);
  const int64_t m[3] = {4, 5, 3};
  if (canon && grid && lab && back && orig) {
    kiln_volume_to_canon(&v, &c, v.data, canon, sizeof *canon);
    kiln_volume_window(canon, count, 40, 400);
    if (kiln_volume_resample(canon, c.n, grid, m) == 0) {
      for (int e = 0; e < 4 * 5 * 3; e++) lab[e] = grid[e] > 0.5f;
      kiln_volume_labels_back(lab, m, back, c.n);
      kiln_volume_from_canon(&v, &c, back, orig, 1);
    }
  }
  free(canon);
  free(grid);
  free(lab);
  free(back);
  free(orig);
  kiln_volume_free(&v);
  return 0;
}
