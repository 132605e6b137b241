/* ONNX attributes -> an op's typed attribute struct, driven by the field
 * table in ir/attrs.def: names and types are checked there, never per op. */
#include <string.h>

#include "onnx_internal.h"

typedef Onnx__AttributeProto__AttributeType atype;

/* Old files may leave `type` unset; infer it from the populated field. */
int onnx_attr_type(const Onnx__AttributeProto *a) {
  if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) return a->type;
  if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
  if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
  if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
  if (a->g) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
  if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
  if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  if (a->n_strings) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
  return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static const char *atype_name(int t) {
  switch (t) {
  case 1: return "FLOAT"; case 2: return "INT"; case 3: return "STRING"; case 4: return "TENSOR";
  case 5: return "GRAPH"; case 6: return "FLOATS"; case 7: return "INTS"; case 8: return "STRINGS";
  case 9: return "TENSORS"; case 10: return "GRAPHS"; case 11: return "SPARSE_TENSOR";
  default: return "UNDEFINED";
  }
}

Onnx__AttributeProto *onnx_take_attr(onnx_node *n, const char *name) {
  for (int i = 0; i < n->nattr; i++)
    if (n->attr[i]->name && !strcmp(n->attr[i]->name, name)) {
      Onnx__AttributeProto *a = n->attr[i];
      memmove(&n->attr[i], &n->attr[i + 1], (size_t)(n->nattr - i - 1) * sizeof *n->attr);
      n->nattr--;
      return a;
    }
  return NULL;
}

static int parse_one(onnx_importer *im, onnx_node *n, const kiln_attr_field *f, const Onnx__AttributeProto *a,
                     void *attrs) {
  static const int want[] = {
      [KILN_AT_INT] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT,
      [KILN_AT_FLOAT] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT,
      [KILN_AT_STRING] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING,
      [KILN_AT_INTS] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS,
      [KILN_AT_FLOATS] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS,
      [KILN_AT_TENSOR] = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR,
  };
  int t = onnx_attr_type(a);
  /* An empty list attribute carries no populated field, so its type is
   * unknowable in old files; accept it as the expected list type. */
  if (t == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED && (f->type == KILN_AT_INTS || f->type == KILN_AT_FLOATS))
    t = want[f->type];
  if (t != want[f->type])
    return kiln_error(im->d, &n->loc, "attribute '%s' must be %s, got %s", f->name, atype_name(want[f->type]), atype_name(t));
  kiln_arena *ar = &im->g->arena;
  char *p = (char *)attrs + f->offset;
  switch (f->type) {
  case KILN_AT_INT: memcpy(p, &a->i, sizeof a->i); break;
  case KILN_AT_FLOAT: memcpy(p, &a->f, sizeof a->f); break;
  case KILN_AT_STRING: {
    /* A STRING attribute whose s field is absent has s.data == NULL: "". */
    const char *data = a->s.len ? (const char *)a->s.data : "";
    if (memchr(data, 0, a->s.len)) return kiln_error(im->d, &n->loc, "attribute '%s' contains a NUL byte", f->name);
    const char *s = kiln_arena_strndup(ar, data, a->s.len);
    memcpy(p, &s, sizeof s);
    break;
  }
  case KILN_AT_INTS: {
    kiln_ints v = {(int)a->n_ints, kiln_arena_memdup(ar, a->ints, a->n_ints * sizeof *a->ints)};
    if (a->n_ints > 4096) return kiln_error(im->d, &n->loc, "attribute '%s' has too many entries", f->name);
    memcpy(p, &v, sizeof v);
    break;
  }
  case KILN_AT_FLOATS: {
    kiln_floats v = {(int)a->n_floats, kiln_arena_memdup(ar, a->floats, a->n_floats * sizeof *a->floats)};
    if (a->n_floats > 4096) return kiln_error(im->d, &n->loc, "attribute '%s' has too many entries", f->name);
    memcpy(p, &v, sizeof v);
    break;
  }
  case KILN_AT_TENSOR: {
    kiln_value tmp = {0};
    if (!a->t) return kiln_error(im->d, &n->loc, "attribute '%s' has no tensor", f->name);
    if (onnx_tensor_to_value(im, a->t, &n->loc, &tmp)) return -1;
    kiln_tensor_attr v = {tmp.dtype, kiln_value_numel(&tmp, 1), tmp.data};
    memcpy(p, &v, sizeof v);
    break;
  }
  }
  return 0;
}

int onnx_parse_attrs(onnx_importer *im, onnx_node *n, kiln_node *kn) {
  const kiln_attr_schema *s = kiln_op_get(kn->op)->attrs;
  for (int i = 0; i < n->nattr; i++) {
    const Onnx__AttributeProto *a = n->attr[i];
    const char *name = a->name ? a->name : "";
    const kiln_attr_field *f = kiln_attrs_field(s, name);
    if (!f || (f->flags & KILN_AF_INTERNAL))
      return kiln_error(im->d, &n->loc, "unknown attribute '%s' for %s (opset %lld)", name, n->op_type, (long long)im->opset);
    for (int j = 0; j < i; j++)
      if (n->attr[j]->name && !strcmp(n->attr[j]->name, name))
        return kiln_error(im->d, &n->loc, "attribute '%s' is given twice", name);
    if (a->ref_attr_name && a->ref_attr_name[0])
      return kiln_error(im->d, &n->loc, "attribute '%s' refers to a function attribute", name);
    if (parse_one(im, n, f, a, kn->attrs)) return -1;
  }
  for (const kiln_attr_field *f = s->fields; f->name; f++) {
    if (!(f->flags & KILN_AF_REQUIRED)) continue;
    int found = 0;
    for (int i = 0; i < n->nattr; i++) found |= n->attr[i]->name && !strcmp(n->attr[i]->name, f->name);
    if (!found) return kiln_error(im->d, &n->loc, "required attribute '%s' is missing", f->name);
  }
  if (n->coerce_2d) ((kiln_attrs_softmax *)kn->attrs)->_coerce_2d = 1;
  if (n->legacy_axis >= 0) ((kiln_attrs_binary *)kn->attrs)->_legacy_axis = n->legacy_axis;
  return 0;
}
