/* Constant folding by lowering: a node whose inputs are all constants is
 * lowered to its kernel exactly as for run time (ops.def's `lower` and
 * `scalar` columns) and the kernel is run by the loop IR interpreter
 * (ir/loop_eval.c).  So the folder has no per-op switch of its own and
 * cannot disagree with the backends: Relu(NaN), Cast(300.0 -> i8),
 * Div(x, 0) fold to what `kiln run` computes, by ir/loop.h's semantics.
 *
 * The interpreter walks trees (tens of ns per expression node), so folding
 * is capped at FOLD_EVAL_LIMIT elements per output: enough for shape
 * arithmetic and small constants; larger constant subgraphs run at run
 * time, with the same result.  A node whose lowering fails (an op form
 * kiln cannot lower) is left for the lowering to report. */
#include "../ir/shape.h"
#include "lower.h"

enum { FOLD_EVAL_LIMIT = 1 << 16 };

int kiln_fold_lowered(kiln_shape_ctx *c, kiln_node *n) {
  kiln_graph *g = c->g;
  for (int k = 0; k < n->nout; k++)
    if (n->out[k] && kiln_value_numel(n->out[k], 1) > FOLD_EVAL_LIMIT) return 1;
  kiln_arena a;
  kiln_arena_init(&a);
  kiln_program *p = kiln_arena_alloc(&a, sizeof *p);
  p->arena = &a;
  p->graph = g;
  kiln_diag d = {0};
  p->target = kiln_target_default(); /* evaluated, never printed: any target computes the same values */
  kiln_lctx L = {.g = g, .d = &d, .target = &p->target};
  L.b.p = p;
  L.buf_of = kiln_arena_array(&a, (size_t)g->nvalues + 1, sizeof *L.buf_of);
  for (int k = 0; k < n->nin; k++)
    if (n->in[k]) kiln_lower_buf(&L, n->in[k]);
  for (int k = 0; k < n->nout; k++)
    if (n->out[k]) kiln_lower_buf(&L, n->out[k]);
  int rc = 1;
  if (kiln_op_get(n->op)->lower(&L, n) == 0) {
    /* inputs: their constant data; outputs: new constants in the graph's
     * arena; scratch the lowering asked for: temporary */
    void **bufs = kiln_arena_array(&a, (size_t)p->nbufs + 1, sizeof *bufs);
    void **outs = kiln_arena_array(&a, (size_t)n->nout + 1, sizeof *outs);
    for (int k = 0; k < n->nin; k++)
      if (n->in[k]) bufs[L.buf_of[n->in[k]->id]->id] = (void *)n->in[k]->data;
    for (int k = 0; k < n->nout; k++)
      if (n->out[k]) bufs[L.buf_of[n->out[k]->id]->id] = outs[k] =
                         kiln_arena_alloc(&g->arena, kiln_value_nbytes(n->out[k]) + 8);
    for (int i = 0; i < p->nbufs; i++) /* weights the lowering made (kiln_lower_weight_ct) */
      if (!bufs[i] && p->bufs[i]->kind == KILN_BUF_WEIGHT && p->bufs[i]->data) bufs[i] = (void *)p->bufs[i]->data;
    for (int i = 0; i < p->nbufs; i++)
      if (!bufs[i]) bufs[i] = kiln_arena_array(&a, (size_t)p->bufs[i]->numel + 1, kiln_dtype_size(p->bufs[i]->dtype));
    rc = 0;
    kiln_expand_reduce(p); /* reductions exactly as run time computes them */
    for (int i = 0; i < p->nkernels && rc == 0; i++)
      if (kiln_loop_eval(p, p->kernels[i], bufs)) rc = 1; /* an index out of range: run time's business */
    for (int k = 0; k < n->nout && rc == 0; k++)
      if (n->out[k]) kiln_fold_set(c, n, k, outs[k]);
  }
  kiln_arena_free(&a);
  return rc;
}
