/* shape_inputs: which values' contents decide a shape.
 *
 * kiln compiles for static shapes, so an op input marked `#` in ir/ops.def
 * (Reshape's shape, Pad's pads, Resize's scales, Clip's bounds, Reduce
 * axes...) must be known at compile time.  When such an input comes from a
 * graph input, the CLI binds the user's value as a constant (kiln run
 * --input, kiln compile/emit-c --const) before shape inference.  This pass
 * says which graph inputs need that: those read by a `#` slot and,
 * transitively, the inputs of nodes computing such values (except Shape,
 * which reads only its input's shape, not its contents). */
#include <stdlib.h>

#include "passes.h"

char *kiln_pass_shape_deciding(const kiln_graph *g) {
  char *mark = calloc((size_t)g->nvalues + 1, 1);
  if (!mark) return NULL;
  for (int i = g->nnodes - 1; i >= 0; i--) {
    const kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    int needed = 0;
    for (int k = 0; k < n->nout; k++) needed |= n->out[k] && mark[n->out[k]->id];
    for (int k = 0; k < n->nin; k++) {
      kiln_slot s;
      if (!n->in[k]) continue;
      kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s);
      if (s.constant || (needed && n->op != KILN_OP_SHAPE)) mark[n->in[k]->id] = 1;
    }
  }
  return mark;
}
