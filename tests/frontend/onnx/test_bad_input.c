/* Bad input is normal input: every malformed, hostile or unsupported ONNX
 * model must come back from the importer as NULL plus one located message
 * (`FILE: node 'NAME' (Op): what`), never as a crash, a hang or a leak.
 *
 * The models are built here in C with the protobuf-c API generated from
 * onnx.proto (so each test shows exactly which field is wrong), packed,
 * written to a per-test temporary folder and loaded with kiln_onnx_load or
 * kiln_onnx_load_buffer.  A small builder at the top keeps every test a
 * few lines: conv_relu_model() is a valid model that a test then breaks in
 * one place.  All builder memory comes from a pool freed in teardown, so
 * the tests stay leak-free under LeakSanitizer.  One group breaks shapes
 * rather than the file: those models load, and kiln_pass_infer_shapes must
 * report the node and the reason.  The last group pins down bugs that
 * tests/fuzz found, and their relatives (the fuzzer's inputs are kept in
 * tests/fuzz/corpus/onnx/). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.pb-c.h"

#include "frontend/onnx/kiln_onnx.h"
#include "passes/passes.h"

enum {
  T_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
  T_INT64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
  T_STRING = ONNX__TENSOR_PROTO__DATA_TYPE__STRING,
  T_FLOAT8 = 17, /* FLOAT8E4M3FN: newer than the onnx.proto libonnx-dev ships */
};
typedef Onnx__AttributeProto__AttributeType atype;

/* ---- allocation pool and temporary folder (per test) ------------------- */

static void **pool;
static size_t npool, cap_pool;
static char tmpdir[64];

static void *P(size_t n) {
  if (npool == cap_pool) {
    cap_pool = cap_pool ? cap_pool * 2 : 256;
    pool = realloc(pool, cap_pool * sizeof *pool);
    cr_assert(pool, "out of memory");
  }
  void *p = calloc(1, n ? n : 1);
  cr_assert(p, "out of memory");
  return pool[npool++] = p;
}

static char *S(const char *s) { return strcpy(P(strlen(s) + 1), s); }

/* Appends to a protobuf-c repeated field (count + array). */
static void *grow(void *arr, size_t n, size_t elem) {
  void *na = P((n + 1) * elem);
  if (n) memcpy(na, arr, n * elem);
  return na;
}
#define PUSH(arr, n, item) ((arr) = grow((arr), (n), sizeof *(arr)), (arr)[(n)++] = (item))

/* "rank, dims" for the builder: DIMS(1, 3, 8, 8). */
#define DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static void setup(void) {
  strcpy(tmpdir, "/tmp/kiln-bad-input-XXXXXX");
  cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) {
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  for (size_t i = 0; i < npool; i++) free(pool[i]);
  free(pool);
  pool = NULL;
  npool = cap_pool = 0;
}

TestSuite(onnx_bad_input, .init = setup, .fini = teardown);

/* REL under the test's temporary folder. */
static char *tmp_path(const char *rel) {
  size_t n = strlen(tmpdir) + strlen(rel) + 2;
  char *p = P(n);
  snprintf(p, n, "%s/%s", tmpdir, rel);
  return p;
}

static void write_file(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot create %s: %s", path, strerror(errno));
  cr_assert_eq(fwrite(buf, 1, len, f), len);
  fclose(f);
}

/* ---- ModelProto builder ------------------------------------------------- */

/* An empty model: IR version, one default-domain opset, a graph "g". */
static Onnx__ModelProto *new_model(int64_t ir_version, int64_t opset) {
  Onnx__ModelProto *m = P(sizeof *m);
  onnx__model_proto__init(m);
  m->has_ir_version = 1;
  m->ir_version = ir_version;
  m->producer_name = S("kiln-tests");
  Onnx__OperatorSetIdProto *o = P(sizeof *o);
  onnx__operator_set_id_proto__init(o);
  o->domain = S("");
  o->has_version = 1;
  o->version = opset;
  PUSH(m->opset_import, m->n_opset_import, o);
  m->graph = P(sizeof *m->graph);
  onnx__graph_proto__init(m->graph);
  m->graph->name = S("g");
  return m;
}

/* Splits "a,b,,c" into a repeated string field; "" is the empty list and an
 * empty entry is an absent optional input. */
static void set_names(char ***arr, size_t *n, const char *list) {
  *arr = NULL;
  *n = 0;
  if (!list[0]) return;
  for (const char *p = list;;) {
    size_t len = strcspn(p, ",");
    char *s = P(len + 1);
    memcpy(s, p, len);
    PUSH(*arr, *n, s);
    if (!p[len]) break;
    p += len + 1;
  }
}

static Onnx__NodeProto *add_node(Onnx__ModelProto *m, const char *op, const char *name, const char *ins,
                                 const char *outs) {
  Onnx__NodeProto *n = P(sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = S(op);
  n->name = S(name);
  set_names(&n->input, &n->n_input, ins);
  set_names(&n->output, &n->n_output, outs);
  PUSH(m->graph->node, m->graph->n_node, n);
  return n;
}

static Onnx__AttributeProto *add_attr(Onnx__NodeProto *n, const char *name, atype type) {
  Onnx__AttributeProto *a = P(sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = S(name);
  a->has_type = 1;
  a->type = type;
  PUSH(n->attribute, n->n_attribute, a);
  return a;
}

static void attr_int(Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = add_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1;
  a->i = v;
}

static void attr_float(Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = add_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1;
  a->f = v;
}

static void attr_ints(Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
  Onnx__AttributeProto *a = add_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  for (int i = 0; i < count; i++) PUSH(a->ints, a->n_ints, v[i]);
}

/* A tensor type; a negative dim is the symbolic dim "N". */
static Onnx__ValueInfoProto *value_info(const char *name, int elem, int rank, const int64_t *dims) {
  Onnx__ValueInfoProto *vi = P(sizeof *vi);
  onnx__value_info_proto__init(vi);
  vi->name = S(name);
  Onnx__TypeProto *tp = P(sizeof *tp);
  onnx__type_proto__init(tp);
  Onnx__TypeProto__Tensor *tt = P(sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = elem;
  tt->shape = P(sizeof *tt->shape);
  onnx__tensor_shape_proto__init(tt->shape);
  for (int i = 0; i < rank; i++) {
    Onnx__TensorShapeProto__Dimension *d = P(sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    if (dims[i] < 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = S("N");
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    }
    PUSH(tt->shape->dim, tt->shape->n_dim, d);
  }
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  vi->type = tp;
  return vi;
}

static void add_input(Onnx__ModelProto *m, const char *name, int elem, int rank, const int64_t *dims) {
  PUSH(m->graph->input, m->graph->n_input, value_info(name, elem, rank, dims));
}

/* The importer takes output types from inference, so the name suffices. */
static void add_output(Onnx__ModelProto *m, const char *name) {
  Onnx__ValueInfoProto *vi = P(sizeof *vi);
  onnx__value_info_proto__init(vi);
  vi->name = S(name);
  PUSH(m->graph->output, m->graph->n_output, vi);
}

/* A tensor with a type and dims but no data yet. */
static Onnx__TensorProto *new_tensor(const char *name, int dtype, int rank, const int64_t *dims) {
  Onnx__TensorProto *t = P(sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = S(name);
  t->has_data_type = 1;
  t->data_type = dtype;
  for (int i = 0; i < rank; i++) PUSH(t->dims, t->n_dims, dims[i]);
  return t;
}

static int64_t numel(const Onnx__TensorProto *t) {
  int64_t n = 1;
  for (size_t i = 0; i < t->n_dims; i++) n *= t->dims[i];
  return n;
}

/* The value of element i of every float test tensor. */
static float pattern(int64_t i) { return (float)i * 0.5f - 3.0f; }

static Onnx__TensorProto *add_init(Onnx__ModelProto *m, Onnx__TensorProto *t) {
  PUSH(m->graph->initializer, m->graph->n_initializer, t);
  return t;
}

static Onnx__TensorProto *init_floats(Onnx__ModelProto *m, const char *name, int rank, const int64_t *dims) {
  Onnx__TensorProto *t = new_tensor(name, T_FLOAT, rank, dims);
  for (int64_t i = 0; i < numel(t); i++) PUSH(t->float_data, t->n_float_data, pattern(i));
  return add_init(m, t);
}

static Onnx__TensorProto *init_ints(Onnx__ModelProto *m, const char *name, int count, const int64_t *v) {
  Onnx__TensorProto *t = new_tensor(name, T_INT64, DIMS(count));
  for (int i = 0; i < count; i++) PUSH(t->int64_data, t->n_int64_data, v[i]);
  return add_init(m, t);
}

/* Marks t as external data: location, and offset / length unless NULL. */
static void set_external(Onnx__TensorProto *t, const char *location, const char *offset, const char *length) {
  const char *kv[][2] = {{"location", location}, {"offset", offset}, {"length", length}};
  t->n_float_data = 0;
  t->has_data_location = 1;
  t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  for (int i = 0; i < 3; i++) {
    if (!kv[i][1]) continue;
    Onnx__StringStringEntryProto *e = P(sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = S(kv[i][0]);
    e->value = S(kv[i][1]);
    PUSH(t->external_data, t->n_external_data, e);
  }
}

/* The valid model most tests break in one place:
 *   x f32[1,3,8,8] -> Conv 'conv1' (W f32[4,3,3,3], B f32[4]) -> c
 *   c -> Relu 'relu1' -> y (graph output), IR 8, opset 13. */
static Onnx__ModelProto *conv_relu_model(void) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(1, 3, 8, 8));
  init_floats(m, "W", DIMS(4, 3, 3, 3));
  init_floats(m, "B", DIMS(4));
  Onnx__NodeProto *conv = add_node(m, "Conv", "conv1", "x,W,B", "c");
  attr_ints(conv, "kernel_shape", DIMS(3, 3));
  add_node(m, "Relu", "relu1", "c", "y");
  add_output(m, "y");
  return m;
}

/* A one-node model: x f32[2,3] -> OP 'n1' -> y. */
static Onnx__ModelProto *unary_model(const char *op, Onnx__NodeProto **node) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  *node = add_node(m, op, "n1", "x", "y");
  add_output(m, "y");
  return m;
}

static Onnx__TensorProto *find_init(Onnx__ModelProto *m, const char *name) {
  for (size_t i = 0; i < m->graph->n_initializer; i++)
    if (!strcmp(m->graph->initializer[i]->name, name)) return m->graph->initializer[i];
  cr_assert_fail("no initializer %s", name);
  return NULL;
}

static void *pack_model(const Onnx__ModelProto *m, size_t *len) {
  *len = onnx__model_proto__get_packed_size(m);
  void *buf = P(*len);
  cr_assert_eq(onnx__model_proto__pack(m, buf), *len);
  return buf;
}

/* Writes m to REL under the temporary folder; returns the full path. */
static char *save_model(const Onnx__ModelProto *m, const char *rel) {
  size_t len;
  void *buf = pack_model(m, &len);
  char *path = tmp_path(rel);
  write_file(path, buf, len);
  return path;
}

static const kiln_value *find_value(const kiln_graph *g, const char *name) {
  for (int i = 0; i < g->nvalues; i++)
    if (!strcmp(g->values[i]->name, name)) return g->values[i];
  return NULL;
}

/* ---- assertions ----------------------------------------------------------- */

static void expect_msg(const kiln_diag *d, const char *const *needles) {
  cr_assert(d->failed, "no diagnostic was recorded");
  for (int i = 0; needles[i]; i++)
    cr_assert(strstr(d->msg, needles[i]), "message lacks \"%s\":\n  %s", needles[i], d->msg);
}

/* Loading PATH fails cleanly: NULL, d.failed, and a message that starts
 * with the path (the location) and contains every needle. */
static void expect_file_error(const char *path, const char *const *needles) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  if (g) kiln_graph_free(g);
  cr_assert_null(g, "%s loaded; expected an error", path);
  expect_msg(&d, needles);
  cr_assert(!strncmp(d.msg, path, strlen(path)), "message does not start with the model path:\n  %s", d.msg);
}
#define EXPECT_FILE_ERROR(path, ...) expect_file_error((path), (const char *const[]){__VA_ARGS__, NULL})

static void expect_load_error(const Onnx__ModelProto *m, const char *const *needles) {
  expect_file_error(save_model(m, "model.onnx"), needles);
}
/* EXPECT_LOAD_ERROR(model, "node 'n1' (Relu)", "what went wrong", ...) */
#define EXPECT_LOAD_ERROR(m, ...) expect_load_error((m), (const char *const[]){__VA_ARGS__, NULL})

/* The model loads, and shape inference fails with every needle. */
static void expect_shape_error(const Onnx__ModelProto *m, const char *const *needles) {
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  int rc = kiln_pass_infer_shapes(g, &d);
  kiln_graph_free(g);
  cr_assert_eq(rc, -1, "shape inference succeeded; expected an error");
  expect_msg(&d, needles);
  cr_assert(!strncmp(d.msg, path, strlen(path)), "message does not start with the model path:\n  %s", d.msg);
}
#define EXPECT_SHAPE_ERROR(m, ...) expect_shape_error((m), (const char *const[]){__VA_ARGS__, NULL})

/* ---- the helper itself: a valid model round-trips ------------------------ */

Test(onnx_bad_input, valid_model_round_trips_through_the_builder) {
  char *path = save_model(conv_relu_model(), "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  cr_assert_eq(g->nnodes, 2);
  cr_assert_eq(g->ninputs, 1);
  cr_assert_str_eq(g->inputs[0]->name, "x");
  cr_assert_eq(g->noutputs, 1);
  cr_assert_eq(g->opset, 13);
  const kiln_value *w = find_value(g, "W");
  cr_assert(w && w->data && w->rank == 4 && w->dims[0] == 4 && w->dims[3] == 3);
  for (int i = 0; i < 108; i++) cr_assert_eq(((const float *)w->data)[i], pattern(i));
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  const kiln_value *y = g->outputs[0];
  cr_assert(y->rank == 4 && y->dims[0] == 1 && y->dims[1] == 4 && y->dims[2] == 6 && y->dims[3] == 6);
  kiln_graph_free(g);
}

/* ---- files that are not models ------------------------------------------- */

Test(onnx_bad_input, missing_file_names_path_and_errno) {
  EXPECT_FILE_ERROR(tmp_path("no-such-model.onnx"), "cannot open", "No such file");
}

Test(onnx_bad_input, directory_is_not_a_regular_file) {
  EXPECT_FILE_ERROR(tmpdir, "not a regular file");
}

Test(onnx_bad_input, empty_file_is_rejected) {
  char *path = tmp_path("empty.onnx");
  write_file(path, "", 0);
  EXPECT_FILE_ERROR(path, "file is empty");
}

/* xorshift64: the same "random" bytes on every run. */
static void fill_random(unsigned char *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    p[i] = (unsigned char)seed;
  }
}

Test(onnx_bad_input, random_bytes_are_not_a_model) {
  unsigned char buf[4096];
  fill_random(buf, sizeof buf, 0x9e3779b97f4a7c15ull);
  char *path = tmp_path("random.onnx");
  write_file(path, buf, sizeof buf);
  EXPECT_FILE_ERROR(path, "not an ONNX model");
  /* Many more seeds and lengths from memory: each fails cleanly. */
  for (uint64_t seed = 1; seed <= 200; seed++) {
    size_t len = (size_t)(seed * 37 % 4096) + 1;
    unsigned char *copy = malloc(len); /* exact size, so ASan sees over-reads */
    fill_random(copy, len, seed);
    kiln_diag d = {0};
    kiln_graph *g = kiln_onnx_load_buffer(copy, len, "random", NULL, &d);
    free(copy);
    if (g) kiln_graph_free(g);
    cr_assert_null(g, "seed %llu loaded", (unsigned long long)seed);
    cr_assert(d.failed && d.msg[0], "seed %llu: no message", (unsigned long long)seed);
  }
}

Test(onnx_bad_input, every_prefix_of_a_valid_model_fails_cleanly_or_loads) {
  size_t len;
  const unsigned char *full = pack_model(conv_relu_model(), &len);
  int truncated = 0;
  for (size_t cut = 0; cut < len; cut++) {
    unsigned char *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees over-reads */
    memcpy(copy, full, cut);
    kiln_diag d = {0};
    kiln_graph *g = kiln_onnx_load_buffer(copy, cut, "cut.onnx", NULL, &d);
    free(copy);
    if (g) {
      kiln_graph_free(g);
      continue;
    }
    cr_assert(d.failed && !strncmp(d.msg, "cut.onnx: ", 10), "cut at %zu: bad message '%s'", cut, d.msg);
    truncated += strstr(d.msg, "malformed or truncated") != NULL;
  }
  cr_assert_gt(truncated, (int)len / 2, "only %d of %zu prefixes were reported as truncated", truncated, len);
}

/* Hand-written wire format: messages nested far deeper than any model,
 * which protobuf-c would unpack by unbounded recursion.  Outer to inner:
 * ModelProto.graph, GraphProto.input, ValueInfoProto.type, then
 * TypeProto.sequence_type / TypeProto.Sequence.elem_type pairs. */
Test(onnx_bad_input, deeply_nested_messages_are_rejected_without_recursion) {
  enum { PAIRS = 200000 };
  size_t ntags = 3 + 2 * (size_t)PAIRS;
  unsigned char *tags = P(ntags);
  tags[0] = 0x3a; /* field 7, length-delimited */
  tags[1] = 0x5a; /* field 11 */
  tags[2] = 0x12; /* field 2 */
  for (size_t i = 3; i < ntags; i += 2) {
    tags[i] = 0x22;     /* field 4 */
    tags[i + 1] = 0x0a; /* field 1 */
  }
  size_t *inner = P((ntags + 1) * sizeof *inner); /* inner[i]: bytes inside tag i */
  inner[ntags - 1] = 0;
  for (size_t i = ntags - 1; i > 0; i--) {
    size_t s = inner[i], v = 1;
    while (s >>= 7) v++;
    inner[i - 1] = inner[i] + 1 + v;
  }
  size_t total = 2 + inner[0] + 1 + 8, n = 0;
  unsigned char *buf = P(total);
  buf[n++] = 0x08; /* ir_version = 8 */
  buf[n++] = 0x08;
  for (size_t i = 0; i < ntags; i++) {
    buf[n++] = tags[i];
    for (size_t s = inner[i];; s >>= 7) {
      buf[n++] = (unsigned char)((s & 0x7f) | (s > 0x7f ? 0x80 : 0));
      if (s <= 0x7f) break;
    }
  }
  char *path = tmp_path("deep.onnx");
  write_file(path, buf, n);
  EXPECT_FILE_ERROR(path, "nest");
}

/* ---- model-level checks ---------------------------------------------------- */

Test(onnx_bad_input, model_without_graph_is_rejected) {
  Onnx__ModelProto *m = new_model(8, 13);
  m->graph = NULL;
  EXPECT_LOAD_ERROR(m, "model has no graph");
}

Test(onnx_bad_input, ir_version_below_3_is_rejected) {
  Onnx__ModelProto *m = conv_relu_model();
  m->ir_version = 2;
  EXPECT_LOAD_ERROR(m, "IR version 2 is not supported");
}

Test(onnx_bad_input, opset_older_than_6_is_rejected_with_advice) {
  Onnx__ModelProto *m = conv_relu_model();
  m->opset_import[0]->version = 5;
  EXPECT_LOAD_ERROR(m, "opset 5 is older than 6", "version_converter");
}

/* ---- initializers and tensor data ----------------------------------------- */

Test(onnx_bad_input, initializer_with_negative_dim) {
  Onnx__ModelProto *m = conv_relu_model();
  find_init(m, "W")->dims[1] = -3;
  EXPECT_LOAD_ERROR(m, "tensor 'W' has negative dim -3");
}

Test(onnx_bad_input, initializer_dims_whose_product_overflows) {
  Onnx__ModelProto *m = conv_relu_model();
  add_init(m, new_tensor("huge", T_FLOAT, DIMS(1LL << 31, 1LL << 31, 1LL << 31, 4)));
  EXPECT_LOAD_ERROR(m, "tensor 'huge' is too large (dims overflow)");
}

Test(onnx_bad_input, raw_data_length_inconsistent_with_dims) {
  Onnx__ModelProto *m = conv_relu_model();
  Onnx__TensorProto *w = find_init(m, "W");
  w->n_float_data = 0;
  w->has_raw_data = 1;
  w->raw_data.len = 10;
  w->raw_data.data = P(10);
  EXPECT_LOAD_ERROR(m, "tensor 'W' has 10 bytes of raw_data, its shape needs 432");
}

Test(onnx_bad_input, typed_data_count_inconsistent_with_dims) {
  Onnx__ModelProto *m = conv_relu_model();
  find_init(m, "W")->n_float_data = 5;
  EXPECT_LOAD_ERROR(m, "tensor 'W' has 5 data entries, its shape needs 108");
}

Test(onnx_bad_input, string_graph_input_is_unsupported) {
  Onnx__ModelProto *m = conv_relu_model();
  m->graph->input[0]->type->tensor_type->elem_type = T_STRING;
  EXPECT_LOAD_ERROR(m, "graph input 'x' has unsupported element type STRING");
}

Test(onnx_bad_input, float8_graph_input_is_unsupported) {
  Onnx__ModelProto *m = conv_relu_model();
  m->graph->input[0]->type->tensor_type->elem_type = T_FLOAT8;
  EXPECT_LOAD_ERROR(m, "graph input 'x' has unsupported element type FLOAT8E4M3FN");
}

Test(onnx_bad_input, string_initializer_is_unsupported) {
  Onnx__ModelProto *m = conv_relu_model();
  Onnx__TensorProto *t = add_init(m, new_tensor("labels", T_STRING, DIMS(1)));
  ProtobufCBinaryData s = {3, (uint8_t *)S("cat")};
  PUSH(t->string_data, t->n_string_data, s);
  EXPECT_LOAD_ERROR(m, "tensor 'labels' has unsupported element type STRING");
}

Test(onnx_bad_input, float8_initializer_is_unsupported) {
  Onnx__ModelProto *m = conv_relu_model();
  Onnx__TensorProto *t = add_init(m, new_tensor("w8", T_FLOAT8, DIMS(2)));
  t->has_raw_data = 1;
  t->raw_data.len = 2;
  t->raw_data.data = P(2);
  EXPECT_LOAD_ERROR(m, "tensor 'w8' has unsupported element type FLOAT8E4M3FN");
}

/* ---- external data --------------------------------------------------------- */

Test(onnx_bad_input, external_data_with_absolute_path) {
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "/etc/passwd", NULL, NULL);
  EXPECT_LOAD_ERROR(m, "tensor 'W'", "external data path '/etc/passwd' is absolute");
}

Test(onnx_bad_input, external_data_with_dotdot) {
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "weights/../../secret.bin", NULL, NULL);
  EXPECT_LOAD_ERROR(m, "tensor 'W'", "leaves the model's folder");
}

Test(onnx_bad_input, external_data_through_symlink_escaping_the_folder) {
  char buf[432] = {0};
  write_file(tmp_path("secret.bin"), buf, sizeof buf);
  cr_assert_eq(mkdir(tmp_path("model"), 0700), 0);
  cr_assert_eq(symlink("../secret.bin", tmp_path("model/w.bin")), 0, "symlink: %s", strerror(errno));
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "w.bin", NULL, NULL);
  EXPECT_FILE_ERROR(save_model(m, "model/model.onnx"), "tensor 'W'", "resolves outside the model's folder");
}

Test(onnx_bad_input, external_data_offset_past_end_of_file) {
  char buf[432] = {0};
  write_file(tmp_path("w.bin"), buf, sizeof buf);
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "w.bin", "4096", NULL);
  EXPECT_LOAD_ERROR(m, "tensor 'W'", "is too short", "needs 432 at offset 4096");
}

Test(onnx_bad_input, external_data_length_past_end_of_file) {
  char buf[100] = {0};
  write_file(tmp_path("w.bin"), buf, sizeof buf);
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "w.bin", "0", "432");
  EXPECT_LOAD_ERROR(m, "tensor 'W'", "is too short (100 bytes, needs 432 at offset 0)");
}

Test(onnx_bad_input, external_data_length_disagreeing_with_shape) {
  char buf[432] = {0};
  write_file(tmp_path("w.bin"), buf, sizeof buf);
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "w.bin", "0", "400");
  EXPECT_LOAD_ERROR(m, "tensor 'W'", "external data length 400, but its shape needs 432 bytes");
}

Test(onnx_bad_input, external_data_inside_the_folder_loads_with_the_right_values) {
  /* 100 bytes of padding first, so the mapping starts mid-page. */
  enum { PAD = 100, N = 108 };
  unsigned char buf[PAD + N * sizeof(float)];
  memset(buf, 0xee, PAD);
  for (int i = 0; i < N; i++) {
    float f = pattern(i) * 2.0f;
    memcpy(buf + PAD + i * sizeof f, &f, sizeof f);
  }
  cr_assert_eq(mkdir(tmp_path("data"), 0700), 0);
  write_file(tmp_path("data/w.bin"), buf, sizeof buf);
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "data/w.bin", "100", "432");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  const kiln_value *w = find_value(g, "W");
  cr_assert(w && w->data);
  for (int i = 0; i < N; i++) cr_assert_eq(((const float *)w->data)[i], pattern(i) * 2.0f, "W[%d]", i);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_graph_free(g);
}

Test(onnx_bad_input, external_data_is_refused_when_loading_from_memory) {
  Onnx__ModelProto *m = conv_relu_model();
  set_external(find_init(m, "W"), "w.bin", NULL, NULL);
  size_t len;
  void *buf = pack_model(m, &len);
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load_buffer(buf, len, "mem.onnx", NULL, &d);
  cr_assert_null(g);
  expect_msg(&d, (const char *const[]){"mem.onnx: ", "tensor 'W' uses external data, which is not allowed here", NULL});
}

/* ---- ops and graph structure ------------------------------------------------ */

Test(onnx_bad_input, unsupported_op_names_op_domain_opset_and_node) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("FancyOp", &n);
  EXPECT_LOAD_ERROR(m, "node 'n1' (FancyOp)", "unsupported op 'FancyOp' (domain 'ai.onnx', opset 13)");
}

Test(onnx_bad_input, op_from_another_domain_is_unsupported) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("FusedConv", &n);
  n->domain = S("com.microsoft");
  EXPECT_LOAD_ERROR(m, "node 'n1' (FusedConv)", "unsupported op 'FusedConv' (domain 'com.microsoft')");
}

Test(onnx_bad_input, cycle_between_two_nodes) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  add_node(m, "Add", "a", "x,b_out", "a_out");
  add_node(m, "Relu", "b", "a_out", "b_out");
  add_output(m, "b_out");
  EXPECT_LOAD_ERROR(m, "node 'a' (Add)", "graph has a cycle");
}

Test(onnx_bad_input, dangling_input_name) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  n->input[0] = S("nowhere");
  EXPECT_LOAD_ERROR(m, "node 'n1' (Relu)", "input 'nowhere' is not produced by any node, initializer or graph input");
}

Test(onnx_bad_input, duplicate_output_name) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  add_node(m, "Sigmoid", "n2", "x", "y");
  EXPECT_LOAD_ERROR(m, "node 'n2' (Sigmoid)", "value 'y' is defined more than once");
}

Test(onnx_bad_input, output_shadowing_a_graph_input) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  n->output[0] = S("x");
  EXPECT_LOAD_ERROR(m, "node 'n1' (Relu)", "value 'x' is defined more than once");
}

Test(onnx_bad_input, graph_output_not_produced) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  add_output(m, "ghost");
  EXPECT_LOAD_ERROR(m, "graph output 'ghost' is not produced by any node");
}

Test(onnx_bad_input, graph_without_outputs) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  m->graph->n_output = 0;
  EXPECT_LOAD_ERROR(m, "graph has no outputs");
}

Test(onnx_bad_input, missing_required_attribute) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  add_node(m, "Concat", "cat", "x,x", "y");
  add_output(m, "y");
  EXPECT_LOAD_ERROR(m, "node 'cat' (Concat)", "required attribute 'axis' is missing");
}

Test(onnx_bad_input, attribute_of_the_wrong_type) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  attr_float(add_node(m, "Concat", "cat", "x,x", "y"), "axis", 1.0f);
  add_output(m, "y");
  EXPECT_LOAD_ERROR(m, "node 'cat' (Concat)", "attribute 'axis' must be INT, got FLOAT");
}

Test(onnx_bad_input, unknown_attribute) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  attr_float(n, "alpha", 0.1f);
  EXPECT_LOAD_ERROR(m, "node 'n1' (Relu)", "unknown attribute 'alpha' for Relu (opset 13)");
}

Test(onnx_bad_input, attribute_given_twice) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  Onnx__NodeProto *n = add_node(m, "Concat", "cat", "x,x", "y");
  attr_int(n, "axis", 0);
  attr_int(n, "axis", 1);
  add_output(m, "y");
  EXPECT_LOAD_ERROR(m, "node 'cat' (Concat)", "attribute 'axis' is given twice");
}

Test(onnx_bad_input, too_many_inputs) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  set_names(&n->input, &n->n_input, "x,x");
  EXPECT_LOAD_ERROR(m, "node 'n1' (Relu)", "has 2 inputs, Relu takes 1");
}

Test(onnx_bad_input, too_few_inputs) {
  Onnx__ModelProto *m = conv_relu_model();
  set_names(&m->graph->node[0]->input, &m->graph->node[0]->n_input, "x");
  EXPECT_LOAD_ERROR(m, "node 'conv1' (Conv)", "has 1 inputs, Conv takes 2 to 3");
}

Test(onnx_bad_input, required_input_left_empty) {
  Onnx__ModelProto *m = conv_relu_model();
  set_names(&m->graph->node[0]->input, &m->graph->node[0]->n_input, "x,,B");
  EXPECT_LOAD_ERROR(m, "node 'conv1' (Conv)", "required input 'W' is missing");
}

Test(onnx_bad_input, node_without_op_type) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  n->op_type = NULL;
  EXPECT_LOAD_ERROR(m, "node 'n1'", "node has no op_type");
}

/* Constant nodes in their list forms, including the empty list (whose
 * repeated field protobuf-c leaves NULL). */
Test(onnx_bad_input, constant_value_ints_and_empty_value_floats_load) {
  Onnx__ModelProto *m = new_model(8, 13);
  Onnx__AttributeProto *a = add_attr(add_node(m, "Constant", "k1", "", "ints"), "value_ints",
                                     ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  for (int64_t i = 0; i < 3; i++) PUSH(a->ints, a->n_ints, i + 7);
  add_attr(add_node(m, "Constant", "k2", "", "floats"), "value_floats", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
  add_output(m, "ints");
  add_output(m, "floats");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  const kiln_value *ints = find_value(g, "ints"), *floats = find_value(g, "floats");
  cr_assert(ints && ints->rank == 1 && ints->dims[0] == 3 && ints->dtype == KILN_DT_I64);
  for (int i = 0; i < 3; i++) cr_assert_eq(((const int64_t *)ints->data)[i], i + 7);
  cr_assert(floats && floats->rank == 1 && floats->dims[0] == 0 && floats->data);
  kiln_graph_free(g);
}

/* ---- shape inference -------------------------------------------------------- */

Test(onnx_bad_input, conv_channel_mismatch) {
  Onnx__ModelProto *m = conv_relu_model();
  m->graph->input[0]->type->tensor_type->shape->dim[1]->dim_value = 4;
  EXPECT_SHAPE_ERROR(m, "node 'conv1' (Conv)", "expects 3 input channels", "got 4");
}

Test(onnx_bad_input, matmul_inner_dim_mismatch) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "a", T_FLOAT, DIMS(2, 3));
  init_floats(m, "b", DIMS(4, 5));
  add_node(m, "MatMul", "mm", "a,b", "y");
  add_output(m, "y");
  EXPECT_SHAPE_ERROR(m, "node 'mm' (MatMul)", "inner dims differ: A [2,3], B [4,5]");
}

Test(onnx_bad_input, reshape_to_incompatible_element_count) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  init_ints(m, "shape", DIMS(4, 2));
  add_node(m, "Reshape", "rs", "x,shape", "y");
  add_output(m, "y");
  EXPECT_SHAPE_ERROR(m, "node 'rs' (Reshape)", "cannot reshape [2,3] (6 elements) into 8 elements");
}

Test(onnx_bad_input, reshape_with_non_constant_shape) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  add_input(m, "s", T_INT64, DIMS(2));
  add_node(m, "Reshape", "rs", "x,s", "y");
  add_output(m, "y");
  EXPECT_SHAPE_ERROR(m, "node 'rs' (Reshape)", "input 'shape' ('s') must be a constant");
}

/* ---- regressions: bugs tests/fuzz found, and their relatives ---------------- */

/* A STRING attribute with its s field absent (protobuf-c: s.data NULL). */
Test(onnx_bad_input, string_attribute_without_a_value_is_the_empty_string) {
  Onnx__ModelProto *m = conv_relu_model();
  add_attr(m->graph->node[0], "auto_pad", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  kiln_graph_free(g);
}

/* Opset-9 Slice with empty starts/ends lists: the upgrade turns them into
 * empty constant inputs (from NULL arrays), which shape inference rejects. */
Test(onnx_bad_input, empty_list_attribute_upgraded_to_an_input) {
  Onnx__ModelProto *m = new_model(8, 9);
  add_input(m, "x", T_FLOAT, DIMS(2, 3));
  Onnx__NodeProto *n = add_node(m, "Slice", "sl", "x", "y");
  add_attr(n, "starts", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  add_attr(n, "ends", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  add_output(m, "y");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  if (kiln_pass_infer_shapes(g, &d)) expect_msg(&d, (const char *const[]){"node 'sl' (Slice)", NULL});
  kiln_graph_free(g);
}

/* Folding int64 shape arithmetic wraps around like run time would, instead
 * of overflowing (undefined behaviour in C). */
Test(onnx_bad_input, constant_folding_wraps_int64_overflow) {
  Onnx__ModelProto *m = new_model(8, 13);
  init_ints(m, "big", DIMS(INT64_MAX, INT64_MIN));
  init_ints(m, "two", DIMS(2, -1));
  add_node(m, "Add", "add", "big,two", "sum");
  add_node(m, "Mul", "mul", "big,two", "prod");
  add_node(m, "Div", "div", "big,two", "quot");
  add_node(m, "Neg", "neg", "big", "negated");
  add_output(m, "sum");
  add_output(m, "prod");
  add_output(m, "quot");
  add_output(m, "negated");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  const int64_t *sum = g->outputs[0]->data, *prod = g->outputs[1]->data, *quot = g->outputs[2]->data,
                *neg = g->outputs[3]->data;
  cr_assert(sum && prod && quot && neg, "not folded");
  cr_assert(sum[0] == INT64_MIN + 1 && sum[1] == INT64_MAX);
  cr_assert(prod[0] == -2 && prod[1] == INT64_MIN);
  cr_assert(quot[0] == INT64_MAX / 2 && quot[1] == INT64_MIN);
  cr_assert(neg[0] == INT64_MIN + 1 && neg[1] == INT64_MIN);
  kiln_graph_free(g);
}

/* Exp, Log, Sigmoid... of an integer constant (a fuzzed model: Exp of an
 * int64 Abs) is refused by shape inference with the node named, before
 * constant folding runs the float arithmetic of the lowering on it. */
Test(onnx_bad_input, float_only_op_of_an_integer_constant) {
  static const char *const ops[] = {"Exp", "Log", "Sigmoid", "Tanh", "Sqrt", "Erf", "Reciprocal", "Floor"};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    Onnx__ModelProto *m = new_model(8, 13);
    init_ints(m, "k", DIMS(3, -2));
    add_node(m, ops[i], "f", "k", "y");
    add_output(m, "y");
    char *path = save_model(m, "model.onnx");
    kiln_diag d = {0};
    kiln_graph *g = kiln_onnx_load(path, &d);
    cr_assert_not_null(g, "load failed: %s", d.msg);
    cr_assert_neq(kiln_pass_infer_shapes(g, &d), 0, "%s of an int64 constant was accepted", ops[i]);
    char want[64];
    snprintf(want, sizeof want, "node 'f' (%s)", ops[i]);
    expect_msg(&d, (const char *const[]){want, "needs a floating-point input, got i64", NULL});
    kiln_graph_free(g);
  }
}

Test(onnx_bad_input, required_output_left_empty) {
  Onnx__NodeProto *n;
  Onnx__ModelProto *m = unary_model("Relu", &n);
  n->output[0] = S("");
  add_node(m, "Sigmoid", "n2", "x", "y2");
  m->graph->output[0]->name = S("y2");
  EXPECT_LOAD_ERROR(m, "node 'n1' (Relu)", "required output 'Y' is missing");
}

Test(onnx_bad_input, graph_input_dims_whose_product_overflows) {
  Onnx__ModelProto *m = conv_relu_model();
  add_input(m, "big", T_FLOAT, DIMS(1LL << 30, 1LL << 30, 0));
  add_input(m, "huge", T_FLOAT, DIMS(1LL << 40, 1LL << 40, 1LL << 40));
  EXPECT_LOAD_ERROR(m, "graph input 'huge' is too large (dims overflow)");
}

/* Each input is within bounds; the product of their shapes is not. */
Test(onnx_bad_input, matmul_result_too_large) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "a", T_FLOAT, DIMS(1LL << 39, 2));
  add_input(m, "b", T_FLOAT, DIMS(2, 1LL << 39));
  add_node(m, "MatMul", "mm", "a,b", "y");
  add_output(m, "y");
  EXPECT_SHAPE_ERROR(m, "node 'mm' (MatMul)", "output 'y' f32[549755813888,549755813888] is too large");
}

/* Empty results of Concat and Gather whose other dims are huge: folded
 * without looping over (or multiplying) those dims. */
Test(onnx_bad_input, folding_empty_results_with_huge_dims) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(1LL << 40, 1LL << 40, 0));
  add_node(m, "Shape", "shape", "x", "s");
  add_node(m, "ConstantOfShape", "zeros", "s", "z");
  add_node(m, "Concat", "cat", "z,z", "c");
  attr_int(m->graph->node[2], "axis", 2);
  init_ints(m, "i", DIMS(0, -1));
  add_node(m, "Gather", "gather", "c,i", "g");
  attr_int(m->graph->node[3], "axis", 1);
  add_output(m, "g");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  const kiln_value *out = g->outputs[0];
  cr_assert(out->data && out->rank == 3 && out->dims[0] == 1LL << 40 && out->dims[1] == 2 && out->dims[2] == 0);
  kiln_graph_free(g);
}

/* One-node model x -> OP 'n1' (extra constant inputs) -> y, for shape checks. */
static Onnx__ModelProto *shape_model(const char *op, int64_t opset, int rank, const int64_t *dims, const char *ins) {
  Onnx__ModelProto *m = new_model(8, opset);
  add_input(m, "x", T_FLOAT, rank, dims);
  add_node(m, op, "n1", ins, "y");
  add_output(m, "y");
  return m;
}

Test(onnx_bad_input, pad_with_huge_negative_pads) {
  Onnx__ModelProto *m = shape_model("Pad", 13, DIMS(2, 3), "x,pads");
  init_ints(m, "pads", DIMS(0, INT64_MIN / 2, 0, INT64_MIN / 2));
  EXPECT_SHAPE_ERROR(m, "node 'n1' (Pad)", "pads are too large");
}

Test(onnx_bad_input, split_entries_beyond_the_axis) {
  Onnx__ModelProto *m = shape_model("Split", 13, DIMS(4, 3), "x,split");
  set_names(&m->graph->node[0]->output, &m->graph->node[0]->n_output, "y,y1");
  add_output(m, "y1");
  init_ints(m, "split", DIMS(INT64_MAX, INT64_MAX));
  EXPECT_SHAPE_ERROR(m, "node 'n1' (Split)", "split[0] = 9223372036854775807 exceeds axis 0 of size 4");
}

Test(onnx_bad_input, resize_roi_giving_an_invalid_size) {
  Onnx__ModelProto *m = shape_model("Resize", 13, DIMS(1, 1, 4, 4), "x,roi,scales");
  Onnx__TensorProto *roi = add_init(m, new_tensor("roi", T_FLOAT, DIMS(8)));
  float r[8] = {0, 0, 0, 0, 1, 1, 1, 3e38f};
  for (int i = 0; i < 8; i++) PUSH(roi->float_data, roi->n_float_data, r[i]);
  Onnx__TensorProto *sc = add_init(m, new_tensor("scales", T_FLOAT, DIMS(4)));
  for (int i = 0; i < 4; i++) PUSH(sc->float_data, sc->n_float_data, 1e6f);
  Onnx__AttributeProto *a = add_attr(m->graph->node[0], "coordinate_transformation_mode",
                                     ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  a->has_s = 1;
  a->s.data = (uint8_t *)S("tf_crop_and_resize");
  a->s.len = strlen("tf_crop_and_resize");
  EXPECT_SHAPE_ERROR(m, "node 'n1' (Resize)", "gives an invalid size");
}

/* Steps of +-2^63 select one element; computing that must not overflow. */
Test(onnx_bad_input, slice_with_extreme_steps) {
  Onnx__ModelProto *m = new_model(8, 13);
  add_input(m, "x", T_FLOAT, DIMS(10, 10));
  init_ints(m, "starts", DIMS(2, 9));
  init_ints(m, "ends", DIMS(10, -100));
  init_ints(m, "steps", DIMS(INT64_MAX, INT64_MIN));
  init_ints(m, "axes", DIMS(0, 1));
  add_node(m, "Slice", "sl", "x,starts,ends,axes,steps", "y");
  add_output(m, "y");
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  const kiln_value *y = g->outputs[0];
  cr_assert(y->rank == 2 && y->dims[0] == 1 && y->dims[1] == 1, "y is [%lld,%lld]", (long long)y->dims[0],
            (long long)y->dims[1]);
  kiln_graph_free(g);
}

/* An empty tensor reshaped (allowzero) into huge dims around a zero. */
Test(onnx_bad_input, reshape_of_an_empty_tensor_into_huge_dims) {
  Onnx__ModelProto *m = shape_model("Reshape", 14, DIMS(0), "x,shape");
  init_ints(m, "shape", DIMS(1LL << 40, 1LL << 40, 0));
  attr_int(m->graph->node[0], "allowzero", 1);
  char *path = save_model(m, "model.onnx");
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(path, &d);
  cr_assert_not_null(g, "load failed: %s", d.msg);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  const kiln_value *y = g->outputs[0];
  cr_assert(y->rank == 3 && y->dims[0] == 1LL << 40 && y->dims[2] == 0);
  kiln_graph_free(g);
}
