/* Shared between the ONNX importer's files; not part of kiln's API. */
#ifndef KILN_ONNX_INTERNAL_H
#define KILN_ONNX_INTERNAL_H

#include "onnx/onnx.pb-c.h"

#include "../../ir/strmap.h"
#include "kiln_onnx.h"

typedef struct onnx_importer {
  kiln_graph *g;
  kiln_diag *d;
  const char *base_dir;  /* for external data, NULL = forbidden */
  kiln_strmap names;     /* value name -> kiln_value */
  int64_t opset;
} onnx_importer;

/* One ONNX node while it is being upgraded and converted. */
typedef struct onnx_node {
  const Onnx__NodeProto *proto;
  const char *op_type;
  kiln_loc loc;
  int nin, nout;
  kiln_value **in;                /* resolved inputs; NULL = absent */
  Onnx__AttributeProto **attr;    /* attributes still to be parsed */
  int nattr, cap_attr;
  int coerce_2d;                  /* Softmax/LogSoftmax before opset 13 */
  int64_t legacy_axis;            /* binary ops before opset 7, or -1 */
} onnx_node;

/* onnx_tensor.c: TensorProto -> constant contents. */
int onnx_tensor_to_value(onnx_importer *im, const Onnx__TensorProto *t, const kiln_loc *loc, kiln_value *v);
/* onnx_attrs.c: remaining attributes -> typed struct of the op. */
int onnx_parse_attrs(onnx_importer *im, onnx_node *n, kiln_node *kn);
Onnx__AttributeProto *onnx_take_attr(onnx_node *n, const char *name);
int onnx_attr_type(const Onnx__AttributeProto *a);
/* onnx_upgrade.c: rewrites an old op form into the canonical one. */
int onnx_upgrade(onnx_importer *im, onnx_node *n);
/* A new 1-D constant value owned by the graph. */
kiln_value *onnx_const_ints(onnx_importer *im, const int64_t *v, int n);
kiln_value *onnx_const_floats(onnx_importer *im, const float *v, int n, int scalar);

#endif
