/* The convolution's definition: its geometry, taken from the node once,
 * and the index terms of its formula (conv_def.h) as loop-IR expressions
 * for the schedules that build on it. */
#include "conv_def.h"

int kiln_conv_setup(kiln_lctx *L, const kiln_node *n, kiln_conv_geom *g) {
  const kiln_attrs_conv *a = n->attrs;
  const kiln_value *x = n->in[0], *w = n->in[1], *y = n->out[0];
  /* a Conv's X and result may be blocked (layout_nchwc.c): kiln_lower_conv
   * gives those to the one schedule that reads and writes them */
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] && n->in[k]->layout != KILN_LAYOUT_PLAIN && !(k == 0 && n->op == KILN_OP_CONV))
      return kiln_lower_fail(L, n, "input '%s' has a blocked layout, which %s does not lower yet", n->in[k]->name,
                             kiln_op_get(n->op)->name);
  if (y->layout != KILN_LAYOUT_PLAIN && n->op != KILN_OP_CONV)
    return kiln_lower_fail(L, n, "output '%s' has a blocked layout, which %s does not lower yet", y->name,
                           kiln_op_get(n->op)->name);
  if (!kiln_dtype_is_float(x->dtype) || w->dtype != x->dtype)
    return kiln_lower_fail(L, n, "%s needs floating-point X and W of one type, got %s and %s",
                           kiln_op_get(n->op)->name, kiln_dtype_name(x->dtype), kiln_dtype_name(w->dtype));
  int sp = g->sp = x->rank - 2;
  if (sp < 1 || sp > 3 || a->kernel_shape.n != sp || a->strides.n != sp || a->dilations.n != sp || a->pads.n != 2 * sp)
    return kiln_lower_fail(L, n, "window attributes are not in canonical form (run shape inference first)");
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = y->dims[1];
  g->G = a->group;
  g->Cg = g->C / g->G;
  g->Mg = g->M / g->G;
  kiln_conv_geom_window(g, a, x, y);
  return 0;
}

void kiln_conv_geom_window(kiln_conv_geom *g, const kiln_attrs_conv *a, const kiln_value *x, const kiln_value *y) {
  g->isz = g->osz = g->ksz = 1;
  for (int i = g->sp - 1; i >= 0; i--) {
    g->in[i] = x->dims[2 + i];
    g->out[i] = y->dims[2 + i];
    g->K[i] = a->kernel_shape.v[i];
    g->s[i] = a->strides.v[i];
    g->d[i] = a->dilations.v[i];
    g->pb[i] = a->pads.v[i];
    g->xstr[i] = g->isz;
    g->ystr[i] = g->osz;
    g->kstr[i] = g->ksz;
    g->isz *= g->in[i];
    g->osz *= g->out[i];
    g->ksz *= g->K[i];
  }
}

int kiln_conv_def_of(kiln_lctx *L, const kiln_node *n, kiln_conv_def *def) {
  if (n->op != KILN_OP_CONV) return kiln_lower_fail(L, n, "not a Conv");
  if (kiln_conv_setup(L, n, &def->g)) return -1;
  if (n->in[1]->dims[1] != def->g.Cg || n->in[1]->dims[0] != def->g.M)
    return kiln_lower_fail(L, n, "W does not match X, Y and group (run shape inference first)");
  def->x = n->in[0];
  def->w = n->in[1];
  def->b = n->nin > 2 ? n->in[2] : NULL;
  def->y = n->out[0];
  return 0;
}

kiln_lx *kiln_conv_in_pos(kiln_lb *b, const kiln_conv_geom *g, int i, kiln_lx *o, kiln_lx *k) {
  return kiln_lx_iadd(b, kiln_lx_iadd(b, kiln_lx_imul(b, o, g->s[i]), kiln_lx_imul(b, k, g->d[i])),
                      kiln_lx_const_i(b, -g->pb[i]));
}

kiln_lx *kiln_conv_in_bounds(kiln_lb *b, const kiln_conv_geom *g, int i, kiln_lx *pos) {
  int64_t last = (g->out[i] - 1) * g->s[i] - g->pb[i] + (g->K[i] - 1) * g->d[i];
  kiln_lx *lo = g->pb[i] > 0 ? kiln_lx_bin(b, KILN_BIN_LE, kiln_lx_const_i(b, 0), pos) : NULL;
  kiln_lx *hi = last >= g->in[i] ? kiln_lx_bin(b, KILN_BIN_LT, pos, kiln_lx_const_i(b, g->in[i])) : NULL;
  return !lo ? hi : !hi ? lo : kiln_lx_bin(b, KILN_BIN_AND, lo, hi);
}
