/* Whole networks trained through the library (passes/train.c, the LLVM
 * JIT), on synthetic tasks whose answer is known by construction:
 *   - a small U-Net (conv, BatchNorm in training mode, ReLU, MaxPool,
 *     ConvTranspose, Concat) with the soft Dice loss segments bright discs
 *     in noise: Dice of the thresholded prediction on held-out images
 *     >= 0.9 (the bar);
 *   - a 3-D CNN tells volumes with a bright blob in the upper half from
 *     ones with it in the lower half: held-out accuracy >= 0.9;
 *   - fine-tuning with the convolutions frozen leaves them bit-identical
 *     (they are never state) while the head moves.
 * Evaluation compiles the inference network separately with the trained
 * parameters (and running statistics) read from the training instance's
 * state by name: the same path `kiln train` takes to write model.onnx. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/llvm/kiln_llvm.h"
#include "../../frontend/dsl/kiln_dsl.h"
#include "../../passes/lower.h"
#include "../../passes/passes.h"
#include "../../passes/pipeline.h"
#include "../../passes/train.h"

static uint64_t rng_state = 42;
static double urand(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

typedef struct bind_batch { int64_t n; } bind_batch;
static int bind(kiln_graph *g, void *ctx, kiln_diag *d) {
  (void)d;
  kiln_pass_bind_sym(g, kiln_graph_sym(g, "N"), ((bind_batch *)ctx)->n);
  return 0;
}

static kiln_graph *load(const char *src, kiln_diag *d) {
  return kiln_dsl_load_buffer(src, strlen(src), "net.kiln", NULL, NULL, d);
}

typedef struct runner {
  kiln_graph *g;
  kiln_program *p;
  kiln_llvm_jit *j;
  void **bufs, *ws;
} runner;

static void runner_open(runner *r, const char *src, int64_t batch, const kiln_train_opts *t) {
  kiln_diag d = {0};
  memset(r, 0, sizeof *r);
  r->g = load(src, &d);
  cr_assert(r->g, "%s", d.msg);
  bind_batch bb = {batch};
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = r->g, .bind = bind, .bind_ctx = &bb, .train = t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  r->p = pl.program;
  r->j = kiln_llvm_jit_compile(r->p, &d);
  cr_assert(r->j, "%s", d.msg);
  r->bufs = calloc((size_t)r->p->nbufs + 1, sizeof *r->bufs);
  r->ws = aligned_alloc(64, ((size_t)r->p->workspace_bytes + 127) & ~(size_t)63);
}

static int buf_named(const kiln_program *p, const char *name) {
  for (int i = 0; i < p->nbufs; i++)
    if (!strcmp(p->bufs[i]->name, name)) return i;
  return -1;
}

/* Binds the named buffers (NULL name ends the list) and runs once. */
static void runner_run(runner *r, const char *const *names, void *const *ptrs) {
  kiln_llvm_jit_bind(r->p, r->bufs, r->ws);
  for (int i = 0; names[i]; i++) {
    int b = buf_named(r->p, names[i]);
    cr_assert(b >= 0, "no buffer '%s'", names[i]);
    r->bufs[b] = ptrs[i];
  }
  kiln_llvm_jit_run(r->j, r->bufs);
}

static void runner_close(runner *r) {
  kiln_llvm_jit_free(r->j);
  free(r->bufs);
  free(r->ws);
  kiln_graph_free(r->g);
}

/* The inference network with every initializer that the training instance
 * holds as state (same name) replaced by its trained contents. */
static void eval_open(runner *e, const char *src, int64_t batch, runner *tr) {
  kiln_diag d = {0};
  memset(e, 0, sizeof *e);
  e->g = load(src, &d);
  cr_assert(e->g, "%s", d.msg);
  int64_t bytes;
  const char *state = kiln_llvm_jit_state(tr->j, tr->p, &bytes);
  for (int i = 0; i < e->g->nvalues; i++) {
    kiln_value *v = e->g->values[i];
    int b = v->data ? buf_named(tr->p, v->name) : -1;
    if (b < 0 || tr->p->bufs[b]->kind != KILN_BUF_STATE) continue;
    size_t n = (size_t)tr->p->bufs[b]->numel * kiln_dtype_size(tr->p->bufs[b]->dtype);
    void *copy = kiln_arena_alloc(&e->g->arena, n);
    memcpy(copy, state + tr->p->bufs[b]->offset, n);
    v->data = copy;
  }
  bind_batch bb = {batch};
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = e->g, .bind = bind, .bind_ctx = &bb};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  e->p = pl.program;
  e->j = kiln_llvm_jit_compile(e->p, &d);
  cr_assert(e->j, "%s", d.msg);
  e->bufs = calloc((size_t)e->p->nbufs + 1, sizeof *e->bufs);
  e->ws = aligned_alloc(64, ((size_t)e->p->workspace_bytes + 127) & ~(size_t)63);
}

/* ---- U-Net, soft Dice ---- */

static const char unet_src[] =
    "block double_conv(width) { repeat 2 { conv(width, 3x3, pad=1, bias=false) -> batchnorm -> relu } }\n"
    "block stage(width, depth) {\n"
    "  double_conv(width)\n"
    "  if depth > 0 {\n"
    "    skip = _\n"
    "    maxpool(2x2) -> stage(2 * width, depth - 1) -> up: conv_transpose(width, 2x2, stride=2)\n"
    "    (skip, _) -> concat -> double_conv(width)\n"
    "  }\n"
    "}\n"
    "network unet_small {\n"
    "  input image: [N, 1, 32, 32]\n"
    "  stage(8, depth=2)\n"
    "  head: conv(1, 1x1)\n"
    "  output logits\n"
    "}\n";

enum { S = 32 };

/* A disc of radius 4..9 somewhere in the image, +1 inside, noise sd 0.3. */
static void disc(float *img, float *mask) {
  double cx = 6 + urand() * (S - 12), cy = 6 + urand() * (S - 12), rad = 4 + urand() * 5;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      int in = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= rad * rad;
      mask[y * S + x] = (float)in;
      img[y * S + x] = (float)(in + 0.3 * nrand());
    }
}

Test(train_networks, unet_with_dice_loss_segments_discs, .timeout = 600) {
  if (!kiln_op_get(KILN_OP_CONV)->grad) cr_skip("Conv has no gradient yet");
  enum { B = 8, STEPS = 150, EVAL = 16 };
  kiln_train_opts t = kiln_train_defaults();
  t.loss = KILN_LOSS_DICE;
  t.optimizer = KILN_OPTIM_ADAM;
  runner tr;
  runner_open(&tr, unet_src, B, &t);
  static float x[B * S * S], m[B * S * S], logits[B * S * S];
  float loss = 0, lr = 0.01f, stepf;
  const char *names[] = {"image", "label", "lr", "step", "loss", "logits", NULL};
  float first = 0;
  for (int step = 1; step <= STEPS; step++) {
    for (int b = 0; b < B; b++) disc(x + b * S * S, m + b * S * S);
    stepf = (float)step;
    void *ptrs[] = {x, m, &lr, &stepf, &loss, logits};
    runner_run(&tr, names, ptrs);
    cr_assert(isfinite(loss), "step %d: loss %g", step, loss);
    if (step == 1) first = loss;
  }
  cr_assert(loss < first, "the Dice loss went down: %g -> %g", first, loss);
  runner ev;
  eval_open(&ev, unet_src, EVAL, &tr);
  static float ex[EVAL * S * S], em[EVAL * S * S], out[EVAL * S * S];
  for (int b = 0; b < EVAL; b++) disc(ex + b * S * S, em + b * S * S);
  const char *enames[] = {"image", "logits", NULL};
  void *eptrs[] = {ex, out};
  runner_run(&ev, enames, eptrs);
  double inter = 0, sp = 0, st = 0;
  for (int i = 0; i < EVAL * S * S; i++) {
    int p = out[i] > 0; /* sigmoid > 0.5 */
    inter += p * em[i], sp += p, st += em[i];
  }
  double dice = 2 * inter / (sp + st);
  cr_log_info("U-Net: Dice loss %g -> %g, held-out Dice %.3f", first, loss, dice);
  cr_assert(dice >= 0.9, "held-out Dice %.3f (< 0.9)", dice);
  runner_close(&ev);
  runner_close(&tr);
}

/* ---- 3-D CNN ---- */

static const char cnn3d_src[] =
    "network cnn3d_small {\n"
    "  input volume: [N, 1, 16, 16, 16]\n"
    "  for width in [4, 8] { conv(width, 3x3x3, pad=1, bias=false) -> batchnorm -> relu -> maxpool(2x2x2) }\n"
    "  global_avgpool -> flatten\n"
    "  fc: dense(2)\n"
    "  output logits\n"
    "}\n";

enum { V = 16 };

/* A Gaussian blob in the upper (label 1) or lower (0) half along depth. */
static int64_t blob(float *vol) {
  int64_t label = urand() < 0.5;
  double cz = label ? 10 + urand() * 4 : 2 + urand() * 4, cy = 3 + urand() * 10, cx = 3 + urand() * 10;
  for (int z = 0; z < V; z++)
    for (int y = 0; y < V; y++)
      for (int x = 0; x < V; x++) {
        double r2 = (z - cz) * (z - cz) + (y - cy) * (y - cy) + (x - cx) * (x - cx);
        vol[(z * V + y) * V + x] = (float)(exp(-r2 / 8) + 0.2 * nrand());
      }
  return label;
}

Test(train_networks, cnn3d_tells_blob_positions_apart, .timeout = 600) {
  if (!kiln_op_get(KILN_OP_CONV)->grad) cr_skip("Conv has no gradient yet");
  enum { B = 8, STEPS = 120, EVAL = 64 };
  kiln_train_opts t = kiln_train_defaults();
  t.optimizer = KILN_OPTIM_ADAM;
  runner tr;
  runner_open(&tr, cnn3d_src, B, &t);
  static float x[B * V * V * V], logits[B * 2];
  int64_t y[B];
  float loss = 0, lr = 0.01f, stepf, first = 0;
  const char *names[] = {"volume", "label", "lr", "step", "loss", "logits", NULL};
  for (int step = 1; step <= STEPS; step++) {
    for (int b = 0; b < B; b++) y[b] = blob(x + b * V * V * V);
    stepf = (float)step;
    void *ptrs[] = {x, y, &lr, &stepf, &loss, logits};
    runner_run(&tr, names, ptrs);
    cr_assert(isfinite(loss), "step %d: loss %g", step, loss);
    if (step == 1) first = loss;
  }
  cr_assert(loss < first, "the loss went down: %g -> %g", first, loss);
  runner ev;
  eval_open(&ev, cnn3d_src, EVAL, &tr);
  static float ex[EVAL * V * V * V], out[EVAL * 2];
  int64_t ey[EVAL];
  for (int b = 0; b < EVAL; b++) ey[b] = blob(ex + b * V * V * V);
  const char *enames[] = {"volume", "logits", NULL};
  void *eptrs[] = {ex, out};
  runner_run(&ev, enames, eptrs);
  int right = 0;
  for (int b = 0; b < EVAL; b++) right += (out[2 * b + 1] > out[2 * b]) == (ey[b] == 1);
  cr_log_info("3-D CNN: loss %g -> %g, held-out accuracy %d/%d", first, loss, right, EVAL);
  cr_assert(right >= 0.9 * EVAL, "held-out accuracy %d/%d (< 90%%)", right, EVAL);
  runner_close(&ev);
  runner_close(&tr);
}

/* ---- fine-tuning with frozen layers ---- */

static const char lenet_src[] =
    "network small {\n"
    "  input image: [N, 1, 12, 12]\n"
    "  c1: conv(4, 3x3) -> relu -> maxpool(2x2)\n"
    "  c2: conv(8, 3x3) -> relu -> flatten\n"
    "  fc: dense(3)\n"
    "  output logits\n"
    "}\n";

Test(train_networks, frozen_layers_stay_bit_identical_while_the_head_trains) {
  if (!kiln_op_get(KILN_OP_CONV)->grad) cr_skip("Conv has no gradient yet");
  enum { B = 4, P = 12 * 12 };
  static const char *const freeze[] = {"c1*", "c2*"};
  kiln_train_opts t = kiln_train_defaults();
  t.optimizer = KILN_OPTIM_MOMENTUM;
  t.freeze = freeze;
  t.nfreeze = 2;
  runner tr;
  runner_open(&tr, lenet_src, B, &t);
  /* the frozen parameters are weights (constant), the head's are state */
  int nstate = 0;
  for (int i = 0; i < tr.p->nbufs; i++) {
    const kiln_buf *b = tr.p->bufs[i];
    if (!strncmp(b->name, "c1", 2) || !strncmp(b->name, "c2", 2))
      cr_assert(b->kind != KILN_BUF_STATE, "frozen '%s' is not state", b->name);
    if (!strncmp(b->name, "fc", 2) && b->kind == KILN_BUF_STATE) nstate++;
  }
  cr_assert(nstate >= 2, "the head's weight and bias (and momenta) are state");
  /* the frozen values in the graph: same bytes as a fresh load */
  kiln_diag d = {0};
  kiln_graph *fresh = load(lenet_src, &d);
  cr_assert(fresh, "%s", d.msg);
  static float x[B * P], logits[B * 3];
  int64_t y[B] = {0, 1, 2, 1};
  float loss, lr = 0.1f, stepf = 1;
  for (int i = 0; i < B * P; i++) x[i] = (float)urand();
  const char *names[] = {"image", "label", "lr", "step", "loss", "logits", NULL};
  for (int s = 0; s < 5; s++) {
    void *ptrs[] = {x, y, &lr, &stepf, &loss, logits};
    runner_run(&tr, names, ptrs);
  }
  int checked = 0;
  for (int i = 0; i < fresh->nvalues; i++) {
    const kiln_value *v = fresh->values[i];
    if (!v->data || (strncmp(v->name, "c1", 2) && strncmp(v->name, "c2", 2))) continue;
    int b = buf_named(tr.p, v->name);
    cr_assert(b >= 0 && tr.p->bufs[b]->data, "'%s' is a weight of the training step", v->name);
    cr_assert(!memcmp(tr.p->bufs[b]->data, v->data, kiln_value_nbytes(v)), "'%s' changed", v->name);
    checked++;
  }
  cr_assert_eq(checked, 4, "c1/c2 weights and biases");
  kiln_graph_free(fresh);
  runner_close(&tr);
}
