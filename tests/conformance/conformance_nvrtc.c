/* NVRTC compiles, and ptxas accepts, the CUDA C of every conformance case
 * (no GPU needed).  Each case the pipeline compiles for a GPU target
 * (schedule-gpu) is printed by the CUDA backend (backends/cuda/) from its
 * first test data set; cases are batched BATCH to a translation unit, each
 * in its own namespace with its kernels renamed cN_kM (the printer's
 * KILN_KERNEL is overridable for that), and every batch is compiled by
 * NVRTC to PTX for compute_80 and compute_90, then assembled by ptxas for
 * sm_80 and sm_90.  A batch that fails is retried case by case to name
 * the culprit.  NVRTC is opened at run time: without it (or ptxas) the
 * test prints why and exits 77 (skipped).
 *
 * usage: conformance_nvrtc SUITE_DIR [--only SUBSTRING] [--dump DIR] */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backends/cuda/kiln_cuda.h"
#include "../../passes/pipeline.h"
#include "suite.h"

enum { BATCH = 64 };

/* NVRTC keeps process-wide caches it never frees (as test_cuda_sketch). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnvrtc\nleak:libnvrtc-builtins\n"; }

typedef int (*create_fn)(void **, const char *, const char *, int, const char *const *, const char *const *);
typedef int (*compile_fn)(void *, int, const char *const *);
typedef int (*size_fn)(void *, size_t *);
typedef int (*get_fn)(void *, char *);
typedef int (*destroy_fn)(void **);
typedef struct nvrtc {
  create_fn create; compile_fn compile; size_fn logsize, ptxsize; get_fn getlog, getptx; destroy_fn destroy;
} nvrtc;

static const char *ptxas = "/usr/local/cuda/bin/ptxas";

static int nvrtc_open(nvrtc *n) {
  static const char *const names[] = {"libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof *names && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) return -1;
  n->create = (create_fn)(uintptr_t)dlsym(h, "nvrtcCreateProgram");
  n->compile = (compile_fn)(uintptr_t)dlsym(h, "nvrtcCompileProgram");
  n->logsize = (size_fn)(uintptr_t)dlsym(h, "nvrtcGetProgramLogSize");
  n->ptxsize = (size_fn)(uintptr_t)dlsym(h, "nvrtcGetPTXSize");
  n->getlog = (get_fn)(uintptr_t)dlsym(h, "nvrtcGetProgramLog");
  n->getptx = (get_fn)(uintptr_t)dlsym(h, "nvrtcGetPTX");
  n->destroy = (destroy_fn)(uintptr_t)dlsym(h, "nvrtcDestroyProgram");
  return n->create && n->compile && n->logsize && n->ptxsize && n->getlog && n->getptx && n->destroy ? 0 : -1;
}

/* src -> PTX for compute_<arch> -> ptxas sm_<arch>; 0, or -1 with the first
 * lines of the log printed. */
static int build(const nvrtc *n, const char *src, int arch, const char *tmp) {
  void *prog = NULL;
  char opt[64], cmd[1024], path[512];
  snprintf(opt, sizeof opt, "--gpu-architecture=compute_%d", arch);
  const char *opts[] = {opt, "--std=c++17"};
  if (n->create(&prog, src, "kiln.cu", 0, NULL, NULL)) return -1;
  int rc = n->compile(prog, 2, opts);
  size_t len = 0;
  if (rc) {
    n->logsize(prog, &len);
    char *log = malloc(len + 1);
    n->getlog(prog, log);
    log[len] = 0;
    printf("  NVRTC (compute_%d): %.600s\n", arch, log);
    free(log);
    n->destroy(&prog);
    return -1;
  }
  n->ptxsize(prog, &len);
  char *ptx = malloc(len + 1);
  n->getptx(prog, ptx);
  n->destroy(&prog);
  snprintf(path, sizeof path, "%s/k.ptx", tmp);
  FILE *f = fopen(path, "w");
  if (!f) { free(ptx); return -1; }
  fputs(ptx, f);
  fclose(f);
  free(ptx);
  snprintf(cmd, sizeof cmd, "%s -arch=sm_%d -o %s/k.cubin %s 2> %s/ptxas.log", ptxas, arch, tmp, path, tmp);
  if (system(cmd) != 0) {
    snprintf(cmd, sizeof cmd, "head -c 600 %s/ptxas.log", tmp);
    printf("  ptxas (sm_%d) rejected the PTX:\n", arch);
    fflush(stdout);
    if (system(cmd)) {}
    return -1;
  }
  return 0;
}

static int build_both(const nvrtc *n, const char *src, const char *tmp) {
  return build(n, src, 80, tmp) || build(n, src, 90, tmp) ? -1 : 0;
}

/* Case c's CUDA C, wrapped (namespace, renamed kernels); NULL when kiln
 * does not compile the case (the cuda_host expectations say why). */
static char *case_source(const suite_case *c, int id) {
  suite_run r;
  memset(&r, 0, sizeof r);
  char *out = NULL;
  if (suite_prepare(c, 0, &r) == 0) {
    kiln_target gpu = kiln_target_gpu_default();
    kiln_diag d = {0};
    kiln_pipeline pl;
    kiln_pipeline_opts po = {.graph = r.g, .from = KILN_PASS_LOWER, .target = &gpu};
    kiln_c_output o;
    kiln_cuda_options co = {.prefix = "net", .model = "model.onnx"};
    if (!kiln_pipeline_run(&po, &pl, &d) && !kiln_cuda_emit(pl.program, &co, &o, &d)) {
      size_t len = 0;
      FILE *f = open_memstream(&out, &len);
      fprintf(f, "/* %s */\nnamespace case%d {\n#undef KILN_CASE\n#define KILN_CASE c%d_\n%s}\n", c->name, id, id, o.source);
      fclose(f);
      kiln_c_output_free(&o);
    }
  }
  suite_run_free(&r);
  return out;
}

static const char head[] = "#define KILN_CAT2(a, b) a##b\n#define KILN_CAT(a, b) KILN_CAT2(a, b)\n"
                           "#define KILN_KERNEL(name, threads) extern \"C\" __global__ void __launch_bounds__(threads) "
                           "KILN_CAT(KILN_CASE, name)(void *const *bufs)\n";

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s SUITE_DIR [--only SUBSTRING] [--dump DIR]\n", argv[0]); return 2; }
  const char *only = NULL, *dump = NULL;
  for (int i = 2; i + 1 < argc; i++) {
    if (!strcmp(argv[i], "--only")) only = argv[++i];
    else if (!strcmp(argv[i], "--dump")) dump = argv[++i];
  }
  nvrtc n;
  if (nvrtc_open(&n)) { printf("conformance_nvrtc: NVRTC (libnvrtc.so) not found: skipped\n"); return 77; }
  if (access(ptxas, X_OK)) { printf("conformance_nvrtc: %s not found: skipped\n", ptxas); return 77; }
  static suite_case cases[SUITE_MAX_CASES];
  int nc = suite_list(argv[1], cases, SUITE_MAX_CASES);
  if (nc < 0) { fprintf(stderr, "conformance_nvrtc: suite not found at %s\n", argv[1]); return 2; }
  char tmp[] = "/tmp/kiln-nvrtc-XXXXXX";
  if (!mkdtemp(tmp)) return 2;
  setenv("KILN_VERIFY_LOOPS", "1", 1);
  static char *src[SUITE_MAX_CASES];
  static int ids[SUITE_MAX_CASES];
  int compiled = 0, skipped = 0, failed = 0, batches = 0;
  for (int i = 0; i < nc;) {
    int m = 0;
    for (; i < nc && m < BATCH; i++) {
      if (only && !strstr(cases[i].name, only)) continue;
      if (!(src[m] = case_source(&cases[i], i))) { skipped++; continue; }
      ids[m++] = i;
    }
    if (!m) continue;
    char *unit = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&unit, &len);
    fputs(head, f);
    for (int k = 0; k < m; k++) fputs(src[k], f);
    fclose(f);
    if (dump) {
      char path[1024];
      snprintf(path, sizeof path, "%s/batch%d.cu", dump, batches);
      FILE *o = fopen(path, "w");
      if (o) { fputs(unit, o); fclose(o); }
    }
    batches++;
    if (build_both(&n, unit, tmp) == 0) {
      compiled += m;
    } else { /* name the culprits */
      for (int k = 0; k < m; k++) {
        char *one = NULL;
        size_t l1 = 0;
        FILE *g = open_memstream(&one, &l1);
        fputs(head, g);
        fputs(src[k], g);
        fclose(g);
        if (build_both(&n, one, tmp) == 0) compiled++;
        else { failed++; printf("FAILED    %s\n", cases[ids[k]].name); }
        free(one);
      }
    }
    free(unit);
    for (int k = 0; k < m; k++) free(src[k]);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  if (system(cmd)) {}
  printf("conformance_nvrtc: %d cases' CUDA C compiled by NVRTC and ptxas for sm_80 and sm_90 (%d batches), %d failed, "
         "%d not compiled by kiln for the GPU target\n", compiled, batches, failed, skipped);
  return failed ? 1 : 0;
}
