/* The kiln runtime (see kiln_runtime.h).  POSIX: mmap for the weights. */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct kiln_rt_model {
  const int64_t *layout;
  void (*kernels)(void **);
  void *weights;        /* mmap of the weights file */
  size_t weights_len;
  void *workspace;
  void **bufs;          /* per buffer: base pointer */
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
  free(m->workspace);
  free(m->bufs);
  free(m);
}

kiln_rt_status kiln_rt_create(const int64_t *layout, void (*kernels)(void **), const char *weights_path,
                              kiln_rt_model **out) {
  if (!layout || !kernels || !out) return KILN_RT_ERR_ARGUMENT;
  *out = NULL;
  if (layout[0] != KILN_RT_LAYOUT_VERSION) return KILN_RT_ERR_LAYOUT;
  int64_t nbufs = layout[1], ws = layout[2], wbytes = layout[3];
  kiln_rt_model *m = calloc(1, sizeof *m);
  if (!m) return KILN_RT_ERR_NOMEM;
  m->layout = layout;
  m->kernels = kernels;
  m->bufs = calloc((size_t)nbufs + 1, sizeof *m->bufs);
  m->workspace = malloc((size_t)ws + 64);
  if (!m->bufs || !m->workspace) { kiln_rt_destroy(m); return KILN_RT_ERR_NOMEM; }
  if (wbytes > 0) {
    if (!weights_path) { kiln_rt_destroy(m); return KILN_RT_ERR_WEIGHTS; }
    int fd = open(weights_path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size != wbytes) {
      if (fd >= 0) close(fd);
      kiln_rt_destroy(m);
      return KILN_RT_ERR_WEIGHTS;
    }
    void *w = mmap(NULL, (size_t)wbytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (w == MAP_FAILED) { kiln_rt_destroy(m); return KILN_RT_ERR_WEIGHTS; }
    m->weights = w;
    m->weights_len = (size_t)wbytes;
  }
  /* weights and workspace are fixed for the model's life; inputs and
   * outputs are bound per run */
  char *ws_base = (char *)(((uintptr_t)m->workspace + 63) & ~(uintptr_t)63);
  for (int64_t b = 0; b < nbufs; b++) {
    const int64_t *e = layout + 6 + 4 * b;
    if (e[0] == 2) m->bufs[b] = (char *)m->weights + e[2];
    else if (e[0] == 3) m->bufs[b] = ws_base + e[2];
  }
  *out = m;
  return KILN_RT_OK;
}

kiln_rt_status kiln_rt_run(kiln_rt_model *m, const void *const *inputs, void *const *outputs) {
  if (!m || (!inputs && m->layout[4]) || (!outputs && m->layout[5])) return KILN_RT_ERR_ARGUMENT;
  for (int64_t b = 0; b < m->layout[1]; b++) {
    const int64_t *e = m->layout + 6 + 4 * b;
    if (e[0] == 0) m->bufs[b] = (void *)inputs[e[1]];
    else if (e[0] == 1) m->bufs[b] = outputs[e[1]];
    if ((e[0] == 0 || e[0] == 1) && !m->bufs[b] && e[3] > 0) return KILN_RT_ERR_ARGUMENT;
  }
  m->kernels(m->bufs);
  return KILN_RT_OK;
}
