/* Twin kernels, found before any LLVM IR is built.
 *
 * A network repeats itself: ResNet-50's 16 bottleneck blocks are 4 kinds,
 * DenseNet's layers of one stage share their 3x3 convolution, and kiln
 * lowers a repeated layer to the same loop IR on other buffers.  The
 * code generator (llvm_codegen.c) passes buffers to a kernel's body
 * through slots numbered in the order the kernel first uses them, so
 * twins' bodies are the same function; the mergefunc pass used to find
 * that out after both had been printed, verified and (until it ran) kept
 * in the module.  Here the code generator asks first: the key of a kernel
 * is its loop IR written out node by node (pre-order, every field a
 * printer reads, a buffer as its slot and element type, an end mark after
 * each node's children, and per statement the lengths of its blocks, so
 * two different trees never write the same bytes), followed by what the
 * printer decides per function (outlined or not, each function's tier).
 * Equal keys print equal functions, so a kernel whose key was printed
 * before gets only its own wrapper, which fills the slots with its own
 * buffers and calls the body and loops printed for the first one.  Keys
 * are compared byte for byte (the hash only narrows the search), so a
 * collision can cost time, never a wrong kernel. */
#include <string.h>

#include "../../ir/loop_walk.h"
#include "llvm_internal.h"

typedef struct twin {
  uint64_t hash;
  unsigned char *key;
  size_t len;
  kiln_llvm_printed printed;
} twin;

struct kiln_llvm_twins {
  twin *v;
  int n, cap;
  unsigned char *key; /* the key being built (kiln_llvm_twin_find), and its size */
  size_t len, cap_key;
  uint64_t hash; /* of key, once built */
  unsigned char *used; /* per buffer: used by the statements being keyed */
  int oom;
  int looked_up, found; /* kernels asked about; of them, twins of an earlier one */
};

static void put(kiln_llvm_twins *t, const void *p, size_t n) {
  if (t->oom) return;
  if (t->len + n > t->cap_key) {
    size_t cap = t->cap_key ? t->cap_key : 4096;
    while (cap < t->len + n) cap *= 2;
    unsigned char *k = realloc(t->key, cap);
    if (!k) {
      t->oom = 1;
      return;
    }
    t->key = k, t->cap_key = cap;
  }
  memcpy(t->key + t->len, p, n);
  t->len += n;
}
static void put_i(kiln_llvm_twins *t, int64_t v) { put(t, &v, sizeof v); }

typedef struct keyer {
  kiln_llvm_twins *t;
  const cg *c;
} keyer;

static void put_buf(keyer *k, const kiln_buf *b) {
  if (!b) {
    put_i(k->t, -1);
    return;
  }
  /* a global buffer is its slot (which buffer fills it is the wrapper's
   * business); a kernel's own SHARED/LOCAL buffer is itself */
  put_i(k->t, b->scope == KILN_SCOPE_GLOBAL ? k->c->slot_of[b->id] : -2 - (int64_t)b->id);
  put_i(k->t, b->dtype);
  put_i(k->t, b->scope);
}

static int64_t block_len(const kiln_ls *s) {
  int64_t n = 0;
  for (; s; s = s->next) n++;
  return n;
}

static int key_stmt(kiln_walk *w, const kiln_ls *s) {
  keyer *k = w->ctx;
  int64_t f[13] = {'S', s->kind, s->var, s->extent, s->sched.parallel, s->sched.threads, s->sched.vector,
                   s->sched.unroll, s->sched.gpu, s->sched.masked_tail, s->dtype, s->reduce, s->near};
  put(k->t, f, sizeof f);
  put_buf(k, s->buf);
  put_i(k->t, block_len(s->body));
  put_i(k->t, block_len(s->orelse));
  return KILN_WALK_CONTINUE;
}
static void key_stmt_end(kiln_walk *w, const kiln_ls *s) {
  (void)s;
  put_i(((keyer *)w->ctx)->t, 's');
}
static int key_expr(kiln_walk *w, const kiln_lx *e) {
  keyer *k = w->ctx;
  int64_t f[6] = {'E', e->kind, e->op, e->dtype, e->i, e->var};
  put(k->t, f, sizeof f);
  put(k->t, &e->f, sizeof e->f); /* bit for bit: -0.0 and NaN payloads stay apart */
  put_buf(k, e->kind == KILN_LX_LOAD ? e->buf : NULL);
  return KILN_WALK_CONTINUE;
}
static void key_expr_end(kiln_walk *w, const kiln_lx *e) {
  (void)e;
  put_i(((keyer *)w->ctx)->t, 'e');
}

/* Which slot each function reads each buffer's base from
 * (kiln_llvm_load_slot: buffers at one address share one, within the
 * statements that load together): one top-level statement of an outlined
 * kernel, or the whole body of another. */
static void put_scopes(keyer *k, const kiln_kernel *kn, int outlined) {
  const kiln_program *p = k->c->prog;
  kiln_llvm_twins *t = k->t;
  if (!t->used) t->used = malloc((size_t)p->nbufs + 1);
  if (!t->used) {
    t->oom = 1;
    return;
  }
  for (const kiln_ls *s = kn->body; s; s = outlined ? s->next : NULL) {
    memset(t->used, 0, (size_t)p->nbufs + 1);
    if (outlined) kiln_loop_bufs_used_stmt(s, t->used);
    else kiln_loop_bufs_used(s, t->used);
    put_i(t, 'L');
    for (int j = 0; j < k->c->nslots; j++) /* in slot order: buffer ids differ between twins */
      if (t->used[k->c->slot_buf[j]]) put_i(t, (int64_t)j << 32 | kiln_llvm_load_slot(k->c, t->used, k->c->slot_buf[j]));
  }
}

/* FNV-1a over 8-byte words (keys run to megabytes: byte by byte it cost
 * ResNet-50 ~50 ms); the tail is zero-padded. */
static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w = 0;
    memcpy(&w, p + i, n - i < 8 ? n - i : 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29; /* a word's high bits reach the low ones */
  }
  return h;
}

kiln_llvm_twins *kiln_llvm_twins_new(void) { return calloc(1, sizeof(kiln_llvm_twins)); }

void kiln_llvm_twins_free(kiln_llvm_twins *t) {
  if (!t) return;
  for (int i = 0; i < t->n; i++) {
    free(t->v[i].key);
    free(t->v[i].printed.loops);
  }
  free(t->used);
  free(t->v);
  free(t->key);
  free(t);
}

const kiln_llvm_printed *kiln_llvm_twin_find(cg *c, const kiln_kernel *kn, const int *decisions, int ndecisions) {
  kiln_llvm_twins *t = c->twins;
  t->len = 0;
  t->oom = 0;
  t->looked_up++;
  keyer k = {t, c};
  put_i(t, ndecisions);
  put(t, decisions, sizeof *decisions * (size_t)ndecisions);
  kiln_walk w = {.stmt_pre = key_stmt, .stmt_post = key_stmt_end, .expr_pre = key_expr, .expr_post = key_expr_end,
                 .ctx = &k};
  kiln_walk_block(&w, kn->body);
  put_scopes(&k, kn, decisions[0]);
  if (t->oom) return NULL; /* no key: print the kernel on its own */
  uint64_t h = t->hash = fnv1a(t->key, t->len);
  for (int i = 0; i < t->n; i++)
    if (t->v[i].hash == h && t->v[i].len == t->len && !memcmp(t->v[i].key, t->key, t->len)) {
      t->found++;
      return &t->v[i].printed;
    }
  return NULL;
}

int kiln_llvm_twin_add(cg *c, LLVMValueRef body, const LLVMValueRef *loops, int nloops) {
  kiln_llvm_twins *t = c->twins;
  if (t->oom || !t->len) return 0; /* no key: nothing can match it */
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    twin *v = realloc(t->v, sizeof *v * (size_t)cap);
    if (!v) return -1;
    t->v = v, t->cap = cap;
  }
  twin *e = &t->v[t->n];
  e->key = malloc(t->len);
  e->printed.loops = malloc(sizeof *loops * ((size_t)nloops + 1));
  if (!e->key || !e->printed.loops) {
    free(e->key);
    free(e->printed.loops);
    return -1;
  }
  memcpy(e->key, t->key, t->len);
  memcpy(e->printed.loops, loops, sizeof *loops * (size_t)nloops);
  e->len = t->len;
  e->hash = t->hash;
  e->printed.body = body;
  e->printed.nloops = nloops;
  t->n++;
  t->len = 0;
  return 0;
}

void kiln_llvm_twins_report(const cg *c, kiln_timing *t) {
  if (!kiln_timing_on(t) || !c->twins) return;
  const kiln_llvm_twins *w = c->twins;
  fprintf(t->out, "kiln: llvm: %d kernels, %d printed, %d share a twin's functions\n", w->looked_up,
          w->looked_up - w->found, w->found);
}
