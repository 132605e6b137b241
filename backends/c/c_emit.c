/* Loop IR -> C99.  Kernels become `static void kN_<node>(void **bufs)`
 * functions with one restrict-qualified pointer per buffer they touch,
 * named after the graph value; a comment before each gives the node's op,
 * attributes and shapes.  Every construct prints one way; no op knowledge
 * lives here.  Output is deterministic: same program, same bytes. */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/loop_walk.h"
#include "c_emit.h"
#include "c_lanes.h"
#include "c_names.h"
#include "kiln_c.h"

enum { LIMITS_MAX = 8 }; /* Min/Max constants made opaque per function (see bind_limits) */

typedef struct emitter {
  FILE *f;
  const kiln_program *p;
  const kiln_c_options *o;
  const kiln_c_hooks *h;  /* the dialect (c_emit.h): never NULL, members may be */
  char **names;       /* per buffer: its C identifier */
  char **io_lower;    /* per buffer (inputs and outputs): parameter name fragment */
  char **io_upper;    /* per buffer (inputs and outputs): macro name fragment */
  const kiln_kernel *k; /* the kernel being printed (names of its locals) */
  int uses_h2f, uses_f2h, uses_bf2f, uses_f2bf, uses_sat, uses_round_f16; /* helpers the kernels call */
  unsigned uses_bitcast; /* bit r: a bitcast to dtype r */
  unsigned uses_div, uses_rem, uses_sat64; /* ... per dtype (bit 1 << dtype) */
  unsigned uses_opaque;                    /* kiln_opaque_f32/f64 (bit 1 << dtype) */
  unsigned uses_sqrt;                      /* sqrtf/sqrt (bit 1 << dtype; const_sqrt says why) */
  int nlimit;                              /* the function's Min/Max constants as opaque locals: */
  double limit_val[LIMITS_MAX];            /* kiln_limN = limit_val[N] of dtype limit_dt[N] */
  kiln_dtype limit_dt[LIMITS_MAX];
} emitter;

static const char *ctype(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return "float";
  case KILN_DT_F64: return "double";
  case KILN_DT_I8: return "int8_t";
  case KILN_DT_U8: return "uint8_t";
  case KILN_DT_BOOL: return "uint8_t";
  case KILN_DT_I16: return "int16_t";
  case KILN_DT_U16: case KILN_DT_F16: case KILN_DT_BF16: return "uint16_t";
  case KILN_DT_I32: return "int32_t";
  case KILN_DT_U32: return "uint32_t";
  case KILN_DT_I64: return "int64_t";
  default: return "uint64_t";
  }
}

/* The value type of an expression: bool computes as int. */
static const char *vtype(kiln_dtype t) { return t == KILN_DT_BOOL ? "int" : ctype(t); }

static int is_f32ish(kiln_dtype t) { return t == KILN_DT_F32; }

static const char *mathfn(const char *name, kiln_dtype t, char *buf) {
  sprintf(buf, "%s%s", name, is_f32ish(t) ? "f" : "");
  return buf;
}

static void print_const(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  if (kiln_dtype_is_float(x->dtype)) {
    double v = x->f;
    int single = x->dtype != KILN_DT_F64;
    if (isnan(v)) fprintf(f, single ? "((float)NAN)" : "((double)NAN)");
    else if (isinf(v) || (single && fabs(v) >= 0x1.ffffffp+127)) /* rounds to an f32 infinity */
      fprintf(f, "%s%s", v < 0 ? "-" : "", single ? "((float)INFINITY)" : "((double)INFINITY)");
    else if (single) fprintf(f, "%af", (double)(float)v); /* exact hex float */
    else fprintf(f, "%a", v);
  } else if (x->dtype == KILN_DT_BOOL) {
    fprintf(f, "%d", x->i != 0 || x->f != 0);
  } else if (x->dtype == KILN_DT_I64) {
    if (x->i == INT64_MIN) fprintf(f, "INT64_MIN");
    else fprintf(f, "INT64_C(%" PRId64 ")", x->i);
  } else if (x->dtype == KILN_DT_U64) {
    fprintf(f, "UINT64_C(%" PRIu64 ")", (uint64_t)x->i);
  } else {
    fprintf(f, "((%s)%" PRId64 ")", ctype(x->dtype), x->i);
  }
}

static void expr(emitter *e, const kiln_lx *x);

/* A buffer's identifier: a GLOBAL one's from the model name (make_names);
 * a kernel's SHARED / LOCAL buffer sN / lN by its id in kernel->allocs. */
static const char *buf_name(emitter *e, const kiln_buf *b, char tmp[32]) {
  if (b->scope == KILN_SCOPE_GLOBAL) return e->names[b->id];
  if (b->name == kiln_c_lane_name) {
    snprintf(tmp, 32, "lane%d", b->id);
    return tmp;
  }
  snprintf(tmp, 32, "%c%d", b->scope == KILN_SCOPE_SHARED ? 's' : 'l', b->id);
  return tmp;
}

static void local(emitter *e, int v) {
  if (e->k && e->k->local_names && e->k->local_names[v]) fprintf(e->f, "%s", e->k->local_names[v]);
  else fprintf(e->f, "t%d", v);
}

/* An i64 constant beside a non-constant i64 operand prints as a plain
 * decimal: the other operand's type carries the arithmetic to 64 bits. */
static void operand(emitter *e, const kiln_lx *x, const kiln_lx *other) {
  if (x->kind == KILN_LX_CONST && x->dtype == KILN_DT_I64 && other->dtype == KILN_DT_I64 &&
      other->kind != KILN_LX_CONST && x->i > INT32_MIN && x->i <= INT32_MAX)
    fprintf(e->f, "%" PRId64, x->i);
  else
    expr(e, x);
}

/* i64 +, -, * print with C's precedence: left-nested sums and products
 * need no parentheses (x[base + i + 3]); everything else prints through
 * expr(), fully parenthesised. */
static int wraps(const emitter *e, const kiln_lx *x);
static int iprec(const emitter *e, const kiln_lx *x) {
  /* data arithmetic that must wrap prints through binary()'s unsigned casts */
  if (x->kind != KILN_LX_BIN || x->dtype != KILN_DT_I64 || wraps(e, x)) return 0;
  return x->op == KILN_BIN_ADD || x->op == KILN_BIN_SUB ? 1 : x->op == KILN_BIN_MUL ? 2 : 0;
}
static void iexpr(emitter *e, const kiln_lx *x, int ctx);
static void ioperand(emitter *e, const kiln_lx *x, const kiln_lx *other, int ctx) {
  if (iprec(e, x)) iexpr(e, x, ctx);
  else operand(e, x, other);
}
static void iexpr(emitter *e, const kiln_lx *x, int ctx) {
  int p = iprec(e, x);
  if (!p) { expr(e, x); return; }
  if (p < ctx) fprintf(e->f, "(");
  ioperand(e, x->a, x->b, p);
  fprintf(e->f, " %s ", x->op == KILN_BIN_ADD ? "+" : x->op == KILN_BIN_SUB ? "-" : "*");
  ioperand(e, x->b, x->a, p + 1);
  if (p < ctx) fprintf(e->f, ")");
}

/* The unsigned type integer arithmetic on t wraps in (ir/loop.h): no
 * signed overflow, and no promotion of uint16_t to a signed int. */
static const char *wrap_type(kiln_dtype t) {
  return t == KILN_DT_I64 || t == KILN_DT_U64 ? "uint64_t" : "uint32_t";
}
static int wraps(const emitter *e, const kiln_lx *x) {
  kiln_dtype t = x->a->dtype;
  return kiln_dtype_is_int(t) && t != KILN_DT_U32 && t != KILN_DT_U64 && !kiln_lx_is_index_expr(e->k, x);
}

/* Integer DIV / REM as ir/loop.h defines them (x / 0 == 0, x % 0 == x,
 * MIN / -1 == MIN, MIN % -1 == 0) through kiln_div_T / kiln_rem_T helpers;
 * plain C when the divisor is a constant other than 0 and -1. */
static void int_divrem(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  int div = x->op == KILN_BIN_DIV;
  kiln_dtype t = x->a->dtype;
  if (!kiln_lx_div_needs_guard(x->b)) {
    fprintf(f, "("); operand(e, x->a, x->b); fprintf(f, " %s ", div ? "/" : "%"); operand(e, x->b, x->a); fprintf(f, ")");
    return;
  }
  *(div ? &e->uses_div : &e->uses_rem) |= 1u << t;
  fprintf(f, "kiln_%s_%s(", div ? "div" : "rem", kiln_dtype_name(t));
  expr(e, x->a);
  fprintf(f, ", ");
  expr(e, x->b);
  fprintf(f, ")");
}

static void print_divrem_helpers(emitter *e) {
  const char *q = e->h->helper_qual ? e->h->helper_qual : "static ";
  for (int t = 0; t < 32; t++) {
    if (!((e->uses_div | e->uses_rem) & (1u << t))) continue;
    const char *T = ctype((kiln_dtype)t), *n = kiln_dtype_name((kiln_dtype)t), *U = wrap_type((kiln_dtype)t);
    int un = t == KILN_DT_U8 || t == KILN_DT_U16 || t == KILN_DT_U32 || t == KILN_DT_U64;
    if (e->uses_div & (1u << t)) {
      if (un) fprintf(e->f, "%s%s kiln_div_%s(%s a, %s b) { return b == 0 ? 0 : (%s)(a / b); }\n", q, T, n, T, T, T);
      else
        fprintf(e->f, "%s%s kiln_div_%s(%s a, %s b) { return b == 0 ? 0 : b == -1 ? (%s)((%s)0 - (%s)a) : (%s)(a / b); }\n",
                q, T, n, T, T, T, U, U, T);
    }
    if (e->uses_rem & (1u << t)) {
      if (un) fprintf(e->f, "%s%s kiln_rem_%s(%s a, %s b) { return b == 0 ? a : (%s)(a %% b); }\n", q, T, n, T, T, T);
      else fprintf(e->f, "%s%s kiln_rem_%s(%s a, %s b) { return b == 0 ? a : b == -1 ? 0 : (%s)(a %% b); }\n", q, T, n, T, T, T);
    }
  }
}

static void cast(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  kiln_dtype from = x->a->dtype, to = x->dtype;
  int ff = kiln_dtype_is_float(from), tf = kiln_dtype_is_float(to);
  if (from == KILN_DT_F16 && to == KILN_DT_F32 && x->a->kind == KILN_LX_CAST && x->a->a->dtype == KILN_DT_F32) {
    e->uses_round_f16 = 1; /* f32(f16(v)): kiln.RoundTo */
    fprintf(f, "kiln_round_f16(");
    expr(e, x->a->a);
    fprintf(f, ")");
    return;
  }
  if (from == KILN_DT_F16 || from == KILN_DT_BF16) { /* widen first */
    *(from == KILN_DT_F16 ? &e->uses_h2f : &e->uses_bf2f) = 1;
    fprintf(f, "((%s)%s(", vtype(to), from == KILN_DT_F16 ? "kiln_h2f" : "kiln_bf2f");
    expr(e, x->a);
    fprintf(f, "))");
    return;
  }
  if (to == KILN_DT_F16 || to == KILN_DT_BF16) {
    *(to == KILN_DT_F16 ? &e->uses_f2h : &e->uses_f2bf) = 1;
    fprintf(f, "%s((float)(", to == KILN_DT_F16 ? "kiln_f2h" : "kiln_f2bf");
    expr(e, x->a);
    fprintf(f, "))");
    return;
  }
  if (to == KILN_DT_BOOL) {
    fprintf(f, "((");
    expr(e, x->a);
    fprintf(f, ") != 0)");
    return;
  }
  if (ff && !tf && (to == KILN_DT_I64 || to == KILN_DT_U64)) { /* 2^63, 2^64 are not doubles' neighbours */
    e->uses_sat64 |= 1u << to;
    fprintf(f, "kiln_sat_%s((double)(", kiln_dtype_name(to));
    expr(e, x->a);
    fprintf(f, "))");
    return;
  }
  if (ff && !tf) { /* saturating, NaN -> 0, as the LLVM backend's fpto*i.sat */
    e->uses_sat = 1;
    fprintf(f, "((%s)kiln_sat((double)(", ctype(to));
    expr(e, x->a);
    switch (to) {
    case KILN_DT_I8: fprintf(f, "), -128.0, 127.0))"); break;
    case KILN_DT_U8: fprintf(f, "), 0.0, 255.0))"); break;
    case KILN_DT_I16: fprintf(f, "), -32768.0, 32767.0))"); break;
    case KILN_DT_U16: fprintf(f, "), 0.0, 65535.0))"); break;
    case KILN_DT_I32: fprintf(f, "), -2147483648.0, 2147483647.0))"); break;
    default: fprintf(f, "), 0.0, 4294967295.0))"); break; /* u32 */
    }
    return;
  }
  fprintf(f, "((%s)(", vtype(to));
  expr(e, x->a);
  fprintf(f, "))");
}

static void unary(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  kiln_dtype t = x->a->dtype;
  int fl = kiln_dtype_is_float(t);
  char fn[32];
  const char *name = NULL;
  const char *U = wrap_type(t);
  switch (x->op) {
  case KILN_UN_NEG:
    if (fl) { fprintf(f, "(-"); expr(e, x->a); fprintf(f, ")"); return; }
    fprintf(f, "((%s)((%s)0 - (%s)(", ctype(t), U, U); expr(e, x->a); fprintf(f, ")))"); /* wraps */
    return;
  case KILN_UN_NOT: fprintf(f, "(!"); expr(e, x->a); fprintf(f, ")"); return;
  case KILN_UN_ISNAN: fprintf(f, "(isnan("); expr(e, x->a); fprintf(f, ") != 0)"); return;
  case KILN_UN_BITCAST: {
    kiln_dtype r = x->dtype;
    e->uses_bitcast |= 1u << r;
    fprintf(f, "%s(", r == KILN_DT_I32 ? "kiln_f32_bits" : r == KILN_DT_F32 ? "kiln_f32_of_bits"
                      : r == KILN_DT_I64 ? "kiln_f64_bits" : "kiln_f64_of_bits");
    expr(e, x->a);
    fprintf(f, ")");
    return;
  }
  case KILN_UN_TF32: /* GPU kernels only: the CUDA preamble (cvt.rna) or kiln_cuda_host.h defines it */
    fprintf(f, "kiln_tf32("); expr(e, x->a); fprintf(f, ")"); return;
  case KILN_UN_ABS:
    if (!fl && (t == KILN_DT_U8 || t == KILN_DT_U16 || t == KILN_DT_U32 || t == KILN_DT_U64)) { expr(e, x->a); return; }
    if (!fl) { /* ABS(MIN) == MIN: wraps */
      fprintf(f, "(("); expr(e, x->a); fprintf(f, ") < 0 ? (%s)((%s)0 - (%s)(", ctype(t), U, U); expr(e, x->a);
      fprintf(f, ")) : ("); expr(e, x->a); fprintf(f, "))");
      return;
    }
    name = "fabs";
    break;
  case KILN_UN_EXP: name = "exp"; break;
  case KILN_UN_LOG: name = "log"; break;
  case KILN_UN_SQRT: name = "sqrt"; e->uses_sqrt |= 1u << (is_f32ish(t) ? KILN_DT_F32 : KILN_DT_F64); break;
  case KILN_UN_TANH: name = "tanh"; break;
  case KILN_UN_ERF: name = "erf"; break;
  case KILN_UN_FLOOR: if (!fl) { expr(e, x->a); return; } name = "floor"; break;
  case KILN_UN_CEIL: if (!fl) { expr(e, x->a); return; } name = "ceil"; break;
  case KILN_UN_ROUND_EVEN: if (!fl) { expr(e, x->a); return; } name = "nearbyint"; break; /* default mode: to even */
  default: break;
  }
  fprintf(f, "%s(", mathfn(name, t, fn));
  expr(e, x->a);
  fprintf(f, ")");
}

/* ---- Clamp bounds as opaque locals ----
 *
 * GCC (12, -O3) compiles a clamp with constant bounds (Clip, ReLU6: the
 * lowering writes x < 0 ? 0 : x, then 6 < m ? 6 : m) badly: in scalar
 * code it threads the jump from the first compare past the second, so
 * the epilogue becomes data-dependent branches (half of them mispredicted
 * on ReLU6 data, MobileNetV2's depthwise row remainders), and vectorised
 * it takes seven mask operations instead of a max and a min.  With bounds
 * it cannot see, it emits one maxss/minss (maxps/minps) each, which keep
 * the select's NaN semantics.  So in the C99 dialect the bounds of every
 * clamp (two nested selects on a compare with a constant arm, or a Min of
 * a Max) are read once per function through kiln_opaque_T, a volatile
 * round trip, into locals kiln_limN: the same values, the same results.
 * Lone bounds (Relu) stay constants: GCC handles those well, and a bound
 * in a register costs a register-tiled GEMM one of its accumulators. */
static int is_limit_const(const kiln_lx *x);

static int limit_of(const emitter *e, const kiln_lx *x) {
  if (!is_limit_const(x)) return -1;
  for (int i = 0; i < e->nlimit; i++)
    if (e->limit_dt[i] == x->dtype && e->limit_val[i] == x->f && signbit(e->limit_val[i]) == signbit(x->f)) return i;
  return -1;
}

static void limit_operand(emitter *e, const kiln_lx *x) {
  int i = limit_of(e, x);
  if (i < 0) expr(e, x);
  else fprintf(e->f, "kiln_lim%d", i);
}

static int is_limit_const(const kiln_lx *x) {
  return x->kind == KILN_LX_CONST && (x->dtype == KILN_DT_F32 || x->dtype == KILN_DT_F64) && isfinite(x->f);
}

static int same_const(const kiln_lx *a, const kiln_lx *b) {
  return is_limit_const(a) && is_limit_const(b) && a->dtype == b->dtype && a->f == b->f && signbit(a->f) == signbit(b->f);
}

/* c < x ? c : x and the like (Clip, Relu as the lowering writes them):
 * a select on a comparison with a float constant that is also an arm. */
static int is_limit_select(const kiln_lx *x) {
  if (x->kind != KILN_LX_SELECT || x->a->kind != KILN_LX_BIN || (x->a->op != KILN_BIN_LT && x->a->op != KILN_BIN_LE))
    return 0;
  for (int i = 0; i < 2; i++) {
    const kiln_lx *c = i ? x->a->b : x->a->a;
    if (same_const(c, x->b) || same_const(c, x->c)) return 1;
  }
  return 0;
}

static int is_minmax(const kiln_lx *x) {
  return x->kind == KILN_LX_BIN && (x->op == KILN_BIN_MIN || x->op == KILN_BIN_MAX) && kiln_dtype_is_float(x->dtype);
}

static void add_limit(emitter *e, const kiln_lx *c) {
  if (e->nlimit < LIMITS_MAX && is_limit_const(c) && limit_of(e, c) < 0) {
    e->limit_val[e->nlimit] = c->f;
    e->limit_dt[e->nlimit++] = c->dtype;
  }
}

static void collect_limits_x(emitter *e, const kiln_lx *x) {
  if (!x) return;
  if (is_minmax(x) && (is_minmax(x->a) || is_minmax(x->b))) { /* min(max(x, a), b) and the like */
    add_limit(e, x->a);
    add_limit(e, x->b);
    const kiln_lx *in = is_minmax(x->a) ? x->a : x->b;
    add_limit(e, in->a);
    add_limit(e, in->b);
  }
  if (is_limit_select(x) && (is_limit_select(x->b) || is_limit_select(x->c))) { /* a clamp: both bounds */
    for (const kiln_lx *y = x; is_limit_select(y); y = is_limit_select(y->b) ? y->b : y->c) {
      add_limit(e, y->a->a);
      add_limit(e, y->a->b);
    }
  }
  collect_limits_x(e, x->a);
  collect_limits_x(e, x->b);
  collect_limits_x(e, x->c);
}

static void collect_limits(emitter *e, const kiln_ls *s) {
  for (; s; s = s->next) {
    collect_limits_x(e, s->index);
    collect_limits_x(e, s->value);
    collect_limits(e, s->body);
    collect_limits(e, s->orelse);
  }
}

static void binary(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  kiln_dtype t = x->a->dtype;
  int fl = kiln_dtype_is_float(t);
  char fn[32];
  static const char *const sym[KILN_LX_OP_COUNT] = {
      [KILN_BIN_ADD] = "+", [KILN_BIN_SUB] = "-", [KILN_BIN_MUL] = "*", [KILN_BIN_LT] = "<", [KILN_BIN_LE] = "<=",
      [KILN_BIN_EQ] = "==", [KILN_BIN_NE] = "!=", [KILN_BIN_AND] = "&&", [KILN_BIN_OR] = "||",
      [KILN_BIN_XOR] = "^"};
  switch (x->op) {
  case KILN_BIN_DIV:
  case KILN_BIN_REM:
    if (fl && x->op == KILN_BIN_DIV) break;
    if (fl) { fprintf(f, "%s(", mathfn("fmod", t, fn)); expr(e, x->a); fprintf(f, ", "); expr(e, x->b); fprintf(f, ")"); return; }
    int_divrem(e, x);
    return;
  case KILN_BIN_ADD:
  case KILN_BIN_SUB:
  case KILN_BIN_MUL:
    if (!wraps(e, x)) break;
    fprintf(f, "((%s)((%s)(", ctype(t), wrap_type(t));
    expr(e, x->a);
    fprintf(f, ") %s (%s)(", sym[x->op], wrap_type(t));
    expr(e, x->b);
    fprintf(f, ")))");
    return;
  case KILN_BIN_MIN:
  case KILN_BIN_MAX: /* select on <, exactly as the LLVM backend (NaN handling included) */
    fprintf(f, "(("); limit_operand(e, x->a); fprintf(f, ") < ("); limit_operand(e, x->b); fprintf(f, ") ? (");
    limit_operand(e, x->op == KILN_BIN_MIN ? x->a : x->b); fprintf(f, ") : (");
    limit_operand(e, x->op == KILN_BIN_MIN ? x->b : x->a);
    fprintf(f, "))");
    return;
  case KILN_BIN_POW:
    fprintf(f, "%s(", mathfn("pow", t, fn)); expr(e, x->a); fprintf(f, ", "); expr(e, x->b); fprintf(f, ")");
    return;
  default: break;
  }
  if (iprec(e, x)) { iexpr(e, x, 3); return; }
  const char *s = x->op == KILN_BIN_DIV ? "/" : sym[x->op];
  fprintf(f, "(");
  operand(e, x->a, x->b);
  fprintf(f, " %s ", s);
  operand(e, x->b, x->a);
  fprintf(f, ")");
}

static void expr(emitter *e, const kiln_lx *x) {
  FILE *f = e->f;
  switch (x->kind) {
  case KILN_LX_CONST: print_const(e, x); return;
  case KILN_LX_INDEX: fprintf(f, "i%d", x->var); return;
  case KILN_LX_LOCAL: local(e, x->var); return;
  case KILN_LX_LOAD: {
    char nb[32];
    fprintf(f, "%s%s[", x->buf->dtype == KILN_DT_BOOL ? "(int)" : "", buf_name(e, x->buf, nb));
    iexpr(e, x->a, 0);
    fprintf(f, "]");
    return;
  }
  case KILN_LX_UN: unary(e, x); return;
  case KILN_LX_BIN: binary(e, x); return;
  case KILN_LX_SELECT:
    if (e->nlimit && is_limit_select(x)) { /* the bound as its opaque local (bind_limits) */
      fprintf(f, "(("); limit_operand(e, x->a->a); fprintf(f, ") %s (", x->a->op == KILN_BIN_LT ? "<" : "<=");
      limit_operand(e, x->a->b); fprintf(f, ") ? ("); limit_operand(e, x->b); fprintf(f, ") : (");
      limit_operand(e, x->c); fprintf(f, "))");
      return;
    }
    fprintf(f, "(");
    expr(e, x->a);
    fprintf(f, " ? ");
    expr(e, x->b);
    fprintf(f, " : ");
    expr(e, x->c);
    fprintf(f, ")");
    return;
  case KILN_LX_CAST: cast(e, x); return;
  case KILN_LX_FMA:
    fprintf(f, "%s(", x->dtype == KILN_DT_F64 ? "fma" : "fmaf");
    expr(e, x->a);
    fprintf(f, ", ");
    expr(e, x->b);
    fprintf(f, ", ");
    expr(e, x->c);
    fprintf(f, ")");
    return;
  }
}

static void indent(FILE *f, int n) { fprintf(f, "%*s", n, ""); }

static void stmts(emitter *e, const kiln_ls *s, int ind);

static void loop(emitter *e, const kiln_ls *s, int ind, const char *lo, const char *hi) {
  char hb[32];
  if (s->sched.gpu && e->h->bound_loop) { /* the dialect binds the var to a block/thread axis */
    e->h->bound_loop(e->f, s, ind);
    stmts(e, s->body, ind + 2);
    indent(e->f, ind);
    fprintf(e->f, "}\n");
    return;
  }
  if (!hi) { snprintf(hb, sizeof hb, "%" PRId64, s->extent); hi = hb; }
  indent(e->f, ind);
  fprintf(e->f, "for (int64_t i%d = %s; i%d < %s; ++i%d) {\n", s->var, lo ? lo : "0", s->var, hi, s->var);
  stmts(e, s->body, ind + 2);
  indent(e->f, ind);
  fprintf(e->f, "}\n");
}

/* A run of stores from s (c_lanes.c) as one loop in a block of its own;
 * returns the last statement printed, or NULL when s starts no run. */
static const kiln_ls *lane_run(emitter *e, const kiln_ls *s, int ind) {
  kiln_c_lanes ln;
  /* the lane index: the kernel's loop vars are 0..nvars-1, so nvars is free */
  if (!e->h->lane_loops || !e->k || !kiln_c_lane_run(s, e->p->arena, e->k->nvars, &ln)) return NULL;
  char nb[32];
  indent(e->f, ind);
  fprintf(e->f, "{\n");
  for (int k = 0; k < ln.narrays; k++) {
    const kiln_buf *b = ln.arrays[k].buf;
    indent(e->f, ind + 2);
    fprintf(e->f, "%s %s[%d];\n", vtype(b->dtype), buf_name(e, b, nb), ln.n);
    for (int j = 0; j < ln.n; j++) {
      indent(e->f, ind + 2);
      fprintf(e->f, "%s[%d] = ", buf_name(e, b, nb), j);
      local(e, ln.arrays[k].first_local + j);
      fprintf(e->f, ";\n");
    }
  }
  indent(e->f, ind + 2);
  fputs("KILN_LANE_LOOP\n", e->f); /* (the source's preamble says why) */
  loop(e, &ln.loop, ind + 2, NULL, NULL);
  indent(e->f, ind);
  fprintf(e->f, "}\n");
  for (int j = 1; j < ln.n; j++) s = s->next;
  return s;
}

static void stmts(emitter *e, const kiln_ls *s, int ind) {
  FILE *f = e->f;
  for (; s; s = s->next) {
    const kiln_ls *last = lane_run(e, s, ind);
    if (last) {
      s = last;
      continue;
    }
    switch (s->kind) {
    case KILN_LS_FOR: loop(e, s, ind, NULL, NULL); break;
    case KILN_LS_STORE: {
      char nb[32];
      indent(f, ind);
      fprintf(f, "%s[", buf_name(e, s->buf, nb));
      iexpr(e, s->index, 0);
      fprintf(f, "] = ");
      if (s->buf->dtype == KILN_DT_BOOL) fprintf(f, "(uint8_t)");
      expr(e, s->value);
      fprintf(f, ";\n");
      break;
    }
    case KILN_LS_DECL:
      indent(f, ind);
      if (e->k && e->k->local_names && e->k->local_names[s->var]) fprintf(f, "const ");
      fprintf(f, "%s ", vtype(s->dtype));
      local(e, s->var);
      fprintf(f, " = ");
      iexpr(e, s->value, 0);
      fprintf(f, ";\n");
      break;
    case KILN_LS_ASSIGN:
      indent(f, ind);
      local(e, s->var);
      fprintf(f, " = ");
      expr(e, s->value);
      fprintf(f, ";\n");
      break;
    case KILN_LS_IF:
      indent(f, ind);
      fprintf(f, "if (");
      if (s->value->kind == KILN_LX_BIN && s->value->op == KILN_BIN_EQ) {
        /* bare: `if ((a == b))` draws clang's -Wparentheses-equality */
        operand(e, s->value->a, s->value->b);
        fprintf(f, " == ");
        operand(e, s->value->b, s->value->a);
      } else
        expr(e, s->value);
      fprintf(f, ") {\n");
      stmts(e, s->body, ind + 2);
      if (s->orelse) {
        indent(f, ind);
        fprintf(f, "} else {\n");
        stmts(e, s->orelse, ind + 2);
      }
      indent(f, ind);
      fprintf(f, "}\n");
      break;
    case KILN_LS_PREFETCH: { /* a hint: a dialect without it prints nothing */
      char nb[32];
      if (!e->h->prefetch) break;
      indent(f, ind);
      fprintf(f, "%s(&%s[", s->near ? "KILN_PREFETCH_L1" : "KILN_PREFETCH", buf_name(e, s->buf, nb));
      iexpr(e, s->index, 0);
      fprintf(f, "]);\n");
      break;
    }
    case KILN_LS_BARRIER: /* C: one thread per block */
      if (e->h->barrier) e->h->barrier(f, ind);
      break;
    case KILN_LS_MMA: { /* GPU kernels only, which the C dialect never gets */
      char nc[32], na[32], nb[32];
      KILN_ASSERT(e->h->mma);
      e->h->mma(f, s, buf_name(e, s->buf, nc), buf_name(e, s->mma.a, na), buf_name(e, s->mma.b, nb), ind);
      break;
    }
    case KILN_LS_ALLOC: /* GPU kernels only, which the C dialect never gets */
      if (e->h->alloc) {
        char nb[32];
        e->h->alloc(f, s, ctype(s->buf->dtype), buf_name(e, s->buf, nb), ind);
      }
      break;
    case KILN_LS_REDUCE:
    case KILN_LS_COMBINE: KILN_ASSERT(!"reductions are expanded before printing (passes/expand_reduce.c)"); break;
    }
  }
}

/* Where b's bytes are: a memory space (-1: the workspace, else the id of
 * the buffer owning them) and a byte range in it. */
static int64_t mem_range(const kiln_buf *b, int64_t *lo, int64_t *hi) {
  int64_t off;
  const kiln_buf *r = kiln_buf_root(b, &off);
  int ws = r->kind == KILN_BUF_WORKSPACE;
  *lo = (ws ? r->offset : 0) + off;
  *hi = *lo + b->numel * (int64_t)kiln_dtype_size(b->dtype);
  return ws ? -1 : r->id;
}

/* Whether buffer i's memory meets another's the statements touch (a view
 * and its root, an elementwise kernel writing in place over its input):
 * then its pointer cannot be restrict. */
static int shares_memory(const emitter *e, const unsigned char *used, int i) {
  int64_t lo, hi, lo2, hi2, sp = mem_range(e->p->bufs[i], &lo, &hi);
  for (int j = 0; j < e->p->nbufs; j++)
    if (j != i && used[j] && mem_range(e->p->bufs[j], &lo2, &hi2) == sp && lo < hi2 && lo2 < hi) return 1;
  return 0;
}

/* One pointer per buffer the statements touch, restrict unless its memory
 * meets another's; const if only read. */
static void bind_pointers(emitter *e, const kiln_ls *body, int ind) {
  unsigned char *used = calloc((size_t)e->p->nbufs + 1, 1);
  kiln_loop_bufs_used(body, used);
  for (int i = 0; i < e->p->nbufs; i++) {
    if (!used[i]) continue;
    const kiln_buf *b = e->p->bufs[i];
    const char *q = used[i] & KILN_USE_WRITE ? "" : "const ";
    indent(e->f, ind);
    fprintf(e->f, "%s%s *%s%s = (%s%s *)bufs[%d];\n", q, ctype(b->dtype), shares_memory(e, used, i) ? "" : "restrict ",
            e->names[i], q, ctype(b->dtype), i);
  }
  free(used);
}

/* Declares the opaque locals for the statements from body (C99 only). */
static void bind_limits(emitter *e, const kiln_ls *body, int ind) {
  e->nlimit = 0;
  if (!e->h->lane_loops) return;
  collect_limits(e, body);
  for (int i = 0; i < e->nlimit; i++) {
    kiln_dtype t = e->limit_dt[i];
    e->uses_opaque |= 1u << t;
    indent(e->f, ind);
    fprintf(e->f, "const %s kiln_lim%d = kiln_opaque_%s(", ctype(t), i, kiln_dtype_name(t));
    kiln_lx c = {.kind = KILN_LX_CONST, .dtype = t, .f = e->limit_val[i]};
    print_const(e, &c);
    fprintf(e->f, ");\n");
  }
}

/* "name type" of a kernel's operand, every model string escaped. */
static void operand_comment(emitter *e, const kiln_value *v, int first) {
  char ty[256];
  kiln_value_type_str(e->p->graph, v, ty, sizeof ty); /* holds symbolic dim names */
  fprintf(e->f, "%s", first ? "" : ", ");
  kiln_c_put_comment(e->f, v->name, KILN_C_NAME_SHOWN);
  fprintf(e->f, " ");
  kiln_c_put_comment(e->f, ty, sizeof ty);
}

/* Node name, op, attributes (strings come from the model) and operands. */
static void kernel_comment(emitter *e, const kiln_kernel *k) {
  FILE *f = e->f;
  const kiln_node *n = k->node;
  if (!n) { fprintf(f, "/* copy of a graph output that no node computes */\n"); return; }
  fprintf(f, "/* ");
  if (n->name[0]) {
    fprintf(f, "'");
    kiln_c_put_comment(f, n->name, KILN_C_NAME_SHOWN);
    fprintf(f, "'");
  } else {
    fprintf(f, "node");
  }
  fprintf(f, ": %s", kiln_op_get(n->op)->name);
  char *attrs = NULL;
  size_t alen = 0;
  FILE *af = open_memstream(&attrs, &alen);
  if (af) {
    kiln_node_print_attrs(af, n);
    fclose(af);
    kiln_c_put_comment(f, attrs, 4096);
  }
  free(attrs);
  fprintf(f, "\n *   ");
  for (int i = 0; i < n->nin; i++)
    if (n->in[i]) operand_comment(e, n->in[i], i == 0);
  fprintf(f, " -> ");
  for (int i = 0; i < n->nout; i++)
    if (n->out[i]) operand_comment(e, n->out[i], i == 0);
  /* the epilogue's nodes, computed by this kernel too */
  for (int s = 1; s < k->nnodes; s++) {
    const kiln_node *st = k->nodes[s];
    fprintf(f, "\n *   then ");
    if (st->name[0]) {
      fprintf(f, "'");
      kiln_c_put_comment(f, st->name, KILN_C_NAME_SHOWN);
      fprintf(f, "'");
    } else {
      fprintf(f, "node");
    }
    fprintf(f, ": %s -> ", kiln_op_get(st->op)->name);
    operand_comment(e, st->out[0], 1);
  }
  fprintf(f, " */\n");
}

static int top_level_locals(const kiln_kernel *k) {
  for (const kiln_ls *s = k->body; s; s = s->next)
    if (s->kind == KILN_LS_DECL || s->kind == KILN_LS_ASSIGN) return 1;
  return 0;
}

/* A kernel whose tile reuses loaded vectors across rows gets
 * KILN_KEEP_VECTORS (the C99 preamble says why). */
static const char *keep_vectors(const emitter *e, const kiln_kernel *k) {
  return e->h->lane_loops && k->reused_vectors ? "KILN_KEEP_VECTORS " : "";
}

static void kernel(emitter *e, const kiln_kernel *k) {
  FILE *f = e->f;
  int par = e->o->threads && !top_level_locals(k);
  e->k = k;
  kernel_comment(e, k);
  if (par) { /* outlined bodies of the top-level loops marked `threads` */
    int j = 0;
    for (const kiln_ls *s = k->body; s; s = s->next) {
      if (s->kind != KILN_LS_FOR || !s->sched.threads) continue;
      fprintf(f, "static %svoid %s_p%d(void *arg, int64_t lo, int64_t hi) {\n  void **bufs = (void **)arg;\n",
              keep_vectors(e, k), k->name, j++);
      kiln_ls one = *s;
      one.next = NULL;
      bind_pointers(e, &one, 2);
      bind_limits(e, &one, 2);
      loop(e, s, 2, "lo", "hi");
      fprintf(f, "}\n\n");
    }
  }
  if (e->h->kernel_open) e->h->kernel_open(f, k);
  else fprintf(f, "static %svoid %s(void **bufs%s) {\n", keep_vectors(e, k), k->name,
                 e->o->threads ? ", const kiln_par *par" : "");
  fprintf(f, "  (void)bufs;\n");
  if (e->o->threads) fprintf(f, "  (void)par; /* kernels without a parallel loop ignore it */\n");
  if (!par) {
    bind_pointers(e, k->body, 2);
    bind_limits(e, k->body, 2);
    stmts(e, k->body, 2);
  } else {
    int j = 0;
    for (const kiln_ls *s = k->body; s; s = s->next) {
      kiln_ls one = *s;
      one.next = NULL;
      if (s->kind == KILN_LS_FOR && s->sched.threads) {
        fprintf(f, "  if (par->fn) par->fn(par->ctx, %s_p%d, bufs, %" PRId64 ");\n", k->name, j, s->extent);
        fprintf(f, "  else %s_p%d(bufs, 0, %" PRId64 ");\n", k->name, j, s->extent);
        j++;
      } else {
        fprintf(f, "  {\n");
        bind_pointers(e, &one, 4);
        bind_limits(e, &one, 4);
        stmts(e, &one, 4);
        fprintf(f, "  }\n");
      }
    }
  }
  fprintf(f, "}\n\n");
}
/* ---- whole files ---- */

/* Conversion helpers, printed only when the kernels use them (an unused
 * static function is a warning under -Wall, and vendors build with -Werror). */
static const char helper_h2f[] =
    "/* f16 is stored as uint16_t bit patterns and computed in float. */\n"
    "static float kiln_h2f(uint16_t h) {\n"
    "  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u, bits;\n"
    "  float out;\n"
    "  if (e == 0) { out = ldexpf((float)m, -24); return s ? -out : out; }\n"
    "  bits = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112u) << 23) | (m << 13));\n"
    "  memcpy(&out, &bits, 4);\n"
    "  return out;\n"
    "}\n";
static const char helper_f2h[] =
    "static uint16_t kiln_f2h(float f) {\n"
    "  uint32_t x, sign, man, r, rem;\n"
    "  int e;\n"
    "  memcpy(&x, &f, 4);\n"
    "  sign = (x >> 16) & 0x8000u;\n"
    "  man = x & 0x7fffffu;\n"
    "  e = (int)((x >> 23) & 255u) - 112;\n"
    "  if (((x >> 23) & 255u) == 255u) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));\n"
    "  if (e >= 31) return (uint16_t)(sign | 0x7c00u);\n"
    "  if (e <= 0) {\n"
    "    uint32_t half, shift;\n"
    "    if (e < -10) return (uint16_t)sign;\n"
    "    man |= 0x800000u;\n"
    "    shift = (uint32_t)(14 - e);\n"
    "    half = 1u << (shift - 1);\n"
    "    r = man >> shift;\n"
    "    rem = man & ((1u << shift) - 1u);\n"
    "    if (rem > half || (rem == half && (r & 1u))) r++;\n"
    "    return (uint16_t)(sign | r);\n"
    "  }\n"
    "  r = ((uint32_t)e << 10) | (man >> 13);\n"
    "  rem = man & 0x1fffu;\n"
    "  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;\n"
    "  return (uint16_t)(sign | r);\n"
    "}\n";
/* f32 -> f16 -> f32 (kiln.RoundTo, passes/widen_f16.c) in one step, the
 * two helpers above bit for bit (every f32: checked once; 2.5 M chosen
 * values against NumPy by tests/backends/c/test_round_f16.py) without
 * their calls and branches on the common path: a number in f16's normal
 * range is rounded to nearest even at mantissa bit 13 by integer
 * addition; f16's subnormal range by the FPU, adding and removing 0.5
 * (whose ulp is f16's smallest subnormal, 2^-24); overflow is Inf, NaN
 * the quiet NaN with x's sign. */
static const char helper_round_f16[] =
    "static float kiln_round_f16(float f) {\n"
    "  uint32_t x, a, r;\n"
    "  float mag;\n"
    "  memcpy(&x, &f, 4);\n"
    "  a = x & 0x7fffffffu;\n"
    "  if (a > 0x7f800000u) r = (x & 0x80000000u) | 0x7fc00000u;\n"
    "  else if (a >= 0x477ff000u) r = (x & 0x80000000u) | 0x7f800000u;\n"
    "  else if (a >= 0x38800000u) r = (x + 0xfffu + ((x >> 13) & 1u)) & 0xffffe000u;\n"
    "  else {\n"
    "    memcpy(&mag, &a, 4);\n"
    "    mag = (mag + 0.5f) - 0.5f;\n"
    "    memcpy(&r, &mag, 4);\n"
    "    r |= x & 0x80000000u;\n"
    "  }\n"
    "  memcpy(&f, &r, 4);\n"
    "  return f;\n"
    "}\n";
static const char helper_bf2f[] =
    "/* bf16 is stored as uint16_t bit patterns and computed in float. */\n"
    "static float kiln_bf2f(uint16_t h) {\n"
    "  uint32_t bits = (uint32_t)h << 16;\n"
    "  float out;\n"
    "  memcpy(&out, &bits, 4);\n"
    "  return out;\n"
    "}\n";
static const char helper_f2bf[] =
    "static uint16_t kiln_f2bf(float f) {\n"
    "  uint32_t x;\n"
    "  memcpy(&x, &f, 4);\n"
    "  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);\n"
    "  x += 0x7fffu + ((x >> 16) & 1u);\n"
    "  return (uint16_t)(x >> 16);\n"
    "}\n";
static const char helper_sat_i64[] =
    "static int64_t kiln_sat_i64(double x) {\n"
    "  return x != x ? 0 : x >= 0x1p63 ? INT64_MAX : x < -0x1p63 ? INT64_MIN : (int64_t)x;\n"
    "}\n";
static const char helper_sat_u64[] =
    "static uint64_t kiln_sat_u64(double x) { return x != x || x <= -1.0 ? 0 : x >= 0x1p64 ? UINT64_MAX : (uint64_t)x; }\n";
/* Bit casts (the loop IR's KILN_UN_BITCAST): memcpy, which compilers
 * turn into a register move, and which C99 defines (a union read is
 * implementation-defined in C99's wording, undefined in C++). */
static const char helper_bits_i32[] =
    "static int32_t kiln_f32_bits(float x) { int32_t i; memcpy(&i, &x, 4); return i; }\n";
static const char helper_bits_f32[] =
    "static float kiln_f32_of_bits(int32_t i) { float x; memcpy(&x, &i, 4); return x; }\n";
static const char helper_bits_i64[] =
    "static int64_t kiln_f64_bits(double x) { int64_t i; memcpy(&i, &x, 8); return i; }\n";
static const char helper_bits_f64[] =
    "static double kiln_f64_of_bits(int64_t i) { double x; memcpy(&x, &i, 8); return x; }\n";
static const char helper_sat[] =
    "/* float -> integer conversions saturate and map NaN to 0 (defined behaviour). */\n"
    "static double kiln_sat(double x, double lo, double hi) { return x != x ? 0.0 : x < lo ? lo : x > hi ? hi : x; }\n\n";

/* A helper's text, its functions qualified for the dialect (each line
 * starting "static " gets helper_qual instead). */
static void put_helper(emitter *e, const char *text) {
  const char *q = e->h->helper_qual ? e->h->helper_qual : "static ";
  for (const char *line = text; *line;) {
    const char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
    if (!strncmp(line, "static ", 7)) fprintf(e->f, "%s%.*s", q, (int)(n - 7), line + 7);
    else fprintf(e->f, "%.*s", (int)n, line);
    line += n;
  }
}

static const kiln_buf *io_buf(const kiln_program *p, kiln_buf_kind kind, int index) {
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == kind && p->bufs[b]->io_index == index) return p->bufs[b];
  return NULL;
}

/* Identifiers from model names (c_names.c): x_NAME for each buffer's pointer
 * in the kernels; in_NAME/out_NAME parameters and PREFIX_NAME_* macros for
 * the inputs and outputs, one namespace for both (the macros share one), and
 * never NAME = WORKSPACE or WEIGHTS (PREFIX_WORKSPACE_SIZE, PREFIX_WEIGHTS_SIZE). */
static void make_names(emitter *e, kiln_arena *a) {
  const kiln_program *p = e->p;
  const char **src = kiln_arena_array(a, (size_t)p->nbufs + 1, sizeof *src);
  for (int i = 0; i < p->nbufs; i++) src[i] = p->bufs[i]->name;
  char **frag = kiln_c_idents(a, src, p->nbufs, 0, NULL);
  e->names = kiln_arena_array(a, (size_t)p->nbufs + 1, sizeof *e->names);
  for (int i = 0; i < p->nbufs; i++) e->names[i] = kiln_arena_printf(a, "x_%s", frag[i]);
  int nio = p->ninputs + p->noutputs;
  const kiln_buf **io = kiln_arena_array(a, (size_t)nio + 1, sizeof *io);
  for (int i = 0; i < nio; i++) {
    io[i] = i < p->ninputs ? io_buf(p, KILN_BUF_INPUT, i) : io_buf(p, KILN_BUF_OUTPUT, i - p->ninputs);
    src[i] = io[i]->name;
  }
  static const char *const fixed[] = {"WORKSPACE", "WEIGHTS", "STATE", NULL};
  char **lo = kiln_c_idents(a, src, nio, 0, NULL), **up = kiln_c_idents(a, src, nio, 1, fixed);
  e->io_lower = kiln_arena_array(a, (size_t)p->nbufs + 1, sizeof *e->io_lower);
  e->io_upper = kiln_arena_array(a, (size_t)p->nbufs + 1, sizeof *e->io_upper);
  for (int i = 0; i < nio; i++) {
    e->io_lower[io[i]->id] = lo[i];
    e->io_upper[io[i]->id] = up[i];
  }
}

/* The prefix (already a C identifier, checked by the CLI), upper-cased for macros. */
static void ident(char *out, size_t size, const char *name, int upper) {
  size_t j = 0;
  for (const char *c = name; *c && j + 1 < size; c++)
    out[j++] = upper ? (char)toupper((unsigned char)*c) : *c;
  out[j] = 0;
}

/* Whether the program has state, and the parameter that then carries it. */
static const char *state_param(const emitter *e) { return e->p->state_bytes > 0 ? "void *state, " : ""; }

/* The typed parameter list: [weights,] inputs..., outputs..., [state,] workspace. */
static void typed_params(emitter *e, FILE *f) {
  if (e->o->weights_file) fprintf(f, "const void *weights, ");
  for (int io = 0; io < 2; io++)
    for (int i = 0; i < (io ? e->p->noutputs : e->p->ninputs); i++) {
      const kiln_buf *b = io_buf(e->p, io ? KILN_BUF_OUTPUT : KILN_BUF_INPUT, i);
      fprintf(f, "%s%s *%s_%s, ", io ? "" : "const ", ctype(b->dtype), io ? "out" : "in", e->io_lower[b->id]);
    }
  fprintf(f, "%svoid *workspace", state_param(e));
}

static char *make_header(emitter *e) {
  const kiln_program *p = e->p;
  const char *pre = e->o->prefix;
  char *buf = NULL, up[256];
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ident(up, sizeof up, pre, 1);
  fprintf(f, "/* %s.h: generated by kiln from ", pre);
  kiln_c_put_comment(f, e->o->model, KILN_C_NAME_SHOWN);
  fprintf(f, ".  Do not edit.\n *\n");
  fprintf(f, " * Plain C99, no dependencies, no allocation, no global mutable state:\n");
  fprintf(f, " *   static unsigned char ws[%s_WORKSPACE_SIZE];      (or any memory of that size)\n", up);
  fprintf(f, " *   %s_run(%s<inputs>, <outputs>, %sws);\n", pre, e->o->weights_file ? "weights, " : "",
          p->state_bytes > 0 ? "state, " : "");
  fprintf(f, " * Tensors are dense, row-major, in the shapes below; f16/bf16 travel as\n"
             " * uint16_t bit patterns.  Returns 0.  Calls on different workspaces may run\n"
             " * concurrently.");
  if (p->state_bytes > 0)
    fprintf(f, "\n *\n"
               " * This model has state: values it updates in place on every run (parameters,\n"
               " * running statistics).  The caller owns it: %s_STATE_SIZE bytes, set once\n"
               " * with %s_state_init(weights, state), then passed to every run, which reads\n"
               " * and updates it, so a run sees the previous runs' updates.  Each instance of\n"
               " * the model is its own state memory; two never share one, and calls with\n"
               " * different state and workspace memory may run concurrently.", up, pre);
  fprintf(f, " */\n");
  fprintf(f, "#ifndef %s_H\n#define %s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", up, up);
  fprintf(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  fprintf(f, "#define %s_NUM_INPUTS %d\n#define %s_NUM_OUTPUTS %d\n", up, p->ninputs, up, p->noutputs);
  fprintf(f, "/* bytes of scratch memory one call needs (64 more than the plan, for alignment) */\n");
  fprintf(f, "#define %s_WORKSPACE_SIZE %" PRId64 "\n", up, p->workspace_bytes + 64);
  if (e->o->weights_file)
    fprintf(f, "/* bytes of %s.weights, the blob passed as `weights` */\n#define %s_WEIGHTS_SIZE %" PRId64 "\n", pre, up,
            p->weights_bytes + p->state_bytes);
  if (p->state_bytes > 0)
    fprintf(f, "/* bytes of state memory one instance of the model keeps between runs */\n#define %s_STATE_SIZE %" PRId64
               "\n", up, p->state_bytes + 64);
  fprintf(f, "\n");
  for (int io = 0; io < 2; io++)
    for (int i = 0; i < (io ? p->noutputs : p->ninputs); i++) {
      const kiln_buf *x = io_buf(p, io ? KILN_BUF_OUTPUT : KILN_BUF_INPUT, i);
      const char *nm = e->io_upper[x->id];
      fprintf(f, "/* %s %d: '", io ? "output" : "input", i);
      kiln_c_put_comment(f, x->name, KILN_C_NAME_SHOWN);
      fprintf(f, "', %s[", kiln_dtype_name(x->dtype));
      for (int k = 0; k < x->rank; k++) fprintf(f, "%s%" PRId64, k ? "," : "", x->dims[k]);
      fprintf(f, "] */\n#define %s_%s_NAME \"", up, nm);
      kiln_c_put_string(f, x->name);
      fprintf(f, "\"\n#define %s_%s_RANK %d\n#define %s_%s_SIZE %" PRId64 "\n", up, nm, x->rank, up, nm, x->numel);
      fprintf(f, "#define %s_%s_SHAPE {", up, nm);
      for (int k = 0; k < x->rank; k++) fprintf(f, "%s%" PRId64, k ? ", " : "", x->dims[k]);
      fprintf(f, "%s}\n\n", x->rank ? "" : "1 /* rank 0 (a scalar): {} is not valid C */");
    }
  for (int io = 0; io < 2; io++) { /* sizes in bytes, in order: for generic hosts */
    int n = io ? p->noutputs : p->ninputs;
    fprintf(f, "#define %s_%s_BYTES {", up, io ? "OUTPUT" : "INPUT");
    for (int i = 0; i < n; i++) {
      const kiln_buf *x = io_buf(p, io ? KILN_BUF_OUTPUT : KILN_BUF_INPUT, i);
      fprintf(f, "%s%" PRId64, i ? ", " : "", x->numel * (int64_t)kiln_dtype_size(x->dtype));
    }
    fprintf(f, "%s}\n", n ? "" : "0");
  }
  fprintf(f, "\nsize_t %s_workspace_size(void);\n\n", pre);
  if (p->state_bytes > 0)
    fprintf(f, "/* Sets state (%s_STATE_SIZE bytes) to its initial contents (weights: NULL\n"
               " * unless the model was emitted with a weights file). */\nvoid %s_state_init(const void *weights, void *state);\n\n",
            up, pre);
  fprintf(f, "int %s_run(", pre);
  typed_params(e, f);
  fprintf(f, ");\n\n/* The same with arrays of tensors in input/output order (weights: NULL unless\n"
             " * the model was emitted with a weights file). */\n");
  fprintf(f, "int %s_run_v(const void *weights, const void *const *inputs, void *const *outputs, %svoid *workspace);\n",
          pre, state_param(e));
  if (e->o->threads) {
    fprintf(f, "\n/* Threads: the host runs body(arg, lo, hi) over [0, n) in chunks, on its own\n"
               " * threads, and returns when all are done.  NULL runs serially. */\n");
    fprintf(f, "typedef void (*%s_parallel_for)(void *ctx, void (*body)(void *arg, int64_t lo, int64_t hi), void *arg,\n"
               "                                int64_t n);\n", pre);
    fprintf(f, "int %s_run_parallel(const void *weights, const void *const *inputs, void *const *outputs, %svoid *workspace,\n"
               "                    %s_parallel_for par, void *ctx);\n", pre, state_param(e), pre);
  }
  fprintf(f, "\n#ifdef __cplusplus\n}\n#endif\n#endif\n");
  fclose(f);
  return buf;
}

/* Weights, and state's initial contents, are const arrays (without a
 * weights file). */
static int is_const_array(const kiln_buf *b) {
  return !b->view_of && (b->kind == KILN_BUF_WEIGHT || (b->kind == KILN_BUF_STATE && b->data));
}

static void weight_decl(emitter *e, FILE *f, const kiln_buf *b, int definition) {
  fprintf(f, "%sconst %s %s_w%d[%" PRId64 "]", definition ? "" : "extern ", ctype(b->dtype), e->o->prefix, b->id,
          b->numel ? b->numel : 1);
}

static char *make_weights(emitter *e) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fprintf(f, "/* %s_weights.c: generated by kiln from ", e->o->prefix);
  kiln_c_put_comment(f, e->o->model, KILN_C_NAME_SHOWN);
  fprintf(f, ".  Do not edit.\n"
             " * Every weight as a const array; floats as exact hex literals. */\n"
             "#include <math.h>\n#include <stdint.h>\n\n");
  fprintf(f, "typedef int %s_weights_unit; /* ISO C needs a declaration even with no weights */\n\n", e->o->prefix);
  for (int i = 0; i < e->p->nbufs; i++) {
    const kiln_buf *b = e->p->bufs[i];
    if (!is_const_array(b)) continue;
    weight_decl(e, f, b, 0);
    fprintf(f, ";\n/* ");
    kiln_c_put_comment(f, b->name, KILN_C_NAME_SHOWN);
    fprintf(f, " */\n");
    weight_decl(e, f, b, 1);
    fprintf(f, " = {");
    for (int64_t k = 0; k < (b->numel ? b->numel : 1); k++) {
      if (k % 8 == 0) fprintf(f, "\n ");
      if (!b->numel) { fprintf(f, " 0"); break; }
      kiln_lx c = {.kind = KILN_LX_CONST, .dtype = b->dtype};
      if (b->dtype == KILN_DT_F32 || b->dtype == KILN_DT_F64) c.f = kiln_dtype_load_f(b->dtype, b->data, (size_t)k);
      else if (b->dtype == KILN_DT_F16 || b->dtype == KILN_DT_BF16) { c.dtype = KILN_DT_U16; c.i = kiln_dtype_load_i(KILN_DT_U16, b->data, (size_t)k); }
      else c.i = kiln_dtype_load_i(b->dtype, b->data, (size_t)k);
      emitter w = *e;
      w.f = f;
      fprintf(f, " ");
      print_const(&w, &c);
      fprintf(f, ",");
    }
    fprintf(f, "\n};\n\n");
  }
  fclose(f);
  return buf;
}

static int is_io(const kiln_buf *b) { return b->kind == KILN_BUF_INPUT || b->kind == KILN_BUF_OUTPUT; }

static void run_v(emitter *e, FILE *f, int parallel) {
  const kiln_program *p = e->p;
  const char *pre = e->o->prefix;
  if (parallel)
    fprintf(f, "int %s_run_parallel(const void *weights, const void *const *inputs, void *const *outputs, %svoid *workspace,\n"
               "                    %s_parallel_for par_fn, void *ctx) {\n", pre, state_param(e), pre);
  else
    fprintf(f, "int %s_run_v(const void *weights, const void *const *inputs, void *const *outputs, %svoid *workspace) {\n",
            pre, state_param(e));
  fprintf(f, "  void *bufs[%d];\n", p->nbufs + 1);
  fprintf(f, "  char *ws = (char *)workspace + ((64u - (uintptr_t)workspace %% 64u) %% 64u);\n");
  if (e->o->threads) fprintf(f, "  kiln_par par;\n");
  if (e->o->threads) {
    if (parallel) fprintf(f, "  par.fn = par_fn;\n  par.ctx = ctx;\n");
    else fprintf(f, "  par.fn = 0;\n  par.ctx = 0;\n");
  }
  fprintf(f, "  (void)weights;\n  (void)inputs;\n  (void)outputs;\n  (void)ws;\n");
  if (p->state_bytes > 0) fprintf(f, "  char *st = (char *)state + ((64u - (uintptr_t)state %% 64u) %% 64u);\n");
  /* one image at a time (p->images, passes/per_image.c): the inputs and
   * outputs, and the views into them, bound per image inside the loop */
  int images = p->images > 1;
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->view_of) continue; /* below, once its root is bound */
    switch (b->kind) {
    case KILN_BUF_INPUT:
      if (!images) fprintf(f, "  bufs[%d] = (void *)inputs[%d];\n", i, b->io_index);
      break;
    case KILN_BUF_OUTPUT:
      if (!images) fprintf(f, "  bufs[%d] = outputs[%d];\n", i, b->io_index);
      break;
    case KILN_BUF_WORKSPACE: fprintf(f, "  bufs[%d] = ws + %" PRId64 ";\n", i, b->offset); break;
    case KILN_BUF_STATE: fprintf(f, "  bufs[%d] = st + %" PRId64 ";\n", i, b->offset); break;
    case KILN_BUF_WEIGHT:
      if (e->o->weights_file) fprintf(f, "  bufs[%d] = (void *)((const char *)weights + %" PRId64 ");\n", i, b->offset);
      else fprintf(f, "  bufs[%d] = (void *)%s_w%d;\n", i, pre, b->id);
      break;
    }
  }
  for (int i = 0; i < p->nbufs; i++) { /* a view: its root's memory from its offset on */
    int64_t off;
    const kiln_buf *r = kiln_buf_root(p->bufs[i], &off);
    if (r != p->bufs[i] && !(images && is_io(r))) fprintf(f, "  bufs[%d] = (char *)bufs[%d] + %" PRId64 ";\n", i, r->id, off);
  }
  fprintf(f, "  bufs[%d] = 0;\n  (void)bufs;\n", p->nbufs);
  const char *in = "  ";
  if (images) {
    fprintf(f, "  for (int64_t img = 0; img < %" PRId64 "; ++img) { /* one image at a time */\n", p->images);
    in = "    ";
    for (int i = 0; i < p->nbufs; i++) {
      const kiln_buf *b = p->bufs[i];
      if (b->view_of || !is_io(b)) continue;
      int64_t bytes = b->numel / p->images * (int64_t)kiln_dtype_size(b->dtype);
      fprintf(f, "    bufs[%d] = (char *)%s[%d] + img * %" PRId64 ";\n", i,
              b->kind == KILN_BUF_INPUT ? "(void *)inputs" : "outputs", b->io_index, bytes);
    }
    for (int i = 0; i < p->nbufs; i++) {
      int64_t off;
      const kiln_buf *r = kiln_buf_root(p->bufs[i], &off);
      if (r != p->bufs[i] && is_io(r)) fprintf(f, "    bufs[%d] = (char *)bufs[%d] + %" PRId64 ";\n", i, r->id, off);
    }
  }
  for (int k = 0; k < p->nkernels; k++) {
    if (e->h->call) e->h->call(f, p->kernels[k]); /* (CUDA: never per image) */
    else fprintf(f, "%s%s(bufs%s);\n", in, p->kernels[k]->name, e->o->threads ? ", &par" : "");
  }
  if (images) fprintf(f, "  }\n");
  fprintf(f, "  return 0;\n}\n\n");
}

/* state_init: zeros, then each state buffer's initial contents: from its
 * const array, or from the weights blob, where they follow the weights. */
static void state_init(emitter *e, FILE *f) {
  const kiln_program *p = e->p;
  fprintf(f, "void %s_state_init(const void *weights, void *state) {\n", e->o->prefix);
  fprintf(f, "  char *st = (char *)state + ((64u - (uintptr_t)state %% 64u) %% 64u);\n  (void)weights;\n");
  fprintf(f, "  memset(st, 0, %" PRId64 "u);\n", p->state_bytes);
  if (e->o->weights_file) {
    fprintf(f, "  if (weights) memcpy(st, (const char *)weights + %" PRId64 ", %" PRId64 "u);\n", p->weights_bytes,
            p->state_bytes);
  } else {
    for (int i = 0; i < p->nbufs; i++) {
      const kiln_buf *b = p->bufs[i];
      if (b->kind == KILN_BUF_STATE && is_const_array(b))
        fprintf(f, "  memcpy(st + %" PRId64 ", %s_w%d, sizeof %s_w%d);\n", b->offset, e->o->prefix, b->id, e->o->prefix, b->id);
    }
  }
  fprintf(f, "}\n\n");
}

/* sqrtf and sqrt set errno on a negative argument, and GCC and Clang
 * compile with -fmath-errno unless told otherwise: each call is then a
 * store to memory with a branch to libm around the sqrtss, and no loop
 * that takes a square root vectorises (GoogLeNet's LRNs: 1.69 and 0.57 ms
 * against 0.11 and 0.04 ms with vsqrtps, GCC 12 and Clang 19, -O3
 * -march=native).  The optimize attribute and pragma do not reach the
 * math builtins (GCC 12).  Nothing in this file reads errno, so the file
 * declares them const: the compilers then use the vector instruction,
 * which rounds as correctly as libm (a NaN for a negative argument too). */
static void const_sqrt(emitter *e) {
  if (!e->uses_sqrt) return;
  fputs("#if defined(__GNUC__)\n", e->f);
  if (e->uses_sqrt & (1u << KILN_DT_F32)) fputs("float sqrtf(float) __attribute__((const));\n", e->f);
  if (e->uses_sqrt & (1u << KILN_DT_F64)) fputs("double sqrt(double) __attribute__((const));\n", e->f);
  fputs("#endif\n\n", e->f);
}

static char *make_source(emitter *e) {
  const kiln_program *p = e->p;
  const char *pre = e->o->prefix;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  e->f = f;
  fprintf(f, "/* %s%s: generated by kiln from ", pre, e->h->source_suffix ? e->h->source_suffix : ".c");
  kiln_c_put_comment(f, e->o->model, KILN_C_NAME_SHOWN);
  fprintf(f, " (%d kernels).  Do not edit. */\n", p->nkernels);
  if (e->h->preamble) e->h->preamble(f, e->o);
  else {
    fprintf(f, "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n#include \"%s.h\"\n\n", pre);
    /* KILN_KEEP_VECTORS: GCC -O3 allocates registers before it schedules:
     * in a transposed-GEMM tile's k loop it then folds every reuse of a
     * weight vector into an FMA's memory operand (24 loads per 24 FMAs
     * instead of 4) and the tile runs on the load ports.  Pressure-aware
     * scheduling before allocation keeps them in registers: SqueezeNet
     * 1.1's C 1.2x faster (GCC 12, AVX-512).  Only on those kernels: on
     * all, DenseNet-121's C ran 10% slower.  Other compilers: nothing. */
    fputs("#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)\n"
          "#define KILN_KEEP_VECTORS __attribute__((optimize(\"schedule-insns\", \"sched-pressure\")))\n"
          "#else\n#define KILN_KEEP_VECTORS\n#endif\n\n", f);
    /* A register tile's lane loop (the tile's stores and epilogue): when a
     * vector holds fewer lanes than the loop (AVX2's 8 of 16), GCC unrolls
     * it completely before vectorising, then fails to see its stores as
     * consecutive, and the whole tile, FMAs included, stays scalar
     * (SqueezeNet's C on AVX2 2x slower).  Kept a loop, it vectorises. */
    /* GCC's tuning for Intel's AVX-512 cores (skylake-avx512 to
     * sapphirerapids, and what -march=native names an unknown one) prefers
     * 256-bit vectors: a register tile's 16-lane loops then stayed scalar
     * (SqueezeNet's fire 1x1: 0 packed FMAs of its tile, 456 scalar ones
     * in the file, GCC 12 -O3 -march=native on an Intel Xeon).  The
     * tiles are shaped for the vectors the C was emitted for; where the
     * compile allows 512-bit ones, use them.  No effect without AVX-512. */
    fputs("#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER) && __GNUC__ >= 8 && "
          "(defined(__x86_64__) || defined(__i386__))\n"
          "#pragma GCC target(\"prefer-vector-width=512\")\n#endif\n\n", f);
    /* KILN_LS_PREFETCH: read soon, keep in the L2 (x86 prefetcht1), or
     * near: into the L1 (prefetcht0); a compiler without the builtin drops
     * the hint */
    fputs("#if defined(__GNUC__) || defined(__clang__)\n"
          "#define KILN_PREFETCH(p) __builtin_prefetch((p), 0, 2)\n"
          "#define KILN_PREFETCH_L1(p) __builtin_prefetch((p), 0, 3)\n"
          "#else\n#define KILN_PREFETCH(p) ((void)0)\n#define KILN_PREFETCH_L1(p) ((void)0)\n#endif\n\n", f);
    fputs("#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER) && __GNUC__ >= 8\n"
          "#define KILN_LANE_LOOP _Pragma(\"GCC unroll 1\")\n"
          "#else\n#define KILN_LANE_LOOP\n#endif\n\n", f);
  }
  /* kernels first, into their own buffer, to learn which helpers they need */
  char *kbuf = NULL;
  size_t klen = 0;
  e->f = open_memstream(&kbuf, &klen);
  for (int k = 0; k < p->nkernels; k++) kernel(e, p->kernels[k]);
  fclose(e->f);
  e->f = f;
  if (e->uses_h2f) put_helper(e, helper_h2f);
  if (e->uses_f2h) put_helper(e, helper_f2h);
  if (e->uses_bf2f) put_helper(e, helper_bf2f);
  if (e->uses_f2bf) put_helper(e, helper_f2bf);
  if (e->uses_round_f16) put_helper(e, helper_round_f16);
  if (e->uses_sat) put_helper(e, helper_sat);
  if (e->uses_bitcast & (1u << KILN_DT_I32)) put_helper(e, helper_bits_i32);
  if (e->uses_bitcast & (1u << KILN_DT_F32)) put_helper(e, helper_bits_f32);
  if (e->uses_bitcast & (1u << KILN_DT_I64)) put_helper(e, helper_bits_i64);
  if (e->uses_bitcast & (1u << KILN_DT_F64)) put_helper(e, helper_bits_f64);
  if (e->uses_sat64 & (1u << KILN_DT_I64)) put_helper(e, helper_sat_i64);
  if (e->uses_sat64 & (1u << KILN_DT_U64)) put_helper(e, helper_sat_u64);
  print_divrem_helpers(e);
  if (!e->h->preamble) const_sqrt(e);
  for (int t = 0; t < 32; t++) /* (bind_limits says why) */
    if (e->uses_opaque & (1u << t))
      fprintf(f, "static %s kiln_opaque_%s(%s v) { volatile %s o = v; return o; }\n", ctype((kiln_dtype)t),
              kiln_dtype_name((kiln_dtype)t), ctype((kiln_dtype)t), ctype((kiln_dtype)t));
  if (e->uses_h2f || e->uses_f2h || e->uses_bf2f || e->uses_f2bf || e->uses_round_f16 || e->uses_sat ||
      e->uses_sat64 || e->uses_div || e->uses_rem || e->uses_opaque || e->uses_bitcast)
    fprintf(f, "\n");
  if (e->o->threads)
    fprintf(f, "typedef struct kiln_par { %s_parallel_for fn; void *ctx; } kiln_par;\n\n", pre);
  if (!e->o->weights_file) {
    for (int i = 0; i < p->nbufs; i++)
      if (is_const_array(p->bufs[i])) {
        weight_decl(e, f, p->bufs[i], 0);
        fprintf(f, "; /* ");
        kiln_c_put_comment(f, p->bufs[i]->name, KILN_C_NAME_SHOWN);
        fprintf(f, " */\n");
      }
    fprintf(f, "\n");
  }
  fputs(kbuf, f);
  free(kbuf);
  if (e->h->host_begin) fputs(e->h->host_begin, f);
  fprintf(f, "size_t %s_workspace_size(void) { return %" PRId64 "u; }\n\n", pre, p->workspace_bytes + 64);
  if (p->state_bytes > 0) state_init(e, f);
  run_v(e, f, 0);
  if (e->o->threads) run_v(e, f, 1);
  fprintf(f, "int %s_run(", pre);
  typed_params(e, f);
  fprintf(f, ") {\n  const void *inputs[%d] = {0};\n  void *outputs[%d] = {0};\n", p->ninputs + 1, p->noutputs + 1);
  for (int i = 0; i < p->ninputs; i++)
    fprintf(f, "  inputs[%d] = in_%s;\n", i, e->io_lower[io_buf(p, KILN_BUF_INPUT, i)->id]);
  for (int i = 0; i < p->noutputs; i++)
    fprintf(f, "  outputs[%d] = out_%s;\n", i, e->io_lower[io_buf(p, KILN_BUF_OUTPUT, i)->id]);
  fprintf(f, "  return %s_run_v(%s, inputs, outputs, %sworkspace);\n}\n", pre, e->o->weights_file ? "weights" : "0",
          p->state_bytes > 0 ? "state, " : "");
  if (e->h->host_end) fputs(e->h->host_end, f);
  fclose(f);
  return buf;
}

int kiln_c_emit(const kiln_program *p, const kiln_c_options *o, kiln_c_output *out, kiln_diag *d) {
  static const kiln_c_hooks c99 = {.lane_loops = 1, .prefetch = 1};
  return kiln_c_emit_dialect(p, o, &c99, out, d);
}

int kiln_c_emit_dialect(const kiln_program *p, const kiln_c_options *o, const kiln_c_hooks *h, kiln_c_output *out,
                        kiln_diag *d) {
  memset(out, 0, sizeof *out);
  emitter e = {.p = p, .o = o, .h = h};
  make_names(&e, p->arena);
  out->header = make_header(&e);
  out->source = make_source(&e);
  if (o->weights_file) {
    /* the weights, then the state's initial contents */
    out->blob_len = (size_t)(p->weights_bytes + p->state_bytes);
    out->blob = calloc(1, out->blob_len + 1);
    for (int i = 0; i < p->nbufs && out->blob; i++) {
      const kiln_buf *b = p->bufs[i];
      if (b->kind == KILN_BUF_WEIGHT && b->data)
        memcpy(out->blob + b->offset, b->data, (size_t)b->numel * kiln_dtype_size(b->dtype));
    }
    if (out->blob) kiln_program_state_init(p, out->blob + p->weights_bytes);
  } else {
    out->weights = make_weights(&e);
  }
  if (!out->header || !out->source || (o->weights_file ? !out->blob : !out->weights)) {
    kiln_c_output_free(out);
    return kiln_error(d, NULL, "out of memory");
  }
  return 0;
}

void kiln_c_output_free(kiln_c_output *out) {
  free(out->header);
  free(out->source);
  free(out->weights);
  free(out->blob);
  memset(out, 0, sizeof *out);
}
