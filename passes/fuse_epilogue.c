/* fuse_epilogue: graph -> graph where each Conv, ConvTranspose, Gemm,
 * MatMul, kiln.ConvGradWeight or elementwise node whose result only feeds a chain of
 * elementwise nodes has that chain in its epilogue (kiln_node_fuse).
 *
 * How it works: one walk in graph order.  At a producer (not itself fused
 * into another node, no epilogue yet), follow its output: while the value
 * is read by exactly one node slot-wise (uses == 1 and no graph output),
 * that reader is elementwise and not yet claimed, append it as the next
 * step, then ask kiln_epilogue_refusal (lower_store.c, the one statement of
 * what the store can compute: same shape, plain operands, no second
 * output...) whether the chain is still computable; if not, take the step
 * back and stop.  The fused kernel runs where the last step stands
 * (passes/lower.c), so every operand a step reads -- a residual, a bias --
 * is already computed there: the graph is in topological order and each
 * operand is defined before the step that reads it.  What moving the
 * producer's computation later could change is an input of the chain
 * updated in place (value->aliases, state) in between: a chain never
 * grows across a node that updates a value in place, nor into a step
 * whose output is such an update.
 *
 * The graph keeps every node (the steps are ordinary nodes with
 * fused_into set); only lowering reads the epilogues.  Views (views.c) are
 * unaffected: the producer's output is read only by the first step, so
 * it is never a Reshape input or a Concat slice, and the last step's
 * output is stored by the fused kernel into whatever buffer (view or not)
 * lowering gives it. */
#include "lower.h"
#include "passes.h"

static int is_producer(const kiln_node *n) {
  const kiln_op_info *info = kiln_op_get(n->op);
  return n->op == KILN_OP_CONV || n->op == KILN_OP_CONV_TRANSPOSE || n->op == KILN_OP_GEMM ||
         n->op == KILN_OP_MATMUL || n->op == KILN_OP_CONV_GRAD_WEIGHT ||
         (info->lower == kiln_lower_elementwise && info->scalar);
}

static int is_step(const kiln_node *n) {
  const kiln_op_info *info = kiln_op_get(n->op);
  return !n->dead && !n->fused_into && n->epi.nsteps == 0 && info->lower == kiln_lower_elementwise && info->scalar &&
         n->nout >= 1 && n->out[0] && !n->out[0]->aliases;
}

/* n writes a value in place (an optimizer step, a state update). */
static int updates_in_place(const kiln_node *n) {
  for (int k = 0; k < n->nout; k++)
    if (n->out[k] && n->out[k]->aliases) return 1;
  return 0;
}

int kiln_epilogue_try_append(kiln_graph *g, kiln_node *into, kiln_node *step, int from, int to) {
  for (int m = from + 1; m < to; m++)
    if (!g->nodes[m]->dead && updates_in_place(g->nodes[m])) return 0;
  kiln_node_fuse(g, into, step);
  kiln_epi_refusal r;
  if (kiln_epilogue_refusal(g, into, &r)) { /* not computable: the step stays a kernel of its own */
    into->epi.nsteps--;
    step->fused_into = NULL;
    return 0;
  }
  return 1;
}

int kiln_pass_fuse_epilogue(kiln_graph *g, kiln_diag *d) {
  (void)d;
  size_t nv = (size_t)g->nvalues + 1;
  /* reader[v]: the (live) node reading value v; pos[v]: that node's index */
  kiln_node **reader = kiln_arena_array(&g->arena, nv, sizeof *reader);
  int *pos = kiln_arena_array(&g->arena, nv, sizeof *pos);
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    for (int k = 0; k < n->nin && !n->dead; k++)
      if (n->in[k]) { reader[n->in[k]->id] = n; pos[n->in[k]->id] = i; }
  }
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *p = g->nodes[i];
    if (p->dead || p->fused_into || p->epi.nsteps || p->nout < 1 || !p->out[0] || p->out[0]->aliases ||
        !is_producer(p))
      continue;
    const kiln_value *cur = p->out[0];
    int at = i; /* the chain's last node so far */
    for (;;) {
      if (cur->is_output || cur->uses != 1 || !reader[cur->id]) break;
      kiln_node *st = reader[cur->id];
      int j = pos[cur->id];
      if (!is_step(st)) break;
      if (!kiln_epilogue_try_append(g, p, st, at, j)) break;
      cur = st->out[0];
      at = j;
    }
  }
  return 0;
}
