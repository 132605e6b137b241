/* Training-graph details settled at import (kiln_train_prepare calls
 * these before shapes are inferred): BatchNormalization in training mode,
 * and a new classifier head for transfer learning (--new-classes).
 *
 * BatchNorm: each BatchNormalization runs with training_mode = 1 (batch
 * statistics) and its running_mean / running_var outputs, created when the
 * model did not ask for them, update the running statistics in place
 * (value->aliases), which become state.  The formulas are ONNX's
 * BatchNormalization-15: running = input * momentum + batch * (1 -
 * momentum) with the *population* variance of the batch (ReduceVar).
 * PyTorch differs in two ways a user porting a recipe should know: its
 * momentum is ONNX's 1 - momentum (torch 0.1 = ONNX 0.9), and it folds the
 * *unbiased* batch variance (n / (n - 1) times larger) into running_var.
 * With frozen_bn_inference, a BatchNorm whose scale and bias are both
 * frozen (or not parameters) stays in inference mode: constant statistics,
 * the usual choice when fine-tuning a pretrained network's last layers.
 *
 * New head: walking back from the output the loss reads through ops that
 * keep the class axis (activations, pooling, Flatten, Reshape, Softmax,
 * Dropout, Identity, Squeeze), the first Gemm or 1x1 Conv is the
 * classifier; its weight and bias get K output classes, keeping their
 * names (so a parameter file and `kiln export --params` find them), drawn
 * like PyTorch's nn.Linear / nn.Conv2d defaults (kaiming_uniform_ with
 * a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias the same),
 * from splitmix64 (runtime/kiln_shuffle.h) seeded with head_seed:
 * u = (next() >> 11) * 2^-53 in [0, 1), value = (2u - 1) * bound; weights
 * in row-major order first, then the bias.  A Reshape's constant shape on
 * the way holding the old class count gets the new one. */
#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "../runtime/kiln_shuffle.h"
#include "passes.h"
#include "train.h"

static int frozen_value(const kiln_train_opts *t, const kiln_value *v) {
  if (!v) return 1;
  if (!(v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_STATE) || !v->data || v->producer) return 1;
  for (int i = 0; i < t->nfreeze; i++)
    if (!fnmatch(t->freeze[i], v->name, 0)) return 1;
  return 0;
}

static int is_initializer(const kiln_value *v) {
  return v && (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_STATE) && v->data && !v->producer;
}

int kiln_train_batchnorm(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d) {
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead || n->op != KILN_OP_BATCH_NORM || n->nin < 5) continue;
    kiln_attrs_batchnorm *a = n->attrs;
    if (t->frozen_bn_inference && frozen_value(t, n->in[1]) && frozen_value(t, n->in[2])) continue;
    for (int k = 3; k <= 4; k++)
      if (!is_initializer(n->in[k]) || !kiln_dtype_is_float(n->in[k]->dtype))
        return kiln_error(d, &n->loc, "training mode needs its running %s to be an initializer",
                          k == 3 ? "mean" : "variance");
    a->training_mode = 1;
    if (n->nout < 3) {
      kiln_value **out = kiln_arena_array(&g->arena, 3, sizeof *out);
      memcpy(out, n->out, (size_t)n->nout * sizeof *out);
      n->out = out;
      n->nout = 3;
    }
    for (int k = 1; k <= 2; k++) {
      kiln_value *stat = n->in[k + 2];
      if (stat->kind == KILN_VALUE_STATE)
        return kiln_error(d, &n->loc, "running statistic '%s' is updated twice (shared by two BatchNorms, or "
                          "kiln.state)", stat->name);
      if (!n->out[k])
        kiln_node_set_output(n, k, kiln_value_new(g, kiln_arena_printf(&g->arena, "%s.update", stat->name),
                                                  KILN_VALUE_ACTIVATION));
      if (n->out[k]->aliases && n->out[k]->aliases != stat)
        return kiln_error(d, &n->loc, "output '%s' already updates '%s'", n->out[k]->name, n->out[k]->aliases->name);
      n->out[k]->aliases = stat;
      stat->kind = KILN_VALUE_STATE;
    }
  }
  return 0;
}

static kiln_value *find_output(kiln_graph *g, const char *name) {
  for (int i = 0; i < g->noutputs; i++)
    if (!name || !strcmp(g->outputs[i]->name, name)) return g->outputs[i];
  return NULL;
}

static int keeps_classes(kiln_op op) {
  switch (op) {
  case KILN_OP_RELU: case KILN_OP_LEAKY_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH:
  case KILN_OP_GLOBAL_AVERAGE_POOL: case KILN_OP_AVERAGE_POOL: case KILN_OP_GLOBAL_MAX_POOL: case KILN_OP_MAX_POOL:
  case KILN_OP_FLATTEN: case KILN_OP_RESHAPE: case KILN_OP_SQUEEZE: case KILN_OP_SOFTMAX: case KILN_OP_LOG_SOFTMAX:
  case KILN_OP_DROPOUT: case KILN_OP_IDENTITY: return 1;
  default: return 0;
  }
}

/* Fills n floats with U(-bound, bound) from the generator. */
static void uniform(uint64_t *s, float *x, int64_t n, double bound) {
  for (int64_t i = 0; i < n; i++) {
    double u = (double)(kiln_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    x[i] = (float)((2 * u - 1) * bound);
  }
}

int kiln_train_new_head(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d) {
  if (t->new_classes <= 0) return 0;
  kiln_value *y = find_output(g, t->output);
  if (!y) return kiln_error(d, NULL, "%s: the model has no output named '%s'", g->file, t->output ? t->output : "?");
  kiln_node *head = NULL;
  kiln_node *reshapes[16];
  int nres = 0;
  for (kiln_value *v = y; v && v->producer && !head;) {
    kiln_node *n = v->producer;
    if (n->op == KILN_OP_GEMM || n->op == KILN_OP_CONV) head = n;
    else if (keeps_classes(n->op)) {
      if (n->op == KILN_OP_RESHAPE && nres < 16) reshapes[nres++] = n;
      v = n->in[0];
    } else break;
  }
  const char *why = NULL;
  kiln_value *w = head ? head->in[1] : NULL, *b = head && head->nin > 2 ? head->in[2] : NULL;
  if (!head) why = "no Gemm or 1x1 Conv before it (through activations, pooling, Flatten/Reshape, Softmax)";
  else if (!is_initializer(w) || w->dtype != KILN_DT_F32) why = "the classifier's weight is not a float32 initializer";
  else if (b && (!is_initializer(b) || b->dtype != KILN_DT_F32)) why = "the classifier's bias is not a float32 initializer";
  else if (head->op == KILN_OP_GEMM && (w->rank != 2 || ((kiln_attrs_gemm *)head->attrs)->transA))
    why = "the classifier Gemm's weight is not 2-D (or transA is set)";
  else if (head->op == KILN_OP_CONV) {
    const kiln_attrs_conv *ca = head->attrs;
    if (ca->group != 1) why = "the classifier Conv is grouped";
    for (int k = 2; k < w->rank && !why; k++)
      if (w->dims[k] != 1) why = "the classifier Conv is not 1x1";
  }
  if (why) return kiln_error(d, NULL, "%s: --new-classes: output '%s': %s", g->file, y->name, why);
  int trans = head->op == KILN_OP_GEMM && !((kiln_attrs_gemm *)head->attrs)->transB; /* W [F, K] */
  int kaxis = trans ? 1 : 0;
  int64_t old = w->dims[kaxis], K = t->new_classes;
  int64_t fan_in = 1;
  for (int k = 0; k < w->rank; k++)
    if (k != kaxis) fan_in *= w->dims[k];
  if (fan_in <= 0 || fan_in > ((int64_t)1 << 32) || K > ((int64_t)1 << 40) / fan_in)
    return kiln_error(d, NULL, "%s: --new-classes: the classifier is too large", g->file);
  double bound = 1 / sqrt((double)fan_in);
  uint64_t s = t->head_seed;
  float *wd = kiln_arena_array(&g->arena, (size_t)(K * fan_in), sizeof *wd);
  if (trans) { /* row-major [F, K]: draw [K, F] order (torch's weight layout), then transpose */
    float *tmp = kiln_arena_array(&g->arena, (size_t)(K * fan_in), sizeof *tmp);
    uniform(&s, tmp, K * fan_in, bound);
    for (int64_t k = 0; k < K; k++)
      for (int64_t f = 0; f < fan_in; f++) wd[f * K + k] = tmp[k * fan_in + f];
  } else {
    uniform(&s, wd, K * fan_in, bound);
  }
  w->data = wd;
  w->dims[kaxis] = K;
  if (b) {
    if (kiln_value_numel(b, 1) != old)
      return kiln_error(d, NULL, "%s: --new-classes: the classifier's bias '%s' is not one value per class", g->file,
                        b->name);
    float *bd = kiln_arena_array(&g->arena, (size_t)K, sizeof *bd);
    uniform(&s, bd, K, bound);
    b->data = bd;
    for (int k = 0; k < b->rank; k++)
      if (b->dims[k] == old) b->dims[k] = K;
  }
  /* constant Reshape targets on the way that name the old class count */
  for (int r = 0; r < nres; r++) {
    kiln_value *sh = reshapes[r]->nin > 1 ? reshapes[r]->in[1] : NULL;
    if (!sh || !sh->data || sh->dtype != KILN_DT_I64) continue;
    int64_t n = kiln_value_numel(sh, 1);
    int64_t *nd = kiln_arena_array(&g->arena, (size_t)(n ? n : 1), sizeof *nd);
    memcpy(nd, sh->data, (size_t)n * sizeof *nd);
    for (int64_t k = 0; k < n; k++)
      if (nd[k] == old) nd[k] = K;
    kiln_value *c = kiln_value_const(g, kiln_arena_printf(&g->arena, "%s.new_classes", sh->name), KILN_DT_I64,
                                     sh->rank, sh->dims, nd);
    kiln_node_set_input(reshapes[r], 1, c);
  }
  return 0;
}
