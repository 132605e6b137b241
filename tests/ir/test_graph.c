/* ir/graph.c, ir/verify.c, ir/print.c, ir/strmap.c, ir/dtype.c: graph
 * ordering and pruning, the IR verifier, the textual printer, the string
 * map and element-type conversions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ir/strmap.h"
#include "ir_test.h"

TestSuite(toposort, .init = graph_setup, .fini = graph_teardown);
TestSuite(prune, .init = graph_setup, .fini = graph_teardown);
TestSuite(verify, .init = graph_setup, .fini = graph_teardown);
TestSuite(print, .init = graph_setup, .fini = graph_teardown);
TestSuite(strmap, .init = graph_setup, .fini = graph_teardown);
TestSuite(dtype);

static kiln_value *act(const char *name) { return kiln_value_new(g, name, KILN_VALUE_ACTIVATION); }

static kiln_node *node1(kiln_op op, const char *name, int nin, kiln_value *const *ins, kiln_value *out) {
  kiln_node *n = kiln_node_new(g, op, name, nin, 1);
  for (int k = 0; k < nin; k++) kiln_node_set_input(n, k, ins[k]);
  kiln_node_set_output(n, 0, out);
  return n;
}
#define N1(op, name, out, ...) \
  node1(op, name, (int)(sizeof((kiln_value *const[]){__VA_ARGS__}) / sizeof(kiln_value *)), \
        (kiln_value *const[]){__VA_ARGS__}, out)

/* Every node's inputs come from graph inputs, constants or earlier nodes. */
static void expect_topological(void) {
  for (int i = 0; i < g->nnodes; i++) {
    cr_assert_eq(g->nodes[i]->id, i, "node ids are renumbered in order");
    for (int k = 0; k < g->nodes[i]->nin; k++) {
      kiln_value *v = g->nodes[i]->in[k];
      if (v && v->producer) cr_assert_lt(v->producer->id, i, "'%s' is read before it is produced", v->name);
    }
  }
}

/* ---- toposort ---- */

Test(toposort, keeps_the_order_of_a_sorted_graph) {
  /* a diamond plus an independent node, already in order:
   *   a = Relu(x); b = Relu(a); c = Neg(a); z = Abs(y); d = Add(b, c) */
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4)), *y = t_input("y", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *b = act("b"), *c = act("c"), *d = act("d"), *z = act("z");
  kiln_node *n[5];
  n[0] = N1(KILN_OP_RELU, "n0", a, x);
  n[1] = N1(KILN_OP_RELU, "n1", b, a);
  n[2] = N1(KILN_OP_NEG, "n2", c, a);
  n[3] = N1(KILN_OP_ABS, "n3", z, y);
  n[4] = N1(KILN_OP_ADD, "n4", d, b, c);
  kiln_diag dg = {0};
  cr_assert_eq(kiln_graph_toposort(g, &dg), 0, "%s", dg.msg);
  cr_assert_eq(g->nnodes, 5);
  /* n3 could run first, but a stable sort leaves source order alone */
  for (int i = 0; i < 5; i++) cr_assert_eq(g->nodes[i], n[i], "position %d holds '%s'", i, g->nodes[i]->name);
  expect_topological();
}

Test(toposort, sorts_a_shuffled_graph_stably) {
  /* the same diamond created consumers-first:
   *   [0] d = Add(b, c)  [1] c = Neg(a)  [2] b = Relu(a)  [3] a = Relu(x)
   * Kahn's algorithm taking the lowest ready index first:
   *   ready {3} -> 3; ready {1, 2} -> 1, 2; ready {0} -> 0 */
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *b = act("b"), *c = act("c"), *d = act("d");
  kiln_node *add = N1(KILN_OP_ADD, "add", d, b, c);
  kiln_node *neg = N1(KILN_OP_NEG, "neg", c, a);
  kiln_node *relu_b = N1(KILN_OP_RELU, "relu_b", b, a);
  kiln_node *relu_a = N1(KILN_OP_RELU, "relu_a", a, x);
  kiln_diag dg = {0};
  cr_assert_eq(kiln_graph_toposort(g, &dg), 0, "%s", dg.msg);
  cr_assert_eq(g->nodes[0], relu_a);
  cr_assert_eq(g->nodes[1], neg);
  cr_assert_eq(g->nodes[2], relu_b);
  cr_assert_eq(g->nodes[3], add);
  expect_topological();
}

Test(toposort, node_reading_one_value_twice_is_ordered_once) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *sq = act("sq");
  kiln_node *mul = N1(KILN_OP_MUL, "square", sq, a, a);
  kiln_node *relu = N1(KILN_OP_RELU, "relu", a, x);
  kiln_diag dg = {0};
  cr_assert_eq(kiln_graph_toposort(g, &dg), 0, "%s", dg.msg);
  cr_assert_eq(g->nodes[0], relu);
  cr_assert_eq(g->nodes[1], mul);
}

Test(toposort, reports_a_cycle_naming_a_node_on_it) {
  /* loop_a reads b, loop_b reads a; free stands apart */
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *b = act("b"), *f = act("f");
  kiln_node *la = N1(KILN_OP_RELU, "loop_a", a, b);
  kiln_node *lb = N1(KILN_OP_RELU, "loop_b", b, a);
  kiln_node *fr = N1(KILN_OP_RELU, "free", f, x);
  kiln_diag dg = {0};
  cr_assert_neq(kiln_graph_toposort(g, &dg), 0);
  cr_assert(dg.failed);
  cr_assert(strstr(dg.msg, "cycle"), "%s", dg.msg);
  cr_assert(strstr(dg.msg, "node 'loop_a' (Relu)") || strstr(dg.msg, "node 'loop_b' (Relu)"),
            "the message should name a node on the cycle: %s", dg.msg);
  cr_assert_null(strstr(dg.msg, "'free'"));
  /* a failed sort leaves the node list as it was */
  cr_assert_eq(g->nodes[0], la);
  cr_assert_eq(g->nodes[1], lb);
  cr_assert_eq(g->nodes[2], fr);
}

/* ---- prune ---- */

Test(prune, drops_nodes_whose_results_nobody_reads) {
  /* kept:   a = Relu(x); out = Neg(a)          (out is a graph output)
   * pruned: c = Abs(x); e = Sigmoid(a); f = Exp(e)  (a chain: f unread) */
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *out = act("out"), *c = act("c"), *e = act("e"), *f = act("f");
  kiln_node *relu = N1(KILN_OP_RELU, "relu", a, x);
  N1(KILN_OP_ABS, "abs", c, x);
  kiln_node *neg = N1(KILN_OP_NEG, "neg", out, a);
  N1(KILN_OP_SIGMOID, "sigmoid", e, a);
  N1(KILN_OP_EXP, "exp", f, e);
  kiln_graph_add_output(g, out);
  cr_assert_eq(a->uses, 2);
  cr_assert_eq(x->uses, 2);
  kiln_graph_prune(g);
  cr_assert_eq(g->nnodes, 2);
  cr_assert_eq(g->nodes[0], relu);
  cr_assert_eq(g->nodes[1], neg);
  cr_assert_eq(g->nodes[1]->id, 1);
  /* pruned readers no longer count as uses */
  cr_assert_eq(a->uses, 1);
  cr_assert_eq(x->uses, 1);
  cr_assert_eq(e->uses, 0);
}

Test(prune, drops_dead_nodes_even_if_read) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("a"), *out = act("out");
  kiln_node *relu = N1(KILN_OP_RELU, "relu", a, x);
  kiln_node *neg = N1(KILN_OP_NEG, "neg", out, a);
  kiln_graph_add_output(g, out);
  relu->dead = 1; /* e.g. folded */
  kiln_graph_prune(g);
  cr_assert_eq(g->nnodes, 1);
  cr_assert_eq(g->nodes[0], neg);
  cr_assert_eq(x->uses, 0);
}

/* ---- verify ---- */

Test(verify, accepts_a_well_formed_graph) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(1, 3, 8, 8));
  static const float w[3 * 3 * 9] = {0};
  kiln_value *wv = t_const("w", KILN_DT_F32, DIMS(3, 3, 3, 3), w);
  kiln_value *y = act("y"), *z = act("z");
  N1(KILN_OP_CONV, "conv", y, x, wv, NULL); /* optional bias absent */
  N1(KILN_OP_RELU, "relu", z, y);
  kiln_graph_add_output(g, z);
  kiln_diag d = {0};
  cr_assert_eq(kiln_graph_verify(g, &d), 0, "%s", d.msg);
  infer_ok();
  cr_assert_eq(kiln_graph_verify(g, &d), 0, "%s", d.msg);
}

Test(verify, rejects_a_value_used_before_its_definition) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *a = act("early"), *b = act("b");
  N1(KILN_OP_RELU, "reader", b, a); /* reads `early` ... */
  N1(KILN_OP_RELU, "writer", a, x); /* ... which is produced afterwards */
  kiln_graph_add_output(g, b);
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "node 'reader' (Relu)"), "%s", d.msg);
  cr_assert(strstr(d.msg, "'early' is used before it is defined"), "%s", d.msg);
}

Test(verify, rejects_a_value_nobody_defines) {
  kiln_value *ghost = act("ghost"), *b = act("b");
  N1(KILN_OP_RELU, "reader", b, ghost);
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "'ghost' is used before it is defined"), "%s", d.msg);
}

Test(verify, rejects_a_value_defined_twice) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *v = act("twice");
  N1(KILN_OP_RELU, "first", v, x);
  N1(KILN_OP_NEG, "second", v, x);
  kiln_graph_add_output(g, v);
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "'twice' is defined twice"), "%s", d.msg);
}

Test(verify, rejects_a_missing_required_input) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *y = act("y");
  N1(KILN_OP_ADD, "half_add", y, x, NULL); /* B is required */
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "node 'half_add' (Add)"), "%s", d.msg);
  cr_assert(strstr(d.msg, "required input 1 is missing"), "%s", d.msg);
}

Test(verify, rejects_a_wrong_number_of_inputs) {
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(4));
  kiln_value *y = act("y");
  N1(KILN_OP_ADD, "add3", y, x, x, x);
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "3 inputs, op takes 2..2"), "%s", d.msg);
}

Test(verify, rejects_an_undefined_graph_output) {
  kiln_value *nowhere = act("nowhere");
  kiln_graph_add_output(g, nowhere);
  kiln_diag d = {0};
  cr_assert_neq(kiln_graph_verify(g, &d), 0);
  cr_assert(strstr(d.msg, "graph output 'nowhere' is never defined"), "%s", d.msg);
}

/* ---- print ---- */

static char *print_graph(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert(f);
  kiln_graph_print(g, f);
  fclose(f);
  return buf;
}

/* The line of `text` containing `needle` (a copy). */
static char *line_with(const char *text, const char *needle) {
  const char *p = strstr(text, needle);
  cr_assert(p, "no line contains '%s' in:\n%s", needle, text);
  const char *s = p, *e = p;
  while (s > text && s[-1] != '\n') s--;
  while (*e && *e != '\n') e++;
  return strndup(s, (size_t)(e - s));
}

static void build_small_net(void) {
  static const float w[8 * 3 * 9] = {0.5f, -1};
  g->name = "net";
  g->opset = 17;
  g->ir_version = 8;
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(1, 3, 8, 8));
  kiln_value *wv = t_const("w", KILN_DT_F32, DIMS(8, 3, 3, 3), w);
  wv->kind = KILN_VALUE_PARAM;
  kiln_value *y = act("y"), *z = act("z"), *p = act("p"), *q = act("q");
  kiln_node *conv = N1(KILN_OP_CONV, "conv1", y, x, wv);
  kiln_attrs_conv *ca = conv->attrs;
  ca->group = 1;            /* the default: not shown */
  ca->strides = INTS(2, 2); /* not the default: shown */
  N1(KILN_OP_LEAKY_RELU, "act_default", z, y);
  kiln_node *lr = N1(KILN_OP_LEAKY_RELU, "act_custom", p, z);
  ((kiln_attrs_leaky_relu *)lr->attrs)->alpha = 0.5f;
  kiln_node *fl = N1(KILN_OP_FLATTEN, "", q, p);
  (void)fl;
  kiln_graph_add_output(g, q);
}

Test(print, same_graph_prints_identically_twice) {
  build_small_net();
  char *a = print_graph(), *b = print_graph();
  cr_assert_str_eq(a, b);
  cr_assert_gt(strlen(a), 0);
  free(a);
  free(b);
}

Test(print, shows_header_inputs_params_and_outputs) {
  build_small_net();
  infer_ok();
  char *t = print_graph();
  const char *header = "graph \"net\" ir_version 8 opset 17\n";
  cr_assert(!strncmp(t, header, strlen(header)), "header:\n%s", t);
  char *in = line_with(t, "input %x");
  cr_assert_str_eq(in, "  input %x : f32[1,3,8,8]");
  char *pw = line_with(t, "param %w");
  /* 216 elements; the first four shown */
  cr_assert_str_eq(pw, "  param %w : f32[8,3,3,3] = const(216 elem: 0.5 -1 0 0 ...)");
  char *out = line_with(t, "output %q");
  /* (8 - 3) / 2 + 1 = 3; flatten [1, 8*3*3] */
  cr_assert_str_eq(out, "  output %q : f32[1,72]");
  free(in);
  free(pw);
  free(out);
  free(t);
}

Test(print, shows_only_non_default_attributes) {
  build_small_net();
  char *t = print_graph();
  char *conv = line_with(t, "= Conv(");
  /* not inferred yet: the type is unknown; group=1 is the default */
  cr_assert_str_eq(conv, "  %y : ?[?] = Conv(%x, %w) {strides=[2,2]}  # conv1");
  char *def = line_with(t, "# act_default");
  cr_assert_null(strchr(def, '{'), "default alpha should not print: %s", def);
  char *cus = line_with(t, "# act_custom");
  cr_assert(strstr(cus, "{alpha=0.5}"), "%s", cus);
  /* an unnamed node prints no comment */
  char *fl = line_with(t, "= Flatten(");
  cr_assert_null(strchr(fl, '#'), "%s", fl);
  free(conv);
  free(def);
  free(cus);
  free(fl);
  free(t);
}

Test(print, internal_and_string_attributes_print_only_when_changed) {
  kiln_value *a = t_input("a", KILN_DT_F32, DIMS(2, 3)), *b = t_input("b", KILN_DT_F32, DIMS(3));
  kiln_value *y = act("y"), *r = act("r");
  N1(KILN_OP_ADD, "plain_add", y, a, b);
  kiln_node *rs = N1(KILN_OP_RESIZE, "up", r, a);
  ((kiln_attrs_resize *)rs->attrs)->mode = "linear";
  char *t = print_graph();
  char *add = line_with(t, "# plain_add");
  cr_assert_null(strchr(add, '{'), "%s", add);
  char *up = line_with(t, "# up");
  cr_assert(strstr(up, "{mode=\"linear\"}"), "%s", up);
  free(add);
  free(up);
  free(t);
}

/* ---- strmap ---- */

Test(strmap, put_get_and_replace) {
  kiln_strmap m;
  kiln_strmap_init(&m, &g->arena);
  int a = 1, b = 2, c = 3;
  cr_assert_null(kiln_strmap_get(&m, "a"), "an empty map has nothing");
  kiln_strmap_put(&m, "a", &a);
  kiln_strmap_put(&m, "b", &b);
  cr_assert_eq(kiln_strmap_get(&m, "a"), &a);
  cr_assert_eq(kiln_strmap_get(&m, "b"), &b);
  cr_assert_null(kiln_strmap_get(&m, "c"));
  kiln_strmap_put(&m, "a", &c);
  cr_assert_eq(kiln_strmap_get(&m, "a"), &c, "put replaces");
  cr_assert_eq(m.count, 2, "replacing does not add an entry");
}

Test(strmap, grows_and_keeps_every_entry) {
  enum { N = 5000 };
  kiln_strmap m;
  kiln_strmap_init(&m, &g->arena);
  static int vals[N];
  for (int i = 0; i < N; i++) {
    vals[i] = i;
    kiln_strmap_put(&m, kiln_arena_printf(&g->arena, "value_%d", i), &vals[i]);
    /* load stays at or below one half */
    cr_assert_leq(2 * m.count, m.cap);
  }
  cr_assert_eq(m.count, N);
  cr_assert_eq(m.cap & (m.cap - 1), 0, "capacity %d is a power of two", m.cap);
  for (int i = 0; i < N; i++) {
    char key[32];
    snprintf(key, sizeof key, "value_%d", i); /* a different pointer, same text */
    int *p = kiln_strmap_get(&m, key);
    cr_assert(p, "'%s' lost after growth", key);
    cr_assert_eq(*p, i);
  }
  cr_assert_null(kiln_strmap_get(&m, "value_5000"));
  cr_assert_null(kiln_strmap_get(&m, ""));
}

/* ---- dtype ---- */

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

Test(dtype, sizes_and_names) {
  cr_assert_eq(kiln_dtype_size(KILN_DT_F32), 4);
  cr_assert_eq(kiln_dtype_size(KILN_DT_F16), 2);
  cr_assert_eq(kiln_dtype_size(KILN_DT_BF16), 2);
  cr_assert_eq(kiln_dtype_size(KILN_DT_I64), 8);
  cr_assert_eq(kiln_dtype_size(KILN_DT_BOOL), 1);
  cr_assert_eq(kiln_dtype_size(KILN_DT_STRING), 0, "strings are unsupported");
  cr_assert_str_eq(kiln_dtype_name(KILN_DT_BF16), "bf16");
  cr_assert_str_eq(kiln_onnx_dtype_name(KILN_DT_F16), "FLOAT16");
  cr_assert(kiln_dtype_is_float(KILN_DT_BF16));
  cr_assert_not(kiln_dtype_is_int(KILN_DT_BOOL));
  cr_assert(kiln_dtype_is_int(KILN_DT_U64));
}

Test(dtype, f16_exact_values) {
  static const struct { float f; uint16_t h; } cases[] = {
      {0.0f, 0x0000},     {1.0f, 0x3C00},      {-2.0f, 0xC000},       {0.5f, 0x3800},
      {65504.0f, 0x7BFF}, /* largest finite */ {0x1p-14f, 0x0400}, /* smallest normal */
      {0x1p-24f, 0x0001}, /* smallest subnormal */ {0x3FFp-24f, 0x03FF}, /* largest subnormal */
      {1.0009765625f, 0x3C01}, /* 1 + 2^-10 */ {-0.333251953125f, 0xB555},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_assert_eq(kiln_f32_to_f16(cases[i].f), cases[i].h, "%a -> %#06x, expected %#06x", (double)cases[i].f,
                 kiln_f32_to_f16(cases[i].f), cases[i].h);
    cr_assert_eq(kiln_f16_to_f32(cases[i].h), cases[i].f, "%#06x -> %a", cases[i].h, (double)kiln_f16_to_f32(cases[i].h));
  }
  cr_assert_eq(kiln_f32_to_f16(-0.0f), 0x8000);
  cr_assert_eq(kiln_f32_to_f16(INFINITY), 0x7C00);
  cr_assert_eq(kiln_f32_to_f16(-INFINITY), 0xFC00);
  cr_assert(isnan(kiln_f16_to_f32(kiln_f32_to_f16(NAN))));
  cr_assert(isinf(kiln_f16_to_f32(0x7C00)));
}

Test(dtype, every_finite_f16_round_trips_through_f32) {
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7C00) == 0x7C00) continue; /* inf and NaN */
    float f = kiln_f16_to_f32((uint16_t)h);
    cr_assert_eq(kiln_f32_to_f16(f), h, "%#06x -> %a -> %#06x", h, (double)f, kiln_f32_to_f16(f));
  }
}

Test(dtype, f16_rounds_to_nearest_even) {
  /* halfway between 1 (0x3C00, even) and 1 + 2^-10 (0x3C01): down to even */
  cr_assert_eq(kiln_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
  /* halfway between 0x3C01 (odd) and 0x3C02: up to even */
  cr_assert_eq(kiln_f32_to_f16(1.0f + 0x3p-11f), 0x3C02);
  /* just above halfway: up */
  cr_assert_eq(kiln_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  /* just below halfway: down */
  cr_assert_eq(kiln_f32_to_f16(1.0f + 0x1p-11f - 0x1p-20f), 0x3C00);
  /* 65519 is below the 65520 midpoint to the next binade: stays 65504 */
  cr_assert_eq(kiln_f32_to_f16(65519.0f), 0x7BFF);
  /* 65520 ties between 65504 (odd mantissa) and 2^16: overflows to inf */
  cr_assert_eq(kiln_f32_to_f16(65520.0f), 0x7C00);
  /* mantissa carry into the exponent: 2 - 2^-12 rounds up to 2.0 */
  cr_assert_eq(kiln_f32_to_f16(2.0f - 0x1p-12f), 0x4000);
}

Test(dtype, f16_subnormals_round_to_nearest_even) {
  /* 2^-25 is half the smallest subnormal: ties to even 0 */
  cr_assert_eq(kiln_f32_to_f16(0x1p-25f), 0x0000);
  /* 3 * 2^-25 = 1.5 ulp: ties up to even 2 */
  cr_assert_eq(kiln_f32_to_f16(0x3p-25f), 0x0002);
  /* a bit over half an ulp rounds up to the smallest subnormal */
  cr_assert_eq(kiln_f32_to_f16(0x1p-25f + 0x1p-35f), 0x0001);
  /* far below: zero, keeping the sign */
  cr_assert_eq(kiln_f32_to_f16(-0x1p-30f), 0x8000);
  /* the largest subnormal plus half an ulp ties up into the smallest normal */
  cr_assert_eq(kiln_f32_to_f16(0x3FFp-24f + 0x1p-25f), 0x0400);
}

Test(dtype, bf16_exact_values_and_round_trips) {
  cr_assert_eq(kiln_f32_to_bf16(1.0f), 0x3F80);
  cr_assert_eq(kiln_f32_to_bf16(-2.0f), 0xC000);
  cr_assert_eq(kiln_f32_to_bf16(0x1p-126f), 0x0080);
  cr_assert_eq(kiln_bf16_to_f32(0x3F80), 1.0f);
  cr_assert_eq(kiln_bf16_to_f32(0x4049), 3.140625f);
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7F80) == 0x7F80) continue; /* inf and NaN */
    float f = kiln_bf16_to_f32((uint16_t)h);
    cr_assert_eq(kiln_f32_to_bf16(f), h, "%#06x -> %a -> %#06x", h, (double)f, kiln_f32_to_bf16(f));
  }
}

Test(dtype, bf16_rounds_to_nearest_even) {
  /* 1 + 2^-8 is halfway between 0x3F80 (even) and 0x3F81: down */
  cr_assert_eq(kiln_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);
  /* 1 + 3 * 2^-8 is halfway between 0x3F81 (odd) and 0x3F82: up */
  cr_assert_eq(kiln_f32_to_bf16(1.0f + 0x3p-8f), 0x3F82);
  /* just above halfway: up */
  cr_assert_eq(kiln_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-16f), 0x3F81);
  /* the largest float rounds past the largest bf16 to infinity */
  cr_assert_eq(kiln_f32_to_bf16(bits_f(0x7F7FFFFF)), 0x7F80);
  cr_assert_eq(kiln_f32_to_bf16(INFINITY), 0x7F80);
  /* a NaN whose payload lives only in the low bits must stay a NaN */
  cr_assert(isnan(kiln_bf16_to_f32(kiln_f32_to_bf16(bits_f(0x7F800001)))));
  cr_assert(isnan(kiln_bf16_to_f32(kiln_f32_to_bf16(bits_f(0xFF800001)))));
}

Test(dtype, load_and_store_convert_between_types) {
  uint16_t h[2];
  kiln_dtype_store_f(KILN_DT_F16, h, 1, 0.5);
  cr_assert_eq(h[1], 0x3800);
  cr_assert_eq(kiln_dtype_load_f(KILN_DT_F16, h, 1), 0.5);
  uint16_t bf[1];
  kiln_dtype_store_f(KILN_DT_BF16, bf, 0, -2.0);
  cr_assert_eq(bf[0], 0xC000);
  int8_t i8[1];
  kiln_dtype_store_i(KILN_DT_I8, i8, 0, -7);
  cr_assert_eq(kiln_dtype_load_i(KILN_DT_I8, i8, 0), -7);
  cr_assert_eq(kiln_dtype_load_f(KILN_DT_I8, i8, 0), -7.0);
  uint8_t b[1];
  kiln_dtype_store_f(KILN_DT_BOOL, b, 0, 0.25);
  cr_assert_eq(b[0], 1, "any nonzero is true");
  int64_t big[1];
  kiln_dtype_store_f(KILN_DT_I64, big, 0, 1e30);
  cr_assert_eq(big[0], INT64_MAX, "out-of-range floats saturate");
  float fl[1] = {NAN};
  cr_assert_eq(kiln_dtype_load_i(KILN_DT_F32, fl, 0), 0, "NaN reads as integer 0");
}
