/* The op table (ops.def) and typed attributes (attrs.def) as C declarations.
 * Everything that needs per-op facts asks here; nothing else switches on
 * op kinds. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

/* ---- attributes ---- */
typedef struct kiln_ints { int n; const int64_t *v; } kiln_ints;
typedef struct kiln_floats { int n; const float *v; } kiln_floats;
typedef struct kiln_tensor_attr { /* a small constant, e.g. ConstantOfShape's value */
  kiln_dtype dtype;               /* KILN_DT_UNDEF when absent */
  int64_t count;
  const void *data;
} kiln_tensor_attr;

typedef int64_t KILN_ATYPE_INT;
typedef float KILN_ATYPE_FLOAT;
typedef const char *KILN_ATYPE_STRING;
typedef kiln_ints KILN_ATYPE_INTS;
typedef kiln_floats KILN_ATYPE_FLOATS;
typedef kiln_tensor_attr KILN_ATYPE_TENSOR;

typedef enum kiln_attr_type {
  KILN_AT_INT, KILN_AT_FLOAT, KILN_AT_STRING, KILN_AT_INTS, KILN_AT_FLOATS, KILN_AT_TENSOR
} kiln_attr_type;

enum { KILN_AF_REQUIRED = 1, KILN_AF_INTERNAL = 2 };

#define KILN_ATTRS_BEGIN(kind) typedef struct kiln_attrs_##kind {
#define KILN_ATTR(kind, T, name, dnum, dstr, flags) KILN_ATYPE_##T name;
#define KILN_ATTRS_END(kind) } kiln_attrs_##kind;
#include "attrs.def"
#undef KILN_ATTRS_BEGIN
#undef KILN_ATTR
#undef KILN_ATTRS_END

typedef struct kiln_attr_field {
  const char *name;      /* ONNX attribute name */
  kiln_attr_type type;
  size_t offset;         /* within the kind's struct */
  int flags;             /* KILN_AF_* */
  double def_num;        /* default for INT / FLOAT */
  const char *def_str;   /* default for STRING */
} kiln_attr_field;

typedef struct kiln_attr_schema {
  const char *kind;              /* "conv", "pool", ... */
  const kiln_attr_field *fields; /* NULL-name terminated */
  size_t size;                   /* sizeof the struct */
} kiln_attr_schema;

/* ---- ops ---- */
typedef enum kiln_op {
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) KILN_OP_##E,
#include "ops.def"
#undef KILN_OP
  KILN_OP_COUNT
} kiln_op;

struct kiln_node;
struct kiln_shape_ctx;
typedef int (*kiln_shape_fn)(struct kiln_shape_ctx *c, struct kiln_node *n);
typedef int (*kiln_fold_fn)(struct kiln_shape_ctx *c, struct kiln_node *n);
typedef int64_t (*kiln_macs_fn)(const struct kiln_node *n);
struct kiln_lctx;
struct kiln_lx;
typedef int (*kiln_lower_fn)(struct kiln_lctx *L, const struct kiln_node *n);
typedef struct kiln_lx *(*kiln_scalar_fn)(struct kiln_lctx *L, const struct kiln_node *n, struct kiln_lx **in);
struct kiln_grad_ctx;
struct kiln_value;
/* Reverse mode (passes/grad.h): dy[k] is the gradient of n->out[k] (NULL
 * when none flows); sets dx[k] for every input k the context wants. */
typedef int (*kiln_grad_fn)(struct kiln_grad_ctx *c, const struct kiln_node *n, struct kiln_value *const *dy,
                            struct kiln_value **dx);

typedef struct kiln_op_info {
  const char *name;              /* ONNX op type */
  const kiln_attr_schema *attrs;
  const char *inputs, *outputs;  /* signatures, see ops.def */
  kiln_shape_fn shape;
  kiln_fold_fn fold;             /* NULL: never folded */
  kiln_macs_fn macs;             /* NULL: no multiply-accumulates counted */
  kiln_lower_fn lower;           /* loops computing the node (passes/lower_*.c) */
  kiln_scalar_fn scalar;         /* per-element meaning of elementwise ops */
  kiln_grad_fn grad;             /* NULL: gradient not written yet; kiln_grad_nondiff: none flows */
} kiln_op_info;

const kiln_op_info *kiln_op_get(kiln_op op);
/* Looks an ONNX op type up; returns -1 when kiln has no such op. */
int kiln_op_find(const char *onnx_name);

/* Slot facts parsed from a signature ("X W B?"). */
typedef struct kiln_slot {
  const char *name; int name_len;
  int optional;  /* '?' or '*' */
  int variadic;  /* '*' or '+' */
  int constant;  /* '#': must be known at compile time */
  int stat;      /* '%': running statistic */
} kiln_slot;
/* Range of slot counts a signature accepts (max = INT32_MAX for variadic). */
void kiln_sig_arity(const char *sig, int *min, int *max);
/* Facts of slot i (the variadic last slot repeats).  Returns 0 if out of range. */
int kiln_sig_slot(const char *sig, int i, kiln_slot *out);

/* Attribute structs: fills defaults / finds a field by name. */
void kiln_attrs_init(const kiln_attr_schema *s, void *attrs);
const kiln_attr_field *kiln_attrs_field(const kiln_attr_schema *s, const char *name);

#endif
