/* The elaborator: runs a parsed .kiln program and builds the graph.
 *
 * A network or block body is run statement by statement in a frame that
 * holds its variables, its input (`in`) and the current tensor (`_`): a line
 * that is just a chain (`conv(64, 3x3) -> batchnorm -> relu`) moves the
 * current tensor, `name = chain` names a side branch and leaves the current
 * tensor where it was.  A layer or block applied in a chain takes the value
 * flowing into it (the left of `->`, or the current tensor); a block call
 * runs the block's body in a new frame whose input is that flow, and the
 * block's result is its current tensor at the end.
 *
 * Layers get dotted names from where they are applied (`layer1.0.conv1`):
 * a label (`conv1: conv(...)`) or the kind plus a counter (`conv2`); a block
 * call or a labelled loop adds a path segment.  Values are plain data
 * (ints, floats, strings, lists, initializers) or tensors; compile-time
 * arithmetic is checked for overflow.  Limits (kiln_dsl_limits) bound
 * repetition, recursion, total work and parameter count, so every input
 * terminates quickly with either a graph or one located error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsl_internal.h"

typedef struct frame {
  kiln_strmap vars;        /* name -> dsl_val* */
  dsl_val current, in;
  const char *path;        /* dotted prefix of names made here ("" at the top) */
  int depth;               /* block calls nested */
  int is_network;
  int has_in;
} frame;

typedef struct ev {
  dsl_ctx *c;
  const dsl_program *prog;
  kiln_strmap blocks;      /* name -> dsl_ast (A_BLOCKDEF) */
  frame globals;
  int noutputs;
} ev;

static int eval(ev *E, frame *F, const dsl_ast *a, const dsl_val *flow, dsl_val *out);
static int exec_body(ev *E, frame *F, const dsl_ast *body);

/* ---- diagnostics and small helpers ---- */

static kiln_loc loc_of(dsl_ctx *c, const dsl_ast *a) {
  kiln_loc loc = {.file = c->src->file, .line = a ? a->line : 0, .col = a ? a->col : 0, .source = c->src->text,
                  .node_index = -1};
  return loc;
}

int dsl_fail(dsl_ctx *c, const kiln_loc *loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(c->d, loc, fmt, ap);
  va_end(ap);
  return -1;
}

static int fail(ev *E, const dsl_ast *a, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ev *E, const dsl_ast *a, const char *fmt, ...) {
  kiln_loc loc = loc_of(E->c, a);
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(E->c->d, &loc, fmt, ap);
  va_end(ap);
  return -1;
}

const char *dsl_kind_name(dsl_val_kind k) {
  switch (k) {
  case V_NONE: return "none";
  case V_BOOL: return "a boolean";
  case V_INT: return "an integer";
  case V_FLOAT: return "a number";
  case V_STR: return "a string";
  case V_LIST: return "a list";
  case V_TENSOR: return "a tensor";
  case V_INIT: return "an initializer";
  }
  return "?";
}

const char *dsl_val_str(dsl_ctx *c, const dsl_val *v) {
  kiln_arena *a = c->ar;
  switch (v->kind) {
  case V_NONE: return "none";
  case V_BOOL: return v->i ? "true" : "false";
  case V_INT: return kiln_arena_printf(a, "%lld", (long long)v->i);
  case V_FLOAT: return kiln_arena_printf(a, "%g", v->f);
  case V_STR: return kiln_arena_printf(a, "\"%.60s\"", v->s);
  case V_TENSOR: {
    char ty[128];
    kiln_value_type_str(c->g, v->t, ty, sizeof ty);
    return kiln_arena_printf(a, "tensor '%s' %s", v->t->name, ty);
  }
  case V_INIT: return "an initializer";
  case V_LIST: {
    const char *s = "[";
    for (int i = 0; i < v->n && i < 8; i++) s = kiln_arena_printf(a, "%s%s%s", s, i ? ", " : "", dsl_val_str(c, &v->items[i]));
    return kiln_arena_printf(a, "%s%s]", s, v->n > 8 ? ", ..." : "");
  }
  }
  return "?";
}

int dsl_edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 32 || lb > 32) return 99;
  int d[33][33];
  for (int i = 0; i <= la; i++) d[i][0] = i;
  for (int j = 0; j <= lb; j++) d[0][j] = j;
  for (int i = 1; i <= la; i++)
    for (int j = 1; j <= lb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

static int step(ev *E, const dsl_ast *a) {
  if (++E->c->steps > E->c->lim.max_steps)
    return fail(E, a, "elaboration takes more than %lld steps: is a repeat count or a recursion too large?",
                (long long)E->c->lim.max_steps);
  return 0;
}

static dsl_val *new_val(ev *E, const dsl_val *v) {
  dsl_val *p = kiln_arena_alloc(E->c->ar, sizeof *p);
  *p = *v;
  return p;
}

static const char *join(ev *E, const char *path, const char *seg) {
  return path[0] ? kiln_arena_printf(E->c->ar, "%s.%s", path, seg) : seg;
}

/* The next automatic name for `kind` under `path`: kind1, kind2, ... */
static const char *auto_name(ev *E, const char *path, const char *kind) {
  const char *key = kiln_arena_printf(E->c->ar, "%s|%s", path, kind);
  int *cnt = kiln_strmap_get(&E->c->counters, key);
  if (!cnt) {
    cnt = kiln_arena_alloc(E->c->ar, sizeof *cnt);
    kiln_strmap_put(&E->c->counters, key, cnt);
  }
  for (;;) {
    const char *name = join(E, path, kiln_arena_printf(E->c->ar, "%s%d", kind, ++*cnt));
    if (!kiln_strmap_get(&E->c->values, name)) return name;
  }
}

static int is_tensor_flow(const dsl_val *v) {
  if (v->kind == V_TENSOR) return 1;
  if (v->kind != V_LIST || v->n == 0) return 0;
  for (int i = 0; i < v->n; i++)
    if (v->items[i].kind != V_TENSOR) return 0;
  return 1;
}

/* ---- names: variables, constants, builtins ---- */

static const dsl_val *lookup_var(ev *E, frame *F, const char *name) {
  const dsl_val *v = kiln_strmap_get(&F->vars, name);
  if (!v && F != &E->globals) v = kiln_strmap_get(&E->globals.vars, name);
  return v;
}

/* Built-in constants: padding and resize modes, initializer names. */
static int builtin_const(const char *name, dsl_val *out) {
  static const char *strs[] = {"same", "valid", "nearest", "linear", "bilinear", "trilinear"};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if (!strcmp(name, strs[i])) {
      *out = (dsl_val){.kind = V_STR, .s = strs[i]};
      return 1;
    }
  return dsl_init_by_name(name, out) == 0;
}

static const char *suggest(ev *E, frame *F, const char *name) {
  const char *best = dsl_layer_suggest(name);
  int bd = best ? dsl_edit_distance(name, best) : 3;
  for (int i = 0; i < E->prog->nblocks; i++) {
    int d = dsl_edit_distance(name, E->prog->blocks[i]->name);
    if (d < bd) { bd = d; best = E->prog->blocks[i]->name; }
  }
  for (int i = 0; i < F->vars.cap; i++)
    if (F->vars.keys[i]) {
      int d = dsl_edit_distance(name, F->vars.keys[i]);
      if (d < bd) { bd = d; best = F->vars.keys[i]; }
    }
  return best && bd <= 2 ? kiln_arena_printf(E->c->ar, " (did you mean '%s'?)", best) : "";
}

/* ---- arithmetic ---- */

/* These helpers write *out on every path (a defined 0 / NULL on failure),
 * so no caller ever reads an indeterminate value. */
static int as_number(const dsl_val *v, double *out) {
  *out = v->kind == V_INT || v->kind == V_BOOL ? (double)v->i : v->kind == V_FLOAT ? v->f : 0;
  return v->kind == V_INT || v->kind == V_BOOL || v->kind == V_FLOAT;
}

static int truthy(ev *E, const dsl_ast *a, const dsl_val *v, int *out) {
  *out = 0;
  if (v->kind == V_BOOL || v->kind == V_INT) { *out = v->i != 0; return 0; }
  if (v->kind == V_NONE) { *out = 0; return 0; }
  return fail(E, a, "a condition must be true or false, got %s", dsl_val_str(E->c, v));
}

static int vals_equal(const dsl_val *x, const dsl_val *y) {
  double a, b;
  if (as_number(x, &a) && as_number(y, &b)) return a == b;
  if (x->kind != y->kind) return 0;
  switch (x->kind) {
  case V_NONE: return 1;
  case V_STR: return !strcmp(x->s, y->s);
  case V_TENSOR: return x->t == y->t;
  case V_INIT: return x->i == y->i && x->f == y->f;
  case V_LIST:
    if (x->n != y->n) return 0;
    for (int i = 0; i < x->n; i++)
      if (!vals_equal(&x->items[i], &y->items[i])) return 0;
    return 1;
  default: return 0;
  }
}

static int int_op(ev *E, const dsl_ast *a, int64_t x, int64_t y, int64_t *r) {
  int ovf = 0;
  switch (a->op) {
  case T_PLUS: ovf = __builtin_add_overflow(x, y, r); break;
  case T_MINUS: ovf = __builtin_sub_overflow(x, y, r); break;
  case T_STAR: ovf = __builtin_mul_overflow(x, y, r); break;
  case T_DSLASH:
  case T_PERCENT:
    if (y == 0) return fail(E, a, "division by zero");
    if (x == INT64_MIN && y == -1) { ovf = 1; break; }
    {
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; } /* floor, as in Python */
      *r = a->op == T_DSLASH ? q : m;
    }
    break;
  default: return fail(E, a, "internal error: bad integer operator");
  }
  if (ovf) return fail(E, a, "integer overflow in %lld %s %lld", (long long)x, dsl_tok_name(a->op), (long long)y);
  return 0;
}

static int binary(ev *E, frame *F, const dsl_ast *a, dsl_val *out) {
  dsl_val x, y;
  if (a->op == T_AND || a->op == T_OR) { /* short-circuit */
    int tx, ty;
    if (eval(E, F, a->a, NULL, &x) || truthy(E, a->a, &x, &tx)) return -1;
    if ((a->op == T_AND && !tx) || (a->op == T_OR && tx)) { *out = (dsl_val){.kind = V_BOOL, .i = tx}; return 0; }
    if (eval(E, F, a->b, NULL, &y) || truthy(E, a->b, &y, &ty)) return -1;
    *out = (dsl_val){.kind = V_BOOL, .i = ty};
    return 0;
  }
  if (eval(E, F, a->a, NULL, &x) || eval(E, F, a->b, NULL, &y)) return -1;
  double fx, fy;
  int nx = as_number(&x, &fx), ny = as_number(&y, &fy);
  switch (a->op) {
  case T_EQ: case T_NE:
    *out = (dsl_val){.kind = V_BOOL, .i = vals_equal(&x, &y) == (a->op == T_EQ)};
    return 0;
  case T_LT: case T_LE: case T_GT: case T_GE:
    if (!nx || !ny) break;
    *out = (dsl_val){.kind = V_BOOL,
                     .i = a->op == T_LT ? fx < fy : a->op == T_LE ? fx <= fy : a->op == T_GT ? fx > fy : fx >= fy};
    return 0;
  case T_PLUS:
    if (x.kind == V_STR && y.kind == V_STR) {
      *out = (dsl_val){.kind = V_STR, .s = kiln_arena_printf(E->c->ar, "%s%s", x.s, y.s)};
      return 0;
    }
    if (x.kind == V_LIST && y.kind == V_LIST) {
      if (x.n + y.n > (1 << 16)) return fail(E, a, "list is too long");
      dsl_val *items = kiln_arena_array(E->c->ar, (size_t)(x.n + y.n + 1), sizeof *items);
      if (x.n) memcpy(items, x.items, (size_t)x.n * sizeof *items);
      if (y.n) memcpy(items + x.n, y.items, (size_t)y.n * sizeof *items);
      *out = (dsl_val){.kind = V_LIST, .items = items, .n = x.n + y.n};
      return 0;
    }
    /* fall through */
  case T_MINUS: case T_STAR: case T_SLASH: case T_DSLASH: case T_PERCENT:
    if (!nx || !ny || x.kind == V_BOOL || y.kind == V_BOOL) break;
    if (x.kind == V_INT && y.kind == V_INT && a->op != T_SLASH) {
      out->kind = V_INT;
      return int_op(E, a, x.i, y.i, &out->i);
    }
    {
      double r;
      if ((a->op == T_SLASH || a->op == T_DSLASH || a->op == T_PERCENT) && fy == 0) return fail(E, a, "division by zero");
      switch (a->op) {
      case T_PLUS: r = fx + fy; break;
      case T_MINUS: r = fx - fy; break;
      case T_STAR: r = fx * fy; break;
      case T_SLASH: r = fx / fy; break;
      case T_DSLASH: r = floor(fx / fy); break;
      default: r = fx - fy * floor(fx / fy); break;
      }
      *out = (dsl_val){.kind = V_FLOAT, .f = r};
      return 0;
    }
  default: break;
  }
  return fail(E, a, "%s cannot combine %s and %s", dsl_tok_name(a->op), dsl_val_str(E->c, &x), dsl_val_str(E->c, &y));
}

/* ---- built-in functions ---- */

static int want_int(ev *E, const dsl_ast *a, const dsl_val *v, const char *what, int64_t *out) {
  *out = 0;
  if (v->kind != V_INT) return fail(E, a, "%s must be an integer, got %s", what, dsl_val_str(E->c, v));
  *out = v->i;
  return 0;
}

static int want_tensor(ev *E, const dsl_ast *a, const dsl_val *v, const char *what, kiln_value **out) {
  *out = NULL;
  if (v->kind != V_TENSOR) return fail(E, a, "%s needs a tensor, got %s", what, dsl_val_str(E->c, v));
  *out = v->t;
  return 0;
}

static int make_range(ev *E, const dsl_ast *a, int64_t lo, int64_t hi, int64_t st, dsl_val *out) {
  if (st == 0) return fail(E, a, "range() step must not be zero");
  int64_t n = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0) : (lo > hi ? (lo - hi - st - 1) / -st : 0);
  if (hi > lo && st > 0 && hi - lo < 0) n = INT64_MAX; /* overflowed span */
  if (n > E->c->lim.max_repeat)
    return fail(E, a, "range of %lld items is too long (at most %d)", (long long)n, E->c->lim.max_repeat);
  dsl_val *items = kiln_arena_array(E->c->ar, (size_t)n + 1, sizeof *items);
  for (int64_t i = 0; i < n; i++) items[i] = (dsl_val){.kind = V_INT, .i = lo + i * st};
  *out = (dsl_val){.kind = V_LIST, .items = items, .n = (int)n};
  return 0;
}

static int tensor_attr(ev *E, const dsl_ast *a, kiln_value *t, const char *what, dsl_val *out) {
  if (!strcmp(what, "channels")) {
    if (t->rank < 2) return fail(E, a, "'%s' has no channel dim (shape of rank %d)", t->name, t->rank);
    if (KILN_DIM_IS_SYM(t->dims[1])) return fail(E, a, "'%s' has a symbolic channel dim", t->name);
    *out = (dsl_val){.kind = V_INT, .i = t->dims[1]};
  } else if (!strcmp(what, "rank")) {
    *out = (dsl_val){.kind = V_INT, .i = t->rank};
  } else if (!strcmp(what, "shape")) {
    dsl_val *items = kiln_arena_array(E->c->ar, (size_t)t->rank + 1, sizeof *items);
    for (int i = 0; i < t->rank; i++)
      items[i] = KILN_DIM_IS_SYM(t->dims[i]) ? (dsl_val){.kind = V_STR, .s = E->c->g->syms[-t->dims[i] - 1]}
                                             : (dsl_val){.kind = V_INT, .i = t->dims[i]};
    *out = (dsl_val){.kind = V_LIST, .items = items, .n = t->rank};
  } else {
    return fail(E, a, "a tensor has .channels, .shape and .rank, not .%s", what);
  }
  return 0;
}

/* Returns 1 if `name` is a builtin function (result in out), 0 if not, -1 on error. */
static int call_builtin(ev *E, frame *F, const dsl_ast *a, dsl_val *out) {
  static const char *names[] = {"range", "len", "min", "max", "int", "float", "channels", "shape",
                                "normal", "uniform", "constant"};
  int which = -1;
  for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
    if (!strcmp(a->name, names[i])) which = i;
  if (which < 0) return 0;
  dsl_val args[8];
  int n = a->nitems;
  if (n > 8) return fail(E, a, "%s() takes at most 8 arguments", a->name);
  for (int i = 0; i < n; i++) {
    if (a->keys[i]) return fail(E, a->items[i], "%s() takes no keyword arguments", a->name);
    if (eval(E, F, a->items[i], NULL, &args[i])) return -1;
  }
  const dsl_ast *at0 = n ? a->items[0] : a;
  int64_t x[3] = {0, 0, 1};
  kiln_value *t;
  double f;
  switch (which) {
  case 0: /* range */
    if (n < 1 || n > 3) return fail(E, a, "range() takes 1 to 3 integers");
    for (int i = 0; i < n; i++)
      if (want_int(E, a->items[i], &args[i], "range()'s argument", &x[i])) return -1;
    if (n == 1) { x[1] = x[0]; x[0] = 0; }
    return make_range(E, a, x[0], x[1], x[2], out) ? -1 : 1;
  case 1: /* len */
    if (n != 1) return fail(E, a, "len() takes one argument");
    if (args[0].kind == V_LIST) *out = (dsl_val){.kind = V_INT, .i = args[0].n};
    else if (args[0].kind == V_STR) *out = (dsl_val){.kind = V_INT, .i = (int64_t)strlen(args[0].s)};
    else return fail(E, at0, "len() needs a list, got %s", dsl_val_str(E->c, &args[0]));
    return 1;
  case 2: case 3: { /* min, max */
    const dsl_val *xs = args;
    int m = n;
    if (n == 1 && args[0].kind == V_LIST) { xs = args[0].items; m = args[0].n; }
    if (m < 1) return fail(E, a, "%s() of nothing", a->name);
    int best = 0;
    for (int i = 0; i < m; i++) {
      double v, b;
      if (!as_number(&xs[i], &v)) return fail(E, a, "%s() needs numbers, got %s", a->name, dsl_val_str(E->c, &xs[i]));
      as_number(&xs[best], &b);
      if (which == 2 ? v < b : v > b) best = i;
    }
    *out = xs[best];
    return 1;
  }
  case 4: case 5: /* int, float */
    if (n != 1 || !as_number(&args[0], &f)) return fail(E, a, "%s() takes one number", a->name);
    if (which == 5) { *out = (dsl_val){.kind = V_FLOAT, .f = f}; return 1; }
    if (!(f > -9.2e18 && f < 9.2e18)) return fail(E, a, "int() of %g is out of range", f);
    *out = (dsl_val){.kind = V_INT, .i = (int64_t)f};
    return 1;
  case 6: case 7: /* channels, shape */
    if (n != 1 || want_tensor(E, at0, &args[0], kiln_arena_printf(E->c->ar, "%s()", a->name), &t)) return n != 1 ? fail(E, a, "%s() takes one tensor", a->name) : -1;
    return tensor_attr(E, a, t, which == 6 ? "channels" : "shape", out) ? -1 : 1;
  default: /* normal(std), uniform(limit), constant(value) */
    if (n != 1 || !as_number(&args[0], &f) || !isfinite(f))
      return fail(E, a, "%s() takes one number", a->name);
    if (which != 10 && f < 0) return fail(E, at0, "%s() needs a non-negative scale, got %g", a->name, f);
    *out = (dsl_val){.kind = V_INIT, .i = which == 8 ? I_NORMAL : which == 9 ? I_UNIFORM : I_CONSTANT, .f = f};
    return 1;
  }
}

/* ---- applying layers and blocks ---- */

/* Splits a layer's parameter spec "out kernel stride=1" into names and default texts. */
typedef struct spec { int n; const char *name[24]; const char *def[24]; } spec;

static void parse_spec(kiln_arena *ar, const char *s, spec *sp) {
  sp->n = 0;
  while (*s && sp->n < 24) {
    while (*s == ' ') s++;
    if (!*s) break;
    const char *e = s;
    while (*e && *e != ' ') e++;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    sp->name[sp->n] = kiln_arena_strndup(ar, s, (size_t)((eq ? eq : e) - s));
    sp->def[sp->n] = eq ? kiln_arena_strndup(ar, eq + 1, (size_t)(e - eq - 1)) : NULL;
    sp->n++;
    s = e;
  }
}

/* A default written in a spec: a number, true/false/none, or a builtin constant. */
static dsl_val spec_default(const char *text) {
  dsl_val v = {.kind = V_NONE};
  char *end;
  if (!text || !strcmp(text, "none")) return v;
  if (!strcmp(text, "true") || !strcmp(text, "false")) return (dsl_val){.kind = V_BOOL, .i = text[0] == 't'};
  long long i = strtoll(text, &end, 10);
  if (!*end) return (dsl_val){.kind = V_INT, .i = i};
  double f = strtod(text, &end);
  if (!*end) return (dsl_val){.kind = V_FLOAT, .f = f};
  if (builtin_const(text, &v)) return v;
  return (dsl_val){.kind = V_STR, .s = text};
}

static int flow_tensors(ev *E, const dsl_ast *a, const char *what, const dsl_val *flow, kiln_value ***ins, int *n) {
  if (!flow || flow->kind == V_NONE)
    return fail(E, a, "%s has no input here: nothing flows into it (declare an input, or start the chain from a tensor)",
                what);
  if (!is_tensor_flow(flow)) return fail(E, a, "%s needs a tensor flowing into it, got %s", what, dsl_val_str(E->c, flow));
  if (flow->kind == V_TENSOR) {
    *ins = kiln_arena_alloc(E->c->ar, sizeof **ins);
    (*ins)[0] = flow->t;
    *n = 1;
  } else {
    *ins = kiln_arena_array(E->c->ar, (size_t)flow->n, sizeof **ins);
    for (int i = 0; i < flow->n; i++) (*ins)[i] = flow->items[i].t;
    *n = flow->n;
  }
  return 0;
}

static int claim_name(ev *E, const dsl_ast *a, const char *name) {
  if (kiln_strmap_get(&E->c->values, name))
    return fail(E, a, "the name '%s' is already taken; give this layer another label (in a loop, label the loop: "
                "stage: repeat 2 { ... })", name);
  return 0;
}

static int apply_layer(ev *E, frame *F, const dsl_layer_def *def, const dsl_ast *call, const char *label,
                       const dsl_val *flow, dsl_val *out) {
  dsl_ctx *c = E->c;
  spec sp;
  parse_spec(c->ar, def->params, &sp);
  dsl_layer L = {.c = c, .def = def};
  L.args = kiln_arena_array(c->ar, (size_t)sp.n + 1, sizeof *L.args);
  L.arg_at = kiln_arena_array(c->ar, (size_t)sp.n + 1, sizeof *L.arg_at);
  int given[24] = {0};
  int npos = 0, nargs = call->kind == A_CALL ? call->nitems : 0;
  L.extra = kiln_arena_array(c->ar, (size_t)nargs + 1, sizeof *L.extra);
  for (int i = 0; i < nargs; i++) {
    const dsl_ast *arg = call->items[i];
    const char *key = call->keys[i];
    int k = -1;
    if (key) {
      for (int j = 0; j < sp.n; j++)
        if (!strcmp(sp.name[j], key)) k = j;
      if (k < 0) {
        const char *best = NULL;
        int bd = 3;
        for (int j = 0; j < sp.n; j++) {
          int dd = dsl_edit_distance(key, sp.name[j]);
          if (dd < bd) { bd = dd; best = sp.name[j]; }
        }
        return fail(E, arg, "%s has no parameter '%s'%s", def->name, key,
                    best ? kiln_arena_printf(c->ar, " (did you mean '%s'?)", best) : "");
      }
    } else if (def->variadic) {
      if (eval(E, F, arg, NULL, &L.extra[L.nextra])) return -1;
      if (L.extra[L.nextra].kind != V_TENSOR)
        return fail(E, arg, "%s combines tensors, got %s", def->name, dsl_val_str(c, &L.extra[L.nextra]));
      L.nextra++;
      continue;
    } else {
      if (npos >= sp.n) return fail(E, arg, "%s takes at most %d arguments", def->name, sp.n);
      k = npos++;
    }
    if (given[k]) return fail(E, arg, "%s's '%s' is given twice", def->name, sp.name[k]);
    given[k] = 1;
    if (eval(E, F, arg, NULL, &L.args[k])) return -1;
    L.arg_at[k] = arg;
  }
  for (int j = 0; j < sp.n; j++) {
    if (given[j]) continue;
    if (!sp.def[j]) return fail(E, call, "%s needs '%s' (%s)", def->name, sp.name[j], def->summary);
    L.args[j] = spec_default(sp.def[j]);
  }
  if (flow_tensors(E, call, def->name, flow, &L.in, &L.nin)) return -1;
  L.name = label ? join(E, F->path, label) : auto_name(E, F->path, def->name);
  if (claim_name(E, call, L.name)) return -1;
  L.loc = loc_of(c, call);
  L.loc.op_type = def->name;
  L.loc.node_name = kiln_arena_strdup(&c->g->arena, L.name);
  L.loc.source = c->src->text;
  L.loc.file = c->g->file;
  L.pnames = sp.name; /* so dsl_layers.c looks arguments up by name */
  L.npar = sp.n;
  return def->build(&L, out);
}

static int apply_block(ev *E, frame *F, const dsl_ast *def, const dsl_ast *call, const char *label,
                       const dsl_val *flow, dsl_val *out) {
  dsl_ctx *c = E->c;
  if (F->depth + 1 > c->lim.max_depth)
    return fail(E, call, "block '%s' is nested more than %d calls deep: does its recursion reach a base case?",
                def->name, c->lim.max_depth);
  frame B = {.depth = F->depth + 1, .has_in = 1};
  kiln_strmap_init(&B.vars, c->ar);
  const dsl_ast *params = def->c;
  int nargs = call->kind == A_CALL ? call->nitems : 0, npos = 0;
  const dsl_ast *bound[64] = {0};
  dsl_val vals[64];
  for (int i = 0; i < nargs; i++) {
    const dsl_ast *arg = call->items[i];
    int k = -1;
    if (call->keys[i]) {
      for (int j = 0; j < params->nitems; j++)
        if (!strcmp(params->items[j]->name, call->keys[i])) k = j;
      if (k < 0) {
        const char *best = NULL;
        int bd = 3;
        for (int j = 0; j < params->nitems; j++) {
          int dd = dsl_edit_distance(call->keys[i], params->items[j]->name);
          if (dd < bd) { bd = dd; best = params->items[j]->name; }
        }
        return fail(E, arg, "block '%s' has no parameter '%s'%s", def->name, call->keys[i],
                    best ? kiln_arena_printf(c->ar, " (did you mean '%s'?)", best) : "");
      }
    } else {
      if (npos >= params->nitems)
        return fail(E, arg, "block '%s' takes %d argument%s", def->name, params->nitems, params->nitems == 1 ? "" : "s");
      k = npos++;
    }
    if (bound[k]) return fail(E, arg, "block '%s''s '%s' is given twice", def->name, params->items[k]->name);
    if (eval(E, F, arg, NULL, &vals[k])) return -1;
    bound[k] = arg;
  }
  if (flow) B.in = B.current = *flow;
  B.path = label ? join(E, F->path, label) : auto_name(E, F->path, def->name);
  if (claim_name(E, call, B.path)) return -1;
  kiln_strmap_put(&c->values, B.path, (void *)def); /* the path is taken, as a name */
  /* Parameters in order; defaults see the parameters before them. */
  for (int j = 0; j < params->nitems; j++) {
    const dsl_ast *prm = params->items[j];
    if (!bound[j]) {
      if (!prm->a) return fail(E, call, "block '%s' needs '%s'", def->name, prm->name);
      if (eval(E, &B, prm->a, NULL, &vals[j])) return -1;
    }
    kiln_strmap_put(&B.vars, prm->name, new_val(E, &vals[j]));
  }
  if (exec_body(E, &B, def->b)) return -1;
  *out = B.current;
  return 0;
}

/* Applies the layer or block `call` (A_CALL or A_NAME) to flow. */
static int apply(ev *E, frame *F, const dsl_ast *call, const char *label, const dsl_val *flow, dsl_val *out) {
  if (step(E, call)) return -1;
  const dsl_ast *blk = kiln_strmap_get(&E->blocks, call->name);
  if (blk) return apply_block(E, F, blk, call, label, flow, out);
  const dsl_layer_def *def = dsl_layer_find(call->name);
  if (def) return apply_layer(E, F, def, call, label, flow, out);
  return fail(E, call, "unknown layer or block '%s'%s", call->name, suggest(E, F, call->name));
}

/* ---- expressions ---- */

static int eval_items(ev *E, frame *F, const dsl_ast *a, dsl_val *out) {
  dsl_val *items = kiln_arena_array(E->c->ar, (size_t)a->nitems + 1, sizeof *items);
  for (int i = 0; i < a->nitems; i++)
    if (eval(E, F, a->items[i], NULL, &items[i])) return -1;
  *out = (dsl_val){.kind = V_LIST, .items = items, .n = a->nitems};
  return 0;
}

static int eval(ev *E, frame *F, const dsl_ast *a, const dsl_val *flow, dsl_val *out) {
  const dsl_val *v;
  if (!flow) flow = &F->current;
  switch (a->kind) {
  case A_INT: *out = (dsl_val){.kind = V_INT, .i = a->ival}; return 0;
  case A_FLOAT: *out = (dsl_val){.kind = V_FLOAT, .f = a->fval}; return 0;
  case A_STRING: *out = (dsl_val){.kind = V_STR, .s = a->name}; return 0;
  case A_BOOL: *out = (dsl_val){.kind = V_BOOL, .i = a->ival}; return 0;
  case A_NONE: *out = (dsl_val){.kind = V_NONE}; return 0;
  case A_DIMS: {
    dsl_val *items = kiln_arena_array(E->c->ar, (size_t)a->ival, sizeof *items);
    for (int i = 0; i < a->ival; i++) items[i] = (dsl_val){.kind = V_INT, .i = a->dims[i]};
    *out = (dsl_val){.kind = V_LIST, .items = items, .n = (int)a->ival};
    return 0;
  }
  case A_CURRENT:
    if (F->current.kind == V_NONE) return fail(E, a, "'_' (the current tensor) is not set yet here");
    *out = F->current;
    return 0;
  case A_IN:
    if (!F->has_in) return fail(E, a, "'in' is a block's input; in the network, use the inputs' names");
    if (F->in.kind == V_NONE) return fail(E, a, "this block was called with nothing flowing into it");
    *out = F->in;
    return 0;
  case A_LIST: case A_TUPLE: return eval_items(E, F, a, out);
  case A_UNARY: {
    dsl_val x;
    if (eval(E, F, a->a, NULL, &x)) return -1;
    if (a->op == T_NOT) {
      int t;
      if (truthy(E, a->a, &x, &t)) return -1;
      *out = (dsl_val){.kind = V_BOOL, .i = !t};
      return 0;
    }
    if (x.kind == V_INT) {
      if (x.i == INT64_MIN) return fail(E, a, "integer overflow");
      *out = (dsl_val){.kind = V_INT, .i = -x.i};
    } else if (x.kind == V_FLOAT) *out = (dsl_val){.kind = V_FLOAT, .f = -x.f};
    else return fail(E, a, "cannot negate %s", dsl_val_str(E->c, &x));
    return 0;
  }
  case A_BINARY: return binary(E, F, a, out);
  case A_INDEX: {
    dsl_val x, ix;
    if (eval(E, F, a->a, NULL, &x) || eval(E, F, a->b, NULL, &ix)) return -1;
    if (x.kind != V_LIST) return fail(E, a, "only lists can be indexed, not %s", dsl_val_str(E->c, &x));
    if (ix.kind != V_INT) return fail(E, a->b, "an index must be an integer, got %s", dsl_val_str(E->c, &ix));
    int64_t i = ix.i < 0 ? ix.i + x.n : ix.i;
    if (i < 0 || i >= x.n) return fail(E, a->b, "index %lld is out of range for a list of %d", (long long)ix.i, x.n);
    *out = x.items[i];
    return 0;
  }
  case A_ATTR: {
    dsl_val x;
    if (eval(E, F, a->a, NULL, &x)) return -1;
    if (x.kind == V_LIST && !strcmp(a->name, "len")) { *out = (dsl_val){.kind = V_INT, .i = x.n}; return 0; }
    if (x.kind != V_TENSOR) return fail(E, a, "%s has no .%s", dsl_val_str(E->c, &x), a->name);
    return tensor_attr(E, a, x.t, a->name, out);
  }
  case A_NAME:
    if ((v = lookup_var(E, F, a->name))) { *out = *v; return 0; }
    if (builtin_const(a->name, out)) return 0;
    if (kiln_strmap_get(&E->blocks, a->name) || dsl_layer_find(a->name)) return apply(E, F, a, NULL, flow, out);
    return fail(E, a, "unknown name '%s'%s", a->name, suggest(E, F, a->name));
  case A_CALL: {
    if (lookup_var(E, F, a->name)) return fail(E, a, "'%s' is a value, not a layer or block", a->name);
    int rc = call_builtin(E, F, a, out);
    if (rc) return rc < 0 ? -1 : 0;
    return apply(E, F, a, NULL, flow, out);
  }
  case A_COND: {
    dsl_val c;
    int t;
    if (eval(E, F, a->b, NULL, &c) || truthy(E, a->b, &c, &t)) return -1;
    return eval(E, F, t ? a->a : a->c, flow, out);
  }
  case A_LABEL:
    if (a->a->kind == A_NAME && lookup_var(E, F, a->a->name))
      return fail(E, a, "a label names a layer or block, and '%s' is a value", a->a->name);
    return apply(E, F, a->a, a->name, flow, out);
  case A_CHAIN: {
    dsl_val x;
    if (eval(E, F, a->items[0], flow, &x)) return -1;
    for (int i = 1; i < a->nitems; i++) {
      const dsl_ast *s = a->items[i];
      const dsl_ast *call = s->kind == A_LABEL ? s->a : s;
      if (call->kind != A_CALL && call->kind != A_NAME)
        return fail(E, s, "after '->' comes a layer or a block");
      dsl_val tmp;
      if (lookup_var(E, F, call->name) || (call->kind == A_NAME && builtin_const(call->name, &tmp)))
        return fail(E, s, "'%s' is a value, not a layer or block; a chain can only start from a value", call->name);
      if (call->kind == A_CALL && (!strcmp(call->name, "range") || !strcmp(call->name, "len")))
        return fail(E, s, "'%s' is a function, not a layer", call->name);
      if (apply(E, F, call, s->kind == A_LABEL ? s->name : NULL, &x, &x)) return -1;
    }
    *out = x;
    return 0;
  }
  default: return fail(E, a, "internal error: not an expression");
  }
}

/* ---- statements ---- */

static int need_network(ev *E, frame *F, const dsl_ast *a, const char *what) {
  if (!F->is_network) return fail(E, a, "'%s' belongs in the network body, not in a block", what);
  return 0;
}

static int stmt_input(ev *E, frame *F, const dsl_ast *a) {
  dsl_ctx *c = E->c;
  if (need_network(E, F, a, "input")) return -1;
  if (a->name2 && strcmp(a->name2, "f32"))
    return fail(E, a, "input '%s': element type '%s' is not supported (kiln's DSL makes f32 networks)", a->name, a->name2);
  const dsl_ast *shape = a->a;
  if (shape->nitems < 1 || shape->nitems > KILN_MAX_RANK)
    return fail(E, shape, "an input has 1 to %d dims, got %d", KILN_MAX_RANK, shape->nitems);
  if (claim_name(E, a, a->name)) return -1;
  kiln_value *v = kiln_value_new(c->g, a->name, KILN_VALUE_INPUT);
  v->dtype = KILN_DT_F32;
  v->rank = shape->nitems;
  for (int i = 0; i < shape->nitems; i++) {
    const dsl_ast *e = shape->items[i];
    dsl_val d;
    if (e->kind == A_NAME && !lookup_var(E, F, e->name)) { /* a symbolic dim, e.g. N */
      v->dims[i] = kiln_graph_sym(c->g, e->name);
      continue;
    }
    if (eval(E, F, e, NULL, &d)) return -1;
    if (d.kind != V_INT || d.i < 1 || d.i > ((int64_t)1 << 31))
      return fail(E, e, "a dim must be a positive integer (or a name such as N), got %s", dsl_val_str(c, &d));
    v->dims[i] = d.i;
  }
  kiln_graph_add_input(c->g, v);
  kiln_strmap_put(&c->values, v->name, v);
  dsl_val t = {.kind = V_TENSOR, .t = v};
  kiln_strmap_put(&F->vars, a->name, new_val(E, &t));
  if (F->current.kind == V_NONE) F->current = t;
  return 0;
}

static int stmt_output(ev *E, frame *F, const dsl_ast *a) {
  dsl_ctx *c = E->c;
  dsl_val v = F->current;
  if (need_network(E, F, a, "output")) return -1;
  if (a->a && eval(E, F, a->a, NULL, &v)) return -1;
  if (v.kind != V_TENSOR) return fail(E, a, "output '%s' needs a tensor, got %s", a->name, dsl_val_str(c, &v));
  kiln_value *t = v.t;
  kiln_value *other = kiln_strmap_get(&c->values, a->name);
  if (t->producer && !t->is_output && (!other || other == t)) {
    t->name = kiln_arena_strdup(&c->g->arena, a->name); /* the layer's output, renamed */
  } else { /* an input, or a tensor already output: an Identity gives it a second name */
    if (other) return fail(E, a, "the name '%s' is already taken", a->name);
    kiln_node *n = kiln_node_new(c->g, KILN_OP_IDENTITY, a->name, 1, 1);
    n->loc = loc_of(c, a);
    n->loc.file = c->g->file;
    n->loc.op_type = "output";
    n->loc.node_name = n->name;
    kiln_node_set_input(n, 0, t);
    kiln_value *o = kiln_value_new(c->g, a->name, KILN_VALUE_ACTIVATION);
    kiln_node_set_output(n, 0, o);
    kiln_shape_ctx sc = {c->g, c->d, 1 << 22};
    if (kiln_op_get(n->op)->shape(&sc, n)) return -1;
    t = o;
  }
  kiln_strmap_put(&c->values, t->name, t);
  kiln_graph_add_output(c->g, t);
  E->noutputs++;
  return 0;
}

static int stmt_loop(ev *E, frame *F, const dsl_ast *a) {
  dsl_val it;
  if (eval(E, F, a->a, NULL, &it)) return -1;
  int64_t n;
  if (a->kind == A_REPEAT) {
    if (it.kind != V_INT) return fail(E, a->a, "repeat needs a count, got %s", dsl_val_str(E->c, &it));
    n = it.i;
    if (n < 0) return fail(E, a->a, "repeat count %lld is negative", (long long)n);
  } else {
    if (it.kind != V_LIST) return fail(E, a->a, "for ... in needs a list (or range(n)), got %s", dsl_val_str(E->c, &it));
    n = it.n;
  }
  if (n > E->c->lim.max_repeat)
    return fail(E, a->a, "repeat count %lld is too large (at most %d)", (long long)n, E->c->lim.max_repeat);
  const char *saved = F->path;
  const char *base = a->name2 ? join(E, F->path, a->name2) : NULL;
  if (base && claim_name(E, a, base)) return -1;
  if (base) kiln_strmap_put(&E->c->values, base, (void *)a);
  for (int64_t i = 0; i < n; i++) {
    if (a->kind == A_FOR && a->c->nitems == 0) kiln_strmap_put(&F->vars, a->name, new_val(E, &it.items[i]));
    if (a->kind == A_FOR && a->c->nitems) { /* unpack a row: for t, c, n, s in table */
      const dsl_val *row = &it.items[i];
      if (row->kind != V_LIST || row->n != a->c->nitems + 1)
        return fail(E, a, "for with %d variables needs rows of %d items, got %s", a->c->nitems + 1, a->c->nitems + 1,
                    dsl_val_str(E->c, row));
      kiln_strmap_put(&F->vars, a->name, new_val(E, &row->items[0]));
      for (int k = 0; k < a->c->nitems; k++) kiln_strmap_put(&F->vars, a->c->items[k]->name, new_val(E, &row->items[k + 1]));
    }
    if (base) F->path = kiln_arena_printf(E->c->ar, "%s.%lld", base, (long long)i);
    int rc = exec_body(E, F, a->b);
    F->path = saved;
    if (rc) return -1;
  }
  return 0;
}

static int stmt(ev *E, frame *F, const dsl_ast *a) {
  dsl_ctx *c = E->c;
  dsl_val v;
  if (step(E, a)) return -1;
  switch (a->kind) {
  case A_EXPR:
    if (eval(E, F, a->a, NULL, &v)) return -1;
    if (!is_tensor_flow(&v))
      return fail(E, a, "this line computes %s and does nothing with it", dsl_val_str(c, &v));
    F->current = v;
    return 0;
  case A_ASSIGN:
    if (!strcmp(a->name, "_"))
      return fail(E, a, "'_' is the current tensor: to move it, write the chain on a line of its own");
    if (eval(E, F, a->a, NULL, &v)) return -1;
    kiln_strmap_put(&F->vars, a->name, new_val(E, &v));
    return 0;
  case A_IF: {
    int t;
    if (eval(E, F, a->a, NULL, &v) || truthy(E, a->a, &v, &t)) return -1;
    if (t) return exec_body(E, F, a->b);
    return a->c ? exec_body(E, F, a->c) : 0;
  }
  case A_FOR: case A_REPEAT: return stmt_loop(E, F, a);
  case A_INPUT: return stmt_input(E, F, a);
  case A_OUTPUT: return stmt_output(E, F, a);
  case A_SEED:
    if (need_network(E, F, a, "seed") || eval(E, F, a->a, NULL, &v)) return -1;
    if (v.kind != V_INT || v.i < 0) return fail(E, a->a, "seed must be a non-negative integer, got %s", dsl_val_str(c, &v));
    c->seed = (uint64_t)v.i;
    return 0;
  case A_WEIGHTS: {
    if (need_network(E, F, a, "weights") || eval(E, F, a->a, NULL, &v)) return -1;
    if (v.kind != V_STR) return fail(E, a->a, "weights needs a file name in quotes, got %s", dsl_val_str(c, &v));
    if (c->weights) return fail(E, a, "the network already reads weights from '%s'", c->weights_name);
    kiln_loc loc = loc_of(c, a->a);
    if (!c->base_dir) return fail(E, a->a, "weights files cannot be read here (loaded from memory)");
    c->weights = dsl_weights_open(c->base_dir, v.s, &loc, c->d);
    c->weights_name = v.s;
    return c->weights ? 0 : -1;
  }
  default: return fail(E, a, "internal error: not a statement");
  }
}

static int exec_body(ev *E, frame *F, const dsl_ast *body) {
  for (int i = 0; i < body->nitems; i++)
    if (stmt(E, F, body->items[i])) return -1;
  return 0;
}

/* Globals, then the network body; the last tensor is the output when the
 * network names none. */
int dsl_elaborate(dsl_ctx *c, const dsl_program *prog) {
  ev E = {.c = c, .prog = prog};
  kiln_strmap_init(&E.blocks, c->ar);
  kiln_strmap_init(&E.globals.vars, c->ar);
  for (int i = 0; i < prog->nblocks; i++) {
    const dsl_ast *b = prog->blocks[i];
    if (dsl_layer_find(b->name))
      return fail(&E, b, "block '%s' has the name of a built-in layer; choose another", b->name);
    kiln_strmap_put(&E.blocks, b->name, (void *)b);
  }
  for (int i = 0; i < prog->nglobals; i++)
    if (stmt(&E, &E.globals, prog->globals[i])) return -1;
  frame N = {.path = "", .is_network = 1};
  E.globals.path = "";
  kiln_strmap_init(&N.vars, c->ar);
  if (exec_body(&E, &N, prog->network->b)) return -1;
  if (c->g->ninputs == 0) return fail(&E, prog->network, "network '%s' declares no input (input x: [N, 3, 224, 224])",
                                      prog->network->name);
  if (E.noutputs == 0) { /* the last tensor is the output */
    if (N.current.kind != V_TENSOR) return fail(&E, prog->network, "network '%s' ends without a tensor to output", prog->network->name);
    if (!N.current.t->producer) return fail(&E, prog->network, "network '%s' has no layers", prog->network->name);
    kiln_graph_add_output(c->g, N.current.t);
  }
  return 0;
}
