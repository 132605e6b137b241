/* What the user fixes before kiln compiles: symbolic dims (`--dim NAME=N`,
 * `--batch N` for the batch dim only) and the values of graph inputs that
 * decide shapes (`--const NAME=FILE`; `kiln run` binds such inputs from
 * their `--input` files).  kiln compiles for static shapes, so compile,
 * emit-c and run need every symbolic dim bound; inspect keeps the unbound
 * ones symbolic.  Errors name the option that would fix them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../passes/passes.h"
#include "cli.h"
#include "tensor_io.h"

int kiln_cli_binding_option(const char *cmd, const char *opt, const char *val, kiln_cli_bindings *b) {
  if (!strcmp(opt, "--batch")) {
    if ((b->batch = kiln_cli_parse_count(val)) < 0)
      return kiln_cli_usage_error(cmd, "--batch must be a positive integer, got '%s'", val);
    return 0;
  }
  if (!strcmp(opt, "--dim")) {
    const char *eq = strrchr(val, '=');
    if (!eq || eq == val) return kiln_cli_usage_error(cmd, "--dim takes NAME=N, got '%s'", val);
    int64_t n = kiln_cli_parse_count(eq + 1);
    if (n < 0) return kiln_cli_usage_error(cmd, "--dim %.*s must be a positive integer, got '%s'", (int)(eq - val), val, eq + 1);
    if (b->ndims == KILN_CLI_MAX_BIND) return kiln_cli_usage_error(cmd, "too many --dim options");
    b->dim_name[b->ndims] = strndup(val, (size_t)(eq - val));
    b->dim_value[b->ndims++] = n;
    return 0;
  }
  if (!strcmp(opt, "--const")) {
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || !eq[1]) return kiln_cli_usage_error(cmd, "--const takes NAME=FILE, got '%s'", val);
    if (b->nconsts == KILN_CLI_MAX_BIND) return kiln_cli_usage_error(cmd, "too many --const options");
    b->const_name[b->nconsts] = strndup(val, (size_t)(eq - val));
    b->const_file[b->nconsts++] = eq + 1;
    return 0;
  }
  return 1;
}

static int sym_used(const kiln_graph *g, kiln_dim s) {
  for (int i = 0; i < g->ninputs; i++)
    for (int k = 0; k < g->inputs[i]->rank; k++)
      if (g->inputs[i]->dims[k] == s) return 1;
  return 0;
}

/* The batch dim: a symbolic leading dim of some graph input. */
void kiln_cli_bind_batch(kiln_graph *g, int64_t n) {
  for (int i = 0; i < g->ninputs; i++) {
    const kiln_value *v = g->inputs[i];
    if (v->rank > 0 && KILN_DIM_IS_SYM(v->dims[0])) kiln_pass_bind_sym(g, v->dims[0], n);
  }
}

int kiln_cli_bind_dims(kiln_graph *g, const kiln_cli_bindings *b, kiln_diag *d) {
  for (int i = 0; i < b->ndims; i++) {
    int s = 0;
    while (s < g->nsyms && strcmp(g->syms[s], b->dim_name[i])) s++;
    if (s == g->nsyms || !sym_used(g, -(s + 1))) {
      char names[512] = "";
      size_t n = 0;
      for (int k = 0; k < g->nsyms && n < sizeof names; k++)
        if (sym_used(g, -(k + 1))) n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", g->syms[k]);
      return kiln_error(d, NULL, "%s: --dim %s: the model has no unbound symbolic dim of that name (%s%s)", g->file,
                        b->dim_name[i], n ? "its symbolic dims: " : "it has none", names);
    }
    kiln_pass_bind_sym(g, -(s + 1), b->dim_value[i]);
  }
  if (b->batch > 0) kiln_cli_bind_batch(g, b->batch);
  return 0;
}

int kiln_cli_bind_input(kiln_graph *g, kiln_value *v, const kiln_tensor *t, const char *file, kiln_diag *d) {
  char want[256];
  kiln_value_type_str(g, v, want, sizeof want);
  int ok = t->dtype == v->dtype && t->rank == v->rank;
  for (int k = 0; ok && k < v->rank; k++) ok = KILN_DIM_IS_SYM(v->dims[k]) || v->dims[k] == t->dims[k];
  if (!ok) {
    kiln_value tv = {0};
    char got[256];
    tv.dtype = t->dtype;
    tv.rank = t->rank;
    memcpy(tv.dims, t->dims, sizeof tv.dims);
    kiln_value_type_str(g, &tv, got, sizeof got);
    return kiln_error(d, NULL, "%s: input '%s' must be %s, got %s", file, v->name, want, got);
  }
  for (int k = 0; k < v->rank; k++)
    if (KILN_DIM_IS_SYM(v->dims[k])) kiln_pass_bind_sym(g, v->dims[k], t->dims[k]);
  return 0;
}

kiln_value *kiln_cli_find_input(const kiln_graph *g, const char *name) {
  for (int k = 0; k < g->ninputs; k++)
    if (!strcmp(g->inputs[k]->name, name)) return g->inputs[k];
  return NULL;
}

int kiln_cli_bind_consts(kiln_graph *g, kiln_cli_bindings *b, kiln_diag *d) {
  for (int i = 0; i < b->nconsts; i++) {
    kiln_value *v = kiln_cli_find_input(g, b->const_name[i]);
    if (!v) return kiln_error(d, NULL, "%s: --const: the model has no input named '%s'", g->file, b->const_name[i]);
    kiln_tensor *t = &b->consts[i];
    if (kiln_tensor_read(b->const_file[i], t, d) || kiln_cli_bind_input(g, v, t, b->const_file[i], d) ||
        kiln_pass_bind_input(g, v->name, t->dtype, t->rank, t->dims, t->data, d))
      return -1;
  }
  return 0;
}

int kiln_cli_require_static(kiln_graph *g, const char *how, kiln_diag *d) {
  kiln_cli_bind_batch(g, 1); /* the batch dim defaults to 1 */
  for (int i = 0; i < g->ninputs; i++) {
    const kiln_value *v = g->inputs[i];
    for (int k = 0; k < v->rank; k++)
      if (KILN_DIM_IS_SYM(v->dims[k])) {
        const char *s = g->syms[-v->dims[k] - 1];
        return kiln_error(d, NULL, "%s: input '%s': symbolic dim '%s' is not bound: give it with --dim %s=<size>", g->file,
                          v->name, s, s);
      }
  }
  char *mark = kiln_pass_shape_deciding(g);
  if (!mark) return kiln_error(d, NULL, "out of memory");
  for (int i = 0; i < g->ninputs; i++) {
    const kiln_value *v = g->inputs[i];
    if (!mark[v->id]) continue;
    kiln_error(d, NULL, "%s: input '%s' must be known at compile time (kiln specialises on shapes, axes, pads, "
               "bounds): give its value with %s %s=FILE",
               g->file, v->name, how, v->name);
    free(mark);
    return -1;
  }
  free(mark);
  return 0;
}

void kiln_cli_bindings_free(kiln_cli_bindings *b) {
  for (int i = 0; i < b->ndims; i++) free((void *)b->dim_name[i]);
  for (int i = 0; i < b->nconsts; i++) {
    free((void *)b->const_name[i]);
    kiln_tensor_free(&b->consts[i]);
  }
  memset(b, 0, sizeof *b);
}
