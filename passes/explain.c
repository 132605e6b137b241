/* explain: inference graph -> explanation graph (Grad-CAM, Grad-CAM++,
 * saliency); the contract is in explain.h.
 *
 * Everything is graph nodes built with the autodiff builder (grad.h): the
 * one-hot of the class (ArgMax / the given class, Equal against a 0..C-1
 * constant), the score (Mul + ReduceSum), its gradient by kiln_autodiff
 * with respect to an intermediate value (the feature map) or the input,
 * and the map from reductions and elementwise ops.  So the same graph
 * runs in the JIT, in a `kiln compile` object and in `kiln emit-c` C, and
 * the backends know nothing about explanations. */
#include "explain.h"

#include <stdlib.h>
#include <string.h>

#include "grad.h"
#include "passes.h"

const char *kiln_explain_method_name(kiln_explain_method m) {
  switch (m) {
  case KILN_EXPLAIN_GRADCAM: return "gradcam";
  case KILN_EXPLAIN_GRADCAM_PP: return "gradcam++";
  case KILN_EXPLAIN_SALIENCY: return "saliency";
  }
  return "?";
}

int kiln_explain_method_lookup(const char *s) {
  for (int m = KILN_EXPLAIN_GRADCAM; m <= KILN_EXPLAIN_SALIENCY; m++)
    if (!strcmp(s, kiln_explain_method_name((kiln_explain_method)m))) return m;
  return -1;
}

/* The value the score differentiates: the model output, or the input of
 * the Softmax / LogSoftmax it comes from through shape-only ops. */
static kiln_value *find_logits(kiln_value *y) {
  for (kiln_value *v = y; v && v->producer;) {
    kiln_op op = v->producer->op;
    if (op == KILN_OP_SOFTMAX || op == KILN_OP_LOG_SOFTMAX) return v->producer->in[0];
    if (op != KILN_OP_FLATTEN && op != KILN_OP_RESHAPE && op != KILN_OP_SQUEEZE && op != KILN_OP_IDENTITY &&
        op != KILN_OP_DROPOUT)
      break;
    v = v->producer->in[0];
  }
  return y;
}

/* mark[v->id] = 1 for every value the logits are computed from. */
static char *ancestors(const kiln_graph *g, const kiln_value *logits) {
  char *mark = calloc((size_t)g->nvalues + 1, 1);
  if (!mark) return NULL;
  mark[logits->id] = 1;
  for (int i = g->nnodes - 1; i >= 0; i--) {
    const kiln_node *n = g->nodes[i];
    int live = 0;
    for (int k = 0; k < n->nout; k++) live |= n->out[k] && mark[n->out[k]->id];
    if (!live) continue;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k]) mark[n->in[k]->id] = 1;
  }
  return mark;
}

static int is_candidate(const kiln_value *v) {
  if (!v->producer || (v->rank != 4 && v->rank != 5) || !kiln_dtype_is_float(v->dtype)) return 0;
  int64_t sp = 1;
  for (int i = 2; i < v->rank; i++) {
    if (KILN_DIM_IS_SYM(v->dims[i])) return 0;
    sp *= v->dims[i];
  }
  return sp > 1;
}

/* The chosen layer, or NULL with d set (an unknown name lists the last
 * candidates, nearest the output first). */
static kiln_value *find_layer(kiln_graph *g, const char *name, const kiln_value *logits, kiln_diag *d) {
  char *mark = ancestors(g, logits);
  if (!mark) { kiln_error(d, NULL, "%s: out of memory", g->file); return NULL; }
  kiln_value *best = NULL;
  for (int i = 0; i < g->nnodes && !name; i++)
    for (int k = 0; k < g->nodes[i]->nout; k++) {
      kiln_value *v = g->nodes[i]->out[k];
      kiln_op op = g->nodes[i]->op;
      if (v && mark[v->id] && is_candidate(v) && op != KILN_OP_MAX_POOL && op != KILN_OP_AVERAGE_POOL) best = v;
    }
  if (name)
    for (int i = 0; i < g->nvalues; i++)
      if (!strcmp(g->values[i]->name, name) && g->values[i]->producer) best = g->values[i];
  if (best && name && !(mark[best->id] && is_candidate(best))) {
    char ty[256];
    kiln_value_type_str(g, best, ty, sizeof ty);
    kiln_error(d, NULL, "%s: layer '%s' is %s%s; Grad-CAM needs a 4-D or 5-D float feature map [N, K, ...] with "
               "spatial size > 1 that the scores depend on", g->file, name, ty,
               mark[best->id] ? "" : " and does not lead to the scores");
    best = NULL;
  } else if (!best) {
    char list[1024] = "";
    size_t len = 0;
    int shown = 0;
    for (int i = g->nnodes - 1; i >= 0 && shown < 8; i--)
      for (int k = 0; k < g->nodes[i]->nout; k++) {
        kiln_value *v = g->nodes[i]->out[k];
        if (!v || !mark[v->id] || !is_candidate(v) || len + 8 >= sizeof list) continue;
        /* kiln_error shows control bytes escaped (ir/diag.c) */
        len += (size_t)snprintf(list + len, sizeof list - len, "%s'%.100s'", shown ? ", " : "", v->name);
        if (len >= sizeof list) len = sizeof list - 1;
        shown++;
      }
    if (name)
      kiln_error(d, NULL, "%s: no value named '%s'; feature maps the scores depend on (last first): %s", g->file,
                 name, shown ? list : "none");
    else
      kiln_error(d, NULL, "%s: no 4-D or 5-D feature map with spatial size > 1 leads to the scores; Grad-CAM "
                 "needs one (try --method saliency)", g->file);
  }
  free(mark);
  return best;
}

/* A node of op on a, b (b optional) whose attributes `set` fills. */
static kiln_value *node(kiln_grad_ctx *c, kiln_op op, kiln_value *a, kiln_value *b, void (*set)(void *, int64_t),
                        int64_t arg) {
  if (!a) return NULL;
  kiln_node *m = kiln_grad_node(c, op, b ? 2 : 1, 1);
  if (set) set(m->attrs, arg);
  kiln_node_set_input(m, 0, a);
  if (b) kiln_node_set_input(m, 1, b);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static void set_keepdims(void *a, int64_t v) { ((kiln_attrs_reduce *)a)->keepdims = v; }
static void set_argmax1(void *a, int64_t v) {
  ((kiln_attrs_argmax *)a)->axis = 1;
  ((kiln_attrs_argmax *)a)->keepdims = v;
}
static void set_cast(void *a, int64_t v) { ((kiln_attrs_cast *)a)->to = v; }
static void set_flatten(void *a, int64_t v) { ((kiln_attrs_flatten *)a)->axis = v; }

/* ReduceSum / ReduceMean / ReduceMax of x over axes [lo, rank). */
static kiln_value *reduce_from(kiln_grad_ctx *c, kiln_op op, kiln_value *x, int lo, int keepdims) {
  if (!x) return NULL;
  int64_t axes[KILN_MAX_RANK];
  int n = 0;
  for (int i = lo; i < x->rank; i++) axes[n++] = i;
  kiln_value *ax = kiln_grad_ints(c, n, axes);
  return node(c, op, x, ax, set_keepdims, keepdims);
}

static kiln_value *to_f32(kiln_grad_ctx *c, kiln_value *x) {
  if (!x) return NULL;
  return x->dtype == KILN_DT_F32 && !x->is_output && x->producer && x->kind == KILN_VALUE_ACTIVATION
             ? x
             : node(c, x->dtype == KILN_DT_F32 ? KILN_OP_IDENTITY : KILN_OP_CAST, x, NULL,
                    x->dtype == KILN_DT_F32 ? NULL : set_cast, KILN_DT_F32);
}

#define MUL(a, b) kiln_grad_apply2(c, KILN_OP_MUL, (a), (b))
#define ADD(a, b) kiln_grad_apply2(c, KILN_OP_ADD, (a), (b))

/* One-hot [N, C] (dtype of y) of the class input, or of ArgMax(y) where it
 * is negative. */
static kiln_value *one_hot(kiln_grad_ctx *c, kiln_value *y, kiln_value *cls) {
  kiln_graph *g = kiln_grad_graph(c);
  int64_t C = y->dims[1];
  int64_t *ids = kiln_arena_array(&g->arena, (size_t)C, sizeof *ids);
  for (int64_t i = 0; i < C; i++) ids[i] = i;
  int64_t dims[2] = {1, C};
  kiln_value *classes = kiln_value_const(g, "explain.classes", KILN_DT_I64, 2, dims, ids);
  int64_t one = 1;
  kiln_value *pred = node(c, KILN_OP_ARGMAX, y, NULL, set_argmax1, 1);                 /* [N, 1] */
  kiln_value *col = kiln_grad_apply2(c, KILN_OP_UNSQUEEZE, cls, kiln_grad_ints(c, 1, &one)); /* [N, 1] */
  kiln_value *neg = col ? kiln_grad_apply2(c, KILN_OP_LESS, col, kiln_grad_scalar(c, KILN_DT_I64, 0)) : NULL;
  kiln_value *in[3] = {neg, pred, col};
  kiln_value *sel = neg && pred ? kiln_grad_apply(c, KILN_OP_WHERE, 3, in) : NULL;
  kiln_value *eq = sel ? kiln_grad_apply2(c, KILN_OP_EQUAL, sel, classes) : NULL;
  return node(c, KILN_OP_CAST, eq, NULL, set_cast, y->dtype);
}

/* Grad-CAM / Grad-CAM++ map from A and g = dScore/dA (explain.h). */
static kiln_value *cam_map(kiln_grad_ctx *c, kiln_explain_method m, kiln_value *A, kiln_value *gA) {
  kiln_value *w;
  if (m == KILN_EXPLAIN_GRADCAM) {
    w = reduce_from(c, KILN_OP_REDUCE_MEAN, gA, 2, 1); /* [N, K, 1, 1] */
  } else {
    kiln_value *g2 = MUL(gA, gA), *g3 = g2 ? MUL(g2, gA) : NULL;
    kiln_value *sumA = reduce_from(c, KILN_OP_REDUCE_SUM, A, 2, 1);
    kiln_value *two = kiln_grad_scalar(c, A->dtype, 2), *zero = kiln_grad_scalar(c, A->dtype, 0);
    kiln_value *den = g2 && g3 && sumA ? ADD(MUL(g2, two), MUL(sumA, g3)) : NULL;
    kiln_value *isz = den ? kiln_grad_apply2(c, KILN_OP_EQUAL, den, zero) : NULL;
    kiln_value *in[3] = {isz, kiln_grad_scalar(c, A->dtype, 1), den};
    kiln_value *safe = isz ? kiln_grad_apply(c, KILN_OP_WHERE, 3, in) : NULL;
    kiln_value *a = safe ? kiln_grad_apply2(c, KILN_OP_DIV, g2, safe) : NULL;
    kiln_value *rg = kiln_grad_apply1(c, KILN_OP_RELU, gA);
    w = a && rg ? reduce_from(c, KILN_OP_REDUCE_SUM, MUL(a, rg), 2, 1) : NULL;
  }
  kiln_value *wa = w ? MUL(w, A) : NULL;
  int64_t ch = 1;
  kiln_value *s = wa ? node(c, KILN_OP_REDUCE_SUM, wa, kiln_grad_ints(c, 1, &ch), set_keepdims, 0) : NULL;
  return s ? kiln_grad_apply1(c, KILN_OP_RELU, s) : NULL;
}

static const char *const reserved[] = {"class", "cam", "logits", "grad"};

/* The new values' names must be free: a model input with one is an error,
 * an activation (or constant) is renamed NAME.model. */
static int free_names(kiln_graph *g, kiln_diag *d) {
  for (int i = 0; i < g->nvalues; i++)
    for (int k = 0; k < 4; k++) {
      kiln_value *v = g->values[i];
      if (strcmp(v->name, reserved[k])) continue;
      if (v->kind == KILN_VALUE_INPUT)
        return kiln_error(d, NULL, "%s: the model has an input named '%s', a name the explanation graph uses for its "
                          "own input or output; rename it", g->file, reserved[k]);
      size_t n = strlen(reserved[k]) + 7;
      char *nn = kiln_arena_alloc(&g->arena, n);
      snprintf(nn, n, "%s.model", reserved[k]);
      v->name = nn;
    }
  return 0;
}

int kiln_explain_build(kiln_graph *g, const kiln_explain_opts *o, kiln_diag *d) {
  if (!g->noutputs) return kiln_error(d, NULL, "%s: the model has no output", g->file);
  kiln_value *x = NULL;
  for (int i = 0; i < g->ninputs && !x; i++)
    if (kiln_dtype_is_float(g->inputs[i]->dtype)) x = g->inputs[i];
  if (!x) return kiln_error(d, NULL, "%s: the model has no float input to explain", g->file);
  kiln_value *y = g->outputs[0];
  kiln_value *logits = find_logits(y);
  char ty[256];
  kiln_value_type_str(g, logits, ty, sizeof ty);
  int classifier = kiln_dtype_is_float(logits->dtype) && logits->rank >= 2 && !KILN_DIM_IS_SYM(logits->dims[1]) &&
                   logits->dims[1] >= 1;
  for (int i = 2; classifier && i < logits->rank; i++) classifier = logits->dims[i] == 1;
  if (!classifier)
    return kiln_error(d, NULL, "%s: the scores '%s' are %s; explanations need a classifier's scores [N, C] "
                      "(or [N, C, 1, ...])", g->file, logits->name, ty);
  if (x->rank < 2 || (o->method == KILN_EXPLAIN_SALIENCY && KILN_DIM_IS_SYM(x->dims[1])))
    return kiln_error(d, NULL, "%s: input '%s' must be [N, C, ...] to explain", g->file, x->name);
  kiln_value *A = NULL;
  if (o->method != KILN_EXPLAIN_SALIENCY && !(A = find_layer(g, o->layer, logits, d))) return -1;
  if (free_names(g, d)) return -1;
  kiln_grad_ctx *c = kiln_grad_builder(g, "explain", d);
  /* scores [N, C], class input, score */
  kiln_value *s = logits->rank == 2 ? logits : node(c, KILN_OP_FLATTEN, logits, NULL, set_flatten, 1);
  kiln_dim ndim = x->dims[0];
  kiln_value *cls = kiln_graph_new_input(g, "class", KILN_DT_I64, 1, &ndim);
  kiln_value *oh = s ? one_hot(c, s, cls) : NULL;
  kiln_value *score = oh ? node(c, KILN_OP_REDUCE_SUM, MUL(s, oh), NULL, set_keepdims, 0) : NULL;
  if (!score) return -1;
  kiln_value *wrt = o->method == KILN_EXPLAIN_SALIENCY ? x : A, *grad = NULL;
  if (kiln_autodiff(g, score, 1, &wrt, &grad, d)) return -1;
  if (!grad)
    return kiln_error(d, NULL, "%s: the scores do not depend on '%s'", g->file, wrt->name);
  kiln_value *cam, *gout = NULL;
  if (o->method == KILN_EXPLAIN_SALIENCY) {
    int64_t ch = 1;
    cam = node(c, KILN_OP_REDUCE_MAX, kiln_grad_apply1(c, KILN_OP_ABS, grad), kiln_grad_ints(c, 1, &ch),
               set_keepdims, 0);
    if (!(gout = to_f32(c, grad))) return -1;
  } else {
    cam = cam_map(c, o->method, A, grad);
  }
  kiln_value *lout = to_f32(c, s);
  if (!(cam = to_f32(c, cam)) || !lout) return -1;
  for (int i = 0; i < g->noutputs; i++) g->outputs[i]->is_output = 0;
  g->noutputs = 0;
  cam->name = "cam";
  lout->name = "logits";
  kiln_graph_add_output(g, cam);
  kiln_graph_add_output(g, lout);
  if (gout) {
    gout->name = "grad";
    kiln_graph_add_output(g, gout);
  }
  if (o->info)
    *o->info = (kiln_explain_info){.input = x, .layer = A, .logits = logits, .classes = s->dims[1]};
  return kiln_pass_infer_shapes(g, d);
}
