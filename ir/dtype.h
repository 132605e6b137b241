/* Element types.  The enum values are ONNX TensorProto.DataType codes so the
 * importer and exporter need no translation table; kiln_dtype_size() == 0
 * marks a code kiln does not support (strings, complex, 4/8-bit floats). */
#ifndef KILN_DTYPE_H
#define KILN_DTYPE_H

#include <stddef.h>

typedef enum kiln_dtype {
  KILN_DT_UNDEF = 0,
  KILN_DT_F32 = 1,
  KILN_DT_U8 = 2,
  KILN_DT_I8 = 3,
  KILN_DT_U16 = 4,
  KILN_DT_I16 = 5,
  KILN_DT_I32 = 6,
  KILN_DT_I64 = 7,
  KILN_DT_STRING = 8, /* not supported */
  KILN_DT_BOOL = 9,
  KILN_DT_F16 = 10,
  KILN_DT_F64 = 11,
  KILN_DT_U32 = 12,
  KILN_DT_U64 = 13,
  KILN_DT_BF16 = 16,
  KILN_DT_MAX_CODE = 32
} kiln_dtype;

size_t kiln_dtype_size(kiln_dtype t);   /* bytes per element, 0 = unsupported */
const char *kiln_dtype_name(kiln_dtype t); /* "f32", ...; "dtype#N" style for others */
const char *kiln_onnx_dtype_name(int code); /* "FLOAT", "FLOAT16", ... for messages */
int kiln_dtype_is_float(kiln_dtype t);
int kiln_dtype_is_int(kiln_dtype t); /* signed or unsigned integer, not bool */
/* Element i of a buffer of type t as double / int64 (for folding and printing). */
double kiln_dtype_load_f(kiln_dtype t, const void *p, size_t i);
long long kiln_dtype_load_i(kiln_dtype t, const void *p, size_t i);
void kiln_dtype_store_f(kiln_dtype t, void *p, size_t i, double v);
void kiln_dtype_store_i(kiln_dtype t, void *p, size_t i, long long v);
float kiln_f16_to_f32(unsigned short h);
unsigned short kiln_f32_to_f16(float f);
float kiln_bf16_to_f32(unsigned short h);
unsigned short kiln_f32_to_bf16(float f);
/* f rounded to TF32 as PTX cvt.rna.tf32.f32 does (ir/loop.h, "TF32"):
 * finite: bits + 0x1000, then the low 13 bits cleared; inf/NaN: only cleared. */
float kiln_f32_to_tf32(float f);

#endif
