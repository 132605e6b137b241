/* kiln_explain_build (passes/explain.h): the explanation graph's contract
 * (inputs x, class; outputs cam, logits [, grad]; the default layer), its
 * errors, and its values through the pipeline and the loop-IR interpreter
 * on a graph small enough to check by hand:
 *   x [1, K, H, W] -> Relu (A) -> GlobalAveragePool -> Flatten -> Gemm (W [K, C])
 *   -> Softmax.
 * The score is the Softmax's input s_c = sum_k W[k, c] mean_hw A_k, so
 * dScore/dA_k = W[k, c] / HW everywhere and Grad-CAM is
 *   cam = ReLU(sum_k W[k, c] A_k) / HW,
 * computed here in double from x directly; saliency is
 *   max_k |dScore/dx_k| = max_k |W[k, c]| [x_k > 0] / HW.
 * Both are float32 sums of K = 4 products: bound 1e-6 relative. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../passes/explain.h"
#include "gradcheck.h"

enum { K = 4, H = 3, W = 5, C = 3 };

static float wts[K * C];

static kiln_graph *build(void) {
  kiln_graph *g = gc_graph();
  int64_t xd[4] = {1, K, H, W};
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 4, xd);
  kiln_node *r = gc_node(g, KILN_OP_RELU, 1, (kiln_value *[]){x}, 1);
  r->out[0]->name = "feat";
  kiln_node *p = gc_node(g, KILN_OP_GLOBAL_AVERAGE_POOL, 1, (kiln_value *[]){r->out[0]}, 1);
  kiln_node *f = gc_node(g, KILN_OP_FLATTEN, 1, (kiln_value *[]){p->out[0]}, 1);
  uint64_t s = 99;
  for (int i = 0; i < K * C; i++) wts[i] = (float)gc_uniform(&s, -1, 1);
  int64_t wd[2] = {K, C};
  kiln_value *wv = kiln_value_const(g, "fc.w", KILN_DT_F32, 2, wd, wts);
  wv->kind = KILN_VALUE_PARAM;
  kiln_node *m = gc_node(g, KILN_OP_GEMM, 2, (kiln_value *[]){f->out[0], wv}, 1);
  kiln_node *sm = gc_node(g, KILN_OP_SOFTMAX, 1, (kiln_value *[]){m->out[0]}, 1);
  ((kiln_attrs_softmax *)sm->attrs)->axis = 1;
  kiln_graph_add_output(g, sm->out[0]);
  return g;
}

static const kiln_value *input_named(const kiln_graph *g, const char *name) {
  for (int i = 0; i < g->ninputs; i++)
    if (!strcmp(g->inputs[i]->name, name)) return g->inputs[i];
  return NULL;
}

Test(explain, contract) {
  kiln_diag d = {0};
  kiln_graph *g = build();
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_explain_info info;
  kiln_explain_opts o = {.method = KILN_EXPLAIN_GRADCAM, .info = &info};
  cr_assert_eq(kiln_explain_build(g, &o, &d), 0, "%s", d.msg);
  cr_assert_str_eq(info.layer->name, "feat");
  cr_assert_eq(info.classes, C);
  cr_assert_eq(g->ninputs, 2);
  const kiln_value *cls = input_named(g, "class");
  cr_assert(cls && cls->dtype == KILN_DT_I64 && cls->rank == 1 && cls->dims[0] == 1);
  cr_assert_eq(g->noutputs, 2);
  const kiln_value *cam = g->outputs[0], *lg = g->outputs[1];
  cr_assert_str_eq(cam->name, "cam");
  cr_assert(cam->dtype == KILN_DT_F32 && cam->rank == 3 && cam->dims[1] == H && cam->dims[2] == W);
  cr_assert_str_eq(lg->name, "logits");
  cr_assert(lg->dtype == KILN_DT_F32 && lg->rank == 2 && lg->dims[1] == C);
  kiln_graph_free(g);
}

Test(explain, errors) {
  kiln_diag d = {0};
  kiln_graph *g = build();
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_explain_opts o = {.method = KILN_EXPLAIN_GRADCAM, .layer = "nope"};
  cr_assert_neq(kiln_explain_build(g, &o, &d), 0);
  cr_assert(strstr(d.msg, "no value named 'nope'") && strstr(d.msg, "'feat'"), "%s", d.msg);
  kiln_graph_free(g);
  /* a layer that is not a spatial feature map */
  d = (kiln_diag){0};
  g = build();
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  o.layer = g->nodes[2]->out[0]->name; /* the Flatten output */
  cr_assert_neq(kiln_explain_build(g, &o, &d), 0);
  cr_assert(strstr(d.msg, "needs a 4-D or 5-D float feature map"), "%s", d.msg);
  kiln_graph_free(g);
  /* not a classifier: the output [1, K, H, W] */
  d = (kiln_diag){0};
  g = gc_graph();
  int64_t xd[4] = {1, K, H, W};
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 4, xd);
  kiln_node *r = gc_node(g, KILN_OP_RELU, 1, (kiln_value *[]){x}, 1);
  kiln_graph_add_output(g, r->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  o.layer = NULL;
  cr_assert_neq(kiln_explain_build(g, &o, &d), 0);
  cr_assert(strstr(d.msg, "explanations need a classifier's scores"), "%s", d.msg);
  kiln_graph_free(g);
  /* a model input named "class" */
  d = (kiln_diag){0};
  g = gc_graph();
  kiln_value *cx = gc_input(g, "class", KILN_DT_F32, 4, xd);
  kiln_node *r2 = gc_node(g, KILN_OP_GLOBAL_AVERAGE_POOL, 1, (kiln_value *[]){cx}, 1);
  kiln_graph_add_output(g, r2->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  o.method = KILN_EXPLAIN_SALIENCY;
  cr_assert_neq(kiln_explain_build(g, &o, &d), 0);
  cr_assert(strstr(d.msg, "has an input named 'class'"), "%s", d.msg);
  kiln_graph_free(g);
}

/* Runs the explanation graph of `method` for class c on x (interpreter);
 * cam (and grad) out. */
static void run(kiln_explain_method method, int64_t c, const float *x, float *cam, float *logits) {
  kiln_diag d = {0};
  kiln_graph *g = build();
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_explain_opts o = {.method = method};
  cr_assert_eq(kiln_explain_build(g, &o, &d), 0, "%s", d.msg);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    else bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8);
  }
  int xb = gc_buf_named(p, "x"), cb = gc_buf_named(p, "class"), mb = gc_buf_named(p, "cam"), lb = gc_buf_named(p, "logits");
  cr_assert(xb >= 0 && cb >= 0 && mb >= 0 && lb >= 0);
  memcpy(bufs[xb], x, sizeof(float) * K * H * W);
  ((int64_t *)bufs[cb])[0] = c;
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  memcpy(cam, bufs[mb], sizeof(float) * (size_t)p->bufs[mb]->numel);
  memcpy(logits, bufs[lb], sizeof(float) * C);
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_INPUT || p->bufs[b]->kind == KILN_BUF_OUTPUT) free(bufs[b]);
  free(bufs);
  free(ws);
  kiln_graph_free(g);
}

Test(explain, values) {
  float x[K * H * W], cam[K * H * W], logits[C];
  kiln_graph_free(build()); /* fills wts (the same seed every time) */
  uint64_t s = 5;
  for (int i = 0; i < K * H * W; i++) x[i] = (float)gc_uniform(&s, -1, 1);
  double ref_logits[C];
  for (int c = 0; c < C; c++) {
    ref_logits[c] = 0;
    for (int k = 0; k < K; k++) {
      double m = 0;
      for (int i = 0; i < H * W; i++) m += fmax(x[k * H * W + i], 0);
      ref_logits[c] += wts[k * C + c] * m / (H * W);
    }
  }
  int pred = 0;
  for (int c = 1; c < C; c++)
    if (ref_logits[c] > ref_logits[pred]) pred = c;
  for (int64_t want = -1; want < C; want++) {
    int c = want < 0 ? pred : (int)want;
    run(KILN_EXPLAIN_GRADCAM, want, x, cam, logits);
    for (int j = 0; j < C; j++)
      cr_assert(fabs(logits[j] - ref_logits[j]) <= 1e-6 * (1 + fabs(ref_logits[j])), "logit %d: %.9g, want %.9g", j, logits[j], ref_logits[j]);
    for (int i = 0; i < H * W; i++) {
      double r = 0, mag = 0;
      for (int k = 0; k < K; k++) {
        r += wts[k * C + c] * fmax(x[k * H * W + i], 0) / (H * W);
        mag += fabs(wts[k * C + c] * fmax(x[k * H * W + i], 0)) / (H * W);
      }
      r = fmax(r, 0);
      cr_assert(fabs(cam[i] - r) <= 1e-6 * mag + 1e-12, "class %d pixel %d: cam %.9g, want %.9g", c, i, cam[i], r);
    }
    run(KILN_EXPLAIN_SALIENCY, want, x, cam, logits);
    for (int i = 0; i < H * W; i++) {
      double r = 0;
      for (int k = 0; k < K; k++)
        if (x[k * H * W + i] > 0) r = fmax(r, fabs(wts[k * C + c]) / (H * W));
      cr_assert(fabs(cam[i] - r) <= 1e-6 * r + 1e-12, "saliency class %d pixel %d: %.9g, want %.9g", c, i, cam[i], r);
    }
  }
}
