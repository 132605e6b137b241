/* Builds the op and attribute tables from ops.def / attrs.def. */
#include "ops.h"

#include <limits.h>
#include <string.h>

#include "../passes/lower.h"
#include "shape.h"

#define KILN_ATTRS_BEGIN(kind) static const kiln_attr_field kiln_fields_##kind[] = {
#define KILN_ATTR(kind, T, name, dnum, dstr, flags) \
  {#name, KILN_AT_##T, offsetof(kiln_attrs_##kind, name), flags, dnum, dstr},
#define KILN_ATTRS_END(kind) {0}};
#include "attrs.def"
#undef KILN_ATTRS_BEGIN
#undef KILN_ATTR
#undef KILN_ATTRS_END

#define KILN_ATTRS_BEGIN(kind) \
  static const kiln_attr_schema kiln_schema_##kind = {#kind, kiln_fields_##kind, sizeof(kiln_attrs_##kind)};
#define KILN_ATTR(kind, T, name, dnum, dstr, flags)
#define KILN_ATTRS_END(kind)
#include "attrs.def"
#undef KILN_ATTRS_BEGIN
#undef KILN_ATTR
#undef KILN_ATTRS_END

/* The gradient column's functions (passes/grad_*.c); `missing` is NULL. */
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) \
  int kiln_grad_##grad(struct kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx);
#include "ops.def"
#undef KILN_OP

#define kiln_scalar_none NULL /* ops that are not elementwise */
#define kiln_grad_missing NULL
static const kiln_op_info op_table[KILN_OP_COUNT] = {
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) \
  [KILN_OP_##E] = {name, &kiln_schema_##attrs, ins, outs, shape, fold, macs, lower, kiln_scalar_##scalar, kiln_grad_##grad},
#include "ops.def"
#undef KILN_OP
};

const kiln_op_info *kiln_op_get(kiln_op op) {
  return (unsigned)op < KILN_OP_COUNT ? &op_table[op] : NULL;
}

int kiln_op_find(const char *onnx_name) {
  for (int i = 0; i < KILN_OP_COUNT; i++)
    if (strcmp(op_table[i].name, onnx_name) == 0) return i;
  return -1;
}

/* Walks the signature token by token; calls back with each parsed slot. */
static int sig_next(const char **p, kiln_slot *s) {
  const char *c = *p;
  while (*c == ' ') c++;
  if (!*c) return 0;
  memset(s, 0, sizeof *s);
  if (*c == '#') { s->constant = 1; c++; }
  else if (*c == '%') { s->stat = 1; c++; }
  s->name = c;
  while (*c && *c != ' ' && *c != '?' && *c != '*' && *c != '+') c++;
  s->name_len = (int)(c - s->name);
  if (*c == '?') { s->optional = 1; c++; }
  else if (*c == '*') { s->optional = 1; s->variadic = 1; c++; }
  else if (*c == '+') { s->variadic = 1; c++; }
  *p = c;
  return 1;
}

void kiln_sig_arity(const char *sig, int *min, int *max) {
  kiln_slot s;
  int lo = 0, hi = 0, variadic = 0;
  while (sig_next(&sig, &s)) {
    hi++;
    if (!s.optional) lo = hi;
    if (s.variadic) variadic = 1;
  }
  *min = lo;
  *max = variadic ? INT_MAX : hi;
}

int kiln_sig_slot(const char *sig, int i, kiln_slot *out) {
  kiln_slot s;
  int k = 0;
  while (sig_next(&sig, &s)) {
    if (k == i || s.variadic) { *out = s; return 1; }
    k++;
  }
  return 0;
}

void kiln_attrs_init(const kiln_attr_schema *s, void *attrs) {
  memset(attrs, 0, s->size);
  for (const kiln_attr_field *f = s->fields; f->name; f++) {
    char *p = (char *)attrs + f->offset;
    switch (f->type) {
    case KILN_AT_INT: {
      int64_t v = f->def_num >= 9.2e18 ? INT64_MAX : (int64_t)f->def_num;
      memcpy(p, &v, sizeof v);
      break;
    }
    case KILN_AT_FLOAT: { float v = (float)f->def_num; memcpy(p, &v, sizeof v); break; }
    case KILN_AT_STRING: memcpy(p, &f->def_str, sizeof f->def_str); break;
    default: break; /* lists and tensors start empty */
    }
  }
}

const kiln_attr_field *kiln_attrs_field(const kiln_attr_schema *s, const char *name) {
  for (const kiln_attr_field *f = s->fields; f->name; f++)
    if (strcmp(f->name, name) == 0) return f;
  return NULL;
}
