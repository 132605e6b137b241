/* plan_memory: program -> program whose workspace buffers have offsets in
 * one activation arena, reusing memory between buffers whose live ranges
 * (first write .. last read, in kernel order) do not overlap (greedy
 * placement by decreasing size, 64-byte aligned), and whose weights have
 * offsets in one packed weights blob.  A kernel touches the buffers the
 * loop-IR walker finds it loading or storing (kiln_loop_bufs_used). */
#include <stdlib.h>
#include <string.h>

#include "../ir/loop_walk.h"
#include "lower.h"

typedef struct live { kiln_buf *b; int first, last; int64_t size; } live;

/* Kernel k touches the buffers marked in used: their ranges reach k. */
static void mark_kernel(int k, const unsigned char *used, live *lv, int nbufs) {
  for (int i = 0; i < nbufs; i++) {
    if (!used[i]) continue;
    if (lv[i].first < 0) lv[i].first = k;
    if (k > lv[i].last) lv[i].last = k;
  }
}

static int by_size(const void *a, const void *b) {
  const live *x = *(live *const *)a, *y = *(live *const *)b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return x->b->id - y->b->id; /* deterministic */
}

void kiln_plan_memory(kiln_program *p) {
  live *lv = calloc((size_t)p->nbufs + 1, sizeof *lv);
  live **order = calloc((size_t)p->nbufs + 1, sizeof *order);
  unsigned char *used = calloc((size_t)p->nbufs + 1, 1);
  KILN_ASSERT(lv && order && used);
  int n = 0;
  for (int i = 0; i < p->nbufs; i++) {
    lv[i].b = p->bufs[i];
    lv[i].first = -1;
    lv[i].last = -1;
    lv[i].size = (p->bufs[i]->numel * (int64_t)kiln_dtype_size(p->bufs[i]->dtype) + 63) & ~(int64_t)63;
  }
  for (int k = 0; k < p->nkernels; k++) {
    memset(used, 0, (size_t)p->nbufs + 1);
    kiln_loop_bufs_used(p->kernels[k]->body, used);
    mark_kernel(k, used, lv, p->nbufs);
  }
  free(used);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_WORKSPACE) order[n++] = &lv[i];
  qsort(order, (size_t)n, sizeof *order, by_size);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    live *a = order[i];
    /* lowest offset that overlaps no already placed buffer live at the same time */
    int64_t off = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int j = 0; j < i; j++) {
        live *o = order[j];
        int overlap_time = !(a->last < o->first || o->last < a->first);
        int overlap_mem = off < o->b->offset + o->size && o->b->offset < off + a->size;
        if (overlap_time && overlap_mem) {
          off = o->b->offset + o->size;
          moved = 1;
        }
      }
    }
    a->b->offset = off;
    if (off + a->size > total) total = off + a->size;
  }
  p->workspace_bytes = total;
  /* weights: packed in buffer order, each 64-byte aligned */
  int64_t w = 0;
  for (int i = 0; i < p->nbufs; i++) {
    kiln_buf *b = p->bufs[i];
    if (b->kind != KILN_BUF_WEIGHT) continue;
    b->offset = w;
    w += (b->numel * (int64_t)kiln_dtype_size(b->dtype) + 63) & ~(int64_t)63;
  }
  p->weights_bytes = w;
  free(lv);
  free(order);
}
