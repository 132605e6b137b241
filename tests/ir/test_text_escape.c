/* ir/text_escape.c, and its users in ir/: diag.c messages, the graph IR
 * printer (print.c) and the loop IR dump (loop.c).  Model strings shown on
 * a terminal take the display form, in `inspect --json` the JSON form.
 * Every expectation is written out by hand from the rules in
 * ir/text_escape.h and from UTF-8 as RFC 3629 defines it (the ill-formed
 * cases are its overlong, surrogate and out-of-range examples). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/diag.h"
#include "ir/text_escape.h"
#include "ir_test.h"
#include "passes/lower.h"

/* What a FILE-writing function printed, as a string (caller frees). */
#define CAPTURE(out, call)                       \
  do {                                           \
    size_t len_;                                 \
    FILE *f = open_memstream(&(out), &len_);     \
    cr_assert_not_null(f);                       \
    call;                                        \
    fclose(f);                                   \
  } while (0)

static void expect_display(const char *in, const char *want, int cols) {
  char *got = NULL;
  int n = 0;
  CAPTURE(got, n = kiln_put_display(f, in));
  cr_expect_str_eq(got, want, "display of %s", want);
  cr_expect_eq(n, cols, "columns of %s: %d, want %d", want, n, cols);
  /* the buffer form gives the same text */
  char buf[256];
  cr_expect_eq(kiln_display_escape(buf, sizeof buf, in), strlen(in));
  cr_expect_str_eq(buf, want);
  free(got);
}

static void expect_json(const char *in, const char *want) {
  char *got = NULL;
  CAPTURE(got, kiln_put_json_string(f, in));
  cr_expect_str_eq(got, want);
  free(got);
}

Test(display, printable_ascii_is_kept) {
  expect_display("conv1/weight:0 (a=b) \"q\" 'q'", "conv1/weight:0 (a=b) \"q\" 'q'", 28);
  expect_display("", "", 0);
}

Test(display, backslash_is_doubled_so_escapes_are_unambiguous) {
  expect_display("a\\b", "a\\\\b", 4);
  /* a name that spells \x0a and a name holding a newline differ */
  expect_display("n\\x0a", "n\\\\x0a", 6);
  expect_display("n\n", "n\\x0a", 5);
}

Test(display, control_bytes_and_del_are_hex) {
  expect_display("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d", 16);
  expect_display("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07", 23);
  expect_display("\x01\x1f\x7f", "\\x01\\x1f\\x7f", 12);
}

Test(display, well_formed_utf8_is_kept) {
  expect_display("caf\xc3\xa9", "caf\xc3\xa9", 4);                     /* café */
  expect_display("\xe2\x9c\x93 \xf0\x9f\x98\x80", "\xe2\x9c\x93 \xf0\x9f\x98\x80", 3); /* ✓ 😀 */
  expect_display("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", 1);           /* U+10FFFF */
}

Test(display, ill_formed_utf8_is_hex_byte_by_byte) {
  expect_display("\xff", "\\xff", 4);
  expect_display("a\x80z", "a\\x80z", 6);                              /* lone continuation */
  expect_display("\xc0\xaf", "\\xc0\\xaf", 8);                         /* overlong '/' */
  expect_display("\xe0\x80\xaf", "\\xe0\\x80\\xaf", 12);               /* overlong, 3 bytes */
  expect_display("\xed\xa0\x80", "\\xed\\xa0\\x80", 12);               /* surrogate D800 */
  expect_display("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80", 16);      /* above U+10FFFF */
  expect_display("ok\xe2\x82", "ok\\xe2\\x82", 10);                    /* cut short */
  expect_display("\xe2\x82" "A", "\\xe2\\x82" "A", 9);                 /* cut by ASCII */
}

Test(display, characters_a_terminal_obeys_are_hex) {
  expect_display("\xc2\x9b" "31m", "\\xc2\\x9b" "31m", 11);            /* C1 CSI */
  expect_display("\xc2\x85", "\\xc2\\x85", 8);                         /* C1 NEL */
  expect_display("\xc2\xa0", "\xc2\xa0", 1);                           /* NBSP is text */
  expect_display("ab\xe2\x80\xae" "cd", "ab\\xe2\\x80\\xae" "cd", 16); /* RLO */
  expect_display("\xe2\x81\xa6", "\\xe2\\x81\\xa6", 12);               /* LRI */
  expect_display("\xe2\x80\xa8", "\\xe2\\x80\\xa8", 12);               /* LINE SEPARATOR */
}

Test(display, pad_counts_columns_not_bytes) {
  char *got = NULL;
  CAPTURE(got, kiln_put_display_pad(f, "\xc3\xa9\n", 8));
  cr_expect_str_eq(got, "\xc3\xa9\\x0a   ");
  free(got);
  CAPTURE(got, kiln_put_display_pad(f, "toolongname", 4));
  cr_expect_str_eq(got, "toolongname");
  free(got);
}

Test(display, buffer_cut_never_splits_an_escape_or_a_character) {
  char buf[6];
  cr_expect_eq(kiln_display_escape(buf, sizeof buf, "ab\ncd"), 2);
  cr_expect_str_eq(buf, "ab");
  cr_expect_eq(kiln_display_escape(buf, 4, "a\xe2\x82\xac"), 1);       /* a€ */
  cr_expect_str_eq(buf, "a");
  cr_expect_eq(kiln_display_escape(buf, 5, "a\xe2\x82\xac"), 4);
  cr_expect_str_eq(buf, "a\xe2\x82\xac");
  cr_expect_eq(kiln_display_escape(buf, 1, "abc"), 0);
  cr_expect_str_eq(buf, "");
}

Test(json, quotes_backslashes_and_controls) {
  expect_json("plain", "\"plain\"");
  expect_json("", "\"\"");
  expect_json(NULL, "\"\"");
  expect_json("a\"b\\c", "\"a\\\"b\\\\c\"");
  expect_json("\n\r\x1b[0m\x7f", "\"\\u000a\\u000d\\u001b[0m\\u007f\"");
}

Test(json, utf8_kept_and_active_characters_as_code_points) {
  expect_json("caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
  expect_json("\xc2\x9b\xe2\x80\xae\xe2\x80\xa8", "\"\\u009b\\u202e\\u2028\"");
}

Test(json, ill_formed_utf8_becomes_replacement_characters) {
  expect_json("a\xff" "b", "\"a\\ufffdb\"");
  expect_json("\xc0\xaf", "\"\\ufffd\\ufffd\"");
  expect_json("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
}

Test(diag, message_is_in_display_form) {
  kiln_diag d = {0};
  kiln_loc loc = {.file = "m.onnx", .node_name = "n\n\x1b[31mx\\x0a", .op_type = "Relu", .node_index = 3};
  kiln_error(&d, &loc, "input '%s' is bad", "i\xff");
  cr_expect_str_eq(d.msg, "m.onnx: node 'n\\x0a\\x1b[31mx\\\\x0a' (Relu): input 'i\\xff' is bad");
}

Test(diag, excerpt_is_escaped_and_the_caret_follows_the_display) {
  kiln_diag d = {0};
  /* col 5 points at 'b' in the source; in display form the four bytes
   * before it show as "a", "\x1b" (4 columns), a tab and "c": the caret
   * line is 5 spaces, the tab, 1 space. */
  kiln_loc loc = {.file = "net.kiln", .op_type = "relu", .line = 2, .col = 5,
                  .source = "first\na\x1b\tcb c\nthird"};
  kiln_error(&d, &loc, "bad");
  cr_expect_str_eq(d.msg, "net.kiln:2:5: relu: bad\n    2 | a\\x1b\tcb c\n      |      \t ^");
}

/* ---- the graph and loop IR dumps print names in display form ---- */

static void expect_clean(const char *text) {
  for (const unsigned char *p = (const unsigned char *)text; *p; p++)
    cr_expect(*p == '\n' || (*p >= 0x20 && *p != 0x7f), "raw byte 0x%02x at %d of:\n%s", *p,
              (int)(p - (const unsigned char *)text), text);
}

Test(dumps, graph_and_loop_ir_show_names_in_display_form, .init = graph_setup, .fini = graph_teardown) {
  kiln_value *x = t_input("x\n\x1b[2J", KILN_DT_F32, DIMS(1, 4));
  NODE(KILN_OP_RELU, "r\r\x1b]0;t\x07", x); /* its output is named "r\r\x1b]0;t\x07:0" */
  infer_ok();
  char *t = NULL;
  CAPTURE(t, kiln_graph_print(g, f));
  expect_clean(t);
  cr_expect(strstr(t, "  input %x\\x0a\\x1b[2J : f32[1,4]\n"), "%s", t);
  cr_expect(strstr(t, "  %r\\x0d\\x1b]0;t\\x07:0 : f32[1,4] = Relu(%x\\x0a\\x1b[2J)  # r\\x0d\\x1b]0;t\\x07\n"), "%s", t);
  cr_expect(strstr(t, "  output %r\\x0d\\x1b]0;t\\x07:0 : f32[1,4]\n"), "%s", t);
  free(t);
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert_not_null(p, "%s", d.msg);
  CAPTURE(t, kiln_program_print(p, f));
  expect_clean(t);
  cr_expect(strstr(t, "buffer %x\\x0a\\x1b[2J : f32[4] input\n"), "%s", t);
  cr_expect(strstr(t, "buffer %r\\x0d\\x1b]0;t\\x07:0 : f32[4] output\n"), "%s", t);
  cr_expect(strstr(t, "    %r\\x0d\\x1b]0;t\\x07:0["), "%s", t); /* the store (one flat loop) */
  cr_expect(strstr(t, "%x\\x0a\\x1b[2J[i0]"), "%s", t);               /* a load */
  free(t);
}

Test(dumps, string_attributes_show_in_display_form, .init = graph_setup, .fini = graph_teardown) {
  kiln_value *a = t_input("a", KILN_DT_F32, DIMS(1, 1, 2, 2));
  kiln_node *rs = NODE(KILN_OP_RESIZE, "up", a);
  ((kiln_attrs_resize *)rs->attrs)->mode = "lin\n\x1b[8mear\\";
  char *t = NULL;
  CAPTURE(t, kiln_graph_print(g, f));
  expect_clean(t);
  cr_expect(strstr(t, "mode=\"lin\\x0a\\x1b[8mear\\\\\""), "%s", t);
  free(t);
}
