/* ir/shape_elementwise.c: numpy broadcasting, comparison and Where types,
 * Pow's mixed types, PRelu, per-channel normalisation inputs and the
 * opset < 7 `axis` broadcast rewrite.
 *
 * Numpy broadcasting: align shapes at the right; each pair of dims must be
 * equal or one of them 1; the result takes the larger. */
#include "ir_test.h"

TestSuite(broadcast, .init = graph_setup, .fini = graph_teardown);
TestSuite(compare, .init = graph_setup, .fini = graph_teardown);
TestSuite(where, .init = graph_setup, .fini = graph_teardown);
TestSuite(pow, .init = graph_setup, .fini = graph_teardown);
TestSuite(prelu, .init = graph_setup, .fini = graph_teardown);
TestSuite(batchnorm, .init = graph_setup, .fini = graph_teardown);
TestSuite(legacy_broadcast, .init = graph_setup, .fini = graph_teardown);
TestSuite(unary, .init = graph_setup, .fini = graph_teardown);

static kiln_value *f32(const char *name, int rank, const int64_t *dims) { return t_input(name, KILN_DT_F32, rank, dims); }
static kiln_value *i64(const char *name, int rank, const int64_t *dims) { return t_input(name, KILN_DT_I64, rank, dims); }

/* ---- broadcasting ---- */

Test(broadcast, equal_shapes) {
  kiln_node *n = NODE(KILN_OP_ADD, "add", f32("a", DIMS(2, 3)), f32("b", DIMS(2, 3)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3);
}

Test(broadcast, shorter_operand_aligns_at_the_right) {
  kiln_node *n = NODE(KILN_OP_MUL, "mul", f32("a", DIMS(2, 3, 4)), f32("b", DIMS(4)));
  kiln_node *m = NODE(KILN_OP_SUB, "sub", f32("c", DIMS(5)), f32("d", DIMS(2, 3, 1)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4);
  /* [5] vs [2,3,1] -> [2,3,5] */
  EXPECT_SHAPE(m->out[0], KILN_DT_F32, 2, 3, 5);
}

Test(broadcast, ones_stretch_in_both_operands) {
  kiln_node *n = NODE(KILN_OP_ADD, "add", f32("a", DIMS(2, 1, 4)), f32("b", DIMS(3, 1)));
  infer_ok();
  /* [2,1,4] vs [1,3,1] -> [2,3,4] */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4);
}

Test(broadcast, scalar_broadcasts_to_anything) {
  kiln_node *n = NODE(KILN_OP_DIV, "div", f32("a", 0, NULL), f32("b", DIMS(3, 4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 4);
}

Test(broadcast, symbolic_batch_survives_broadcasting) {
  kiln_dim N = kiln_graph_sym(g, "N");
  cr_assert_lt(N, 0, "symbolic dims are negative");
  cr_assert_eq(kiln_graph_sym(g, "N"), N, "the same name gives the same dim");
  kiln_node *a = NODE(KILN_OP_ADD, "a", f32("x", DIMS(N, 3, 224, 224)), f32("mean", DIMS(3, 1, 1)));
  kiln_node *b = NODE(KILN_OP_MUL, "b", f32("y", DIMS(N, 1)), f32("w", DIMS(1, 5)));
  kiln_node *c = NODE(KILN_OP_SUB, "c", f32("p", DIMS(N, 4)), f32("q", DIMS(N, 4)));
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, N, 3, 224, 224);
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, N, 5);
  EXPECT_SHAPE(c->out[0], KILN_DT_F32, N, 4);
  char buf[64];
  kiln_value_type_str(g, a->out[0], buf, sizeof buf);
  cr_assert_str_eq(buf, "f32[N,3,224,224]");
}

Test(broadcast, variadic_sum_broadcasts_every_input) {
  kiln_node *n = NODE(KILN_OP_SUM, "sum", f32("a", DIMS(3, 1)), f32("b", DIMS(1, 4)), f32("c", DIMS(4)));
  kiln_node *m = NODE(KILN_OP_MAX, "max1", f32("d", DIMS(2, 2)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 4);
  EXPECT_SHAPE(m->out[0], KILN_DT_F32, 2, 2);
}

Test(broadcast, incompatible_dims_name_the_node) {
  NODE(KILN_OP_ADD, "add_bad", f32("a", DIMS(2, 3)), f32("b", DIMS(4)));
  infer_fails("node 'add_bad' (Add)", "do not broadcast");
}

Test(broadcast, mixed_element_types_are_rejected) {
  NODE(KILN_OP_ADD, "add_mixed", f32("a", DIMS(2, 3)), i64("b", DIMS(2, 3)));
  infer_fails("node 'add_mixed' (Add)", "same element type");
}

/* ---- comparisons: inputs of one type, bool result ---- */

Test(compare, results_are_bool_with_broadcast_shape) {
  kiln_node *e = NODE(KILN_OP_EQUAL, "eq", i64("a", DIMS(4)), i64("b", 0, NULL));
  kiln_node *l = NODE(KILN_OP_LESS, "lt", f32("c", DIMS(2, 1)), f32("d", DIMS(3)));
  kiln_node *gt = NODE(KILN_OP_GREATER, "gt", f32("e", DIMS(5)), f32("f", DIMS(5)));
  infer_ok();
  EXPECT_SHAPE(e->out[0], KILN_DT_BOOL, 4);
  EXPECT_SHAPE(l->out[0], KILN_DT_BOOL, 2, 3);
  EXPECT_SHAPE(gt->out[0], KILN_DT_BOOL, 5);
}

Test(compare, operands_of_different_types_are_rejected) {
  NODE(KILN_OP_GREATER, "gt_bad", f32("a", DIMS(2)), i64("b", DIMS(2)));
  infer_fails("node 'gt_bad' (Greater)", "same element type");
}

/* ---- Where ---- */

Test(where, broadcasts_all_three_and_takes_the_value_type) {
  kiln_node *n = NODE(KILN_OP_WHERE, "w", t_input("c", KILN_DT_BOOL, DIMS(3, 1)), i64("x", DIMS(1, 4)),
                      i64("y", 0, NULL));
  infer_ok();
  /* [3,1], [1,4], [] -> [3,4]; type of X and Y */
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 3, 4);
}

Test(where, condition_must_be_bool) {
  NODE(KILN_OP_WHERE, "w_bad", f32("c", DIMS(3)), f32("x", DIMS(3)), f32("y", DIMS(3)));
  infer_fails("node 'w_bad' (Where)", "condition must be bool");
}

Test(where, values_must_share_a_type) {
  NODE(KILN_OP_WHERE, "w_mix", t_input("c", KILN_DT_BOOL, DIMS(3)), f32("x", DIMS(3)),
       t_input("y", KILN_DT_F16, DIMS(3)));
  infer_fails("node 'w_mix' (Where)", "same element type");
}

/* ---- Pow: exponent type T1 may differ from base type T; result is T ---- */

Test(pow, exponent_of_another_type_keeps_the_base_type) {
  kiln_node *a = NODE(KILN_OP_POW, "pw", f32("x", DIMS(2, 3)), i64("e", 0, NULL));
  kiln_node *b = NODE(KILN_OP_POW, "pw2", i64("y", DIMS(3)), f32("f", DIMS(2, 1)));
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 2, 3);
  EXPECT_SHAPE(b->out[0], KILN_DT_I64, 2, 3);
}

/* ---- PRelu: slope broadcasts unidirectionally to X ---- */

Test(prelu, per_channel_slope_broadcasts_to_x) {
  kiln_node *n = NODE(KILN_OP_PRELU, "pr", f32("x", DIMS(1, 16, 8, 8)), f32("s", DIMS(16, 1, 1)));
  kiln_node *m = NODE(KILN_OP_PRELU, "pr1", f32("y", DIMS(2, 5)), f32("t", DIMS(1)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 16, 8, 8);
  EXPECT_SHAPE(m->out[0], KILN_DT_F32, 2, 5);
}

Test(prelu, slope_that_would_grow_x_is_rejected) {
  NODE(KILN_OP_PRELU, "pr_bad", f32("x", DIMS(1, 16, 8, 8)), f32("s", DIMS(2, 16, 1, 1)));
  infer_fails("node 'pr_bad' (PRelu)", "does not broadcast to X");
}

/* ---- BatchNormalization: scale, B, mean, var are [C] ---- */

Test(batchnorm, per_channel_inputs_of_length_c) {
  kiln_node *n = NODE_OUTS(KILN_OP_BATCH_NORM, "bn", 3, f32("x", DIMS(2, 16, 8, 8)), f32("scale", DIMS(16)),
                           f32("b", DIMS(16)), f32("mean", DIMS(16)), f32("var", DIMS(16)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 16, 8, 8);
  EXPECT_SHAPE(n->out[1], KILN_DT_F32, 16);
  EXPECT_SHAPE(n->out[2], KILN_DT_F32, 16);
}

Test(batchnorm, wrong_length_names_the_slot) {
  NODE(KILN_OP_BATCH_NORM, "bn_bad", f32("x", DIMS(2, 16, 8, 8)), f32("scale", DIMS(16)), f32("b", DIMS(16)),
       f32("mean", DIMS(16)), f32("var", DIMS(8)));
  infer_fails("node 'bn_bad' (BatchNormalization)", "input 'input_var' must have shape [16]");
}

Test(batchnorm, two_dimensional_scale_is_rejected) {
  NODE(KILN_OP_BATCH_NORM, "bn_2d", f32("x", DIMS(2, 4, 3)), f32("scale", DIMS(1, 4)), f32("b", DIMS(4)),
       f32("mean", DIMS(4)), f32("var", DIMS(4)));
  infer_fails("node 'bn_2d' (BatchNormalization)", "input 'scale' must have shape [4]");
}

Test(batchnorm, instance_norm_checks_scale_and_bias) {
  kiln_node *n = NODE(KILN_OP_INSTANCE_NORM, "in", f32("x", DIMS(2, 6, 5, 5)), f32("s", DIMS(6)), f32("b", DIMS(6)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 6, 5, 5);
}

/* ---- legacy (opset < 7) broadcast: B's dims align with A's from axis ---- */

Test(legacy_broadcast, constant_b_is_rewritten_with_trailing_ones) {
  static const float bias[3] = {1, 2, 3};
  kiln_value *b = t_const("bias", KILN_DT_F32, DIMS(3), bias);
  kiln_node *n = NODE(KILN_OP_ADD, "add_old", f32("a", DIMS(2, 3, 4, 5)), b);
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_ok();
  /* B [3] at axis 1 of a rank-4 A: [3] + two trailing ones = [3,1,1] */
  kiln_value *nb = n->in[1];
  cr_assert_neq(nb, b, "B should have been replaced");
  EXPECT_SHAPE(nb, KILN_DT_F32, 3, 1, 1);
  cr_assert_eq(nb->data, b->data, "the rewrite shares B's data");
  cr_assert_eq(b->uses, 0);
  cr_assert_eq(nb->uses, 1);
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4, 5);
  cr_assert_eq(((kiln_attrs_binary *)n->attrs)->_legacy_axis, -1, "the node is now in numpy form");
}

Test(legacy_broadcast, two_dimensional_b_in_the_middle) {
  static const float w[12] = {0};
  kiln_node *n = NODE(KILN_OP_MUL, "mul_old", f32("a", DIMS(2, 3, 4, 5)), t_const("w", KILN_DT_F32, DIMS(3, 4), w));
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_ok();
  EXPECT_SHAPE(n->in[1], KILN_DT_F32, 3, 4, 1);
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4, 5);
}

Test(legacy_broadcast, b_already_trailing_is_left_alone) {
  static const float w[5] = {0};
  kiln_value *b = t_const("w", KILN_DT_F32, DIMS(5), w);
  kiln_node *n = NODE(KILN_OP_ADD, "add_old", f32("a", DIMS(2, 5)), b);
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_ok();
  cr_assert_eq(n->in[1], b);
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 5);
}

Test(legacy_broadcast, prelu_slope_along_channels) {
  static const float slope[16] = {0};
  kiln_node *n = NODE(KILN_OP_PRELU, "pr_old", f32("x", DIMS(1, 16, 8, 8)), t_const("s", KILN_DT_F32, DIMS(16), slope));
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_ok();
  EXPECT_SHAPE(n->in[1], KILN_DT_F32, 16, 1, 1);
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 16, 8, 8);
}

Test(legacy_broadcast, non_constant_b_cannot_be_rewritten) {
  kiln_node *n = NODE(KILN_OP_ADD, "add_dyn", f32("a", DIMS(2, 3, 4)), f32("b", DIMS(3)));
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_fails("node 'add_dyn' (Add)", "needs a constant B");
}

Test(legacy_broadcast, b_longer_than_the_rest_of_a_is_rejected) {
  static const float w[12] = {0};
  kiln_node *n = NODE(KILN_OP_ADD, "add_long", f32("a", DIMS(2, 3, 4)), t_const("w", KILN_DT_F32, DIMS(3, 4, 1), w));
  ((kiln_attrs_binary *)n->attrs)->_legacy_axis = 1;
  infer_fails("node 'add_long' (Add)", "does not fit A");
}

/* ---- unary, Cast, Softmax, Dropout ---- */

Test(unary, activations_keep_shape_and_type) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *r = NODE(KILN_OP_RELU, "relu", t_input("x", KILN_DT_F16, DIMS(N, 7)));
  kiln_node *e = NODE(KILN_OP_EXP, "exp", f32("y", 0, NULL));
  infer_ok();
  EXPECT_SHAPE(r->out[0], KILN_DT_F16, N, 7);
  EXPECT_SCALAR(e->out[0], KILN_DT_F32);
}

Test(unary, cast_changes_only_the_type) {
  kiln_node *n = NODE(KILN_OP_CAST, "cast", f32("x", DIMS(2, 3)));
  ((kiln_attrs_cast *)n->attrs)->to = KILN_DT_I64;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 2, 3);
}

Test(unary, cast_to_an_unsupported_type_is_rejected) {
  kiln_node *n = NODE(KILN_OP_CAST, "cast_str", f32("x", DIMS(2)));
  ((kiln_attrs_cast *)n->attrs)->to = KILN_DT_STRING;
  infer_fails("node 'cast_str' (Cast)", "STRING");
}

Test(unary, softmax_axis_is_normalised) {
  kiln_node *n = NODE(KILN_OP_SOFTMAX, "sm", f32("x", DIMS(2, 3, 4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4);
  cr_assert_eq(((kiln_attrs_softmax *)n->attrs)->axis, 2);
}

Test(unary, dropout_mask_is_bool) {
  kiln_node *n = NODE_OUTS(KILN_OP_DROPOUT, "drop", 2, f32("x", DIMS(4, 5)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 5);
  EXPECT_SHAPE(n->out[1], KILN_DT_BOOL, 4, 5);
}

Test(unary, clip_bounds_must_be_constant) {
  NODE(KILN_OP_CLIP, "clip_dyn", f32("x", DIMS(4)), f32("lo", 0, NULL));
  infer_fails("node 'clip_dyn' (Clip)", "must be a constant");
}
