/* `kiln run --target cuda` (kiln_cuda.h): the program printed as CUDA C
 * (kiln_cuda_emit), compiled by NVRTC (cuda_nvrtc.c), described for the
 * runtime (cuda_module.c) and run by runtime/kiln_cuda_rt.c -- the same
 * runtime `kiln compile --target cuda` ships, so the CLI tests it. */
#include <stdlib.h>
#include <string.h>

#include "kiln_cuda_gpu.h"

struct kiln_cuda_gpu {
  const kiln_program *p;
  const char *what; /* the model's path, for errors */
  kiln_cuda_images images;
  kiln_cuda_module mod;
  unsigned char *blob;
  kiln_cuda_rt *rt;
  const void **in;
  void **out;
};

int kiln_cuda_gpu_arch(const char *what, kiln_diag *d) {
  char err[512];
  int arch = 0;
  if (kiln_cuda_rt_device_arch(&arch, NULL, 0, err, sizeof err)) return kiln_error(d, NULL, "%s: --target cuda: %s", what, err);
  return arch;
}

kiln_cuda_gpu *kiln_cuda_gpu_compile(const kiln_program *p, const int *archs, int narchs, int ptx, const char *what,
                                     kiln_diag *d) {
  kiln_cuda_options o = {.prefix = "net", .model = "model"};
  kiln_c_output out;
  kiln_cuda_gpu *g = calloc(1, sizeof *g);
  if (!g) { kiln_error(d, NULL, "out of memory"); return NULL; }
  g->p = p;
  g->what = what;
  if (kiln_cuda_emit(p, &o, &out, d)) { free(g); return NULL; }
  g->blob = out.blob;
  out.blob = NULL;
  int rc = kiln_cuda_nvrtc_compile(out.source, archs, narchs, ptx, &g->images, what, d);
  kiln_c_output_free(&out);
  if (rc || kiln_cuda_module_build(p, &g->mod, d)) { kiln_cuda_gpu_free(g); return NULL; }
  g->mod.m.nimages = g->images.n;
  g->mod.m.images = g->images.im;
  g->in = calloc((size_t)p->ninputs + 1, sizeof *g->in);
  g->out = calloc((size_t)p->noutputs + 1, sizeof *g->out);
  char err[512];
  if (!g->in || !g->out) { kiln_error(d, NULL, "out of memory"); kiln_cuda_gpu_free(g); return NULL; }
  if (!(g->rt = kiln_cuda_rt_open(&g->mod.m, g->blob, err, sizeof err))) {
    kiln_error(d, NULL, "%s: --target cuda: %s", what, err);
    kiln_cuda_gpu_free(g);
    return NULL;
  }
  return g;
}

int kiln_cuda_gpu_run(kiln_cuda_gpu *g, void **bufs, kiln_diag *d) {
  const kiln_program *p = g->p;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *x = p->bufs[b];
    if (x->view_of) continue;
    if (x->kind == KILN_BUF_INPUT) g->in[x->io_index] = bufs[b];
    if (x->kind == KILN_BUF_OUTPUT) g->out[x->io_index] = bufs[b];
  }
  char err[512];
  if (kiln_cuda_rt_run(g->rt, g->in, g->out, err, sizeof err)) return kiln_error(d, NULL, "%s: --target cuda: %s", g->what, err);
  return 0;
}

const char *kiln_cuda_gpu_image(const kiln_cuda_gpu *g) { return kiln_cuda_rt_image_used(g->rt); }

void kiln_cuda_gpu_free(kiln_cuda_gpu *g) {
  if (!g) return;
  kiln_cuda_rt_close(g->rt);
  kiln_cuda_images_free(&g->images);
  kiln_cuda_module_free(&g->mod);
  free(g->blob);
  free(g->in);
  free(g->out);
  free(g);
}
