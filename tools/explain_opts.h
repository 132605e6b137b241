/* Explanation artifacts on the command line: `kiln compile --explain` and
 * `kiln emit-c --explain` (options --explain, --layer NAME, --method
 * gradcam|gradcam++|saliency), and the P_explain entry point they add to
 * the generated header.
 *
 * The decision: with --explain the compiled program IS the explanation
 * graph of passes/explain.h (inputs: the model's input, then `class`;
 * outputs: `cam`, `logits`, and `grad` for saliency), so P_run runs it
 * with the generic signature, and the header adds P_explain, a typed
 * wrapper of that same program:
 *   compile: P_explain(P_model *m, const void *x, const int64_t *cls,
 *                      float *cam, float *logits [, float *grad])
 *   emit-c:  P_explain([const void *weights,] const void *x, const int64_t *cls,
 *                      float *cam, float *logits [, float *grad], void *workspace)
 * x is the model input's element type (float, or uint16_t bits for f16);
 * cls[n] < 0 explains the predicted class.  The map is the one `kiln
 * explain` writes to cam.npy (before upsampling and normalisation). */
#ifndef KILN_EXPLAIN_OPTS_H
#define KILN_EXPLAIN_OPTS_H

#include "../ir/loop.h"
#include "../passes/explain.h"

typedef struct kiln_cli_explain {
  kiln_explain_opts e; /* what the pipeline's explain step reads */
  int on;              /* --explain given */
  int given;           /* --layer or --method given (they need --explain) */
} kiln_cli_explain;

/* 0: argv[*i] (and its value) taken; 1: not an explain option; 2: usage
 * error (printed, naming cmd). */
int kiln_explain_option(const char *cmd, int argc, char **argv, int *i, kiln_cli_explain *o);
/* Adds the P_explain block (explained above) to *header, before its
 * closing `#endif` (emit-c: before the C++ guard's closing brace).
 * compiled: 1 for `kiln compile`'s runtime API, 0 for emit-c's C;
 * weights_file: emit-c's --weights-file.  0, or -1 with d set. */
int kiln_cli_explain_header(char **header, const kiln_program *p, const char *prefix, const kiln_explain_opts *e,
                            int compiled, int weights_file, kiln_diag *d);
extern const char kiln_explain_opts_usage[];

#endif
