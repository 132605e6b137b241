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
 * width (sign- or zero-extended; u64 as its bit pattern). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

typedef struct kv {
  double f;  /* float dtypes */
  int64_t i; /* integers and bool */
} kv;

typedef struct ev {
  void **bufs;
  int64_t *var;
  kv *local;
  int bad; /* an index fell outside its buffer */
} ev;

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
  default: break; /* POW on integers: the lowering computes it in f64 */
  }
  return r;
}

/* A buffer's memory: a view's is its root's, from its offset on. */
static void *buf_mem(const ev *E, const kiln_buf *b) {
  int64_t off;
  const kiln_buf *r = kiln_buf_root(b, &off);
  return (char *)E->bufs[r->id] + off;
}

static kv load(ev *E, const kiln_lx *e) {
  kv r = {0, 0}, idx = eval(E, e->a);
  const kiln_buf *b = e->buf;
  if (idx.i < 0 || idx.i >= b->numel) { E->bad = 1; return r; }
  const void *p = buf_mem(E, b);
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
  }
  return r;
}

static void run(ev *E, const kiln_ls *s) {
  for (; s && !E->bad; s = s->next) {
    switch (s->kind) {
    case KILN_LS_FOR:
      for (int64_t i = 0; i < s->extent && !E->bad; i++) {
        E->var[s->var] = i;
        run(E, s->body);
      }
      break;
    case KILN_LS_STORE: {
      kv idx = eval(E, s->index), v = eval(E, s->value);
      if (idx.i < 0 || idx.i >= s->buf->numel) { E->bad = 1; break; }
      if (kiln_dtype_is_float(s->buf->dtype)) kiln_dtype_store_f(s->buf->dtype, buf_mem(E, s->buf), (size_t)idx.i, v.f);
      else kiln_dtype_store_i(s->buf->dtype, buf_mem(E, s->buf), (size_t)idx.i, v.i);
      break;
    }
    case KILN_LS_DECL:
    case KILN_LS_ASSIGN: E->local[s->var] = eval(E, s->value); break;
    case KILN_LS_IF: run(E, eval(E, s->value).i ? s->body : s->orelse); break;
    case KILN_LS_BARRIER: break; /* one thread */
    }
  }
}

int kiln_loop_eval(const kiln_program *p, const kiln_kernel *k, void **bufs) {
  (void)p;
  ev E = {bufs, calloc((size_t)k->nvars + 1, sizeof(int64_t)), calloc((size_t)k->nlocals + 1, sizeof(kv)), 0};
  if (!E.var || !E.local) E.bad = 1;
  else run(&E, k->body);
  free(E.var);
  free(E.local);
  return E.bad ? -1 : 0;
}
