/* ir/shape_nn.c: Conv, ConvTranspose, pooling, Gemm and MatMul shapes,
 * and the canonical window attributes the shape functions leave behind.
 *
 * Conv/pool output size (ONNX Conv, MaxPool, AveragePool):
 *   out = floor((in + pad_begin + pad_end - ((k - 1) * d + 1)) / s) + 1
 * (ceil instead of floor with ceil_mode=1, dropping a last window that
 * would start in the right padding).  SAME_*: out = ceil(in / s) and
 *   total = (out - 1) * s + (k - 1) * d + 1 - in,
 * split evenly with the odd unit at the end (SAME_UPPER) or the
 * beginning (SAME_LOWER).
 * ConvTranspose:
 *   out = s * (in - 1) + output_padding + (k - 1) * d + 1 - pad_begin - pad_end */
#include "ir_test.h"

TestSuite(conv, .init = graph_setup, .fini = graph_teardown);
TestSuite(conv_transpose, .init = graph_setup, .fini = graph_teardown);
TestSuite(pool, .init = graph_setup, .fini = graph_teardown);
TestSuite(gemm, .init = graph_setup, .fini = graph_teardown);
TestSuite(matmul, .init = graph_setup, .fini = graph_teardown);

static kiln_value *f32(const char *name, int rank, const int64_t *dims) { return t_input(name, KILN_DT_F32, rank, dims); }

/* ---- Conv ---- */

Test(conv, conv1d_with_stride_and_asymmetric_pads) {
  kiln_node *n = NODE(KILN_OP_CONV, "c1", f32("x", DIMS(1, 4, 10)), f32("w", DIMS(8, 4, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(2);
  a->pads = INTS(1, 2);
  infer_ok();
  /* (10 + 1 + 2 - 3) / 2 + 1 = 6 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 8, 6);
  EXPECT_INTS("kernel_shape", a->kernel_shape, 3);
  EXPECT_INTS("dilations", a->dilations, 1);
  EXPECT_INTS("pads", a->pads, 1, 2);
}

Test(conv, conv2d_defaults_are_completed_into_explicit_attributes) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(2, 3, 32, 32)), f32("w", DIMS(16, 3, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  infer_ok();
  /* (32 - 3) / 1 + 1 = 30 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 16, 30, 30);
  EXPECT_INTS("kernel_shape", a->kernel_shape, 3, 3);
  EXPECT_INTS("strides", a->strides, 1, 1);
  EXPECT_INTS("dilations", a->dilations, 1, 1);
  EXPECT_INTS("pads", a->pads, 0, 0, 0, 0);
  cr_assert_str_eq(a->auto_pad, "NOTSET");
}

Test(conv, conv2d_with_strides_dilations_and_asymmetric_pads) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 3, 20, 15)), f32("w", DIMS(6, 3, 3, 5)),
                      f32("b", DIMS(6)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(2, 3);
  a->dilations = INTS(2, 1);
  a->pads = INTS(1, 0, 2, 3); /* H begin 1, W begin 0, H end 2, W end 3 */
  infer_ok();
  /* H: k_eff = (3-1)*2+1 = 5; (20 + 1 + 2 - 5) / 2 + 1 = 18/2 + 1 = 10
   * W: k_eff = 5;             (15 + 0 + 3 - 5) / 3 + 1 = 13/3 + 1 = 5 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 6, 10, 5);
  EXPECT_INTS("pads", a->pads, 1, 0, 2, 3);
}

Test(conv, conv3d_with_per_axis_strides) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 2, 8, 9, 10)), f32("w", DIMS(4, 2, 3, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(1, 2, 3);
  a->pads = INTS(1, 1, 1, 1, 1, 1);
  infer_ok();
  /* D: (8+2-3)/1+1 = 8;  H: (9+2-3)/2+1 = 5;  W: (10+2-3)/3+1 = 4 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 4, 8, 5, 4);
}

Test(conv, grouped_conv_takes_input_channels_per_group_from_w) {
  /* W is (M, C/group, kH, kW): 4 * 2 = 8 input channels, 12 outputs */
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 8, 10, 10)), f32("w", DIMS(12, 4, 3, 3)));
  ((kiln_attrs_conv *)n->attrs)->group = 2;
  infer_ok();
  /* (10 - 3) + 1 = 8 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 12, 8, 8);
}

Test(conv, depthwise_conv_keeps_channels) {
  kiln_node *n = NODE(KILN_OP_CONV, "dw", f32("x", DIMS(1, 32, 14, 14)), f32("w", DIMS(32, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->group = 32;
  a->pads = INTS(1, 1, 1, 1);
  a->strides = INTS(2, 1);
  infer_ok();
  /* H: (14 + 2 - 3) / 2 + 1 = 13/2 + 1 = 7;  W: (14 + 2 - 3) / 1 + 1 = 14 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 32, 7, 14);
}

Test(conv, symbolic_batch_passes_through) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(N, 3, 8, 8)), f32("w", DIMS(5, 3, 1, 1)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, N, 5, 8, 8);
}

Test(conv, same_upper_puts_the_odd_pad_at_the_end) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 1, 5, 7)), f32("w", DIMS(1, 1, 4, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "SAME_UPPER";
  a->strides = INTS(1, 2);
  infer_ok();
  /* H: out = ceil(5/1) = 5; total = (5-1)*1 + 4 - 5 = 3 -> begin 1, end 2
   * W: out = ceil(7/2) = 4; total = (4-1)*2 + 3 - 7 = 2 -> begin 1, end 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 5, 4);
  EXPECT_INTS("pads", a->pads, 1, 1, 2, 1);
  cr_assert_str_eq(a->auto_pad, "NOTSET", "auto_pad must be resolved into pads");
}

Test(conv, same_lower_puts_the_odd_pad_at_the_beginning) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 1, 5, 7)), f32("w", DIMS(1, 1, 4, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "SAME_LOWER";
  a->strides = INTS(1, 2);
  infer_ok();
  /* same totals as above: H 3 -> begin 2, end 1; W 2 -> 1, 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 5, 4);
  EXPECT_INTS("pads", a->pads, 2, 1, 1, 1);
  cr_assert_str_eq(a->auto_pad, "NOTSET");
}

Test(conv, same_padding_accounts_for_dilation) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 1, 10)), f32("w", DIMS(1, 1, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "SAME_UPPER";
  a->strides = INTS(3);
  a->dilations = INTS(2);
  infer_ok();
  /* out = ceil(10/3) = 4; k_eff = 5; total = 3*3 + 5 - 10 = 4 -> 2, 2
   * check: (10 + 4 - 5) / 3 + 1 = 4 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 4);
  EXPECT_INTS("pads", a->pads, 2, 2);
}

Test(conv, valid_ignores_explicit_pads) {
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(1, 1, 7, 7)), f32("w", DIMS(1, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "VALID";
  a->strides = INTS(2, 2);
  a->pads = INTS(1, 1, 1, 1);
  infer_ok();
  /* no padding: (7 - 3) / 2 + 1 = 3 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 3, 3);
  EXPECT_INTS("pads", a->pads, 0, 0, 0, 0);
  cr_assert_str_eq(a->auto_pad, "NOTSET");
}

Test(conv, channel_mismatch_names_the_node) {
  NODE(KILN_OP_CONV, "conv_bad", f32("x", DIMS(1, 3, 8, 8)), f32("w", DIMS(4, 2, 3, 3)));
  infer_fails("node 'conv_bad' (Conv)", "expects 2 input channels");
}

Test(conv, group_not_dividing_channels_names_the_node) {
  kiln_node *n = NODE(KILN_OP_CONV, "conv_grp", f32("x", DIMS(1, 6, 8, 8)), f32("w", DIMS(4, 3, 3, 3)));
  ((kiln_attrs_conv *)n->attrs)->group = 4;
  infer_fails("node 'conv_grp' (Conv)", "group 4 does not divide");
}

Test(conv, bias_of_wrong_length_is_rejected) {
  NODE(KILN_OP_CONV, "conv_b", f32("x", DIMS(1, 3, 8, 8)), f32("w", DIMS(4, 3, 3, 3)), f32("b", DIMS(3)));
  infer_fails("node 'conv_b' (Conv)", "B must have shape [4]");
}

Test(conv, kernel_larger_than_padded_input_is_rejected) {
  NODE(KILN_OP_CONV, "conv_k", f32("x", DIMS(1, 1, 2, 2)), f32("w", DIMS(1, 1, 3, 3)));
  infer_fails("node 'conv_k' (Conv)", "does not fit");
}

/* ---- ConvTranspose ---- */

Test(conv_transpose, output_padding_strides_dilations_and_groups) {
  /* W is (C, M/group, kH, kW): C = 4, M = 3 * 2 = 6 */
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 4, 5, 4)), f32("w", DIMS(4, 3, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->group = 2;
  a->strides = INTS(2, 3);
  a->dilations = INTS(1, 2);
  a->pads = INTS(1, 0, 1, 2);
  a->output_padding = INTS(1, 0);
  infer_ok();
  /* H: 2*(5-1) + 1 + (3-1)*1+1 - 1 - 1 = 8 + 1 + 3 - 2 = 10
   * W: 3*(4-1) + 0 + (3-1)*2+1 - 0 - 2 = 9 + 5 - 2 = 12 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 6, 10, 12);
  EXPECT_INTS("pads", a->pads, 1, 0, 1, 2);
}

Test(conv_transpose, output_shape_sets_the_size_and_derives_pads) {
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 1, 4, 4)), f32("w", DIMS(1, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(2, 2);
  a->output_shape = INTS(7, 5);
  infer_ok();
  /* full = 2*(4-1) + 0 + 3 = 9
   * H: total = 9 - 7 = 2 -> 1, 1;  W: total = 9 - 5 = 4 -> 2, 2 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 7, 5);
  EXPECT_INTS("pads", a->pads, 1, 2, 1, 2);
}

Test(conv_transpose, output_shape_larger_than_the_full_result) {
  /* the ONNX backend case test_convtranspose_output_shape: the output
   * shape is taken as given (the surplus comes from output padding) */
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 1, 3, 3)), f32("w", DIMS(1, 2, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(3, 2);
  a->output_shape = INTS(10, 8);
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 2, 10, 8);
}

Test(conv_transpose, same_upper_gives_in_times_stride_with_odd_pad_at_end) {
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 1, 3, 4)), f32("w", DIMS(1, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "SAME_UPPER";
  a->strides = INTS(2, 1);
  infer_ok();
  /* H: out = 3*2 = 6; total = 2*(3-1) + 3 - 6 = 1 -> begin 1/2 = 0, end 1
   * W: out = 4*1 = 4; total = 1*(4-1) + 3 - 4 = 2 -> 1, 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 6, 4);
  EXPECT_INTS("pads", a->pads, 0, 1, 1, 1);
  cr_assert_str_eq(a->auto_pad, "NOTSET");
}

Test(conv_transpose, same_lower_puts_the_odd_pad_at_the_beginning) {
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 1, 3, 4)), f32("w", DIMS(1, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "SAME_LOWER";
  a->strides = INTS(2, 1);
  infer_ok();
  /* H: total 1 -> begin 1 - 1/2 = 1, end 0;  W: total 2 -> 1, 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 6, 4);
  EXPECT_INTS("pads", a->pads, 1, 1, 0, 1);
}

Test(conv_transpose, valid_ignores_explicit_pads) {
  kiln_node *n = NODE(KILN_OP_CONV_TRANSPOSE, "ct", f32("x", DIMS(1, 1, 3, 3)), f32("w", DIMS(1, 1, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->auto_pad = "VALID";
  a->strides = INTS(2, 2);
  a->pads = INTS(1, 1, 1, 1);
  infer_ok();
  /* 2*(3-1) + 3 = 7 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 7, 7);
  EXPECT_INTS("pads", a->pads, 0, 0, 0, 0);
}

Test(conv_transpose, channel_mismatch_names_the_node) {
  NODE(KILN_OP_CONV_TRANSPOSE, "up", f32("x", DIMS(1, 3, 5, 5)), f32("w", DIMS(4, 2, 3, 3)));
  infer_fails("node 'up' (ConvTranspose)", "expects 4 input channels");
}

/* ---- pooling ---- */

Test(pool, max_pool_halves_with_stride_two_and_types_indices) {
  kiln_node *n = NODE_OUTS(KILN_OP_MAX_POOL, "mp", 2, f32("x", DIMS(1, 3, 32, 31)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(2, 2);
  a->strides = INTS(2, 2);
  infer_ok();
  /* H: (32 - 2)/2 + 1 = 16;  W: (31 - 2)/2 + 1 = 14 + 1 = 15 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 3, 16, 15);
  EXPECT_SHAPE(n->out[1], KILN_DT_I64, 1, 3, 16, 15);
}

Test(pool, ceil_mode_rounds_the_window_count_up) {
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp", f32("x", DIMS(1, 1, 6, 6)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3, 3);
  a->strides = INTS(2, 2);
  a->ceil_mode = 1;
  infer_ok();
  /* ceil((6 - 3) / 2) + 1 = ceil(1.5) + 1 = 3; last window starts at
   * (3-1)*2 = 4 < 6, inside the input */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 3, 3);
}

Test(pool, floor_mode_rounds_the_window_count_down) {
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp", f32("x", DIMS(1, 1, 6, 6)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3, 3);
  a->strides = INTS(2, 2);
  infer_ok();
  /* floor(1.5) + 1 = 2 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 2, 2);
}

Test(pool, ceil_mode_drops_a_last_window_starting_in_the_right_padding) {
  kiln_node *n = NODE(KILN_OP_AVERAGE_POOL, "ap", f32("x", DIMS(1, 1, 5, 6)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(2, 3);
  a->strides = INTS(2, 2);
  a->pads = INTS(1, 0, 1, 0);
  a->ceil_mode = 1;
  infer_ok();
  /* H: ceil((5 + 2 - 2) / 2) + 1 = ceil(2.5) + 1 = 4, but window 4 would
   *    start at (4-1)*2 = 6 >= 5 + 1 (input + left pad): it lies wholly in
   *    the right padding and is dropped -> 3
   * W: ceil((6 - 3) / 2) + 1 = 3, last start 4 < 6 -> 3 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 3, 3);
}

Test(pool, same_rule_without_ceil_mode_keeps_floor) {
  kiln_node *n = NODE(KILN_OP_AVERAGE_POOL, "ap", f32("x", DIMS(1, 1, 5, 6)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(2, 3);
  a->strides = INTS(2, 2);
  a->pads = INTS(1, 0, 1, 0);
  infer_ok();
  /* H: floor(5/2) + 1 = 3;  W: floor(3/2) + 1 = 2 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 3, 2);
}

Test(pool, dilations_widen_the_window) {
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp", f32("x", DIMS(1, 1, 10, 10)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3, 3);
  a->dilations = INTS(2, 2);
  a->strides = INTS(1, 2);
  infer_ok();
  /* k_eff = (3-1)*2+1 = 5; H: (10-5)/1+1 = 6; W: (10-5)/2+1 = 3 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 6, 3);
  EXPECT_INTS("dilations", a->dilations, 2, 2);
}

Test(pool, same_upper_average_pool_resolves_pads) {
  kiln_node *n = NODE(KILN_OP_AVERAGE_POOL, "ap", f32("x", DIMS(1, 1, 5, 5)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3, 3);
  a->strides = INTS(2, 2);
  a->auto_pad = "SAME_UPPER";
  infer_ok();
  /* out = ceil(5/2) = 3; total = 2*2 + 3 - 5 = 2 -> 1, 1 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 1, 1, 3, 3);
  EXPECT_INTS("pads", a->pads, 1, 1, 1, 1);
  cr_assert_str_eq(a->auto_pad, "NOTSET");
}

Test(pool, one_dimensional_max_pool) {
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp", f32("x", DIMS(2, 4, 9)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3);
  a->strides = INTS(3);
  infer_ok();
  /* (9 - 3)/3 + 1 = 3 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 4, 3);
}

Test(pool, global_average_pool_reduces_every_spatial_dim_to_one) {
  kiln_node *n2 = NODE(KILN_OP_GLOBAL_AVERAGE_POOL, "gap", f32("x", DIMS(2, 64, 7, 7)));
  kiln_node *n3 = NODE(KILN_OP_GLOBAL_AVERAGE_POOL, "gap3", f32("x3", DIMS(1, 8, 4, 5, 6)));
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *nm = NODE(KILN_OP_GLOBAL_MAX_POOL, "gmp", f32("xs", DIMS(N, 16, 9, 9)));
  infer_ok();
  EXPECT_SHAPE(n2->out[0], KILN_DT_F32, 2, 64, 1, 1);
  EXPECT_SHAPE(n3->out[0], KILN_DT_F32, 1, 8, 1, 1, 1);
  EXPECT_SHAPE(nm->out[0], KILN_DT_F32, N, 16, 1, 1);
}

Test(pool, symbolic_batch_passes_through) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp", f32("x", DIMS(N, 8, 9, 9)));
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = INTS(3, 3);
  a->strides = INTS(2, 2);
  a->pads = INTS(1, 1, 1, 1);
  infer_ok();
  /* (9 + 2 - 3) / 2 + 1 = 5 */
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, N, 8, 5, 5);
}

Test(pool, pool_without_spatial_dims_is_rejected) {
  kiln_node *n = NODE(KILN_OP_MAX_POOL, "mp2d", f32("x", DIMS(4, 5)));
  ((kiln_attrs_pool *)n->attrs)->kernel_shape = INTS(2);
  infer_fails("node 'mp2d' (MaxPool)", "X must be");
}

/* ---- Gemm ---- */

Test(gemm, plain_product_is_m_by_n) {
  kiln_node *n = NODE(KILN_OP_GEMM, "fc", f32("a", DIMS(4, 3)), f32("b", DIMS(3, 5)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 5);
}

Test(gemm, trans_a_and_trans_b_swap_operand_dims) {
  /* A^T is 4x3, B^T is 3x5 */
  kiln_node *n = NODE(KILN_OP_GEMM, "fc", f32("a", DIMS(3, 4)), f32("b", DIMS(5, 3)));
  kiln_attrs_gemm *a = n->attrs;
  a->transA = 1;
  a->transB = 1;
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 4, 5);
}

Test(gemm, c_broadcasts_unidirectionally_to_m_by_n) {
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *n1 = NODE(KILN_OP_GEMM, "g1", f32("a1", DIMS(4, 3)), f32("b1", DIMS(3, 5)), f32("c1", DIMS(5)));
  kiln_node *n2 = NODE(KILN_OP_GEMM, "g2", f32("a2", DIMS(4, 3)), f32("b2", DIMS(3, 5)), f32("c2", DIMS(4, 1)));
  kiln_node *n3 = NODE(KILN_OP_GEMM, "g3", f32("a3", DIMS(4, 3)), f32("b3", DIMS(3, 5)), f32("c3", 0, NULL));
  kiln_node *n4 = NODE(KILN_OP_GEMM, "g4", f32("a4", DIMS(4, 3)), f32("b4", DIMS(3, 5)), f32("c4", DIMS(4, 5)));
  kiln_node *n5 = NODE(KILN_OP_GEMM, "g5", f32("a5", DIMS(N, 3)), f32("b5", DIMS(3, 5)), f32("c5", DIMS(1, 5)));
  infer_ok();
  EXPECT_SHAPE(n1->out[0], KILN_DT_F32, 4, 5);
  EXPECT_SHAPE(n2->out[0], KILN_DT_F32, 4, 5);
  EXPECT_SHAPE(n3->out[0], KILN_DT_F32, 4, 5);
  EXPECT_SHAPE(n4->out[0], KILN_DT_F32, 4, 5);
  EXPECT_SHAPE(n5->out[0], KILN_DT_F32, N, 5);
}

Test(gemm, c_that_would_grow_the_result_is_rejected) {
  /* C [2,4,5] broadcasts with [4,5] but to a bigger shape */
  NODE(KILN_OP_GEMM, "fc_c", f32("a", DIMS(4, 3)), f32("b", DIMS(3, 5)), f32("c", DIMS(2, 4, 5)));
  infer_fails("node 'fc_c' (Gemm)", "does not broadcast to [4,5]");
}

Test(gemm, c_of_incompatible_shape_is_rejected) {
  NODE(KILN_OP_GEMM, "fc_c", f32("a", DIMS(4, 3)), f32("b", DIMS(3, 5)), f32("c", DIMS(4)));
  infer_fails("node 'fc_c' (Gemm)", "broadcast");
}

Test(gemm, inner_dim_mismatch_names_the_node) {
  kiln_node *n = NODE(KILN_OP_GEMM, "fc_bad", f32("a", DIMS(3, 4)), f32("b", DIMS(5, 6)));
  (void)n;
  infer_fails("node 'fc_bad' (Gemm)", "inner dims differ");
}

Test(gemm, trans_b_mismatch_reports_both_k) {
  kiln_node *n = NODE(KILN_OP_GEMM, "fc_t", f32("a", DIMS(2, 4)), f32("b", DIMS(4, 5)));
  ((kiln_attrs_gemm *)n->attrs)->transB = 1; /* B^T is 5x4: K = 5, A has K = 4 */
  infer_fails("node 'fc_t' (Gemm)", "K=5");
}

/* ---- MatMul (numpy matmul semantics) ---- */

Test(matmul, matrices) {
  kiln_node *n = NODE(KILN_OP_MATMUL, "mm", f32("a", DIMS(3, 4)), f32("b", DIMS(4, 5)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 3, 5);
}

Test(matmul, one_dimensional_operands_lose_their_added_dim) {
  /* [4] @ [4,5]: A becomes [1,4], result [1,5] -> [5]
   * [3,4] @ [4]: B becomes [4,1], result [3,1] -> [3]
   * [4] @ [4]: a scalar */
  kiln_node *va = NODE(KILN_OP_MATMUL, "vm", f32("v1", DIMS(4)), f32("m1", DIMS(4, 5)));
  kiln_node *mv = NODE(KILN_OP_MATMUL, "mv", f32("m2", DIMS(3, 4)), f32("v2", DIMS(4)));
  kiln_node *vv = NODE(KILN_OP_MATMUL, "vv", f32("v3", DIMS(4)), f32("v4", DIMS(4)));
  kiln_node *vb = NODE(KILN_OP_MATMUL, "vb", f32("v5", DIMS(4)), f32("b5", DIMS(2, 4, 5)));
  infer_ok();
  EXPECT_SHAPE(va->out[0], KILN_DT_F32, 5);
  EXPECT_SHAPE(mv->out[0], KILN_DT_F32, 3);
  EXPECT_SCALAR(vv->out[0], KILN_DT_F32);
  EXPECT_SHAPE(vb->out[0], KILN_DT_F32, 2, 5);
}

Test(matmul, batch_dims_broadcast) {
  /* batch [2,1] with [5] -> [2,5]; matrices [3,4] @ [4,6] -> [3,6] */
  kiln_node *n = NODE(KILN_OP_MATMUL, "bmm", f32("a", DIMS(2, 1, 3, 4)), f32("b", DIMS(5, 4, 6)));
  kiln_dim N = kiln_graph_sym(g, "N");
  kiln_node *s = NODE(KILN_OP_MATMUL, "smm", f32("sa", DIMS(N, 3, 4)), f32("sb", DIMS(4, 5)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 5, 3, 6);
  EXPECT_SHAPE(s->out[0], KILN_DT_F32, N, 3, 5);
}

Test(matmul, batched_matrix_times_vector) {
  /* [2,3,4] @ [4]: B becomes [4,1]; [2,3,1] -> [2,3] */
  kiln_node *n = NODE(KILN_OP_MATMUL, "bmv", f32("a", DIMS(2, 3, 4)), f32("v", DIMS(4)));
  infer_ok();
  EXPECT_SHAPE(n->out[0], KILN_DT_F32, 2, 3);
}

Test(matmul, inner_dim_mismatch_names_the_node) {
  NODE(KILN_OP_MATMUL, "mm_bad", f32("a", DIMS(2, 3, 4)), f32("b", DIMS(5, 6)));
  infer_fails("node 'mm_bad' (MatMul)", "inner dims differ");
}

Test(matmul, batch_mismatch_names_the_node) {
  NODE(KILN_OP_MATMUL, "mm_batch", f32("a", DIMS(2, 3, 4)), f32("b", DIMS(3, 4, 5)));
  infer_fails("node 'mm_batch' (MatMul)", "do not broadcast");
}

/* ---- symbolic spatial dims (kiln inspect keeps H and W symbolic) ---- */

static const char *sym_of(kiln_dim d) { return KILN_DIM_IS_SYM(d) ? g->syms[-d - 1] : "(static)"; }

Test(conv, symbolic_spatial_dims_become_formula_dims) {
  kiln_dim N = kiln_graph_sym(g, "N"), H = kiln_graph_sym(g, "H"), W = kiln_graph_sym(g, "W");
  kiln_node *n = NODE(KILN_OP_CONV, "c", f32("x", DIMS(N, 3, H, W)), f32("w", DIMS(8, 3, 3, 3)));
  kiln_attrs_conv *a = n->attrs;
  a->strides = INTS(2, 1);
  a->pads = INTS(1, 1, 1, 1);
  infer_ok();
  /* H: floor((H + 2 - 3) / 2) + 1; W: stride 1, pads 1+1 = k - 1: W itself */
  cr_assert_eq(n->out[0]->dims[0], N);
  cr_assert_eq(n->out[0]->dims[1], 8);
  cr_assert_str_eq(sym_of(n->out[0]->dims[2]), "floor((H-1)/2)+1");
  cr_assert_eq(n->out[0]->dims[3], W);
}

Test(pool, symbolic_spatial_dims_with_same_padding_and_ceil_mode) {
  kiln_dim H = kiln_graph_sym(g, "H"), W = kiln_graph_sym(g, "W");
  kiln_node *m = NODE(KILN_OP_MAX_POOL, "p", f32("x", DIMS(1, 4, H, W)));
  kiln_attrs_pool *a = m->attrs;
  a->kernel_shape = INTS(3, 3);
  a->strides = INTS(2, 2);
  a->auto_pad = "SAME_UPPER";
  kiln_node *q = NODE(KILN_OP_AVERAGE_POOL, "q", m->out[0]);
  kiln_attrs_pool *b = q->attrs;
  b->kernel_shape = INTS(2, 2);
  b->strides = INTS(2, 2);
  b->ceil_mode = 1;
  infer_ok();
  cr_assert_str_eq(sym_of(m->out[0]->dims[2]), "ceil(H/2)");
  cr_assert_str_eq(sym_of(m->out[0]->dims[3]), "ceil(W/2)");
  /* the same formula for the same extent: one symbol */
  cr_assert_str_eq(sym_of(q->out[0]->dims[2]), "ceil(((ceil(H/2))-2)/2)+1");
  cr_assert_eq(kiln_graph_sym(g, "ceil(H/2)"), m->out[0]->dims[2]);
}
