/* kiln run --image: classify photos.  The model is compiled once (LLVM JIT)
 * for a batch size, then every image is decoded (image_io.c), preprocessed
 * into its slot of the input tensor (image_prep.c) and the batch run; the
 * top-5 classes of each image are printed with their names (labels.c) and,
 * with --csv, written to a CSV file atomically once every image succeeded.
 *
 * Settings come, lowest priority first, from kiln's defaults, the model's
 * metadata_props ("kiln.image.*", "kiln.labels") and the command line.  The
 * target size is the model input's H x W; a static batch dimension fixes
 * the batch size (a last partial batch is padded with zeros), a symbolic
 * one takes --batch-size.  Kept apart from cmd_run.c, which only hands over
 * when it sees --image. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../backends/llvm/kiln_llvm.h"
#include "../passes/lower.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "image_io.h"
#include "labels.h"
#include "tensor_io.h"

static const char help[] =
    "usage: kiln run MODEL --image FILE|DIR [--image ...] [options]\n\n"
    "Classifies PNG/JPEG images: each is resized to the model's input size,\n"
    "normalised, run, and its top-5 classes printed.  A folder runs every\n"
    "*.png/*.jpg/*.jpeg in it (sorted by name) in batches.\n\n"
    "options (defaults from the model's metadata \"kiln.image.*\" when present):\n"
    "  --resize exact|shorter  stretch to the input size, or scale the shorter side\n"
    "                          to it and crop the centre (default exact)\n"
    "  --crop center           the crop used with --resize shorter (the only one)\n"
    "  --channels rgb|bgr      channel order the model expects (default rgb)\n"
    "  --layout nchw|nhwc      input layout (default: from the shape, else nchw)\n"
    "  --scale S               multiply pixels 0..255 by S (default 1/255)\n"
    "  --mean a,b,c            subtract after scaling (model's channel order; default 0)\n"
    "  --std a,b,c             then divide (default 1)\n"
    "  --size HxW              input size when the model's is symbolic\n"
    "  --labels FILE           class names: one per line, or INDEX,NAME lines\n"
    "  --batch-size N          images per run when the batch dim is symbolic (default 8)\n"
    "  --csv FILE              write file,class,label,p (top-5) per image\n"
    "  --threads N             run parallel loops on N threads (default 1)\n"
    "  --dump-after PASS       print the IR after PASS to stderr (`list`: the passes)\n"
    "See docs/images.md for the exact definitions.\n";

#define MAX_PIXELS ((int64_t)100000000)
enum { TOPK = 5 };

typedef struct strvec {
  char **v;
  size_t n, cap;
} strvec;

static int strvec_push(strvec *s, const char *x) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    char **p = realloc(s->v, nc * sizeof *p);
    if (!p) return -1;
    s->v = p;
    s->cap = nc;
  }
  return (s->v[s->n++] = strdup(x)) ? 0 : -1;
}

static void strvec_free(strvec *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *n) {
  const char *dot = strrchr(n, '.');
  return n[0] != '.' && dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* A file as given, or a folder's images: regular files only (symlinks and
 * subfolders are not followed), sorted by name. */
static int add_images(strvec *out, const char *path, int *from_dir, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  struct stat st;
  if (stat(path, &st) != 0) return kiln_error(d, &loc, "cannot open: %s", strerror(errno));
  if (!S_ISDIR(st.st_mode)) return strvec_push(out, path) ? kiln_error(d, &loc, "out of memory") : 0;
  *from_dir = 1;
  DIR *dir = opendir(path);
  if (!dir) return kiln_error(d, &loc, "cannot open folder: %s", strerror(errno));
  size_t first = out->n;
  for (struct dirent *e; (e = readdir(dir));) {
    if (!is_image_name(e->d_name)) continue;
    size_t n = strlen(path) + strlen(e->d_name) + 2;
    char *full = malloc(n);
    if (!full) { closedir(dir); return kiln_error(d, &loc, "out of memory"); }
    snprintf(full, n, "%s/%s", path, e->d_name);
    int ok = lstat(full, &st) == 0 && S_ISREG(st.st_mode);
    if (ok && strvec_push(out, full)) { free(full); closedir(dir); return kiln_error(d, &loc, "out of memory"); }
    free(full);
  }
  closedir(dir);
  if (out->n == first) return kiln_error(d, &loc, "folder holds no .png, .jpg or .jpeg images");
  qsort(out->v + first, out->n - first, sizeof *out->v, cmp_str);
  return 0;
}

/* Growing text buffer for the CSV. */
typedef struct textbuf {
  char *p;
  size_t len, cap;
} textbuf;

static int tb_add(textbuf *t, const char *s) {
  size_t n = strlen(s);
  if (t->len + n + 1 > t->cap) {
    size_t nc = t->cap ? t->cap : 4096;
    while (t->len + n + 1 > nc) nc *= 2;
    char *p = realloc(t->p, nc);
    if (!p) return -1;
    t->p = p;
    t->cap = nc;
  }
  memcpy(t->p + t->len, s, n + 1);
  t->len += n;
  return 0;
}

/* Probabilities of one item: the output itself when it already is a
 * distribution (all in [0,1], sum within 0.02 of 1: a softmax in f16 sums
 * to 1 only that closely), else its softmax. */
static int to_probs(double *x, int64_t n) {
  double sum = 0, hi = -INFINITY;
  int dist = 1;
  for (int64_t i = 0; i < n; i++) {
    dist &= x[i] >= 0 && x[i] <= 1;
    sum += x[i];
    hi = x[i] > hi ? x[i] : hi;
  }
  if (dist && fabs(sum - 1) <= 0.02) return 0;
  sum = 0;
  for (int64_t i = 0; i < n; i++) sum += x[i] = exp(x[i] - hi);
  for (int64_t i = 0; i < n; i++) x[i] /= sum;
  return 1;
}

static void top_k(const double *x, int64_t n, int k, int64_t *top) {
  for (int j = 0; j < k; j++) {
    top[j] = -1;
    for (int64_t c = 0; c < n; c++) {
      int taken = 0;
      for (int q = 0; q < j; q++) taken |= top[q] == c;
      if (!taken && (top[j] < 0 || x[c] > x[top[j]])) top[j] = c;
    }
  }
}

static const char *const settings[] = {"resize", "channels", "layout", "scale", "mean", "std"};

int kiln_cmd_run_images(int argc, char **argv) {
  const char *path = NULL, *labels_path = NULL, *csv_path = NULL, *set_val[6] = {0};
  int64_t batch_opt = 0, size_h = 0, size_w = 0;
  int threads = 1, from_dir = 0, dump_after = 0;
  strvec args = {0}, files = {0};
  kiln_diag d = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); strvec_free(&args); return 0; }
    if (a[0] != '-' || !a[1]) {
      if (path) { strvec_free(&args); return kiln_cli_usage_error("run", "more than one model given ('%s' and '%s')", path, a); }
      path = a;
      continue;
    }
    if (i + 1 >= argc) { strvec_free(&args); return kiln_cli_usage_error("run", "%s needs a value", a); }
    const char *v = argv[++i];
    int k = -1;
    for (int s = 0; s < 6; s++)
      if (!strncmp(a, "--", 2) && !strcmp(a + 2, settings[s])) k = s;
    if (k >= 0) {
      kiln_image_prep probe;
      char err[128];
      kiln_image_prep_init(&probe);
      if (kiln_image_prep_set(&probe, settings[k], v, err, sizeof err)) {
        strvec_free(&args);
        return kiln_cli_usage_error("run", "--%s", err);
      }
      set_val[k] = v;
    } else if (!strcmp(a, "--image")) {
      if (strvec_push(&args, v)) return kiln_cli_usage_error("run", "out of memory");
    } else if (!strcmp(a, "--crop")) {
      if (strcmp(v, "center") && strcmp(v, "centre")) { strvec_free(&args); return kiln_cli_usage_error("run", "--crop must be center"); }
    } else if (!strcmp(a, "--dump-after")) {
      int r = kiln_cli_dump_option("run", v, &dump_after);
      if (r) { strvec_free(&args); return r == 3 ? 0 : r; }
    } else if (!strcmp(a, "--labels")) labels_path = v;
    else if (!strcmp(a, "--csv")) csv_path = v;
    else if (!strcmp(a, "--batch-size") || !strcmp(a, "--threads")) {
      int64_t n = kiln_cli_parse_count(v);
      if (n < 0 || n > 4096) { strvec_free(&args); return kiln_cli_usage_error("run", "%s must be a positive integer, got '%s'", a, v); }
      if (a[2] == 'b') batch_opt = n;
      else threads = (int)n;
    } else if (!strcmp(a, "--size")) {
      char hs[32];
      const char *x = strchr(v, 'x');
      if (x && (size_t)(x - v) < sizeof hs) snprintf(hs, sizeof hs, "%.*s", (int)(x - v), v);
      if (!x || (size_t)(x - v) >= sizeof hs || (size_h = kiln_cli_parse_count(hs)) < 0 ||
          (size_w = kiln_cli_parse_count(x + 1)) < 0 || size_h > 65536 || size_w > 65536) {
        strvec_free(&args);
        return kiln_cli_usage_error("run", "--size must be HxW, got '%s'", v);
      }
    } else {
      strvec_free(&args);
      return kiln_cli_usage_error("run", "unknown option '%s' with --image", a);
    }
  }
  if (!path) { strvec_free(&args); return kiln_cli_usage_error("run", "no model given"); }
  if (csv_path) { /* refuse early: a run of many images must not fail at the end */
    struct stat st;
    char *dir = strdup(csv_path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = '\0';
    int ok = dir && stat(slash ? (dir[0] ? dir : "/") : ".", &st) == 0 && S_ISDIR(st.st_mode);
    free(dir);
    if (!ok) { strvec_free(&args); fprintf(stderr, "kiln: error: %s: folder does not exist\n", csv_path); return 1; }
  }

  int rc = 1, import_failed = 0;
  kiln_graph *g = NULL;
  kiln_llvm_jit *jit = NULL;
  void **bufs = NULL, **owned = NULL, *ws = NULL, *in_data = NULL, *out_data = NULL;
  int nbufs = 0;
  double *probs = NULL;
  kiln_labels labels = {0};
  textbuf csv = {0};
  kiln_image im = {0};
  for (size_t i = 0; i < args.n; i++)
    if (add_images(&files, args.v[i], &from_dir, &d)) goto fail;
  g = kiln_cli_import(path, &d);
  if (!g) { import_failed = 1; goto fail; }
  kiln_loc loc = {.file = path, .node_index = -1};
  kiln_image_prep prep;
  kiln_image_prep_init(&prep);
  prep.nhwc = -1; /* decided below unless set */
  if (kiln_image_prep_from_meta(&prep, g, &d)) goto fail;
  for (int s = 0; s < 6; s++) {
    char err[128];
    if (set_val[s] && kiln_image_prep_set(&prep, settings[s], set_val[s], err, sizeof err)) {
      kiln_error(&d, &loc, "--%s", err);
      goto fail;
    }
  }
  if (labels_path ? kiln_labels_read(labels_path, &labels, &d) : kiln_labels_from_meta(g, &labels, &d)) goto fail;

  /* The input: one, rank 4, 3 channels; sizes bound. */
  if (g->ninputs != 1) { kiln_error(&d, &loc, "--image needs a model with one input; this one has %d", g->ninputs); goto fail; }
  kiln_value *in = g->inputs[0];
  char ty[256];
  kiln_value_type_str(g, in, ty, sizeof ty);
  if (in->rank != 4 || !kiln_dtype_is_float(in->dtype)) {
    kiln_error(&d, &loc, "input '%s' is %s; --image needs a 4-D float image tensor", in->name, ty);
    goto fail;
  }
  if (prep.nhwc < 0) prep.nhwc = in->dims[1] != 3 && in->dims[3] == 3;
  int hax = prep.nhwc ? 1 : 2, wax = hax + 1, cax = prep.nhwc ? 3 : 1;
  if (in->dims[cax] != 3) {
    kiln_error(&d, &loc, "input '%s' is %s: %s layout needs 3 channels in dimension %d", in->name, ty,
               prep.nhwc ? "NHWC" : "NCHW", cax);
    goto fail;
  }
  int64_t hw[2] = {size_h, size_w};
  for (int k = 0; k < 2; k++) {
    kiln_dim dim = in->dims[k ? wax : hax];
    if (!KILN_DIM_IS_SYM(dim)) {
      if (hw[k] && hw[k] != dim) { kiln_error(&d, &loc, "--size %lldx%lld does not match input '%s' %s", (long long)size_h, (long long)size_w, in->name, ty); goto fail; }
      hw[k] = dim;
    } else if (!hw[k]) {
      kiln_error(&d, &loc, "input '%s' is %s: give its image size with --size HxW", in->name, ty);
      goto fail;
    } else kiln_pass_bind_sym(g, dim, hw[k]);
  }
  if (hw[0] > 65536 || hw[1] > 65536) { kiln_error(&d, &loc, "input '%s' is %s: too large for an image", in->name, ty); goto fail; }
  prep.height = (int)hw[0];
  prep.width = (int)hw[1];
  int64_t batch = in->dims[0];
  if (KILN_DIM_IS_SYM(batch)) {
    int64_t b = batch_opt ? batch_opt : (int64_t)files.n < 8 ? (int64_t)files.n : 8;
    kiln_pass_bind_sym(g, batch, b);
    batch = b;
  } else if (batch_opt && batch_opt != batch) {
    kiln_error(&d, &loc, "input '%s' is %s: its batch size is fixed at %lld, not --batch-size %lld", in->name, ty,
               (long long)batch, (long long)batch_opt);
    goto fail;
  }
  for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), 1); /* any other: 1 (bound ones stay) */

  /* The rest of the pipeline (the graph is imported and bound above). */
  kiln_pipeline pl;
  kiln_target target = kiln_llvm_target(0);
  kiln_pipeline_opts po = {.graph = g, .dump_after = (kiln_pass_id)dump_after, .target = &target, .per_image = 2};
  if (kiln_pipeline_run(&po, &pl, &d)) goto fail;
  kiln_program *p = pl.program;
  jit = kiln_llvm_jit_compile(p, &d);
  if (!jit) goto fail;
  if (kiln_llvm_jit_set_threads(jit, threads)) { kiln_error(&d, NULL, "cannot start %d threads", threads); goto fail; }
  nbufs = p->nbufs;
  bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  owned = calloc((size_t)p->nbufs + 1, sizeof *owned);
  ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  if (!bufs || !owned || !ws) { kiln_error(&d, &loc, "out of memory"); goto fail; }
  kiln_llvm_jit_bind(p, bufs, ws);
  const kiln_buf *ib = NULL, *ob = NULL;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    size_t bytes = (size_t)buf->numel * kiln_dtype_size(buf->dtype);
    if (buf->kind != KILN_BUF_INPUT && buf->kind != KILN_BUF_OUTPUT) continue;
    bufs[b] = owned[b] = calloc(1, bytes + 8);
    if (buf->kind == KILN_BUF_INPUT) { ib = buf; in_data = bufs[b]; }
    if (buf->kind == KILN_BUF_OUTPUT && !ob) { ob = buf; out_data = bufs[b]; }
  }
  if (!ib || !ob || !in_data || !out_data) { kiln_error(&d, &loc, "out of memory"); goto fail; }
  if (!kiln_dtype_is_float(ob->dtype) || ob->rank < 1 || ob->dims[0] != batch || ob->numel / batch < 2) {
    kiln_error(&d, &loc, "output '%s' is not a classifier output [batch, classes, ...]", ob->name);
    goto fail;
  }
  const int64_t classes = ob->numel / batch;
  const int k = classes < TOPK ? (int)classes : TOPK;
  probs = malloc(sizeof *probs * (size_t)classes);
  if (!probs) { kiln_error(&d, &loc, "out of memory"); goto fail; }
  if (labels.n && labels.n != classes && !labels_path)
    fprintf(stderr, "kiln: note: the model's labels name %lld classes, its output has %lld\n", (long long)labels.n,
            (long long)classes);
  if (csv_path) {
    if (tb_add(&csv, "file")) goto oom;
    for (int j = 1; j <= k; j++) {
      char h[64];
      snprintf(h, sizeof h, ",class%d,label%d,p%d", j, j, j);
      if (tb_add(&csv, h)) goto oom;
    }
    if (tb_add(&csv, "\n")) goto oom;
  }
  int progress = from_dir || files.n > (size_t)batch, tty = isatty(2), softmaxed = 0;
  for (size_t first = 0; first < files.n; first += (size_t)batch) {
    size_t nb = files.n - first < (size_t)batch ? files.n - first : (size_t)batch;
    memset(in_data, 0, (size_t)ib->numel * kiln_dtype_size(ib->dtype));
    for (size_t j = 0; j < nb; j++) {
      if (kiln_image_read(files.v[first + j], MAX_PIXELS, &im, &d)) goto fail;
      int r = kiln_image_to_tensor(&im, &prep, ib->dtype, in_data, (int64_t)j);
      kiln_image_free(&im);
      if (r) { kiln_error(&d, &loc, "out of memory"); goto fail; }
    }
    kiln_llvm_jit_run(jit, bufs);
    for (size_t j = 0; j < nb; j++) {
      for (int64_t c = 0; c < classes; c++) probs[c] = kiln_dtype_load_f(ob->dtype, out_data, j * (size_t)classes + (size_t)c);
      softmaxed |= to_probs(probs, classes);
      int64_t top[TOPK];
      top_k(probs, classes, k, top);
      char esc[1024], field[2100];
      kiln_text_escape(files.v[first + j], esc, sizeof esc);
      printf("%s\n", esc);
      if (csv_path) {
        kiln_csv_field(files.v[first + j], field, sizeof field);
        if (tb_add(&csv, field)) goto oom;
      }
      for (int q = 0; q < k; q++) {
        const char *name = kiln_labels_get(&labels, top[q]);
        kiln_text_escape(name ? name : "", esc, sizeof esc);
        printf("  %2d. class %-5lld p %.4f%s%s\n", q + 1, (long long)top[q], probs[top[q]], name ? "  " : "", esc);
        if (csv_path) {
          char num[64];
          snprintf(num, sizeof num, ",%lld,", (long long)top[q]);
          kiln_csv_field(name ? name : "", field, sizeof field);
          if (tb_add(&csv, num) || tb_add(&csv, field)) goto oom;
          snprintf(num, sizeof num, ",%.6g", probs[top[q]]);
          if (tb_add(&csv, num)) goto oom;
        }
      }
      if (csv_path && tb_add(&csv, "\n")) goto oom;
    }
    fflush(stdout);
    if (progress)
      fprintf(stderr, "kiln: %zu/%zu images%s", first + nb, files.n, tty && first + nb < files.n ? "\r" : "\n");
  }
  if (softmaxed) {
    char esc[512];
    kiln_text_escape(ob->name, esc, sizeof esc);
    fprintf(stderr, "kiln: note: p is the softmax of output '%s' (it is not a distribution)\n", esc);
  }
  if (csv_path && kiln_write_atomic(csv_path, csv.p, csv.len, &d)) goto fail;
  rc = 0;
  goto fail;
oom:
  kiln_error(&d, &loc, "out of memory");
fail:
  /* kiln_error escapes control bytes in names from folders and models
   * (ir/diag.c), so every message stays one line. */
  if (rc && (import_failed || d.failed)) kiln_cli_report(&d);
  else if (rc) fprintf(stderr, "kiln: error: unknown failure\n");
  kiln_image_free(&im);
  free(csv.p);
  free(probs);
  kiln_labels_free(&labels);
  for (int b = 0; owned && b < nbufs; b++) free(owned[b]);
  free(owned);
  free(bufs);
  free(ws);
  kiln_llvm_jit_free(jit);
  kiln_graph_free(g);
  strvec_free(&files);
  strvec_free(&args);
  return rc;
}
