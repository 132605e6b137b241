/* kiln_cuda_rt.h: the small runtime that runs kiln's CUDA kernels on a GPU
 * through the CUDA driver API.  Plain C99; no link-time CUDA dependency:
 * the driver (libcuda.so.1) is opened with dlopen when a runtime is
 * created, so a program built with it runs (and fails with one clear
 * line) on machines without CUDA.
 *
 * A compiled network is a kiln_cuda_rt_module: its device images (a cubin
 * per architecture and PTX for the newest, from NVRTC), its kernels in
 * launch order with each launch's shape (from the loop IR), and its
 * buffers as the static memory plan placed them.  kiln_cuda_rt_open
 * chooses the image for the device (the cubin of its architecture; else
 * the PTX, which the driver compiles), makes ONE device allocation for
 * everything (the buffer table the kernels read, weights, state,
 * workspace, inputs, outputs), copies the weights and the initial state
 * once.  kiln_cuda_rt_run copies the inputs in, runs the kernels on one
 * stream and the outputs back.  The first run launches kernel by kernel
 * and synchronises after each, so a failure names its kernel and graph
 * node; the second run captures the kernels as a CUDA Graph, and every
 * later run launches that graph.
 *
 * Errors are one line in err (no newline), and the call returns non-zero.
 *
 * Test hook: the environment variable KILN_CUDA_DRIVER, when set, names
 * the driver library to open instead of libcuda.so.1 (kiln's tests use a
 * fake driver that simulates devices on the host: tests/runtime/). */
#ifndef KILN_CUDA_RT_H
#define KILN_CUDA_RT_H

#include <stddef.h>
#include <stdint.h>

typedef struct kiln_cuda_rt_image {
  int arch;         /* 80 = sm_80 (cubin) or compute_80 (PTX) */
  int ptx;          /* 1: PTX text (NUL-terminated); 0: a cubin */
  const void *data;
  size_t size;
} kiln_cuda_rt_image;

typedef struct kiln_cuda_rt_kernel {
  const char *name;          /* the kernel's symbol in the images */
  const char *node, *op;     /* the graph node it computes (errors) */
  unsigned grid[3], block[3];
} kiln_cuda_rt_kernel;

typedef enum kiln_cuda_rt_kind {
  KILN_CUDA_RT_INPUT,     /* io: input io_index */
  KILN_CUDA_RT_OUTPUT,    /* io: output io_index */
  KILN_CUDA_RT_WORKSPACE, /* at offset in the workspace */
  KILN_CUDA_RT_STATE,     /* at offset in the state */
  KILN_CUDA_RT_WEIGHT,    /* at offset in the weights blob */
  KILN_CUDA_RT_VIEW       /* buffer `root`'s memory from offset on */
} kiln_cuda_rt_kind;

typedef struct kiln_cuda_rt_buf {
  int kind;         /* kiln_cuda_rt_kind */
  int index;        /* INPUT/OUTPUT: io index; VIEW: the root buffer (not a view) */
  uint64_t offset;  /* WORKSPACE/STATE/WEIGHT/VIEW */
  uint64_t bytes;   /* INPUT/OUTPUT: the tensor's size */
} kiln_cuda_rt_buf;

typedef struct kiln_cuda_rt_module {
  int nimages;
  const kiln_cuda_rt_image *images;
  int nkernels;
  const kiln_cuda_rt_kernel *kernels;
  int nbufs;                  /* the kernels' buffer table: bufs[0..nbufs) */
  const kiln_cuda_rt_buf *bufs;
  int ninputs, noutputs;
  uint64_t weights_bytes;     /* the blob: weights, then state_bytes of initial state */
  uint64_t state_bytes, workspace_bytes;
} kiln_cuda_rt_module;

typedef struct kiln_cuda_rt kiln_cuda_rt;

/* The device's compute capability as 10 * major + minor (sm_90: 90), and
 * its name; 0, or -1 with err (no driver, no device). */
int kiln_cuda_rt_device_arch(int *arch, char *name, size_t name_size, char *err, size_t err_size);

/* Opens the driver, the device (0), loads m's image for it and sets up its
 * memory; weights: the blob (weights_bytes + state_bytes bytes).  m and its
 * arrays must outlive the runtime.  NULL with err on failure. */
kiln_cuda_rt *kiln_cuda_rt_open(const kiln_cuda_rt_module *m, const void *weights, char *err, size_t err_size);
/* One run: inputs[i] has the bytes of input i, outputs[i] receives output i. */
int kiln_cuda_rt_run(kiln_cuda_rt *rt, const void *const *inputs, void *const *outputs, char *err, size_t err_size);
/* Which image was loaded: "sm_90 cubin" or "compute_90 PTX (JIT)". */
const char *kiln_cuda_rt_image_used(const kiln_cuda_rt *rt);
void kiln_cuda_rt_close(kiln_cuda_rt *rt);

#endif
