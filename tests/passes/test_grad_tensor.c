/* Gradients of the data-movement ops and ReduceMax (passes/grad_tensor.c,
 * kiln.GatherGrad, kiln.ResizeGrad) against central finite differences
 * (tests/passes/gradcheck.h: f64 < 1e-6, f32 < 1e-3 relative), several
 * attribute combinations each; errors for the modes without a gradient;
 * and a U-Net-like Slice/Resize/Concat graph whose gradient program the
 * LLVM JIT runs to the interpreter's results. */
#include "gradcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../backends/c/kiln_c.h"
#include "../../backends/llvm/kiln_llvm.h"

/* ---- helpers ---- */

static kiln_value *ints(kiln_graph *g, const char *name, int n, const int64_t *v) {
  int64_t *p = kiln_arena_array(&g->arena, (size_t)(n ? n : 1), sizeof *p);
  memcpy(p, v, (size_t)n * sizeof *p);
  return kiln_value_const(g, name, KILN_DT_I64, 1, (int64_t[]){n}, p);
}

static kiln_value *floats(kiln_graph *g, const char *name, int n, const double *v) {
  float *p = kiln_arena_array(&g->arena, (size_t)(n ? n : 1), sizeof *p);
  for (int i = 0; i < n; i++) p[i] = (float)v[i];
  return kiln_value_const(g, name, KILN_DT_F32, 1, (int64_t[]){n}, p);
}

static kiln_graph *one_output(kiln_graph *g, kiln_node *n) {
  kiln_graph_add_output(g, n->out[0]);
  return g;
}

/* ---- Concat ---- */

static kiln_graph *concat(kiln_dtype t, const void *ctx) {
  int axis = *(const int *)ctx, ax = axis < 0 ? axis + 3 : axis;
  kiln_graph *g = gc_graph();
  kiln_value *in[3];
  for (int k = 0; k < 3; k++) {
    int64_t d[3] = {2, 3, 2};
    d[ax] = k + 1;
    char name[8];
    snprintf(name, sizeof name, "x%d", k);
    in[k] = gc_input(g, kiln_arena_strdup(&g->arena, name), t, 3, d);
  }
  kiln_node *n = gc_node(g, KILN_OP_CONCAT, 3, in, 1);
  ((kiln_attrs_concat *)n->attrs)->axis = axis;
  return one_output(g, n);
}

Test(grad_tensor, concat_three_inputs_along_axis_0_1_and_minus_1) {
  const int axes[] = {0, 1, -1};
  for (int i = 0; i < 3; i++) {
    char what[32];
    snprintf(what, sizeof what, "Concat axis %d", axes[i]);
    gradcheck(what, concat, NULL, &axes[i]);
  }
}

/* ---- Split ---- */

typedef struct split_case {
  int rank;
  int64_t dims[3];
  int axis, nout, nsplit;
  int64_t split[3];
  int use; /* -1: y = Concat(out1, out0, out2 * out2) along the axis; else y = out[use] */
} split_case;

static kiln_graph *split(kiln_dtype t, const void *ctx) {
  const split_case *sc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, sc->rank, sc->dims);
  kiln_value *in[2] = {x, sc->nsplit ? ints(g, "split", sc->nsplit, sc->split) : NULL};
  kiln_node *s = gc_node(g, KILN_OP_SPLIT, sc->nsplit ? 2 : 1, in, sc->nout);
  kiln_attrs_split *a = s->attrs;
  a->axis = sc->axis;
  a->num_outputs = sc->nsplit ? 0 : sc->nout;
  if (sc->use >= 0) {
    kiln_graph_add_output(g, s->out[sc->use]);
    return g;
  }
  kiln_node *sq = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){s->out[2], s->out[2]}, 1);
  kiln_node *c = gc_node(g, KILN_OP_CONCAT, 3, (kiln_value *[]){s->out[1], s->out[0], sq->out[0]}, 1);
  ((kiln_attrs_concat *)c->attrs)->axis = sc->axis;
  return one_output(g, c);
}

Test(grad_tensor, split_uneven_with_unused_outputs) {
  const split_case cases[] = {
      {2, {5, 3}, 0, 2, 2, {2, 3}, 1},       /* out0 has no gradient: zeros */
      {2, {2, 7}, 1, 3, 3, {2, 3, 2}, -1},   /* every output, reordered */
      {2, {2, 7}, -1, 3, 0, {0}, 2},         /* num_outputs: 3, 3, 1 */
      {3, {2, 6, 2}, 1, 3, 3, {1, 0, 5}, 0}, /* an empty part */
  };
  for (int i = 0; i < 4; i++) {
    char what[32];
    snprintf(what, sizeof what, "Split case %d", i);
    gradcheck(what, split, NULL, &cases[i]);
  }
}

/* ---- Slice ---- */

typedef struct slice_case {
  int n;
  int64_t starts[3], ends[3], axes[3], steps[3];
} slice_case;

static kiln_graph *slice(kiln_dtype t, const void *ctx) {
  const slice_case *sc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){6, 5, 4});
  kiln_value *in[5] = {x, ints(g, "starts", sc->n, sc->starts), ints(g, "ends", sc->n, sc->ends),
                       ints(g, "axes", sc->n, sc->axes), ints(g, "steps", sc->n, sc->steps)};
  return one_output(g, gc_node(g, KILN_OP_SLICE, 5, in, 1));
}

Test(grad_tensor, slice_negative_starts_ends_axes_and_steps_2_and_minus_1) {
  const slice_case cases[] = {
      {2, {-5, 1}, {-1, 100}, {0, -1}, {2, 1}},                   /* step 2, negative start/end/axis */
      {1, {-1}, {-100}, {1}, {-1}},                               /* the whole axis reversed */
      {2, {4, 3}, {0, 0}, {0, 2}, {-2, -1}},                      /* step -2 and -1 */
      {3, {1, 0, 0}, {6, 5, 4}, {0, 1, 2}, {3, 2, 3}},            /* strided on every axis */
      {3, {-2, 4, -1}, {-7, 1, -5}, {-3, -2, -1}, {-3, -2, -1}},  /* negative everything */
      {1, {2}, {2}, {1}, {1}},                                    /* empty: zero gradient */
  };
  for (int i = 0; i < 6; i++) {
    char what[32];
    snprintf(what, sizeof what, "Slice case %d", i);
    gradcheck(what, slice, NULL, &cases[i]);
  }
}

/* ---- Pad ---- */

typedef struct pad_case {
  int npads, naxes;
  int64_t pads[4], axes[2];
  double value;
  const char *mode; /* NULL: constant */
} pad_case;

static kiln_graph *pad(kiln_dtype t, const void *ctx) {
  const pad_case *pc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 2, (int64_t[]){3, 4});
  void *cv = kiln_arena_alloc(&g->arena, 8);
  kiln_dtype_store_f(t, cv, 0, pc->value);
  kiln_value *in[4] = {x, ints(g, "pads", pc->npads, pc->pads), kiln_value_const(g, "cv", t, 0, NULL, cv),
                       pc->naxes ? ints(g, "axes", pc->naxes, pc->axes) : NULL};
  kiln_node *n = gc_node(g, KILN_OP_PAD, pc->naxes ? 4 : 3, in, 1);
  if (pc->mode) ((kiln_attrs_pad *)n->attrs)->mode = pc->mode;
  return one_output(g, n);
}

Test(grad_tensor, pad_constant_asymmetric_and_negative) {
  const pad_case cases[] = {
      {4, 0, {1, 0, 2, 3}, {0}, 0.0},   /* asymmetric */
      {4, 0, {-1, 2, 1, -2}, {0}, 0.5}, /* crops and pads, a non-zero pad value */
      {2, 1, {2, -1}, {-1}, 0.0},       /* axes input */
      {4, 0, {-1, -1, -1, -1}, {0}, 0}, /* crops only */
  };
  for (int i = 0; i < 4; i++) {
    char what[32];
    snprintf(what, sizeof what, "Pad case %d", i);
    gradcheck(what, pad, NULL, &cases[i]);
  }
}

Test(grad_tensor, pad_edge_reflect_wrap_fold_the_borders_back) {
  const pad_case cases[] = {
      {4, 0, {1, 0, 2, 3}, {0}, 0, "edge"},
      {4, 0, {2, 1, 1, 3}, {0}, 0, "reflect"},   /* borders up to dim - 1 */
      {4, 0, {3, 2, 1, 4}, {0}, 0, "wrap"},      /* borders up to dim */
      {4, 0, {-1, 2, 1, -1}, {0}, 0, "edge"},    /* crops and pads */
      {2, 1, {2, -1}, {-1}, 0, "reflect"},       /* axes input, crop */
      {4, 0, {-1, -1, 1, 2}, {0}, 0, "wrap"},
  };
  for (int i = 0; i < 6; i++) {
    char what[48];
    snprintf(what, sizeof what, "Pad %s case %d", cases[i].mode, i);
    gradcheck(what, pad, NULL, &cases[i]);
  }
}

/* ---- Transpose, Expand ---- */

static kiln_graph *transpose(kiln_dtype t, const void *ctx) {
  const int64_t *perm = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 4, (int64_t[]){2, 3, 4, 5});
  kiln_node *n = gc_node(g, KILN_OP_TRANSPOSE, 1, &x, 1);
  if (perm) ((kiln_attrs_transpose *)n->attrs)->perm = (kiln_ints){4, (int64_t *)perm};
  return one_output(g, n);
}

Test(grad_tensor, transpose_rank_4) {
  static const int64_t perm[4] = {2, 0, 3, 1}, nchw_nhwc[4] = {0, 2, 3, 1};
  gradcheck("Transpose [2,0,3,1]", transpose, NULL, perm);
  gradcheck("Transpose NCHW->NHWC", transpose, NULL, nchw_nhwc);
  gradcheck("Transpose default (reversed)", transpose, NULL, NULL);
}

typedef struct expand_case { int rx, rs; int64_t dx[4], shape[4]; } expand_case;

static kiln_graph *expand(kiln_dtype t, const void *ctx) {
  const expand_case *ec = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, ec->rx, ec->dx);
  return one_output(g, gc_node(g, KILN_OP_EXPAND, 2, (kiln_value *[]){x, ints(g, "shape", ec->rs, ec->shape)}, 1));
}

Test(grad_tensor, expand_with_new_leading_dims) {
  const expand_case cases[] = {
      {2, 4, {3, 1}, {2, 4, 3, 5}}, /* new leading dims and a broadcast one */
      {1, 3, {4}, {2, 3, 4}},
      {2, 3, {1, 1}, {3, 1, 2}},
      {2, 2, {3, 2}, {1, 2}},       /* shape smaller than x: x's shape */
  };
  for (int i = 0; i < 4; i++) {
    char what[32];
    snprintf(what, sizeof what, "Expand case %d", i);
    gradcheck(what, expand, NULL, &cases[i]);
  }
}

/* ---- Gather ---- */

typedef struct gather_case {
  int axis, rx, ri;
  int64_t dx[3], di[2], idx[6];
} gather_case;

static kiln_graph *gather(kiln_dtype t, const void *ctx) {
  const gather_case *gc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, gc->rx, gc->dx);
  int64_t n = 1;
  for (int i = 0; i < gc->ri; i++) n *= gc->di[i];
  int64_t *p = kiln_arena_array(&g->arena, (size_t)n, sizeof *p);
  memcpy(p, gc->idx, (size_t)n * sizeof *p);
  kiln_value *iv = kiln_value_const(g, "indices", KILN_DT_I64, gc->ri, gc->di, p);
  kiln_node *nd = gc_node(g, KILN_OP_GATHER, 2, (kiln_value *[]){x, iv}, 1);
  ((kiln_attrs_gather *)nd->attrs)->axis = gc->axis;
  return one_output(g, nd);
}

Test(grad_tensor, gather_axis_0_and_1_with_repeated_and_negative_indices) {
  const gather_case cases[] = {
      {0, 2, 2, {5, 3}, {3, 2}, {0, -1, 2, 0, 4, -5}},   /* 0 three times (as -5 too), 4 twice */
      {1, 3, 1, {2, 4, 3}, {4}, {3, -1, 3, 0}},          /* axis 1: 3 three times */
      {-1, 3, 2, {2, 3, 4}, {2, 2}, {1, 1, -4, 2}},      /* last axis, 2-D indices */
      {1, 3, 0, {2, 4, 3}, {0}, {-2}},                   /* a scalar index */
  };
  for (int i = 0; i < 4; i++) {
    char what[32];
    snprintf(what, sizeof what, "Gather case %d", i);
    gradcheck(what, gather, NULL, &cases[i]);
  }
}

/* ---- Resize ---- */

typedef struct resize_case {
  const char *mode, *ctm, *nearest;
  int rank, nscales;
  int64_t dims[5];
  double scales[5];
  int64_t sizes[5]; /* used when nscales == 0 */
  int antialias, exclude_outside, naxes;
  int64_t axes[2];  /* the axes attribute: scales/sizes then have naxes entries */
  double roi[8];    /* tf_crop_and_resize: starts, then ends (of the axes) */
} resize_case;

static kiln_graph *resize(kiln_dtype t, const void *ctx) {
  const resize_case *rc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, rc->rank, rc->dims);
  int na = rc->naxes ? rc->naxes : rc->rank;
  kiln_value *in[4] = {x, !strcmp(rc->ctm, "tf_crop_and_resize") ? floats(g, "roi", 2 * na, rc->roi) : NULL,
                       rc->nscales ? floats(g, "scales", na, rc->scales) : NULL,
                       rc->nscales ? NULL : ints(g, "sizes", na, rc->sizes)};
  kiln_node *n = gc_node(g, KILN_OP_RESIZE, 4, in, 1);
  kiln_attrs_resize *a = n->attrs;
  a->mode = rc->mode;
  a->antialias = rc->antialias;
  a->exclude_outside = rc->exclude_outside;
  a->extrapolation_value = 0.25f;
  if (rc->naxes) a->axes = (kiln_ints){rc->naxes, (int64_t *)rc->axes};
  a->coordinate_transformation_mode = rc->ctm;
  if (rc->nearest) a->nearest_mode = rc->nearest;
  return one_output(g, n);
}

Test(grad_tensor, resize_nearest_every_transform_and_rounding) {
  const resize_case cases[] = {
      {"nearest", "half_pixel", NULL, 4, 1, {1, 2, 3, 4}, {1, 1, 2, 2}, {0}},               /* x2 */
      {"nearest", "asymmetric", "floor", 4, 1, {1, 1, 4, 5}, {1, 1, 1.5, 0.6}, {0}},        /* non-integer */
      {"nearest", "align_corners", "round_prefer_ceil", 3, 1, {1, 2, 5}, {1, 1, 1.7}, {0}}, /* 1-D */
      {"nearest", "pytorch_half_pixel", "ceil", 4, 1, {1, 1, 3, 3}, {1, 1, 2.5, 1.4}, {0}},
      {"nearest", "half_pixel_symmetric", "round_prefer_floor", 4, 0, {1, 1, 4, 3}, {0}, {1, 1, 7, 5}},
      {"nearest", "asymmetric", "round_prefer_floor", 5, 1, {1, 1, 2, 3, 2}, {1, 1, 2, 1.5, 3}, {0}}, /* 3-D */
  };
  for (int i = 0; i < 6; i++) {
    char what[48];
    snprintf(what, sizeof what, "Resize nearest case %d (%s)", i, cases[i].ctm);
    gradcheck(what, resize, NULL, &cases[i]);
  }
}

Test(grad_tensor, resize_linear_1d_2d_3d) {
  const resize_case cases[] = {
      {"linear", "half_pixel", NULL, 3, 1, {1, 2, 5}, {1, 1, 2.5}, {0}},                 /* 1-D */
      {"linear", "align_corners", NULL, 4, 0, {1, 1, 3, 4}, {0}, {1, 1, 5, 7}},          /* bilinear */
      {"linear", "asymmetric", NULL, 5, 1, {1, 1, 2, 3, 3}, {1, 1, 2, 1.5, 2}, {0}},     /* trilinear */
      {"linear", "half_pixel", NULL, 4, 1, {2, 1, 5, 6}, {1, 1, 0.6, 0.5}, {0}},          /* downsampling */
      {"linear", "pytorch_half_pixel", NULL, 4, 1, {1, 2, 3, 1}, {1, 1, 2, 3}, {0}},
      {"linear", "half_pixel", NULL, 4, 1, {1, 2, 4, 4}, {1, 1, 2, 2}, {0}},             /* U-Net's x2 */
      {"linear", "half_pixel", NULL, 4, 1, {1, 1, 6, 5}, {1, 1, 0.6, 0.7}, {0}, 1},       /* antialias */
      {"linear", "half_pixel", NULL, 4, 1, {1, 1, 3, 4}, {1, 1, 1.5, 2}, {0}, 0, 1},      /* exclude_outside */
      {"linear", "align_corners", NULL, 4, 1, {2, 3, 3, 4}, {2, 1.5}, {0}, 0, 0, 2, {3, 1}}, /* axes attribute */
      {"linear", "tf_crop_and_resize", NULL, 4, 1, {1, 1, 4, 4}, {1, 1, 1.5, 1.5}, {0}, 0, 0, 0, {0},
       {0, 0, -0.2, 0.1, 1, 1, 0.9, 1.2}}, /* extrapolated positions: no gradient */
  };
  for (int i = 0; i < 10; i++) {
    char what[48];
    snprintf(what, sizeof what, "Resize linear case %d (%s)", i, cases[i].ctm);
    gradcheck(what, resize, NULL, &cases[i]);
  }
}

/* ---- ReduceMax ---- */

typedef struct rmax_case { int keepdims, naxes; int64_t axes[3]; } rmax_case;

static kiln_graph *reduce_max(kiln_dtype t, const void *ctx) {
  const rmax_case *rc = ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 3, (int64_t[]){3, 4, 5});
  kiln_value *in[2] = {x, rc->naxes ? ints(g, "axes", rc->naxes, rc->axes) : NULL};
  kiln_node *n = gc_node(g, KILN_OP_REDUCE_MAX, rc->naxes ? 2 : 1, in, 1);
  ((kiln_attrs_reduce *)n->attrs)->keepdims = rc->keepdims;
  return one_output(g, n);
}

/* Distinct values 2/n apart (a permutation of a grid), so no group has a
 * tie and h = 1e-6 never moves the maximum. */
static void distinct(int k, double *x, int64_t n, uint64_t *rng, const void *ctx) {
  (void)k, (void)rng, (void)ctx;
  for (int64_t i = 0; i < n; i++) x[i] = -1 + 2.0 * (double)((i * 37) % n) / (double)n;
}

Test(grad_tensor, reduce_max_with_and_without_keepdims) {
  const rmax_case cases[] = {{1, 1, {1}}, {0, 2, {0, 2}}, {0, 0, {0}}, {1, 1, {-1}}, {0, 2, {2, 1}}};
  for (int i = 0; i < 5; i++) {
    char what[32];
    snprintf(what, sizeof what, "ReduceMax case %d", i);
    gradcheck(what, reduce_max, distinct, &cases[i]);
  }
}

/* With ties the whole gradient goes to the first maximum (not split). */
Test(grad_tensor, reduce_max_ties_go_to_the_first_maximum) {
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 2, (int64_t[]){2, 4});
  kiln_node *n = gc_node(g, KILN_OP_REDUCE_MAX, 2, (kiln_value *[]){x, ints(g, "axes", 1, (int64_t[]){1})}, 1);
  ((kiln_attrs_reduce *)n->attrs)->keepdims = 0;
  kiln_node *s = gc_node(g, KILN_OP_REDUCE_SUM, 1, (kiln_value *[]){n->out[0]}, 1);
  ((kiln_attrs_reduce *)s->attrs)->keepdims = 0;
  kiln_graph_add_output(g, s->out[0]); /* the loss: output 0 */
  kiln_diag d = {0};
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *grad;
  cr_assert_eq(kiln_autodiff(g, s->out[0], 1, &x, &grad, &d), 0, "%s", d.msg);
  kiln_graph_add_output(g, grad);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_INFER_SHAPES};
  cr_assert_eq(kiln_pipeline_run(&po, &pl, &d), 0, "%s", d.msg);
  kiln_program *p = pl.program;
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  float xin[8] = {1, 3, 3, 2, 5, 5, 5, 5}, gout[8], loss[2];
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    else if (buf->kind == KILN_BUF_INPUT) bufs[b] = xin;
    else if (buf->kind == KILN_BUF_OUTPUT) bufs[b] = buf->io_index ? (void *)gout : (void *)loss;
  }
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  cr_assert_eq(loss[0], 8.0f);
  const float want[8] = {0, 1, 0, 0, 1, 0, 0, 0};
  for (int i = 0; i < 8; i++) cr_assert_eq(gout[i], want[i], "element %d: %g", i, gout[i]);
  free(bufs);
  free(ws);
  kiln_graph_free(g);
}

/* ---- what has no gradient yet: one located error naming it ---- */

static void expect_refusal(kiln_graph *g, kiln_value *x, kiln_value *y, const char *needle) {
  kiln_diag d = {0};
  kiln_node *s = gc_node(g, KILN_OP_REDUCE_SUM, 1, &y, 1);
  ((kiln_attrs_reduce *)s->attrs)->keepdims = 0;
  kiln_graph_add_output(g, s->out[0]);
  cr_assert_eq(kiln_pass_infer_shapes(g, &d), 0, "%s", d.msg);
  kiln_value *grad;
  cr_assert_neq(kiln_autodiff(g, s->out[0], 1, &x, &grad, &d), 0, "no error (wanted %s)", needle);
  cr_assert(strstr(d.msg, needle), "message: %s", d.msg);
  cr_assert(!strchr(d.msg, '\n'), "one line: %s", d.msg);
  kiln_graph_free(g);
}

Test(grad_tensor, reflect_past_a_cropped_axis_and_cubic_resize_are_refused_by_name) {
  {
    /* axis 1 keeps 2 of 4 elements and reflects 3 before them */
    kiln_graph *g = gc_graph();
    kiln_value *x = gc_input(g, "x", KILN_DT_F32, 2, (int64_t[]){3, 4});
    kiln_node *n = gc_node(g, KILN_OP_PAD, 2, (kiln_value *[]){x, ints(g, "pads", 4, (int64_t[]){0, 3, 0, -2})}, 1);
    n->name = "the_pad";
    ((kiln_attrs_pad *)n->attrs)->mode = "reflect";
    expect_refusal(g, x, n->out[0], "'reflect' mode with pads reaching past the kept 2 elements of axis 1 is not differentiable yet");
  }
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", KILN_DT_F32, 4, (int64_t[]){1, 1, 3, 3});
  kiln_node *n = gc_node(g, KILN_OP_RESIZE, 3, (kiln_value *[]){x, NULL, floats(g, "scales", 4, (double[]){1, 1, 2, 2})}, 1);
  n->name = "up";
  ((kiln_attrs_resize *)n->attrs)->mode = "cubic";
  expect_refusal(g, x, n->out[0], "'cubic' mode is not differentiable yet");
}

/* ---- a U-Net-like block through the whole pipeline, interpreter vs JIT ----
 * skip = x * w (w broadcast per channel); down = Slice(skip, step 2 on H and W);
 * up = Resize(down, linear x2); cat = Concat(skip, up, axis 1); the top
 * rows cropped by a Slice, flattened by a Reshape (a view), transposed. */
static kiln_graph *unet(kiln_dtype t, const void *ctx) {
  (void)ctx;
  kiln_graph *g = gc_graph();
  kiln_value *x = gc_input(g, "x", t, 4, (int64_t[]){1, 2, 6, 6});
  kiln_value *w = gc_input(g, "w", t, 4, (int64_t[]){1, 2, 1, 1});
  kiln_value *skip = gc_node(g, KILN_OP_MUL, 2, (kiln_value *[]){x, w}, 1)->out[0];
  kiln_value *sl[5] = {skip, ints(g, "s0", 2, (int64_t[]){0, 1}), ints(g, "e0", 2, (int64_t[]){6, 6}),
                       ints(g, "a0", 2, (int64_t[]){2, 3}), ints(g, "p0", 2, (int64_t[]){2, 2})};
  kiln_value *down = gc_node(g, KILN_OP_SLICE, 5, sl, 1)->out[0];
  kiln_node *up = gc_node(g, KILN_OP_RESIZE, 3, (kiln_value *[]){down, NULL, floats(g, "sc", 4, (double[]){1, 1, 2, 2})}, 1);
  ((kiln_attrs_resize *)up->attrs)->mode = "linear";
  kiln_node *cat = gc_node(g, KILN_OP_CONCAT, 2, (kiln_value *[]){skip, up->out[0]}, 1);
  ((kiln_attrs_concat *)cat->attrs)->axis = 1;
  kiln_value *cr[4] = {cat->out[0], ints(g, "s1", 1, (int64_t[]){1}), ints(g, "e1", 1, (int64_t[]){6}),
                       ints(g, "a1", 1, (int64_t[]){2})};
  kiln_value *crop = gc_node(g, KILN_OP_SLICE, 4, cr, 1)->out[0];
  kiln_value *flat = gc_node(g, KILN_OP_RESHAPE, 2, (kiln_value *[]){crop, ints(g, "shape", 2, (int64_t[]){4, 30})}, 1)->out[0];
  kiln_node *tr = gc_node(g, KILN_OP_TRANSPOSE, 1, &flat, 1);
  return one_output(g, tr);
}

Test(grad_tensor, unet_block_gradient_jit_matches_interpreter) {
  gradcheck("U-Net-like block", unet, NULL, NULL);
  kiln_diag d = {0};
  gc_prog gp;
  cr_assert_eq(gc_compile(unet, NULL, KILN_DT_F32, &gp, &d), 0, "%s", d.msg);
  kiln_program *p = gp.p;
  uint64_t s = 99;
  for (int k = 0; k < gp.nin; k++)
    for (int64_t i = 0; i < gp.numel[k]; i++) ((float *)gp.bufs[gp.in_buf[k]])[i] = (float)gc_uniform(&s, -1, 1);
  gc_run(&gp);
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert(j, "%s", d.msg);
  void **jb = calloc((size_t)p->nbufs + 1, sizeof *jb);
  void *ws = calloc(1, (size_t)p->workspace_bytes + 64);
  kiln_llvm_jit_bind(p, jb, ws);
  float *outs[8] = {0};
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_INPUT) jb[b] = gp.bufs[b];
    if (buf->kind == KILN_BUF_OUTPUT) jb[b] = outs[buf->io_index] = calloc((size_t)buf->numel + 1, sizeof(float));
  }
  kiln_llvm_jit_run(j, jb);
  /* the JIT may contract a multiply and an add into an FMA and the
   * interpreter does not: a few f32 roundings apart per element */
  int checked = 0;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind != KILN_BUF_OUTPUT) continue;
    const float *want = gp.bufs[b], *got = outs[buf->io_index];
    for (int64_t i = 0; i < buf->numel; i++)
      cr_assert(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])), "%s[%lld]: JIT %.9g, interpreter %.9g", buf->name,
                (long long)i, got[i], want[i]);
    checked++;
    free(outs[buf->io_index]);
  }
  cr_assert_eq(checked, 3, "the loss and two gradients");
  /* the C printer prints the same program as C99 that cc compiles */
  kiln_c_output co = {0};
  kiln_c_options opt = {.prefix = "unet", .model = "unet"};
  cr_assert_eq(kiln_c_emit(p, &opt, &co, &d), 0, "%s", d.msg);
  char dir[] = "/tmp/kiln_grad_tensor_XXXXXX", path[128], cmd[512];
  cr_assert(mkdtemp(dir));
  const char *files[3][2] = {{"unet.h", co.header}, {"unet.c", co.source}, {"unet_weights.c", co.weights}};
  for (int f = 0; f < 3; f++) {
    if (!files[f][1]) continue;
    snprintf(path, sizeof path, "%s/%s", dir, files[f][0]);
    FILE *fp = fopen(path, "w");
    cr_assert(fp);
    fputs(files[f][1], fp);
    fclose(fp);
  }
  snprintf(cmd, sizeof cmd, "cd %s && cc -std=c99 -c unet.c -o unet.o 2>&1 && rm -f unet.o unet.c unet.h unet_weights.c", dir);
  cr_assert_eq(system(cmd), 0, "cc failed on the printed C (kept in %s)", dir);
  rmdir(dir);
  kiln_c_output_free(&co);
  kiln_llvm_jit_free(j);
  free(jb);
  free(ws);
  gc_free(&gp);
}

/* ---- the gradient ops' shape functions check their inputs ---- */

static const char *shape_error(kiln_graph *g, kiln_node *n, kiln_diag *d) {
  kiln_shape_ctx sc = {g, d, 0};
  cr_assert_neq(kiln_op_get(n->op)->shape(&sc, n), 0, "accepted");
  cr_assert(!strchr(d->msg, '\n'), "one line: %s", d->msg);
  return d->msg;
}

Test(grad_tensor, gather_grad_and_resize_grad_refuse_inconsistent_inputs) {
  kiln_graph *g = gc_graph();
  kiln_value *dy = gc_input(g, "dy", KILN_DT_F32, 2, (int64_t[]){3, 4});
  kiln_value *idx = kiln_value_const(g, "idx", KILN_DT_I64, 1, (int64_t[]){3}, (int64_t[]){0, 5, 1});
  kiln_diag d = {0};
  /* dY [3, 4] cannot come from Gather(axis 0, 3 indices) of a [5, 3] X */
  kiln_node *n = gc_node(g, KILN_OP_GATHER_GRAD, 3, (kiln_value *[]){dy, idx, ints(g, "s", 2, (int64_t[]){5, 3})}, 1);
  cr_assert(strstr(shape_error(g, n, &d), "not what Gather makes"), "%s", d.msg);
  /* index 5 is outside an axis of 5 */
  d = (kiln_diag){0};
  n = gc_node(g, KILN_OP_GATHER_GRAD, 3, (kiln_value *[]){dy, idx, ints(g, "s2", 2, (int64_t[]){5, 4})}, 1);
  cr_assert(strstr(shape_error(g, n, &d), "out of range"), "%s", d.msg);
  /* integer dY */
  d = (kiln_diag){0};
  kiln_value *iy = gc_input(g, "iy", KILN_DT_I32, 2, (int64_t[]){3, 4});
  n = gc_node(g, KILN_OP_GATHER_GRAD, 3, (kiln_value *[]){iy, idx, ints(g, "s3", 2, (int64_t[]){6, 4})}, 1);
  cr_assert(strstr(shape_error(g, n, &d), "floating-point"), "%s", d.msg);
  /* Resize x2 of [3, 2] is [6, 4], not [3, 4] */
  d = (kiln_diag){0};
  n = gc_node(g, KILN_OP_RESIZE_GRAD, 4,
              (kiln_value *[]){dy, ints(g, "s4", 2, (int64_t[]){3, 2}), NULL, floats(g, "sc", 2, (double[]){2, 2})}, 1);
  cr_assert(strstr(shape_error(g, n, &d), "Resize makes [6,4]"), "%s", d.msg);
  /* cubic */
  d = (kiln_diag){0};
  n = gc_node(g, KILN_OP_RESIZE_GRAD, 4,
              (kiln_value *[]){dy, ints(g, "s5", 2, (int64_t[]){3, 2}), NULL, floats(g, "sc2", 2, (double[]){1, 2})}, 1);
  ((kiln_attrs_resize *)n->attrs)->mode = "cubic";
  cr_assert(strstr(shape_error(g, n, &d), "cubic"), "%s", d.msg);
  kiln_graph_free(g);
}
