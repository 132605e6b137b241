/* The DSL lexer: source bytes -> token array.
 *
 * The whole file is checked first: it must be UTF-8 without NUL bytes (a
 * binary file or a Latin-1 file is reported at the offending byte, not
 * mis-parsed).  UTF-8 may appear in comments and strings; names are ASCII.
 * Newlines end statements, except inside ( ) and [ ] and around `->`, so a
 * long chain may be broken before or after an arrow.  `3x3`, `7x7`,
 * `3x3x3` are one token (a kernel size as papers write it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dsl_internal.h"

enum { MAX_TOKENS = 1 << 20, MAX_DIMS = 8 };

static const struct { const char *word; dsl_tok_kind kind; } keywords[] = {
    {"block", T_BLOCK}, {"network", T_NETWORK}, {"input", T_INPUT}, {"output", T_OUTPUT},
    {"seed", T_SEED},   {"weights", T_WEIGHTS}, {"if", T_IF},       {"else", T_ELSE},
    {"for", T_FOR},     {"in", T_IN},           {"repeat", T_REPEAT}, {"and", T_AND},
    {"or", T_OR},       {"not", T_NOT},         {"true", T_TRUE},   {"false", T_FALSE},
    {"none", T_NONE},
};

const char *dsl_tok_name(dsl_tok_kind k) {
  static const char *names[] = {
      [T_EOF] = "end of file", [T_NEWLINE] = "end of line", [T_IDENT] = "a name", [T_INT] = "an integer",
      [T_FLOAT] = "a number", [T_STRING] = "a string", [T_DIMS] = "a size like 3x3", [T_LPAREN] = "'('",
      [T_RPAREN] = "')'", [T_LBRACK] = "'['", [T_RBRACK] = "']'", [T_LBRACE] = "'{'", [T_RBRACE] = "'}'",
      [T_COMMA] = "','", [T_COLON] = "':'", [T_DOT] = "'.'", [T_ASSIGN] = "'='", [T_ARROW] = "'->'",
      [T_PLUS] = "'+'", [T_MINUS] = "'-'", [T_STAR] = "'*'", [T_SLASH] = "'/'", [T_DSLASH] = "'//'",
      [T_PERCENT] = "'%'", [T_EQ] = "'=='", [T_NE] = "'!='", [T_LT] = "'<'", [T_LE] = "'<='",
      [T_GT] = "'>'", [T_GE] = "'>='", [T_BLOCK] = "'block'", [T_NETWORK] = "'network'",
      [T_INPUT] = "'input'", [T_OUTPUT] = "'output'", [T_SEED] = "'seed'", [T_WEIGHTS] = "'weights'",
      [T_IF] = "'if'", [T_ELSE] = "'else'", [T_FOR] = "'for'", [T_IN] = "'in'", [T_REPEAT] = "'repeat'",
      [T_AND] = "'and'", [T_OR] = "'or'", [T_NOT] = "'not'", [T_TRUE] = "'true'", [T_FALSE] = "'false'",
      [T_NONE] = "'none'",
  };
  return (unsigned)k < sizeof names / sizeof *names && names[k] ? names[k] : "?";
}

typedef struct lexer {
  dsl_src *s;
  const char *p, *line_start;
  int line;
  dsl_tok *toks; int n, cap;
  int depth;  /* open ( and [ : newlines inside are not separators */
  int checked; /* the whole text is valid UTF-8 */
} lexer;

static int lex_fail(lexer *lx, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lex_fail(lexer *lx, const char *at, const char *fmt, ...) {
  /* no excerpt before the encoding is checked: the line may hold the bad bytes */
  kiln_loc loc = {.file = lx->s->file, .line = lx->line, .col = (int)(at - lx->line_start) + 1,
                  .source = lx->checked ? lx->s->text : NULL, .node_index = -1};
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(lx->s->d, &loc, fmt, ap);
  va_end(ap);
  return -1;
}

/* Returns the length of the UTF-8 sequence at p, or 0 if it is invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  int n;
  unsigned min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { n = 2; c &= 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 3; c &= 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 4; c &= 0x07; min = 0x10000; }
  else return 0;
  if (end - p < n) return 0;
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (p[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  return n;
}

static int check_encoding(lexer *lx) {
  const unsigned char *p = (const unsigned char *)lx->s->text, *end = p + lx->s->len;
  const unsigned char *ls = p;
  int line = 1;
  while (p < end) {
    if (*p == 0 || !utf8_len(p, end)) {
      lx->line = line;
      lx->line_start = (const char *)ls;
      return lex_fail(lx, (const char *)p, *p ? "byte 0x%02x is not valid UTF-8; .kiln files are UTF-8 text"
                                              : "NUL byte (0x%02x): .kiln files are text", *p);
    }
    if (*p == '\n') { line++; ls = p + 1; }
    p += utf8_len(p, end);
  }
  return 0;
}

static dsl_tok *push(lexer *lx, dsl_tok_kind k, const char *start, int len) {
  if (lx->n == lx->cap) {
    int nc = lx->cap ? lx->cap * 2 : 256;
    dsl_tok *nt = kiln_arena_array(lx->s->arena, (size_t)nc, sizeof *nt);
    if (lx->n) memcpy(nt, lx->toks, (size_t)lx->n * sizeof *nt);
    lx->toks = nt;
    lx->cap = nc;
  }
  dsl_tok *t = &lx->toks[lx->n++];
  memset(t, 0, sizeof *t);
  t->kind = k;
  t->line = lx->line;
  t->col = (int)(start - lx->line_start) + 1;
  t->text = start;
  t->len = len;
  return t;
}

static int is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Skips spaces, tabs, carriage returns and comments (not newlines). */
static void skip_blank(lexer *lx) {
  for (;;) {
    char c = *lx->p;
    if (c == ' ' || c == '\t' || c == '\r') lx->p++;
    else if (c == '#') while (*lx->p && *lx->p != '\n') lx->p++;
    else return;
  }
}

/* A newline continues the statement when the next token is `->`. */
static int next_line_continues(const char *p) {
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (*p == '#') { while (*p && *p != '\n') p++; continue; }
    return p[0] == '-' && p[1] == '>';
  }
}

static int lex_number(lexer *lx) {
  const char *start = lx->p;
  const char *q = start;
  while (is_digit(*q)) q++;
  int is_float = 0;
  if (*q == '.' && is_digit(q[1])) { is_float = 1; q++; while (is_digit(*q)) q++; }
  if ((*q == 'e' || *q == 'E') && (is_digit(q[1]) || ((q[1] == '-' || q[1] == '+') && is_digit(q[2])))) {
    is_float = 1;
    q += 2;
    while (is_digit(*q)) q++;
  }
  if (!is_float && *q == 'x' && is_digit(q[1])) { /* 3x3 */
    int64_t dims[MAX_DIMS];
    int n = 0;
    const char *r = start;
    for (;;) {
      int64_t v = 0;
      const char *ds = r;
      while (is_digit(*r)) {
        if (v > (INT64_MAX - 9) / 10) return lex_fail(lx, ds, "number is too large");
        v = v * 10 + (*r++ - '0');
      }
      if (n == MAX_DIMS) return lex_fail(lx, start, "a size has at most %d dims", MAX_DIMS);
      dims[n++] = v;
      if (*r == 'x' && is_digit(r[1])) r++;
      else break;
    }
    if (is_ident_start(*r)) return lex_fail(lx, r, "unexpected '%c' after the size", *r);
    dsl_tok *t = push(lx, T_DIMS, start, (int)(r - start));
    t->ndims = n;
    t->dims = kiln_arena_memdup(lx->s->arena, dims, (size_t)n * sizeof *dims);
    lx->p = r;
    return 0;
  }
  if (is_ident_start(*q)) return lex_fail(lx, q, "unexpected '%c' after a number", *q);
  char buf[64];
  if (q - start >= (int)sizeof buf) return lex_fail(lx, start, "number is too long");
  memcpy(buf, start, (size_t)(q - start));
  buf[q - start] = 0;
  dsl_tok *t = push(lx, is_float ? T_FLOAT : T_INT, start, (int)(q - start));
  errno = 0;
  if (is_float) t->fval = strtod(buf, NULL);
  else t->ival = strtoll(buf, NULL, 10);
  if (errno == ERANGE) return lex_fail(lx, start, "number '%s' is out of range", buf);
  lx->p = q;
  return 0;
}

static int lex_string(lexer *lx) {
  const char *start = lx->p, *q = start + 1;
  char quote = *start;
  while (*q && *q != quote && *q != '\n') q += (*q == '\\' && q[1] && q[1] != '\n') ? 2 : 1;
  if (*q != quote) return lex_fail(lx, start, "string is not closed on this line");
  char *buf = kiln_arena_alloc(lx->s->arena, (size_t)(q - start) + 1), *out = buf;
  for (const char *r = start + 1; r < q; r++) {
    if (*r == '\\' && r + 1 < q) {
      r++;
      *out++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
    } else {
      *out++ = *r;
    }
  }
  *out = 0;
  dsl_tok *t = push(lx, T_STRING, start, (int)(q + 1 - start));
  t->str = buf;
  lx->p = q + 1;
  return 0;
}

static int lex_punct(lexer *lx) {
  static const struct { const char *s; dsl_tok_kind k; } ops[] = {
      {"->", T_ARROW}, {"//", T_DSLASH}, {"==", T_EQ}, {"!=", T_NE}, {"<=", T_LE}, {">=", T_GE},
      {"(", T_LPAREN}, {")", T_RPAREN},  {"[", T_LBRACK}, {"]", T_RBRACK}, {"{", T_LBRACE}, {"}", T_RBRACE},
      {",", T_COMMA},  {":", T_COLON},   {".", T_DOT},   {"=", T_ASSIGN}, {"+", T_PLUS},  {"-", T_MINUS},
      {"*", T_STAR},   {"/", T_SLASH},   {"%", T_PERCENT}, {"<", T_LT},   {">", T_GT},    {";", T_NEWLINE},
  };
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    size_t n = strlen(ops[i].s);
    if (strncmp(lx->p, ops[i].s, n)) continue;
    dsl_tok_kind k = ops[i].k;
    if (k == T_LPAREN || k == T_LBRACK) lx->depth++;
    if ((k == T_RPAREN || k == T_RBRACK) && lx->depth > 0) lx->depth--;
    push(lx, k, lx->p, (int)n);
    lx->p += n;
    return 0;
  }
  unsigned char c = (unsigned char)*lx->p;
  if (c >= 0x80) return lex_fail(lx, lx->p, "non-ASCII character outside a string or comment");
  if (c < 0x20) return lex_fail(lx, lx->p, "unexpected control character 0x%02x", c);
  return lex_fail(lx, lx->p, "unexpected character '%c'", c);
}

int dsl_lex(dsl_src *s, dsl_tok **toks, int *ntoks) {
  lexer lx = {.s = s, .p = s->text, .line_start = s->text, .line = 1};
  if (check_encoding(&lx)) return -1;
  lx.checked = 1;
  lx.line = 1;
  lx.line_start = s->text;
  for (;;) {
    skip_blank(&lx);
    if (lx.n >= MAX_TOKENS) return lex_fail(&lx, lx.p, "file has more than %d tokens", MAX_TOKENS);
    char c = *lx.p;
    if (!c) break;
    if (c == '\n') {
      int prev = lx.n ? lx.toks[lx.n - 1].kind : T_NEWLINE;
      if (lx.depth == 0 && prev != T_NEWLINE && prev != T_ARROW && prev != T_LBRACE && !next_line_continues(lx.p + 1))
        push(&lx, T_NEWLINE, lx.p, 1);
      lx.p++;
      lx.line++;
      lx.line_start = lx.p;
      continue;
    }
    int rc;
    if (is_digit(c)) rc = lex_number(&lx);
    else if (c == '"' || c == '\'') rc = lex_string(&lx);
    else if (is_ident_start(c)) {
      const char *start = lx.p;
      while (is_ident_start(*lx.p) || is_digit(*lx.p)) lx.p++;
      int len = (int)(lx.p - start);
      if (len > 256) return lex_fail(&lx, start, "name is longer than 256 characters");
      dsl_tok_kind k = T_IDENT;
      for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if ((int)strlen(keywords[i].word) == len && !strncmp(keywords[i].word, start, (size_t)len)) k = keywords[i].kind;
      dsl_tok *t = push(&lx, k, start, len);
      t->str = kiln_arena_strndup(s->arena, start, (size_t)len);
      rc = 0;
    } else rc = lex_punct(&lx);
    if (rc) return -1;
  }
  push(&lx, T_NEWLINE, lx.p, 0);
  push(&lx, T_EOF, lx.p, 0);
  *toks = lx.toks;
  *ntoks = lx.n;
  return 0;
}
