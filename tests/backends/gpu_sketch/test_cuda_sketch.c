/* The CUDA sketch (backends/gpu_sketch/) of the GPU schedule of Conv:
 * golden text for one small convolution (conv_small.cu beside this file,
 * reviewed by hand; KILN_UPDATE_GOLDEN=1 rewrites it), NVRTC compiling the
 * text to PTX when NVRTC is installed (no GPU needed; skipped otherwise),
 * hostile buffer names staying inside comments, and kernels the sketch
 * does not print refused with a reason. */
#include <dlfcn.h>
#include <stdlib.h>

#include "backends/gpu_sketch/cuda_sketch.h"
#include "ir/loop.h"
#include "passes/conv_def.h"
#include "../../ir/ir_test.h"

TestSuite(cuda_sketch, .init = graph_setup, .fini = graph_teardown);

/* Conv of x f32[N, C, H, W] with w f32[M, C/G, kh, kw] and a bias, lowered,
 * then scheduled for the GPU with tile t; returns the program. */
static kiln_program *conv(const char *xname, const char *wname, int64_t N, int64_t C, int64_t H, int64_t W, int64_t M,
                          int64_t G, int64_t k, int64_t stride, int64_t pad, kiln_conv_gpu_tile t) {
  int64_t wn = M * (C / G) * k * k;
  float *wd = calloc((size_t)wn, sizeof *wd), *bd = calloc((size_t)M, sizeof *bd);
  kiln_value *x = t_input(xname, KILN_DT_F32, 4, (int64_t[]){N, C, H, W});
  kiln_value *w = t_const(wname, KILN_DT_F32, 4, (int64_t[]){M, C / G, k, k}, wd);
  kiln_value *b = t_const("b", KILN_DT_F32, 1, (int64_t[]){M}, bd);
  free(wd);
  free(bd);
  kiln_node *n = NODE(KILN_OP_CONV, "conv1", x, w, b);
  kiln_attrs_conv *a = n->attrs;
  a->group = G;
  a->strides = INTS(stride, stride);
  a->pads = INTS(pad, pad, pad, pad);
  infer_ok();
  kiln_diag d = {0};
  kiln_program *p = kiln_lower(g, &d);
  cr_assert(p, "%s", d.msg);
  cr_assert_eq(kiln_schedule_conv_gpu(p, n, &t, &d), 0, "%s", d.msg);
  cr_assert_eq(kiln_loop_verify(p, &d), 0, "%s", d.msg);
  return p;
}

/* The sketch of p's last kernel (the GPU one), malloc'd. */
static char *sketch(const kiln_program *p) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  const char *why = NULL;
  int rc = kiln_cuda_sketch_print(p, p->kernels[p->nkernels - 1], f, &why);
  fclose(f);
  cr_assert_eq(rc, 0, "sketch refused: %s", why ? why : "?");
  return text;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

static const kiln_conv_gpu_tile small = {.bm = 4, .bn = 8, .bk = 4, .rm = 2, .rn = 2};

/* 3x3 pad 1 on 1x2x5x5, 3 output channels: 2 x 1 x 1 blocks of 2 x 2 threads. */
Test(cuda_sketch, golden_small_conv) {
  kiln_program *p = conv("x", "w", 1, 2, 5, 5, 3, 1, 3, 1, 1, small);
  char *text = sketch(p);
  const char *path = KILN_SOURCE_DIR "/tests/backends/gpu_sketch/conv_small.cu";
  const char *upd = getenv("KILN_UPDATE_GOLDEN");
  if (upd && *upd && strcmp(upd, "0")) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
  }
  char *want = read_file(path);
  cr_assert(want, "cannot read %s", path);
  cr_assert_str_eq(text, want, "sketch differs from %s:\n%s", path, text);
  free(want);
  free(text);
}

/* ---- NVRTC, opened at run time ---- */
typedef int (*nvrtc_create_fn)(void **, const char *, const char *, int, const char *const *, const char *const *);
typedef int (*nvrtc_compile_fn)(void *, int, const char *const *);
typedef int (*nvrtc_size_fn)(void *, size_t *);
typedef int (*nvrtc_get_fn)(void *, char *);
typedef int (*nvrtc_destroy_fn)(void **);

/* NVRTC keeps process-wide caches it never frees.  The library stays
 * loaded (never dlclose'd) so LeakSanitizer can name it, and those
 * allocations are suppressed by module name; leaks of the test's own code
 * are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnvrtc\nleak:libnvrtc-builtins\n"; }

static void *nvrtc_open(void) {
  static const char *const names[] = {"libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so.13",
                                      "libnvrtc.so.12", "libnvrtc.so.11.2"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
  }
  return NULL;
}

/* Compiles src to PTX for compute_80; returns the PTX (malloc'd) or fails
 * the test with NVRTC's log. */
static char *nvrtc_ptx(void *h, const char *src) {
  nvrtc_create_fn create = (nvrtc_create_fn)dlsym(h, "nvrtcCreateProgram");
  nvrtc_compile_fn compile = (nvrtc_compile_fn)dlsym(h, "nvrtcCompileProgram");
  nvrtc_size_fn logsize = (nvrtc_size_fn)dlsym(h, "nvrtcGetProgramLogSize"), ptxsize = (nvrtc_size_fn)dlsym(h, "nvrtcGetPTXSize");
  nvrtc_get_fn getlog = (nvrtc_get_fn)dlsym(h, "nvrtcGetProgramLog"), getptx = (nvrtc_get_fn)dlsym(h, "nvrtcGetPTX");
  nvrtc_destroy_fn destroy = (nvrtc_destroy_fn)dlsym(h, "nvrtcDestroyProgram");
  cr_assert(create && compile && logsize && ptxsize && getlog && getptx && destroy, "NVRTC lacks an entry point");
  void *prog = NULL;
  cr_assert_eq(create(&prog, src, "sketch.cu", 0, NULL, NULL), 0);
  const char *opts[] = {"--gpu-architecture=compute_80", "--std=c++17"};
  int rc = compile(prog, 2, opts);
  size_t n = 0;
  logsize(prog, &n);
  char *log = malloc(n + 1);
  getlog(prog, log);
  log[n] = 0;
  cr_assert_eq(rc, 0, "NVRTC rejected the sketch:\n%s\n---\n%s", log, src);
  free(log);
  ptxsize(prog, &n);
  char *ptx = malloc(n + 1);
  getptx(prog, ptx);
  ptx[n] = 0;
  destroy(&prog);
  return ptx;
}

Test(cuda_sketch, nvrtc_compiles_the_sketches) {
  void *h = nvrtc_open();
  if (!h) cr_skip_test("NVRTC not installed");
  const kiln_conv_gpu_tile big = {.bm = 64, .bn = 64, .bk = 8, .rm = 4, .rn = 4};
  kiln_program *ps[] = {
      conv("x", "w", 1, 2, 5, 5, 3, 1, 3, 1, 1, small),
      conv("x2", "w2", 2, 64, 28, 28, 128, 1, 3, 2, 1, big),   /* ResNet-like, stride 2 */
      conv("x3", "w3", 1, 32, 14, 14, 32, 32, 3, 1, 1, small), /* depthwise */
  };
  for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
    char *text = sketch(ps[i]);
    char *ptx = nvrtc_ptx(h, text);
    cr_assert(strstr(ptx, ".entry"), "no kernel entry in the PTX");
    cr_assert(strstr(ptx, ".shared"), "no shared memory in the PTX");
    cr_assert(strstr(ptx, "bar.sync") || strstr(ptx, "barrier.sync"), "no barrier in the PTX");
    free(ptx);
    free(text);
  }
  /* no dlclose: see nvrtc_open */
}

/* Names are only in // comments, escaped, never ending a line in a
 * backslash: a name holding a newline and a directive stays a comment
 * (NVRTC, when present, would otherwise hit the #error). */
Test(cuda_sketch, hostile_names_stay_in_comments) {
  kiln_program *p = conv("x\n#error injected \\", "w*/ \\", 1, 2, 5, 5, 3, 1, 3, 1, 1, small);
  char *text = sketch(p);
  for (char *line = text; *line;) {
    char *end = strchr(line, '\n');
    cr_assert(end, "text does not end in a newline");
    cr_assert(end == line || end[-1] != '\\', "a line ends in a backslash: %.*s", (int)(end - line), line);
    cr_assert(strncmp(line, "#error", 6) != 0, "a name escaped its comment");
    line = end + 1;
  }
  cr_assert(strstr(text, "//   b0 = 'x\\x0a#error injected \\\\'\n"), "%s", text);
  void *h = nvrtc_open();
  if (h) {
    free(nvrtc_ptx(h, text));
  }
  free(text);
}

Test(cuda_sketch, refuses_a_cpu_kernel) {
  kiln_program *p = conv("x", "w", 1, 2, 5, 5, 3, 1, 3, 1, 1, small);
  const char *why = NULL;
  FILE *f = fopen("/dev/null", "w");
  cr_assert_eq(kiln_cuda_sketch_print(p, p->kernels[0], f, &why), -1);
  fclose(f);
  cr_assert_str_eq(why, "a CPU kernel (no launch)");
}
