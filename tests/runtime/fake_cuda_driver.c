/* A fake CUDA driver for tests (no GPU needed): exports the driver API
 * subset runtime/kiln_cuda_rt.c uses and simulates one device on the host.
 * The runtime opens it through its test hook, KILN_CUDA_DRIVER=path.
 * "Device memory" is host memory; a stream runs each call at once; stream
 * capture records launches into a graph that cuGraphLaunch replays.
 *
 * Environment (all optional):
 *   KILN_FAKE_CUDA_DEVICES  number of devices (default 1; 0: none)
 *   KILN_FAKE_CUDA_ARCH     compute capability, 10 * major + minor (default 90)
 *   KILN_FAKE_CUDA_MEM      device memory in bytes (default 1 TiB): a larger
 *                           cuMemAlloc fails with CUDA_ERROR_OUT_OF_MEMORY
 *   KILN_FAKE_CUDA_NO_PTX   1: PTX does not load (CUDA_ERROR_INVALID_PTX)
 *   KILN_FAKE_CUDA_FAIL     a kernel name: its launches fail at the next
 *                           synchronisation (CUDA_ERROR_LAUNCH_FAILED)
 *   KILN_FAKE_CUDA_LOG      a file: every call appended as one line
 *   KILN_FAKE_CUDA_EXEC     a .cu file kiln printed for the same program
 *                           (kiln compile --target cuda): compiled for the
 *                           host (its kiln_cuda_host.h beside it), so every
 *                           launch really runs that kernel, blocks and
 *                           threads emulated; without it launches only log.
 * A cubin is accepted only when its ELF header says an architecture the
 * device runs (same major version, minor not newer; else
 * CUDA_ERROR_NO_BINARY_FOR_GPU), PTX only for an architecture not newer
 * than the device's, as the driver does. */
#define _GNU_SOURCE /* mkdtemp, realpath */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum { OK = 0, E_VALUE = 1, E_OOM = 2, E_NODEV = 100, E_DEVICE = 101, E_NOBIN = 209, E_PTX = 218, E_NOTFOUND = 500,
       E_LAUNCH = 719, E_CAPTURE = 900 };

typedef struct fn { char name[128]; } fn;
typedef struct rec { fn *f; unsigned g[3], b[3]; void *bufs; } rec;
typedef struct graph { rec *r; int n; } graph;
typedef int (*exec_fn)(const char *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *const *);

static FILE *logf_;
static long long mem_used;
static int capturing, pending_fail;
static rec *cap;
static int ncap;
static exec_fn exec_launch;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  if (!logf_) {
    const char *p = getenv("KILN_FAKE_CUDA_LOG");
    if (!p || !*p || !(logf_ = fopen(p, "a"))) return;
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(logf_, fmt, ap);
  va_end(ap);
  fputc('\n', logf_);
  fflush(logf_);
}

static long long env_ll(const char *name, long long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoll(v, NULL, 10) : dflt;
}

CUresult cuInit(unsigned flags) { say("cuInit"); return flags ? E_VALUE : OK; }
CUresult cuDeviceGetCount(int *n) { *n = (int)env_ll("KILN_FAKE_CUDA_DEVICES", 1); return OK; }
CUresult cuDeviceGet(int *d, int i) { if (i >= env_ll("KILN_FAKE_CUDA_DEVICES", 1)) return E_DEVICE; *d = i; return OK; }
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  int arch = (int)env_ll("KILN_FAKE_CUDA_ARCH", 90);
  if (attr == 75) *v = arch / 10;
  else if (attr == 76) *v = arch % 10;
  else return E_VALUE;
  return OK;
}
CUresult cuDeviceGetName(char *name, int len, int dev) { (void)dev; snprintf(name, (size_t)len, "kiln fake GPU"); return OK; }
static int ctx_token;
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = &ctx_token; say("ctx retain"); return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; say("ctx release"); return OK; }
CUresult cuCtxSetCurrent(void *ctx) { return ctx == &ctx_token ? OK : E_VALUE; }

/* The .cu compiled for the host with a launcher by kernel name. */
static int exec_build(const char *cu) {
  FILE *in = fopen(cu, "r");
  if (!in) return -1;
  char dir[] = "/tmp/kiln-fake-cuda-XXXXXX", path[600], cmd[2400], line[4096];
  if (!mkdtemp(dir)) { fclose(in); return -1; }
  snprintf(path, sizeof path, "%s/exec.c", dir);
  FILE *w = fopen(path, "w");
  char *abs = realpath(cu, NULL);
  if (!w || !abs) { fclose(in); if (w) fclose(w); free(abs); return -1; }
  fprintf(w, "#include \"%s\"\nint kiln_fake_exec(const char *n, unsigned gx, unsigned gy, unsigned gz, unsigned bx,"
             " unsigned by, unsigned bz, void *const *bufs) {\n", abs);
  free(abs);
  while (fgets(line, sizeof line, in)) {
    char name[128];
    const char *s = strstr(line, "KILN_LAUNCH");
    if (!s || strncmp(line, "  KILN_LAUNCH", 13)) continue;
    int sync = !strncmp(s, "KILN_LAUNCH_SYNC(", 17);
    if (sscanf(s + (sync ? 17 : 12), "%127[A-Za-z0-9_]", name) != 1) continue;
    fprintf(w, "  if (!strcmp(n, \"%s\")) return %s(%s, gx, gy, gz, bx, by, bz, bufs)%s;\n", name,
            sync ? "kiln_cuh_launch_sync" : "(kiln_cuh_launch", name, sync ? "" : ", 0)");
  }
  fprintf(w, "  return -1;\n}\n");
  fclose(in);
  fclose(w);
  snprintf(cmd, sizeof cmd, "cc -x c -std=c99 -O1 -w -fPIC -shared -o %s/exec.so %s -lm && true", dir, path);
  int rc = system(cmd);
  snprintf(path, sizeof path, "%s/exec.so", dir);
  void *h = rc == 0 ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  exec_launch = h ? (exec_fn)(uintptr_t)dlsym(h, "kiln_fake_exec") : NULL;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) {}
  say("exec %s", exec_launch ? "built" : "FAILED");
  return exec_launch ? 0 : -1;
}

/* The SM of a cubin: ELF e_flags (bits 0-7 before CUDA 12.8's ABI v8, bits 8-15 after). */
static int cubin_arch(const unsigned char *im) {
  uint32_t flags;
  memcpy(&flags, im + 48, 4); /* ELF64 e_flags */
  unsigned abi = im[8];        /* EI_ABIVERSION */
  return abi >= 8 ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
}

static int mod_token;
CUresult cuModuleLoadData(void **mod, const void *image) {
  const unsigned char *im = image;
  int arch = (int)env_ll("KILN_FAKE_CUDA_ARCH", 90);
  if (!memcmp(im, "\x7f" "ELF", 4)) {
    int a = cubin_arch(im);
    say("load cubin sm_%d", a);
    if (a / 10 != arch / 10 || a > arch) return E_NOBIN; /* binary compatible: same major, not newer */
  } else if (strstr((const char *)image, ".version") && strstr((const char *)image, ".target")) {
    const char *t = strstr((const char *)image, ".target sm_");
    int a = t ? atoi(t + 11) : 0;
    say("load ptx compute_%d", a);
    if (env_ll("KILN_FAKE_CUDA_NO_PTX", 0) || a > arch) return E_PTX;
  } else return E_VALUE;
  const char *cu = getenv("KILN_FAKE_CUDA_EXEC");
  if (cu && *cu && !exec_launch && exec_build(cu)) return E_PTX;
  *mod = &mod_token;
  return OK;
}
CUresult cuModuleUnload(void *mod) { say("module unload"); return mod == &mod_token ? OK : E_VALUE; }
CUresult cuModuleGetFunction(void **f, void *mod, const char *name) {
  if (mod != &mod_token) return E_VALUE;
  static fn pool[8192]; /* (no allocation: nothing for LeakSanitizer to report) */
  static int used;
  for (int i = 0; i < used; i++)
    if (!strcmp(pool[i].name, name)) { *f = &pool[i]; return OK; }
  if (used == 8192) return E_OOM;
  snprintf(pool[used].name, sizeof pool[used].name, "%s", name);
  *f = &pool[used++];
  return OK;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  say("alloc %zu", n);
  if ((long long)n + mem_used > env_ll("KILN_FAKE_CUDA_MEM", 1LL << 40)) return E_OOM;
  void *m = aligned_alloc(256, (n + 255) & ~(size_t)255);
  if (!m) return E_OOM;
  mem_used += (long long)n;
  *p = (CUdeviceptr)(uintptr_t)m;
  return OK;
}
CUresult cuMemFree_v2(CUdeviceptr p) { say("free"); free((void *)(uintptr_t)p); return OK; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) { say("htod %zu", n); memcpy((void *)(uintptr_t)d, s, n); return OK; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) {
  (void)st;
  if (capturing) return E_CAPTURE;
  say("htod async %zu", n);
  memcpy((void *)(uintptr_t)d, s, n);
  return OK;
}
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) {
  (void)st;
  if (capturing) return E_CAPTURE;
  say("dtoh async %zu", n);
  memcpy(d, (void *)(uintptr_t)s, n);
  return OK;
}
static int stream_token;
CUresult cuStreamCreate(void **s, unsigned flags) { say("stream create %u", flags); *s = &stream_token; return OK; }
CUresult cuStreamDestroy_v2(void *s) { say("stream destroy"); return s == &stream_token ? OK : E_VALUE; }
CUresult cuStreamSynchronize(void *s) {
  if (s != &stream_token) return E_VALUE;
  if (capturing) return E_CAPTURE;
  say("sync");
  if (pending_fail) { pending_fail = 0; return E_LAUNCH; }
  return OK;
}

static CUresult run(const rec *r) {
  const char *fail = getenv("KILN_FAKE_CUDA_FAIL");
  if (fail && !strcmp(fail, r->f->name)) pending_fail = 1;
  if (exec_launch && exec_launch(r->f->name, r->g[0], r->g[1], r->g[2], r->b[0], r->b[1], r->b[2], r->bufs)) return E_LAUNCH;
  return OK;
}

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                        void *s, void **params, void **extra) {
  if (s != &stream_token || extra || !params || shmem) return E_VALUE;
  if ((unsigned long long)bx * by * bz > 1024 || !gx || !gy || !gz || gy > 65535 || gz > 65535) return E_VALUE;
  rec r = {f, {gx, gy, gz}, {bx, by, bz}, *(void **)params[0]};
  say("%s %s grid %u,%u,%u block %u,%u,%u", capturing ? "capture" : "launch", r.f->name, gx, gy, gz, bx, by, bz);
  if (capturing) {
    rec *c = realloc(cap, (size_t)(ncap + 1) * sizeof *c);
    if (!c) return E_OOM;
    cap = c;
    cap[ncap++] = r;
    return OK;
  }
  return run(&r);
}

CUresult cuStreamBeginCapture_v2(void *s, int mode) {
  if (s != &stream_token || capturing) return E_VALUE;
  say("capture begin mode %d", mode);
  capturing = 1;
  ncap = 0;
  cap = NULL;
  return OK;
}
CUresult cuStreamEndCapture(void *s, void **g) {
  if (s != &stream_token || !capturing) return E_VALUE;
  graph *x = calloc(1, sizeof *x);
  x->r = cap;
  x->n = ncap;
  capturing = 0;
  say("capture end %d kernels", ncap);
  *g = x;
  return OK;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *g, unsigned long long flags) {
  (void)flags;
  say("graph instantiate");
  *exec = g;
  return OK;
}
CUresult cuGraphLaunch(void *exec, void *s) {
  graph *x = exec;
  if (s != &stream_token) return E_VALUE;
  say("graph launch %d kernels", x->n);
  for (int i = 0; i < x->n; i++) {
    CUresult r = run(&x->r[i]);
    if (r) return r;
  }
  return OK;
}
CUresult cuGraphDestroy(void *g) { graph *x = g; say("graph destroy"); free(x->r); free(x); return OK; }
CUresult cuGraphExecDestroy(void *e) { (void)e; say("graph exec destroy"); return OK; }

CUresult cuGetErrorString(CUresult r, const char **s) {
  switch (r) {
  case OK: *s = "no error"; break;
  case E_OOM: *s = "out of memory"; break;
  case E_NOBIN: *s = "no kernel image is available for execution on the device"; break;
  case E_PTX: *s = "a PTX JIT compilation failed"; break;
  case E_LAUNCH: *s = "unspecified launch failure"; break;
  case E_CAPTURE: *s = "operation not permitted when stream is capturing"; break;
  case E_VALUE: *s = "invalid argument"; break;
  default: *s = "unknown error"; return E_VALUE;
  }
  return OK;
}
