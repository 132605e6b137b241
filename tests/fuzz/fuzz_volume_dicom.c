/* libFuzzer target for the DICOM series reader of `kiln run --dicom`
 * (tools/volume/dicom.cc): the bytes are one file of a series, written into
 * a private temporary folder.  Exercises the hand-written file-meta parse
 * (transfer syntax), the forked GDCM parse and its pipe protocol, and the
 * series checks for one slice.  GDCM itself is not instrumented (a Debian
 * build), and runs in a child whose crash is an error line by design, so
 * this target guards kiln's side of the reader.  Contract as for the NIfTI
 * target: read, or fail with a message; never crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/volume/volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char dir[64], path[96];
  snprintf(dir, sizeof dir, "/tmp/kiln-fuzz-dicom-%ld", (long)getpid());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/slice.dcm", dir);
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  kiln_diag d = {0};
  kiln_volume v;
  int rc = kiln_volume_read_dicom(dir, &v, &d);
  unlink(path);
  if (rc && (!d.failed || !d.msg[0])) {
    fprintf(stderr, "fuzz_volume_dicom: read failed without a message\n");
    abort();
  }
  if (!rc) {
    if (d.failed) abort();
    kiln_volume_free(&v);
  }
  return 0;
}
