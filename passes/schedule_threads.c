/* schedule-threads: per kernel, marks `threads` on each top-level
 * parallel loop worth handing to the thread pool on p->target.
 *
 * The lowering marks every loop with independent iterations `parallel`
 * (legality, ir/loop.h); this pass decides what pays.  A kernel's
 * candidates are its top-level parallel loops (a kernel with top-level
 * locals has none: the printers outline a threaded loop into a function
 * over a range of iterations, which no local may cross).  Each one whose
 * work reaches target->thread_min_work is threaded when the target has
 * more than one core (below it the hand-off costs more than the loop: see
 * ir/target.c) -- not only the largest: a register-blocked convolution's
 * input packing and copy-out, left serial, held ResNet-50's 2-thread
 * speed-up to 1.2x.  Work is trip counts times body
 * cost (kiln_schedule_work: one unit per store, load and arithmetic
 * operation; index arithmetic is free).
 *
 * A chosen loop too short to keep every core busy (fewer than
 * SPLIT_PER_CORE iterations a core: a batch-1 loop over N) is collapsed
 * with the parallel loop directly inside it, while there is one:
 *   for i in 0..A parallel: [decls] for j in 0..B parallel: body
 *   ->  for ij in 0..A*B parallel threads: li = ij / B; lj = ij % B; [decls] body
 * with i and j read from the index locals li and lj (declared only when
 * read; with A = 1 the inner loop simply replaces the outer, i being 0).  The decls (hoisted
 * index arithmetic of i) move into the body unchanged; the inner loop
 * being parallel means no iteration assigns them.  Same values: every
 * (i, j) pair runs the same body once. */
#include <stdint.h>
#include <string.h>

#include "lower.h"

enum {
  SPLIT_PER_CORE = 4,  /* iterations per core below which a loop is collapsed */
  EXPR_BUDGET = 4096   /* nodes counted per expression (shared subtrees count again) */
};

static int64_t sat_add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }
static int64_t sat_mul(int64_t a, int64_t b) { return b != 0 && a > INT64_MAX / b ? INT64_MAX : a * b; }

/* Loads and arithmetic in e; index arithmetic (i64 math of indices) is free. */
static int64_t expr_cost(const kiln_lx *e, int *budget) {
  if (!e || --*budget < 0) return 0;
  switch (e->kind) {
  case KILN_LX_CONST:
  case KILN_LX_INDEX:
  case KILN_LX_LOCAL: return 0;
  case KILN_LX_LOAD: return 1 + expr_cost(e->a, budget);
  case KILN_LX_CAST: return expr_cost(e->a, budget);
  case KILN_LX_UN:
  case KILN_LX_BIN:
  case KILN_LX_SELECT:
  case KILN_LX_FMA: {
    int64_t own = e->dtype == KILN_DT_I64 && kiln_lx_is_index_expr(NULL, e) ? 0 : 1;
    return own + expr_cost(e->a, budget) + expr_cost(e->b, budget) + expr_cost(e->c, budget);
  }
  }
  return 0;
}

static int64_t list_work(const kiln_ls *s);

int64_t kiln_schedule_work(const kiln_ls *s) {
  int budget = EXPR_BUDGET;
  switch (s->kind) {
  case KILN_LS_FOR: return sat_mul(s->extent > 0 ? s->extent : 0, list_work(s->body));
  case KILN_LS_STORE: return 1 + expr_cost(s->value, &budget) + expr_cost(s->index, &budget);
  case KILN_LS_DECL:
  case KILN_LS_ASSIGN: return expr_cost(s->value, &budget);
  case KILN_LS_IF: {
    int64_t a = list_work(s->body), b = list_work(s->orelse);
    return sat_add(expr_cost(s->value, &budget), a > b ? a : b);
  }
  case KILN_LS_REDUCE: return sat_add(expr_cost(s->value, &budget), list_work(s->body));
  case KILN_LS_COMBINE: return 1 + expr_cost(s->value, &budget);
  case KILN_LS_MMA: return 2 * 16 * 8 * 8 / 32 * (int64_t)s->mma.wm * s->mma.wn; /* a lane's share of the MACs */
  case KILN_LS_PREFETCH: return 1 + expr_cost(s->index, &budget);
  case KILN_LS_BARRIER:
  case KILN_LS_ALLOC: return 0;
  }
  return 0;
}

static int64_t list_work(const kiln_ls *s) {
  int64_t w = 0;
  for (; s; s = s->next) w = sat_add(w, kiln_schedule_work(s));
  return w;
}

/* ---- collapsing ---- */

typedef struct remap {
  int vo, vi;   /* loop vars replaced */
  int lo, li;   /* by these locals (-1: by the constant 0) */
  int count;    /* 1: only count the uses (uo, ui) */
  int uo, ui;
} remap;

static void remap_expr(kiln_lx *e, remap *r, int depth) {
  if (!e || depth > 10000) return;
  if (e->kind == KILN_LX_INDEX && (e->var == r->vo || e->var == r->vi)) {
    int outer = e->var == r->vo, local = outer ? r->lo : r->li;
    if (r->count) {
      *(outer ? &r->uo : &r->ui) += 1;
    } else if (local < 0) {
      e->kind = KILN_LX_CONST;
      e->i = 0;
    } else {
      e->kind = KILN_LX_LOCAL;
      e->var = local;
    }
    return;
  }
  remap_expr(e->a, r, depth + 1);
  remap_expr(e->b, r, depth + 1);
  remap_expr(e->c, r, depth + 1);
}

static void remap_list(kiln_ls *s, remap *r) {
  for (; s; s = s->next) {
    remap_expr(s->index, r, 0);
    remap_expr(s->value, r, 0);
    remap_list(s->body, r);
    remap_list(s->orelse, r);
  }
}

/* The parallel loop directly inside `outer` (after decls only), or NULL. */
kiln_ls *kiln_schedule_inner_parallel(kiln_ls *outer) {
  kiln_ls *s = outer->body;
  while (s && s->kind == KILN_LS_DECL) s = s->next;
  return s && s->kind == KILN_LS_FOR && s->sched.parallel && !s->next && s->extent > 0 ? s : NULL;
}

/* One more i64 index local in k (names and index flags grown alike). */
int kiln_schedule_index_local(kiln_program *p, kiln_kernel *k) {
  int n = k->nlocals;
  const char **names = kiln_arena_array(p->arena, (size_t)n + 1, sizeof *names);
  unsigned char *flags = kiln_arena_array(p->arena, (size_t)n + 1, 1);
  if (k->local_names) memcpy(names, k->local_names, (size_t)n * sizeof *names);
  if (k->local_index) memcpy(flags, k->local_index, (size_t)n);
  flags[n] = 1;
  k->local_names = k->local_names ? names : NULL;
  k->local_index = flags;
  k->nlocals = n + 1;
  return n;
}

static kiln_lx *new_lx(kiln_program *p, kiln_lx_kind kind) {
  kiln_lx *e = kiln_arena_alloc(p->arena, sizeof *e);
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->dtype = KILN_DT_I64;
  return e;
}

static kiln_ls *new_decl(kiln_program *p, int local, kiln_lx_op op, int var, int64_t by) {
  kiln_lx *v = new_lx(p, KILN_LX_BIN), *c = new_lx(p, KILN_LX_CONST);
  v->op = op;
  v->a = new_lx(p, KILN_LX_INDEX);
  v->a->var = var;
  c->i = by;
  v->b = c;
  kiln_ls *s = kiln_arena_alloc(p->arena, sizeof *s);
  memset(s, 0, sizeof *s);
  s->kind = KILN_LS_DECL;
  s->var = local;
  s->dtype = KILN_DT_I64;
  s->value = v;
  return s;
}

/* Rewrites `outer` in place into the collapsed loop (see the top).  An
 * outer loop of one iteration just gives way to the inner one (its index
 * is 0); a local is declared only for an index the body reads. */
void kiln_schedule_collapse(kiln_program *p, kiln_kernel *k, kiln_ls *outer, kiln_ls *in) {
  int64_t A = outer->extent, B = in->extent;
  /* decls of the outer body, then the inner body */
  kiln_ls *head = outer->body == in ? in->body : outer->body;
  if (head != in->body) {
    kiln_ls *d = outer->body;
    while (d->next != in) d = d->next;
    d->next = in->body;
  }
  remap r = {outer->var, in->var, -1, -1, 1, 0, 0};
  remap_list(head, &r);
  r.count = 0;
  if (A == 1) {
    r.vi = -1;
    remap_list(head, &r); /* outer index -> 0; the inner index stays */
    outer->body = head;
    outer->var = in->var;
    outer->extent = B;
    return;
  }
  int v = k->nvars++;
  kiln_ls *first = head;
  if (r.ui) {
    r.li = kiln_schedule_index_local(p, k);
    kiln_ls *dj = new_decl(p, r.li, KILN_BIN_REM, v, B);
    dj->next = first;
    first = dj;
  } else {
    r.li = -1;
  }
  if (r.uo) {
    r.lo = kiln_schedule_index_local(p, k);
    kiln_ls *dl = new_decl(p, r.lo, KILN_BIN_DIV, v, B);
    dl->next = first;
    first = dl;
  }
  r.vi = r.ui ? r.vi : -1;
  remap_list(head, &r);
  outer->body = first;
  outer->var = v;
  outer->extent = sat_mul(A, B);
}

static int has_top_locals(const kiln_kernel *k) {
  for (const kiln_ls *s = k->body; s; s = s->next)
    if (s->kind == KILN_LS_DECL || s->kind == KILN_LS_ASSIGN) return 1;
  return 0;
}

static void schedule_kernel(kiln_program *p, kiln_kernel *k, const kiln_target *t) {
  for (kiln_ls *s = k->body; s; s = s->next)
    if (s->kind == KILN_LS_FOR) s->sched.threads = 0;
  if (t->kind != KILN_TARGET_CPU || t->cores < 2 || has_top_locals(k)) return;
  int64_t enough = (int64_t)t->cores * SPLIT_PER_CORE;
  for (kiln_ls *s = k->body; s; s = s->next) {
    if (s->kind != KILN_LS_FOR || !s->sched.parallel || s->sched.gpu) continue;
    if (kiln_schedule_work(s) < t->thread_min_work) continue;
    kiln_ls *in;
    while (s->extent < enough && (in = kiln_schedule_inner_parallel(s)) != NULL && in->extent <= INT64_MAX / s->extent)
      kiln_schedule_collapse(p, k, s, in);
    if (s->extent >= 2) s->sched.threads = 1;
  }
}

void kiln_schedule_threads(kiln_program *p) {
  for (int i = 0; i < p->nkernels; i++) schedule_kernel(p, p->kernels[i], &p->target);
}
