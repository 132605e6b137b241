/* State buffers (KILN_BUF_STATE) and in-place updates: a hand-built
 * counter, s = s + step with s_next->aliases = s, lowered through the
 * pipeline and run repeatedly by the interpreter and by two JIT instances.
 * Expected values are the arithmetic s0 + r * step, not kiln's output. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/llvm/kiln_llvm.h"
#include "../../passes/lower.h"
#include "../../passes/pipeline.h"

static const float s0[3] = {0, 10, 20}, step[3] = {1, 2, 3};

/* s (state, initial s0) += step; outputs: s_next (the updated s) and
 * twice = 2 * s_next read through a Reshape. */
static kiln_graph *counter(int read_after_update) {
  kiln_graph *g = kiln_graph_new();
  g->file = "counter";
  int64_t d3[1] = {3}, d2[1] = {2};
  static const int64_t shape[2] = {1, 3};
  static const float two[1] = {2};
  kiln_value *s = kiln_value_const(g, "s", KILN_DT_F32, 1, d3, s0);
  s->kind = KILN_VALUE_STATE;
  kiln_value *c = kiln_value_const(g, "step", KILN_DT_F32, 1, d3, step);
  kiln_node *n = kiln_node_new(g, KILN_OP_ADD, "inc", 2, 1);
  kiln_node_set_input(n, 0, s);
  kiln_node_set_input(n, 1, c);
  kiln_value *y = kiln_value_new(g, "s_next", KILN_VALUE_ACTIVATION);
  kiln_node_set_output(n, 0, y);
  y->aliases = s;
  kiln_graph_add_output(g, y);
  kiln_node *r = kiln_node_new(g, KILN_OP_RESHAPE, "rs", 2, 1);
  kiln_node_set_input(r, 0, read_after_update ? s : y);
  kiln_node_set_input(r, 1, kiln_value_const(g, "shape", KILN_DT_I64, 1, d2, shape));
  kiln_value *z = kiln_value_new(g, "z", KILN_VALUE_ACTIVATION);
  kiln_node_set_output(r, 0, z);
  kiln_node *m = kiln_node_new(g, KILN_OP_MUL, "dbl", 2, 1);
  kiln_node_set_input(m, 0, z);
  kiln_node_set_input(m, 1, kiln_value_const(g, "two", KILN_DT_F32, 2, (int64_t[]){1, 1}, two));
  kiln_value *t = kiln_value_new(g, "twice", KILN_VALUE_ACTIVATION);
  kiln_node_set_output(m, 0, t);
  kiln_graph_add_output(g, t);
  return g;
}

static kiln_program *lower(kiln_graph *g, kiln_diag *d) {
  kiln_pipeline pl;
  kiln_pipeline_opts o = {.graph = g};
  if (kiln_pipeline_run(&o, &pl, d)) return NULL;
  return pl.program;
}

static const kiln_buf *find(const kiln_program *p, const char *name) {
  for (int i = 0; i < p->nbufs; i++)
    if (!strcmp(p->bufs[i]->name, name)) return p->bufs[i];
  return NULL;
}

Test(state, lowered_as_a_state_buffer_updated_in_place_and_verified) {
  kiln_diag d = {0};
  kiln_graph *g = counter(0);
  kiln_program *p = lower(g, &d);
  cr_assert(p, "%s", d.msg);
  const kiln_buf *s = find(p, "s");
  cr_assert(s && s->kind == KILN_BUF_STATE && s->data == s0);
  cr_assert_eq(p->state_bytes, 64, "one 12-byte buffer, 64-byte aligned");
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  /* the update stores into s itself: no other buffer named s_next but the output */
  const kiln_buf *out = find(p, "s_next");
  cr_assert(out && out->kind == KILN_BUF_OUTPUT);
  kiln_graph_free(g);
}

Test(state, interpreter_sees_each_run_update_the_state) {
  kiln_diag d = {0};
  kiln_graph *g = counter(0);
  kiln_program *p = lower(g, &d);
  cr_assert(p, "%s", d.msg);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  float outs[2][3];
  char *state = calloc(1, (size_t)p->state_bytes), *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  kiln_program_state_init(p, state);
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_OUTPUT) bufs[i] = outs[b->io_index];
    else if (b->kind == KILN_BUF_WEIGHT) bufs[i] = (void *)b->data;
    else if (b->kind == KILN_BUF_STATE) bufs[i] = state + b->offset;
    else bufs[i] = ws + b->offset;
  }
  for (int r = 1; r <= 3; r++) {
    for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
    for (int e = 0; e < 3; e++) {
      cr_assert_float_eq(outs[0][e], s0[e] + r * step[e], 0, "run %d elem %d", r, e);
      cr_assert_float_eq(outs[1][e], 2 * (s0[e] + r * step[e]), 0, "run %d elem %d", r, e);
    }
  }
  free(bufs);
  free(state);
  free(ws);
  kiln_graph_free(g);
}

static void run_jit(kiln_llvm_jit *j, const kiln_program *p, void *ws, float outs[2][3]) {
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  kiln_llvm_jit_bind(p, bufs, ws);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_OUTPUT) bufs[i] = outs[p->bufs[i]->io_index];
  kiln_llvm_jit_run(j, bufs);
  free(bufs);
}

Test(state, two_jit_instances_keep_their_own_state_across_runs) {
  kiln_diag d = {0};
  kiln_graph *g = counter(0);
  kiln_program *p = lower(g, &d);
  cr_assert(p, "%s", d.msg);
  kiln_llvm_jit *a = kiln_llvm_jit_compile(p, &d), *b = kiln_llvm_jit_compile(p, &d);
  cr_assert(a && b, "%s", d.msg);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  float outs[2][3];
  for (int r = 1; r <= 3; r++) {
    run_jit(a, p, ws, outs);
    for (int e = 0; e < 3; e++) {
      cr_assert_float_eq(outs[0][e], s0[e] + r * step[e], 0, "A run %d elem %d", r, e);
      cr_assert_float_eq(outs[1][e], 2 * (s0[e] + r * step[e]), 0, "A run %d elem %d", r, e);
    }
  }
  run_jit(b, p, ws, outs);
  for (int e = 0; e < 3; e++) cr_assert_float_eq(outs[0][e], s0[e] + step[e], 0, "B's first run, elem %d", e);
  int64_t bytes = 0;
  const float *sa = kiln_llvm_jit_state(a, p, &bytes);
  cr_assert_eq(bytes, p->state_bytes);
  for (int e = 0; e < 3; e++) cr_assert_float_eq(sa[e], s0[e] + 3 * step[e], 0);
  kiln_llvm_jit_free(a);
  kiln_llvm_jit_free(b);
  free(ws);
  kiln_graph_free(g);
}

Test(state, a_read_after_the_update_is_refused) {
  kiln_diag d = {0};
  kiln_graph *g = counter(1);
  cr_assert_null(lower(g, &d));
  cr_assert(strstr(d.msg, "node 'rs' (Reshape): reads 's' after node 'inc' updated it in place"), "%s", d.msg);
  kiln_graph_free(g);
}
