/* The LLVM backend: prints a loop IR program as an LLVM module (LLVM C API,
 * LLVM 19), optimises it with the new pass manager for the host CPU
 * (AVX2/AVX-512 picked up from the running machine) -- default<O3> for the
 * kernels that accumulate, O2 without unrolling for the rest (see
 * kiln_llvm_heavy) -- and runs it in-process with ORC LLJIT or writes an
 * object file. */
#ifndef KILN_LLVM_H
#define KILN_LLVM_H

#include "../../ir/loop.h"
#include "../../ir/timing.h"

typedef struct kiln_llvm_jit kiln_llvm_jit;

/* The CPU this backend generates code for, as a target description: the
 * one the JIT and `kiln compile` use (KILN_CPU, else this host), or the
 * x86-64 baseline when portable is set; its vector width is the widest
 * vector register that CPU has, and the code generated for it uses it
 * (the functions' prefer-vector-width). */
kiln_target kiln_llvm_target(int portable);
/* Whether code generated for that CPU converts f16 <-> f32 with hardware
 * instructions (F16C) rather than integer bit manipulation; the results
 * are the same bits either way (ir/loop.h). */
int kiln_llvm_native_f16(int portable);

/* Compiles p.  The program must outlive the JIT (weights are referenced,
 * not copied).  NULL with d set on failure. */
kiln_llvm_jit *kiln_llvm_jit_compile(const kiln_program *p, kiln_diag *d);
/* As kiln_llvm_jit_compile; with profile set, every run also records when
 * each kernel started and ended (kiln_llvm_jit_profile).  Code compiled
 * without it has no timing calls at all.  Compilation stages are marked on
 * t (`--time`; NULL: untimed). */
kiln_llvm_jit *kiln_llvm_jit_compile_with(const kiln_program *p, int profile, kiln_timing *t, kiln_diag *d);
/* Profiling: the last run's p->nkernels + 1 times (seconds, monotonic):
 * kernel k ran from [k] to [k + 1]; a program run once per image
 * (p->images > 1) has a row of them per image, image i's at
 * [i * (nkernels + 1)].  NULL (*nstamps 0) when not profiling. */
const double *kiln_llvm_jit_profile(const kiln_llvm_jit *j, int *nstamps);
/* One core's FMA peak, in GFLOP/s, for the code this backend generates:
 * measured by JIT-compiling a loop of independent chains of vector FMAs
 * (the target's vector width, kiln_llvm_target(0)) and timing it (best of
 * a few short runs).  < 0 with d set on failure. */
double kiln_llvm_fma_peak(kiln_diag *d);
/* Runs the whole program.  bufs[i] is the memory of p->bufs[i]: the caller
 * points inputs/outputs at its tensors; kiln_llvm_jit_bind fills weights
 * and workspace from an arena of p->workspace_bytes.  Once the memory plan
 * has run (p->workspace_bytes > 0) workspace buffers must be bound as it
 * placed them, arena + offset: buffers at one offset (a kernel written in
 * place over its input) are compiled as one pointer. */
void kiln_llvm_jit_bind(const kiln_program *p, void **bufs, void *workspace);
/* bufs must have p->nbufs + 1 entries: the last carries the thread pool.
 * The JIT instance owns the program's state (KILN_BUF_STATE buffers):
 * initialised once at compile, read and updated by every run, never shared
 * with another instance; run binds it into bufs. */
void kiln_llvm_jit_run(kiln_llvm_jit *j, void **bufs);
/* The instance's state blob (NULL when the program has none), of *bytes
 * bytes, laid out by p's state buffers' offsets. */
void *kiln_llvm_jit_state(kiln_llvm_jit *j, const kiln_program *p, int64_t *bytes);
/* Parallel loops run on nthreads threads (default 1).  -1 on failure. */
int kiln_llvm_jit_set_threads(kiln_llvm_jit *j, int nthreads);
void kiln_llvm_jit_free(kiln_llvm_jit *j);

/* The optimisation tier of the function doing block s (s and the
 * statements after it; with `one`, s alone): 1 when it accumulates in a
 * loop (a local assigned, or a buffer stored that the value reads:
 * convolution, GEMM, pooling, reductions), optimised at default<O3>; 0
 * for the rest (copies, elementwise), at O2 without unrolling.
 * KILN_OPT=O3 in the environment puts everything in the O3 tier. */
int kiln_llvm_heavy(const kiln_ls *s, int one);

/* Writes a relocatable object (PIC) for the host CPU, or for the generic
 * x86-64 baseline when portable is set, exporting `PREFIX_kernels` and
 * `PREFIX_layout` (the runtime's buffer table, runtime/kiln_runtime.h).
 * Returns the object's bytes (malloc'd) in *obj / *len. */
int kiln_llvm_emit_object(const kiln_program *p, const char *prefix, int portable, void **obj, size_t *len,
                          kiln_timing *t, kiln_diag *d);

#endif
