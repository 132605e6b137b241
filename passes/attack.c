/* attack: the loss-and-input-gradient graph of `kiln attack` (contract in
 * attack.h).  The loss is built from ordinary nodes through the gradient
 * builder (passes/grad.h), then kiln_autodiff differentiates it with
 * respect to the attacked input; nothing here knows any op's semantics. */
#include <stdio.h>
#include <string.h>

#include "attack.h"
#include "grad.h"
#include "passes.h"

static kiln_value *find(kiln_value *const *vs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!name || !strcmp(vs[i]->name, name)) return vs[i];
  return NULL;
}

/* v as its own fresh activation (an output must not be a graph input or
 * another output). */
static kiln_value *own(kiln_grad_ctx *c, kiln_value *v) {
  if (v->kind == KILN_VALUE_ACTIVATION && v->producer && !v->is_output) return v;
  return kiln_grad_apply1(c, KILN_OP_IDENTITY, v);
}

int kiln_attack_build(kiln_graph *g, const char *input, const char *output, int64_t *classes, kiln_diag *d) {
  kiln_value *x = input ? find(g->inputs, g->ninputs, input) : g->ninputs == 1 ? g->inputs[0] : NULL;
  if (!x) {
    if (input) return kiln_error(d, NULL, "%s: the model has no input named '%s'", g->file, input);
    return kiln_error(d, NULL, "%s: the model has %d inputs: name the one to attack (--input NAME=FILE)", g->file,
                      g->ninputs);
  }
  kiln_value *y = find(g->outputs, g->noutputs, output);
  if (!y) return kiln_error(d, NULL, "%s: the model has no output named '%s'", g->file, output ? output : "?");
  if (!kiln_dtype_is_float(x->dtype))
    return kiln_error(d, NULL, "%s: input '%s' is %s; an attack perturbs a float input", g->file, x->name,
                      kiln_dtype_name(x->dtype));
  if (!kiln_dtype_is_float(y->dtype) || y->rank < 1)
    return kiln_error(d, NULL, "%s: output '%s' is not a float classifier output [batch, classes, ...]", g->file,
                      y->name);
  if (x->rank < 1 || x->dims[0] != y->dims[0] || KILN_DIM_IS_SYM(y->dims[0]))
    return kiln_error(d, NULL, "%s: input '%s' and output '%s' must share a static batch dim (dim 0)", g->file,
                      x->name, y->name);
  static const char *const reserved[] = {KILN_ATTACK_LABEL, KILN_ATTACK_LOGITS, KILN_ATTACK_LOSS, KILN_ATTACK_GRAD};
  for (int i = 0; i < g->nvalues; i++)
    for (int k = 0; k < 4; k++)
      if (!strcmp(g->values[i]->name, reserved[k]))
        return kiln_error(d, NULL, "%s: the model has a value named '%s', a name the attack uses; rename it",
                          g->file, reserved[k]);
  int64_t N = y->dims[0], C = kiln_value_numel(y, 1) / (N ? N : 1);
  if (N < 1 || C < 2)
    return kiln_error(d, NULL, "%s: output '%s' has %lld element(s) per sample; a classifier needs 2 or more",
                      g->file, y->name, (long long)C);
  int spread = 0; /* dims after the batch longer than 1: a classifier has one */
  for (int i = 1; i < y->rank; i++) spread += y->dims[i] != 1;
  if (spread > 1)
    return kiln_error(d, NULL, "%s: output '%s' has more than one dim after the batch longer than 1; kiln attack "
                      "attacks classifiers (one class vector per sample)", g->file, y->name);
  kiln_grad_ctx *c = kiln_grad_builder(g, "attack", d);
  if (!c) return kiln_error(d, NULL, "out of memory");
  kiln_value *z = y;
  const kiln_node *sm = y->producer;
  if (sm && (sm->op == KILN_OP_SOFTMAX || sm->op == KILN_OP_LOG_SOFTMAX) && kiln_value_numel(sm->in[0], 1) == N * C) {
    int axis = ((const kiln_attrs_softmax *)sm->attrs)->axis;
    if ((axis < 0 ? axis + y->rank : axis) >= 1) z = sm->in[0]; /* over the classes, not across the batch */
  }
  int64_t nc[2] = {N, C};
  kiln_value *z2 = kiln_grad_apply2(c, KILN_OP_RESHAPE, z, kiln_grad_ints(c, 2, nc));
  kiln_dtype lt = z2 && kiln_dtype_size(z2->dtype) < 4 ? KILN_DT_F32 : z2 ? z2->dtype : KILN_DT_F32;
  if (z2 && z2->dtype != lt) { /* f16/bf16 logits: the loss in float32 */
    kiln_node *m = kiln_grad_node(c, KILN_OP_CAST, 1, 1);
    ((kiln_attrs_cast *)m->attrs)->to = lt;
    kiln_node_set_input(m, 0, z2);
    z2 = kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
  }
  if (!z2) return -1;
  /* one-hot of the labels: Equal(label[:, None], [[0, 1, ..., C-1]]) */
  kiln_value *label = kiln_graph_new_input(g, KILN_ATTACK_LABEL, KILN_DT_I64, 1, (kiln_dim[]){N});
  int64_t *cls = kiln_arena_array(&g->arena, (size_t)C, sizeof *cls);
  if (!cls) return kiln_error(d, NULL, "out of memory");
  for (int64_t i = 0; i < C; i++) cls[i] = i;
  kiln_value *classes_v = kiln_value_const(g, "attack.classes", KILN_DT_I64, 2, (int64_t[]){1, C}, cls);
  int64_t one = 1;
  kiln_value *lab = kiln_grad_apply2(c, KILN_OP_UNSQUEEZE, label, kiln_grad_ints(c, 1, &one));
  kiln_value *eq = lab ? kiln_grad_apply2(c, KILN_OP_EQUAL, lab, classes_v) : NULL;
  kiln_value *oh = NULL;
  if (eq) {
    kiln_node *m = kiln_grad_node(c, KILN_OP_CAST, 1, 1);
    ((kiln_attrs_cast *)m->attrs)->to = lt;
    kiln_node_set_input(m, 0, eq);
    oh = kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
  }
  kiln_value *logp = kiln_grad_apply1(c, KILN_OP_LOG_SOFTMAX, z2); /* axis -1: the classes */
  kiln_value *picked = oh && logp ? kiln_grad_apply2(c, KILN_OP_MUL, oh, logp) : NULL;
  int64_t ax = 1;
  kiln_value *sum1 = picked ? kiln_grad_sum_axes(c, picked, 1, &ax, 0) : NULL;
  kiln_value *loss = sum1 ? kiln_grad_apply1(c, KILN_OP_NEG, sum1) : NULL;
  int64_t ax0 = 0;
  kiln_value *total = loss ? kiln_grad_sum_axes(c, loss, 1, &ax0, 0) : NULL;
  if (!total) return -1;
  kiln_value *grad = NULL;
  if (kiln_autodiff(g, total, 1, &x, &grad, d)) return -1;
  if (!grad) return kiln_error(d, NULL, "%s: output '%s' does not depend on input '%s'", g->file, y->name, x->name);
  kiln_value *outs[3] = {own(c, z2), own(c, loss), own(c, grad)};
  if (!outs[0] || !outs[1] || !outs[2]) return -1;
  for (int i = 0; i < g->noutputs; i++) g->outputs[i]->is_output = 0;
  g->noutputs = 0;
  for (int k = 0; k < 3; k++) {
    outs[k]->name = reserved[k + 1];
    kiln_graph_add_output(g, outs[k]);
  }
  *classes = C;
  return kiln_pass_infer_shapes(g, d);
}
