/* libFuzzer target for the ONNX importer and shape inference: the bytes
 * are a model file.  The contract under test is the importer's promise
 * (frontend/onnx/kiln_onnx.h): any input either loads or fails with a
 * recorded message, and never crashes, hangs, leaks or trips a sanitizer.
 * External data is refused (base_dir NULL), so the fuzzer never touches
 * the file system.  A failure without a message, or a success that left an
 * error behind, is a bug too, and aborts.
 *
 * Build and run with tests/fuzz/run.sh SECONDS. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frontend/onnx/kiln_onnx.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load_buffer(data, size, "fuzz.onnx", NULL, &d);
  if (!g) {
    if (!d.failed || !d.msg[0]) abort(); /* failed silently */
    return 0;
  }
  if (d.failed) abort(); /* loaded, yet an error was recorded */
  if (kiln_pass_infer_shapes(g, &d) && (!d.failed || !d.msg[0])) abort();
  kiln_graph_free(g);
  return 0;
}
