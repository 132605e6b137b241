/* One f32 graph X -> Y (the first output) compiled for this host and run
 * over x twice: by the LLVM JIT into yj and by the loop-IR interpreter
 * into yi.  Shared by the f32 math tests (test_exp_f32.c, test_tanh_f32.c,
 * test_log_f32.c), which then hold each result to its float64 bound.
 * Takes and frees g.  Header only: each test_*.c is its own binary. */
#ifndef KILN_TEST_ONE_OP_RUN_H
#define KILN_TEST_ONE_OP_RUN_H

#include "../../backends/llvm/kiln_llvm.h"
#include "../../passes/pipeline.h"
#include "gradcheck.h"

static inline void run_jit_and_interpreter(kiln_graph *g, const float *x, float *yj, float *yi) {
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_target target = kiln_llvm_target(0);
  kiln_pipeline_opts po = {.graph = g, .target = &target};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  int xb = gc_buf_named(p, "X"), yb = -1;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_OUTPUT) yb = b;
  cr_assert(xb >= 0 && yb >= 0);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs), *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert(j, "%s", d.msg);
  kiln_llvm_jit_bind(p, bufs, ws);
  bufs[xb] = (void *)x;
  bufs[yb] = yj;
  kiln_llvm_jit_run(j, bufs);
  bufs[yb] = yi;
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  kiln_llvm_jit_free(j);
  free(bufs);
  free(ws);
  kiln_graph_free(g);
}

#endif
