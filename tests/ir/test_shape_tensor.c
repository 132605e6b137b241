/* ir/shape_tensor.c: shape manipulation, data movement and reductions.
 * Expected shapes follow the ONNX operator spec (opset 13-21 forms: shapes,
 * axes, pads, scales and sizes are inputs). */
#include "ir_test.h"

TestSuite(reshape, .init = graph_setup, .fini = graph_teardown);
TestSuite(flatten, .init = graph_setup, .fini = graph_teardown);
TestSuite(transpose, .init = graph_setup, .fini = graph_teardown);
TestSuite(squeeze, .init = graph_setup, .fini = graph_teardown);
TestSuite(concat, .init = graph_setup, .fini = graph_teardown);
TestSuite(split, .init = graph_setup, .fini = graph_teardown);
TestSuite(slice, .init = graph_setup, .fini = graph_teardown);
TestSuite(pad, .init = graph_setup, .fini = graph_teardown);
TestSuite(expand, .init = graph_setup, .fini = graph_teardown);
TestSuite(gather, .init = graph_setup, .fini = graph_teardown);
TestSuite(shape_op, .init = graph_setup, .fini = graph_teardown);
TestSuite(constant_of_shape, .init = graph_setup, .fini = graph_teardown);
TestSuite(resize, .init = graph_setup, .fini = graph_teardown);
TestSuite(reduce, .init = graph_setup, .fini = graph_teardown);
TestSuite(argmax, .init = graph_setup, .fini = graph_teardown);

static kiln_value *f32(const char *name, int rank, const int64_t *dims) { return t_input(name, KILN_DT_F32, rank, dims); }

/* ---- Reshape ---- */

Test(reshape, zero_copies_the_input_dim_and_minus_one_takes_the_rest) {
  kiln_node *n = NODE(KILN_OP_RESHAPE, "r", f32("x", DIMS(2, 3, 4)), CONST_INTS("s", 0, -1));
  infer_ok();
  /* 0 -> 2 (copied); -1 -> 24 / 2 = 12 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 12);
}

Test(reshape, minus_one_in_the_middle) {
  kiln_node *n = NODE(KILN_OP_RESHAPE, "r", f32("x", DIMS(2, 3, 4)), CONST_INTS("s", 4, -1, 3));
  infer_ok();
  /* 24 / (4 * 3) = 2 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 2, 3);
}

Test(reshape, zeros_copy_every_leading_dim) {
  kiln_node *n = NODE(KILN_OP_RESHAPE, "r", f32("x", DIMS(2, 3, 4)), CONST_INTS("s", 0, 0, -1));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4);
}

Test(reshape, allowzero_makes_zero_a_real_size) {
  /* x is [3,0] (no elements).  allowzero=1: shape [0,3] means [0,3].
   * With allowzero=0 the same 0 would copy x's 3 -> [3,3], 9 != 0 elements. */
  kiln_node *n = NODE(KILN_OP_RESHAPE, "r", f32("x", DIMS(3, 0)), CONST_INTS("s", 0, 3));
  ((kiln_attrs_reshape *)n->attrs)->allowzero = 1;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 0, 3);
}

Test(reshape, without_allowzero_zero_copies_and_can_mismatch) {
  NODE(KILN_OP_RESHAPE, "r0", f32("x", DIMS(3, 0)), CONST_INTS("s", 0, 3));
  infer_fails("node 'r0' (Reshape)", "cannot reshape");
}

Test(reshape, symbolic_batch_is_copied_by_zero) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n = NODE(KILN_OP_RESHAPE, "r", f32("x", DIMS(N, 3, 4)), CONST_INTS("s", 0, -1));
  kiln_node *m = NODE(KILN_OP_RESHAPE, "r2", f32("y", DIMS(N, 3, 4)), CONST_INTS("s2", -1, 12));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, N, 12);
  /* -1 = (N * 12) / 12 = N */
  EXPECT_SHAPE(m->out[0], KILN_DT_F32, N, 12);
}

Test(reshape, element_count_mismatch_names_the_node) {
  NODE(KILN_OP_RESHAPE, "r_bad", f32("x", DIMS(2, 3, 4)), CONST_INTS("s", 5, -1));
  infer_fails("node 'r_bad' (Reshape)", "cannot reshape");
}

Test(reshape, two_minus_ones_are_rejected) {
  NODE(KILN_OP_RESHAPE, "r_bad", f32("x", DIMS(2, 3, 4)), CONST_INTS("s", -1, -1));
  infer_fails("node 'r_bad' (Reshape)", "more than one -1");
}

Test(reshape, non_constant_shape_is_rejected) {
  NODE(KILN_OP_RESHAPE, "r_dyn", f32("x", DIMS(2, 3)), t_input("s", KILN_DT_I64, DIMS(2)));
  infer_fails("node 'r_dyn' (Reshape)", "must be a constant");
}

/* ---- Flatten ---- */

Test(flatten, axis_one_is_the_default) {
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f", f32("x", DIMS(2, 3, 4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 12);
}

Test(flatten, axis_zero_gives_a_leading_one) {
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f", f32("x", DIMS(2, 3, 4)));
  ((kiln_attrs_flatten *)n->attrs)->axis = 0;
  infer_ok();
  /* outer = empty product = 1, inner = 24 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 24);
}

Test(flatten, axis_equal_to_rank_gives_a_trailing_one) {
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f", f32("x", DIMS(2, 3, 4)));
  ((kiln_attrs_flatten *)n->attrs)->axis = 3;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 24, 1);
}

Test(flatten, negative_axis_counts_from_the_back) {
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f", f32("x", DIMS(2, 3, 4)));
  ((kiln_attrs_flatten *)n->attrs)->axis = -1;
  infer_ok();
  /* axis 2: [2*3, 4] */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 6, 4);
}

Test(flatten, symbolic_batch_stays_outside) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f", f32("x", DIMS(N, 512, 1, 1)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, N, 512);
}

Test(flatten, axis_out_of_range_is_rejected) {
  kiln_node *n = NODE(KILN_OP_FLATTEN, "f_bad", f32("x", DIMS(2, 3)));
  ((kiln_attrs_flatten *)n->attrs)->axis = 3;
  infer_fails("node 'f_bad' (Flatten)", "axis 3 is out of range");
}

/* ---- Transpose ---- */

Test(transpose, default_perm_reverses_the_dims) {
  kiln_node *n = NODE(KILN_OP_TRANSPOSE, "t", f32("x", DIMS(2, 3, 4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 3, 2);
  EXPECT_INTS("perm", ((kiln_attrs_transpose *)n->attrs)->perm, 2, 1, 0);
}

Test(transpose, explicit_perm_nchw_to_nhwc) {
  kiln_node *n = NODE(KILN_OP_TRANSPOSE, "t", f32("x", DIMS(1, 3, 8, 9)));
  ((kiln_attrs_transpose *)n->attrs)->perm = INTS(0, 2, 3, 1);
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 8, 9, 3);
}

Test(transpose, repeated_perm_entry_is_rejected) {
  kiln_node *n = NODE(KILN_OP_TRANSPOSE, "t_bad", f32("x", DIMS(1, 3, 8)));
  ((kiln_attrs_transpose *)n->attrs)->perm = INTS(0, 0, 1);
  infer_fails("node 't_bad' (Transpose)", "not a permutation");
}

/* ---- Squeeze / Unsqueeze ---- */

Test(squeeze, negative_axes_are_normalised) {
  kiln_node *n = NODE(KILN_OP_SQUEEZE, "s", f32("x", DIMS(2, 1, 3, 1)), CONST_INTS("axes", -1, 1));
  infer_ok();
  /* -1 -> 3; drop axes 1 and 3 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3);
}

Test(squeeze, without_axes_drops_every_unit_dim) {
  kiln_node *n = t_node_n(KILN_OP_SQUEEZE, "s", 1, (kiln_value *[]){f32("x", DIMS(1, 3, 1, 5))}, 1);
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 5);
}

Test(squeeze, a_dim_that_is_not_one_is_rejected) {
  NODE(KILN_OP_SQUEEZE, "s_bad", f32("x", DIMS(2, 3)), CONST_INTS("axes", 1));
  infer_fails("node 's_bad' (Squeeze)", "cannot squeeze axis 1");
}

Test(squeeze, unsqueeze_axes_index_the_output_rank) {
  /* output rank 2 + 2 = 4; -1 -> 3: ones at 0 and 3 */
  kiln_node *a = NODE(KILN_OP_UNSQUEEZE, "u", f32("x", DIMS(3, 4)), CONST_INTS("axes", 0, -1));
  /* output rank 3; -2 -> 1 */
  kiln_node *b = NODE(KILN_OP_UNSQUEEZE, "u2", f32("y", DIMS(3, 4)), CONST_INTS("axes2", -2));
  /* a scalar becomes [1] */
  kiln_node *c = NODE(KILN_OP_UNSQUEEZE, "u3", f32("z", 0, NULL), CONST_INTS("axes3", 0));
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 1, 3, 4, 1);
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, 3, 1, 4);
  EXPECT_SHAPE(c->out[0], KILN_DT_F32, 1);
}

Test(squeeze, unsqueeze_duplicate_axis_is_rejected) {
  NODE(KILN_OP_UNSQUEEZE, "u_bad", f32("x", DIMS(3, 4)), CONST_INTS("axes", 1, -3));
  infer_fails("node 'u_bad' (Unsqueeze)", "duplicate");
}

/* ---- Concat ---- */

Test(concat, sums_the_axis_and_keeps_the_rest) {
  kiln_node *n = NODE(KILN_OP_CONCAT, "c", f32("a", DIMS(2, 3)), f32("b", DIMS(2, 5)));
  ((kiln_attrs_concat *)n->attrs)->axis = -1;
  kiln_node *m = NODE(KILN_OP_CONCAT, "c3", f32("p", DIMS(1, 4)), f32("q", DIMS(2, 4)), f32("r", DIMS(3, 4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 8);
  EXPECT_SHAPE(m->out[0], KILN_DT_F32, 6, 4);
  cr_assert_eq(((kiln_attrs_concat *)n->attrs)->axis, 1, "axis is stored normalised");
}

Test(concat, mismatch_outside_the_axis_names_the_node) {
  kiln_node *n = NODE(KILN_OP_CONCAT, "cat_bad", f32("a", DIMS(2, 3)), f32("b", DIMS(4, 5)));
  ((kiln_attrs_concat *)n->attrs)->axis = 1;
  infer_fails("node 'cat_bad' (Concat)", "differ outside axis 1");
}

/* ---- Split ---- */

Test(split, explicit_sizes) {
  kiln_node *n = NODE_OUTS(KILN_OP_SPLIT, "sp", 3, f32("x", DIMS(4, 10)), CONST_INTS("split", 2, 3, 5));
  ((kiln_attrs_split *)n->attrs)->axis = -1;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 2);
  EXPECT_SHAPE(n->out[1], KILN_DT_F32, 4, 3);
  EXPECT_SHAPE(n->out[2], KILN_DT_F32, 4, 5);
}

Test(split, equal_parts_by_output_count) {
  kiln_node *n = NODE_OUTS(KILN_OP_SPLIT, "sp", 3, f32("x", DIMS(6, 4)));
  infer_ok();
  for (int i = 0; i < 3; i++) EXPECT_SHAPE(n->out[i], KILN_DT_F32, 2, 4);
}

Test(split, num_outputs_uneven_makes_the_last_part_smaller) {
  kiln_node *n = NODE_OUTS(KILN_OP_SPLIT, "sp", 3, f32("x", DIMS(7, 2)));
  ((kiln_attrs_split *)n->attrs)->num_outputs = 3;
  infer_ok();
  /* ceil(7/3) = 3: parts 3, 3, 7 - 6 = 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 2);
  EXPECT_SHAPE(n->out[1], KILN_DT_F32, 3, 2);
  EXPECT_SHAPE(n->out[2], KILN_DT_F32, 1, 2);
}

Test(split, uneven_without_num_outputs_is_rejected) {
  NODE_OUTS(KILN_OP_SPLIT, "sp_bad", 3, f32("x", DIMS(7, 2)));
  infer_fails("node 'sp_bad' (Split)", "does not split evenly");
}

Test(split, sizes_that_do_not_sum_to_the_axis_are_rejected) {
  NODE_OUTS(KILN_OP_SPLIT, "sp_sum", 2, f32("x", DIMS(7, 2)), CONST_INTS("split", 3, 3));
  infer_fails("node 'sp_sum' (Split)", "sum to 6");
}

/* ---- Slice: starts/ends get dim added when negative, then clamp to
 * [0, dim] (step > 0) or start to [0, dim-1] and end to [-1, dim-1]
 * (step < 0); length = ceil((end - start) / step), at least 0. ---- */

Test(slice, negative_start_and_end_past_the_dim) {
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(10, 20)), CONST_INTS("st", 2, -5), CONST_INTS("en", 8, 1000));
  infer_ok();
  /* axis 0: [2, 8) -> 6; axis 1: start 20 - 5 = 15, end clamps to 20 -> 5 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 6, 5);
}

Test(slice, int64_max_end_means_through_the_end) {
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(3, 7)), CONST_INTS("st", 1), CONST_INTS("en", INT64_MAX),
                      CONST_INTS("ax", -1));
  infer_ok();
  /* axis -1 = 1: [1, 7) -> 6 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 6);
}

Test(slice, step_minus_one_with_int64_min_end_reverses_the_whole_axis) {
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(10, 3)), CONST_INTS("st", -1), CONST_INTS("en", INT64_MIN),
                      CONST_INTS("ax", 0), CONST_INTS("stp", -1));
  infer_ok();
  /* start -1 + 10 = 9; end stays negative -> clamps to -1; (9 - -1) / 1 = 10 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 10, 3);
}

Test(slice, positive_and_negative_strides) {
  kiln_node *a = NODE(KILN_OP_SLICE, "s3", f32("x", DIMS(10)), CONST_INTS("st", 0), CONST_INTS("en", INT64_MAX),
                      CONST_INTS("ax", 0), CONST_INTS("stp", 3));
  kiln_node *b = NODE(KILN_OP_SLICE, "sm2", f32("y", DIMS(10)), CONST_INTS("st2", 8), CONST_INTS("en2", 1),
                      CONST_INTS("ax2", 0), CONST_INTS("stp2", -2));
  infer_ok();
  /* 0, 3, 6, 9 -> ceil(10/3) = 4 */
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 4);
  /* 8, 6, 4, 2 -> ceil((8 - 1) / 2) = 4 */
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, 4);
}

Test(slice, negative_step_clamps_a_start_before_the_axis_to_zero) {
  /* start -10 + 5 = -5 clamps to 0 (range [0, dim-1] for negative steps),
   * end -20 + 5 = -15 clamps to -1: one element, index 0 */
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(5)), CONST_INTS("st", -10), CONST_INTS("en", -20),
                      CONST_INTS("ax", 0), CONST_INTS("stp", -1));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1);
}

Test(slice, negative_step_clamps_a_start_past_the_axis_to_the_last_index) {
  /* start 100 clamps to 4, end 1: indices 4, 3, 2 */
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(5)), CONST_INTS("st", 100), CONST_INTS("en", 1),
                      CONST_INTS("ax", 0), CONST_INTS("stp", -1));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3);
}

Test(slice, empty_when_start_is_after_end) {
  kiln_node *n = NODE(KILN_OP_SLICE, "sl", f32("x", DIMS(10)), CONST_INTS("st", 5), CONST_INTS("en", 2));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 0);
}

Test(slice, zero_step_is_rejected) {
  NODE(KILN_OP_SLICE, "sl_bad", f32("x", DIMS(10)), CONST_INTS("st", 0), CONST_INTS("en", 5), CONST_INTS("ax", 0),
       CONST_INTS("stp", 0));
  infer_fails("node 'sl_bad' (Slice)", "steps must not be 0");
}

/* ---- Pad: pads = [x1_begin, x2_begin, ..., x1_end, x2_end] over `axes`
 * (all axes when absent); out = in + begin + end. ---- */

Test(pad, all_axes) {
  kiln_node *n = NODE(KILN_OP_PAD, "p", f32("x", DIMS(1, 3, 4, 5)), CONST_INTS("pads", 0, 0, 1, 2, 0, 0, 3, 4));
  infer_ok();
  /* H: 4 + 1 + 3 = 8; W: 5 + 2 + 4 = 11 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 8, 11);
}

Test(pad, axes_select_and_order_the_pads) {
  kiln_node *n = NODE(KILN_OP_PAD, "p", f32("x", DIMS(1, 3, 4, 5)), CONST_INTS("pads", 1, 2, 3, 4), NULL,
                      CONST_INTS("axes", -1, 2));
  infer_ok();
  /* axes [3, 2]: axis 3 gets begin 1 end 3 -> 5 + 4 = 9;
   *              axis 2 gets begin 2 end 4 -> 4 + 6 = 10 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 10, 9);
}

Test(pad, negative_pads_crop) {
  kiln_node *n = NODE(KILN_OP_PAD, "p", f32("x", DIMS(4, 6)), CONST_INTS("pads", -1, 0, 0, -2));
  infer_ok();
  /* 4 - 1 = 3; 6 - 2 = 4 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 4);
}

Test(pad, wrong_pads_length_is_rejected) {
  NODE(KILN_OP_PAD, "p_bad", f32("x", DIMS(4, 6)), CONST_INTS("pads", 1, 1));
  infer_fails("node 'p_bad' (Pad)", "pads has 2 entries, expected 4");
}

/* ---- Expand: bidirectional numpy broadcast of input and shape ---- */

Test(expand, broadcasts_both_ways) {
  kiln_node *a = NODE(KILN_OP_EXPAND, "e", f32("x", DIMS(3, 1)), CONST_INTS("s", 2, 1, 6));
  kiln_node *b = NODE(KILN_OP_EXPAND, "e2", f32("y", DIMS(2, 1, 4)), CONST_INTS("s2", 3, 1));
  kiln_node *c = NODE(KILN_OP_EXPAND, "e3", f32("z", DIMS(2, 3)), CONST_INTS("s3", 1));
  infer_ok();
  /* [3,1] with [2,1,6] -> [2,3,6] */
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 2, 3, 6);
  /* [2,1,4] with [3,1] -> [2,3,4]: the shape may be smaller than the input */
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, 2, 3, 4);
  EXPECT_SHAPE(c->out[0], KILN_DT_F32, 2, 3);
}

Test(expand, incompatible_shape_is_rejected) {
  NODE(KILN_OP_EXPAND, "e_bad", f32("x", DIMS(2, 3)), CONST_INTS("s", 4, 3));
  infer_fails("node 'e_bad' (Expand)", "do not broadcast");
}

/* ---- Gather: out = data[:axis] + indices.shape + data[axis+1:] ---- */

Test(gather, scalar_index_removes_the_axis) {
  int64_t one = 1;
  kiln_node *n = NODE(KILN_OP_GATHER, "g", f32("x", DIMS(5, 4, 3)), t_const("i", KILN_DT_I64, 0, NULL, &one));
  ((kiln_attrs_gather *)n->attrs)->axis = 1;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 5, 3);
}

Test(gather, two_dimensional_indices_replace_the_axis) {
  kiln_node *a = NODE(KILN_OP_GATHER, "g", f32("x", DIMS(5, 4, 3)), t_input("i", KILN_DT_I64, DIMS(2, 6)));
  kiln_node *b = NODE(KILN_OP_GATHER, "g2", f32("y", DIMS(5, 4, 3)), t_input("j", KILN_DT_I32, DIMS(2, 2)));
  ((kiln_attrs_gather *)b->attrs)->axis = -1;
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_F32, 2, 6, 4, 3);
  EXPECT_SHAPE(b->out[0], KILN_DT_F32, 5, 4, 2, 2);
  cr_assert_eq(((kiln_attrs_gather *)b->attrs)->axis, 2, "axis is stored normalised");
}

Test(gather, constant_index_out_of_range_is_rejected) {
  NODE(KILN_OP_GATHER, "g_bad", f32("x", DIMS(5, 4)), CONST_INTS("i", 0, 5));
  infer_fails("node 'g_bad' (Gather)", "index 5 is out of range");
}

Test(gather, float_indices_are_rejected) {
  NODE(KILN_OP_GATHER, "g_f", f32("x", DIMS(5, 4)), f32("i", DIMS(2)));
  infer_fails("node 'g_f' (Gather)", "indices must be int32 or int64");
}

/* ---- Shape (opset 15 start/end, clamped to [0, rank]) ---- */

Test(shape_op, whole_shape_is_a_1d_int64) {
  kiln_node *n = NODE(KILN_OP_SHAPE, "sh", f32("x", DIMS(2, 3, 4, 5)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 4);
  EXPECT_DATA_I(n->out[0], 2, 3, 4, 5);
}

Test(shape_op, start_and_end_select_a_range) {
  kiln_value *x = f32("x", DIMS(2, 3, 4, 5));
  kiln_node *a = NODE(KILN_OP_SHAPE, "a", x);
  ((kiln_attrs_shape *)a->attrs)->start = 1;
  kiln_node *b = NODE(KILN_OP_SHAPE, "b", x);
  ((kiln_attrs_shape *)b->attrs)->start = 1;
  ((kiln_attrs_shape *)b->attrs)->end = -1;
  kiln_node *c = NODE(KILN_OP_SHAPE, "c", x);
  ((kiln_attrs_shape *)c->attrs)->start = -10;
  ((kiln_attrs_shape *)c->attrs)->end = 100;
  kiln_node *d = NODE(KILN_OP_SHAPE, "d", x);
  ((kiln_attrs_shape *)d->attrs)->start = 3;
  ((kiln_attrs_shape *)d->attrs)->end = 1;
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_I64, 3); /* [1, 4) */
  EXPECT_DATA_I(a->out[0], 3, 4, 5);
  EXPECT_SHAPE(b->out[0], KILN_DT_I64, 2); /* [1, 3) */
  EXPECT_DATA_I(b->out[0], 3, 4);
  EXPECT_SHAPE(c->out[0], KILN_DT_I64, 4); /* clamped to [0, 4) */
  EXPECT_SHAPE(d->out[0], KILN_DT_I64, 0); /* start after end: empty */
}

/* ---- ConstantOfShape ---- */

Test(constant_of_shape, defaults_to_float_zeros) {
  kiln_node *n = NODE(KILN_OP_CONSTANT_OF_SHAPE, "k", CONST_INTS("s", 2, 3));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3);
  EXPECT_DATA_F(n->out[0], 0, 0, 0, 0, 0, 0);
}

Test(constant_of_shape, value_attribute_sets_type_and_contents) {
  static const int64_t seven = 7;
  kiln_node *n = NODE(KILN_OP_CONSTANT_OF_SHAPE, "k", CONST_INTS("s", 3));
  ((kiln_attrs_constant_of_shape *)n->attrs)->value = (kiln_tensor_attr){KILN_DT_I64, 1, &seven};
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_I64, 3);
  EXPECT_DATA_I(n->out[0], 7, 7, 7);
}

/* ---- Resize: scales -> floor(in * scale); sizes as given, or with a
 * keep_aspect_ratio_policy scale = min/max(sizes/in) over the axes and
 * out = round(in * scale). ---- */

Test(resize, scales_floor_the_product) {
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(1, 3, 5, 3)), NULL, CONST_FLOATS("sc", 1, 1, 1.5f, 2.5f));
  infer_ok();
  /* floor(5 * 1.5) = floor(7.5) = 7; floor(3 * 2.5) = floor(7.5) = 7 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 7, 7);
}

Test(resize, sizes_stretch_by_default) {
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(1, 3, 4, 6)), NULL, NULL, CONST_INTS("sz", 1, 3, 10, 20));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 10, 20);
}

Test(resize, empty_scales_defer_to_sizes) {
  /* exporters pass an empty tensor for the unused one of scales/sizes */
  int64_t zero[1] = {0};
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(1, 3, 4, 6)), t_const("roi", KILN_DT_F32, 1, zero, NULL),
                      t_const("sc", KILN_DT_F32, 1, zero, NULL), CONST_INTS("sz", 1, 3, 8, 12));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 8, 12);
}

Test(resize, not_larger_keeps_the_aspect_ratio_inside_the_sizes) {
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(1, 3, 4, 6)), NULL, NULL, CONST_INTS("sz", 8, 8));
  kiln_attrs_resize *a = n->attrs;
  a->axes = INTS(2, 3);
  a->keep_aspect_ratio_policy = "not_larger";
  infer_ok();
  /* scale = min(8/4, 8/6) = 4/3; round(4 * 4/3) = round(5.33) = 5,
   * round(6 * 4/3) = 8 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 5, 8);
}

Test(resize, not_smaller_keeps_the_aspect_ratio_covering_the_sizes) {
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(1, 3, 4, 6)), NULL, NULL, CONST_INTS("sz", 8, 8));
  kiln_attrs_resize *a = n->attrs;
  a->axes = INTS(2, 3);
  a->keep_aspect_ratio_policy = "not_smaller";
  infer_ok();
  /* scale = max(2, 4/3) = 2: [8, 12] */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 8, 12);
}

Test(resize, unit_scale_keeps_a_symbolic_batch) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n = NODE(KILN_OP_RESIZE, "rs", f32("x", DIMS(N, 3, 4, 5)), NULL, CONST_FLOATS("sc", 1, 1, 2, 2));
  infer_ok();
  /* 4 * 2 = 8, 5 * 2 = 10 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, N, 3, 8, 10);
}

Test(resize, neither_scales_nor_sizes_is_rejected) {
  NODE(KILN_OP_RESIZE, "rs_bad", f32("x", DIMS(1, 3, 4, 6)));
  infer_fails("node 'rs_bad' (Resize)", "exactly one of 'scales' and 'sizes'");
}

/* ---- ReduceMean / ReduceSum (axes input, opset 18) ---- */

Test(reduce, keepdims_one_keeps_reduced_axes_as_ones) {
  kiln_node *n = NODE(KILN_OP_REDUCE_MEAN, "rm", f32("x", DIMS(2, 3, 4)), CONST_INTS("axes", 1));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 1, 4);
}

Test(reduce, keepdims_zero_drops_reduced_axes) {
  kiln_node *n = NODE(KILN_OP_REDUCE_MEAN, "rm", f32("x", DIMS(2, 3, 4)), CONST_INTS("axes", -1, 0));
  ((kiln_attrs_reduce *)n->attrs)->keepdims = 0;
  infer_ok();
  /* axes {2, 0} dropped */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3);
}

Test(reduce, no_axes_reduces_everything) {
  kiln_node *k1 = t_node_n(KILN_OP_REDUCE_MEAN, "all1", 1, (kiln_value *[]){f32("x", DIMS(2, 3, 4))}, 1);
  kiln_node *k0 = t_node_n(KILN_OP_REDUCE_SUM, "all0", 1, (kiln_value *[]){f32("y", DIMS(2, 3, 4))}, 1);
  ((kiln_attrs_reduce *)k0->attrs)->keepdims = 0;
  kiln_node *e = NODE(KILN_OP_REDUCE_MEAN, "empty", f32("z", DIMS(2, 3, 4)), t_empty_ints("noaxes"));
  infer_ok();
  EXPECT_SHAPE(k1->out[0], KILN_DT_F32, 1, 1, 1);
  EXPECT_SCALAR(k0->out[0], KILN_DT_F32);
  EXPECT_SHAPE(e->out[0], KILN_DT_F32, 1, 1, 1); /* empty axes = all, without noop */
}

Test(reduce, noop_with_empty_axes_keeps_the_input_shape) {
  kiln_node *n = t_node_n(KILN_OP_REDUCE_MEAN, "noop", 1, (kiln_value *[]){f32("x", DIMS(2, 3, 4))}, 1);
  ((kiln_attrs_reduce *)n->attrs)->noop_with_empty_axes = 1;
  ((kiln_attrs_reduce *)n->attrs)->keepdims = 0;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3, 4);
}

Test(reduce, axis_out_of_range_is_rejected) {
  NODE(KILN_OP_REDUCE_MEAN, "rm_bad", f32("x", DIMS(2, 3)), CONST_INTS("axes", 2));
  infer_fails("node 'rm_bad' (ReduceMean)", "out of range");
}

/* ---- ArgMax ---- */

Test(argmax, returns_int64_indices_with_keepdims) {
  kiln_node *a = NODE(KILN_OP_ARGMAX, "am", f32("x", DIMS(2, 3, 4)));
  ((kiln_attrs_argmax *)a->attrs)->axis = 1;
  kiln_node *b = NODE(KILN_OP_ARGMAX, "am0", f32("y", DIMS(2, 3, 4)));
  ((kiln_attrs_argmax *)b->attrs)->axis = -1;
  ((kiln_attrs_argmax *)b->attrs)->keepdims = 0;
  infer_ok();
  EXPECT_SHAPE(a->out[0], KILN_DT_I64, 2, 1, 4);
  EXPECT_SHAPE(b->out[0], KILN_DT_I64, 2, 3);
}
