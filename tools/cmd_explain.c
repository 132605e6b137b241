/* kiln explain: which parts of the input drove a classifier's decision.
 *
 * The model becomes an explanation graph (passes/explain.h: Grad-CAM,
 * Grad-CAM++ or saliency, all in-graph), compiled by the LLVM JIT and run
 * once; integrated gradients run the saliency graph S + 2 times (at x for
 * the class, at the zero baseline, at x k/S for k = 1..S).  The map is
 * brought to the input's resolution by linear interpolation per axis with
 * half-pixel centres (ONNX Resize linear, half_pixel: input coordinate
 * (o + 0.5) in/out - 0.5, clamped to the edges) and drawn over the input
 * (the photo with --image, the first channel min-max normalised with
 * --input) in a jet colour map with a colour bar.  Everything goes to a
 * temporary sibling of DIR renamed into place once all of it is written
 * (out_dir.c): a failure leaves no DIR behind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/llvm/kiln_llvm.h"
#include "../passes/explain.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "image_io.h"
#include "labels.h"
#include "tensor_io.h"
#include "train_plot.h"

static const char help[] =
    "usage: kiln explain MODEL (--input NAME=FILE | --image FILE) --out DIR [options]\n\n"
    "Explains a classifier's decision for one input (batch 1): writes\n"
    "  DIR/cam.npy            the map at the layer's resolution (float32, before normalisation)\n"
    "  DIR/cam_upsampled.npy  the map at the input's resolution (linear, half-pixel centres)\n"
    "  DIR/overlay.png        the map (jet colours, with a colour bar) over the input;\n"
    "                         3-D inputs: overlay_slice_NNN.png (at most 64 slices) and\n"
    "                         overlay.png, the slice holding the peak\n"
    "and prints one line: class, score (the logit: a final Softmax's input), peak location.\n\n"
    "options:\n"
    "  --class C              the class to explain (default: the predicted one)\n"
    "  --method M             gradcam (default), gradcam++, saliency, integrated-gradients\n"
    "  --layer NAME           the feature map for Grad-CAM (default: the last 4-D/5-D one\n"
    "                         before global pooling; an unknown name lists candidates)\n"
    "  --steps S              integrated gradients: S points on the path from 0 to x (default 64);\n"
    "                         also writes attributions.npy (x times the mean gradient)\n"
    "  --labels FILE          class names (default: the model's kiln.labels)\n"
    "  --threads N            run parallel loops on N threads (default 1)\n"
    "  --resize, --channels, --layout, --scale, --mean, --std, as 'kiln run --image'\n"
    "                         (defaults from the model's kiln.image.* metadata)\n";

enum { METHOD_IG = 3, MAX_SLICES = 64 };
#define MAX_PIXELS ((int64_t)100000000)
static const char *const settings[] = {"resize", "channels", "layout", "scale", "mean", "std"};

/* One compiled explanation program with its buffers. */
typedef struct ex_prog {
  kiln_graph *g;
  kiln_program *p;
  kiln_llvm_jit *jit;
  void **bufs, **owned, *ws;
  int in_b, cls_b, cam_b, logits_b, grad_b;
  kiln_explain_info info;
} ex_prog;

static void ex_free(ex_prog *e) {
  for (int b = 0; e->owned && e->p && b < e->p->nbufs; b++) free(e->owned[b]);
  free(e->owned);
  free(e->bufs);
  free(e->ws);
  kiln_llvm_jit_free(e->jit);
  kiln_graph_free(e->g);
}

static int buf_named(const kiln_program *p, const char *name) {
  for (int b = 0; b < p->nbufs; b++)
    if (!strcmp(p->bufs[b]->name, name)) return b;
  return -1;
}

typedef struct ex_args {
  const char *model, *input_file, *image, *out, *layer, *labels;
  char input_name[1024];
  const char *set_val[6];
  int method, threads;
  int64_t cls, steps;
} ex_args;

/* Imports, binds the input's shape (from the tensor, or the image size),
 * builds and compiles the explanation graph.  For --image *t is filled
 * with the preprocessed image here (its size is the model's). */
static int ex_compile(const ex_args *a, kiln_explain_method m, kiln_tensor *t, const kiln_image *im,
                      kiln_image_prep *prep, ex_prog *e, kiln_diag *d) {
  memset(e, 0, sizeof *e);
  e->g = kiln_cli_import(a->model, d);
  if (!e->g) return -1;
  kiln_graph *g = e->g;
  kiln_loc loc = {.file = a->model, .node_index = -1};
  if (g->ninputs != 1)
    return kiln_error(d, &loc, "kiln explain needs a model with one input; this one has %d", g->ninputs);
  kiln_value *in = g->inputs[0];
  char ty[256];
  kiln_value_type_str(g, in, ty, sizeof ty);
  if (a->input_file) {
    if (strcmp(in->name, a->input_name))
      return kiln_error(d, &loc, "the model has no input named '%s' (its input is '%s')", a->input_name, in->name);
    if (kiln_cli_bind_input(g, in, t, a->input_file, d)) return -1;
  } else {
    kiln_image_prep_init(prep);
    prep->nhwc = -1;
    if (kiln_image_prep_from_meta(prep, g, d)) return -1;
    for (int s = 0; s < 6; s++) {
      char err[128];
      if (a->set_val[s] && kiln_image_prep_set(prep, settings[s], a->set_val[s], err, sizeof err))
        return kiln_error(d, &loc, "--%s", err);
    }
    if (in->rank != 4 || !kiln_dtype_is_float(in->dtype) || in->dims[1] != 3 || KILN_DIM_IS_SYM(in->dims[2]) ||
        KILN_DIM_IS_SYM(in->dims[3]) || in->dims[2] > 65536 || in->dims[3] > 65536)
      return kiln_error(d, &loc, "input '%s' is %s; --image needs an NCHW float input [N, 3, H, W] of fixed size",
                        in->name, ty);
    if (prep->nhwc > 0) return kiln_error(d, &loc, "kiln explain reads NCHW image inputs only");
    prep->nhwc = 0;
    prep->height = (int)in->dims[2];
    prep->width = (int)in->dims[3];
    if (KILN_DIM_IS_SYM(in->dims[0])) kiln_pass_bind_sym(g, in->dims[0], 1);
    if (in->dims[0] != 1) return kiln_error(d, &loc, "input '%s' is %s; kiln explain explains one image (batch 1)", in->name, ty);
    t->dtype = in->dtype;
    t->rank = 4;
    for (int k = 0; k < 4; k++) t->dims[k] = in->dims[k];
    t->nbytes = (size_t)(3 * in->dims[2] * in->dims[3]) * kiln_dtype_size(in->dtype);
    if (!(t->data = calloc(1, t->nbytes)) || kiln_image_to_tensor(im, prep, in->dtype, t->data, 0))
      return kiln_error(d, &loc, "out of memory");
  }
  if (in->rank < 3)
    return kiln_error(d, &loc, "input '%s' is %s; kiln explain needs [N, C, spatial...] (an image or a volume)", in->name, ty);
  if (in->dims[0] != 1)
    return kiln_error(d, &loc, "input '%s' has batch %lld; kiln explain explains one item (batch 1)", in->name,
                      (long long)in->dims[0]);
  for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), 1);
  kiln_pipeline pl;
  kiln_target target = kiln_llvm_target(0);
  kiln_explain_opts eo = {.method = m, .layer = a->layer, .info = &e->info};
  kiln_pipeline_opts po = {.graph = g, .target = &target, .explain = &eo};
  if (kiln_pipeline_run(&po, &pl, d)) return -1;
  kiln_program *p = e->p = pl.program;
  if (!(e->jit = kiln_llvm_jit_compile(p, d))) return -1;
  if (kiln_llvm_jit_set_threads(e->jit, a->threads)) return kiln_error(d, NULL, "cannot start %d threads", a->threads);
  e->bufs = calloc((size_t)p->nbufs + 1, sizeof *e->bufs);
  e->owned = calloc((size_t)p->nbufs + 1, sizeof *e->owned);
  e->ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  if (!e->bufs || !e->owned || !e->ws) return kiln_error(d, &loc, "out of memory");
  kiln_llvm_jit_bind(p, e->bufs, e->ws);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind != KILN_BUF_INPUT && buf->kind != KILN_BUF_OUTPUT) continue;
    if (!(e->bufs[b] = e->owned[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8)))
      return kiln_error(d, &loc, "out of memory");
  }
  e->in_b = buf_named(p, in->name);
  e->cls_b = buf_named(p, "class");
  e->cam_b = buf_named(p, "cam");
  e->logits_b = buf_named(p, "logits");
  e->grad_b = buf_named(p, "grad");
  if (e->in_b < 0 || e->cls_b < 0 || e->cam_b < 0 || e->logits_b < 0 || (m == KILN_EXPLAIN_SALIENCY && e->grad_b < 0))
    return kiln_error(d, &loc, "internal: the explanation program lacks a buffer");
  if ((size_t)p->bufs[e->in_b]->numel * kiln_dtype_size(p->bufs[e->in_b]->dtype) != t->nbytes)
    return kiln_error(d, &loc, "internal: input size");
  return 0;
}

/* Runs with input x (the tensor's dtype) and class cls; returns the
 * explained class (cls, or the argmax of the logits) and its score. */
static int64_t ex_run(ex_prog *e, const void *x, size_t nbytes, int64_t cls, double *score) {
  memcpy(e->bufs[e->in_b], x, nbytes);
  ((int64_t *)e->bufs[e->cls_b])[0] = cls;
  kiln_llvm_jit_run(e->jit, e->bufs);
  const float *lg = e->bufs[e->logits_b];
  int64_t C = e->p->bufs[e->logits_b]->numel, c = cls;
  if (c < 0) {
    c = 0;
    for (int64_t i = 1; i < C; i++)
      if (lg[i] > lg[c]) c = i;
  }
  *score = lg[c];
  return c;
}

/* Linear resampling of axis n_in -> n_out of a [outer, n, inner] array
 * with half-pixel centres, clamped at the edges (ONNX Resize linear). */
static void resample_axis(const double *in, double *out, int64_t outer, int64_t n_in, int64_t n_out, int64_t inner) {
  for (int64_t o = 0; o < n_out; o++) {
    double xf = ((double)o + 0.5) * (double)n_in / (double)n_out - 0.5;
    if (xf < 0) xf = 0;
    int64_t i0 = (int64_t)floor(xf), i1 = i0 + 1;
    double f = xf - (double)i0;
    if (i1 >= n_in) { i0 = i1 = n_in - 1; f = 0; }
    for (int64_t a = 0; a < outer; a++)
      for (int64_t b = 0; b < inner; b++)
        out[(a * n_out + o) * inner + b] = in[(a * n_in + i0) * inner + b] * (1 - f) + in[(a * n_in + i1) * inner + b] * f;
  }
}

/* The map (rank-1 spatial dims sp_in) resampled to sp_out; malloc'd. */
static double *upsample(const double *cam, int nsp, const int64_t *sp_in, const int64_t *sp_out) {
  int64_t cur[KILN_MAX_RANK], total = 1, big = 1;
  for (int i = 0; i < nsp; i++) {
    cur[i] = sp_in[i];
    total *= sp_in[i];
    big *= sp_in[i] > sp_out[i] ? sp_in[i] : sp_out[i];
  }
  double *a = malloc(sizeof *a * (size_t)big), *b = malloc(sizeof *b * (size_t)big);
  if (!a || !b) { free(a); free(b); return NULL; }
  memcpy(a, cam, sizeof *a * (size_t)total);
  for (int ax = 0; ax < nsp; ax++) {
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= cur[i];
    for (int i = ax + 1; i < nsp; i++) inner *= cur[i];
    resample_axis(a, b, outer, cur[ax], sp_out[ax], inner);
    cur[ax] = sp_out[ax];
    double *tmp = a;
    a = b;
    b = tmp;
  }
  free(b);
  return a;
}

static int write_npy(const char *tmp, const char *name, const double *v, int rank, const int64_t *dims, kiln_diag *d) {
  kiln_tensor t = {.name = name, .dtype = KILN_DT_F32, .rank = rank};
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= t.dims[i] = dims[i];
  float *f = malloc(sizeof *f * (size_t)(n ? n : 1));
  if (!f) return kiln_error(d, NULL, "out of memory");
  for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
  t.data = f;
  t.nbytes = sizeof *f * (size_t)n;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", tmp, name);
  int rc = kiln_npy_write(path, &t, d);
  free(f);
  return rc;
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* Jet-like colour map of v in [0, 1] (blue - cyan - yellow - red). */
static void jet(double v, double rgb[3]) {
  rgb[0] = clamp01(1.5 - fabs(4 * v - 3));
  rgb[1] = clamp01(1.5 - fabs(4 * v - 2));
  rgb[2] = clamp01(1.5 - fabs(4 * v - 1));
}

/* One overlay: base (3 planes of H x W, 0..255) blended half and half with
 * the jet colours of heat (H x W in 0..1), enlarged to at least 256 pixels
 * (nearest neighbour), a colour bar labelled lo (bottom) and hi (top). */
static int overlay_png(const double *base, const double *heat, int64_t H, int64_t W, double lo, double hi,
                       unsigned char **png, size_t *len) {
  int64_t big = H > W ? H : W;
  int sc = big >= 256 ? 1 : (int)((256 + big - 1) / big);
  if (sc > 16) sc = 16;
  int64_t ih = H * sc, iw = W * sc, barh = ih < 120 ? 120 : ih;
  int64_t cw = iw + 16 + 20 + 8 + 12 * 10, ch = barh + 16;
  if (cw * ch > 64LL << 20) return -1;
  unsigned char *rgb = malloc((size_t)(3 * cw * ch));
  if (!rgb) return -1;
  memset(rgb, 255, (size_t)(3 * cw * ch));
  for (int64_t y = 0; y < ih; y++)
    for (int64_t x = 0; x < iw; x++) {
      int64_t s = (y / sc) * W + x / sc;
      double c[3];
      jet(heat[s], c);
      unsigned char *px = rgb + 3 * ((y + 8) * cw + x);
      for (int k = 0; k < 3; k++) px[k] = (unsigned char)lround(0.5 * base[k * H * W + s] + 0.5 * 255 * c[k]);
    }
  int64_t bx = iw + 16;
  for (int64_t y = 0; y < barh; y++) {
    double c[3];
    jet(1 - (double)y / (double)(barh - 1), c);
    for (int64_t x = 0; x < 20; x++)
      for (int k = 0; k < 3; k++) rgb[3 * ((y + 8) * cw + bx + x) + k] = (unsigned char)lround(255 * c[k]);
  }
  char lab[32];
  snprintf(lab, sizeof lab, "%.3g", hi);
  kiln_plot_text(rgb, (int)cw, (int)ch, (int)(bx + 28), 8, lab);
  snprintf(lab, sizeof lab, "%.3g", lo);
  kiln_plot_text(rgb, (int)cw, (int)ch, (int)(bx + 28), (int)(barh + 8 - 14), lab);
  int rc = kiln_plot_png(rgb, (int)cw, (int)ch, png, len);
  free(rgb);
  return rc;
}

static int parse_args(int argc, char **argv, ex_args *a) {
  *a = (ex_args){.method = KILN_EXPLAIN_GRADCAM, .threads = 1, .cls = -1, .steps = 64};
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) { fputs(help, stdout); return 3; }
    if (o[0] != '-' || !o[1]) {
      if (a->model) return kiln_cli_usage_error("explain", "more than one model given ('%s' and '%s')", a->model, o);
      a->model = o;
      continue;
    }
    if (i + 1 >= argc) return kiln_cli_usage_error("explain", "%s needs a value", o);
    const char *v = argv[++i];
    int k = -1;
    for (int s = 0; s < 6; s++)
      if (!strncmp(o, "--", 2) && !strcmp(o + 2, settings[s])) k = s;
    if (k >= 0) {
      kiln_image_prep probe;
      char err[128];
      kiln_image_prep_init(&probe);
      if (kiln_image_prep_set(&probe, settings[k], v, err, sizeof err)) return kiln_cli_usage_error("explain", "--%s", err);
      a->set_val[k] = v;
    } else if (!strcmp(o, "--input")) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) return kiln_cli_usage_error("explain", "--input must be NAME=FILE, got '%s'", v);
      if (a->input_file) return kiln_cli_usage_error("explain", "one --input only (kiln explain explains one item)");
      snprintf(a->input_name, sizeof a->input_name, "%.*s", (int)(eq - v), v);
      a->input_file = eq + 1;
    } else if (!strcmp(o, "--image")) {
      if (a->image) return kiln_cli_usage_error("explain", "one --image only");
      a->image = v;
    } else if (!strcmp(o, "--out")) a->out = v;
    else if (!strcmp(o, "--layer")) a->layer = v;
    else if (!strcmp(o, "--labels")) a->labels = v;
    else if (!strcmp(o, "--method")) {
      a->method = !strcmp(v, "integrated-gradients") ? METHOD_IG : kiln_explain_method_lookup(v);
      if (a->method < 0)
        return kiln_cli_usage_error("explain", "--method must be gradcam, gradcam++, saliency or integrated-gradients, got '%s'", v);
    } else if (!strcmp(o, "--class")) {
      char *end;
      long long c = strtoll(v, &end, 10);
      if (!*v || *end || c < -1 || c > (1LL << 40)) return kiln_cli_usage_error("explain", "--class must be a class index >= 0 (or -1: the predicted class), got '%s'", v);
      a->cls = c;
    } else if (!strcmp(o, "--steps") || !strcmp(o, "--threads")) {
      int64_t n = kiln_cli_parse_count(v);
      if (n < 0 || n > 100000) return kiln_cli_usage_error("explain", "%s must be a positive integer, got '%s'", o, v);
      if (o[2] == 's') a->steps = n;
      else a->threads = (int)n;
    } else return kiln_cli_usage_error("explain", "unknown option '%s'", o);
  }
  if (!a->model) return kiln_cli_usage_error("explain", "no model given");
  if (!a->input_file == !a->image) return kiln_cli_usage_error("explain", "give exactly one of --input NAME=FILE and --image FILE");
  if (!a->out) return kiln_cli_usage_error("explain", "--out DIR is required");
  if (a->layer && (a->method == KILN_EXPLAIN_SALIENCY || a->method == METHOD_IG))
    return kiln_cli_usage_error("explain", "--layer applies to gradcam and gradcam++ only");
  return 0;
}

int kiln_cmd_explain(int argc, char **argv) {
  ex_args a;
  int r = parse_args(argc, argv, &a);
  if (r) return r == 3 ? 0 : r;
  kiln_diag d = {0};
  kiln_tensor t = {0};
  kiln_image im = {0};
  kiln_image_prep prep;
  kiln_labels labels = {0};
  ex_prog e = {0};
  double *cam = NULL, *up = NULL, *acc = NULL, *base = NULL, *heat = NULL, *attr = NULL;
  void *xs = NULL;
  unsigned char *png = NULL;
  char tmp[4096] = "";
  int rc = 1;
  if (kiln_out_dir_check(a.out, &d)) goto done;
  if (a.input_file ? kiln_tensor_read(a.input_file, &t, &d) : kiln_image_read(a.image, MAX_PIXELS, &im, &d)) goto done;
  kiln_explain_method m = a.method == METHOD_IG ? KILN_EXPLAIN_SALIENCY : (kiln_explain_method)a.method;
  if (ex_compile(&a, m, &t, &im, &prep, &e, &d)) goto done;
  if (a.labels ? kiln_labels_read(a.labels, &labels, &d) : kiln_labels_from_meta(e.g, &labels, &d)) goto done;
  const kiln_buf *xb = e.p->bufs[e.in_b], *cb = e.p->bufs[e.cam_b];
  if (a.cls >= e.info.classes) {
    kiln_error(&d, NULL, "%s: --class %lld is out of range: the model has %lld classes (0..%lld)", a.model,
               (long long)a.cls, (long long)e.info.classes, (long long)e.info.classes - 1);
    goto done;
  }
  double score;
  int64_t cls = ex_run(&e, t.data, t.nbytes, a.cls, &score);
  int nsp = xb->rank - 2; /* the input's spatial dims */
  int64_t sp_out[KILN_MAX_RANK], sp_in[KILN_MAX_RANK], npix = 1, ncam = cb->numel;
  for (int i = 0; i < nsp; i++) npix *= sp_out[i] = xb->dims[2 + i];
  const int64_t C = xb->dims[1];
  if (!(cam = malloc(sizeof *cam * (size_t)ncam))) goto oom;
  for (int64_t i = 0; i < ncam; i++) cam[i] = ((const float *)e.bufs[e.cam_b])[i];
  double ig_sum = 0, score0 = 0;
  if (a.method == METHOD_IG) {
    /* attributions = x * mean_k grad(x k / S), k = 1..S (right Riemann sum), baseline 0 */
    int64_t n = xb->numel;
    size_t es = kiln_dtype_size(xb->dtype);
    if (!(acc = calloc((size_t)n, sizeof *acc)) || !(attr = malloc(sizeof *attr * (size_t)n)) ||
        !(xs = calloc((size_t)n, es)))
      goto oom;
    ex_run(&e, xs, t.nbytes, cls, &score0);
    for (int64_t k = 1; k <= a.steps; k++) {
      for (int64_t i = 0; i < n; i++)
        kiln_dtype_store_f(xb->dtype, xs, (size_t)i, kiln_dtype_load_f(xb->dtype, t.data, (size_t)i) * (double)k / (double)a.steps);
      double s;
      ex_run(&e, xs, t.nbytes, cls, &s);
      for (int64_t i = 0; i < n; i++) acc[i] += ((const float *)e.bufs[e.grad_b])[i];
    }
    for (int64_t i = 0; i < n; i++) {
      attr[i] = kiln_dtype_load_f(xb->dtype, t.data, (size_t)i) * acc[i] / (double)a.steps;
      ig_sum += attr[i];
    }
    /* the map: attributions summed over channels (signed: it sums to the completeness total) */
    for (int64_t p = 0; p < npix; p++) {
      cam[p] = 0;
      for (int64_t c = 0; c < C; c++) cam[p] += attr[c * npix + p];
    }
  }
  int cam_rank = cb->rank;
  if (cam_rank - 1 != nsp) {
    kiln_error(&d, NULL, "%s: the map has %d spatial dims, the input %d: cannot upsample", a.model, cam_rank - 1, nsp);
    goto done;
  }
  for (int i = 0; i < nsp; i++) sp_in[i] = cb->dims[1 + i];
  if (!(up = upsample(cam, nsp, sp_in, sp_out))) goto oom;
  /* heat in 0..1: the map (|map| for integrated gradients) over its range */
  if (!(heat = malloc(sizeof *heat * (size_t)npix)) || !(base = malloc(sizeof *base * (size_t)(3 * npix)))) goto oom;
  double lo = INFINITY, hi = -INFINITY;
  int64_t peak = 0;
  for (int64_t p = 0; p < npix; p++) {
    heat[p] = a.method == METHOD_IG ? fabs(up[p]) : up[p];
    if (!isfinite(heat[p])) continue; /* drawn as 0; the .npy files keep it */
    if (heat[p] > heat[peak]) peak = p;
    lo = heat[p] < lo ? heat[p] : lo;
    hi = heat[p] > hi ? heat[p] : hi;
  }
  for (int64_t p = 0; p < npix; p++) heat[p] = hi > lo && isfinite(heat[p]) ? (heat[p] - lo) / (hi - lo) : 0;
  /* the base picture, 3 planes 0..255 */
  if (a.image) {
    kiln_image_prep raw = prep;
    raw.bgr = 0;
    raw.scale = 1;
    for (int k = 0; k < 3; k++) raw.mean[k] = 0, raw.std[k] = 1;
    float *f = malloc(sizeof *f * (size_t)(3 * npix));
    if (!f || kiln_image_to_tensor(&im, &raw, KILN_DT_F32, f, 0)) { free(f); goto oom; }
    for (int64_t i = 0; i < 3 * npix; i++) base[i] = f[i] < 0 ? 0 : f[i] > 255 ? 255 : f[i];
    free(f);
  } else {
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t p = 0; p < npix; p++) {
      double v = kiln_dtype_load_f(xb->dtype, t.data, (size_t)p);
      mn = v < mn ? v : mn;
      mx = v > mx ? v : mx;
    }
    for (int64_t p = 0; p < npix; p++) {
      double v = kiln_dtype_load_f(xb->dtype, t.data, (size_t)p);
      base[p] = base[npix + p] = base[2 * npix + p] = mx > mn && isfinite(v) ? 255 * (v - mn) / (mx - mn) : 0;
    }
  }
  /* write everything into the temporary folder */
  if (kiln_out_dir_begin(a.out, tmp, sizeof tmp, &d)) goto done;
  int64_t cdims[KILN_MAX_RANK], udims[KILN_MAX_RANK];
  cdims[0] = udims[0] = 1;
  for (int i = 0; i < nsp; i++) cdims[1 + i] = a.method == METHOD_IG ? sp_out[i] : sp_in[i], udims[1 + i] = sp_out[i];
  if (write_npy(tmp, "cam.npy", cam, nsp + 1, cdims, &d) || write_npy(tmp, "cam_upsampled.npy", up, nsp + 1, udims, &d))
    goto done;
  if (attr && write_npy(tmp, "attributions.npy", attr, xb->rank, xb->dims, &d)) goto done;
  size_t len;
  int64_t H = nsp >= 2 ? sp_out[nsp - 2] : 1, W = sp_out[nsp - 1], D = npix / (H * W), plane = H * W;
  int64_t zpeak = peak / plane;
  /* per slice (3-D) and the peak's slice as overlay.png; the base's planes are per channel for each slice */
  double *bs = malloc(sizeof *bs * (size_t)(3 * plane));
  if (!bs) goto oom;
  int64_t nsl = D <= MAX_SLICES ? D : MAX_SLICES;
  for (int64_t k = -1; k < (D > 1 ? nsl : 0); k++) {
    int64_t z = k < 0 ? zpeak : D <= MAX_SLICES ? k : (2 * k + 1) * D / (2 * nsl);
    for (int c = 0; c < 3; c++) memcpy(bs + c * plane, base + c * npix + z * plane, sizeof *bs * (size_t)plane);
    if (overlay_png(bs, heat + z * plane, H, W, lo, hi, &png, &len)) { free(bs); goto oom; }
    char name[64];
    if (k < 0) snprintf(name, sizeof name, "overlay.png");
    else snprintf(name, sizeof name, "overlay_slice_%03lld.png", (long long)z);
    int wr = kiln_out_dir_write(tmp, name, png, len, &d);
    free(png);
    png = NULL;
    if (wr) { free(bs); goto done; }
  }
  free(bs);
  if (kiln_out_dir_commit(a.out, tmp, &d)) goto done;
  /* the summary */
  const char *lname = kiln_labels_get(&labels, cls);
  char esc[512], lay[512] = "";
  kiln_text_escape(lname ? lname : "", esc, sizeof esc);
  if (e.info.layer && m != KILN_EXPLAIN_SALIENCY) {
    char le[400];
    kiln_text_escape(e.info.layer->name, le, sizeof le);
    snprintf(lay, sizeof lay, "  layer '%s'", le);
  }
  int64_t py = (peak % plane) / W, px = peak % W;
  printf("class %lld%s%s%s  score %.6g  peak ", (long long)cls, lname ? " (" : "", esc, lname ? ")" : "", score);
  if (nsp >= 3) printf("(z %lld, y %lld, x %lld)", (long long)zpeak, (long long)py, (long long)px);
  else if (nsp == 2) printf("(y %lld, x %lld)", (long long)py, (long long)px);
  else printf("(x %lld)", (long long)px);
  printf(" of %lld", (long long)sp_out[0]);
  for (int i = 1; i < nsp; i++) printf("x%lld", (long long)sp_out[i]);
  printf("  method %s%s", a.method == METHOD_IG ? "integrated-gradients" : kiln_explain_method_name(m), lay);
  if (a.method == METHOD_IG)
    printf("  steps %lld  sum of attributions %.6g  score(x) - score(0) %.6g", (long long)a.steps, ig_sum, score - score0);
  printf("\n");
  rc = 0;
  goto done;
oom:
  kiln_error(&d, NULL, "out of memory");
done:
  if (rc) {
    if (tmp[0]) kiln_out_dir_abort(tmp);
    kiln_cli_report(&d);
  }
  free(png);
  free(cam);
  free(up);
  free(acc);
  free(attr);
  free(base);
  free(heat);
  free(xs);
  kiln_labels_free(&labels);
  kiln_image_free(&im);
  kiln_tensor_free(&t);
  ex_free(&e);
  return rc;
}
