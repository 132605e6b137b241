/* ir/fold.c (through passes/infer_shapes.c): constant folding of the shape
 * arithmetic exporters emit, and of cheap tensor transforms.  Expected
 * contents are worked out by hand from the ONNX operator definitions. */
#include "ir_test.h"

TestSuite(fold_chain, .init = graph_setup, .fini = graph_teardown);
TestSuite(fold, .init = graph_setup, .fini = graph_teardown);
TestSuite(fold_declines, .init = graph_setup, .fini = graph_teardown);

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

/* What torch.flatten(x, 1) exports (opset 13):
 *   s = Shape(x); b = Gather(s, 0); u = Unsqueeze(b, [0]);
 *   c = Concat(u, [-1], axis=0); y = Reshape(x, c)                      */
typedef struct chain { kiln_value *x, *s, *b, *u, *c, *y; kiln_node *reshape; } chain;

static chain flatten_chain(kiln_dim batch) {
  chain ch;
  int64_t zero = 0;
  ch.x = t_input("x", KILN_DT_F32, DIMS(batch, 512, 1, 1));
  ch.s = act("s");
  ch.b = act("b");
  ch.u = act("u");
  ch.c = act("c");
  ch.y = act("y");
  N1(KILN_OP_SHAPE, "shape", ch.s, ch.x);
  N1(KILN_OP_GATHER, "gather", ch.b, ch.s, t_const("zero", KILN_DT_I64, 0, NULL, &zero));
  N1(KILN_OP_UNSQUEEZE, "unsqueeze", ch.u, ch.b, CONST_INTS("axes0", 0));
  kiln_node *cat = N1(KILN_OP_CONCAT, "concat", ch.c, ch.u, CONST_INTS("minus1", -1));
  ((kiln_attrs_concat *)cat->attrs)->axis = 0;
  ch.reshape = N1(KILN_OP_RESHAPE, "reshape", ch.y, ch.x, ch.c);
  kiln_graph_add_output(g, ch.y);
  return ch;
}

/* ---- the PyTorch flatten chain ---- */

Test(fold_chain, static_input_folds_the_chain_into_a_static_shape) {
  chain ch = flatten_chain(2);
  infer_ok();
  /* Shape = [2,512,1,1]; Gather 0 -> 2; Unsqueeze -> [2]; Concat -> [2,-1];
   * Reshape: -1 = (2*512*1*1) / 2 = 512 */
  EXPECT_SHAPE(ch.y, KILN_DT_F32, 2, 512);
  EXPECT_DATA_I(ch.s, 2, 512, 1, 1);
  EXPECT_DATA_I(ch.b, 2);
  EXPECT_DATA_I(ch.u, 2);
  EXPECT_DATA_I(ch.c, 2, -1);
  cr_assert_eq(ch.c->kind, KILN_VALUE_CONST);
  cr_assert_null(ch.c->producer);
  cr_assert_eq(ch.c->sym_data, 0, "a static shape carries no symbolic dims");
}

Test(fold_chain, folded_nodes_are_removed) {
  chain ch = flatten_chain(2);
  infer_ok();
  cr_assert_eq(g->nnodes, 1, "only the Reshape should remain, %d nodes left", g->nnodes);
  cr_assert_eq(g->nodes[0], ch.reshape);
  cr_assert_eq(ch.reshape->in[1], ch.c, "Reshape reads the folded constant");
  kiln_diag d = {0};
  cr_assert_eq(kiln_graph_verify(g, &d), 0, "%s", d.msg);
}

Test(fold_chain, symbolic_batch_survives_the_chain) {
  kiln_dim N = kiln_graph_sym(g, "N");
  chain ch = flatten_chain(N);
  infer_ok();
  /* the Reshape target is [N, -1]; -1 = (N*512) / N = 512 */
  EXPECT_SHAPE(ch.y, KILN_DT_F32, N, 512);
  cr_assert_eq(g->nnodes, 1);
  /* the folded shape tensor encodes N, and says so */
  cr_assert(ch.c->data);
  cr_assert(ch.c->sym_data);
  int64_t first = kiln_dtype_load_i(KILN_DT_I64, ch.c->data, 0);
  cr_assert_eq(KILN_SYM_DECODE(first), N);
  cr_assert_eq(kiln_dtype_load_i(KILN_DT_I64, ch.c->data, 1), -1);
  char buf[64];
  kiln_value_type_str(g, ch.y, buf, sizeof buf);
  cr_assert_str_eq(buf, "f32[N,512]");
  kiln_diag d = {0};
  cr_assert_eq(kiln_graph_verify(g, &d), 0, "%s", d.msg);
}

Test(fold_chain, slice_of_a_symbolic_shape_keeps_the_batch) {
  /* the other common export: c = Concat(Slice(Shape(x), [0], [1]), [-1]);
   * Reshape(x, c) -> [N, 512*7*7 / 1] = [N, 25088] */
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(N, 512, 7, 7));
  kiln_value *s = act("s"), *h = act("h"), *c = act("c"), *y = act("y");
  N1(KILN_OP_SHAPE, "shape", s, x);
  N1(KILN_OP_SLICE, "head", h, s, CONST_INTS("st", 0), CONST_INTS("en", 1));
  kiln_node *cat = N1(KILN_OP_CONCAT, "concat", c, h, CONST_INTS("minus1", -1));
  ((kiln_attrs_concat *)cat->attrs)->axis = 0;
  N1(KILN_OP_RESHAPE, "reshape", y, x, c);
  kiln_graph_add_output(g, y);
  infer_ok();
  EXPECT_SHAPE(y, KILN_DT_F32, N, 25088);
  cr_assert_eq(g->nnodes, 1);
}

Test(fold_chain, symbolic_dim_used_as_run_time_data_is_rejected) {
  /* b = Gather(Shape(x), 0) is N; Mul(b, y) would need N's value at run time */
  int64_t zero = 0;
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_value *x = t_input("x", KILN_DT_F32, DIMS(N, 3));
  kiln_value *s = act("s"), *b = act("b"), *p = act("p");
  N1(KILN_OP_SHAPE, "shape", s, x);
  N1(KILN_OP_GATHER, "gather", b, s, t_const("zero", KILN_DT_I64, 0, NULL, &zero));
  N1(KILN_OP_MUL, "use_n", p, b, t_input("y", KILN_DT_I64, 0, NULL));
  kiln_graph_add_output(g, p);
  infer_fails("node 'use_n' (Mul)", "symbolic dim 'N'");
}

/* ---- individual folders ---- */

Test(fold, transpose_permutes_the_data) {
  static const float m[6] = {1, 2, 3, 4, 5, 6}; /* [[1,2,3],[4,5,6]] */
  static int64_t t3[12];
  for (int i = 0; i < 12; i++) t3[i] = i; /* [2,2,3] */
  kiln_node *a = NODE(KILN_OP_TRANSPOSE, "t", t_const("m", KILN_DT_F32, DIMS(2, 3), m));
  kiln_node *b = NODE(KILN_OP_TRANSPOSE, "t3", t_const("v", KILN_DT_I64, DIMS(2, 2, 3), t3));
  ((kiln_attrs_transpose *)b->attrs)->perm = INTS(2, 0, 1);
  infer_ok();
  /* [[1,4],[2,5],[3,6]] */
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 3, 2);
  EXPECT_DATA_F(a->out[0], 1, 4, 2, 5, 3, 6);
  /* out[k][i][j] = in[i][j][k] = 6i + 3j + k */
  EXPECT_SHAPE(b->out[0], KILN_DT_I64, 3, 2, 2);
  EXPECT_DATA_I(b->out[0], 0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11);
}

Test(fold, slice_with_steps_picks_the_right_elements) {
  static int64_t v[12];
  for (int i = 0; i < 12; i++) v[i] = i; /* [3,4] */
  static const int64_t r[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  kiln_node *a = NODE(KILN_OP_SLICE, "s2d", t_const("m", KILN_DT_I64, DIMS(3, 4), v), CONST_INTS("st", 1, 0),
                      CONST_INTS("en", 3, INT64_MAX), CONST_INTS("ax", 0, 1), CONST_INTS("sp", 1, 2));
  kiln_node *b = NODE(KILN_OP_SLICE, "srev", t_const("r", KILN_DT_I64, DIMS(10), r), CONST_INTS("st2", 8),
                      CONST_INTS("en2", 1), CONST_INTS("ax2", 0), CONST_INTS("sp2", -3));
  kiln_node *c = NODE(KILN_OP_SLICE, "sneg", t_const("r5", KILN_DT_I64, DIMS(5), r), CONST_INTS("st3", -10),
                      CONST_INTS("en3", -20), CONST_INTS("ax3", 0), CONST_INTS("sp3", -1));
  infer_ok();
  /* rows 1..2, columns 0, 2 of [[0..3],[4..7],[8..11]] */
  EXPECT_SHAPE(a->out[0], KILN_DT_I64, 2, 2);
  EXPECT_DATA_I(a->out[0], 4, 6, 8, 10);
  /* 8, 5, 2 (stops before 1) */
  EXPECT_DATA_I(b->out[0], 8, 5, 2);
  /* start clamps to 0, end to -1: just element 0 */
  EXPECT_DATA_I(c->out[0], 0);
}

Test(fold, gather_along_each_axis) {
  static const float m[6] = {1, 2, 3, 4, 5, 6}; /* [3,2] */
  kiln_node *a = NODE(KILN_OP_GATHER, "g0", t_const("m", KILN_DT_F32, DIMS(3, 2), m), CONST_INTS("i", 2, -3));
  static const int32_t j[2] = {1, 0};
  kiln_node *b = NODE(KILN_OP_GATHER, "g1", t_const("m2", KILN_DT_F32, DIMS(3, 2), m),
                      t_const("j", KILN_DT_I32, DIMS(1, 2), j));
  ((kiln_attrs_gather *)b->attrs)->axis = 1;
  infer_ok();
  /* rows 2 and -3 = 0: [[5,6],[1,2]] */
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 2, 2);
  EXPECT_DATA_F(a->out[0], 5, 6, 1, 2);
  /* out[r][0][k] = m[r][j[k]]: [[[2,1]],[[4,3]],[[6,5]]] */
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, 3, 1, 2);
  EXPECT_DATA_F(b->out[0], 2, 1, 4, 3, 6, 5);
}

Test(fold, concat_interleaves_rows_on_an_inner_axis) {
  static const int64_t a[2] = {1, 2}, b[4] = {3, 4, 5, 6};
  kiln_node *n = NODE(KILN_OP_CONCAT, "cat", t_const("a", KILN_DT_I64, DIMS(2, 1), a),
                      t_const("b", KILN_DT_I64, DIMS(2, 2), b));
  ((kiln_attrs_concat *)n->attrs)->axis = 1;
  infer_ok();
  /* [[1],[2]] ++ [[3,4],[5,6]] = [[1,3,4],[2,5,6]] */
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 2, 3);
  EXPECT_DATA_I(n->out[0], 1, 3, 4, 2, 5, 6);
}

Test(fold, cast_converts_each_element) {
  static const float f[4] = {1, -2, 0, 3};
  static const int64_t i[3] = {0, 2, -1};
  static const uint8_t b[3] = {0, 1, 1};
  static const int32_t n5[1] = {-5};
  static const float h[2] = {1.5f, -0.25f};
  kiln_node *fi = NODE(KILN_OP_CAST, "f2i", t_const("f", KILN_DT_F32, DIMS(4), f));
  ((kiln_attrs_cast *)fi->attrs)->to = KILN_DT_I64;
  kiln_node *ib = NODE(KILN_OP_CAST, "i2b", t_const("i", KILN_DT_I64, DIMS(3), i));
  ((kiln_attrs_cast *)ib->attrs)->to = KILN_DT_BOOL;
  kiln_node *bf = NODE(KILN_OP_CAST, "b2f", t_const("b", KILN_DT_BOOL, DIMS(3), b));
  ((kiln_attrs_cast *)bf->attrs)->to = KILN_DT_F32;
  kiln_node *wi = NODE(KILN_OP_CAST, "i32_i64", t_const("n5", KILN_DT_I32, DIMS(1), n5));
  ((kiln_attrs_cast *)wi->attrs)->to = KILN_DT_I64;
  kiln_node *fh = NODE(KILN_OP_CAST, "f2h", t_const("h", KILN_DT_F32, DIMS(2), h));
  ((kiln_attrs_cast *)fh->attrs)->to = KILN_DT_F16;
  infer_ok();
  EXPECT_DATA_I(fi->out[0], 1, -2, 0, 3);
  EXPECT_SHAPE(ib->out[0], KILN_DT_BOOL, 3);
  EXPECT_DATA_I(ib->out[0], 0, 1, 1); /* nonzero -> true */
  EXPECT_DATA_F(bf->out[0], 0, 1, 1);
  EXPECT_DATA_I(wi->out[0], -5);
  /* 1.5 = 0x3E00, -0.25 = 0xB400 in binary16 */
  const uint16_t *hb = fh->out[0]->data;
  cr_assert_eq(hb[0], 0x3E00);
  cr_assert_eq(hb[1], 0xB400);
}

Test(fold, where_picks_per_element_with_broadcast) {
  static const uint8_t c[2] = {1, 0};
  static const int64_t x[4] = {1, 2, 3, 4}, y[1] = {-1};
  kiln_node *n = NODE(KILN_OP_WHERE, "w", t_const("c", KILN_DT_BOOL, DIMS(2), c),
                      t_const("x", KILN_DT_I64, DIMS(2, 2), x), t_const("y", KILN_DT_I64, 0, NULL, y));
  infer_ok();
  /* columns: true -> x, false -> y: [[1,-1],[3,-1]] */
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 2, 2);
  EXPECT_DATA_I(n->out[0], 1, -1, 3, -1);
}

Test(fold, arithmetic_with_broadcast) {
  static const int64_t a[2] = {10, 20}, b[3] = {1, 2, 3};
  static const float p[2] = {1.5f, -1}, q[1] = {0.5f};
  static const int64_t num[2] = {7, -7}, den[1] = {2};
  kiln_node *add = NODE(KILN_OP_ADD, "add", t_const("a", KILN_DT_I64, DIMS(2, 1), a),
                        t_const("b", KILN_DT_I64, DIMS(3), b));
  kiln_node *sub = NODE(KILN_OP_SUB, "sub", t_const("p", KILN_DT_F32, DIMS(2), p), t_const("q", KILN_DT_F32, DIMS(1), q));
  kiln_node *mul = NODE(KILN_OP_MUL, "mul", t_const("b2", KILN_DT_I64, DIMS(3), b), CONST_INTS("k", -4));
  kiln_node *div = NODE(KILN_OP_DIV, "div", t_const("num", KILN_DT_I64, DIMS(2), num),
                        t_const("den", KILN_DT_I64, DIMS(1), den));
  infer_ok();
  /* [[10],[20]] + [1,2,3] = [[11,12,13],[21,22,23]] */
  EXPECT_SHAPE(add->out[0], KILN_DT_I64, 2, 3);
  EXPECT_DATA_I(add->out[0], 11, 12, 13, 21, 22, 23);
  EXPECT_DATA_F(sub->out[0], 1.0, -1.5);
  EXPECT_DATA_I(mul->out[0], -4, -8, -12);
  /* integer division truncates toward zero: 3, -3 */
  EXPECT_DATA_I(div->out[0], 3, -3);
}

Test(fold, pow_of_int_base_with_float_exponent) {
  /* Pow(T=int64, T1=float): 4^0.5 = 2, 9^0.5 = 3, result int64 */
  static const int64_t base[2] = {4, 9};
  static const float half[1] = {0.5f};
  static const float fb[2] = {2, 3};
  kiln_node *a = NODE(KILN_OP_POW, "pw", t_const("base", KILN_DT_I64, DIMS(2), base),
                      t_const("half", KILN_DT_F32, DIMS(1), half));
  kiln_node *b = NODE(KILN_OP_POW, "pw2", t_const("fb", KILN_DT_F32, DIMS(2), fb), CONST_INTS("three", 3));
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_I64, 2);
  EXPECT_DATA_I(a->out[0], 2, 3);
  /* 2^3 = 8, 3^3 = 27 */
  EXPECT_DATA_F(b->out[0], 8, 27);
}

Test(fold, comparisons_give_bools) {
  static const float a[3] = {1, 2, 3}, b[3] = {1, 5, 0};
  kiln_node *eq = NODE(KILN_OP_EQUAL, "eq", t_const("a", KILN_DT_F32, DIMS(3), a), t_const("b", KILN_DT_F32, DIMS(3), b));
  kiln_node *lt = NODE(KILN_OP_LESS, "lt", CONST_INTS("x", 1, 5, 7), CONST_INTS("y", 5));
  kiln_node *gt = NODE(KILN_OP_GREATER, "gt", t_const("a2", KILN_DT_F32, DIMS(3), a),
                       t_const("b2", KILN_DT_F32, DIMS(3), b));
  infer_ok();
  EXPECT_SHAPE(eq->out[0], KILN_DT_BOOL, 3);
  EXPECT_DATA_I(eq->out[0], 1, 0, 0);
  EXPECT_DATA_I(lt->out[0], 1, 0, 0);
  EXPECT_DATA_I(gt->out[0], 0, 0, 1);
}

Test(fold, variadic_max_min_mean_sum) {
  kiln_node *mx = NODE(KILN_OP_MAX, "max", CONST_INTS("a", 1, 9), CONST_INTS("b", 5, 2), CONST_INTS("c", 3));
  kiln_node *mn = NODE(KILN_OP_MIN, "min", CONST_INTS("d", 1, 9), CONST_INTS("e", 5, 2), CONST_INTS("f", 3));
  kiln_node *sm = NODE(KILN_OP_SUM, "sum", CONST_INTS("h", 1, 9), CONST_INTS("i", 5, 2), CONST_INTS("j", 3));
  kiln_node *me = NODE(KILN_OP_MEAN, "mean", CONST_FLOATS("k", 1, 9), CONST_FLOATS("l", 5, 3));
  infer_ok();
  EXPECT_DATA_I(mx->out[0], 5, 9);  /* max(1,5,3), max(9,2,3) */
  EXPECT_DATA_I(mn->out[0], 1, 2);  /* min(1,5,3), min(9,2,3) */
  EXPECT_DATA_I(sm->out[0], 9, 14); /* 1+5+3, 9+2+3 */
  EXPECT_DATA_F(me->out[0], 3, 6);  /* (1+5)/2, (9+3)/2 */
}

Test(fold, shape_arithmetic_unary_ops) {
  kiln_node *ng = NODE(KILN_OP_NEG, "neg", CONST_INTS("a", 3, -4));
  kiln_node *ab = NODE(KILN_OP_ABS, "abs", CONST_INTS("b", 3, -4));
  kiln_node *fl = NODE(KILN_OP_FLOOR, "floor", CONST_FLOATS("c", 1.5f, -1.5f));
  kiln_node *ce = NODE(KILN_OP_CEIL, "ceil", CONST_FLOATS("d", 1.5f, -1.5f));
  kiln_node *rl = NODE(KILN_OP_RELU, "relu", CONST_FLOATS("e", 2, -2));
  infer_ok();
  EXPECT_DATA_I(ng->out[0], -3, 4);
  EXPECT_DATA_I(ab->out[0], 3, 4);
  EXPECT_DATA_F(fl->out[0], 1, -2);
  EXPECT_DATA_F(ce->out[0], 2, -1);
  EXPECT_DATA_F(rl->out[0], 2, 0);
}

Test(fold, expand_repeats_along_new_and_unit_axes) {
  static const int64_t v[3] = {1, 2, 3}; /* [3,1] */
  kiln_node *n = NODE(KILN_OP_EXPAND, "ex", t_const("v", KILN_DT_I64, DIMS(3, 1), v), CONST_INTS("s", 2, 3, 2));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 2, 3, 2);
  EXPECT_DATA_I(n->out[0], 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3);
}

Test(fold, reshape_of_a_constant_shares_its_data) {
  static const float v[6] = {1, 2, 3, 4, 5, 6};
  kiln_value *c = t_const("v", KILN_DT_F32, DIMS(2, 3), v);
  kiln_node *n = NODE(KILN_OP_RESHAPE, "rs", c, CONST_INTS("s", 3, 2));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 2);
  cr_assert_eq(n->out[0]->data, c->data, "reshape folds without copying");
  cr_assert(n->dead);
  cr_assert_eq(g->nnodes, 0);
}

/* ---- when folding must not happen ---- */

Test(fold_declines, non_constant_input_leaves_the_node) {
  kiln_node *n = NODE(KILN_OP_ADD, "add", t_input("x", KILN_DT_I64, DIMS(2)), CONST_INTS("one", 1, 1));
  kiln_node *t = NODE(KILN_OP_TRANSPOSE, "t", t_input("y", KILN_DT_F32, DIMS(2, 3)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 2);
  cr_assert_null(n->out[0]->data);
  cr_assert_eq(n->out[0]->producer, n);
  cr_assert_eq(n->out[0]->kind, KILN_VALUE_ACTIVATION);
  cr_assert_not(n->dead);
  cr_assert_null(t->out[0]->data);
  cr_assert_eq(g->nnodes, 2);
}

/* Changed with passes/fold_lowered.c: the folder used to decline these
 * (Sigmoid "has no place in shape arithmetic"; integer x / 0 was left to
 * run time, where `kiln run` died with SIGFPE).  Folding now runs the same
 * lowered kernel as run time, and ir/loop.h defines x / 0 == 0. */
Test(fold, elementwise_math_folds_as_run_time_computes_it) {
  kiln_node *n = NODE(KILN_OP_SIGMOID, "sig", CONST_FLOATS("v", 0, 1));
  infer_ok();
  cr_assert_not_null(n->out[0]->data);
  const float *y = n->out[0]->data;
  /* 1 / (1 + e^-x) in float64: 0.5, 0.7310585786300049; f32 rounding of
   * three operations stays within 2 ulp (2.4e-7 relative) */
  cr_assert_float_eq(y[0], 0.5f, 0);
  cr_assert_float_eq(y[1], 0.7310585786300049, 0.7310585786300049 * 2.4e-7);
}

Test(fold, integer_division_by_zero_folds_to_the_defined_zero) {
  kiln_node *n = NODE(KILN_OP_DIV, "div0", CONST_INTS("a", 4, -7), CONST_INTS("b", 0, 2));
  infer_ok();
  cr_assert(n->dead);
  EXPECT_DATA_I(n->out[0], 0, -3);
}

Test(fold_declines, elementwise_results_beyond_the_interpreter_cap_run_at_run_time) {
  /* 1 << 17 elements: within infer_shapes' limit, above fold_lowered's */
  kiln_node *z = NODE(KILN_OP_CONSTANT_OF_SHAPE, "zeros", CONST_INTS("s", 1 << 17));
  kiln_node *n = NODE(KILN_OP_ADD, "add", z->out[0], CONST_FLOATS("one", 1));
  infer_ok();
  cr_assert_not_null(z->out[0]->data);
  cr_assert_null(n->out[0]->data);
  cr_assert_not(n->dead);
}

Test(fold_declines, results_larger_than_the_fold_limit_are_not_materialised) {
  /* 4096 * 2048 = 8M elements, above infer_shapes' 4M-element limit */
  kiln_node *n = NODE(KILN_OP_CONSTANT_OF_SHAPE, "big", CONST_INTS("s", 4096, 2048));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4096, 2048);
  cr_assert_null(n->out[0]->data);
  cr_assert_eq(g->nnodes, 1);
}
