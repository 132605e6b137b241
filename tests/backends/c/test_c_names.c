/* The escaping helpers of backends/c/c_names.c, checked by property:
 * comment text can never close or open a comment, splice a line or form a
 * trigraph, whatever surrounds it (exhaustive over short strings of the
 * dangerous characters); string literals decode back to the exact bytes;
 * identifiers are well formed, bounded, distinct and deterministic. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_names.h"
#include "ir/strmap.h"

static char *comment(const char *s, size_t max) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  kiln_c_put_comment(f, s, max);
  fclose(f);
  return buf;
}

static char *literal(const char *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  kiln_c_put_string(f, s);
  fclose(f);
  return buf;
}

static void assert_comment_safe(const char *s) {
  char *c = comment(s, KILN_C_NAME_SHOWN);
  char wrapped[4096];
  /* tightest contexts: directly after an opener, directly before a closer */
  snprintf(wrapped, sizeof wrapped, "/*%s*/", c);
  const char *inner = wrapped + 2;
  size_t n = strlen(inner) - 2;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)inner[i];
    cr_assert(ch >= 0x20 && ch < 0x7f, "non-printable byte in comment text for %s", s);
    cr_assert(!(inner[i] == '*' && inner[i + 1] == '/'), "comment closed early: %s", wrapped);
    cr_assert(!(inner[i] == '/' && inner[i + 1] == '*'), "nested opener: %s", wrapped);
    cr_assert(!(inner[i] == '?' && inner[i + 1] == '?'), "trigraph start: %s", wrapped);
    if (inner[i] == '\\') cr_assert_eq(inner[i + 1], 'x', "backslash not part of \\xHH: %s", wrapped);
  }
  cr_assert(!(wrapped[2] == '/'), "text right after the opener starts with '/': %s", wrapped);
  free(c);
}

Test(c_names, comments_cannot_escape) {
  static const char alphabet[] = {'*', '/', '?', '\\', '\n', 'a', '\r'};
  enum { A = sizeof alphabet };
  char s[5];
  for (int len = 1; len <= 4; len++) {
    int total = 1;
    for (int i = 0; i < len; i++) total *= A;
    for (int k = 0; k < total; k++) {
      int v = k;
      for (int i = 0; i < len; i++) { s[i] = alphabet[v % A]; v /= A; }
      s[len] = 0;
      assert_comment_safe(s);
    }
  }
  assert_comment_safe("*/ __attribute__((constructor)) static void f(void){system(\"touch x\");} /*");
  assert_comment_safe("line\n// comment\n#define float int");
  assert_comment_safe("a?\?/"); /* (this file is C11: trigraphs are live here too) */
  assert_comment_safe("\xcf\x80\xff\x01\x7f");
}

Test(c_names, comments_are_readable_and_bounded) {
  char *c = comment("model/conv1/BiasAdd:0 (x*y)", 160);
  cr_assert_str_eq(c, "model/conv1/BiasAdd:0 (x*y)", "ordinary names stay as they are");
  free(c);
  char big[5001];
  memset(big, '*', 5000);
  big[5000] = 0;
  c = comment(big, 160);
  cr_assert(strlen(c) < 160 * 4 + 32, "bounded: %zu bytes", strlen(c));
  cr_assert(strstr(c, "...(5000 bytes)"));
  free(c);
}

/* Decodes the C escapes kiln_c_put_string may write. */
static size_t decode(const char *lit, unsigned char *out) {
  size_t n = 0;
  for (const char *p = lit; *p;) {
    if (*p != '\\') { out[n++] = (unsigned char)*p++; continue; }
    p++;
    if (*p >= '0' && *p <= '7') {
      int v = 0, k = 0;
      while (k < 3 && *p >= '0' && *p <= '7') { v = v * 8 + (*p++ - '0'); k++; }
      cr_assert_eq(k, 3, "octal escapes are always 3 digits");
      out[n++] = (unsigned char)v;
    } else {
      cr_assert(*p == '"' || *p == '\\' || *p == '?', "unexpected escape \\%c", *p);
      out[n++] = (unsigned char)*p++;
    }
  }
  return n;
}

Test(c_names, string_literals_are_exact) {
  unsigned char all[256], back[1024];
  for (int i = 1; i < 256; i++) all[i - 1] = (unsigned char)i;
  all[255] = 0;
  const char *cases[] = {(const char *)all, "in\"put\\%n%s", "?\?/?\?=?\?'", "\n*/ system(\"x\"); /*", "7\0018", ""};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    char *lit = literal(cases[c]);
    for (const char *p = lit; *p; p++) {
      cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "printable");
      cr_assert(!(p[0] == '?' && p[1] == '?'), "no trigraph in %s", lit);
      if (*p == '"') cr_assert(p > lit && p[-1] == '\\', "unescaped quote in %s", lit);
    }
    size_t n = decode(lit, back);
    cr_assert_eq(n, strlen(cases[c]));
    cr_assert(!memcmp(back, cases[c], n), "round trip of case %zu", c);
    free(lit);
  }
}

static int well_formed(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 60 || id[0] == '_' || id[n - 1] == '_' || strstr(id, "__")) return 0;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
  return 1;
}

Test(c_names, identifiers_distinct_bounded_deterministic) {
  static char longa[5001], longb[5001];
  memset(longa, 'A', 5000);
  memset(longb, 'A', 5000);
  longb[4999] = 'B';
  const char *names[] = {"a.b", "a-b", "a_b", "a__b", "workspace", "WORKSPACE", "int", "return", "_X", "__x", "X", "x",
                         "0abc", "1", "", "\xcf\x80", "\xcf\x81", "*/", "/*", longa, longb, "a.b"};
  enum { N = sizeof names / sizeof *names };
  static const char *const taken[] = {"WORKSPACE", "WEIGHTS", NULL};
  for (int upper = 0; upper < 2; upper++) {
    kiln_arena a;
    kiln_arena_init(&a);
    char **ids = kiln_c_idents(&a, names, N, upper, upper ? taken : NULL);
    char **again = kiln_c_idents(&a, names, N, upper, upper ? taken : NULL);
    for (int i = 0; i < N; i++) {
      cr_assert(well_formed(ids[i]), "'%s' from name %d is not a well-formed fragment", ids[i], i);
      cr_assert_str_eq(ids[i], again[i], "deterministic");
      for (int j = 0; j < i; j++) cr_assert_str_neq(ids[i], ids[j], "names %d and %d collide as '%s'", i, j, ids[i]);
      if (upper) cr_assert(strcmp(ids[i], "WORKSPACE") && strcmp(ids[i], "WEIGHTS"), "taken identifier used");
    }
    cr_assert_str_eq(ids[2], upper ? "A_B" : "a_b", "a name that is already a fragment is kept");
    cr_assert_str_eq(ids[6], upper ? "INT" : "int");
    /* names that mangle alike (`a.b`, `a-b`, beside `a_b`) are told apart
     * by a hash of their bytes; a mangled name no other shares reads as
     * the model wrote it (`conv1.weight` -> conv1_weight) */
    cr_assert(strstr(ids[0], upper ? "A_B_h" : "a_b_h") == ids[0], "'%s'", ids[0]);
    cr_assert(strstr(ids[1], upper ? "A_B_h" : "a_b_h") == ids[1], "'%s'", ids[1]);
    static const char *const plain[] = {"conv1.weight", "layer1.0.bn1.running_mean"};
    char **alone = kiln_c_idents(&a, plain, 2, upper, NULL);
    cr_assert_str_eq(alone[0], upper ? "CONV1_WEIGHT" : "conv1_weight");
    cr_assert_str_eq(alone[1], upper ? "LAYER1_0_BN1_RUNNING_MEAN" : "layer1_0_bn1_running_mean");
    kiln_arena_free(&a);
  }
}

Test(c_names, many_equal_names_stay_distinct_and_fast) {
  enum { N = 20000 };
  static const char *names[N];
  for (int i = 0; i < N; i++) names[i] = i % 3 ? "" : "x_2"; /* "" and a name like a dedup suffix */
  kiln_arena a;
  kiln_arena_init(&a);
  char **ids = kiln_c_idents(&a, names, N, 0, NULL);
  kiln_strmap seen;
  kiln_strmap_init(&seen, &a);
  for (int i = 0; i < N; i++) {
    cr_assert(well_formed(ids[i]), "%s", ids[i]);
    cr_assert_null(kiln_strmap_get(&seen, ids[i]), "'%s' given twice", ids[i]);
    kiln_strmap_put(&seen, ids[i], (void *)1);
  }
  kiln_arena_free(&a);
}
