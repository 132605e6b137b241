/* The one output store (passes/lower_store.c).
 *
 * kiln_lower_addr: offsets of every logical index of a plain and of an
 * NCHWc value, computed by the loop interpreter, against the layouts'
 * definitions written out here (row-major; N, ceil(C/b), H, W, b).
 *
 * Epilogues: small graphs (Conv on its fast and generic paths, Gemm in
 * its row and dot forms, MatMul, an elementwise Add) followed by
 * elementwise nodes (residual Add, per-channel Mul/Add as a BatchNorm-style
 * scale/shift, Relu, Sigmoid, Cast to f16) are lowered twice: as they are,
 * and with the followers marked fused into the first node by hand (what
 * the fusion pass will do).  Both programs run in the loop interpreter.
 * The fused kernel computes each step on the value the unfused graph
 * stores and reloads (rounded to that value's dtype), with the same
 * scalar functions, so the results must be bitwise equal.  The unfused
 * result itself is checked against a float64 computation written here,
 * within float32 rounding: |got - ref| <= 64 * 2^-24 * (sum of |terms|)
 * for a sum of at most 54 products (a float32 sum of k terms is off by at
 * most about k * 2^-24 * sum|terms|). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/c/kiln_c.h"
#include "../../backends/llvm/kiln_llvm.h"
#include "../../ir/loop.h"
#include "../../passes/lower.h"
#include "../../passes/passes.h"

/* ---- kiln_lower_addr ---- */

/* Stores addr(idx) for every idx of v (row-major order) into an i64 buffer
 * and runs it. */
static void addr_table(const kiln_value *v, int64_t *out, int64_t count) {
  kiln_graph *g = kiln_graph_new();
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  kiln_diag d = {0};
  kiln_lctx L = {.g = g, .d = &d};
  L.b.p = p;
  kiln_value ov = {0};
  ov.name = "offsets";
  ov.dtype = KILN_DT_I64;
  ov.rank = 1;
  ov.dims[0] = count;
  kiln_buf *ob = kiln_program_add_buf(p, &ov, KILN_BUF_OUTPUT);
  kiln_lb_kernel(&L.b, "addr", NULL);
  kiln_lx *idx[KILN_MAX_RANK];
  kiln_lower_loops(&L, v, idx);
  kiln_lb_store(&L.b, ob, kiln_lower_offset(&L, v, idx), kiln_lower_addr(&L, v, idx));
  kiln_lower_close(&L, v->rank);
  void *bufs[1] = {out};
  cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  kiln_graph_free(g);
}

Test(lower_addr, plain_is_row_major) {
  kiln_value v = {0};
  v.rank = 4;
  int64_t dims[4] = {2, 3, 4, 5};
  memcpy(v.dims, dims, sizeof dims);
  int64_t out[120];
  addr_table(&v, out, 120);
  int64_t k = 0;
  for (int64_t a = 0; a < 2; a++)
    for (int64_t b = 0; b < 3; b++)
      for (int64_t c = 0; c < 4; c++)
        for (int64_t e = 0; e < 5; e++, k++) cr_assert_eq(out[k], ((a * 3 + b) * 4 + c) * 5 + e);
}

Test(lower_addr, nchwc_blocks_channels_innermost) {
  /* C = 10 in blocks of 4: 3 blocks, the last padded */
  kiln_value v = {0};
  v.rank = 4;
  int64_t N = 2, C = 10, H = 3, W = 2, b = 4, CB = 3;
  int64_t dims[4] = {N, C, H, W};
  memcpy(v.dims, dims, sizeof dims);
  v.layout = KILN_LAYOUT_NCHWC;
  v.layout_block = (int)b;
  int64_t out[120];
  addr_table(&v, out, N * C * H * W);
  int64_t k = 0;
  char seen[2 * 3 * 3 * 2 * 4] = {0};
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++, k++) {
          int64_t want = (((n * CB + c / b) * H + h) * W + w) * b + c % b;
          cr_assert_eq(out[k], want, "[%lld,%lld,%lld,%lld]: %lld, expected %lld", (long long)n, (long long)c,
                       (long long)h, (long long)w, (long long)out[k], (long long)want);
          cr_assert(want >= 0 && want < N * CB * H * W * b);
          cr_assert_eq(seen[want], 0, "two indices at one offset");
          seen[want] = 1;
        }
}

Test(lower_addr, nchwc_3d_spatial) {
  kiln_value v = {0};
  v.rank = 5;
  int64_t dims[5] = {1, 8, 2, 3, 2};
  memcpy(v.dims, dims, sizeof dims);
  v.layout = KILN_LAYOUT_NCHWC;
  v.layout_block = 8;
  int64_t out[96];
  addr_table(&v, out, 96);
  int64_t k = 0;
  for (int64_t c = 0; c < 8; c++)
    for (int64_t d = 0; d < 2; d++)
      for (int64_t h = 0; h < 3; h++)
        for (int64_t w = 0; w < 2; w++, k++) cr_assert_eq(out[k], ((d * 3 + h) * 2 + w) * 8 + c);
}

/* ---- epilogues ---- */

static uint32_t rng = 12345;
static float rnd(void) { /* uniform in [-1, 1), deterministic */
  rng = rng * 1664525u + 1013904223u;
  return (float)((double)(rng >> 8) / (double)(1u << 23) - 1.0);
}

typedef struct tg {
  kiln_graph *g;
  kiln_node *first;         /* the node the others fuse into */
  kiln_node *steps[4];
  int nsteps;
} tg;

static kiln_value *input(kiln_graph *g, const char *name, int rank, const int64_t *dims) {
  kiln_value *v = kiln_value_new(g, name, KILN_VALUE_INPUT);
  v->dtype = KILN_DT_F32;
  v->rank = rank;
  memcpy(v->dims, dims, (size_t)rank * sizeof *dims);
  kiln_graph_add_input(g, v);
  return v;
}

static kiln_value *constant(kiln_graph *g, const char *name, int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  float *data = kiln_arena_alloc(&g->arena, (size_t)n * sizeof *data);
  for (int64_t i = 0; i < n; i++) data[i] = rnd();
  return kiln_value_const(g, name, KILN_DT_F32, rank, dims, data);
}

static kiln_node *node(tg *t, kiln_op op, const char *name, int nin, kiln_value **in) {
  kiln_node *n = kiln_node_new(t->g, op, name, nin, 1);
  for (int k = 0; k < nin; k++) kiln_node_set_input(n, k, in[k]);
  char nm[64];
  snprintf(nm, sizeof nm, "%s_out", name);
  kiln_node_set_output(n, 0, kiln_value_new(t->g, nm, KILN_VALUE_ACTIVATION));
  return n;
}

/* Appends an elementwise step reading the previous result (slot `at`,
 * the other operand `other`, NULL for a unary op). */
static kiln_node *step(tg *t, kiln_op op, const char *name, kiln_value *other, int at) {
  kiln_node *prev = t->nsteps ? t->steps[t->nsteps - 1] : t->first;
  kiln_value *in[2] = {prev->out[0], other};
  if (other && at == 1) { in[0] = other; in[1] = prev->out[0]; }
  kiln_node *n = node(t, op, name, other ? 2 : 1, in);
  t->steps[t->nsteps++] = n;
  return n;
}

static void finish(tg *t, int fuse) {
  kiln_node *last = t->nsteps ? t->steps[t->nsteps - 1] : t->first;
  kiln_graph_add_output(t->g, last->out[0]);
  kiln_diag d = {0};
  cr_assert_eq(kiln_pass_infer_shapes(t->g, &d), 0, "%s", d.msg);
  if (fuse)
    for (int s = 0; s < t->nsteps; s++) kiln_node_fuse(t->g, t->first, t->steps[s]);
}

/* Lowers (plus the loop passes) and runs g on its inputs' data (in input
 * order); returns the first graph output as doubles (malloc'd). */
static int via_jit; /* run through the LLVM JIT instead of the interpreter */

static double *run(kiln_graph *g, float **inputs, kiln_program **pout, int64_t *numel) {
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert(p, "%s", d.msg);
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  kiln_expand_reduce(p);
  kiln_simplify_index(p);
  kiln_plan_memory(p);
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  char *ws = calloc((size_t)p->workspace_bytes + 8, 1); /* the arena, as the plan placed it */
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_INPUT) bufs[i] = inputs[b->io_index];
    else if (b->kind == KILN_BUF_WEIGHT) bufs[i] = (void *)b->data;
    else if (b->kind == KILN_BUF_WORKSPACE) bufs[i] = ws + b->offset;
    else bufs[i] = calloc((size_t)b->numel + 1, kiln_dtype_size(b->dtype));
  }
  if (via_jit) {
    kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
    cr_assert_not_null(j, "%s", d.msg);
    kiln_llvm_jit_run(j, bufs);
    kiln_llvm_jit_free(j);
  } else {
    for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  }
  const kiln_buf *ob = NULL;
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_OUTPUT && p->bufs[i]->io_index == 0) ob = p->bufs[i];
  cr_assert(ob);
  double *r = malloc((size_t)ob->numel * sizeof *r);
  for (int64_t i = 0; i < ob->numel; i++) r[i] = kiln_dtype_load_f(ob->dtype, bufs[ob->id], (size_t)i);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_OUTPUT) free(bufs[i]);
  free(ws);
  free(bufs);
  if (pout) *pout = p;
  *numel = ob->numel;
  return r;
}

typedef void (*builder)(tg *t);

/* Builds the case twice (plain, fused), runs both on the same inputs and
 * requires bitwise-equal outputs (numel elements, -1: all); returns the unfused output and, through
 * fk, the fused program's kernel that computes t.first. */
static double *fused_equals_unfused(builder build, float **inputs, int64_t numel, const kiln_kernel **fk,
                                    kiln_graph **keep) {
  tg a = {.g = kiln_graph_new()}, b = {.g = kiln_graph_new()};
  uint32_t seed = rng;
  build(&a);
  finish(&a, 0);
  rng = seed; /* the same constants */
  build(&b);
  finish(&b, 1);
  kiln_program *pa, *pb;
  int64_t na, nb;
  double *ra = run(a.g, inputs, &pa, &na), *rb = run(b.g, inputs, &pb, &nb);
  cr_assert_eq(na, nb);
  if (numel < 0) numel = na;
  cr_assert_eq(pb->nkernels, pa->nkernels - b.nsteps, "fused: %d kernels, unfused %d", pb->nkernels, pa->nkernels);
  for (int64_t i = 0; i < numel; i++) {
    uint64_t x, y;
    memcpy(&x, &ra[i], 8);
    memcpy(&y, &rb[i], 8);
    cr_assert_eq(x, y, "element %lld: unfused %.9g, fused %.9g", (long long)i, ra[i], rb[i]);
  }
  const kiln_kernel *k = NULL;
  for (int i = 0; i < pb->nkernels; i++)
    if (pb->kernels[i]->node == b.first) k = pb->kernels[i];
  cr_assert(k, "no kernel computes the fused node");
  cr_assert_eq(k->nnodes, 1 + b.nsteps);
  cr_assert_eq(k->nodes[0], b.first);
  for (int s = 0; s < b.nsteps; s++) cr_assert_eq(k->nodes[1 + s], b.steps[s]);
  if (fk) *fk = k;
  kiln_graph_free(a.g);
  if (keep) *keep = b.g;
  else kiln_graph_free(b.g);
  free(rb);
  return ra;
}

static float *fill(int64_t n) {
  float *x = malloc((size_t)n * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = rnd();
  return x;
}

/* Conv, X [1,C,H,W] (weights W [M,C,K,K], bias [M]), pad p, stride s,
 * then Add(residual input R [1,M,OH,OW]) then Relu. */
enum { CC = 3, CM = 8, CH = 6, CK = 3 };
static int conv_stride = 1, conv_pad = 1, conv_in = CH;

static kiln_value *conv(tg *t) {
  kiln_graph *g = t->g;
  kiln_value *x = input(g, "x", 4, (int64_t[]){1, CC, conv_in, conv_in});
  kiln_value *w = constant(g, "w", 4, (int64_t[]){CM, CC, CK, CK});
  kiln_value *bias = constant(g, "bias", 1, (int64_t[]){CM});
  t->first = node(t, KILN_OP_CONV, "conv", 3, (kiln_value *[]){x, w, bias});
  kiln_attrs_conv *a = t->first->attrs;
  int64_t p[4] = {conv_pad, conv_pad, conv_pad, conv_pad}, s[2] = {conv_stride, conv_stride};
  a->pads = (kiln_ints){4, kiln_arena_memdup(&g->arena, p, sizeof p)};
  a->strides = (kiln_ints){2, kiln_arena_memdup(&g->arena, s, sizeof s)};
  return x;
}

static int64_t conv_out(void) { return (conv_in + 2 * conv_pad - CK) / conv_stride + 1; }

static void conv_add_relu(tg *t) {
  conv(t);
  int64_t o = conv_out();
  kiln_value *r = input(t->g, "residual", 4, (int64_t[]){1, CM, o, o});
  step(t, KILN_OP_ADD, "add", r, 1); /* Add(residual, conv): the result in slot 1 */
  step(t, KILN_OP_RELU, "relu", NULL, 0);
}

/* float64 reference of conv -> + residual -> relu, with the error bound
 * of each element (see the top of the file). */
static void conv_ref(const float *x, const float *r, const float *w, const float *bias, double *ref, double *tol) {
  int64_t o = conv_out();
  for (int64_t m = 0; m < CM; m++)
    for (int64_t i = 0; i < o; i++)
      for (int64_t j = 0; j < o; j++) {
        double s = bias[m], mag = fabs(bias[m]);
        for (int64_t c = 0; c < CC; c++)
          for (int64_t ki = 0; ki < CK; ki++)
            for (int64_t kj = 0; kj < CK; kj++) {
              int64_t y = i * conv_stride - conv_pad + ki, xx = j * conv_stride - conv_pad + kj;
              if (y < 0 || y >= conv_in || xx < 0 || xx >= conv_in) continue;
              double term = (double)x[(c * conv_in + y) * conv_in + xx] * w[((m * CC + c) * CK + ki) * CK + kj];
              s += term;
              mag += fabs(term);
            }
        int64_t k = (m * o + i) * o + j;
        s += r[k];
        mag += fabs(r[k]);
        ref[k] = s < 0 ? 0 : s;
        tol[k] = 64 * ldexp(1, -24) * mag;
      }
}

static void check_conv_case(void) {
  rng = 777;
  int64_t o = conv_out(), numel = CM * o * o;
  /* the constants are drawn first (in build order: w, bias), then inputs */
  uint32_t seed = rng;
  float w[CM * CC * CK * CK], bias[CM];
  for (int i = 0; i < CM * CC * CK * CK; i++) w[i] = rnd();
  for (int i = 0; i < CM; i++) bias[i] = rnd();
  float *x = fill(CC * conv_in * conv_in), *r = fill(numel);
  float *inputs[2] = {x, r};
  rng = seed;
  const kiln_kernel *k;
  double *got = fused_equals_unfused(conv_add_relu, inputs, numel, &k, NULL);
  double *ref = malloc((size_t)numel * sizeof *ref), *tol = malloc((size_t)numel * sizeof *tol);
  conv_ref(x, r, w, bias, ref, tol);
  int positive = 0;
  for (int64_t i = 0; i < numel; i++) {
    cr_assert(fabs(got[i] - ref[i]) <= tol[i], "element %lld: %.9g, float64 %.9g", (long long)i, got[i], ref[i]);
    positive += got[i] > 0;
  }
  cr_assert(positive > 0 && positive < numel, "relu both clipped and passed values");
  free(got), free(ref), free(tol), free(x), free(r);
}

Test(epilogue, conv_fast_path_add_relu) {
  conv_stride = 1, conv_pad = 1, conv_in = CH;
  check_conv_case();
}

static void check_gemm(int transb);

/* The same through the LLVM JIT: the printers only print the loop IR. */
Test(epilogue, conv_fast_path_add_relu_llvm_jit) {
  conv_stride = 1, conv_pad = 1, conv_in = CH;
  via_jit = 1;
  check_conv_case();
  via_jit = 0;
}

Test(epilogue, gemm_dot_form_add_relu_llvm_jit) {
  via_jit = 1;
  check_gemm(1);
  via_jit = 0;
}

Test(epilogue, conv_fast_path_strided) {
  conv_stride = 2, conv_pad = 1, conv_in = 9;
  check_conv_case();
}

Test(epilogue, conv_generic_path_add_relu) {
  /* strides beyond the fast path's phase limit (16) take the generic loop */
  conv_stride = 17, conv_pad = 0, conv_in = 38;
  check_conv_case();
}

/* Per-channel scale and shift (a BatchNorm folded into Mul and Add with
 * [M,1,1] constants), then Sigmoid: broadcast operands. */
static void conv_scale_shift_sigmoid(tg *t) {
  conv(t);
  step(t, KILN_OP_MUL, "scale", constant(t->g, "gamma", 3, (int64_t[]){CM, 1, 1}), 0);
  step(t, KILN_OP_ADD, "shift", constant(t->g, "beta", 3, (int64_t[]){CM, 1, 1}), 0);
  step(t, KILN_OP_SIGMOID, "sigmoid", NULL, 0);
}

Test(epilogue, conv_per_channel_scale_shift_sigmoid) {
  conv_stride = 1, conv_pad = 1, conv_in = CH;
  rng = 99;
  float *x = fill(CC * CH * CH);
  float *inputs[1] = {x};
  double *got = fused_equals_unfused(conv_scale_shift_sigmoid, inputs, CM * CH * CH, NULL, NULL);
  for (int i = 0; i < CM * CH * CH; i++) cr_assert(got[i] > 0 && got[i] < 1);
  free(got), free(x);
}

/* A cast to f16 as the last step: the stored output is f16. */
static void conv_relu_cast(tg *t) {
  conv(t);
  step(t, KILN_OP_RELU, "relu", NULL, 0);
  kiln_node *c = step(t, KILN_OP_CAST, "to_f16", NULL, 0);
  ((kiln_attrs_cast *)c->attrs)->to = KILN_DT_F16;
}

Test(epilogue, conv_relu_cast_f16) {
  conv_stride = 1, conv_pad = 1, conv_in = CH;
  rng = 5;
  float *x = fill(CC * CH * CH);
  float *inputs[1] = {x};
  kiln_graph *g;
  double *got = fused_equals_unfused(conv_relu_cast, inputs, CM * CH * CH, NULL, &g);
  cr_assert_eq(g->outputs[0]->dtype, KILN_DT_F16);
  for (int i = 0; i < CM * CH * CH; i++) cr_assert(got[i] >= 0);
  kiln_graph_free(g);
  free(got), free(x);
}

/* kiln_lower_pointwise_steps: the leading steps that read nothing but the
 * running value (a lowering applies them to its register tile, the rest
 * in its copy out): Relu and a Cast are; a residual Add, or a Mul by a
 * per-channel tensor, is not, and ends the prefix. */
static int pointwise_prefix(builder build) {
  tg t = {.g = kiln_graph_new()};
  build(&t);
  finish(&t, 1);
  int n = kiln_lower_pointwise_steps(t.first);
  kiln_graph_free(t.g);
  return n;
}

static void conv_relu_add_relu(tg *t) {
  conv(t);
  int64_t o = conv_out();
  step(t, KILN_OP_RELU, "relu0", NULL, 0);
  step(t, KILN_OP_ADD, "add", input(t->g, "residual", 4, (int64_t[]){1, CM, o, o}), 0);
  step(t, KILN_OP_RELU, "relu1", NULL, 0);
}

Test(epilogue, pointwise_prefix) {
  conv_stride = 1, conv_pad = 1, conv_in = CH;
  cr_assert_eq(pointwise_prefix(conv_relu_cast), 2);        /* Relu, Cast */
  cr_assert_eq(pointwise_prefix(conv_relu_add_relu), 1);    /* Relu; the Add loads the residual */
  cr_assert_eq(pointwise_prefix(conv_add_relu), 0);         /* the Add first */
  cr_assert_eq(pointwise_prefix(conv_scale_shift_sigmoid), 0); /* Mul by gamma [CM,1,1] */
}

/* Gemm [M,K] x [K,N] (+ C [N], alpha, beta) then Add(residual [M,N]) and
 * Relu: the row form (transB = 0) accumulates in Y, the dot form
 * (transB = 1) stores once. */
enum { GM = 5, GK = 20, GN = 7 };
static int gemm_transb;

static void gemm_add_relu(tg *t) {
  kiln_graph *g = t->g;
  kiln_value *a = input(g, "a", 2, (int64_t[]){GM, GK});
  kiln_value *b = constant(g, "b", 2, gemm_transb ? (int64_t[]){GN, GK} : (int64_t[]){GK, GN});
  kiln_value *c = constant(g, "c", 1, (int64_t[]){GN});
  t->first = node(t, KILN_OP_GEMM, "gemm", 3, (kiln_value *[]){a, b, c});
  kiln_attrs_gemm *at = t->first->attrs;
  at->transB = gemm_transb;
  at->alpha = 0.5f;
  at->beta = 2.0f;
  step(t, KILN_OP_ADD, "add", input(g, "residual", 2, (int64_t[]){GM, GN}), 0);
  step(t, KILN_OP_RELU, "relu", NULL, 0);
}

static void check_gemm(int transb) {
  gemm_transb = transb;
  rng = 4242;
  uint32_t seed = rng;
  float bm[GK * GN], c[GN];
  for (int i = 0; i < GK * GN; i++) bm[i] = rnd();
  for (int i = 0; i < GN; i++) c[i] = rnd();
  float *a = fill(GM * GK), *r = fill(GM * GN);
  float *inputs[2] = {a, r};
  rng = seed;
  double *got = fused_equals_unfused(gemm_add_relu, inputs, GM * GN, NULL, NULL);
  for (int i = 0; i < GM; i++)
    for (int j = 0; j < GN; j++) {
      double s = 0, mag = 0;
      for (int k = 0; k < GK; k++) {
        double term = (double)a[i * GK + k] * (transb ? bm[j * GK + k] : bm[k * GN + j]);
        s += term;
        mag += fabs(term);
      }
      double v = s * 0.5 + 2.0 * c[j] + r[i * GN + j];
      mag = mag * 0.5 + fabs(2.0 * c[j]) + fabs(r[i * GN + j]);
      double want = v < 0 ? 0 : v;
      cr_assert(fabs(got[i * GN + j] - want) <= 64 * ldexp(1, -24) * mag, "[%d,%d]: %.9g, float64 %.9g", i, j,
                got[i * GN + j], want);
    }
  free(got), free(a), free(r);
}

Test(epilogue, gemm_row_form_add_relu) { check_gemm(0); }
Test(epilogue, gemm_dot_form_add_relu) { check_gemm(1); }

/* MatMul with a batch [2,3,4] x [4,5] then Add of a [5] row (broadcast). */
static void matmul_add(tg *t) {
  kiln_value *a = input(t->g, "a", 3, (int64_t[]){2, 3, 4});
  kiln_value *b = constant(t->g, "b", 2, (int64_t[]){4, 5});
  t->first = node(t, KILN_OP_MATMUL, "mm", 2, (kiln_value *[]){a, b});
  step(t, KILN_OP_ADD, "add", constant(t->g, "row", 1, (int64_t[]){5}), 0);
}

Test(epilogue, matmul_batched_broadcast_add) {
  rng = 31;
  float *a = fill(24);
  float *inputs[1] = {a};
  double *got = fused_equals_unfused(matmul_add, inputs, 30, NULL, NULL);
  free(got), free(a);
}

/* An elementwise node with an epilogue: Mul then Relu. */
static void mul_relu(tg *t) {
  kiln_value *x = input(t->g, "x", 2, (int64_t[]){4, 6});
  kiln_value *y = input(t->g, "y", 2, (int64_t[]){4, 6});
  t->first = node(t, KILN_OP_MUL, "mul", 2, (kiln_value *[]){x, y});
  step(t, KILN_OP_RELU, "relu", NULL, 0);
}

Test(epilogue, elementwise_mul_relu_and_the_dump_lists_the_nodes) {
  rng = 8;
  float *x = fill(24), *y = fill(24);
  float *inputs[2] = {x, y};
  kiln_graph *g;
  const kiln_kernel *k;
  double *got = fused_equals_unfused(mul_relu, inputs, 24, &k, &g);
  for (int i = 0; i < 24; i++) {
    double v = (double)(x[i] * y[i]); /* one float32 product, exact as a double */
    cr_assert_eq(got[i], v < 0 ? 0 : v);
  }
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert(p, "%s", d.msg);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_program_print(p, f);
  fclose(f);
  cr_assert(strstr(text, ":  # nodes 'mul' (Mul), 'relu' (Relu)\n"), "%s", text);
  free(text);
  kiln_graph_free(g);
  free(got), free(x), free(y);
}

/* A chain the store cannot compute is refused with one located line. */
Test(epilogue, step_reading_a_value_used_elsewhere_is_refused) {
  tg t = {.g = kiln_graph_new()};
  rng = 1;
  mul_relu(&t);
  /* the Mul's result is also a graph output: it must be stored, so the
   * Relu cannot take it over */
  kiln_graph_add_output(t.g, t.first->out[0]);
  finish(&t, 1);
  kiln_diag d = {0};
  cr_assert_null(kiln_lower(t.g, &d));
  cr_assert(strstr(d.msg, "node 'mul' (Mul)") && strstr(d.msg, "epilogue step 0 ('relu', Relu)"), "%s", d.msg);
  cr_assert(strstr(d.msg, "used elsewhere"), "%s", d.msg);
  cr_assert_null(strchr(d.msg, '\n'));
  kiln_graph_free(t.g);
}

Test(epilogue, non_elementwise_step_is_refused) {
  tg t = {.g = kiln_graph_new()};
  rng = 1;
  kiln_value *x = input(t.g, "x", 2, (int64_t[]){4, 6});
  t.first = node(&t, KILN_OP_RELU, "relu", 1, (kiln_value *[]){x});
  kiln_node *sm = step(&t, KILN_OP_SOFTMAX, "softmax", NULL, 0);
  (void)sm;
  finish(&t, 1);
  kiln_diag d = {0};
  cr_assert_null(kiln_lower(t.g, &d));
  cr_assert(strstr(d.msg, "is not elementwise"), "%s", d.msg);
  kiln_graph_free(t.g);
}

/* The C printer's kernel comment lists the epilogue's nodes, their names
 * made comment-safe. */
static void mul_evil_relu(tg *t) {
  mul_relu(t);
  t->steps[0]->name = "re*/lu";
}

Test(epilogue, c_kernel_comment_lists_the_fused_nodes) {
  rng = 8;
  float *x = fill(24), *y = fill(24);
  float *inputs[2] = {x, y};
  kiln_graph *g;
  double *got = fused_equals_unfused(mul_evil_relu, inputs, 24, NULL, &g);
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert(p, "%s", d.msg);
  kiln_expand_reduce(p);
  kiln_plan_memory(p);
  kiln_c_options o = {.prefix = "m", .model = "test", .weights_file = 1};
  kiln_c_output out;
  cr_assert_eq(kiln_c_emit(p, &o, &out, &d), 0, "%s", d.msg);
  const char *c = strstr(out.source, "'mul': Mul");
  cr_assert(c, "%s", out.source);
  const char *then = strstr(c, "\n *   then 're");
  const char *end = strstr(c, "*/");
  cr_assert(then && end && then < end, "the fused node is inside the kernel's comment:\n%s", out.source);
  cr_assert(strstr(then, ": Relu -> "), "%s", out.source);
  cr_assert_null(strstr(out.source, "re*/lu"), "a model name closed the comment");
  kiln_c_output_free(&out);
  kiln_graph_free(g);
  free(got), free(x), free(y);
}

/* ---- every lowering's final store: op(x) then + per-channel constant,
 * then Relu, fused == unfused bitwise ---- */

static kiln_value *ints_const(kiln_graph *g, const char *name, int n, const int64_t *v) {
  return kiln_value_const(g, name, KILN_DT_I64, 1, (int64_t[]){n}, kiln_arena_memdup(&g->arena, v, (size_t)n * 8));
}

static kiln_ints ints_attr(kiln_graph *g, int n, const int64_t *v) {
  return (kiln_ints){n, kiln_arena_memdup(&g->arena, v, (size_t)n * sizeof *v)};
}

enum { XN = 2, XC = 4, XS = 5 };
static int op_case;
static int64_t case_channels; /* dim 1 of the case's output */

static void op_then_add_relu(tg *t) {
  kiln_graph *g = t->g;
  kiln_value *x = input(g, "x", 4, (int64_t[]){XN, XC, XS, XS});
  int64_t c4[1] = {XC};
  case_channels = XC;
  switch (op_case) {
  case 0: case 1: { /* MaxPool 3x3 s2 p1 / AveragePool 2x2 */
    t->first = node(t, op_case ? KILN_OP_AVERAGE_POOL : KILN_OP_MAX_POOL, "pool", 1, &x);
    kiln_attrs_pool *a = t->first->attrs;
    a->kernel_shape = op_case ? ints_attr(g, 2, (int64_t[]){2, 2}) : ints_attr(g, 2, (int64_t[]){3, 3});
    if (!op_case) {
      a->strides = ints_attr(g, 2, (int64_t[]){2, 2});
      a->pads = ints_attr(g, 4, (int64_t[]){1, 1, 1, 1});
    }
    break;
  }
  case 2: t->first = node(t, KILN_OP_GLOBAL_AVERAGE_POOL, "gap", 1, &x); break;
  case 3:
    t->first = node(t, KILN_OP_LRN, "lrn", 1, &x);
    ((kiln_attrs_lrn *)t->first->attrs)->size = 3;
    break;
  case 4: case 5: { /* BatchNormalization, inference / training */
    kiln_value *in[5] = {x, constant(g, "scale", 1, c4), constant(g, "b", 1, c4), constant(g, "mean", 1, c4),
                         constant(g, "var", 1, c4)};
    float *var = (float *)in[4]->data;
    for (int i = 0; i < XC; i++) var[i] = fabsf(var[i]) + 0.5f;
    t->first = node(t, KILN_OP_BATCH_NORM, "bn", 5, in);
    ((kiln_attrs_batchnorm *)t->first->attrs)->training_mode = op_case == 5;
    break;
  }
  case 6:
    t->first = node(t, KILN_OP_INSTANCE_NORM, "in", 3, (kiln_value *[]){x, constant(g, "s", 1, c4), constant(g, "b", 1, c4)});
    break;
  case 7:
    t->first = node(t, KILN_OP_SOFTMAX, "softmax", 1, &x);
    ((kiln_attrs_softmax *)t->first->attrs)->axis = 1;
    break;
  case 8:
    t->first = node(t, KILN_OP_REDUCE_SUM, "sum", 2, (kiln_value *[]){x, ints_const(g, "axes", 2, (int64_t[]){2, 3})});
    break;
  case 9:
    t->first = node(t, KILN_OP_TRANSPOSE, "tr", 1, &x);
    ((kiln_attrs_transpose *)t->first->attrs)->perm = ints_attr(g, 4, (int64_t[]){0, 1, 3, 2});
    break;
  case 10:
    t->first = node(t, KILN_OP_CONCAT, "cat", 2, (kiln_value *[]){x, x});
    ((kiln_attrs_concat *)t->first->attrs)->axis = 1;
    case_channels = 2 * XC;
    break;
  case 11:
    t->first = node(t, KILN_OP_PAD, "pad", 2,
                    (kiln_value *[]){x, ints_const(g, "pads", 8, (int64_t[]){0, 0, 1, 1, 0, 0, 1, 1})});
    break;
  case 12:
    t->first = node(t, KILN_OP_CONV_TRANSPOSE, "convt", 3,
                    (kiln_value *[]){x, constant(g, "w", 4, (int64_t[]){XC, XC, 3, 3}), constant(g, "b", 1, c4)});
    break;
  case 13: {
    float sc[4] = {1, 1, 2, 2};
    kiln_value *scales = kiln_value_const(g, "scales", KILN_DT_F32, 1, (int64_t[]){4}, kiln_arena_memdup(&g->arena, sc, sizeof sc));
    t->first = node(t, KILN_OP_RESIZE, "resize", 3, (kiln_value *[]){x, NULL, scales});
    break;
  }
  }
  step(t, KILN_OP_ADD, "add", constant(g, "per_channel", 3, (int64_t[]){case_channels, 1, 1}), 0);
  step(t, KILN_OP_RELU, "relu", NULL, 0);
}

Test(epilogue, every_lowering_applies_it_at_its_final_store) {
  for (op_case = 0; op_case <= 13; op_case++) {
    rng = 100 + (uint32_t)op_case;
    float *x = fill(XN * XC * XS * XS);
    float *inputs[1] = {x};
    kiln_graph *g;
    double *got = fused_equals_unfused(op_then_add_relu, inputs, -1, NULL, &g);
    int64_t numel = kiln_value_numel(g->outputs[0], 1);
    cr_assert_gt(numel, 0);
    kiln_graph_free(g);
    int positive = 0;
    for (int64_t i = 0; i < numel; i++) positive += got[i] > 0;
    cr_assert(positive > 0, "case %d: all clipped", op_case);
    free(got), free(x);
  }
}

/* The fused kernel runs where its last step stands: a node in between may
 * not read the first node's other outputs. */
Test(epilogue, other_output_read_before_the_last_step_is_refused) {
  tg t = {.g = kiln_graph_new()};
  kiln_graph *g = t.g;
  rng = 3;
  kiln_value *x = input(g, "x", 4, (int64_t[]){XN, XC, XS, XS});
  int64_t c4[1] = {XC};
  kiln_value *in[5] = {x, constant(g, "scale", 1, c4), constant(g, "b", 1, c4), constant(g, "mean", 1, c4),
                       constant(g, "var", 1, c4)};
  t.first = kiln_node_new(g, KILN_OP_BATCH_NORM, "bn", 5, 3);
  for (int k = 0; k < 5; k++) kiln_node_set_input(t.first, k, in[k]);
  ((kiln_attrs_batchnorm *)t.first->attrs)->training_mode = 1;
  kiln_node_set_output(t.first, 0, kiln_value_new(g, "y", KILN_VALUE_ACTIVATION));
  kiln_value *rm = kiln_value_new(g, "running_mean", KILN_VALUE_ACTIVATION);
  kiln_node_set_output(t.first, 1, rm);
  kiln_node *neg = node(&t, KILN_OP_NEG, "neg", 1, &rm); /* between the BN and its Relu */
  kiln_graph_add_output(g, neg->out[0]);
  step(&t, KILN_OP_RELU, "relu", NULL, 0);
  finish(&t, 1);
  kiln_diag d = {0};
  cr_assert_null(kiln_lower(g, &d));
  cr_assert(strstr(d.msg, "node 'bn' (BatchNormalization): output 1 is read by 'neg' (Neg) before the epilogue's last step"),
            "%s", d.msg);
  kiln_graph_free(g);
}

/* Model names in the dump's node list are in display form. */
static void mul_hostile_relu(tg *t) {
  mul_relu(t);
  t->steps[0]->name = "re\nlu\x1b[2J";
}

Test(epilogue, dump_shows_fused_node_names_in_display_form) {
  rng = 8;
  float *x = fill(24), *y = fill(24);
  float *inputs[2] = {x, y};
  kiln_graph *g;
  double *got = fused_equals_unfused(mul_hostile_relu, inputs, 24, NULL, &g);
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert(p, "%s", d.msg);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_program_print(p, f);
  fclose(f);
  cr_assert(strstr(text, "# nodes 'mul' (Mul), 're\\x0alu\\x1b[2J' (Relu)\n"), "%s", text);
  cr_assert_null(strchr(text, '\x1b'));
  free(text);
  kiln_graph_free(g);
  free(got), free(x), free(y);
}
