/* autodiff: graph -> graph with the nodes computing d loss / d wrt appended
 * (reverse mode; each op's rule is its ops.def `grad` column).
 *
 * Forward, marks every value on a path from a wrt value (the gradient is
 * wanted); backward, in reverse topological order, hands each node whose
 * outputs received a gradient to its op's gradient function, and adds up
 * the contributions a value receives along several paths.  The result is
 * an ordinary graph: later passes, both printers and the memory plan see
 * the backward nodes like any other (ir/README.md, "Training"). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../ir/shape.h"
#include "grad.h"

struct kiln_grad_ctx {
  kiln_graph *g;
  kiln_diag *d;
  const kiln_node *fwd;  /* the node being differentiated */
  int nvals;             /* values that existed before autodiff */
  unsigned char *wanted; /* per value id < nvals: on a path from a wrt value */
  kiln_value **grad;     /* per value id < nvals: gradient so far */
  int serial;            /* names of made values */
  const char *prefix;    /* names of made values when there is no forward node */
};

kiln_grad_ctx *kiln_grad_builder(kiln_graph *g, const char *prefix, kiln_diag *d) {
  kiln_grad_ctx *c = kiln_arena_alloc(&g->arena, sizeof *c);
  *c = (kiln_grad_ctx){.g = g, .d = d, .prefix = kiln_arena_strdup(&g->arena, prefix)};
  return c;
}

kiln_graph *kiln_grad_graph(kiln_grad_ctx *c) { return c->g; }

int kiln_grad_wanted(const kiln_grad_ctx *c, const kiln_node *n, int k) {
  const kiln_value *v = k < n->nin ? n->in[k] : NULL;
  return v && v->id < c->nvals && c->wanted[v->id];
}

int kiln_grad_fail(kiln_grad_ctx *c, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kiln_error(c->d, c->fwd ? &c->fwd->loc : NULL, "gradient: %s", msg);
}

int kiln_grad_nondiff(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  (void)c, (void)n, (void)dy, (void)dx;
  return 0;
}

static const char *made_name(kiln_grad_ctx *c, const char *what) {
  char buf[256];
  const char *base = c->fwd && c->fwd->name[0] ? c->fwd->name : c->prefix ? c->prefix : "grad";
  snprintf(buf, sizeof buf, "%s.%s%d", base, what, c->serial++);
  return kiln_arena_strdup(&c->g->arena, buf);
}

kiln_node *kiln_grad_node(kiln_grad_ctx *c, kiln_op op, int nin, int nout) {
  kiln_node *m = kiln_node_new(c->g, op, made_name(c, "g"), nin, nout);
  if (c->fwd) { /* errors in the made nodes name the forward node */
    m->loc = c->fwd->loc;
    m->loc.node_index = -1;
  }
  return m;
}

int kiln_grad_emit(kiln_grad_ctx *c, kiln_node *m, int want_out) {
  for (int k = 0; k < m->nout; k++)
    if (!m->out[k] && (want_out < 0 || (want_out >> k & 1)))
      kiln_node_set_output(m, k, kiln_value_new(c->g, made_name(c, "d"), KILN_VALUE_ACTIVATION));
  kiln_shape_ctx sc = {c->g, c->d, 0};
  if (kiln_op_get(m->op)->shape(&sc, m)) return -1;
  for (int k = 0; k < m->nout; k++)
    if (m->out[k] && (m->out[k]->rank < 0 || m->out[k]->dtype == KILN_DT_UNDEF))
      return kiln_grad_fail(c, "internal: the shape function of %s left output %d unset", kiln_op_get(m->op)->name, k);
  return 0;
}

kiln_value *kiln_grad_apply(kiln_grad_ctx *c, kiln_op op, int nin, kiln_value *const *in) {
  int lo, hi;
  kiln_sig_arity(kiln_op_get(op)->outputs, &lo, &hi);
  kiln_node *m = kiln_grad_node(c, op, nin, lo > 0 ? lo : 1);
  for (int k = 0; k < nin; k++)
    if (in[k]) kiln_node_set_input(m, k, in[k]);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

kiln_value *kiln_grad_apply1(kiln_grad_ctx *c, kiln_op op, kiln_value *a) { return kiln_grad_apply(c, op, 1, &a); }

kiln_value *kiln_grad_apply2(kiln_grad_ctx *c, kiln_op op, kiln_value *a, kiln_value *b) {
  kiln_value *in[2] = {a, b};
  return kiln_grad_apply(c, op, 2, in);
}

kiln_value *kiln_grad_scalar(kiln_grad_ctx *c, kiln_dtype t, double v) {
  void *p = kiln_arena_alloc(&c->g->arena, 8);
  kiln_dtype_store_f(t, p, 0, v);
  return kiln_value_const(c->g, made_name(c, "k"), t, 0, NULL, p);
}

kiln_value *kiln_grad_ints(kiln_grad_ctx *c, int n, const int64_t *v) {
  int64_t *p = kiln_arena_array(&c->g->arena, (size_t)(n ? n : 1), sizeof *p);
  if (n) memcpy(p, v, (size_t)n * sizeof *p);
  int64_t dims[1] = {n};
  return kiln_value_const(c->g, made_name(c, "k"), KILN_DT_I64, 1, dims, p);
}

kiln_value *kiln_grad_sum_axes(kiln_grad_ctx *c, kiln_value *x, int naxes, const int64_t *axes, int keepdims) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_REDUCE_SUM, 2, 1);
  ((kiln_attrs_reduce *)m->attrs)->keepdims = keepdims;
  kiln_node_set_input(m, 0, x);
  kiln_node_set_input(m, 1, kiln_grad_ints(c, naxes, axes));
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

static int same_shape(const kiln_value *a, const kiln_value *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

kiln_value *kiln_grad_reshape_like(kiln_grad_ctx *c, kiln_value *x, const kiln_value *like) {
  if (same_shape(x, like)) return x;
  int64_t dims[KILN_MAX_RANK];
  for (int i = 0; i < like->rank; i++) dims[i] = like->dims[i];
  return kiln_grad_apply2(c, KILN_OP_RESHAPE, x, kiln_grad_ints(c, like->rank, dims));
}

kiln_value *kiln_grad_unbroadcast(kiln_grad_ctx *c, kiln_value *g, const kiln_value *like) {
  if (same_shape(g, like)) return g;
  int64_t axes[KILN_MAX_RANK];
  int naxes = 0, lead = g->rank - like->rank;
  for (int i = 0; i < g->rank; i++)
    if (i < lead || (like->dims[i - lead] == 1 && g->dims[i] != 1)) axes[naxes++] = i;
  kiln_value *s = naxes ? kiln_grad_sum_axes(c, g, naxes, axes, 1) : g;
  return s ? kiln_grad_reshape_like(c, s, like) : NULL;
}

/* A constant of v's dtype and shape, every element 1 (the loss's seed). */
static kiln_value *ones_like(kiln_grad_ctx *c, const kiln_value *v) {
  int64_t n = kiln_value_numel(v, 1);
  size_t size = kiln_dtype_size(v->dtype);
  void *p = kiln_arena_array(&c->g->arena, (size_t)n, size);
  for (int64_t i = 0; i < n; i++) kiln_dtype_store_f(v->dtype, p, (size_t)i, 1.0);
  int64_t dims[KILN_MAX_RANK];
  for (int i = 0; i < v->rank; i++) dims[i] = v->dims[i];
  return kiln_value_const(c->g, made_name(c, "seed"), v->dtype, v->rank, dims, p);
}

/* Adds a contribution to v's gradient. */
static int accumulate(kiln_grad_ctx *c, kiln_value *v, kiln_value *dv) {
  if (dv->dtype != v->dtype || !same_shape(dv, v)) {
    char a[128], b[128];
    kiln_value_type_str(c->g, v, a, sizeof a);
    kiln_value_type_str(c->g, dv, b, sizeof b);
    return kiln_grad_fail(c, "internal: the gradient of '%s' %s has type %s", v->name, a, b);
  }
  if (!c->grad[v->id]) {
    c->grad[v->id] = dv;
    return 0;
  }
  kiln_value *sum = kiln_grad_apply2(c, KILN_OP_ADD, c->grad[v->id], dv);
  if (!sum) return -1;
  c->grad[v->id] = sum;
  return 0;
}

int kiln_autodiff(kiln_graph *g, kiln_value *loss, int nwrt, kiln_value *const *wrt, kiln_value **grads,
                  kiln_diag *d) {
  kiln_grad_ctx c = {.g = g, .d = d, .nvals = g->nvalues};
  if (!kiln_dtype_is_float(loss->dtype) || loss->rank < 0 || kiln_value_numel(loss, 1) != 1)
    return kiln_error(d, NULL, "%s: the loss '%s' must be one floating-point number", g->file, loss->name);
  c.wanted = kiln_arena_array(&g->arena, (size_t)c.nvals, 1);
  c.grad = kiln_arena_array(&g->arena, (size_t)c.nvals, sizeof *c.grad);
  for (int i = 0; i < nwrt; i++) c.wanted[wrt[i]->id] = 1;
  int nnodes = g->nnodes; /* the forward graph: the nodes appended below are not walked */
  for (int i = 0; i < nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead || kiln_op_get(n->op)->grad == kiln_grad_nondiff) continue;
    int any = 0;
    for (int k = 0; k < n->nin; k++) any |= kiln_grad_wanted(&c, n, k);
    for (int k = 0; any && k < n->nout; k++)
      if (n->out[k] && kiln_dtype_is_float(n->out[k]->dtype)) c.wanted[n->out[k]->id] = 1;
  }
  if (!c.wanted[loss->id]) {
    for (int i = 0; i < nwrt; i++) grads[i] = NULL;
    return 0;
  }
  if (!(c.grad[loss->id] = ones_like(&c, loss))) return -1;
  for (int i = nnodes - 1; i >= 0; i--) {
    kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    kiln_value *dy[KILN_MAX_RANK * 4] = {0}, **dyp = dy, *dx_small[16] = {0}, **dx = dx_small;
    int flows = 0, any = 0;
    if (n->nout > (int)(sizeof dy / sizeof *dy))
      dyp = kiln_arena_array(&g->arena, (size_t)n->nout, sizeof *dyp);
    for (int k = 0; k < n->nout; k++)
      if (n->out[k] && n->out[k]->id < c.nvals && (dyp[k] = c.grad[n->out[k]->id])) flows = 1;
    for (int k = 0; k < n->nin; k++) any |= kiln_grad_wanted(&c, n, k);
    if (!flows || !any) continue;
    const kiln_op_info *info = kiln_op_get(n->op);
    c.fwd = n;
    if (!info->grad)
      return kiln_grad_fail(&c, "kiln has no gradient for %s yet; freeze the parameters before it, or "
                            "leave it out of the trained part", info->name);
    if (n->nin > 16) dx = kiln_arena_array(&g->arena, (size_t)n->nin, sizeof *dx);
    else memset(dx_small, 0, sizeof dx_small);
    if (info->grad(&c, n, dyp, dx)) return -1;
    for (int k = 0; k < n->nin; k++) {
      if (!kiln_grad_wanted(&c, n, k)) continue;
      if (!dx[k]) {
        if (info->grad == kiln_grad_nondiff) continue;
        return kiln_grad_fail(&c, "internal: no gradient for input %d", k);
      }
      if (accumulate(&c, n->in[k], dx[k])) return -1;
    }
  }
  for (int i = 0; i < nwrt; i++) grads[i] = c.grad[wrt[i]->id];
  return 0;
}
