/* kiln: the command-line front end.  Each subcommand lives in its own
 * cmd_*.c file and parses its own flags; this file only dispatches. */
#include <llvm-c/Core.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const kiln_cmd commands[] = {
    {"inspect", "check a model, infer every shape and summarise it", kiln_cmd_inspect},
    {"run", "compile a model for this CPU and run it on input tensors", kiln_cmd_run},
    {"compile", "compile a model ahead of time: object, C header, weights, runtime", kiln_cmd_compile},
    {"export", "write a model (.kiln or .onnx) as an ONNX file", kiln_cmd_export},
    {"emit-c", "write a model as dependency-free C99 source for any C compiler", kiln_cmd_emit_c},
    {"train", "train a model on a data folder: metrics, curves, checkpoints, trained ONNX", kiln_cmd_train},
    {"explain", "explain a classifier's decision: Grad-CAM, saliency, integrated gradients", kiln_cmd_explain},
    {"attack", "adversarial examples (FGSM, PGD) and robustness curves against eps", kiln_cmd_attack},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
  fprintf(f,
          "usage: kiln <command> [options] MODEL\n"
          "       kiln --version | --help\n\n"
          "kiln compiles convolutional networks (ONNX files) to native code.\n\ncommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n'kiln <command> --help' describes a command's options.\n");
}

void kiln_cli_report(const kiln_diag *d) {
  fprintf(stderr, "kiln: error: %s\n", d->failed ? d->msg : "unknown failure");
  if (d->note[0]) fprintf(stderr, "kiln: note: %s\n", d->note);
}

int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "kiln: error: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see 'kiln %s --help')\n", cmd ? cmd : "");
  return 2;
}

int64_t kiln_cli_parse_int(const char *s, int64_t lo, int64_t hi) {
  char *end;
  if (!s || !*s) return -1;
  long long v = strtoll(s, &end, 10);
  if (*end || v < lo || v > hi) return -1;
  return v;
}

int64_t kiln_cli_parse_count(const char *s) { return kiln_cli_parse_int(s, 1, (int64_t)1 << 30); }

/* NVRTC (--target cuda, backends/cuda/cuda_nvrtc.c) keeps process-wide
 * caches it never frees: not kiln's leaks (as tests/conformance/conformance_nvrtc.c). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnvrtc\nleak:libnvrtc-builtins\n"; }

int main(int argc, char **argv) {
  if (argc < 2) { /* one line, like every other usage error; the usage is one --help away */
    fprintf(stderr, "kiln: error: no command given (see 'kiln --help')\n");
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[2], commands[i].name)) {
          char *args[] = {argv[2], "--help", NULL};
          return commands[i].run(2, args);
        }
    }
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    unsigned maj, min, patch;
    LLVMGetVersion(&maj, &min, &patch);
    /* Say only what is true: the GPU runtime (--target cuda) exists but
     * has run only against a simulated driver (tests/runtime/), never on a
     * GPU yet; the toolkit's presence at build time is reported as just
     * that (NVRTC is opened at run time). */
    printf("kiln 0.1.0 (LLVM %u.%u.%u; CUDA backend: host emulation, and a GPU runtime not yet run on a real GPU; "
           "CUDA toolkit %s at build time)\n", maj, min, patch,
           KILN_HAVE_CUDA ? "found" : "not found");
    return 0;
  }
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "kiln: error: unknown command '%s' (see 'kiln --help')\n", cmd);
  return 2;
}
