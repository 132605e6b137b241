/* What keeps generated code portable across x86-64 hosts.
 *
 * f16/bf16 conversions are printed as integer bit manipulation: LLVM turns
 * `fptrunc float to bfloat` (and, on CPUs without F16C, every half
 * conversion) into calls to compiler-rt helpers such as __truncsfbf2 that
 * the kiln process does not provide, so a model that JITs on one machine
 * fails on another ("Symbols not found").  The sequences below are branch
 * free (selects), so the loop vectoriser widens them like any arithmetic;
 * the rounding is to nearest even with subnormals, overflow to Inf and
 * NaN -> quiet NaN (f16: 0x7e00 with the sign; bf16: the payload kept), as ir/loop.h specifies (and kiln_f32_to_f16 in
 * ir/dtype.c, the C printer's helpers and the interpreter compute).
 * Where the target CPU converts f16 in hardware (F16C: every x86-64-v3
 * CPU; kiln_llvm_tm_native_f16 asks the code generator), f16 goes through
 * LLVM's fpext/fptrunc instead, one instruction per vector, with the NaN
 * cases fixed up to give the same bits; bf16 stays on bit manipulation.
 *
 * The target CPU is the host's unless KILN_CPU names another (znver3,
 * x86-64-v3, x86-64...): tests use it to compile as a different machine
 * would.  And every object kiln makes (JIT or `kiln compile`) is checked:
 * its undefined symbols must be on an allowlist (libm, libc's mem*, the
 * runtime's), so a dependency on anything else fails on every machine,
 * not only on the one that lacks it. */
#include <llvm-c/Object.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kiln_llvm.h"
#include "llvm_internal.h"

static LLVMValueRef k32(cg *c, uint32_t v) { return LLVMConstInt(LLVMInt32TypeInContext(c->ctx), v, 0); }

/* f32 -> f16 (bf16 = 0) or bf16 (bf16 = 1); returns a half/bfloat value. */
LLVMValueRef kiln_llvm_narrow_f32(cg *c, LLVMValueRef v, int bf16) {
  LLVMBuilderRef b = c->b;
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), f32 = LLVMFloatTypeInContext(c->ctx);
  LLVMValueRef x = LLVMBuildBitCast(b, v, i32, "");
  LLVMValueRef sign = LLVMBuildAnd(b, LLVMBuildLShr(b, x, k32(c, 16), ""), k32(c, 0x8000), "");
  LLVMValueRef a = LLVMBuildAnd(b, x, k32(c, 0x7fffffff), "");
  /* too large for the target (or Inf / NaN) */
  LLVMValueRef big = LLVMBuildICmp(b, LLVMIntUGE, a, k32(c, bf16 ? 0x7f800000u : 0x47800000u), "");
  LLVMValueRef nan = LLVMBuildICmp(b, LLVMIntUGT, a, k32(c, 0x7f800000u), "");
  /* NaN: f16 gets the quiet NaN 0x7e00, bf16 keeps its payload, made quiet */
  LLVMValueRef qnan = bf16 ? LLVMBuildOr(b, LLVMBuildLShr(b, x, k32(c, 16), ""), k32(c, 0x40), "") : k32(c, 0x7e00);
  LLVMValueRef special = LLVMBuildSelect(b, nan, qnan, k32(c, bf16 ? 0x7f80 : 0x7c00), "");
  /* normal: rebias the exponent, round the dropped bits to nearest even */
  unsigned shift = bf16 ? 16 : 13;
  uint32_t rebias = bf16 ? 0 : (uint32_t)(15 - 127) << 23;
  LLVMValueRef odd = LLVMBuildAnd(b, LLVMBuildLShr(b, a, k32(c, shift), ""), k32(c, 1), "");
  LLVMValueRef r = LLVMBuildAdd(b, a, k32(c, rebias + (1u << (shift - 1)) - 1), "");
  r = LLVMBuildLShr(b, LLVMBuildAdd(b, r, odd, ""), k32(c, shift), "");
  if (!bf16) {
    /* below f16's normal range: adding 0.5f aligns the value so that the
     * FPU's round-to-nearest-even drops exactly the bits f16 cannot hold
     * (bf16 shares f32's exponent range: its formula covers subnormals) */
    LLVMValueRef sub = LLVMBuildICmp(b, LLVMIntULT, a, k32(c, 113u << 23), "");
    LLVMValueRef magic = LLVMBuildBitCast(b, k32(c, 0x3f000000u), f32, "");
    LLVMValueRef s = LLVMBuildFAdd(b, LLVMBuildBitCast(b, a, f32, ""), magic, "");
    s = LLVMBuildSub(b, LLVMBuildBitCast(b, s, i32, ""), k32(c, 0x3f000000u), "");
    r = LLVMBuildSelect(b, sub, s, r, "");
  }
  r = LLVMBuildOr(b, LLVMBuildSelect(b, big, special, r, ""), sign, "");
  LLVMValueRef h = LLVMBuildTrunc(b, r, LLVMInt16TypeInContext(c->ctx), "");
  return LLVMBuildBitCast(b, h, bf16 ? LLVMBFloatTypeInContext(c->ctx) : LLVMHalfTypeInContext(c->ctx), "");
}

/* f16 / bf16 -> f32, exact. */
LLVMValueRef kiln_llvm_widen_f32(cg *c, LLVMValueRef v, int bf16) {
  LLVMBuilderRef b = c->b;
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), f32 = LLVMFloatTypeInContext(c->ctx);
  LLVMValueRef h = LLVMBuildZExt(b, LLVMBuildBitCast(b, v, LLVMInt16TypeInContext(c->ctx), ""), i32, "");
  if (bf16) return LLVMBuildBitCast(b, LLVMBuildShl(b, h, k32(c, 16), ""), f32, "");
  LLVMValueRef o = LLVMBuildShl(b, LLVMBuildAnd(b, h, k32(c, 0x7fff), ""), k32(c, 13), "");
  LLVMValueRef e = LLVMBuildAnd(b, o, k32(c, 0x0f800000u), "");
  o = LLVMBuildAdd(b, o, k32(c, (uint32_t)(127 - 15) << 23), "");
  /* Inf / NaN: exponent all ones */
  LLVMValueRef inf = LLVMBuildAdd(b, o, k32(c, (uint32_t)(128 - 16) << 23), "");
  /* zero / subnormal: renormalise through the FPU (exact) */
  LLVMValueRef s = LLVMBuildBitCast(b, LLVMBuildAdd(b, o, k32(c, 1u << 23), ""), f32, "");
  s = LLVMBuildFSub(b, s, LLVMBuildBitCast(b, k32(c, 113u << 23), f32, ""), "");
  s = LLVMBuildBitCast(b, s, i32, "");
  o = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, e, k32(c, 0x0f800000u), ""), inf,
                      LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, e, k32(c, 0), ""), s, o, ""), "");
  o = LLVMBuildOr(b, o, LLVMBuildShl(b, LLVMBuildAnd(b, h, k32(c, 0x8000), ""), k32(c, 16), ""), "");
  return LLVMBuildBitCast(b, o, f32, "");
}

/* f32 -> f16 where the target converts natively (F16C: one vcvtps2ph per
 * vector): LLVM's fptrunc rounds to nearest even with subnormals and
 * overflow to Inf, as the bit manipulation above; only a NaN differs
 * (the instruction keeps the payload, and LLVM leaves NaN bits open), so a
 * NaN is replaced by ir/loop.h's quiet NaN 0x7e00 with x's sign, computed
 * from x's bits.  Bit-exact with kiln_llvm_narrow_f32 for every f32
 * (tests/backends/llvm/test_f16_native.c). */
LLVMValueRef kiln_llvm_narrow_f16_native(cg *c, LLVMValueRef v) {
  LLVMBuilderRef b = c->b;
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), i16 = LLVMInt16TypeInContext(c->ctx);
  LLVMValueRef h = LLVMBuildBitCast(b, LLVMBuildFPTrunc(b, v, LLVMHalfTypeInContext(c->ctx), ""), i16, "");
  LLVMValueRef x = LLVMBuildBitCast(b, v, i32, "");
  LLVMValueRef q = LLVMBuildOr(b, LLVMBuildAnd(b, LLVMBuildLShr(b, x, k32(c, 16), ""), k32(c, 0x8000), ""),
                               k32(c, 0x7e00), "");
  LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, v, v, "");
  h = LLVMBuildSelect(b, nan, LLVMBuildTrunc(b, q, i16, ""), h, "");
  return LLVMBuildBitCast(b, h, LLVMHalfTypeInContext(c->ctx), "");
}

/* f16 -> f32 natively (F16C: one vcvtph2ps per vector): exact for every
 * number; a NaN takes the bit manipulation's result (sign, payload
 * shifted into place, a signalling NaN left signalling: "exact"), which
 * the instruction would quiet. */
LLVMValueRef kiln_llvm_widen_f16_native(cg *c, LLVMValueRef v) {
  LLVMBuilderRef b = c->b;
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), f32 = LLVMFloatTypeInContext(c->ctx);
  LLVMValueRef h = LLVMBuildZExt(b, LLVMBuildBitCast(b, v, LLVMInt16TypeInContext(c->ctx), ""), i32, "");
  LLVMValueRef f = LLVMBuildBitCast(b, LLVMBuildFPExt(b, v, f32, ""), i32, "");
  LLVMValueRef a = LLVMBuildAnd(b, h, k32(c, 0x7fff), "");
  LLVMValueRef q = LLVMBuildAdd(b, LLVMBuildShl(b, a, k32(c, 13), ""), k32(c, (uint32_t)(255 - 31) << 23), "");
  q = LLVMBuildOr(b, q, LLVMBuildShl(b, LLVMBuildAnd(b, h, k32(c, 0x8000), ""), k32(c, 16), ""), "");
  LLVMValueRef nan = LLVMBuildICmp(b, LLVMIntUGT, a, k32(c, 0x7c00), "");
  return LLVMBuildBitCast(b, LLVMBuildSelect(b, nan, q, f, ""), f32, "");
}

/* f32 -> f16 -> f32 natively (kiln.RoundTo, passes/widen_f16.c): fptrunc
 * and fpext, one instruction each per vector.  For a number that is the
 * two casts above exactly; a NaN becomes what they give it, ir/loop.h's
 * quiet NaN with x's sign (f16 0x7e00 widened: 0x7fc00000), in place of
 * the two NaN fix-ups' twenty-odd instructions. */
LLVMValueRef kiln_llvm_round_f16_native(cg *c, LLVMValueRef v) {
  LLVMBuilderRef b = c->b;
  /* v may be a vector of lanes (llvm_lanes.c): each type and constant then
   * is one of as many lanes */
  unsigned n = LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMVectorTypeKind ? LLVMGetVectorSize(LLVMTypeOf(v)) : 0;
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), f32 = LLVMFloatTypeInContext(c->ctx);
  LLVMTypeRef f16 = LLVMHalfTypeInContext(c->ctx);
  LLVMValueRef sign = k32(c, 0x80000000u), qnan = k32(c, 0x7fc00000u);
  if (n) {
    i32 = LLVMVectorType(i32, n), f32 = LLVMVectorType(f32, n), f16 = LLVMVectorType(f16, n);
    LLVMValueRef s[KILN_LLVM_MAX_LANES], q[KILN_LLVM_MAX_LANES];
    for (unsigned j = 0; j < n && j < KILN_LLVM_MAX_LANES; j++) s[j] = sign, q[j] = qnan;
    sign = LLVMConstVector(s, n), qnan = LLVMConstVector(q, n);
  }
  LLVMValueRef r = LLVMBuildFPExt(b, LLVMBuildFPTrunc(b, v, f16, ""), f32, "");
  LLVMValueRef x = LLVMBuildBitCast(b, v, i32, "");
  LLVMValueRef q = LLVMBuildOr(b, LLVMBuildAnd(b, x, sign, ""), qnan, "");
  LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, v, v, "");
  return LLVMBuildSelect(b, nan, LLVMBuildBitCast(b, q, f32, ""), r, "");
}

/* Whether tm converts half <-> float with instructions (F16C, AVX-512
 * FP16) rather than through compiler-rt's __extendhfsf2 / __truncsfhf2,
 * which kiln does not provide: the assembly of a probe function that
 * does both says. */
int kiln_llvm_tm_native_f16(LLVMTargetMachineRef tm) {
  char *triple = LLVMGetTargetMachineTriple(tm), *err = NULL;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("probe", ctx);
  LLVMSetTarget(mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx);
  LLVMTypeRef half = LLVMHalfTypeInContext(ctx), f32 = LLVMFloatTypeInContext(ctx);
  LLVMValueRef fn = LLVMAddFunction(mod, "probe", LLVMFunctionType(LLVMVoidTypeInContext(ctx), &ptr, 1, 0));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef p = LLVMGetParam(fn, 0), eight = LLVMConstInt(i64, 8, 0);
  LLVMValueRef q = LLVMBuildGEP2(b, LLVMInt8TypeInContext(ctx), p, &eight, 1, "");
  LLVMValueRef w = LLVMBuildFPExt(b, LLVMBuildLoad2(b, half, p, ""), f32, "");
  LLVMValueRef n = LLVMBuildFPTrunc(b, LLVMBuildLoad2(b, f32, q, ""), half, "");
  LLVMBuildStore(b, w, q);
  LLVMBuildStore(b, n, p);
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  LLVMMemoryBufferRef asm_text = NULL;
  int native = 0;
  if (!LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &err, &asm_text)) {
    size_t len = LLVMGetBufferSize(asm_text);
    const char *t = LLVMGetBufferStart(asm_text);
    /* a call into a runtime helper: __extendhfsf2, __truncsfhf2, __gnu_h2f_ieee, __gnu_f2h_ieee */
    static const char *const helpers[] = {"hfsf2", "sfhf2", "__gnu_", NULL};
    native = 1;
    for (size_t i = 0; i < len && native; i++)
      for (int h = 0; helpers[h]; h++)
        if (len - i >= strlen(helpers[h]) && !memcmp(t + i, helpers[h], strlen(helpers[h]))) native = 0;
    LLVMDisposeMemoryBuffer(asm_text);
  } else {
    LLVMDisposeMessage(err);
  }
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return native;
}

int kiln_llvm_native_f16(int portable) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *cpu, *features, *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
  kiln_llvm_target_cpu(&cpu, &features);
  LLVMTargetRef target;
  int native = 0;
  if (!LLVMGetTargetFromTriple(triple, &target, &err)) {
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(target, triple, portable ? "x86-64" : cpu, portable ? "" : features,
                                LLVMCodeGenLevelDefault, LLVMRelocPIC, LLVMCodeModelDefault);
    if (tm) {
      native = kiln_llvm_tm_native_f16(tm);
      LLVMDisposeTargetMachine(tm);
    }
  } else {
    LLVMDisposeMessage(err);
  }
  kiln_llvm_target_cpu_free(cpu, features);
  LLVMDisposeMessage(triple);
  return native;
}

/* The CPU to compile for: KILN_CPU, or the host (with its exact features),
 * plus "prefer-no-gather".  LLVM marks gathers fast on every AVX-512 CPU
 * and then vectorises some strided loads as gathers instead of wide loads
 * and shuffles; on this project's Zen 5 hosts that made 3x3 stride-2 max
 * pools 2-4x slower than the shuffles LLVM picked for the same pool with
 * another row length (GoogLeNet's pool1 0.35 -> 0.23 ms, pool2 0.28 ->
 * 0.15 ms with the feature; ResNet-50's and MobileNetV2's global average
 * pools 0.044 -> 0.011 and 0.024 -> 0.007 ms; every other kernel of
 * ResNet-50, MobileNetV2, GoogLeNet, SqueezeNet, U-Net and AlexNet within
 * the noise: bench/README.md, "Gathers").  Loads that are not strided
 * (a Gather op's indices) are then scalar loads, as without AVX2. */
void kiln_llvm_target_cpu(char **cpu, char **features) {
  const char *over = getenv("KILN_CPU");
  char *f;
  if (over && *over) {
    *cpu = LLVMCreateMessage(over);
    f = LLVMCreateMessage("");
  } else {
    *cpu = LLVMGetHostCPUName();
    f = LLVMGetHostCPUFeatures();
  }
  char *triple = LLVMGetDefaultTargetTriple();
  int x86 = !strncmp(triple, "x86_64", 6) || (triple[0] == 'i' && !strncmp(triple + 2, "86", 2));
  LLVMDisposeMessage(triple);
  size_t n = strlen(f) + sizeof ",+prefer-no-gather";
  char *all = x86 ? malloc(n) : NULL; /* (another target would warn of an unknown feature) */
  if (!all) {
    *features = f;
    return;
  }
  snprintf(all, n, "%s%s+prefer-no-gather", f, *f ? "," : "");
  *features = LLVMCreateMessage(all);
  free(all);
  LLVMDisposeMessage(f);
}

void kiln_llvm_target_cpu_free(char *cpu, char *features) {
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
}

/* The widest vector register of cpu (with features) in bytes: LLVM has
 * no C API for a named CPU's features (KILN_CPU gives no feature string),
 * so ask its code generator.  A <16 x float> add is printed as one zmm
 * instruction with AVX-512, two ymm with AVX, four xmm otherwise; the
 * assembly of that one function says which. */
static int vector_bytes(const char *triple, const char *cpu, const char *features) {
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    LLVMDisposeMessage(err);
    return 16;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelDefault,
                                                    LLVMRelocDefault, LLVMCodeModelDefault);
  if (!tm) return 16;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("probe", ctx);
  LLVMSetTarget(mod, triple);
  LLVMTypeRef v16 = LLVMVectorType(LLVMFloatTypeInContext(ctx), 16), ptr = LLVMPointerTypeInContext(ctx, 0);
  LLVMValueRef fn = LLVMAddFunction(mod, "probe", LLVMFunctionType(LLVMVoidTypeInContext(ctx), &ptr, 1, 0));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef v = LLVMBuildLoad2(b, v16, LLVMGetParam(fn, 0), "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, v, v, ""), LLVMGetParam(fn, 0));
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  LLVMMemoryBufferRef asm_text = NULL;
  int bytes = 16;
  if (!LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &err, &asm_text)) {
    size_t n = LLVMGetBufferSize(asm_text);
    const char *t = LLVMGetBufferStart(asm_text);
    for (size_t i = 0; i + 3 <= n; i++) {
      if (!memcmp(t + i, "zmm", 3)) { bytes = 64; break; }
      if (!memcmp(t + i, "ymm", 3)) bytes = 32;
    }
    LLVMDisposeMemoryBuffer(asm_text);
  } else {
    LLVMDisposeMessage(err);
  }
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  LLVMDisposeTargetMachine(tm);
  return bytes;
}

/* Whether the code is for an Intel core: KILN_CPU's name when set (AMD's
 * are znver*, bdver*, btver*, k8...; the generic x86-64* are neither),
 * else the host's cpuid vendor. */
static int intel_cpu(const char *over) {
  if (over && *over) {
    static const char *const amd[] = {"znver", "bdver", "btver", "amdfam", "athlon", "opteron", "k8", "barcelona", "x86-64"};
    for (size_t i = 0; i < sizeof amd / sizeof *amd; i++)
      if (!strncmp(over, amd[i], strlen(amd[i]))) return 0;
    return strcmp(over, "generic") != 0;
  }
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
  char v[13];
  memcpy(v, &b, 4), memcpy(v + 4, &d, 4), memcpy(v + 8, &c, 4), v[12] = 0;
  return !strcmp(v, "GenuineIntel");
#else
  return 0;
#endif
}

kiln_target kiln_llvm_target(int portable) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *cpu, *features;
  kiln_llvm_target_cpu(&cpu, &features); /* KILN_CPU or the host */
  const char *c = portable ? "x86-64" : cpu, *f = portable ? "" : features;
  char *triple = LLVMGetDefaultTargetTriple();
  kiln_target t = kiln_target_cpu(c, vector_bytes(triple, c, f), kiln_target_host_cores());
  t.lane_statements = 1; /* llvm_lanes.c */
  t.intel_core = !portable && intel_cpu(getenv("KILN_CPU"));
  LLVMDisposeMessage(triple);
  kiln_llvm_target_cpu_free(cpu, features);
  return t;
}

/* Symbols generated code may call: libm (what LLVM's math intrinsics and
 * the printer's calls become), libc's mem*, and the runtime. */
int kiln_llvm_symbol_allowed(const char *name) {
  static const char *const ok[] = {
      "tanhf", "tanh", "erff", "erf", "expf", "exp", "exp2f", "exp2", "logf", "log", "log2f", "log2", "powf", "pow",
      "fmodf", "fmod", "sqrtf", "sqrt", "floorf", "floor", "ceilf", "ceil", "roundevenf", "roundeven", "nearbyintf",
      "nearbyint", "rintf", "rint", "truncf", "trunc", "roundf", "round", "fabsf", "fabs", "fminf", "fmin",
      "fmaxf", "fmax", "fmaf", "fma", "memset", "memcpy", "memmove", "kiln_rt_parallel_for",
      "kiln_rt_profile_mark", /* profiled JIT code only (kiln run --profile) */
      "_GLOBAL_OFFSET_TABLE_", /* defined by every linker (PIC code) */
      NULL};
  for (int i = 0; ok[i]; i++)
    if (!strcmp(name, ok[i])) return 1;
  return 0;
}

/* Undefined symbols of an object outside the allowlist: returns the count
 * and names the first in bad[size].  An ELF symbol in no section is
 * undefined (the file symbol is nameless: the module's source name is "").
 * -1 when the object cannot be read. */
int kiln_llvm_object_foreign_symbols(LLVMMemoryBufferRef obj, char *bad, size_t size) {
  char *err = NULL;
  LLVMBinaryRef bin = LLVMCreateBinary(obj, NULL, &err);
  if (!bin) {
    snprintf(bad, size, "%s", err ? err : "unreadable object");
    LLVMDisposeMessage(err);
    return -1;
  }
  LLVMSectionIteratorRef sect = LLVMObjectFileCopySectionIterator(bin);
  LLVMSymbolIteratorRef sym = LLVMObjectFileCopySymbolIterator(bin);
  int n = 0;
  for (; !LLVMObjectFileIsSymbolIteratorAtEnd(bin, sym); LLVMMoveToNextSymbol(sym)) {
    const char *name = LLVMGetSymbolName(sym);
    LLVMMoveToContainingSection(sect, sym);
    if (!name || !*name || !LLVMObjectFileIsSectionIteratorAtEnd(bin, sect) || kiln_llvm_symbol_allowed(name)) continue;
    if (n++ == 0) snprintf(bad, size, "%s", name);
  }
  LLVMDisposeSymbolIterator(sym);
  LLVMDisposeSectionIterator(sect);
  LLVMDisposeBinary(bin);
  return n;
}
