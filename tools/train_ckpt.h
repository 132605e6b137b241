/* Checkpoints of `kiln train`: OUTDIR/checkpoint.bin, everything a run
 * needs to continue exactly where it stopped -- the training program's
 * state blob (parameters, optimizer moments, BatchNorm statistics), the
 * epoch and optimizer step, the shuffling PRNG, early stopping's record
 * and the metrics so far -- behind a fingerprint of the state's layout
 * (names and sizes of the state buffers, and the run's options that
 * change the program) and a checksum.  Written durably and atomically:
 * a temporary file, fsync, rename, fsync of the folder; killed at any
 * point, the previous checkpoint stays intact. */
#ifndef KILN_TRAIN_CKPT_H
#define KILN_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/diag.h"

enum { KILN_CKPT_METRICS = 7 }; /* epoch, train_loss, train_acc, val_loss, val_acc, seconds, lr */

typedef struct kiln_ckpt {
  uint64_t layout;              /* fingerprint of the program's state layout and options */
  int64_t epoch;                /* epochs completed */
  int64_t step;                 /* optimizer steps taken */
  uint64_t prng[4];             /* the shuffling/augmentation streams (kiln_train_seed) */
  double best_val;              /* early stopping: best validation loss so far */
  int64_t bad_epochs;           /* epochs since it improved */
  int64_t nmetrics;             /* rows of metrics (one per epoch) */
  double *metrics;              /* nmetrics * KILN_CKPT_METRICS */
  int64_t state_bytes;
  void *state;
} kiln_ckpt;

/* Writes c to path durably and atomically.  0, or -1 with d set. */
int kiln_ckpt_write(const char *path, const kiln_ckpt *c, kiln_diag *d);
/* Reads path into c (malloc'd metrics and state; kiln_ckpt_free), checking
 * magic, checksum, sizes, and that its fingerprint equals `layout`. */
int kiln_ckpt_read(const char *path, uint64_t layout, kiln_ckpt *c, kiln_diag *d);
void kiln_ckpt_free(kiln_ckpt *c);
/* FNV-1a 64 of bytes, chained from h (start with KILN_FNV64_INIT). */
#define KILN_FNV64_INIT 0xcbf29ce484222325ull
uint64_t kiln_fnv64(uint64_t h, const void *p, size_t n);
/* Writes len bytes to path durably (tmp + fsync + rename + folder fsync). */
int kiln_write_durable(const char *path, const void *data, size_t len, kiln_diag *d);

#endif
