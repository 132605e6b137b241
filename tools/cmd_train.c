/* kiln train: trains a model on a data folder and writes OUTDIR with
 * metrics.csv, curves.png, checkpoint.bin and the trained model.onnx.
 *
 * Order of work, so that bad input never leaves a half-written OUTDIR:
 * options; the model's shapes (infer-shapes with the batch bound); the
 * data, checked against them; the training step compiled (the pipeline's
 * `train` pass: passes/train.h) and an inference program of the same
 * network whose parameters are state, so the trained values are copied
 * into it before each validation (BatchNorm then uses its running
 * statistics, and validating moves no optimizer state); only then OUTDIR
 * is created.  The epochs are train_loop.c's.  At the end the original
 * graph is imported again, its initializers replaced by the trained state
 * of the same name, and exported as ONNX. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../frontend/onnx/kiln_onnx.h"
#include "../ir/ops.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "../runtime/kiln_shuffle.h"
#include "cli.h"
#include "train_run.h"

static const char help[] =
    "usage: kiln train MODEL --data DIR --out OUTDIR [options]\n\n"
    "Trains MODEL (ONNX: its initializers are the starting parameters; .kiln: seeded)\n"
    "on DIR and writes OUTDIR/metrics.csv, curves.png, checkpoint.bin (after every\n"
    "epoch), model.onnx (the trained network, for inference) and, with validation\n"
    "data, val_outputs.npy (the trained network's outputs on it).  metrics.csv:\n"
    "epoch, train_loss, train_acc, val_loss, val_acc, seconds, lr (accuracies as\n"
    "fractions; Dice for --loss dice; nan where not measured).  Validation runs an\n"
    "inference program holding the trained parameters (BatchNorm in inference\n"
    "mode); its loss and metrics are computed on the host in float64.\n\n"
    "data (DIR and --val DIR): x.npy + y.npy (N x C x H x W or N x C x D x H x W,\n"
    "float32 or uint8 / 255; y int64 class ids [N] or masks [N, H, W] / [N, D, H, W],\n"
    "float32 targets for bce/mse); MNIST/Fashion-MNIST idx files (train-*, with\n"
    "--val: t10k-*; 28 x 28 zero-padded to the model's size); or one sub-folder of\n"
    "PNG/JPEG images per class (classes in name order).\n\n"
    "options:\n"
    "  --data DIR            training data (required)\n"
    "  --val DIR             validation data; without it --val-split of DIR is held out\n"
    "  --val-split F         held-out fraction when --val is absent (default 0.1; 0: none)\n"
    "  --out OUTDIR          output folder (created; must be new or empty unless --resume)\n"
    "  --epochs N            epochs (default 10)\n"
    "  --batch B             mini-batch size (default 32); a last batch shorter than B\n"
    "                        is skipped in training (the shuffle changes every epoch),\n"
    "                        validation covers every sample\n"
    "  --optimizer NAME      sgd, momentum, nesterov, rmsprop, adam, adamw (default sgd)\n"
    "  --lr F                learning rate (default 1e-3)\n"
    "  --lr-schedule S       const, step:EPOCHS:GAMMA (lr x GAMMA every EPOCHS epochs)\n"
    "                        or cosine (to 0 at the last epoch); default const\n"
    "  --warmup N            linear warm-up over the first N epochs (per step)\n"
    "  --momentum F          momentum / nesterov (default 0.9)\n"
    "  --weight-decay F      L2 (adamw: decoupled) weight decay (default 0)\n"
    "  --clip-norm F         clip gradients to this global L2 norm (default: off)\n"
    "  --loss NAME           ce, bce, mse, dice (default ce)\n"
    "  --class-weights LIST  w0,w1,... per-class weights of ce\n"
    "  --freeze PATTERN      keep parameters matching this fnmatch pattern fixed (repeatable)\n"
    "  --frozen-bn-inference BatchNorm layers whose parameters are all frozen run in\n"
    "                        inference mode (running statistics, not updated)\n"
    "  --augment LIST        flip, crop:P, rotate:DEG, intensity:F (default: none)\n"
    "                        applied to each training sample in the last two dims\n"
    "                        (masks alike, nearest neighbour)\n"
    "  --early-stop N        stop after N epochs without a lower validation loss\n"
    "                        (model.onnx then holds the last epoch's parameters)\n"
    "  --seed N              shuffling, split and augmentation seed (default 1)\n"
    "  --resume              continue from OUTDIR/checkpoint.bin (same model and options)\n"
    "  --threads N           threads for parallel loops (default 1)\n"
    "  --dry-run             read and check the model and data, print a summary of\n"
    "                        each set (sizes, class counts, checksums), write nothing\n"
    "  --profile             time every kernel of the training step over the first\n"
    "                        epoch's steps (up to 1000) and print kiln run --profile's\n"
    "                        table at the end (the timing calls are compiled in only then)\n"
    "  -h, --help            show this help\n";

static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int parse_augment(train_run *r, const char *v) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    double f;
    if (!strcmp(tok, "flip")) r->aug_flip = 1;
    else if (!strncmp(tok, "crop:", 5) && (r->aug_crop = kiln_cli_parse_count(tok + 5)) > 0 && r->aug_crop < 1024) {}
    else if (!strncmp(tok, "rotate:", 7) && !parse_double(tok + 7, &f) && f > 0 && f <= 180) r->aug_rotate = f;
    else if (!strncmp(tok, "intensity:", 10) && !parse_double(tok + 10, &f) && f > 0 && f < 1) r->aug_intensity = f;
    else return kiln_cli_usage_error("train", "--augment: '%s' is not flip, crop:P, rotate:DEG or intensity:F", tok);
  }
  return 0;
}

static int parse_args(train_run *r, int argc, char **argv) {
  r->topts = kiln_train_defaults();
  r->epochs = 10;
  r->batch = 32;
  r->lr = 1e-3;
  r->val_split = 0.1;
  r->seed = 1;
  r->threads = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 3; }
    if (!strcmp(a, "--resume")) { r->resume = 1; continue; }
    if (!strcmp(a, "--dry-run")) { r->dry_run = 1; continue; }
    if (!strcmp(a, "--profile")) { r->profile = 1; continue; }
    if (!strcmp(a, "--frozen-bn-inference")) { r->topts.frozen_bn_inference = 1; continue; }
    if (a[0] != '-' || !a[1]) {
      if (r->model) return kiln_cli_usage_error("train", "more than one model given ('%s' and '%s')", r->model, a);
      r->model = a;
      continue;
    }
    if (i + 1 >= argc) return kiln_cli_usage_error("train", "%s needs a value (or is unknown)", a);
    const char *v = argv[++i];
    double f;
    int64_t n;
    if (!strcmp(a, "--data")) r->data = v;
    else if (!strcmp(a, "--val")) r->val = v;
    else if (!strcmp(a, "--out")) r->outdir = v;
    else if (!strcmp(a, "--epochs") || !strcmp(a, "--batch") || !strcmp(a, "--threads") || !strcmp(a, "--early-stop") ||
             !strcmp(a, "--warmup")) {
      if ((n = kiln_cli_parse_count(v)) < 0 || (!strcmp(a, "--threads") && n > 1024) || (!strcmp(a, "--epochs") && n > 1000000))
        return kiln_cli_usage_error("train", "%s must be a positive integer, got '%s'", a, v);
      if (!strcmp(a, "--epochs")) r->epochs = n;
      else if (!strcmp(a, "--batch")) r->batch = n;
      else if (!strcmp(a, "--threads")) r->threads = (int)n;
      else if (!strcmp(a, "--early-stop")) r->early_stop = n;
      else r->warmup = n;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      long long s = strtoll(v, &end, 10);
      if (!*v || *end || s < 0) return kiln_cli_usage_error("train", "--seed must be a non-negative integer, got '%s'", v);
      r->seed = s;
    } else if (!strcmp(a, "--lr") || !strcmp(a, "--momentum") || !strcmp(a, "--weight-decay") || !strcmp(a, "--clip-norm") ||
               !strcmp(a, "--val-split")) {
      if (parse_double(v, &f) || f < 0) return kiln_cli_usage_error("train", "%s must be a non-negative number, got '%s'", a, v);
      if (!strcmp(a, "--lr")) r->lr = f;
      else if (!strcmp(a, "--momentum")) { if (f >= 1) return kiln_cli_usage_error("train", "--momentum must be below 1"); r->topts.momentum = f; }
      else if (!strcmp(a, "--weight-decay")) r->topts.weight_decay = f;
      else if (!strcmp(a, "--clip-norm")) r->topts.clip_norm = f;
      else { if (f >= 1) return kiln_cli_usage_error("train", "--val-split must be below 1, got '%s'", v); r->val_split = f; }
    } else if (!strcmp(a, "--optimizer")) {
      static const char *const names[] = {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"};
      int k = 0;
      while (k < 6 && strcmp(v, names[k])) k++;
      if (k == 6) return kiln_cli_usage_error("train", "--optimizer must be sgd, momentum, nesterov, rmsprop, adam or adamw, got '%s'", v);
      r->topts.optimizer = (kiln_optim_kind)k;
    } else if (!strcmp(a, "--loss")) {
      static const char *const names[] = {"ce", "bce", "mse", "dice"};
      int k = 0;
      while (k < 4 && strcmp(v, names[k])) k++;
      if (k == 4) return kiln_cli_usage_error("train", "--loss must be ce, bce, mse or dice, got '%s'", v);
      r->topts.loss = (kiln_loss_kind)k;
    } else if (!strcmp(a, "--lr-schedule")) {
      double g;
      char *end;
      if (!strcmp(v, "const")) r->sched = SCHED_CONST;
      else if (!strcmp(v, "cosine")) r->sched = SCHED_COSINE;
      else if (!strncmp(v, "step:", 5) && (r->sched_step = strtoll(v + 5, &end, 10)) > 0 && *end == ':' &&
               !parse_double(end + 1, &g) && g > 0) {
        r->sched = SCHED_STEP;
        r->sched_gamma = g;
      } else return kiln_cli_usage_error("train", "--lr-schedule must be const, step:EPOCHS:GAMMA or cosine, got '%s'", v);
    } else if (!strcmp(a, "--class-weights")) {
      const char *p = v;
      int k = 0;
      for (;;) {
        char *end;
        errno = 0;
        double w = strtod(p, &end);
        if (end == p || errno || !isfinite(w) || w < 0 || k == 1024 || (*end && *end != ','))
          return kiln_cli_usage_error("train", "--class-weights must be non-negative numbers w0,w1,..., got '%s'", v);
        r->class_weights[k++] = (float)w;
        if (!*end) break;
        p = end + 1;
      }
      r->topts.class_weights = r->class_weights;
      r->topts.nclass_weights = k;
    } else if (!strcmp(a, "--freeze")) {
      if (r->topts.nfreeze == KILN_TRAIN_MAX_FREEZE) return kiln_cli_usage_error("train", "too many --freeze patterns");
      r->freeze[r->topts.nfreeze++] = v;
      r->topts.freeze = r->freeze;
    } else if (!strcmp(a, "--augment")) {
      if (parse_augment(r, v)) return 2;
    } else return kiln_cli_usage_error("train", "unknown option '%s'", a);
  }
  if (!r->model) return kiln_cli_usage_error("train", "no model given");
  if (!r->data) return kiln_cli_usage_error("train", "--data DIR is required");
  if (!r->outdir) return kiln_cli_usage_error("train", "--out OUTDIR is required");
  if (r->early_stop && !r->val && r->val_split == 0)
    return kiln_cli_usage_error("train", "--early-stop needs validation data (--val DIR or --val-split > 0)");
  return 0;
}

/* ---- the model's shapes, and the programs ---- */
typedef struct bind_ctx {
  int64_t batch;
  int params_as_state; /* inference program: float initializers become state */
} bind_ctx;

static int bind_batch(kiln_graph *g, void *ctx, kiln_diag *d) {
  bind_ctx *b = ctx;
  if (g->ninputs != 1) return kiln_error(d, NULL, "%s: kiln train needs a model with one input, this one has %d", g->file, g->ninputs);
  kiln_cli_bind_batch(g, b->batch);
  const kiln_value *x = g->inputs[0];
  if (x->rank < 2 || x->dims[0] != b->batch)
    return kiln_error(d, NULL, "%s: input '%s' has a fixed batch dim that is not --batch %lld", g->file, x->name, (long long)b->batch);
  if (!b->params_as_state) return 0;
  /* Inference: float initializers read as data or as running statistics
   * become state (never folded), so trained values can be copied in;
   * constant slots (shapes, pads, scales) stay constants. */
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    for (int k = 0; !n->dead && k < n->nin; k++) {
      kiln_value *v = n->in[k];
      kiln_slot s;
      if (v && v->kind == KILN_VALUE_PARAM && v->data && !v->producer && kiln_dtype_is_float(v->dtype) &&
          kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s) && !s.constant)
        v->kind = KILN_VALUE_STATE;
    }
  }
  return 0;
}

static int find_buf(const kiln_program *p, kiln_buf_kind kind, const char *name, int io_index) {
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == kind && (name ? !strcmp(p->bufs[b]->name, name) : p->bufs[b]->io_index == io_index)) return b;
  return -1;
}

static int compile_prog(train_run *r, int training, train_prog *tp, kiln_diag *d) {
  bind_ctx bc = {r->batch, !training};
  kiln_target target = kiln_llvm_target(0);
  kiln_pipeline_opts po = {.path = r->model, .bind = bind_batch, .bind_ctx = &bc, .target = &target,
                           .train = training ? &r->topts : NULL};
  kiln_pipeline pl;
  int rc = kiln_pipeline_run(&po, &pl, d);
  tp->g = pl.graph;
  if (rc) return -1;
  tp->p = pl.program;
  if (!(tp->jit = kiln_llvm_jit_compile_with(tp->p, training && r->profile, NULL, d))) return -1;
  if (kiln_llvm_jit_set_threads(tp->jit, r->threads)) return kiln_error(d, NULL, "cannot start %d threads", r->threads);
  kiln_program *p = tp->p;
  tp->bufs = calloc((size_t)p->nbufs + 1, sizeof *tp->bufs);
  tp->ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  if (!tp->bufs || !tp->ws) return kiln_error(d, NULL, "out of memory");
  kiln_llvm_jit_bind(p, tp->bufs, tp->ws);
  tp->x = find_buf(p, KILN_BUF_INPUT, NULL, 0);
  tp->label = training ? find_buf(p, KILN_BUF_INPUT, "label", 0) : -1;
  tp->lr = training ? find_buf(p, KILN_BUF_INPUT, "lr", 0) : -1;
  tp->step = training ? find_buf(p, KILN_BUF_INPUT, "step", 0) : -1;
  tp->loss = training ? find_buf(p, KILN_BUF_OUTPUT, NULL, 0) : -1;
  tp->out = find_buf(p, KILN_BUF_OUTPUT, NULL, training ? 1 : 0);
  if (tp->x < 0 || tp->out < 0 || (training && (tp->label < 0 || tp->lr < 0 || tp->step < 0 || tp->loss < 0)))
    return kiln_error(d, NULL, "%s: the %s program lacks an expected input or output", r->model, training ? "training" : "inference");
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if ((buf->kind == KILN_BUF_INPUT || buf->kind == KILN_BUF_OUTPUT) &&
        !(tp->bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8)))
      return kiln_error(d, NULL, "out of memory");
  }
  const kiln_buf *x = p->bufs[tp->x], *o = p->bufs[tp->out];
  if (x->dtype != KILN_DT_F32 || o->dtype != KILN_DT_F32)
    return kiln_error(d, NULL, "%s: kiln train needs a float32 input and output", r->model);
  if (training) {
    const kiln_buf *l = p->bufs[tp->label];
    int want_int = r->topts.loss == KILN_LOSS_CE || r->topts.loss == KILN_LOSS_DICE;
    if (want_int ? l->dtype != KILN_DT_I64 : l->dtype != KILN_DT_F32)
      return kiln_error(d, NULL, "%s: the training step's label is %s, kiln train feeds %s", r->model,
                        kiln_dtype_name(l->dtype), want_int ? "i64 class ids" : "f32 targets");
  }
  return 0;
}

static void free_prog(train_prog *tp) {
  for (int b = 0; tp->p && tp->bufs && b < tp->p->nbufs; b++)
    if (tp->p->bufs[b]->kind == KILN_BUF_INPUT || tp->p->bufs[b]->kind == KILN_BUF_OUTPUT) free(tp->bufs[b]);
  free(tp->bufs);
  free(tp->ws);
  kiln_llvm_jit_free(tp->jit);
  kiln_graph_free(tp->g);
  memset(tp, 0, sizeof *tp);
}

/* The sample shape and classes the data must fit, from the inference program. */
static int model_wants(train_run *r, kiln_data_want *w, kiln_diag *d) {
  const kiln_program *p = r->inf.p;
  const kiln_buf *x = p->bufs[r->inf.x], *o = p->bufs[r->inf.out];
  if (x->rank - 1 > KILN_DATA_MAX_RANK) return kiln_error(d, NULL, "%s: input rank %d is too high", r->model, x->rank);
  memset(w, 0, sizeof *w);
  w->xrank = x->rank - 1;
  memcpy(w->xdims, x->dims + 1, (size_t)w->xrank * sizeof(int64_t));
  r->out_rank = o->rank;
  memcpy(r->out_dims, o->dims, sizeof r->out_dims);
  r->nclasses = o->rank >= 2 ? o->dims[1] : 1;
  int cls = r->topts.loss == KILN_LOSS_CE || r->topts.loss == KILN_LOSS_DICE;
  w->nclasses = cls ? (r->nclasses > 1 ? r->nclasses : 2) : 0; /* Dice with one sigmoid channel: masks 0/1 */
  w->float_targets = !cls;
  if (r->topts.nclass_weights && r->topts.nclass_weights != r->nclasses)
    return kiln_error(d, NULL, "--class-weights gives %d weights for the model's %lld classes", r->topts.nclass_weights,
                      (long long)r->nclasses);
  return 0;
}

/* Targets must fit the network output (per sample): class ids (CE, Dice)
 * of its shape without the class axis, or floats (BCE, MSE) of its shape. */
static int check_targets(const train_run *r, const kiln_dataset *ds, kiln_diag *d) {
  int cls = r->topts.loss == KILN_LOSS_CE || r->topts.loss == KILN_LOSS_DICE;
  int from = cls ? 2 : 1, rank = r->out_rank - from;
  int ok = rank >= 0 && ds->yrank == rank;
  for (int i = 0; ok && i < rank; i++) ok = ds->ydims[i] == r->out_dims[from + i];
  if (ds->yfloat == cls) ok = 0; /* class ids for CE/Dice, floats for BCE/MSE */
  if (!ok) {
    char want[128] = "";
    for (int i = 0; i < rank; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? " x " : "", (long long)r->out_dims[from + i]);
    return kiln_error(d, NULL, "%s: targets do not fit the model's output: each should be %s%s%s, got %lld %s value%s",
                      ds->source, rank ? want : "one", cls ? " int64 class id" : " float32", rank && cls ? "s" : "",
                      (long long)ds->ysize, ds->yfloat ? "float32" : "int64", ds->ysize == 1 ? "" : "s");
  }
  return 0;
}

static int split_data(train_run *r, kiln_diag *d) {
  int64_t n = r->train.n, nval = (int64_t)llround(r->val_split * (double)n);
  if (nval == 0) return 0;
  if (nval >= n) return kiln_error(d, NULL, "%s: --val-split %g leaves no training samples", r->data, r->val_split);
  int64_t *idx = malloc((size_t)n * sizeof *idx);
  if (!idx) return kiln_error(d, NULL, "out of memory");
  uint64_t s = (uint64_t)r->seed ^ 0x5eed5b117ull; /* the split's own stream: fixed by --seed alone */
  kiln_shuffle_epoch(&s, idx, n);
  kiln_dataset tr;
  int rc = kiln_dataset_subset(&r->train, idx + nval, n - nval, &tr, d) ||
           kiln_dataset_subset(&r->train, idx, nval, &r->valid, d);
  free(idx);
  if (rc) return -1;
  kiln_dataset_free(&r->train);
  r->train = tr;
  return 0;
}

/* --dry-run: one line per set.  Checksums in float64 over the samples
 * as read (xsum; xwsum weights element i by i % 97 + 1, so misplaced
 * values show), targets likewise, class ids counted. */
static void summarise(const char *what, const kiln_dataset *ds, int64_t nclasses) {
  double xs = 0, xw = 0, ys = 0, yw = 0;
  int64_t nx = ds->n * ds->xsize, ny = ds->n * ds->ysize;
  for (int64_t i = 0; i < nx; i++) { xs += ds->x[i]; xw += ds->x[i] * (double)(i % 97 + 1); }
  for (int64_t i = 0; i < ny; i++) {
    double v = ds->yfloat ? (double)ds->yf[i] : (double)ds->y[i];
    ys += v;
    yw += v * (double)(i % 97 + 1);
  }
  printf("%s n=%lld sample=", what, (long long)ds->n);
  for (int i = 0; i < ds->xrank; i++) printf("%s%lld", i ? "x" : "", (long long)ds->xdims[i]);
  printf(" target=%s", ds->yfloat ? "f32" : "i64");
  for (int i = 0; i < ds->yrank; i++) printf("%s%lld", i ? "x" : ":", (long long)ds->ydims[i]);
  printf(" xsum=%.17g xwsum=%.17g ysum=%.17g ywsum=%.17g", xs, xw, ys, yw);
  if (!ds->yfloat && nclasses > 0 && nclasses <= 4096) {
    int64_t *count = calloc((size_t)nclasses, sizeof *count);
    for (int64_t i = 0; count && i < ny; i++) count[ds->y[i]]++;
    printf(" classes=");
    for (int64_t k = 0; count && k < nclasses; k++) printf("%s%lld", k ? "," : "", (long long)count[k]);
    free(count);
  }
  printf("\n");
}

/* ---- export ---- */
typedef struct export_ctx { const train_prog *tr; } export_ctx;

static int put_trained(kiln_graph *g, void *ctx, kiln_diag *d) {
  const train_prog *tp = ((export_ctx *)ctx)->tr;
  int64_t bytes;
  const char *state = kiln_llvm_jit_state(tp->jit, tp->p, &bytes);
  (void)d;
  for (int i = 0; state && i < g->nvalues; i++) {
    kiln_value *v = g->values[i];
    if (v->kind != KILN_VALUE_PARAM || !v->data) continue;
    int b = find_buf(tp->p, KILN_BUF_STATE, v->name, 0);
    if (b < 0) continue;
    const kiln_buf *buf = tp->p->bufs[b];
    int64_t numel = 1;
    for (int k = 0; k < v->rank; k++) numel *= v->dims[k];
    if (buf->dtype == v->dtype && buf->numel == numel) v->data = state + buf->offset;
  }
  return 0;
}

static int export_onnx(train_run *r, kiln_diag *d) {
  export_ctx ec = {&r->tr};
  kiln_pipeline_opts po = {.path = r->model, .bind = put_trained, .bind_ctx = &ec, .until = KILN_PASS_INFER_SHAPES};
  kiln_pipeline pl;
  char path[4096];
  snprintf(path, sizeof path, "%s/model.onnx", r->outdir);
  int rc = kiln_pipeline_run(&po, &pl, d) || kiln_onnx_export(pl.graph, path, d) ? -1 : 0;
  kiln_graph_free(pl.graph);
  return rc;
}

static int make_outdir(train_run *r, int *created, kiln_diag *d) {
  char ck[4096];
  struct stat st;
  snprintf(ck, sizeof ck, "%s/checkpoint.bin", r->outdir);
  if (r->resume) {
    if (stat(ck, &st) != 0) return kiln_error(d, NULL, "%s: no checkpoint to resume from", ck);
    return 0;
  }
  if (kiln_out_dir_check(r->outdir, d)) return -1;
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", r->outdir);
  for (char *c = parent + 1; *c; c++)
    if (*c == '/') { *c = 0; mkdir(parent, 0777); *c = '/'; }
  if (mkdir(r->outdir, 0777) == 0) *created = 1;
  else if (errno != EEXIST) return kiln_error(d, NULL, "%s: cannot create: %s", r->outdir, strerror(errno));
  return 0;
}

int kiln_cmd_train(int argc, char **argv) {
  train_run *r = calloc(1, sizeof *r);
  if (!r) { fprintf(stderr, "kiln: error: out of memory\n"); return 1; }
  int rc = parse_args(r, argc, argv);
  if (rc) { free(r); return rc == 3 ? 0 : rc; }
  kiln_diag d = {0};
  kiln_data_want w;
  int created = 0;
  rc = 1;
  /* Before anything is compiled: an OUTDIR that would be refused. */
  if (!r->resume && kiln_out_dir_check(r->outdir, &d)) goto fail;
  if (compile_prog(r, 0, &r->inf, &d) || model_wants(r, &w, &d)) goto fail;
  if ((r->aug_flip || r->aug_crop || r->aug_rotate > 0 || r->aug_intensity > 0) && w.xrank < 3) {
    kiln_error(&d, NULL, "%s: --augment needs image samples (C x H x W or C x D x H x W)", r->model);
    goto fail;
  }
  if (kiln_dataset_load(r->data, &w, 0, &r->train, &d)) goto fail;
  if (r->val ? kiln_dataset_load(r->val, &w, 1, &r->valid, &d) : split_data(r, &d)) goto fail;
  if (check_targets(r, &r->train, &d) || (r->valid.n && check_targets(r, &r->valid, &d))) goto fail;
  if (r->train.n < r->batch) {
    kiln_error(&d, NULL, "%s: %lld training samples are fewer than one batch of %lld", r->data, (long long)r->train.n,
               (long long)r->batch);
    goto fail;
  }
  if (r->dry_run) {
    summarise("train", &r->train, r->nclasses);
    if (r->valid.n) summarise("val", &r->valid, r->nclasses);
    rc = 0;
    goto fail;
  }
  if (compile_prog(r, 1, &r->tr, &d)) goto fail;
  if (r->profile) {
    double peak = kiln_llvm_fma_peak(&d);
    if (peak < 0) goto fail;
    r->prof_peak = peak;
    if (!(r->prof_times = calloc((size_t)KILN_TRAIN_PROFILE_STEPS * (size_t)r->tr.p->nkernels + 1, sizeof(double)))) {
      kiln_error(&d, NULL, "out of memory");
      goto fail;
    }
  }
  if (make_outdir(r, &created, &d) || kiln_train_loop(r, &d) || export_onnx(r, &d)) goto fail;
  if (r->prof_times && r->prof_steps) {
    kiln_target target = kiln_llvm_target(0);
    printf("training step, median of the first %lld steps:\n", (long long)r->prof_steps);
    if (kiln_cli_profile_print(r->tr.p, r->prof_times, (int)r->prof_steps, r->threads, r->prof_peak,
                               8 * target.vector_bytes)) {
      kiln_error(&d, NULL, "out of memory");
      goto fail;
    }
  }
  if (r->valid.n) {
    char pred[4096];
    snprintf(pred, sizeof pred, "%s/val_outputs.npy", r->outdir);
    if (kiln_train_predict(r, pred, &d)) goto fail;
  }
  rc = 0;
fail:
  if (rc) kiln_cli_report(&d);
  if (rc && created) rmdir(r->outdir); /* a failure before the first checkpoint leaves nothing (rmdir: only if empty) */
  free(r->prof_times);
  free_prog(&r->tr);
  free_prog(&r->inf);
  kiln_dataset_free(&r->train);
  kiln_dataset_free(&r->valid);
  kiln_ckpt_free(&r->ck);
  free(r);
  return rc;
}
