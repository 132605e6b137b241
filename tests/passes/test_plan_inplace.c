/* kiln_inplace_ok (passes/plan_inplace.c) on hand-built kernels: an
 * elementwise store may overwrite its input; a transposed read, a store
 * that skips a loop (two iterations write one element), a read of the
 * output, a read of the input outside the store, and a store under a
 * conditional may not. */
#include <criterion/criterion.h>

#include "../../passes/lower.h"

typedef struct fix { kiln_graph *g; kiln_program *p; kiln_lb b; kiln_buf *in, *out; } fix;

static void setup(fix *f) {
  f->g = kiln_graph_new();
  f->p = kiln_arena_alloc(&f->g->arena, sizeof *f->p);
  f->p->arena = &f->g->arena;
  f->p->graph = f->g;
  f->b = (kiln_lb){.p = f->p};
  kiln_value v = {.name = "in", .dtype = KILN_DT_F32, .rank = 2, .dims = {4, 8}};
  f->in = kiln_program_add_buf(f->p, &v, KILN_BUF_WORKSPACE);
  v.name = "out";
  f->out = kiln_program_add_buf(f->p, &v, KILN_BUF_WORKSPACE);
  kiln_lb_kernel(&f->b, "k", NULL);
}

/* for i < 4, j < 8: out[oi * i + oj * j] = relu(in[ii * i + ij * j]) */
static const kiln_kernel *kernel(fix *f, int64_t oi, int64_t oj, int64_t ii, int64_t ij, int extra) {
  kiln_lb *b = &f->b;
  kiln_sched s = {0};
  kiln_lx *i = kiln_lx_index(b, kiln_lb_for(b, 4, s));
  kiln_lx *j = kiln_lx_index(b, kiln_lb_for(b, 8, s));
  kiln_lx *oidx = kiln_lx_iadd(b, kiln_lx_imul(b, i, oi), kiln_lx_imul(b, j, oj));
  kiln_lx *iidx = kiln_lx_iadd(b, kiln_lx_imul(b, i, ii), kiln_lx_imul(b, j, ij));
  kiln_lx *v = kiln_lx_bin(b, KILN_BIN_MAX, kiln_lx_load(b, f->in, iidx), kiln_lx_const_f(b, KILN_DT_F32, 0));
  if (extra == 1) v = kiln_lx_bin(b, KILN_BIN_ADD, v, kiln_lx_load(b, f->out, oidx));
  if (extra == 2) kiln_lb_decl(b, KILN_DT_F32, kiln_lx_load(b, f->in, iidx));
  if (extra == 3) kiln_lb_if(b, kiln_lx_bin(b, KILN_BIN_LT, i, kiln_lx_const_i(b, 2)));
  kiln_lb_store(b, f->out, oidx, v);
  if (extra == 3) kiln_lb_end(b);
  kiln_lb_end(b);
  kiln_lb_end(b);
  return f->p->kernels[0];
}

Test(plan_inplace, elementwise_row_major_store_may_overwrite_its_input) {
  fix f;
  setup(&f);
  cr_assert(kiln_inplace_ok(kernel(&f, 8, 1, 8, 1, 0), f.out, f.in));
  kiln_graph_free(f.g);
}

Test(plan_inplace, column_major_is_injective_too) {
  fix f;
  setup(&f);
  cr_assert(kiln_inplace_ok(kernel(&f, 1, 4, 1, 4, 0), f.out, f.in));
  kiln_graph_free(f.g);
}

Test(plan_inplace, transposed_read_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 8, 1, 1, 4, 0), f.out, f.in));
  kiln_graph_free(f.g);
}

Test(plan_inplace, store_that_skips_a_loop_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 0, 1, 0, 1, 0), f.out, f.in), "j only: i's iterations rewrite one row");
  kiln_graph_free(f.g);
}

Test(plan_inplace, overlapping_radix_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 4, 1, 4, 1, 0), f.out, f.in), "i*4 + j with j < 8 repeats elements");
  kiln_graph_free(f.g);
}

Test(plan_inplace, reading_the_output_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 8, 1, 8, 1, 1), f.out, f.in));
  kiln_graph_free(f.g);
}

Test(plan_inplace, reading_the_input_outside_the_store_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 8, 1, 8, 1, 2), f.out, f.in));
  kiln_graph_free(f.g);
}

Test(plan_inplace, store_under_a_condition_may_not) {
  fix f;
  setup(&f);
  cr_assert_not(kiln_inplace_ok(kernel(&f, 8, 1, 8, 1, 3), f.out, f.in));
  kiln_graph_free(f.g);
}
