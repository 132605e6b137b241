/* Shared by the LLVM backend's files. */
#ifndef KILN_LLVM_INTERNAL_H
#define KILN_LLVM_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdlib.h>

#include "kiln_llvm.h"

typedef struct cg {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMValueRef *base;   /* per buffer id: its base pointer in this kernel */
  LLVMValueRef *index;  /* per loop var: the induction variable */
  LLVMValueRef *local;  /* per local: its alloca */
  const char *entry;    /* name of the function running every kernel */
  int profile;          /* the entry takes (bufs, stamps) and marks each kernel's
                           start and end (kiln_rt_profile_mark); JIT only */
  int native_f16;       /* the target converts f16 <-> f32 in hardware (F16C) */
} cg;

int kiln_llvm_codegen(cg *c, const kiln_program *p);
/* llvm_jit.c: a target machine for KILN_CPU's CPU, or this host's. */
LLVMTargetMachineRef kiln_llvm_host_machine(const char *triple, kiln_diag *d);
LLVMTypeRef kiln_llvm_value_type(cg *c, kiln_dtype t);
/* llvm_portable.c: f16/bf16 conversions as bit manipulation, the target
 * CPU (KILN_CPU overrides the host), the symbols generated code may use. */
LLVMValueRef kiln_llvm_narrow_f32(cg *c, LLVMValueRef v, int bf16);
LLVMValueRef kiln_llvm_widen_f32(cg *c, LLVMValueRef v, int bf16);
/* The same for f16 through LLVM's half conversions (cg.native_f16), bit
 * for bit the results of the two above. */
LLVMValueRef kiln_llvm_narrow_f16_native(cg *c, LLVMValueRef v);
LLVMValueRef kiln_llvm_widen_f16_native(cg *c, LLVMValueRef v);
int kiln_llvm_tm_native_f16(LLVMTargetMachineRef tm);
void kiln_llvm_target_cpu(char **cpu, char **features);
void kiln_llvm_target_cpu_free(char *cpu, char *features);
int kiln_llvm_symbol_allowed(const char *name);
int kiln_llvm_object_foreign_symbols(LLVMMemoryBufferRef obj, char *bad, size_t size);

#endif
