/* One walker over the loop IR, and the queries built on it.
 *
 * Passes and printers that need "every statement and expression under this
 * block" (which buffers a kernel touches, which locals it declares, the
 * live range of a buffer, the largest loop var) used to recurse over
 * kiln_ls/kiln_lx by hand, each with its own idea of which fields hold
 * children.  They now call kiln_walk_block with callbacks, or one of the
 * queries below.
 *
 * Order: a statement's pre callback, then its expressions (in the order
 * the statement evaluates them: STORE index then value; DECL/ASSIGN value;
 * IF condition), then its blocks (FOR body; IF body then orelse), then its
 * post callback; then the next statement of the block.  An expression is
 * visited pre-order (pre, operands a, b, c, post).  A pre callback that
 * returns KILN_WALK_SKIP skips what is under that node (post is still
 * called).  NULL operands and blocks are skipped silently (the verifier,
 * not the walker, reports them).
 *
 * Adding a statement or expression kind: kiln_walk_stmt's and walk_expr's
 * switches in loop_walk.c are the one place that says which fields of a
 * kind hold expressions and blocks.  Add the kind there (both switches
 * have no default, so -Wswitch names a missing kind) and every walker
 * user -- the C and LLVM printers' buffer and local scans, the memory
 * planner's live ranges, the verifier's and simplifier's local scans --
 * sees its children.  What a kind means stays with its users. */
#ifndef KILN_LOOP_WALK_H
#define KILN_LOOP_WALK_H

#include "loop.h"

enum { KILN_WALK_CONTINUE = 0, KILN_WALK_SKIP = 1 };
enum { KILN_WALK_MAX_LOOPS = 64 };

typedef struct kiln_walk kiln_walk;
struct kiln_walk {
  /* Callbacks, each optional (NULL: not called).  pre returns
   * KILN_WALK_CONTINUE or KILN_WALK_SKIP. */
  int (*stmt_pre)(kiln_walk *w, const kiln_ls *s);
  void (*stmt_post)(kiln_walk *w, const kiln_ls *s);
  int (*expr_pre)(kiln_walk *w, const kiln_lx *e);
  void (*expr_post)(kiln_walk *w, const kiln_lx *e);
  void *ctx;                 /* the caller's */
  /* Kept by the walker while it runs (read them in callbacks): */
  int depth;                 /* FOR loops enclosing the node visited (a FOR's own
                                callbacks and expressions see the depth outside it) */
  const kiln_ls *loops[KILN_WALK_MAX_LOOPS]; /* those loops, outermost first
                                (the first KILN_WALK_MAX_LOOPS of them) */
  const kiln_ls *stmt;       /* the statement whose expressions are being visited */
};

/* s and the statements after it in its block (s->next ...). */
void kiln_walk_block(kiln_walk *w, const kiln_ls *s);
/* s alone (not s->next), with what is under it. */
void kiln_walk_stmt(kiln_walk *w, const kiln_ls *s);
/* e and its operands. */
void kiln_walk_expr(kiln_walk *w, const kiln_lx *e);

/* ---- queries (each walks a block: s and its next statements) ---- */
enum { KILN_USE_READ = 1, KILN_USE_WRITE = 2 };
/* used[buf->id] |= KILN_USE_READ for every load, KILN_USE_WRITE for every
 * store of a program buffer (used: one entry per buffer of the program,
 * zeroed by the caller; SHARED/LOCAL buffers are a GPU kernel's own,
 * numbered in kernel->allocs, and are skipped). */
void kiln_loop_bufs_used(const kiln_ls *s, unsigned char *used);
/* The same for s alone (not s->next). */
void kiln_loop_bufs_used_stmt(const kiln_ls *s, unsigned char *used);

enum { KILN_LOCAL_DECLARED = 1, KILN_LOCAL_ASSIGNED = 2, KILN_LOCAL_READ = 4 };
/* flags[var] |= the above for every DECL, ASSIGN and read of a local
 * (flags: one entry per local of the kernel, zeroed by the caller; vars
 * outside [0, nlocals) are ignored). */
void kiln_loop_locals(const kiln_ls *s, int nlocals, unsigned char *flags);

/* 1 + the largest loop var a FOR under s binds; 0 when there is none. */
int kiln_loop_nvars(const kiln_ls *s);

#endif
