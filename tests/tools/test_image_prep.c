/* Unit tests for the pure parts of `kiln run --image`: the labels parser
 * and the text/CSV escaping (tools/labels.c), the settings parser and the
 * resampler's geometry (tools/image_prep.c).  The sources are included
 * directly: the kiln binary, not kiln_lib, owns them.  Expected values are
 * worked out by hand from docs/images.md. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../tools/image_prep.c"
#include "../../tools/labels.c"

static kiln_labels parse(const char *text) {
  kiln_labels l;
  kiln_diag d = {0};
  cr_assert_eq(kiln_labels_parse(text, strlen(text), "t.txt", &l, &d), 0, "%s", d.msg);
  return l;
}

Test(labels, one_per_line_and_indexed) {
  kiln_labels l = parse("cat\ndog\r\n\nbird\n");
  cr_assert_eq(l.n, 4);
  cr_assert_str_eq(kiln_labels_get(&l, 1), "dog");
  cr_assert_str_eq(kiln_labels_get(&l, 2), ""); /* a blank line is a class without a name */
  cr_assert_str_eq(kiln_labels_get(&l, 3), "bird");
  cr_assert_null(kiln_labels_get(&l, 4));
  kiln_labels_free(&l);
  l = parse("2,tabby, tabby cat\n0,tench, Tinca tinca\n\n");
  cr_assert_eq(l.n, 3);
  cr_assert_str_eq(kiln_labels_get(&l, 2), "tabby, tabby cat");
  cr_assert_str_eq(kiln_labels_get(&l, 0), "tench, Tinca tinca");
  cr_assert_null(kiln_labels_get(&l, 1));
  kiln_labels_free(&l);
}

Test(labels, errors) {
  const char *bad[] = {"0,a\nb\n", "0,a\n0,b\n", "99999999,a\n", "a\0b"};
  size_t len[] = {6, 8, 11, 3};
  for (int i = 0; i < 4; i++) {
    kiln_labels l;
    kiln_diag d = {0};
    cr_assert_eq(kiln_labels_parse(bad[i], len[i], "t.txt", &l, &d), -1, "case %d", i);
    cr_assert(strncmp(d.msg, "t.txt: ", 7) == 0 && !strchr(d.msg, '\n'), "%s", d.msg);
  }
}

Test(escape, terminal_and_csv) {
  char out[128];
  kiln_text_escape("caf\xc3\xa9 \x1b[31m\\ \xc2\x9b \xff", out, sizeof out);
  cr_assert_str_eq(out, "caf\xc3\xa9 \\x1b[31m\\\\ \\xc2\\x9b \\xff"); /* U+00E9 kept; ESC, C1 CSI, bad byte escaped */
  kiln_text_escape("abcdef", out, 4);
  cr_assert_str_eq(out, "abc");
  kiln_csv_field("say \"hi\", ok", out, sizeof out);
  cr_assert_str_eq(out, "\"say \"\"hi\"\", ok\"");
  kiln_csv_field("=1+2", out, sizeof out);
  cr_assert_str_eq(out, "\"'=1+2\"");
  kiln_csv_field("-x\n", out, sizeof out);
  cr_assert_str_eq(out, "\"'-x\\x0a\"");
}

Test(prep, settings) {
  kiln_image_prep p;
  char err[128];
  kiln_image_prep_init(&p);
  cr_assert_float_eq(p.scale, 1.0 / 255, 1e-15);
  cr_assert_eq(kiln_image_prep_set(&p, "scale", "1/127.5", err, sizeof err), 0);
  cr_assert_float_eq(p.scale, 1 / 127.5, 1e-15);
  cr_assert_eq(kiln_image_prep_set(&p, "mean", "0.5, 0.25,1e-1", err, sizeof err), 0);
  cr_assert_float_eq(p.mean[2], 0.1, 1e-15);
  const char *bad[][2] = {{"scale", "x"}, {"scale", "1/0"}, {"scale", "inf"}, {"mean", "1,2"}, {"mean", "1,2,3,4"},
                          {"std", "1,0,1"}, {"resize", "fit"}, {"layout", "chw"}, {"colour", "rgb"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(kiln_image_prep_set(&p, bad[i][0], bad[i][1], err, sizeof err), -1, "%s=%s", bad[i][0], bad[i][1]);
}

/* Same size: identity.  Halving: each output averages a 4-tap triangle
 * (weights 1/8, 3/8, 3/8, 1/8).  Upscaling 2 -> 4: plain bilinear. */
Test(prep, resampling_weights) {
  axis_coeffs a = {0};
  cr_assert_eq(axis_coeffs_make(&a, 5, 5, 0, 5), 0);
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(a.start[i], i);
    cr_assert_float_eq(a.w[i * a.taps], 1.0f, 1e-7);
  }
  axis_coeffs_free(&a);
  cr_assert_eq(axis_coeffs_make(&a, 8, 4, 0, 4), 0);
  cr_assert_eq(a.start[1], 1); /* centre 3: taps 1..4 */
  float want[4] = {0.125f, 0.375f, 0.375f, 0.125f};
  for (int t = 0; t < 4; t++) cr_assert_float_eq(a.w[1 * a.taps + t], want[t], 1e-7);
  axis_coeffs_free(&a);
  cr_assert_eq(axis_coeffs_make(&a, 2, 4, 0, 4), 0);
  /* output 1: centre 0.75, x=0 weight 1-|0-0.75+0.5| = 0.75, x=1: 0.25 */
  cr_assert_eq(a.start[1], 0);
  cr_assert_float_eq(a.w[1 * a.taps], 0.75f, 1e-7);
  cr_assert_float_eq(a.w[1 * a.taps + 1], 0.25f, 1e-7);
  axis_coeffs_free(&a);
}

/* --resize shorter on a 4x8 image to 2x2: scaled by 0.5 to 2x4, the centre
 * 2x2 (columns 1..2 of 4) kept.  A horizontal ramp shows which columns. */
Test(prep, shorter_crops_the_centre) {
  float px[4 * 8 * 3];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 8; x++)
      for (int c = 0; c < 3; c++) px[(y * 8 + x) * 3 + c] = (float)(x * 10 + c);
  kiln_image im = {.width = 8, .height = 4, .rgb = px};
  kiln_image_prep p;
  kiln_image_prep_init(&p);
  p.height = p.width = 2;
  p.resize = KILN_RESIZE_SHORTER;
  p.scale = 1;
  p.bgr = 1;
  float out[12];
  cr_assert_eq(kiln_image_to_tensor(&im, &p, KILN_DT_F32, out, 0), 0);
  /* resized column 1 averages source 1..4 with 1/8,3/8,3/8,1/8: x = 2.5 -> 25;
   * column 2: x = 4.5 -> 45.  NCHW, BGR: channel 0 is blue (c = 2). */
  cr_assert_float_eq(out[0], 27.0f, 1e-4);
  cr_assert_float_eq(out[1], 47.0f, 1e-4);
  cr_assert_float_eq(out[8], 25.0f, 1e-4); /* red */
}
