/* The kiln runtime (see kiln_runtime.h).  POSIX: mmap for the weights,
 * pthreads for the pool. */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- thread pool ----
 * Workers sleep on a condition variable; a job is published by bumping
 * `generation`, each worker takes chunk `id` of it, and the caller runs
 * chunk 0 itself, then waits until `pending` drops to zero. */
struct kiln_rt_pool {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  int nthreads, stop, pending;
  unsigned long generation;
  void (*fn)(void **, int64_t, int64_t);
  void **bufs;
  int64_t n;
  pthread_t *threads;
};

typedef struct worker_arg { kiln_rt_pool *pool; int id; } worker_arg;

static void chunk(const kiln_rt_pool *p, int id, int64_t *lo, int64_t *hi) {
  int64_t each = p->n / p->nthreads, extra = p->n % p->nthreads;
  *lo = id * each + (id < extra ? id : extra);
  *hi = *lo + each + (id < extra);
}

static void *worker(void *arg) {
  worker_arg *w = arg;
  kiln_rt_pool *p = w->pool;
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->generation == seen) pthread_cond_wait(&p->work, &p->mu);
    if (p->stop) { pthread_mutex_unlock(&p->mu); break; }
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    int64_t lo, hi;
    chunk(p, w->id, &lo, &hi);
    if (lo < hi) p->fn(p->bufs, lo, hi);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
  free(w);
  return NULL;
}

kiln_rt_pool *kiln_rt_pool_create(int nthreads) {
  if (nthreads < 1) nthreads = 1;
  kiln_rt_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->nthreads = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  p->threads = calloc((size_t)nthreads, sizeof *p->threads);
  if (!p->threads) { free(p); return NULL; }
  for (int i = 1; i < nthreads; i++) {
    worker_arg *w = malloc(sizeof *w);
    if (!w) { p->nthreads = i; kiln_rt_pool_destroy(p); return NULL; }
    w->pool = p;
    w->id = i;
    if (pthread_create(&p->threads[i], NULL, worker, w) != 0) {
      free(w);
      p->nthreads = i;
      kiln_rt_pool_destroy(p);
      return NULL;
    }
  }
  return p;
}

void kiln_rt_pool_destroy(kiln_rt_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  free(p->threads);
  free(p);
}

void kiln_rt_parallel_for(kiln_rt_pool *p, void (*fn)(void **, int64_t, int64_t), void **bufs, int64_t n) {
  if (!p || p->nthreads == 1 || n < 2) {
    if (n > 0) fn(bufs, 0, n);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->bufs = bufs;
  p->n = n;
  p->pending = p->nthreads - 1;
  p->generation++;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  int64_t lo, hi;
  chunk(p, 0, &lo, &hi);
  if (lo < hi) fn(bufs, lo, hi);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

struct kiln_rt_model {
  const int64_t *layout;
  void (*kernels)(void **);
  void *weights;        /* mmap of the weights file */
  size_t weights_len;
  void *workspace;
  void *state;          /* this instance's state blob (layout[6] bytes), or NULL */
  void **bufs;          /* per buffer: base pointer; bufs[nbufs] = the pool */
  kiln_rt_pool *pool;
};

const char *kiln_rt_strerror(kiln_rt_status s) {
  switch (s) {
  case KILN_RT_OK: return "ok";
  case KILN_RT_ERR_NOMEM: return "out of memory";
  case KILN_RT_ERR_WEIGHTS: return "weights file missing, unreadable or of the wrong size";
  case KILN_RT_ERR_LAYOUT: return "model artifact and runtime versions disagree";
  case KILN_RT_ERR_ARGUMENT: return "invalid argument";
  }
  return "unknown error";
}

void kiln_rt_destroy(kiln_rt_model *m) {
  if (!m) return;
  if (m->weights && m->weights_len) munmap(m->weights, m->weights_len);
  kiln_rt_pool_destroy(m->pool);
  free(m->workspace);
  free(m->state);
  free(m->bufs);
  free(m);
}

kiln_rt_status kiln_rt_create(const int64_t *layout, void (*kernels)(void **), const char *weights_path,
                              kiln_rt_model **out) {
  if (!layout || !kernels || !out) return KILN_RT_ERR_ARGUMENT;
  *out = NULL;
  if (layout[0] != KILN_RT_LAYOUT_VERSION) return KILN_RT_ERR_LAYOUT;
  int64_t nbufs = layout[1], ws = layout[2], wbytes = layout[3], sbytes = layout[6];
  kiln_rt_model *m = calloc(1, sizeof *m);
  if (!m) return KILN_RT_ERR_NOMEM;
  m->layout = layout;
  m->kernels = kernels;
  m->bufs = calloc((size_t)nbufs + 1, sizeof *m->bufs);
  m->workspace = malloc((size_t)ws + 64);
  if (sbytes > 0 && posix_memalign(&m->state, 64, (size_t)sbytes) != 0) m->state = NULL;
  if (!m->bufs || !m->workspace || (sbytes > 0 && !m->state)) { kiln_rt_destroy(m); return KILN_RT_ERR_NOMEM; }
  if (wbytes + sbytes > 0) { /* the weights, then the state's initial contents */
    if (!weights_path) { kiln_rt_destroy(m); return KILN_RT_ERR_WEIGHTS; }
    int fd = open(weights_path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size != wbytes + sbytes) {
      if (fd >= 0) close(fd);
      kiln_rt_destroy(m);
      return KILN_RT_ERR_WEIGHTS;
    }
    void *w = mmap(NULL, (size_t)(wbytes + sbytes), PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (w == MAP_FAILED) { kiln_rt_destroy(m); return KILN_RT_ERR_WEIGHTS; }
    m->weights = w;
    m->weights_len = (size_t)(wbytes + sbytes);
  }
  kiln_rt_reset_state(m);
  /* weights and workspace are fixed for the model's life; inputs and
   * outputs are bound per run */
  char *ws_base = (char *)(((uintptr_t)m->workspace + 63) & ~(uintptr_t)63);
  for (int64_t b = 0; b < nbufs; b++) {
    const int64_t *e = layout + KILN_RT_LAYOUT_HEAD + 4 * b;
    if (e[0] == 2) m->bufs[b] = (char *)m->weights + e[2];
    else if (e[0] == 3) m->bufs[b] = ws_base + e[2];
    else if (e[0] == 4) m->bufs[b] = (char *)m->state + e[2];
  }
  *out = m;
  return KILN_RT_OK;
}

kiln_rt_status kiln_rt_set_threads(kiln_rt_model *m, int nthreads) {
  if (!m || nthreads < 1) return KILN_RT_ERR_ARGUMENT;
  kiln_rt_pool *p = nthreads > 1 ? kiln_rt_pool_create(nthreads) : NULL;
  if (nthreads > 1 && !p) return KILN_RT_ERR_NOMEM;
  kiln_rt_pool_destroy(m->pool);
  m->pool = p;
  m->bufs[m->layout[1]] = p;
  return KILN_RT_OK;
}

kiln_rt_status kiln_rt_run(kiln_rt_model *m, const void *const *inputs, void *const *outputs) {
  if (!m || (!inputs && m->layout[4]) || (!outputs && m->layout[5])) return KILN_RT_ERR_ARGUMENT;
  for (int64_t b = 0; b < m->layout[1]; b++) {
    const int64_t *e = m->layout + KILN_RT_LAYOUT_HEAD + 4 * b;
    if (e[0] == 0) m->bufs[b] = (void *)inputs[e[1]];
    else if (e[0] == 1) m->bufs[b] = outputs[e[1]];
    if ((e[0] == 0 || e[0] == 1) && !m->bufs[b] && e[3] > 0) return KILN_RT_ERR_ARGUMENT;
  }
  m->kernels(m->bufs);
  return KILN_RT_OK;
}

void *kiln_rt_state(kiln_rt_model *m, size_t *bytes) {
  if (bytes) *bytes = m ? (size_t)m->layout[6] : 0;
  return m ? m->state : NULL;
}

kiln_rt_status kiln_rt_reset_state(kiln_rt_model *m) {
  if (!m) return KILN_RT_ERR_ARGUMENT;
  if (m->state) memcpy(m->state, (const char *)m->weights + m->layout[3], (size_t)m->layout[6]);
  return KILN_RT_OK;
}
