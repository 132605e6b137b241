/* The loop-IR walker (loop_walk.h): the one place that knows which fields
 * of each statement and expression kind hold children, and the queries
 * every printer and pass shares (buffers used, locals, loop vars).  The
 * walker recurses as the IR nests (blocks and expression trees are as deep
 * as the lowering built them, as in every printer). */
#include "loop_walk.h"

static void walk_expr(kiln_walk *w, const kiln_lx *e) {
  if (!e) return;
  if (!w->expr_pre || w->expr_pre(w, e) == KILN_WALK_CONTINUE) {
    switch (e->kind) {
    case KILN_LX_CONST:
    case KILN_LX_INDEX:
    case KILN_LX_LOCAL: break;
    case KILN_LX_LOAD:
    case KILN_LX_UN:
    case KILN_LX_CAST: walk_expr(w, e->a); break;
    case KILN_LX_BIN: walk_expr(w, e->a); walk_expr(w, e->b); break;
    case KILN_LX_SELECT:
    case KILN_LX_FMA: walk_expr(w, e->a); walk_expr(w, e->b); walk_expr(w, e->c); break;
    }
  }
  if (w->expr_post) w->expr_post(w, e);
}

void kiln_walk_expr(kiln_walk *w, const kiln_lx *e) { walk_expr(w, e); }

/* A statement's expressions, visited with w->stmt set to it. */
static void walk_operand(kiln_walk *w, const kiln_ls *s, const kiln_lx *e) {
  if (!w->expr_pre && !w->expr_post) return; /* nothing to call under e */
  const kiln_ls *outer = w->stmt;
  w->stmt = s;
  walk_expr(w, e);
  w->stmt = outer;
}

void kiln_walk_stmt(kiln_walk *w, const kiln_ls *s) {
  if (!s) return;
  if (!w->stmt_pre || w->stmt_pre(w, s) == KILN_WALK_CONTINUE) {
    switch (s->kind) {
    case KILN_LS_FOR:
      if (w->depth < KILN_WALK_MAX_LOOPS) w->loops[w->depth] = s;
      w->depth++;
      kiln_walk_block(w, s->body);
      w->depth--;
      break;
    case KILN_LS_STORE:
      walk_operand(w, s, s->index);
      walk_operand(w, s, s->value);
      break;
    case KILN_LS_PREFETCH: walk_operand(w, s, s->index); break;
    case KILN_LS_DECL:
    case KILN_LS_ASSIGN: walk_operand(w, s, s->value); break;
    case KILN_LS_IF:
      walk_operand(w, s, s->value);
      kiln_walk_block(w, s->body);
      kiln_walk_block(w, s->orelse);
      break;
    case KILN_LS_REDUCE: /* value: the initial value; body: the contributions */
      walk_operand(w, s, s->value);
      kiln_walk_block(w, s->body);
      break;
    case KILN_LS_COMBINE: walk_operand(w, s, s->value); break;
    case KILN_LS_BARRIER:
    case KILN_LS_MMA: /* (LOCAL fragments: no expression) */
    case KILN_LS_ALLOC: break;
    }
  }
  if (w->stmt_post) w->stmt_post(w, s);
}

void kiln_walk_block(kiln_walk *w, const kiln_ls *s) {
  for (; s; s = s->next) kiln_walk_stmt(w, s);
}

/* ---- queries ---- */

static int bufs_load(kiln_walk *w, const kiln_lx *e) {
  if (e->kind == KILN_LX_LOAD && e->buf && e->buf->scope == KILN_SCOPE_GLOBAL) ((unsigned char *)w->ctx)[e->buf->id] |= KILN_USE_READ;
  return KILN_WALK_CONTINUE;
}
static int bufs_store(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_STORE && s->buf && s->buf->scope == KILN_SCOPE_GLOBAL) ((unsigned char *)w->ctx)[s->buf->id] |= KILN_USE_WRITE;
  /* a prefetch reads nothing, but its buffer must be live and at hand (a
   * kernel's base pointers come from this list) */
  if (s->kind == KILN_LS_PREFETCH && s->buf && s->buf->scope == KILN_SCOPE_GLOBAL) ((unsigned char *)w->ctx)[s->buf->id] |= KILN_USE_READ;
  return KILN_WALK_CONTINUE;
}

void kiln_loop_bufs_used(const kiln_ls *s, unsigned char *used) {
  kiln_walk w = {.stmt_pre = bufs_store, .expr_pre = bufs_load, .ctx = used};
  kiln_walk_block(&w, s);
}

void kiln_loop_bufs_used_stmt(const kiln_ls *s, unsigned char *used) {
  kiln_walk w = {.stmt_pre = bufs_store, .expr_pre = bufs_load, .ctx = used};
  kiln_walk_stmt(&w, s);
}

typedef struct locals_ctx { int n; unsigned char *flags; } locals_ctx;

static void local_flag(locals_ctx *c, int var, unsigned char flag) {
  if (var >= 0 && var < c->n) c->flags[var] |= flag;
}
static int locals_read(kiln_walk *w, const kiln_lx *e) {
  if (e->kind == KILN_LX_LOCAL) local_flag(w->ctx, e->var, KILN_LOCAL_READ);
  return KILN_WALK_CONTINUE;
}
static int locals_written(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_DECL) local_flag(w->ctx, s->var, KILN_LOCAL_DECLARED);
  if (s->kind == KILN_LS_ASSIGN) local_flag(w->ctx, s->var, KILN_LOCAL_ASSIGNED);
  /* a reduction declares its local and its combines update it */
  if (s->kind == KILN_LS_REDUCE) local_flag(w->ctx, s->var, KILN_LOCAL_DECLARED | KILN_LOCAL_ASSIGNED);
  if (s->kind == KILN_LS_COMBINE) local_flag(w->ctx, s->var, KILN_LOCAL_ASSIGNED);
  return KILN_WALK_CONTINUE;
}

void kiln_loop_locals(const kiln_ls *s, int nlocals, unsigned char *flags) {
  locals_ctx c = {nlocals, flags};
  kiln_walk w = {.stmt_pre = locals_written, .expr_pre = locals_read, .ctx = &c};
  kiln_walk_block(&w, s);
}

static int nvars_for(kiln_walk *w, const kiln_ls *s) {
  int *m = w->ctx;
  if (s->kind == KILN_LS_FOR && s->var + 1 > *m) *m = s->var + 1;
  return KILN_WALK_CONTINUE;
}

int kiln_loop_nvars(const kiln_ls *s) {
  int m = 0;
  kiln_walk w = {.stmt_pre = nvars_for, .ctx = &m};
  kiln_walk_block(&w, s);
  return m;
}
