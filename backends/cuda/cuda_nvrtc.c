/* NVRTC at compile time (kiln_cuda_gpu.h): one compile per requested
 * architecture with --gpu-architecture=sm_XX gives its cubin
 * (nvrtcGetCUBIN); one more with compute_XX, for the newest, gives the
 * PTX a newer GPU's driver compiles.  The library is found as
 * conformance.nvrtc finds it: $KILN_NVRTC when set, else libnvrtc.so on
 * the loader's path, then /usr/local/cuda/lib64, then the versioned
 * names.  Nothing here needs CUDA headers. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_cuda_gpu.h"

typedef int (*create_fn)(void **, const char *, const char *, int, const char *const *, const char *const *);
typedef int (*compile_fn)(void *, int, const char *const *);
typedef int (*size_fn)(void *, size_t *);
typedef int (*get_fn)(void *, char *);
typedef int (*destroy_fn)(void **);
typedef struct nvrtc {
  void *lib;
  create_fn create; compile_fn compile; destroy_fn destroy;
  size_fn logsize, ptxsize, cubinsize; get_fn getlog, getptx, getcubin;
} nvrtc;

int kiln_cuda_parse_archs(const char *s, int *archs, kiln_diag *d) {
  int n = 0;
  const char *p = s;
  while (*p) {
    if (!strncmp(p, "sm_", 3)) p += 3;
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p || a < 50 || a > 199 || (*end && *end != ',')) return kiln_error(d, NULL, "--arch: expected a list like sm_80,sm_90, got '%s'", s);
    int seen = 0;
    for (int i = 0; i < n; i++) seen |= archs[i] == a;
    if (!seen) {
      if (n == KILN_CUDA_MAX_ARCHS) return kiln_error(d, NULL, "--arch: at most %d architectures", KILN_CUDA_MAX_ARCHS);
      int i = n++;
      for (; i > 0 && archs[i - 1] > a; i--) archs[i] = archs[i - 1];
      archs[i] = (int)a;
    }
    p = *end ? end + 1 : end;
  }
  return n ? n : kiln_error(d, NULL, "--arch: no architecture given");
}

#define SYM(field, name) ok &= (*(void **)&n->field = dlsym(n->lib, name)) != NULL
static int nvrtc_open(nvrtc *n, const char *what, kiln_diag *d) {
  const char *env = getenv("KILN_NVRTC");
  const char *const names[] = {env && *env ? env : "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so.13",
                               "libnvrtc.so.12"};
  memset(n, 0, sizeof *n);
  for (size_t i = 0; i < sizeof names / sizeof *names && !n->lib; i++) n->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!n->lib)
    return kiln_error(d, NULL, "%s: --target cuda: NVRTC (libnvrtc.so, the CUDA toolkit) not found: install the CUDA toolkit or set KILN_NVRTC; --target cuda-host runs the CUDA code on the CPU", what);
  int ok = 1;
  SYM(create, "nvrtcCreateProgram"); SYM(compile, "nvrtcCompileProgram"); SYM(destroy, "nvrtcDestroyProgram");
  SYM(logsize, "nvrtcGetProgramLogSize"); SYM(getlog, "nvrtcGetProgramLog"); SYM(ptxsize, "nvrtcGetPTXSize");
  SYM(getptx, "nvrtcGetPTX"); SYM(cubinsize, "nvrtcGetCUBINSize"); SYM(getcubin, "nvrtcGetCUBIN");
  if (!ok) {
    dlclose(n->lib);
    return kiln_error(d, NULL, "%s: --target cuda: NVRTC is too old (no nvrtcGetCUBIN: CUDA 11.1 or newer is needed)", what);
  }
  return 0;
}

/* One compile: for `arch` as sm_XX (ptx 0: the cubin) or compute_XX (ptx
 * 1: the PTX) into im. */
static int compile_one(const nvrtc *n, const char *src, int arch, int ptx, kiln_cuda_rt_image *im, const char *what,
                       kiln_diag *d) {
  void *prog = NULL;
  char opt[64];
  snprintf(opt, sizeof opt, "--gpu-architecture=%s_%d", ptx ? "compute" : "sm", arch);
  const char *opts[] = {opt, "--std=c++17"};
  if (n->create(&prog, src, "kiln.cu", 0, NULL, NULL)) return kiln_error(d, NULL, "%s: NVRTC: cannot create a program", what);
  size_t len = 0;
  if (n->compile(prog, 2, opts)) {
    char line[300] = "(no log)";
    if (!n->logsize(prog, &len) && len > 1) {
      char *log = malloc(len + 1);
      if (log && !n->getlog(prog, log)) {
        log[len] = 0;
        const char *e = strstr(log, "error");
        snprintf(line, sizeof line, "%s", e ? e : log);
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
      }
      free(log);
    }
    n->destroy(&prog);
    return kiln_error(d, NULL, "%s: NVRTC (%s) rejects the generated CUDA C: %s", what, opt + 19, line);
  }
  int rc = ptx ? n->ptxsize(prog, &len) : n->cubinsize(prog, &len);
  char *data = rc ? NULL : aligned_alloc(64, (len + 64) & ~(size_t)63); /* (ELF images: aligned) */
  if (data) rc = ptx ? n->getptx(prog, data) : n->getcubin(prog, data);
  n->destroy(&prog);
  if (!data || rc) { free(data); return kiln_error(d, NULL, "%s: NVRTC (%s): cannot read its output", what, opt + 19); }
  data[len] = 0;
  /* (NVRTC's PTX size counts its NUL: the image's size does not, so the .ptx file is text) */
  *im = (kiln_cuda_rt_image){.arch = arch, .ptx = ptx, .data = data, .size = ptx ? strlen(data) : len};
  return 0;
}

int kiln_cuda_nvrtc_compile(const char *source, const int *archs, int narchs, int ptx, kiln_cuda_images *out,
                            const char *what, kiln_diag *d) {
  memset(out, 0, sizeof *out);
  nvrtc n;
  if (narchs < 1 || narchs > KILN_CUDA_MAX_ARCHS) return kiln_error(d, NULL, "--arch: 1 to %d architectures", KILN_CUDA_MAX_ARCHS);
  if (nvrtc_open(&n, what, d)) return -1;
  int rc = 0, newest = 0;
  for (int i = 0; i < narchs && !rc; i++) {
    rc = compile_one(&n, source, archs[i], 0, &out->im[out->n], what, d);
    if (!rc) out->n++;
    if (archs[i] > newest) newest = archs[i];
  }
  if (!rc && ptx && !(rc = compile_one(&n, source, newest, 1, &out->im[out->n], what, d))) out->n++;
  /* NVRTC's process-wide caches stay: dlclose would not free them either */
  if (rc) kiln_cuda_images_free(out);
  return rc;
}

int kiln_cuda_nvrtc_check(const char *what, kiln_diag *d) {
  nvrtc n;
  return nvrtc_open(&n, what, d); /* (left open: the compile that follows finds it loaded) */
}

void kiln_cuda_images_free(kiln_cuda_images *im) {
  for (int i = 0; i < im->n; i++) free((void *)im->im[i].data);
  im->n = 0;
}
