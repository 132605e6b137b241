/* Escaping model strings for generated C (see c_names.h for the contract).
 *
 * Why escape rather than reject: real models have names like
 * "model/conv1/BiasAdd:0" or "/backbone/layer.1/Add_output_0", and the
 * generated code should still read like the model.  So ordinary characters
 * stay as they are and only what could change the meaning of the file is
 * rewritten: in comments, whatever could end the comment, open a nested
 * one, splice lines or form a trigraph; in string literals, everything but
 * plain printable ASCII; in identifiers, everything that is not a letter or
 * digit, with a hash of the original bytes so that distinct names stay
 * distinct and a name's identifier does not depend on its neighbours. */
#include "c_names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/strmap.h"

enum { IDENT_BASE_MAX = 40 };

static int printable(unsigned char c) { return c >= 0x20 && c < 0x7f; }

/* Emits s[0..n) comment-safe; start/end mean the neighbours are unknown. */
static void comment_bytes(FILE *f, const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    int first = i == 0, last = i + 1 == n;
    int bad = !printable(c) || c == '\\' || c == '?';
    if (c == '*') bad = first || last || s[i + 1] == '/';
    if (c == '/') bad = first || last || s[i - 1] == '*' || s[i + 1] == '*';
    if (bad) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
}

void kiln_c_put_comment(FILE *f, const char *s, size_t max) {
  size_t n = strlen(s);
  comment_bytes(f, (const unsigned char *)s, n > max ? max : n);
  if (n > max) fprintf(f, "...(%zu bytes)", n);
}

void kiln_c_put_string(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\' || *p == '?') fprintf(f, "\\%c", *p); /* \? : no trigraph */
    else if (printable(*p)) fputc(*p, f);
    else fprintf(f, "\\%03o", *p); /* octal: at most 3 digits, never runs on */
  }
}

void kiln_c_put_display_string(FILE *f, const char *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (m) {
    kiln_c_put_comment(m, s, KILN_C_NAME_SHOWN);
    fclose(m);
  }
  fputc('"', f);
  kiln_c_put_string(f, buf ? buf : "");
  fputc('"', f);
  free(buf);
}

static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

static int is_alnum(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The fragment for one name, before collisions with other names; returns
 * 1 when it is not the name itself (characters dropped or changed, or cut
 * short), so that it may stand for other names too. */
static int fragment(char *out, const char *name, int upper) {
  size_t j = 0;
  int pending_sep = 0;
  for (const unsigned char *p = (const unsigned char *)name; *p && j < IDENT_BASE_MAX; p++) {
    if (!is_alnum(*p)) { pending_sep = j > 0; continue; }
    if (pending_sep) out[j++] = '_';
    pending_sep = 0;
    out[j++] = (char)(upper && *p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
  }
  out[j] = 0;
  /* exact (apart from case) only if the name is already such a fragment */
  int exact = j > 0 && strlen(name) == j;
  for (size_t i = 0; exact && i < j; i++)
    exact = out[i] == name[i] || (upper && name[i] >= 'a' && name[i] <= 'z' && out[i] == name[i] - 'a' + 'A');
  return !exact;
}

/* Hash sets keep this linear in practice, even for thousands of equal names. */
char **kiln_c_idents(kiln_arena *a, const char *const *names, int n, int upper, const char *const *taken) {
  char **ids = kiln_arena_array(a, (size_t)n + 1, sizeof *ids);
  char **bases = kiln_arena_array(a, (size_t)n + 1, sizeof *bases);
  unsigned char *changed = kiln_arena_array(a, (size_t)n + 1, 1);
  kiln_strmap used, next, seen; /* identifiers given out; per clashing base, the next suffix to try; bases' counts */
  kiln_strmap_init(&used, a);
  kiln_strmap_init(&next, a);
  kiln_strmap_init(&seen, a);
  for (int i = 0; taken && taken[i]; i++) kiln_strmap_put(&used, taken[i], (void *)1);
  for (int i = 0; i < n; i++) {
    char base[IDENT_BASE_MAX + 16];
    changed[i] = (unsigned char)fragment(base, names[i], upper);
    bases[i] = kiln_arena_strdup(a, base);
    kiln_strmap_put(&seen, bases[i], (void *)((intptr_t)kiln_strmap_get(&seen, bases[i]) + 1));
  }
  for (int i = 0; i < n; i++) {
    char base[IDENT_BASE_MAX + 16], id[IDENT_BASE_MAX + 32];
    snprintf(base, sizeof base, "%s", bases[i]);
    /* A mangled name that another name mangles to as well (`a.b`, `a-b`),
     * or an empty one, gets a hash of its exact bytes: distinct, and the
     * same whatever order the names come in.  Plain, unique names stay as
     * they are, so generated code reads like the model. */
    if (changed[i] && (!base[0] || (intptr_t)kiln_strmap_get(&seen, bases[i]) > 1 || kiln_strmap_get(&used, base))) {
      size_t j = strlen(base);
      snprintf(base + j, sizeof base - j, "%sh%08x", j ? "_" : "", (unsigned)fnv1a(names[i]));
    }
    snprintf(id, sizeof id, "%s", base);
    if (kiln_strmap_get(&used, id)) {
      intptr_t k = (intptr_t)kiln_strmap_get(&next, base);
      for (k = k ? k : 2;; k++) {
        snprintf(id, sizeof id, "%s_%ld", base, (long)k);
        if (!kiln_strmap_get(&used, id)) break;
      }
      kiln_strmap_put(&next, kiln_arena_strdup(a, base), (void *)(k + 1));
    }
    ids[i] = kiln_arena_strdup(a, id);
    kiln_strmap_put(&used, ids[i], (void *)1);
  }
  return ids;
}
