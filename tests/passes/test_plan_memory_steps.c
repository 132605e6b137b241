/* plan-memory's steps and the plain plan (passes/plan_memory.c), and
 * kiln_inplace_ok's trust in kiln_kernel.stores_once (plan_inplace.c), on
 * hand-built programs of 128-byte buffers (reversed copies, so that none
 * may run in place):
 *   k0: A[i] = 1
 *   k1: S[i] = A[31 - i]     (S: kernel scratch; A's last read)
 *       B[i] = S[31 - i]     (B's first write)
 *   k2: C[i] = B[31 - i]
 * In steps (a CPU kernel's top-level statements) at most two buffers are
 * live at once: 256 bytes.  The same kernels on a GPU (k1 one launch: its
 * statements run concurrently) hold A, S and B together: 384.  The plain
 * plan (no scratch, whole kernels) holds A and B in k1: 256 either way. */
#include <criterion/criterion.h>

#include "../../passes/lower.h"

typedef struct fix { kiln_graph *g; kiln_program *p; kiln_lb b; kiln_buf *a, *s, *bb, *c; } fix;

static kiln_buf *buf(fix *f, const char *name) {
  kiln_value v = {.name = name, .dtype = KILN_DT_F32, .rank = 1, .dims = {32}};
  return kiln_program_add_buf(f->p, &v, KILN_BUF_WORKSPACE);
}

/* for i < 32: dst[i] = src ? src[31 - i] : 1 */
static void copy(fix *f, const kiln_buf *dst, const kiln_buf *src) {
  kiln_lx *i = kiln_lx_index(&f->b, kiln_lb_for(&f->b, 32, (kiln_sched){.parallel = 1}));
  kiln_lx *r = kiln_lx_iadd(&f->b, kiln_lx_imul(&f->b, i, -1), kiln_lx_const_i(&f->b, 31));
  kiln_lb_store(&f->b, dst, i, src ? kiln_lx_load(&f->b, src, r) : kiln_lx_const_f(&f->b, KILN_DT_F32, 1));
  kiln_lb_end(&f->b);
}

static void empty(fix *f) {
  f->g = kiln_graph_new();
  f->p = kiln_arena_alloc(&f->g->arena, sizeof *f->p);
  f->p->arena = &f->g->arena;
  f->p->graph = f->g;
  f->b = (kiln_lb){.p = f->p};
}

static void build(fix *f, int gpu) {
  static const kiln_launch one = {{1, 1, 1}, {32, 1, 1}};
  empty(f);
  f->a = buf(f, "A"), f->s = buf(f, "S"), f->bb = buf(f, "B"), f->c = buf(f, "C");
  f->s->scratch = 1;
  kiln_lb_kernel(&f->b, "k0", NULL);
  copy(f, f->a, NULL);
  kiln_lb_kernel(&f->b, "k1", NULL);
  copy(f, f->s, f->a);
  copy(f, f->bb, f->s);
  if (gpu) f->p->kernels[1]->launch = &one;
  kiln_lb_kernel(&f->b, "k2", NULL);
  copy(f, f->c, f->bb);
  kiln_plan_memory(f->p);
}

static int overlap(const kiln_buf *x, const kiln_buf *y) {
  return x->offset < y->offset + 128 && y->offset < x->offset + 128;
}

Test(plan_memory_steps, cpu_scratch_shares_with_what_is_dead_at_its_step) {
  fix f;
  build(&f, 0);
  cr_assert_eq(f.p->workspace_bytes, 256);
  cr_assert_eq(f.p->plain_workspace_bytes, 256);
  cr_assert_not(overlap(f.a, f.s), "A is read while S is written");
  cr_assert_not(overlap(f.s, f.bb), "S is read while B is written");
  cr_assert_not(overlap(f.bb, f.c));
  kiln_graph_free(f.g);
}

Test(plan_memory_steps, gpu_kernel_is_one_step) {
  fix f;
  build(&f, 1);
  cr_assert_eq(f.p->workspace_bytes, 384);
  cr_assert_eq(f.p->plain_workspace_bytes, 256);
  cr_assert_not(overlap(f.a, f.s));
  cr_assert_not(overlap(f.a, f.bb));
  cr_assert_not(overlap(f.s, f.bb));
  kiln_graph_free(f.g);
}

/* out[i] = in[i] + 1 in two statements (i < 16, then 16 + i < 32); with
 * shift, the second reads in[i + 17] instead (another element). */
static const kiln_kernel *two_stores(fix *f, kiln_buf *out, kiln_buf *in, int shift) {
  kiln_lb *b = &f->b;
  kiln_lb_kernel(b, "k", NULL);
  for (int half = 0; half < 2; half++) {
    kiln_lx *i = kiln_lx_iadd(b, kiln_lx_index(b, kiln_lb_for(b, 16, (kiln_sched){0})), kiln_lx_const_i(b, 16 * half));
    kiln_lx *at = half && shift ? kiln_lx_iadd(b, i, kiln_lx_const_i(b, 1)) : i;
    kiln_lb_store(b, out, i, kiln_lx_bin(b, KILN_BIN_ADD, kiln_lx_load(b, in, at), kiln_lx_const_f(b, KILN_DT_F32, 1)));
    kiln_lb_end(b);
  }
  return f->p->kernels[f->p->nkernels - 1];
}

Test(plan_memory_steps, stores_once_lets_many_stores_run_in_place) {
  fix f;
  empty(&f);
  kiln_buf *in = buf(&f, "in"), *out = buf(&f, "out");
  kiln_kernel *k = (kiln_kernel *)two_stores(&f, out, in, 0);
  cr_assert_not(kiln_inplace_ok(k, out, in), "two stores, no word from the lowering");
  k->stores_once = out;
  cr_assert(kiln_inplace_ok(k, out, in));
  kiln_graph_free(f.g);
}

Test(plan_memory_steps, stores_once_still_needs_reads_at_the_stored_index) {
  fix f;
  empty(&f);
  kiln_buf *in = buf(&f, "in"), *out = buf(&f, "out");
  kiln_kernel *k = (kiln_kernel *)two_stores(&f, out, in, 1);
  k->stores_once = out;
  cr_assert_not(kiln_inplace_ok(k, out, in), "in[i + 1] may already be overwritten");
  kiln_graph_free(f.g);
}
