/* Loop IR construction and a readable dump.  The builder keeps a cursor
 * (`tail`) into the current block so lowering code reads like the loops it
 * makes:  i = kiln_lb_for(b, n, s); kiln_lb_store(...); kiln_lb_end(b).
 * The dump shows buffer and kernel names (model-derived) in display form. */
#include "loop.h"
#include "text_escape.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static void *alloc(kiln_lb *b, size_t n) { return kiln_arena_alloc(b->p->arena, n); }

static void push(kiln_arena *a, void ***arr, int *n, int *cap, void *item) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 16;
    void **na = kiln_arena_array(a, (size_t)nc, sizeof *na);
    if (*n) memcpy(na, *arr, (size_t)*n * sizeof *na);
    *arr = na;
    *cap = nc;
  }
  (*arr)[(*n)++] = item;
}

void kiln_lb_kernel(kiln_lb *b, const char *name, const kiln_node *node) {
  kiln_kernel *k = kiln_arena_alloc(b->p->arena, sizeof *k);
  k->name = kiln_arena_strdup(b->p->arena, name);
  k->node = node;
  k->nodes = &k->node;
  k->nnodes = node != NULL;
  push(b->p->arena, (void ***)&b->p->kernels, &b->p->nkernels, &b->p->cap_kernels, k);
  b->k = k;
  b->tail = &k->body;
  b->depth = 0;
}

kiln_buf *kiln_program_add_buf(kiln_program *p, const kiln_value *v, kiln_buf_kind kind) {
  kiln_buf *buf = kiln_arena_alloc(p->arena, sizeof *buf);
  buf->id = p->nbufs;
  buf->name = v->name;
  buf->dtype = v->dtype;
  buf->rank = v->rank;
  memcpy(buf->dims, v->dims, sizeof buf->dims);
  buf->numel = kiln_value_numel(v, 1);
  buf->kind = kind;
  buf->data = kind == KILN_BUF_WEIGHT || kind == KILN_BUF_STATE ? v->data : NULL;
  buf->io_index = kind == KILN_BUF_INPUT ? p->ninputs++ : kind == KILN_BUF_OUTPUT ? p->noutputs++ : -1;
  push(p->arena, (void ***)&p->bufs, &p->nbufs, &p->cap_bufs, buf);
  return buf;
}

const kiln_buf *kiln_buf_root(const kiln_buf *b, int64_t *byte_offset) {
  int64_t off = 0;
  for (; b->view_of; b = b->view_of) off += b->view_offset;
  if (byte_offset) *byte_offset = off;
  return b;
}

void kiln_program_state_init(const kiln_program *p, void *state) {
  if (p->state_bytes > 0) memset(state, 0, (size_t)p->state_bytes);
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_STATE && !b->view_of && b->data)
      memcpy((char *)state + b->offset, b->data, (size_t)b->numel * kiln_dtype_size(b->dtype));
  }
}

static kiln_lx *lx(kiln_lb *b, kiln_lx_kind kind, kiln_dtype t) {
  kiln_lx *e = alloc(b, sizeof *e);
  e->kind = kind;
  e->dtype = t;
  return e;
}

kiln_lx *kiln_lx_const_f(kiln_lb *b, kiln_dtype t, double v) {
  kiln_lx *e = lx(b, KILN_LX_CONST, t);
  e->f = v;
  /* saturating, NaN -> 0: (int64_t)v is undefined out of range */
  e->i = kiln_dtype_is_float(t) || v != v ? 0 : v >= 0x1p63 ? INT64_MAX : v < -0x1p63 ? INT64_MIN : (int64_t)v;
  return e;
}

kiln_lx *kiln_lx_const_i(kiln_lb *b, int64_t v) {
  kiln_lx *e = lx(b, KILN_LX_CONST, KILN_DT_I64);
  e->i = v;
  e->f = (double)v;
  return e;
}

kiln_lx *kiln_lx_index(kiln_lb *b, int var) {
  kiln_lx *e = lx(b, KILN_LX_INDEX, KILN_DT_I64);
  e->var = var;
  return e;
}

static kiln_dtype local_type(kiln_lb *b, int local, kiln_ls *s);
/* Records that the builder declared `local` with dtype t (kiln_kernel.local_dtype). */
static void note_local(kiln_lb *b, int local, kiln_dtype t) {
  kiln_kernel *k = b->k;
  if (local >= k->cap_local_dtype) {
    int cap = k->cap_local_dtype ? 2 * k->cap_local_dtype : 64;
    while (cap <= local) cap *= 2;
    kiln_dtype *d = kiln_arena_array(b->p->arena, (size_t)cap, sizeof *d); /* zeroed: UNDEF */
    if (k->cap_local_dtype) memcpy(d, k->local_dtype, sizeof *d * (size_t)k->cap_local_dtype);
    k->local_dtype = d, k->cap_local_dtype = cap;
  }
  k->local_dtype[local] = t;
}
kiln_lx *kiln_lx_local(kiln_lb *b, int local) {
  /* a lowering reads its locals many times: walking the kernel for each
   * read was quadratic in the kernel's size (register tiles: seconds) */
  const kiln_kernel *k = b->k;
  kiln_dtype t = local >= 0 && local < k->cap_local_dtype ? k->local_dtype[local] : KILN_DT_UNDEF;
  kiln_lx *e = lx(b, KILN_LX_LOCAL, t != KILN_DT_UNDEF ? t : local_type(b, local, b->k->body));
  e->var = local;
  return e;
}

kiln_lx *kiln_lx_load(kiln_lb *b, const kiln_buf *buf, kiln_lx *index) {
  kiln_lx *e = lx(b, KILN_LX_LOAD, buf->dtype);
  e->buf = buf;
  e->a = index;
  return e;
}

/* KILN_UN_BITCAST's result type: the other type of a's size. */
static kiln_dtype bitcast_type(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return KILN_DT_I32;
  case KILN_DT_I32: return KILN_DT_F32;
  case KILN_DT_F64: return KILN_DT_I64;
  case KILN_DT_I64: return KILN_DT_F64;
  default: KILN_ASSERT(!"bitcast of a type other than f32, i32, f64, i64"); return t;
  }
}

kiln_lx *kiln_lx_un(kiln_lb *b, kiln_lx_op op, kiln_lx *a) {
  kiln_dtype t = op == KILN_UN_NOT || op == KILN_UN_ISNAN ? KILN_DT_BOOL : op == KILN_UN_BITCAST ? bitcast_type(a->dtype) : a->dtype;
  kiln_lx *e = lx(b, KILN_LX_UN, t);
  e->op = op;
  e->a = a;
  return e;
}

kiln_lx *kiln_lx_bin(kiln_lb *b, kiln_lx_op op, kiln_lx *a, kiln_lx *c) {
  KILN_ASSERT(a->dtype == c->dtype || op == KILN_BIN_POW);
  kiln_lx *e = lx(b, KILN_LX_BIN, op >= KILN_BIN_LT ? KILN_DT_BOOL : a->dtype);
  e->op = op;
  e->a = a;
  e->b = c;
  return e;
}

kiln_lx *kiln_lx_select(kiln_lb *b, kiln_lx *cond, kiln_lx *a, kiln_lx *c) {
  KILN_ASSERT(a->dtype == c->dtype && cond->dtype == KILN_DT_BOOL);
  kiln_lx *e = lx(b, KILN_LX_SELECT, a->dtype);
  e->a = cond;
  e->b = a;
  e->c = c;
  return e;
}

kiln_lx *kiln_lx_fma(kiln_lb *b, kiln_lx *a, kiln_lx *m, kiln_lx *c) {
  KILN_ASSERT(a->dtype == m->dtype && a->dtype == c->dtype && (a->dtype == KILN_DT_F32 || a->dtype == KILN_DT_F64));
  kiln_lx *e = lx(b, KILN_LX_FMA, a->dtype);
  e->a = a;
  e->b = m;
  e->c = c;
  return e;
}

kiln_lx *kiln_lx_cast(kiln_lb *b, kiln_dtype t, kiln_lx *a) {
  if (a->dtype == t) return a;
  kiln_lx *e = lx(b, KILN_LX_CAST, t);
  e->a = a;
  return e;
}

kiln_lx *kiln_lx_iadd(kiln_lb *b, kiln_lx *a, kiln_lx *c) {
  if (a->kind == KILN_LX_CONST && a->i == 0) return c;
  if (c->kind == KILN_LX_CONST && c->i == 0) return a;
  if (a->kind == KILN_LX_CONST && c->kind == KILN_LX_CONST) return kiln_lx_const_i(b, a->i + c->i);
  return kiln_lx_bin(b, KILN_BIN_ADD, a, c);
}

kiln_lx *kiln_lx_imul(kiln_lb *b, kiln_lx *a, int64_t k) {
  if (k == 0) return kiln_lx_const_i(b, 0);
  if (k == 1) return a;
  if (a->kind == KILN_LX_CONST) return kiln_lx_const_i(b, a->i * k);
  return kiln_lx_bin(b, KILN_BIN_MUL, a, kiln_lx_const_i(b, k));
}

static kiln_ls *ls(kiln_lb *b, kiln_ls_kind kind) {
  kiln_ls *s = alloc(b, sizeof *s);
  s->kind = kind;
  *b->tail = s;
  b->tail = &s->next;
  return s;
}

int kiln_lb_for(kiln_lb *b, int64_t extent, kiln_sched sched) {
  kiln_ls *s = ls(b, KILN_LS_FOR);
  s->var = b->k->nvars++;
  s->extent = extent;
  s->sched = sched;
  KILN_ASSERT(b->depth < 32);
  b->stack[b->depth++] = b->tail;
  b->tail = &s->body;
  return s->var;
}

void kiln_lb_if(kiln_lb *b, kiln_lx *cond) {
  kiln_ls *s = ls(b, KILN_LS_IF);
  s->value = cond;
  KILN_ASSERT(b->depth < 32);
  b->stack[b->depth++] = b->tail;
  b->tail = &s->body;
}

void kiln_lb_else(kiln_lb *b) {
  /* the IF statement is the one whose `next` the saved tail points at */
  kiln_ls **saved = b->stack[b->depth - 1];
  kiln_ls *s = (kiln_ls *)((char *)saved - offsetof(kiln_ls, next));
  b->tail = &s->orelse;
}

void kiln_lb_end(kiln_lb *b) {
  KILN_ASSERT(b->depth > 0);
  b->tail = b->stack[--b->depth];
}

void kiln_lb_store(kiln_lb *b, const kiln_buf *buf, kiln_lx *index, kiln_lx *value) {
  kiln_ls *s = ls(b, KILN_LS_STORE);
  s->buf = buf;
  s->index = index;
  s->value = kiln_lx_cast(b, buf->dtype, value);
}

int kiln_lb_decl(kiln_lb *b, kiln_dtype t, kiln_lx *init) {
  kiln_ls *s = ls(b, KILN_LS_DECL);
  s->var = b->k->nlocals++;
  s->dtype = t;
  s->value = kiln_lx_cast(b, t, init);
  note_local(b, s->var, t);
  return s->var;
}

void kiln_lb_assign(kiln_lb *b, int local, kiln_lx *value) {
  kiln_ls *s = ls(b, KILN_LS_ASSIGN);
  s->var = local;
  s->value = value;
}

kiln_buf *kiln_lb_alloc(kiln_lb *b, const char *name, kiln_scope scope, kiln_dtype t, int64_t numel) {
  KILN_ASSERT(scope != KILN_SCOPE_GLOBAL && numel > 0);
  kiln_kernel *k = b->k;
  kiln_buf *buf = alloc(b, sizeof *buf);
  buf->id = k->nallocs;
  buf->name = kiln_arena_strdup(b->p->arena, name);
  buf->dtype = t;
  buf->rank = 1;
  buf->dims[0] = buf->numel = numel;
  buf->kind = KILN_BUF_WORKSPACE;
  buf->io_index = -1;
  buf->scope = scope;
  push(b->p->arena, (void ***)&k->allocs, &k->nallocs, &k->cap_allocs, buf);
  ls(b, KILN_LS_ALLOC)->buf = buf;
  return buf;
}

void kiln_lb_barrier(kiln_lb *b) { ls(b, KILN_LS_BARRIER); }

void kiln_lb_prefetch(kiln_lb *b, const kiln_buf *buf, kiln_lx *index) {
  kiln_ls *s = ls(b, KILN_LS_PREFETCH);
  s->buf = buf;
  s->index = index;
}

void kiln_lb_prefetch_l1(kiln_lb *b, const kiln_buf *buf, kiln_lx *index) {
  kiln_ls *s = ls(b, KILN_LS_PREFETCH);
  s->buf = buf;
  s->index = index;
  s->near = 1;
}

void kiln_lb_mma(kiln_lb *b, const kiln_buf *c, const kiln_buf *a, const kiln_buf *bf, int wm, int wn) {
  kiln_ls *s = ls(b, KILN_LS_MMA);
  s->buf = c;
  s->mma.a = a;
  s->mma.b = bf;
  s->mma.wm = wm;
  s->mma.wn = wn;
}

static int launch_walk(const kiln_ls *s, kiln_launch *l, int *seen) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_FOR && s->sched.gpu >= 1 && s->sched.gpu <= 6) {
      int a = s->sched.gpu - 1;
      if (seen[a]++) return -1;
      (a < 3 ? l->grid : l->block)[a % 3] = s->extent;
    }
    if (launch_walk(s->body, l, seen) || launch_walk(s->orelse, l, seen)) return -1;
  }
  return 0;
}

int kiln_kernel_launch_of(const kiln_kernel *k, kiln_launch *out) {
  kiln_launch l = {{1, 1, 1}, {1, 1, 1}};
  int seen[6] = {0};
  if (launch_walk(k->body, &l, seen)) return -1;
  *out = l;
  return 0;
}

void kiln_lb_launch(kiln_lb *b) {
  kiln_launch *l = alloc(b, sizeof *l);
  KILN_ASSERT(kiln_kernel_launch_of(b->k, l) == 0);
  b->k->launch = l;
}

int kiln_lb_reduce_begin(kiln_lb *b, kiln_reduce_op op, kiln_dtype t, kiln_lx *init, kiln_sched sched) {
  kiln_ls *s = ls(b, KILN_LS_REDUCE);
  s->var = b->k->nlocals++;
  s->dtype = t;
  note_local(b, s->var, t);
  s->reduce = op;
  s->sched = sched;
  s->value = init ? kiln_lx_cast(b, t, init) : kiln_lx_reduce_identity(b, op, t);
  KILN_ASSERT(b->depth < 32);
  b->stack[b->depth++] = b->tail;
  b->tail = &s->body;
  return s->var;
}

void kiln_lb_combine(kiln_lb *b, int local, kiln_lx *value) {
  /* the REDUCE of `local` is one of the open statements (as in kiln_lb_else) */
  const kiln_ls *r = NULL;
  for (int d = b->depth - 1; d >= 0 && !r; d--) {
    kiln_ls *s = (kiln_ls *)((char *)b->stack[d] - offsetof(kiln_ls, next));
    if (s->kind == KILN_LS_REDUCE && s->var == local) r = s;
  }
  KILN_ASSERT(r != NULL);
  kiln_ls *s = ls(b, KILN_LS_COMBINE);
  s->var = local;
  s->dtype = r->dtype;
  s->reduce = r->reduce;
  /* an accurate sum (f64 of f32 values) keeps its f32 values */
  int accurate = r->reduce == KILN_RED_ADD && r->dtype == KILN_DT_F64 && value->dtype == KILN_DT_F32;
  s->value = accurate ? value : kiln_lx_cast(b, r->dtype, value);
}

void kiln_lb_reduce_end(kiln_lb *b) { kiln_lb_end(b); }

kiln_lx *kiln_lx_max_nan(kiln_lb *b, int is_max, kiln_lx *acc, kiln_lx *x) {
  kiln_lx *take = is_max ? kiln_lx_bin(b, KILN_BIN_LT, acc, x) : kiln_lx_bin(b, KILN_BIN_LT, x, acc);
  if (kiln_dtype_is_float(x->dtype)) take = kiln_lx_bin(b, KILN_BIN_OR, take, kiln_lx_un(b, KILN_UN_ISNAN, x));
  return kiln_lx_select(b, take, x, acc);
}

kiln_lx *kiln_lx_reduce_identity(kiln_lb *b, kiln_reduce_op op, kiln_dtype t) {
  kiln_lx *e = kiln_lx_const_f(b, t, 0);
  if (op == KILN_RED_ADD) return e;
  int is_max = op == KILN_RED_MAX || op == KILN_RED_MAX_NAN;
  if (kiln_dtype_is_float(t)) {
    e->f = is_max ? -INFINITY : INFINITY;
    return e;
  }
  int bits = (int)kiln_dtype_size(t) * 8;
  int sign = t == KILN_DT_I8 || t == KILN_DT_I16 || t == KILN_DT_I32 || t == KILN_DT_I64;
  if (t == KILN_DT_BOOL) e->i = !is_max;
  else if (sign) e->i = is_max ? (bits == 64 ? INT64_MIN : -((int64_t)1 << (bits - 1)))
                               : (bits == 64 ? INT64_MAX : ((int64_t)1 << (bits - 1)) - 1);
  else e->i = is_max ? 0 : bits == 64 ? -1 /* u64 max, as its bit pattern */ : (int64_t)(((uint64_t)1 << bits) - 1);
  e->f = t == KILN_DT_U64 && !is_max ? 0x1p64 - 1 : (double)e->i;
  return e;
}

static kiln_dtype local_type(kiln_lb *b, int local, kiln_ls *s) {
  (void)b;
  for (; s; s = s->next) {
    if ((s->kind == KILN_LS_DECL || s->kind == KILN_LS_REDUCE) && s->var == local) return s->dtype;
    kiln_dtype t = KILN_DT_UNDEF;
    if (s->body) t = local_type(b, local, s->body);
    if (t == KILN_DT_UNDEF && s->orelse) t = local_type(b, local, s->orelse);
    if (t != KILN_DT_UNDEF) return t;
  }
  return KILN_DT_UNDEF;
}

/* ---- dump ---- */
static const char *const op_names[KILN_LX_OP_COUNT] = {
    "neg", "abs", "exp", "log", "sqrt", "tanh", "erf", "floor", "ceil", "round_even", "not", "isnan", "tf32", "bitcast",
    "+", "-", "*", "/", "%", "min", "max", "pow", "^", "<", "<=", "==", "!=", "&&", "||"};

const char *kiln_lx_op_name(kiln_lx_op op) { return (unsigned)op < KILN_LX_OP_COUNT ? op_names[op] : "?"; }

static const char *const reduce_names[KILN_RED_OP_COUNT] = {"add", "max", "min", "max_nan", "min_nan"};

const char *kiln_reduce_op_name(kiln_reduce_op op) {
  return (unsigned)op < KILN_RED_OP_COUNT ? reduce_names[op] : "?";
}

static void print_local(const kiln_kernel *k, int v, FILE *f) {
  if (k && k->local_names && k->local_names[v]) fprintf(f, "%s", k->local_names[v]);
  else fprintf(f, "t%d", v);
}

static void print_lx(const kiln_kernel *k, const kiln_lx *e, FILE *f) {
  switch (e->kind) {
  case KILN_LX_CONST:
    if (kiln_dtype_is_float(e->dtype)) fprintf(f, "%.9g", e->f);
    else if (e->dtype == KILN_DT_U64) fprintf(f, "%" PRIu64, (uint64_t)e->i);
    else fprintf(f, "%" PRId64, e->i);
    break;
  case KILN_LX_INDEX: fprintf(f, "i%d", e->var); break;
  case KILN_LX_LOCAL: print_local(k, e->var, f); break;
  case KILN_LX_LOAD: fputc('%', f); kiln_put_display(f, e->buf->name); fputc('[', f); print_lx(k, e->a, f); fprintf(f, "]"); break;
  case KILN_LX_UN: fprintf(f, "%s(", op_names[e->op]); print_lx(k, e->a, f); fprintf(f, ")"); break;
  case KILN_LX_BIN:
    if (e->op >= KILN_BIN_MIN && e->op <= KILN_BIN_POW) {
      fprintf(f, "%s(", op_names[e->op]); print_lx(k, e->a, f); fprintf(f, ", "); print_lx(k, e->b, f); fprintf(f, ")");
    } else {
      fprintf(f, "("); print_lx(k, e->a, f); fprintf(f, " %s ", op_names[e->op]); print_lx(k, e->b, f); fprintf(f, ")");
    }
    break;
  case KILN_LX_SELECT:
    fprintf(f, "("); print_lx(k, e->a, f); fprintf(f, " ? "); print_lx(k, e->b, f); fprintf(f, " : ");
    print_lx(k, e->c, f); fprintf(f, ")");
    break;
  case KILN_LX_CAST: fprintf(f, "%s(", kiln_dtype_name(e->dtype)); print_lx(k, e->a, f); fprintf(f, ")"); break;
  case KILN_LX_FMA:
    fprintf(f, "fma("); print_lx(k, e->a, f); fprintf(f, ", "); print_lx(k, e->b, f); fprintf(f, ", ");
    print_lx(k, e->c, f); fprintf(f, ")");
    break;
  }
}

void kiln_lx_print(const kiln_kernel *k, const kiln_lx *e, FILE *f) { print_lx(k, e, f); }

static void print_ls(const kiln_kernel *k, const kiln_ls *s, int ind, FILE *f) {
  for (; s; s = s->next) {
    fprintf(f, "%*s", ind, "");
    switch (s->kind) {
    case KILN_LS_FOR:
      fprintf(f, "for i%d in 0..%" PRId64 "%s%s%s", s->var, s->extent, s->sched.parallel ? " parallel" : "",
              s->sched.threads ? " threads" : "", s->sched.masked_tail ? " masked" : "");
      if (s->sched.gpu >= 1 && s->sched.gpu <= 6)
        fprintf(f, " %s.%c", s->sched.gpu <= 3 ? "blockIdx" : "threadIdx", "xyz"[(s->sched.gpu - 1) % 3]);
      fprintf(f, ":\n");
      print_ls(k, s->body, ind + 2, f);
      break;
    case KILN_LS_STORE:
      fputc('%', f); kiln_put_display(f, s->buf->name); fputc('[', f); print_lx(k, s->index, f); fprintf(f, "] = "); print_lx(k, s->value, f);
      fprintf(f, "\n");
      break;
    case KILN_LS_DECL:
      print_local(k, s->var, f);
      fprintf(f, " : %s = ", kiln_dtype_name(s->dtype)); print_lx(k, s->value, f); fprintf(f, "\n");
      break;
    case KILN_LS_ASSIGN: print_local(k, s->var, f); fprintf(f, " = "); print_lx(k, s->value, f); fprintf(f, "\n"); break;
    case KILN_LS_IF:
      fprintf(f, "if "); print_lx(k, s->value, f); fprintf(f, ":\n");
      print_ls(k, s->body, ind + 2, f);
      if (s->orelse) { fprintf(f, "%*selse:\n", ind, ""); print_ls(k, s->orelse, ind + 2, f); }
      break;
    case KILN_LS_BARRIER: fprintf(f, "barrier\n"); break;
    case KILN_LS_PREFETCH:
      fprintf(f, "%s %%", s->near ? "prefetch.l1" : "prefetch"); kiln_put_display(f, s->buf->name); fputc('[', f); print_lx(k, s->index, f); fprintf(f, "]\n");
      break;
    case KILN_LS_MMA:
      fputc('%', f); kiln_put_display(f, s->buf->name);
      fprintf(f, " += mma_m16n8k8_tf32 x%dx%d(%%", s->mma.wm, s->mma.wn); kiln_put_display(f, s->mma.a->name);
      fprintf(f, ", %%"); kiln_put_display(f, s->mma.b->name); fprintf(f, ")\n");
      break;
    case KILN_LS_ALLOC:
      fprintf(f, "alloc %s %%", s->buf->scope == KILN_SCOPE_SHARED ? "shared" : "local");
      kiln_put_display(f, s->buf->name);
      fprintf(f, " : %s[%" PRId64 "]\n", kiln_dtype_name(s->buf->dtype), s->buf->numel);
      break;
    case KILN_LS_REDUCE:
      print_local(k, s->var, f);
      fprintf(f, " : %s = reduce %s from ", kiln_dtype_name(s->dtype), kiln_reduce_op_name(s->reduce));
      print_lx(k, s->value, f);
      if (s->sched.vector > 1) fprintf(f, " lanes %d", s->sched.vector);
      fprintf(f, ":\n");
      print_ls(k, s->body, ind + 2, f);
      break;
    case KILN_LS_COMBINE: fprintf(f, "combine "); print_local(k, s->var, f); fprintf(f, " <- "); print_lx(k, s->value, f); fprintf(f, "\n"); break;
    }
  }
}

void kiln_program_print(const kiln_program *p, FILE *f) {
  static const char *const kinds[] = {"input", "output", "weight", "workspace", "state"};
  if (p->images > 1) { /* passes/per_image.c */
    fprintf(f, "# one image at a time: the kernels run %" PRId64 " times a run, on image n of the inputs and outputs", p->images);
    if (p->image_slots > 1)
      fprintf(f, "; up to %" PRId64 " images at once, one a thread, a workspace of %" PRId64 " bytes each", p->image_slots,
              p->image_workspace_bytes);
    fprintf(f, "\n");
  }
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    fprintf(f, "buffer %%");
    kiln_put_display(f, b->name);
    fprintf(f, " : %s[%" PRId64 "] %s", kiln_dtype_name(b->dtype), b->numel, kinds[b->kind]);
    if (b->view_of) {
      fprintf(f, " view of %%");
      kiln_put_display(f, b->view_of->name);
      fprintf(f, " +%" PRId64, b->view_offset);
    } else if (b->kind == KILN_BUF_WORKSPACE || b->kind == KILN_BUF_STATE) {
      fprintf(f, " @%" PRId64, b->offset);
    }
    fprintf(f, "\n");
  }
  for (int i = 0; i < p->nkernels; i++) {
    fprintf(f, "kernel ");
    kiln_put_display(f, p->kernels[i]->name);
    const kiln_launch *l = p->kernels[i]->launch;
    if (l)
      fprintf(f, " launch grid(%" PRId64 ", %" PRId64 ", %" PRId64 ") block(%" PRId64 ", %" PRId64 ", %" PRId64 ")",
              l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2]);
    fprintf(f, ":");
    /* a kernel that computes more than its node lists them (epilogues) */
    for (int j = 0; p->kernels[i]->nnodes > 1 && j < p->kernels[i]->nnodes; j++) {
      const kiln_node *n = p->kernels[i]->nodes[j];
      fprintf(f, "%s'", j ? ", " : "  # nodes ");
      kiln_put_display(f, n->name);
      fprintf(f, "' (%s)", kiln_op_get(n->op)->name);
    }
    fprintf(f, "\n");
    print_ls(p->kernels[i], p->kernels[i]->body, 2, f);
  }
}

int kiln_lx_div_needs_guard(const kiln_lx *divisor) {
  if (divisor->kind != KILN_LX_CONST || kiln_dtype_is_float(divisor->dtype)) return 1;
  return divisor->i == 0 || divisor->i == -1;
}

int kiln_lx_is_index_expr(const kiln_kernel *k, const kiln_lx *e) {
  switch (e->kind) {
  case KILN_LX_CONST: return !kiln_dtype_is_float(e->dtype);
  case KILN_LX_INDEX: return 1;
  case KILN_LX_LOCAL: return k && k->local_index && e->var < k->nlocals && k->local_index[e->var];
  case KILN_LX_BIN:
    switch (e->op) {
    case KILN_BIN_ADD: case KILN_BIN_SUB: case KILN_BIN_MUL: case KILN_BIN_DIV: case KILN_BIN_REM:
    case KILN_BIN_MIN: case KILN_BIN_MAX:
      return kiln_lx_is_index_expr(k, e->a) && kiln_lx_is_index_expr(k, e->b);
    default: return 0;
    }
  default: return 0;
  }
}
