/* simplify_index: program -> the same program computing the same values,
 * with its i64 index arithmetic folded, canonicalised and hoisted; run by
 * the pipeline (pipeline.c) after lowering, so both printers see only its
 * result.
 *
 * Lowering writes index math the direct way (row-major offsets, div/mod to
 * split flat positions, one expression per load); printed as is, it is
 * long, it repeats itself and it leaves invariants in inner loops.  This
 * pass rewrites every kernel in two walks:
 *
 *  1. simplify: each i64 expression becomes a linear form (sum of
 *     coefficient * atom, plus a constant; atoms are indices, locals and
 *     whatever is not + - * by a constant), terms with the same atom merge,
 *     and the sum is rebuilt outermost loop first, the constant last
 *     (x[(base + i) + 3]), so invariant prefixes are subtrees.  Integer
 *     arithmetic wraps (ir/loop.h), so ring algebra on coefficients is
 *     exact.  Division and remainder by a constant K > 0 use value ranges
 *     (loop index v in [0, extent), locals declared once and never
 *     assigned): x = K*q + r with 0 <= r < K and x >= 0 gives x/K = q and
 *     x%K = r; (x/K)*K + x%K = x; (x/a)/b = x/(a*b).  Comparisons decided by
 *     the ranges fold, and so do the IFs and selects they guard.  Floating
 *     point is never reassociated or folded.
 *  2. hoist: an i64 expression made only of constants, indices and
 *     never-assigned locals, invariant in the innermost loop around its
 *     use, is bound once to a local (DECL) in the body of the outermost
 *     loop where all its inputs exist, before the statement that uses it;
 *     equal ones share the local (common subexpressions), a constant
 *     offset stays at the use.  Loads are never hoisted; nothing goes to a
 *     kernel's top level (that would stop the printers outlining its
 *     parallel loops).  Constant locals and extent-1 indices fold away.
 * Hoisted locals get names (`w_base3` indexes a weight, `in_base`, `out_base`,
 * `idx`) that the C printer uses. */
#include <string.h>

#include "../ir/loop_walk.h"
#include "lower.h"

#define MAXT 24 /* terms in one linear form; longer sums stay as they are */
#define NOLEVEL 1000
#define SC_CONSTS 512 /* a direct-mapped cache of the constants ci made */

typedef kiln_index_rng rng; /* ok = 0: unknown */
typedef struct term { uint64_t k; kiln_lx *atom; } term;
typedef struct lin { int n, ok; term t[MAXT]; uint64_t c; } lin;

typedef struct hoisted { kiln_lx *e; int local; struct hoisted *next; } hoisted;
typedef struct frame { kiln_ls **insert; hoisted *cache; } frame;

typedef struct sctx {
  kiln_lb b;           /* allocation in the program's arena */
  kiln_kernel *k;
  int *var_depth;      /* loop var -> depth of its loop (1 = outermost) */
  int64_t *var_ext;
  int *local_level;    /* local -> depth of the block declaring it; NOLEVEL: not hoistable */
  rng *local_rng;      /* range of a never-assigned i64 local */
  int cap_locals;
  frame fr[64];        /* open loops during the hoisting walk, by depth */
  int nhoisted;
  const char **names;
  kiln_lx *consts[SC_CONSTS]; /* i64 constants made here, by value (ci) */
} sctx;

/* ---- ranges (checked arithmetic; ok = 0 means unknown) ---- */
static rng r_unknown(void) { rng r = {0, 0, 0}; return r; }
static rng r_of(int64_t lo, int64_t hi) { rng r = {1, lo, hi}; return r; }

static rng r_scale(rng a, int64_t k) {
  int64_t x, y;
  if (!a.ok || __builtin_mul_overflow(a.lo, k, &x) || __builtin_mul_overflow(a.hi, k, &y)) return r_unknown();
  return k >= 0 ? r_of(x, y) : r_of(y, x);
}
static rng r_add(rng a, rng b) {
  int64_t x, y;
  if (!a.ok || !b.ok || __builtin_add_overflow(a.lo, b.lo, &x) || __builtin_add_overflow(a.hi, b.hi, &y))
    return r_unknown();
  return r_of(x, y);
}

static int is_i64(const kiln_lx *e) { return e->dtype == KILN_DT_I64; }
static int is_pos_const(const kiln_lx *e) { return e->kind == KILN_LX_CONST && is_i64(e) && e->i > 0; }

static rng range_of(sctx *S, const kiln_lx *e);
static rng lin_range(sctx *S, const lin *L);
static void lin_of(sctx *S, kiln_lx *e, lin *L);

static rng range_of(sctx *S, const kiln_lx *e) {
  if (!is_i64(e)) return r_unknown();
  switch (e->kind) {
  case KILN_LX_CONST: return r_of(e->i, e->i);
  case KILN_LX_INDEX: return r_of(0, S->var_ext[e->var] - 1);
  case KILN_LX_LOCAL: return e->var < S->cap_locals ? S->local_rng[e->var] : r_unknown();
  case KILN_LX_BIN: {
    if ((e->op == KILN_BIN_DIV || e->op == KILN_BIN_REM) && is_pos_const(e->b)) {
      rng a = range_of(S, e->a);
      int64_t K = e->b->i;
      if (e->op == KILN_BIN_DIV) return a.ok ? r_of(a.lo / K, a.hi / K) : r_unknown();
      if (a.ok && a.lo >= 0) return r_of(0, a.hi < K - 1 ? a.hi : K - 1);
      return r_of(-(K - 1), K - 1);
    }
    if (e->op == KILN_BIN_MIN || e->op == KILN_BIN_MAX) {
      rng a = range_of(S, e->a), b = range_of(S, e->b);
      if (!a.ok || !b.ok) return r_unknown();
      if (e->op == KILN_BIN_MIN) return r_of(a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi);
      return r_of(a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi);
    }
    if (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB || e->op == KILN_BIN_MUL) {
      lin L;
      lin_of(S, (kiln_lx *)e, &L);
      if (L.ok && !(L.n == 1 && L.t[0].atom == e)) return lin_range(S, &L);
    }
    return r_unknown();
  }
  case KILN_LX_SELECT: {
    rng a = range_of(S, e->b), b = range_of(S, e->c);
    if (!a.ok || !b.ok) return r_unknown();
    return r_of(a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi);
  }
  case KILN_LX_CAST:
    switch (e->a->dtype) {
    case KILN_DT_BOOL: case KILN_DT_U8: return r_of(0, 255);
    case KILN_DT_I8: return r_of(-128, 127);
    case KILN_DT_I16: return r_of(-32768, 32767);
    case KILN_DT_U16: return r_of(0, 65535);
    case KILN_DT_I32: return r_of(INT32_MIN, INT32_MAX);
    case KILN_DT_U32: return r_of(0, UINT32_MAX);
    default: return r_unknown();
    }
  default: return r_unknown();
  }
}

/* ---- structural order and equality ---- */
static int cmp_lx(const kiln_lx *a, const kiln_lx *b) {
  if (a == b) return 0;
  if (!a || !b) return a ? 1 : -1;
  if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
  if (a->dtype != b->dtype) return a->dtype < b->dtype ? -1 : 1;
  if (a->op != b->op && a->kind != KILN_LX_CONST && a->kind != KILN_LX_INDEX && a->kind != KILN_LX_LOCAL &&
      a->kind != KILN_LX_LOAD && a->kind != KILN_LX_CAST && a->kind != KILN_LX_SELECT)
    return a->op < b->op ? -1 : 1;
  switch (a->kind) {
  case KILN_LX_CONST:
    if (kiln_dtype_is_float(a->dtype)) return a->f < b->f ? -1 : a->f > b->f ? 1 : memcmp(&a->f, &b->f, sizeof a->f);
    return a->i < b->i ? -1 : a->i > b->i;
  case KILN_LX_INDEX: case KILN_LX_LOCAL: return a->var < b->var ? -1 : a->var > b->var;
  case KILN_LX_LOAD:
    if (a->buf != b->buf) return a->buf->id < b->buf->id ? -1 : 1;
    return cmp_lx(a->a, b->a);
  default: {
    int c = cmp_lx(a->a, b->a);
    if (!c) c = cmp_lx(a->b, b->b);
    if (!c) c = cmp_lx(a->c, b->c);
    return c;
  }
  }
}

/* The loop depth an expression needs (0: none), NOLEVEL if it reads memory
 * or a local that may change. */
static int level(sctx *S, const kiln_lx *e) {
  if (!e) return 0;
  switch (e->kind) {
  case KILN_LX_CONST: return 0;
  case KILN_LX_INDEX: return S->var_depth[e->var];
  case KILN_LX_LOCAL: return e->var < S->cap_locals ? S->local_level[e->var] : NOLEVEL;
  case KILN_LX_LOAD: return NOLEVEL;
  default: {
    int a = level(S, e->a), b = level(S, e->b), c = level(S, e->c);
    return a > b ? (a > c ? a : c) : (b > c ? b : c);
  }
  }
}

/* ---- linear forms ---- */
static void lin_add(lin *L, uint64_t k, kiln_lx *atom) {
  if (!k) return;
  for (int i = 0; i < L->n; i++)
    if (!cmp_lx(L->t[i].atom, atom)) {
      L->t[i].k += k;
      if (!L->t[i].k) L->t[i] = L->t[--L->n];
      return;
    }
  if (L->n == MAXT) { L->ok = 0; return; }
  L->t[L->n].k = k;
  L->t[L->n++].atom = atom;
}

static void lin_axpy(lin *L, uint64_t k, const lin *M) {
  if (!M->ok) L->ok = 0;
  for (int i = 0; i < M->n && L->ok; i++) lin_add(L, k * M->t[i].k, M->t[i].atom);
  L->c += k * M->c;
}

static void lin_of(sctx *S, kiln_lx *e, lin *L) {
  L->n = 0;
  L->ok = 1;
  L->c = 0;
  if (e->kind == KILN_LX_CONST) { L->c = (uint64_t)e->i; return; }
  lin A, B;
  if (e->kind == KILN_LX_BIN && (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB)) {
    lin_of(S, e->a, &A);
    lin_of(S, e->b, &B);
    lin_axpy(L, 1, &A);
    lin_axpy(L, e->op == KILN_BIN_ADD ? 1 : (uint64_t)-1, &B);
  } else if (e->kind == KILN_LX_BIN && e->op == KILN_BIN_MUL && (e->a->kind == KILN_LX_CONST || e->b->kind == KILN_LX_CONST)) {
    kiln_lx *x = e->a->kind == KILN_LX_CONST ? e->b : e->a;
    uint64_t k = (uint64_t)(e->a->kind == KILN_LX_CONST ? e->a : e->b)->i;
    lin_of(S, x, &A);
    lin_axpy(L, k, &A);
  } else if (e->kind == KILN_LX_UN && e->op == KILN_UN_NEG) {
    lin_of(S, e->a, &A);
    lin_axpy(L, (uint64_t)-1, &A);
  } else {
    lin_add(L, 1, e);
  }
  /* (x/K)*cK + (x%K)*c = c*x, truncating division, any x, K > 0 */
  for (int i = 0; i < L->n && L->ok; i++) {
    kiln_lx *d = L->t[i].atom;
    if (d->kind != KILN_LX_BIN || d->op != KILN_BIN_DIV || !is_pos_const(d->b)) continue;
    for (int j = 0; j < L->n; j++) {
      kiln_lx *r = L->t[j].atom;
      if (r->kind != KILN_LX_BIN || r->op != KILN_BIN_REM || cmp_lx(r->a, d->a) || cmp_lx(r->b, d->b)) continue;
      uint64_t c = L->t[j].k;
      if (L->t[i].k != c * (uint64_t)d->b->i) continue;
      kiln_lx *x = d->a;
      lin_add(L, (uint64_t)0 - L->t[i].k, d); /* removes both terms (order of removal matters) */
      for (int m = 0; m < L->n; m++)
        if (!cmp_lx(L->t[m].atom, r)) { lin_add(L, (uint64_t)0 - L->t[m].k, r); break; }
      lin_of(S, x, &A);
      lin_axpy(L, c, &A);
      i = -1;
      break;
    }
  }
}

static rng lin_range(sctx *S, const lin *L) {
  rng r = r_of((int64_t)L->c, (int64_t)L->c);
  for (int i = 0; i < L->n && r.ok; i++) r = r_add(r, r_scale(range_of(S, L->t[i].atom), (int64_t)L->t[i].k));
  return r;
}

static kiln_lx *mk_bin(sctx *S, kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(&S->b, op, a, b); }
/* One node per constant value (as far as the cache remembers): every
 * rebuilt index sum ends in constants, and fresh nodes for them were a
 * tenth of the memory a ResNet-50 compile touched.  Safe to share: no
 * pass rewrites a constant node in place (bconst makes its own). */
static kiln_lx *ci(sctx *S, int64_t v) {
  kiln_lx **slot = &S->consts[((uint64_t)v * 0x9E3779B97F4A7C15u) >> 55];
  if (!*slot || (*slot)->i != v) *slot = kiln_lx_const_i(&S->b, v);
  return *slot;
}

static int term_cmp(sctx *S, const term *x, const term *y) {
  int lx = level(S, x->atom), ly = level(S, y->atom);
  if (lx != ly) return lx < ly ? -1 : 1;
  return cmp_lx(x->atom, y->atom);
}

/* Terms by loop depth, outermost first (insertion sort: n is small). */
static void lin_sort(sctx *S, lin *L) {
  for (int i = 1; i < L->n; i++)
    for (int j = i; j > 0 && term_cmp(S, &L->t[j - 1], &L->t[j]) > 0; j--) {
      term t = L->t[j];
      L->t[j] = L->t[j - 1];
      L->t[j - 1] = t;
    }
}

static int is_const_of(const kiln_lx *x, int64_t v) { return x->kind == KILN_LX_CONST && is_i64(x) && x->i == v; }

/* x is term k*atom as lin_build prints it (m = |k| after a sign). */
static int term_is(const kiln_lx *x, int64_t m, const kiln_lx *atom) {
  if (m == 1) return !cmp_lx(x, atom);
  return x->kind == KILN_LX_BIN && x->op == KILN_BIN_MUL && is_i64(x) && is_const_of(x->b, m) && !cmp_lx(x->a, atom);
}

/* x is already the tree lin_build would make of the sorted form L: the
 * caller keeps x rather than build a copy.  A lowering's index sums are
 * mostly in this form already, and the copies were most of the 100 MB a
 * ResNet-50 compile allocated here. */
static int lin_matches(const lin *L, const kiln_lx *x) {
  int64_t c = (int64_t)L->c;
  if (L->n == 0) return is_const_of(x, c);
  if (c) {
    int sub = c < 0 && c != INT64_MIN;
    if (x->kind != KILN_LX_BIN || x->op != (sub ? KILN_BIN_SUB : KILN_BIN_ADD) || !is_i64(x) || !is_const_of(x->b, sub ? -c : c))
      return 0;
    x = x->a;
  }
  for (int i = L->n - 1; i >= 1; i--) {
    int64_t k = (int64_t)L->t[i].k;
    int neg = k < 0 && k != INT64_MIN;
    if (x->kind != KILN_LX_BIN || x->op != (neg ? KILN_BIN_SUB : KILN_BIN_ADD) || !is_i64(x) ||
        !term_is(x->b, neg ? -k : k, L->t[i].atom))
      return 0;
    x = x->a;
  }
  return term_is(x, (int64_t)L->t[0].k, L->t[0].atom);
}

/* Rebuilds a sorted linear form: the constant last, left-associated:
 * x[(base + i) + 3] leaves `base` a subtree that hoisting binds once for
 * every constant offset. */
static kiln_lx *lin_build(sctx *S, lin *L) {
  lin_sort(S, L);
  kiln_lx *acc = NULL;
  for (int i = 0; i <= L->n; i++) {
    if (i == L->n) {
      int64_t c = (int64_t)L->c;
      if (acc && c)
        acc = c < 0 && c != INT64_MIN ? mk_bin(S, KILN_BIN_SUB, acc, ci(S, -c)) : mk_bin(S, KILN_BIN_ADD, acc, ci(S, c));
      break;
    }
    int64_t k = (int64_t)L->t[i].k;
    int neg = acc && k < 0 && k != INT64_MIN;
    int64_t m = neg ? -k : k;
    kiln_lx *t = m == 1 ? L->t[i].atom : mk_bin(S, KILN_BIN_MUL, L->t[i].atom, ci(S, m));
    acc = !acc ? t : mk_bin(S, neg ? KILN_BIN_SUB : KILN_BIN_ADD, acc, t);
  }
  return acc ? acc : ci(S, (int64_t)L->c);
}

static kiln_lx *simp(sctx *S, kiln_lx *e);

/* x / K and x % K, K > 0 constant, x simplified. */
static kiln_lx *divmod(sctx *S, kiln_lx_op op, kiln_lx *x, int64_t K) {
  if (K == 1) return op == KILN_BIN_DIV ? x : ci(S, 0);
  int64_t KK;
  if (op == KILN_BIN_DIV && x->kind == KILN_LX_BIN && x->op == KILN_BIN_DIV && is_pos_const(x->b) &&
      !__builtin_mul_overflow(x->b->i, K, &KK)) /* (y/a)/b = y/(a*b) */
    return divmod(S, op, x->a, KK);
  lin L, Q = {0}, R = {0};
  lin_of(S, x, &L);
  rng rl = lin_range(S, &L);
  if (L.ok && rl.ok) {
    Q.ok = R.ok = 1;
    for (int i = 0; i < L.n; i++) {
      int64_t k = (int64_t)L.t[i].k;
      if (k % K == 0) lin_add(&Q, (uint64_t)(k / K), L.t[i].atom);
      else lin_add(&R, L.t[i].k, L.t[i].atom);
    }
    int64_t c = (int64_t)L.c, q = c / K, r = c % K;
    if (r < 0) { q -= 1; r += K; }
    Q.c = (uint64_t)q;
    R.c = (uint64_t)r;
    rng rr = lin_range(S, &R);
    /* exact multiple: no remainder at all, any sign (rl ok: no wrap) */
    int exact = R.n == 0 && r == 0;
    if (exact || (rl.lo >= 0 && rr.ok && rr.lo >= 0 && rr.hi < K))
      return op == KILN_BIN_DIV ? lin_build(S, &Q) : lin_build(S, &R);
  }
  return mk_bin(S, op, x, ci(S, K));
}

static kiln_lx *bconst(sctx *S, int v) {
  kiln_lx *e = kiln_lx_const_i(&S->b, v);
  e->dtype = KILN_DT_BOOL;
  return e;
}
static int is_bconst(const kiln_lx *e, int v) { /* as the printers read a bool constant */
  return e->kind == KILN_LX_CONST && e->dtype == KILN_DT_BOOL && (e->i != 0 || e->f != 0) == v;
}

/* a < b, a <= b, a == b, a != b on i64: decided when the range of a - b
 * says so, and a and b have known ranges (so neither wrapped). */
static kiln_lx *compare(sctx *S, kiln_lx_op op, kiln_lx *a, kiln_lx *b) {
  lin A, B, D = {0};
  lin_of(S, a, &A);
  lin_of(S, b, &B);
  D.ok = 1;
  lin_axpy(&D, 1, &A);
  lin_axpy(&D, (uint64_t)-1, &B);
  rng r = D.ok && A.ok && B.ok && lin_range(S, &A).ok && lin_range(S, &B).ok ? lin_range(S, &D) : r_unknown();
  if (r.ok) {
    switch (op) {
    case KILN_BIN_LT: if (r.hi < 0) return bconst(S, 1); if (r.lo >= 0) return bconst(S, 0); break;
    case KILN_BIN_LE: if (r.hi <= 0) return bconst(S, 1); if (r.lo > 0) return bconst(S, 0); break;
    case KILN_BIN_EQ: if (r.lo == 0 && r.hi == 0) return bconst(S, 1); if (r.lo > 0 || r.hi < 0) return bconst(S, 0); break;
    case KILN_BIN_NE: if (r.lo == 0 && r.hi == 0) return bconst(S, 0); if (r.lo > 0 || r.hi < 0) return bconst(S, 1); break;
    default: break;
    }
  }
  return mk_bin(S, op, a, b);
}

static kiln_lx *copy_with(sctx *S, const kiln_lx *e, kiln_lx *a, kiln_lx *b, kiln_lx *c) {
  if (a == e->a && b == e->b && c == e->c) return (kiln_lx *)e;
  kiln_lx *n = kiln_arena_alloc(S->b.p->arena, sizeof *n);
  *n = *e;
  n->a = a;
  n->b = b;
  n->c = c;
  return n;
}

static kiln_lx *simp(sctx *S, kiln_lx *e) {
  if (!e) return NULL;
  if (e->kind == KILN_LX_INDEX && S->var_ext[e->var] == 1) return ci(S, 0); /* runs once, at 0 */
  if (e->kind == KILN_LX_LOCAL && e->var < S->cap_locals && S->local_level[e->var] != NOLEVEL) {
    rng r = S->local_rng[e->var]; /* a constant bound once */
    if (r.ok && r.lo == r.hi) return ci(S, r.lo);
  }
  kiln_lx *a = simp(S, e->a), *b = simp(S, e->b), *c = simp(S, e->c);
  switch (e->kind) {
  case KILN_LX_BIN:
    if (is_i64(a) && is_i64(b)) {
      switch (e->op) {
      case KILN_BIN_ADD: case KILN_BIN_SUB: case KILN_BIN_MUL: {
        kiln_lx *t = copy_with(S, e, a, b, c);
        lin L;
        lin_of(S, t, &L);
        if (!L.ok) return t;
        lin_sort(S, &L);
        return lin_matches(&L, t) ? t : lin_build(S, &L);
      }
      case KILN_BIN_DIV: case KILN_BIN_REM:
        if (is_pos_const(b)) return divmod(S, e->op, a, b->i);
        if (a->kind == KILN_LX_CONST && b->kind == KILN_LX_CONST && b->i != 0 && b->i != -1)
          return ci(S, e->op == KILN_BIN_DIV ? a->i / b->i : a->i % b->i);
        break;
      case KILN_BIN_LT: case KILN_BIN_LE: case KILN_BIN_EQ: case KILN_BIN_NE: return compare(S, e->op, a, b);
      case KILN_BIN_MIN: case KILN_BIN_MAX: {
        rng ra = range_of(S, a), rb = range_of(S, b);
        if (ra.ok && rb.ok && (ra.hi <= rb.lo || rb.hi <= ra.lo)) {
          int a_small = ra.hi <= rb.lo;
          return (e->op == KILN_BIN_MIN) == a_small ? a : b;
        }
        break;
      }
      default: break;
      }
    }
    if (e->op == KILN_BIN_AND || e->op == KILN_BIN_OR) {
      int v = e->op == KILN_BIN_OR; /* the absorbing value */
      if (is_bconst(a, v) || is_bconst(b, v)) return bconst(S, v);
      if (is_bconst(a, !v)) return b;
      if (is_bconst(b, !v)) return a;
    }
    break;
  case KILN_LX_UN:
    if (e->op == KILN_UN_NOT && a->kind == KILN_LX_CONST && a->dtype == KILN_DT_BOOL) return bconst(S, is_bconst(a, 0));
    if (e->op == KILN_UN_NEG && is_i64(a)) {
      lin L;
      lin_of(S, copy_with(S, e, a, b, c), &L);
      if (L.ok) return lin_build(S, &L);
    }
    break;
  case KILN_LX_SELECT:
    if (is_bconst(a, 1)) return b;
    if (is_bconst(a, 0)) return c;
    break;
  default: break;
  }
  return copy_with(S, e, a, b, c);
}

/* ---- walk 1: simplify statements ---- */

/* Depth and extent of every loop var; the level of every local. */
static void scan(sctx *S, kiln_ls *s, int depth, int in_if) {
  for (; s; s = s->next) {
    switch (s->kind) {
    case KILN_LS_FOR:
      S->var_depth[s->var] = depth + 1;
      S->var_ext[s->var] = s->extent;
      scan(S, s->body, depth + 1, 0);
      break;
    case KILN_LS_IF: scan(S, s->body, depth, 1); scan(S, s->orelse, depth, 1); break;
    case KILN_LS_DECL:
      if (S->local_level[s->var] != NOLEVEL) S->local_level[s->var] = in_if || s->dtype != KILN_DT_I64 ? NOLEVEL : depth;
      break;
    case KILN_LS_ASSIGN: S->local_level[s->var] = NOLEVEL; break;
    default: break;
    }
  }
}

static kiln_ls *simp_block(sctx *S, kiln_ls *s, int depth);

/* Simplifies one statement; returns the statements replacing it (an IF
 * with a decided condition becomes its taken branch). */
static kiln_ls *simp_stmt(sctx *S, kiln_ls *s, int depth) {
  switch (s->kind) {
  case KILN_LS_FOR: s->body = simp_block(S, s->body, depth + 1); return s;
  case KILN_LS_STORE:
    s->index = simp(S, s->index);
    s->value = simp(S, s->value);
    return s;
  case KILN_LS_PREFETCH: s->index = simp(S, s->index); return s;
  case KILN_LS_DECL:
    s->value = simp(S, s->value);
    if (S->local_level[s->var] != NOLEVEL) {
      S->local_rng[s->var] = range_of(S, s->value);
      if (s->value->kind == KILN_LX_CONST) return NULL; /* every use reads the constant */
    }
    return s;
  case KILN_LS_ASSIGN: s->value = simp(S, s->value); return s;
  case KILN_LS_IF: {
    s->value = simp(S, s->value);
    s->body = simp_block(S, s->body, depth);
    s->orelse = simp_block(S, s->orelse, depth);
    if (s->value->kind != KILN_LX_CONST || s->value->dtype != KILN_DT_BOOL) return s;
    kiln_ls *taken = s->value->i ? s->body : s->orelse;
    if (depth == 0) /* a top-level local would stop the printers outlining parallel loops */
      for (kiln_ls *t = taken; t; t = t->next)
        if (t->kind == KILN_LS_DECL || t->kind == KILN_LS_ASSIGN) return s;
    return taken; /* may be NULL: nothing */
  }
  default: return s;
  }
}

static kiln_ls *simp_block(sctx *S, kiln_ls *s, int depth) {
  kiln_ls *head = NULL, **tail = &head;
  while (s) {
    kiln_ls *next = s->next;
    s->next = NULL;
    kiln_ls *r = simp_stmt(S, s, depth);
    *tail = r;
    while (*tail) tail = &(*tail)->next;
    s = next;
  }
  return head;
}

/* ---- walk 2: hoist invariant index math ---- */
static int leaf(const kiln_lx *e) {
  return e->kind == KILN_LX_CONST || e->kind == KILN_LX_INDEX || e->kind == KILN_LX_LOCAL;
}
/* i*K or t+K alone is not worth a local of its own */
static int worth_hoisting(const kiln_lx *e) {
  if (!is_i64(e)) return 0;
  if (e->kind == KILN_LX_BIN) return !(leaf(e->a) && leaf(e->b));
  return e->kind == KILN_LX_SELECT;
}

static kiln_lx *mk_local(sctx *S, int v) {
  kiln_lx *e = kiln_arena_alloc(S->b.p->arena, sizeof *e);
  e->kind = KILN_LX_LOCAL;
  e->dtype = KILN_DT_I64;
  e->var = v;
  return e;
}

static int new_local(sctx *S, const char *role) {
  int v = S->k->nlocals++;
  if (v >= S->cap_locals) {
    int nc = S->cap_locals * 2 + 16;
    const char **nn = kiln_arena_array(S->b.p->arena, (size_t)nc, sizeof *nn);
    if (S->names) memcpy(nn, S->names, (size_t)S->cap_locals * sizeof *nn);
    int *nl = kiln_arena_array(S->b.p->arena, (size_t)nc, sizeof *nl);
    memcpy(nl, S->local_level, (size_t)S->cap_locals * sizeof *nl);
    rng *nr = kiln_arena_array(S->b.p->arena, (size_t)nc, sizeof *nr);
    memcpy(nr, S->local_rng, (size_t)S->cap_locals * sizeof *nr);
    S->names = nn;
    S->local_level = nl;
    S->local_rng = nr;
    S->cap_locals = nc;
  }
  char name[32];
  snprintf(name, sizeof name, "%s%d", role, S->nhoisted++);
  S->names[v] = kiln_arena_strdup(S->b.p->arena, name);
  return v;
}

static kiln_lx *hoist(sctx *S, kiln_lx *e, int depth, const char *role) {
  if (!e) return NULL;
  if (e->kind == KILN_LX_BIN && (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB) && is_i64(e) &&
      e->b->kind == KILN_LX_CONST) /* base + 3: bind the base, keep the offset */
    return copy_with(S, e, hoist(S, e->a, depth, role), e->b, NULL);
  int lv = worth_hoisting(e) ? level(S, e) : NOLEVEL;
  if (lv >= 1 && lv < depth) {
    frame *F = &S->fr[lv];
    for (hoisted *h = F->cache; h; h = h->next)
      if (!cmp_lx(h->e, e)) return mk_local(S, h->local);
    kiln_lx *v = hoist(S, e, lv, role); /* its own invariant parts go further out */
    int t = new_local(S, role);
    S->local_level[t] = lv;
    S->local_rng[t] = range_of(S, v);
    kiln_ls *d = kiln_arena_alloc(S->b.p->arena, sizeof *d);
    d->kind = KILN_LS_DECL;
    d->var = t;
    d->dtype = KILN_DT_I64;
    d->value = v;
    d->next = *F->insert;
    *F->insert = d;
    F->insert = &d->next;
    hoisted *h = kiln_arena_alloc(S->b.p->arena, sizeof *h);
    h->e = e;
    h->local = t;
    h->next = F->cache;
    F->cache = h;
    return mk_local(S, t);
  }
  const char *r = role;
  if (e->kind == KILN_LX_LOAD) r = e->buf->kind == KILN_BUF_WEIGHT ? "w_base" : "in_base";
  return copy_with(S, e, hoist(S, e->a, depth, r), hoist(S, e->b, depth, r), hoist(S, e->c, depth, r));
}

static void hoist_block(sctx *S, kiln_ls **link, int depth, int loop_body) {
  for (kiln_ls *s; (s = *link) != NULL; link = &s->next) {
    if (loop_body) S->fr[depth].insert = link;
    switch (s->kind) {
    case KILN_LS_FOR:
      if (depth + 1 >= 64) break;
      S->fr[depth + 1].cache = NULL;
      hoist_block(S, &s->body, depth + 1, 1);
      break;
    case KILN_LS_STORE:
      s->index = hoist(S, s->index, depth, "out_base");
      s->value = hoist(S, s->value, depth, "idx");
      break;
    case KILN_LS_PREFETCH: s->index = hoist(S, s->index, depth, "w_base"); break;
    case KILN_LS_DECL: case KILN_LS_ASSIGN: s->value = hoist(S, s->value, depth, "idx"); break;
    case KILN_LS_IF:
      s->value = hoist(S, s->value, depth, "idx");
      hoist_block(S, &s->body, depth, 0);
      hoist_block(S, &s->orelse, depth, 0);
      break;
    default: break;
    }
  }
}

/* The range analysis above, for the loop-IR verifier (ir/loop_verify.c):
 * one range for a kernel's loop vars and never-assigned i64 locals. */
int kiln_index_range(const kiln_index_env *env, const kiln_lx *e, int64_t *lo, int64_t *hi) {
  sctx S = {0};
  S.var_ext = (int64_t *)env->var_ext;
  S.local_rng = (rng *)env->local_rng;
  S.cap_locals = env->local_rng ? env->nlocals : 0;
  rng r = range_of(&S, e);
  if (!r.ok) return 0;
  *lo = r.lo;
  *hi = r.hi;
  return 1;
}

/* Marks the locals that hold index arithmetic: declared once from an index
 * expression and never assigned (in statement order, so a value built on an
 * earlier such local counts too).  The C printer prints their arithmetic
 * without the wrapping casts data arithmetic needs (ir/loop.h). */
typedef struct index_locals {
  const kiln_kernel *k;
  unsigned char *is_index;
  const unsigned char *locals; /* kiln_loop_locals flags */
} index_locals;

static int mark_index_local(kiln_walk *w, const kiln_ls *s) {
  index_locals *c = w->ctx;
  if (s->kind == KILN_LS_DECL && !(c->locals[s->var] & KILN_LOCAL_ASSIGNED) && s->value && s->dtype == KILN_DT_I64)
    c->is_index[s->var] = (unsigned char)kiln_lx_is_index_expr(c->k, s->value);
  return KILN_WALK_CONTINUE;
}

void kiln_simplify_index(kiln_program *p) {
  for (int i = 0; i < p->nkernels; i++) {
    kiln_kernel *k = p->kernels[i];
    sctx S = {0};
    S.b.p = p;
    S.b.k = k;
    S.k = k;
    int nv = kiln_loop_nvars(k->body);
    nv = (nv > k->nvars ? nv : k->nvars) + 1;
    S.var_depth = kiln_arena_array(p->arena, (size_t)nv, sizeof *S.var_depth);
    S.var_ext = kiln_arena_array(p->arena, (size_t)nv, sizeof *S.var_ext);
    S.cap_locals = k->nlocals + 1;
    S.local_level = kiln_arena_array(p->arena, (size_t)S.cap_locals, sizeof *S.local_level);
    S.local_rng = kiln_arena_array(p->arena, (size_t)S.cap_locals, sizeof *S.local_rng);
    S.names = kiln_arena_array(p->arena, (size_t)S.cap_locals, sizeof *S.names);
    scan(&S, k->body, 0, 0);
    k->body = simp_block(&S, k->body, 0);
    hoist_block(&S, &k->body, 0, 1);
    if (S.nhoisted) {
      const char **names = kiln_arena_array(p->arena, (size_t)k->nlocals + 1, sizeof *names);
      memcpy(names, S.names, (size_t)k->nlocals * sizeof *names);
      k->local_names = names;
    }
    unsigned char *is_index = kiln_arena_array(p->arena, (size_t)k->nlocals + 1, 1);
    unsigned char *locals = kiln_arena_array(p->arena, (size_t)k->nlocals + 1, 1);
    kiln_loop_locals(k->body, k->nlocals, locals);
    k->local_index = is_index;
    index_locals c = {k, is_index, locals};
    kiln_walk w = {.stmt_pre = mark_index_local, .ctx = &c};
    kiln_walk_block(&w, k->body);
  }
}
