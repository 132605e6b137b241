/* Gradients of the pools (ops.def `grad`; see grad.h for the contract).
 *
 * MaxPool and AveragePool have their own gradient ops, kiln.MaxPoolGrad
 * (X, dY) and kiln.AveragePoolGrad (dY, #x_shape) (lowered by
 * passes/lower_pool_grad.c), taking the forward's window attributes as
 * they are after shape inference (canonical: every kernel, stride,
 * dilation and pad explicit).  No composition of existing ops expresses
 * "route each output's gradient to the first maximum of its window" or a
 * scatter over overlapping windows without materialising a taps-times
 * larger tensor.  The global pools reuse them or plain ops:
 *   GlobalAveragePool: dX = Expand(dY / S), S the plane size;
 *   GlobalMaxPool: kiln.MaxPoolGrad with the whole plane as the window
 *     (the gradient goes to the first maximum of the plane, as MaxPool's). */
#include "grad.h"

#define WANT(k) kiln_grad_wanted(c, n, k)
#define TRY(x)           \
  do {                   \
    if (!(x)) return -1; \
  } while (0)

static kiln_ints ints_of(kiln_grad_ctx *c, int n, const int64_t *v) {
  int64_t *p = kiln_arena_array(&kiln_grad_graph(c)->arena, (size_t)n, sizeof *p);
  for (int i = 0; i < n; i++) p[i] = v[i];
  return (kiln_ints){n, p};
}

/* kiln.MaxPoolGrad(X, dY) with the window attributes a. */
static kiln_value *max_pool_grad(kiln_grad_ctx *c, kiln_value *x, kiln_value *dy, const kiln_attrs_pool *a) {
  kiln_node *m = kiln_grad_node(c, KILN_OP_MAX_POOL_GRAD, 2, 1);
  *(kiln_attrs_pool *)m->attrs = *a;
  kiln_node_set_input(m, 0, x);
  kiln_node_set_input(m, 1, dy);
  return kiln_grad_emit(c, m, 1) ? NULL : m->out[0];
}

/* The Indices output (integers) takes no gradient. */
int kiln_grad_max_pool(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0) || !dy[0]) return 0;
  TRY(dx[0] = max_pool_grad(c, n->in[0], dy[0], n->attrs));
  return 0;
}

int kiln_grad_average_pool(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  kiln_node *m = kiln_grad_node(c, KILN_OP_AVERAGE_POOL_GRAD, 2, 1);
  *(kiln_attrs_pool *)m->attrs = *(const kiln_attrs_pool *)n->attrs;
  kiln_node_set_input(m, 0, dy[0]);
  kiln_node_set_input(m, 1, kiln_grad_ints(c, x->rank, x->dims));
  TRY(!kiln_grad_emit(c, m, 1));
  dx[0] = m->out[0];
  return 0;
}

int kiln_grad_global_average_pool(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  const kiln_value *x = n->in[0];
  int64_t S = 1;
  for (int i = 2; i < x->rank; i++) S *= x->dims[i];
  kiln_value *g = dy[0];
  if (S != 1) TRY(g = kiln_grad_apply2(c, KILN_OP_DIV, g, kiln_grad_scalar(c, g->dtype, (double)S)));
  TRY(dx[0] = kiln_grad_apply2(c, KILN_OP_EXPAND, g, kiln_grad_ints(c, x->rank, x->dims)));
  return 0;
}

int kiln_grad_global_max_pool(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx) {
  if (!WANT(0)) return 0;
  kiln_value *x = n->in[0];
  int sp = x->rank - 2;
  if (sp < 1 || sp > 3)
    return kiln_grad_fail(c, "the gradient of GlobalMaxPool needs 1 to 3 spatial dims, X has %d", sp);
  static const int64_t ones[3] = {1, 1, 1}, zeros[6] = {0};
  kiln_attrs_pool a = {0};
  a.auto_pad = "NOTSET";
  a.kernel_shape = ints_of(c, sp, x->dims + 2);
  a.strides = ints_of(c, sp, ones);
  a.dilations = ints_of(c, sp, ones);
  a.pads = ints_of(c, 2 * sp, zeros);
  TRY(dx[0] = max_pool_grad(c, x, dy[0], &a));
  return 0;
}
