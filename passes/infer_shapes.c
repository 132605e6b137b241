/* infer_shapes: graph -> graph where every live value has a dtype and a
 * shape, constant subgraphs are folded into constants (bounded by
 * fold_limit elements per result), and nodes nobody needs are removed.
 *
 * Folding runs in the same walk as inference because shape inference
 * needs folded values: Reshape's target shape is often computed by a
 * Shape -> Gather -> Unsqueeze -> Concat chain. */
#include <string.h>

#include "../ir/shape.h"
#include "passes.h"

enum { KILN_FOLD_LIMIT = 1 << 22 };
static const int64_t KILN_MAX_ELEMENTS = (int64_t)1 << 40;

static int try_fold(kiln_shape_ctx *c, kiln_node *n) {
  const kiln_op_info *info = kiln_op_get(n->op);
  if (!info->fold) return 1;
  if (n->op != KILN_OP_SHAPE && !kiln_fold_inputs_const(n)) return 1;
  for (int k = 0; k < n->nout; k++) {
    const kiln_value *v = n->out[k];
    if (!v) continue;
    if (!kiln_value_is_static(v) || kiln_value_numel(v, 1) > c->fold_limit) return 1;
  }
  int sym = 0;
  for (int k = 0; k < n->nin; k++) sym |= n->in[k] && n->in[k]->sym_data;
  int rc = info->fold(c, n);
  if (rc == 0) {
    n->dead = 1;
    for (int k = 0; k < n->nout; k++)
      if (n->out[k]) n->out[k]->sym_data |= sym;
  }
  return rc;
}

/* The first symbolic dim a folded integer tensor encodes. */
static const char *sym_name(const kiln_graph *g, const kiln_value *v) {
  if (v->data && kiln_dtype_is_int(v->dtype))
    for (int64_t i = 0; i < kiln_value_numel(v, 1); i++) {
      kiln_dim s = KILN_SYM_DECODE(kiln_dtype_load_i(v->dtype, v->data, (size_t)i));
      if (s && -s - 1 < g->nsyms) return g->syms[-s - 1];
    }
  return "?";
}

/* Folded tensors that encode symbolic dims may only feed shape inputs. */
static int check_sym_data(kiln_graph *g, kiln_diag *d) {
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      kiln_slot s;
      if (n->in[k] && n->in[k]->sym_data && kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s) && !s.constant)
        return kiln_error(d, &n->loc, "input '%s' depends on the symbolic dim '%s' at run time; bind it (--dim %s=N)",
                          n->in[k]->name, sym_name(g, n->in[k]), sym_name(g, n->in[k]));
    }
  }
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i]->sym_data)
      return kiln_error(d, NULL, "%s: output '%s' depends on a symbolic dim at run time; bind it (--dim NAME=N, or --batch N)", g->file,
                        g->outputs[i]->name);
  return 0;
}

int kiln_pass_infer_shapes(kiln_graph *g, kiln_diag *d) {
  kiln_shape_ctx c = {g, d, KILN_FOLD_LIMIT};
  for (int i = 0; i < g->nnodes; i++) {
    kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k] && n->in[k]->rank < 0) {
        kiln_error(d, &n->loc, "input '%s' has no known shape", n->in[k]->name);
        return -1;
      }
    if (kiln_op_get(n->op)->shape(&c, n)) return -1;
    for (int k = 0; k < n->nout; k++) {
      kiln_value *v = n->out[k];
      if (v && (v->rank < 0 || v->dtype == KILN_DT_UNDEF)) {
        kiln_error(d, &n->loc, "internal error: shape function left output %d unset", k);
        return -1;
      }
      /* The importer's bound on any tensor, kept by every result, so that
       * sizes computed from shapes (bytes, loop trip counts, MACs) fit. */
      if (v && kiln_value_numel(v, 1) > KILN_MAX_ELEMENTS) {
        char ty[256];
        kiln_value_type_str(g, v, ty, sizeof ty);
        kiln_error(d, &n->loc, "output '%s' %s is too large (more than 2^40 elements)", v->name, ty);
        return -1;
      }
    }
    if (try_fold(&c, n) < 0) return -1;
  }
  kiln_graph_prune(g);
  return check_sym_data(g, d);
}

void kiln_pass_bind_sym(kiln_graph *g, kiln_dim sym, int64_t value) {
  for (int i = 0; i < g->nvalues; i++) {
    kiln_value *v = g->values[i];
    for (int k = 0; k < v->rank; k++)
      if (v->dims[k] == sym) v->dims[k] = value;
  }
}

int kiln_pass_bind_input(kiln_graph *g, const char *name, kiln_dtype t, int rank, const int64_t *dims,
                         const void *data, kiln_diag *d) {
  kiln_loc loc = {.file = g->file, .node_index = -1};
  for (int i = 0; i < g->ninputs; i++) {
    kiln_value *v = g->inputs[i];
    if (strcmp(v->name, name)) continue;
    if (v->dtype != t || v->rank != rank)
      return kiln_error(d, &loc, "input '%s': expected %s of rank %d, got %s of rank %d", name,
                        kiln_dtype_name(v->dtype), v->rank, kiln_dtype_name(t), rank);
    for (int k = 0; k < rank; k++) {
      if (!KILN_DIM_IS_SYM(v->dims[k]) && v->dims[k] != dims[k])
        return kiln_error(d, &loc, "input '%s': dim %d is %lld, expected %lld", name, k, (long long)dims[k],
                          (long long)v->dims[k]);
      v->dims[k] = dims[k];
    }
    v->kind = KILN_VALUE_CONST;
    v->data = data;
    memmove(&g->inputs[i], &g->inputs[i + 1], (size_t)(g->ninputs - i - 1) * sizeof *g->inputs);
    g->ninputs--;
    return 0;
  }
  return kiln_error(d, &loc, "no graph input named '%s'", name);
}
