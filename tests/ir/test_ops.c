/* ir/ops.c, ir/ops.def, ir/attrs.def: the op table, the signature
 * mini-language and the typed attribute defaults. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>

#include "ir_test.h"

/* ---- the op table as a whole ---- */

Test(op_table, every_op_has_a_name_a_shape_function_and_an_attribute_schema) {
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)op);
    cr_assert(info, "op %d has no table entry", op);
    cr_assert(info->name && info->name[0], "op %d has no name", op);
    /* ONNX op types are CamelCase identifiers (kiln's own rows: "kiln." and one) */
    const char *id = strncmp(info->name, "kiln.", 5) ? info->name : info->name + 5;
    cr_assert(isupper((unsigned char)id[0]), "op '%s' does not start upper-case", info->name);
    for (const char *p = id; *p; p++) cr_assert(isalnum((unsigned char)*p), "op name '%s'", info->name);
    cr_assert(info->shape, "op '%s' has no shape function", info->name);
    cr_assert(info->attrs && info->attrs->kind && info->attrs->fields, "op '%s' has no attribute schema", info->name);
    cr_assert_gt(info->attrs->size, 0);
  }
}

Test(op_table, out_of_range_ops_have_no_entry) {
  cr_assert_null(kiln_op_get(KILN_OP_COUNT));
  cr_assert_null(kiln_op_get((kiln_op)-1));
}

/* A slot name is an identifier after the optional #/% prefix. */
static void check_sig(const char *op, const char *sig, int want_min_at_least) {
  int lo, hi;
  kiln_sig_arity(sig, &lo, &hi);
  cr_assert_geq(lo, want_min_at_least, "%s '%s': min arity %d", op, sig, lo);
  cr_assert_leq(lo, hi, "%s '%s': min %d > max %d", op, sig, lo, hi);
  int finite = hi != INT_MAX;
  int nslots = finite ? hi : lo + 3; /* a variadic tail repeats: probe past it */
  for (int i = 0; i < nslots; i++) {
    kiln_slot s;
    cr_assert(kiln_sig_slot(sig, i, &s), "%s '%s': slot %d does not parse", op, sig, i);
    cr_assert_gt(s.name_len, 0, "%s '%s': slot %d has an empty name", op, sig, i);
    for (int c = 0; c < s.name_len; c++)
      cr_assert(isalnum((unsigned char)s.name[c]) || s.name[c] == '_', "%s '%s': slot %d name '%.*s'", op, sig, i,
                s.name_len, s.name);
    cr_assert(!(s.constant && s.stat), "%s '%s': slot %d both # and %%", op, sig, i);
    /* required slots come first: arity min counts exactly them (a `+`
     * slot is required once, then repeats) */
    if (!(s.variadic && !s.optional))
      cr_assert_eq(!s.optional, i < lo, "%s '%s': slot %d optional=%d but min arity %d", op, sig, i, s.optional, lo);
  }
  if (finite) {
    kiln_slot s;
    cr_assert_not(kiln_sig_slot(sig, hi, &s), "%s '%s': slot %d exists past max arity %d", op, sig, hi, hi);
  }
}

Test(op_table, every_signature_parses_into_named_slots) {
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const kiln_op_info *info = kiln_op_get((kiln_op)op);
    /* every op reads at least one input and produces at least one output */
    check_sig(info->name, info->inputs, 1);
    check_sig(info->name, info->outputs, 1);
  }
}

Test(op_table, op_find_round_trips_every_name) {
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const char *name = kiln_op_get((kiln_op)op)->name;
    cr_assert_eq(kiln_op_find(name), op, "kiln_op_find(\"%s\") = %d, expected %d", name, kiln_op_find(name), op);
  }
}

Test(op_table, op_find_knows_onnx_names_and_rejects_others) {
  cr_assert_eq(kiln_op_find("Conv"), KILN_OP_CONV);
  cr_assert_eq(kiln_op_find("BatchNormalization"), KILN_OP_BATCH_NORM);
  cr_assert_eq(kiln_op_find("GlobalAveragePool"), KILN_OP_GLOBAL_AVERAGE_POOL);
  cr_assert_eq(kiln_op_find("NoSuchOp"), -1);
  cr_assert_eq(kiln_op_find("conv"), -1, "ONNX op types are case-sensitive");
  cr_assert_eq(kiln_op_find(""), -1);
}

/* ---- signature mini-language ---- */

Test(signature, optional_trailing_slot_gives_a_range_of_arities) {
  int lo, hi;
  kiln_sig_arity("X W B?", &lo, &hi);
  cr_assert_eq(lo, 2);
  cr_assert_eq(hi, 3);
  kiln_slot s;
  cr_assert(kiln_sig_slot("X W B?", 1, &s));
  cr_assert_eq(s.name_len, 1);
  cr_assert_eq(s.name[0], 'W');
  cr_assert_not(s.optional);
  cr_assert(kiln_sig_slot("X W B?", 2, &s));
  cr_assert_eq(s.name_len, 1);
  cr_assert_eq(s.name[0], 'B');
  cr_assert(s.optional);
  cr_assert_not(s.variadic);
  cr_assert_not(s.constant);
  cr_assert_not(kiln_sig_slot("X W B?", 3, &s));
}

Test(signature, plus_makes_a_variadic_slot_of_one_or_more) {
  int lo, hi;
  kiln_sig_arity("inputs+", &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, INT_MAX);
  kiln_slot s;
  /* any index past the start maps onto the repeating slot */
  cr_assert(kiln_sig_slot("inputs+", 5, &s));
  cr_assert_eq(s.name_len, 6);
  cr_assert_eq(strncmp(s.name, "inputs", 6), 0);
  cr_assert(s.variadic);
  cr_assert_not(s.optional);
}

Test(signature, star_makes_a_variadic_slot_of_zero_or_more) {
  int lo, hi;
  kiln_sig_arity("a b*", &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, INT_MAX);
  kiln_slot s;
  cr_assert(kiln_sig_slot("a b*", 3, &s));
  cr_assert_eq(s.name[0], 'b');
  cr_assert(s.variadic);
  cr_assert(s.optional);
}

Test(signature, empty_signature_has_no_slots) {
  int lo, hi;
  kiln_sig_arity("", &lo, &hi);
  cr_assert_eq(lo, 0);
  cr_assert_eq(hi, 0);
  kiln_slot s;
  cr_assert_not(kiln_sig_slot("", 0, &s));
}

Test(signature, hash_marks_a_compile_time_constant_slot) {
  const kiln_op_info *info = kiln_op_get(KILN_OP_RESHAPE); /* "data #shape" */
  kiln_slot s;
  cr_assert(kiln_sig_slot(info->inputs, 0, &s));
  cr_assert_not(s.constant);
  cr_assert(kiln_sig_slot(info->inputs, 1, &s));
  cr_assert(s.constant);
  cr_assert_not(s.stat);
  cr_assert_not(s.optional);
  /* the prefix is not part of the name */
  cr_assert_eq(s.name_len, 5);
  cr_assert_eq(strncmp(s.name, "shape", 5), 0);
}

Test(signature, hash_and_question_mark_combine) {
  const kiln_op_info *info = kiln_op_get(KILN_OP_SPLIT); /* "input #split?" */
  int lo, hi;
  kiln_sig_arity(info->inputs, &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, 2);
  kiln_slot s;
  cr_assert(kiln_sig_slot(info->inputs, 1, &s));
  cr_assert(s.constant);
  cr_assert(s.optional);
  cr_assert_eq(strncmp(s.name, "split", (size_t)s.name_len), 0);
  /* outputs+ */
  kiln_sig_arity(info->outputs, &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, INT_MAX);
}

Test(signature, constant_of_shape_reads_a_single_constant_input) {
  const kiln_op_info *info = kiln_op_get(KILN_OP_CONSTANT_OF_SHAPE); /* "#input" */
  int lo, hi;
  kiln_sig_arity(info->inputs, &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, 1);
  kiln_slot s;
  cr_assert(kiln_sig_slot(info->inputs, 0, &s));
  cr_assert(s.constant);
  cr_assert_eq(s.name_len, 5);
}

Test(signature, percent_marks_running_statistics) {
  /* "X scale B %input_mean %input_var" ->
   * "Y running_mean? running_var? saved_mean? saved_var?" (saved_*: opset < 14) */
  const kiln_op_info *info = kiln_op_get(KILN_OP_BATCH_NORM);
  int lo, hi;
  kiln_sig_arity(info->inputs, &lo, &hi);
  cr_assert_eq(lo, 5);
  cr_assert_eq(hi, 5);
  static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (int i = 0; i < 5; i++) {
    kiln_slot s;
    cr_assert(kiln_sig_slot(info->inputs, i, &s));
    cr_assert_eq(s.name_len, (int)strlen(names[i]));
    cr_assert_eq(strncmp(s.name, names[i], strlen(names[i])), 0, "slot %d is '%.*s'", i, s.name_len, s.name);
    cr_assert_eq(s.stat, i >= 3, "slot %d stat=%d", i, s.stat);
    cr_assert_not(s.constant);
  }
  kiln_sig_arity(info->outputs, &lo, &hi);
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, 5);
}

Test(signature, optional_slots_after_constants_in_clip_and_slice) {
  int lo, hi;
  kiln_sig_arity(kiln_op_get(KILN_OP_CLIP)->inputs, &lo, &hi); /* "input #min? #max?" */
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, 3);
  kiln_sig_arity(kiln_op_get(KILN_OP_SLICE)->inputs, &lo, &hi); /* "data #starts #ends #axes? #steps?" */
  cr_assert_eq(lo, 3);
  cr_assert_eq(hi, 5);
  kiln_sig_arity(kiln_op_get(KILN_OP_RESIZE)->inputs, &lo, &hi); /* "X #roi? #scales? #sizes?" */
  cr_assert_eq(lo, 1);
  cr_assert_eq(hi, 4);
}

/* ---- attribute schemas and ONNX defaults ---- */

Test(attrs, conv_defaults_match_onnx) {
  kiln_attrs_conv a;
  memset(&a, 0x5a, sizeof a); /* init must overwrite everything */
  kiln_attrs_init(kiln_op_get(KILN_OP_CONV)->attrs, &a);
  cr_assert_eq(a.group, 1);
  cr_assert_str_eq(a.auto_pad, "NOTSET");
  /* empty lists mean "derive": kernel from W, strides/dilations 1, pads 0 */
  cr_assert_eq(a.kernel_shape.n, 0);
  cr_assert_eq(a.strides.n, 0);
  cr_assert_eq(a.dilations.n, 0);
  cr_assert_eq(a.pads.n, 0);
  cr_assert_eq(a.output_padding.n, 0);
  cr_assert_eq(a.output_shape.n, 0);
  /* ConvTranspose shares the schema */
  cr_assert_eq(kiln_op_get(KILN_OP_CONV_TRANSPOSE)->attrs, kiln_op_get(KILN_OP_CONV)->attrs);
  cr_assert_str_eq(kiln_op_get(KILN_OP_CONV)->attrs->kind, "conv");
  cr_assert_eq(kiln_op_get(KILN_OP_CONV)->attrs->size, sizeof(kiln_attrs_conv));
}

Test(attrs, activation_defaults_match_onnx) {
  kiln_attrs_leaky_relu lr;
  kiln_attrs_init(kiln_op_get(KILN_OP_LEAKY_RELU)->attrs, &lr);
  cr_assert_eq(lr.alpha, 0.01f);
  kiln_attrs_elu elu;
  kiln_attrs_init(kiln_op_get(KILN_OP_ELU)->attrs, &elu);
  cr_assert_eq(elu.alpha, 1.0f);
  kiln_attrs_selu selu; /* the ONNX defaults, exactly representable in float */
  kiln_attrs_init(kiln_op_get(KILN_OP_SELU)->attrs, &selu);
  cr_assert_eq(selu.alpha, 1.67326319217681884765625f);
  cr_assert_eq(selu.gamma, 1.05070102214813232421875f);
  kiln_attrs_hard_sigmoid hs;
  kiln_attrs_init(kiln_op_get(KILN_OP_HARD_SIGMOID)->attrs, &hs);
  cr_assert_eq(hs.alpha, 0.2f);
  cr_assert_eq(hs.beta, 0.5f);
}

Test(attrs, gemm_defaults_match_onnx) {
  kiln_attrs_gemm a;
  kiln_attrs_init(kiln_op_get(KILN_OP_GEMM)->attrs, &a);
  cr_assert_eq(a.alpha, 1.0f);
  cr_assert_eq(a.beta, 1.0f);
  cr_assert_eq(a.transA, 0);
  cr_assert_eq(a.transB, 0);
}

Test(attrs, normalisation_defaults_match_onnx) {
  kiln_attrs_batchnorm bn;
  kiln_attrs_init(kiln_op_get(KILN_OP_BATCH_NORM)->attrs, &bn);
  cr_assert_eq(bn.epsilon, 1e-5f);
  cr_assert_eq(bn.momentum, 0.9f);
  cr_assert_eq(bn.training_mode, 0);
  kiln_attrs_epsilon in;
  kiln_attrs_init(kiln_op_get(KILN_OP_INSTANCE_NORM)->attrs, &in);
  cr_assert_eq(in.epsilon, 1e-5f);
  kiln_attrs_lrn lrn;
  kiln_attrs_init(kiln_op_get(KILN_OP_LRN)->attrs, &lrn);
  cr_assert_eq(lrn.alpha, 1e-4f);
  cr_assert_eq(lrn.beta, 0.75f);
  cr_assert_eq(lrn.bias, 1.0f);
}

Test(attrs, pool_defaults_match_onnx) {
  kiln_attrs_pool a;
  kiln_attrs_init(kiln_op_get(KILN_OP_MAX_POOL)->attrs, &a);
  cr_assert_str_eq(a.auto_pad, "NOTSET");
  cr_assert_eq(a.ceil_mode, 0);
  cr_assert_eq(a.count_include_pad, 0);
  cr_assert_eq(a.storage_order, 0);
  cr_assert_eq(a.kernel_shape.n, 0);
}

Test(attrs, resize_defaults_match_onnx) {
  kiln_attrs_resize a;
  kiln_attrs_init(kiln_op_get(KILN_OP_RESIZE)->attrs, &a);
  cr_assert_str_eq(a.mode, "nearest");
  cr_assert_str_eq(a.coordinate_transformation_mode, "half_pixel");
  cr_assert_str_eq(a.nearest_mode, "round_prefer_floor");
  cr_assert_str_eq(a.keep_aspect_ratio_policy, "stretch");
  cr_assert_eq(a.cubic_coeff_a, -0.75f);
  cr_assert_eq(a.exclude_outside, 0);
  cr_assert_eq(a.extrapolation_value, 0.0f);
  cr_assert_eq(a.antialias, 0);
  cr_assert_eq(a.axes.n, 0);
}

Test(attrs, axis_defaults_match_onnx) {
  kiln_attrs_flatten fl;
  kiln_attrs_init(kiln_op_get(KILN_OP_FLATTEN)->attrs, &fl);
  cr_assert_eq(fl.axis, 1);
  kiln_attrs_softmax sm; /* opset 13: -1 */
  kiln_attrs_init(kiln_op_get(KILN_OP_SOFTMAX)->attrs, &sm);
  cr_assert_eq(sm.axis, -1);
  cr_assert_eq(sm._coerce_2d, 0);
  kiln_attrs_gather ga;
  kiln_attrs_init(kiln_op_get(KILN_OP_GATHER)->attrs, &ga);
  cr_assert_eq(ga.axis, 0);
  kiln_attrs_split sp;
  kiln_attrs_init(kiln_op_get(KILN_OP_SPLIT)->attrs, &sp);
  cr_assert_eq(sp.axis, 0);
  cr_assert_eq(sp.num_outputs, 0);
  kiln_attrs_argmax am;
  kiln_attrs_init(kiln_op_get(KILN_OP_ARGMAX)->attrs, &am);
  cr_assert_eq(am.axis, 0);
  cr_assert_eq(am.keepdims, 1);
  cr_assert_eq(am.select_last_index, 0);
  kiln_attrs_reduce rd;
  kiln_attrs_init(kiln_op_get(KILN_OP_REDUCE_MEAN)->attrs, &rd);
  cr_assert_eq(rd.keepdims, 1);
  cr_assert_eq(rd.noop_with_empty_axes, 0);
}

Test(attrs, tensor_op_defaults_match_onnx) {
  kiln_attrs_shape sh; /* end absent = through the last dim */
  kiln_attrs_init(kiln_op_get(KILN_OP_SHAPE)->attrs, &sh);
  cr_assert_eq(sh.start, 0);
  cr_assert_eq(sh.end, INT64_MAX);
  kiln_attrs_pad pd;
  kiln_attrs_init(kiln_op_get(KILN_OP_PAD)->attrs, &pd);
  cr_assert_str_eq(pd.mode, "constant");
  kiln_attrs_reshape rs;
  kiln_attrs_init(kiln_op_get(KILN_OP_RESHAPE)->attrs, &rs);
  cr_assert_eq(rs.allowzero, 0);
  kiln_attrs_cast ca;
  kiln_attrs_init(kiln_op_get(KILN_OP_CAST)->attrs, &ca);
  cr_assert_eq(ca.saturate, 1);
  kiln_attrs_constant_of_shape cs; /* absent value: float32 zero */
  kiln_attrs_init(kiln_op_get(KILN_OP_CONSTANT_OF_SHAPE)->attrs, &cs);
  cr_assert_eq(cs.value.dtype, KILN_DT_UNDEF);
  kiln_attrs_binary bi; /* kiln's own: no legacy broadcast */
  kiln_attrs_init(kiln_op_get(KILN_OP_ADD)->attrs, &bi);
  cr_assert_eq(bi._legacy_axis, -1);
}

Test(attrs, new_nodes_start_with_default_attributes) {
  graph_setup();
  kiln_node *n = kiln_node_new(g, KILN_OP_GEMM, "fc", 2, 1);
  const kiln_attrs_gemm *a = n->attrs;
  cr_assert_eq(a->alpha, 1.0f);
  cr_assert_eq(a->beta, 1.0f);
  cr_assert_eq(a->transB, 0);
  kiln_node *c = kiln_node_new(g, KILN_OP_CONV, "c", 2, 1);
  cr_assert_eq(((kiln_attrs_conv *)c->attrs)->group, 1);
  cr_assert_str_eq(((kiln_attrs_conv *)c->attrs)->auto_pad, "NOTSET");
  graph_teardown();
}

Test(attrs, field_lookup_gives_type_offset_and_flags) {
  const kiln_attr_schema *conv = kiln_op_get(KILN_OP_CONV)->attrs;
  const kiln_attr_field *f = kiln_attrs_field(conv, "group");
  cr_assert(f);
  cr_assert_eq(f->type, KILN_AT_INT);
  cr_assert_eq(f->offset, offsetof(kiln_attrs_conv, group));
  cr_assert_eq(f->def_num, 1.0);
  f = kiln_attrs_field(conv, "pads");
  cr_assert(f);
  cr_assert_eq(f->type, KILN_AT_INTS);
  cr_assert_eq(f->offset, offsetof(kiln_attrs_conv, pads));
  f = kiln_attrs_field(conv, "auto_pad");
  cr_assert_eq(f->type, KILN_AT_STRING);
  cr_assert_str_eq(f->def_str, "NOTSET");
  cr_assert_null(kiln_attrs_field(conv, "no_such_attr"));
  /* required and internal flags */
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_CONCAT)->attrs, "axis")->flags & KILN_AF_REQUIRED);
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_CAST)->attrs, "to")->flags & KILN_AF_REQUIRED);
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_MAX_POOL)->attrs, "kernel_shape")->flags & KILN_AF_REQUIRED);
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_LRN)->attrs, "size")->flags & KILN_AF_REQUIRED);
  cr_assert_not(kiln_attrs_field(conv, "group")->flags & KILN_AF_REQUIRED);
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_ADD)->attrs, "_legacy_axis")->flags & KILN_AF_INTERNAL);
  cr_assert(kiln_attrs_field(kiln_op_get(KILN_OP_SOFTMAX)->attrs, "_coerce_2d")->flags & KILN_AF_INTERNAL);
  cr_assert_not(kiln_attrs_field(kiln_op_get(KILN_OP_SOFTMAX)->attrs, "axis")->flags & KILN_AF_INTERNAL);
}

Test(attrs, every_schema_has_unique_fields_inside_its_struct) {
  for (int op = 0; op < KILN_OP_COUNT; op++) {
    const kiln_attr_schema *s = kiln_op_get((kiln_op)op)->attrs;
    for (const kiln_attr_field *f = s->fields; f->name; f++) {
      cr_assert_lt(f->offset, s->size, "%s.%s lies outside the struct", s->kind, f->name);
      cr_assert_eq(kiln_attrs_field(s, f->name), f, "%s.%s is declared twice", s->kind, f->name);
      /* only kiln's own fields use the reserved underscore prefix */
      cr_assert_eq(f->name[0] == '_', !!(f->flags & KILN_AF_INTERNAL), "%s.%s flags %d", s->kind, f->name, f->flags);
    }
  }
}
