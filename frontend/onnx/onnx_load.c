/* ONNX model -> graph IR.
 *
 * 1. bound the message nesting depth, unpack the ModelProto (protobuf-c;
 *    generated from libonnx-dev's onnx.proto at build time) and check IR
 *    version and default opset;
 * 2. register initializers (constants, no copy) and true graph inputs;
 * 3. define every node's outputs first, so nodes may come in any order;
 *    Constant nodes become constant values here and no node;
 * 4. per node: resolve inputs, upgrade old op forms (onnx_upgrade.c),
 *    parse attributes into the op's typed struct (onnx_attrs.c);
 * 5. graph outputs, topological sort (rejects cycles), verifier.
 * The parsed message stays alive with the graph: weights point into it. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "onnx_internal.h"

static void free_model(void *p) { onnx__model_proto__free_unpacked(p, NULL); }

static int is_default_domain(const char *d) { return !d || !d[0] || !strcmp(d, "ai.onnx"); }

static kiln_value *lookup(onnx_importer *im, const char *name) { return kiln_strmap_get(&im->names, name); }

static int define(onnx_importer *im, const kiln_loc *loc, kiln_value *v) {
  if (lookup(im, v->name)) return kiln_error(im->d, loc, "value '%s' is defined more than once", v->name);
  kiln_strmap_put(&im->names, v->name, v);
  return 0;
}

static int graph_input(onnx_importer *im, const Onnx__ValueInfoProto *vi) {
  kiln_loc loc = {.file = im->g->file, .node_index = -1};
  const char *name = vi->name ? vi->name : "";
  if (!name[0]) return kiln_error(im->d, &loc, "a graph input has no name");
  if (lookup(im, name)) return 0; /* an initializer: IR < 4 listed weights as inputs */
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return kiln_error(im->d, &loc, "graph input '%s' is not a tensor", name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  int code = tt->has_elem_type ? tt->elem_type : 0;
  if (code <= 0 || code >= KILN_DT_MAX_CODE || !kiln_dtype_size((kiln_dtype)code))
    return kiln_error(im->d, &loc, "graph input '%s' has unsupported element type %s", name, kiln_onnx_dtype_name(code));
  if (!tt->shape) return kiln_error(im->d, &loc, "graph input '%s' has no shape", name);
  if (tt->shape->n_dim > KILN_MAX_RANK)
    return kiln_error(im->d, &loc, "graph input '%s' has rank %zu; kiln supports up to %d", name, tt->shape->n_dim, KILN_MAX_RANK);
  kiln_value *v = kiln_value_new(im->g, name, KILN_VALUE_INPUT);
  v->dtype = (kiln_dtype)code;
  v->rank = (int)tt->shape->n_dim;
  for (int i = 0; i < v->rank; i++) {
    const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[i];
    /* dim_value -1 (some exporters' "unknown") is a symbolic dim, named
     * like an unnamed one: INPUT_dimK. */
    if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && dm->dim_value != -1) {
      if (dm->dim_value < 0 || dm->dim_value > ((int64_t)1 << 40))
        return kiln_error(im->d, &loc, "graph input '%s' has invalid dim %lld", name, (long long)dm->dim_value);
      v->dims[i] = dm->dim_value;
    } else {
      if (im->g->nsyms == KILN_MAX_SYMS)
        return kiln_error(im->d, &loc, "graph input '%s': more than %d symbolic dims in the model", name, KILN_MAX_SYMS);
      const char *sym = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dm->dim_param[0]
                            ? dm->dim_param : kiln_arena_printf(&im->g->arena, "%s_dim%d", name, i);
      v->dims[i] = kiln_graph_sym(im->g, sym);
    }
  }
  /* The same bound as initializers (onnx_tensor.c), so that element
   * counts and byte sizes derived from inputs cannot overflow. */
  if (kiln_value_numel(v, 1) > ((int64_t)1 << 40))
    return kiln_error(im->d, &loc, "graph input '%s' is too large (dims overflow)", name);
  kiln_graph_add_input(im->g, v);
  return define(im, &loc, v);
}

static int initializer(onnx_importer *im, const Onnx__TensorProto *t) {
  kiln_loc loc = {.file = im->g->file, .node_index = -1};
  if (!t->name || !t->name[0]) return kiln_error(im->d, &loc, "an initializer has no name");
  kiln_value *v = kiln_value_new(im->g, t->name, KILN_VALUE_PARAM);
  if (onnx_tensor_to_value(im, t, &loc, v)) return -1;
  return define(im, &loc, v);
}

/* Constant node: its value attribute in any of its forms. */
static int constant_node(onnx_importer *im, const Onnx__NodeProto *np, const kiln_loc *loc) {
  if (np->n_output != 1 || !np->output[0][0]) return kiln_error(im->d, loc, "Constant must have exactly one output");
  if (np->n_attribute != 1) return kiln_error(im->d, loc, "Constant must have exactly one attribute");
  const Onnx__AttributeProto *a = np->attribute[0];
  const char *an = a->name ? a->name : "";
  kiln_value *v = kiln_value_new(im->g, np->output[0], KILN_VALUE_CONST);
  kiln_arena *ar = &im->g->arena;
  if (!strcmp(an, "value")) {
    if (!a->t) return kiln_error(im->d, loc, "attribute 'value' has no tensor");
    if (onnx_tensor_to_value(im, a->t, loc, v)) return -1;
  } else if (!strcmp(an, "value_float") || !strcmp(an, "value_int")) {
    v->rank = 0;
    v->dtype = an[6] == 'f' ? KILN_DT_F32 : KILN_DT_I64;
    void *d = kiln_arena_alloc(ar, 8);
    if (v->dtype == KILN_DT_F32) memcpy(d, &a->f, 4); else memcpy(d, &a->i, 8);
    v->data = d;
  } else if (!strcmp(an, "value_floats") || !strcmp(an, "value_ints")) {
    int f = an[6] == 'f';
    size_t cnt = f ? a->n_floats : a->n_ints;
    v->rank = 1;
    v->dims[0] = (int64_t)cnt;
    v->dtype = f ? KILN_DT_F32 : KILN_DT_I64;
    /* Exactly cnt elements: an empty list has a NULL array (the arena
     * still hands out a non-NULL block, so the value counts as constant). */
    v->data = f ? kiln_arena_memdup(ar, a->floats, cnt * 4) : kiln_arena_memdup(ar, a->ints, cnt * 8);
  } else if (!strcmp(an, "sparse_value") || !strncmp(an, "value_string", 12)) {
    return kiln_error(im->d, loc, "Constant attribute '%s' is not supported", an);
  } else {
    return kiln_error(im->d, loc, "unknown attribute '%s' for Constant", an);
  }
  return define(im, loc, v);
}

static kiln_loc node_loc(onnx_importer *im, const Onnx__NodeProto *np, int index) {
  kiln_loc loc = {.file = im->g->file, .node_index = index};
  loc.node_name = kiln_arena_strdup(&im->g->arena, np->name ? np->name : "");
  loc.op_type = kiln_arena_strdup(&im->g->arena, np->op_type ? np->op_type : "");
  return loc;
}

/* Step 3: outputs of every node (and Constant values). */
static int define_outputs(onnx_importer *im, const Onnx__NodeProto *np, int index) {
  kiln_loc loc = node_loc(im, np, index);
  if (!np->op_type || !np->op_type[0]) return kiln_error(im->d, &loc, "node has no op_type");
  if (is_default_domain(np->domain) && !strcmp(np->op_type, "Constant")) return constant_node(im, np, &loc);
  for (size_t k = 0; k < np->n_output; k++) {
    if (!np->output[k][0]) continue;
    kiln_value *v = kiln_value_new(im->g, np->output[k], KILN_VALUE_ACTIVATION);
    if (define(im, &loc, v)) return -1;
  }
  return 0;
}

/* Step 4. */
static int convert_node(onnx_importer *im, const Onnx__NodeProto *np, int index) {
  kiln_loc loc = node_loc(im, np, index);
  if (!is_default_domain(np->domain))
    return kiln_error(im->d, &loc, "unsupported op '%s' (domain '%s'): kiln only implements the default ONNX domain",
                      np->op_type, np->domain);
  if (!strcmp(np->op_type, "Constant")) return 0;
  onnx_node n = {.proto = np, .op_type = np->op_type, .loc = loc, .legacy_axis = -1};
  kiln_arena *ar = &im->g->arena;
  n.nin = (int)np->n_input;
  n.nout = (int)np->n_output;
  n.in = kiln_arena_array(ar, np->n_input + 4, sizeof *n.in);
  for (int k = 0; k < n.nin; k++) {
    if (!np->input[k][0]) continue; /* absent optional input */
    n.in[k] = lookup(im, np->input[k]);
    if (!n.in[k])
      return kiln_error(im->d, &loc, "input '%s' is not produced by any node, initializer or graph input", np->input[k]);
  }
  n.cap_attr = (int)np->n_attribute + 4;
  n.attr = kiln_arena_array(ar, (size_t)n.cap_attr, sizeof *n.attr);
  n.nattr = (int)np->n_attribute;
  if (n.nattr) memcpy(n.attr, np->attribute, (size_t)n.nattr * sizeof *n.attr); /* attribute is NULL when empty */
  if (onnx_upgrade(im, &n)) return -1;
  int op = strncmp(n.op_type, "kiln.", 5) ? kiln_op_find(n.op_type) : -1;
  if (op < 0)
    return kiln_error(im->d, &loc, "unsupported op '%s' (domain 'ai.onnx', opset %lld)", n.op_type, (long long)im->opset);
  const kiln_op_info *info = kiln_op_get((kiln_op)op);
  int lo, hi;
  kiln_sig_arity(info->inputs, &lo, &hi);
  while (n.nin > lo && !n.in[n.nin - 1]) n.nin--; /* trailing absent inputs */
  if (n.nin < lo || n.nin > hi)
    return kiln_error(im->d, &loc, "has %d inputs, %s takes %d%s", n.nin, info->name, lo,
                      hi == INT_MAX ? " or more" : hi > lo ? kiln_arena_printf(ar, " to %d", hi) : "");
  kiln_sig_arity(info->outputs, &lo, &hi);
  if (n.nout < lo || n.nout > hi)
    return kiln_error(im->d, &loc, "has %d outputs, %s gives %d%s", n.nout, info->name, lo,
                      hi == INT_MAX ? " or more" : hi > lo ? kiln_arena_printf(ar, " to %d", hi) : "");
  if (op == KILN_OP_BATCH_NORM && im->opset >= 14 && n.nout > 3) /* saved_mean/saved_var: only before 14 (onnx_upgrade.c) */
    return kiln_error(im->d, &loc, "has %d outputs, %s gives 1 to 3 since opset 14", n.nout, info->name);
  kiln_node *kn = kiln_node_new(im->g, (kiln_op)op, np->name, n.nin, n.nout);
  kn->loc = loc;
  for (int k = 0; k < n.nin; k++) {
    kiln_slot s;
    kiln_sig_slot(info->inputs, k, &s);
    if (!n.in[k] && !s.optional)
      return kiln_error(im->d, &loc, "required input '%.*s' is missing", s.name_len, s.name);
    kiln_node_set_input(kn, k, n.in[k]);
  }
  for (int k = 0; k < n.nout; k++) {
    kiln_slot s;
    kiln_sig_slot(info->outputs, k, &s);
    if (np->output[k][0]) kiln_node_set_output(kn, k, lookup(im, np->output[k]));
    /* ONNX lets "" stand for an optional output only, and the folders
     * assume a single-output op's output exists. */
    else if (!s.optional && !s.variadic)
      return kiln_error(im->d, &loc, "required output '%.*s' is missing", s.name_len, s.name);
  }
  return onnx_parse_attrs(im, &n, kn);
}

/* Names every op kiln cannot import, before anything else is checked, so
 * "unsupported op" is the first thing a user hears about such a model. */
static int check_ops(onnx_importer *im, const Onnx__GraphProto *gp) {
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *np = gp->node[i];
    const char *op = np->op_type ? np->op_type : "";
    kiln_loc loc = node_loc(im, np, (int)i);
    if (!op[0]) return kiln_error(im->d, &loc, "node has no op_type");
    if (!is_default_domain(np->domain))
      return kiln_error(im->d, &loc, "unsupported op '%s' (domain '%s'): kiln implements the default ONNX domain only",
                        op, np->domain);
    /* "kiln.*" rows of the op table are kiln's own (gradients): never read from a model */
    if ((kiln_op_find(op) < 0 || !strncmp(op, "kiln.", 5)) && strcmp(op, "Constant") && strcmp(op, "Upsample"))
      return kiln_error(im->d, &loc, "unsupported op '%s' (domain 'ai.onnx', opset %lld)", op, (long long)im->opset);
  }
  return 0;
}

static int read_opset(onnx_importer *im, const Onnx__ModelProto *m) {
  kiln_loc loc = {.file = im->g->file, .node_index = -1};
  im->opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++)
    if (is_default_domain(m->opset_import[i]->domain)) im->opset = m->opset_import[i]->version;
  if (im->opset < 0) {
    if (m->ir_version >= 3 || m->n_opset_import) return kiln_error(im->d, &loc, "model imports no default-domain opset");
    im->opset = 1;
  }
  if (im->opset < KILN_ONNX_MIN_OPSET)
    return kiln_error(im->d, &loc, "opset %lld is older than %d, the oldest kiln reads; upgrade the model with "
                      "onnx.version_converter", (long long)im->opset, KILN_ONNX_MIN_OPSET);
  return 0;
}

/* protobuf-c unpacks nested messages by recursion with no depth limit, so
 * a few hundred kilobytes of nested TypeProto.sequence_type (or
 * AttributeProto.g) overflow the stack.  Before unpacking, walk the wire
 * format, descending only into fields the generated descriptors declare as
 * messages, and refuse nesting deeper than any real model needs (a model
 * is ~6 levels deep plus 3 per subgraph).  The walk is linear in the input
 * and its own recursion stops at the bound; anything malformed is left for
 * the unpacker to report. */
enum { MAX_NESTING = 64 };

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

static int nests_too_deep(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end, int depth) {
  while (p < end) {
    uint64_t tag, len;
    if (read_varint(&p, end, &tag)) return 0;
    switch (tag & 7) {
    case PROTOBUF_C_WIRE_TYPE_VARINT:
      if (read_varint(&p, end, &len)) return 0;
      break;
    case PROTOBUF_C_WIRE_TYPE_64BIT:
      if (end - p < 8) return 0;
      p += 8;
      break;
    case PROTOBUF_C_WIRE_TYPE_32BIT:
      if (end - p < 4) return 0;
      p += 4;
      break;
    case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
      if (read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 0;
      const ProtobufCFieldDescriptor *f =
          tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3)) : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          (depth >= MAX_NESTING || nests_too_deep(f->descriptor, p, p + len, depth + 1)))
        return 1;
      p += len;
      break;
    }
    default: return 0; /* groups and invalid wire types: the unpacker rejects them */
    }
  }
  return 0;
}

kiln_graph *kiln_onnx_load_buffer(const void *buf, size_t len, const char *name, const char *base_dir, kiln_diag *d) {
  kiln_loc loc = {.file = name, .node_index = -1};
  if (len == 0) { kiln_error(d, &loc, "file is empty"); return NULL; }
  if (nests_too_deep(&onnx__model_proto__descriptor, buf, (const uint8_t *)buf + len, 0)) {
    kiln_error(d, &loc, "messages nest more than %d levels deep; this is not an ONNX model kiln can read", MAX_NESTING);
    return NULL;
  }
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
  if (!m) { kiln_error(d, &loc, "not an ONNX model (the protobuf is malformed or truncated)"); return NULL; }
  kiln_graph *g = kiln_graph_new();
  kiln_graph_on_free(g, free_model, m);
  g->file = kiln_arena_strdup(&g->arena, name);
  onnx_importer im = {.g = g, .d = d, .base_dir = base_dir};
  kiln_strmap_init(&im.names, &g->arena);
  loc.file = g->file;
  if (!m->graph) { kiln_error(d, &loc, "model has no graph"); goto fail; }
  if (!m->has_ir_version || m->ir_version < 3) {
    kiln_error(d, &loc, "IR version %lld is not supported (kiln reads 3 and newer)", (long long)m->ir_version);
    goto fail;
  }
  g->ir_version = m->ir_version;
  kiln_diag opset_d = {0};
  im.d = &opset_d;
  int opset_rc = read_opset(&im, m);
  im.d = d;
  if (check_ops(&im, m->graph)) goto fail; /* an unsupported op is the more useful message */
  if (opset_rc) { *d = opset_d; goto fail; }
  g->opset = im.opset;
  g->name = kiln_arena_strdup(&g->arena, m->graph->name ? m->graph->name : "");
  g->producer = kiln_arena_printf(&g->arena, "%s%s%s", m->producer_name ? m->producer_name : "",
                                  m->producer_version && m->producer_version[0] ? " " : "",
                                  m->producer_version ? m->producer_version : "");
  if (m->n_metadata_props > 0 && m->n_metadata_props < INT32_MAX) {
    g->meta_keys = kiln_arena_array(&g->arena, m->n_metadata_props, sizeof *g->meta_keys);
    g->meta_values = kiln_arena_array(&g->arena, m->n_metadata_props, sizeof *g->meta_values);
    for (size_t i = 0; i < m->n_metadata_props; i++) {
      const Onnx__StringStringEntryProto *e = m->metadata_props[i];
      g->meta_keys[i] = kiln_arena_strdup(&g->arena, e->key ? e->key : "");
      g->meta_values[i] = kiln_arena_strdup(&g->arena, e->value ? e->value : "");
    }
    g->nmeta = (int)m->n_metadata_props;
  }
  const Onnx__GraphProto *gp = m->graph;
  if (gp->n_sparse_initializer) { kiln_error(d, &loc, "sparse initializers are not supported"); goto fail; }
  for (size_t i = 0; i < gp->n_initializer; i++)
    if (initializer(&im, gp->initializer[i])) goto fail;
  for (size_t i = 0; i < gp->n_input; i++)
    if (graph_input(&im, gp->input[i])) goto fail;
  for (size_t i = 0; i < gp->n_node; i++)
    if (define_outputs(&im, gp->node[i], (int)i)) goto fail;
  for (size_t i = 0; i < gp->n_node; i++)
    if (convert_node(&im, gp->node[i], (int)i)) goto fail;
  if (gp->n_output == 0) { kiln_error(d, &loc, "graph has no outputs"); goto fail; }
  for (size_t i = 0; i < gp->n_output; i++) {
    const char *on = gp->output[i]->name ? gp->output[i]->name : "";
    kiln_value *v = lookup(&im, on);
    if (!v) { kiln_error(d, &loc, "graph output '%s' is not produced by any node", on); goto fail; }
    kiln_graph_add_output(g, v);
  }
  if (kiln_graph_toposort(g, d) || kiln_graph_verify(g, d)) goto fail;
  return g;
fail:
  kiln_graph_free(g);
  return NULL;
}

/* The file's bytes, mapped (MAP_POPULATE: one pass over the page cache,
 * not a fault per page) or, where it cannot be mapped, read into a
 * malloc'd copy; *mapped says which (release_file).  ResNet-50's 100 MB
 * read into fresh memory cost 25,000 page faults and a copy of its
 * weights, which the unpacker then copies once more anyway. */
static void *file_bytes(FILE *f, size_t len, int *mapped) {
  *mapped = 0;
  if (len == 0) return malloc(1);
#ifdef MAP_POPULATE
  void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fileno(f), 0);
  if (m != MAP_FAILED) {
    *mapped = 1;
    return m;
  }
#endif
  void *buf = malloc(len);
  if (buf && fread(buf, 1, len, f) != len) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void release_file(void *buf, size_t len, int mapped) {
  if (mapped) munmap(buf, len);
  else free(buf);
}

kiln_graph *kiln_onnx_load(const char *path, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  struct stat st;
  FILE *f = fopen(path, "rb");
  if (!f) { kiln_error(d, &loc, "cannot open: %s", strerror(errno)); return NULL; }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    kiln_error(d, &loc, "not a regular file");
    return NULL;
  }
  size_t len = (size_t)st.st_size;
  int mapped;
  errno = 0;
  void *buf = file_bytes(f, len, &mapped);
  fclose(f);
  if (!buf) {
    kiln_error(d, &loc, "cannot read %zu bytes: %s", len, errno ? strerror(errno) : "read error");
    return NULL;
  }
  char *dir = strdup(path);
  kiln_graph *g = dir ? kiln_onnx_load_buffer(buf, len, path, dirname(dir), d) : NULL;
  free(dir);
  release_file(buf, len, mapped);
  return g;
}
