/* Training options on the command line, shared by every command that
 * builds a training step (inspect/compile/emit-c --train, and kiln train).
 *
 * One call per argv position: kiln_train_option looks at argv[*i] and, when
 * it is a training option, takes its value (advancing *i) into o->t (the
 * kiln_train_opts the `train` pass reads, passes/train.h).  The options:
 *   --loss ce|bce|mse|dice          --optimizer sgd|momentum|nesterov|rmsprop|adam|adamw
 *   --momentum X  --beta1 X  --beta2 X  --rho X  --eps X
 *   --weight-decay X  --clip-norm X (> 0)
 *   --freeze PATTERN (fnmatch(3) on parameter names; repeatable, at most 64)
 *   --frozen-bn-inference           BatchNorm with frozen scale/bias stays in inference mode
 *   --class-weights W0,W1,...       (CE: one per class)
 *   --loss-output NAME              the network output the loss reads (also
 *                                   --output NAME, in commands whose own
 *                                   --output is not a folder: own_output 0)
 *   --new-classes K --head-seed S   a new K-class head (transfer learning)
 * Numbers are checked (finite, in range); a bad one is a usage error naming
 * the option.  kiln_train_opts_usage is the help text for them. */
#ifndef KILN_TRAIN_OPTS_H
#define KILN_TRAIN_OPTS_H

#include "../ir/loop.h"
#include "../passes/train.h"

enum { KILN_TRAIN_MAX_FREEZE = 64, KILN_TRAIN_MAX_CLASSES = 65536 };

typedef struct kiln_cli_train {
  kiln_train_opts t;   /* kiln_train_defaults() plus the options given */
  const char *freeze[KILN_TRAIN_MAX_FREEZE]; /* t.freeze points here */
  float *class_weights;                      /* malloc'd; t.class_weights points here */
  int given;           /* some training option was given (the command then needs --train) */
  int own_output;      /* set by the caller: the command's --output is its own (a folder) */
} kiln_cli_train;

/* Defaults (kiln_train_defaults). */
void kiln_cli_train_init(kiln_cli_train *o);
/* 0: argv[*i] (and its value) taken; 1: not a training option; 2: usage
 * error (printed, naming `cmd`). */
int kiln_train_option(const char *cmd, int argc, char **argv, int *i, kiln_cli_train *o);
void kiln_cli_train_free(kiln_cli_train *o);
/* kiln inspect --train's summary (inspect_train.c) of the training step g,
 * compiled to p; 0, or -1 with d set. */
int kiln_cli_inspect_train(const char *path, kiln_graph *g, const kiln_program *p, const kiln_train_opts *t, int json,
                           kiln_diag *d);
/* emit-c --train's main.c (emit_c_train.c): the training program for the
 * step p (compiled from `model`, API prefix `prefix`, weights in a file
 * passed with --weights when weights_file); malloc'd text, or NULL with d
 * set. */
char *kiln_cli_train_main(const char *model, const kiln_program *p, const char *prefix, int weights_file,
                          kiln_diag *d);
/* The options' lines for a command's --help. */
extern const char kiln_train_opts_usage[];

#endif
