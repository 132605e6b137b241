/* The DSL's language: what each construct builds.  Every test writes a
 * small network, loads it and checks the graph: which ONNX ops, which
 * attributes, which shapes (worked out by hand in comments), which names,
 * which parameters. */
#include "dsl_test.h" /* first: it sets _XOPEN_SOURCE */

#include <math.h>

#include "frontend/onnx/kiln_onnx.h"

TestSuite(dsl, .init = dsl_setup, .fini = dsl_teardown);

Test(dsl, conv_stack_lowers_to_one_node_per_op_with_inferred_shapes) {
  load_ok("network n {\n"
          "  input x: [N, 3, 32, 32]\n"
          "  c1: conv(16, 3x3, stride=2, pad=1, bias=false) -> bn1: batchnorm -> relu\n"
          "  maxpool(2x2) -> global_avgpool -> flatten -> fc: dense(10) -> softmax\n"
          "}\n");
  cr_assert_eq(g->nnodes, 8);
  kiln_node *c = node_named("c1");
  cr_assert(c && c->op == KILN_OP_CONV && c->nin == 2, "c1 is a Conv without bias");
  kiln_attrs_conv *a = c->attrs;
  cr_assert_eq(a->strides.v[0], 2);
  cr_assert_eq(a->pads.n, 4);
  /* (32 + 2 - 3) / 2 + 1 = 16 */
  EXPECT_DIMS(c->out[0], g->inputs[0]->dims[0], 16, 16, 16);
  cr_assert_eq(node_named("bn1")->op, KILN_OP_BATCH_NORM);
  cr_assert_eq(node_named("relu1")->op, KILN_OP_RELU);
  cr_assert_eq(node_named("maxpool1")->op, KILN_OP_MAX_POOL);
  kiln_node *fc = node_named("fc");
  cr_assert_eq(fc->op, KILN_OP_GEMM);
  cr_assert_eq(((kiln_attrs_gemm *)fc->attrs)->transB, 1);
  EXPECT_DIMS(fc->in[1], 10, 16); /* PyTorch layout [out, in] */
  cr_assert_eq(((kiln_attrs_softmax *)node_named("softmax1")->attrs)->axis, 1);
  cr_assert_eq(g->noutputs, 1);
  cr_assert_str_eq(g->outputs[0]->name, "softmax1");
  cr_assert_eq(g->nsyms, 1);
  cr_assert_str_eq(g->syms[0], "N");
}

Test(dsl, nodes_carry_their_source_location) {
  load_ok("network n {\n  input x: [1, 3, 8, 8]\n\n  relu -> c: conv(4, 1x1)\n}\n");
  kiln_node *c = node_named("c");
  cr_assert_eq(c->loc.line, 4);
  cr_assert_eq(c->loc.col, 14);
  cr_assert_str_eq(c->loc.op_type, "conv");
}

Test(dsl, padding_same_valid_and_explicit_pairs) {
  load_ok("network n {\n  input x: [1, 2, 9, 9]\n"
          "  a: conv(2, 3x3, stride=2, pad=same)\n"
          "  b: conv(2, 3x3, pad=valid)\n"
          "  c: conv(2, 3x3, pad=[0, 1, 2, 3])\n}\n");
  /* same: ceil(9 / 2) = 5; valid: 5 - 2 = 3; [0,1 | 2,3]: (3+0+2-3)+1 = 3, (3+1+3-3)+1 = 5 */
  EXPECT_DIMS(node_named("a")->out[0], 1, 2, 5, 5);
  EXPECT_DIMS(node_named("b")->out[0], 1, 2, 3, 3);
  EXPECT_DIMS(node_named("c")->out[0], 1, 2, 3, 5);
}

Test(dsl, depthwise_groups_dilation_and_3d) {
  load_ok("network n {\n  input x: [1, 8, 16, 16, 16]\n"
          "  dw: depthwise(3x3x3, pad=2, dilation=2, multiplier=2)\n"
          "  g: conv(4, 1, groups=4)\n}\n");
  kiln_node *dw = node_named("dw");
  cr_assert_eq(((kiln_attrs_conv *)dw->attrs)->group, 8);
  EXPECT_DIMS(dw->in[1], 16, 1, 3, 3, 3);
  /* dilated extent 5, padding 2+2: 16 + 4 - 5 + 1 = 16 */
  EXPECT_DIMS(dw->out[0], 1, 16, 16, 16, 16);
  EXPECT_DIMS(node_named("g")->in[1], 4, 4, 1, 1, 1);
}

Test(dsl, transposed_conv_upsample_concat_and_add) {
  load_ok("network n {\n  input x: [1, 4, 8, 8]\n"
          "  skip = _\n"
          "  up: conv_transpose(2, 2x2, stride=2)\n"
          "  rs = skip -> upsample(2)\n"
          "  (rs, _) -> cat: concat\n"
          "  s: add(_, _)\n}\n");
  kiln_node *up = node_named("up");
  cr_assert_eq(up->op, KILN_OP_CONV_TRANSPOSE);
  EXPECT_DIMS(up->in[1], 4, 2, 2, 2); /* ONNX layout [in, out/group, k, k] */
  EXPECT_DIMS(up->out[0], 1, 2, 16, 16);
  cr_assert_eq(value_named("rs") == NULL, 1, "a variable is not a tensor name");
  kiln_node *rs = node_named("upsample1");
  cr_assert_eq(rs->op, KILN_OP_RESIZE);
  EXPECT_DIMS(rs->out[0], 1, 4, 16, 16);
  kiln_node *cat = node_named("cat");
  cr_assert_eq(cat->in[0], rs->out[0], "tuple order is kept");
  EXPECT_DIMS(cat->out[0], 1, 6, 16, 16);
  kiln_node *s = node_named("s.1"), *s2 = node_named("s");
  cr_assert(s && s2, "three tensors make two Adds");
  cr_assert_eq(s2->in[0], s->out[0]);
}

Test(dsl, activations_and_heads) {
  load_ok("network n {\n  input x: [2, 6]\n"
          "  leaky_relu(0.2) -> relu6 -> elu -> hard_swish -> tanh -> identity -> dropout(0.1)\n"
          "  multi = sigmoid\n  reg = dense(1)\n  classes = log_softmax\n"
          "  output labels = multi\n  output value = reg\n  output cls = classes\n}\n");
  cr_assert_eq(((kiln_attrs_leaky_relu *)node_named("leaky_relu1")->attrs)->alpha, 0.2f);
  kiln_node *clip = node_named("relu61");
  cr_assert_eq(clip->op, KILN_OP_CLIP);
  cr_assert_eq(*(const float *)clip->in[2]->data, 6.0f);
  cr_assert_eq(node_named("dropout1")->op, KILN_OP_DROPOUT);
  cr_assert_eq(g->noutputs, 3);
  cr_assert_str_eq(g->outputs[0]->name, "labels");
  cr_assert_eq(g->outputs[0]->producer->op, KILN_OP_SIGMOID);
  EXPECT_DIMS(g->outputs[1], 2, 1);
}

Test(dsl, blocks_take_parameters_and_name_their_layers) {
  load_ok("block unit(width, k=3) {\n"
          "  c: conv(width, k, pad=k // 2) -> relu\n"
          "}\n"
          "network n {\n  input x: [1, 3, 8, 8]\n"
          "  unit(4)\n  stem: unit(8, k=5)\n  unit(width=2)\n}\n");
  cr_assert(node_named("unit1.c") && node_named("stem.c") && node_named("unit2.c"), "names from the call sites");
  EXPECT_DIMS(node_named("stem.c")->in[1], 8, 4, 5, 5);
  EXPECT_DIMS(node_named("unit2.c")->out[0], 1, 2, 8, 8);
  cr_assert(value_named("stem.c.weight") && value_named("stem.c.bias"));
}

Test(dsl, repetition_and_loops) {
  load_ok("widths = [4, 8]\n"
          "network n {\n  input x: [1, 3, 8, 8]\n"
          "  stage: repeat 2 { c: conv(4, 1x1) }\n"
          "  for w in widths { conv(w, 1x1) }\n"
          "  for a, b in [[1, 2], [3, 4]] { conv(a + b, 1x1) }\n"
          "  for i in range(3) { if i % 2 == 0 { relu } else { sigmoid } }\n}\n");
  cr_assert(node_named("stage.0.c") && node_named("stage.1.c"));
  cr_assert(node_named("conv1") && node_named("conv2") && node_named("conv3") && node_named("conv4"));
  EXPECT_DIMS(node_named("conv4")->out[0], 1, 7, 8, 8);
  cr_assert(node_named("relu1") && node_named("relu2") && node_named("sigmoid1") && !node_named("relu3"));
}

Test(dsl, expressions_follow_python) {
  load_ok("network n {\n  input x: [1, 3, 8, 8]\n"
          "  a = 7 // 2 + -7 // 2 * 10 + 7 % -3\n" /* 3 + (-4)*10 + (-2) = -39 */
          "  b = [1, 2] + [3]\n"
          "  c = int(2.5 * 2) if len(b) == 3 and not false else 0\n"
          "  conv(-a + c + b[-1] + max(1, 2) + _.channels, 1x1)\n}\n"); /* 39 + 5 + 3 + 2 + 3 */
  EXPECT_DIMS(node_named("conv1")->out[0], 1, 52, 8, 8);
}

Test(dsl, recursion_with_a_base_case) {
  load_ok("block tower(depth) {\n  relu\n  if depth > 0 { tower(depth - 1) }\n}\n"
          "network n {\n  input x: [1, 1, 4, 4]\n  tower(5)\n}\n");
  cr_assert_eq(g->nnodes, 6);
  cr_assert(node_named("tower1.tower1.tower1.tower1.tower1.tower1.relu1"));
}

Test(dsl, initializers_are_seeded_and_deterministic) {
  const char *src = "network n {\n  seed 7\n  input x: [1, 64, 4, 4]\n  a: conv(64, 3x3, pad=1)\n"
                    "  b: conv(64, 3x3, pad=1, init=xavier, bias_init=constant(0.5))\n  c: conv(64, 3x3, pad=1, seed=99)\n}\n";
  load_ok(src);
  enum { NW = 64 * 64 * 9 };
  static float first[NW];
  memcpy(first, value_named("a.weight")->data, sizeof first);
  load_ok(src);
  cr_assert(!memcmp(first, value_named("a.weight")->data, sizeof first), "same seed, same weights");
  cr_assert(memcmp(first, value_named("b.weight")->data, sizeof first), "every parameter has its own stream");
  /* He normal: std sqrt(2 / (64 * 9)) = 0.0589; xavier uniform: limit sqrt(6 / 1152) = 0.0722 */
  double s2 = 0, mx = 0;
  const float *w = value_named("a.weight")->data, *x = value_named("b.weight")->data;
  for (int i = 0; i < NW; i++) {
    s2 += (double)w[i] * w[i];
    mx = fmax(mx, fabs(x[i]));
  }
  cr_assert(fabs(sqrt(s2 / NW) - 0.0589) < 0.002, "He std %g", sqrt(s2 / NW));
  cr_assert(mx <= 0.0722 && mx > 0.07, "xavier limit %g", mx);
  cr_assert_eq(((const float *)value_named("b.bias")->data)[5], 0.5f);
  cr_assert_eq(((const float *)value_named("a.bias")->data)[5], 0.0f, "biases start at zero");
  memcpy(first, value_named("c.weight")->data, sizeof first);
  load_ok("network n {\n  seed 8\n  input x: [1, 64, 4, 4]\n  a: conv(64, 3x3, pad=1)\n  c: conv(64, 3x3, pad=1, seed=99)\n}\n");
  cr_assert(!memcmp(first, value_named("c.weight")->data, sizeof first), "a layer's seed= wins over the network's");
}

Test(dsl, batchnorm_statistics_are_not_learnable) {
  load_ok("network n {\n  input x: [1, 5, 4, 4]\n  bn: batchnorm(eps=0.001)\n}\n");
  kiln_node *bn = node_named("bn");
  cr_assert_eq(bn->nin, 5);
  cr_assert_str_eq(bn->in[3]->name, "bn.running_mean");
  cr_assert_eq(((const float *)bn->in[4]->data)[0], 1.0f);
  cr_assert_eq(((kiln_attrs_batchnorm *)bn->attrs)->epsilon, 0.001f);
}

Test(dsl, comments_semicolons_and_continued_chains) {
  load_ok("# a comment\nnetwork n { # here too\n  input x: [1, 3, 4, 4]; relu\n"
          "  conv(2, 1x1)\n    -> relu   # a chain may continue\n    -> sigmoid\n}\n");
  cr_assert_eq(g->nnodes, 4);
}

Test(dsl, export_round_trips_through_the_onnx_importer) {
  load_ok("network n {\n  input x: [N, 3, 8, 8]\n  c: conv(4, 3x3, pad=1) -> bn: batchnorm -> relu6\n"
          "  p: avgpool(2x2) -> flatten -> d: dense(3)\n  output y\n}\n");
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  char path[128];
  snprintf(path, sizeof path, "%s/n.onnx", tmpdir);
  cr_assert_eq(kiln_onnx_export(g, path, &d), 0, "%s", d.msg);
  kiln_diag d2 = {0};
  kiln_graph *h = kiln_onnx_load(path, &d2);
  cr_assert(h, "%s", d2.msg);
  cr_assert_eq(kiln_pass_infer_shapes(h, &d2), 0, "%s", d2.msg);
  cr_assert_eq(h->opset, 17);
  cr_assert_eq(h->nnodes, g->nnodes);
  for (int i = 0; i < g->nnodes; i++) cr_assert_eq(h->nodes[i]->op, g->nodes[i]->op);
  cr_assert_str_eq(h->outputs[0]->name, "y");
  cr_assert_eq(h->outputs[0]->dims[1], 3);
  cr_assert(KILN_DIM_IS_SYM(h->inputs[0]->dims[0]), "the batch stays symbolic");
  kiln_value *w = NULL;
  for (int i = 0; i < h->nvalues; i++)
    if (!strcmp(h->values[i]->name, "c.weight")) w = h->values[i];
  cr_assert(w && !memcmp(w->data, value_named("c.weight")->data, 4 * 3 * 9 * 4), "weights survive");
  kiln_graph_free(h);
}

Test(dsl, weights_load_by_name_from_an_onnx_file) {
  const char *net = "network n {\n  %s\n  input x: [1, 2, 4, 4]\n  c: conv(3, 3x3) -> bn: batchnorm\n}\n";
  char src[256];
  snprintf(src, sizeof src, net, "seed 1");
  load_ok(src);
  char path[128];
  snprintf(path, sizeof path, "%s/w.onnx", tmpdir);
  cr_assert_eq(kiln_onnx_export(g, path, &d), 0, "%s", d.msg);
  float w0[3 * 2 * 9];
  memcpy(w0, value_named("c.weight")->data, sizeof w0);
  snprintf(src, sizeof src, net, "weights \"w.onnx\"");
  load_ok(src);
  cr_assert(!memcmp(w0, value_named("c.weight")->data, sizeof w0));
  cr_assert_eq(((const float *)value_named("bn.running_var")->data)[2], 1.0f);
}

/* A stored (uncompressed) .npz built by hand: one entry "c.weight.npy". */
static size_t make_npz(unsigned char *z, const char *entry, const char *descr, const char *shape, const void *data,
                       size_t nbytes) {
  char hdr[128];
  int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
  while ((10 + hl + 1) % 16) hdr[hl++] = ' ';
  hdr[hl++] = '\n';
  unsigned char npy[512];
  size_t nl = 0;
  memcpy(npy, "\x93NUMPY\x01\x00", 8);
  npy[8] = (unsigned char)hl;
  npy[9] = 0;
  memcpy(npy + 10, hdr, (size_t)hl);
  memcpy(npy + 10 + hl, data, nbytes);
  nl = 10 + (size_t)hl + nbytes;
  size_t name_len = strlen(entry), p = 0;
#define U16(v) (z[p++] = (unsigned char)(v), z[p++] = (unsigned char)((v) >> 8))
#define U32(v) (U16((v) & 0xFFFF), U16(((v) >> 16) & 0xFFFF))
  U32(0x04034b50u); U16(20); U16(0); U16(0); U16(0); U16(0); U32(0u); U32((unsigned)nl); U32((unsigned)nl);
  U16(name_len); U16(0);
  memcpy(z + p, entry, name_len); p += name_len;
  memcpy(z + p, npy, nl); p += nl;
  size_t cd = p;
  U32(0x02014b50u); U16(20); U16(20); U16(0); U16(0); U16(0); U16(0); U32(0u); U32((unsigned)nl); U32((unsigned)nl);
  U16(name_len); U16(0); U16(0); U16(0); U16(0); U32(0u); U32(0u);
  memcpy(z + p, entry, name_len); p += name_len;
  size_t cdsize = p - cd;
  U32(0x06054b50u); U16(0); U16(0); U16(1); U16(1); U32((unsigned)cdsize); U32((unsigned)cd); U16(0);
#undef U16
#undef U32
  return p;
}

Test(dsl, weights_load_from_a_stored_npz_and_convert_f64) {
  double w[4 * 3] = {0};
  for (int i = 0; i < 12; i++) w[i] = 0.25 * i;
  unsigned char z[1024];
  write_file("w.npz", z, make_npz(z, "d.weight.npy", "<f8", "(4, 3)", w, sizeof w));
  load_ok("network n {\n  weights \"w.npz\"\n  input x: [1, 3]\n  d: dense(4, bias=false)\n}\n");
  cr_assert_eq(((const float *)value_named("d.weight")->data)[11], 2.75f);
}
