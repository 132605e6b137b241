/* The epochs of `kiln train` (see cmd_train.c for the setup).
 *
 * One epoch: a seeded shuffle of the training samples (runtime/kiln_shuffle.h,
 * the very order emit-c --train's program visits; its state is saved in
 * every checkpoint with the augmentation stream's), full batches of B
 * through the training step (a last batch shorter than B is skipped: the
 * program has one static batch size, and the shuffle changes every
 * epoch, so every sample is seen), optional augmentation of each batch on
 * the host, then validation through the inference program after copying
 * the trained state into it (every sample: the last batch is zero-padded
 * and only its real samples count).  Validation loss and metrics are
 * computed on the host from the inference program's outputs (float64):
 * CE as -log softmax (class-weighted like the training loss), BCE and MSE
 * per element, Dice as 1 - soft Dice over the whole set; accuracy is
 * argmax agreement (per pixel for segmentation), BCE's is thresholded at
 * 0.5, Dice's metric is the hard Dice of the argmax (mean over the
 * foreground classes), MSE's (with more than one output channel) the
 * argmax agreement of output and target.  Training loss is the mean of the step's "loss"
 * output over the epoch's batches.  After each epoch: the progress line,
 * metrics.csv, curves.png and checkpoint.bin (not when the epoch left a
 * parameter or moment NaN or infinite: training stops there, keeping the
 * last good checkpoint). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/kiln_shuffle.h"
#include "tensor_io.h"
#include "train_plot.h"
#include "train_run.h"

void kiln_train_seed(uint64_t s[4], uint64_t seed) {
  s[0] = seed;                       /* epoch order: kiln_shuffle.h's stream, as in emit-c --train's main.c */
  s[1] = seed ^ 0xa06e47a7e5eed5ull; /* augmentation: its own stream, so augmenting leaves the order alone */
  s[2] = s[3] = 0;
}

uint64_t kiln_train_next(uint64_t *s) { return kiln_splitmix64(s); }

static double uniform(uint64_t *s) { return (double)(kiln_train_next(s) >> 11) * 0x1.0p-53; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kiln_train_copy_state(const train_prog *from, train_prog *to) {
  int64_t fb, tb;
  char *fs = kiln_llvm_jit_state(from->jit, from->p, &fb), *ts = kiln_llvm_jit_state(to->jit, to->p, &tb);
  if (!fs || !ts) return;
  for (int b = 0; b < to->p->nbufs; b++) {
    const kiln_buf *t = to->p->bufs[b];
    if (t->kind != KILN_BUF_STATE) continue;
    for (int k = 0; k < from->p->nbufs; k++) {
      const kiln_buf *f = from->p->bufs[k];
      if (f->kind == KILN_BUF_STATE && f->dtype == t->dtype && f->numel == t->numel && !strcmp(f->name, t->name))
        memcpy(ts + t->offset, fs + f->offset, (size_t)t->numel * kiln_dtype_size(t->dtype));
    }
  }
}

/* ---- learning rate ---- */
static double lr_at(const train_run *r, int64_t epoch, int64_t gstep, int64_t steps_per_epoch) {
  double lr = r->lr;
  if (r->sched == SCHED_STEP) lr *= pow(r->sched_gamma, (double)(epoch / r->sched_step));
  else if (r->sched == SCHED_COSINE) lr *= 0.5 * (1 + cos(M_PI * (double)epoch / (double)r->epochs));
  if (r->warmup) {
    double f = (double)(gstep + 1) / (double)(r->warmup * steps_per_epoch);
    if (f < 1) lr *= f;
  }
  return lr;
}

/* ---- augmentation (the last two dims of every sample are the image plane) ---- */
static void augment(const train_run *r, uint64_t *s, const kiln_dataset *ds, float *x, int64_t *y, float *yf) {
  int64_t H = ds->xdims[ds->xrank - 1 - 1], W = ds->xdims[ds->xrank - 1], planes = ds->xsize / (H * W);
  int spatial_y = ds->yrank >= 2 && ds->ydims[ds->yrank - 2] == H && ds->ydims[ds->yrank - 1] == W;
  int64_t yplanes = spatial_y ? ds->ysize / (H * W) : 0;
  int geom = r->aug_flip || r->aug_crop || r->aug_rotate > 0;
  if (geom) {
    int flip = r->aug_flip && uniform(s) < 0.5;
    double dx = 0, dy = 0, th = 0;
    if (r->aug_crop) {
      dx = (double)(int64_t)(kiln_train_next(s) % (uint64_t)(2 * r->aug_crop + 1)) - (double)r->aug_crop;
      dy = (double)(int64_t)(kiln_train_next(s) % (uint64_t)(2 * r->aug_crop + 1)) - (double)r->aug_crop;
    }
    if (r->aug_rotate > 0) th = (2 * uniform(s) - 1) * r->aug_rotate * M_PI / 180;
    double cy = (double)(H - 1) / 2, cx = (double)(W - 1) / 2, c = cos(th), sn = sin(th);
    float *tmp = malloc((size_t)(H * W) * sizeof(float));
    if (!tmp) return; /* out of memory: this batch goes unaugmented */
    for (int64_t p = 0; p < planes + yplanes; p++) {
      int is_y = p >= planes;
      float *f = is_y ? NULL : x + p * H * W;
      for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
          /* inverse map: output (i, j) reads source (si, sj) */
          double u = (double)j - cx - dx, v = (double)i - cy - dy;
          double sj = c * u + sn * v + cx, si = -sn * u + c * v + cy;
          if (flip) sj = (double)(W - 1) - sj;
          double val = 0;
          if (!is_y) {
            int64_t i0 = (int64_t)floor(si), j0 = (int64_t)floor(sj);
            double fi = si - (double)i0, fj = sj - (double)j0;
            for (int a = 0; a < 2; a++)
              for (int b = 0; b < 2; b++) {
                int64_t ii = i0 + a, jj = j0 + b;
                if (ii >= 0 && ii < H && jj >= 0 && jj < W)
                  val += (a ? fi : 1 - fi) * (b ? fj : 1 - fj) * f[ii * W + jj];
              }
          } else {
            int64_t ii = (int64_t)lround(si), jj = (int64_t)lround(sj), q = p - planes;
            if (ii >= 0 && ii < H && jj >= 0 && jj < W)
              val = y ? (double)y[q * H * W + ii * W + jj] : yf[q * H * W + ii * W + jj];
          }
          tmp[i * W + j] = (float)val;
        }
      for (int64_t k = 0; k < H * W; k++) {
        if (!is_y) f[k] = tmp[k];
        else if (y) y[(p - planes) * H * W + k] = (int64_t)tmp[k];
        else yf[(p - planes) * H * W + k] = tmp[k];
      }
    }
    free(tmp);
  }
  if (r->aug_intensity > 0) {
    double a = 1 + (2 * uniform(s) - 1) * r->aug_intensity, b = (2 * uniform(s) - 1) * r->aug_intensity;
    for (int64_t k = 0; k < ds->xsize; k++) x[k] = (float)(x[k] * a + b);
  }
}

/* ---- metrics of one network output batch (the first `real` samples) ---- */
enum { MAX_CLASSES = 1024 };
typedef struct metric_acc {
  double loss_sum, loss_w;   /* host loss (validation) */
  int64_t correct, total;    /* accuracy */
  double inter[MAX_CLASSES], pred[MAX_CLASSES], truth[MAX_CLASSES];           /* hard Dice counts */
  double sinter[MAX_CLASSES], spred[MAX_CLASSES], struth[MAX_CLASSES];        /* soft Dice sums */
} metric_acc;

static double sigmoid(double v) { return 1 / (1 + exp(-v)); }

static void measure(const train_run *r, const float *out, const kiln_dataset *ds, int64_t first, const int64_t *order,
                    int64_t real, metric_acc *m) {
  int64_t K = r->nclasses, S = 1;
  for (int i = 2; i < r->out_rank; i++) S *= r->out_dims[i];
  kiln_loss_kind loss = r->topts.loss;
  for (int64_t i = 0; i < real; i++) {
    int64_t src = order ? order[first + i] : first + i;
    const float *o = out + i * K * S;
    for (int64_t s = 0; s < S; s++) {
      if (loss == KILN_LOSS_CE || loss == KILN_LOSS_DICE) {
        int64_t t = ds->y[src * ds->ysize + s];
        double mx = o[s];
        int64_t am = 0;
        for (int64_t k = 1; k < K; k++)
          if (o[k * S + s] > mx) { mx = o[k * S + s]; am = k; }
        double se = 0;
        for (int64_t k = 0; k < K; k++) se += exp(o[k * S + s] - mx);
        if (K == 1) am = o[s] > 0; /* one sigmoid channel */
        m->correct += am == t;
        m->total++;
        if (loss == KILN_LOSS_CE) {
          double w = r->topts.nclass_weights ? r->topts.class_weights[t] : 1;
          m->loss_sum += w * (mx + log(se) - o[t * S + s]);
          m->loss_w += w;
        } else {
          for (int64_t k = 0; k < K && k < MAX_CLASSES; k++) {
            double p = K == 1 ? sigmoid(o[s]) : exp(o[k * S + s] - mx) / se, tk = K == 1 ? (double)(t == 1) : (double)(t == k);
            int64_t pk = K == 1 ? am == 1 : am == k;
            m->sinter[k] += p * tk;
            m->spred[k] += p;
            m->struth[k] += tk;
            m->inter[k] += (double)pk * tk;
            m->pred[k] += (double)pk;
            m->truth[k] += tk;
          }
        }
      } else {
        for (int64_t k = 0; k < K; k++) {
          double v = o[k * S + s], t = ds->yf[src * ds->ysize + k * S + s];
          if (loss == KILN_LOSS_BCE) {
            m->loss_sum += fmax(v, 0) - v * t + log1p(exp(-fabs(v)));
            m->correct += (v > 0) == (t > 0.5);
            m->total++;
          } else m->loss_sum += (v - t) * (v - t);
          m->loss_w += 1;
        }
        if (loss == KILN_LOSS_MSE && K > 1) { /* one-hot-like targets: argmax agreement */
          int64_t ao = 0, at = 0;
          for (int64_t k = 1; k < K; k++) {
            if (o[k * S + s] > o[ao * S + s]) ao = k;
            if (ds->yf[src * ds->ysize + k * S + s] > ds->yf[src * ds->ysize + at * S + s]) at = k;
          }
          m->correct += ao == at;
          m->total++;
        }
      }
    }
  }
}

/* The epoch's metric (accuracy or hard Dice, 0..1; NaN for MSE) and,
 * for validation, the host loss. */
static double metric_of(const train_run *r, const metric_acc *m) {
  if (r->topts.loss == KILN_LOSS_MSE && r->nclasses < 2) return NAN; /* regression */
  if (r->topts.loss != KILN_LOSS_DICE) return m->total ? (double)m->correct / (double)m->total : NAN;
  int64_t K = r->nclasses < MAX_CLASSES ? r->nclasses : MAX_CLASSES, from = K > 1 ? 1 : 0, n = 0;
  double sum = 0;
  for (int64_t k = from; k < K; k++, n++) sum += m->pred[k] + m->truth[k] > 0 ? 2 * m->inter[k] / (m->pred[k] + m->truth[k]) : 1;
  return n ? sum / (double)n : NAN;
}

static double loss_of(const train_run *r, const metric_acc *m) {
  if (r->topts.loss != KILN_LOSS_DICE) return m->loss_w > 0 ? m->loss_sum / m->loss_w : NAN;
  int64_t K = r->nclasses < MAX_CLASSES ? r->nclasses : MAX_CLASSES;
  double sum = 0;
  for (int64_t k = 0; k < K; k++) sum += (2 * m->sinter[k] + 1) / (m->spred[k] + m->struth[k] + 1);
  return 1 - sum / (double)K;
}

static void fill_batch(const train_run *r, const kiln_dataset *ds, const int64_t *order, int64_t first, int64_t real,
                       float *x, void *label, uint64_t *aug_prng) {
  (void)r;
  for (int64_t i = 0; i < r->batch; i++) {
    float *xi = x + i * ds->xsize;
    if (i >= real) { memset(xi, 0, (size_t)ds->xsize * sizeof(float)); continue; }
    int64_t src = order ? order[first + i] : first + i;
    memcpy(xi, ds->x + src * ds->xsize, (size_t)ds->xsize * sizeof(float));
    int64_t *yi = NULL;
    float *yfi = NULL;
    if (label && ds->y) memcpy(yi = (int64_t *)label + i * ds->ysize, ds->y + src * ds->ysize, (size_t)ds->ysize * sizeof(int64_t));
    if (label && ds->yf) memcpy(yfi = (float *)label + i * ds->ysize, ds->yf + src * ds->ysize, (size_t)ds->ysize * sizeof(float));
    if (aug_prng) augment(r, aug_prng, ds, xi, yi, yfi);
  }
}

/* ---- outputs of every epoch ---- */
static int write_outputs(train_run *r, kiln_diag *d) {
  const kiln_ckpt *c = &r->ck;
  int64_t n = c->nmetrics;
  size_t cap = 128 + (size_t)n * 7 * 32;
  char *csv = malloc(cap), path[4096];
  double *cols = malloc((size_t)(4 * n + 1) * sizeof(double));
  if (!csv || !cols) { free(csv); free(cols); return kiln_error(d, NULL, "out of memory"); }
  size_t len = (size_t)snprintf(csv, cap, "epoch,train_loss,train_acc,val_loss,val_acc,seconds,lr\n");
  for (int64_t e = 0; e < n; e++) {
    const double *m = c->metrics + e * KILN_CKPT_METRICS;
    len += (size_t)snprintf(csv + len, cap - len, "%lld,%.9g,%.9g,%.9g,%.9g,%.3f,%.9g\n", (long long)m[0], m[1], m[2], m[3],
                            m[4], m[5], m[6]);
    for (int k = 0; k < 4; k++) cols[k * n + e] = m[1 + k];
  }
  snprintf(path, sizeof path, "%s/metrics.csv", r->outdir);
  int rc = kiln_write_durable(path, csv, len, d);
  snprintf(path, sizeof path, "%s/curves.png", r->outdir);
  if (!rc) rc = kiln_plot_curves(path, (int)n, cols, cols + 2 * n, cols + n, cols + 3 * n,
                                 r->topts.loss == KILN_LOSS_DICE ? "dice" : "accuracy", d);
  free(csv);
  free(cols);
  return rc;
}

static uint64_t layout_hash(const train_run *r) {
  const kiln_program *p = r->tr.p;
  uint64_t h = KILN_FNV64_INIT;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind != KILN_BUF_STATE) continue;
    h = kiln_fnv64(h, buf->name, strlen(buf->name) + 1);
    h = kiln_fnv64(h, &buf->numel, sizeof buf->numel);
    h = kiln_fnv64(h, &buf->offset, sizeof buf->offset);
  }
  int64_t opts[4] = {r->batch, (int64_t)r->topts.loss, (int64_t)r->topts.optimizer, p->state_bytes};
  return kiln_fnv64(h, opts, sizeof opts);
}

static void print_metric(const char *what, double loss, double metric, int dice) {
  printf("  %s loss ", what);
  if (isfinite(loss)) printf("%.4f", loss);
  else printf("-");
  if (dice) printf(" dice ");
  else printf(" acc ");
  if (!isfinite(metric)) printf("-");
  else if (dice) printf("%.4f", metric);
  else printf("%.1f%%", 100 * metric);
}

/* The first float state buffer (parameter, moment, running statistic)
 * holding a NaN or an infinity, or NULL.  The loss only shows the
 * parameters a step started from: the last step of an epoch can make them
 * non-finite with a finite loss, and its checkpoint must not be written. */
static const char *nonfinite_state(const train_prog *tp, const char *state) {
  for (int b = 0; state && b < tp->p->nbufs; b++) {
    const kiln_buf *buf = tp->p->bufs[b];
    if (buf->kind != KILN_BUF_STATE || buf->dtype != KILN_DT_F32) continue;
    const float *v = (const float *)(state + buf->offset);
    for (int64_t i = 0; i < buf->numel; i++)
      if (!isfinite(v[i])) return buf->name;
  }
  return NULL;
}

int kiln_train_loop(train_run *r, kiln_diag *d) {
  train_prog *tp = &r->tr;
  const kiln_dataset *ds = &r->train;
  char ckpath[4096];
  snprintf(ckpath, sizeof ckpath, "%s/checkpoint.bin", r->outdir);
  uint64_t layout = layout_hash(r);
  int64_t state_bytes;
  char *state = kiln_llvm_jit_state(tp->jit, tp->p, &state_bytes);
  kiln_ckpt *c = &r->ck;
  if (r->resume) {
    if (kiln_ckpt_read(ckpath, layout, c, d)) return -1;
    if (c->state_bytes != state_bytes) return kiln_error(d, NULL, "%s: the state blob has the wrong size", ckpath);
    if (state_bytes) memcpy(state, c->state, (size_t)state_bytes);
    memcpy(r->prng, c->prng, sizeof r->prng);
    printf("resumed from %s: %lld epochs done\n", ckpath, (long long)c->epoch);
  } else {
    kiln_train_seed(r->prng, (uint64_t)r->seed);
    c->best_val = INFINITY;
  }
  c->layout = layout;
  int dice = r->topts.loss == KILN_LOSS_DICE;
  int64_t steps = ds->n / r->batch;
  int64_t *order = malloc((size_t)ds->n * sizeof *order);
  metric_acc *m = malloc(sizeof *m);
  if (!order || !m) { free(order); free(m); return kiln_error(d, NULL, "out of memory"); }
  int augmenting = r->aug_flip || r->aug_crop || r->aug_rotate > 0 || r->aug_intensity > 0, rc = -1;
  float *xb = tp->bufs[tp->x], *lrb = tp->bufs[tp->lr], *stepb = tp->bufs[tp->step];
  const float *lossb = tp->bufs[tp->loss], *outb = tp->bufs[tp->out];
  int64_t first_epoch = c->epoch;
  for (int64_t epoch = c->epoch; epoch < r->epochs; epoch++) {
    double t0 = now(), loss_sum = 0, lr = 0;
    kiln_shuffle_epoch(&r->prng[0], order, ds->n);
    memset(m, 0, sizeof *m);
    for (int64_t s = 0; s < steps; s++) {
      fill_batch(r, ds, order, s * r->batch, r->batch, xb, tp->bufs[tp->label], augmenting ? &r->prng[1] : NULL);
      lr = lr_at(r, epoch, c->step, steps);
      *lrb = (float)lr;
      *stepb = (float)(c->step + 1);
      kiln_llvm_jit_run(tp->jit, tp->bufs);
      if (r->prof_times && r->prof_steps < KILN_TRAIN_PROFILE_STEPS) {
        const double *st = kiln_llvm_jit_profile(tp->jit, NULL);
        int nk = tp->p->nkernels;
        for (int k = 0; k < nk; k++) r->prof_times[r->prof_steps * nk + k] = st[k + 1] - st[k];
        r->prof_steps++;
      }
      if (!isfinite(*lossb)) {
        if (c->epoch)
          kiln_error(d, NULL, "%s: epoch %lld, step %lld: the loss is %s; training stopped (%s keeps epoch %lld, the last good one)",
                     r->model, (long long)epoch + 1, (long long)s + 1, isnan(*lossb) ? "NaN" : "infinite", ckpath,
                     (long long)c->epoch);
        else
          kiln_error(d, NULL, "%s: epoch 1, step %lld: the loss is %s; training stopped before any checkpoint", r->model,
                     (long long)s + 1, isnan(*lossb) ? "NaN" : "infinite");
        goto out;
      }
      c->step++;
      loss_sum += *lossb;
      if (augmenting) { /* the metrics read the augmented targets the step saw */
        kiln_dataset view = *ds;
        int64_t *ids = malloc((size_t)r->batch * sizeof *ids);
        if (!ids) { kiln_error(d, NULL, "out of memory"); goto out; }
        for (int64_t i = 0; i < r->batch; i++) ids[i] = i;
        view.y = ds->y ? tp->bufs[tp->label] : NULL;
        view.yf = ds->yf ? tp->bufs[tp->label] : NULL;
        measure(r, outb, &view, 0, ids, r->batch, m);
        free(ids);
      } else measure(r, outb, ds, s * r->batch, order, r->batch, m);
    }
    double train_loss = loss_sum / (double)steps, train_metric = metric_of(r, m), val_loss = NAN, val_metric = NAN;
    if (r->valid.n) {
      kiln_train_copy_state(tp, &r->inf);
      memset(m, 0, sizeof *m);
      for (int64_t first = 0; first < r->valid.n; first += r->batch) {
        int64_t real = r->valid.n - first < r->batch ? r->valid.n - first : r->batch;
        fill_batch(r, &r->valid, NULL, first, real, r->inf.bufs[r->inf.x], NULL, NULL);
        kiln_llvm_jit_run(r->inf.jit, r->inf.bufs);
        measure(r, r->inf.bufs[r->inf.out], &r->valid, first, NULL, real, m);
      }
      val_loss = loss_of(r, m);
      val_metric = metric_of(r, m);
    }
    const char *bad = nonfinite_state(tp, state);
    if (bad) {
      if (c->epoch)
        kiln_error(d, NULL, "%s: epoch %lld left '%s' NaN or infinite; training stopped (%s keeps epoch %lld, the last good one)",
                   r->model, (long long)epoch + 1, bad, ckpath, (long long)c->epoch);
      else
        kiln_error(d, NULL, "%s: epoch 1 left '%s' NaN or infinite; training stopped before any checkpoint", r->model, bad);
      goto out;
    }
    double secs = now() - t0;
    printf("epoch %lld/%lld", (long long)epoch + 1, (long long)r->epochs);
    print_metric("train", train_loss, train_metric, dice);
    if (r->valid.n) print_metric("val", val_loss, val_metric, dice);
    printf("  %.1f s\n", secs);
    fflush(stdout);
    double *nm = realloc(c->metrics, (size_t)(c->nmetrics + 1) * KILN_CKPT_METRICS * sizeof(double));
    if (!nm) { kiln_error(d, NULL, "out of memory"); goto out; }
    c->metrics = nm;
    double row[KILN_CKPT_METRICS] = {(double)epoch + 1, train_loss, train_metric, val_loss, val_metric, secs, lr};
    memcpy(c->metrics + c->nmetrics++ * KILN_CKPT_METRICS, row, sizeof row);
    c->epoch = epoch + 1;
    int stop = 0;
    if (r->valid.n && isfinite(val_loss)) {
      if (val_loss < c->best_val) { c->best_val = val_loss; c->bad_epochs = 0; }
      else stop = r->early_stop && ++c->bad_epochs >= r->early_stop;
    }
    memcpy(c->prng, r->prng, sizeof r->prng);
    c->state_bytes = state_bytes;
    void *keep = c->state;
    c->state = state; /* written from the JIT's blob directly */
    int wrc = write_outputs(r, d) || kiln_ckpt_write(ckpath, c, d);
    c->state = keep;
    if (wrc) goto out;
    if (stop) {
      printf("early stop: no lower validation loss for %lld epochs (best %.4f)\n", (long long)r->early_stop, c->best_val);
      break;
    }
  }
  if (first_epoch >= r->epochs) printf("nothing to train: %lld epochs done already\n", (long long)c->epoch);
  rc = 0;
out:
  free(order);
  free(m);
  return rc;
}

int kiln_train_predict(train_run *r, const char *path, kiln_diag *d) {
  const kiln_buf *o = r->inf.p->bufs[r->inf.out];
  int64_t per = o->numel / r->batch, n = r->valid.n;
  float *all = malloc((size_t)(n * per) * sizeof(float) + 1);
  if (!all) return kiln_error(d, NULL, "out of memory");
  kiln_train_copy_state(&r->tr, &r->inf);
  for (int64_t first = 0; first < n; first += r->batch) {
    int64_t real = n - first < r->batch ? n - first : r->batch;
    fill_batch(r, &r->valid, NULL, first, real, r->inf.bufs[r->inf.x], NULL, NULL);
    kiln_llvm_jit_run(r->inf.jit, r->inf.bufs);
    memcpy(all + first * per, r->inf.bufs[r->inf.out], (size_t)(real * per) * sizeof(float));
  }
  kiln_tensor t = {.name = o->name, .dtype = KILN_DT_F32, .rank = o->rank, .data = all,
                   .nbytes = (size_t)(n * per) * sizeof(float)};
  memcpy(t.dims, o->dims, sizeof t.dims);
  t.dims[0] = n;
  int rc = kiln_npy_write(path, &t, d);
  free(all);
  return rc;
}
