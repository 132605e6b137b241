/* The kiln runtime (see kiln_runtime.h).  POSIX: mmap for the weights,
 * pthreads for the pool. */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- thread pool ----
 * A parallel loop of n iterations is cut into nthreads even chunks (a
 * static partition: chunk c is the same range whoever runs it).  The
 * caller publishes the job (fn, bufs, n) by bumping the generation in
 * `state`; then the caller and the workers claim chunks from `state` and
 * run them, and `done` counts the chunks finished.  The caller returns
 * when done == nchunks.  Claiming rather than fixing chunk c to worker c
 * matters on a shared machine: a worker the OS has not scheduled yet does
 * not hold the caller up, the caller runs its chunk itself.
 *
 * Why spinning: a network is ~100 parallel kernels run back to back, and a
 * worker woken through a condition variable for each pays a futex wake and
 * a sleep (tens of microseconds on a busy VM), more than a small kernel
 * takes.  So an idle worker watches `state` for the next generation with a
 * pause instruction for up to SPIN_NS, and only then blocks on `work`; the
 * caller likewise waits for `done` spinning first, then on `cv_done`.  A
 * hand-off between spinning threads is a cache-line transfer (well under a
 * microsecond: bench/pool_latency.c).  Every SPIN_CHECK pauses a spinning
 * thread also calls sched_yield: on a crowded machine the thread it waits
 * for may be queued behind it on the same CPU.
 *
 * `state` holds the generation, the job's chunk count and the next
 * unclaimed chunk in one 64-bit word, so a worker that wakes late can only
 * claim a chunk of the generation it saw (its compare-and-swap fails once
 * the caller has moved on), and the job fields it then reads stay put
 * until that chunk is done: the caller rewrites them only after every
 * chunk of the job finished.
 *
 * Blocking without lost wake-ups: a worker about to block counts itself in
 * `sleepers` under `mu` and re-reads `state` before waiting; the caller
 * publishes and then reads `sleepers`, broadcasting under `mu` when someone
 * may sleep.  Both sides use sequentially consistent operations, so either
 * the worker sees the new generation or the caller sees the sleeper
 * (`done` and `caller_sleeping` the same way).
 *
 * Atomics are GCC/Clang __atomic builtins: this file also builds as C99,
 * as `kiln compile`'s users compile it. */
enum { SPIN_NS = 100000, /* how long an idle thread spins before it blocks */
       SPIN_CHECK = 64,  /* pause instructions between clock reads */
       CHUNK_BITS = 16,  /* `state`: bits 0-15 the next chunk to claim, 16-31 the */
       CHUNK_MASK = 0xffff, /* job's chunk count, 32-63 its generation */
       GEN_SHIFT = 32,
       MAX_THREADS = 1 << 12 };

struct kiln_rt_pool {
  /* the job: written by the caller before it bumps the generation; fn
   * (kiln_rt_parallel_for) or body (kiln_rt_parallel_run) */
  void (*fn)(void **, int64_t, int64_t);
  void **bufs;
  void (*body)(void *, int64_t, int64_t);
  void *arg;
  int64_t n;
  int nthreads;             /* threads running, the caller included */
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t work, cv_done;
  /* each hot word on its own cache line: threads poll them */
  char pad0[64];
  uint64_t state;           /* __atomic: generation, chunk count, next chunk (CHUNK_BITS) */
  char pad1[64];
  int done;                 /* __atomic: chunks of the current job finished */
  char pad2[64];
  int sleepers;             /* __atomic: workers blocked, or about to, on `work` */
  int caller_sleeping;      /* __atomic: the caller is blocked, or about to, on `cv_done` */
  int stop;                 /* __atomic: set once, by destroy */
  char pad3[64];
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Call once per spin iteration i (from 1): 1 once SPIN_NS have passed. */
static int spun_out(unsigned i, int64_t *start) {
  cpu_relax();
  if (i % SPIN_CHECK) return 0;
  sched_yield(); /* on a crowded machine, lets the thread we wait for run */
  int64_t t = mono_ns();
  if (!*start) *start = t;
  return t - *start > SPIN_NS;
}

static void run_chunk(const kiln_rt_pool *p, int c, int nchunks) {
  int64_t each = p->n / nchunks, extra = p->n % nchunks;
  int64_t lo = c * each + (c < extra ? c : extra);
  if (p->body) p->body(p->arg, lo, lo + each + (c < extra));
  else p->fn(p->bufs, lo, lo + each + (c < extra));
}

/* Claims and runs chunks of generation gen while any is left.  Whoever
 * finishes the last chunk wakes a sleeping caller.  Only `state` is read
 * before a claim succeeds: the job fields may be a later job's until then. */
static void run_chunks(kiln_rt_pool *p, uint32_t gen) {
  for (;;) {
    uint64_t s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    int next = (int)(s & CHUNK_MASK), nchunks = (int)(s >> CHUNK_BITS & CHUNK_MASK);
    if ((uint32_t)(s >> GEN_SHIFT) != gen || next >= nchunks) return;
    if (!__atomic_compare_exchange_n(&p->state, &s, s + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
    run_chunk(p, next, nchunks);
    if (__atomic_add_fetch(&p->done, 1, __ATOMIC_SEQ_CST) == nchunks &&
        __atomic_load_n(&p->caller_sleeping, __ATOMIC_SEQ_CST)) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->cv_done);
      pthread_mutex_unlock(&p->mu);
    }
  }
}

/* The generation after `seen`: spinning first, then blocked on `work`. */
static uint32_t next_job(kiln_rt_pool *p, uint32_t seen) {
  int64_t start = 0;
  uint32_t g;
  for (unsigned i = 1; (g = (uint32_t)(__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) >> GEN_SHIFT)) == seen; i++)
    if (spun_out(i, &start)) break;
  if (g != seen) return g;
  pthread_mutex_lock(&p->mu);
  __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
  while ((g = (uint32_t)(__atomic_load_n(&p->state, __ATOMIC_SEQ_CST) >> GEN_SHIFT)) == seen)
    pthread_cond_wait(&p->work, &p->mu);
  __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&p->mu);
  return g;
}

static void *worker(void *arg) {
  kiln_rt_pool *p = arg;
  uint32_t seen = 0;
  for (;;) {
    seen = next_job(p, seen);
    if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) break;
    run_chunks(p, seen);
  }
  return NULL;
}

kiln_rt_pool *kiln_rt_pool_create(int nthreads) {
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  void *mem = NULL;
  if (posix_memalign(&mem, 64, sizeof(kiln_rt_pool)) != 0) return NULL;
  kiln_rt_pool *p = mem;
  memset(p, 0, sizeof *p);
  p->nthreads = 1; /* the caller; workers are counted as they start */
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  p->threads = calloc((size_t)nthreads, sizeof *p->threads);
  if (!p->threads) { kiln_rt_pool_destroy(p); return NULL; }
  for (int i = 1; i < nthreads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) { kiln_rt_pool_destroy(p); return NULL; }
    p->nthreads = i + 1;
  }
  return p;
}

void kiln_rt_pool_destroy(kiln_rt_pool *p) {
  if (!p) return;
  __atomic_store_n(&p->stop, 1, __ATOMIC_SEQ_CST);
  uint64_t s = __atomic_load_n(&p->state, __ATOMIC_RELAXED);
  __atomic_store_n(&p->state, ((s >> GEN_SHIFT) + 1) << GEN_SHIFT, __ATOMIC_SEQ_CST); /* a job of no chunks */
  pthread_mutex_lock(&p->mu); /* unconditionally: no sleeper may be missed */
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->cv_done);
  free(p->threads);
  free(p);
}

/* Publishes the job already in p's fields, takes part in it, and waits
 * until every chunk is done. */
static void run_job(kiln_rt_pool *p, int64_t n) {
  p->n = n;
  int nchunks = n < p->nthreads ? (int)n : p->nthreads;
  __atomic_store_n(&p->done, 0, __ATOMIC_RELAXED);
  uint32_t gen = (uint32_t)(__atomic_load_n(&p->state, __ATOMIC_RELAXED) >> GEN_SHIFT) + 1;
  __atomic_store_n(&p->state, (uint64_t)gen << GEN_SHIFT | (uint64_t)nchunks << CHUNK_BITS, __ATOMIC_SEQ_CST); /* publishes the job */
  if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
  }
  run_chunks(p, gen);
  /* chunks claimed by workers still running: spin, then block */
  int64_t start = 0;
  for (unsigned i = 1; __atomic_load_n(&p->done, __ATOMIC_ACQUIRE) != nchunks; i++)
    if (spun_out(i, &start)) break;
  if (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) == nchunks) return;
  pthread_mutex_lock(&p->mu);
  __atomic_store_n(&p->caller_sleeping, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&p->done, __ATOMIC_SEQ_CST) != nchunks) pthread_cond_wait(&p->cv_done, &p->mu);
  __atomic_store_n(&p->caller_sleeping, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&p->mu);
}

void kiln_rt_parallel_for(kiln_rt_pool *p, void (*fn)(void **, int64_t, int64_t), void **bufs, int64_t n) {
  if (!p || p->nthreads == 1 || n < 2) {
    if (n > 0) fn(bufs, 0, n);
    return;
  }
  p->fn = fn;
  p->bufs = bufs;
  p->body = NULL;
  run_job(p, n);
}

void kiln_rt_parallel_run(kiln_rt_pool *p, void (*body)(void *, int64_t, int64_t), void *arg, int64_t n) {
  if (!p || p->nthreads == 1 || n < 2) {
    if (n > 0) body(arg, 0, n);
    return;
  }
  p->body = body;
  p->arg = arg;
  run_job(p, n);
}

void kiln_rt_profile_mark(double *stamps, int64_t k) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  stamps[k] = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
