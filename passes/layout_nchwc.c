/* layout_nchwc: graph -> graph where the activations passed between
 * direct convolutions are stored channel-blocked (NCHWc, b = the target's
 * f32 lanes: 16 with AVX-512, 8 with AVX2), every other value unchanged.
 *
 * Why: a convolution with vectors along output channels (the MLAS and
 * oneDNN form, lower_conv_strided.c) broadcasts one input value per
 * output position and channel.  From NCHW each input channel is a new
 * plane, a new cache line and often a new page; from NCHWc the b channels
 * of a position share one line, and the b outputs of a position are one
 * vector store instead of a scratch row copied out one scalar at a time.
 *
 * Which convolutions (kiln_conv_nchwc_shape): 2-D Conv, one group, no
 * dilation, float32, constant weights, output channels a multiple of b, a
 * window row the strided kernel unrolls, no fused pool, epilogue operands
 * of the result's own shape; and, as measured per kernel (bench/README,
 * "The NCHWc layout pass"), not on maps of 13x13 or fewer (the transposed
 * GEMM's), not with strided windows (a 1x1 stride 2 is taken), not 3x3
 * stride-1 with 32 channels or more (Winograd's).  Those are the only
 * nodes that read or write a blocked value; they read a plain X as well
 * (the graph's input, a pool's output) and write a plain result where a
 * reader needs it, so the layout changes inside the convolutions at a
 * region's borders and no reorder kernel exists.
 *
 * Which values (a fixpoint that only ever unblocks): a direct
 * convolution's result is blocked unless it is a graph output, its
 * channels are not a multiple of b, or some reader takes only plain
 * values; a reader takes a blocked value when it is a direct convolution
 * reading it as X, or an epilogue step of one whose own result is blocked
 * (a residual Add: the operand is loaded at the store's own offset, so
 * both must have one layout).  Shapes stay logical (NCHW); the layout
 * lives on the value (ir/graph.h), and lowering reads it for addresses.
 *
 * Off by default: on this host it is level with the plain schedules on
 * ResNet-50 and slower on MobileNetV2 (bench/README).  `--layout nchwc`
 * (kiln_target.layout_nchwc) turns it on for CPU inference;
 * KILN_LAYOUT=plain|nchwc overrides either way, for A/B runs.
 * Runs after fuse-pool: epilogues are settled. */
#include "conv_def.h"
#include "passes.h"

#include <stdlib.h>
#include <string.h>

#include "../ir/target.h"

static int same_dims(const kiln_value *a, const kiln_value *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static int fixed(const kiln_value *v) {
  return v->data && (v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_CONST) && !v->aliases;
}

/* Calls fn on every operand an epilogue step of n reads beside the chain's
 * running value (constant slots excluded); stops at the first nonzero. */
static int each_operand(const kiln_node *n, int (*fn)(const kiln_value *, const void *), const void *ctx) {
  const kiln_value *prev = n->out[0];
  for (int s = 0; s < n->epi.nsteps; s++) {
    const kiln_node *st = n->epi.steps[s];
    const kiln_op_info *info = kiln_op_get(st->op);
    for (int k = 0; k < st->nin; k++) {
      kiln_slot sl;
      kiln_sig_slot(info->inputs, k, &sl);
      if (st->in[k] && !sl.constant && st->in[k] != prev) {
        int r = fn(st->in[k], ctx);
        if (r) return r;
      }
    }
    prev = st->out[0];
  }
  return 0;
}

static int operand_unlike(const kiln_value *v, const void *res) { return !same_dims(v, res); }

int kiln_conv_nchwc_shape(const kiln_node *n, int64_t b) {
  if (n->op != KILN_OP_CONV || n->dead || n->fused_into || n->nin < 2 || !n->in[0] || !n->in[1] || !n->out[0])
    return 0;
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  if (x->rank != 4 || y->rank != 4 || x->dtype != KILN_DT_F32 || y->dtype != KILN_DT_F32 || w->dtype != KILN_DT_F32)
    return 0;
  if (a->group != 1 || a->kernel_shape.n != 2 || a->strides.n != 2 || a->dilations.n != 2 || a->pads.n != 4) return 0;
  for (int i = 0; i < 4; i++)
    if (KILN_DIM_IS_SYM(x->dims[i]) || KILN_DIM_IS_SYM(y->dims[i])) return 0;
  if (!fixed(w) || (n->nin > 2 && n->in[2] && !fixed(n->in[2]))) return 0;
  if (y->dims[1] % b || x->dims[1] * a->kernel_shape.v[0] * a->kernel_shape.v[1] < KILN_CONV_NCHWC_MIN_TERMS) return 0;
  for (int i = 0; i < 2; i++)
    if (a->dilations.v[i] != 1 || a->pads.v[i] < 0 || a->pads.v[2 + i] < 0) return 0;
  int64_t k1 = a->kernel_shape.v[1], s1 = a->strides.v[1], p1 = a->pads.v[1];
  /* the strided kernel's unrolled row and its left border tile */
  if (k1 > KILN_CONV_NCHWC_K_MAX || (p1 + s1 - 1) / s1 > KILN_CONV_NCHWC_PB) return 0;
  const kiln_value *res = kiln_lower_result(n, 0);
  for (int s = 0; s < n->epi.nsteps; s++)
    if (!kiln_op_get(n->epi.steps[s]->op)->scalar) return 0; /* a fused pool */
  if (!same_dims(res, y) || each_operand(n, operand_unlike, res)) return 0;
  /* Measured per kernel against the plain schedules (bench/README, "The
   * NCHWc layout pass"): the strided kernel lost on maps of 13x13 and
   * smaller (the transposed GEMM's: MobileNetV2's 7x7 projections 4x
   * slower) and on strided windows (ResNet-50's stride-2 3x3s 1.65x) */
  if (y->dims[2] * y->dims[3] <= 169 || ((a->strides.v[0] > 1 || s1 > 1) && a->kernel_shape.v[0] * k1 > 1)) return 0;
  /* Winograd's shapes (lower_conv_winograd.c pick_m): it stays ahead */
  const char *env = getenv("KILN_NCHWC_WINOGRAD");
  int wino = a->kernel_shape.v[0] == 3 && k1 == 3 && a->strides.v[0] == 1 && s1 == 1 && x->dims[1] >= 32 &&
             y->dims[1] >= 32 && y->dims[2] >= 7 && y->dims[3] >= 7;
  return !wino || (env && env[0] == '1');
}

typedef struct fix {
  char *blocked; /* by value id */
  const char *cand; /* by node id: a direct convolution */
} fix;

static int operand_plain(const kiln_value *v, const void *ctx) { return !((const fix *)ctx)->blocked[v->id]; }

/* Whether reader m (a live node) may read blocked value v at slot k. */
static int takes_blocked(const fix *f, const kiln_node *m, int k) {
  if (!m->fused_into) return f->cand[m->id] && k == 0;
  const kiln_node *c = m->fused_into; /* an epilogue step: v is an operand (a result is never a chain's link) */
  return f->cand[c->id] && f->blocked[kiln_lower_result(c, 0)->id];
}

int kiln_pass_layout_nchwc(kiln_graph *g, const kiln_target *t, kiln_diag *d) {
  (void)d;
  kiln_target def;
  if (!t) def = kiln_target_default(), t = &def; /* what lowering takes then */
  const char *env = getenv("KILN_LAYOUT");
  int on = t && t->kind == KILN_TARGET_CPU && t->layout_nchwc;
  if (env && !strcmp(env, "plain")) on = 0;
  if (env && !strcmp(env, "nchwc") && t && t->kind == KILN_TARGET_CPU) on = 1;
  if (!on) return 0;
  int64_t b = kiln_target_lanes(t, KILN_DT_F32);
  if (b < 2) return 0;
  int maxnode = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->id >= maxnode) maxnode = g->nodes[i]->id + 1;
  fix f = {.blocked = kiln_arena_array(&g->arena, (size_t)g->nvalues + 1, 1)};
  char *cand = kiln_arena_array(&g->arena, (size_t)maxnode + 1, 1);
  f.cand = cand;
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (!kiln_conv_nchwc_shape(n, b)) continue;
    cand[n->id] = 1;
    const kiln_value *r = kiln_lower_result(n, 0);
    if (!r->is_output && !r->aliases && r->dims[1] % b == 0) f.blocked[r->id] = 1;
  }
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < g->nnodes; i++) {
      const kiln_node *m = g->nodes[i];
      if (m->dead) continue;
      for (int k = 0; k < m->nin; k++) {
        const kiln_value *v = m->in[k];
        if (v && f.blocked[v->id] && !takes_blocked(&f, m, k)) f.blocked[v->id] = 0, changed = 1;
      }
      /* a blocked result needs its epilogue operands blocked too */
      if (cand[m->id] && f.blocked[kiln_lower_result(m, 0)->id] && each_operand(m, operand_plain, &f))
        f.blocked[kiln_lower_result(m, 0)->id] = 0, changed = 1;
    }
  }
  for (int i = 0; i < g->nvalues; i++)
    if (f.blocked[g->values[i]->id]) {
      g->values[i]->layout = KILN_LAYOUT_NCHWC;
      g->values[i]->layout_block = (int)b;
    }
  return 0;
}
