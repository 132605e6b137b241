/* A loop IR interpreter: the third implementation of ir/loop.h's
 * semantics, beside the LLVM and C printers.  The constant folder runs it
 * on a node's lowered kernel (passes/fold_lowered.c), so folding and run
 * time evaluate the same per-op definition; tests run it beside the
 * backends.  It is a tree walker, slow (tens of ns per expression node),
 * meant for shape arithmetic and small constants.
 *
 * Values are held as double (float dtypes, rounded to the dtype after
 * every operation: an f32 +,-,*,/ computed in double and rounded once is
 * the correctly rounded f32 result) or as int64 normalised to the dtype's
 * width (sign- or zero-extended; u64 as its bit pattern).
 *
 * A GPU kernel (k->launch set) is emulated on this one CPU thread: block
 * loops run as ordinary loops; at the thread-bound nest every thread gets
 * its own copy of the loop vars and locals (and its own LOCAL buffers),
 * and the nest's body runs "segment by segment": each maximal run of
 * statements holding no barrier is run by thread 0, then thread 1, ...;
 * a statement holding barriers (a loop or a uniform IF around them) is
 * stepped through by all threads together.  This is one legal order of a
 * real launch; SHARED buffers start as all-ones bytes (NaN floats) and a
 * shadow per element records the last writer and readers in the current
 * barrier interval, so an access another order could see differently (a
 * missing barrier) is reported as a race instead of passing by luck. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

typedef struct kv {
  double f;  /* float dtypes */
  int64_t i; /* integers and bool */
} kv;

/* Per-element shadow of a SHARED buffer: last writer / reader thread and
 * the barrier interval (epoch) of that access; reader -2: several. */
typedef struct shadow {
  int32_t *wt, *rt;
  int64_t *we, *re;
} shadow;

typedef struct gpu {
  const kiln_kernel *k;
  shadow *sh;       /* by alloc id (SHARED only) */
  int64_t epoch;    /* barrier intervals so far */
} gpu;

typedef struct ev {
  void **bufs;
  int64_t *var;
  kv *local;
  int bad;          /* an index fell outside its buffer, a race, a divergent barrier */
  gpu *G;           /* NULL: a CPU kernel */
  void **scoped;    /* this thread's (or block's) SHARED/LOCAL memory, by alloc id */
  int tid;          /* thread within the block; -1 at block level */
  int lin;          /* its CUDA linear id (threadIdx.x + threadIdx.y * blockDim.x + ...), the warp lane order */
} ev;

/* The memory of buffer b for E; NULL (bad) when a scoped one is not allocated. */
static void *bufmem(ev *E, const kiln_buf *b) {
  if (b->scope == KILN_SCOPE_GLOBAL) { /* a view is its root's memory + offset */
    int64_t off;
    const kiln_buf *r = kiln_buf_root(b, &off);
    return (char *)E->bufs[r->id] + off;
  }
  void *m = E->scoped && E->G && b->id < E->G->k->nallocs ? E->scoped[b->id] : NULL;
  if (!m) E->bad = 1;
  return m;
}

/* Race check of thread E->tid's access to a SHARED element. */
static void shared_access(ev *E, const kiln_buf *b, int64_t i, int write) {
  if (b->scope != KILN_SCOPE_SHARED || E->tid < 0) return;
  shadow *h = &E->G->sh[b->id];
  int64_t ep = E->G->epoch;
  int t = E->tid;
  if (h->we[i] == ep && h->wt[i] != t) E->bad = 1;            /* read or write after another's write */
  if (write && h->re[i] == ep && h->rt[i] != t) E->bad = 1;   /* write after another's read */
  if (write) { h->wt[i] = t; h->we[i] = ep; }
  else if (h->re[i] == ep && h->rt[i] != t) h->rt[i] = -2;
  else { h->rt[i] = t; h->re[i] = ep; }
}

static int is_unsigned(kiln_dtype t) {
  return t == KILN_DT_U8 || t == KILN_DT_U16 || t == KILN_DT_U32 || t == KILN_DT_U64 || t == KILN_DT_BOOL;
}

/* Two's complement wrap of v to t's width. */
static int64_t wrap(kiln_dtype t, uint64_t v) {
  int bits = (int)kiln_dtype_size(t) * 8;
  if (t == KILN_DT_BOOL) return v != 0;
  if (bits >= 64) return (int64_t)v;
  uint64_t mask = ((uint64_t)1 << bits) - 1;
  v &= mask;
  if (!is_unsigned(t) && (v >> (bits - 1)) & 1) v |= ~mask;
  return (int64_t)v;
}

/* A float rounded to dtype t (f16/bf16 through f32, as casts do). */
static double fround(kiln_dtype t, double v) {
  switch (t) {
  case KILN_DT_F64: return v;
  case KILN_DT_F16: return kiln_f16_to_f32(kiln_f32_to_f16((float)v));
  case KILN_DT_BF16: return kiln_bf16_to_f32(kiln_f32_to_bf16((float)v));
  default: return (float)v;
  }
}

/* float -> integer t: truncate, saturate, NaN -> 0. */
static int64_t sat(kiln_dtype t, double v) {
  if (v != v) return 0;
  if (t == KILN_DT_BOOL) return v != 0;
  if (t == KILN_DT_U64) return v <= -1.0 ? 0 : v >= 0x1p64 ? (int64_t)UINT64_MAX : (int64_t)(uint64_t)v;
  if (t == KILN_DT_I64) return v >= 0x1p63 ? INT64_MAX : v < -0x1p63 ? INT64_MIN : (int64_t)v;
  int bits = (int)kiln_dtype_size(t) * 8;
  double lo = is_unsigned(t) ? 0 : -ldexp(1, bits - 1), hi = is_unsigned(t) ? ldexp(1, bits) - 1 : ldexp(1, bits - 1) - 1;
  return (int64_t)(v < lo ? lo : v > hi ? hi : v);
}

static kv eval(ev *E, const kiln_lx *e);

static kv cast(kiln_dtype from, kiln_dtype to, kv a) {
  kv r = {0, 0};
  int ff = kiln_dtype_is_float(from), tf = kiln_dtype_is_float(to);
  if (to == KILN_DT_BOOL) r.i = ff ? a.f != 0 : a.i != 0; /* NaN != 0 */
  else if (ff && tf) r.f = fround(to, a.f);
  else if (ff) r.i = sat(to, a.f);
  else if (tf) {
    /* int -> f32 directly (int -> double -> float would round twice) */
    if (to == KILN_DT_F64) r.f = is_unsigned(from) ? (double)(uint64_t)a.i : (double)a.i;
    else r.f = fround(to, is_unsigned(from) ? (float)(uint64_t)a.i : (float)a.i);
  } else r.i = wrap(to, (uint64_t)a.i);
  return r;
}

static double fun(kiln_lx_op op, kiln_dtype t, double x) {
  int s = t != KILN_DT_F64; /* f32 (and f16/bf16 widened) call the f variant */
  switch (op) {
  case KILN_UN_NEG: return -x;
  case KILN_UN_ABS: return fabs(x);
  case KILN_UN_EXP: return s ? expf((float)x) : exp(x);
  case KILN_UN_LOG: return s ? logf((float)x) : log(x);
  case KILN_UN_SQRT: return s ? sqrtf((float)x) : sqrt(x);
  case KILN_UN_TANH: return s ? tanhf((float)x) : tanh(x);
  case KILN_UN_ERF: return s ? erff((float)x) : erf(x);
  case KILN_UN_FLOOR: return floor(x);
  case KILN_UN_CEIL: return ceil(x);
  case KILN_UN_ROUND_EVEN: return nearbyint(x); /* default mode: to even */
  default: return 0;
  }
}

static kv unary(ev *E, const kiln_lx *e) {
  kv a = eval(E, e->a), r = {0, 0};
  kiln_dtype t = e->a->dtype;
  if (e->op == KILN_UN_NOT) { r.i = !a.i; return r; }
  if (e->op == KILN_UN_ISNAN) { r.i = kiln_dtype_is_float(t) && a.f != a.f; return r; }
  if (e->op == KILN_UN_TF32) { r.f = kiln_f32_to_tf32((float)a.f); return r; }
  if (e->op == KILN_UN_BITCAST) {
    if (t == KILN_DT_F32) { float v = (float)a.f; int32_t i; memcpy(&i, &v, 4); r.i = i; }
    else if (t == KILN_DT_I32) { int32_t i = (int32_t)a.i; float v; memcpy(&v, &i, 4); r.f = v; }
    else if (t == KILN_DT_F64) { double v = a.f; memcpy(&r.i, &v, 8); }
    else { int64_t i = a.i; memcpy(&r.f, &i, 8); }
    return r;
  }
  if (kiln_dtype_is_float(t)) { r.f = fround(t, fun(e->op, t, a.f)); return r; }
  switch (e->op) {
  case KILN_UN_NEG: r.i = wrap(t, 0 - (uint64_t)a.i); break;
  case KILN_UN_ABS: r.i = !is_unsigned(t) && a.i < 0 ? wrap(t, 0 - (uint64_t)a.i) : a.i; break;
  default: r.i = a.i; break; /* floor, ceil, round of an integer */
  }
  return r;
}

static int lt(kiln_dtype t, kv a, kv b) {
  if (kiln_dtype_is_float(t)) return a.f < b.f;
  return is_unsigned(t) ? (uint64_t)a.i < (uint64_t)b.i : a.i < b.i;
}

static int64_t int_divrem(kiln_dtype t, int div, int64_t a, int64_t b) {
  if (b == 0) return div ? 0 : a;
  if (is_unsigned(t)) return div ? (int64_t)((uint64_t)a / (uint64_t)b) : (int64_t)((uint64_t)a % (uint64_t)b);
  if (b == -1) return div ? wrap(t, 0 - (uint64_t)a) : 0;
  return div ? a / b : a % b;
}

static kv binary(ev *E, const kiln_lx *e) {
  kv a = eval(E, e->a), b = eval(E, e->b), r = {0, 0};
  kiln_dtype t = e->a->dtype;
  int fl = kiln_dtype_is_float(t);
  switch (e->op) {
  case KILN_BIN_LT: r.i = lt(t, a, b); return r;
  case KILN_BIN_LE: r.i = fl ? a.f <= b.f : !lt(t, b, a); return r;
  case KILN_BIN_EQ: r.i = fl ? a.f == b.f : a.i == b.i; return r;
  case KILN_BIN_NE: r.i = fl ? a.f != b.f : a.i != b.i; return r;
  case KILN_BIN_AND: r.i = a.i && b.i; return r;
  case KILN_BIN_OR: r.i = a.i || b.i; return r;
  case KILN_BIN_MIN: return lt(t, a, b) ? a : b;
  case KILN_BIN_MAX: return lt(t, a, b) ? b : a;
  default: break;
  }
  if (fl) {
    double x = a.f, y = e->b->dtype == t ? b.f : cast(e->b->dtype, t, b).f;
    switch (e->op) {
    case KILN_BIN_ADD: r.f = x + y; break;
    case KILN_BIN_SUB: r.f = x - y; break;
    case KILN_BIN_MUL: r.f = x * y; break;
    case KILN_BIN_DIV: r.f = x / y; break;
    case KILN_BIN_REM: r.f = t == KILN_DT_F64 ? fmod(x, y) : fmodf((float)x, (float)y); break;
    case KILN_BIN_POW: r.f = t == KILN_DT_F64 ? pow(x, y) : powf((float)x, (float)y); break;
    default: break;
    }
    r.f = fround(t, r.f);
    return r;
  }
  uint64_t x = (uint64_t)a.i, y = (uint64_t)b.i;
  switch (e->op) {
  case KILN_BIN_ADD: r.i = wrap(t, x + y); break;
  case KILN_BIN_SUB: r.i = wrap(t, x - y); break;
  case KILN_BIN_MUL: r.i = wrap(t, x * y); break;
  case KILN_BIN_DIV: r.i = int_divrem(t, 1, a.i, b.i); break;
  case KILN_BIN_REM: r.i = int_divrem(t, 0, a.i, b.i); break;
  case KILN_BIN_XOR: r.i = wrap(t, x ^ y); break;
  default: break; /* POW on integers: the lowering computes it in f64 */
  }
  return r;
}

/* A buffer's memory: a view's is its root's, from its offset on. */

static kv load(ev *E, const kiln_lx *e) {
  kv r = {0, 0}, idx = eval(E, e->a);
  const kiln_buf *b = e->buf;
  if (idx.i < 0 || idx.i >= b->numel) { E->bad = 1; return r; }
  const void *p = bufmem(E, b);
  if (!p) return r;
  shared_access(E, b, idx.i, 0);
  if (kiln_dtype_is_float(b->dtype)) r.f = kiln_dtype_load_f(b->dtype, p, (size_t)idx.i);
  else r.i = b->dtype == KILN_DT_BOOL ? kiln_dtype_load_i(b->dtype, p, (size_t)idx.i) != 0
                                      : kiln_dtype_load_i(b->dtype, p, (size_t)idx.i);
  return r;
}

static kv eval(ev *E, const kiln_lx *e) {
  kv r = {0, 0};
  switch (e->kind) {
  case KILN_LX_CONST:
    if (kiln_dtype_is_float(e->dtype)) r.f = fround(e->dtype, e->f);
    else if (e->dtype == KILN_DT_BOOL) r.i = e->i != 0 || e->f != 0;
    else r.i = wrap(e->dtype, (uint64_t)e->i);
    return r;
  case KILN_LX_INDEX: r.i = E->var[e->var]; return r;
  case KILN_LX_LOCAL: return E->local[e->var];
  case KILN_LX_LOAD: return load(E, e);
  case KILN_LX_UN: return unary(E, e);
  case KILN_LX_BIN: return binary(E, e);
  case KILN_LX_SELECT: return eval(E, e->a).i ? eval(E, e->b) : eval(E, e->c); /* only the branch taken */
  case KILN_LX_CAST: return cast(e->a->dtype, e->dtype, eval(E, e->a));
  case KILN_LX_FMA: {
    double a = eval(E, e->a).f, b = eval(E, e->b).f, c = eval(E, e->c).f;
    r.f = e->dtype == KILN_DT_F32 ? (double)fmaf((float)a, (float)b, (float)c) : fma(a, b, c);
    return r;
  }
  }
  return r;
}

/* t OP v in dtype t (ir/loop.h, "Reductions"); v already in t. */
static kv combine(kiln_reduce_op op, kiln_dtype t, kv a, kv v) {
  int fl = kiln_dtype_is_float(t);
  switch (op) {
  case KILN_RED_ADD:
    if (fl) a.f = fround(t, a.f + v.f);
    else a.i = wrap(t, (uint64_t)a.i + (uint64_t)v.i);
    return a;
  case KILN_RED_MAX: return lt(t, a, v) ? v : a;
  case KILN_RED_MIN: return lt(t, v, a) ? v : a;
  case KILN_RED_MAX_NAN: return lt(t, a, v) || (fl && v.f != v.f) ? v : a;
  case KILN_RED_MIN_NAN: return lt(t, v, a) || (fl && v.f != v.f) ? v : a;
  default: return a;
  }
}

static void run_until(ev *E, const kiln_ls *s, const kiln_ls *end);
static void run(ev *E, const kiln_ls *s) { run_until(E, s, NULL); }
static void run_block(ev *E, const kiln_ls *s);
static void alloc_scoped(ev *E, const kiln_buf *b);

static void run_until(ev *E, const kiln_ls *s, const kiln_ls *end) {
  for (; s != end && !E->bad; s = s->next) {
    switch (s->kind) {
    case KILN_LS_FOR:
      if (E->G && E->tid < 0 && s->sched.gpu >= 4) { run_block(E, s); break; }
      for (int64_t i = 0; i < s->extent && !E->bad; i++) {
        E->var[s->var] = i;
        run(E, s->body);
      }
      break;
    case KILN_LS_STORE: {
      kv idx = eval(E, s->index), v = eval(E, s->value);
      if (idx.i < 0 || idx.i >= s->buf->numel) { E->bad = 1; break; }
      void *m = bufmem(E, s->buf);
      if (!m) break;
      shared_access(E, s->buf, idx.i, 1);
      if (kiln_dtype_is_float(s->buf->dtype)) kiln_dtype_store_f(s->buf->dtype, m, (size_t)idx.i, v.f);
      else kiln_dtype_store_i(s->buf->dtype, m, (size_t)idx.i, v.i);
      break;
    }
    case KILN_LS_DECL:
    case KILN_LS_ASSIGN: E->local[s->var] = eval(E, s->value); break;
    case KILN_LS_IF: run(E, eval(E, s->value).i ? s->body : s->orelse); break;
    case KILN_LS_PREFETCH: /* a hint: only its index is checked */
      if (eval(E, s->index).i < 0 || eval(E, s->index).i >= s->buf->numel) E->bad = 1;
      break;
    case KILN_LS_BARRIER: /* one thread (run_threads handles a block's) */
    case KILN_LS_MMA: break;
    case KILN_LS_ALLOC: alloc_scoped(E, s->buf); break;
    case KILN_LS_REDUCE: /* in source order, in the reduction's dtype */
      E->local[s->var] = eval(E, s->value);
      run(E, s->body);
      break;
    case KILN_LS_COMBINE: {
      kv v = eval(E, s->value);
      if (s->value->dtype != s->dtype) v = cast(s->value->dtype, s->dtype, v);
      E->local[s->var] = combine(s->reduce, s->dtype, E->local[s->var], v);
      break;
    }
    }
  }
}

/* ---- GPU emulation ---- */

/* Fresh memory for a SHARED (at block level) or LOCAL (per thread)
 * buffer each time its ALLOC runs: all-ones bytes, NaN for floats. */
static void alloc_scoped(ev *E, const kiln_buf *b) {
  if (!E->G || !E->scoped || b->id < 0 || b->id >= E->G->k->nallocs) { E->bad = 1; return; }
  if ((b->scope == KILN_SCOPE_SHARED) != (E->tid < 0)) { E->bad = 1; return; } /* SHARED per block, LOCAL per thread */
  size_t n = (size_t)b->numel, sz = kiln_dtype_size(b->dtype);
  free(E->scoped[b->id]);
  E->scoped[b->id] = malloc(n * sz);
  if (!E->scoped[b->id]) { E->bad = 1; return; }
  memset(E->scoped[b->id], 0xff, n * sz);
  if (b->scope != KILN_SCOPE_SHARED || E->tid >= 0) return;
  shadow *h = &E->G->sh[b->id];
  free(h->wt); free(h->rt); free(h->we); free(h->re);
  h->wt = malloc(n * sizeof *h->wt); h->rt = malloc(n * sizeof *h->rt);
  h->we = malloc(n * sizeof *h->we); h->re = malloc(n * sizeof *h->re);
  if (!h->wt || !h->rt || !h->we || !h->re) { E->bad = 1; return; }
  for (size_t i = 0; i < n; i++) h->we[i] = h->re[i] = -1;
}

static int has_barrier(const kiln_ls *s) {
  if (s->kind == KILN_LS_BARRIER || s->kind == KILN_LS_MMA) return 1;
  for (const kiln_ls *t = s->body; t; t = t->next) if (has_barrier(t)) return 1;
  for (const kiln_ls *t = s->orelse; t; t = t->next) if (has_barrier(t)) return 1;
  return 0;
}

static int any_bad(ev *T, int nt) {
  for (int t = 0; t < nt; t++) if (T[t].bad) return 1;
  return 0;
}

/* f with its low 13 bits cleared: the TF32 operand the tensor core reads. */
static float tf32_operand(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u &= 0xffffe000u;
  memcpy(&f, &u, 4);
  return f;
}

/* KILN_LS_MMA for every warp of the block, once all its threads got here
 * (ir/loop.h, "TF32"): lane l of warp w is the thread whose linear id
 * (threadIdx.x fastest, ev.lin) is 32w + l.  Each lane's D elements read
 * the A and B fragments of the lanes that hold them per the PTX layout. */
static void warp_mma(ev *T, int nt, const kiln_ls *s) {
  int wm = s->mma.wm, wn = s->mma.wn;
  if (nt % 32 || wm < 1 || wn < 1 || s->buf->numel < 4 * (int64_t)wm * wn || s->mma.a->numel < 4 * (int64_t)wm ||
      s->mma.b->numel < 2 * (int64_t)wn || s->buf->dtype != KILN_DT_F32 || s->mma.a->dtype != KILN_DT_F32 ||
      s->mma.b->dtype != KILN_DT_F32) {
    T[0].bad = 1;
    return;
  }
  ev **by_lin = malloc((size_t)nt * sizeof *by_lin);
  if (!by_lin) { T[0].bad = 1; return; }
  for (int t = 0; t < nt; t++) by_lin[t] = NULL;
  for (int t = 0; t < nt; t++)
    if (T[t].lin >= 0 && T[t].lin < nt) by_lin[T[t].lin] = &T[t];
  for (int t = 0; t < nt; t++)
    if (!by_lin[t] || !bufmem(by_lin[t], s->buf) || !bufmem(by_lin[t], s->mma.a) || !bufmem(by_lin[t], s->mma.b)) {
      T[0].bad = 1;
      free(by_lin);
      return;
    }
  for (int w = 0; w < nt / 32; w++) {
    ev **lane = by_lin + 32 * w;
    for (int l = 0; l < 32; l++) {
      int g = l / 4, tq = l % 4;
      float *c = bufmem(lane[l], s->buf);
      for (int i = 0; i < wm; i++)
        for (int j = 0; j < wn; j++)
          for (int r = 0; r < 4; r++) {
            int row = g + 8 * (r >> 1), col = 2 * tq + (r & 1); /* D(row, col) */
            float acc = c[4 * (i * wn + j) + r];
            for (int k = 0; k < 8; k++) {
              /* A(row, k): lane 4*(row%8) + k%4, element (row >= 8) + 2*(k >= 4);
               * B(k, col): lane 4*col + k%4, element (k >= 4) */
              const float *a = bufmem(lane[4 * (row % 8) + k % 4], s->mma.a);
              const float *b = bufmem(lane[4 * col + k % 4], s->mma.b);
              float av = tf32_operand(a[4 * i + (row >= 8) + 2 * (k >= 4)]), bv = tf32_operand(b[2 * j + (k >= 4)]);
              acc = fmaf(av, bv, acc); /* the product is exact: one rounding, as acc + av*bv */
            }
            c[4 * (i * wn + j) + r] = acc;
          }
    }
  }
  free(by_lin);
}

/* The threads T[0..nt) run s segment by segment (see the top). */
static void run_threads(ev *T, int nt, const kiln_ls *s) {
  while (s && !any_bad(T, nt)) {
    if (!has_barrier(s)) {
      const kiln_ls *end = s;
      while (end && !has_barrier(end)) end = end->next;
      for (int t = 0; t < nt; t++) run_until(&T[t], s, end);
      s = end;
      continue;
    }
    switch (s->kind) {
    case KILN_LS_BARRIER: T[0].G->epoch++; break;
    case KILN_LS_MMA: warp_mma(T, nt, s); break;
    case KILN_LS_FOR:
      for (int64_t i = 0; i < s->extent && !any_bad(T, nt); i++) {
        for (int t = 0; t < nt; t++) T[t].var[s->var] = i;
        run_threads(T, nt, s->body);
      }
      break;
    case KILN_LS_IF: {
      int64_t c = eval(&T[0], s->value).i;
      for (int t = 1; t < nt; t++)
        if (eval(&T[t], s->value).i != c) T[t].bad = 1; /* threads would reach different barriers */
      run_threads(T, nt, c ? s->body : s->orelse);
      break;
    }
    default: T[0].bad = 1; break; /* nothing else holds statements */
    }
    s = s->next;
  }
}

/* One block's thread-bound nest starting at s, from block-level state E. */
static void run_block(ev *E, const kiln_ls *s) {
  const kiln_ls *nest[6];
  int depth = 0;
  int64_t nt = 1;
  for (const kiln_ls *t = s; depth < 6; t = t->body) {
    nest[depth++] = t;
    nt *= t->extent;
    if (!t->body || t->body->next || t->body->kind != KILN_LS_FOR || t->body->sched.gpu < 4) break;
  }
  const kiln_ls *body = nest[depth - 1]->body;
  if (nt <= 0) return;
  if (nt > 4096) { E->bad = 1; return; } /* more threads than any GPU block holds */
  const kiln_kernel *k = E->G->k;
  size_t nv = (size_t)k->nvars + 1, nl = (size_t)k->nlocals + 1, na = (size_t)k->nallocs + 1;
  ev *T = calloc((size_t)nt, sizeof *T);
  if (!T) { E->bad = 1; return; }
  E->G->epoch++;
  for (int64_t t = 0; t < nt; t++) {
    ev *X = &T[t];
    *X = *E;
    X->tid = (int)t;
    X->var = malloc(nv * sizeof *X->var);
    X->local = malloc(nl * sizeof *X->local);
    X->scoped = malloc(na * sizeof *X->scoped);
    if (!X->var || !X->local || !X->scoped) { X->bad = 1; continue; }
    memcpy(X->var, E->var, nv * sizeof *X->var);
    memcpy(X->local, E->local, nl * sizeof *X->local);
    for (size_t a = 0; a < na - 1; a++) /* SHARED: the block's; LOCAL: this thread's own */
      X->scoped[a] = k->allocs[a]->scope == KILN_SCOPE_SHARED ? E->scoped[a] : NULL;
    int64_t rest = t, lin = 0; /* thread-bound vars, the innermost loop fastest */
    for (int d = depth - 1; d >= 0; d--) {
      X->var[nest[d]->var] = rest % nest[d]->extent;
      rest /= nest[d]->extent;
    }
    for (int d = 0; d < depth; d++) { /* x + y * bx + z * bx * by, from the launch's block shape */
      int ax = nest[d]->sched.gpu - 4;
      int64_t stride = 1;
      for (int a2 = 0; a2 < ax && k->launch; a2++) stride *= k->launch->block[a2];
      lin += X->var[nest[d]->var] * stride;
    }
    X->lin = (int)lin;
  }
  run_threads(T, (int)nt, body);
  for (int64_t t = 0; t < nt; t++) {
    if (T[t].bad) E->bad = 1;
    if (T[t].scoped)
      for (int a = 0; a < k->nallocs; a++)
        if (k->allocs[a]->scope == KILN_SCOPE_LOCAL) free(T[t].scoped[a]);
    free(T[t].var); free(T[t].local); free(T[t].scoped);
  }
  free(T);
}

int kiln_loop_eval(const kiln_program *p, const kiln_kernel *k, void **bufs) {
  (void)p;
  ev E = {bufs, calloc((size_t)k->nvars + 1, sizeof(int64_t)), calloc((size_t)k->nlocals + 1, sizeof(kv)), 0,
          NULL, NULL, -1, -1};
  gpu G = {k, NULL, 0};
  if (k->launch) {
    E.G = &G;
    E.scoped = calloc((size_t)k->nallocs + 1, sizeof *E.scoped);
    G.sh = calloc((size_t)k->nallocs + 1, sizeof *G.sh);
    if (!E.scoped || !G.sh) E.bad = 1;
  }
  if (!E.var || !E.local) E.bad = 1;
  if (!E.bad) run(&E, k->body);
  if (E.scoped)
    for (int a = 0; a < k->nallocs; a++) free(E.scoped[a]);
  if (G.sh)
    for (int a = 0; a < k->nallocs; a++) { free(G.sh[a].wt); free(G.sh[a].rt); free(G.sh[a].we); free(G.sh[a].re); }
  free(E.scoped);
  free(G.sh);
  free(E.var);
  free(E.local);
  return E.bad ? -1 : 0;
}
