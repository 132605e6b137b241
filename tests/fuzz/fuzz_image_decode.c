/* libFuzzer target for `kiln run --image`'s readers: the bytes are an image
 * file (tools/image_io.c: PNG through libpng, JPEG through libjpeg-turbo)
 * or, when they are neither, a labels file (tools/labels.c).  The contract
 * under test: any input decodes or fails with a recorded one-line message,
 * and never crashes, hangs, leaks, aborts inside a library or trips a
 * sanitizer.  A decoded image must have its pixels in 0..255; it is then
 * preprocessed (both resize modes, both layouts, f32 and f16) into a small
 * tensor, whose values must be finite.  Seeds: corpus/image/.
 *
 * Build and run with tests/fuzz/run.sh SECONDS. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/image_io.h"
#include "tools/labels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bug(const char *what, const kiln_diag *d) {
  fprintf(stderr, "fuzz_image_decode: %s%s%s\n", what, d->failed ? ": " : "", d->failed ? d->msg : "");
  abort();
}

static void one_line(const kiln_diag *d) {
  if (!d->failed || !d->msg[0]) bug("failed without a message", d);
  if (strchr(d->msg, '\n')) bug("message is more than one line", d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_diag d = {0};
  kiln_image im;
  if (kiln_image_decode(data, size, "fuzz", (int64_t)1 << 20, &im, &d)) {
    one_line(&d);
    if (!strstr(d.msg, "not a PNG or JPEG image")) return 0;
    /* Neither format: the same bytes as a labels file. */
    kiln_diag ld = {0};
    kiln_labels l;
    if (kiln_labels_parse((const char *)data, size, "fuzz.txt", &l, &ld)) {
      one_line(&ld);
      return 0;
    }
    char esc[256], field[600];
    for (int64_t i = 0; i < l.n && i < 64; i++) {
      const char *name = kiln_labels_get(&l, i);
      kiln_text_escape(name ? name : "", esc, sizeof esc);
      for (const char *c = esc; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) bug("a control character survived escaping", &ld);
      kiln_csv_field(name ? name : "", field, sizeof field);
    }
    kiln_labels_free(&l);
    return 0;
  }
  if (d.failed) bug("decoded, yet an error was recorded", &d);
  for (size_t i = 0, n = (size_t)im.width * (size_t)im.height * 3; i < n; i++)
    if (!(im.rgb[i] >= 0 && im.rgb[i] <= 255)) bug("pixel outside 0..255", &d);
  float out[2 * 7 * 9 * 3];
  for (int mode = 0; mode < 4; mode++) {
    kiln_image_prep p;
    kiln_image_prep_init(&p);
    p.height = 7;
    p.width = 9;
    p.resize = mode & 1 ? KILN_RESIZE_SHORTER : KILN_RESIZE_EXACT;
    p.nhwc = mode >> 1;
    p.bgr = mode == 1;
    if (kiln_image_to_tensor(&im, &p, KILN_DT_F32, out, 1)) continue; /* out of memory: allowed */
    for (size_t i = 7 * 9 * 3; i < 2 * 7 * 9 * 3; i++)
      if (!isfinite(out[i]) || out[i] < -1e-3f || out[i] > 1 + 1e-3f) bug("preprocessed value outside 0..1", &d);
    uint16_t half[7 * 9 * 3];
    if (kiln_image_to_tensor(&im, &p, KILN_DT_F16, half, 0)) continue;
  }
  kiln_image_free(&im);
  return 0;
}
