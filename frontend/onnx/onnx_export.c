/* Graph IR -> ONNX model file (kiln export).
 *
 * Writes a ModelProto with protobuf-c: the live nodes in graph order, each
 * attribute taken generically from the op's field table (ir/attrs.def),
 * leaving out kiln-internal fields and values equal to their ONNX default
 * (also all-ones strides/dilations and all-zero pads, which is what ONNX
 * assumes when they are absent); constants and weights as initializers with
 * raw_data; graph inputs and outputs with their types and shapes (a
 * symbolic dim is written as its name).
 *
 * kiln's canonical op forms are the newest ONNX forms, and each form is
 * valid from some opset on; the file gets opset 17 unless a node needs a
 * newer form (ReduceMean with an axes input: 18, AveragePool with
 * dilations: 19, ...), and the matching IR version.  The file is written
 * next to its destination and renamed over it, so a failed export never
 * leaves a truncated model behind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ir/strmap.h"
#include "onnx_internal.h"

typedef struct exporter {
  const kiln_graph *g;
  kiln_diag *d;
  kiln_arena ar;
  const char **names;   /* exported name of each value (by id), unique */
  kiln_strmap used;
} exporter;

#define NEW(ex, T, INIT) ((T *)init_msg(kiln_arena_alloc(&(ex)->ar, sizeof(T)), &(T)INIT, sizeof(T)))
static void *init_msg(void *p, const void *init, size_t n) { return memcpy(p, init, n); }

/* ---- opset ---- */

static int ints_all(kiln_ints v, int64_t x) {
  for (int i = 0; i < v.n; i++)
    if (v.v[i] != x) return 0;
  return 1;
}

/* The oldest opset in which this node's canonical form is valid (>= 17). */
static int node_min_opset(const kiln_node *n) {
  switch (n->op) {
  case KILN_OP_REDUCE_MEAN: case KILN_OP_REDUCE_MAX:
    if ((n->nin > 1 && n->in[1]) || ((kiln_attrs_reduce *)n->attrs)->noop_with_empty_axes) return 18;
    break;
  case KILN_OP_SPLIT: if (((kiln_attrs_split *)n->attrs)->num_outputs) return 18; break;
  case KILN_OP_PAD: if (n->nin > 3 && n->in[3]) return 18; break;
  case KILN_OP_RESIZE: {
    const kiln_attrs_resize *a = n->attrs;
    if (!strcmp(a->coordinate_transformation_mode, "half_pixel_symmetric")) return 19;
    if (a->antialias || a->axes.n || strcmp(a->keep_aspect_ratio_policy, "stretch")) return 18;
    break;
  }
  case KILN_OP_AVERAGE_POOL: if (!ints_all(((kiln_attrs_pool *)n->attrs)->dilations, 1)) return 19; break;
  case KILN_OP_CAST: if (((kiln_attrs_cast *)n->attrs)->saturate != 1) return 19; break;
  default: break;
  }
  return 17;
}

/* ---- names ---- */

static const char *value_name(exporter *ex, const kiln_value *v) {
  if (ex->names[v->id]) return ex->names[v->id];
  const char *name = v->name && v->name[0] ? v->name : kiln_arena_printf(&ex->ar, "kiln_value_%d", v->id);
  for (int k = 1; kiln_strmap_get(&ex->used, name); k++) /* keep names unique */
    name = kiln_arena_printf(&ex->ar, "%s__%d", v->name && v->name[0] ? v->name : "kiln_value", k);
  kiln_strmap_put(&ex->used, name, (void *)v);
  return ex->names[v->id] = name;
}

/* ---- tensors and types ---- */

static Onnx__TensorProto *tensor(exporter *ex, const char *name, kiln_dtype t, int rank, const int64_t *dims,
                                 const void *data, size_t nbytes) {
  Onnx__TensorProto *tp = NEW(ex, Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
  tp->name = (char *)name;
  tp->has_data_type = 1;
  tp->data_type = (int32_t)t;
  tp->n_dims = (size_t)rank;
  tp->dims = kiln_arena_array(&ex->ar, (size_t)rank + 1, sizeof *tp->dims);
  if (rank) memcpy(tp->dims, dims, (size_t)rank * sizeof *dims);
  tp->has_raw_data = 1;
  tp->raw_data.len = nbytes;
  tp->raw_data.data = (uint8_t *)data;
  return tp;
}

static Onnx__ValueInfoProto *value_info(exporter *ex, const kiln_value *v) {
  Onnx__ValueInfoProto *vi = NEW(ex, Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
  Onnx__TypeProto *tp = NEW(ex, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
  Onnx__TypeProto__Tensor *tt = NEW(ex, Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
  Onnx__TensorShapeProto *sh = NEW(ex, Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT);
  vi->name = (char *)value_name(ex, v);
  vi->type = tp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  tt->has_elem_type = 1;
  tt->elem_type = (int32_t)v->dtype;
  tt->shape = sh;
  sh->n_dim = (size_t)(v->rank > 0 ? v->rank : 0);
  sh->dim = kiln_arena_array(&ex->ar, sh->n_dim + 1, sizeof *sh->dim);
  for (int i = 0; i < v->rank; i++) {
    Onnx__TensorShapeProto__Dimension *dm = NEW(ex, Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
    if (KILN_DIM_IS_SYM(v->dims[i]) && -v->dims[i] - 1 < ex->g->nsyms) {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dm->dim_param = (char *)ex->g->syms[-v->dims[i] - 1];
    } else {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dm->dim_value = v->dims[i];
    }
    sh->dim[i] = dm;
  }
  return vi;
}

/* ---- attributes ---- */

/* Omitted: ONNX reads an absent strides/dilations as ones, pads as zeros. */
static int neutral_ints(const char *name, kiln_ints v) {
  if (!strcmp(name, "strides") || !strcmp(name, "dilations")) return ints_all(v, 1);
  if (!strcmp(name, "pads") || !strcmp(name, "output_padding")) return ints_all(v, 0);
  return 0;
}

static int attributes(exporter *ex, const kiln_node *n, Onnx__NodeProto *np) {
  const kiln_attr_schema *s = kiln_op_get(n->op)->attrs;
  int count = 0;
  for (const kiln_attr_field *f = s->fields; f->name; f++) count++;
  np->attribute = kiln_arena_array(&ex->ar, (size_t)count + 1, sizeof *np->attribute);
  for (const kiln_attr_field *f = s->fields; f->name; f++) {
    const char *p = (const char *)n->attrs + f->offset;
    int req = f->flags & KILN_AF_REQUIRED;
    Onnx__AttributeProto *a = NEW(ex, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
    a->name = (char *)f->name;
    a->has_type = 1;
    switch (f->type) {
    case KILN_AT_INT: {
      int64_t v;
      memcpy(&v, p, sizeof v);
      if (v == (int64_t)f->def_num && !req) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
      a->has_i = 1;
      a->i = v;
      break;
    }
    case KILN_AT_FLOAT: {
      float v;
      memcpy(&v, p, sizeof v);
      if (v == (float)f->def_num && !req) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
      a->has_f = 1;
      a->f = v;
      break;
    }
    case KILN_AT_STRING: {
      const char *v;
      memcpy(&v, p, sizeof v);
      if (!v || (f->def_str && !strcmp(v, f->def_str) && !req)) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
      a->has_s = 1;
      a->s.len = strlen(v);
      a->s.data = (uint8_t *)v;
      break;
    }
    case KILN_AT_INTS: {
      kiln_ints v;
      memcpy(&v, p, sizeof v);
      if ((v.n == 0 || neutral_ints(f->name, v)) && !req) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
      a->n_ints = (size_t)v.n;
      a->ints = (int64_t *)v.v;
      break;
    }
    case KILN_AT_FLOATS: {
      kiln_floats v;
      memcpy(&v, p, sizeof v);
      if (v.n == 0 && !req) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
      a->n_floats = (size_t)v.n;
      a->floats = (float *)v.v;
      break;
    }
    case KILN_AT_TENSOR: {
      kiln_tensor_attr v;
      memcpy(&v, p, sizeof v);
      if (v.dtype == KILN_DT_UNDEF && !req) continue;
      if (f->flags & KILN_AF_INTERNAL) goto internal;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
      a->t = tensor(ex, "", v.dtype, 1, &v.count, v.data, (size_t)v.count * kiln_dtype_size(v.dtype));
      break;
    }
    }
    np->attribute[np->n_attribute++] = a;
    continue;
  internal:
    return kiln_error(ex->d, &n->loc, "cannot be written as ONNX: it keeps a pre-opset-13 meaning (kiln's %s) that "
                      "the current op form cannot express", f->name);
  }
  return 0;
}

/* ---- the model ---- */

static int add_initializer(exporter *ex, Onnx__GraphProto *gp, const kiln_value *v, char *done) {
  if (done[v->id]) return 0;
  done[v->id] = 1;
  if (v->sym_data)
    return kiln_error(ex->d, NULL, "%s: constant '%s' holds a symbolic dim; bind it (--batch N) to export", ex->g->file,
                      v->name);
  if (v->rank < 0 || (!v->data && kiln_value_numel(v, 1) > 0))
    return kiln_error(ex->d, NULL, "%s: constant '%s' has no data", ex->g->file, v->name);
  gp->initializer[gp->n_initializer++] =
      tensor(ex, value_name(ex, v), v->dtype, v->rank, v->dims, v->data, kiln_value_nbytes(v));
  return 0;
}

static int build(exporter *ex, Onnx__ModelProto *m) {
  const kiln_graph *g = ex->g;
  Onnx__GraphProto *gp = NEW(ex, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
  char *done = kiln_arena_alloc(&ex->ar, (size_t)g->nvalues + 1);
  int opset = 17;
  gp->name = (char *)(g->name && g->name[0] ? g->name : "kiln");
  /* Inputs and outputs first, so they keep their names. */
  gp->input = kiln_arena_array(&ex->ar, (size_t)g->ninputs + 1, sizeof *gp->input);
  for (int i = 0; i < g->ninputs; i++) gp->input[gp->n_input++] = value_info(ex, g->inputs[i]);
  gp->output = kiln_arena_array(&ex->ar, (size_t)g->noutputs + 1, sizeof *gp->output);
  for (int i = 0; i < g->noutputs; i++) {
    const kiln_value *v = g->outputs[i];
    if (v->rank < 0 || v->dtype == KILN_DT_UNDEF)
      return kiln_error(ex->d, NULL, "%s: output '%s' has no inferred shape", g->file, v->name);
    gp->output[gp->n_output++] = value_info(ex, v);
  }
  gp->initializer = kiln_arena_array(&ex->ar, (size_t)g->nvalues + 1, sizeof *gp->initializer);
  gp->node = kiln_arena_array(&ex->ar, (size_t)g->nnodes + 1, sizeof *gp->node);
  for (int i = 0; i < g->ninputs; i++) done[g->inputs[i]->id] = 1;
  for (int i = 0; i < g->noutputs; i++)
    if (!g->outputs[i]->producer && g->outputs[i]->data && add_initializer(ex, gp, g->outputs[i], done)) return -1;
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    if (n->dead) continue;
    int o = node_min_opset(n);
    if (o > opset) opset = o;
    Onnx__NodeProto *np = NEW(ex, Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
    np->op_type = (char *)kiln_op_get(n->op)->name;
    np->name = (char *)(n->name ? n->name : "");
    int nin = n->nin, nout = n->nout;
    while (nin > 0 && !n->in[nin - 1]) nin--;
    while (nout > 1 && !n->out[nout - 1]) nout--;
    np->input = kiln_arena_array(&ex->ar, (size_t)nin + 1, sizeof *np->input);
    for (int k = 0; k < nin; k++) {
      const kiln_value *v = n->in[k];
      if (!v) { np->input[np->n_input++] = ""; continue; }
      if (!v->producer && v->kind != KILN_VALUE_INPUT && add_initializer(ex, gp, v, done)) return -1;
      np->input[np->n_input++] = (char *)value_name(ex, v);
    }
    np->output = kiln_arena_array(&ex->ar, (size_t)nout + 1, sizeof *np->output);
    for (int k = 0; k < nout; k++) np->output[np->n_output++] = n->out[k] ? (char *)value_name(ex, n->out[k]) : "";
    if (attributes(ex, n, np)) return -1;
    gp->node[gp->n_node++] = np;
  }
  Onnx__OperatorSetIdProto *os = NEW(ex, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT);
  os->domain = "";
  os->has_version = 1;
  os->version = opset;
  m->has_ir_version = 1;
  m->ir_version = opset >= 21 ? 10 : opset >= 19 ? 9 : 8;
  m->n_opset_import = 1;
  m->opset_import = kiln_arena_alloc(&ex->ar, sizeof *m->opset_import);
  m->opset_import[0] = os;
  m->producer_name = "kiln";
  m->producer_version = "0.1.0";
  m->graph = gp;
  return 0;
}

/* Writes buf to path via a temporary file in the same folder and a rename. */
static int write_atomic(const char *path, const void *buf, size_t len, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  size_t n = strlen(path);
  char *tmp = malloc(n + 16);
  if (!tmp) return kiln_error(d, &loc, "out of memory");
  snprintf(tmp, n + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return kiln_error(d, &loc, "cannot create the output: %s", strerror(e));
  }
  FILE *f = fdopen(fd, "wb");
  int ok = f && fwrite(buf, 1, len, f) == len && fflush(f) == 0 && fsync(fd) == 0;
  int e = errno;
  if (f) ok = fclose(f) == 0 && ok;
  else close(fd);
  if (ok && rename(tmp, path) != 0) { e = errno; ok = 0; }
  if (!ok) {
    unlink(tmp);
    free(tmp);
    return kiln_error(d, &loc, "cannot write the output: %s", strerror(e));
  }
  free(tmp);
  return 0;
}

int kiln_onnx_export(const kiln_graph *g, const char *path, kiln_diag *d) {
  exporter ex = {.g = g, .d = d};
  kiln_arena_init(&ex.ar);
  kiln_strmap_init(&ex.used, &ex.ar);
  ex.names = kiln_arena_array(&ex.ar, (size_t)g->nvalues + 1, sizeof *ex.names);
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  int rc = build(&ex, &m);
  if (!rc) {
    size_t len = onnx__model_proto__get_packed_size(&m);
    if (len >= ((size_t)1 << 31) - 1) {
      kiln_loc loc = {.file = path, .node_index = -1};
      rc = kiln_error(d, &loc, "the model is %zu bytes; ONNX files without external data stop at 2 GB", len);
    } else {
      uint8_t *buf = malloc(len ? len : 1);
      if (!buf) {
        kiln_loc loc = {.file = path, .node_index = -1};
        rc = kiln_error(d, &loc, "out of memory packing %zu bytes", len);
      } else {
        onnx__model_proto__pack(&m, buf);
        rc = write_atomic(path, buf, len, d);
        free(buf);
      }
    }
  }
  kiln_arena_free(&ex.ar);
  return rc;
}
