/* Ahead-of-time output: the same modules as the JIT's, named for the
 * model and with its buffer table as a constant, optimised in tiers and
 * linked (llvm_optimise.c), emitted as an ELF object into memory (the
 * caller writes it atomically). */
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>
#include <string.h>

#include "llvm_internal.h"

static void add_layout(cg *c, const kiln_program *p, const char *prefix) {
  enum { HEAD = 7 }; /* runtime/kiln_runtime.h, layout version 2 */
  int n = HEAD + 4 * p->nbufs;
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMValueRef *v = calloc((size_t)n, sizeof *v);
  int64_t head[HEAD] = {2, p->nbufs, p->workspace_bytes, p->weights_bytes, p->ninputs, p->noutputs, p->state_bytes};
  for (int i = 0; i < HEAD; i++) v[i] = LLVMConstInt(i64, (unsigned long long)head[i], 1);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    /* a view (kind 5) is addressed through its root by the kernels */
    int64_t e[4] = {buf->view_of ? 5 : buf->kind, buf->io_index, buf->kind >= KILN_BUF_WEIGHT ? buf->offset : 0,
                    buf->numel * (int64_t)kiln_dtype_size(buf->dtype)};
    for (int k = 0; k < 4; k++) v[HEAD + 4 * b + k] = LLVMConstInt(i64, (unsigned long long)e[k], 1);
  }
  char name[256];
  snprintf(name, sizeof name, "%s_layout", prefix);
  LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMArrayType2(i64, (uint64_t)n), name);
  LLVMSetInitializer(g, LLVMConstArray2(i64, v, (uint64_t)n));
  LLVMSetGlobalConstant(g, 1);
  free(v);
}

int kiln_llvm_emit_object(const kiln_program *p, const char *prefix, int portable, void **obj, size_t *len,
                          kiln_timing *t, kiln_diag *d) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    kiln_error(d, NULL, "LLVM: no target for %s: %s", triple, err);
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(triple);
    return -1;
  }
  char *cpu, *features;
  kiln_llvm_target_cpu(&cpu, &features); /* KILN_CPU or the host */
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, portable ? "x86-64" : cpu,
                                                    portable ? "" : features, LLVMCodeGenLevelAggressive,
                                                    LLVMRelocPIC, LLVMCodeModelDefault);
  kiln_llvm_target_cpu_free(cpu, features);
  cg c = {0};
  c.ctx = LLVMContextCreate();
  c.mod = LLVMModuleCreateWithNameInContext(prefix, c.ctx);
  LLVMSetSourceFileName(c.mod, "", 0); /* no file symbol (the symbol check) */
  c.b = LLVMCreateBuilderInContext(c.ctx);
  char entry[256];
  snprintf(entry, sizeof entry, "%s_kernels", prefix);
  c.entry = entry;
  LLVMSetTarget(c.mod, triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  char *dl = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(c.mod, dl);
  LLVMDisposeMessage(dl);
  LLVMDisposeTargetData(td);
  c.native_f16 = kiln_llvm_tm_native_f16(tm);
  c.light = kiln_llvm_tier_module(&c, "kiln_light");
  c.tiled = kiln_llvm_tier_module(&c, "kiln_tiled");
  int rc = -1, cgrc = kiln_llvm_codegen(&c, p);
  add_layout(&c, p, prefix);
  LLVMDisposeBuilder(c.b);
  kiln_timing_mark(t, "llvm-ir");
  kiln_llvm_twins_report(&c, t);
  kiln_llvm_lanes_report(&c, t);
  if (cgrc) {
    kiln_error(d, NULL, "out of memory");
    goto out;
  }
  if (kiln_llvm_verify(&c, d)) goto out;
  kiln_timing_mark(t, "llvm-verify");
  if (kiln_llvm_optimise(&c, tm, t, d)) goto out;
  LLVMMemoryBufferRef mb;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, c.mod, LLVMObjectFile, &err, &mb)) {
    kiln_error(d, NULL, "LLVM: cannot emit the object: %s", err);
    goto out;
  }
  kiln_timing_mark(t, "llvm-codegen");
  char bad[256];
  int nbad = kiln_llvm_object_foreign_symbols(mb, bad, sizeof bad);
  if (nbad) {
    kiln_error(d, NULL, nbad < 0 ? "LLVM: cannot read the emitted object: %s"
                                 : "internal error: the object calls '%s', which kiln does not provide on every host",
               bad);
    LLVMDisposeMemoryBuffer(mb);
    goto out;
  }
  *len = LLVMGetBufferSize(mb);
  *obj = malloc(*len ? *len : 1);
  if (*obj) memcpy(*obj, LLVMGetBufferStart(mb), *len);
  LLVMDisposeMemoryBuffer(mb);
  rc = *obj ? 0 : kiln_error(d, NULL, "out of memory");
out:
  kiln_llvm_codegen_free(&c);
  if (err) LLVMDisposeMessage(err);
  LLVMDisposeModule(c.mod);
  LLVMContextDispose(c.ctx);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeMessage(triple);
  return rc;
}
