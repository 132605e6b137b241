/* The CUDA sketch: one GPU kernel of the loop IR as CUDA C++, construct by
 * construct, knowing nothing of ops (the schedule is all in the IR).
 *
 *   block-bound loop i (axis a)     { const long long i = blockIdx.a;  ... }
 *   thread-bound loop i (axis a)    { const long long i = threadIdx.a; ... }
 *     (the launch's grid and block are the bound loops' extents, so each
 *      index is in range and needs no guard: ir/loop.h)
 *   ALLOC of a SHARED buffer        __shared__ T sN[n];
 *   ALLOC of a LOCAL buffer         T lN[n];   (registers after unrolling)
 *   BARRIER                         __syncthreads();
 *   sequential loop (unroll u)      #pragma unroll u / for (long long i = 0; ...)
 *   GLOBAL buffer N                 parameter bN (const unless stored to)
 *
 * Identifiers are made here (bN, sN, lN, iN, tN), never from the model:
 * model names appear only in // comments, in display form and closed by a
 * quote, so no name can end the comment or splice the next line.  The
 * expressions it prints keep ir/loop.h's semantics only for what it
 * accepts (see cuda_sketch.h): float arithmetic as C++ does it, MIN/MAX as
 * the same comparisons, integer index arithmetic that cannot wrap. */
#include "cuda_sketch.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/text_escape.h"

typedef struct sk {
  const kiln_kernel *k;
  FILE *f;
  const char *why;     /* first unsupported construct */
  char *used, *stored; /* per GLOBAL buffer id */
  char *lidx;          /* per local: i64, never assigned, declared from index arithmetic */
} sk;

/* Index arithmetic (cannot wrap: ir/loop.h), locals holding it included. */
static int index_expr(const sk *S, const kiln_lx *e) {
  switch (e->kind) {
  case KILN_LX_CONST: return !kiln_dtype_is_float(e->dtype);
  case KILN_LX_INDEX: return 1;
  case KILN_LX_LOCAL: return e->var >= 0 && e->var < S->k->nlocals && S->lidx[e->var];
  case KILN_LX_BIN:
    return e->op <= KILN_BIN_MAX && e->op != KILN_BIN_POW && index_expr(S, e->a) && index_expr(S, e->b);
  default: return 0;
  }
}

/* Marks the index locals (declarations come before uses). */
static void mark_index_locals(sk *S, const kiln_ls *s, char *assigned) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_DECL && s->var >= 0 && s->var < S->k->nlocals)
      S->lidx[s->var] = s->dtype == KILN_DT_I64 && !assigned[s->var] && index_expr(S, s->value);
    mark_index_locals(S, s->body, assigned);
    mark_index_locals(S, s->orelse, assigned);
  }
}

static void mark_assigned(const kiln_ls *s, char *assigned, int n) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_ASSIGN && s->var >= 0 && s->var < n) assigned[s->var] = 1;
    mark_assigned(s->body, assigned, n);
    mark_assigned(s->orelse, assigned, n);
  }
}

static const char *ctype(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return "float";
  case KILN_DT_F64: return "double";
  case KILN_DT_I8: return "signed char";
  case KILN_DT_U8: return "unsigned char";
  case KILN_DT_I16: return "short";
  case KILN_DT_U16: return "unsigned short";
  case KILN_DT_I32: return "int";
  case KILN_DT_U32: return "unsigned int";
  case KILN_DT_I64: return "long long";
  case KILN_DT_U64: return "unsigned long long";
  case KILN_DT_BOOL: return "bool";
  default: return NULL;
  }
}

static void unsupported(sk *S, const char *why) {
  if (!S->why) S->why = why;
}

static void buf_name(sk *S, const kiln_buf *b) {
  fprintf(S->f, "%c%d", b->scope == KILN_SCOPE_SHARED ? 's' : b->scope == KILN_SCOPE_LOCAL ? 'l' : 'b', b->id);
}

static void ex(sk *S, const kiln_lx *e);

static void call1(sk *S, const char *f32, const char *f64, const kiln_lx *e) {
  fprintf(S->f, "%s(", e->dtype == KILN_DT_F64 ? f64 : f32);
  ex(S, e->a);
  fputc(')', S->f);
}

static void ex(sk *S, const kiln_lx *e) {
  FILE *f = S->f;
  int fl = kiln_dtype_is_float(e->kind == KILN_LX_BIN || e->kind == KILN_LX_UN ? e->a->dtype : e->dtype);
  if (!ctype(e->dtype)) unsupported(S, "a value of a type the sketch does not print (f16/bf16)");
  switch (e->kind) {
  case KILN_LX_CONST:
    if (e->dtype == KILN_DT_F32 && isfinite(e->f)) fprintf(f, "%af", (double)(float)e->f);
    else if (e->dtype == KILN_DT_F64 && isfinite(e->f)) fprintf(f, "%a", e->f);
    else if (e->dtype == KILN_DT_F32) fprintf(f, "__int_as_float(0x%08x)", isnan(e->f) ? 0x7fc00000u : e->f > 0 ? 0x7f800000u : 0xff800000u);
    else if (e->dtype == KILN_DT_F64) fprintf(f, "__longlong_as_double(0x%016llxLL)", isnan(e->f) ? 0x7ff8000000000000ull : e->f > 0 ? 0x7ff0000000000000ull : 0xfff0000000000000ull);
    else if (e->dtype == KILN_DT_BOOL) fprintf(f, "%s", e->i ? "true" : "false");
    else if (e->dtype == KILN_DT_I64 && e->i > INT32_MIN && e->i <= INT32_MAX) fprintf(f, "%" PRId64, e->i);
    else fprintf(f, "(%s)%" PRId64 "LL", ctype(e->dtype) ? ctype(e->dtype) : "long long", e->i);
    break;
  case KILN_LX_INDEX: fprintf(f, "i%d", e->var); break;
  case KILN_LX_LOCAL: fprintf(f, "t%d", e->var); break;
  case KILN_LX_LOAD:
    if (e->buf->scope == KILN_SCOPE_GLOBAL && e->buf->id >= 0) S->used[e->buf->id] = 1;
    buf_name(S, e->buf);
    fputc('[', f);
    ex(S, e->a);
    fputc(']', f);
    break;
  case KILN_LX_UN:
    switch (e->op) {
    case KILN_UN_NEG:
      if (!fl) unsupported(S, "integer negation (wraps)");
      fprintf(f, "(-"); ex(S, e->a); fputc(')', f); break;
    case KILN_UN_ABS: if (!fl) unsupported(S, "integer abs (wraps)"); call1(S, "fabsf", "fabs", e); break;
    case KILN_UN_EXP: call1(S, "expf", "exp", e); break;
    case KILN_UN_LOG: call1(S, "logf", "log", e); break;
    case KILN_UN_SQRT: call1(S, "sqrtf", "sqrt", e); break;
    case KILN_UN_TANH: call1(S, "tanhf", "tanh", e); break;
    case KILN_UN_ERF: call1(S, "erff", "erf", e); break;
    case KILN_UN_FLOOR: call1(S, "floorf", "floor", e); break;
    case KILN_UN_CEIL: call1(S, "ceilf", "ceil", e); break;
    case KILN_UN_ROUND_EVEN: call1(S, "rintf", "rint", e); break;
    case KILN_UN_NOT: fprintf(f, "(!"); ex(S, e->a); fputc(')', f); break;
    case KILN_UN_ISNAN: fprintf(f, "isnan("); ex(S, e->a); fputc(')', f); break;
    case KILN_UN_BITCAST:
      fprintf(f, "%s(", e->dtype == KILN_DT_I32 ? "__float_as_int" : e->dtype == KILN_DT_F32 ? "__int_as_float"
                        : e->dtype == KILN_DT_I64 ? "__double_as_longlong" : "__longlong_as_double");
      ex(S, e->a); fputc(')', f); break;
    default: unsupported(S, "an unknown unary op"); break;
    }
    break;
  case KILN_LX_BIN: {
    const char *op = NULL;
    switch (e->op) {
    case KILN_BIN_ADD: op = "+"; break;
    case KILN_BIN_SUB: op = "-"; break;
    case KILN_BIN_MUL: op = "*"; break;
    case KILN_BIN_DIV: op = "/"; break;
    case KILN_BIN_LT: op = "<"; break;
    case KILN_BIN_LE: op = "<="; break;
    case KILN_BIN_EQ: op = "=="; break;
    case KILN_BIN_NE: op = "!="; break;
    case KILN_BIN_AND: op = "&&"; break;
    case KILN_BIN_OR: op = "||"; break;
    case KILN_BIN_XOR: op = "^"; break;
    default: break;
    }
    int arith = e->op <= KILN_BIN_POW;
    if (arith && !fl && !(e->dtype == KILN_DT_I64 && index_expr(S, e)))
      unsupported(S, "integer arithmetic that is not index arithmetic (wraps)");
    if (!fl && (e->op == KILN_BIN_DIV || e->op == KILN_BIN_REM) && kiln_lx_div_needs_guard(e->b))
      unsupported(S, "an integer division by a value that may be 0 or -1");
    if (e->op == KILN_BIN_REM && !fl) op = "%";
    if (op) {
      fputc('(', f); ex(S, e->a); fprintf(f, " %s ", op); ex(S, e->b); fputc(')', f);
    } else if (e->op == KILN_BIN_MIN || e->op == KILN_BIN_MAX) {
      /* MIN(a, b) = a < b ? a : b, MAX(a, b) = a < b ? b : a (ir/loop.h) */
      fputc('(', f); ex(S, e->a); fprintf(f, " < "); ex(S, e->b); fprintf(f, " ? ");
      ex(S, e->op == KILN_BIN_MIN ? e->a : e->b); fprintf(f, " : "); ex(S, e->op == KILN_BIN_MIN ? e->b : e->a);
      fputc(')', f);
    } else if (e->op == KILN_BIN_REM || e->op == KILN_BIN_POW) {
      const char *fn = e->op == KILN_BIN_REM ? "fmod" : "pow";
      if (e->a->dtype != e->b->dtype) unsupported(S, "pow of mixed types");
      fprintf(f, "%s%s(", fn, e->dtype == KILN_DT_F64 ? "" : "f"); ex(S, e->a); fprintf(f, ", "); ex(S, e->b);
      fputc(')', f);
    } else unsupported(S, "an unknown binary op");
    break;
  }
  case KILN_LX_SELECT:
    fputc('(', f); ex(S, e->a); fprintf(f, " ? "); ex(S, e->b); fprintf(f, " : "); ex(S, e->c); fputc(')', f);
    break;
  case KILN_LX_FMA:
    fprintf(f, "%s(", e->dtype == KILN_DT_F64 ? "fma" : "fmaf"); ex(S, e->a); fprintf(f, ", "); ex(S, e->b);
    fprintf(f, ", "); ex(S, e->c); fputc(')', f);
    break;
  case KILN_LX_CAST:
    if (kiln_dtype_is_float(e->a->dtype) && !kiln_dtype_is_float(e->dtype) && e->dtype != KILN_DT_BOOL)
      unsupported(S, "a float-to-integer cast (saturates)");
    if (e->dtype == KILN_DT_BOOL) { fputc('(', f); ex(S, e->a); fprintf(f, " != 0)"); break; }
    fprintf(f, "(%s)(", ctype(e->dtype) ? ctype(e->dtype) : "?");
    ex(S, e->a);
    fputc(')', f);
    break;
  }
}

static void ind(sk *S, int n) { fprintf(S->f, "%*s", n, ""); }

static void st(sk *S, const kiln_ls *s, int n) {
  FILE *f = S->f;
  static const char axis[] = "xyz";
  for (; s; s = s->next) {
    switch (s->kind) {
    case KILN_LS_FOR:
      if (s->sched.gpu >= 1 && s->sched.gpu <= 6) {
        ind(S, n);
        fprintf(f, "{\n");
        ind(S, n + 2);
        fprintf(f, "const long long i%d = %s.%c;  // in [0, %" PRId64 ")\n", s->var,
                s->sched.gpu <= 3 ? "blockIdx" : "threadIdx", axis[(s->sched.gpu - 1) % 3], s->extent);
        st(S, s->body, n + 2);
        ind(S, n);
        fprintf(f, "}\n");
        break;
      }
      if (s->sched.unroll > 1) { ind(S, n); fprintf(f, "#pragma unroll %d\n", s->sched.unroll); }
      ind(S, n);
      fprintf(f, "for (long long i%d = 0; i%d < %" PRId64 "; i%d++) {\n", s->var, s->var, s->extent, s->var);
      st(S, s->body, n + 2);
      ind(S, n);
      fprintf(f, "}\n");
      break;
    case KILN_LS_STORE:
      if (s->buf->scope == KILN_SCOPE_GLOBAL && s->buf->id >= 0) S->used[s->buf->id] = S->stored[s->buf->id] = 1;
      ind(S, n);
      buf_name(S, s->buf);
      fputc('[', f);
      ex(S, s->index);
      fprintf(f, "] = ");
      ex(S, s->value);
      fprintf(f, ";\n");
      break;
    case KILN_LS_DECL:
      ind(S, n);
      fprintf(f, "%s t%d = ", ctype(s->dtype) ? ctype(s->dtype) : "?", s->var);
      ex(S, s->value);
      fprintf(f, ";\n");
      break;
    case KILN_LS_ASSIGN:
      ind(S, n);
      fprintf(f, "t%d = ", s->var);
      ex(S, s->value);
      fprintf(f, ";\n");
      break;
    case KILN_LS_IF:
      ind(S, n);
      fprintf(f, "if (");
      ex(S, s->value);
      fprintf(f, ") {\n");
      st(S, s->body, n + 2);
      if (s->orelse) {
        ind(S, n);
        fprintf(f, "} else {\n");
        st(S, s->orelse, n + 2);
      }
      ind(S, n);
      fprintf(f, "}\n");
      break;
    case KILN_LS_PREFETCH: break; /* a CPU cache hint */
    case KILN_LS_BARRIER:
      ind(S, n);
      fprintf(f, "__syncthreads();\n");
      break;
    case KILN_LS_MMA:
      ind(S, n);
      fprintf(f, "KILN_MMA_TF32(...%dx%d);\n", s->mma.wm, s->mma.wn);
      break;
    case KILN_LS_ALLOC:
      if (!ctype(s->buf->dtype)) unsupported(S, "a buffer of a type the sketch does not print (f16/bf16)");
      ind(S, n);
      fprintf(f, "%s%s ", s->buf->scope == KILN_SCOPE_SHARED ? "__shared__ " : "", ctype(s->buf->dtype) ? ctype(s->buf->dtype) : "?");
      buf_name(S, s->buf);
      fprintf(f, "[%" PRId64 "];  // '", s->buf->numel);
      kiln_put_display(f, s->buf->name);
      fprintf(f, "'\n");
      break;
    case KILN_LS_REDUCE:
    case KILN_LS_COMBINE: unsupported(S, "a reduction (expand-reduce runs before printing)"); break;
    }
  }
}

static int is_ident(const char *s) {
  if (!s || !*s || (*s >= '0' && *s <= '9')) return 0;
  for (; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))) return 0;
  return 1;
}

int kiln_cuda_sketch_print(const kiln_program *p, const kiln_kernel *k, FILE *out, const char **why) {
  static const char fallback[] = "kiln_kernel";
  const kiln_launch *l = k->launch;
  *why = NULL;
  if (!l) { *why = "a CPU kernel (no launch)"; return -1; }
  char *body = NULL;
  size_t len = 0;
  char *assigned = calloc((size_t)k->nlocals + 1, 1);
  sk S = {k, open_memstream(&body, &len), NULL, calloc((size_t)p->nbufs + 1, 1), calloc((size_t)p->nbufs + 1, 1),
          calloc((size_t)k->nlocals + 1, 1)};
  if (!S.f || !S.used || !S.stored || !S.lidx || !assigned) {
    if (S.f) fclose(S.f);
    free(body); free(S.used); free(S.stored); free(S.lidx); free(assigned);
    *why = "out of memory";
    return -1;
  }
  mark_assigned(k->body, assigned, k->nlocals);
  mark_index_locals(&S, k->body, assigned);
  free(assigned);
  st(&S, k->body, 2);
  fclose(S.f);
  free(S.lidx);
  if (S.why) {
    *why = S.why;
    free(body); free(S.used); free(S.stored);
    return -1;
  }
  const char *name = is_ident(k->name) ? k->name : fallback;
  fprintf(out, "// kernel %s", name);
  if (k->node) {
    fprintf(out, ": node '");
    kiln_put_display(out, k->node->name);
    fprintf(out, "' (%s)", kiln_op_get(k->node->op)->name);
  }
  fprintf(out, "\n// launch: %s<<<dim3(%" PRId64 ", %" PRId64 ", %" PRId64 "), dim3(%" PRId64 ", %" PRId64 ", %" PRId64 ")>>>(",
          name, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2]);
  int first = 1;
  for (int i = 0; i < p->nbufs; i++)
    if (S.used[i]) { fprintf(out, "%sb%d", first ? "" : ", ", i); first = 0; }
  fprintf(out, ");\n");
  for (int i = 0; i < p->nbufs; i++)
    if (S.used[i]) {
      fprintf(out, "//   b%d = '", i);
      kiln_put_display(out, p->bufs[i]->name);
      fprintf(out, "'\n");
    }
  fprintf(out, "extern \"C\" __global__ void __launch_bounds__(%" PRId64 ") %s(", l->block[0] * l->block[1] * l->block[2], name);
  first = 1;
  for (int i = 0; i < p->nbufs; i++)
    if (S.used[i]) {
      const kiln_buf *b = p->bufs[i];
      fprintf(out, "%s%s%s *__restrict__ b%d", first ? "" : ", ", S.stored[i] ? "" : "const ", ctype(b->dtype) ? ctype(b->dtype) : "?", i);
      first = 0;
    }
  fprintf(out, ") {\n");
  fwrite(body, 1, len, out);
  fprintf(out, "}\n");
  free(body); free(S.used); free(S.stored);
  return 0;
}
