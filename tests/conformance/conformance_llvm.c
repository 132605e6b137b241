/* ONNX conformance through the LLVM backend: every case, every test data
 * set, JIT-compiled for the host CPU and run; tolerances in execute.c. */
#include "../../backends/llvm/kiln_llvm.h"
#include "execute.h"

static void *jit_compile(const kiln_program *p, const suite_case *c, kiln_diag *d) {
  (void)c;
  return kiln_llvm_jit_compile(p, d);
}
static void jit_run(void *h, const kiln_program *p, void **bufs) {
  (void)p;
  kiln_llvm_jit_run(h, bufs);
}
static void jit_release(void *h) { kiln_llvm_jit_free(h); }

static const suite_backend llvm = {"llvm", jit_compile, jit_run, jit_release, NULL, 1};

static void run_case(const suite_case *c, suite_run *r) { suite_execute(c, r, &llvm); }

int main(int argc, char **argv) { return suite_main(argc, argv, "LLVM backend, compile and run", run_case); }
