/* ORC LLJIT driver: build the modules, verify them, optimise them in two
 * tiers for the host CPU (or KILN_CPU's; llvm_optimise.c), JIT the linked
 * module, look up kiln_run.  Stages are marked on the caller's timing. */
#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <string.h>

#include "../../runtime/kiln_runtime.h"
#include "llvm_internal.h"

struct kiln_llvm_jit {
  LLVMOrcLLJITRef jit;
  void (*run)(void **bufs);
  void (*run_profiled)(void **bufs, double *stamps); /* instead of run, when profiling */
  double *stamps;     /* profiling: the last run's kiln_rt_profile_mark times (a row per image) */
  int images;         /* kiln_program.images: rows of stamps */
  int nbufs, nkernels;
  kiln_rt_pool *pool; /* NULL: single-threaded */
  void *state;        /* the state blob (p->state_bytes), this instance's own */
  int *state_bufs;    /* ids of the state buffers (not views), -1 ended */
  int64_t *state_off; /* their offsets in the blob */
  char why[400];      /* why linking failed (check_object) */
};

/* The runtime entry points generated code calls, resolved to this
 * process's copies (an executable's symbols are not visible to dlsym). */
static LLVMErrorRef define_runtime(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd) {
  LLVMOrcCSymbolMapPair sym[2] = {
      {LLVMOrcLLJITMangleAndIntern(jit, "kiln_rt_parallel_for"),
       {(LLVMOrcExecutorAddress)(uintptr_t)&kiln_rt_parallel_for, {LLVMJITSymbolGenericFlagsExported, 0}}},
      {LLVMOrcLLJITMangleAndIntern(jit, "kiln_rt_profile_mark"),
       {(LLVMOrcExecutorAddress)(uintptr_t)&kiln_rt_profile_mark, {LLVMJITSymbolGenericFlagsExported, 0}}}};
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(sym, 2);
  return LLVMOrcJITDylibDefine(jd, mu);
}

static int allowed_symbol(void *ctx, LLVMOrcSymbolStringPoolEntryRef sym) {
  (void)ctx;
  return kiln_llvm_symbol_allowed(LLVMOrcSymbolStringPoolEntryStr(sym));
}

/* Every object the JIT links is checked before linking: an undefined
 * symbol outside the allowlist (a compiler-rt helper this CPU needs and
 * another would not) fails the compilation here and on every host. */
static LLVMErrorRef check_object(void *ctx, LLVMMemoryBufferRef *obj) {
  char bad[256], *msg = ctx; /* kiln_llvm_jit.why: the lookup's error reports it */
  int n = kiln_llvm_object_foreign_symbols(*obj, bad, sizeof bad);
  if (n == 0) return NULL;
  if (n < 0) snprintf(msg, 400, "cannot read the generated object: %s", bad);
  else snprintf(msg, 400, "generated code calls '%s', which kiln does not provide on every host", bad);
  return LLVMCreateStringError(msg);
}

/* Session errors become the lookup's one-line diagnostic, not stderr noise. */
static void quiet_session_error(void *ctx, LLVMErrorRef err) {
  (void)ctx;
  LLVMConsumeError(err);
}

static int llvm_fail(kiln_diag *d, const char *what, LLVMErrorRef err) {
  char *msg = LLVMGetErrorMessage(err);
  kiln_error(d, NULL, "LLVM: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return -1;
}

LLVMTargetMachineRef kiln_llvm_host_machine(const char *triple, kiln_diag *d) {
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    kiln_error(d, NULL, "LLVM: no target for %s: %s", triple, err);
    LLVMDisposeMessage(err);
    return NULL;
  }
  char *cpu, *features;
  kiln_llvm_target_cpu(&cpu, &features); /* KILN_CPU or the host */
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive,
                                                    LLVMRelocPIC, LLVMCodeModelJITDefault);
  kiln_llvm_target_cpu_free(cpu, features);
  return tm;
}

/* The instance's state: allocated and initialised once, here; every run
 * reads and updates it (kiln_llvm_jit_run binds it). */
static int init_state(kiln_llvm_jit *j, const kiln_program *p) {
  int n = 0;
  j->state_bufs = malloc(((size_t)p->nbufs + 1) * sizeof *j->state_bufs);
  j->state_off = malloc(((size_t)p->nbufs + 1) * sizeof *j->state_off);
  j->state = p->state_bytes > 0 ? aligned_alloc(64, ((size_t)p->state_bytes + 63) & ~(size_t)63) : NULL;
  if (!j->state_bufs || !j->state_off || (p->state_bytes > 0 && !j->state)) return -1;
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_STATE && !p->bufs[i]->view_of) {
      j->state_bufs[n] = i;
      j->state_off[n++] = p->bufs[i]->offset;
    }
  j->state_bufs[n] = -1;
  if (j->state) kiln_program_state_init(p, j->state);
  return 0;
}

void *kiln_llvm_jit_state(kiln_llvm_jit *j, const kiln_program *p, int64_t *bytes) {
  if (bytes) *bytes = p->state_bytes;
  return j->state;
}

kiln_llvm_jit *kiln_llvm_jit_compile(const kiln_program *p, kiln_diag *d) {
  return kiln_llvm_jit_compile_with(p, 0, NULL, d);
}

kiln_llvm_jit *kiln_llvm_jit_compile_with(const kiln_program *p, int profile, kiln_timing *t, kiln_diag *d) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  kiln_llvm_jit *j = calloc(1, sizeof *j);
  /* the JIT's code generator targets the same CPU as the optimiser:
   * KILN_CPU's when set, so a test can build what another host would */
  char *host_triple = LLVMGetDefaultTargetTriple();
  LLVMTargetMachineRef jtm = kiln_llvm_host_machine(host_triple, d);
  LLVMDisposeMessage(host_triple);
  if (!jtm) { free(j); return NULL; }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&j->jit, builder); /* takes the builder */
  if (err) { llvm_fail(d, "cannot create the JIT", err); free(j); return NULL; }
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  cg c = {0};
  c.profile = profile;
  c.ctx = LLVMOrcThreadSafeContextGetContext(tsc);
  c.mod = LLVMModuleCreateWithNameInContext("kiln", c.ctx);
  LLVMSetSourceFileName(c.mod, "", 0); /* no file symbol: see check_object */
  c.b = LLVMCreateBuilderInContext(c.ctx);
  const char *triple = LLVMOrcLLJITGetTripleString(j->jit);
  LLVMSetTarget(c.mod, triple);
  LLVMSetDataLayout(c.mod, LLVMOrcLLJITGetDataLayoutStr(j->jit));
  LLVMTargetMachineRef tm = kiln_llvm_host_machine(triple, d);
  c.native_f16 = tm && kiln_llvm_tm_native_f16(tm);
  c.light = kiln_llvm_tier_module(&c, "kiln_light");
  c.tiled = kiln_llvm_tier_module(&c, "kiln_tiled");
  int cgrc = kiln_llvm_codegen(&c, p);
  LLVMDisposeBuilder(c.b);
  kiln_timing_mark(t, "llvm-ir");
  kiln_llvm_twins_report(&c, t);
  kiln_llvm_lanes_report(&c, t);
  if (cgrc || kiln_llvm_verify(&c, d)) {
    if (cgrc) kiln_error(d, NULL, "out of memory");
    kiln_llvm_codegen_free(&c);
    LLVMDisposeModule(c.mod);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (tm) LLVMDisposeTargetMachine(tm);
    kiln_llvm_jit_free(j);
    return NULL;
  }
  kiln_timing_mark(t, "llvm-verify");
  int bad = !tm || kiln_llvm_optimise(&c, tm, t, d);
  kiln_llvm_codegen_free(&c);
  if (tm) LLVMDisposeTargetMachine(tm);
  if (bad) {
    LLVMDisposeModule(c.mod);
    LLVMOrcDisposeThreadSafeContext(tsc);
    kiln_llvm_jit_free(j);
    return NULL;
  }
  /* libm (tanhf, erff) and libc's mem* come from this process, and
   * nothing else: a compiler-rt helper the process happens to carry
   * (libgcc's half conversions) would be missing on another host */
  LLVMOrcDefinitionGeneratorRef gen;
  err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit),
                                                             allowed_symbol, NULL);
  if (err) { llvm_fail(d, "cannot search the process for symbols", err); kiln_llvm_jit_free(j); return NULL; }
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
  LLVMOrcJITDylibAddGenerator(jd, gen);
  err = define_runtime(j->jit, jd);
  if (err) { llvm_fail(d, "cannot define runtime symbols", err); kiln_llvm_jit_free(j); return NULL; }
  LLVMOrcObjectTransformLayerSetTransform(LLVMOrcLLJITGetObjTransformLayer(j->jit), check_object, j->why);
  LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(j->jit), quiet_session_error, NULL);
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(c.mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc); /* the module keeps it alive */
  err = LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, tsm);
  if (err) { llvm_fail(d, "cannot add the module", err); kiln_llvm_jit_free(j); return NULL; }
  LLVMOrcExecutorAddress addr;
  err = LLVMOrcLLJITLookup(j->jit, &addr, "kiln_run");
  if (err && j->why[0]) {
    LLVMConsumeError(err);
    kiln_error(d, NULL, "internal error: %s", j->why);
    kiln_llvm_jit_free(j);
    return NULL;
  }
  if (err) { llvm_fail(d, "cannot compile the module", err); kiln_llvm_jit_free(j); return NULL; }
  if (profile) j->run_profiled = (void (*)(void **, double *))(uintptr_t)addr;
  else j->run = (void (*)(void **))(uintptr_t)addr;
  j->nbufs = p->nbufs;
  j->nkernels = p->nkernels;
  j->images = p->images > 1 ? (int)p->images : 1;
  if (profile && !(j->stamps = calloc(((size_t)p->nkernels + 1) * (size_t)j->images, sizeof *j->stamps))) {
    kiln_error(d, NULL, "out of memory");
    kiln_llvm_jit_free(j);
    return NULL;
  }
  if (init_state(j, p)) { kiln_error(d, NULL, "out of memory"); kiln_llvm_jit_free(j); return NULL; }
  kiln_timing_mark(t, "llvm-codegen-jit");
  return j;
}

void kiln_llvm_jit_bind(const kiln_program *p, void **bufs, void *workspace) {
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_WEIGHT) bufs[i] = (void *)b->data;
    else if (b->kind == KILN_BUF_WORKSPACE) bufs[i] = (char *)workspace + b->offset;
  }
}

void kiln_llvm_jit_run(kiln_llvm_jit *j, void **bufs) {
  bufs[j->nbufs] = j->pool;
  for (int k = 0; j->state_bufs[k] >= 0; k++) bufs[j->state_bufs[k]] = (char *)j->state + j->state_off[k];
  if (j->run_profiled) j->run_profiled(bufs, j->stamps);
  else j->run(bufs);
}

const double *kiln_llvm_jit_profile(const kiln_llvm_jit *j, int *nstamps) {
  if (nstamps) *nstamps = j->stamps ? (j->nkernels + 1) * j->images : 0;
  return j->stamps;
}

int kiln_llvm_jit_set_threads(kiln_llvm_jit *j, int nthreads) {
  kiln_rt_pool *p = nthreads > 1 ? kiln_rt_pool_create(nthreads) : NULL;
  if (nthreads > 1 && !p) return -1;
  kiln_rt_pool_destroy(j->pool);
  j->pool = p;
  return 0;
}

void kiln_llvm_jit_free(kiln_llvm_jit *j) {
  if (!j) return;
  if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
  kiln_rt_pool_destroy(j->pool);
  free(j->state);
  free(j->stamps);
  free(j->state_bufs);
  free(j->state_off);
  free(j);
}
