/* The C printer's dialect hooks: what the CUDA printer (backends/cuda/)
 * overrides of the one emitter in c_emit.c.  Expressions, statements,
 * helpers, pointer bindings, names and the host entry points print once,
 * in c_emit.c; a dialect changes only what differs between plain C99 and
 * CUDA C (TVM's CodeGenCUDA over CodeGenC): the file's opening lines, the
 * qualifier of helper functions, a kernel's signature, loops bound to
 * GPU block/thread axes, scoped buffers, barriers, and how the host runs a
 * kernel.  A NULL hook prints the C99 form.  Internal to the backends. */
#ifndef KILN_C_EMIT_H
#define KILN_C_EMIT_H

#include "kiln_c.h"

typedef struct kiln_c_hooks {
  const char *helper_qual;  /* before every helper function ("static ": C; "static __device__ ": CUDA) */
  const char *source_suffix; /* the source file's name after the prefix, for its comment (NULL: ".c") */
  /* After the generated-file comment: includes and definitions. */
  void (*preamble)(FILE *f, const kiln_c_options *o);
  /* The kernel's opening line(s), up to and including "{\n" (C: `static void kN(void **bufs) {`). */
  void (*kernel_open)(FILE *f, const kiln_kernel *k);
  /* A loop bound to a GPU axis (sched.gpu != 0): the line(s) binding its
   * var, before its body; kiln_c_emit prints the body and a closing "}". */
  void (*bound_loop)(FILE *f, const kiln_ls *s, int indent);
  /* KILN_LS_ALLOC of a SHARED or LOCAL buffer named `name`; KILN_LS_BARRIER. */
  void (*alloc)(FILE *f, const kiln_ls *s, const char *ctype, const char *name, int indent);
  void (*barrier)(FILE *f, int indent);
  /* KILN_LS_MMA on the LOCAL fragment arrays named c, a, b (GPU dialects only). */
  void (*mma)(FILE *f, const kiln_ls *s, const char *c, const char *a, const char *b, int indent);
  /* The host's statement running kernel k in run_v, with `bufs` bound (C: `kN(bufs);`). */
  void (*call)(FILE *f, const kiln_kernel *k);
  /* Around the host entry points (workspace size, state init, run_v,
   * run): e.g. "#ifndef __CUDACC_RTC__\n" / "#endif\n"; NULL: nothing. */
  const char *host_begin, *host_end;
  /* Runs of stores that differ lane by lane print as one loop over lane
   * arrays (c_lanes.c: what GCC's vectoriser needs); C99 only. */
  int lane_loops;
  /* KILN_LS_PREFETCH prints as KILN_PREFETCH(&buf[index]), a near one
   * as KILN_PREFETCH_L1 (the C99 preamble defines both:
   * __builtin_prefetch where the compiler has it);
   * 0: a dialect whose kernels skip it. */
  int prefetch;
} kiln_c_hooks;

/* kiln_c_emit in dialect h (weights as const arrays or a blob, as o says;
 * o->threads must be 0 with hooks that bind GPU loops). */
int kiln_c_emit_dialect(const kiln_program *p, const kiln_c_options *o, const kiln_c_hooks *h, kiln_c_output *out,
                        kiln_diag *d);

#endif
