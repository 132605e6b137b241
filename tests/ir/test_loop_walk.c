/* The loop-IR walker (ir/loop_walk.c) on one hand-built kernel: the order
 * it visits statements and expressions in (written out below from the
 * header's contract), the depth and enclosing loops it reports, SKIP, and
 * the queries (buffers used, locals, loop vars) with their expected
 * results worked out by hand from the kernel. */
#include "ir/loop_walk.h"
#include "ir_test.h"

static kiln_program *P;
static kiln_buf *in8, *out8, *ws8;
static kiln_lb B;

/* The kernel under test (loop vars i0, i1; locals t0, t1):
 *
 *   t0 : f32 = 0                      -- DECL
 *   for i0 in 0..8:                   -- FOR
 *     if (i0 < 4):                    -- IF
 *       ws[i0] = in[i0]               -- STORE
 *     else:
 *       t0 = (t0 + in[i0])            -- ASSIGN
 *     for i1 in 0..2:                 -- FOR
 *       t1 : f32 = ws[i1]             -- DECL
 *       barrier                       -- BARRIER
 *   out[0] = t0                       -- STORE
 */
static void setup(void) {
  graph_setup();
  P = t_program();
  in8 = t_buf(P, "in", 8, KILN_BUF_INPUT, NULL);
  out8 = t_buf(P, "out", 8, KILN_BUF_OUTPUT, NULL);
  ws8 = t_buf(P, "ws", 8, KILN_BUF_WORKSPACE, NULL);
  B = (kiln_lb){.p = P};
  kiln_lb_kernel(&B, "k0", kiln_node_new(g, KILN_OP_RELU, "n0", 1, 1));

  int t0 = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_const_f(&B, KILN_DT_F32, 0));
  int i0 = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_if(&B, kiln_lx_bin(&B, KILN_BIN_LT, kiln_lx_index(&B, i0), kiln_lx_const_i(&B, 4)));
  kiln_lb_store(&B, ws8, kiln_lx_index(&B, i0), kiln_lx_load(&B, in8, kiln_lx_index(&B, i0)));
  kiln_lb_else(&B);
  kiln_lb_assign(&B, t0, kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_local(&B, t0), kiln_lx_load(&B, in8, kiln_lx_index(&B, i0))));
  kiln_lb_end(&B);
  int i1 = kiln_lb_for(&B, 2, (kiln_sched){0});
  kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, ws8, kiln_lx_index(&B, i1)));
  kiln_ls *bar = kiln_arena_alloc(P->arena, sizeof *bar);
  bar->kind = KILN_LS_BARRIER;
  *B.tail = bar;
  B.tail = &bar->next;
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_store(&B, out8, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t0));
}

TestSuite(walk, .init = setup, .fini = graph_teardown);

static const kiln_ls *body(void) { return P->kernels[0]->body; }

/* A trace of the visit: one token per callback. */
typedef struct trace { char s[1024]; int skip_if; } trace;

static void put(kiln_walk *w, const char *what, int depth) {
  trace *t = w->ctx;
  size_t n = strlen(t->s);
  snprintf(t->s + n, sizeof t->s - n, "%s%s@%d", n ? " " : "", what, depth);
}
static const char *ls_name(const kiln_ls *s) {
  static const char *const names[] = {"FOR", "STORE", "DECL", "ASSIGN", "IF", "BARRIER"};
  return names[s->kind];
}
static const char *lx_name(const kiln_lx *e) {
  static const char *const names[] = {"const", "index", "local", "load", "un", "bin", "select", "cast"};
  return names[e->kind];
}
static int s_pre(kiln_walk *w, const kiln_ls *s) {
  put(w, ls_name(s), w->depth);
  return s->kind == KILN_LS_IF && ((trace *)w->ctx)->skip_if ? KILN_WALK_SKIP : KILN_WALK_CONTINUE;
}
static void s_post(kiln_walk *w, const kiln_ls *s) {
  char b[16];
  snprintf(b, sizeof b, "/%s", ls_name(s));
  put(w, b, w->depth);
}
static int x_pre(kiln_walk *w, const kiln_lx *e) {
  cr_assert(w->stmt != NULL, "an expression is visited with its statement set");
  put(w, lx_name(e), w->depth);
  return KILN_WALK_CONTINUE;
}

Test(walk, visits_in_evaluation_order_with_depth) {
  trace t = {0};
  kiln_walk w = {.stmt_pre = s_pre, .stmt_post = s_post, .expr_pre = x_pre, .ctx = &t};
  kiln_walk_block(&w, body());
  cr_assert_str_eq(t.s,
                   "DECL@0 const@0 /DECL@0 "
                   "FOR@0 "
                   "IF@1 bin@1 index@1 const@1 "
                   "STORE@1 index@1 load@1 index@1 /STORE@1 "
                   "ASSIGN@1 bin@1 local@1 load@1 index@1 /ASSIGN@1 "
                   "/IF@1 "
                   "FOR@1 DECL@2 load@2 index@2 /DECL@2 BARRIER@2 /BARRIER@2 /FOR@1 "
                   "/FOR@0 "
                   "STORE@0 const@0 local@0 /STORE@0");
  cr_assert_eq(w.depth, 0);
}

Test(walk, skip_leaves_out_what_is_under_a_node) {
  trace t = {.skip_if = 1};
  kiln_walk w = {.stmt_pre = s_pre, .stmt_post = s_post, .ctx = &t};
  kiln_walk_stmt(&w, body()->next); /* the FOR alone */
  cr_assert_str_eq(t.s, "FOR@0 IF@1 /IF@1 FOR@1 DECL@2 /DECL@2 BARRIER@2 /BARRIER@2 /FOR@1 /FOR@0");
}

/* The enclosing loops at the barrier: i0's FOR then i1's. */
static int at_barrier(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_BARRIER) {
    const kiln_ls **seen = w->ctx;
    seen[0] = w->loops[0];
    seen[1] = w->loops[1];
  }
  return KILN_WALK_CONTINUE;
}

Test(walk, reports_enclosing_loops) {
  const kiln_ls *seen[2] = {0};
  kiln_walk w = {.stmt_pre = at_barrier, .ctx = seen};
  kiln_walk_block(&w, body());
  cr_assert(seen[0] && seen[0]->kind == KILN_LS_FOR && seen[0]->var == 0 && seen[0]->extent == 8);
  cr_assert(seen[1] && seen[1]->kind == KILN_LS_FOR && seen[1]->var == 1 && seen[1]->extent == 2);
}

Test(walk, buffers_used) {
  unsigned char used[3] = {0};
  kiln_loop_bufs_used(body(), used);
  cr_assert_eq(used[in8->id], KILN_USE_READ);
  cr_assert_eq(used[out8->id], KILN_USE_WRITE);
  cr_assert_eq(used[ws8->id], KILN_USE_READ | KILN_USE_WRITE);
  /* the inner loop alone reads ws only */
  unsigned char inner[3] = {0};
  const kiln_ls *inner_for = body()->next->body->next;
  cr_assert_eq(inner_for->kind, KILN_LS_FOR);
  kiln_loop_bufs_used(inner_for, inner);
  cr_assert(inner[in8->id] == 0 && inner[out8->id] == 0 && inner[ws8->id] == KILN_USE_READ);
}

Test(walk, locals) {
  unsigned char f[2] = {0};
  kiln_loop_locals(body(), 2, f);
  cr_assert_eq(f[0], KILN_LOCAL_DECLARED | KILN_LOCAL_ASSIGNED | KILN_LOCAL_READ);
  cr_assert_eq(f[1], KILN_LOCAL_DECLARED);
  unsigned char g1[1] = {0}; /* vars past nlocals are ignored, not written */
  kiln_loop_locals(body(), 1, g1);
  cr_assert_eq(g1[0], KILN_LOCAL_DECLARED | KILN_LOCAL_ASSIGNED | KILN_LOCAL_READ);
}

Test(walk, loop_vars) {
  cr_assert_eq(kiln_loop_nvars(body()), 2);
  cr_assert_eq(kiln_loop_nvars(body()->next->body), 2); /* IF, then the i1 loop */
  cr_assert_eq(kiln_loop_nvars(NULL), 0);
}
