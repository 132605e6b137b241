/* Gradient checking against central finite differences, shared by the
 * gradient tests (header only: each test_*.c is its own binary).
 *
 * A case is a builder: given a float dtype, it returns a graph whose float
 * inputs (static shapes) are the variables and whose first output is y.
 * The check appends loss = ReduceSum(y * R) (R: fixed random weights, so
 * every element of y matters with a different weight), differentiates it
 * with kiln_autodiff with respect to every float input, compiles the whole
 * graph through the pipeline and runs it with the loop-IR interpreter.
 * The finite differences are taken on the float64 graph (h = 1e-6;
 * truncation error O(h^2), rounding O(eps/h) ~ 1e-10 relative), and
 *   rel = ||g - fd||_2 / max(||g||_2, ||fd||_2)
 * must be below 1e-6 for the float64 gradient and below 1e-3 for the
 * float32 one (the bounds: f32 rounding through a few ops is
 * ~1e-6 relative per op, well inside 1e-3).  Inputs are uniform in
 * [lo, hi] (default [-1, 1]) from a fixed seed; a case whose op has kinks
 * (Relu, MaxPool) keeps values away from them with its own `fill`. */
#ifndef KILN_TEST_GRADCHECK_H
#define KILN_TEST_GRADCHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/shape.h"
#include "../../passes/grad.h"
#include "../../passes/lower.h"
#include "../../passes/passes.h"
#include "../../passes/pipeline.h"

typedef kiln_graph *(*gc_build_fn)(kiln_dtype t, const void *ctx);
/* Optional: fills input k's n values (default uniform in [-1, 1]). */
typedef void (*gc_fill_fn)(int k, double *x, int64_t n, uint64_t *rng, const void *ctx);

static inline double gc_uniform(uint64_t *s, double lo, double hi) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return lo + (hi - lo) * (double)(*s >> 11) / 9007199254740992.0;
}

/* Helpers for builders: an input of dtype t and shape, a node applying op. */
static inline kiln_value *gc_input(kiln_graph *g, const char *name, kiln_dtype t, int rank, const int64_t *dims) {
  return kiln_graph_new_input(g, name, t, rank, dims);
}

static inline kiln_node *gc_node(kiln_graph *g, kiln_op op, int nin, kiln_value *const *in, int nout) {
  kiln_node *n = kiln_node_new(g, op, kiln_op_get(op)->name, nin, nout);
  for (int k = 0; k < nin; k++)
    if (in[k]) kiln_node_set_input(n, k, in[k]);
  char name[64];
  for (int k = 0; k < nout; k++) {
    snprintf(name, sizeof name, "%s_out%d_%d", kiln_op_get(op)->name, n->id, k);
    kiln_node_set_output(n, k, kiln_value_new(g, name, KILN_VALUE_ACTIVATION));
  }
  return n;
}

static inline kiln_graph *gc_graph(void) {
  kiln_graph *g = kiln_graph_new();
  g->file = "gradcheck";
  return g;
}

/* The compiled loss-and-gradients program of one dtype. */
typedef struct gc_prog {
  kiln_graph *g;
  kiln_program *p;
  int nin;                    /* float inputs */
  int64_t numel[8];
  int in_buf[8], grad_buf[8]; /* buffer index of input k / of its gradient (-1: zero gradient) */
  int loss_buf;
  void **bufs;
  void *ws, *state;
} gc_prog;

static inline int gc_buf_named(const kiln_program *p, const char *name) {
  for (int b = 0; b < p->nbufs; b++)
    if (!strcmp(p->bufs[b]->name, name)) return b;
  return -1;
}

/* target: what to lower for (NULL: the pipeline's default; a JIT test
 * passes the host's, kiln_llvm_target(0)). */
static inline int gc_compile_for(gc_build_fn build, const void *ctx, kiln_dtype t, const kiln_target *target, gc_prog *gp,
                                 kiln_diag *d) {
  memset(gp, 0, sizeof *gp);
  kiln_graph *g = gp->g = build(t, ctx);
  cr_assert(g && g->noutputs >= 1 && g->ninputs <= 8);
  if (kiln_pass_infer_shapes(g, d)) return -1;
  kiln_value *y = g->outputs[0];
  /* loss = ReduceSum(y * R), R fixed per element */
  int64_t n = kiln_value_numel(y, 1);
  void *r = kiln_arena_array(&g->arena, (size_t)n, kiln_dtype_size(t));
  uint64_t s = 12345;
  for (int64_t i = 0; i < n; i++) kiln_dtype_store_f(t, r, (size_t)i, gc_uniform(&s, -1, 1));
  int64_t dims[KILN_MAX_RANK];
  for (int i = 0; i < y->rank; i++) dims[i] = y->dims[i];
  kiln_value *R = kiln_value_const(g, "gc_R", t, y->rank, dims, r);
  kiln_node *m = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){y, R}, 1);
  kiln_node *rs = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){m->out[0]}, 1);
  ((kiln_attrs_reduce *)rs->attrs)->keepdims = 0;
  kiln_value *loss = rs->out[0];
  loss->name = "gc_loss";
  g->noutputs = 0;
  y->is_output = 0;
  kiln_graph_add_output(g, loss);
  if (kiln_pass_infer_shapes(g, d)) return -1;
  kiln_value *wrt[8], *grads[8];
  for (int k = 0; k < g->ninputs; k++)
    if (kiln_dtype_is_float(g->inputs[k]->dtype)) {
      gp->numel[gp->nin] = kiln_value_numel(g->inputs[k], 1);
      wrt[gp->nin++] = g->inputs[k];
    }
  if (kiln_autodiff(g, loss, gp->nin, wrt, grads, d)) return -1;
  char name[64];
  for (int k = 0; k < gp->nin; k++)
    if (grads[k]) {
      /* gradients as outputs; one that is an input itself goes through an Identity */
      kiln_value *gv = grads[k];
      if (gv->kind != KILN_VALUE_ACTIVATION || gv->is_output)
        gv = gc_node(g, KILN_OP_IDENTITY, 1, (kiln_value *[]){gv}, 1)->out[0];
      snprintf(name, sizeof name, "gc_grad%d", k);
      gv->name = kiln_arena_strdup(&g->arena, name);
      kiln_graph_add_output(g, gv);
    }
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES, .target = target};
  if (kiln_pipeline_run(&po, &pl, d)) return -1;
  kiln_program *p = gp->p = pl.program;
  gp->bufs = calloc((size_t)p->nbufs + 1, sizeof *gp->bufs);
  gp->ws = calloc(1, (size_t)p->workspace_bytes + 64);
  gp->state = calloc(1, (size_t)p->state_bytes + 64);
  kiln_program_state_init(p, gp->state);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) gp->bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) gp->bufs[b] = (char *)gp->ws + buf->offset;
    else if (buf->kind == KILN_BUF_STATE) gp->bufs[b] = (char *)gp->state + buf->offset;
    else gp->bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8);
  }
  gp->loss_buf = gc_buf_named(p, "gc_loss");
  for (int k = 0; k < gp->nin; k++) {
    gp->in_buf[k] = gc_buf_named(p, wrt[k]->name);
    snprintf(name, sizeof name, "gc_grad%d", k);
    gp->grad_buf[k] = grads[k] ? gc_buf_named(p, name) : -1;
    cr_assert(gp->in_buf[k] >= 0 && (!grads[k] || gp->grad_buf[k] >= 0), "buffers of input %d", k);
  }
  cr_assert(gp->loss_buf >= 0);
  return 0;
}

static inline int gc_compile(gc_build_fn build, const void *ctx, kiln_dtype t, gc_prog *gp, kiln_diag *d) {
  return gc_compile_for(build, ctx, t, NULL, gp, d);
}

static inline double gc_run(gc_prog *gp) {
  for (int k = 0; k < gp->p->nkernels; k++)
    cr_assert_eq(kiln_loop_eval(gp->p, gp->p->kernels[k], gp->bufs), 0, "kernel %d indexes out of bounds", k);
  return kiln_dtype_load_f(gp->p->bufs[gp->loss_buf]->dtype, gp->bufs[gp->loss_buf], 0);
}

static inline void gc_free(gc_prog *gp) {
  for (int b = 0; b < gp->p->nbufs; b++) {
    kiln_buf_kind k = gp->p->bufs[b]->kind;
    if (k == KILN_BUF_INPUT || k == KILN_BUF_OUTPUT) free(gp->bufs[b]);
  }
  free(gp->bufs);
  free(gp->ws);
  free(gp->state);
  kiln_graph_free(gp->g);
}

/* Checks the f64 and f32 gradients of the case; `what` names it in
 * failures.  Returns the f64 relative error (for tests that report it). */
static inline double gradcheck(const char *what, gc_build_fn build, gc_fill_fn fill, const void *ctx) {
  kiln_diag d = {0};
  gc_prog p64, p32;
  cr_assert_eq(gc_compile(build, ctx, KILN_DT_F64, &p64, &d), 0, "%s (f64): %s", what, d.msg);
  cr_assert_eq(gc_compile(build, ctx, KILN_DT_F32, &p32, &d), 0, "%s (f32): %s", what, d.msg);
  uint64_t s = 777;
  for (int k = 0; k < p64.nin; k++) {
    double *x = calloc((size_t)p64.numel[k], sizeof *x);
    if (fill) fill(k, x, p64.numel[k], &s, ctx);
    else
      for (int64_t i = 0; i < p64.numel[k]; i++) x[i] = gc_uniform(&s, -1, 1);
    for (int64_t i = 0; i < p64.numel[k]; i++) {
      ((double *)p64.bufs[p64.in_buf[k]])[i] = x[i];
      ((float *)p32.bufs[p32.in_buf[k]])[i] = (float)x[i];
    }
    free(x);
  }
  gc_run(&p64);
  gc_run(&p32);
  double worst = 0, *g64s[8], *g32s[8];
  /* every gradient read before any finite-difference run overwrites it */
  for (int k = 0; k < p64.nin; k++) {
    int64_t n = p64.numel[k];
    double *g64 = g64s[k] = calloc((size_t)n, sizeof *g64), *g32 = g32s[k] = calloc((size_t)n, sizeof *g32);
    for (int64_t i = 0; i < n; i++) {
      if (p64.grad_buf[k] >= 0) g64[i] = ((double *)p64.bufs[p64.grad_buf[k]])[i];
      if (p32.grad_buf[k] >= 0) g32[i] = ((float *)p32.bufs[p32.grad_buf[k]])[i];
    }
  }
  for (int k = 0; k < p64.nin; k++) {
    int64_t n = p64.numel[k];
    double *fd = calloc((size_t)n, sizeof *fd), *x = p64.bufs[p64.in_buf[k]], *g64 = g64s[k], *g32 = g32s[k];
    const double h = 1e-6;
    for (int64_t i = 0; i < n; i++) {
      double x0 = x[i];
      x[i] = x0 + h;
      double lp = gc_run(&p64);
      x[i] = x0 - h;
      double lm = gc_run(&p64);
      x[i] = x0;
      fd[i] = (lp - lm) / (2 * h);
    }
    double e64 = 0, e32 = 0, nfd = 0, n64 = 0, n32 = 0;
    for (int64_t i = 0; i < n; i++) {
      e64 += (g64[i] - fd[i]) * (g64[i] - fd[i]);
      e32 += (g32[i] - fd[i]) * (g32[i] - fd[i]);
      nfd += fd[i] * fd[i];
      n64 += g64[i] * g64[i];
      n32 += g32[i] * g32[i];
    }
    double r64 = sqrt(e64) / fmax(fmax(sqrt(n64), sqrt(nfd)), 1e-300);
    double r32 = sqrt(e32) / fmax(fmax(sqrt(n32), sqrt(nfd)), 1e-300);
    if (nfd == 0 && n64 == 0) r64 = 0;
    if (nfd == 0 && n32 == 0) r32 = 0;
    cr_assert(nfd > 0 || p64.grad_buf[k] < 0 || n64 == 0, "%s: input %d", what, k);
    cr_assert(r64 < 1e-6, "%s: input %d ('%s'): f64 gradient vs finite differences: relative error %.3g "
              "(first element %.12g vs %.12g)", what, k, p64.p->bufs[p64.in_buf[k]]->name, r64, g64[0], fd[0]);
    cr_assert(r32 < 1e-3, "%s: input %d ('%s'): f32 gradient vs finite differences: relative error %.3g "
              "(first element %.9g vs %.12g)", what, k, p64.p->bufs[p64.in_buf[k]]->name, r32, g32[0], fd[0]);
    if (r64 > worst) worst = r64;
    free(fd);
    free(g64);
    free(g32);
  }
  gc_free(&p64);
  gc_free(&p32);
  return worst;
}

#endif
