/* plan_inplace: may kernel k write buffer `out` over buffer `in` (same
 * bytes), when k is in's last reader and out's first writer?  The memory
 * plan asks, to run elementwise kernels in place (BatchNormalization ->
 * Relu chains, where the copy would otherwise double the memory).
 *
 * Yes only when provably nothing changes: k stores to `out` in exactly one
 * statement, reached through loops only (no conditionals), whose index is
 * an injective affine function of every enclosing loop variable (mixed
 * radix: sorted by coefficient, each at least the span of the ones below
 * it), k never loads `out`, and every load of `in` is inside that store's
 * value at the very same index.  Then each element of `in` is read, in the
 * one iteration that writes that element of `out`, before the write.
 * A kernel whose lowering vouches that it stores each element of `out`
 * once (kiln_kernel.stores_once: a register-tiled convolution's tiles,
 * unrolled and under IFs) may store it in many statements: each load of
 * `in` must still sit in a store's value at that store's own index (the
 * same expression), so the one store of an element reads it first. */
#include "lower.h"

#include <stdlib.h>
#include <string.h>

enum { MAXV = 64 };

/* c0 + sum coef[v] * var_v over loop vars (v < MAXV). */
typedef struct affine { int64_t c0, coef[MAXV]; } affine;

static const kiln_ls *decl_of(const kiln_ls *s, int local) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_DECL && s->var == local) return s;
    const kiln_ls *r = decl_of(s->body, local);
    if (!r) r = decl_of(s->orelse, local);
    if (r) return r;
  }
  return NULL;
}

/* e as an affine form; 0 when it is not one (or overflows). */
static int to_affine(const kiln_kernel *k, const kiln_lx *e, affine *f, int depth) {
  memset(f, 0, sizeof *f);
  if (!e || depth > 64 || e->dtype != KILN_DT_I64) return 0;
  switch (e->kind) {
  case KILN_LX_CONST: f->c0 = e->i; return 1;
  case KILN_LX_INDEX:
    if (e->var < 0 || e->var >= MAXV) return 0;
    f->coef[e->var] = 1;
    return 1;
  case KILN_LX_LOCAL: { /* a hoisted index: declared once, never assigned */
    if (!k->local_index || !k->local_index[e->var]) return 0;
    const kiln_ls *d = decl_of(k->body, e->var);
    return d && to_affine(k, d->value, f, depth + 1);
  }
  case KILN_LX_BIN: {
    affine a, b;
    if (!to_affine(k, e->a, &a, depth + 1) || !to_affine(k, e->b, &b, depth + 1)) return 0;
    if (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB) {
      int sub = e->op == KILN_BIN_SUB;
      if (__builtin_add_overflow(a.c0, sub ? -b.c0 : b.c0, &f->c0)) return 0;
      for (int v = 0; v < MAXV; v++)
        if (__builtin_add_overflow(a.coef[v], sub ? -b.coef[v] : b.coef[v], &f->coef[v])) return 0;
      return 1;
    }
    if (e->op == KILN_BIN_MUL) {
      const affine *x = &a, *c = &b;
      int bconst = 1, aconst = 1;
      for (int v = 0; v < MAXV; v++) bconst &= b.coef[v] == 0, aconst &= a.coef[v] == 0;
      if (!bconst && !aconst) return 0;
      if (!bconst) { x = &b; c = &a; }
      if (__builtin_mul_overflow(x->c0, c->c0, &f->c0)) return 0;
      for (int v = 0; v < MAXV; v++)
        if (__builtin_mul_overflow(x->coef[v], c->c0, &f->coef[v])) return 0;
      return 1;
    }
    return 0;
  }
  default: return 0;
  }
}

typedef struct scan {
  const kiln_kernel *k;
  const kiln_buf *out, *in;
  const kiln_ls *store;     /* the one store to out */
  int nstores, bad;
  int trusted;              /* k->stores_once == out: many stores, each element once */
  int64_t ext[MAXV];        /* extents of the loops enclosing the store */
  int open[MAXV], nopen;
} scan;

/* Loads of `in` outside the store's value, or of `out` anywhere: bad. */
static void loads(scan *S, const kiln_lx *e) {
  if (!e) return;
  if (e->kind == KILN_LX_LOAD && (e->buf == S->in || e->buf == S->out)) S->bad = 1;
  loads(S, e->a);
  loads(S, e->b);
  loads(S, e->c);
}

static int same_expr(const kiln_lx *a, const kiln_lx *b, int depth) {
  if (a == b) return 1;
  if (!a || !b || depth > 64 || a->kind != b->kind || a->dtype != b->dtype || a->op != b->op || a->var != b->var ||
      a->buf != b->buf)
    return 0;
  if (a->kind == KILN_LX_CONST && (a->i != b->i || memcmp(&a->f, &b->f, sizeof a->f))) return 0;
  return same_expr(a->a, b->a, depth + 1) && same_expr(a->b, b->b, depth + 1) && same_expr(a->c, b->c, depth + 1);
}

/* Inside the store's value: every load of `in` at the store's index (an
 * equal affine form; for a trusted kernel, the same expression idx). */
static void value_loads(scan *S, const kiln_lx *e, const affine *at, const kiln_lx *idx) {
  if (!e) return;
  if (e->kind == KILN_LX_LOAD && e->buf == S->out) S->bad = 1;
  if (e->kind == KILN_LX_LOAD && e->buf == S->in) {
    affine f;
    if (S->trusted ? !same_expr(e->a, idx, 0) : !to_affine(S->k, e->a, &f, 0) || memcmp(&f, at, sizeof f)) S->bad = 1;
  }
  value_loads(S, e->a, at, idx);
  value_loads(S, e->b, at, idx);
  value_loads(S, e->c, at, idx);
}

static void walk(scan *S, const kiln_ls *s, int under_if) {
  for (; s && !S->bad; s = s->next) {
    switch (s->kind) {
    case KILN_LS_FOR:
      if (s->var < 0 || s->var >= MAXV || S->nopen >= MAXV) { S->bad = 1; break; }
      S->ext[s->var] = s->extent;
      S->open[S->nopen++] = s->var;
      walk(S, s->body, under_if);
      S->nopen--;
      break;
    case KILN_LS_IF:
      loads(S, s->value);
      walk(S, s->body, 1);
      walk(S, s->orelse, 1);
      break;
    case KILN_LS_STORE:
      loads(S, s->index);
      if (s->buf != S->out) { loads(S, s->value); break; }
      if (S->trusted) { /* many stores, each element once: the lowering's word */
        S->nstores++;
        value_loads(S, s->value, NULL, s->index);
        break;
      }
      if (under_if || S->nstores++) { S->bad = 1; break; }
      S->store = s;
      affine at;
      if (!to_affine(S->k, s->index, &at, 0)) { S->bad = 1; break; }
      value_loads(S, s->value, &at, NULL);
      /* injective: every enclosing loop's var, mixed radix */
      int vars[MAXV], n = 0;
      for (int i = 0; i < S->nopen; i++) {
        int v = S->open[i];
        if (S->ext[v] <= 1) continue; /* one iteration: no var needed */
        if (at.coef[v] <= 0) { S->bad = 1; return; }
        vars[n++] = v;
      }
      for (int v = 0; v < MAXV; v++) { /* no var of a loop that is not open */
        int opened = 0;
        for (int i = 0; i < S->nopen; i++) opened |= S->open[i] == v;
        if (at.coef[v] && !opened) { S->bad = 1; return; }
      }
      for (int i = 1; i < n; i++) /* insertion sort by coefficient */
        for (int j = i; j > 0 && at.coef[vars[j]] < at.coef[vars[j - 1]]; j--) {
          int t = vars[j]; vars[j] = vars[j - 1]; vars[j - 1] = t;
        }
      int64_t span = 1; /* values the smaller terms reach: (ext-1)*coef summed, plus one */
      for (int i = 0; i < n; i++) {
        int64_t c = at.coef[vars[i]], step;
        if (c < span || __builtin_mul_overflow(c, S->ext[vars[i]] - 1, &step) ||
            __builtin_add_overflow(span, step, &span)) { S->bad = 1; return; }
      }
      break;
    case KILN_LS_DECL:
    case KILN_LS_ASSIGN: loads(S, s->value); break;
    case KILN_LS_PREFETCH: break; /* reads nothing */
    case KILN_LS_BARRIER:
    case KILN_LS_MMA:
    case KILN_LS_ALLOC:
    case KILN_LS_REDUCE: /* (expanded before planning; refused to stay simple) */
    case KILN_LS_COMBINE: S->bad = 1; break;
    }
  }
}

int kiln_inplace_ok(const kiln_kernel *k, const kiln_buf *out, const kiln_buf *in) {
  if (!k || out == in || out->dtype != in->dtype || out->numel != in->numel) return 0;
  scan S = {.k = k, .out = out, .in = in, .trusted = k->stores_once == out};
  walk(&S, k->body, 0);
  return !S.bad && (S.nstores == 1 || (S.trusted && S.nstores > 1));
}
