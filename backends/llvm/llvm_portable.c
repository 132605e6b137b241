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

/* The CPU to compile for: KILN_CPU, or the host (with its exact features). */
void kiln_llvm_target_cpu(char **cpu, char **features) {
  const char *over = getenv("KILN_CPU");
  if (over && *over) {
    *cpu = LLVMCreateMessage(over);
    *features = LLVMCreateMessage("");
  } else {
    *cpu = LLVMGetHostCPUName();
    *features = LLVMGetHostCPUFeatures();
  }
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

kiln_target kiln_llvm_target(int portable) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *cpu, *features;
  kiln_llvm_target_cpu(&cpu, &features); /* KILN_CPU or the host */
  const char *c = portable ? "x86-64" : cpu, *f = portable ? "" : features;
  char *triple = LLVMGetDefaultTargetTriple();
  kiln_target t = kiln_target_cpu(c, vector_bytes(triple, c, f), kiln_target_host_cores());
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
