/* kiln attack: adversarial examples (FGSM, PGD) and robustness curves.
 *
 * The model is compiled once (LLVM JIT) into the graph of passes/attack.h:
 * for an input x and a label per sample it computes the logits, the
 * softmax cross-entropy and its gradient d loss / d x.  The attack itself
 * runs on the host, in float64, rounding each iterate to the input's dtype
 * (the model sees exactly the values written to adversarial.npy):
 *   FGSM  x' = P(x + s eps sign(g(x)))
 *   PGD   x_0 = x (or P(x + U(-eps, eps)) with --random-start, seeded),
 *         x_{k+1} = P(x_k + s alpha sign(g(x_k))), K steps, alpha default
 *         2.5 eps / K (Madry et al.)
 * with s = +1 (untargeted: ascend the loss of the label: the predicted
 * class, or --label) or -1 (--target-class C: descend the loss toward C),
 * and P the projection onto the L-inf ball of radius eps around x
 * intersected with the valid input range.  That range is, for --image,
 * what the preprocessing maps pixels 0..255 to (per channel), so the
 * adversarial example is still an image; for --input it is unbounded
 * unless --clip LO,HI (--data: the same).  A value rounded to the input
 * dtype (f32, f16, bf16) out of the ball or range is stepped one value of
 * the dtype back in, so max |x' - x| <= eps holds exactly.
 *
 * Outputs, in a folder written atomically (out_dir.c): adversarial.npy
 * (the model's input dtype and shape); for --image also original.npy (the
 * preprocessed photo), adversarial.png (de-preprocessed to 0..255 and
 * rounded: at the model's input size) and perturbation.png (x' - x in
 * pixels, 128 + 127 d / max|d|); for --data robustness.csv and
 * robustness.png (accuracy against eps). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/llvm/kiln_llvm.h"
#include "../passes/attack.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "image_io.h"
#include "labels.h"
#include "tensor_io.h"
#include "train_data.h"
#include "train_plot.h"

static const char help[] =
    "usage: kiln attack MODEL (--input [NAME=]FILE | --image FILE | --data DIR) --eps E --out DIR [options]\n\n"
    "Adversarial examples by the gradient of the softmax cross-entropy with\n"
    "respect to the input (the logits: a final Softmax's input).\n\n"
    "options:\n"
    "  --method fgsm|pgd      one signed-gradient step, or K projected steps (default fgsm)\n"
    "  --eps E                L-inf radius, in the model's input units (--data: a list\n"
    "                         E1,E2,... for the robustness curve)\n"
    "  --steps K              PGD steps (default 10)\n"
    "  --alpha A              PGD step size (default 2.5 * eps / K)\n"
    "  --random-start         PGD starts at a uniform random point of the eps ball\n"
    "  --seed S               seed of the random start (default 0)\n"
    "  --target-class C       targeted: descend the loss toward class C\n"
    "  --label C              untargeted: the true class (default: the predicted one)\n"
    "  --clip LO,HI           valid input range for --input/--data (default unbounded)\n"
    "  --image FILE           a PNG/JPEG photo, preprocessed as `kiln run --image`\n"
    "                         (--resize, --channels, --layout, --scale, --mean, --std);\n"
    "                         the range is what pixels 0..255 map to\n"
    "  --data DIR             x.npy/y.npy, idx files or class folders (kiln train's\n"
    "                         formats): accuracy against every eps of the list\n"
    "  --batch-size N         samples per run with --data (default 16)\n"
    "  --labels FILE          class names for the report\n"
    "  --output NAME          the classifier output (default: the model's first)\n"
    "  --out DIR              output folder (created; must not exist or be empty)\n"
    "  --threads N            run parallel loops on N threads (default 1)\n"
    "  -h, --help             show this help\n";

enum { MAX_EPS = 64, METHOD_FGSM = 0, METHOD_PGD = 1 };

typedef struct attack_opts {
  const char *model, *input, *image, *data, *out, *labels, *output;
  int method, steps, random_start, threads, has_clip, has_alpha;
  double eps[MAX_EPS], alpha, clip_lo, clip_hi;
  int neps;
  int64_t target, label, batch;
  uint64_t seed;
  const char *prep_val[6];
} attack_opts;

static const char *const prep_keys[] = {"resize", "channels", "layout", "scale", "mean", "std"};

/* ---- the compiled program ---- */
typedef struct atk_prog {
  kiln_graph *g;
  kiln_program *p;
  kiln_llvm_jit *jit;
  void **bufs, *ws;
  int x, label, logits, loss, grad; /* buffer indices */
  int64_t N, C, xs;                 /* batch, classes, elements per sample */
  kiln_dtype dt;                    /* the input's dtype */
} atk_prog;

static int find_buf(const kiln_program *p, kiln_buf_kind kind, const char *name) {
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == kind && !strcmp(p->bufs[b]->name, name)) return b;
  return -1;
}

/* g is imported and bound (static shapes); compiles its attack graph. */
static int prog_compile(atk_prog *ap, kiln_graph *g, const char *output, int threads, kiln_diag *d) {
  memset(ap, 0, sizeof *ap);
  ap->g = g;
  if (g->ninputs != 1) return kiln_error(d, NULL, "%s: kiln attack needs a model with one input, this one has %d", g->file, g->ninputs);
  for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), 1); /* any dim left: 1 */
  char *xname = strdup(g->inputs[0]->name);
  if (!xname) return kiln_error(d, NULL, "out of memory");
  kiln_graph_on_free(g, free, xname);
  kiln_target target = kiln_llvm_target(0);
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .until = KILN_PASS_INFER_SHAPES, .target = &target};
  if (kiln_pipeline_run(&po, &pl, d) || kiln_attack_build(g, NULL, output, &ap->C, d)) return -1;
  kiln_pipeline_opts po2 = {.graph = g, .from = KILN_PASS_INFER_SHAPES, .target = &target};
  if (kiln_pipeline_run(&po2, &pl, d)) return -1;
  kiln_program *p = ap->p = pl.program;
  if (!(ap->jit = kiln_llvm_jit_compile(p, d))) return -1;
  if (kiln_llvm_jit_set_threads(ap->jit, threads)) return kiln_error(d, NULL, "cannot start %d threads", threads);
  ap->x = find_buf(p, KILN_BUF_INPUT, xname);
  ap->label = find_buf(p, KILN_BUF_INPUT, KILN_ATTACK_LABEL);
  ap->logits = find_buf(p, KILN_BUF_OUTPUT, KILN_ATTACK_LOGITS);
  ap->loss = find_buf(p, KILN_BUF_OUTPUT, KILN_ATTACK_LOSS);
  ap->grad = find_buf(p, KILN_BUF_OUTPUT, KILN_ATTACK_GRAD);
  if (ap->x < 0 || ap->label < 0 || ap->logits < 0 || ap->loss < 0 || ap->grad < 0)
    return kiln_error(d, NULL, "%s: the attack program lacks an expected input or output", g->file);
  ap->bufs = calloc((size_t)p->nbufs + 1, sizeof *ap->bufs);
  ap->ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  if (!ap->bufs || !ap->ws) return kiln_error(d, NULL, "out of memory");
  kiln_llvm_jit_bind(p, ap->bufs, ap->ws);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if ((buf->kind == KILN_BUF_INPUT || buf->kind == KILN_BUF_OUTPUT) &&
        !(ap->bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8)))
      return kiln_error(d, NULL, "out of memory");
  }
  const kiln_buf *xb = p->bufs[ap->x];
  ap->N = xb->dims[0];
  ap->xs = xb->numel / ap->N;
  ap->dt = xb->dtype;
  return 0;
}

static void prog_free(atk_prog *ap) {
  for (int b = 0; ap->p && ap->bufs && b < ap->p->nbufs; b++)
    if (ap->p->bufs[b]->kind == KILN_BUF_INPUT || ap->p->bufs[b]->kind == KILN_BUF_OUTPUT) free(ap->bufs[b]);
  free(ap->bufs);
  free(ap->ws);
  kiln_llvm_jit_free(ap->jit);
  kiln_graph_free(ap->g);
}

/* Runs the program at x (N * xs values, rounded to the input dtype in
 * place) with labels lab[N]. */
static void prog_run(atk_prog *ap, double *x, const int64_t *lab) {
  void *xb = ap->bufs[ap->x];
  for (int64_t i = 0; i < ap->N * ap->xs; i++) {
    kiln_dtype_store_f(ap->dt, xb, (size_t)i, x[i]);
    x[i] = kiln_dtype_load_f(ap->dt, xb, (size_t)i);
  }
  memcpy(ap->bufs[ap->label], lab, (size_t)ap->N * sizeof *lab);
  kiln_llvm_jit_run(ap->jit, ap->bufs);
}

static double logit(const atk_prog *ap, int64_t n, int64_t c) {
  return kiln_dtype_load_f(ap->p->bufs[ap->logits]->dtype, ap->bufs[ap->logits], (size_t)(n * ap->C + c));
}
static double grad_at(const atk_prog *ap, int64_t i) { return kiln_dtype_load_f(ap->dt, ap->bufs[ap->grad], (size_t)i); }
static double loss_at(const atk_prog *ap, int64_t n) {
  return kiln_dtype_load_f(ap->p->bufs[ap->loss]->dtype, ap->bufs[ap->loss], (size_t)n);
}

static int64_t argmax(const atk_prog *ap, int64_t n) {
  int64_t best = 0;
  for (int64_t c = 1; c < ap->C; c++)
    if (logit(ap, n, c) > logit(ap, n, best)) best = c;
  return best;
}

static double prob(const atk_prog *ap, int64_t n, int64_t c) {
  double hi = logit(ap, n, argmax(ap, n)), s = 0;
  for (int64_t k = 0; k < ap->C; k++) s += exp(logit(ap, n, k) - hi);
  return exp(logit(ap, n, c) - hi) / s;
}

/* ---- the attack ---- */

/* The valid range of element i of a sample (per channel for images). */
typedef struct range {
  int kind;              /* 0 unbounded, 1 one range, 2 per image channel */
  double lo, hi;
  double clo[3], chi[3]; /* kind 2: per tensor channel */
  int64_t H, W;
  int nhwc;
} range;

static void range_at(const range *r, int64_t i, double *lo, double *hi) {
  *lo = -INFINITY;
  *hi = INFINITY;
  if (r->kind == 1) { *lo = r->lo; *hi = r->hi; }
  if (r->kind == 2) {
    int64_t c = r->nhwc ? i % 3 : (i / (r->H * r->W)) % 3;
    *lo = r->clo[c];
    *hi = r->chi[c];
  }
}

/* The next 16-bit float (f16 or bf16: sign bit 15, magnitude below)
 * after h toward +inf (up) or -inf. */
static uint16_t next16(uint16_t h, int up) {
  int neg = h >> 15, mag = h & 0x7fff;
  if (mag == 0) return up ? 0x0001 : 0x8001;
  return (uint16_t)(neg == !up ? h + 1 : h - 1);
}

/* v projected into [x0 - eps, x0 + eps] and the range, then rounded to
 * dt; a result rounded out of that interval is stepped one value of dt
 * back in (x0 is a value of dt, so the interval holds one). */
static double project(double v, double x0, double eps, const range *r, int64_t i, kiln_dtype dt) {
  double lo, hi;
  range_at(r, i, &lo, &hi);
  double a = fmax(x0 - eps, lo), b = fmin(x0 + eps, hi);
  if (a > b) a = b = fmin(fmax(x0, lo), hi); /* x0 outside the range: the range wins */
  v = fmin(fmax(v, a), b);
  if (dt == KILN_DT_F32) {
    float f = (float)v;
    if (f > b) f = nextafterf(f, -INFINITY);
    if (f < a) f = nextafterf(f, INFINITY);
    return f;
  }
  if (kiln_dtype_size(dt) == 2) {
    uint16_t h;
    kiln_dtype_store_f(dt, &h, 0, v);
    double f = kiln_dtype_load_f(dt, &h, 0);
    if (f > b) h = next16(h, 0);
    if (f < a) h = next16(h, 1);
    return kiln_dtype_load_f(dt, &h, 0);
  }
  return v;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Attacks the batch x0 (labels lab: the class whose loss is ascended, or
 * the target's with targeted) with radius eps; xa receives x'.  Leaves
 * the program's outputs at x'. */
static void attack(atk_prog *ap, const attack_opts *o, const range *r, double eps, const double *x0,
                   const int64_t *lab, double *xa, uint64_t *rng) {
  int64_t n = ap->N * ap->xs;
  double s = o->target >= 0 ? -1 : 1;
  int steps = o->method == METHOD_PGD ? o->steps : 1;
  double step = o->method == METHOD_PGD ? (o->has_alpha ? o->alpha : 2.5 * eps / steps) : eps;
  for (int64_t i = 0; i < n; i++) {
    double v = x0[i];
    if (o->method == METHOD_PGD && o->random_start)
      v += eps * (2 * (double)(rng_next(rng) >> 11) * 0x1.0p-53 - 1);
    xa[i] = project(v, x0[i], eps, r, i % ap->xs, ap->dt);
  }
  for (int k = 0; k < steps; k++) {
    prog_run(ap, xa, lab);
    for (int64_t i = 0; i < n; i++) {
      double g = grad_at(ap, i), sg = g > 0 ? 1 : g < 0 ? -1 : 0;
      xa[i] = project(xa[i] + s * step * sg, x0[i], eps, r, i % ap->xs, ap->dt);
    }
  }
  prog_run(ap, xa, lab);
}

/* ---- options ---- */
/* A bad option value: one line, exit 1 (as every other bad input). */
__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "kiln: error: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see 'kiln attack --help')\n");
  return 1;
}

static int parse_double(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end == s || *end || errno || !isfinite(*v) ? -1 : 0;
}

static int parse_opts(int argc, char **argv, attack_opts *o) {
  memset(o, 0, sizeof *o);
  o->steps = 10;
  o->threads = 1;
  o->target = o->label = -1;
  o->batch = 16;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 3; }
    if (!strcmp(a, "--random-start")) { o->random_start = 1; continue; }
    if (a[0] != '-' || !a[1]) {
      if (o->model) return kiln_cli_usage_error("attack", "more than one model given ('%s' and '%s')", o->model, a);
      o->model = a;
      continue;
    }
    if (i + 1 >= argc) return kiln_cli_usage_error("attack", "%s needs a value", a);
    const char *v = argv[++i];
    int k = -1;
    for (int s = 0; s < 6; s++)
      if (!strncmp(a, "--", 2) && !strcmp(a + 2, prep_keys[s])) k = s;
    if (k >= 0) {
      kiln_image_prep probe;
      char err[128];
      kiln_image_prep_init(&probe);
      if (kiln_image_prep_set(&probe, prep_keys[k], v, err, sizeof err)) return bad("--%s", err);
      o->prep_val[k] = v;
    } else if (!strcmp(a, "--input")) o->input = v;
    else if (!strcmp(a, "--image")) o->image = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--labels")) o->labels = v;
    else if (!strcmp(a, "--output")) o->output = v;
    else if (!strcmp(a, "--method")) {
      if (!strcmp(v, "fgsm")) o->method = METHOD_FGSM;
      else if (!strcmp(v, "pgd")) o->method = METHOD_PGD;
      else return bad("%s must be fgsm or pgd, got '%s'", a, v);
    } else if (!strcmp(a, "--eps")) {
      o->neps = 0;
      for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        char num[64];
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len >= sizeof num || o->neps == MAX_EPS) return bad("%s must be a number or a list of up to 64, got '%s'", a, v);
        memcpy(num, p, len);
        num[len] = 0;
        double e;
        if (parse_double(num, &e) || e < 0) return bad("%s must be non-negative numbers, got '%s'", a, v);
        o->eps[o->neps++] = e;
        if (!comma) break;
        p = comma + 1;
      }
    } else if (!strcmp(a, "--alpha")) {
      if (parse_double(v, &o->alpha) || o->alpha <= 0) return bad("%s must be a positive number, got '%s'", a, v);
      o->has_alpha = 1;
    } else if (!strcmp(a, "--clip")) {
      const char *comma = strchr(v, ',');
      char lo[64];
      if (!comma || (size_t)(comma - v) >= sizeof lo) return bad("%s must be LO,HI, got '%s'", a, v);
      snprintf(lo, sizeof lo, "%.*s", (int)(comma - v), v);
      if (parse_double(lo, &o->clip_lo) || parse_double(comma + 1, &o->clip_hi) || o->clip_lo > o->clip_hi)
        return bad("%s must be LO,HI with LO <= HI, got '%s'", a, v);
      o->has_clip = 1;
    } else if (!strcmp(a, "--steps") || !strcmp(a, "--threads") || !strcmp(a, "--batch-size")) {
      int64_t n = kiln_cli_parse_count(v);
      if (n < 0 || n > 100000) return bad("%s must be a positive integer, got '%s'", a, v);
      if (a[2] == 's') o->steps = (int)n;
      else if (a[2] == 't') o->threads = (int)n;
      else o->batch = n;
    } else if (!strcmp(a, "--target-class") || !strcmp(a, "--label") || !strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      long long n = strtoll(v, &end, 10);
      if (end == v || *end || errno || n < 0) return bad("%s must be a non-negative integer, got '%s'", a, v);
      if (a[2] == 't') o->target = n;
      else if (a[2] == 'l') o->label = n;
      else o->seed = (uint64_t)n;
    } else return kiln_cli_usage_error("attack", "unknown option '%s'", a);
  }
  if (!o->model) return kiln_cli_usage_error("attack", "no model given");
  if (!!o->input + !!o->image + !!o->data != 1)
    return kiln_cli_usage_error("attack", "give one of --input FILE, --image FILE or --data DIR");
  if (!o->out) return kiln_cli_usage_error("attack", "--out DIR is required");
  if (!o->neps) return kiln_cli_usage_error("attack", "--eps is required");
  if (!o->data && o->neps > 1) return bad("--eps takes one value here; a list is for a --data robustness curve");
  if (o->image && o->has_clip) return bad("--clip is for --input and --data: --image clips to the pixel range");
  if (o->target >= 0 && o->label >= 0) return bad("give --target-class or --label, not both");
  return 0;
}

/* ---- reports ---- */
static void print_class(const char *what, const atk_prog *ap, int64_t n, const kiln_labels *lb) {
  int64_t c = argmax(ap, n);
  const char *name = kiln_labels_get(lb, c);
  char esc[512];
  kiln_text_escape(name ? name : "", esc, sizeof esc);
  printf("%-12s class %-5lld p %.4f%s%s\n", what, (long long)c, prob(ap, n, c), name ? "  " : "", esc);
}

/* The photo as pixels 0..255 (RGB, H x W) from tensor sample x. */
static void to_pixels(const kiln_image_prep *pp, const double *x, int64_t H, int64_t W, double *pix) {
  for (int64_t h = 0; h < H; h++)
    for (int64_t w = 0; w < W; w++)
      for (int c = 0; c < 3; c++) {
        int64_t i = pp->nhwc ? (h * W + w) * 3 + c : ((int64_t)c * H + h) * W + w;
        int rgb = pp->bgr ? 2 - c : c;
        pix[(h * W + w) * 3 + rgb] = (x[i] * pp->std[c] + pp->mean[c]) / pp->scale;
      }
}

static int write_png(const char *dir, const char *name, int64_t H, int64_t W, const double *v, kiln_diag *d) {
  unsigned char *rgb = malloc((size_t)(H * W * 3)), *png = NULL;
  size_t len = 0;
  if (!rgb) return kiln_error(d, NULL, "out of memory");
  for (int64_t i = 0; i < H * W * 3; i++) rgb[i] = (unsigned char)fmin(fmax(round(v[i]), 0), 255);
  int rc = (kiln_plot_png(rgb, (int)W, (int)H, &png, &len) ? kiln_error(d, NULL, "cannot encode a PNG image (out of memory)") : 0) || kiln_out_dir_write(dir, name, png, len, d);
  free(rgb);
  free(png);
  return rc ? -1 : 0;
}

static int write_npy(const char *dir, const char *name, const atk_prog *ap, const double *x, kiln_diag *d) {
  const kiln_buf *b = ap->p->bufs[ap->x];
  kiln_tensor t = {.name = name, .dtype = b->dtype, .rank = b->rank, .nbytes = (size_t)b->numel * kiln_dtype_size(b->dtype)};
  memcpy(t.dims, b->dims, sizeof t.dims);
  if (!(t.data = malloc(t.nbytes + 8))) return kiln_error(d, NULL, "out of memory");
  for (int64_t i = 0; i < b->numel; i++) kiln_dtype_store_f(b->dtype, t.data, (size_t)i, x[i]);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rc = kiln_npy_write(path, &t, d);
  free(t.data);
  return rc;
}

/* ---- one input (--input, --image) ---- */
static int attack_one(const attack_opts *o, atk_prog *ap, double *x0, const range *r, const kiln_image_prep *pp,
                      const kiln_labels *lb, const char *tmp, kiln_diag *d) {
  int64_t N = ap->N, n = N * ap->xs;
  double eps = o->eps[0];
  int64_t *lab = calloc((size_t)N, sizeof *lab), *pred = calloc((size_t)N, sizeof *pred);
  double *xa = malloc((size_t)n * sizeof *xa), *clean_loss = calloc((size_t)N, sizeof *clean_loss);
  double *orig_p = calloc((size_t)N, sizeof *orig_p), *pix0 = NULL, *pixa = NULL;
  int rc = -1;
  if (!lab || !pred || !xa || !clean_loss || !orig_p) { kiln_error(d, NULL, "out of memory"); goto done; }
  prog_run(ap, x0, lab);
  for (int64_t k = 0; k < N; k++) pred[k] = argmax(ap, k);
  int64_t cls = o->target >= 0 ? o->target : o->label; /* checked against C by the caller */
  for (int64_t k = 0; k < N; k++) lab[k] = cls >= 0 ? cls : pred[k];
  prog_run(ap, x0, lab);
  for (int64_t k = 0; k < N; k++) clean_loss[k] = loss_at(ap, k);
  for (int64_t k = 0; k < N; k++) orig_p[k] = prob(ap, k, pred[k]);
  uint64_t rng = o->seed;
  attack(ap, o, r, eps, x0, lab, xa, &rng);
  for (int64_t k = 0; k < N; k++) {
    if (N > 1) printf("sample %lld\n", (long long)k);
    const char *name = kiln_labels_get(lb, pred[k]);
    char esc[512];
    kiln_text_escape(name ? name : "", esc, sizeof esc);
    printf("%-12s class %-5lld p %.4f%s%s\n", "original", (long long)pred[k], orig_p[k], name ? "  " : "", esc);
    print_class("adversarial", ap, k, lb);
    printf("%-12s %s %s eps %.6g; %s class %lld: loss %.6g -> %.6g\n", "attack", o->method ? "pgd" : "fgsm",
           o->target >= 0 ? "targeted" : "untargeted", eps, o->target >= 0 ? "target" : "label", (long long)lab[k],
           clean_loss[k], loss_at(ap, k));
    double linf = 0, l2 = 0;
    for (int64_t i = 0; i < ap->xs; i++) {
      double dv = xa[k * ap->xs + i] - x0[k * ap->xs + i];
      linf = fmax(linf, fabs(dv));
      l2 += dv * dv;
    }
    printf("%-12s L-inf %.6g  L2 %.6g (input units)\n", "perturbation", linf, sqrt(l2));
  }
  if (write_npy(tmp, "adversarial.npy", ap, xa, d)) goto done;
  if (pp) { /* one image: N == 1 */
    int64_t H = pp->height, W = pp->width;
    pix0 = malloc((size_t)(H * W * 3) * sizeof *pix0);
    pixa = malloc((size_t)(H * W * 3) * sizeof *pixa);
    if (!pix0 || !pixa) { kiln_error(d, NULL, "out of memory"); goto done; }
    to_pixels(pp, x0, H, W, pix0);
    to_pixels(pp, xa, H, W, pixa);
    double linf = 0, l2 = 0;
    for (int64_t i = 0; i < H * W * 3; i++) {
      double dv = pixa[i] - pix0[i];
      linf = fmax(linf, fabs(dv));
      l2 += dv * dv;
    }
    printf("%-12s L-inf %.6g  L2 %.6g (pixels 0..255)\n", "perturbation", linf, sqrt(l2));
    if (write_npy(tmp, "original.npy", ap, x0, d) || write_png(tmp, "adversarial.png", H, W, pixa, d)) goto done;
    for (int64_t i = 0; i < H * W * 3; i++) pixa[i] = 128 + (linf > 0 ? 127 * (pixa[i] - pix0[i]) / linf : 0);
    if (write_png(tmp, "perturbation.png", H, W, pixa, d)) goto done;
  }
  rc = 0;
done:
  free(lab);
  free(pred);
  free(xa);
  free(clean_loss);
  free(orig_p);
  free(pix0);
  free(pixa);
  return rc;
}

/* ---- the robustness curve (--data) ---- */
static int attack_data(const attack_opts *o, atk_prog *ap, const range *r, const char *tmp, kiln_diag *d) {
  const kiln_buf *xb = ap->p->bufs[ap->x];
  kiln_data_want w = {.xrank = xb->rank - 1, .nclasses = ap->C};
  for (int i = 1; i < xb->rank; i++) w.xdims[i - 1] = xb->dims[i];
  kiln_dataset ds = {0};
  if (kiln_dataset_load(o->data, &w, 0, &ds, d)) return -1;
  int rc = -1;
  int64_t N = ap->N, n = N * ap->xs;
  double *x0 = malloc((size_t)n * sizeof *x0), *xa = malloc((size_t)n * sizeof *xa), acc[MAX_EPS];
  int64_t *lab = calloc((size_t)N, sizeof *lab), correct[MAX_EPS] = {0};
  enum { LINE = 160 };
  char *csv = malloc(LINE * (MAX_EPS + 2));
  if (!x0 || !xa || !lab || !csv) { kiln_error(d, NULL, "out of memory"); goto done; }
  if (ds.n < 1) { kiln_error(d, NULL, "%s: no samples", o->data); goto done; }
  if (ds.yfloat || ds.ysize != 1) { kiln_error(d, NULL, "%s: --data needs one class id per sample", ds.source); goto done; }
  if (o->target >= ap->C) {
    kiln_error(d, NULL, "%s: class %lld is out of range: the model has %lld classes (0..%lld)", o->model,
               (long long)o->target, (long long)ap->C, (long long)ap->C - 1);
    goto done;
  }
  printf("%-10s %s\n", "eps", "accuracy");
  size_t len = (size_t)snprintf(csv, LINE, "eps,accuracy,correct,samples\n");
  for (int e = 0; e < o->neps; e++) {
    uint64_t rng = o->seed;
    for (int64_t first = 0; first < ds.n; first += N) {
      int64_t nb = ds.n - first < N ? ds.n - first : N;
      memset(x0, 0, (size_t)n * sizeof *x0);
      for (int64_t k = 0; k < N; k++) lab[k] = o->target >= 0 ? o->target : k < nb ? ds.y[first + k] : 0;
      for (int64_t i = 0; i < nb * ap->xs; i++) x0[i] = ds.x[first * ap->xs + i];
      attack(ap, o, r, o->eps[e], x0, lab, xa, &rng);
      for (int64_t k = 0; k < nb; k++) correct[e] += argmax(ap, k) == ds.y[first + k];
    }
    acc[e] = (double)correct[e] / (double)ds.n;
    printf("%-10.6g %.4f  (%lld/%lld)\n", o->eps[e], acc[e], (long long)correct[e], (long long)ds.n);
    len += (size_t)snprintf(csv + len, LINE, "%.9g,%.6f,%lld,%lld\n", o->eps[e], acc[e], (long long)correct[e],
                            (long long)ds.n); /* < LINE: 16 + 8 + 2 x 20 + 4 bytes at most */
  }
  if (kiln_out_dir_write(tmp, "robustness.csv", csv, len, d)) goto done;
  unsigned char *png = NULL;
  size_t plen = 0;
  char title[64];
  snprintf(title, sizeof title, "accuracy (%%) %s", o->method ? "pgd" : "fgsm");
  if (kiln_plot_xy_png(o->neps, o->eps, acc, 100, title, "eps", &png, &plen, d)) goto done;
  rc = kiln_out_dir_write(tmp, "robustness.png", png, plen, d);
  free(png);
done:
  free(x0);
  free(xa);
  free(lab);
  free(csv);
  kiln_dataset_free(&ds);
  return rc;
}

/* ---- the command ---- */
int kiln_cmd_attack(int argc, char **argv) {
  attack_opts o;
  int prc = parse_opts(argc, argv, &o);
  if (prc) return prc == 3 ? 0 : prc;
  if (o.data) { /* a curve needs increasing eps */
    for (int e = 1; e < o.neps; e++)
      if (o.eps[e] <= o.eps[e - 1]) return bad("--eps must be an increasing list for --data");
  }
  kiln_diag d = {0};
  kiln_labels lb = {0};
  kiln_tensor t = {0};
  kiln_image im = {0};
  atk_prog ap = {0};
  char tmp[4096] = "";
  double *x0 = NULL;
  int rc = 1;
  kiln_image_prep prep;
  range r = {0};
  if (kiln_out_dir_check(o.out, &d)) goto fail;
  if (o.labels && kiln_labels_read(o.labels, &lb, &d)) goto fail;
  kiln_graph *g = kiln_cli_import(o.model, &d);
  if (!g) goto fail;
  ap.g = g;
  if (g->ninputs != 1) {
    kiln_error(&d, NULL, "%s: kiln attack needs a model with one input, this one has %d", o.model, g->ninputs);
    goto fail;
  }
  kiln_value *in = g->inputs[0];
  kiln_loc loc = {.file = o.model, .node_index = -1};
  if (o.input) {
    const char *eq = strchr(o.input, '='), *file = eq ? eq + 1 : o.input;
    if (eq && ((size_t)(eq - o.input) != strlen(in->name) || strncmp(o.input, in->name, (size_t)(eq - o.input)))) {
      kiln_error(&d, &loc, "the model has no input named '%.*s'", (int)(eq - o.input), o.input);
      goto fail;
    }
    if (kiln_tensor_read(file, &t, &d) || kiln_cli_bind_input(g, in, &t, file, &d)) goto fail;
  } else if (o.image) {
    kiln_image_prep_init(&prep);
    prep.nhwc = -1;
    if (kiln_image_prep_from_meta(&prep, g, &d)) goto fail;
    for (int s = 0; s < 6; s++) {
      char err[128];
      if (o.prep_val[s] && kiln_image_prep_set(&prep, prep_keys[s], o.prep_val[s], err, sizeof err)) {
        kiln_error(&d, &loc, "--%s", err);
        goto fail;
      }
    }
    if (in->rank != 4 || !kiln_dtype_is_float(in->dtype)) {
      kiln_error(&d, &loc, "input '%s' is not a 4-D float image tensor", in->name);
      goto fail;
    }
    if (prep.nhwc < 0) prep.nhwc = in->dims[1] != 3 && in->dims[3] == 3;
    int hax = prep.nhwc ? 1 : 2, cax = prep.nhwc ? 3 : 1;
    if (in->dims[cax] != 3 || KILN_DIM_IS_SYM(in->dims[hax]) || KILN_DIM_IS_SYM(in->dims[hax + 1]) ||
        in->dims[hax] > 16384 || in->dims[hax + 1] > 16384) {
      kiln_error(&d, &loc, "input '%s' needs 3 channels and a static height and width for --image", in->name);
      goto fail;
    }
    prep.height = (int)in->dims[hax];
    prep.width = (int)in->dims[hax + 1];
    kiln_cli_bind_batch(g, 1);
    if (in->dims[0] != 1) { kiln_error(&d, &loc, "input '%s' must have batch 1 for --image", in->name); goto fail; }
    r.kind = 2;
    r.H = prep.height;
    r.W = prep.width;
    r.nhwc = prep.nhwc;
    for (int c = 0; c < 3; c++) {
      double a = (0 * prep.scale - prep.mean[c]) / prep.std[c], b = (255 * prep.scale - prep.mean[c]) / prep.std[c];
      r.clo[c] = fmin(a, b);
      r.chi[c] = fmax(a, b);
    }
  } else {
    kiln_cli_bind_batch(g, o.batch);
  }
  if (o.has_clip) { r.kind = 1; r.lo = o.clip_lo; r.hi = o.clip_hi; }
  if (prog_compile(&ap, g, o.output, o.threads, &d)) goto fail;
  if (!o.data && (o.target >= ap.C || o.label >= ap.C)) {
    kiln_error(&d, NULL, "%s: class %lld is out of range: the model has %lld classes (0..%lld)", o.model,
               (long long)(o.target >= 0 ? o.target : o.label), (long long)ap.C, (long long)ap.C - 1);
    goto fail;
  }
  int64_t n = ap.N * ap.xs;
  if (!(x0 = malloc((size_t)n * sizeof *x0))) { kiln_error(&d, NULL, "out of memory"); goto fail; }
  if (o.input) {
    if (t.dtype != ap.dt || (int64_t)(t.nbytes / kiln_dtype_size(t.dtype)) != n) {
      kiln_error(&d, NULL, "%s: the tensor does not fit input '%s'", o.input, ap.p->bufs[ap.x]->name);
      goto fail;
    }
    for (int64_t i = 0; i < n; i++) x0[i] = kiln_dtype_load_f(t.dtype, t.data, (size_t)i);
  } else if (o.image) {
    if (kiln_image_read(o.image, 100000000, &im, &d)) goto fail;
    void *tb = calloc(1, (size_t)n * kiln_dtype_size(ap.dt) + 8);
    if (!tb || kiln_image_to_tensor(&im, &prep, ap.dt, tb, 0)) { free(tb); kiln_error(&d, NULL, "out of memory"); goto fail; }
    for (int64_t i = 0; i < n; i++) x0[i] = kiln_dtype_load_f(ap.dt, tb, (size_t)i);
    free(tb);
  }
  if (kiln_out_dir_begin(o.out, tmp, sizeof tmp, &d)) goto fail;
  if (o.data ? attack_data(&o, &ap, &r, tmp, &d) : attack_one(&o, &ap, x0, &r, o.image ? &prep : NULL, &lb, tmp, &d))
    goto fail;
  if (kiln_out_dir_commit(o.out, tmp, &d)) goto fail;
  rc = 0;
fail:
  if (rc) kiln_cli_report(&d);
  kiln_out_dir_abort(tmp);
  free(x0);
  kiln_image_free(&im);
  kiln_tensor_free(&t);
  kiln_labels_free(&lb);
  prog_free(&ap);
  return rc;
}
