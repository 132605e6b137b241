/* The host emulation's runner (kiln_cuda.h): kiln_cuda_emit's .cu file,
 * runtime/kiln_cuda_host.h (embedded in kiln) and the header written to a
 * private temporary folder (mkdtemp: the paths hold no model string),
 * compiled by the system C compiler as C99 (`cc -x c`, as the C backend's
 * tests build emit-c's output) into a shared object, loaded, and the
 * folder removed.  Each instance owns its weights blob, workspace and
 * state. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_cuda.h"

typedef int (*run_v_fn)(const void *, const void *const *, void *const *, void *, void *);
typedef int (*run_v_nostate_fn)(const void *, const void *const *, void *const *, void *);

struct kiln_cuda_host {
  const kiln_program *p;
  void *dl;
  void *run;                 /* net_run_v */
  unsigned char *blob;       /* weights, then the state's initial contents */
  void *ws, *state;
};

static int write_text(const char *dir, const char *name, const char *text, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t n = fwrite(text, 1, len, f);
  return fclose(f) || n != len ? -1 : 0;
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(dir);
}

/* The compiler's first error line, without the temporary path. */
static void first_error(const char *dir, char *out, size_t size) {
  char path[512], log[600] = "";
  snprintf(path, sizeof path, "%s/cc.log", dir);
  FILE *f = fopen(path, "r");
  if (f) { size_t n = fread(log, 1, sizeof log - 1, f); log[n] = 0; fclose(f); }
  const char *why = strstr(log, "error");
  snprintf(out, size, "%s", why ? why : log);
  char *nl = strchr(out, '\n');
  if (nl) *nl = 0;
}

kiln_cuda_host *kiln_cuda_host_compile(const kiln_program *p, kiln_diag *d) {
  kiln_cuda_options o = {.prefix = "net", .model = "model"};
  kiln_c_output out;
  if (kiln_cuda_emit(p, &o, &out, d)) return NULL;
  kiln_cuda_host *h = calloc(1, sizeof *h);
  char dir[] = "/tmp/kiln-cuda-host-XXXXXX";
  if (!h || !mkdtemp(dir)) {
    kiln_c_output_free(&out);
    free(h);
    kiln_error(d, NULL, "cuda-host: cannot create a temporary folder");
    return NULL;
  }
  h->p = p;
  h->blob = out.blob;
  out.blob = NULL;
  int bad = write_text(dir, "net.h", out.header, strlen(out.header)) ||
            write_text(dir, "net.cu", out.source, strlen(out.source)) ||
            write_text(dir, "kiln_cuda_host.h", kiln_cuda_host_h_source, strlen(kiln_cuda_host_h_source));
  kiln_c_output_free(&out);
  char cmd[2048], path[512];
  const char *cc = getenv("KILN_CC") && *getenv("KILN_CC") ? getenv("KILN_CC") : "cc";
  snprintf(cmd, sizeof cmd,
           "%s -x c -std=c99 -O1 -Wall -Wextra -Wpedantic -Werror -fPIC -shared -o %s/net.so %s/net.cu -lm 2> %s/cc.log", cc,
           dir, dir, dir);
  if (bad || system(cmd) != 0) {
    char why[256];
    first_error(dir, why, sizeof why);
    kiln_error(d, NULL, "cuda-host: generated CUDA C does not compile for the host: %s", bad ? "cannot write it" : why);
    remove_dir(dir);
    kiln_cuda_host_free(h);
    return NULL;
  }
  snprintf(path, sizeof path, "%s/net.so", dir);
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  h->run = h->dl ? dlsym(h->dl, "net_run_v") : NULL;
  if (!h->run) kiln_error(d, NULL, "cuda-host: cannot load the compiled kernels: %s", dlerror());
  remove_dir(dir);
  size_t ws = (size_t)p->workspace_bytes + 64, st = (size_t)p->state_bytes + 64;
  if (h->run && (!(h->ws = malloc(ws)) || !(h->state = calloc(1, st)))) {
    kiln_error(d, NULL, "cuda-host: out of memory");
    h->run = NULL;
  }
  if (!h->run) {
    kiln_cuda_host_free(h);
    return NULL;
  }
  if (p->state_bytes > 0) { /* the generated state_init: the blob's copy, 64-aligned */
    void (*init)(const void *, void *) = (void (*)(const void *, void *))(uintptr_t)dlsym(h->dl, "net_state_init");
    if (init) init(h->blob, h->state);
  }
  return h;
}

int kiln_cuda_host_run(kiln_cuda_host *h, void **bufs) {
  const kiln_program *p = h->p;
  const void **in = calloc((size_t)p->ninputs + 1, sizeof *in);
  void **out = calloc((size_t)p->noutputs + 1, sizeof *out);
  if (!in || !out) { free(in); free(out); return -1; }
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *x = p->bufs[b];
    if (x->view_of) continue;
    if (x->kind == KILN_BUF_INPUT) in[x->io_index] = bufs[b];
    if (x->kind == KILN_BUF_OUTPUT) out[x->io_index] = bufs[b];
  }
  int rc = p->state_bytes > 0 ? ((run_v_fn)(uintptr_t)h->run)(h->blob, in, out, h->state, h->ws)
                               : ((run_v_nostate_fn)(uintptr_t)h->run)(h->blob, in, out, h->ws);
  free(in);
  free(out);
  return rc ? -1 : 0;
}

void kiln_cuda_host_free(kiln_cuda_host *h) {
  if (!h) return;
  if (h->dl) dlclose(h->dl);
  free(h->blob);
  free(h->ws);
  free(h->state);
  free(h);
}
