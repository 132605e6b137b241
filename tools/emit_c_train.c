/* kiln emit-c --train: the generated training program, main.c.
 *
 * The training step itself is the ordinary emit-c output (PREFIX.c: one
 * call of PREFIX_run_v is one step; its state is the parameters and the
 * optimizer's moments).  main.c drives it: it reads x.npy and y.npy with
 * a small bounds-checked .npy reader (the files are hostile input: header
 * parsed with every length and product checked, payload size must match),
 * visits the samples in the order runtime/kiln_shuffle.h specifies
 * (written next to it), feeds mini-batches of the compiled batch size (the
 * last short batch dropped), prints each epoch's mean loss and finally
 * writes the trained parameters in kiln's parameter file format:
 *
 *   "KILNPAR1"                      8 bytes
 *   u32 count                       then, per tensor:
 *   u32 name length, name bytes     (exact, no terminator)
 *   u32 dtype                       ONNX TensorProto.DataType (1: float)
 *   u32 rank, i64 dims[rank]
 *   u64 byte count, raw data
 * every integer and float little-endian.  `kiln export MODEL --params FILE`
 * puts them back into the model by name (tools/params_file.c reads it).
 * The file holds every state tensor that is an initializer of the model
 * (trained parameters, BatchNorm running statistics), not the moments.
 *
 * Model names reach main.c only as string literals whose every byte but
 * [A-Za-z0-9_] is an octal escape: exact bytes, nothing to interpret. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/c/c_names.h"
#include "cli.h"
#include "train_opts.h"

static void put_bytes_literal(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') fputc(*p, f);
    else fprintf(f, "\\%03o", *p);
  }
  fputc('"', f);
}

static const kiln_buf *io_buf(const kiln_program *p, kiln_buf_kind kind, int k) {
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == kind && p->bufs[b]->io_index == k) return p->bufs[b];
  return NULL;
}

/* Whether name is a float initializer of the model g0 (not one the
 * training step added). */
static int model_initializer(const kiln_graph *g0, const char *name) {
  for (int i = 0; i < g0->nvalues; i++) {
    const kiln_value *v = g0->values[i];
    if ((v->kind == KILN_VALUE_PARAM || v->kind == KILN_VALUE_STATE) && v->data && kiln_dtype_is_float(v->dtype) &&
        !strcmp(v->name, name))
      return 1;
  }
  return 0;
}

static const char program_text[] =
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <stdint.h>\n#include <math.h>\n\n"
    "#include \"@P@.h\"\n#include \"kiln_shuffle.h\"\n\n"
    "/* ---- .npy files: hostile input, every size checked ---- */\n"
    "typedef struct npy { char descr[8]; int rank; long long dims[8]; long long numel; const unsigned char *data; unsigned char *buf; } npy;\n\n"
    "static unsigned char *read_all(const char *path, long *len) {\n"
    "  FILE *f = fopen(path, \"rb\");\n  unsigned char *buf = NULL;\n  if (!f) return NULL;\n"
    "  if (fseek(f, 0, SEEK_END) == 0 && (*len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {\n"
    "    buf = malloc((size_t)*len + 1);\n"
    "    if (buf && fread(buf, 1, (size_t)*len, f) != (size_t)*len) { free(buf); buf = NULL; }\n  }\n"
    "  fclose(f);\n  return buf;\n}\n\n"
    "/* The value of 'key': in a .npy header dict (NUL-terminated copy), or NULL. */\n"
    "static const char *npy_key(const char *h, const char *key) {\n"
    "  const char *p = strstr(h, key);\n  if (!p) return NULL;\n  p += strlen(key);\n"
    "  while (*p == ' ') p++;\n  if (*p != ':') return NULL;\n  p++;\n  while (*p == ' ') p++;\n  return p;\n}\n\n"
    "static int npy_read(const char *path, npy *a) {\n"
    "  long len = 0;\n  unsigned long hlen, start;\n  char *h;\n  const char *p;\n  size_t elem;\n"
    "  memset(a, 0, sizeof *a);\n"
    "  if (!(a->buf = read_all(path, &len))) return -1;\n"
    "  if (len < 12 || memcmp(a->buf, \"\\223NUMPY\", 6)) return -1;\n"
    "  if (a->buf[6] == 1) { hlen = a->buf[8] | (unsigned long)a->buf[9] << 8; start = 10; }\n"
    "  else if (a->buf[6] == 2 || a->buf[6] == 3) {\n"
    "    hlen = a->buf[8] | (unsigned long)a->buf[9] << 8 | (unsigned long)a->buf[10] << 16 | (unsigned long)a->buf[11] << 24;\n"
    "    start = 12;\n  } else return -1;\n"
    "  if (hlen > (unsigned long)len - start || hlen > 65536) return -1;\n"
    "  if (!(h = malloc(hlen + 1))) return -1;\n  memcpy(h, a->buf + start, hlen);\n  h[hlen] = 0;\n"
    "  p = npy_key(h, \"'fortran_order'\");\n"
    "  if (!p || strncmp(p, \"False\", 5)) { free(h); return -1; }\n"
    "  p = npy_key(h, \"'descr'\");\n"
    "  if (!p || *p != '\\'') { free(h); return -1; }\n"
    "  if (!strncmp(p, \"'<f4'\", 5)) strcpy(a->descr, \"f4\");\n"
    "  else if (!strncmp(p, \"'|u1'\", 5) || !strncmp(p, \"'<u1'\", 5)) strcpy(a->descr, \"u1\");\n"
    "  else if (!strncmp(p, \"'<i8'\", 5)) strcpy(a->descr, \"i8\");\n"
    "  else { free(h); return -1; }\n"
    "  elem = a->descr[0] == 'u' ? 1 : a->descr[0] == 'f' ? 4 : 8;\n"
    "  p = npy_key(h, \"'shape'\");\n"
    "  if (!p || *p != '(') { free(h); return -1; }\n  p++;\n  a->numel = 1;\n"
    "  for (;;) {\n    long long d = 0;\n    while (*p == ' ') p++;\n    if (*p == ')') break;\n"
    "    if (*p < '0' || *p > '9' || a->rank == 8) { free(h); return -1; }\n"
    "    while (*p >= '0' && *p <= '9') {\n"
    "      if (d > (1LL << 40)) { free(h); return -1; }\n      d = d * 10 + (*p++ - '0');\n    }\n"
    "    if (d && a->numel > (1LL << 50) / d) { free(h); return -1; }\n"
    "    a->dims[a->rank++] = d;\n    a->numel *= d;\n    while (*p == ' ') p++;\n"
    "    if (*p == ',') p++;\n    else if (*p != ')') { free(h); return -1; }\n  }\n  free(h);\n"
    "  if ((unsigned long long)a->numel * elem != (unsigned long long)(len - (long)start - (long)hlen)) return -1;\n"
    "  a->data = a->buf + start + hlen;\n  return 0;\n}\n\n"
    "/* ---- the parameter file (format: kiln emit-c --train's main.c, tools/emit_c_train.c) ---- */\n"
    "typedef struct param { const char *name; int rank; long long dims[8]; long long offset, numel; } param;\n"
    "@PARAMS@\n"
    "static void put_u32(FILE *f, uint32_t v) { int i; for (i = 0; i < 4; i++) fputc((int)(v >> (8 * i) & 255), f); }\n"
    "static void put_u64(FILE *f, uint64_t v) { int i; for (i = 0; i < 8; i++) fputc((int)(v >> (8 * i) & 255), f); }\n\n"
    "static int write_params(const char *path, const unsigned char *st) {\n"
    "  char tmp[4200];\n  FILE *f;\n  int i, r;\n  long long k;\n"
    "  if (strlen(path) > 4000) return -1;\n  sprintf(tmp, \"%s.tmp\", path);\n"
    "  if (!(f = fopen(tmp, \"wb\"))) return -1;\n"
    "  fwrite(\"KILNPAR1\", 1, 8, f);\n  put_u32(f, (uint32_t)NPARAMS);\n"
    "  for (i = 0; i < NPARAMS; i++) {\n"
    "    const float *x = (const float *)(const void *)(st + params[i].offset);\n"
    "    put_u32(f, (uint32_t)strlen(params[i].name));\n    fputs(params[i].name, f);\n"
    "    put_u32(f, 1);\n    put_u32(f, (uint32_t)params[i].rank);\n"
    "    for (r = 0; r < params[i].rank; r++) put_u64(f, (uint64_t)params[i].dims[r]);\n"
    "    put_u64(f, (uint64_t)params[i].numel * 4);\n"
    "    for (k = 0; k < params[i].numel; k++) { uint32_t b; memcpy(&b, &x[k], 4); put_u32(f, b); }\n  }\n"
    "  if (ferror(f) | fclose(f)) { remove(tmp); return -1; }\n"
    "  return rename(tmp, path);\n}\n\n"
    "/* ---- training ---- */\n"
    "#define BATCH @BATCH@LL\n#define X_SAMPLE @XSAMPLE@LL\n#define Y_SAMPLE @YSAMPLE@LL\n#define Y_INT @YINT@\n#define CLASSES @CLASSES@LL\n"
    "static const long long x_dims[] = {@XDIMS@};\nstatic const long long y_dims[] = {@YDIMS@};\n\n"
    "static unsigned char workspace[@UP@_WORKSPACE_SIZE];\nstatic unsigned char state[@UP@_STATE_SIZE];\n"
    "static float xb[BATCH * X_SAMPLE];\n#if Y_INT\nstatic int64_t yb[BATCH * Y_SAMPLE];\n#else\nstatic float yb[BATCH * Y_SAMPLE];\n#endif\n"
    "static float ybuf[@YOUT@];\n\n"
    "static int usage(const char *argv0) {\n"
    "  fprintf(stderr, \"usage: %s X.npy Y.npy [--epochs N] [--lr F] [--seed S] [--out PARAMS] [--weights FILE]\\n\", argv0);\n"
    "  return 2;\n}\n\n"
    "/* Whether array a holds n samples of one sample's dims (rank r, dims after the batch). */\n"
    "static int fits(const npy *a, const long long *dims, int r) {\n"
    "  int i;\n  if (a->rank != r || a->dims[0] < 1) return 0;\n"
    "  for (i = 1; i < r; i++) if (a->dims[i] != dims[i]) return 0;\n  return 1;\n}\n\n"
    "int main(int argc, char **argv) {\n"
    "  npy x = {0}, y = {0};\n  long epochs = 1, e, b, nb, i, step = 0;\n  double lr = 0.01;\n  unsigned long long seed = 0;\n"
    "  const char *out = \"params.bin\";\n  unsigned char *weights = NULL;\n  int64_t *order = NULL;\n  int rc = 1;\n  long long n, k;\n"
    "  if (argc < 3) return usage(argv[0]);\n"
    "  for (i = 3; i < argc; i++) {\n    char *end = NULL;\n"
    "    if (i + 1 >= argc) { rc = usage(argv[0]); goto fail; }\n"
    "    if (!strcmp(argv[i], \"--epochs\")) { epochs = strtol(argv[++i], &end, 10); if (*end || epochs < 1 || epochs > 1000000) { rc = usage(argv[0]); goto fail; } }\n"
    "    else if (!strcmp(argv[i], \"--lr\")) { lr = strtod(argv[++i], &end); if (*end || !(lr >= 0) || lr > 1e6) { rc = usage(argv[0]); goto fail; } }\n"
    "    else if (!strcmp(argv[i], \"--seed\")) { seed = strtoull(argv[++i], &end, 10); if (*end) { rc = usage(argv[0]); goto fail; } }\n"
    "    else if (!strcmp(argv[i], \"--out\")) out = argv[++i];\n"
    "    else if (!strcmp(argv[i], \"--weights\")) {\n      long len = 0;\n"
    "      if (!(weights = read_all(argv[++i], &len))) { fprintf(stderr, \"cannot read %s\\n\", argv[i]); goto fail; }\n"
    "#if @WFILE@\n"
    "      if (len != @UP@_WEIGHTS_SIZE) { fprintf(stderr, \"%s: %ld bytes, expected %ld\\n\", argv[i], len, (long)@UP@_WEIGHTS_SIZE); goto fail; }\n"
    "#endif\n    }\n"
    "    else { rc = usage(argv[0]); goto fail; }\n  }\n"
    "  if (@WFILE@ && !weights) { fprintf(stderr, \"this model's weights are a file: give --weights @P@.weights\\n\"); rc = 2; goto fail; }\n"
    "  if (npy_read(argv[1], &x) || !fits(&x, x_dims, @XRANK@) || (x.descr[0] != 'f' && x.descr[0] != 'u')) {\n"
    "    fprintf(stderr, \"%s: not a float32 or uint8 .npy of samples shaped like the model's input\\n\", argv[1]);\n    goto fail;\n  }\n"
    "  if (npy_read(argv[2], &y) || !fits(&y, y_dims, @YRANK@) || y.dims[0] != x.dims[0] || (Y_INT ? y.descr[0] != 'i' : y.descr[0] != 'f')) {\n"
    "    fprintf(stderr, \"%s: not a%s .npy of labels, one per sample of %s\\n\", argv[2], Y_INT ? \"n int64\" : \" float32\", argv[1]);\n    goto fail;\n  }\n"
    "  n = x.dims[0];\n  nb = (long)(n / BATCH);\n"
    "  if (nb < 1) { fprintf(stderr, \"%lld samples: fewer than one batch of %lld\\n\", n, BATCH); goto fail; }\n"
    "#if Y_INT\n  for (k = 0; k < n * Y_SAMPLE; k++) {\n    int64_t c;\n    memcpy(&c, y.data + 8 * k, 8);\n"
    "    if (c < 0 || c >= CLASSES) { fprintf(stderr, \"%s: label %lld of element %lld is not a class 0..%lld\\n\", argv[2], (long long)c, k, CLASSES - 1); goto fail; }\n  }\n#endif\n"
    "  if (!(order = malloc((size_t)n * sizeof *order))) { fprintf(stderr, \"out of memory\\n\"); goto fail; }\n"
    "  @P@_state_init(weights, state);\n"
    "  {\n    uint64_t rng = (uint64_t)seed;\n    for (e = 0; e < epochs; e++) {\n      double sum = 0;\n"
    "      kiln_shuffle_epoch(&rng, order, n);\n"
    "      for (b = 0; b < nb; b++) {\n        float loss = 0, lr_f = (float)lr, step_f;\n"
    "        const void *in[4];\n        void *outs[2];\n"
    "        for (k = 0; k < BATCH; k++) {\n          long long s = order[b * BATCH + k], j;\n"
    "          if (x.descr[0] == 'f') memcpy(xb + k * X_SAMPLE, x.data + 4 * s * X_SAMPLE, 4 * X_SAMPLE);\n"
    "          else for (j = 0; j < X_SAMPLE; j++) xb[k * X_SAMPLE + j] = (float)x.data[s * X_SAMPLE + j] / 255.0f;\n"
    "          memcpy(yb + k * Y_SAMPLE, y.data + sizeof yb[0] * s * Y_SAMPLE, sizeof yb[0] * Y_SAMPLE);\n        }\n"
    "        step_f = (float)++step;\n"
    "        in[@IX@] = xb;\n        in[@IY@] = yb;\n        in[@ILR@] = &lr_f;\n        in[@ISTEP@] = &step_f;\n"
    "        outs[@OLOSS@] = &loss;\n        outs[@OY@] = ybuf;\n"
    "        if (@P@_run_v(weights, in, outs, state, workspace) != 0) { fprintf(stderr, \"step %ld failed\\n\", step); goto fail; }\n"
    "        if (!(loss == loss) || loss > 3e38f || loss < -3e38f) { fprintf(stderr, \"epoch %ld: the loss is not finite at step %ld\\n\", e + 1, step); goto fail; }\n"
    "        sum += loss;\n      }\n"
    "      printf(\"epoch %ld loss %.9g\\n\", e + 1, sum / (double)nb);\n      fflush(stdout);\n    }\n  }\n"
    "  {\n    const unsigned char *st = state + (64u - (uintptr_t)state % 64u) % 64u;\n"
    "    if (write_params(out, st)) { fprintf(stderr, \"cannot write %s\\n\", out); goto fail; }\n  }\n"
    "  rc = 0;\nfail:\n  free(order);\n  free(x.buf);\n  free(y.buf);\n  free(weights);\n  return rc;\n}\n";

char *kiln_cli_train_main(const char *model, const kiln_program *p, const char *prefix, int weights_file,
                          kiln_diag *d) {
  /* the step's tensors */
  const kiln_buf *label = NULL, *lr = NULL, *step = NULL, *x = NULL, *loss = NULL, *y = NULL;
  int ix = -1, iy = -1, ilr = -1, istep = -1, oloss = -1, oy = -1;
  for (int k = 0; k < p->ninputs; k++) {
    const kiln_buf *b = io_buf(p, KILN_BUF_INPUT, k);
    if (!strcmp(b->name, "label")) label = b, iy = k;
    else if (!strcmp(b->name, "lr")) lr = b, ilr = k;
    else if (!strcmp(b->name, "step")) step = b, istep = k;
    else if (x) return kiln_error(d, NULL, "%s: the training program handles a model with one input; this one has "
                                  "more", model), NULL;
    else x = b, ix = k;
  }
  for (int k = 0; k < p->noutputs; k++) {
    const kiln_buf *b = io_buf(p, KILN_BUF_OUTPUT, k);
    if (!strcmp(b->name, "loss") && !loss) loss = b, oloss = k;
    else y = b, oy = k;
  }
  if (!x || !label || !lr || !step || !loss || !y || p->ninputs != 4 || p->noutputs != 2 || x->dtype != KILN_DT_F32 ||
      x->rank < 1 || (label->dtype != KILN_DT_I64 && label->dtype != KILN_DT_F32) || p->state_bytes <= 0)
    return kiln_error(d, NULL, "%s: internal: the training step does not have the inputs x, label, lr, step and the "
                      "outputs loss, y (passes/train.h)", model), NULL;
  kiln_graph *g0 = kiln_cli_import(model, d);
  if (!g0) return NULL;
  /* the parameter table */
  char *ptab = NULL;
  size_t plen = 0;
  FILE *pf = open_memstream(&ptab, &plen);
  int np = 0;
  fprintf(pf, "static const param params[] = {\n");
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *s = p->bufs[b];
    if (s->kind != KILN_BUF_STATE || s->view_of || !model_initializer(g0, s->name)) continue;
    if (s->dtype != KILN_DT_F32 || s->rank > 8) continue;
    fprintf(pf, "  {");
    put_bytes_literal(pf, s->name);
    fprintf(pf, ", %d, {", s->rank);
    for (int r = 0; r < s->rank; r++) fprintf(pf, "%s%" PRId64 "LL", r ? ", " : "", s->dims[r]);
    fprintf(pf, "%s}, %" PRId64 "LL, %" PRId64 "LL},\n", s->rank ? "" : "0", s->offset, s->numel);
    np++;
  }
  if (!np) fprintf(pf, "  {\"\", 0, {0}, 0, 0},\n");
  fprintf(pf, "};\n#define NPARAMS %d\n", np);
  fclose(pf);
  kiln_graph_free(g0);
  char up[160];
  kiln_c_identifier_from(up, sizeof up, prefix, 1);
  int64_t xsample = x->numel / (x->dims[0] ? x->dims[0] : 1), ysample = label->numel / (label->dims[0] ? label->dims[0] : 1);
  char xdims[256] = "", ydims[256] = "", num[32];
  for (int r = 0; r < x->rank; r++) {
    snprintf(num, sizeof num, "%s%" PRId64 "LL", r ? ", " : "", x->dims[r]);
    strncat(xdims, num, sizeof xdims - strlen(xdims) - 1);
  }
  for (int r = 0; r < label->rank; r++) {
    snprintf(num, sizeof num, "%s%" PRId64 "LL", r ? ", " : "", label->dims[r]);
    strncat(ydims, num, sizeof ydims - strlen(ydims) - 1);
  }
  if (!label->rank) snprintf(ydims, sizeof ydims, "1");
  /* classes: CE labels index axis 1 of y */
  int64_t classes = label->dtype == KILN_DT_I64 && y->rank >= 2 ? y->dims[1] : 0;
  struct { const char *key; char val[300]; } holes[] = {
      {"@PARAMS@", ""}, {"@BATCH@", ""},  {"@XSAMPLE@", ""}, {"@YSAMPLE@", ""}, {"@YINT@", ""},  {"@CLASSES@", ""},
      {"@XDIMS@", ""},  {"@YDIMS@", ""},  {"@UP@", ""},      {"@YOUT@", ""},    {"@XRANK@", ""}, {"@YRANK@", ""},
      {"@IX@", ""},     {"@IY@", ""},     {"@ILR@", ""},     {"@ISTEP@", ""},   {"@OLOSS@", ""}, {"@OY@", ""},
      {"@WFILE@", ""}, {"@P@", ""}};
  enum { NH = sizeof holes / sizeof holes[0] };
  snprintf(holes[1].val, 300, "%" PRId64, x->dims[0]);
  snprintf(holes[2].val, 300, "%" PRId64, xsample);
  snprintf(holes[3].val, 300, "%" PRId64, ysample);
  snprintf(holes[4].val, 300, "%d", label->dtype == KILN_DT_I64);
  snprintf(holes[5].val, 300, "%" PRId64, classes);
  snprintf(holes[6].val, 300, "%s", xdims);
  snprintf(holes[7].val, 300, "%s", ydims);
  snprintf(holes[8].val, 300, "%s", up);
  snprintf(holes[9].val, 300, "%" PRId64, y->numel);
  snprintf(holes[10].val, 300, "%d", x->rank);
  snprintf(holes[11].val, 300, "%d", label->rank);
  int idx[] = {ix, iy, ilr, istep, oloss, oy};
  for (int k = 0; k < 6; k++) snprintf(holes[12 + k].val, 300, "%d", idx[k]);
  snprintf(holes[18].val, 300, "%d", weights_file);
  snprintf(holes[19].val, 300, "%s", prefix);
  char *out = NULL;
  size_t olen = 0;
  FILE *f = open_memstream(&out, &olen);
  const char *base = strrchr(model, '/');
  fprintf(f, "/* Training program for ");
  kiln_c_put_comment(f, base ? base + 1 : model, KILN_C_NAME_SHOWN);
  fprintf(f, ", generated by kiln emit-c --train.\n"
             " *   ./train_model X.npy Y.npy [--epochs N] [--lr F] [--seed S] [--out PARAMS] [--weights FILE]\n"
             " * x: float32 (or uint8, taken as value / 255, as kiln train does), n samples shaped like the\n"
             " * model's input [%s]; y: %s, one per sample, shaped like the label [%s].\n"
             " * One run of the compiled step (%s_run_v) per mini-batch of %" PRId64 " samples, in the\n"
             " * order kiln_shuffle.h specifies (the last short batch dropped); prints each\n"
             " * epoch's mean loss; writes the trained parameters to PARAMS (default\n"
             " * params.bin; format in kiln's tools/emit_c_train.c: `kiln export MODEL\n"
             " * --params PARAMS -o OUT.onnx` turns them into an ONNX model). */\n",
          xdims, label->dtype == KILN_DT_I64 ? "int64 class ids" : "float32 targets", ydims, prefix, x->dims[0]);
  for (const char *s = program_text; *s;) {
    int done = 0;
    for (int h = 0; h < NH && !done; h++) {
      size_t kl = strlen(holes[h].key);
      if (strncmp(s, holes[h].key, kl)) continue;
      fputs(h == 0 ? ptab : holes[h].val, f);
      s += kl;
      done = 1;
    }
    if (!done) fputc(*s++, f);
  }
  fclose(f);
  free(ptab);
  return out;
}
