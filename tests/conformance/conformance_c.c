/* ONNX conformance through the C backend: every case is emitted as C99,
 * compiled with `cc -std=c99 -Wall -Wextra -Wpedantic -Werror` into a
 * shared object (under the sanitizers too when this runner was built with
 * them), loaded with dlopen and run on every test data set; tolerances in
 * execute.c.  usage as the other runners, plus KILN_CC to pick the compiler. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backends/c/kiln_c.h"
#include "execute.h"

#ifndef KILN_TEST_SANITIZE
#define KILN_TEST_SANITIZE 0
#endif

typedef int (*run_v_fn)(const void *, const void *const *, void *const *, void *);
typedef struct c_handle { void *dl; run_v_fn run; char dir[256]; } c_handle;

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

static void *c_compile(const kiln_program *p, const suite_case *c, kiln_diag *d) {
  (void)c;
  kiln_c_options o = {.prefix = "net", .model = "model.onnx"};
  kiln_c_output out;
  if (kiln_c_emit(p, &o, &out, d)) return NULL;
  c_handle *h = calloc(1, sizeof *h);
  snprintf(h->dir, sizeof h->dir, "/tmp/kiln-conf-c-%ld", (long)getpid());
  char path[512], cmd[2048];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", h->dir);
  if (system(cmd) != 0) { kiln_error(d, NULL, "cannot create %s", h->dir); free(h); kiln_c_output_free(&out); return NULL; }
  snprintf(path, sizeof path, "%s/net.h", h->dir);
  write_text(path, out.header);
  snprintf(path, sizeof path, "%s/net.c", h->dir);
  write_text(path, out.source);
  snprintf(path, sizeof path, "%s/net_weights.c", h->dir);
  write_text(path, out.weights);
  kiln_c_output_free(&out);
  const char *cc = getenv("KILN_CC") ? getenv("KILN_CC") : "cc";
  snprintf(cmd, sizeof cmd,
           "%s -std=c99 -O1 -Wall -Wextra -Wpedantic -Werror -fPIC -shared %s -o %s/net.so %s/net.c %s/net_weights.c "
           "-lm 2> %s/cc.log",
           cc, KILN_TEST_SANITIZE ? "-fsanitize=address,undefined -fno-sanitize-recover=undefined" : "", h->dir, h->dir,
           h->dir, h->dir);
  if (system(cmd) != 0) {
    char log[300] = "";
    snprintf(path, sizeof path, "%s/cc.log", h->dir);
    FILE *f = fopen(path, "r");
    if (f) { size_t n = fread(log, 1, sizeof log - 1, f); log[n] = 0; fclose(f); }
    for (char *q = log; *q; q++) if (*q == '\n') *q = ' ';
    const char *why = strstr(log, "error:"); /* drop the temporary path */
    kiln_error(d, NULL, "generated C does not compile: %.150s", why ? why : log);
    free(h);
    return NULL;
  }
  snprintf(path, sizeof path, "%s/net.so", h->dir);
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  h->run = h->dl ? (run_v_fn)(uintptr_t)dlsym(h->dl, "net_run_v") : NULL;
  unlink(path);
  if (!h->run) { kiln_error(d, NULL, "cannot load the compiled C: %s", dlerror()); if (h->dl) dlclose(h->dl); free(h); return NULL; }
  return h;
}

/* The generated entry takes inputs/outputs by index; gather them from bufs. */
static void c_run(void *hv, const kiln_program *p, void **bufs) {
  c_handle *h = hv;
  const void *in[256] = {0};
  void *out[256] = {0};
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *x = p->bufs[b];
    if (x->kind == KILN_BUF_INPUT && x->io_index < 256) in[x->io_index] = bufs[b];
    if (x->kind == KILN_BUF_OUTPUT && x->io_index < 256) out[x->io_index] = bufs[b];
  }
  void *ws = malloc((size_t)p->workspace_bytes + 64);
  h->run(NULL, in, out, ws);
  free(ws);
}

static void c_release(void *hv) {
  c_handle *h = hv;
  dlclose(h->dl);
  free(h);
}

static const suite_backend cback = {"c", c_compile, c_run, c_release, NULL, 1};

static void run_case(const suite_case *c, suite_run *r) { suite_execute(c, r, &cback); }

int main(int argc, char **argv) { return suite_main(argc, argv, "C backend, emit + cc + run", run_case); }
