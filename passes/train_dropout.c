/* Dropout in a training step (part of the train pass): every Dropout with
 * a nonzero ratio runs in training mode, whatever its training_mode input
 * says (the model was exported for inference; training is why we are
 * here), as
 *   mask = kiln.DropoutMask(X, step)   0 or 1 / (1 - ratio) per element
 *   Y    = Mul(X, mask)                the Dropout node itself, turned into a Mul
 * and, when the model asks for Dropout's bool mask output, mask != 0 by a
 * Cast.  The mask is a tensor computed once per step and read twice: by
 * this Mul and by its gradient's (dX = dY * mask, Mul's own rule), two
 * plain elementwise Muls that fuse like any other.  DropoutMask is
 * non-differentiable, so no gradient is ever formed for it.
 *
 * The mask's randomness is a counter-based hash of (the Dropout's ONNX
 * seed, its ordinal among the graph's Dropouts, the step input, the
 * element), defined in passes/lower_dropout.c: a different mask every
 * step, the same one for the same step in every run and every backend.
 * Inference graphs never come here: their Dropout stays the identity. */
#include <string.h>

#include "grad.h"
#include "passes.h"
#include "train.h"

/* Turns Dropout node n into Mul(X, mask); n keeps its output value Y. */
static void become_mul(kiln_graph *g, kiln_node *n, kiln_value *mask) {
  for (int k = 1; k < n->nin; k++) kiln_node_set_input(n, k, NULL);
  kiln_value **in = kiln_arena_array(&g->arena, 2, sizeof *in);
  in[0] = n->in[0];
  n->in = in;
  n->nin = 2;
  kiln_node_set_input(n, 1, mask);
  n->op = KILN_OP_MUL;
  const kiln_op_info *info = kiln_op_get(KILN_OP_MUL);
  n->attrs = kiln_arena_alloc(&g->arena, info->attrs->size);
  kiln_attrs_init(info->attrs, n->attrs);
  n->nout = 1; /* loc still names the Dropout the user wrote */
}

int kiln_train_dropout(kiln_graph *g, kiln_value *step, kiln_diag *d) {
  kiln_grad_ctx *c = kiln_grad_builder(g, "dropout", d);
  int nnodes = g->nnodes, stream = 0, changed = 0;
  for (int i = 0; i < nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead || n->op != KILN_OP_DROPOUT) continue;
    int s = stream++; /* every Dropout counts, ratio 0 too: a mask does not change when another's ratio does */
    double ratio = 0.5;
    if (n->nin > 1 && n->in[1]) {
      if (!n->in[1]->data || kiln_value_numel(n->in[1], 1) != 1)
        return kiln_error(d, &n->loc, "training mode needs the ratio to be a constant scalar");
      ratio = kiln_dtype_load_f(n->in[1]->dtype, n->in[1]->data, 0);
    }
    if (!(ratio >= 0 && ratio < 1)) return kiln_error(d, &n->loc, "ratio %g is outside [0, 1)", ratio);
    if ((float)ratio == 0) continue; /* the identity */
    kiln_value *x = n->in[0], *y = n->out[0];
    kiln_node *m = kiln_grad_node(c, KILN_OP_DROPOUT_MASK, 2, 1);
    m->name = kiln_arena_printf(&g->arena, "%s.mask", n->name[0] ? n->name : "Dropout"); /* its kernel's name */
    m->loc = n->loc;
    m->loc.node_index = -1;
    kiln_attrs_dropout_mask *a = m->attrs;
    a->ratio = (float)ratio;
    a->seed = ((const kiln_attrs_dropout *)n->attrs)->seed;
    a->stream = s;
    kiln_node_set_input(m, 0, x);
    kiln_node_set_input(m, 1, step);
    kiln_node_set_output(m, 0, kiln_value_new(g, kiln_arena_printf(&g->arena, "%s.dropout_mask", y->name),
                                              KILN_VALUE_ACTIVATION));
    if (kiln_grad_emit(c, m, 1)) return -1;
    if (n->nout > 1 && n->out[1]) { /* the bool mask output: mask != 0 */
      kiln_node *cast = kiln_grad_node(c, KILN_OP_CAST, 1, 1);
      cast->loc = m->loc;
      ((kiln_attrs_cast *)cast->attrs)->to = KILN_DT_BOOL;
      kiln_node_set_input(cast, 0, m->out[0]);
      kiln_node_set_output(cast, 0, n->out[1]);
      n->out[1] = NULL;
      if (kiln_grad_emit(c, cast, 1)) return -1;
    }
    become_mul(g, n, m->out[0]);
    changed = 1;
  }
  return changed ? kiln_graph_toposort(g, d) : 0;
}
