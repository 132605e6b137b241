/* The front half of every subcommand: import, bind the batch size, count
 * parameters, infer shapes. */
#include <stdlib.h>
#include <string.h>

#include "../frontend/dsl/kiln_dsl.h"
#include "../frontend/onnx/kiln_onnx.h"
#include "../passes/passes.h"
#include "cli.h"

/* Learnable parameters: floating-point initializers read by some node in
 * a slot that is neither a compile-time constant (shape, axes, pads, clip
 * bounds) nor a running statistic; BatchNorm statistics counted apart. */
static void count_params(const kiln_graph *g, kiln_model_opts *o) {
  char *learn = calloc((size_t)g->nvalues + 1, 1), *stat = calloc((size_t)g->nvalues + 1, 1);
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      const kiln_value *v = n->in[k];
      kiln_slot s;
      if (!v || v->kind != KILN_VALUE_PARAM || !kiln_dtype_is_float(v->dtype)) continue;
      kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s);
      if (s.stat) stat[v->id] = 1;
      else if (!s.constant) learn[v->id] = 1;
    }
  }
  o->params = o->bn_stats = o->param_bytes = 0;
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (learn[i]) { o->params += kiln_value_numel(v, 1); o->param_bytes += (int64_t)kiln_value_nbytes(v); }
    else if (stat[i]) o->bn_stats += kiln_value_numel(v, 1);
  }
  free(learn);
  free(stat);
}

int64_t kiln_cli_macs(const kiln_graph *g) {
  int64_t m = 0;
  for (int i = 0; i < g->nnodes; i++) {
    kiln_macs_fn fn = kiln_op_get(g->nodes[i]->op)->macs;
    if (fn) m += fn(g->nodes[i]);
  }
  return m;
}

/* .kiln files are DSL sources (frontend/dsl); anything else is read as ONNX. */
kiln_graph *kiln_cli_import(const char *path, kiln_diag *d) {
  size_t n = strlen(path);
  if (n > 5 && !strcmp(path + n - 5, ".kiln")) return kiln_dsl_load(path, d);
  return kiln_onnx_load(path, d);
}

/* bind_rest > 0: bind the symbolic dims left to it (the retry). */
static kiln_graph *load_once(const char *path, kiln_model_opts *o, int64_t bind_rest, kiln_diag *d) {
  kiln_graph *g = kiln_cli_import(path, d);
  if (!g) return NULL;
  count_params(g, o);
  kiln_cli_bindings none = {0};
  kiln_cli_bindings *b = o->bind ? o->bind : &none;
  /* --const tensors are read again on a retry: drop the first reading. */
  for (int i = 0; i < b->nconsts; i++) kiln_tensor_free(&b->consts[i]);
  if (kiln_cli_bind_dims(g, b, d) || kiln_cli_bind_consts(g, b, d) ||
      (o->static_shapes && kiln_cli_require_static(g, "--const", d)))
    goto fail;
  if (bind_rest > 0)
    for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), bind_rest);
  if (kiln_pass_infer_shapes(g, d)) goto fail;
  return g;
fail:
  kiln_graph_free(g);
  return NULL;
}

kiln_graph *kiln_cli_load(const char *path, kiln_model_opts *o, kiln_diag *d) {
  o->bound_note = 0;
  kiln_graph *g = load_once(path, o, 0, d);
  if (g || o->static_shapes) return g;
  /* Retry with symbolic dims bound to 1 when that is what failed. */
  kiln_diag d2 = {0};
  kiln_graph *probe = kiln_cli_import(path, &d2);
  int had_syms = probe && probe->nsyms > 0 && !kiln_cli_bind_dims(probe, o->bind ? o->bind : &(kiln_cli_bindings){0}, &d2);
  int left = 0;
  for (int i = 0; had_syms && i < probe->ninputs; i++)
    for (int k = 0; k < probe->inputs[i]->rank; k++) left |= KILN_DIM_IS_SYM(probe->inputs[i]->dims[k]);
  kiln_graph_free(probe);
  if (!had_syms || !left) return NULL;
  g = load_once(path, o, 1, &d2);
  if (g) {
    o->bound_note = 1;
    *d = (kiln_diag){0};
  }
  return g;
}
