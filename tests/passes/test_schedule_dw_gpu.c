/* The direct depthwise GPU schedule (passes/schedule_dw_gpu.c), checked
 * by emulation: for each shape the scheduled kernel is verified, run by
 * the interpreter's GPU emulation (ir/loop_eval.c: blocks in turn,
 * threads segment by segment between barriers, races on the SHARED tile
 * reported), and every output compared with a float64 reference computed
 * here from the ONNX Conv formula (then the residual Add and Relu of a
 * fused epilogue).  Launch shapes are checked against the tile rules
 * stated at the top of the schedule's file, worked out by hand.
 *
 * Tolerance: a sum of K float32 products, each rounded, added to the bias
 * in any association, is within gamma(K + 2) * (|bias| + sum |x*w|) of the
 * exact value, gamma(n) = n*u / (1 - n*u), u = 2^-24 (Higham, Accuracy and
 * Stability of Numerical Algorithms, 2nd ed., eq. 3.5, sec. 4.2); a fused
 * residual Add rounds once more (u * |result|), Relu is exact.  A wrong
 * index or a missing tap is off by a whole term, far outside the bound. */
#include <math.h>
#include <stdlib.h>

#include "ir/loop.h"
#include "passes/conv_def.h"
#include "passes/passes.h"
#include "../ir/ir_test.h"

TestSuite(dw_gpu, .init = graph_setup, .fini = graph_teardown);

typedef struct dshape {
  int sp;
  int64_t N, C, M;                 /* group = C, multiplier M / C */
  int64_t in[2], K[2], s[2], d[2], pads[4];
  int bias, epilogue;              /* epilogue: Y = Relu(Conv + R) fused into the Conv */
} dshape;

static uint32_t rng = 777;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return (float)((rng >> 8) / 16777216.0 * 2.0 - 1.0);
}

typedef struct built {
  kiln_node *n;
  kiln_program *p;
  void **mem;
  const float *x, *r; /* input, residual (epilogue) */
  const float *w, *b;
  const kiln_value *y; /* the value the kernel stores (the epilogue's last output) */
} built;

/* A node whose output is not a graph output (so it can be fused). */
static kiln_node *mid_node(kiln_op op, const char *name, int nin, kiln_value *const *ins) {
  kiln_node *n = kiln_node_new(g, op, name, nin, 1);
  for (int k = 0; k < nin; k++) kiln_node_set_input(n, k, ins[k]);
  kiln_node_set_output(n, 0, kiln_value_new(g, name, KILN_VALUE_ACTIVATION));
  return n;
}

static float *fill(const kiln_program *p, void **mem, kiln_buf_kind kind, const char *name) {
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *bf = p->bufs[i];
    if (bf->kind == kind && (!name || !strcmp(bf->name, name))) return mem[i];
  }
  return NULL;
}

static built build(const dshape *c) {
  built r = {0};
  int64_t xd[4] = {c->N, c->C}, wd[4] = {c->M, 1}, wn = c->M;
  for (int i = 0; i < c->sp; i++) {
    xd[2 + i] = c->in[i];
    wd[2 + i] = c->K[i];
    wn *= c->K[i];
  }
  float *w = malloc((size_t)wn * sizeof *w), *b = malloc((size_t)c->M * sizeof *b);
  for (int64_t i = 0; i < wn; i++) w[i] = frand();
  for (int64_t i = 0; i < c->M; i++) b[i] = frand();
  kiln_value *x = t_input("x", KILN_DT_F32, c->sp + 2, xd);
  kiln_value *wv = t_const("w", KILN_DT_F32, c->sp + 2, wd, w);
  kiln_value *bv = t_const("b", KILN_DT_F32, 1, (int64_t[]){c->M}, b);
  kiln_value *ins[3] = {x, wv, bv};
  r.n = c->epilogue ? mid_node(KILN_OP_CONV, "c", c->bias ? 3 : 2, ins)
                    : t_node_n(KILN_OP_CONV, "c", c->bias ? 3 : 2, ins, 1);
  kiln_attrs_conv *a = r.n->attrs;
  a->group = c->C;
  a->strides = t_ints_attr(c->sp, c->s);
  a->dilations = t_ints_attr(c->sp, c->d);
  a->pads = t_ints_attr(2 * c->sp, c->pads);
  if (c->epilogue) { /* R has Y's shape (ONNX's output size formula; shape inference checks it) */
    int64_t yd[4] = {c->N, c->M};
    for (int i = 0; i < c->sp; i++)
      yd[2 + i] = (c->in[i] + c->pads[i] + c->pads[c->sp + i] - c->d[i] * (c->K[i] - 1) - 1) / c->s[i] + 1;
    kiln_value *res = t_input("res", KILN_DT_F32, c->sp + 2, yd);
    kiln_node *add = mid_node(KILN_OP_ADD, "add", 2, (kiln_value *const[]){r.n->out[0], res});
    NODE(KILN_OP_RELU, "relu", add->out[0]);
  }
  infer_ok();
  kiln_diag d = {0};
  if (c->epilogue) {
    cr_assert_eq(kiln_pass_fuse_epilogue(g, &d), 0, "%s", d.msg);
    cr_assert_eq(r.n->epi.nsteps, 2, "Add and Relu fused into the Conv: %d steps", r.n->epi.nsteps);
  }
  r.w = wv->data;
  r.b = bv->data;
  free(w);
  free(b);
  r.p = kiln_lower(g, &d);
  cr_assert(r.p, "%s", d.msg);
  r.mem = calloc((size_t)r.p->nbufs, sizeof *r.mem);
  for (int i = 0; i < r.p->nbufs; i++) {
    const kiln_buf *bf = r.p->bufs[i];
    r.mem[i] = calloc((size_t)bf->numel + 1, kiln_dtype_size(bf->dtype));
    if (bf->data) memcpy(r.mem[i], bf->data, (size_t)bf->numel * kiln_dtype_size(bf->dtype));
    if (bf->kind == KILN_BUF_INPUT)
      for (int64_t k = 0; k < bf->numel; k++) ((float *)r.mem[i])[k] = frand();
  }
  r.x = fill(r.p, r.mem, KILN_BUF_INPUT, "x");
  r.r = c->epilogue ? fill(r.p, r.mem, KILN_BUF_INPUT, "res") : NULL;
  r.y = kiln_lower_result(r.n, 0);
  return r;
}

static void unbuild(built *r) {
  for (int i = 0; i < r->p->nbufs; i++) free(r->mem[i]);
  free(r->mem);
}

static float *ybuf(const built *r) { return fill(r->p, r->mem, KILN_BUF_OUTPUT, NULL); }

/* Every output against the float64 formula, within the bound above. */
static void check(const dshape *c, const built *r, const float *y, const char *what) {
  const kiln_value *yv = r->n->out[0];
  int64_t OH = c->sp == 2 ? yv->dims[2] : 1, OW = yv->dims[1 + c->sp], IH = c->sp == 2 ? c->in[0] : 1,
          IW = c->in[c->sp - 1], KH = c->sp == 2 ? c->K[0] : 1, KW = c->K[c->sp - 1];
  int64_t sh = c->sp == 2 ? c->s[0] : 1, sw = c->s[c->sp - 1], dh = c->sp == 2 ? c->d[0] : 1, dw = c->d[c->sp - 1];
  int64_t ph = c->sp == 2 ? c->pads[0] : 0, pw = c->pads[c->sp - 1], mult = c->M / c->C;
  const double u = 0x1p-24, gam = (KH * KW + 2) * u / (1 - (KH * KW + 2) * u);
  double worst = 0;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t m = 0; m < c->M; m++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double sum = c->bias ? r->b[m] : 0, mag = fabs(sum);
          for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) {
              int64_t ih = oh * sh + kh * dh - ph, iw = ow * sw + kw * dw - pw;
              if (ih < 0 || ih >= IH || iw < 0 || iw >= IW) continue;
              double t = (double)r->x[((n * c->C + m / mult) * IH + ih) * IW + iw] * r->w[(m * KH + kh) * KW + kw];
              sum += t;
              mag += fabs(t);
            }
          int64_t o = ((n * c->M + m) * OH + oh) * OW + ow;
          double tol = gam * mag, want = sum;
          if (c->epilogue) {
            want = sum + r->r[o];
            tol += u * fabs(want) + u * fabs(sum);
            want = want > 0 ? want : 0;
          }
          double got = y[o], err = fabs(got - want);
          cr_assert(err <= tol, "%s: Y[%lld, %lld, %lld, %lld] = %.9g, float64 reference %.9g (error %.3g > bound %.3g)",
                    what, (long long)n, (long long)m, (long long)oh, (long long)ow, got, want, err, tol);
          if (mag > 0 && err / mag > worst) worst = err / mag;
        }
  cr_log_info("%s: worst error %.3g of sum |terms| (bound %.3g)", what, worst, gam);
}

/* The CPU lowering and the GPU schedule (tile t, NULL: the chooser's);
 * returns the GPU kernel's launch. */
static kiln_launch run_shape(const dshape *c, const kiln_dw_gpu_tile *t) {
  built r = build(c);
  int ncpu = r.p->nkernels;
  for (int k = 0; k < ncpu; k++) cr_assert_eq(kiln_loop_eval(r.p, r.p->kernels[k], r.mem), 0);
  check(c, &r, ybuf(&r), "CPU lowering");

  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_dw_gpu(r.p, r.n, t, &d), 0, "%s", d.msg);
  cr_assert_eq(r.p->nkernels, ncpu + 1);
  const kiln_kernel *k = r.p->kernels[ncpu];
  cr_assert(k->launch);
  cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg);
  float *y = ybuf(&r);
  int64_t yn = kiln_value_numel(r.y, 1);
  for (int64_t i = 0; i < yn; i++) y[i] = NAN; /* every output must be written */
  cr_assert_eq(kiln_loop_eval(r.p, k, r.mem), 0, "GPU emulation failed (out of bounds, race or divergent barrier)");
  check(c, &r, y, "GPU schedule");
  kiln_launch l = *k->launch;
  unbuild(&r);
  return l;
}

static void expect_launch(kiln_launch l, int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz) {
  cr_assert(l.grid[0] == gx && l.grid[1] == gy && l.grid[2] == gz && l.block[0] == bx && l.block[1] == by &&
                l.block[2] == bz,
            "launch grid (%lld, %lld, %lld) block (%lld, %lld, %lld), want (%lld, %lld, %lld) (%lld, %lld, %lld)",
            (long long)l.grid[0], (long long)l.grid[1], (long long)l.grid[2], (long long)l.block[0],
            (long long)l.block[1], (long long)l.block[2], (long long)gx, (long long)gy, (long long)gz, (long long)bx,
            (long long)by, (long long)bz);
}

/* 13x11 planes: rw 1, tx 11, ty 13 (256/11 = 23 >= 13), tz = min(12, 256/143) = 1;
 * 12 blocks < 264: ty halves while over 64 threads, 13 -> 7 -> 4:
 * grid (1, 4, 12) of (11, 4, 1), the last band guarded. */
Test(dw_gpu, conv3x3_pad1_bias) {
  dshape c = {2, 2, 6, 6, {13, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, 0};
  expect_launch(run_shape(&c, NULL), 1, 4, 12, 11, 4, 1);
}

Test(dw_gpu, stride2_asymmetric_pads) {
  dshape c = {2, 1, 5, 5, {11, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 0, 2, 1}, 1, 0};
  run_shape(&c, NULL);
  kiln_dw_gpu_tile t = {.tx = 2, .ty = 2, .tz = 2, .rw = 2}; /* partial tiles on every axis */
  graph_teardown();
  graph_setup();
  run_shape(&c, &t);
}

Test(dw_gpu, multiplier2_dilation2) {
  dshape c = {2, 2, 3, 6, {9, 12}, {3, 3}, {1, 1}, {2, 2}, {2, 2, 2, 2}, 0, 0};
  run_shape(&c, &(kiln_dw_gpu_tile){.tx = 4, .ty = 3, .tz = 4, .rw = 2});
}

Test(dw_gpu, conv1d_stride2) {
  dshape c = {1, 2, 4, 4, {37}, {5}, {2}, {1}, {2, 1}, 1, 0};
  kiln_launch l = run_shape(&c, NULL);
  /* 1-D: OW = 18 -> rw 1, tx 18, one row; tz = min(8, 256/18) = 8, shrunk to 1 for blocks */
  expect_launch(l, 1, 1, 8, 18, 1, 1);
}

/* rw 4 with a row of 70 outputs: tx 18, tile 72 columns, two guarded outputs */
Test(dw_gpu, long_rows_rw4) {
  dshape c = {2, 1, 2, 2, {3, 70}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, 0};
  kiln_launch l = run_shape(&c, NULL);
  cr_assert_eq(l.block[0], 18);
}

/* edge sizes: a 1x1 plane with pads 1 (8 of 9 taps in the padding), a 1x1 kernel */
Test(dw_gpu, edge_sizes) {
  dshape c = {2, 1, 3, 3, {1, 1}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, 0};
  run_shape(&c, NULL);
  graph_teardown();
  graph_setup();
  dshape c1 = {2, 1, 4, 4, {5, 3}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0};
  run_shape(&c1, NULL);
}

/* 81 taps: past TAPS_MAX, the loop over taps */
Test(dw_gpu, large_kernel_9x9) {
  dshape c = {2, 1, 2, 2, {12, 11}, {9, 9}, {1, 1}, {1, 1}, {4, 4, 4, 4}, 1, 0};
  run_shape(&c, &(kiln_dw_gpu_tile){.tx = 4, .ty = 4, .tz = 1, .rw = 2});
}

/* Relu(Conv + R) fused: the epilogue applied at the store */
static const dshape fused = {2, 1, 4, 4, {7, 9}, {3, 3}, {2, 1}, {1, 1}, {1, 1, 1, 1}, 1, 1};

Test(dw_gpu, fused_residual_relu) { run_shape(&fused, NULL); }

Test(dw_gpu, fused_residual_relu_partial_tiles) {
  run_shape(&fused, &(kiln_dw_gpu_tile){.tx = 3, .ty = 2, .tz = 3, .rw = 2});
}

/* MobileNetV2's shapes at batch 1 (launch only, values above):
 * 112x112x32: rw 4, tx 28, ty = 9 (256/28), 13 bands; tz 1: 416 blocks;
 * 7x7x960: rw 1, tx 7, ty 7, tz = 5 (192 blocks < 264) -> 3: 320 blocks. */
static kiln_dw_gpu_tile tile_of(int64_t C, int64_t H, int64_t W) {
  kiln_conv_geom geo = {.sp = 2, .N = 1, .C = C, .M = C, .G = C, .Cg = 1, .Mg = 1,
                        .in = {H, W}, .out = {H, W}, .K = {3, 3}, .s = {1, 1}, .d = {1, 1}, .pb = {1, 1}};
  cr_assert(kiln_dw_gpu_wanted(&geo));
  kiln_dw_gpu_tile t;
  kiln_dw_gpu_tile_for(&geo, KILN_DT_F32, &t);
  return t;
}

Test(dw_gpu, mobilenet_tiles) {
  kiln_dw_gpu_tile t = tile_of(32, 112, 112);
  cr_assert(t.rw == 4 && t.tx == 28 && t.ty == 9 && t.tz == 1, "%lld %lld %lld %lld", (long long)t.rw,
            (long long)t.tx, (long long)t.ty, (long long)t.tz);
  t = tile_of(960, 7, 7);
  cr_assert(t.rw == 1 && t.tx == 7 && t.ty == 7 && t.tz == 3, "%lld %lld %lld %lld", (long long)t.rw,
            (long long)t.tx, (long long)t.ty, (long long)t.tz);
}

/* schedule_gpu dispatches a depthwise Conv with a fused epilogue to this
 * schedule (before the implicit GEMM) on a GPU target. */
Test(dw_gpu, dispatch_on_gpu_target) {
  int64_t xd[4] = {1, 4, 7, 9};
  float w[36] = {0};
  kiln_value *x = t_input("x", KILN_DT_F32, 4, xd);
  kiln_value *wv = t_const("w", KILN_DT_F32, 4, (int64_t[]){4, 1, 3, 3}, w);
  kiln_node *n = mid_node(KILN_OP_CONV, "c", 2, (kiln_value *const[]){x, wv});
  kiln_attrs_conv *a = n->attrs;
  a->group = 4;
  a->pads = INTS(1, 1, 1, 1);
  NODE(KILN_OP_RELU, "relu", n->out[0]);
  infer_ok();
  kiln_diag d = {0};
  cr_assert_eq(kiln_pass_fuse_epilogue(g, &d), 0, "%s", d.msg);
  cr_assert_eq(n->epi.nsteps, 1);
  kiln_target t = kiln_target_gpu_default();
  kiln_program *p = kiln_lower_with(g, &t, &d);
  cr_assert(p, "%s", d.msg);
  kiln_schedule_gpu(p);
  cr_assert_eq(p->nkernels, 1);
  const kiln_kernel *k = p->kernels[0];
  cr_assert(k->launch);
  /* 7x9: rw 1, tx 9, ty 7, tz 4 -> shrunk to 1 (few blocks) */
  expect_launch(*k->launch, 1, 1, 4, 9, 7, 1);
  cr_assert_eq(k->nnodes, 2, "the kernel computes the Conv and its Relu");
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
}

/* Without the barrier a thread could read a tile element another has not
 * written yet: the emulation reports the race. */
Test(dw_gpu, emulation_reports_a_missing_barrier) {
  dshape c = {2, 1, 3, 3, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, 0};
  built r = build(&c);
  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_dw_gpu(r.p, r.n, NULL, &d), 0, "%s", d.msg);
  const kiln_kernel *k = r.p->kernels[r.p->nkernels - 1];
  kiln_ls *s = k->body; /* bx, by, bz; the ALLOC; tx, ty, tz; the thread's body */
  while (s->kind == KILN_LS_FOR && s->sched.gpu >= 1 && s->sched.gpu <= 3) s = s->body;
  while (s->kind == KILN_LS_ALLOC) s = s->next;
  while (s->body->kind == KILN_LS_FOR && s->body->sched.gpu >= 4) s = s->body;
  cr_assert(s->kind == KILN_LS_FOR && s->sched.gpu == 6, "the thread loops");
  kiln_ls **link = &s->body;
  while (*link && (*link)->kind != KILN_LS_BARRIER) link = &(*link)->next;
  cr_assert(*link, "no barrier under the thread loops");
  *link = (*link)->next; /* drop it */
  cr_assert_eq(kiln_loop_verify(r.p, &d), 0, "%s", d.msg); /* legal IR, wrong program */
  cr_assert_eq(kiln_loop_eval(r.p, k, r.mem), -1, "barrier dropped, yet no race reported");
  unbuild(&r);
}

Test(dw_gpu, rejects_what_it_cannot_hold) {
  dshape c = {2, 1, 4, 4, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, 0};
  built r = build(&c);
  kiln_diag d = {0};
  cr_assert_eq(kiln_schedule_dw_gpu(r.p, r.n, &(kiln_dw_gpu_tile){.tx = 64, .ty = 32, .tz = 1, .rw = 1}, &d), -1);
  cr_assert(strstr(d.msg, "'c'") && strstr(d.msg, "1..1024 threads"), "%s", d.msg);
  d = (kiln_diag){0};
  /* a row of 8192 outputs: 3 x 8194 f32 with the halo, over 48 KiB */
  cr_assert_eq(kiln_schedule_dw_gpu(r.p, r.n, &(kiln_dw_gpu_tile){.tx = 1024, .ty = 1, .tz = 1, .rw = 8}, &d), -1);
  cr_assert(strstr(d.msg, "shared memory"), "%s", d.msg);
  unbuild(&r);
}
