/* Training graphs: an inference graph turned into one training step
 * (forward, loss, backward by autodiff, optimizer update in place).
 *
 * The training step is an ordinary graph, compiled like any other:
 *   inputs   the model's inputs, in order (the batch), then
 *            "label"  CE: int64 [N] class ids (or [N, H, W...] for a
 *                     per-pixel classifier); BCE and MSE: the output's
 *                     dtype and shape; Dice: int64 class mask [N, H, W] /
 *                     [N, D, H, W] (or float, the output's shape),
 *            "lr"     f32 scalar (rank 0): this step's learning rate
 *                     (schedules and warm-up are the host's business),
 *            "step"   f32 scalar: the optimizer step number t >= 1 (Adam's
 *                     bias correction 1 - beta^t is computed from it;
 *                     Dropout's masks are drawn from it, a new one each
 *                     step: kiln_train_dropout).
 *   outputs  "loss" (f32 scalar: the batch mean unless the loss says
 *            otherwise), then the network's output the loss reads (for
 *            accuracy / Dice metrics on the host).
 *   state    every trained parameter (the initializer, updated in place:
 *            KILN_VALUE_STATE, same name), the optimizer's moments (named
 *            PARAM + ".m", ".v", ...; zero at the start) and BatchNorm
 *            running statistics.  Frozen parameters stay constant weights.
 * A JIT instance or a compiled object owns the state; reading it after
 * training (kiln_llvm_jit_state + the program's state buffers by name)
 * gives the trained parameters. */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include "../ir/graph.h"

typedef enum kiln_loss_kind {
  KILN_LOSS_CE,   /* softmax cross-entropy over axis 1 of the output (logits) */
  KILN_LOSS_BCE,  /* sigmoid binary cross-entropy per element (multi-label) */
  KILN_LOSS_MSE,  /* mean squared error */
  KILN_LOSS_DICE  /* soft Dice (1 - Dice) of softmax (C > 1) or sigmoid (C = 1) probabilities */
} kiln_loss_kind;

typedef enum kiln_optim_kind {
  KILN_OPTIM_SGD,
  KILN_OPTIM_MOMENTUM,
  KILN_OPTIM_NESTEROV,
  KILN_OPTIM_RMSPROP,
  KILN_OPTIM_ADAM,
  KILN_OPTIM_ADAMW
} kiln_optim_kind;

typedef struct kiln_train_opts {
  kiln_loss_kind loss;
  const float *class_weights;  /* CE: one weight per class; NULL: all 1 */
  int nclass_weights;
  kiln_optim_kind optimizer;
  double momentum;             /* MOMENTUM / NESTEROV (PyTorch's SGD momentum) */
  double beta1, beta2;         /* ADAM / ADAMW */
  double rho;                  /* RMSPROP's smoothing (PyTorch's alpha) */
  double eps;                  /* ADAM / ADAMW / RMSPROP */
  double weight_decay;         /* L2 added to the gradient; ADAMW: decoupled */
  double clip_norm;            /* > 0: gradients scaled so their global L2 norm is at most this */
  const char *const *freeze;   /* parameters whose name matches one of these fnmatch(3) patterns stay fixed */
  int nfreeze;
  int frozen_bn_inference;     /* BatchNorm layers whose parameters are all frozen run in inference mode */
  const char *output;          /* the network output the loss reads; NULL: the first */
  int64_t new_classes;         /* > 0: a new classifier head for this many classes (kiln_train_prepare) */
  uint64_t head_seed;          /* seed of the new head's initialisation */
} kiln_train_opts;

/* Defaults (PyTorch's): SGD, CE, momentum 0.9, betas 0.9/0.999, rho 0.99,
 * eps 1e-8, nothing else. */
kiln_train_opts kiln_train_defaults(void);

/* Part of import, before shapes are inferred: marks every parameter that
 * will be trained (a float initializer read as data, not frozen) as state,
 * so that constant folding leaves it alone.  0, or -1 with d set. */
int kiln_train_prepare(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d);

/* Parts of kiln_train_prepare (passes/train_prepare.c): BatchNorm nodes
 * to training mode with their running statistics as state, and the new
 * classifier head of opts->new_classes.  0, or -1 with d set. */
int kiln_train_batchnorm(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d);
int kiln_train_new_head(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d);

/* Part of the train pass (passes/train_dropout.c): every Dropout with a
 * nonzero ratio becomes Y = X * kiln.DropoutMask(X, step), a fresh mask
 * each step (step: the step input).  0, or -1 with d set. */
int kiln_train_dropout(kiln_graph *g, kiln_value *step, kiln_diag *d);

/* The `train` pass (after infer-shapes): adds the label/lr/step inputs, the
 * loss, the gradients (kiln_autodiff) and the optimizer's in-place updates,
 * and sets the outputs as described above.  0, or -1 with d set. */
int kiln_pass_train(kiln_graph *g, const kiln_train_opts *t, kiln_diag *d);

#endif
