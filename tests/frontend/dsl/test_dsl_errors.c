/* Bad input is normal input: every malformed or mistaken .kiln file must
 * come back as NULL plus one message located at the offending line:column
 * (`net.kiln:L:C: ...`), followed by the source line and a caret; never a
 * crash, a hang or an unbounded allocation.  Grouped by what is wrong:
 * bytes, syntax, names, types, shapes, limits, weights files. */
#include "dsl_test.h"
#include "frontend/onnx/kiln_onnx.h"

TestSuite(dsl_errors, .init = dsl_setup, .fini = dsl_teardown);

#define NET(body) "network n {\n  input x: [1, 3, 8, 8]\n" body "}\n"

/* ---- bytes ---- */

Test(dsl_errors, invalid_utf8_is_located_at_the_byte) {
  load_fails(NET("  relu  # caf\xe9\n"), "net.kiln:3:14: ", "byte 0xe9 is not valid UTF-8");
}

Test(dsl_errors, overlong_utf8_and_surrogates_are_rejected) {
  load_fails(NET("  # \xc0\xaf\n"), "net.kiln:3:5: ", "not valid UTF-8");
  load_fails(NET("  # \xed\xa0\x80\n"), "net.kiln:3:5: ", "not valid UTF-8");
}

Test(dsl_errors, nul_byte_is_rejected) {
  const char src[] = "network n {\n  input x: [1, 3, 8, 8]\n\0\n}\n";
  g = kiln_dsl_load_buffer(src, sizeof src - 1, "net.kiln", NULL, NULL, &d);
  cr_assert_null(g);
  cr_assert(strstr(d.msg, "net.kiln:3:1: NUL byte"), "%s", d.msg);
}

Test(dsl_errors, utf8_in_comments_and_strings_is_fine) {
  load_ok(NET("  relu  # café ✓\n  name = \"naïve\"\n"));
}

Test(dsl_errors, non_ascii_outside_strings_is_located) {
  load_fails(NET("  relu → sigmoid\n"), "net.kiln:3:8: ", "non-ASCII character");
}

/* ---- syntax ---- */

Test(dsl_errors, syntax_error_shows_the_line_and_a_caret) {
  load_fails(NET("  conv(64, 3x3 stride=2)\n"), "net.kiln:3:16: ",
             "expected ')' to close the parenthesis, got 'stride'\n"
             "    3 |   conv(64, 3x3 stride=2)\n"
             "      |                ^");
  load_fails(NET("  conv(64, 3x3, stride=2\n"), "net.kiln:3:7: ",
             "this '(' is never closed (expected ')' before '}' on line 4)");
}

Test(dsl_errors, unclosed_brace_points_at_the_brace) {
  load_fails("network n {\n  input x: [1, 2]\n", "net.kiln:1:11: ", "this '{' is never closed");
}

Test(dsl_errors, stray_tokens) {
  load_fails(NET("  relu relu\n"), "net.kiln:3:8: ", "expected the end of the line, got 'relu'");
  load_fails(NET("  relu ->\n"), "net.kiln:4:1: ", "expected a value");
  load_fails("relu\n", "net.kiln:1:1: ", "expected 'block', 'network' or a constant");
  load_fails(NET("  x = 3 = 4\n"), "net.kiln:3:9: ", "expected the end of the line");
  load_fails(NET("  conv(4, 3x3y)\n"), "net.kiln:3:14: ", "unexpected 'y' after the size");
  load_fails(NET("  s = \"open\n"), "net.kiln:3:7: ", "string is not closed");
  load_fails(NET("  conv(out=4, 3x3)\n"), "net.kiln:3:15: ", "positional argument cannot follow keyword");
}

Test(dsl_errors, file_structure) {
  load_fails("x = 1\n", "net.kiln: ", "no 'network NAME { ... }'");
  load_fails("network a {\n}\nnetwork b {\n}\n", "net.kiln:3:1: ", "one network; the first is on line 1");
  load_fails("block b() {\n}\nblock b() {\n}\nnetwork n {\n}\n", "net.kiln:3:1: ", "block 'b' is already defined on line 1");
  load_fails("block b(x=1, y) {\n}\nnetwork n {\n}\n", "net.kiln:1:14: ", "parameter 'y' needs a default");
  load_fails(NET("  block c() {\n  }\n"), "net.kiln:3:3: ", "belong at the top level");
  load_fails("network n {\n}\n", "net.kiln:1:1: ", "declares no input");
  load_fails("network n {\n  input x: [1, 2]\n}\n", "net.kiln:1:1: ", "has no layers");
}

Test(dsl_errors, deep_nesting_is_bounded) {
  char src[4096];
  int n = snprintf(src, sizeof src, "network n {\n  input x: [1, 2]\n  a = ");
  for (int i = 0; i < 500; i++) src[n++] = '(';
  strcpy(src + n, "1\n}\n");
  load_fails(src, "net.kiln:3:", "nesting is deeper than 64 levels");
  n = snprintf(src, sizeof src, "network n {\n  input x: [1, 2]\n  a = ");
  for (int i = 0; i < 500; i++) src[n++] = '-';
  strcpy(src + n, "1\n}\n");
  load_fails(src, "net.kiln:3:", "nesting is deeper than 64 levels");
}

/* ---- names ---- */

Test(dsl_errors, unknown_layer_suggests_the_nearest) {
  load_fails(NET("  relu -> conv2d(8, 3x3)\n"), "net.kiln:3:11: ", "unknown layer or block 'conv2d' (did you mean 'conv'?)");
  load_fails(NET("  batchnrom\n"), "net.kiln:3:3: ", "unknown name 'batchnrom' (did you mean 'batchnorm'?)");
}

Test(dsl_errors, unknown_parameter_suggests_the_nearest) {
  load_fails(NET("  conv(8, 3x3, strides=2)\n"), "net.kiln:3:",
             "conv has no parameter 'strides' (did you mean 'stride'?)");
  load_fails("block b(width) {\n  relu\n}\n" NET("  b(widht=3)\n"), "net.kiln:6:",
             "block 'b' has no parameter 'widht' (did you mean 'width'?)");
}

Test(dsl_errors, missing_and_surplus_arguments) {
  load_fails(NET("  conv(8)\n"), "net.kiln:3:3: ", "conv needs 'kernel'");
  load_fails(NET("  maxpool(2, 2, 0, 1, false, 7)\n"), "net.kiln:3:", "maxpool takes at most 5 arguments");
  load_fails("block b(w) {\n  relu\n}\n" NET("  b()\n"), "net.kiln:6:3: ", "block 'b' needs 'w'");
  load_fails(NET("  conv(8, 3x3, stride=1, stride=2)\n"), "net.kiln:3:", "'stride' is given twice");
}

Test(dsl_errors, duplicate_names_are_reported) {
  load_fails(NET("  c: conv(8, 1x1)\n  c: conv(8, 1x1)\n"), "net.kiln:4:6: ", "the name 'c' is already taken");
  load_fails(NET("  repeat 2 { c: conv(3, 1x1) }\n"), "net.kiln:3:", "label the loop");
  load_fails(NET("  output x\n"), "net.kiln:3:3: ", "the name 'x' is already taken");
}

Test(dsl_errors, values_and_layers_do_not_mix) {
  load_fails(NET("  k = 3\n  relu -> k\n"), "net.kiln:4:11: ", "'k' is a value, not a layer");
  load_fails(NET("  3 + 4\n"), "net.kiln:3:3: ", "computes 7 and does nothing with it");
  load_fails(NET("  _ = relu\n"), "net.kiln:3:3: ", "'_' is the current tensor");
  load_fails("block b() {\n  input y: [1]\n}\n" NET("  b\n"), "net.kiln:2:3: ", "belongs in the network body");
  load_fails(NET("  y = in\n"), "net.kiln:3:7: ", "'in' is a block's input");
  load_fails("network n {\n  relu\n  input x: [1, 2]\n}\n", "net.kiln:2:3: ", "relu has no input here");
}

/* ---- types and arithmetic ---- */

Test(dsl_errors, argument_types_point_at_the_argument) {
  load_fails(NET("  conv(\"wide\", 3x3)\n"), "net.kiln:3:8: conv 'conv1': ", "'out' must be an integer");
  load_fails(NET("  conv(8, 3x3x3)\n"), "net.kiln:3:11: ", "'kernel' must be an integer >= 1 or 2 of them");
  load_fails(NET("  conv(8, 3x3, pad=\"full\")\n"), "net.kiln:3:", "'pad' must be a number, a list, same or valid");
  load_fails(NET("  conv(8, 3x3, init=7)\n"), "net.kiln:3:", "'init' must be an initializer");
  load_fails(NET("  dropout(1.5)\n"), "net.kiln:3:11: ", "'rate' must be a number from 0 to 0.999");
  load_fails(NET("  conv(8, 3x3, groups=2)\n"), "net.kiln:3:", "groups=2 does not divide the 3 input channels");
}

Test(dsl_errors, arithmetic_errors) {
  load_fails(NET("  a = 1 // 0\n"), "net.kiln:3:9: ", "division by zero");
  load_fails(NET("  a = 9223372036854775807 + 1\n"), "net.kiln:3:27: ", "integer overflow");
  load_fails(NET("  a = \"x\" * 2\n"), "net.kiln:3:11: ", "cannot combine");
  load_fails(NET("  a = [1, 2][5]\n"), "net.kiln:3:14: ", "index 5 is out of range");
  load_fails(NET("  a = 99999999999999999999\n"), "net.kiln:3:7: ", "out of range");
  load_fails(NET("  if 2.5 { relu }\n"), "net.kiln:3:6: ", "a condition must be true or false");
}

/* ---- shapes ---- */

Test(dsl_errors, channel_mismatch_names_the_layer) {
  load_fails(NET("  conv(128, 3x3, pad=1)\n  c3: conv(64, 3x3, in=64)\n"), "net.kiln:4:7: conv 'c3': ",
             "expects 64 input channels, got 128");
}

Test(dsl_errors, dense_after_conv_needs_flatten) {
  load_fails(NET("  fc: dense(10)\n"), "net.kiln:3:7: dense 'fc': ", "put flatten");
  load_fails("network n {\n  input x: [1, 3]\n  conv(4, 1)\n}\n", "net.kiln:3:3: conv 'conv1': ", "comes after the flatten");
}

Test(dsl_errors, shape_function_errors_are_located) {
  load_fails(NET("  p: maxpool(16x16)\n"), "net.kiln:3:6: maxpool 'p': ", "window of extent 16 does not fit");
  load_fails(NET("  a = conv(4, 1x1)\n  b = conv(5, 1x1)\n  (a, b) -> s: add\n"), "net.kiln:5:16: add 's': ",
             "shapes [1,4,8,8] ('conv1') and [1,5,8,8] ('conv2') do not broadcast");
  load_fails(NET("  a = maxpool(2x2)\n  (a, _) -> concat\n"), "net.kiln:4:13: concat 'concat1': ", "");
}

/* ---- limits ---- */

Test(dsl_errors, recursion_without_end) {
  load_fails("block down(c) {\n  conv(c, 1x1)\n  down(c)\n}\n" NET("  down(4)\n"), "net.kiln:3:3: ",
             "block 'down' is nested more than 64 calls deep: does its recursion reach a base case?");
}

Test(dsl_errors, huge_repetition_counts) {
  load_fails(NET("  repeat 1000000000 { relu }\n"), "net.kiln:3:10: ", "repeat count 1000000000 is too large (at most 10000)");
  load_fails(NET("  for i in range(1, 1000000000) { relu }\n"), "net.kiln:3:12: ", "range of 999999999 items is too long");
  load_fails(NET("  repeat -1 { relu }\n"), "net.kiln:3:10: ", "is negative");
  load_fails(NET("  repeat 10000 { repeat 10000 { relu } }\n"), "net.kiln:3:", "more than 1048576 steps");
}

Test(dsl_errors, exponential_blowup_is_bounded) {
  /* each call doubles the work: 2^40 calls if nothing stopped it */
  load_fails("block b(n) {\n  if n > 0 {\n    b(n - 1)\n    b(n - 1)\n  }\n}\n" NET("  b(40)\n"), "net.kiln:",
             "steps");
}

Test(dsl_errors, parameter_budget) {
  kiln_dsl_limits lim = kiln_dsl_default_limits();
  lim.max_params = 1000;
  cr_assert_null(load_limited(NET("  conv(64, 3x3)\n"), &lim));
  cr_assert(strstr(d.msg, "net.kiln:3:3: conv 'conv1': its weight would have more than 1000 elements"), "%s", d.msg);
  cr_assert_null(load(NET("  conv(1048576, 3x3) -> conv(1048576, 3x3)\n")));
  cr_assert(strstr(d.msg, "more than 268435456"), "%s", d.msg);
}

/* ---- weights files ---- */

Test(dsl_errors, missing_weights_file) {
  load_fails("network n {\n  weights \"nope.npz\"\n  input x: [1, 2]\n}\n", "net.kiln:2:11: ",
             "weights file 'nope.npz' cannot be opened: No such file or directory");
}

Test(dsl_errors, weights_from_memory_are_refused) {
  const char *src = "network n {\n  weights \"w.npz\"\n  input x: [1, 2]\n}\n";
  g = kiln_dsl_load_buffer(src, strlen(src), "net.kiln", NULL, NULL, &d);
  cr_assert_null(g);
  cr_assert(strstr(d.msg, "net.kiln:2:11: weights files cannot be read here"), "%s", d.msg);
}

Test(dsl_errors, weights_of_the_wrong_shape_or_missing) {
  cr_assert(load(NET("  c: conv(4, 3x3)\n")));
  char path[128];
  snprintf(path, sizeof path, "%s/w.onnx", tmpdir);
  cr_assert_eq(kiln_onnx_export(g, path, &d), 0, "%s", d.msg);
  load_fails("network n {\n  weights \"w.onnx\"\n  input x: [1, 3, 8, 8]\n  c: conv(4, 5x5)\n}\n",
             "net.kiln:4:6: conv 'c': ", "weights file 'w.onnx' has 'c.weight' of shape [4,3,3,3], this layer needs [4,3,5,5]");
  load_fails("network n {\n  weights \"w.onnx\"\n  input x: [1, 3, 8, 8]\n  d: conv(4, 3x3)\n}\n",
             "net.kiln:4:6: conv 'd': ", "weights file 'w.onnx' has no tensor 'd.weight'");
}

Test(dsl_errors, corrupt_weights_files) {
  write_file("bad.npz", "PK\x03\x04 not really", 16);
  load_fails("network n {\n  weights \"bad.npz\"\n  input x: [1, 2]\n}\n", "net.kiln:2:11: ",
             "weights file 'bad.npz': not a zip archive");
  write_file("bad.onnx", "\x08\x07garbage", 9);
  load_fails("network n {\n  weights \"bad.onnx\"\n  input x: [1, 2]\n}\n", "net.kiln:2:11: ",
             "weights file 'bad.onnx' cannot be read");
  load_fails("network n {\n  weights \"w.h5\"\n  input x: [1, 2]\n}\n", "net.kiln:2:11: ", "unknown format");
}

Test(dsl_errors, missing_source_file) {
  kiln_graph *h = kiln_dsl_load("/nonexistent/net.kiln", &d);
  cr_assert_null(h);
  cr_assert(strstr(d.msg, "/nonexistent/net.kiln: cannot open"), "%s", d.msg);
}
