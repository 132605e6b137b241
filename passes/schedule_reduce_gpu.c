/* schedule_reduce_gpu: on a GPU target, the kernels whose work is a long
 * reduction get a block of threads reducing together, instead of one
 * thread looping (what schedule_gpu.c's one-iteration-per-thread mapping
 * gives a kernel with no parallel loop, or with fewer parallel iterations
 * than a GPU has threads).  It runs right after lowering, while
 * reductions are still REDUCE statements (ir/loop.h, "Reductions"), so
 * that it can split them; kernels it schedules carry their launch, and
 * schedule_gpu leaves them alone.
 *
 * A kernel's statements (the kernel's, or the body of its collapsed outer
 * parallel nest, one block per iteration: form B) become the program every
 * thread t of a block of T (a power of two) runs:
 *
 *   DECL, ASSIGN           every thread (their values are the same in
 *                          every thread: all locals are)
 *   REDUCE r from INIT:    r : D = reduce OP from identity:       (thread t's part)
 *     for i in 0..E:         for q in 0..ceil(E/T): i' = q*T + t
 *       body(i)                if i' < E: body(i')
 *                          red[t] = r; barrier                    (red: SHARED D[T])
 *                          for s = T/2, ..., 1: if t < s: red[t] = red[t] OP red[t+s]
 *                                                barrier
 *                          r = INIT OP red[0]
 *                          (an accurate f64 sum of f32 values: the thread's
 *                          part, at most 128 terms, is an f32 sum, the tree
 *                          f64: the CPU's error bound, with f32 adds)
 *   FOR i in 0..E          the same strided split, then a barrier, when its
 *                          iterations are independent (parallel), or when
 *                          every store in it writes element f(i) of a
 *                          buffer for an injective f (i plus terms the same
 *                          in every iteration) and every load of a stored
 *                          buffer reads that same element (Softmax's
 *                          "y[i] = exp(..); sum += y[i]"): iterations then
 *                          touch disjoint elements, any order gives the
 *                          same memory
 *   FOR i in 0..E          (any other loop, with a loop to split inside:
 *                          Gemm's rank-1 updates) every thread runs it, its
 *                          body a program of its own (barriers inside a
 *                          loop the same for every thread)
 *   anything else          thread 0 only (IF t == 0), then a barrier
 *
 * A statement that stores, other than DECL/ASSIGN, is preceded by a
 * barrier unless one already ends what came before it: a thread running
 * ahead must not overwrite what another has still to read (write after
 * read), as its writes are followed by one (read after write).
 *
 * A kernel is refused (left to schedule_gpu) when a statement that runs
 * on some threads only assigns a local declared outside it (the threads'
 * locals would differ), or a REDUCE's body is not one loop.  The tree
 * combines partial results in a different order than the CPU: float sums
 * differ by rounding (ir/loop.h allows reassociation), MAX/MIN give the
 * same value, NaN handling included (partials combine with the REDUCE's
 * own OP: a NaN partial of MAX_NAN wins, MAX ignores NaN contributions,
 * so its partials hold none).
 *
 * When: a kernel that schedule_gpu would run as one thread, when some
 * statement has at least MIN_SPLIT iterations to split (not a kernel of
 * several top-level loops, each a parallel nest of MAX_THREADS or more
 * iterations, such as Concat's copies: schedule_gpu gives each its own
 * launch, a thread per iteration); form B when the
 * outer parallel nest has fewer than MAX_BLOCKS iterations and its body
 * reduces at least MIN_ROW elements (a batch-1 Gemm's rows, a global pool
 * of few channels).  Convolutions keep schedule_conv_gpu.c. */
#include <string.h>

#include "../ir/loop_walk.h"
#include "lower.h"

enum {
  MAX_THREADS = 256, /* threads per block */
  MIN_SPLIT = 64,    /* a one-thread kernel splits loops of at least this many iterations */
  MAX_BLOCKS = 1024, /* form B: fewer outer iterations than this (a GPU holds ~100k threads) */
  MIN_ROW = 128,     /* form B: reductions of at least this many elements */
  PART_F32 = 128     /* an accurate sum's thread part in f32 up to this many terms (expand_reduce.c's block) */
};

typedef struct gr {
  kiln_program *p;
  kiln_kernel *k;
  kiln_lb b;
  kiln_ls *allocs, **alloc_tail; /* the block body's SHARED buffers */
  int64_t T;
  int tid;                       /* the thread loop's var */
  int synced;                    /* nothing emitted since the last barrier (or the start) */
} gr;

/* ---- checks ---- */

typedef struct scan {
  unsigned char *decl;  /* locals declared (DECL, REDUCE) inside */
  unsigned char *bound; /* loop vars bound inside */
  int outer_assign;     /* an ASSIGN of a local declared outside */
  int has_store;
} scan;

static int scan_stmt(kiln_walk *w, const kiln_ls *s) {
  scan *c = w->ctx;
  if (s->kind == KILN_LS_DECL || s->kind == KILN_LS_REDUCE) c->decl[s->var] = 1;
  if (s->kind == KILN_LS_FOR) c->bound[s->var] = 1;
  if (s->kind == KILN_LS_STORE) c->has_store = 1;
  if (s->kind == KILN_LS_BARRIER || s->kind == KILN_LS_ALLOC) c->outer_assign = 1; /* never here: refuse */
  return KILN_WALK_CONTINUE;
}

static void scan_assign(kiln_walk *w, const kiln_ls *s) {
  scan *c = w->ctx;
  if ((s->kind == KILN_LS_ASSIGN && !c->decl[s->var])) c->outer_assign = 1;
}

/* Scans s alone (not s->next); 0 when it assigns no outer local. */
static int scan_of(gr *g, const kiln_ls *s, scan *c) {
  c->decl = kiln_arena_array(g->p->arena, (size_t)g->k->nlocals + 1, 1);
  c->bound = kiln_arena_array(g->p->arena, (size_t)g->k->nvars + 1, 1);
  c->outer_assign = c->has_store = 0;
  kiln_walk w = {.stmt_pre = scan_stmt, .ctx = c};
  kiln_walk_stmt(&w, s);
  kiln_walk w2 = {.stmt_pre = scan_stmt, .stmt_post = scan_assign, .ctx = c};
  kiln_walk_stmt(&w2, s); /* declarations all seen: ASSIGNs checked */
  return c->outer_assign;
}

static int same_lx(const kiln_lx *a, const kiln_lx *b) {
  if (!a || !b) return a == b;
  return a->kind == b->kind && a->op == b->op && a->dtype == b->dtype && a->f == b->f && a->i == b->i &&
         a->var == b->var && a->buf == b->buf && same_lx(a->a, b->a) && same_lx(a->b, b->b) && same_lx(a->c, b->c);
}

/* e reads nothing that differs between iterations of the loop scanned in
 * c, whose var is r: no r, no var bound or local declared inside, no load. */
static int invariant(const kiln_lx *e, const scan *c, int r) {
  if (!e) return 1;
  if (e->kind == KILN_LX_LOAD) return 0;
  if (e->kind == KILN_LX_INDEX && (e->var == r || c->bound[e->var])) return 0;
  if (e->kind == KILN_LX_LOCAL && c->decl[e->var]) return 0;
  return invariant(e->a, c, r) && invariant(e->b, c, r) && invariant(e->c, c, r);
}

/* e = r, r * k (k != 0), or e + invariant: injective in r. */
static int injective(const kiln_lx *e, const scan *c, int r) {
  if (e->kind == KILN_LX_INDEX) return e->var == r;
  if (e->kind != KILN_LX_BIN) return 0;
  if (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB)
    return (injective(e->a, c, r) && invariant(e->b, c, r)) || (e->op == KILN_BIN_ADD && injective(e->b, c, r) && invariant(e->a, c, r));
  if (e->op == KILN_BIN_MUL) {
    const kiln_lx *k = e->b->kind == KILN_LX_CONST ? e->b : e->a, *x = k == e->b ? e->a : e->b;
    return k->kind == KILN_LX_CONST && k->i != 0 && injective(x, c, r);
  }
  return 0;
}

typedef struct disjoint {
  const scan *c;
  int r, ok;
  const kiln_ls *stores[16];
  int nstores;
} disjoint;

static int collect_store(kiln_walk *w, const kiln_ls *s) {
  disjoint *d = w->ctx;
  if (s->kind != KILN_LS_STORE) return KILN_WALK_CONTINUE;
  if (d->nstores == 16 || s->buf->scope != KILN_SCOPE_GLOBAL || !injective(s->index, d->c, d->r)) d->ok = 0;
  else d->stores[d->nstores++] = s;
  return KILN_WALK_CONTINUE;
}

static int check_load(kiln_walk *w, const kiln_lx *e) {
  disjoint *d = w->ctx;
  if (e->kind != KILN_LX_LOAD) return KILN_WALK_CONTINUE;
  const kiln_buf *root = kiln_buf_root(e->buf, NULL);
  for (int i = 0; i < d->nstores; i++) {
    if (kiln_buf_root(d->stores[i]->buf, NULL) != root) continue;
    if (d->stores[i]->buf != e->buf || !same_lx(d->stores[i]->index, e->a)) d->ok = 0;
  }
  return KILN_WALK_CONTINUE;
}

/* Loop f's iterations touch disjoint memory (see the top). */
static int disjoint_iters(gr *g, const kiln_ls *f) {
  if (f->sched.parallel) return 1;
  scan c;
  scan_of(g, f, &c);
  disjoint d = {.c = &c, .r = f->var, .ok = 1};
  kiln_walk w = {.stmt_pre = collect_store, .ctx = &d};
  kiln_walk_block(&w, f->body);
  kiln_walk w2 = {.expr_pre = check_load, .ctx = &d};
  kiln_walk_block(&w2, f->body);
  return d.ok;
}

/* How statement s runs in the block (see the top). */
enum { ALL, SPLIT_FOR, SPLIT_REDUCE, SERIAL, THREAD0, REFUSE };

static int64_t split_extent(gr *g, const kiln_ls *s);

static int kind_of(gr *g, const kiln_ls *s) {
  scan c;
  if (s->kind == KILN_LS_DECL || s->kind == KILN_LS_ASSIGN) return ALL;
  if (s->kind == KILN_LS_BARRIER || s->kind == KILN_LS_ALLOC || s->kind == KILN_LS_COMBINE) return REFUSE;
  if (s->kind == KILN_LS_REDUCE)
    return s->body && s->body->kind == KILN_LS_FOR && !s->body->next && !scan_of(g, s->body, &c) &&
                   disjoint_iters(g, s->body) ? SPLIT_REDUCE : REFUSE;
  if (scan_of(g, s, &c)) return REFUSE;
  if (s->kind != KILN_LS_FOR) return THREAD0;
  if (disjoint_iters(g, s)) return SPLIT_FOR;
  return split_extent(g, s->body) >= MIN_SPLIT ? SERIAL : THREAD0;
}

/* The most iterations a statement of list s (or of a SERIAL loop's body)
 * splits; -1 when one is refused. */
static int64_t split_extent(gr *g, const kiln_ls *s) {
  int64_t most = 0;
  for (; s; s = s->next) {
    int kd = kind_of(g, s);
    if (kd == REFUSE) return -1;
    int64_t e = kd == SPLIT_FOR ? s->extent : kd == SPLIT_REDUCE ? s->body->extent : kd == SERIAL ? split_extent(g, s->body) : 0;
    if (e > most) most = e;
  }
  return most;
}

/* ---- building ---- */

#define B (&g->b)
#define CI(v) kiln_lx_const_i(B, (v))
#define TID kiln_lx_index(B, g->tid)

/* A local of k: an i64 index local (names and flags grown alike), or, with
 * is_index 0, a plain one. */
static int new_local(gr *g, int is_index) {
  int v = kiln_schedule_index_local(g->p, g->k);
  ((unsigned char *)g->k->local_index)[v] = (unsigned char)is_index;
  return v;
}

/* A read of local v of dtype t (kiln_lx_local would look for its DECL in
 * the kernel's body, which the statements built here are not in yet). */
static kiln_lx *local_lx(gr *g, int v, kiln_dtype t) {
  kiln_lx *e = kiln_lx_const_i(B, 0);
  e->kind = KILN_LX_LOCAL;
  e->dtype = t;
  e->var = v;
  return e;
}

static kiln_ls *put(gr *g, kiln_ls *s) {
  s->next = NULL;
  *g->b.tail = s;
  g->b.tail = &s->next;
  return s;
}

static kiln_ls *decl(gr *g, int var, kiln_dtype t, kiln_lx *v) {
  kiln_ls *s = kiln_arena_alloc(g->p->arena, sizeof *s);
  memset(s, 0, sizeof *s);
  s->kind = KILN_LS_DECL;
  s->var = var;
  s->dtype = t;
  s->value = v;
  return put(g, s);
}

/* Loop f's iterations over the block's threads: thread t takes t, t + T,
 * ...; f's var becomes an index local, clamped below E (interval analysis)
 * with an IF keeping the surplus threads out.  Appends at the cursor. */
static void split_loop(gr *g, kiln_ls *f) {
  int64_t E = f->extent, Q = (E + g->T - 1) / g->T;
  kiln_lx *i = TID;
  int open = 0;
  if (Q > 1) {
    i = kiln_lx_iadd(B, kiln_lx_imul(B, kiln_lx_index(B, kiln_lb_for(B, Q, (kiln_sched){0})), g->T), TID);
    open++;
  }
  int ri = new_local(g, 1);
  decl(g, ri, KILN_DT_I64, E % g->T ? kiln_lx_bin(B, KILN_BIN_MIN, i, CI(E - 1)) : i);
  kiln_schedule_var_to_local(f->body, f->var, ri);
  if (E % g->T) {
    kiln_lb_if(B, kiln_lx_bin(B, KILN_BIN_LT, i, CI(E)));
    open++;
  }
  kiln_ls *body = f->body;
  *g->b.tail = body;
  while (*g->b.tail) g->b.tail = &(*g->b.tail)->next;
  while (open--) kiln_lb_end(B);
}

static kiln_lx *combine(gr *g, kiln_reduce_op op, kiln_lx *acc, kiln_lx *v) {
  switch (op) {
  case KILN_RED_ADD: return kiln_lx_bin(B, KILN_BIN_ADD, acc, v);
  case KILN_RED_MAX: return kiln_lx_bin(B, KILN_BIN_MAX, acc, v);
  case KILN_RED_MIN: return kiln_lx_bin(B, KILN_BIN_MIN, v, acc);
  case KILN_RED_MAX_NAN: return kiln_lx_max_nan(B, 1, acc, v);
  case KILN_RED_MIN_NAN: return kiln_lx_max_nan(B, 0, acc, v);
  case KILN_RED_OP_COUNT: break;
  }
  KILN_ASSERT(0);
  return acc;
}

typedef struct combines { int var, n, loops, f32; } combines;

static int count_combine(kiln_walk *w, const kiln_ls *s) {
  combines *c = w->ctx;
  if (s->kind == KILN_LS_FOR) c->loops++;
  if (s->kind == KILN_LS_COMBINE && s->var == c->var) c->n++, c->f32 &= s->value->dtype == KILN_DT_F32;
  return KILN_WALK_CONTINUE;
}

static int retarget_combine(kiln_walk *w, const kiln_ls *s) {
  combines *c = w->ctx;
  if (s->kind == KILN_LS_COMBINE && s->var == c->var) {
    ((kiln_ls *)s)->var = c->n;
    ((kiln_ls *)s)->dtype = KILN_DT_F32;
  }
  return KILN_WALK_CONTINUE;
}

/* An accurate sum (f64 of f32 values, ir/loop.h) whose loop body is one
 * COMBINE and no loop, at most PART_F32 terms a thread: the thread's part
 * becomes an f32 REDUCE of its own local (returned), the tree staying f64.
 * Each part then errs by at most (PART_F32 - 1) u of its magnitude, as the
 * CPU's f32 blocks do (expand_reduce.c), and the GPU adds in f32, not f64
 * (1/2 to 1/64 of the f32 rate).  Returns r->var when it does not apply. */
static int part_f32(gr *g, kiln_ls *r, const kiln_ls *f) {
  combines c = {.var = r->var, .f32 = 1};
  kiln_walk w = {.stmt_pre = count_combine, .ctx = &c};
  kiln_walk_block(&w, f->body);
  if (r->reduce != KILN_RED_ADD || r->dtype != KILN_DT_F64 || c.n != 1 || c.loops || !c.f32 ||
      (f->extent + g->T - 1) / g->T > PART_F32)
    return r->var;
  c.n = new_local(g, 0);
  kiln_walk w2 = {.stmt_pre = retarget_combine, .ctx = &c};
  kiln_walk_block(&w2, f->body);
  r->var = c.n;
  r->dtype = KILN_DT_F32;
  return c.n;
}

/* The REDUCE r as each thread's part, then the tree in shared memory. */
static void split_reduce(gr *g, kiln_ls *r) {
  int result = r->var;
  kiln_dtype D = r->dtype;
  kiln_lx *init = r->value;
  if (init->kind != KILN_LX_CONST) { /* INIT evaluated where the REDUCE was */
    int v = new_local(g, 0);
    decl(g, v, r->dtype, init);
    init = local_lx(g, v, r->dtype);
  }
  kiln_ls *f = r->body;
  part_f32(g, r, f);
  r->value = kiln_lx_reduce_identity(B, r->reduce, r->dtype);
  r->sched.vector = 0;
  r->body = NULL;
  put(g, r);
  kiln_ls **after = g->b.tail;
  g->b.tail = &r->body;
  split_loop(g, f);
  g->b.tail = after;

  kiln_lb ab = {.p = g->p, .k = g->k, .tail = g->alloc_tail};
  kiln_buf *red = kiln_lb_alloc(&ab, "red", KILN_SCOPE_SHARED, D, g->T);
  g->alloc_tail = ab.tail;
  kiln_lb_store(B, red, TID, local_lx(g, r->var, r->dtype));
  kiln_lb_barrier(B);
  for (int64_t s = g->T / 2; s >= 1; s /= 2) {
    kiln_lb_if(B, kiln_lx_bin(B, KILN_BIN_LT, TID, CI(s)));
    kiln_lb_store(B, red, TID, combine(g, r->reduce, kiln_lx_load(B, red, TID), kiln_lx_load(B, red, kiln_lx_iadd(B, TID, CI(s)))));
    kiln_lb_end(B);
    kiln_lb_barrier(B);
  }
  kiln_lx *v = combine(g, r->reduce, init, kiln_lx_load(B, red, CI(0)));
  if (result == r->var) kiln_lb_assign(B, result, v);
  else decl(g, result, D, v); /* the part had a local of its own */
}

/* Statements s.. as the block's program (see the top), at the cursor. */
static void program(gr *g, kiln_ls *s) {
  kiln_ls *body;
  for (kiln_ls *next; s; s = next) {
    next = s->next;
    scan c;
    int kd = kind_of(g, s);
    scan_of(g, s, &c);
    if (kd != ALL && c.has_store && !g->synced) kiln_lb_barrier(B); /* reads before it done (write after read) */
    g->synced = 0;
    switch (kd) {
    case ALL: put(g, s); break;
    case SPLIT_REDUCE: split_reduce(g, s); break;
    case SPLIT_FOR:
      split_loop(g, s);
      kiln_lb_barrier(B);
      g->synced = 1;
      break;
    case SERIAL: /* every thread runs the loop; its body is a program */
      body = s->body;
      s->body = NULL;
      put(g, s);
      g->b.tail = &s->body;
      program(g, body); /* (unsynced at its start: the previous iteration's end) */
      g->b.tail = &s->next; /* synced as its body ends (extent > 0) */
      break;
    default: /* THREAD0 (REFUSE was ruled out) */
      kiln_lb_if(B, kiln_lx_bin(B, KILN_BIN_EQ, TID, CI(0)));
      put(g, s);
      kiln_lb_end(B);
      if (c.has_store) kiln_lb_barrier(B), g->synced = 1;
      break;
    }
  }
}

static int64_t threads_for(int64_t most) {
  int64_t T = 32; /* a warp */
  while (T < most && T < MAX_THREADS) T *= 2;
  return T;
}

/* blk (a FOR, the kernel's only top-level statement) becomes the
 * block-bound loop over its iterations, its body the program. */
static void build(gr *g, kiln_ls *blk, kiln_ls *stmts, int64_t most) {
  g->T = threads_for(most);
  g->allocs = NULL;
  g->alloc_tail = &g->allocs;
  blk->sched = (kiln_sched){.gpu = 1};
  blk->next = NULL;
  kiln_ls *thread = kiln_arena_alloc(g->p->arena, sizeof *thread);
  memset(thread, 0, sizeof *thread);
  thread->kind = KILN_LS_FOR;
  thread->var = g->tid = g->k->nvars++;
  thread->extent = g->T;
  thread->sched.gpu = 4;
  g->b = (kiln_lb){.p = g->p, .k = g->k, .tail = &thread->body};
  g->synced = 1;
  program(g, stmts);
  kiln_ls **last = &thread->body; /* a barrier ending the program orders nothing */
  while (*last && (*last)->next) last = &(*last)->next;
  if (*last && (*last)->kind == KILN_LS_BARRIER) *last = NULL;
  *g->alloc_tail = thread;
  blk->body = g->allocs;
  g->k->body = blk;
  kiln_launch *l = kiln_arena_alloc(g->p->arena, sizeof *l);
  KILN_ASSERT(kiln_kernel_launch_of(g->k, l) == 0);
  g->k->launch = l;
}

static void schedule_kernel(kiln_program *p, kiln_kernel *k) {
  gr g = {.p = p, .k = k};
  kiln_ls *f = k->body;
  if (!f || (k->node && k->node->op == KILN_OP_CONV)) return;
  if (f->kind == KILN_LS_FOR && f->sched.parallel && !f->next && f->extent > 0) {
    /* form B, or left to schedule_gpu's thread per iteration */
    int64_t n = f->extent;
    const kiln_ls *in = f;
    kiln_ls *nx;
    while ((nx = kiln_schedule_inner_parallel((kiln_ls *)in)) != NULL && n <= INT64_MAX / nx->extent) {
      n *= nx->extent;
      in = nx;
    }
    if (n >= MAX_BLOCKS) return;
    int64_t row = 0;
    for (const kiln_ls *s = in->body; s; s = s->next)
      if (s->kind == KILN_LS_REDUCE && s->body && s->body->kind == KILN_LS_FOR && s->body->extent > row) row = s->body->extent;
    if (row < MIN_ROW) return;
    int64_t most = split_extent(&g, in->body);
    if (most < MIN_ROW) return;
    while ((nx = kiln_schedule_inner_parallel(f)) != NULL) kiln_schedule_collapse(p, k, f, nx);
    build(&g, f, f->body, most);
    return;
  }
  /* several top-level loops, each a parallel nest of at least a block's
   * threads of iterations (Concat's copies): schedule_gpu splits them into
   * one launch each, a thread per iteration -- better than one block
   * striding over all of them */
  int all_par = f->next != NULL;
  for (const kiln_ls *s = f; s && all_par; s = s->next) {
    all_par = s->kind == KILN_LS_FOR && s->sched.parallel && s->extent > 0;
    int64_t n = all_par ? s->extent : 0;
    const kiln_ls *in = s, *nx;
    while (n < MAX_THREADS && (nx = kiln_schedule_inner_parallel((kiln_ls *)in)) != NULL && n <= INT64_MAX / nx->extent)
      n *= nx->extent, in = nx;
    all_par = all_par && n >= MAX_THREADS;
  }
  if (all_par) return;
  /* one thread in schedule_gpu: one block, when there is enough to split */
  int64_t most = split_extent(&g, k->body);
  if (most < MIN_SPLIT) return;
  kiln_ls *blk = kiln_arena_alloc(p->arena, sizeof *blk);
  memset(blk, 0, sizeof *blk);
  blk->kind = KILN_LS_FOR;
  blk->var = k->nvars++;
  blk->extent = 1;
  build(&g, blk, k->body, most);
}

void kiln_schedule_reduce_gpu(kiln_program *p) {
  if (p->target.kind != KILN_TARGET_GPU) return;
  for (int i = 0; i < p->nkernels; i++)
    if (!p->kernels[i]->launch && !kiln_gpu_gemm_tiled(p->kernels[i]->node, NULL)) /* tiled by schedule_gpu */
      schedule_kernel(p, p->kernels[i]);
}
