/* kiln runtime: the small C library every compiled kiln model links.
 *
 * It holds no op kernels (those are generated code); it maps the weights
 * file, allocates the activation arena sized by kiln's memory plan, binds
 * buffers and calls the generated kernels.  Dependencies: libc, pthreads.  No
 * global mutable state: any number of models and instances can run at
 * once, each from one thread at a time.
 *
 * A generated model `net` exports (see net.h, written by `kiln compile`):
 *   const int64_t net_layout[];     buffer table (format below)
 *   void net_kernels(void **bufs);  runs every kernel in order
 */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout table, all int64: [0] format version (2), [1] nbufs,
 * [2] workspace bytes, [3] weights bytes, [4] ninputs, [5] noutputs,
 * [6] state bytes, then per buffer: kind (0 input, 1 output, 2 weight,
 * 3 workspace, 4 state, 5 view: addressed by the generated code through
 * the buffer it views, its entry unused), io index, byte offset (in the
 * weights file, the workspace or the state), byte size.
 *
 * State: a model with state (parameters or statistics its kernels update)
 * keeps it in a state blob of [6] bytes that every instance owns: set to
 * its initial contents at create (they follow the weights in the weights
 * file, which is [3] + [6] bytes long), read and updated by every run,
 * never shared between instances. */
enum { KILN_RT_LAYOUT_VERSION = 2, KILN_RT_LAYOUT_HEAD = 7 };

typedef enum kiln_rt_status {
  KILN_RT_OK = 0,
  KILN_RT_ERR_NOMEM = 1,       /* allocation failed */
  KILN_RT_ERR_WEIGHTS = 2,     /* weights file missing, unreadable or of the wrong size */
  KILN_RT_ERR_LAYOUT = 3,      /* artifact and runtime disagree (rebuild both) */
  KILN_RT_ERR_ARGUMENT = 4     /* NULL model, input or output pointer */
} kiln_rt_status;

typedef struct kiln_rt_model kiln_rt_model;

/* ---- thread pool: parallel loops of generated code run on it ---- */
typedef struct kiln_rt_pool kiln_rt_pool;
/* A pool of nthreads threads (the calling thread counts as one; 1 = no
 * extra threads; at most 4096).  NULL if threads cannot be created.  Idle
 * workers spin for up to 0.1 ms (pause, sched_yield) before they block, so
 * back-to-back parallel loops hand off in well under a microsecond. */
kiln_rt_pool *kiln_rt_pool_create(int nthreads);
void kiln_rt_pool_destroy(kiln_rt_pool *p);
/* Runs fn(bufs, lo, hi) over [0, n) split into min(n, nthreads) even
 * contiguous chunks, each run by whichever thread claims it first (the
 * caller takes part), and returns when all are done.  One caller at a
 * time.  pool NULL: runs fn(bufs, 0, n).  Generated code calls this; the
 * pool travels in bufs[nbufs]. */
void kiln_rt_parallel_for(kiln_rt_pool *pool, void (*fn)(void **, int64_t, int64_t), void **bufs, int64_t n);
/* The same for any body(arg, lo, hi): the callback shape of `kiln emit-c
 * --threads` code (bench/c_harness.c passes it this). */
void kiln_rt_parallel_run(kiln_rt_pool *pool, void (*body)(void *, int64_t, int64_t), void *arg, int64_t n);

/* ---- per-kernel timing (kiln run --profile) ----
 * Code compiled for profiling calls this before its first kernel (k = 0)
 * and after each kernel k (k + 1): stamps[k] = CLOCK_MONOTONIC seconds.
 * Kernel k took stamps[k + 1] - stamps[k].  Normal builds never call it. */
void kiln_rt_profile_mark(double *stamps, int64_t k);

/* Maps weights_path and allocates the workspace. */
kiln_rt_status kiln_rt_create(const int64_t *layout, void (*kernels)(void **), const char *weights_path,
                              kiln_rt_model **out);
/* inputs[i] / outputs[i] point at dense tensors of the shapes in the
 * model's header, in its order. */
kiln_rt_status kiln_rt_run(kiln_rt_model *m, const void *const *inputs, void *const *outputs);
/* Runs the model's parallel loops on nthreads threads (default 1). */
kiln_rt_status kiln_rt_set_threads(kiln_rt_model *m, int nthreads);
void kiln_rt_destroy(kiln_rt_model *m);
/* The instance's state blob (NULL if the model has none) and its size in
 * *bytes (may be NULL): to save it, or to restore a saved one by copying
 * into it between runs. */
void *kiln_rt_state(kiln_rt_model *m, size_t *bytes);
/* Sets the state back to its initial contents, as create did. */
kiln_rt_status kiln_rt_reset_state(kiln_rt_model *m);
const char *kiln_rt_strerror(kiln_rt_status s);

#ifdef __cplusplus
}
#endif
#endif
