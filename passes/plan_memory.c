/* plan_memory: program -> program whose workspace buffers have offsets in
 * one activation arena, reusing memory between buffers whose live ranges
 * (first write .. last read, in steps) do not overlap (greedy
 * placement by decreasing size, 64-byte aligned), whose weights have
 * offsets in one packed weights blob and whose state buffers have offsets
 * in one state blob.  A view (kiln_buf.view_of) is no allocation: its
 * reads and writes count for its root, whose live range is the union of
 * all of theirs; its offset is then its root's plus its own.  A buffer an
 * elementwise kernel may write over its dying input (plan_inplace.c) takes
 * that input's memory.  A kernel touches the buffers the loop-IR walker
 * finds it loading or storing (kiln_loop_bufs_used).
 *
 * Steps: a CPU kernel's top-level statements run one after another (a
 * threaded loop joins before the next statement starts), so each is a
 * step of its own; a GPU kernel (kiln_kernel.launch) is one step, its
 * blocks running its statements concurrently.  A convolution's input
 * read only by its packing loop is then dead when its sums are written,
 * and its scratch shares memory with what is dead at that moment: kernel
 * scratch (kiln_buf.scratch) costs only what does not fit beside the
 * values live at the same step.  The plain plan (plain_workspace_bytes)
 * is the same plan without any scratch. */
#include <stdlib.h>
#include <string.h>

#include "../ir/loop_walk.h"
#include "lower.h"

typedef struct live { kiln_buf *b; int first, last; int64_t size; } live;

/* Step k touches the buffers marked in used: their ranges (a view's:
 * its root's) reach k. */
static void mark_step(const kiln_program *p, int k, const unsigned char *used, live *lv) {
  for (int i = 0; i < p->nbufs; i++) {
    if (!used[i]) continue;
    live *l = &lv[kiln_buf_root(p->bufs[i], NULL)->id];
    if (l->first < 0) l->first = k;
    if (k > l->last) l->last = k;
  }
}

/* In place: a workspace buffer first written by the step that last
 * reads another of the same size, when that step's kernel (kernel_of) may overwrite it
 * element by element (kiln_inplace_ok), shares its memory: host[i] is the
 * buffer whose allocation i uses (-1: its own), and the host's live range
 * grows to cover i's.  Buffers with views stay out of it, and kernel
 * scratch too unless scratch is set (the plain plan has none). */
static int *plan_inplace(const kiln_program *p, live *lv, int scratch, const int *kernel_of, int nk) {
  int nb = p->nbufs;
  int *host = malloc(((size_t)nb + 1) * sizeof *host);
  int *dies = malloc(((size_t)nb + 1) * sizeof *dies), *dies_at = calloc((size_t)nk + 2, sizeof *dies_at);
  char *viewed = calloc((size_t)nb + 1, 1);
  for (int i = 0; i < nb; i++) {
    host[i] = -1;
    if (p->bufs[i]->view_of) viewed[kiln_buf_root(p->bufs[i], NULL)->id] = 1;
  }
#define CANDIDATE(i) (p->bufs[i]->kind == KILN_BUF_WORKSPACE && !p->bufs[i]->view_of && !viewed[i] && lv[i].first >= 0 && \
                      (scratch || !p->bufs[i]->scratch))
  /* buffers by the kernel that reads them last (counting sort) */
  for (int i = 0; i < nb; i++)
    if (CANDIDATE(i)) dies_at[lv[i].last + 1]++;
  for (int k = 0; k < nk; k++) dies_at[k + 1] += dies_at[k];
  int *fill = calloc((size_t)nk + 1, sizeof *fill);
  for (int i = 0; i < nb; i++)
    if (CANDIDATE(i)) dies[dies_at[lv[i].last] + fill[lv[i].last]++] = i;
  for (int a = 0; a < nb; a++) {
    if (!CANDIDATE(a)) continue;
    int k = lv[a].first;
    for (int j = dies_at[k]; j < dies_at[k + 1]; j++) {
      int b = dies[j], h = host[b] >= 0 ? host[b] : b;
      if (b == a || lv[h].last != k || lv[h].size != lv[a].size || host[a] >= 0) continue;
      int taken = 0; /* one buffer per host per step */
      for (int i = 0; i < a && !taken; i++) taken = host[i] == h && lv[i].first == k;
      if (taken || !kiln_inplace_ok(p->kernels[kernel_of[k]], p->bufs[a], p->bufs[b])) continue;
      host[a] = h;
      if (lv[a].last > lv[h].last) lv[h].last = lv[a].last;
      break;
    }
  }
#undef CANDIDATE
  free(dies);
  free(dies_at);
  free(fill);
  free(viewed);
  return host;
}

/* Placement orders (first fit, each buffer at the lowest offset free
 * over its whole live range): by decreasing size; by decreasing breadth
 * (the most bytes live at any step of the buffer's range, then size:
 * the buffers at the peak first, TFLite's "greedy by breadth"); by
 * decreasing length of range, then size.  None is best on every network
 * (ResNet-50's 1x1 convolutions fragment the first), so each is tried
 * and the smallest arena kept.  key[0..1] hold the sort keys. */
typedef struct ordered { live *l; int64_t key[2]; } ordered;

static int by_keys(const void *a, const void *b) {
  const ordered *x = a, *y = b;
  for (int k = 0; k < 2; k++)
    if (x->key[k] != y->key[k]) return x->key[k] < y->key[k] ? 1 : -1;
  return x->l->b->id - y->l->b->id; /* deterministic */
}

/* First fit of order[0..n) in that order; returns the arena size. */
static int64_t place(ordered *order, int n) {
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    live *a = order[i].l;
    int64_t off = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int j = 0; j < i; j++) {
        live *o = order[j].l;
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
  return total;
}

enum { ORDER_SIZE, ORDER_BREADTH, ORDER_LENGTH, ORDER_COUNT };

static void sort_keys(ordered *order, int n, int how, const int64_t *at_step) {
  for (int i = 0; i < n; i++) {
    const live *l = order[i].l;
    int64_t breadth = 0;
    if (how == ORDER_BREADTH)
      for (int t = l->first; t <= l->last; t++) breadth = at_step[t] > breadth ? at_step[t] : breadth;
    order[i].key[0] = how == ORDER_SIZE ? l->size : how == ORDER_BREADTH ? breadth : l->last - l->first;
    order[i].key[1] = how == ORDER_SIZE ? 0 : l->size;
  }
  qsort(order, (size_t)n, sizeof *order, by_keys);
}

/* Places the workspace buffers with live ranges lv (written in place
 * first, then first fit in the best of the orders above); returns the
 * arena size.  Without scratch, kernel scratch buffers (kiln_buf.scratch)
 * are left out: the plain plan, the graph values' own peak. */
static int64_t plan_workspace(kiln_program *p, live *lv, int scratch, const int *kernel_of, int nsteps) {
  int *host = plan_inplace(p, lv, scratch, kernel_of, nsteps), n = 0;
  ordered *order = malloc(((size_t)p->nbufs + 1) * sizeof *order);
  int64_t *at_step = calloc((size_t)nsteps + 1, sizeof *at_step);
  KILN_ASSERT(order && at_step);
  for (int i = 0; i < p->nbufs; i++)
    /* a buffer no kernel touches (an epilogue step's intermediate result,
     * computed in registers by the fused kernel) takes no space */
    if (p->bufs[i]->kind == KILN_BUF_WORKSPACE && !p->bufs[i]->view_of && host[i] < 0 && lv[i].first >= 0 &&
        (scratch || !p->bufs[i]->scratch)) {
      order[n++].l = &lv[i];
      for (int t = lv[i].first; t <= lv[i].last; t++) at_step[t] += lv[i].size;
    }
  int best = ORDER_SIZE;
  int64_t total = -1;
  for (int how = 0; how < ORDER_COUNT; how++) {
    sort_keys(order, n, how, at_step);
    int64_t t = place(order, n);
    if (total < 0 || t < total) total = t, best = how;
  }
  sort_keys(order, n, best, at_step);
  place(order, n);
  free(order);
  free(at_step);
  for (int i = 0; i < p->nbufs; i++) /* written in place over its host */
    if (host[i] >= 0) p->bufs[i]->offset = p->bufs[host[i]]->offset;
  free(host);
  return total;
}

void kiln_plan_memory(kiln_program *p) {
  live *lv = calloc((size_t)p->nbufs + 1, sizeof *lv);
  unsigned char *used = calloc((size_t)p->nbufs + 1, 1);
  KILN_ASSERT(lv && used);
  for (int i = 0; i < p->nbufs; i++) {
    lv[i].b = p->bufs[i];
    lv[i].first = -1;
    lv[i].last = -1;
    lv[i].size = (p->bufs[i]->numel * (int64_t)kiln_dtype_size(p->bufs[i]->dtype) + 63) & ~(int64_t)63;
  }
  /* the plain plan first (its offsets are then overwritten): graph values
   * only, live over whole kernels (a node's inputs beside its outputs),
   * the figure the real plan is held to (tests/models/test_workspace_peak.py) */
  live *plain = malloc(((size_t)p->nbufs + 1) * sizeof *plain);
  int *identity = malloc(((size_t)p->nkernels + 1) * sizeof *identity);
  unsigned char *kused = malloc((size_t)p->nbufs + 1);
  int nsteps = 0, cap = p->nkernels + 1;
  int *kernel_of = malloc((size_t)cap * sizeof *kernel_of);
  KILN_ASSERT(plain && identity && kused && kernel_of);
  memcpy(plain, lv, ((size_t)p->nbufs + 1) * sizeof *plain);
  /* one walk of the program for both plans: the real plan's steps (a
   * top-level statement each), and their union per kernel for the plain
   * plan (a second walk was ~20 ms of ResNet-50's compile) */
  for (int k = 0; k < p->nkernels; k++) {
    const kiln_kernel *kn = p->kernels[k];
    identity[k] = k;
    memset(kused, 0, (size_t)p->nbufs + 1);
    for (const kiln_ls *s = kn->body; s || kn->launch; s = s->next) {
      if (nsteps == cap) {
        kernel_of = realloc(kernel_of, (size_t)(cap *= 2) * sizeof *kernel_of);
        KILN_ASSERT(kernel_of);
      }
      kernel_of[nsteps] = k;
      memset(used, 0, (size_t)p->nbufs + 1);
      if (kn->launch) kiln_loop_bufs_used(kn->body, used); /* a GPU kernel: one step */
      else kiln_loop_bufs_used_stmt(s, used);
      mark_step(p, nsteps++, used, lv);
      for (int i = 0; i < p->nbufs; i++) kused[i] |= used[i];
      if (kn->launch) break;
    }
    mark_step(p, k, kused, plain);
  }
  free(used);
  free(kused);
  p->plain_workspace_bytes = plan_workspace(p, plain, 0, identity, p->nkernels);
  free(plain);
  free(identity);
  p->workspace_bytes = plan_workspace(p, lv, 1, kernel_of, nsteps);
  free(kernel_of);
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
}
