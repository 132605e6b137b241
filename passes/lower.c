/* lower: graph -> loop IR program.  Requires static shapes (bind symbolic
 * dims first).  Values get buffers: graph inputs and outputs are the
 * caller's, constants are weights, everything else is workspace placed by
 * kiln_plan_memory.  Each live node becomes one kernel through its op's
 * `lower` entry; a graph output that is not computed by a node (an input
 * or a constant passed through) gets a copy kernel. */
#include "lower.h"

#include "../ir/loop_walk.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_lower_fail(kiln_lctx *L, const kiln_node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(L->d, n ? &n->loc : NULL, fmt, ap);
  va_end(ap);
  return -1;
}

kiln_dtype kiln_lower_ctype(kiln_dtype t) {
  return t == KILN_DT_F16 || t == KILN_DT_BF16 ? KILN_DT_F32 : t;
}

kiln_buf *kiln_lower_buf(kiln_lctx *L, const kiln_value *v) {
  kiln_buf *b = L->buf_of[v->id];
  if (b) return b;
  /* An in-place update writes into the storage of the value it updates:
   * one buffer, so its kernel reads and writes through one pointer. */
  if (v->aliases) return L->buf_of[v->id] = kiln_lower_buf(L, v->aliases);
  const kiln_value *root = L->views ? L->views->root[v->id] : NULL;
  if (root) {
    kiln_buf *rb = kiln_lower_buf(L, root);
    b = kiln_program_add_buf(L->b.p, v, KILN_BUF_WORKSPACE);
    b->view_of = rb;
    b->view_offset = L->views->offset[v->id];
    return L->buf_of[v->id] = b;
  }
  /* A graph input (or constant) that is also a graph output keeps its own
   * buffer, which nodes read; copy_output fills the output buffer. */
  kiln_buf_kind kind = v->kind == KILN_VALUE_INPUT ? KILN_BUF_INPUT
                       : v->kind == KILN_VALUE_STATE || (L->mutated && L->mutated[v->id]) ? KILN_BUF_STATE
                       : v->data ? KILN_BUF_WEIGHT
                       : v->is_output ? KILN_BUF_OUTPUT : KILN_BUF_WORKSPACE;
  b = kiln_program_add_buf(L->b.p, v, kind);
  L->buf_of[v->id] = b;
  return b;
}

int kiln_lower_fixed_weight(const kiln_lctx *L, const kiln_value *v) {
  return v->data && v->kind != KILN_VALUE_INPUT && v->kind != KILN_VALUE_STATE && !v->aliases &&
         !(L->mutated && L->mutated[v->id]) && !(L->views && L->views->root[v->id]);
}

/* Shorter than one vector only: measured on a 2-vCPU Zen 5 (AVX-512),
 * the Winograd output transform's rows of 13 tiles (SqueezeNet's 27x27
 * expand3x3) 0.293 -> 0.221 ms masked; rows of 28 (ResNet-50's 56x56)
 * ran 7% slower masked than as a vector and a scalar tail; with AVX2
 * code on the same machine masking rows of 13 in 8-lane vectors gained
 * nothing. */
kiln_sched kiln_lower_short_loop(const kiln_lctx *L, int64_t extent, kiln_dtype ct) {
  int64_t lanes = kiln_target_lanes(L->target, ct);
  return (kiln_sched){.masked_tail = L->target->kind != KILN_TARGET_GPU && extent >= 4 && extent < lanes};
}

kiln_buf *kiln_lower_weight_ct(kiln_lctx *L, const kiln_value *v) {
  kiln_dtype ct = kiln_lower_ctype(v->dtype);
  int weight = kiln_lower_fixed_weight(L, v);
  if (ct == v->dtype || !weight || !L->g || v->id < 0 || v->id >= L->g->nvalues) return kiln_lower_buf(L, v);
  if (!L->wide_of) L->wide_of = kiln_arena_array(L->b.p->arena, (size_t)L->g->nvalues + 1, sizeof *L->wide_of);
  if (L->wide_of[v->id]) return L->wide_of[v->id];
  int64_t numel = kiln_value_numel(v, 1);
  float *data = kiln_arena_array(L->b.p->arena, (size_t)numel + 1, sizeof *data);
  for (int64_t i = 0; i < numel; i++) data[i] = (float)kiln_dtype_load_f(v->dtype, v->data, (size_t)i);
  size_t len = strlen(v->name) + 8;
  char *name = kiln_arena_alloc(L->b.p->arena, len);
  snprintf(name, len, "%s.%s", v->name, kiln_dtype_name(ct));
  kiln_value w = *v;
  w.name = name;
  w.dtype = ct;
  w.data = data;
  return L->wide_of[v->id] = kiln_program_add_buf(L->b.p, &w, KILN_BUF_WEIGHT);
}

kiln_buf *kiln_lower_relaid_weight(kiln_lctx *L, const kiln_value *v, kiln_dtype ct, int64_t numel, const char *suffix,
                                   size_t (*dest)(int64_t src, const int64_t *shape), const int64_t *shape,
                                   int64_t run, int64_t step) {
  size_t es = kiln_dtype_size(ct);
  unsigned char *data = kiln_arena_array(L->b.p->arena, (size_t)numel + 1, es); /* zero: the padding */
  int64_t n = kiln_value_numel(v, 1);
  if (run < 1 || n % run) run = 1, step = 0; /* (dest per element) */
  /* dest once a run (VGG's fc6: 102 M weights, two divisions each) */
  for (int64_t i0 = 0; i0 < n; i0 += run) {
    size_t at = dest(i0, shape);
    if (v->dtype == KILN_DT_F32 && ct == KILN_DT_F32) {
      const char *src = (const char *)v->data + 4 * (size_t)i0; /* initializers need not be aligned */
      float *out = (float *)data;
      for (int64_t j = 0; j < run; j++) memcpy(&out[at + (size_t)(j * step)], src + 4 * j, 4);
      continue;
    }
    for (int64_t j = 0; j < run; j++) {
      double x = kiln_dtype_load_f(v->dtype, v->data, (size_t)(i0 + j));
      size_t a = at + (size_t)(j * step);
      if (ct == KILN_DT_F64) ((double *)data)[a] = x;
      else ((float *)data)[a] = (float)x;
    }
  }
  return kiln_lower_weight_data(L, v, ct, data, numel, suffix);
}

kiln_buf *kiln_lower_weight_data(kiln_lctx *L, const kiln_value *v, kiln_dtype ct, const void *data, int64_t numel,
                                 const char *suffix) {
  size_t len = strlen(v->name) + strlen(suffix) + 2;
  char *name = kiln_arena_alloc(L->b.p->arena, len);
  snprintf(name, len, "%s.%s", v->name, suffix);
  kiln_value w = *v;
  w.name = name;
  w.dtype = ct;
  w.data = data;
  w.rank = 1;
  w.dims[0] = numel;
  return kiln_program_add_buf(L->b.p, &w, KILN_BUF_WEIGHT);
}

/* The schedule's few words live in the program's arena, on the kernel. */
void kiln_lower_schedule(kiln_lctx *L, const char *fmt, ...) {
  char text[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  L->b.k->schedule = kiln_arena_strdup(L->b.p->arena, text);
}

/* Kernel names are C identifiers made from the node name (or op + index). */
void kiln_lower_begin(kiln_lctx *L, const kiln_node *n) {
  char name[96];
  const char *src = n->name[0] ? n->name : kiln_op_get(n->op)->name;
  int j = snprintf(name, sizeof name, "k%d_", L->b.p->nkernels);
  for (const char *s = src; *s && j < (int)sizeof name - 1; s++)
    name[j++] = isalnum((unsigned char)*s) ? *s : '_';
  name[j] = 0;
  kiln_lb_kernel(&L->b, name, n);
  if (n->epi.nsteps > 0) { /* the kernel computes the epilogue's nodes too */
    const kiln_node **all = kiln_arena_array(L->b.p->arena, (size_t)n->epi.nsteps + 1, sizeof *all);
    all[0] = n;
    for (int s = 0; s < n->epi.nsteps; s++) all[s + 1] = n->epi.steps[s];
    L->b.k->nodes = all;
    L->b.k->nnodes = n->epi.nsteps + 1;
  }
}

void kiln_lower_loops(kiln_lctx *L, const kiln_value *v, kiln_lx **idx) {
  for (int i = 0; i < v->rank; i++) {
    kiln_sched s = {.parallel = 1}; /* one output element per iteration */
    idx[i] = kiln_lx_index(&L->b, kiln_lb_for(&L->b, v->dims[i], s));
  }
}

void kiln_lower_close(kiln_lctx *L, int n) {
  for (int i = 0; i < n; i++) kiln_lb_end(&L->b);
}

kiln_lx *kiln_lower_offset(kiln_lctx *L, const kiln_value *v, kiln_lx **idx) {
  kiln_lx *off = kiln_lx_const_i(&L->b, 0);
  int64_t stride = 1;
  for (int i = v->rank - 1; i >= 0; i--) {
    off = kiln_lx_iadd(&L->b, off, kiln_lx_imul(&L->b, idx[i], stride));
    stride *= v->dims[i];
  }
  return off;
}

kiln_lx *kiln_lower_bcast_offset(kiln_lctx *L, const kiln_value *in, int out_rank, kiln_lx **idx) {
  kiln_lx *off = kiln_lx_const_i(&L->b, 0);
  int64_t stride = 1;
  for (int i = in->rank - 1; i >= 0; i--) {
    int oi = i + out_rank - in->rank;
    if (in->dims[i] != 1) off = kiln_lx_iadd(&L->b, off, kiln_lx_imul(&L->b, idx[oi], stride));
    stride *= in->dims[i];
  }
  return off;
}

kiln_lx *kiln_nest_for(kiln_lctx *L, kiln_nest *ns, int64_t extent, int par) {
  int open = extent != 1;
  KILN_ASSERT(ns->depth < 64);
  ns->opened[ns->depth++] = (char)open;
  if (!open) return kiln_lx_const_i(&L->b, 0);
  kiln_sched s = {0};
  s.parallel = par;
  ns->nopen++;
  return kiln_lx_index(&L->b, kiln_lb_for(&L->b, extent, s));
}

void kiln_nest_end(kiln_lctx *L, kiln_nest *ns) {
  KILN_ASSERT(ns->depth > 0);
  if (ns->opened[--ns->depth]) {
    ns->nopen--;
    kiln_lb_end(&L->b);
  }
}

kiln_buf *kiln_lower_scratch(kiln_lctx *L, const char *name, kiln_dtype t, int64_t numel) {
  kiln_value v = {0};
  v.name = kiln_arena_strdup(L->b.p->arena, name);
  v.id = -1;
  v.dtype = t;
  v.rank = 1;
  v.dims[0] = numel;
  kiln_buf *b = kiln_program_add_buf(L->b.p, &v, KILN_BUF_WORKSPACE);
  b->scratch = 1;
  return b;
}

kiln_lx *kiln_lower_load(kiln_lctx *L, const kiln_buf *b, kiln_lx *off) {
  return kiln_lx_cast(&L->b, kiln_lower_ctype(b->dtype), kiln_lx_load(&L->b, b, off));
}

kiln_lx *kiln_lower_max_nan(kiln_lctx *L, int is_max, kiln_lx *acc, kiln_lx *x) {
  return kiln_lx_max_nan(&L->b, is_max, acc, x);
}

/* Reshape, Flatten, Squeeze, Unsqueeze, Identity: the bytes stay, only
 * the shape changes.  No kernel when the output is a view of the input
 * (views.c); a copy otherwise (a graph output, state). */
int kiln_lower_copy(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *x = n->in[0], *y = n->out[0];
  kiln_buf *in = kiln_lower_buf(L, x), *out = kiln_lower_buf(L, y);
  /* a view (views.c) needs no kernel, unless elementwise steps are fused
   * after it (their kernel computes from here) */
  if (!kiln_lower_has_epilogue(n) && (out == in || (out->view_of == in && out->view_offset == 0))) return 0;
  kiln_lower_begin(L, n);
  kiln_sched s = {.parallel = 1};
  kiln_lx *i = kiln_lx_index(&L->b, kiln_lb_for(&L->b, kiln_value_numel(y, 1), s));
  kiln_lower_store_flat(L, n, 0, i, kiln_lx_load(&L->b, in, i));
  kiln_lb_end(&L->b);
  return 0;
}

/* An output no node computes (a graph input or a constant) is a copy. */
static int copy_output(kiln_lctx *L, const kiln_value *v, kiln_buf *out, int index) {
  kiln_buf *in = kiln_lower_buf(L, v);
  char name[64];
  snprintf(name, sizeof name, "k%d_output%d", L->b.p->nkernels, index);
  kiln_lb_kernel(&L->b, name, NULL);
  kiln_sched s = {.parallel = 1};
  kiln_lx *i = kiln_lx_index(&L->b, kiln_lb_for(&L->b, out->numel, s));
  kiln_lb_store(&L->b, out, i, kiln_lx_load(&L->b, in, i));
  kiln_lb_end(&L->b);
  return 0;
}

/* In-place updates (value->aliases): the updated value has the type of
 * the one it updates, which is state (or a parameter, which becomes state:
 * L->mutated), is computed by a node, and nothing else updates it. */
static int check_aliases(kiln_lctx *L) {
  kiln_graph *g = L->g;
  char *mutated = kiln_arena_array(&g->arena, (size_t)g->nvalues + 1, 1);
  L->mutated = mutated;
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i], *s = v->aliases;
    if (!s) continue;
    const kiln_node *n = v->producer;
    if (!n || s->aliases || s->kind == KILN_VALUE_INPUT || s->kind == KILN_VALUE_ACTIVATION ||
        L->mutated[s->id] || s->dtype != v->dtype || kiln_value_numel(s, 1) != kiln_value_numel(v, 1))
      return kiln_lower_fail(L, n, "value '%s' cannot update '%s' in place: %s", v->name, s->name,
                             !n ? "it is not computed by a node"
                             : s->kind == KILN_VALUE_INPUT || s->kind == KILN_VALUE_ACTIVATION ? "only state or parameters are updated in place"
                             : L->mutated[s->id] || s->aliases ? "it is updated in place twice"
                                                               : "their types differ");
    mutated[s->id] = 1;
    /* SSA: nodes reading s expect its contents before the update */
    for (int j = 0, after = 0; j < g->nnodes; j++) {
      const kiln_node *r = g->nodes[j];
      if (r == n) { after = 1; continue; }
      for (int k = 0; after && k < r->nin; k++)
        if (r->in[k] == s)
          return kiln_lower_fail(L, r, "reads '%s' after node '%s' updated it in place", s->name, n->name);
    }
  }
  return 0;
}

/* A weight no kernel reads is dropped from the program, so the weights
 * blob holds what runs: an f16/bf16 initializer every kernel reads
 * through its f32 copy (kiln_lower_weight_ct), or one a schedule re-laid
 * into a buffer of its own (blocked convolution weights, chunk-major Gemm
 * B: 45 of ResNet-50's 168 MB were such originals).  A weight a view
 * shares stays.  The remaining buffers are renumbered (kernels refer to
 * buffers by pointer, ids are table positions). */
static void drop_unused_weights(kiln_lctx *L) {
  kiln_program *p = L->b.p;
  unsigned char *used = kiln_arena_array(p->arena, (size_t)p->nbufs + 1, 1);
  for (int k = 0; k < p->nkernels; k++) kiln_loop_bufs_used(p->kernels[k]->body, used);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->view_of) used[p->bufs[i]->view_of->id] = 1;
  int n = 0;
  for (int i = 0; i < p->nbufs; i++) {
    if (p->bufs[i]->kind == KILN_BUF_WEIGHT && !used[i]) continue;
    p->bufs[n] = p->bufs[i];
    p->bufs[n]->id = n;
    n++;
  }
  p->nbufs = n;
}

kiln_program *kiln_lower(kiln_graph *g, kiln_diag *d) { return kiln_lower_with(g, NULL, d); }

kiln_program *kiln_lower_with(kiln_graph *g, const kiln_target *t, kiln_diag *d) {
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  p->target = t ? *t : kiln_target_default();
  kiln_lctx L = {.g = g, .d = d, .target = &p->target};
  L.b.p = p;
  L.buf_of = kiln_arena_array(&g->arena, (size_t)g->nvalues + 1, sizeof *L.buf_of);
  if (check_aliases(&L)) return NULL;
  L.views = kiln_plan_views(g);
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->rank < 0) continue;
    if (!kiln_value_is_static(v)) {
      kiln_error(d, v->producer ? &v->producer->loc : NULL, "value '%s' has a symbolic shape: bind the batch size first",
                 v->name);
      return NULL;
    }
  }
  /* Inputs first, then outputs, in order, so their buffers are numbered
   * like the API. */
  for (int i = 0; i < g->ninputs; i++) kiln_lower_buf(&L, g->inputs[i]);
  kiln_buf **copied = kiln_arena_array(&g->arena, (size_t)g->noutputs + 1, sizeof *copied);
  for (int i = 0; i < g->noutputs; i++) {
    const kiln_value *v = g->outputs[i];
    /* an in-place update is the state's buffer; the output gets a copy */
    if (v->producer && !v->aliases) kiln_lower_buf(&L, v);
    else copied[i] = kiln_program_add_buf(L.b.p, v, KILN_BUF_OUTPUT);
  }
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    /* A node with an epilogue is lowered where its last step stands, once
     * every operand of the chain has been computed. */
    if (n->epi.nsteps > 0) continue;
    if (n->fused_into) {
      if (n != n->fused_into->epi.steps[n->fused_into->epi.nsteps - 1]) continue;
      n = n->fused_into;
    }
    const kiln_op_info *info = kiln_op_get(n->op);
    if (kiln_lower_check_epilogue(&L, n)) return NULL;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k]) kiln_lower_buf(&L, n->in[k]);
    for (int k = 0; k < n->nout; k++)
      if (n->out[k]) kiln_lower_buf(&L, n->out[k]);
    for (int s = 0; s < n->epi.nsteps; s++) {
      const kiln_node *st = n->epi.steps[s];
      for (int k = 0; k < st->nin; k++)
        if (st->in[k] && st->in[k]->producer != n && (s == 0 || st->in[k]->producer != n->epi.steps[s - 1]))
          kiln_lower_buf(&L, st->in[k]);
      if (s == n->epi.nsteps - 1) kiln_lower_buf(&L, st->out[0]); /* the others stay in registers */
    }
    int failed = d->failed;
    if (info->lower(&L, n) || d->failed != failed) return NULL; /* a store's epilogue step may fail */
  }
  for (int i = 0; i < g->noutputs; i++)
    if (copied[i] && copy_output(&L, g->outputs[i], copied[i], i)) return NULL;
  drop_unused_weights(&L);
  /* one image at a time (passes/per_image.c): the kernels address image 0
   * of the inputs and outputs; the buffers are the caller's whole batch */
  p->images = g->images > 1 ? g->images : 1;
  for (int i = 0; p->images > 1 && i < p->nbufs; i++) {
    kiln_buf *b = p->bufs[i];
    if ((b->kind != KILN_BUF_INPUT && b->kind != KILN_BUF_OUTPUT) || b->view_of) continue;
    b->dims[0] *= p->images;
    b->numel *= p->images;
  }
  return p;
}
