/* plan_memory: program -> program whose workspace buffers have offsets in
 * one activation arena, reusing memory between buffers whose live ranges
 * (first write .. last read, in kernel order) do not overlap (greedy
 * placement by decreasing size, 64-byte aligned), whose weights have
 * offsets in one packed weights blob and whose state buffers have offsets
 * in one state blob.  A view (kiln_buf.view_of) is no allocation: its
 * reads and writes count for its root, whose live range is the union of
 * all of theirs; its offset is then its root's plus its own. */
#include <stdlib.h>
#include <string.h>

#include "lower.h"

typedef struct live { kiln_buf *b; int first, last; int64_t size; } live;

static void mark_lx(const kiln_lx *e, int k, live *lv) {
  if (!e) return;
  if (e->kind == KILN_LX_LOAD) {
    live *l = &lv[kiln_buf_root(e->buf, NULL)->id];
    if (l->first < 0) l->first = k;
    if (k > l->last) l->last = k;
  }
  mark_lx(e->a, k, lv);
  mark_lx(e->b, k, lv);
  mark_lx(e->c, k, lv);
}

static void mark_ls(const kiln_ls *s, int k, live *lv) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_STORE) {
      live *l = &lv[kiln_buf_root(s->buf, NULL)->id];
      if (l->first < 0) l->first = k;
      if (k > l->last) l->last = k;
    }
    mark_lx(s->index, k, lv);
    mark_lx(s->value, k, lv);
    mark_ls(s->body, k, lv);
    mark_ls(s->orelse, k, lv);
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
  int n = 0;
  for (int i = 0; i < p->nbufs; i++) {
    lv[i].b = p->bufs[i];
    lv[i].first = -1;
    lv[i].last = -1;
    lv[i].size = (p->bufs[i]->numel * (int64_t)kiln_dtype_size(p->bufs[i]->dtype) + 63) & ~(int64_t)63;
  }
  for (int k = 0; k < p->nkernels; k++) mark_ls(p->kernels[k]->body, k, lv);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i]->kind == KILN_BUF_WORKSPACE && !p->bufs[i]->view_of) order[n++] = &lv[i];
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
  /* state: packed in buffer order, each 64-byte aligned */
  int64_t st = 0;
  for (int i = 0; i < p->nbufs; i++) {
    kiln_buf *b = p->bufs[i];
    if (b->kind != KILN_BUF_STATE || b->view_of) continue;
    b->offset = st;
    st += (b->numel * (int64_t)kiln_dtype_size(b->dtype) + 63) & ~(int64_t)63;
  }
  p->state_bytes = st;
  /* views: their root's offset plus their own (meaningful for workspace
   * roots; printers address every view as root + view offset) */
  for (int i = 0; i < p->nbufs; i++) {
    kiln_buf *b = p->bufs[i];
    if (!b->view_of) continue;
    int64_t off;
    const kiln_buf *r = kiln_buf_root(b, &off);
    b->offset = r->offset + off;
  }
  free(lv);
  free(order);
}
