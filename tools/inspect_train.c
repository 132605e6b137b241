/* kiln inspect --train: what one training step costs.  The model is
 * compiled as the training step (passes/train.c) through the whole
 * pipeline, and its state is told apart by name against a fresh import of
 * the model: a state value named like a learnable initializer of the model
 * is a trained parameter, one named like a BatchNorm statistic is a running
 * statistic, any other is the optimizer's (moments, named PARAM.exp_avg
 * and so on).  Learnable initializers that are not state were frozen.
 * Peak training memory is the memory plan of the training program: the
 * workspace (activations, gradients) plus the state blob plus the
 * constant weights (frozen parameters and constants). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/text_escape.h"
#include "cli.h"
#include "train_opts.h"

enum { LEARN = 1, STAT = 2 };

/* Kinds of the model's float initializers by name (LEARN / STAT), as
 * tools/model_load.c counts them. */
static int role(const kiln_graph *g0, const char *name) {
  int r = 0;
  for (int i = 0; i < g0->nnodes; i++) {
    const kiln_node *n = g0->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      const kiln_value *v = n->in[k];
      kiln_slot s;
      if (!v || v->kind != KILN_VALUE_PARAM || !kiln_dtype_is_float(v->dtype) || strcmp(v->name, name)) continue;
      kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s);
      if (s.stat) r |= STAT;
      else if (!s.constant) r |= LEARN;
    }
  }
  return r;
}

typedef struct tally { int64_t n, bytes; int tensors; } tally;

static void add(tally *t, const kiln_value *v) {
  t->n += kiln_value_numel(v, 1);
  t->bytes += (int64_t)kiln_value_nbytes(v);
  t->tensors++;
}

static const char *const loss_names[] = {"ce", "bce", "mse", "dice"};
static const char *const optim_names[] = {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"};

int kiln_cli_inspect_train(const char *path, kiln_graph *g, const kiln_program *p, const kiln_train_opts *t, int json,
                           kiln_diag *d) {
  kiln_graph *g0 = kiln_cli_import(path, d);
  if (!g0) return -1;
  tally trained = {0}, frozen = {0}, stats = {0}, optim = {0};
  int fwd_nodes = 0, nodes = 0, fused = 0;
  for (int i = 0; i < g0->nnodes; i++) fwd_nodes += !g0->nodes[i]->dead;
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i]->dead) continue;
    nodes++;
    fused += g->nodes[i]->fused_into != NULL;
  }
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->kind != KILN_VALUE_STATE) continue;
    int r = role(g0, v->name);
    if (r & LEARN) add(&trained, v);
    else if (r & STAT) add(&stats, v);
    else add(&optim, v);
  }
  /* frozen: learnable in the model, not state in the step */
  for (int i = 0; i < g0->nvalues; i++) {
    const kiln_value *v = g0->values[i];
    if (v->kind != KILN_VALUE_PARAM || !(role(g0, v->name) & LEARN)) continue;
    int is_state = 0;
    for (int k = 0; k < g->nvalues && !is_state; k++)
      is_state = g->values[k]->kind == KILN_VALUE_STATE && !strcmp(g->values[k]->name, v->name);
    if (!is_state) add(&frozen, v);
  }
  kiln_graph_free(g0);
  int64_t peak = p->workspace_bytes + p->state_bytes + p->weights_bytes;
  if (json) {
    printf("{\"model\": ");
    kiln_put_json_string(stdout, path);
    printf(", \"loss\": \"%s\", \"optimizer\": \"%s\", \"trained_params\": %" PRId64 ", \"trained_tensors\": %d, "
           "\"trained_bytes\": %" PRId64 ", \"frozen_params\": %" PRId64 ", \"frozen_tensors\": %d, \"frozen_bytes\": %" PRId64
           ", \"bn_stats\": %" PRId64 ", \"optimizer_state_bytes\": %" PRId64 ", \"state_blob_bytes\": %" PRId64
           ", \"weights_bytes\": %" PRId64 ", \"workspace_bytes\": %" PRId64 ", \"peak_bytes\": %" PRId64
           ", \"forward_nodes\": %d, \"nodes\": %d, \"fused_nodes\": %d, \"kernels\": %d}\n",
           loss_names[t->loss], optim_names[t->optimizer], trained.n, trained.tensors, trained.bytes, frozen.n,
           frozen.tensors, frozen.bytes, stats.n, optim.bytes, p->state_bytes, p->weights_bytes, p->workspace_bytes,
           peak, fwd_nodes, nodes, fused, p->nkernels);
    return 0;
  }
  printf("model     ");
  kiln_put_display(stdout, path);
  printf("\ntraining  one step: loss %s, optimizer %s\ninputs   ", loss_names[t->loss], optim_names[t->optimizer]);
  char ty[256];
  for (int i = 0; i < g->ninputs; i++) {
    kiln_value_type_str(g, g->inputs[i], ty, sizeof ty);
    printf(" ");
    kiln_put_display(stdout, g->inputs[i]->name);
    printf(" %s", ty);
  }
  printf("\noutputs  ");
  for (int i = 0; i < g->noutputs; i++) {
    kiln_value_type_str(g, g->outputs[i], ty, sizeof ty);
    printf(" ");
    kiln_put_display(stdout, g->outputs[i]->name);
    printf(" %s", ty);
  }
  printf("\ntrained   %" PRId64 " parameters in %d tensors (%" PRId64 " bytes)\n", trained.n, trained.tensors,
         trained.bytes);
  printf("frozen    %" PRId64 " parameters in %d tensors (%" PRId64 " bytes)\n", frozen.n, frozen.tensors, frozen.bytes);
  if (stats.tensors) printf("bn stats  %" PRId64 " running statistics in %d tensors (state)\n", stats.n, stats.tensors);
  printf("optimizer %" PRId64 " bytes of state in %d tensors\n", optim.bytes, optim.tensors);
  printf("graph     %d nodes (forward %d, %d fused into epilogues), %d kernels\n", nodes, fwd_nodes, fused,
         p->nkernels);
  printf("memory    %" PRId64 " bytes peak training memory (memory plan): workspace %" PRId64 " + state %" PRId64
         " + weights %" PRId64 "\n", peak, p->workspace_bytes, p->state_bytes, p->weights_bytes);
  return 0;
}
