/* Opset upgrades: each row rewrites one op as written by opsets before
 * `before` into the canonical form the graph IR uses (the newest ONNX form):
 * attributes that later became inputs turn into constant inputs, renamed or
 * retired attributes are mapped or dropped, Upsample becomes Resize.  The
 * importer calls onnx_upgrade on every node before parsing attributes. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "onnx_internal.h"

/* Both copy exactly n elements into a block of at least one, so even an
 * empty constant has non-NULL data; v is NULL for an empty attribute list. */
kiln_value *onnx_const_ints(onnx_importer *im, const int64_t *v, int n) {
  int64_t dims[1] = {n};
  int64_t *data = kiln_arena_array(&im->g->arena, (size_t)(n ? n : 1), sizeof *v);
  if (n) memcpy(data, v, (size_t)n * sizeof *v);
  return kiln_value_const(im->g, kiln_arena_printf(&im->g->arena, "_const%d", im->g->nvalues), KILN_DT_I64, 1, dims, data);
}

kiln_value *onnx_const_floats(onnx_importer *im, const float *v, int n, int scalar) {
  int64_t dims[1] = {n};
  float *data = kiln_arena_array(&im->g->arena, (size_t)(n ? n : 1), sizeof *v);
  if (n) memcpy(data, v, (size_t)n * sizeof *v);
  return kiln_value_const(im->g, kiln_arena_printf(&im->g->arena, "_const%d", im->g->nvalues), KILN_DT_F32,
                          scalar ? 0 : 1, dims, data);
}

/* Places v at input slot k, growing the input list (absent slots between). */
static void set_input(onnx_node *n, int k, kiln_value *v) {
  if (k >= n->nin) {
    for (int i = n->nin; i < k; i++) n->in[i] = NULL;
    n->nin = k + 1;
  }
  n->in[k] = v;
}

static void add_attr(onnx_importer *im, onnx_node *n, Onnx__AttributeProto *a) {
  if (n->nattr == n->cap_attr) {
    int nc = n->cap_attr * 2 + 4;
    Onnx__AttributeProto **na = kiln_arena_array(&im->g->arena, (size_t)nc, sizeof *na);
    memcpy(na, n->attr, (size_t)n->nattr * sizeof *na);
    n->attr = na;
    n->cap_attr = nc;
  }
  n->attr[n->nattr++] = a;
}

static void set_attr_int(onnx_importer *im, onnx_node *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = kiln_arena_alloc(&im->g->arena, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  a->has_i = 1;
  a->i = v;
  onnx_take_attr(n, name);
  add_attr(im, n, a);
}

static void set_attr_str(onnx_importer *im, onnx_node *n, const char *name, const char *v) {
  Onnx__AttributeProto *a = kiln_arena_alloc(&im->g->arena, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
  a->has_s = 1;
  a->s.data = (uint8_t *)v;
  a->s.len = strlen(v);
  onnx_take_attr(n, name);
  add_attr(im, n, a);
}

static int ints_attr_to_input(onnx_importer *im, onnx_node *n, const char *attr, int slot) {
  Onnx__AttributeProto *a = onnx_take_attr(n, attr);
  if (!a) return 0;
  if (onnx_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && a->n_ints == 0 &&
      onnx_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
    return kiln_error(im->d, &n->loc, "attribute '%s' must be INTS", attr);
  if (a->n_ints > 1024) return kiln_error(im->d, &n->loc, "attribute '%s' has too many entries", attr);
  if (n->nin > slot && n->in[slot]) return kiln_error(im->d, &n->loc, "'%s' is given both as attribute and input", attr);
  set_input(n, slot, onnx_const_ints(im, a->ints, (int)a->n_ints));
  return 0;
}

static int float_attr_to_input(onnx_importer *im, onnx_node *n, const char *attr, int slot) {
  Onnx__AttributeProto *a = onnx_take_attr(n, attr);
  if (!a) return 0;
  if (onnx_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
    return kiln_error(im->d, &n->loc, "attribute '%s' must be FLOAT", attr);
  set_input(n, slot, onnx_const_floats(im, &a->f, 1, 1));
  return 0;
}

static int up_reshape(onnx_importer *im, onnx_node *n) {
  onnx_take_attr(n, "consumed_inputs");
  return ints_attr_to_input(im, n, "shape", 1);
}

static int up_axes(onnx_importer *im, onnx_node *n) { return ints_attr_to_input(im, n, "axes", 1); }

static int up_split(onnx_importer *im, onnx_node *n) { return ints_attr_to_input(im, n, "split", 1); }

static int up_clip(onnx_importer *im, onnx_node *n) {
  onnx_take_attr(n, "consumed_inputs");
  if (float_attr_to_input(im, n, "min", 1)) return -1;
  return float_attr_to_input(im, n, "max", 2);
}

static int up_pad(onnx_importer *im, onnx_node *n) {
  if (ints_attr_to_input(im, n, "pads", 1) || ints_attr_to_input(im, n, "paddings", 1)) return -1;
  if (n->nin < 2) return kiln_error(im->d, &n->loc, "required attribute 'pads' is missing");
  return float_attr_to_input(im, n, "value", 2);
}

static int up_dropout(onnx_importer *im, onnx_node *n) {
  onnx_take_attr(n, "is_test");
  onnx_take_attr(n, "consumed_inputs");
  return float_attr_to_input(im, n, "ratio", 1);
}

static int up_batchnorm(onnx_importer *im, onnx_node *n) {
  Onnx__AttributeProto *sp = onnx_take_attr(n, "spatial");
  if (sp && sp->i == 0)
    return kiln_error(im->d, &n->loc, "per-activation BatchNormalization (spatial=0) is not supported");
  Onnx__AttributeProto *test = onnx_take_attr(n, "is_test");
  onnx_take_attr(n, "consumed_inputs");
  /* saved_mean / saved_var (outputs 3, 4): before opset 14 a node asking
   * for them runs in training mode (the spec's "output case #1"); they are
   * the batch statistics.  Without them the node keeps its inference
   * meaning (running statistics pass through), as ONNX's own 13 -> 14
   * version converter reads it. */
  int saved = 0;
  for (int k = 3; k < n->nout && k < 5; k++) saved |= n->proto->output[k] && n->proto->output[k][0];
  if (n->nout > 5) n->nout = 5;
  if (saved && test && test->i)
    return kiln_error(im->d, &n->loc, "outputs saved_mean/saved_var are training outputs, but is_test=1");
  if (saved) set_attr_int(im, n, "training_mode", 1);
  else if (n->nout > 3) n->nout = 3;
  return 0;
}

static int up_softmax(onnx_importer *im, onnx_node *n) {
  Onnx__AttributeProto *a = onnx_take_attr(n, "axis");
  set_attr_int(im, n, "axis", a ? a->i : 1); /* default was 1 */
  n->coerce_2d = 1;
  return 0;
}

static int up_gemm(onnx_importer *im, onnx_node *n) {
  (void)im;
  onnx_take_attr(n, "broadcast");
  return 0;
}

/* Upsample (deprecated in opset 10) and Resize-10 both mean "asymmetric
 * coordinates, floor for nearest"; Resize-11+ spells that out. */
static int to_resize(onnx_importer *im, onnx_node *n, kiln_value *scales) {
  Onnx__AttributeProto *mode = onnx_take_attr(n, "mode");
  const char *m = "nearest";
  if (mode && mode->has_s) {
    m = kiln_arena_strndup(&im->g->arena, (const char *)mode->s.data, mode->s.len);
    if (!strcmp(m, "bilinear")) m = "linear";
  }
  n->nin = 1;
  set_input(n, 2, scales);
  n->op_type = "Resize";
  set_attr_str(im, n, "mode", m);
  set_attr_str(im, n, "coordinate_transformation_mode", "asymmetric");
  set_attr_str(im, n, "nearest_mode", "floor");
  return 0;
}

static int up_upsample(onnx_importer *im, onnx_node *n) {
  Onnx__AttributeProto *s = onnx_take_attr(n, "scales");
  kiln_value *scales = n->nin > 1 ? n->in[1] : NULL;
  if (s) {
    if (s->n_floats == 0 || s->n_floats > KILN_MAX_RANK) return kiln_error(im->d, &n->loc, "attribute 'scales' is invalid");
    scales = onnx_const_floats(im, s->floats, (int)s->n_floats, 0);
  } else if (onnx_take_attr(n, "height_scale") || onnx_take_attr(n, "width_scale")) {
    return kiln_error(im->d, &n->loc, "Upsample-1 (height_scale/width_scale) is not supported");
  }
  if (!scales) return kiln_error(im->d, &n->loc, "scales are missing");
  return to_resize(im, n, scales);
}

static int up_resize10(onnx_importer *im, onnx_node *n) {
  if (n->nin < 2 || !n->in[1]) return kiln_error(im->d, &n->loc, "input 'scales' is required");
  return to_resize(im, n, n->in[1]);
}

static int up_slice(onnx_importer *im, onnx_node *n) {
  if (ints_attr_to_input(im, n, "starts", 1) || ints_attr_to_input(im, n, "ends", 2)) return -1;
  return ints_attr_to_input(im, n, "axes", 3);
}

/* Binary ops before opset 7: broadcast=1 lets B align with A at `axis`
 * (default: trailing dims, which is numpy broadcasting). */
static int up_binary(onnx_importer *im, onnx_node *n) {
  Onnx__AttributeProto *b = onnx_take_attr(n, "broadcast"), *ax = onnx_take_attr(n, "axis");
  onnx_take_attr(n, "consumed_inputs");
  if (b && b->i && ax) {
    if (ax->i < 0) return kiln_error(im->d, &n->loc, "negative axis with legacy broadcasting is not supported");
    n->legacy_axis = ax->i;
  }
  return 0;
}

static int up_prelu(onnx_importer *im, onnx_node *n) {
  (void)im;
  onnx_take_attr(n, "consumed_inputs");
  if (n->nin > 1 && n->in[1] && n->in[1]->rank == 1 && n->in[1]->dims[0] != 1) n->legacy_axis = 1;
  return 0;
}

static const struct upgrade {
  const char *op;
  int64_t before; /* applies to files whose opset is below this */
  int (*fn)(onnx_importer *, onnx_node *);
} upgrades[] = {
    {"Reshape", 5, up_reshape},
    {"Squeeze", 13, up_axes},
    {"Unsqueeze", 13, up_axes},
    {"ReduceSum", 13, up_axes},
    {"ReduceMean", 18, up_axes},
    {"ReduceMax", 18, up_axes},
    {"Split", 13, up_split},
    {"Clip", 11, up_clip},
    {"Pad", 11, up_pad},
    {"Dropout", 12, up_dropout},
    {"BatchNormalization", 14, up_batchnorm},
    {"Softmax", 13, up_softmax},
    {"LogSoftmax", 13, up_softmax},
    {"Gemm", 7, up_gemm},
    {"Slice", 10, up_slice},
    {"Add", 7, up_binary},
    {"Sub", 7, up_binary},
    {"Mul", 7, up_binary},
    {"Div", 7, up_binary},
    {"Pow", 7, up_binary},
    {"PRelu", 7, up_prelu},
    {"Upsample", INT64_MAX, up_upsample},
    {"Resize", 11, up_resize10},
};

int onnx_upgrade(onnx_importer *im, onnx_node *n) {
  for (size_t i = 0; i < sizeof upgrades / sizeof upgrades[0]; i++)
    if (!strcmp(upgrades[i].op, n->op_type) && im->opset < upgrades[i].before) return upgrades[i].fn(im, n);
  return 0;
}
