/* Shared between cmd_train.c (options, compiling the training step and the
 * inference program, export) and train_loop.c (epochs, metrics, augmentation,
 * checkpoints).  One `train_run` holds everything a run owns. */
#ifndef KILN_TRAIN_RUN_H
#define KILN_TRAIN_RUN_H

#include <stdint.h>

#include "../backends/llvm/kiln_llvm.h"
#include "../passes/train.h"
#include "train_ckpt.h"
#include "train_data.h"

enum { KILN_TRAIN_MAX_FREEZE = 64, KILN_TRAIN_PROFILE_STEPS = 1000 };

typedef enum train_sched { SCHED_CONST, SCHED_STEP, SCHED_COSINE } train_sched;

/* A compiled program with its buffers bound. */
typedef struct train_prog {
  kiln_graph *g;
  kiln_program *p;
  kiln_llvm_jit *jit;
  void **bufs, *ws;
  int x, label, lr, step;   /* buffer indices of the inputs (-1: none) */
  int loss, out;            /* of the outputs */
} train_prog;

typedef struct train_run {
  /* options */
  const char *model, *data, *val, *outdir;
  int64_t epochs, batch, seed, warmup, early_stop;
  double lr, val_split, sched_gamma;
  int64_t sched_step;
  train_sched sched;
  int resume, threads;
  int dry_run;              /* check model and data, print a summary, write nothing */
  int profile;              /* --profile: per-kernel times of the first steps */
  double *prof_times;       /* [step * nkernels + kernel] seconds (NULL: not profiling) */
  int64_t prof_steps;       /* steps recorded so far (<= KILN_TRAIN_PROFILE_STEPS) */
  double prof_peak;         /* one core's FMA peak, GFLOP/s (kiln_llvm_fma_peak) */
  float class_weights[1024];
  const char *freeze[KILN_TRAIN_MAX_FREEZE];
  kiln_train_opts topts;
  int aug_flip;             /* --augment flip: random horizontal flips */
  int64_t aug_crop;         /* crop:P: random translation by up to P pixels (zero fill) */
  double aug_rotate;        /* rotate:DEG: random rotation in [-DEG, DEG] degrees */
  double aug_intensity;     /* intensity:F: x * (1 + U(-F, F)) + U(-F, F) */
  /* model */
  int64_t nclasses;         /* the output's axis-1 size */
  int out_rank;
  int64_t out_dims[KILN_MAX_RANK]; /* the network output's shape for one batch */
  /* data */
  kiln_dataset train, valid;
  /* programs: the training step, and inference with the same parameters */
  train_prog tr, inf;
  /* progress */
  uint64_t prng[4];         /* [0] epoch order, [1] augmentation (kiln_train_seed) */
  kiln_ckpt ck;             /* what the next checkpoint holds (metrics so far) */
} train_run;

/* The epochs (train_loop.c): 0, or -1 with d set (NaN loss, I/O). */
int kiln_train_loop(train_run *r, kiln_diag *d);
/* The inference program's outputs on the whole validation set with the
 * current parameters, written to path as .npy (first dim: the samples). */
int kiln_train_predict(train_run *r, const char *path, kiln_diag *d);
/* Copies every state buffer of `from` that `to` has by name (same size)
 * into to's JIT state: the trained parameters into the inference program. */
void kiln_train_copy_state(const train_prog *from, train_prog *to);
/* The run's randomness: splitmix64 streams (runtime/kiln_shuffle.h).
 * kiln_train_seed sets s[0], the epoch order (kiln_shuffle_epoch, exactly
 * as emit-c --train's program), and s[1], augmentation; s[2..3] are 0.
 * kiln_train_next draws from one stream. */
void kiln_train_seed(uint64_t s[4], uint64_t seed);
uint64_t kiln_train_next(uint64_t *s);

#endif
