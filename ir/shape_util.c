/* Helpers shared by the shape functions: located errors that name slots,
 * constant-input readers, axis normalisation and broadcasting. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shape.h"

int kiln_shape_fail(kiln_shape_ctx *c, const kiln_node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(c->d, &n->loc, fmt, ap);
  va_end(ap);
  return -1;
}

const char *kiln_slot_name(const kiln_node *n, int k, int output, char *buf, int size) {
  const kiln_op_info *info = kiln_op_get(n->op);
  kiln_slot s;
  if (kiln_sig_slot(output ? info->outputs : info->inputs, k, &s)) {
    if (s.variadic) snprintf(buf, (size_t)size, "%.*s[%d]", s.name_len, s.name, k);
    else snprintf(buf, (size_t)size, "%.*s", s.name_len, s.name);
  } else {
    snprintf(buf, (size_t)size, "#%d", k);
  }
  return buf;
}

int kiln_shape_need(kiln_shape_ctx *c, const kiln_node *n, int k) {
  char nm[64];
  if (k >= n->nin || !n->in[k])
    return kiln_shape_fail(c, n, "input '%s' is required", kiln_slot_name(n, k, 0, nm, sizeof nm));
  if (n->in[k]->rank < 0 || n->in[k]->dtype == KILN_DT_UNDEF)
    return kiln_shape_fail(c, n, "input '%s' ('%s') has no known shape", kiln_slot_name(n, k, 0, nm, sizeof nm),
                           n->in[k]->name);
  return 0;
}

int kiln_shape_const_ints(kiln_shape_ctx *c, const kiln_node *n, int k, int64_t *out, int max, int *count) {
  char nm[64];
  *count = -1;
  if (k >= n->nin || !n->in[k]) return 0;
  const kiln_value *v = n->in[k];
  kiln_slot_name(n, k, 0, nm, sizeof nm);
  if (v->rank < 0) return kiln_shape_fail(c, n, "input '%s' has no known shape", nm);
  if (!v->data)
    return kiln_shape_fail(c, n, "input '%s' ('%s') must be a constant: kiln compiles for static shapes", nm, v->name);
  if (!kiln_dtype_is_int(v->dtype))
    return kiln_shape_fail(c, n, "input '%s' must be an integer tensor, got %s", nm, kiln_dtype_name(v->dtype));
  if (v->rank > 1) return kiln_shape_fail(c, n, "input '%s' must be 1-D, got rank %d", nm, v->rank);
  int64_t len = kiln_value_numel(v, 1);
  if (len > max) return kiln_shape_fail(c, n, "input '%s' has %lld entries, at most %d allowed", nm, (long long)len, max);
  for (int64_t i = 0; i < len; i++) {
    out[i] = kiln_dtype_load_i(v->dtype, v->data, (size_t)i);
  }
  *count = (int)len;
  return 0;
}

int kiln_shape_const_scalar(kiln_shape_ctx *c, const kiln_node *n, int k, double *out, int *present) {
  char nm[64];
  *present = 0;
  if (k >= n->nin || !n->in[k]) return 0;
  const kiln_value *v = n->in[k];
  kiln_slot_name(n, k, 0, nm, sizeof nm);
  if (!v->data)
    return kiln_shape_fail(c, n, "input '%s' ('%s') must be a constant", nm, v->name);
  if (v->rank < 0 || kiln_value_numel(v, 1) != 1)
    return kiln_shape_fail(c, n, "input '%s' must hold exactly one value", nm);
  *out = kiln_dtype_load_f(v->dtype, v->data, 0);
  *present = 1;
  return 0;
}

int kiln_shape_axis(kiln_shape_ctx *c, const kiln_node *n, int64_t a, int r, int allow_end, const char *what, int *out) {
  int64_t hi = allow_end ? r : r - 1;
  if (a < -(int64_t)r || a > hi)
    return kiln_shape_fail(c, n, "%s %lld is out of range for rank %d", what, (long long)a, r);
  *out = (int)(a < 0 ? a + r : a);
  return 0;
}

/* Two dims broadcast: equal, or one is 1.  A symbolic dim against 1 stays
 * symbolic; against a static k > 1 it is taken to be k. */
static int bdim(kiln_dim x, kiln_dim y, kiln_dim *o) {
  if (x == y) { *o = x; return 0; }
  if (x == 1) { *o = y; return 0; }
  if (y == 1) { *o = x; return 0; }
  if (KILN_DIM_IS_SYM(x) && !KILN_DIM_IS_SYM(y)) { *o = y; return 0; }
  if (KILN_DIM_IS_SYM(y) && !KILN_DIM_IS_SYM(x)) { *o = x; return 0; }
  if (KILN_DIM_IS_SYM(x) && KILN_DIM_IS_SYM(y)) { *o = x; return 0; }
  return -1;
}

int kiln_shape_broadcast(kiln_shape_ctx *c, const kiln_node *n, const kiln_value *a, const kiln_value *b,
                         kiln_dim *out, int *rank) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    kiln_dim x = ia >= 0 ? a->dims[ia] : 1, y = ib >= 0 ? b->dims[ib] : 1;
    if (bdim(x, y, &out[i]) < 0)
      return kiln_shape_fail(c, n, "shapes %s ('%s') and %s ('%s') do not broadcast", kiln_shape_str(c, a), a->name,
                             kiln_shape_str(c, b), b->name);
  }
  *rank = r;
  return 0;
}

void kiln_shape_set(kiln_node *n, int k, kiln_dtype t, int rank, const kiln_dim *dims) {
  kiln_value *v = k < n->nout ? n->out[k] : NULL;
  if (!v) return;
  v->dtype = t;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->dims[i] = dims[i];
}

void kiln_shape_copy(kiln_node *n, int k, const kiln_value *from) {
  kiln_shape_set(n, k, from->dtype, from->rank, from->dims);
}

const char *kiln_shape_str(kiln_shape_ctx *c, const kiln_value *v) {
  char buf[256];
  kiln_value_type_str(c->g, v, buf, sizeof buf);
  const char *s = strchr(buf, '[');
  return kiln_arena_strdup(&c->g->arena, s ? s : buf);
}

void kiln_fold_set(kiln_shape_ctx *c, kiln_node *n, int k, void *data) {
  (void)c;
  kiln_value *v = n->out[k];
  if (!v) return;
  v->data = data;
  v->kind = KILN_VALUE_CONST;
  v->producer = NULL;
}

int kiln_fold_inputs_const(const kiln_node *n) {
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && (!n->in[k]->data || n->in[k]->kind == KILN_VALUE_STATE)) return 0; /* state: initial contents only */
  return 1;
}
