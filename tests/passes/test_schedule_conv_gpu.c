/* The GPU schedule of Conv (passes/schedule_conv_gpu.c), checked by
 * emulation: for each shape the scheduled kernel is verified, run by the
 * interpreter's GPU emulation (ir/loop_eval.c: blocks in turn, threads
 * segment by segment between barriers, races reported), and its output
 * compared with a float64 reference computed here from the ONNX Conv
 * formula; the CPU lowering of the same node is checked the same way.
 *
 * Tolerance: float32 products and sums in any order.  A sum of K float32
 * products, each rounded, then added to the bias in any association, is
 * within gamma(K + 2) * (|bias| + sum |x*w|) of the exact value, gamma(n) =
 * n*u / (1 - n*u), u = 2^-24 (Higham, Accuracy and Stability of Numerical
 * Algorithms, 2nd ed., eq. 3.5 and sec. 4.2: the bound holds for every
 * summation order).  That bound is what each output must meet; a wrong
 * index or a missing tap is off by a whole term, far outside it. */
#include <math.h>
#include <stdlib.h>

#include "ir/loop.h"
#include "passes/conv_def.h"
#include "../ir/ir_test.h"
#include "gpu_sched_test.h"

TestSuite(conv_gpu, .init = graph_setup, .fini = graph_teardown);

typedef struct cshape {
  int sp;
  int64_t N, C, M, G;
  int64_t in[3], K[3], s[3], d[3], pads[6];
  int bias;
  int epi; /* fused epilogue: 0 none; EPI_SCALE: * s[m] (per channel, broadcast); EPI_RES: + R (another input); then Relu */
} cshape;

enum { EPI_SCALE = 1, EPI_RES = 2 };


typedef struct built {
  kiln_node *n;
  kiln_program *p;
  void **mem;
  float *x, *res;
  const float *w, *b, *s;
  const kiln_buf *yb;
} built;

static built build(const cshape *c) {
  built r = {0};
  int64_t xd[5] = {c->N, c->C}, wd[5] = {c->M, c->C / c->G};
  int64_t xn = c->N * c->C, wn = c->M * (c->C / c->G);
  for (int i = 0; i < c->sp; i++) {
    xd[2 + i] = c->in[i];
    wd[2 + i] = c->K[i];
    xn *= c->in[i];
    wn *= c->K[i];
  }
  float *w = malloc((size_t)wn * sizeof *w), *b = malloc((size_t)c->M * sizeof *b);
  for (int64_t i = 0; i < wn; i++) w[i] = gst_frand();
  for (int64_t i = 0; i < c->M; i++) b[i] = gst_frand();
  kiln_value *x = t_input("x", KILN_DT_F32, c->sp + 2, xd);
  kiln_value *wv = t_const("w", KILN_DT_F32, c->sp + 2, wd, w);
  kiln_value *bv = t_const("b", KILN_DT_F32, 1, (int64_t[]){c->M}, b);
  r.n = c->bias ? NODE(KILN_OP_CONV, "c", x, wv, bv) : NODE(KILN_OP_CONV, "c", x, wv);
  kiln_attrs_conv *a = r.n->attrs;
  a->group = c->G;
  a->strides = t_ints_attr(c->sp, c->s);
  a->dilations = t_ints_attr(c->sp, c->d);
  a->pads = t_ints_attr(2 * c->sp, c->pads);
  float *sc = malloc((size_t)c->M * sizeof *sc);
  for (int64_t i = 0; i < c->M; i++) sc[i] = gst_frand();
  kiln_value *sv = NULL, *rv = NULL, *yv = r.n->out[0];
  if (c->epi) { /* outputs before infer: the residual input needs Y's shape */
    kiln_diag d0 = {0};
    cr_assert_eq(kiln_pass_infer_shapes(g, &d0), 0, "%s", d0.msg);
    int64_t sd[4] = {c->M, 1, 1, 1};
    sv = t_const("s", KILN_DT_F32, c->sp + 1, sd, sc);
    rv = t_input("r", KILN_DT_F32, yv->rank, yv->dims);
    g->noutputs = 0;
    yv->is_output = 0;
    if (c->epi & EPI_SCALE) yv = NODE(KILN_OP_MUL, "scale", yv, sv)->out[0];
    if (c->epi & EPI_RES) yv = NODE(KILN_OP_ADD, "residual", yv, rv)->out[0];
    g->noutputs = 0;
    for (int i = 0; i < g->nvalues; i++) g->values[i]->is_output = 0;
    yv = NODE(KILN_OP_RELU, "relu", yv)->out[0];
  }
  infer_ok();
  r.w = wv->data;
  r.b = bv->data;
  r.s = sv ? sv->data : NULL;
  free(w);
  free(b);
  free(sc);
  kiln_diag d = {0};
  if (c->epi) {
    cr_assert_eq(kiln_pass_fuse_epilogue(g, &d), 0, "%s", d.msg);
    cr_assert_eq(r.n->epi.nsteps, 1 + !!(c->epi & EPI_SCALE) + !!(c->epi & EPI_RES), "epilogue not fused");
  }
  r.p = kiln_lower(g, &d);
  cr_assert(r.p, "%s", d.msg);
  r.mem = gst_mem(r.p, gst_frand);
  for (int i = 0; i < r.p->nbufs; i++) {
    const kiln_buf *bf = r.p->bufs[i];
    if (bf->kind == KILN_BUF_INPUT) *(bf->name == x->name ? &r.x : &r.res) = r.mem[i];
    if (bf->name == yv->name) r.yb = bf;
  }
  cr_assert(r.x && r.yb && (!(c->epi & EPI_RES) || r.res));
  (void)xn;
  return r;
}

static void unbuild(built *r) { gst_free(r->p, r->mem); }

static const float *ybuf(const built *r) { return r->mem[r->yb->id]; }

/* Every output against the float64 ONNX formula, within the bound above
 * (tf32: the TF32 bound derived below, and beyond FP32's somewhere). */
static void check_mode(const cshape *c, const built *r, const float *y, const char *what, int tf32) {
  const kiln_value *yv = r->n->out[0];
  int64_t out[3] = {1, 1, 1}, in[3] = {1, 1, 1}, K[3] = {1, 1, 1}, osz = 1, isz = 1, ksz = 1;
  for (int i = 0; i < c->sp; i++) {
    out[i] = yv->dims[2 + i];
    in[i] = c->in[i];
    K[i] = c->K[i];
    osz *= out[i];
    isz *= in[i];
    ksz *= K[i];
  }
  int64_t Cg = c->C / c->G, Mg = c->M / c->G, terms = Cg * ksz;
  const double u = 0x1p-24, gam = (terms + 2) * u / (1 - (terms + 2) * u);
  const double ut = 0x1p-11, u2 = 0x1p-23, gam2 = (terms + 2) * u2 / (1 - (terms + 2) * u2);
  const double rel = tf32 ? 2 * ut + ut * ut + gam2 * (1 + ut) * (1 + ut) : gam;
  double worst = 0;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t m = 0; m < c->M; m++)
      for (int64_t o = 0; o < osz; o++) {
        double sum = c->bias ? r->b[m] : 0, mag = fabs(sum);
        int64_t oi[3] = {o / (out[1] * out[2]), o / out[2] % out[1], o % out[2]};
        for (int64_t ci = 0; ci < Cg; ci++)
          for (int64_t k = 0; k < ksz; k++) {
            int64_t ki[3] = {k / (K[1] * K[2]), k / K[2] % K[1], k % K[2]}, xo = 0, ok = 1;
            for (int i = 0; i < 3; i++) {
              int64_t pos = i < c->sp ? oi[i] * c->s[i] + ki[i] * c->d[i] - c->pads[i] : 0;
              int64_t ext = i < c->sp ? in[i] : 1;
              ok &= pos >= 0 && pos < ext;
              xo = xo * ext + pos;
            }
            if (!ok) continue;
            double t = (double)r->x[(n * c->C + m / Mg * Cg + ci) * isz + xo] * r->w[(m * Cg + ci) * ksz + k];
            sum += t;
            mag += fabs(t);
          }
        double tol = rel * mag;
        if (c->epi & EPI_SCALE) { /* one more rounding each: within gamma(terms + 4) of the magnitudes */
          sum *= r->s[m];
          mag *= fabs(r->s[m]);
        }
        if (c->epi & EPI_RES) {
          double rv = r->res[(n * c->M + m) * osz + o];
          sum += rv;
          mag += fabs(rv);
        }
        if (c->epi) {
          /* FP32: gamma(terms + 4); TF32: its bound plus the two more roundings */
          tol = (tf32 ? rel + 2 * u : (terms + 4) * u / (1 - (terms + 4) * u)) * mag;
          sum = sum > 0 ? sum : 0; /* Relu: exact, and never widens an error */
        }
        double got = y[(n * c->M + m) * osz + o], err = fabs(got - sum);
        cr_assert(err <= tol, "%s: Y[%lld, %lld, %lld] = %.9g, float64 reference %.9g (error %.3g > bound %.3g)", what,
                  (long long)n, (long long)m, (long long)o, got, sum, err, tol);
        if (mag > 0 && err / mag > worst) worst = err / mag;
      }
  cr_log_info("%s: worst error %.3g of sum |terms| (bound %.3g; FP32's %.3g)", what, worst, rel, gam);
  if (tf32) cr_assert(worst > gam, "%s: every output within FP32's bound (%.3g): operands not rounded?", what, gam);
}

static void check(const cshape *c, const built *r, const float *y, const char *what) { check_mode(c, r, y, what, 0); }

/* The CPU lowering and the GPU schedule of shape c with tile t. */
static void run_shape(const cshape *c, kiln_conv_gpu_tile t) {
  built r = build(c);
  int ncpu = r.p->nkernels;
  for (int k = 0; k < ncpu; k++) cr_assert_eq(kiln_loop_eval(r.p, r.p->kernels[k], r.mem), 0);
  check(c, &r, ybuf(&r), "CPU lowering");

  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &t, &d), 0, "%s", d.msg);
  cr_assert_eq(r.p->nkernels, ncpu + 1);
  const kiln_kernel *k = r.p->kernels[ncpu];
  gst_run_gpu(r.p, k, r.mem, r.yb);
  const float *y = ybuf(&r);
  check(c, &r, y, "GPU schedule");
  unbuild(&r);
}

static const kiln_conv_gpu_tile small = {.bm = 8, .bn = 16, .bk = 4, .rm = 2, .rn = 2};

Test(conv_gpu, conv3x3_pad1) {
  cshape c = {2, 1, 5, 12, 1, {9, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1};
  run_shape(&c, small);
}

Test(conv_gpu, stride2_asymmetric_pads) {
  cshape c = {2, 1, 3, 6, 1, {11, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 0, 2, 1}, 1};
  run_shape(&c, small);
}

/* exact tiles: 8 channels, 1*4*4 = 16 columns, K = 8: no guards at all */
Test(conv_gpu, conv1x1_exact_tiles) {
  cshape c = {2, 1, 8, 8, 1, {4, 4}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 1};
  run_shape(&c, small);
}

Test(conv_gpu, depthwise_groups) {
  cshape c = {2, 1, 6, 6, 6, {7, 8}, {3, 3}, {1, 2}, {1, 1}, {1, 1, 1, 1}, 1};
  run_shape(&c, small);
}

Test(conv_gpu, grouped_channel_multiplier) {
  cshape c = {2, 1, 6, 10, 2, {6, 6}, {3, 2}, {1, 1}, {1, 1}, {1, 0, 1, 1}, 0};
  run_shape(&c, small);
}

Test(conv_gpu, dilation2) {
  cshape c = {2, 1, 4, 5, 1, {9, 9}, {3, 3}, {1, 1}, {2, 2}, {2, 2, 2, 2}, 1};
  run_shape(&c, small);
}

Test(conv_gpu, batch2_odd_sizes) {
  cshape c = {2, 2, 3, 13, 1, {7, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1};
  run_shape(&c, (kiln_conv_gpu_tile){.bm = 4, .bn = 8, .bk = 5, .rm = 1, .rn = 2});
}

Test(conv_gpu, conv1d) {
  cshape c = {1, 2, 3, 7, 1, {17}, {5}, {2}, {1}, {2, 1}, 1};
  run_shape(&c, small);
}

Test(conv_gpu, conv3d) {
  cshape c = {3, 1, 2, 5, 1, {4, 5, 3}, {3, 2, 3}, {1, 2, 1}, {1, 1, 1}, {1, 0, 1, 1, 1, 1}, 1};
  run_shape(&c, small);
}

/* Fused epilogues at the tile's store: Relu, a residual Add reading
 * another input at the output index, a per-channel scale broadcast over
 * positions (folded BatchNorm's form); sizes off the tile multiples. */
Test(conv_gpu, epilogue_residual_relu) {
  cshape c = {2, 2, 3, 13, 1, {7, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, EPI_RES};
  run_shape(&c, small);
}

Test(conv_gpu, epilogue_scale_residual_relu) {
  cshape c = {2, 1, 5, 12, 1, {9, 7}, {3, 3}, {2, 1}, {1, 1}, {1, 1, 1, 1}, 1, EPI_SCALE | EPI_RES};
  run_shape(&c, (kiln_conv_gpu_tile){.bm = 8, .bn = 8, .bk = 5, .rm = 4, .rn = 2});
}

Test(conv_gpu, epilogue_scale_relu_grouped) {
  cshape c = {2, 1, 6, 10, 2, {6, 6}, {3, 2}, {1, 1}, {1, 1}, {1, 0, 1, 1}, 0, 0};
  c.epi = EPI_SCALE;
  run_shape(&c, small);
}

/* The whole pass on a GPU target: the Conv with its epilogue is one
 * tiled launch (shared tiles: 64 channel rows shrunk to 16 for 13
 * channels, 64 columns) covering all three nodes. */
Test(conv_gpu, pass_tiles_a_conv_with_epilogue) {
  cshape c = {2, 1, 5, 13, 1, {9, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, EPI_RES};
  built r = build(&c);
  r.p->target = kiln_target_gpu_default();
  kiln_schedule_gpu(r.p);
  const kiln_kernel *k = NULL;
  for (int i = 0; i < r.p->nkernels; i++)
    if (r.p->kernels[i]->node == r.n) k = r.p->kernels[i];
  cr_assert(k && k->launch);
  cr_assert_eq(k->nnodes, 3);
  cr_assert_eq(k->launch->grid[0], 1);  /* 9 x 7 = 63 columns: one 64-column tile */
  cr_assert_eq(k->launch->grid[1], 1);  /* 13 channels: one 16-row tile */
  cr_assert_eq(k->launch->block[0], 16); /* 64 / 4 */
  cr_assert_eq(k->launch->block[1], 4);  /* 16 / 4 */
  cr_assert_eq(k->nallocs >= 2, 1);
  kiln_diag d = {0};
  cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg);
  unbuild(&r);
}

Test(conv_gpu, rejects_a_tile_the_block_cannot_hold) {
  cshape c = {2, 1, 4, 4, 1, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1};
  built r = build(&c);
  kiln_diag d = {0};
  kiln_conv_gpu_tile t = {.bm = 64, .bn = 64, .bk = 8, .rm = 1, .rn = 1}; /* 4096 threads */
  cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &t, &d), -1);
  cr_assert(strstr(d.msg, "node 'c'") || strstr(d.msg, "'c'"), "%s", d.msg);
  cr_assert(strstr(d.msg, "4096 threads"), "%s", d.msg);
  t = (kiln_conv_gpu_tile){.bm = 6, .bn = 8, .bk = 4, .rm = 4, .rn = 2}; /* 4 does not divide 6 */
  cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &t, &d), -1);
  unbuild(&r);
}

/* The kernel's statement holding the K loop: the body of the innermost
 * thread-bound loop, after the acc ALLOC, the acc init loop and tid. */
static kiln_ls *k_loop(const kiln_kernel *k) {
  kiln_ls *s = k->body;
  while (s && s->kind == KILN_LS_FOR && s->sched.gpu >= 1 && s->sched.gpu <= 3) s = s->body;
  while (s && s->kind == KILN_LS_ALLOC) s = s->next; /* shared tiles */
  cr_assert(s && s->sched.gpu == 4 && s->body->sched.gpu == 5);
  s = s->body->body;
  while (s && !(s->kind == KILN_LS_FOR && s->sched.gpu == 0 && s->body && s->body->kind != KILN_LS_STORE)) s = s->next;
  cr_assert(s, "no K loop");
  return s;
}

/* Without either barrier another thread order could read a tile half
 * written, or overwrite one still read: the emulation reports a race. */
Test(conv_gpu, emulation_reports_a_missing_barrier) {
  cshape c = {2, 1, 3, 8, 1, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1};
  for (int which = 0; which < 2; which++) {
    built r = build(&c);
    kiln_diag d = {0};
    cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &small, &d), 0, "%s", d.msg);
    const kiln_kernel *k = r.p->kernels[r.p->nkernels - 1];
    kiln_ls *kl = k_loop(k), **link = &kl->body;
    int seen = 0;
    for (; *link; link = &(*link)->next)
      if ((*link)->kind == KILN_LS_BARRIER && seen++ == which) break;
    cr_assert(*link, "barrier %d not found", which);
    *link = (*link)->next; /* drop it */
    cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg); /* legal IR, wrong program */
    cr_assert_eq(kiln_loop_eval(r.p, k, r.mem), -1, "barrier %d dropped, yet no race reported", which);
    unbuild(&r);
  }
}

/* ---- TF32 tensor cores (target.tf32: mma.sync m16n8k8, ir/loop.h "TF32") ----
 * Tolerance, derived: each operand is rounded to TF32 (10 mantissa bits,
 * round to nearest: relative error <= u_t = 2^-11), so a product x~ w~ =
 * x w (1 + d1)(1 + d2) is off by at most (2 u_t + u_t^2) |x w|; it is exact
 * in f32 (11 x 11 significant bits).  The K products and the bias are then
 * summed in f32 in some order: gamma(K + 2) (Higham, as above) on the
 * rounded terms' magnitudes, (1 + u_t)^2 |x w|; u = 2^-23 here, not 2^-24,
 * so the bound also holds for a tensor core that truncates its partial sums
 * instead of rounding them.  Per output:
 *   |y - y_exact| <= ((2 u_t + u_t^2) + gamma(K + 2) (1 + u_t)^2) (|b| + sum |x w|)
 * A wrong fragment index moves a whole term, far outside it; and the
 * result must also be off by more than FP32's own bound somewhere (the
 * operands really were rounded). */
static int count_mma(const kiln_ls *s) {
  int n = 0;
  for (; s; s = s->next) n += (s->kind == KILN_LS_MMA) + count_mma(s->body) + count_mma(s->orelse);
  return n;
}

static void run_tf32(const cshape *c, kiln_conv_gpu_tile t) {
  built r = build(c);
  int ncpu = r.p->nkernels;
  r.p->target.tf32 = 1;
  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &t, &d), 0, "%s", d.msg);
  const kiln_kernel *k = r.p->kernels[ncpu];
  cr_assert_eq(count_mma(k->body), 1, "the tile should take the tensor-core path");
  cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg);
  float *y = (float *)ybuf(&r);
  int64_t yn = kiln_value_numel(r.n->out[0], 1);
  for (int64_t i = 0; i < yn; i++) y[i] = NAN;
  cr_assert_eq(kiln_loop_eval(r.p, k, r.mem), 0, "GPU emulation failed (out of bounds, race or divergent barrier)");
  check_mode(c, &r, y, "TF32 schedule", 1);
  unbuild(&r);
}

/* 8 warps as 2 x 4 warp tiles of one MMA each; partial channel, column and k tiles */
Test(conv_gpu, tf32_conv3x3_partial_tiles) {
  cshape c = {2, 1, 5, 20, 1, {9, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1};
  run_tf32(&c, (kiln_conv_gpu_tile){.bm = 32, .bn = 32, .bk = 8, .rm = 2, .rn = 2});
}

/* one warp holding 1 x 2 MMA tiles, two 8-deep slices per k-step, batch 2, groups */
Test(conv_gpu, tf32_one_warp_grouped) {
  cshape c = {2, 2, 8, 32, 2, {6, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 0};
  run_tf32(&c, (kiln_conv_gpu_tile){.bm = 16, .bn = 16, .bk = 16, .rm = 2, .rn = 4});
}

/* A tile the MMA shape does not divide keeps the FP32 path, with FP32's bound. */
Test(conv_gpu, tf32_odd_tile_keeps_fp32) {
  cshape c = {2, 1, 3, 6, 1, {11, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 0, 2, 1}, 1};
  built r = build(&c);
  r.p->target.tf32 = 1;
  int ncpu = r.p->nkernels;
  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_conv_gpu(r.p, r.n, &small, &d), 0, "%s", d.msg);
  cr_assert_eq(count_mma(r.p->kernels[ncpu]->body), 0);
  cr_assert_eq(kiln_loop_eval(r.p, r.p->kernels[ncpu], r.mem), 0);
  check(&c, &r, ybuf(&r), "GPU schedule (tf32 target, FP32 tile)");
  unbuild(&r);
}
