/* passes/attack.c: the attack graph of a small classifier (x f64[2,5] ->
 * MatMul -> Tanh -> MatMul -> Softmax), compiled through the pipeline and
 * run with the loop-IR interpreter, against a host reference in float64:
 *   - attack.logits = the Softmax's input (not the probabilities), rel 1e-12;
 *   - attack.loss[n] = -log softmax(z[n])[label[n]] computed on the host
 *     from those logits, rel 1e-12 (both float64; only summation order and
 *     exp/log rounding differ);
 *   - attack.grad = central finite differences of sum(loss) (h = 1e-6,
 *     truncation O(h^2), rounding O(1e-16 / h)): relative L2 error < 1e-6,
 *     the bound gradcheck.h uses for float64;
 *   - float64 in, float64 logits and loss out (only f16/bf16 logits are
 *     widened to float32). */
#include <math.h>

#include "gradcheck.h"
#include "../../passes/attack.h"

enum { N = 2, D = 5, H = 6, C = 4 };

static double W1[D * H], W2[H * C];

static kiln_graph *build(void) {
  kiln_graph *g = gc_graph();
  uint64_t s = 99;
  for (int i = 0; i < D * H; i++) W1[i] = gc_uniform(&s, -1, 1);
  for (int i = 0; i < H * C; i++) W2[i] = gc_uniform(&s, -1.5, 1.5);
  kiln_value *x = gc_input(g, "x", KILN_DT_F64, 2, (int64_t[]){N, D});
  kiln_value *w1 = kiln_value_const(g, "W1", KILN_DT_F64, 2, (int64_t[]){D, H}, W1);
  kiln_value *w2 = kiln_value_const(g, "W2", KILN_DT_F64, 2, (int64_t[]){H, C}, W2);
  kiln_node *m1 = gc_node(g, KILN_OP_MATMUL, 2, (kiln_value *[]){x, w1}, 1);
  kiln_node *t = gc_node(g, KILN_OP_TANH, 1, (kiln_value *[]){m1->out[0]}, 1);
  kiln_node *m2 = gc_node(g, KILN_OP_MATMUL, 2, (kiln_value *[]){t->out[0], w2}, 1);
  kiln_node *sm = gc_node(g, KILN_OP_SOFTMAX, 1, (kiln_value *[]){m2->out[0]}, 1);
  kiln_graph_add_output(g, sm->out[0]);
  return g;
}

static void host_logits(const double *x, double *z) {
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      double acc = 0;
      for (int h = 0; h < H; h++) {
        double a = 0;
        for (int i = 0; i < D; i++) a += x[n * D + i] * W1[i * H + h];
        acc += tanh(a) * W2[h * C + c];
      }
      z[n * C + c] = acc;
    }
}

static double run(const kiln_program *p, void **bufs, int loss_b, double *loss) {
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0, "kernel %d", k);
  double s = 0;
  for (int n = 0; n < N; n++) s += loss[n] = ((double *)bufs[loss_b])[n];
  return s;
}

Test(attack, loss_logits_and_gradient_against_float64_reference) {
  kiln_diag d = {0};
  kiln_graph *g = build();
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  int64_t classes = 0;
  cr_assert_eq(kiln_attack_build(g, NULL, NULL, &classes, &d), 0, "%s", d.msg);
  cr_assert_eq(classes, C);
  cr_assert_eq(g->noutputs, 3);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64), *state = calloc(1, (size_t)p->state_bytes + 64);
  kiln_program_state_init(p, state);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    else if (buf->kind == KILN_BUF_STATE) bufs[b] = (char *)state + buf->offset;
    else bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8);
  }
  int xb = gc_buf_named(p, "x"), lb = gc_buf_named(p, KILN_ATTACK_LABEL), zb = gc_buf_named(p, KILN_ATTACK_LOGITS),
      sb = gc_buf_named(p, KILN_ATTACK_LOSS), gb = gc_buf_named(p, KILN_ATTACK_GRAD);
  cr_assert(xb >= 0 && lb >= 0 && zb >= 0 && sb >= 0 && gb >= 0);
  cr_assert_eq(p->bufs[zb]->dtype, KILN_DT_F64); /* a float64 model keeps float64 logits and loss */
  cr_assert_eq(p->bufs[sb]->dtype, KILN_DT_F64);
  cr_assert_eq(p->bufs[gb]->dtype, KILN_DT_F64); /* the gradient has x's dtype */
  double *x = bufs[xb];
  uint64_t s = 5;
  for (int i = 0; i < N * D; i++) x[i] = gc_uniform(&s, -1, 1);
  int64_t lab[N] = {1, 3};
  memcpy(bufs[lb], lab, sizeof lab);
  double loss[N], z[N * C];
  run(p, bufs, sb, loss);
  host_logits(x, z);
  for (int n = 0; n < N; n++) {
    double hi = -INFINITY, se = 0;
    for (int c = 0; c < C; c++) {
      double zk = ((double *)bufs[zb])[n * C + c];
      cr_assert(fabs(zk - z[n * C + c]) <= 1e-12 * fmax(1, fabs(z[n * C + c])), "logit %d,%d: %.17g vs %.17g", n, c,
                zk, z[n * C + c]);
      hi = fmax(hi, z[n * C + c]);
    }
    for (int c = 0; c < C; c++) se += exp(z[n * C + c] - hi);
    double ref = -(z[n * C + lab[n]] - hi - log(se));
    cr_assert(fabs(loss[n] - ref) <= 1e-12 * fmax(1, ref), "loss %d: %.17g vs %.17g", n, loss[n], ref);
  }
  double gr[N * D], num = 0, den = 0;
  for (int i = 0; i < N * D; i++) gr[i] = ((double *)bufs[gb])[i];
  for (int i = 0; i < N * D; i++) {
    const double h = 1e-6, x0 = x[i];
    double l2[N];
    x[i] = x0 + h;
    double lp = run(p, bufs, sb, l2);
    x[i] = x0 - h;
    double lm = run(p, bufs, sb, l2);
    x[i] = x0;
    double fd = (lp - lm) / (2 * h);
    num += (gr[i] - fd) * (gr[i] - fd);
    den += fd * fd;
  }
  double rel = sqrt(num) / sqrt(den);
  cr_assert(den > 0 && rel < 1e-6, "attack.grad vs finite differences: relative L2 error %.3g", rel);
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_INPUT || p->bufs[b]->kind == KILN_BUF_OUTPUT) free(bufs[b]);
  free(bufs);
  free(ws);
  free(state);
  kiln_graph_free(g);
}
