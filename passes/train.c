/* train: inference graph -> one training step (loss, gradients by
 * autodiff, optimizer updates written in place into the parameters).
 *
 * Everything is ordinary graph nodes: the loss from existing ops (cross
 * entropy as LogSoftmax against a one-hot mask made with Equal, so a
 * per-pixel classifier needs nothing new), the updates as elementwise
 * chains whose results alias the parameter / moment they replace
 * (ir/README.md, "Training").  The formulas are PyTorch's (torch.optim,
 * torch.nn.functional), so a step can be checked against it.  The host
 * feeds the learning rate and the step number each step: schedules,
 * warm-up and the batch order stay outside the compiled step. */
#include "train.h"

#include <fnmatch.h>
#include <string.h>

#include "../ir/shape.h"
#include "grad.h"
#include "passes.h"

kiln_train_opts kiln_train_defaults(void) {
  return (kiln_train_opts){.loss = KILN_LOSS_CE, .optimizer = KILN_OPTIM_SGD, .momentum = 0.9, .beta1 = 0.9,
                           .beta2 = 0.999, .rho = 0.99, .eps = 1e-8};
}

static int frozen(const kiln_train_opts *t, const char *name) {
  for (int i = 0; i < t->nfreeze; i++)
    if (!fnmatch(t->freeze[i], name, 0)) return 1;
  return 0;
}

/* Whether v is read as data (not as a compile-time constant slot like a
 * shape or pads, nor as a BatchNorm running statistic). */
static int read_as_data(const kiln_graph *g, const kiln_value *v) {
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->nin; k++) {
      kiln_slot s;
      if (n->in[k] == v && kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s) && !s.constant && !s.stat) return 1;
    }
  }
  return 0;
}

static int updated(const kiln_graph *g, const kiln_value *v) {
  for (int i = 0; i < g->nvalues; i++)
    if (g->values[i]->aliases == v) return 1;
  return 0;
}

/* A trained parameter: a float initializer read as data, not frozen, not
 * already updated by the model itself (kiln.state). */
static int trainable(const kiln_graph *g, const kiln_train_opts *t, const kiln_value *v) {
  return (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_STATE) && v->data && !v->producer &&
         kiln_dtype_is_float(v->dtype) && !frozen(t, v->name) && !updated(g, v) && read_as_data(g, v);
}

int kiln_train_prepare(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d) {
  if (kiln_train_new_head(g, t, d) || kiln_train_batchnorm(g, t, d)) return -1; /* passes/train_prepare.c */
  int n = 0;
  for (int i = 0; i < g->nvalues; i++) {
    kiln_value *v = g->values[i];
    if (!trainable(g, t, v)) continue;
    if (v->dtype != KILN_DT_F32)
      return kiln_error(d, NULL, "%s: parameter '%s' is %s; kiln trains float32 parameters only", g->file, v->name,
                        kiln_dtype_name(v->dtype));
    v->kind = KILN_VALUE_STATE;
    n++;
  }
  if (!n) return kiln_error(d, NULL, "%s: nothing to train: no float parameter is read by the network%s", g->file,
                            t->nfreeze ? " outside the frozen ones" : "");
  return 0;
}

/* ---- the loss ---- */

static kiln_value *node1(kiln_grad_ctx *c, kiln_op op, kiln_value *a, void (*set)(void *attrs, const void *arg),
                         const void *arg, kiln_value *b) {
  kiln_node *m = kiln_grad_node(c, op, b ? 2 : 1, 1);
  if (set) set(m->attrs, arg);
  kiln_node_set_input(m, 0, a);
  if (b) kiln_node_set_input(m, 1, b);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static void set_axis(void *attrs, const void *arg) { ((kiln_attrs_softmax *)attrs)->axis = *(const int *)arg; }
static void set_cast(void *attrs, const void *arg) { ((kiln_attrs_cast *)attrs)->to = *(const int *)arg; }
static void set_keep0(void *attrs, const void *arg) {
  (void)arg;
  ((kiln_attrs_reduce *)attrs)->keepdims = 0;
}

/* Sum of every element, as a scalar. */
static kiln_value *total(kiln_grad_ctx *c, kiln_value *x) { return node1(c, KILN_OP_REDUCE_SUM, x, set_keep0, NULL, NULL); }

/* One-hot float mask [N, C, ...] of the int64 labels [N, ...] (a label
 * outside 0..C-1 matches no class: the host checks labels first). */
static kiln_value *one_hot(kiln_grad_ctx *c, kiln_value *label, const kiln_value *y) {
  kiln_graph *g = kiln_grad_graph(c);
  int64_t C = y->dims[1];
  int64_t *cls = kiln_arena_array(&g->arena, (size_t)C, sizeof *cls);
  for (int64_t i = 0; i < C; i++) cls[i] = i;
  int64_t dims[KILN_MAX_RANK] = {1, C};
  for (int i = 2; i < y->rank; i++) dims[i] = 1;
  kiln_value *classes = kiln_value_const(g, "train.classes", KILN_DT_I64, y->rank, dims, cls);
  int64_t one = 1;
  kiln_value *lab = kiln_grad_apply2(c, KILN_OP_UNSQUEEZE, label, kiln_grad_ints(c, 1, &one));
  kiln_value *eq = lab ? kiln_grad_apply2(c, KILN_OP_EQUAL, lab, classes) : NULL;
  int to = y->dtype;
  return eq ? node1(c, KILN_OP_CAST, eq, set_cast, &to, NULL) : NULL;
}

/* Per-class weights broadcast along axis 1 of y: [1, C, 1, ...]. */
static kiln_value *class_weights(kiln_grad_ctx *c, const kiln_train_opts *t, const kiln_value *y) {
  kiln_graph *g = kiln_grad_graph(c);
  float *w = kiln_arena_array(&g->arena, (size_t)t->nclass_weights, sizeof *w);
  memcpy(w, t->class_weights, (size_t)t->nclass_weights * sizeof *w);
  int64_t dims[KILN_MAX_RANK] = {1, t->nclass_weights};
  for (int i = 2; i < y->rank; i++) dims[i] = 1;
  return kiln_value_const(g, "train.class_weights", KILN_DT_F32, y->rank, dims, w);
}

/* Softmax cross-entropy over axis 1, the mean over samples (and pixels),
 * weighted like torch.nn.functional.cross_entropy(weight=w):
 * -sum(w[y_i] log p_i[y_i]) / sum(w[y_i]). */
static kiln_value *cross_entropy(kiln_grad_ctx *c, const kiln_train_opts *t, kiln_value *y, kiln_value *label) {
  int axis = 1;
  kiln_value *logp = node1(c, KILN_OP_LOG_SOFTMAX, y, set_axis, &axis, NULL);
  kiln_value *oh = one_hot(c, label, y);
  if (!logp || !oh) return NULL;
  kiln_value *count;
  if (t->class_weights) {
    oh = kiln_grad_apply2(c, KILN_OP_MUL, oh, class_weights(c, t, y));
    count = oh ? total(c, oh) : NULL;
  } else {
    count = kiln_grad_scalar(c, y->dtype, (double)(kiln_value_numel(y, 1) / y->dims[1]));
  }
  kiln_value *picked = oh ? kiln_grad_apply2(c, KILN_OP_MUL, oh, logp) : NULL;
  kiln_value *sum = picked ? total(c, picked) : NULL;
  kiln_value *mean = sum && count ? kiln_grad_apply2(c, KILN_OP_DIV, sum, count) : NULL;
  return mean ? kiln_grad_apply1(c, KILN_OP_NEG, mean) : NULL;
}

/* Mean of (y - label)^2 over every element (torch's mse_loss). */
static kiln_value *mse(kiln_grad_ctx *c, kiln_value *y, kiln_value *label) {
  kiln_value *e = kiln_grad_apply2(c, KILN_OP_SUB, y, label);
  kiln_value *sq = e ? kiln_grad_apply2(c, KILN_OP_MUL, e, e) : NULL;
  return sq ? node1(c, KILN_OP_REDUCE_MEAN, sq, set_keep0, NULL, NULL) : NULL;
}

/* Mean over elements of max(z, 0) - z t + log(1 + exp(-|z|)), the stable
 * form of binary cross-entropy on logits z (torch's
 * binary_cross_entropy_with_logits). */
static kiln_value *bce(kiln_grad_ctx *c, kiln_value *z, kiln_value *label) {
  kiln_value *r = kiln_grad_apply1(c, KILN_OP_RELU, z);
  kiln_value *zt = kiln_grad_apply2(c, KILN_OP_MUL, z, label);
  kiln_value *a = kiln_grad_apply1(c, KILN_OP_ABS, z);
  kiln_value *na = a ? kiln_grad_apply1(c, KILN_OP_NEG, a) : NULL;
  kiln_value *sp = na ? kiln_grad_apply1(c, KILN_OP_SOFTPLUS, na) : NULL;
  kiln_value *d = r && zt ? kiln_grad_apply2(c, KILN_OP_SUB, r, zt) : NULL;
  kiln_value *e = d && sp ? kiln_grad_apply2(c, KILN_OP_ADD, d, sp) : NULL;
  return e ? node1(c, KILN_OP_REDUCE_MEAN, e, set_keep0, NULL, NULL) : NULL;
}

/* Soft Dice: p = softmax over classes (sigmoid for one channel), t the
 * one-hot (or given float) target; per class k, over batch and pixels,
 * D_k = (2 sum p t + 1) / (sum p + sum t + 1); loss = 1 - mean_k D_k.
 * The +1 smoothing keeps an absent class from dividing by zero. */
static kiln_value *dice(kiln_grad_ctx *c, kiln_value *y, kiln_value *label) {
  int axis = 1;
  int C = (int)y->dims[1];
  kiln_value *p = C > 1 ? node1(c, KILN_OP_SOFTMAX, y, set_axis, &axis, NULL) : kiln_grad_apply1(c, KILN_OP_SIGMOID, y);
  kiln_value *tg = kiln_dtype_is_float(label->dtype) ? label : one_hot(c, label, y);
  if (!p || !tg) return NULL;
  int64_t axes[KILN_MAX_RANK];
  int na = 0;
  for (int i = 0; i < y->rank; i++)
    if (i != 1) axes[na++] = i;
  kiln_value *pt = kiln_grad_apply2(c, KILN_OP_MUL, p, tg);
  kiln_value *inter = pt ? kiln_grad_sum_axes(c, pt, na, axes, 0) : NULL;
  kiln_value *sp = kiln_grad_sum_axes(c, p, na, axes, 0), *st = kiln_grad_sum_axes(c, tg, na, axes, 0);
  if (!inter || !sp || !st) return NULL;
  kiln_value *one = kiln_grad_scalar(c, y->dtype, 1), *two = kiln_grad_scalar(c, y->dtype, 2);
  kiln_value *num = kiln_grad_apply2(c, KILN_OP_MUL, inter, two);
  num = num ? kiln_grad_apply2(c, KILN_OP_ADD, num, one) : NULL;
  kiln_value *den = kiln_grad_apply2(c, KILN_OP_ADD, sp, st);
  den = den ? kiln_grad_apply2(c, KILN_OP_ADD, den, one) : NULL;
  kiln_value *dk = num && den ? kiln_grad_apply2(c, KILN_OP_DIV, num, den) : NULL;
  kiln_value *m = dk ? node1(c, KILN_OP_REDUCE_MEAN, dk, set_keep0, NULL, NULL) : NULL;
  return m ? kiln_grad_apply2(c, KILN_OP_SUB, one, m) : NULL;
}

/* ---- the optimizer ---- */

/* A zero-initialised state tensor shaped like p, named p + suffix. */
static kiln_value *moment(kiln_graph *g, const kiln_value *p, const char *suffix) {
  size_t n = strlen(p->name) + strlen(suffix) + 1;
  char *name = kiln_arena_alloc(&g->arena, n);
  snprintf(name, n, "%s%s", p->name, suffix);
  void *zeros = kiln_arena_array(&g->arena, (size_t)kiln_value_numel(p, 1), kiln_dtype_size(p->dtype));
  int64_t dims[KILN_MAX_RANK];
  for (int i = 0; i < p->rank; i++) dims[i] = p->dims[i];
  kiln_value *m = kiln_value_const(g, name, p->dtype, p->rank, dims, zeros);
  m->kind = KILN_VALUE_STATE;
  return m;
}

#define K(v) kiln_grad_scalar(c, KILN_DT_F32, (v))
#define MUL(a, b) kiln_grad_apply2(c, KILN_OP_MUL, (a), (b))
#define ADD(a, b) kiln_grad_apply2(c, KILN_OP_ADD, (a), (b))
#define SUB(a, b) kiln_grad_apply2(c, KILN_OP_SUB, (a), (b))
#define DIV(a, b) kiln_grad_apply2(c, KILN_OP_DIV, (a), (b))

/* The scalars of this step: the learning rate and Adam's bias corrections. */
typedef struct step_scalars {
  kiln_value *lr, *step;
  kiln_value *bc1, *bc2; /* 1 - beta1^t, sqrt(1 - beta2^t) */
} step_scalars;

/* The update of p by its gradient gr (clipped already); returns the new p,
 * aliased to p, or NULL on failure.  torch.optim's formulas, step by step. */
static kiln_value *update(kiln_grad_ctx *c, const kiln_train_opts *t, const step_scalars *s, kiln_value *p,
                          kiln_value *gr) {
  kiln_graph *g = kiln_grad_graph(c);
  kiln_value *lr = s->lr;
  if (t->weight_decay > 0 && t->optimizer != KILN_OPTIM_ADAMW) gr = ADD(gr, MUL(p, K(t->weight_decay)));
  if (!gr) return NULL;
  kiln_value *step = NULL; /* what is subtracted from p */
  kiln_value *decayed = p;
  switch (t->optimizer) {
  case KILN_OPTIM_SGD:
    step = MUL(gr, lr);
    break;
  case KILN_OPTIM_MOMENTUM:
  case KILN_OPTIM_NESTEROV: {
    kiln_value *buf = moment(g, p, ".momentum");
    kiln_value *nb = ADD(MUL(buf, K(t->momentum)), gr); /* buf = mu buf + g (the first step: g) */
    if (!nb) return NULL;
    nb->aliases = buf;
    kiln_value *dir = t->optimizer == KILN_OPTIM_NESTEROV ? ADD(gr, MUL(nb, K(t->momentum))) : nb;
    step = dir ? MUL(dir, lr) : NULL;
    break;
  }
  case KILN_OPTIM_RMSPROP: {
    kiln_value *v = moment(g, p, ".square_avg");
    kiln_value *nv = ADD(MUL(v, K(t->rho)), MUL(MUL(gr, gr), K(1 - t->rho)));
    if (!nv) return NULL;
    nv->aliases = v;
    kiln_value *den = kiln_grad_apply1(c, KILN_OP_SQRT, nv);
    den = den ? ADD(den, K(t->eps)) : NULL;
    step = den ? MUL(DIV(gr, den), lr) : NULL;
    break;
  }
  case KILN_OPTIM_ADAM:
  case KILN_OPTIM_ADAMW: {
    if (t->optimizer == KILN_OPTIM_ADAMW && t->weight_decay > 0) {
      /* decoupled: p (1 - lr wd) before the Adam step */
      kiln_value *f = SUB(K(1), MUL(lr, K(t->weight_decay)));
      if (!f || !(decayed = MUL(p, f))) return NULL;
    }
    kiln_value *m = moment(g, p, ".exp_avg"), *v = moment(g, p, ".exp_avg_sq");
    kiln_value *nm = ADD(MUL(m, K(t->beta1)), MUL(gr, K(1 - t->beta1)));
    kiln_value *nv = ADD(MUL(v, K(t->beta2)), MUL(MUL(gr, gr), K(1 - t->beta2)));
    if (!nm || !nv) return NULL;
    nm->aliases = m;
    nv->aliases = v;
    /* torch: denom = sqrt(v) / sqrt(1 - b2^t) + eps; p -= lr / (1 - b1^t) * m / denom */
    kiln_value *den = kiln_grad_apply1(c, KILN_OP_SQRT, nv);
    den = den ? ADD(DIV(den, s->bc2), K(t->eps)) : NULL;
    kiln_value *size = DIV(lr, s->bc1);
    step = den && size ? MUL(DIV(nm, den), size) : NULL;
    break;
  }
  }
  kiln_value *np = step ? SUB(decayed, step) : NULL;
  if (np) np->aliases = p;
  return np;
}

/* Scales every gradient by min(1, max_norm / (||g||_2 + 1e-6)), the
 * global norm over all of them (torch.nn.utils.clip_grad_norm_). */
static int clip(kiln_grad_ctx *c, double max_norm, int n, kiln_value **grads) {
  kiln_value *sq = NULL;
  for (int i = 0; i < n; i++) {
    if (!grads[i]) continue;
    kiln_value *s = total(c, MUL(grads[i], grads[i]));
    sq = !s ? NULL : sq ? ADD(sq, s) : s;
    if (!sq) return -1;
  }
  if (!sq) return 0;
  kiln_value *norm = kiln_grad_apply1(c, KILN_OP_SQRT, sq);
  kiln_value *coef = norm ? DIV(K(max_norm), ADD(norm, K(1e-6))) : NULL;
  kiln_value *in[2] = {coef, K(1)};
  kiln_value *scale = coef ? kiln_grad_apply(c, KILN_OP_MIN, 2, in) : NULL;
  if (!scale) return -1;
  for (int i = 0; i < n; i++)
    if (grads[i] && !(grads[i] = MUL(grads[i], scale))) return -1;
  return 0;
}

static kiln_value *find_output(kiln_graph *g, const char *name) {
  for (int i = 0; i < g->noutputs; i++)
    if (!name || !strcmp(g->outputs[i]->name, name)) return g->outputs[i];
  return NULL;
}

int kiln_pass_train(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d) {
  if (!t) return 0;
  kiln_value *y = find_output(g, t->output);
  if (!y) return kiln_error(d, NULL, "%s: the model has no output named '%s'", g->file, t->output ? t->output : "?");
  if (!kiln_dtype_is_float(y->dtype))
    return kiln_error(d, NULL, "%s: output '%s' is %s; the loss needs a float output", g->file, y->name,
                      kiln_dtype_name(y->dtype));
  int needs_classes = t->loss == KILN_LOSS_CE || t->loss == KILN_LOSS_DICE;
  if (needs_classes && (y->rank < 2 || KILN_DIM_IS_SYM(y->dims[1])))
    return kiln_error(d, NULL, "%s: output '%s' must be [N, classes, ...] for this loss", g->file, y->name);
  if (t->class_weights && (t->loss != KILN_LOSS_CE || t->nclass_weights != y->dims[1]))
    return kiln_error(d, NULL, "%s: %d class weights given; the output '%s' has %lld classes (and only the "
                      "cross-entropy loss takes them)", g->file, t->nclass_weights, y->name, (long long)y->dims[1]);
  static const char *const reserved[] = {"label", "lr", "step", "loss"};
  for (int i = 0; i < g->nvalues; i++)
    for (int k = 0; k < 4; k++)
      if (!strcmp(g->values[i]->name, reserved[k]))
        return kiln_error(d, NULL, "%s: the model has a value named '%s', a name the training step uses for its "
                          "own input or output; rename it", g->file, reserved[k]);
  kiln_grad_ctx *c = kiln_grad_builder(g, "train", d);
  /* the step's inputs */
  kiln_dim ldims[KILN_MAX_RANK];
  int lrank = 0;
  kiln_dtype ltype = y->dtype;
  if (needs_classes && !(t->loss == KILN_LOSS_DICE && y->dims[1] == 1)) {
    ltype = KILN_DT_I64;
    for (int i = 0; i < y->rank; i++)
      if (i != 1) ldims[lrank++] = y->dims[i];
  } else {
    for (int i = 0; i < y->rank; i++) ldims[lrank++] = y->dims[i];
  }
  kiln_value *label = kiln_graph_new_input(g, "label", ltype, lrank, ldims);
  step_scalars s = {.lr = kiln_graph_new_input(g, "lr", KILN_DT_F32, 0, NULL),
                    .step = kiln_graph_new_input(g, "step", KILN_DT_F32, 0, NULL)};
  if (kiln_train_dropout(g, s.step, d)) return -1; /* passes/train_dropout.c */
  kiln_value *loss = NULL;
  switch (t->loss) {
  case KILN_LOSS_CE: loss = cross_entropy(c, t, y, label); break;
  case KILN_LOSS_MSE: loss = mse(c, y, label); break;
  case KILN_LOSS_BCE: loss = bce(c, y, label); break;
  case KILN_LOSS_DICE: loss = dice(c, y, label); break;
  }
  if (!loss) return -1;
  if (y->dtype != KILN_DT_F32) return kiln_error(d, NULL, "%s: kiln trains float32 networks only", g->file);
  loss->name = "loss";
  /* the parameters: state made by kiln_train_prepare, not updated by anything yet */
  int np = 0;
  kiln_value **params = kiln_arena_array(&g->arena, (size_t)g->nvalues, sizeof *params);
  for (int i = 0; i < g->nvalues; i++)
    if (g->values[i]->kind == KILN_VALUE_STATE && trainable(g, t, g->values[i])) params[np++] = g->values[i];
  kiln_value **grads = kiln_arena_array(&g->arena, (size_t)(np ? np : 1), sizeof *grads);
  if (kiln_autodiff(g, loss, np, params, grads, d)) return -1;
  if (t->clip_norm > 0 && clip(c, t->clip_norm, np, grads)) return -1;
  if (t->optimizer == KILN_OPTIM_ADAM || t->optimizer == KILN_OPTIM_ADAMW) {
    /* In float64, then rounded (torch computes them as Python floats):
     * in float32, 1 - 0.999f^t cancels to 1.3e-5 relative error (0.999f
     * is 0.999 + 1.3e-8), so every early step would be 6e-6 too short. */
    int f64 = KILN_DT_F64, f32 = KILN_DT_F32;
    kiln_value *st = node1(c, KILN_OP_CAST, s.step, set_cast, &f64, NULL);
    kiln_value *b1t = st ? kiln_grad_apply2(c, KILN_OP_POW, kiln_grad_scalar(c, KILN_DT_F64, t->beta1), st) : NULL;
    kiln_value *b2t = st ? kiln_grad_apply2(c, KILN_OP_POW, kiln_grad_scalar(c, KILN_DT_F64, t->beta2), st) : NULL;
    kiln_value *v1 = b1t ? kiln_grad_apply2(c, KILN_OP_SUB, kiln_grad_scalar(c, KILN_DT_F64, 1), b1t) : NULL;
    kiln_value *v2 = b2t ? kiln_grad_apply2(c, KILN_OP_SUB, kiln_grad_scalar(c, KILN_DT_F64, 1), b2t) : NULL;
    v2 = v2 ? kiln_grad_apply1(c, KILN_OP_SQRT, v2) : NULL;
    s.bc1 = v1 ? node1(c, KILN_OP_CAST, v1, set_cast, &f32, NULL) : NULL;
    s.bc2 = v2 ? node1(c, KILN_OP_CAST, v2, set_cast, &f32, NULL) : NULL;
    if (!s.bc1 || !s.bc2) return -1;
  }
  for (int i = 0; i < np; i++)
    if (grads[i] && !update(c, t, &s, params[i], grads[i])) return -1;
  /* outputs: the loss, then the network output */
  for (int i = 0; i < g->noutputs; i++) g->outputs[i]->is_output = 0;
  g->noutputs = 0;
  kiln_graph_add_output(g, loss);
  kiln_graph_add_output(g, y);
  return kiln_pass_infer_shapes(g, d);
}
