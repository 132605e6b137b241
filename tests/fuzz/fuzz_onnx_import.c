/* libFuzzer target for the ONNX importer and shape inference: the bytes
 * are a model file.  The contract under test is the importer's promise
 * (frontend/onnx/kiln_onnx.h): any input either loads or fails with a
 * recorded message, and never crashes, hangs, leaks or trips a sanitizer.
 * After a successful load it runs shape inference, then what `kiln
 * inspect` computes from the result (multiply-accumulate counts) and the
 * IR verifier, and the per-image rewrite of a batched graph (verified
 * again).  External data is refused (base_dir NULL), so the fuzzer
 * never touches the file system.  A failure without a message, a success
 * that left an error behind, or a verifier complaint after inference is a
 * kiln bug too, and aborts.
 *
 * Build and run with tests/fuzz/run.sh SECONDS. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "frontend/onnx/kiln_onnx.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bug(const char *what, const kiln_diag *d) {
  fprintf(stderr, "fuzz_onnx_import: %s%s%s\n", what, d->failed ? ": " : "", d->failed ? d->msg : "");
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load_buffer(data, size, "fuzz.onnx", NULL, &d);
  if (!g) {
    if (!d.failed || !d.msg[0]) bug("load failed without a message", &d);
    return 0;
  }
  if (d.failed) bug("loaded, yet an error was recorded", &d);
  if (kiln_pass_infer_shapes(g, &d) == 0) {
    volatile int64_t macs = 0;
    for (int i = 0; i < g->nnodes; i++) {
      kiln_macs_fn fn = kiln_op_get(g->nodes[i]->op)->macs;
      if (fn) macs += fn(g->nodes[i]);
    }
    (void)macs;
    if (kiln_graph_verify(g, &d)) bug("IR verifier failed after shape inference", &d);
    /* batched models: one image at a time (passes/per_image.c), verified again */
    if (kiln_pass_per_image(g, &d)) {
      if (!d.failed || !d.msg[0]) bug("per-image failed without a message", &d);
    } else if (kiln_graph_verify(g, &d)) {
      bug("IR verifier failed after per-image", &d);
    }
  } else if (!d.failed || !d.msg[0]) {
    bug("shape inference failed without a message", &d);
  }
  kiln_graph_free(g);
  return 0;
}
