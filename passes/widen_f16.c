/* widen_f16: graph -> graph where, on a CPU target, every f16/bf16 tensor
 * inside an inference graph is an f32 tensor holding the same values: the
 * results are the ones the narrow graph computes, bit for bit.
 *
 * Why: kiln computes f16 ops in f32 anyway (passes/lower.c,
 * kiln_lower_ctype) and rounds at each store.  With narrow storage every
 * kernel converts at every load, and the convolution fast paths (read the
 * input in place, register tiles over plain f32 rows) do not apply: an f16
 * conv first copies its input into an f32 scratch.  The float16 SqueezeNet
 * ran at twice the time of the same network in f32.
 *
 * How the values stay the same:
 *  - constants (weights, biases, Clip bounds) are converted once, exactly
 *    (every f16 and bf16 value is an f32 value);
 *  - a graph input stays narrow and is read through Cast(to=f32) (exact);
 *  - a node that computes (Conv, Add, Softmax...) writes its unrounded f32
 *    result into a new value, and kiln.RoundTo(to=f16) rounds it into the
 *    old one: what the narrow store did.  fuse-epilogue, which runs next,
 *    takes the RoundTo into the producer's kernel, so the rounding costs
 *    two conversions in registers, not a pass over memory;
 *  - a node whose outputs are some of its input values (MaxPool, Relu,
 *    Concat, Reshape...) needs no rounding: its inputs are already rounded;
 *  - a graph output stays narrow, written by Cast(to=f16) from the f32
 *    result, which rounds once (no RoundTo before it: rounding twice to the
 *    same type is rounding once).
 * Cast(to=f16) inside the graph becomes Cast(to=f32) + RoundTo.
 *
 * The pass declines (the graph is unchanged) when asked (`--keep-f16`:
 * half the activation memory, for small devices); for GPU targets, where narrow
 * storage halves the memory traffic the kernels are bound by; for training
 * and explanation graphs (the pipeline does not call it); and when a node
 * reading or writing a narrow tensor is not one whose output type follows
 * its inputs' (a list below: e.g. ConstantOfShape's type comes from an
 * attribute), or a narrow tensor is state updated in place. */
#include <string.h>

#include "../ir/target.h"
#include "passes.h"

static int narrow(kiln_dtype t) { return t == KILN_DT_F16 || t == KILN_DT_BF16; }

/* Ops whose float outputs take their inputs' float type, so retyping the
 * inputs retypes the outputs.  Cast is handled apart (its `to`). */
static const kiln_op follows_inputs[] = {
    KILN_OP_RELU, KILN_OP_LEAKY_RELU, KILN_OP_PRELU, KILN_OP_ELU, KILN_OP_SELU, KILN_OP_SIGMOID,
    KILN_OP_HARD_SIGMOID, KILN_OP_HARD_SWISH, KILN_OP_TANH, KILN_OP_SOFTPLUS, KILN_OP_CLIP, KILN_OP_ERF,
    KILN_OP_EXP, KILN_OP_LOG, KILN_OP_SQRT, KILN_OP_ABS, KILN_OP_NEG, KILN_OP_RECIPROCAL, KILN_OP_FLOOR,
    KILN_OP_CEIL, KILN_OP_IDENTITY, KILN_OP_DROPOUT, KILN_OP_ADD, KILN_OP_SUB, KILN_OP_MUL, KILN_OP_DIV,
    KILN_OP_SUM, KILN_OP_MEAN, KILN_OP_MAX, KILN_OP_MIN, KILN_OP_CONV, KILN_OP_CONV_TRANSPOSE,
    KILN_OP_BATCH_NORM, KILN_OP_INSTANCE_NORM, KILN_OP_LRN, KILN_OP_MAX_POOL, KILN_OP_AVERAGE_POOL,
    KILN_OP_GLOBAL_AVERAGE_POOL, KILN_OP_GLOBAL_MAX_POOL, KILN_OP_SOFTMAX, KILN_OP_LOG_SOFTMAX, KILN_OP_GEMM,
    KILN_OP_MATMUL, KILN_OP_FLATTEN, KILN_OP_RESHAPE, KILN_OP_TRANSPOSE, KILN_OP_SQUEEZE, KILN_OP_UNSQUEEZE,
    KILN_OP_CONCAT, KILN_OP_SPLIT, KILN_OP_SLICE, KILN_OP_PAD, KILN_OP_RESIZE, KILN_OP_REDUCE_MEAN,
    KILN_OP_REDUCE_SUM, KILN_OP_REDUCE_MAX, KILN_OP_ROUND_TO, KILN_OP_POW, KILN_OP_WHERE, KILN_OP_EQUAL,
    KILN_OP_LESS, KILN_OP_GREATER, KILN_OP_EXPAND, KILN_OP_GATHER, KILN_OP_SHAPE, KILN_OP_ARGMAX};

/* Of those, the ops whose every output element is one of their input
 * elements (or a constant operand, or 0): rounded inputs give rounded
 * outputs.  Floor and Ceil of an f16 value are f16 values too. */
static const kiln_op selects_inputs[] = {
    KILN_OP_RELU, KILN_OP_CLIP, KILN_OP_ABS, KILN_OP_NEG, KILN_OP_FLOOR, KILN_OP_CEIL, KILN_OP_IDENTITY,
    KILN_OP_DROPOUT, KILN_OP_MAX, KILN_OP_MIN, KILN_OP_MAX_POOL, KILN_OP_GLOBAL_MAX_POOL, KILN_OP_FLATTEN,
    KILN_OP_RESHAPE, KILN_OP_TRANSPOSE, KILN_OP_SQUEEZE, KILN_OP_UNSQUEEZE, KILN_OP_CONCAT, KILN_OP_SPLIT,
    KILN_OP_SLICE, KILN_OP_PAD, KILN_OP_REDUCE_MAX, KILN_OP_ROUND_TO, KILN_OP_WHERE, KILN_OP_EXPAND, KILN_OP_GATHER};

static int in_list(const kiln_op *list, size_t n, kiln_op op) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == op) return 1;
  return 0;
}
#define IN(list, op) in_list(list, sizeof list / sizeof list[0], op)

static int touches_narrow(const kiln_node *n) {
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && narrow(n->in[k]->dtype)) return 1;
  for (int k = 0; k < n->nout; k++)
    if (n->out[k] && narrow(n->out[k]->dtype)) return 1;
  return 0;
}

/* Whether the pass can retype g (see the top of the file); 0 also when g
 * has no narrow tensor. */
static int widenable(const kiln_graph *g) {
  int any = 0;
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (!narrow(v->dtype)) continue;
    if (v->kind == KILN_VALUE_STATE || v->aliases) return 0;
    if ((v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_CONST) && (!v->data || !kiln_value_is_static(v)))
      return 0;
    any = 1;
  }
  for (int i = 0; i < g->nnodes && any; i++) {
    const kiln_node *n = g->nodes[i];
    if (n->dead || n->fused_into || n->epi.nsteps || !touches_narrow(n)) continue;
    if (n->op != KILN_OP_CAST && !IN(follows_inputs, n->op)) return 0;
  }
  return any;
}

/* A new f32 activation shaped like v, named after it. */
static kiln_value *wide_like(kiln_graph *g, const kiln_value *v, const char *tag) {
  kiln_value *w = kiln_value_new(g, kiln_graph_unique_name(g, v->name, tag), KILN_VALUE_ACTIVATION);
  w->dtype = KILN_DT_F32;
  w->rank = v->rank;
  memcpy(w->dims, v->dims, sizeof w->dims);
  return w;
}

/* One-input node `op` (Cast or RoundTo, both with Cast's attributes)
 * named after `at`, computing `out` from `in`. */
static void convert(kiln_graph *g, kiln_op op, const kiln_node *at, const char *tag, kiln_value *in, kiln_value *out,
                    kiln_dtype to) {
  kiln_node *c = kiln_node_new(g, op, kiln_graph_unique_name(g, at ? at->name : in->name, tag), 1, 1);
  if (at) c->loc = at->loc;
  ((kiln_attrs_cast *)c->attrs)->to = to;
  kiln_node_set_input(c, 0, in);
  kiln_node_set_output(c, 0, out);
}

/* Every live reader of `from`, except node `skip`, reads `to` instead. */
static void reroute(kiln_graph *g, kiln_value *from, kiln_value *to, const kiln_node *skip) {
  for (int i = 0; i < g->nnodes && from->uses > 0; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead || n == skip) continue;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k] == from) kiln_node_set_input(n, k, to);
  }
}

/* v's contents in f32; a graph output (a folded constant) keeps its type
 * and its readers read an f32 copy. */
static void widen_constant(kiln_graph *g, kiln_value *v) {
  int64_t count = kiln_value_numel(v, 1);
  float *f = kiln_arena_array(&g->arena, (size_t)(count ? count : 1), sizeof *f);
  const unsigned short *h = v->data;
  for (int64_t i = 0; i < count; i++) f[i] = v->dtype == KILN_DT_F16 ? kiln_f16_to_f32(h[i]) : kiln_bf16_to_f32(h[i]);
  if (v->is_output) {
    if (v->uses > 0)
      reroute(g, v, kiln_value_const(g, kiln_graph_unique_name(g, v->name, "f32"), KILN_DT_F32, v->rank, v->dims, f),
              NULL);
    return;
  }
  v->data = f;
  v->dtype = KILN_DT_F32;
}

/* v, a narrow graph input: read through Cast(to=f32). */
static void widen_input(kiln_graph *g, kiln_value *v) {
  kiln_value *w = wide_like(g, v, "f32");
  convert(g, KILN_OP_CAST, NULL, "to_f32", v, w, KILN_DT_F32);
  reroute(g, v, w, w->producer);
}

/* v, written by node p: see the top of the file. */
static void widen_activation(kiln_graph *g, kiln_value *v) {
  kiln_node *p = v->producer;
  kiln_dtype to = v->dtype;
  int slot = v->producer_slot, rounds = !IN(selects_inputs, p->op);
  if (p->op == KILN_OP_CAST) ((kiln_attrs_cast *)p->attrs)->to = KILN_DT_F32;
  if (v->is_output) { /* v keeps its type and name; its other readers read the rounded f32 */
    kiln_value *raw = wide_like(g, v, "f32"), *rounded = raw;
    kiln_node_set_output(p, slot, raw);
    convert(g, KILN_OP_CAST, p, "to_narrow", raw, v, to);
    if (rounds && v->uses > 0) {
      rounded = wide_like(g, v, "rounded");
      convert(g, KILN_OP_ROUND_TO, p, "round", raw, rounded, to);
    }
    reroute(g, v, rounded, NULL);
    return;
  }
  v->dtype = KILN_DT_F32;
  if (!rounds) return;
  kiln_value *raw = wide_like(g, v, "f32");
  kiln_node_set_output(p, slot, raw);
  convert(g, KILN_OP_ROUND_TO, p, "round", raw, v, to);
}

int kiln_pass_widen_f16(kiln_graph *g, const kiln_target *t, kiln_diag *d) {
  if ((t && (t->kind != KILN_TARGET_CPU || t->keep_narrow)) || !widenable(g)) return 0;
  int nvalues = g->nvalues; /* the values made below are f32 already */
  for (int i = 0; i < nvalues; i++) {
    kiln_value *v = g->values[i];
    if (!narrow(v->dtype)) continue;
    if (v->kind == KILN_VALUE_INPUT) widen_input(g, v);
    else if (v->data) widen_constant(g, v);
    else if (v->producer && !v->producer->dead) widen_activation(g, v);
  }
  return kiln_graph_toposort(g, d);
}
