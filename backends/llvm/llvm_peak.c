/* One core's FMA peak for the code the LLVM backend generates
 * (kiln_llvm_fma_peak), the yardstick of `kiln run --profile`.
 *
 * Measured, not computed from a clock and a port count, because neither is
 * known reliably inside a VM (turbo, AVX-512 frequency licences, a
 * hypervisor's CPU model): a JIT-compiled loop runs CHAINS independent
 * chains of vector FMAs, enough to cover the FMA latency on two ports
 * (4-5 cycles x 2 on current x86), at the target's vector width (KILN_CPU
 * or the host, kiln_llvm_target), and the best of RUNS short runs gives
 * FLOP/s = iterations x CHAINS x ROUNDS x lanes x 2.  The chains compute
 * a*0.5 + 0.25, which converges to 0.5: no denormals, no overflow.  The
 * module is written as LLVM IR text: it is a fixed kernel, not a loop-IR
 * program. */
#include <llvm-c/Error.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "llvm_internal.h"

enum {
  CHAINS = 12,       /* accumulators: 12 vector registers of 16 (AVX2) or 32 */
  ROUNDS = 2,        /* FMAs per chain per loop iteration */
  ITERS = 1 << 19,   /* loop iterations per run: a few milliseconds */
  RUNS = 5           /* the fastest run counts */
};

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "<float C, float C, ...>" (lanes of them) into buf. */
static void splat(char *buf, size_t size, int lanes, const char *c) {
  size_t n = (size_t)snprintf(buf, size, "<");
  for (int i = 0; i < lanes && n < size; i++) n += (size_t)snprintf(buf + n, size - n, "%sfloat %s", i ? ", " : "", c);
  if (n < size) snprintf(buf + n, size - n, ">");
}

/* The kernel: void kiln_peak(i64 n, ptr out). */
static char *peak_ir(int lanes) {
  size_t size = 64 * 1024;
  char *ir = malloc(size), one[2048], half[2048], quarter[2048], ty[32];
  if (!ir) return NULL;
  snprintf(ty, sizeof ty, "<%d x float>", lanes);
  splat(one, sizeof one, lanes, "1.000000e+00");
  splat(half, sizeof half, lanes, "5.000000e-01");
  splat(quarter, sizeof quarter, lanes, "2.500000e-01");
  size_t n = 0;
#define EMIT(...) (n += (size_t)snprintf(ir + n, n < size ? size - n : 0, __VA_ARGS__))
  EMIT("declare %s @llvm.fma.v%df32(%s, %s, %s)\n", ty, lanes, ty, ty, ty);
  EMIT("define void @kiln_peak(i64 %%n, ptr %%out) #0 {\nentry:\n  br label %%loop\nloop:\n");
  EMIT("  %%i = phi i64 [ 0, %%entry ], [ %%i1, %%loop ]\n");
  for (int c = 0; c < CHAINS; c++) EMIT("  %%a%d_0 = phi %s [ %s, %%entry ], [ %%a%d_%d, %%loop ]\n", c, ty, one, c, ROUNDS);
  for (int r = 1; r <= ROUNDS; r++)
    for (int c = 0; c < CHAINS; c++)
      EMIT("  %%a%d_%d = call %s @llvm.fma.v%df32(%s %%a%d_%d, %s %s, %s %s)\n", c, r, ty, lanes, ty, c, r - 1, ty, half,
           ty, quarter);
  EMIT("  %%i1 = add i64 %%i, 1\n  %%more = icmp ult i64 %%i1, %%n\n  br i1 %%more, label %%loop, label %%exit\nexit:\n");
  EMIT("  %%s0 = fadd %s %%a0_%d, %%a1_%d\n", ty, ROUNDS, ROUNDS);
  for (int c = 2; c < CHAINS; c++) EMIT("  %%s%d = fadd %s %%s%d, %%a%d_%d\n", c - 1, ty, c - 2, c, ROUNDS);
  EMIT("  store %s %%s%d, ptr %%out, align 4\n  ret void\n}\n", ty, CHAINS - 2);
  EMIT("attributes #0 = { \"min-legal-vector-width\"=\"%d\" \"prefer-vector-width\"=\"%d\" }\n", lanes * 32, lanes * 32);
#undef EMIT
  if (n >= size) { free(ir); return NULL; }
  return ir;
}

static double fail(kiln_diag *d, const char *what, LLVMErrorRef err) {
  char *msg = err ? LLVMGetErrorMessage(err) : NULL;
  kiln_error(d, NULL, "LLVM: FMA peak: %s%s%s", what, msg ? ": " : "", msg ? msg : "");
  if (msg) LLVMDisposeErrorMessage(msg);
  return -1;
}

double kiln_llvm_fma_peak(kiln_diag *d) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  int lanes = kiln_llvm_target(0).vector_bytes / 4;
  if (lanes < 4) lanes = 4;
  if (lanes > 64) lanes = 64; /* out[] below */
  char *ir = peak_ir(lanes);
  if (!ir) return fail(d, "out of memory", NULL);
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetMachineRef tm = kiln_llvm_host_machine(triple, d);
  LLVMDisposeMessage(triple);
  if (!tm) { free(ir); return -1; }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  LLVMOrcLLJITRef jit;
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&jit, builder);
  if (err) { free(ir); return fail(d, "cannot create the JIT", err); }
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(ir, strlen(ir), "kiln_peak");
  free(ir);
  LLVMModuleRef mod;
  char *msg = NULL;
  double result = -1;
  if (LLVMParseIRInContext(LLVMOrcThreadSafeContextGetContext(tsc), buf, &mod, &msg)) {
    kiln_error(d, NULL, "internal error: FMA peak kernel: %.300s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMOrcDisposeLLJIT(jit);
    return -1;
  }
  LLVMSetTarget(mod, LLVMOrcLLJITGetTripleString(jit));
  LLVMSetDataLayout(mod, LLVMOrcLLJITGetDataLayoutStr(jit));
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMOrcExecutorAddress addr = 0;
  err = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm);
  if (!err) err = LLVMOrcLLJITLookup(jit, &addr, "kiln_peak");
  if (err) {
    fail(d, "cannot compile the kernel", err);
  } else {
    void (*peak)(int64_t, float *) = (void (*)(int64_t, float *))(uintptr_t)addr;
    float out[64];
    double best = 0;
    peak(ITERS / 8, out); /* warm-up: wide vector units may need waking */
    for (int r = 0; r < RUNS; r++) {
      double t0 = seconds();
      peak(ITERS, out);
      double t = seconds() - t0;
      if (r == 0 || t < best) best = t;
    }
    result = best > 0 ? (double)ITERS * CHAINS * ROUNDS * lanes * 2 / best / 1e9 : -1;
    if (result < 0) fail(d, "the timer did not advance", NULL);
  }
  LLVMOrcDisposeLLJIT(jit);
  return result;
}
