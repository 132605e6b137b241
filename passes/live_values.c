/* live_values: what the plain memory plan holds while a node's kernel
 * runs, estimated on the graph before lowering finishes, so a schedule can
 * size its scratch to what the plan leaves free (Winograd's V and Mt, the
 * direct convolution's bands, im2col's chunks) and the network's peak
 * workspace does not grow. */
#include <stdlib.h>

#include "conv_def.h"

/* Where node n's kernel runs among the graph's kernels: an epilogue's
 * kernel at its last step (the lowering's order, passes/lower.c). */
static int kernel_at(const kiln_node *n, const int *at) {
  const kiln_node *k = n->fused_into ? n->fused_into : n;
  if (k->epi.nsteps > 0) k = k->epi.steps[k->epi.nsteps - 1];
  return at[k->id];
}

/* The value v's bytes live in: its view root (views.c), else itself. */
static const kiln_value *storage_of(const kiln_lctx *L, const kiln_value *v) {
  return L->views && L->views->root[v->id] ? L->views->root[v->id] : v;
}

/* Node n's output 0 is materialised in the arena: not an epilogue
 * intermediate (kept in registers), a graph output, a constant or an
 * in-place update. */
static int in_arena(const kiln_node *n, int o) {
  const kiln_value *v = n->out[o];
  if (!v || v->is_output || v->data || v->aliases) return 0;
  /* a fused pool's input (fuse_pool.c) counts as stored, as in the
   * unfused plan: the direct path keeps that many sums in its scratch, and
   * the other layers keep the room they had (VGG-16's 3x3s their Winograd
   * schedules: without it, fusing conv1_2's pool took 12.8 MB off the
   * plan's peak and left them too little) */
  const kiln_node *pool = kiln_lower_pool_step(n->fused_into ? n->fused_into : n);
  if (o == 0 && pool && pool->in[0] == v) return 1;
  if (n->fused_into && n != n->fused_into->epi.steps[n->fused_into->epi.nsteps - 1]) return 0;
  return !(o == 0 && n->epi.nsteps > 0);
}

/* Bytes of the arena's graph values live while node cn's kernel runs, and
 * (*most) their largest such sum over the graph: the plain memory plan's
 * peak as plan_memory.c lays it out (values live over whole kernels, views
 * in their root, epilogue intermediates in registers, inputs, outputs and
 * weights outside the arena, an elementwise node's output over the input
 * it last reads, as plan_inplace allows; with `exact`, a fused chain's
 * output over a residual it last reads too), less any fragmentation.
 * -1: no memory to count with. */
static int64_t live_at(const kiln_lctx *L, const kiln_node *cn, int64_t *most, int exact) {
  const kiln_graph *gr = L->g;
  int maxid = 0;
  for (int i = 0; i < gr->nnodes; i++)
    if (gr->nodes[i]->id > maxid) maxid = gr->nodes[i]->id;
  size_t nv = (size_t)gr->nvalues + 1;
  int *at = calloc((size_t)maxid + 1, sizeof *at), *def = malloc(nv * sizeof *def), *last = malloc(nv * sizeof *last);
  int *share = malloc(nv * sizeof *share); /* the value whose bytes an in-place output takes, or -1 */
  int64_t *live = calloc((size_t)gr->nnodes + 1, sizeof *live), here = -1;
  if (!at || !def || !last || !share || !live) goto out;
  for (int i = 0; i < gr->nnodes; i++) at[gr->nodes[i]->id] = i;
  for (size_t v = 0; v < nv; v++) def[v] = -1, last[v] = -1, share[v] = -1;
  for (int i = 0; i < gr->nnodes; i++) { /* last readers */
    const kiln_node *n = gr->nodes[i];
    for (int j = 0; !n->dead && j < n->nin; j++)
      if (n->in[j] && kernel_at(n, at) > last[storage_of(L, n->in[j])->id])
        last[storage_of(L, n->in[j])->id] = kernel_at(n, at);
  }
  for (int i = 0; i < gr->nnodes; i++) { /* in-place elementwise outputs */
    const kiln_node *n = gr->nodes[i];
    const kiln_op_info *op = kiln_op_get(n->op);
    if (n->dead || !in_arena(n, 0) || storage_of(L, n->out[0]) != n->out[0] || !op->scalar) continue;
    /* an elementwise kernel reads its own inputs; with `exact`, a fused
     * chain's last step too: it stores what its kernel computed, and the
     * operands its steps load at the output's index (a residual Add's)
     * are the ones the plan may write over (plan_inplace.c: ResNet-50's
     * conv3 + Add + Relu over the block's input) */
    if (n->fused_into && !exact) continue;
    const kiln_node *first = n->fused_into ? n->fused_into : n;
    int nst = n->fused_into ? first->epi.nsteps : 1;
    for (int s = 0; s < nst && share[n->out[0]->id] < 0; s++) {
      const kiln_node *st = n->fused_into ? first->epi.steps[s] : n;
      for (int j = 0; j < st->nin; j++) {
        const kiln_value *x = st->in[j];
        if (x && x->producer && (!n->fused_into || in_arena(x->producer, x->producer_slot)) && !x->data && !x->is_output &&
            storage_of(L, x) == x && kiln_value_numel(x, 1) == kiln_value_numel(n->out[0], 1) &&
            last[x->id] == kernel_at(n, at)) {
          share[n->out[0]->id] = x->id;
          break;
        }
      }
    }
  }
  for (int i = 0; i < gr->nnodes; i++) { /* lifetimes, by the value owning the bytes */
    const kiln_node *n = gr->nodes[i];
    if (n->dead) continue;
    int k = kernel_at(n, at);
    for (int o = 0; o < n->nout; o++) {
      if (!in_arena(n, o)) continue;
      int r = storage_of(L, n->out[o])->id;
      while (share[r] >= 0) r = share[r];
      if (def[r] < 0 || k < def[r]) def[r] = k;
      if (last[storage_of(L, n->out[o])->id] > last[r]) last[r] = last[storage_of(L, n->out[o])->id];
      if (k > last[r]) last[r] = k;
    }
  }
  for (int v = 0; v < gr->nvalues; v++) {
    const kiln_value *val = gr->values[v];
    if (def[v] < 0 || share[v] >= 0 || val->rank < 0) continue;
    int64_t bytes = kiln_value_numel(val, 1) * (int64_t)kiln_dtype_size(kiln_lower_ctype(val->dtype));
    for (int i = def[v]; i <= last[v] && i < gr->nnodes; i++) live[i] += bytes;
  }
  *most = 0;
  for (int i = 0; i < gr->nnodes; i++)
    if (live[i] > *most) *most = live[i];
  here = live[kernel_at(cn, at)];
out:
  free(at), free(def), free(last), free(share), free(live);
  return here;
}

/* Three quarters of what is free: the plan places scratch in the gaps
 * between live values, which need not be contiguous (DenseNet-121's
 * Winograd scratch with all of it: 0.2 MB over its plain plan).
 *
 * By default a fused residual Add's output is counted apart from the
 * residual it is written over, which overstates the plain peak where such
 * a kernel sets it (ResNet-50: 7.23 MB, not 5.22).  That slack is what
 * keeps ResNet-50's 56x56 3x3s on Winograd (1.2-1.3 ms, not 2.2 on the
 * register path, one Zen 5 core), and the network's peak is set by its
 * stride-2 phase planes (6.55 MB) either way.  With the target's
 * lean_memory (`--lean-memory`) the count is exact, and lower_conv.c's
 * strided convolutions read X in place, so the peak is the plain plan's
 * (ResNet-50 5.23-5.28 MB) at the cost of those layers' speed. */
int64_t kiln_lower_scratch_room(const kiln_lctx *L, const kiln_node *n) {
  int64_t most = 0, here = live_at(L, n, &most, L->target && L->target->lean_memory);
  return here < 0 ? -1 : (most - here) / 4 * 3;
}
