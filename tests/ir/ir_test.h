/* Helpers shared by the tests/ir/ unit tests: build graphs through the IR
 * API, run shape inference, and compare shapes and messages.  Each test
 * states its expected shapes itself (worked out from the ONNX operator
 * spec in a comment); nothing here computes an expectation. */
#ifndef KILN_TESTS_IR_TEST_H
#define KILN_TESTS_IR_TEST_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "ir/graph.h"
#include "ir/loop.h"
#include "passes/passes.h"

/* A brace list of int64s as an array, and its length: DIMS(2, 3) */
#define I64S(...) ((const int64_t[]){__VA_ARGS__})
#define NI64(...) ((int)(sizeof(I64S(__VA_ARGS__)) / sizeof(int64_t)))
#define DIMS(...) NI64(__VA_ARGS__), I64S(__VA_ARGS__)

static kiln_graph *g; /* the graph under test; made and freed per test */

static inline void graph_setup(void) { g = kiln_graph_new(); }
static inline void graph_teardown(void) {
  kiln_graph_free(g);
  g = NULL;
}

/* Loop IR built by hand: an empty program over g (after graph_setup), a
 * rank-1 f32 buffer of n elements (data: a weight's contents, else NULL),
 * and a node located in "m.onnx" for a kernel to name in errors. */
static inline kiln_program *t_program(void) {
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  return p;
}
static inline kiln_buf *t_buf(kiln_program *p, const char *name, int64_t n, kiln_buf_kind kind, const void *data) {
  kiln_value v = {.name = name, .dtype = KILN_DT_F32, .rank = 1, .dims = {n}, .id = -1, .data = data};
  return kiln_program_add_buf(p, &v, kind);
}
static inline kiln_node *t_node(kiln_op op, const char *name, const char *op_type) {
  kiln_node *n = kiln_node_new(g, op, name, 1, 1);
  n->loc.file = "m.onnx";
  n->loc.node_name = name;
  n->loc.op_type = op_type;
  return n;
}

/* A run-time graph input of the given type. */
static inline kiln_value *t_input(const char *name, kiln_dtype t, int rank, const int64_t *dims) {
  return kiln_graph_new_input(g, name, t, rank, dims);
}

/* A constant whose data is copied into the graph's arena. */
static inline kiln_value *t_const(const char *name, kiln_dtype t, int rank, const int64_t *dims, const void *data) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  size_t bytes = (size_t)n * kiln_dtype_size(t);
  void *p = kiln_arena_alloc(&g->arena, bytes ? bytes : 1); /* non-NULL even when empty */
  if (bytes && data) memcpy(p, data, bytes);
  return kiln_value_const(g, name, t, rank, dims, p);
}

/* A 1-D int64 constant: CONST_INTS("axes", 0, -1) */
static inline kiln_value *t_ints_value(const char *name, int n, const int64_t *v) {
  int64_t dims[1] = {n};
  return t_const(name, KILN_DT_I64, 1, dims, v);
}
#define CONST_INTS(name, ...) t_ints_value(name, NI64(__VA_ARGS__), I64S(__VA_ARGS__))

/* A 1-D float constant. */
static inline kiln_value *t_floats_value(const char *name, int n, const float *v) {
  int64_t dims[1] = {n};
  return t_const(name, KILN_DT_F32, 1, dims, v);
}
#define CONST_FLOATS(name, ...) \
  t_floats_value(name, (int)(sizeof((const float[]){__VA_ARGS__}) / sizeof(float)), (const float[]){__VA_ARGS__})

/* An empty 1-D int64 tensor (exporters pass these for "absent"). */
static inline kiln_value *t_empty_ints(const char *name) {
  int64_t dims[1] = {0};
  return t_const(name, KILN_DT_I64, 1, dims, NULL);
}

/* An INTS attribute value living in the graph's arena: INTS(2, 2) */
static inline kiln_ints t_ints_attr(int n, const int64_t *v) {
  return (kiln_ints){n, kiln_arena_memdup(&g->arena, v, (size_t)n * sizeof *v)};
}
#define INTS(...) t_ints_attr(NI64(__VA_ARGS__), I64S(__VA_ARGS__))

/* A node reading ins[0..nin) (NULL entries: absent optional inputs) with
 * nout fresh outputs named NAME:0, NAME:1, ...  All outputs are graph
 * outputs so pruning keeps the node for the test to inspect. */
static inline kiln_node *t_node_n(kiln_op op, const char *name, int nin, kiln_value *const *ins, int nout) {
  kiln_node *n = kiln_node_new(g, op, name, nin, nout);
  for (int k = 0; k < nin; k++) kiln_node_set_input(n, k, ins[k]);
  for (int k = 0; k < nout; k++) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s:%d", name, k);
    kiln_value *v = kiln_value_new(g, nm, KILN_VALUE_ACTIVATION);
    kiln_node_set_output(n, k, v);
    kiln_graph_add_output(g, v);
  }
  return n;
}
#define NODE(op, name, ...)                                                                         \
  t_node_n(op, name, (int)(sizeof((kiln_value *const[]){__VA_ARGS__}) / sizeof(kiln_value *)), \
           (kiln_value *const[]){__VA_ARGS__}, 1)
#define NODE_OUTS(op, name, nout, ...)                                                              \
  t_node_n(op, name, (int)(sizeof((kiln_value *const[]){__VA_ARGS__}) / sizeof(kiln_value *)), \
           (kiln_value *const[]){__VA_ARGS__}, nout)

/* Runs shape inference and requires success. */
static inline void infer_ok(void) {
  kiln_diag d = {0};
  int rc = kiln_pass_infer_shapes(g, &d);
  cr_assert_eq(rc, 0, "infer_shapes failed: %s", d.msg);
  cr_assert_eq(d.failed, 0);
}

/* Runs shape inference, requires failure, and checks the message names
 * the node (its located prefix) and contains `what`. */
static inline void infer_fails(const char *node_prefix, const char *what) {
  kiln_diag d = {0};
  int rc = kiln_pass_infer_shapes(g, &d);
  cr_assert_neq(rc, 0, "infer_shapes should have failed (expected: %s)", what);
  cr_assert(d.failed);
  if (node_prefix) cr_assert(strstr(d.msg, node_prefix), "message does not name the node (%s): %s", node_prefix, d.msg);
  if (what) cr_assert(strstr(d.msg, what), "message lacks '%s': %s", what, d.msg);
}

static inline void expect_shape(const kiln_value *v, kiln_dtype t, int rank, const int64_t *dims) {
  char got[256];
  kiln_value_type_str(g, v, got, sizeof got);
  cr_assert_eq(v->dtype, t, "'%s' is %s, expected dtype %s", v->name, got, kiln_dtype_name(t));
  cr_assert_eq(v->rank, rank, "'%s' is %s, expected rank %d", v->name, got, rank);
  for (int i = 0; i < rank; i++)
    cr_assert_eq(v->dims[i], dims[i], "'%s' is %s: dim %d should be %lld", v->name, got, i, (long long)dims[i]);
}
#define EXPECT_SHAPE(v, t, ...) expect_shape(v, t, DIMS(__VA_ARGS__))
#define EXPECT_SCALAR(v, t) expect_shape(v, t, 0, NULL)

static inline void expect_ints(const char *what, kiln_ints got, int n, const int64_t *want) {
  cr_assert_eq(got.n, n, "%s has %d entries, expected %d", what, got.n, n);
  for (int i = 0; i < n; i++)
    cr_assert_eq(got.v[i], want[i], "%s[%d] = %lld, expected %lld", what, i, (long long)got.v[i], (long long)want[i]);
}
#define EXPECT_INTS(what, got, ...) expect_ints(what, got, DIMS(__VA_ARGS__))

/* Constant contents, element by element, as int64 / double. */
static inline void expect_data_i(const kiln_value *v, int n, const int64_t *want) {
  cr_assert(v->data, "'%s' was not folded to a constant", v->name);
  cr_assert_eq(kiln_value_numel(v, 1), n, "'%s' has %lld elements, expected %d", v->name,
               (long long)kiln_value_numel(v, 1), n);
  for (int i = 0; i < n; i++) {
    long long x = kiln_dtype_load_i(v->dtype, v->data, (size_t)i);
    cr_assert_eq(x, want[i], "'%s'[%d] = %lld, expected %lld", v->name, i, x, (long long)want[i]);
  }
}
#define EXPECT_DATA_I(v, ...) expect_data_i(v, DIMS(__VA_ARGS__))

static inline void expect_data_f(const kiln_value *v, int n, const double *want) {
  cr_assert(v->data, "'%s' was not folded to a constant", v->name);
  cr_assert_eq(kiln_value_numel(v, 1), n, "'%s' has %lld elements, expected %d", v->name,
               (long long)kiln_value_numel(v, 1), n);
  for (int i = 0; i < n; i++) {
    double x = kiln_dtype_load_f(v->dtype, v->data, (size_t)i);
    cr_assert_eq(x, want[i], "'%s'[%d] = %g, expected %g", v->name, i, x, want[i]);
  }
}
#define EXPECT_DATA_F(v, ...) \
  expect_data_f(v, (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double)), (const double[]){__VA_ARGS__})

#endif
