/* libFuzzer target for the DSL frontend: the bytes are a .kiln source.
 * The contract under test is kiln_dsl_load_buffer's (frontend/dsl/
 * kiln_dsl.h): any input either elaborates into a graph that shape
 * inference accepts or rejects with a recorded message, and never crashes,
 * hangs, leaks or trips a sanitizer.  Weights files are refused (base_dir
 * NULL) so the fuzzer never touches the file system, and the limits are
 * lowered so one input costs milliseconds, not seconds: the limits
 * themselves are what the error tests check.  A failure without a message,
 * or a success that left an error behind, is a bug too, and aborts.
 *
 * Seeds: tests/fuzz/corpus/dsl/*.kiln (the models and one file per
 * construct); dictionary: tests/fuzz/dsl.dict. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frontend/dsl/kiln_dsl.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_dsl_limits lim = {.max_params = 1 << 22, .max_steps = 1 << 14, .max_repeat = 1000, .max_depth = 32};
  kiln_diag d = {0};
  kiln_graph *g = kiln_dsl_load_buffer((const char *)data, size, "fuzz.kiln", NULL, &lim, &d);
  if (!g) {
    if (!d.failed || !d.msg[0]) abort(); /* failed silently */
    return 0;
  }
  if (d.failed) abort(); /* loaded, yet an error was recorded */
  if (kiln_pass_infer_shapes(g, &d) && (!d.failed || !d.msg[0])) abort();
  kiln_graph_free(g);
  return 0;
}
