/* Element type facts and scalar conversions (used by constant folding and
 * the printers, never on a hot path). */
#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

size_t kiln_dtype_size(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: case KILN_DT_I32: case KILN_DT_U32: return 4;
  case KILN_DT_U8: case KILN_DT_I8: case KILN_DT_BOOL: return 1;
  case KILN_DT_U16: case KILN_DT_I16: case KILN_DT_F16: case KILN_DT_BF16: return 2;
  case KILN_DT_I64: case KILN_DT_U64: case KILN_DT_F64: return 8;
  default: return 0;
  }
}

const char *kiln_dtype_name(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return "f32";
  case KILN_DT_U8: return "u8";
  case KILN_DT_I8: return "i8";
  case KILN_DT_U16: return "u16";
  case KILN_DT_I16: return "i16";
  case KILN_DT_I32: return "i32";
  case KILN_DT_I64: return "i64";
  case KILN_DT_BOOL: return "bool";
  case KILN_DT_F16: return "f16";
  case KILN_DT_F64: return "f64";
  case KILN_DT_U32: return "u32";
  case KILN_DT_U64: return "u64";
  case KILN_DT_BF16: return "bf16";
  case KILN_DT_STRING: return "string";
  default: return "?";
  }
}

const char *kiln_onnx_dtype_name(int code) {
  static const char *const names[] = {
      "UNDEFINED", "FLOAT",  "UINT8",  "INT8",      "UINT16",    "INT16",
      "INT32",     "INT64",  "STRING", "BOOL",      "FLOAT16",   "DOUBLE",
      "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
      "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
      "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2"};
  if (code >= 0 && code < (int)(sizeof names / sizeof names[0])) return names[code];
  return "UNKNOWN";
}

int kiln_dtype_is_float(kiln_dtype t) {
  return t == KILN_DT_F32 || t == KILN_DT_F16 || t == KILN_DT_BF16 || t == KILN_DT_F64;
}

int kiln_dtype_is_int(kiln_dtype t) {
  switch (t) {
  case KILN_DT_U8: case KILN_DT_I8: case KILN_DT_U16: case KILN_DT_I16:
  case KILN_DT_I32: case KILN_DT_I64: case KILN_DT_U32: case KILN_DT_U64: return 1;
  default: return 0;
  }
}

float kiln_f16_to_f32(unsigned short h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal: normalise */
      float f = ldexpf((float)man, -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

unsigned short kiln_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 255, man = x & 0x7fffff;
  if (exp == 255) return (unsigned short)(sign | 0x7c00 | (man ? 0x200 : 0));
  int e = (int)exp - 112;
  if (e >= 31) return (unsigned short)(sign | 0x7c00);
  if (e <= 0) { /* subnormal or zero, round to nearest even */
    if (e < -10) return (unsigned short)sign;
    man |= 0x800000;
    int shift = 14 - e;
    uint32_t half = 1u << (shift - 1), r = man >> shift, rem = man & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (unsigned short)(sign | r);
  }
  uint32_t r = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++; /* may carry into exp: correct */
  return (unsigned short)(sign | r);
}

float kiln_f32_to_tf32(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) < 0x7f800000u) u += 0x1000u; /* finite: half an ulp of TF32, carry into the exponent */
  u &= 0xffffe000u;
  memcpy(&f, &u, 4);
  return f;
}

float kiln_bf16_to_f32(unsigned short h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

unsigned short kiln_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (unsigned short)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (unsigned short)(x >> 16);
}

#define LOADS(T) do { T v; memcpy(&v, (const char *)p + i * sizeof(T), sizeof v); return v; } while (0)
double kiln_dtype_load_f(kiln_dtype t, const void *p, size_t i) {
  switch (t) {
  case KILN_DT_F32: LOADS(float);
  case KILN_DT_F64: LOADS(double);
  case KILN_DT_F16: { unsigned short h; memcpy(&h, (const char *)p + 2 * i, 2); return kiln_f16_to_f32(h); }
  case KILN_DT_BF16: { unsigned short h; memcpy(&h, (const char *)p + 2 * i, 2); return kiln_bf16_to_f32(h); }
  case KILN_DT_U64: LOADS(uint64_t);
  default: return (double)kiln_dtype_load_i(t, p, i);
  }
}

long long kiln_dtype_load_i(kiln_dtype t, const void *p, size_t i) {
  switch (t) {
  case KILN_DT_U8: LOADS(uint8_t);
  case KILN_DT_I8: LOADS(int8_t);
  case KILN_DT_BOOL: LOADS(uint8_t);
  case KILN_DT_U16: LOADS(uint16_t);
  case KILN_DT_I16: LOADS(int16_t);
  case KILN_DT_I32: LOADS(int32_t);
  case KILN_DT_U32: LOADS(uint32_t);
  case KILN_DT_I64: LOADS(int64_t);
  case KILN_DT_U64: LOADS(uint64_t);
  default: {
    double d = kiln_dtype_load_f(t, p, i);
    if (d != d) return 0;
    if (d >= 9.2e18) return INT64_MAX;
    if (d <= -9.2e18) return INT64_MIN;
    return (long long)d;
  }
  }
}
#undef LOADS

#define STORES(T, x) do { T v = (T)(x); memcpy((char *)p + i * sizeof(T), &v, sizeof v); return; } while (0)
void kiln_dtype_store_f(kiln_dtype t, void *p, size_t i, double x) {
  switch (t) {
  case KILN_DT_F32: STORES(float, x);
  case KILN_DT_F64: STORES(double, x);
  case KILN_DT_F16: STORES(unsigned short, kiln_f32_to_f16((float)x));
  case KILN_DT_BF16: STORES(unsigned short, kiln_f32_to_bf16((float)x));
  case KILN_DT_BOOL: STORES(uint8_t, x != 0);
  default: {
    long long v = x != x ? 0 : x >= 9.2e18 ? INT64_MAX : x <= -9.2e18 ? INT64_MIN : (long long)x;
    kiln_dtype_store_i(t, p, i, v);
    return;
  }
  }
}

void kiln_dtype_store_i(kiln_dtype t, void *p, size_t i, long long x) {
  switch (t) {
  case KILN_DT_U8: STORES(uint8_t, x);
  case KILN_DT_I8: STORES(int8_t, x);
  case KILN_DT_BOOL: STORES(uint8_t, x != 0);
  case KILN_DT_U16: STORES(uint16_t, x);
  case KILN_DT_I16: STORES(int16_t, x);
  case KILN_DT_I32: STORES(int32_t, x);
  case KILN_DT_U32: STORES(uint32_t, x);
  case KILN_DT_I64: STORES(int64_t, x);
  case KILN_DT_U64: STORES(uint64_t, x);
  default: kiln_dtype_store_f(t, p, i, (double)x); return;
  }
}
#undef STORES
