/* kiln export: import a model (.kiln or .onnx), infer every shape, and
 * write it as an ONNX file with kiln's writer (frontend/onnx/onnx_export.c):
 * opset 17 or newer, weights as initializers.  This is how a network
 * written in kiln's DSL reaches other tools (ONNX Runtime, Netron, ...). */
#include <stdio.h>
#include <string.h>

#include "../frontend/onnx/kiln_onnx.h"
#include "../passes/pipeline.h"
#include "cli.h"

static const char help[] =
    "usage: kiln export [options] MODEL -o OUT.onnx\n\n"
    "Checks MODEL (.kiln or .onnx), infers every shape and writes it as an ONNX\n"
    "model (opset 17, or newer where an op's form needs it) with its weights.\n\n"
    "options:\n"
    "  -o, --output FILE  the ONNX file to write (replaced atomically)\n"
    "  --batch N          bind symbolic (batch) dims to N (default: keep them symbolic)\n"
    "  --params FILE      replace initializers by name with the tensors of a kiln\n"
    "                     parameter file (written by emit-c --train's program)\n"
    "  -h, --help         show this help\n";

int kiln_cmd_export(int argc, char **argv) {
  const char *path = NULL, *out = NULL;
  kiln_cli_bindings bind = {0};
  /* the graph as the model states it, BatchNorm folded: not dense-gemm's
   * transposed weights (renamed initializers, a layout only kiln's
   * lowering wants) nor fused epilogues */
  kiln_model_opts o = {.bind = &bind, .until = KILN_PASS_FOLD_BATCHNORM};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
    else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("export", "%s needs a file name", a);
      out = argv[++i];
    } else if (!strcmp(a, "--params")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("export", "--params needs a file name");
      o.params_file = argv[++i];
    } else if (!strcmp(a, "--batch")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("export", "--batch needs a value");
      if (kiln_cli_binding_option("export", a, argv[++i], &bind)) return 2;
    } else if (a[0] == '-' && a[1]) return kiln_cli_usage_error("export", "unknown option '%s'", a);
    else if (path) return kiln_cli_usage_error("export", "more than one model given ('%s' and '%s')", path, a);
    else path = a;
  }
  if (!path) return kiln_cli_usage_error("export", "no model given");
  if (!out) return kiln_cli_usage_error("export", "no output file given (-o OUT.onnx)");
  kiln_diag d = {0};
  kiln_graph *g = kiln_cli_load(path, &o, &d);
  if (!g) { kiln_cli_report(&d); return 1; }
  if (o.bound_note) fprintf(stderr, "kiln: note: symbolic dims bound to 1 to infer shapes (choose with --batch N)\n");
  int rc = kiln_onnx_export(g, out, &d);
  kiln_graph_free(g);
  if (rc) { kiln_cli_report(&d); return 1; }
  return 0;
}
