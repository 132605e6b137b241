/* The training step (passes/train.c): a linear model y = x W + b with the
 * MSE loss, one and several SGD / momentum / Adam steps through the
 * pipeline and the LLVM JIT, against the update computed here in double
 * from the formulas (torch.optim's), not from kiln. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/llvm/kiln_llvm.h"
#include "../../passes/lower.h"
#include "../../passes/pipeline.h"
#include "../../passes/train.h"

enum { N = 4, I = 3, O = 2 };
static const float W0[I * O] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f};
static const float B0[O] = {0.05f, -0.05f};

static kiln_graph *linear(void) {
  kiln_graph *g = kiln_graph_new();
  g->file = "linear";
  kiln_value *x = kiln_value_new(g, "x", KILN_VALUE_INPUT);
  x->dtype = KILN_DT_F32, x->rank = 2, x->dims[0] = N, x->dims[1] = I;
  kiln_graph_add_input(g, x);
  kiln_value *w = kiln_value_const(g, "W", KILN_DT_F32, 2, (int64_t[]){I, O}, W0);
  kiln_value *b = kiln_value_const(g, "b", KILN_DT_F32, 1, (int64_t[]){O}, B0);
  w->kind = b->kind = KILN_VALUE_PARAM;
  kiln_node *n = kiln_node_new(g, KILN_OP_GEMM, "fc", 3, 1);
  kiln_node_set_input(n, 0, x);
  kiln_node_set_input(n, 1, w);
  kiln_node_set_input(n, 2, b);
  kiln_value *y = kiln_value_new(g, "y", KILN_VALUE_ACTIVATION);
  kiln_node_set_output(n, 0, y);
  kiln_graph_add_output(g, y);
  return g;
}

/* The reference: params p[0..I*O) = W, p[I*O..] = b; moments m, v. */
typedef struct ref { double p[I * O + O], m[I * O + O], v[I * O + O]; } ref;

static double ref_step(ref *r, const kiln_train_opts *t, const float *x, const float *tg, double lr, int step) {
  double y[N][O], gr[I * O + O] = {0}, loss = 0;
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++) {
      y[n][o] = r->p[I * O + o];
      for (int i = 0; i < I; i++) y[n][o] += x[n * I + i] * r->p[i * O + o];
      double e = y[n][o] - tg[n * O + o];
      loss += e * e / (N * O);
      double dy = 2 * e / (N * O);
      for (int i = 0; i < I; i++) gr[i * O + o] += x[n * I + i] * dy;
      gr[I * O + o] += dy;
    }
  for (int k = 0; k < I * O + O; k++) {
    double g = gr[k];
    switch (t->optimizer) {
    case KILN_OPTIM_SGD: r->p[k] -= lr * g; break;
    case KILN_OPTIM_MOMENTUM: r->m[k] = t->momentum * r->m[k] + g; r->p[k] -= lr * r->m[k]; break;
    case KILN_OPTIM_ADAM: {
      r->m[k] = t->beta1 * r->m[k] + (1 - t->beta1) * g;
      r->v[k] = t->beta2 * r->v[k] + (1 - t->beta2) * g * g;
      double mh = r->m[k] / (1 - pow(t->beta1, step)), vh = r->v[k] / (1 - pow(t->beta2, step));
      r->p[k] -= lr * mh / (sqrt(vh) + t->eps);
      break;
    }
    default: cr_assert_fail("no reference for this optimizer");
    }
  }
  return loss;
}

static const kiln_buf *find(const kiln_program *p, const char *name) {
  for (int i = 0; i < p->nbufs; i++)
    if (!strcmp(p->bufs[i]->name, name)) return p->bufs[i];
  return NULL;
}

static void train_and_compare(kiln_optim_kind opt) {
  kiln_train_opts t = kiln_train_defaults();
  t.loss = KILN_LOSS_MSE;
  t.optimizer = opt;
  kiln_diag d = {0};
  kiln_graph *g = linear();
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .train = &t};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert(j, "%s", d.msg);
  void *ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  float x[N * I], tg[N * O], lr = 0.1f, stepf, loss, y[N * O];
  for (int k = 0; k < N * I; k++) x[k] = (float)sin(k + 1.0);
  for (int k = 0; k < N * O; k++) tg[k] = (float)cos(k * 0.7);
  ref r = {0};
  for (int k = 0; k < I * O; k++) r.p[k] = W0[k];
  for (int k = 0; k < O; k++) r.p[I * O + k] = B0[k];
  for (int step = 1; step <= 5; step++) {
    kiln_llvm_jit_bind(p, bufs, ws);
    stepf = (float)step;
    const kiln_buf *bx = find(p, "x"), *bl = find(p, "label"), *blr = find(p, "lr"), *bs = find(p, "step");
    const kiln_buf *bloss = find(p, "loss"), *by = find(p, "y");
    cr_assert(bx && bl && blr && bloss && by, "the step's buffers");
    bufs[bx->id] = x, bufs[bl->id] = tg, bufs[blr->id] = &lr, bufs[bloss->id] = &loss, bufs[by->id] = y;
    if (bs) bufs[bs->id] = &stepf;
    kiln_llvm_jit_run(j, bufs);
    double want = ref_step(&r, &t, x, tg, lr, step);
    cr_assert(fabs(loss - want) <= 1e-5 * fabs(want), "step %d: loss %.9g, reference %.9g", step, loss, want);
  }
  int64_t bytes;
  const char *state = kiln_llvm_jit_state(j, p, &bytes);
  const kiln_buf *bw = find(p, "W"), *bb = find(p, "b");
  cr_assert(bw && bb && bw->kind == KILN_BUF_STATE && bb->kind == KILN_BUF_STATE, "parameters are state");
  const float *w = (const float *)(state + bw->offset), *b = (const float *)(state + bb->offset);
  /* 1e-5 relative to the magnitudes the result is computed from (the
   * initial value and the learning rate: Adam moves every parameter by
   * about lr a step, and a parameter that passes near 0 keeps the rounding
   * of those larger operands); five f32 steps round a few ulps each. */
  for (int k = 0; k < I * O; k++)
    cr_assert(fabs(w[k] - r.p[k]) <= 1e-5 * fmax(fmax(fabs(r.p[k]), fabs(W0[k])), lr), "W[%d] %.9g vs %.9g", k, w[k],
              r.p[k]);
  for (int k = 0; k < O; k++)
    cr_assert(fabs(b[k] - r.p[I * O + k]) <= 1e-5 * fmax(fmax(fabs(r.p[I * O + k]), fabs(B0[k])), lr), "b[%d]", k);
  free(ws);
  free(bufs);
  kiln_llvm_jit_free(j);
  kiln_graph_free(g);
}

Test(train, sgd_steps_match_the_formula) { train_and_compare(KILN_OPTIM_SGD); }
Test(train, momentum_steps_match_the_formula) { train_and_compare(KILN_OPTIM_MOMENTUM); }
Test(train, adam_steps_match_the_formula) { train_and_compare(KILN_OPTIM_ADAM); }
