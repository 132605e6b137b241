/* expand-reduce: rewrites every REDUCE of the loop IR into the CPU's accumulator code; nothing else changes.
 *
 * Lowerings state reductions as what they compute (ir/loop.h,
 * "Reductions": `t = reduce OP from INIT: ... combine t <- v`), so a GPU
 * schedule or a gradient can re-schedule them; this pass, run by the
 * pipeline right after `lower` (and by the constant folder before it
 * interprets a kernel), gives them today's CPU form, one of three:
 *
 *  plain    t : T = INIT; the body, each `combine t <- v` an assignment
 *           t = t OP v (MAX_NAN / MIN_NAN as kiln_lx_max_nan writes
 *           them: (t < v || isnan(v)) ? v : t).
 *
 *  lanes    (sched.vector = w on an ADD whose body is one loop of at least
 *           2w iterations: Gemm's dot products) w partial sums, lane l
 *           taking iterations l mod w, the loop unrolled by w with the
 *           remainder into lane 0, folded in halves at the end (lane l +
 *           w/2 into lane l, like a vector reduction): independent chains
 *           LLVM's SLP vectoriser turns into vector accumulators, where a
 *           single serial sum is latency-bound and cannot be reassociated.
 *
 *  blocked  (an f64 ADD of f32 values: an accurate sum, which lowerings
 *           ask for through kiln_sum_dtype for float32 sums of more than
 *           KILN_SUM_SHORT terms) each innermost loop that contributes
 *           (a row) is split:
 *             total : f64 = INIT
 *             ... outer loops of the body ...
 *               for b in [0, extent / 128)
 *                 part : f32 = 0
 *                 for j in [0, 128): part += v(b*128 + j)
 *                 total += (f64) part
 *               part : f32 = 0                   the row's tail, if any
 *               for j in [0, extent % 128): part += v(...)
 *               total += (f64) part
 *           Adding n float32 values left to right errs by up to about
 *           n * 2^-24 of the sum of magnitudes (a mean of 19,200 values
 *           near 1000 came out 2.2e-4 off, ten times ONNX Runtime's
 *           error); each block errs by at most ~128 * 2^-24 of its
 *           magnitude and the float64 total adds only ~count/128 * 2^-53,
 *           so the result is within a few float32 ulps of the exact sum for
 *           any length kiln can address, while the inner loop stays a plain
 *           float32 accumulation (one f64 add per 128 terms).  Rows shorter
 *           than KILN_SUM_ROW_MIN add each value to the f64 total directly.
 *
 * Short sums, integer sums (exact, or wrapping) and f64 sums stay plain.
 * Blocks and lanes copy the contributing loop's body (fresh loop vars and
 * locals for everything it declares). */
#include <stdlib.h>
#include <string.h>

#include "lower.h"

enum {
  KILN_SUM_SHORT = 256, /* float32 sums of at most this many terms stay plain */
  KILN_SUM_BLOCK = 128, /* float32 block length of a long sum */
  KILN_SUM_ROW_MIN = 8  /* shorter rows go straight to the f64 total */
};

kiln_dtype kiln_sum_dtype(kiln_dtype ct, int64_t count) {
  return ct == KILN_DT_F32 && count > KILN_SUM_SHORT ? KILN_DT_F64 : ct;
}

typedef struct ectx {
  kiln_lb b;   /* expression building (b.p: the program) */
  kiln_kernel *k;
} ectx;

static kiln_ls *new_ls(ectx *E, kiln_ls_kind kind) {
  kiln_ls *s = kiln_arena_alloc(E->b.p->arena, sizeof *s);
  s->kind = kind;
  return s;
}

static kiln_lx *local(ectx *E, int var, kiln_dtype t) {
  kiln_lx *e = kiln_arena_alloc(E->b.p->arena, sizeof *e);
  e->kind = KILN_LX_LOCAL;
  e->dtype = t;
  e->var = var;
  return e;
}

static kiln_ls *decl(ectx *E, kiln_dtype t, kiln_lx *init) {
  kiln_ls *s = new_ls(E, KILN_LS_DECL);
  s->var = E->k->nlocals++;
  s->dtype = t;
  s->value = init;
  return s;
}

/* t OP v, t a local of dtype t (v converted to t). */
static kiln_lx *combined(ectx *E, kiln_reduce_op op, int var, kiln_dtype t, kiln_lx *v) {
  kiln_lb *b = &E->b;
  kiln_lx *acc = local(E, var, t);
  v = kiln_lx_cast(b, t, v);
  switch (op) {
  case KILN_RED_ADD: return kiln_lx_bin(b, KILN_BIN_ADD, acc, v);
  case KILN_RED_MAX: return kiln_lx_bin(b, KILN_BIN_MAX, acc, v);
  case KILN_RED_MIN: return kiln_lx_bin(b, KILN_BIN_MIN, v, acc); /* v < t ? v : t: a NaN v is ignored */
  default: return kiln_lx_max_nan(b, op == KILN_RED_MAX_NAN, acc, v);
  }
}

/* Every COMBINE into `var` under s becomes acc = acc OP v. */
static void to_assign(ectx *E, kiln_ls *s, int var, int acc, kiln_dtype at) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_COMBINE && s->var == var) {
      s->kind = KILN_LS_ASSIGN;
      s->value = combined(E, s->reduce, acc, at, s->value);
      s->var = acc;
    }
    to_assign(E, s->body, var, acc, at);
    to_assign(E, s->orelse, var, acc, at);
  }
}

/* ---- copying a loop body with its loop var replaced ---- */
typedef struct subst {
  int var;          /* the loop var replaced */
  kiln_lx *by;      /* by this (i64) */
  int *vmap, *lmap; /* loop vars / locals declared in the copy: new numbers, or -1 */
  int nv, nl;       /* sizes of the maps */
} subst;

static kiln_lx *copy_lx(ectx *E, const subst *S, const kiln_lx *e) {
  if (!e) return NULL;
  if (e->kind == KILN_LX_INDEX && e->var == S->var) return S->by;
  kiln_lx *c = kiln_arena_alloc(E->b.p->arena, sizeof *c);
  *c = *e;
  if (e->kind == KILN_LX_INDEX && e->var < S->nv && S->vmap[e->var] >= 0) c->var = S->vmap[e->var];
  if (e->kind == KILN_LX_LOCAL && e->var < S->nl && S->lmap[e->var] >= 0) c->var = S->lmap[e->var];
  c->a = copy_lx(E, S, e->a);
  c->b = copy_lx(E, S, e->b);
  c->c = copy_lx(E, S, e->c);
  return c;
}

static kiln_ls *copy_ls(ectx *E, subst *S, const kiln_ls *s) {
  kiln_ls *head = NULL, **tail = &head;
  for (; s; s = s->next) {
    kiln_ls *c = new_ls(E, s->kind);
    *c = *s;
    c->next = NULL;
    if ((s->kind == KILN_LS_FOR) && s->var < S->nv) c->var = S->vmap[s->var] = E->k->nvars++;
    if ((s->kind == KILN_LS_DECL || s->kind == KILN_LS_REDUCE) && s->var < S->nl) c->var = S->lmap[s->var] = E->k->nlocals++;
    else if ((s->kind == KILN_LS_ASSIGN || s->kind == KILN_LS_COMBINE) && s->var < S->nl && S->lmap[s->var] >= 0)
      c->var = S->lmap[s->var];
    c->index = copy_lx(E, S, s->index);
    c->value = copy_lx(E, S, s->value);
    c->body = copy_ls(E, S, s->body);
    c->orelse = copy_ls(E, S, s->orelse);
    *tail = c;
    tail = &c->next;
  }
  return head;
}

/* A copy of loop f's body with f's var replaced by `by`, every COMBINE
 * into var turned into acc = acc OP v. */
static kiln_ls *body_at(ectx *E, const kiln_ls *f, kiln_lx *by, int var, int acc, kiln_dtype at) {
  subst S = {f->var, by, NULL, NULL, E->k->nvars, E->k->nlocals};
  S.vmap = malloc(((size_t)S.nv + 1) * sizeof *S.vmap);
  S.lmap = malloc(((size_t)S.nl + 1) * sizeof *S.lmap);
  KILN_ASSERT(S.vmap && S.lmap);
  memset(S.vmap, -1, ((size_t)S.nv + 1) * sizeof *S.vmap);
  memset(S.lmap, -1, ((size_t)S.nl + 1) * sizeof *S.lmap);
  kiln_ls *c = copy_ls(E, &S, f->body);
  free(S.vmap);
  free(S.lmap);
  to_assign(E, c, var, acc, at);
  return c;
}

static kiln_ls *for_loop(ectx *E, int64_t extent, kiln_ls *body) {
  kiln_ls *s = new_ls(E, KILN_LS_FOR);
  s->var = E->k->nvars++;
  s->extent = extent;
  s->body = body;
  return s;
}

static kiln_ls *last(kiln_ls *s) {
  while (s->next) s = s->next;
  return s;
}

/* A COMBINE into var in s, not inside a nested loop: s is a row's body. */
static int combines_here(const kiln_ls *s, int var) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_COMBINE && s->var == var) return 1;
    if (s->kind == KILN_LS_IF && (combines_here(s->body, var) || combines_here(s->orelse, var))) return 1;
  }
  return 0;
}

/* ---- blocked: an f64 total of f32 blocks ---- */

/* Every COMBINE into var under s contributes an f32 value (and there is
 * one): an accurate sum, not an f64 sum of f64 values. */
static int all_f32(const kiln_ls *s, int var, int *seen) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_COMBINE && s->var == var) {
      if (s->value->dtype != KILN_DT_F32) return 0;
      *seen = 1;
    }
    if (!all_f32(s->body, var, seen) || !all_f32(s->orelse, var, seen)) return 0;
  }
  return 1;
}

/* One f32 block: part = 0; for j in [0, n): part += v(first + j); total += (f64) part.
 * Returns the block's first statement; its last links to nothing. */
static kiln_ls *block(ectx *E, const kiln_ls *row, kiln_lx *first, int64_t n, int var, int total) {
  kiln_lb *b = &E->b;
  kiln_ls *part = decl(E, KILN_DT_F32, kiln_lx_const_f(b, KILN_DT_F32, 0));
  kiln_ls *loop = for_loop(E, n, NULL);
  kiln_lx *j = kiln_lx_index(b, loop->var);
  loop->body = body_at(E, row, first ? kiln_lx_iadd(b, first, j) : j, var, part->var, KILN_DT_F32);
  kiln_ls *add = new_ls(E, KILN_LS_ASSIGN);
  add->var = total;
  add->value = kiln_lx_bin(b, KILN_BIN_ADD, local(E, total, KILN_DT_F64),
                           kiln_lx_cast(b, KILN_DT_F64, local(E, part->var, KILN_DT_F32)));
  part->next = loop;
  loop->next = add;
  return part;
}

/* Replaces each row under *link (a loop that COMBINEs into var) by its blocks. */
static void block_rows(ectx *E, kiln_ls **link, int var, int total) {
  kiln_lb *b = &E->b;
  for (kiln_ls *s; (s = *link) != NULL; link = &s->next) {
    if (s->kind == KILN_LS_IF) {
      block_rows(E, &s->body, var, total);
      block_rows(E, &s->orelse, var, total);
    }
    if (s->kind != KILN_LS_FOR) continue;
    if (!combines_here(s->body, var)) { block_rows(E, &s->body, var, total); continue; }
    if (s->extent < KILN_SUM_ROW_MIN) continue; /* to_assign adds it to the total */
    int64_t nb = s->extent / KILN_SUM_BLOCK, tail = s->extent % KILN_SUM_BLOCK;
    kiln_ls *head = NULL, *end = NULL;
    if (nb > 0) {
      kiln_ls *outer = for_loop(E, nb, NULL);
      outer->body = block(E, s, kiln_lx_imul(b, kiln_lx_index(b, outer->var), KILN_SUM_BLOCK), KILN_SUM_BLOCK, var, total);
      head = end = outer;
    }
    if (tail > 0) {
      kiln_ls *tb = block(E, s, nb ? kiln_lx_const_i(b, nb * KILN_SUM_BLOCK) : NULL, tail, var, total);
      if (end) end->next = tb;
      else head = tb;
      end = last(tb);
    }
    end->next = s->next; /* extent >= KILN_SUM_ROW_MIN: something was inserted */
    *link = head;
    s = end; /* go on after the inserted statements */
  }
}

/* ---- lanes: w interleaved partial sums ---- */

/* The body is one loop `row` of at least 2w iterations that COMBINEs;
 * returns the statements replacing the REDUCE r (its next not linked). */
static kiln_ls *lanes(ectx *E, kiln_ls *r, const kiln_ls *row, int w) {
  kiln_lb *b = &E->b;
  kiln_dtype t = r->dtype;
  int acc[16];
  kiln_ls *head = NULL, **tl = &head;
  for (int l = 0; l < w; l++) {
    kiln_ls *d = decl(E, t, kiln_lx_const_f(b, t, 0));
    acc[l] = d->var;
    *tl = d;
    tl = &d->next;
  }
  int64_t kb = row->extent / w, rem = row->extent - kb * w;
  kiln_ls *main_loop = for_loop(E, kb, NULL), **bt = &main_loop->body;
  kiln_lx *k = kiln_lx_index(b, main_loop->var);
  for (int l = 0; l < w; l++) {
    *bt = body_at(E, row, kiln_lx_iadd(b, kiln_lx_imul(b, k, w), kiln_lx_const_i(b, l)), r->var, acc[l], t);
    if (*bt) bt = &last(*bt)->next;
  }
  *tl = main_loop;
  tl = &main_loop->next;
  if (rem == 1) { /* no loop of one iteration (as kiln_nest_for) */
    *tl = body_at(E, row, kiln_lx_const_i(b, kb * w), r->var, acc[0], t);
    if (*tl) tl = &last(*tl)->next;
  } else if (rem > 1) {
    kiln_ls *rl = for_loop(E, rem, NULL);
    rl->body = body_at(E, row, kiln_lx_iadd(b, kiln_lx_index(b, rl->var), kiln_lx_const_i(b, kb * w)), r->var, acc[0], t);
    *tl = rl;
    tl = &rl->next;
  }
  kiln_lx *part[16];
  for (int l = 0; l < w; l++) part[l] = local(E, acc[l], t);
  for (int n = w; n > 1; n /= 2)
    for (int l = 0; l < n / 2; l++) part[l] = kiln_lx_bin(b, KILN_BIN_ADD, part[l], part[l + n / 2]);
  /* the reduction's local: INIT + the lanes (INIT left out when it is 0) */
  kiln_ls *res = new_ls(E, KILN_LS_DECL);
  res->var = r->var;
  res->dtype = t;
  int init0 = r->value->kind == KILN_LX_CONST && r->value->f == 0 && r->value->i == 0;
  res->value = init0 ? part[0] : kiln_lx_bin(b, KILN_BIN_ADD, r->value, part[0]);
  *tl = res;
  return head;
}

/* The statements replacing REDUCE r (linked on to r->next). */
static kiln_ls *expand(ectx *E, kiln_ls *r) {
  kiln_ls *next = r->next, *body = r->body;
  int w = r->sched.vector;
  if (r->reduce == KILN_RED_ADD && w > 1 && w <= 16 && (w & (w - 1)) == 0 && body && !body->next &&
      body->kind == KILN_LS_FOR && body->extent >= 2 * w && combines_here(body->body, r->var)) {
    kiln_ls *head = lanes(E, r, body, w);
    last(head)->next = next;
    return head;
  }
  int seen = 0;
  if (r->reduce == KILN_RED_ADD && r->dtype == KILN_DT_F64 && all_f32(r->body, r->var, &seen) && seen)
    block_rows(E, &r->body, r->var, r->var);
  to_assign(E, r->body, r->var, r->var, r->dtype);
  /* r becomes the declaration, its body follows it */
  r->kind = KILN_LS_DECL;
  r->sched = (kiln_sched){0};
  r->next = r->body ? r->body : next;
  if (r->body) last(r->body)->next = next;
  r->body = NULL;
  return r;
}

static void expand_list(ectx *E, kiln_ls **link) {
  while (*link) {
    kiln_ls *s = *link, *next = s->next;
    expand_list(E, &s->body); /* inner reductions first */
    expand_list(E, &s->orelse);
    if (s->kind == KILN_LS_REDUCE) *link = expand(E, s);
    while (*link != next) link = &(*link)->next;
  }
}

void kiln_expand_reduce(kiln_program *p) {
  ectx E = {0};
  E.b.p = p;
  for (int i = 0; i < p->nkernels; i++) {
    E.k = E.b.k = p->kernels[i];
    expand_list(&E, &E.k->body);
  }
  p->reductions_expanded = 1;
}
