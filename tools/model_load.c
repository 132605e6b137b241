/* The front half of every subcommand: import, bind the batch size, count
 * parameters, infer shapes (and, with `lower`, the loop passes): the
 * pipeline (passes/pipeline.c) with the --batch/--dim/--const bindings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../passes/passes.h"
#include "../passes/pipeline.h"
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
kiln_graph *kiln_cli_import(const char *path, kiln_diag *d) { return kiln_pipeline_import(path, d); }

typedef struct load_ctx {
  kiln_model_opts *o;
  int64_t bind_rest; /* > 0: bind the symbolic dims left to it (the retry) */
} load_ctx;

/* The import pass's bindings: count parameters, then --dim/--batch/--const. */
static int bind_model(kiln_graph *g, void *ctx, kiln_diag *d) {
  load_ctx *c = ctx;
  kiln_model_opts *o = c->o;
  if (o->params_file && kiln_cli_apply_params(g, o->params_file, d)) return -1;
  count_params(g, o);
  kiln_cli_bindings none = {0};
  kiln_cli_bindings *b = o->bind ? o->bind : &none;
  /* --const tensors are read again on a retry: drop the first reading. */
  for (int i = 0; i < b->nconsts; i++) kiln_tensor_free(&b->consts[i]);
  if (kiln_cli_bind_dims(g, b, d) || kiln_cli_bind_consts(g, b, d) ||
      (o->static_shapes && kiln_cli_require_static(g, "--const", d)))
    return -1;
  if (c->bind_rest > 0)
    for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), c->bind_rest);
  return 0;
}

static kiln_graph *load_once(const char *path, kiln_model_opts *o, int64_t bind_rest, kiln_pass_id dump_after,
                             kiln_diag *d) {
  load_ctx c = {o, bind_rest};
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.path = path, .bind = bind_model, .bind_ctx = &c,
                           .until = o->lower ? KILN_PASS_PLAN_MEMORY
                                    : o->until ? (kiln_pass_id)o->until : KILN_PASS_LOWER - 1, /* every graph pass */
                           .dump_after = dump_after, .target = o->target, .timing = o->timing,
                           .train = o->train, .explain = o->explain, .per_image = o->per_image};
  int rc = kiln_pipeline_run(&po, &pl, d);
  o->dumped |= pl.dumped;
  if (rc) {
    if (pl.graph) kiln_graph_free(pl.graph);
    return NULL;
  }
  o->program = pl.program;
  return pl.graph;
}

kiln_graph *kiln_cli_load(const char *path, kiln_model_opts *o, kiln_diag *d) {
  o->bound_note = 0;
  o->dumped = 0;
  o->program = NULL;
  kiln_graph *g = load_once(path, o, 0, (kiln_pass_id)o->dump_after, d);
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
  g = load_once(path, o, 1, o->dumped ? KILN_PASS_NONE : (kiln_pass_id)o->dump_after, &d2);
  if (g) {
    o->bound_note = 1;
    *d = (kiln_diag){0};
  }
  return g;
}

int kiln_cli_dump_option(const char *cmd, const char *val, int *pass) {
  if (!strcmp(val, "list")) {
    for (int i = KILN_PASS_NONE + 1; i < KILN_PASS_COUNT; i++) printf("%s\n", kiln_pass_name((kiln_pass_id)i));
    return 3;
  }
  kiln_pass_id id = kiln_pass_lookup(val);
  if (id == KILN_PASS_NONE) return kiln_cli_usage_error(cmd, "--dump-after: unknown pass '%s' (passes: %s)", val, kiln_pass_list());
  *pass = id;
  return 0;
}
