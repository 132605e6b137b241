/* The DSL parser: tokens -> syntax tree, by recursive descent over the
 * grammar in docs/dsl.md.  Every tree node keeps the line:column of the
 * token that starts it, so the elaborator can point at the source.
 * Nesting (parentheses, lists, braces) is bounded so that a hostile file
 * cannot overflow the stack; the first syntax error stops the parse. */
#include <string.h>

#include "dsl_internal.h"

enum { MAX_NESTING = 64, MAX_ITEMS = 1 << 16 };

typedef struct parser {
  dsl_src *s;
  const dsl_tok *t;
  int pos, n;
  int depth;
} parser;

static const dsl_tok *peek(parser *p) { return &p->t[p->pos]; }
static const dsl_tok *peek2(parser *p) { return &p->t[p->pos + 1 < p->n ? p->pos + 1 : p->n - 1]; }
static const dsl_tok *next(parser *p) { const dsl_tok *t = &p->t[p->pos]; if (p->pos < p->n - 1) p->pos++; return t; }
static int at(parser *p, dsl_tok_kind k) { return peek(p)->kind == k; }

static int fail_at(parser *p, const dsl_tok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(parser *p, const dsl_tok *t, const char *fmt, ...) {
  kiln_loc loc = {.file = p->s->file, .line = t->line, .col = t->col, .source = p->s->text, .node_index = -1};
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(p->s->d, &loc, fmt, ap);
  va_end(ap);
  return -1;
}

/* "got 'foo'" for a token, or its kind when it has no text. */
static const char *got(parser *p, const dsl_tok *t) {
  if (t->kind == T_EOF || t->kind == T_NEWLINE || t->len == 0) return dsl_tok_name(t->kind);
  return kiln_arena_printf(p->s->arena, "'%.*s'", t->len > 40 ? 40 : t->len, t->text);
}

static int expect(parser *p, dsl_tok_kind k, const char *what) {
  if (at(p, k)) { next(p); return 0; }
  return fail_at(p, peek(p), "expected %s %s, got %s", dsl_tok_name(k), what, got(p, peek(p)));
}

static dsl_ast *node(parser *p, dsl_ast_kind k, const dsl_tok *t) {
  dsl_ast *a = kiln_arena_alloc(p->s->arena, sizeof *a);
  a->kind = k;
  a->line = t->line;
  a->col = t->col;
  return a;
}

static void add_item(parser *p, dsl_ast *a, dsl_ast *item, const char *key) {
  if ((a->nitems & (a->nitems - 1)) == 0) { /* grow at powers of two */
    int cap = a->nitems ? a->nitems * 2 : 1;
    dsl_ast **ni = kiln_arena_array(p->s->arena, (size_t)cap, sizeof *ni);
    const char **nk = kiln_arena_array(p->s->arena, (size_t)cap, sizeof *nk);
    if (a->nitems) {
      memcpy(ni, a->items, (size_t)a->nitems * sizeof *ni);
      memcpy(nk, a->keys, (size_t)a->nitems * sizeof *nk);
    }
    a->items = ni;
    a->keys = nk;
  }
  a->keys[a->nitems] = key;
  a->items[a->nitems++] = item;
}

static int enter(parser *p) {
  if (++p->depth > MAX_NESTING) return fail_at(p, peek(p), "nesting is deeper than %d levels", MAX_NESTING);
  return 0;
}

static dsl_ast *parse_expr(parser *p);
static dsl_ast *parse_body(parser *p);

/* Comma-separated items up to `close`; keyword arguments when allow_keys.
 * Newlines inside brackets do not end statements, so a missing bracket is
 * usually noticed lines later: then the message points at the opening one. */
static int parse_items(parser *p, dsl_ast *a, dsl_tok_kind close, int allow_keys) {
  const dsl_tok *open = &p->t[p->pos > 0 ? p->pos - 1 : 0];
  while (!at(p, close)) {
    if (a->nitems >= MAX_ITEMS) return fail_at(p, peek(p), "more than %d items", MAX_ITEMS);
    const char *key = NULL;
    /* keywords may name arguments too: in=64, seed=1 */
    if (allow_keys && (at(p, T_IDENT) || peek(p)->kind >= T_BLOCK) && peek2(p)->kind == T_ASSIGN) {
      key = peek(p)->str;
      next(p);
      next(p);
    } else if (allow_keys && a->nitems && a->keys[a->nitems - 1]) {
      return fail_at(p, peek(p), "a positional argument cannot follow keyword arguments");
    }
    dsl_ast *e = parse_expr(p);
    if (!e) return -1;
    add_item(p, a, e, key);
    if (!at(p, T_COMMA)) break;
    next(p);
  }
  if (!at(p, close) && peek(p)->line != open->line)
    return fail_at(p, open, "this %s is never closed (expected %s before %s on line %d)", dsl_tok_name(open->kind),
                   dsl_tok_name(close), got(p, peek(p)), peek(p)->line);
  return expect(p, close, close == T_RPAREN ? "to close the parenthesis" : "to close the list");
}

/* name or name(args) */
static dsl_ast *parse_call(parser *p) {
  const dsl_tok *t = next(p);
  if (!at(p, T_LPAREN)) {
    dsl_ast *a = node(p, A_NAME, t);
    a->name = t->str;
    return a;
  }
  next(p);
  dsl_ast *a = node(p, A_CALL, t);
  a->name = t->str;
  return parse_items(p, a, T_RPAREN, 1) ? NULL : a;
}

static dsl_ast *parse_primary(parser *p) {
  const dsl_tok *t = peek(p);
  dsl_ast *a;
  switch (t->kind) {
  case T_INT: next(p); a = node(p, A_INT, t); a->ival = t->ival; return a;
  case T_FLOAT: next(p); a = node(p, A_FLOAT, t); a->fval = t->fval; return a;
  case T_STRING: next(p); a = node(p, A_STRING, t); a->name = t->str; return a;
  case T_TRUE: case T_FALSE: next(p); a = node(p, A_BOOL, t); a->ival = t->kind == T_TRUE; return a;
  case T_NONE: next(p); return node(p, A_NONE, t);
  case T_IN: next(p); return node(p, A_IN, t);
  case T_DIMS:
    next(p);
    a = node(p, A_DIMS, t);
    a->ival = t->ndims;
    a->dims = t->dims;
    return a;
  case T_IDENT:
    if (!strcmp(t->str, "_")) { next(p); return node(p, A_CURRENT, t); }
    if (peek2(p)->kind == T_COLON) { /* label: the layer or block it names */
      next(p);
      next(p);
      if (!at(p, T_IDENT)) {
        fail_at(p, peek(p), "expected a layer or block after the label '%s:', got %s", t->str, got(p, peek(p)));
        return NULL;
      }
      a = node(p, A_LABEL, t);
      a->name = t->str;
      a->a = parse_call(p);
      return a->a ? a : NULL;
    }
    return parse_call(p);
  case T_LBRACK:
    next(p);
    a = node(p, A_LIST, t);
    if (enter(p) || parse_items(p, a, T_RBRACK, 0)) return NULL;
    p->depth--;
    return a;
  case T_LPAREN: {
    next(p);
    if (enter(p)) return NULL;
    dsl_ast *e = parse_expr(p);
    if (!e) return NULL;
    if (at(p, T_COMMA)) { /* a tuple */
      next(p);
      a = node(p, A_TUPLE, t);
      add_item(p, a, e, NULL);
      if (parse_items(p, a, T_RPAREN, 0)) return NULL;
      e = a;
    } else if (expect(p, T_RPAREN, "to close the parenthesis")) {
      return NULL;
    }
    p->depth--;
    return e;
  }
  default:
    fail_at(p, t, "expected a value, a layer or a block, got %s", got(p, t));
    return NULL;
  }
}

static dsl_ast *parse_postfix(parser *p) {
  dsl_ast *a = parse_primary(p);
  while (a) {
    const dsl_tok *t = peek(p);
    if (t->kind == T_LBRACK) {
      next(p);
      dsl_ast *ix = node(p, A_INDEX, t);
      ix->a = a;
      if (enter(p) || !(ix->b = parse_expr(p)) || expect(p, T_RBRACK, "after the index")) return NULL;
      p->depth--;
      a = ix;
    } else if (t->kind == T_DOT) {
      next(p);
      if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected a name after '.', got %s", got(p, peek(p))); return NULL; }
      dsl_ast *at_ = node(p, A_ATTR, t);
      at_->a = a;
      at_->name = next(p)->str;
      a = at_;
    } else break;
  }
  return a;
}

static dsl_ast *binary(parser *p, const dsl_tok *t, dsl_ast *l, dsl_ast *r) {
  if (!l || !r) return NULL;
  dsl_ast *a = node(p, A_BINARY, t);
  a->op = t->kind;
  a->a = l;
  a->b = r;
  return a;
}

static dsl_ast *parse_unary(parser *p) {
  if (at(p, T_MINUS) || at(p, T_NOT)) {
    const dsl_tok *t = next(p);
    if (enter(p)) return NULL;
    dsl_ast *a = node(p, A_UNARY, t);
    a->op = t->kind;
    a->a = t->kind == T_NOT ? parse_unary(p) : parse_unary(p);
    p->depth--;
    return a->a ? a : NULL;
  }
  return parse_postfix(p);
}

static dsl_ast *parse_term(parser *p) {
  dsl_ast *a = parse_unary(p);
  while (a && (at(p, T_STAR) || at(p, T_SLASH) || at(p, T_DSLASH) || at(p, T_PERCENT))) {
    const dsl_tok *t = next(p);
    a = binary(p, t, a, parse_unary(p));
  }
  return a;
}

static dsl_ast *parse_sum(parser *p) {
  dsl_ast *a = parse_term(p);
  while (a && (at(p, T_PLUS) || at(p, T_MINUS))) {
    const dsl_tok *t = next(p);
    a = binary(p, t, a, parse_term(p));
  }
  return a;
}

static dsl_ast *parse_cmp(parser *p) {
  dsl_ast *a = parse_sum(p);
  dsl_tok_kind k = peek(p)->kind;
  if (a && (k == T_EQ || k == T_NE || k == T_LT || k == T_LE || k == T_GT || k == T_GE)) {
    const dsl_tok *t = next(p);
    a = binary(p, t, a, parse_sum(p));
  }
  return a;
}

static dsl_ast *parse_and(parser *p) {
  dsl_ast *a = parse_cmp(p);
  while (a && at(p, T_AND)) {
    const dsl_tok *t = next(p);
    a = binary(p, t, a, parse_cmp(p));
  }
  return a;
}

static dsl_ast *parse_or(parser *p) {
  dsl_ast *a = parse_and(p);
  while (a && at(p, T_OR)) {
    const dsl_tok *t = next(p);
    a = binary(p, t, a, parse_and(p));
  }
  return a;
}

/* cond = or [ "if" or "else" cond ] */
static dsl_ast *parse_cond(parser *p) {
  dsl_ast *a = parse_or(p);
  if (!a || !at(p, T_IF)) return a;
  const dsl_tok *t = next(p);
  dsl_ast *c = node(p, A_COND, t);
  c->a = a;
  if (enter(p) || !(c->b = parse_or(p)) || expect(p, T_ELSE, "in 'a if condition else b'") || !(c->c = parse_cond(p)))
    return NULL;
  p->depth--;
  return c;
}

/* expr = cond { "->" cond }: a chain when there is an arrow. */
static dsl_ast *parse_expr(parser *p) {
  if (enter(p)) return NULL;
  const dsl_tok *t = peek(p);
  dsl_ast *a = parse_cond(p);
  if (a && at(p, T_ARROW)) {
    dsl_ast *ch = node(p, A_CHAIN, t);
    add_item(p, ch, a, NULL);
    while (at(p, T_ARROW)) {
      next(p);
      if (ch->nitems >= MAX_ITEMS) { fail_at(p, peek(p), "chain is longer than %d layers", MAX_ITEMS); return NULL; }
      dsl_ast *s = parse_cond(p);
      if (!s) return NULL;
      add_item(p, ch, s, NULL);
    }
    a = ch;
  }
  p->depth--;
  return a;
}

static int end_stmt(parser *p) {
  if (at(p, T_NEWLINE)) { next(p); return 0; }
  if (at(p, T_RBRACE) || at(p, T_EOF)) return 0;
  return fail_at(p, peek(p), "expected the end of the line, got %s", got(p, peek(p)));
}

static dsl_ast *parse_stmt(parser *p);

static dsl_ast *parse_if(parser *p) {
  const dsl_tok *t = next(p);
  dsl_ast *a = node(p, A_IF, t);
  if (!(a->a = parse_expr(p)) || !(a->b = parse_body(p))) return NULL;
  if (at(p, T_ELSE)) {
    next(p);
    if (at(p, T_IF)) {
      if (enter(p)) return NULL;
      dsl_ast *body = node(p, A_BODY, peek(p));
      dsl_ast *inner = parse_if(p);
      if (!inner) return NULL;
      p->depth--;
      add_item(p, body, inner, NULL);
      a->c = body;
    } else if (!(a->c = parse_body(p))) {
      return NULL;
    }
  }
  return a;
}

static dsl_ast *parse_loop(parser *p, const char *label) {
  const dsl_tok *t = next(p);
  dsl_ast *a = node(p, t->kind == T_FOR ? A_FOR : A_REPEAT, t);
  a->name2 = label;
  if (t->kind == T_FOR) {
    if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected a loop variable after 'for', got %s", got(p, peek(p))); return NULL; }
    a->name = next(p)->str;
    a->c = node(p, A_LIST, t); /* more variables: for t, c, n, s in table */
    while (at(p, T_COMMA)) {
      next(p);
      if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected a loop variable after ',', got %s", got(p, peek(p))); return NULL; }
      if (a->c->nitems >= 16) { fail_at(p, peek(p), "at most 17 loop variables"); return NULL; }
      const dsl_tok *vt = next(p);
      dsl_ast *v = node(p, A_NAME, vt);
      v->name = vt->str;
      add_item(p, a->c, v, NULL);
    }
    if (expect(p, T_IN, "after the loop variable")) return NULL;
  }
  if (!(a->a = parse_expr(p)) || !(a->b = parse_body(p))) return NULL;
  return a;
}

static dsl_ast *parse_stmt(parser *p) {
  const dsl_tok *t = peek(p);
  dsl_ast *a;
  switch (t->kind) {
  case T_INPUT:
    next(p);
    a = node(p, A_INPUT, t);
    if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected the input's name, got %s", got(p, peek(p))); return NULL; }
    a->name = next(p)->str;
    if (expect(p, T_COLON, "and a shape after the input's name (input x: [N, 3, 224, 224])")) return NULL;
    if (at(p, T_IDENT)) a->name2 = next(p)->str; /* element type */
    if (!at(p, T_LBRACK)) { fail_at(p, peek(p), "expected the input's shape in [ ], got %s", got(p, peek(p))); return NULL; }
    if (!(a->a = parse_primary(p))) return NULL;
    break;
  case T_OUTPUT:
    next(p);
    a = node(p, A_OUTPUT, t);
    if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected the output's name, got %s", got(p, peek(p))); return NULL; }
    a->name = next(p)->str;
    if (at(p, T_ASSIGN)) {
      next(p);
      if (!(a->a = parse_expr(p))) return NULL;
    }
    break;
  case T_SEED:
  case T_WEIGHTS:
    next(p);
    a = node(p, t->kind == T_SEED ? A_SEED : A_WEIGHTS, t);
    if (!(a->a = parse_expr(p))) return NULL;
    break;
  case T_IF: a = parse_if(p); if (!a) return NULL; break;
  case T_FOR: case T_REPEAT: a = parse_loop(p, NULL); if (!a) return NULL; break;
  case T_BLOCK: case T_NETWORK:
    fail_at(p, t, "%s definitions belong at the top level of the file", dsl_tok_name(t->kind));
    return NULL;
  default:
    if (t->kind == T_IDENT && peek2(p)->kind == T_COLON &&
        (p->t[p->pos + 2].kind == T_FOR || p->t[p->pos + 2].kind == T_REPEAT)) {
      next(p);
      next(p);
      a = parse_loop(p, t->str);
      if (!a) return NULL;
      break;
    }
    if (t->kind == T_IDENT && peek2(p)->kind == T_ASSIGN) {
      next(p);
      next(p);
      a = node(p, A_ASSIGN, t);
      a->name = t->str;
      if (!(a->a = parse_expr(p))) return NULL;
      break;
    }
    a = node(p, A_EXPR, t);
    if (!(a->a = parse_expr(p))) return NULL;
    if (at(p, T_ASSIGN)) {
      fail_at(p, peek(p), "only a name can be assigned to");
      return NULL;
    }
  }
  return end_stmt(p) ? NULL : a;
}

static dsl_ast *parse_body(parser *p) {
  const dsl_tok *t = peek(p);
  if (expect(p, T_LBRACE, "to open the body") || enter(p)) return NULL;
  dsl_ast *a = node(p, A_BODY, t);
  for (;;) {
    while (at(p, T_NEWLINE)) next(p);
    if (at(p, T_RBRACE)) break;
    if (at(p, T_EOF)) {
      fail_at(p, t, "this '{' is never closed");
      return NULL;
    }
    if (a->nitems >= MAX_ITEMS) { fail_at(p, peek(p), "more than %d statements in one body", MAX_ITEMS); return NULL; }
    dsl_ast *s = parse_stmt(p);
    if (!s) return NULL;
    add_item(p, a, s, NULL);
  }
  next(p);
  p->depth--;
  return a;
}

static dsl_ast *parse_blockdef(parser *p) {
  const dsl_tok *t = next(p);
  if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected the block's name, got %s", got(p, peek(p))); return NULL; }
  dsl_ast *a = node(p, A_BLOCKDEF, t);
  a->name = next(p)->str;
  a->c = node(p, A_LIST, t); /* parameters */
  if (at(p, T_LPAREN)) {
    next(p);
    while (!at(p, T_RPAREN)) {
      if (!at(p, T_IDENT)) { fail_at(p, peek(p), "expected a parameter name, got %s", got(p, peek(p))); return NULL; }
      const dsl_tok *pt = next(p);
      dsl_ast *prm = node(p, A_PARAM, pt);
      prm->name = pt->str;
      for (int i = 0; i < a->c->nitems; i++)
        if (!strcmp(a->c->items[i]->name, prm->name)) {
          fail_at(p, pt, "parameter '%s' is declared twice", prm->name);
          return NULL;
        }
      if (at(p, T_ASSIGN)) {
        next(p);
        if (!(prm->a = parse_expr(p))) return NULL;
      } else if (a->c->nitems && a->c->items[a->c->nitems - 1]->a) {
        fail_at(p, pt, "parameter '%s' needs a default: it follows a parameter that has one", prm->name);
        return NULL;
      }
      if (a->c->nitems >= 64) { fail_at(p, pt, "a block has at most 64 parameters"); return NULL; }
      add_item(p, a->c, prm, NULL);
      if (!at(p, T_COMMA)) break;
      next(p);
    }
    if (expect(p, T_RPAREN, "after the parameters")) return NULL;
  }
  if (!(a->b = parse_body(p))) return NULL;
  return a;
}

int dsl_parse(dsl_src *s, const dsl_tok *toks, int ntoks, dsl_program *out) {
  parser p = {.s = s, .t = toks, .n = ntoks};
  memset(out, 0, sizeof *out);
  dsl_ast globals = {0}, blocks = {0};
  for (;;) {
    while (at(&p, T_NEWLINE)) next(&p);
    const dsl_tok *t = peek(&p);
    if (t->kind == T_EOF) break;
    if (t->kind == T_BLOCK) {
      dsl_ast *b = parse_blockdef(&p);
      if (!b) return -1;
      for (int i = 0; i < blocks.nitems; i++)
        if (!strcmp(blocks.items[i]->name, b->name))
          return fail_at(&p, t, "block '%s' is already defined on line %d", b->name, blocks.items[i]->line);
      add_item(&p, &blocks, b, NULL);
    } else if (t->kind == T_NETWORK) {
      if (out->network) return fail_at(&p, t, "a file defines one network; the first is on line %d", out->network->line);
      next(&p);
      if (!at(&p, T_IDENT)) return fail_at(&p, peek(&p), "expected the network's name, got %s", got(&p, peek(&p)));
      dsl_ast *n = node(&p, A_NETWORK, t);
      n->name = next(&p)->str;
      if (!(n->b = parse_body(&p))) return -1;
      out->network = n;
    } else if (t->kind == T_IDENT && peek2(&p)->kind == T_ASSIGN) {
      dsl_ast *a = parse_stmt(&p);
      if (!a) return -1;
      add_item(&p, &globals, a, NULL);
    } else {
      return fail_at(&p, t, "expected 'block', 'network' or a constant (name = value) at the top level, got %s",
                     got(&p, t));
    }
  }
  if (!out->network) {
    kiln_loc loc = {.file = s->file, .node_index = -1};
    return kiln_error(s->d, &loc, "no 'network NAME { ... }' in this file");
  }
  out->globals = globals.items;
  out->nglobals = globals.nitems;
  out->blocks = blocks.items;
  out->nblocks = blocks.nitems;
  return 0;
}
