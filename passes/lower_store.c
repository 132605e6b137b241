/* The one place a lowering writes its result, and the one addressing rule.
 *
 * kiln_lower_addr turns a logical index (one i64 expression per dim) into
 * an offset in a value's buffer for the value's layout: row-major for
 * KILN_LAYOUT_PLAIN, N, C/b, spatial..., b for KILN_LAYOUT_NCHWC.
 *
 * kiln_lower_store_output / kiln_lower_store_flat are every lowering's
 * final store.  They apply the node's epilogue (ir/graph.h kiln_epilogue:
 * the elementwise nodes fused after it) to the value before storing it:
 * each step is its op's `scalar` entry from ops.def, with the running
 * value in place of the input that reads the previous result (rounded to
 * that value's dtype first, so a fused chain computes what the unfused
 * graph stores and reloads) and its other operands loaded at the same
 * output index, broadcast.  The value lands in the last step's output.
 * With an empty epilogue nothing is added: the store is the one the
 * lowering made before this file existed.
 *
 * The _flat form takes the row-major element number of the output (what a
 * lowering that walks its output as [N*C, S] already has); the logical
 * index is derived from it (div/mod) only when an epilogue operand is
 * broadcast or a layout is not plain.
 *
 * A lowering that accumulates into its output in pieces (the conv fast
 * path, Gemm's row form) keeps doing so in the node's own output buffer
 * and, when kiln_lower_has_epilogue, makes one final pass that stores each
 * element through here exactly once. */
#include "lower.h"

#include <string.h>

#define LB (&L->b)

kiln_lx *kiln_lower_addr(kiln_lctx *L, const kiln_value *v, kiln_lx **idx) {
  if (v->layout == KILN_LAYOUT_PLAIN || v->rank < 2) return kiln_lower_offset(L, v, idx);
  /* NCHWc: [N][ceil(C/b)][spatial...][b] */
  int64_t b = v->layout_block > 0 ? v->layout_block : 1;
  kiln_lx *c = idx[1];
  kiln_lx *cb = b == 1 ? c : kiln_lx_bin(LB, KILN_BIN_DIV, c, kiln_lx_const_i(LB, b));
  kiln_lx *cr = b == 1 ? kiln_lx_const_i(LB, 0) : kiln_lx_bin(LB, KILN_BIN_REM, c, kiln_lx_const_i(LB, b));
  kiln_lx *off = cr;
  int64_t stride = b;
  for (int i = v->rank - 1; i >= 2; i--) {
    off = kiln_lx_iadd(LB, off, kiln_lx_imul(LB, idx[i], stride));
    stride *= v->dims[i];
  }
  off = kiln_lx_iadd(LB, off, kiln_lx_imul(LB, cb, stride));
  stride *= (v->dims[1] + b - 1) / b;
  return kiln_lx_iadd(LB, off, kiln_lx_imul(LB, idx[0], stride));
}

int kiln_lower_has_epilogue(const kiln_node *n) { return n->epi.nsteps > 0; }

const kiln_value *kiln_lower_result(const kiln_node *n, int slot) {
  if (slot == 0 && n->epi.nsteps > 0) return n->epi.steps[n->epi.nsteps - 1]->out[0];
  return n->out[slot];
}

static int same_dims(const kiln_value *a, const kiln_value *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* The one statement of what an epilogue may hold (kiln_lower_check_epilogue
 * reports it, the fusion pass asks it before keeping a step). */
int kiln_epilogue_refusal(const kiln_graph *g, const kiln_node *n, kiln_epi_refusal *r) {
  *r = (kiln_epi_refusal){.step = -1};
  const kiln_value *prev = n->nout > 0 ? n->out[0] : NULL;
  for (int s = 0; s < n->epi.nsteps; s++) {
    const kiln_node *st = n->epi.steps[s];
    const kiln_op_info *info = kiln_op_get(st->op);
    const char *what = NULL;
    int reads = 0;
    for (int k = 0; k < st->nin; k++) reads += st->in[k] == prev;
    for (int k = 1; k < st->nout; k++)
      if (st->out[k]) what = "has a second output";
    int pool = kiln_pool_tiles_input(st) || kiln_pool_is_gap(st);
    if (!prev || prev->is_output || prev->uses != reads) what = "reads a value that is used elsewhere";
    else if (reads == 0) what = "does not read the result of the step before";
    else if (pool && s != n->epi.nsteps - 1) what = "is a pool before the last step";
    else if (pool && (n->op != KILN_OP_CONV || st->in[0] != prev)) what = "is a pool after a node that is not a Conv";
    else if (!pool && (info->lower != kiln_lower_elementwise || !info->scalar)) what = "is not elementwise";
    else if (st->fused_into != n || st->nout < 1 || !st->out[0]) what = "is not fused into this node";
    else if (!pool && !same_dims(st->out[0], prev)) what = "changes the shape";
    else if (pool && (st->out[0]->layout != KILN_LAYOUT_PLAIN || prev->layout != KILN_LAYOUT_PLAIN))
      what = "is a pool in a blocked layout";
    /* a blocked operand only beside a result of its layout and shape (the
     * NCHWc convolution loads it at the store's own offset) */
    const kiln_value *res = n->epi.steps[n->epi.nsteps - 1]->out[0];
    for (int k = 0; k < st->nin && !what; k++)
      if (st->in[k] && st->in[k] != prev && st->in[k]->layout != KILN_LAYOUT_PLAIN &&
          (st->in[k]->layout != res->layout || st->in[k]->layout_block != res->layout_block || !same_dims(st->in[k], res)))
        what = "has an operand in a blocked layout";
    if (what) {
      *r = (kiln_epi_refusal){.what = what, .step = s, .node = st};
      return 1;
    }
    prev = st->out[0];
  }
  /* The kernel runs where the last step stands: a node between the two
   * must not read the node's other outputs (computed only then). */
  if (n->epi.nsteps > 0) {
    int i = 0;
    while (i < g->nnodes && g->nodes[i] != n) i++;
    for (i++; i < g->nnodes && g->nodes[i] != n->epi.steps[n->epi.nsteps - 1]; i++) {
      const kiln_node *m = g->nodes[i];
      for (int k = 0; k < m->nin && !m->dead; k++)
        for (int o = 1; o < n->nout; o++)
          if (m->in[k] && m->in[k] == n->out[o]) {
            *r = (kiln_epi_refusal){.what = "is read before the epilogue's last step", .step = -1, .out = o, .node = m};
            return 1;
          }
    }
  }
  return 0;
}

int kiln_lower_check_epilogue(kiln_lctx *L, const kiln_node *n) {
  kiln_epi_refusal r;
  if (!kiln_epilogue_refusal(L->g, n, &r)) return 0;
  if (r.step < 0)
    return kiln_lower_fail(L, n, "output %d is read by '%s' (%s) before the epilogue's last step", r.out, r.node->name,
                           kiln_op_get(r.node->op)->name);
  const kiln_op_info *info = kiln_op_get(r.node->op);
  const char *name = r.node->name[0] ? r.node->name : info->name;
  return kiln_lower_fail(L, n, "epilogue step %d ('%s', %s) %s", r.step, name, info->name, r.what);
}

/* The output index of one store: logical (idx) and/or flat (row-major
 * element number), each derived from the other when first needed. */
typedef struct oindex {
  const kiln_value *y; /* the node's output (logical shape of the index) */
  kiln_lx *idx[KILN_MAX_RANK];
  int have_idx;
  kiln_lx *flat;
  kiln_lx *phys; /* kiln_lower_store_phys: the offset in every operand and the result */
} oindex;

static kiln_lx **logical(kiln_lctx *L, oindex *o) {
  if (o->have_idx) return o->idx;
  int64_t stride = 1;
  for (int i = o->y->rank - 1; i >= 0; i--) {
    int64_t d = o->y->dims[i];
    kiln_lx *q = stride == 1 ? o->flat : kiln_lx_bin(LB, KILN_BIN_DIV, o->flat, kiln_lx_const_i(LB, stride));
    o->idx[i] = d == 1 ? kiln_lx_const_i(LB, 0) : i == 0 ? q : kiln_lx_bin(LB, KILN_BIN_REM, q, kiln_lx_const_i(LB, d));
    stride *= d;
  }
  o->have_idx = 1;
  return o->idx;
}

/* Offset into v (whose dims equal the output's, or broadcast to them). */
static kiln_lx *operand_offset(kiln_lctx *L, oindex *o, const kiln_value *v) {
  if (o->phys) return o->phys; /* same layout and dims (kiln_epilogue_refusal) */
  if (v->layout != KILN_LAYOUT_PLAIN) return kiln_lower_addr(L, v, logical(L, o)); /* same dims (checked) */
  if (o->flat && same_dims(v, o->y)) return o->flat;
  return kiln_lower_bcast_offset(L, v, o->y->rank, logical(L, o));
}

/* One step at output index o (its logical index computed once, kept in o). */
static kiln_lx *apply_at(kiln_lctx *L, const kiln_node *st, const kiln_value *prev, kiln_lx *carried, oindex *o) {
  const kiln_op_info *info = kiln_op_get(st->op);
  kiln_lx *in[64];
  if (st->nin > 64) {
    kiln_lower_fail(L, st, "too many inputs (%d)", st->nin);
    return NULL;
  }
  for (int k = 0; k < st->nin; k++) {
    kiln_slot s;
    kiln_sig_slot(info->inputs, k, &s);
    in[k] = NULL;
    if (!st->in[k] || s.constant) continue;
    kiln_lx *v;
    if (prev && st->in[k] == prev) v = kiln_lx_cast(LB, prev->dtype, carried); /* as stored, then reloaded */
    else v = kiln_lx_load(LB, kiln_lower_buf(L, st->in[k]), operand_offset(L, o, st->in[k]));
    in[k] = st->op == KILN_OP_CAST ? v : kiln_lx_cast(LB, kiln_lower_ctype(v->dtype), v);
  }
  return info->scalar(L, st, in);
}

kiln_lx *kiln_lower_apply(kiln_lctx *L, const kiln_node *st, const kiln_value *prev, kiln_lx *carried,
                          const kiln_value *y, kiln_lx **idx, kiln_lx *flat) {
  oindex o = {.y = y, .flat = flat, .have_idx = idx != NULL};
  if (idx) memcpy(o.idx, idx, (size_t)y->rank * sizeof *idx);
  return apply_at(L, st, prev, carried, &o);
}

int kiln_lower_pointwise_steps(const kiln_node *n) {
  const kiln_value *prev = n->nout > 0 ? n->out[0] : NULL;
  int s = 0;
  for (; s < n->epi.nsteps && prev; s++) {
    const kiln_node *st = n->epi.steps[s];
    const kiln_op_info *info = kiln_op_get(st->op);
    if (!info->scalar) return s; /* a pool (fuse_pool.c): a window, not one element */
    for (int k = 0; k < st->nin; k++) {
      kiln_slot sl;
      kiln_sig_slot(info->inputs, k, &sl);
      if (st->in[k] && !sl.constant && st->in[k] != prev) return s;
    }
    prev = st->out[0];
  }
  return s;
}

kiln_lx *kiln_lower_apply_steps(kiln_lctx *L, const kiln_node *n, kiln_lx *value, int count) {
  if (count <= 0) return value;
  const kiln_value *res = n->out[0];
  for (int s = 0; s < count && value; s++) {
    const kiln_node *st = n->epi.steps[s];
    value = kiln_lower_apply(L, st, res, value, n->out[0], NULL, NULL); /* pointwise: loads nothing */
    res = st->out[0];
  }
  return value;
}

static void store_steps(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx **idx, kiln_lx *flat, kiln_lx *phys,
                        kiln_lx *value, int done) {
  const kiln_value *y = n->out[slot];
  oindex o = {.y = y, .flat = flat, .have_idx = idx != NULL, .phys = phys};
  if (idx) memcpy(o.idx, idx, (size_t)y->rank * sizeof *idx);
  const kiln_value *res = slot == 0 && done > 0 ? n->epi.steps[done - 1]->out[0] : y;
  if (slot == 0)
    for (int s = done; s < n->epi.nsteps && value && kiln_op_get(n->epi.steps[s]->op)->scalar; s++) {
      const kiln_node *st = n->epi.steps[s];
      value = apply_at(L, st, res, value, &o);
      res = st->out[0];
    }
  if (!value) return; /* the step's scalar function failed; L->d says why */
  if (slot == 0 && kiln_lower_pool_step(n)) { /* a schedule that stores single outputs: lower_conv.c splits first */
    kiln_lower_fail(L, n, "internal: a single-output store into a fused pool");
    return;
  }
  kiln_lx *off = phys ? phys : o.flat && res->layout == KILN_LAYOUT_PLAIN ? o.flat : kiln_lower_addr(L, res, logical(L, &o));
  kiln_lb_store(LB, kiln_lower_buf(L, res), off, value);
}

void kiln_lower_store(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx **idx, kiln_lx *flat, kiln_lx *value) {
  store_steps(L, n, slot, idx, flat, NULL, value, 0);
}

void kiln_lower_store_rest(kiln_lctx *L, const kiln_node *n, kiln_lx **idx, kiln_lx *flat, kiln_lx *value, int done) {
  store_steps(L, n, 0, idx, flat, NULL, value, done);
}

void kiln_lower_store_phys(kiln_lctx *L, const kiln_node *n, kiln_lx *off, kiln_lx *value, int done) {
  store_steps(L, n, 0, NULL, NULL, off, value, done);
}

void kiln_lower_store_output(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx **idx, kiln_lx *value) {
  kiln_lower_store(L, n, slot, idx, NULL, value);
}

void kiln_lower_store_flat(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx *flat, kiln_lx *value) {
  kiln_lower_store(L, n, slot, NULL, flat, value);
}

/* ---- a pool as the epilogue's last step (fuse_pool.c) ---- */

const kiln_node *kiln_lower_pool_step(const kiln_node *n) {
  if (n->epi.nsteps < 1) return NULL;
  const kiln_node *st = n->epi.steps[n->epi.nsteps - 1];
  return kiln_op_get(st->op)->scalar ? NULL : st;
}

void kiln_lower_pool_window(const kiln_node *pool, int64_t *k) {
  if (pool->op == KILN_OP_GLOBAL_AVERAGE_POOL) {
    for (int i = 2; i < pool->in[0]->rank; i++) k[i - 2] = pool->in[0]->dims[i];
    return;
  }
  const kiln_attrs_pool *a = pool->attrs;
  for (int i = 0; i < a->kernel_shape.n; i++) k[i] = a->kernel_shape.v[i];
}

/* The steps from `done` up to n's pool at output index o, then the value
 * rounded as the unfused graph stores the pool's input, in its compute
 * type (both fused pool forms below). */
static kiln_lx *to_pool_input(kiln_lctx *L, const kiln_node *n, oindex *o, kiln_lx *value, int done) {
  const kiln_value *res = done > 0 ? n->epi.steps[done - 1]->out[0] : n->out[0];
  for (int s = done; s < n->epi.nsteps - 1 && value; s++) {
    const kiln_node *st = n->epi.steps[s];
    value = apply_at(L, st, res, value, o);
    res = st->out[0];
  }
  if (!value) return NULL; /* the step's scalar function failed; L->d says why */
  const kiln_value *x = kiln_lower_pool_step(n)->in[0];
  return kiln_lx_cast(LB, kiln_lower_ctype(x->dtype), kiln_lx_cast(LB, x->dtype, value)); /* as stored, then reloaded */
}

kiln_lx *kiln_lower_pool_input(kiln_lctx *L, const kiln_node *n, kiln_lx *flat, kiln_lx *value, int done) {
  oindex o = {.y = n->out[0], .flat = flat};
  return to_pool_input(L, n, &o, value, done);
}

void kiln_lower_store_window(kiln_lctx *L, const kiln_node *n, kiln_lx **pidx, kiln_lx *const *vals, int done) {
  const kiln_node *pool = kiln_lower_pool_step(n);
  const kiln_value *y = n->out[0], *x = pool->in[0], *py = pool->out[0];
  int sp = y->rank - 2, is_max = pool->op == KILN_OP_MAX_POOL, taps = 1;
  int64_t k[3];
  kiln_lower_pool_window(pool, k);
  for (int i = 0; i < sp; i++) taps *= (int)k[i];
  kiln_dtype ct = kiln_lower_ctype(x->dtype);
  kiln_lx *acc = NULL;
  for (int e = 0; e < taps; e++) {
    kiln_lx *idx[KILN_MAX_RANK] = {pidx[0], pidx[1]};
    for (int i = sp - 1, r = e; i >= 0; r /= (int)k[i], i--)
      idx[2 + i] = kiln_lx_iadd(LB, kiln_lx_imul(LB, pidx[2 + i], k[i]), kiln_lx_const_i(LB, r % k[i]));
    oindex o = {.y = y, .have_idx = 1};
    memcpy(o.idx, idx, (size_t)y->rank * sizeof *idx);
    kiln_lx *v = to_pool_input(L, n, &o, vals[e], done);
    if (!v) return;
    v = kiln_lx_local(LB, kiln_lb_decl(LB, ct, v)); /* a local: the max reads each value twice */
    acc = !acc ? v : is_max ? kiln_lower_max_nan(L, 1, acc, v) : kiln_lx_bin(LB, KILN_BIN_ADD, acc, v);
    if (e > 0 && e + 1 < taps) acc = kiln_lx_local(LB, kiln_lb_decl(LB, ct, acc));
  }
  if (!is_max) acc = kiln_lx_bin(LB, KILN_BIN_DIV, acc, kiln_lx_const_f(LB, ct, taps));
  kiln_lb_store(LB, kiln_lower_buf(L, py), kiln_lower_addr(L, py, pidx), kiln_lx_cast(LB, py->dtype, acc));
}
