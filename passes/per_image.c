/* per_image: graph -> graph where a batch-N inference graph in which every
 * node computes image n of its outputs from image n of its inputs alone
 * is rewritten for one image, with g->images = N: the program then runs
 * once per image over the caller's batch-N tensors (the backends' entry
 * function loops over the images, moving the input and output pointers on
 * by one image each time).
 *
 * Why: layer by layer over eight images, every activation is eight times
 * the size, and a network's early layers leave the caches: on a 2-vCPU
 * Zen 5 (1 MB L2 a core), SqueezeNet 1.1 ran 1.1x its batch-1 time per
 * image at batch 8 (its 111x111 pool 1.84x), ResNet-50's Winograd
 * convolutions spilled their transformed tiles from the L3, and Concat
 * inputs could no longer be written straight into their slices (a batch-N
 * slice is not contiguous), so every Concat copied.  One image at a time,
 * batch N costs N batch-1 runs, in a batch-1 workspace.  Weights are
 * read once per image; a batch-N Gemm (lower_linalg.c's row form, rows
 * outermost) streams them once per row too: VGG-16's 411 MB classifier.0
 * at batch 8 took 231 ms batch-N and 149 ms one image at a time, and its
 * workspace 208 MB against 26 MB.
 *
 * Image-wise nodes (a list: an op not on it keeps the batch-N program):
 * convolutions, pools, normalisations with fixed statistics, Concat off
 * the batch axis, Flatten/Reshape that keep the batch dim, Gemm/MatMul
 * with fixed weights, Softmax off the batch axis, elementwise ops whose
 * other operands are fixed and do not vary along the batch, Dropout in
 * inference.  Every graph input and output must have the batch dim first
 * (the same N), every activation must carry it.  Shapes are then inferred
 * again for one image; a Reshape whose fixed shape spells the batch
 * (PyTorch's x.view(x.size(0), -1), folded to [N, -1]) gets [1, ...].  If
 * any value's shape comes out other than its batch-N shape with 1 first,
 * the rewrite is undone.  Not for training or explanations (gradients sum
 * over the batch), nor GPUs (they want the whole batch in one launch);
 * the pipeline asks for it only where the backend loops (LLVM, C).
 * KILN_PER_IMAGE=0 turns it off (A/B measurements). */
#include <stdlib.h>
#include <string.h>

#include "lower.h"
#include "passes.h"

static int is_fixed(const kiln_value *v) {
  return v && v->data && !v->aliases && (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_CONST);
}

/* An activation carrying the batch: image n is its first-dim slice n. */
static int batched(const kiln_value *v, int64_t N) {
  return v && !v->data && v->kind != KILN_VALUE_STATE && v->rank >= 1 && v->dims[0] == N;
}

/* A fixed operand an elementwise op may broadcast over the images: lower
 * rank than the result, or a leading 1. */
static int broadcast_fixed(const kiln_value *v, int out_rank) {
  return is_fixed(v) && (v->rank < out_rank || v->dims[0] == 1);
}

static int64_t axis_of(int64_t axis, int rank) { return axis < 0 ? axis + rank : axis; }

/* Does node n compute image i of its outputs from image i of its inputs
 * alone (fixed operands aside)? */
static int image_wise(const kiln_node *n, int64_t N) {
  const kiln_value *x = n->nin > 0 ? n->in[0] : NULL;
  if (!x) return 0;
  for (int k = 0; k < n->nout; k++) {
    const kiln_value *y = n->out[k];
    if (y && (y->uses > 0 || y->is_output) && !batched(y, N)) return 0;
  }
  switch (n->op) {
  case KILN_OP_BATCH_NORM: /* training_mode: statistics of the whole batch */
    if (((const kiln_attrs_batchnorm *)n->attrs)->training_mode) return 0;
    /* fall through */
  case KILN_OP_CONV:
  case KILN_OP_CONV_TRANSPOSE:
  case KILN_OP_INSTANCE_NORM:
    for (int k = 1; k < n->nin; k++)
      if (n->in[k] && !is_fixed(n->in[k])) return 0;
    for (int k = 1; k < n->nout; k++) /* BatchNorm's training statistics */
      if (n->out[k] && (n->out[k]->uses || n->out[k]->is_output)) return 0;
    return batched(x, N);
  case KILN_OP_MAX_POOL: /* Indices count over the whole batch */
    if (n->nout > 1 && n->out[1] && (n->out[1]->uses || n->out[1]->is_output)) return 0;
    return batched(x, N);
  case KILN_OP_AVERAGE_POOL:
  case KILN_OP_GLOBAL_AVERAGE_POOL:
  case KILN_OP_GLOBAL_MAX_POOL:
  case KILN_OP_LRN:
  case KILN_OP_IDENTITY:
    return batched(x, N);
  case KILN_OP_DROPOUT: /* inference: a copy; training_mode, if given, must be a fixed false */
    if (n->nout > 1 && n->out[1] && (n->out[1]->uses || n->out[1]->is_output)) return 0;
    if (n->nin > 2 && n->in[2]) {
      const kiln_value *t = n->in[2];
      if (!is_fixed(t) || kiln_value_numel(t, 1) != 1 || kiln_dtype_load_f(t->dtype, t->data, 0) != 0) return 0;
    }
    return batched(x, N);
  case KILN_OP_SOFTMAX:
  case KILN_OP_LOG_SOFTMAX: {
    const kiln_attrs_softmax *a = n->attrs;
    return batched(x, N) && axis_of(a->axis, x->rank) >= 1; /* rows (2-D coercion too) lie within one image */
  }
  case KILN_OP_CONCAT: {
    const kiln_attrs_concat *a = n->attrs;
    for (int k = 0; k < n->nin; k++)
      if (!batched(n->in[k], N)) return 0;
    return axis_of(a->axis, x->rank) >= 1;
  }
  case KILN_OP_FLATTEN:
  case KILN_OP_RESHAPE: /* the output keeps the batch dim (checked above): each image's bytes stay its own */
  case KILN_OP_SQUEEZE:
  case KILN_OP_UNSQUEEZE:
    return batched(x, N) && (n->nin < 2 || !n->in[1] || is_fixed(n->in[1]));
  case KILN_OP_GEMM: {
    const kiln_attrs_gemm *a = n->attrs;
    const kiln_value *c = n->nin > 2 ? n->in[2] : NULL;
    if (a->transA || !batched(x, N) || x->rank != 2 || !is_fixed(n->in[1])) return 0;
    return !c || broadcast_fixed(c, 2);
  }
  case KILN_OP_MATMUL:
    return batched(x, N) && x->rank >= 2 && is_fixed(n->in[1]) && n->in[1]->rank == 2;
  default:
    break;
  }
  /* elementwise: each operand batched at the result's rank, or fixed and
   * broadcast over the images */
  const kiln_op_info *info = kiln_op_get(n->op);
  if (info->lower != kiln_lower_elementwise || !n->out[0]) return 0;
  int any = 0;
  for (int k = 0; k < n->nin; k++) {
    const kiln_value *v = n->in[k];
    if (!v) continue;
    if (batched(v, N) && v->rank == n->out[0]->rank) any = 1;
    else if (!broadcast_fixed(v, n->out[0]->rank)) return 0;
  }
  return any;
}

/* N when the whole graph is image-wise over a batch of N > 1, else 0. */
static int64_t batch_of(const kiln_graph *g) {
  if (g->ninputs == 0 || g->noutputs == 0 || g->inputs[0]->rank < 1) return 0;
  int64_t N = g->inputs[0]->dims[0];
  if (N <= 1) return 0;
  for (int i = 0; i < g->ninputs; i++)
    if (!batched(g->inputs[i], N) || g->inputs[i]->is_output) return 0;
  for (int i = 0; i < g->noutputs; i++)
    if (!batched(g->outputs[i], N) || !g->outputs[i]->producer) return 0;
  for (int i = 0; i < g->nvalues; i++)
    if (g->values[i]->kind == KILN_VALUE_STATE || g->values[i]->aliases) return 0;
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i]->dead && !image_wise(g->nodes[i], N)) return 0;
  return N;
}

/* A copy of the fixed integer shape v with its first entry set to 1. */
static kiln_value *shape_for_one(kiln_graph *g, const kiln_value *v) {
  int64_t n = kiln_value_numel(v, 1);
  size_t es = kiln_dtype_size(v->dtype);
  void *data = kiln_arena_alloc(&g->arena, (size_t)n * es);
  memcpy(data, v->data, (size_t)n * es);
  if (v->dtype == KILN_DT_I64) ((int64_t *)data)[0] = 1;
  else ((int32_t *)data)[0] = 1;
  return kiln_value_const(g, kiln_graph_unique_name(g, v->name, "one_image"), v->dtype, v->rank, v->dims, data);
}

/* Every value's shape as it was, and whether the one-image shapes match. */
typedef struct saved { int rank; kiln_dim dims[KILN_MAX_RANK]; } saved;

static int shapes_agree(const kiln_graph *g, const saved *s, int nsaved, int64_t N) {
  for (int i = 0; i < nsaved && i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->data || v->rank < 0 || s[i].rank < 0) continue;
    if (v->kind != KILN_VALUE_INPUT && (!v->producer || v->producer->dead)) continue; /* not computed */
    if (v->rank != s[i].rank) return 0;
    for (int k = 0; k < v->rank; k++) {
      int64_t want = k == 0 && s[i].dims[0] == N ? 1 : s[i].dims[k];
      if (v->dims[k] != want) return 0;
    }
  }
  return 1;
}

int kiln_pass_per_image(kiln_graph *g, kiln_diag *d) {
  const char *env = getenv("KILN_PER_IMAGE");
  if (env && !strcmp(env, "0")) return 0;
  int64_t N = batch_of(g);
  if (!N) return 0;
  int nsaved = g->nvalues;
  saved *s = malloc((size_t)nsaved * sizeof *s);
  kiln_value **old_shape = calloc((size_t)g->nnodes + 1, sizeof *old_shape);
  if (!s || !old_shape) {
    free(s);
    free(old_shape);
    return kiln_error(d, NULL, "out of memory");
  }
  for (int i = 0; i < nsaved; i++) {
    s[i].rank = g->values[i]->rank;
    memcpy(s[i].dims, g->values[i]->dims, sizeof s[i].dims);
  }
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    const kiln_value *sh = n->op == KILN_OP_RESHAPE && !n->dead ? n->in[1] : NULL;
    if (!sh || (sh->dtype != KILN_DT_I64 && sh->dtype != KILN_DT_I32) || kiln_value_numel(sh, 1) < 1) continue;
    if (kiln_dtype_load_i(sh->dtype, sh->data, 0) != N) continue;
    old_shape[i] = n->in[1];
    kiln_node_set_input(n, 1, shape_for_one(g, sh));
  }
  for (int i = 0; i < g->ninputs; i++) g->inputs[i]->dims[0] = 1;
  kiln_diag quiet = {0};
  int ok = kiln_pass_infer_shapes(g, &quiet) == 0 && shapes_agree(g, s, nsaved, N);
  if (ok) g->images = N;
  else { /* undo: the batch-N shapes back, inferred again */
    for (int i = 0; i < g->nnodes; i++)
      if (old_shape[i]) kiln_node_set_input(g->nodes[i], 1, old_shape[i]);
    for (int i = 0; i < g->ninputs; i++) g->inputs[i]->dims[0] = N;
    if (kiln_pass_infer_shapes(g, d)) ok = -1;
  }
  free(s);
  free(old_shape);
  return ok < 0 ? -1 : 0;
}
