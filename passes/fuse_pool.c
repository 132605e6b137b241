/* fuse_pool: graph -> graph where each MaxPool or AveragePool whose
 * windows tile its input (kernel = stride, no pads, no dilation: VGG's
 * and the 3-D CNN's 2x2(x2) pools), and each GlobalAveragePool, whose
 * input is the result of a Conv (its epilogue's last step, or the Conv
 * itself), read by nothing else, becomes the last step of that Conv's
 * epilogue.
 *
 * Why: the pool then reads the convolution's outputs where the kernel
 * still holds them (a Winograd tile's registers, the direct convolution's
 * scratch of sums) instead of from the full-size activation in memory:
 * the Conv no longer writes the pre-pool tensor and the pool no longer
 * reads it back.  Windows that tile the input are the ones a tile of
 * outputs can pool on its own: every output belongs to exactly one
 * window, so each pooled value is written once, by the iteration that
 * owns its window, with no reads of other tiles and no races between
 * threads.  Overlapping windows (ResNet's and SqueezeNet's 3x3 stride 2)
 * stay their own kernels, as do pools whose input is read elsewhere too
 * (U-Net's: the skip connection).
 *
 * A GlobalAveragePool's one window is the whole plane, which no tile
 * holds.  The transposed GEMM (lower_conv_gemmt.c: 1x1s and 3x3s on maps
 * up to 13x13, the last convolution of ResNet-50, MobileNetV2 and
 * SqueezeNet) computes all positions of a block of channels in one
 * iteration, so it sums each channel's plane out of its scratch of sums,
 * where it used to copy them into the Conv's output: that output (2048 x
 * 7 x 7 floats in ResNet-50, 1000 x 13 x 13 in SqueezeNet) is never
 * written, and there is one kernel and one hand-off between threads
 * fewer.
 *
 * The lowering (lower_conv.c, lower_conv_winograd.c) pools where a
 * schedule's store covers whole windows (kiln_lower_store_window); a
 * schedule that stores single outputs (the GEMM, depthwise and strided
 * forms, a window larger than a Winograd tile, a GlobalAveragePool
 * anywhere but the transposed GEMM) lowers the Conv without the pool and
 * the pool after it, as if unfused.  GPU targets are left alone
 * (one launch per op there: schedule_gpu.c); KILN_FUSE_POOL=0 turns the
 * pass off.  Runs after fuse_epilogue, so Relu and friends come first in
 * the chain, as the graph orders them. */
#include "lower.h"
#include "passes.h"

#include <stdlib.h>
#include <string.h>

int kiln_pool_tiles_input(const kiln_node *p) {
  if (p->op != KILN_OP_MAX_POOL && p->op != KILN_OP_AVERAGE_POOL) return 0;
  if (p->nin < 1 || !p->in[0] || p->nout < 1 || !p->out[0]) return 0;
  if (p->op == KILN_OP_MAX_POOL && p->nout > 1 && p->out[1]) return 0; /* Indices: an argmax per window */
  const kiln_attrs_pool *a = p->attrs;
  const kiln_value *x = p->in[0], *y = p->out[0];
  int sp = x->rank - 2, taps = 1;
  if (sp < 1 || sp > 3 || y->rank != x->rank || !kiln_dtype_is_float(x->dtype) || x->dtype != y->dtype) return 0;
  if (a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp) return 0;
  for (int i = 0; i < sp; i++) {
    int64_t k = a->kernel_shape.v[i], in = x->dims[2 + i];
    if (k < 1 || k > 8 || a->strides.v[i] != k || a->dilations.v[i] != 1 || a->pads.v[i] || a->pads.v[sp + i]) return 0;
    if (in < k || KILN_DIM_IS_SYM(in) || y->dims[2 + i] != in / k) return 0; /* ceil_mode's partial windows: no */
    taps *= (int)k;
  }
  return taps <= KILN_POOL_STEP_TAPS && x->dims[0] == y->dims[0] && x->dims[1] == y->dims[1];
}

/* A float GlobalAveragePool: one window, the whole plane.  Only the
 * transposed GEMM (ResNet-50's, MobileNetV2's and SqueezeNet's last
 * convolutions) sums it from its scratch; every other schedule lowers the
 * Conv without it (lower_conv.c). */
int kiln_pool_is_gap(const kiln_node *p) {
  if (p->op != KILN_OP_GLOBAL_AVERAGE_POOL || p->nin < 1 || !p->in[0] || p->nout < 1 || !p->out[0]) return 0;
  const kiln_value *x = p->in[0], *y = p->out[0];
  return x->rank >= 3 && x->rank <= 5 && y->rank == x->rank && kiln_dtype_is_float(x->dtype) && x->dtype == y->dtype;
}

int kiln_pass_fuse_pool(kiln_graph *g, const kiln_target *t, kiln_diag *d) {
  (void)d;
  const char *env = getenv("KILN_FUSE_POOL"); /* 0: off, for comparing fused and unfused in one benchmark */
  if ((t && t->kind == KILN_TARGET_GPU) || (env && !strcmp(env, "0"))) return 0;
  int *at = kiln_arena_array(&g->arena, (size_t)g->nvalues + 1, sizeof *at); /* producer's index + 1 */
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nout; k++)
      if (g->nodes[i]->out[k]) at[g->nodes[i]->out[k]->id] = i + 1;
  for (int j = 0; j < g->nnodes; j++) {
    kiln_node *pool = g->nodes[j];
    if (pool->dead || pool->fused_into || pool->epi.nsteps || !(kiln_pool_tiles_input(pool) || kiln_pool_is_gap(pool)))
      continue;
    const kiln_value *x = pool->in[0];
    if (x->is_output || x->uses != 1 || x->aliases || !x->producer || !at[x->id]) continue;
    kiln_node *last = x->producer, *conv = last->fused_into ? last->fused_into : last;
    if (conv->dead || conv->op != KILN_OP_CONV || x->producer_slot != 0) continue;
    if (conv->epi.nsteps ? conv->epi.steps[conv->epi.nsteps - 1] != last : conv != last) continue;
    kiln_epilogue_try_append(g, conv, pool, at[x->id] - 1, j); /* the kernel moves to the pool's place */
  }
  return 0;
}
