/* kiln_cuda_rt.c: see kiln_cuda_rt.h.  The driver API is declared here by
 * hand (the few entry points used, with their ABI names: cuMemAlloc_v2
 * and so on, as cuda.h maps them), resolved with dlsym from the library
 * dlopen gives; no CUDA header is needed to build this file.
 *
 * Device memory, one allocation, each part 256-aligned:
 *   [buffer table: nbufs+1 device pointers][weights][state][workspace]
 *   [input 0][input 1]...[output 0]...
 * The table is what every kernel's `bufs` parameter points to; it is
 * filled once at open (views: their root's address + offset). */
#include "kiln_cuda_rt.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream, *CUgraph, *CUgraphExec;

enum {
  CU_OK = 0,
  CU_ERR_OUT_OF_MEMORY = 2,
  CU_ERR_NO_DEVICE = 100,
  CU_ATTR_CC_MAJOR = 75,
  CU_ATTR_CC_MINOR = 76,
  CU_STREAM_NON_BLOCKING = 1,
  CU_CAPTURE_THREAD_LOCAL = 1
};

typedef struct cu_api {
  void *lib;
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGetCount)(int *);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*DeviceGetName)(char *, int, CUdevice);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*DevicePrimaryCtxRelease)(CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*ModuleLoadData)(CUmodule *, const void *);
  CUresult (*ModuleUnload)(CUmodule);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*MemAlloc)(CUdeviceptr *, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
  CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
  CUresult (*StreamCreate)(CUstream *, unsigned);
  CUresult (*StreamDestroy)(CUstream);
  CUresult (*StreamSynchronize)(CUstream);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                           void **, void **);
  CUresult (*StreamBeginCapture)(CUstream, int);
  CUresult (*StreamEndCapture)(CUstream, CUgraph *);
  CUresult (*GraphInstantiate)(CUgraphExec *, CUgraph, unsigned long long);
  CUresult (*GraphLaunch)(CUgraphExec, CUstream);
  CUresult (*GraphDestroy)(CUgraph);
  CUresult (*GraphExecDestroy)(CUgraphExec);
  CUresult (*GetErrorString)(CUresult, const char **);
} cu_api;

struct kiln_cuda_rt {
  const kiln_cuda_rt_module *m;
  cu_api cu;
  CUdevice dev;
  CUcontext ctx;
  CUmodule mod;
  CUstream stream;
  CUfunction *fn;
  CUdeviceptr mem, table, *in, *out; /* in/out: each tensor's device address */
  CUgraph graph;
  CUgraphExec exec;
  int runs;
  char image[64];
};

static void say(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (n) vsnprintf(err, n, fmt, ap);
  va_end(ap);
  for (size_t i = 0; n && err[i]; i++) /* one printable line: model names are hostile */
    if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f) err[i] = '?';
}

static const char *why(const cu_api *cu, CUresult r) {
  const char *s = NULL;
  if (!cu->GetErrorString || cu->GetErrorString(r, &s) != CU_OK || !s) return "unknown CUDA error";
  return s;
}

#define RESOLVE(field, sym) ok &= (*(void **)&cu->field = dlsym(cu->lib, sym)) != NULL
static int driver_open(cu_api *cu, char *err, size_t n) {
  memset(cu, 0, sizeof *cu);
  const char *path = getenv("KILN_CUDA_DRIVER");
  if (!path || !*path) path = "libcuda.so.1";
  if (!(cu->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
    say(err, n, "no CUDA driver (%s) on this machine: is an NVIDIA driver installed? (--target cuda-host runs the CUDA code on the CPU)", path);
    return -1;
  }
  int ok = 1;
  RESOLVE(Init, "cuInit"); RESOLVE(DeviceGetCount, "cuDeviceGetCount"); RESOLVE(DeviceGet, "cuDeviceGet");
  RESOLVE(DeviceGetAttribute, "cuDeviceGetAttribute"); RESOLVE(DeviceGetName, "cuDeviceGetName");
  RESOLVE(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  RESOLVE(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"); RESOLVE(CtxSetCurrent, "cuCtxSetCurrent");
  RESOLVE(ModuleLoadData, "cuModuleLoadData"); RESOLVE(ModuleUnload, "cuModuleUnload");
  RESOLVE(ModuleGetFunction, "cuModuleGetFunction"); RESOLVE(MemAlloc, "cuMemAlloc_v2"); RESOLVE(MemFree, "cuMemFree_v2");
  RESOLVE(MemcpyHtoD, "cuMemcpyHtoD_v2"); RESOLVE(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  RESOLVE(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"); RESOLVE(StreamCreate, "cuStreamCreate");
  RESOLVE(StreamDestroy, "cuStreamDestroy_v2"); RESOLVE(StreamSynchronize, "cuStreamSynchronize");
  RESOLVE(LaunchKernel, "cuLaunchKernel"); RESOLVE(StreamBeginCapture, "cuStreamBeginCapture_v2");
  RESOLVE(StreamEndCapture, "cuStreamEndCapture"); RESOLVE(GraphInstantiate, "cuGraphInstantiateWithFlags");
  RESOLVE(GraphLaunch, "cuGraphLaunch"); RESOLVE(GraphDestroy, "cuGraphDestroy");
  RESOLVE(GraphExecDestroy, "cuGraphExecDestroy"); RESOLVE(GetErrorString, "cuGetErrorString");
  if (!ok) {
    say(err, n, "the CUDA driver (%s) is too old: it lacks entry points kiln needs (CUDA 11.4 or newer)", path);
    dlclose(cu->lib);
    cu->lib = NULL;
    return -1;
  }
  return 0;
}

/* Driver, cuInit and device 0 (with its compute capability). */
static int device_open(cu_api *cu, CUdevice *dev, int *arch, char *err, size_t n) {
  if (driver_open(cu, err, n)) return -1;
  int count = 0, major = 0, minor = 0;
  CUresult r = cu->Init(0);
  if (r == CU_OK) r = cu->DeviceGetCount(&count);
  if (r == CU_ERR_NO_DEVICE || (r == CU_OK && count == 0)) {
    say(err, n, "no CUDA device: the driver loads but finds no GPU");
    return -1;
  }
  if (r == CU_OK) r = cu->DeviceGet(dev, 0);
  if (r == CU_OK) r = cu->DeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, *dev);
  if (r == CU_OK) r = cu->DeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, *dev);
  if (r != CU_OK) {
    say(err, n, "CUDA: cannot open the GPU: %s", why(cu, r));
    return -1;
  }
  *arch = 10 * major + minor;
  return 0;
}

int kiln_cuda_rt_device_arch(int *arch, char *name, size_t name_size, char *err, size_t err_size) {
  cu_api cu;
  CUdevice dev = 0;
  int rc = device_open(&cu, &dev, arch, err, err_size);
  if (!rc && name && name_size) {
    name[0] = 0;
    if (cu.DeviceGetName(name, (int)(name_size > 256 ? 256 : name_size), dev) != CU_OK) name[0] = 0;
  }
  if (cu.lib) dlclose(cu.lib);
  return rc;
}

/* The image for a device of `arch`: the cubin of that architecture, else
 * the newest cubin of the same major version not newer than it (binary
 * compatible), else -1 (the caller uses the PTX). */
static int pick_cubin(const kiln_cuda_rt_module *m, int arch) {
  int best = -1;
  for (int i = 0; i < m->nimages; i++) {
    const kiln_cuda_rt_image *im = &m->images[i];
    if (im->ptx || im->arch / 10 != arch / 10 || im->arch > arch) continue;
    if (best < 0 || im->arch > m->images[best].arch) best = i;
  }
  return best;
}

static int pick_ptx(const kiln_cuda_rt_module *m) {
  int best = -1;
  for (int i = 0; i < m->nimages; i++)
    if (m->images[i].ptx && (best < 0 || m->images[i].arch > m->images[best].arch)) best = i;
  return best;
}

static int load_module(kiln_cuda_rt *rt, int arch, char *err, size_t n) {
  const kiln_cuda_rt_module *m = rt->m;
  int c = pick_cubin(m, arch), p = pick_ptx(m);
  CUresult rc = -1, rp = -1;
  if (c >= 0 && (rc = rt->cu.ModuleLoadData(&rt->mod, m->images[c].data)) == CU_OK) {
    snprintf(rt->image, sizeof rt->image, "sm_%d cubin", m->images[c].arch);
    return 0;
  }
  if (p >= 0 && (rp = rt->cu.ModuleLoadData(&rt->mod, m->images[p].data)) == CU_OK) {
    snprintf(rt->image, sizeof rt->image, "compute_%d PTX (JIT-compiled by the driver)", m->images[p].arch);
    return 0;
  }
  char cubins[128] = "", *w = cubins;
  for (int i = 0; i < m->nimages && w < cubins + sizeof cubins - 16; i++)
    if (!m->images[i].ptx) w += snprintf(w, 16, "%ssm_%d", w == cubins ? "" : ",", m->images[i].arch);
  if (p < 0)
    say(err, n, "CUDA: the GPU is sm_%d, the code has cubins for %s and no PTX%s%s: compile with --arch sm_%d", arch,
        cubins[0] ? cubins : "no architecture", c >= 0 ? "; loading the cubin failed: " : "", c >= 0 ? why(&rt->cu, rc) : "",
        arch);
  else
    say(err, n, "CUDA: the GPU is sm_%d; %s and the compute_%d PTX does not load either (%s): compile with --arch sm_%d",
        arch, c >= 0 ? "its cubin does not load" : cubins[0] ? "no cubin is for it" : "there is no cubin",
        m->images[p].arch, why(&rt->cu, rp), arch);
  return -1;
}

static uint64_t up(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Total device bytes and each part's offset; -1 on overflow. */
static int layout(const kiln_cuda_rt_module *m, uint64_t *total, uint64_t *w, uint64_t *st, uint64_t *ws, uint64_t *io) {
  uint64_t t = up((uint64_t)(m->nbufs + 1) * 8);
  const uint64_t lim = (uint64_t)1 << 56; /* every part bounded: sums cannot wrap */
  if (m->weights_bytes > lim || m->state_bytes > lim || m->workspace_bytes > lim) return -1;
  *w = t; t += up(m->weights_bytes);
  *st = t; t += up(m->state_bytes);
  *ws = t; t += up(m->workspace_bytes);
  *io = t;
  for (int b = 0; b < m->nbufs; b++) {
    const kiln_cuda_rt_buf *x = &m->bufs[b];
    if (x->kind != KILN_CUDA_RT_INPUT && x->kind != KILN_CUDA_RT_OUTPUT) continue;
    if (x->bytes > lim || t > lim) return -1;
    t += up(x->bytes);
  }
  *total = t;
  return 0;
}

static int check(kiln_cuda_rt *rt, CUresult r, const char *what, char *err, size_t n) {
  if (r == CU_OK) return 0;
  say(err, n, "CUDA: %s: %s", what, why(&rt->cu, r));
  return -1;
}

kiln_cuda_rt *kiln_cuda_rt_open(const kiln_cuda_rt_module *m, const void *weights, char *err, size_t n) {
  kiln_cuda_rt *rt = calloc(1, sizeof *rt);
  if (!rt) { say(err, n, "out of memory"); return NULL; }
  rt->m = m;
  int arch = 0;
  if (!weights && (m->weights_bytes || m->state_bytes)) {
    say(err, n, "CUDA: no weights given (the network has %llu bytes of them)",
        (unsigned long long)(m->weights_bytes + m->state_bytes));
    goto fail_early;
  }
  uint64_t total, w, st, ws, io;
  CUdeviceptr *table = NULL;
  if (device_open(&rt->cu, &rt->dev, &arch, err, n)) goto fail;
  if (check(rt, rt->cu.DevicePrimaryCtxRetain(&rt->ctx, rt->dev), "cannot create a context", err, n) ||
      check(rt, rt->cu.CtxSetCurrent(rt->ctx), "cannot use the context", err, n))
    goto fail;
  if (load_module(rt, arch, err, n)) goto fail;
  rt->fn = calloc((size_t)m->nkernels + 1, sizeof *rt->fn);
  rt->in = calloc((size_t)m->ninputs + 1, sizeof *rt->in);
  rt->out = calloc((size_t)m->noutputs + 1, sizeof *rt->out);
  table = calloc((size_t)m->nbufs + 1, sizeof *table);
  if (!rt->fn || !rt->in || !rt->out || !table) { say(err, n, "out of memory"); goto fail; }
  for (int k = 0; k < m->nkernels; k++) {
    CUresult r = rt->cu.ModuleGetFunction(&rt->fn[k], rt->mod, m->kernels[k].name);
    if (r != CU_OK) {
      say(err, n, "CUDA: kernel '%s' (node '%s', %s) is not in the loaded %s: %s", m->kernels[k].name, m->kernels[k].node,
          m->kernels[k].op, rt->image, why(&rt->cu, r));
      goto fail;
    }
  }
  if (layout(m, &total, &w, &st, &ws, &io)) { say(err, n, "CUDA: the network's memory size overflows"); goto fail; }
  CUresult r = rt->cu.MemAlloc(&rt->mem, (size_t)total);
  if (r == CU_ERR_OUT_OF_MEMORY) {
    say(err, n, "CUDA: out of GPU memory: the network needs %.1f MB (weights %.1f, workspace %.1f, inputs and outputs)",
        (double)total / 1e6, (double)m->weights_bytes / 1e6, (double)m->workspace_bytes / 1e6);
    rt->mem = 0;
    goto fail;
  }
  if (check(rt, r, "cannot allocate device memory", err, n)) { rt->mem = 0; goto fail; }
  rt->table = rt->mem;
  uint64_t at = io;
  for (int b = 0; b < m->nbufs; b++) { /* roots first, then views */
    const kiln_cuda_rt_buf *x = &m->bufs[b];
    switch (x->kind) {
    case KILN_CUDA_RT_INPUT:
    case KILN_CUDA_RT_OUTPUT:
      if (x->index < 0 || x->index >= (x->kind == KILN_CUDA_RT_INPUT ? m->ninputs : m->noutputs)) {
        say(err, n, "CUDA: buffer %d has a bad io index", b);
        goto fail;
      }
      table[b] = rt->mem + at;
      (x->kind == KILN_CUDA_RT_INPUT ? rt->in : rt->out)[x->index] = table[b];
      at += up(x->bytes);
      break;
    case KILN_CUDA_RT_WORKSPACE: table[b] = rt->mem + ws + x->offset; break;
    case KILN_CUDA_RT_STATE: table[b] = rt->mem + st + x->offset; break;
    case KILN_CUDA_RT_WEIGHT: table[b] = rt->mem + w + x->offset; break;
    default: break;
    }
  }
  for (int b = 0; b < m->nbufs; b++)
    if (m->bufs[b].kind == KILN_CUDA_RT_VIEW) {
      int root = m->bufs[b].index;
      if (root < 0 || root >= m->nbufs || m->bufs[root].kind == KILN_CUDA_RT_VIEW) {
        say(err, n, "CUDA: buffer %d is a view of a bad root", b);
        goto fail;
      }
      table[b] = table[root] + m->bufs[b].offset;
    }
  if (check(rt, rt->cu.MemcpyHtoD(rt->table, table, (size_t)(m->nbufs + 1) * sizeof *table), "copying the buffer table", err, n) ||
      (m->weights_bytes && check(rt, rt->cu.MemcpyHtoD(rt->mem + w, weights, (size_t)m->weights_bytes), "copying the weights", err, n)) ||
      (m->state_bytes && check(rt, rt->cu.MemcpyHtoD(rt->mem + st, (const char *)weights + m->weights_bytes, (size_t)m->state_bytes),
                               "copying the initial state", err, n)) ||
      check(rt, rt->cu.StreamCreate(&rt->stream, CU_STREAM_NON_BLOCKING), "cannot create a stream", err, n))
    goto fail;
  free(table);
  return rt;
fail:
  free(table);
fail_early:
  kiln_cuda_rt_close(rt);
  return NULL;
}

static int launch(kiln_cuda_rt *rt, int k) {
  const kiln_cuda_rt_kernel *kd = &rt->m->kernels[k];
  void *args[] = {&rt->table};
  return rt->cu.LaunchKernel(rt->fn[k], kd->grid[0], kd->grid[1], kd->grid[2], kd->block[0], kd->block[1], kd->block[2], 0,
                             rt->stream, args, NULL);
}

static int kernel_error(kiln_cuda_rt *rt, int k, const char *what, CUresult r, char *err, size_t n) {
  const kiln_cuda_rt_kernel *kd = &rt->m->kernels[k];
  say(err, n, "CUDA: kernel '%s' (node '%s', %s; grid %u,%u,%u block %u,%u,%u) %s: %s", kd->name, kd->node, kd->op, kd->grid[0],
      kd->grid[1], kd->grid[2], kd->block[0], kd->block[1], kd->block[2], what, why(&rt->cu, r));
  return -1;
}

/* The second run: the kernels captured on the stream as one graph. */
static int capture(kiln_cuda_rt *rt, char *err, size_t n) {
  CUresult r = rt->cu.StreamBeginCapture(rt->stream, CU_CAPTURE_THREAD_LOCAL);
  if (r != CU_OK) return check(rt, r, "cannot capture the network as a CUDA Graph", err, n);
  for (int k = 0; k < rt->m->nkernels; k++)
    if ((r = launch(rt, k)) != CU_OK) {
      CUgraph g = NULL;
      rt->cu.StreamEndCapture(rt->stream, &g);
      if (g) rt->cu.GraphDestroy(g);
      return kernel_error(rt, k, "does not launch while capturing the CUDA Graph", r, err, n);
    }
  if (check(rt, rt->cu.StreamEndCapture(rt->stream, &rt->graph), "capturing the CUDA Graph", err, n) ||
      check(rt, rt->cu.GraphInstantiate(&rt->exec, rt->graph, 0), "instantiating the CUDA Graph", err, n))
    return -1;
  return 0;
}

int kiln_cuda_rt_run(kiln_cuda_rt *rt, const void *const *inputs, void *const *outputs, char *err, size_t n) {
  const kiln_cuda_rt_module *m = rt->m;
  /* (the calling thread may not be the one that opened the runtime) */
  if (check(rt, rt->cu.CtxSetCurrent(rt->ctx), "cannot use the context", err, n)) return -1;
  for (int b = 0; b < m->nbufs; b++)
    if (m->bufs[b].kind == KILN_CUDA_RT_INPUT && m->bufs[b].bytes &&
        check(rt, rt->cu.MemcpyHtoDAsync(rt->in[m->bufs[b].index], inputs[m->bufs[b].index], (size_t)m->bufs[b].bytes, rt->stream),
              "copying an input to the GPU", err, n))
      return -1;
  if (rt->runs == 0) { /* eager, one kernel at a time: a failure names its kernel */
    for (int k = 0; k < m->nkernels; k++) {
      CUresult r = launch(rt, k);
      if (r != CU_OK) return kernel_error(rt, k, "does not launch", r, err, n);
      if ((r = rt->cu.StreamSynchronize(rt->stream)) != CU_OK) return kernel_error(rt, k, "failed", r, err, n);
    }
  } else {
    if (!rt->exec && capture(rt, err, n)) return -1;
    CUresult r = rt->cu.GraphLaunch(rt->exec, rt->stream);
    if (r != CU_OK) return check(rt, r, "launching the network's CUDA Graph", err, n);
  }
  for (int b = 0; b < m->nbufs; b++)
    if (m->bufs[b].kind == KILN_CUDA_RT_OUTPUT && m->bufs[b].bytes &&
        check(rt, rt->cu.MemcpyDtoHAsync(outputs[m->bufs[b].index], rt->out[m->bufs[b].index], (size_t)m->bufs[b].bytes, rt->stream),
              "copying an output from the GPU", err, n))
      return -1;
  if (check(rt, rt->cu.StreamSynchronize(rt->stream), "running the network", err, n)) return -1;
  rt->runs++;
  return 0;
}

const char *kiln_cuda_rt_image_used(const kiln_cuda_rt *rt) { return rt->image; }

void kiln_cuda_rt_close(kiln_cuda_rt *rt) {
  if (!rt) return;
  cu_api *cu = &rt->cu;
  if (cu->lib) {
    if (rt->exec) cu->GraphExecDestroy(rt->exec);
    if (rt->graph) cu->GraphDestroy(rt->graph);
    if (rt->stream) cu->StreamDestroy(rt->stream);
    if (rt->mem) cu->MemFree(rt->mem);
    if (rt->mod) cu->ModuleUnload(rt->mod);
    if (rt->ctx) cu->DevicePrimaryCtxRelease(rt->dev);
    dlclose(cu->lib);
  }
  free(rt->fn);
  free(rt->in);
  free(rt->out);
  free(rt);
}
