/* Gradients of Conv and ConvTranspose (passes/grad_conv.c) against central
 * finite differences (gradcheck.h: f64 < 1e-6, f32 < 1e-3 relative): 1-3
 * spatial dims, groups (1, 2, depthwise), strides that leave a remainder,
 * dilations, asymmetric pads, auto_pad, output_padding and output_shape,
 * with and without bias.  kiln.ConvGradWeight's values alone against a
 * naive float64 sum written here; and the gradient program of a
 * LeNet-sized Conv through the LLVM JIT and the C printer against the
 * interpreter in f64. */
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include "../../backends/c/kiln_c.h"
#include "../../backends/llvm/kiln_llvm.h"
#include "gradcheck.h"

typedef struct conv_case {
  int transpose, sp, bias;
  int64_t N, C, M, G;
  int64_t in[3], K[3], s[3], d[3], pads[6];
  const char *auto_pad;  /* NULL: NOTSET with pads */
  int64_t op[3];         /* ConvTranspose output_padding (all 0: absent) */
  int64_t os[3];         /* ConvTranspose output_shape (os[0] 0: absent) */
} conv_case;

static kiln_ints ints_of(kiln_graph *g, int n, const int64_t *v) {
  int64_t *p = kiln_arena_array(&g->arena, (size_t)n, sizeof *p);
  memcpy(p, v, (size_t)n * sizeof *p);
  return (kiln_ints){n, p};
}

static kiln_graph *conv_graph(kiln_dtype t, const void *ctx) {
  const conv_case *cc = ctx;
  kiln_graph *g = gc_graph();
  int sp = cc->sp, r = sp + 2;
  int64_t xd[5] = {cc->N, cc->C}, wd[5], bd[1] = {cc->M};
  if (cc->transpose) wd[0] = cc->C, wd[1] = cc->M / cc->G;
  else wd[0] = cc->M, wd[1] = cc->C / cc->G;
  for (int i = 0; i < sp; i++) xd[2 + i] = cc->in[i], wd[2 + i] = cc->K[i];
  kiln_value *x = gc_input(g, "X", t, r, xd), *w = gc_input(g, "W", t, r, wd);
  kiln_value *b = cc->bias ? gc_input(g, "B", t, 1, bd) : NULL;
  kiln_node *n = gc_node(g, cc->transpose ? KILN_OP_CONV_TRANSPOSE : KILN_OP_CONV, cc->bias ? 3 : 2,
                         (kiln_value *[]){x, w, b}, 1);
  kiln_attrs_conv *a = n->attrs;
  a->group = cc->G;
  a->strides = ints_of(g, sp, cc->s);
  a->dilations = ints_of(g, sp, cc->d);
  if (cc->auto_pad) a->auto_pad = cc->auto_pad;
  else a->pads = ints_of(g, 2 * sp, cc->pads);
  if (cc->op[0] || cc->op[1] || cc->op[2]) a->output_padding = ints_of(g, sp, cc->op);
  if (cc->os[0]) a->output_shape = ints_of(g, sp, cc->os);
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

static void check_cases(const conv_case *cases, int ncases, const char *what) {
  for (int i = 0; i < ncases; i++) {
    char name[96];
    snprintf(name, sizeof name, "%s case %d", what, i);
    gradcheck(name, conv_graph, NULL, &cases[i]);
  }
}

Test(grad_conv, conv_1d_2d_3d_groups_strides_dilations_asymmetric_pads) {
  const conv_case cases[] = {
      /* 1-D, stride 2 leaving a remainder (output_padding 1 in dX), bias */
      {0, 1, 1, 2, 2, 3, 1, {7}, {3}, {2}, {1}, {1, 0}},
      /* 2-D, group 2, strides (2, 1), dilations (1, 2), asymmetric pads */
      {0, 2, 1, 1, 4, 4, 2, {5, 6}, {3, 2}, {2, 1}, {1, 2}, {0, 1, 1, 0}},
      /* 2-D depthwise (group = C = M), stride 2, asymmetric pads, no bias */
      {0, 2, 0, 2, 3, 3, 3, {5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 0, 2, 1}},
      /* 2-D depthwise with channel multiplier 2 (M = 2C) */
      {0, 2, 1, 1, 2, 4, 2, {4, 5}, {2, 3}, {1, 2}, {1, 1}, {0, 1, 0, 1}},
      /* 2-D dilation 2 and stride 2 together; pads past what any window needs */
      {0, 2, 0, 1, 2, 3, 1, {7, 6}, {3, 2}, {2, 2}, {2, 2}, {2, 1, 0, 3}},
      /* 3-D, strides (1, 2, 2), dilation 2 on depth, asymmetric pads, bias */
      {0, 3, 1, 1, 2, 2, 1, {4, 4, 5}, {2, 2, 3}, {1, 2, 2}, {2, 1, 1}, {1, 0, 0, 0, 1, 1}},
      /* 3-D, group 2, stride 3 (remainder 2) */
      {0, 3, 0, 1, 2, 2, 2, {3, 5, 4}, {1, 2, 2}, {1, 3, 2}, {1, 1, 1}, {0, 0, 0, 0, 1, 1}},
  };
  check_cases(cases, (int)(sizeof cases / sizeof *cases), "Conv");
}

/* One window covering the whole input (LeNet's C5): the gradients are Gemms
 * (grad_conv.c); 2-D with bias, 1-D with a stride (irrelevant: one window),
 * 3-D; and the near misses that keep the windowed form (a pad, group 2). */
Test(grad_conv, conv_with_one_window_over_the_whole_input) {
  const conv_case cases[] = {
      {0, 2, 1, 3, 4, 5, 1, {5, 5}, {5, 5}, {1, 1}, {1, 1}, {0, 0, 0, 0}},
      {0, 1, 0, 2, 3, 4, 1, {6}, {6}, {3}, {1}, {0, 0}},
      {0, 3, 1, 2, 2, 3, 1, {2, 3, 2}, {2, 3, 2}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}},
      {0, 2, 1, 2, 3, 4, 1, {4, 4}, {5, 4}, {1, 1}, {1, 1}, {1, 0, 0, 0}},
      {0, 2, 1, 2, 4, 4, 2, {3, 3}, {3, 3}, {1, 1}, {1, 1}, {0, 0, 0, 0}},
  };
  check_cases(cases, (int)(sizeof cases / sizeof *cases), "Conv one window");
}

Test(grad_conv, conv_auto_pad_same_upper_same_lower_valid) {
  const conv_case cases[] = {
      {0, 2, 1, 1, 2, 3, 1, {5, 5}, {3, 3}, {2, 2}, {1, 1}, {0}, "SAME_UPPER"},
      {0, 2, 0, 2, 2, 2, 1, {6, 5}, {2, 3}, {2, 2}, {1, 1}, {0}, "SAME_LOWER"},
      {0, 1, 1, 1, 2, 2, 2, {8}, {4}, {3}, {1}, {0}, "SAME_LOWER"},
      {0, 2, 1, 1, 2, 2, 1, {6, 7}, {3, 3}, {2, 2}, {1, 1}, {0}, "VALID"},
  };
  check_cases(cases, (int)(sizeof cases / sizeof *cases), "Conv auto_pad");
}

Test(grad_conv, conv_transpose_1d_2d_3d_groups_output_padding) {
  const conv_case cases[] = {
      /* 1-D, stride 2, output_padding 1, bias */
      {1, 1, 1, 2, 2, 3, 1, {4}, {3}, {2}, {1}, {1, 0}, NULL, {1}},
      /* 2-D, group 2, strides (2, 3), dilations (1, 2), output_padding (1, 2) */
      {1, 2, 1, 1, 4, 4, 2, {3, 3}, {3, 2}, {2, 3}, {1, 2}, {0, 1, 1, 0}, NULL, {1, 2}},
      /* 2-D depthwise, stride 2, output_padding (1, 0), no bias */
      {1, 2, 0, 2, 3, 3, 3, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, {1, 0}},
      /* 2-D, dilation 2, stride 1, no pads */
      {1, 2, 0, 1, 2, 3, 1, {3, 4}, {2, 3}, {1, 1}, {2, 2}, {0, 0, 0, 0}},
      /* 3-D, group 2 (W [C, M/2, k]), strides (2, 1, 2), output_padding (1, 0, 1), bias */
      {1, 3, 1, 1, 2, 4, 2, {2, 3, 2}, {2, 2, 3}, {2, 1, 2}, {1, 1, 1}, {0, 1, 1, 1, 0, 0}, NULL, {1, 0, 1}},
  };
  check_cases(cases, (int)(sizeof cases / sizeof *cases), "ConvTranspose");
}

Test(grad_conv, conv_transpose_auto_pad_and_output_shape) {
  const conv_case cases[] = {
      {1, 2, 1, 1, 2, 2, 1, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, "SAME_UPPER"},
      {1, 2, 0, 1, 2, 2, 2, {3, 2}, {3, 2}, {2, 3}, {1, 1}, {0}, "SAME_LOWER"},
      {1, 1, 1, 2, 1, 2, 1, {4}, {3}, {2}, {1}, {0}, "VALID"},
      /* output_shape smaller than the full extent: pads computed */
      {1, 2, 1, 1, 2, 2, 1, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, NULL, {0}, {6, 5}},
      /* output_shape larger than the full extent (7): positions only the
       * bias reaches, which dX and dW must not read */
      {1, 2, 1, 1, 2, 2, 1, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, NULL, {0}, {9, 8}},
  };
  check_cases(cases, (int)(sizeof cases / sizeof *cases), "ConvTranspose auto_pad/output_shape");
}

/* ---- kiln.ConvGradWeight alone, against a naive float64 sum ---- */

typedef struct gw_case {
  int sp;
  int64_t N, C, M, G;
  int64_t in[3], K[3], s[3], d[3], pads[6];
} gw_case;

/* Conv's output extent along dim i (explicit pads). */
static int64_t out_extent(const gw_case *gc, int i) {
  int64_t dk = (gc->K[i] - 1) * gc->d[i] + 1;
  return (gc->in[i] + gc->pads[i] + gc->pads[gc->sp + i] - dk) / gc->s[i] + 1;
}

/* sgd: the output is W0 - 0.5 * dW (an SGD step, W0 a third input), which
 * the fusion pass makes the kernel's epilogue. */
static kiln_program *gw_program(const gw_case *gc, kiln_dtype t, int sgd, kiln_diag *d, kiln_graph **gout) {
  kiln_graph *g = gc_graph();
  int sp = gc->sp, r = sp + 2;
  int64_t xd[5] = {gc->N, gc->C}, yd[5] = {gc->N, gc->M};
  for (int i = 0; i < sp; i++) xd[2 + i] = gc->in[i], yd[2 + i] = out_extent(gc, i);
  kiln_value *x = gc_input(g, "X", t, r, xd), *dy = gc_input(g, "dY", t, r, yd);
  kiln_node *n = gc_node(g, KILN_OP_CONV_GRAD_WEIGHT, 2, (kiln_value *[]){x, dy}, 1);
  kiln_attrs_conv *a = n->attrs;
  a->group = gc->G;
  a->kernel_shape = ints_of(g, sp, gc->K);
  a->strides = ints_of(g, sp, gc->s);
  a->dilations = ints_of(g, sp, gc->d);
  a->pads = ints_of(g, 2 * sp, gc->pads);
  kiln_value *out = n->out[0];
  if (sgd) {
    int64_t wd[5] = {gc->M, gc->C / gc->G};
    for (int i = 0; i < sp; i++) wd[2 + i] = gc->K[i];
    void *hv = kiln_arena_alloc(&g->arena, 8);
    kiln_dtype_store_f(t, hv, 0, 0.5);
    kiln_value *w0 = gc_input(g, "W0", t, r, wd), *half = kiln_value_const(g, "half", t, 0, NULL, hv);
    kiln_node *mul = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){out, half}, 1);
    out = gc_node(g, KILN_OP_SUB, 2, (kiln_value *[]){w0, mul->out[0]}, 1)->out[0];
  }
  out->name = "dW";
  kiln_graph_add_output(g, out);
  *gout = g;
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g};
  if (kiln_pipeline_run(&po, &pl, d)) return NULL;
  return pl.program;
}

/* dW[m, c, k] = sum over n, o of dY[n, m, o] X[n, grp*Cg + c, o*s + k*d - pb],
 * in float64, with the sum of |terms| (for the f32 bound) in mag. */
static void gw_reference(const gw_case *gc, const double *x, const double *dy, double *dw, double *mag) {
  int sp = gc->sp;
  int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, K[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, pb[3] = {0};
  for (int i = 0; i < sp; i++)
    in[i] = gc->in[i], out[i] = out_extent(gc, i), K[i] = gc->K[i], s[i] = gc->s[i], d[i] = gc->d[i], pb[i] = gc->pads[i];
  int64_t Cg = gc->C / gc->G, Mg = gc->M / gc->G, isz = in[0] * in[1] * in[2], osz = out[0] * out[1] * out[2];
  int64_t ksz = K[0] * K[1] * K[2];
  for (int64_t m = 0; m < gc->M; m++)
    for (int64_t c = 0; c < Cg; c++)
      for (int64_t k = 0; k < ksz; k++) {
        int64_t k0 = k / (K[1] * K[2]), k1 = k / K[2] % K[1], k2 = k % K[2];
        double sum = 0, abs_sum = 0;
        for (int64_t n = 0; n < gc->N; n++)
          for (int64_t o0 = 0; o0 < out[0]; o0++)
            for (int64_t o1 = 0; o1 < out[1]; o1++)
              for (int64_t o2 = 0; o2 < out[2]; o2++) {
                int64_t p0 = o0 * s[0] + k0 * d[0] - pb[0], p1 = o1 * s[1] + k1 * d[1] - pb[1],
                        p2 = o2 * s[2] + k2 * d[2] - pb[2];
                if (p0 < 0 || p0 >= in[0] || p1 < 0 || p1 >= in[1] || p2 < 0 || p2 >= in[2]) continue;
                double t = dy[((n * gc->M + m) * osz) + (o0 * out[1] + o1) * out[2] + o2] *
                           x[((n * gc->C + (m / Mg) * Cg + c) * isz) + (p0 * in[1] + p1) * in[2] + p2];
                sum += t;
                abs_sum += fabs(t);
              }
        dw[(m * Cg + c) * ksz + k] = sum;
        mag[(m * Cg + c) * ksz + k] = abs_sum;
      }
}

/* Runs the lowered ConvGradWeight in dtype t on x, dy (and w0 when not
 * NULL: the SGD form); dw gets the result. */
static void gw_run(const gw_case *gc, kiln_dtype t, const double *x, const double *dy, const double *w0, double *dw,
                   int64_t nw) {
  kiln_diag d = {0};
  kiln_graph *g;
  kiln_program *p = gw_program(gc, t, w0 != NULL, &d, &g);
  cr_assert(p, "%s", d.msg);
  if (w0) /* fused: one kernel, the update computed in its store */
    cr_assert(p->nkernels == 1 && p->kernels[0]->nnodes == 3, "%d kernels, the first computing %d nodes", p->nkernels,
              p->kernels[0]->nnodes);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    else bufs[b] = calloc((size_t)buf->numel + 1, kiln_dtype_size(buf->dtype));
    const double *src = !strcmp(buf->name, "X") ? x : !strcmp(buf->name, "dY") ? dy : !strcmp(buf->name, "W0") ? w0 : NULL;
    if (src && buf->kind == KILN_BUF_INPUT)
      for (int64_t i = 0; i < buf->numel; i++) kiln_dtype_store_f(t, bufs[b], (size_t)i, src[i]);
  }
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  int ob = gc_buf_named(p, "dW");
  cr_assert(ob >= 0 && p->bufs[ob]->numel == nw);
  for (int64_t i = 0; i < nw; i++) dw[i] = kiln_dtype_load_f(t, bufs[ob], (size_t)i);
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_INPUT || p->bufs[b]->kind == KILN_BUF_OUTPUT) free(bufs[b]);
  free(bufs);
  free(ws);
  kiln_graph_free(g);
}

/* f64: within 1e-12 of the terms' magnitude (rounding of a few hundred
 * f64 additions is ~1e-14).  f32: each dW element is a float64 total of
 * float32 partial sums of at most 64 terms (lower_conv_grad.c: one output
 * row in the row form, BLOCK_STEPS in the tiled form) folded over at most
 * 16 lanes, so its error is at most ~(64 + 4 + 2) * 2^-24 ~ 4.2e-6 of the
 * terms' magnitude (the inputs are exact in f32); 1e-5 leaves a margin. */
Test(grad_conv, conv_grad_weight_values_match_a_naive_float64_sum) {
  const gw_case cases[] = {
      {1, 2, 3, 4, 1, {11}, {3}, {2}, {1}, {1, 2}},
      {2, 2, 4, 6, 2, {7, 9}, {3, 3}, {2, 1}, {1, 2}, {1, 0, 2, 1}},
      {2, 3, 3, 3, 3, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}}, /* depthwise */
      {2, 1, 2, 2, 1, {5, 5}, {2, 2}, {3, 3}, {1, 1}, {0, 0, 4, 4}}, /* taps reaching only padding */
      {3, 1, 2, 4, 2, {4, 5, 6}, {2, 3, 3}, {1, 2, 2}, {2, 1, 1}, {0, 1, 1, 1, 0, 1}},
      {1, 2, 2, 2, 1, {40}, {17}, {2}, {2}, {3, 5}}, /* strided, 17 taps: the masked (looped) form */
      {2, 2, 1, 2, 1, {8, 20}, {2, 18}, {2, 1}, {1, 1}, {1, 2, 0, 3}},
      /* stride 1 (the packed form): 1-D, 17 taps with dilation 2 */
      {1, 2, 2, 2, 1, {40}, {17}, {1}, {2}, {3, 5}},
      /* stride 1, 2-D, group 2, dilation (2, 1), asymmetric pads, one pad past the reach of any tap */
      {2, 2, 4, 6, 2, {7, 9}, {3, 3}, {1, 1}, {2, 1}, {1, 0, 3, 2}},
      /* stride 1, a tile of 2 output channels x 4 taps */
      {2, 2, 2, 4, 1, {6, 7}, {2, 2}, {1, 1}, {1, 1}, {1, 0, 0, 1}},
      /* stride 1, 3-D, a row of several f32 blocks (V > 1024) */
      {3, 1, 2, 2, 1, {6, 14, 15}, {2, 3, 2}, {1, 1, 1}, {1, 1, 2}, {1, 1, 0, 0, 1, 2}},
  };
  for (int ci = 0; ci < (int)(sizeof cases / sizeof *cases); ci++) {
    const gw_case *gc = &cases[ci];
    int64_t nx = gc->N * gc->C, ny = gc->N * gc->M, nw = gc->M * (gc->C / gc->G);
    for (int i = 0; i < gc->sp; i++) nx *= gc->in[i], ny *= out_extent(gc, i), nw *= gc->K[i];
    double *x = malloc((size_t)nx * sizeof *x), *dy = malloc((size_t)ny * sizeof *dy);
    double *ref = malloc((size_t)nw * sizeof *ref), *mag = malloc((size_t)nw * sizeof *mag);
    double *got = malloc((size_t)nw * sizeof *got);
    uint64_t s = 99 + (uint64_t)ci;
    /* values exact in f32, so both runs see the same inputs */
    for (int64_t i = 0; i < nx; i++) x[i] = (float)gc_uniform(&s, -1, 1);
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)gc_uniform(&s, -1, 1);
    gw_reference(gc, x, dy, ref, mag);
    const kiln_dtype types[2] = {KILN_DT_F64, KILN_DT_F32};
    const double tol[2] = {1e-12, 1e-5};
    for (int ti = 0; ti < 2; ti++) {
      gw_run(gc, types[ti], x, dy, NULL, got, nw);
      for (int64_t i = 0; i < nw; i++)
        cr_assert(fabs(got[i] - ref[i]) <= tol[ti] * mag[i] + 1e-300, "case %d %s dW[%lld] = %.9g, reference %.9g",
                  ci, kiln_dtype_name(types[ti]), (long long)i, got[i], ref[i]);
    }
    free(x), free(dy), free(ref), free(mag), free(got);
  }
}

Test(grad_conv, conv_grad_weight_fuses_an_sgd_step_into_its_store) {
  const gw_case cases[] = {
      {2, 2, 4, 6, 2, {7, 9}, {3, 3}, {1, 1}, {2, 1}, {1, 0, 3, 2}}, /* stride 1: the tiled form */
      {2, 2, 4, 6, 2, {7, 9}, {3, 2}, {2, 1}, {1, 2}, {1, 0, 2, 1}}, /* strided: the row form */
  };
  for (int ci = 0; ci < 2; ci++) {
    const gw_case *gc = &cases[ci];
    int64_t nx = gc->N * gc->C, ny = gc->N * gc->M, nw = gc->M * (gc->C / gc->G);
    for (int i = 0; i < gc->sp; i++) nx *= gc->in[i], ny *= out_extent(gc, i), nw *= gc->K[i];
    double *x = malloc((size_t)nx * sizeof *x), *dy = malloc((size_t)ny * sizeof *dy), *w0 = malloc((size_t)nw * sizeof *w0);
    double *ref = malloc((size_t)nw * sizeof *ref), *mag = malloc((size_t)nw * sizeof *mag);
    double *got = malloc((size_t)nw * sizeof *got);
    uint64_t s = 7 + (uint64_t)ci;
    for (int64_t i = 0; i < nx; i++) x[i] = (float)gc_uniform(&s, -1, 1);
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)gc_uniform(&s, -1, 1);
    for (int64_t i = 0; i < nw; i++) w0[i] = (float)gc_uniform(&s, -1, 1);
    gw_reference(gc, x, dy, ref, mag);
    /* f64: W0 - 0.5 dW rounds twice more than dW (~1e-16 of |W0| + mag) */
    gw_run(gc, KILN_DT_F64, x, dy, w0, got, nw);
    for (int64_t i = 0; i < nw; i++)
      cr_assert(fabs(got[i] - (w0[i] - 0.5 * ref[i])) <= 1e-12 * (mag[i] + fabs(w0[i])), "case %d W[%lld] = %.12g, want %.12g",
                ci, (long long)i, got[i], w0[i] - 0.5 * ref[i]);
    free(x), free(dy), free(w0), free(ref), free(mag), free(got);
  }
}

Test(grad_conv, conv_grad_weight_rejects_a_dy_of_the_wrong_shape) {
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "X", KILN_DT_F32, 4, (int64_t[]){1, 2, 5, 5});
  kiln_value *dy = gc_input(g, "dY", KILN_DT_F32, 4, (int64_t[]){1, 3, 4, 3});
  kiln_node *n = kiln_node_new(g, KILN_OP_CONV_GRAD_WEIGHT, "gw", 2, 1);
  kiln_node_set_input(n, 0, x);
  kiln_node_set_input(n, 1, dy);
  kiln_node_set_output(n, 0, kiln_value_new(g, "dW", KILN_VALUE_ACTIVATION));
  ((kiln_attrs_conv *)n->attrs)->kernel_shape = ints_of(g, 2, (int64_t[]){3, 3});
  kiln_graph_add_output(g, n->out[0]);
  kiln_diag d = {0};
  cr_assert_neq(kiln_pass_infer_shapes(g, &d), 0);
  cr_assert(strstr(d.msg, "node 'gw' (kiln.ConvGradWeight)") && strstr(d.msg, "dY [1,3,4,3]") && !strchr(d.msg, '\n'),
            "got: %s", d.msg);
  kiln_graph_free(g);
}

/* ---- the gradient program through the LLVM JIT ---- */

/* LeNet-5's second convolution at batch 8: 6 -> 16 channels, 5x5, 14x14. */
static const conv_case lenet = {0, 2, 1, 8, 6, 16, 1, {14, 14}, {5, 5}, {1, 1}, {1, 1}, {0, 0, 0, 0}};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The relative l2 error of gradient k (f32, got) against the f64 reference. */
static double grad_rel(const gc_prog *p64, int k, const float *got) {
  double e = 0, nr = 0;
  for (int64_t i = 0; i < p64->numel[k]; i++) {
    double r = ((double *)p64->bufs[p64->grad_buf[k]])[i];
    e += (got[i] - r) * (got[i] - r);
    nr += r * r;
  }
  cr_assert(nr > 0, "gradient %d is zero", k);
  return sqrt(e / nr);
}

/* Runs p through the C printer: emitted, compiled with cc (-Werror, UBSan
 * aborting on undefined behaviour), loaded and run; bufs as for the JIT
 * (inputs and outputs bound, by io_index). */
static void run_c(const kiln_program *p, void **bufs) {
  kiln_diag d = {0};
  kiln_c_options o = {.prefix = "net", .model = "test"};
  kiln_c_output co;
  cr_assert_eq(kiln_c_emit(p, &o, &co, &d), 0, "%s", d.msg);
  char dir[64], path[128], cmd[512];
  snprintf(dir, sizeof dir, "/tmp/kiln-gradconv-%ld", (long)getpid());
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  cr_assert_eq(system(cmd), 0);
  const char *names[3] = {"net.h", "net.c", "net_weights.c"}, *texts[3] = {co.header, co.source, co.weights};
  for (int f = 0; f < 3; f++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[f]);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(texts[f] ? texts[f] : "", fp);
    fclose(fp);
  }
  kiln_c_output_free(&co);
  snprintf(cmd, sizeof cmd,
           "cc -std=c99 -O1 -Wall -Wextra -Wpedantic -Werror -fPIC -shared -fsanitize=undefined "
           "-fno-sanitize-recover=all -o %s/net.so %s/net.c %s/net_weights.c -lm",
           dir, dir, dir);
  cr_assert_eq(system(cmd), 0, "generated C does not compile");
  snprintf(path, sizeof path, "%s/net.so", dir);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  cr_assert_not_null(dl, "%s", dlerror());
  int (*fn)(const void *, const void *const *, void *const *, void *) =
      (int (*)(const void *, const void *const *, void *const *, void *))(uintptr_t)dlsym(dl, "net_run_v");
  cr_assert_not_null(fn);
  const void *in[8] = {0};
  void *out[8] = {0};
  cr_assert(p->ninputs <= 8 && p->noutputs <= 8);
  for (int b = 0; b < p->nbufs; b++) {
    if (p->bufs[b]->kind == KILN_BUF_INPUT) in[p->bufs[b]->io_index] = bufs[b];
    if (p->bufs[b]->kind == KILN_BUF_OUTPUT) out[p->bufs[b]->io_index] = bufs[b];
  }
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  fn(NULL, in, out, ws);
  free(ws);
  dlclose(dl);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(grad_conv, lenet_sized_gradients_agree_through_the_llvm_jit_and_c) {
  kiln_diag d = {0};
  gc_prog p64, p32;
  cr_assert_eq(gc_compile(conv_graph, &lenet, KILN_DT_F64, &p64, &d), 0, "%s", d.msg);
  kiln_target host = kiln_llvm_target(0); /* this CPU, as `kiln run` compiles for */
  cr_assert_eq(gc_compile_for(conv_graph, &lenet, KILN_DT_F32, &host, &p32, &d), 0, "%s", d.msg);
  uint64_t s = 4242;
  for (int k = 0; k < p64.nin; k++)
    for (int64_t i = 0; i < p64.numel[k]; i++) {
      float v = (float)gc_uniform(&s, -1, 1);
      ((double *)p64.bufs[p64.in_buf[k]])[i] = v;
      ((float *)p32.bufs[p32.in_buf[k]])[i] = v;
    }
  gc_run(&p64); /* the float64 reference: the interpreter (default target) */
  const kiln_program *p = p32.p;
  kiln_llvm_jit *j = kiln_llvm_jit_compile_with(p, 1, NULL, &d);
  cr_assert(j, "%s", d.msg);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  kiln_llvm_jit_bind(p, bufs, p32.ws);
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == KILN_BUF_INPUT || p->bufs[b]->kind == KILN_BUF_OUTPUT) bufs[b] = p32.bufs[b];
  kiln_llvm_jit_run(j, bufs);
  /* f32 vs f64: every gradient element is a sum of at most 800 products of
   * values in [-1, 1]; rounding in f32 through conv, transpose conv and the
   * loss is ~1e-6 relative: 1e-5 (the gradcheck's f32 bound is 1e-3) */
  for (int k = 0; k < p64.nin; k++) {
    double rel = grad_rel(&p64, k, bufs[p32.grad_buf[k]]);
    cr_log_info("LeNet conv: gradient of input %d, JIT f32 vs interpreter f64: relative error %.3g\n", k, rel);
    cr_assert(rel < 1e-5, "gradient of input %d: JIT f32 vs f64 relative error %.3g", k, rel);
  }
  /* the same program through the C printer (outputs overwritten first) */
  for (int k = 0; k < p64.nin; k++) memset(bufs[p32.grad_buf[k]], 0xff, (size_t)p64.numel[k] * sizeof(float));
  run_c(p, bufs);
  for (int k = 0; k < p64.nin; k++) {
    double rel = grad_rel(&p64, k, bufs[p32.grad_buf[k]]);
    cr_log_info("LeNet conv: gradient of input %d, C f32 vs interpreter f64: relative error %.3g\n", k, rel);
    cr_assert(rel < 1e-5, "gradient of input %d: C f32 vs f64 relative error %.3g", k, rel);
  }
  /* the weight gradient's speed, once (rough: one thread, a shared machine) */
  int kg = -1;
  for (int k = 0; k < p->nkernels; k++)
    if (p->kernels[k]->node && p->kernels[k]->node->op == KILN_OP_CONV_GRAD_WEIGHT) kg = k;
  cr_assert(kg >= 0, "no kiln.ConvGradWeight kernel");
  double kbest[64], t0 = now();
  cr_assert(p->nkernels <= 64);
  for (int k = 0; k < p->nkernels; k++) kbest[k] = 1e30;
  for (int r = 0; r < 50 && now() - t0 < 2.0; r++) {
    kiln_llvm_jit_run(j, bufs);
    int ns;
    const double *st = kiln_llvm_jit_profile(j, &ns);
    cr_assert(st && ns == p->nkernels + 1);
    for (int k = 0; k < p->nkernels; k++)
      if (st[k + 1] - st[k] < kbest[k]) kbest[k] = st[k + 1] - st[k];
  }
  for (int k = 0; k < p->nkernels; k++) /* the other kernels, for scale */
    cr_log_info("kernel %s (%s): %.1f us\n", p->kernels[k]->name,
                p->kernels[k]->node ? kiln_op_get(p->kernels[k]->node->op)->name : "copy", kbest[k] * 1e6);
  double best = kbest[kg];
  int64_t macs = kiln_macs_conv_grad_weight(p->kernels[kg]->node);
  cr_log_info("kiln.ConvGradWeight [16,6,5,5] from X [8,6,14,14]: %lld MACs in %.1f us: %.2f GMAC/s (1 thread)\n",
              (long long)macs, best * 1e6, (double)macs / best * 1e-9);
  fprintf(stderr, "kiln.ConvGradWeight LeNet-sized: %lld MACs, best %.1f us, %.2f GMAC/s (1 thread)\n", (long long)macs,
          best * 1e6, (double)macs / best * 1e-9);
  kiln_llvm_jit_free(j);
  free(bufs);
  gc_free(&p64);
  gc_free(&p32);
}
