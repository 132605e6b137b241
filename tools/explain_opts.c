/* --explain for compile and emit-c (see explain_opts.h): option parsing and
 * the header's P_explain wrapper, written from the program's input and
 * output buffers (which it checks are the explanation graph's). */
#include "explain_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char kiln_explain_opts_usage[] =
    "explanations (kiln explain's maps inside the artifact; see the header's P_explain):\n"
    "  --explain          compile the explanation graph: inputs x and class, outputs cam, logits\n"
    "  --method M         gradcam (default), gradcam++ or saliency (adds output grad)\n"
    "  --layer NAME       Grad-CAM's feature map (default: the last one before global pooling)\n";

int kiln_explain_option(const char *cmd, int argc, char **argv, int *i, kiln_cli_explain *o) {
  const char *a = argv[*i];
  if (!strcmp(a, "--explain")) {
    o->on = 1;
    return 0;
  }
  if (strcmp(a, "--layer") && strcmp(a, "--method")) return 1;
  if (*i + 1 >= argc) return kiln_cli_usage_error(cmd, "%s needs a value", a);
  const char *v = argv[++*i];
  o->given = 1;
  if (!strcmp(a, "--layer")) {
    o->e.layer = v;
    return 0;
  }
  int m = kiln_explain_method_lookup(v);
  if (m < 0) return kiln_cli_usage_error(cmd, "--method must be gradcam, gradcam++ or saliency, got '%s'", v);
  o->e.method = (kiln_explain_method)m;
  return 0;
}

static const kiln_buf *io(const kiln_program *p, kiln_buf_kind kind, int k) {
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == kind && p->bufs[b]->io_index == k) return p->bufs[b];
  return NULL;
}

int kiln_cli_explain_header(char **header, const kiln_program *p, const char *prefix, const kiln_explain_opts *e,
                            int compiled, int weights_file, kiln_diag *d) {
  int grad = e->method == KILN_EXPLAIN_SALIENCY;
  const kiln_buf *x = io(p, KILN_BUF_INPUT, 0), *cls = io(p, KILN_BUF_INPUT, 1);
  const kiln_buf *cam = io(p, KILN_BUF_OUTPUT, 0), *lg = io(p, KILN_BUF_OUTPUT, 1), *gr = io(p, KILN_BUF_OUTPUT, 2);
  if (p->ninputs != 2 || p->noutputs != 2 + grad || !x || !cls || strcmp(cls->name, "class") || !cam ||
      strcmp(cam->name, "cam") || !lg || strcmp(lg->name, "logits") || (grad && (!gr || strcmp(gr->name, "grad"))))
    return kiln_error(d, NULL, "internal: the explanation program's inputs/outputs are not x, class -> cam, logits");
  if (p->state_bytes > 0)
    return kiln_error(d, NULL, "--explain: the model has state (kiln.state); explanation artifacts do not support it");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return kiln_error(d, NULL, "out of memory");
  fprintf(f, "/* Explanation (--explain, method %s): this program is the model's explanation\n"
             " * graph, so %s_run runs it; %s_explain is the same call, typed.  x: the model's\n"
             " * input ([", kiln_explain_method_name(e->method), prefix, prefix);
  for (int k = 0; k < x->rank; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)x->dims[k]);
  fprintf(f, "], %s); cls[n]: the class to explain per item, < 0: the\n"
             " * predicted one.  cam: [", kiln_dtype_name(x->dtype));
  for (int k = 0; k < cam->rank; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)cam->dims[k]);
  fprintf(f, "], %s (before upsampling and\n * normalisation, as kiln explain's cam.npy); logits: [",
          grad ? "max over channels of |dScore/dx|" : "the class activation map at the layer");
  for (int k = 0; k < lg->rank; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)lg->dims[k]);
  fprintf(f, "], the scores differentiated\n * (a final Softmax's input)%s.  Definitions: kiln's passes/explain.h. */\n",
          grad ? "; grad: dScore/dx, x's shape" : "");
  if (compiled) {
    fprintf(f, "static inline kiln_rt_status %s_explain(%s_model *m, const void *x, const int64_t *cls, float *cam,\n"
               "    float *logits%s) {\n", prefix, prefix, grad ? ", float *grad" : "");
    fprintf(f, "  const void *in[3] = {x, cls, 0};\n  void *out[4] = {cam, logits, %s, 0};\n", grad ? "grad" : "0");
    fprintf(f, "  return kiln_rt_run(m, in, out);\n}\n\n");
  } else {
    fprintf(f, "static inline int %s_explain(%sconst void *x, const int64_t *cls, float *cam, float *logits,%s\n"
               "    void *workspace) {\n", prefix, weights_file ? "const void *weights, " : "", grad ? " float *grad," : "");
    fprintf(f, "  const void *in[2];\n  void *out[3];\n  in[0] = x;\n  in[1] = cls;\n  out[0] = cam;\n  out[1] = logits;\n"
               "  out[2] = %s;\n", grad ? "grad" : "0");
    fprintf(f, "  return %s_run_v(%s, in, out, workspace);\n}\n\n", prefix, weights_file ? "weights" : "0");
  }
  fclose(f);
  if (!buf) return kiln_error(d, NULL, "out of memory");
  /* before the closing guard */
  const char *anchor = compiled ? "\n#endif\n" : "\n#ifdef __cplusplus\n}\n#endif\n#endif\n";
  char *h = *header, *at = NULL;
  for (char *s = strstr(h, anchor); s; s = strstr(s + 1, anchor)) at = s;
  if (!at) { free(buf); return kiln_error(d, NULL, "internal: the header has no closing guard"); }
  size_t pre = (size_t)(at - h) + 1, hl = strlen(h);
  char *nh = malloc(hl + len + 1);
  if (!nh) { free(buf); return kiln_error(d, NULL, "out of memory"); }
  memcpy(nh, h, pre);
  memcpy(nh + pre, buf, len);
  memcpy(nh + pre + len, h + pre, hl - pre + 1);
  free(buf);
  free(h);
  *header = nh;
  return 0;
}
