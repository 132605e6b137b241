/* Textual IR: one line per input, constant and node, in graph order, with
 * attributes that differ from their defaults.  Constant payloads are
 * summarised (count + a few leading values), so the output stays small and
 * diffs stay readable when weights change.  Model strings (names, string
 * attributes, symbolic dims) are printed in display form (text_escape.h). */
#include <inttypes.h>
#include <string.h>

#include "graph.h"
#include "text_escape.h"

static void print_value_ref(FILE *f, const kiln_value *v) {
  if (v) { fputc('%', f); kiln_put_display(f, v->name); }
  else fprintf(f, "_");
}

void kiln_node_print_attrs(FILE *f, const kiln_node *n) {
  const kiln_attr_schema *s = kiln_op_get(n->op)->attrs;
  void *def = NULL;
  char buf[1024];
  int first = 1;
  _Alignas(16) char defaults[1024];
  if (s->size <= sizeof defaults) { kiln_attrs_init(s, defaults); def = defaults; }
  for (const kiln_attr_field *fd = s->fields; fd->name; fd++) {
    const char *p = (const char *)n->attrs + fd->offset;
    const char *q = def ? (const char *)def + fd->offset : NULL;
    int n_out = 0;
    buf[0] = 0;
    switch (fd->type) {
    case KILN_AT_INT: {
      int64_t v; memcpy(&v, p, sizeof v);
      if (q && memcmp(p, q, sizeof v) == 0) continue;
      snprintf(buf, sizeof buf, "%" PRId64, v);
      break;
    }
    case KILN_AT_FLOAT: {
      float v; memcpy(&v, p, sizeof v);
      if (q && memcmp(p, q, sizeof v) == 0) continue;
      snprintf(buf, sizeof buf, "%.9g", (double)v);
      break;
    }
    case KILN_AT_STRING: {
      const char *v, *dv; memcpy(&v, p, sizeof v); memcpy(&dv, q, sizeof dv);
      if (!v || (dv && strcmp(v, dv) == 0)) continue;
      buf[0] = '"'; /* model text: display form, cut to fit */
      kiln_display_escape(buf + 1, sizeof buf - 2, v);
      strcat(buf, "\"");
      break;
    }
    case KILN_AT_INTS: {
      kiln_ints v; memcpy(&v, p, sizeof v);
      if (v.n == 0) continue;
      n_out = snprintf(buf, sizeof buf, "[");
      for (int i = 0; i < v.n && n_out < (int)sizeof buf - 32; i++)
        n_out += snprintf(buf + n_out, sizeof buf - (size_t)n_out, "%s%" PRId64, i ? "," : "", v.v[i]);
      snprintf(buf + n_out, sizeof buf - (size_t)n_out, "]");
      break;
    }
    case KILN_AT_FLOATS: {
      kiln_floats v; memcpy(&v, p, sizeof v);
      if (v.n == 0) continue;
      n_out = snprintf(buf, sizeof buf, "[");
      for (int i = 0; i < v.n && n_out < (int)sizeof buf - 32; i++)
        n_out += snprintf(buf + n_out, sizeof buf - (size_t)n_out, "%s%.9g", i ? "," : "", (double)v.v[i]);
      snprintf(buf + n_out, sizeof buf - (size_t)n_out, "]");
      break;
    }
    case KILN_AT_TENSOR: {
      kiln_tensor_attr v; memcpy(&v, p, sizeof v);
      if (v.dtype == KILN_DT_UNDEF) continue;
      snprintf(buf, sizeof buf, "%s(%.9g)", kiln_dtype_name(v.dtype),
               v.count ? kiln_dtype_load_f(v.dtype, v.data, 0) : 0.0);
      break;
    }
    }
    fprintf(f, "%s%s=%s", first ? " {" : ", ", fd->name, buf);
    first = 0;
  }
  if (!first) fprintf(f, "}");
}

static void print_payload(FILE *f, const kiln_value *v) {
  int64_t n = kiln_value_numel(v, 1);
  fprintf(f, " = const(%" PRId64 " elem", n);
  if (kiln_dtype_size(v->dtype) && v->data) {
    fprintf(f, ":");
    for (int64_t i = 0; i < n && i < 4; i++) {
      if (kiln_dtype_is_float(v->dtype)) fprintf(f, " %.6g", kiln_dtype_load_f(v->dtype, v->data, (size_t)i));
      else fprintf(f, " %lld", kiln_dtype_load_i(v->dtype, v->data, (size_t)i));
    }
    if (n > 4) fprintf(f, " ...");
  }
  fprintf(f, ")");
}

void kiln_graph_print(const kiln_graph *g, FILE *f) {
  char ty[256];
  fprintf(f, "graph \"");
  kiln_put_display(f, g->name);
  fprintf(f, "\" ir_version %" PRId64 " opset %" PRId64 "\n", g->ir_version, g->opset);
  for (int i = 0; i < g->ninputs; i++) {
    kiln_value_type_str(g, g->inputs[i], ty, sizeof ty);
    fprintf(f, "  input %%");
    kiln_put_display(f, g->inputs[i]->name);
    fprintf(f, " : ");
    kiln_put_display(f, ty);
    fprintf(f, "\n");
  }
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->producer || !v->data || v->uses == 0) continue;
    kiln_value_type_str(g, v, ty, sizeof ty);
    fprintf(f, "  %s %%", v->kind == KILN_VALUE_PARAM ? "param" : "const");
    kiln_put_display(f, v->name);
    fprintf(f, " : ");
    kiln_put_display(f, ty);
    print_payload(f, v);
    fprintf(f, "\n");
  }
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    fprintf(f, "  ");
    for (int k = 0; k < n->nout; k++) {
      if (k) fprintf(f, ", ");
      print_value_ref(f, n->out[k]);
      if (n->out[k]) {
        kiln_value_type_str(g, n->out[k], ty, sizeof ty);
        fprintf(f, " : ");
        kiln_put_display(f, ty);
      }
    }
    fprintf(f, " = %s(", kiln_op_get(n->op)->name);
    for (int k = 0; k < n->nin; k++) {
      if (k) fprintf(f, ", ");
      print_value_ref(f, n->in[k]);
    }
    fprintf(f, ")");
    kiln_node_print_attrs(f, n);
    if (n->fused_into && n->fused_into->nout > 0) { /* an epilogue step: computed by that node's kernel */
      fprintf(f, " fused into ");
      print_value_ref(f, n->fused_into->out[0]);
    }
    if (n->name[0]) { fprintf(f, "  # "); kiln_put_display(f, n->name); }
    fprintf(f, "\n");
  }
  for (int i = 0; i < g->noutputs; i++) {
    kiln_value_type_str(g, g->outputs[i], ty, sizeof ty);
    fprintf(f, "  output %%");
    kiln_put_display(f, g->outputs[i]->name);
    fprintf(f, " : ");
    kiln_put_display(f, ty);
    if (g->outputs[i]->data && !g->outputs[i]->producer) print_payload(f, g->outputs[i]);
    fprintf(f, "\n");
  }
}
