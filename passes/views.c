/* views: before lowering, decides which values share another value's bytes
 * instead of being copied into storage of their own.
 *
 * Contract: a value becomes a view only when every byte it shares is
 * written once, by one kernel, before anything reads it through either
 * name -- so dropping the copy cannot change a result.
 *
 *  - Reshape, Flatten, Squeeze, Unsqueeze, Identity (ops whose `lower`
 *    entry is kiln_lower_copy) and Dropout without a mask output anything
 *    reads (inference: a copy, kiln_lower_dropout): the output is a view of the
 *    input, unless
 *    the output is a graph output (the caller's memory: the copy stays),
 *    or either side is state or updated in place (its bytes change).
 *    A view of a graph input or a weight is fine: nobody writes them.
 *  - Concat whose inputs' slices of the output are contiguous (every dim
 *    before the axis is 1: batch-1 channel concat in DenseNet, SqueezeNet,
 *    GoogLeNet): an input produced by a node -- not a graph input, weight,
 *    state, graph output, in-place update, a view already, or a slice of
 *    another Concat -- whose last reader is this Concat is a view of its
 *    slice of the output, so its producer writes straight into the
 *    concatenation (an input read later would keep the whole output alive
 *    until then: DenseNet's features, read by every later Concat of their
 *    block, would more than double its memory), and its
 *    producer writes straight into the concatenation; Concat's kernel
 *    copies only the inputs left (none: no kernel).
 *
 * In-place updates (value->aliases, ir/README.md "Training") are not views:
 * the updated value and the one it updates are one buffer (kiln_lower_buf).
 * The memory plan keeps a view and its root one allocation. */
#include "lower.h"

#include <string.h>

/* Values whose bytes change after they are first written: state, and what
 * an in-place update writes into. */
static void mark_mutable(const kiln_graph *g, char *mut) {
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->kind == KILN_VALUE_STATE) mut[v->id] = 1;
    if (v->aliases) mut[v->id] = mut[v->aliases->id] = 1;
  }
}

static int numel_known(const kiln_value *v) { return v && v->rank >= 0 && kiln_value_is_static(v); }

static void plan_copy(kiln_views *V, const char *mut, const kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  if (!x || !y || !numel_known(x) || !numel_known(y)) return;
  if (y->is_output || mut[x->id] || mut[y->id] || x->dtype != y->dtype) return;
  if (kiln_value_numel(x, 1) != kiln_value_numel(y, 1) || V->root[y->id]) return;
  V->root[y->id] = x;
  V->offset[y->id] = 0;
}

/* Concat whose inputs are contiguous slices of its output: static, axis
 * valid, every dim before the axis 1, output not mutable.  Returns the
 * output, or NULL. */
static const kiln_value *contiguous_concat(const kiln_node *n, const char *mut) {
  const kiln_attrs_concat *a = n->attrs;
  const kiln_value *y = n->out[0];
  if (!numel_known(y) || mut[y->id]) return NULL;
  int ax = (int)a->axis;
  if (ax < 0) ax += y->rank;
  if (ax < 0 || ax >= y->rank) return NULL; /* the lowering reports it */
  for (int i = 0; i < ax; i++)
    if (y->dims[i] != 1) return NULL; /* slices are strided, not contiguous */
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && (!numel_known(n->in[k]) || n->in[k]->dtype != y->dtype)) return NULL;
  return y;
}

static int64_t in_bytes(const kiln_value *x) { return kiln_value_numel(x, 1) * (int64_t)kiln_dtype_size(x->dtype); }

typedef struct vplan {
  kiln_views *V;
  const char *mut;
  int *last_read;          /* by value id: index of the last node reading it */
  const kiln_node **home;  /* by value id: the Concat whose slice it is written into */
  int64_t *home_off;       /* ... at this byte offset */
} vplan;

/* Pass 1: an input's home is the Concat that reads it last, when that
 * Concat is contiguous and the input may be written anywhere (made by a
 * node, not a graph output, not mutable, not itself a view candidate). */
static void find_homes(vplan *P, const kiln_node *n, int at) {
  if (!contiguous_concat(n, P->mut)) return;
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    const kiln_value *x = n->in[k];
    if (!x) continue;
    int twice = 0;
    for (int j = 0; j < n->nin; j++)
      if (j != k && n->in[j] == x) twice = 1;
    if (!twice && P->last_read[x->id] == at && x->kind == KILN_VALUE_ACTIVATION && x->producer && !x->data &&
        !x->is_output && !P->mut[x->id] && kiln_op_get(x->producer->op)->lower != kiln_lower_copy && in_bytes(x) > 0) {
      P->home[x->id] = n;
      P->home_off[x->id] = off;
    }
    off += in_bytes(x);
  }
}

/* Pass 2, at Concat n: when every input lives in one other Concat's
 * output, in the same order and back to back (DenseNet: each Concat of a
 * block is a prefix of the block's last one), n's output is a view of that
 * run and n has no kernel; otherwise the inputs at home here become views
 * of their slices. */
static void plan_concat(vplan *P, const kiln_node *n) {
  const kiln_value *y = contiguous_concat(n, P->mut);
  if (!y) return;
  kiln_views *V = P->V;
  const kiln_node *h = NULL;
  int64_t base = 0, off = 0, ok = 1, any = 0;
  for (int k = 0; k < n->nin && ok; k++) {
    const kiln_value *x = n->in[k];
    if (!x) continue;
    if (!any++) { h = P->home[x->id]; base = P->home_off[x->id]; }
    ok = h && h != n && P->home[x->id] == h && P->home_off[x->id] == base + off;
    off += in_bytes(x);
  }
  if (ok && any && !y->is_output && !P->home[y->id] && !V->root[y->id]) {
    V->root[y->id] = h->out[0];
    V->offset[y->id] = base;
    return;
  }
  off = 0;
  for (int k = 0; k < n->nin; k++) {
    const kiln_value *x = n->in[k];
    if (!x) continue;
    if (P->home[x->id] == n && !V->root[x->id]) {
      V->root[x->id] = y;
      V->offset[x->id] = off;
    }
    off += in_bytes(x);
  }
}

kiln_views *kiln_plan_views(kiln_graph *g) {
  kiln_views *V = kiln_arena_alloc(&g->arena, sizeof *V);
  size_t n = (size_t)g->nvalues + 1;
  V->root = kiln_arena_array(&g->arena, n, sizeof *V->root);
  V->offset = kiln_arena_array(&g->arena, n, sizeof *V->offset);
  char *mut = kiln_arena_array(&g->arena, n, 1);
  mark_mutable(g, mut);
  vplan P = {.V = V, .mut = mut};
  P.last_read = kiln_arena_array(&g->arena, n, sizeof *P.last_read);
  P.home = kiln_arena_array(&g->arena, n, sizeof *P.home);
  P.home_off = kiln_arena_array(&g->arena, n, sizeof *P.home_off);
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nin; k++)
      if (!g->nodes[i]->dead && g->nodes[i]->in[k]) P.last_read[g->nodes[i]->in[k]->id] = i;
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *nd = g->nodes[i];
    if (!nd->dead && nd->nin > 0 && nd->nout > 0 && kiln_op_get(nd->op)->lower == kiln_lower_concat) find_homes(&P, nd, i);
  }
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *nd = g->nodes[i];
    if (nd->dead || nd->nin < 1 || nd->nout < 1) continue;
    const kiln_op_info *info = kiln_op_get(nd->op);
    if (info->lower == kiln_lower_copy || (info->lower == kiln_lower_dropout && !kiln_dropout_mask_wanted(nd)))
      plan_copy(V, mut, nd);
    else if (info->lower == kiln_lower_concat) plan_concat(&P, nd);
  }
  return V;
}
