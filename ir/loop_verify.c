/* The loop-IR verifier: checks a lowered program's invariants, the ones
 * every printer and the interpreter rely on without checking themselves.
 * kiln_lower runs it after lowering and again after the index simplifier in
 * debug builds (and whenever KILN_VERIFY_LOOPS is set, as the conformance
 * runners do), so a lowering bug is reported where it is made, not as a
 * wrong number or a crash in generated code.
 *
 * One walk per kernel, keeping what is in scope:
 *  - a loop var is used only inside its loop (and no loop reuses the var
 *    of a loop it is nested in);
 *  - a local is declared (DECL) before use, in an enclosing block, once;
 *  - stores go only to outputs and workspace, never to inputs or weights;
 *  - types agree: BIN operands share a dtype (POW may mix, as the builder
 *    allows), IF and SELECT conditions and AND/OR operands are bool, load
 *    and store indices are i64, a stored / declared / assigned value has
 *    its destination's dtype, a local read has its declaration's dtype;
 *  - a barrier sits under a GPU-bound loop;
 *  - a load or store index lies in [0, numel) of its buffer.  Ranges come
 *    from the simplifier's interval analysis (kiln_index_range).  An index
 *    is reported only when it is provably out of range: its whole interval
 *    lies outside the buffer, or the access is unconditional (under no IF
 *    and in no SELECT arm) and the index is affine in distinct loop vars
 *    (through never-assigned locals), where the interval is exact because
 *    every loop is a full rectangle.  Otherwise it stays silent: guarded
 *    padding reads are legal and intervals over-approximate.
 * Every error names the kernel and, through the node's location, the graph
 * node it computes; the first goes into the diagnostic, all are counted. */
#include <stdlib.h>
#include <string.h>

#include "../passes/lower.h"

typedef struct vctx {
  const kiln_program *p;
  const kiln_kernel *k;
  kiln_diag *d;
  int nerr;
  int nvars, nlocals;        /* array sizes (>= the kernel's counts) */
  int64_t *var_ext;          /* extent of each open loop var */
  char *var_open;
  char *local_live;          /* declared and in scope */
  char *local_assigned;      /* ASSIGNed anywhere in the kernel */
  kiln_dtype *local_type;
  kiln_index_rng *local_rng; /* never-assigned i64 locals */
  const kiln_lx **local_def; /* their declared values */
  char *seen;                /* scratch for affine() */
  int gpu_depth;             /* enclosing GPU-bound loops */
  int cond_depth;            /* enclosing IFs and SELECT arms */
  int empty_depth;           /* enclosing loops that never run */
} vctx;

static void verr(vctx *V, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(vctx *V, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  V->nerr++;
  kiln_error(V->d, V->k->node ? &V->k->node->loc : NULL, "loop IR: kernel '%s': %s", V->k->name, msg);
}

static const char *expr_str(vctx *V, const kiln_lx *e, char *buf, size_t size) {
  FILE *f = fmemopen(buf, size, "w");
  if (!f) return "?";
  kiln_lx_print(V->k, e, f);
  fclose(f);
  buf[size - 1] = 0;
  return buf;
}

/* e is affine in loop vars each used once: the interval is exact. */
static int affine(vctx *V, const kiln_lx *e) {
  switch (e->kind) {
  case KILN_LX_CONST: return 1;
  case KILN_LX_INDEX:
    if (V->seen[e->var]) return 0;
    V->seen[e->var] = 1;
    return 1;
  case KILN_LX_LOCAL: return V->local_def[e->var] && affine(V, V->local_def[e->var]);
  case KILN_LX_BIN:
    if (e->op == KILN_BIN_ADD || e->op == KILN_BIN_SUB) return affine(V, e->a) && affine(V, e->b);
    if (e->op == KILN_BIN_MUL && e->b->kind == KILN_LX_CONST) return affine(V, e->a);
    if (e->op == KILN_BIN_MUL && e->a->kind == KILN_LX_CONST) return affine(V, e->b);
    return 0;
  default: return 0;
  }
}

static void check_bounds(vctx *V, const char *what, const kiln_buf *b, const kiln_lx *idx) {
  if (V->empty_depth) return;
  kiln_index_env env = {V->var_ext, V->local_rng, V->nlocals};
  int64_t lo, hi;
  if (!kiln_index_range(&env, idx, &lo, &hi)) return;
  int outside = hi < 0 || lo >= b->numel;
  if (!outside && (lo < 0 || hi >= b->numel) && !V->cond_depth) {
    memset(V->seen, 0, (size_t)V->nvars);
    outside = affine(V, idx);
  }
  if (!outside) return;
  char s[256];
  verr(V, "%s index %s of '%s' takes values in [%lld, %lld], outside [0, %lld)", what, expr_str(V, idx, s, sizeof s),
       b->name, (long long)lo, (long long)hi, (long long)b->numel);
}

static int own_buf(vctx *V, const kiln_buf *b) {
  return b && b->id >= 0 && b->id < V->p->nbufs && V->p->bufs[b->id] == b;
}

static void vx(vctx *V, const kiln_lx *e);

static void vx_index(vctx *V, const char *what, const kiln_buf *b, const kiln_lx *idx) {
  if (!idx) { verr(V, "%s of '%s' has no index", what, b->name); return; }
  if (idx->dtype != KILN_DT_I64)
    verr(V, "%s index of '%s' is %s, not i64", what, b->name, kiln_dtype_name(idx->dtype));
  int before = V->nerr;
  vx(V, idx);
  if (V->nerr == before && idx->dtype == KILN_DT_I64) check_bounds(V, what, b, idx);
}

static void vx(vctx *V, const kiln_lx *e) {
  if (!e) { verr(V, "missing operand"); return; }
  switch (e->kind) {
  case KILN_LX_CONST: break;
  case KILN_LX_INDEX:
    if (e->var < 0 || e->var >= V->k->nvars || !V->var_open[e->var])
      verr(V, "loop var i%d used outside its loop", e->var);
    else if (e->dtype != KILN_DT_I64)
      verr(V, "loop var i%d read as %s, not i64", e->var, kiln_dtype_name(e->dtype));
    break;
  case KILN_LX_LOCAL:
    if (e->var < 0 || e->var >= V->k->nlocals || !V->local_live[e->var])
      verr(V, "local t%d used before its declaration or outside its block", e->var);
    else if (e->dtype != V->local_type[e->var])
      verr(V, "local t%d declared %s, read as %s", e->var, kiln_dtype_name(V->local_type[e->var]),
           kiln_dtype_name(e->dtype));
    break;
  case KILN_LX_LOAD:
    if (!own_buf(V, e->buf)) { verr(V, "load from a buffer not in the program"); break; }
    if (e->dtype != e->buf->dtype)
      verr(V, "load from '%s' (%s) typed %s", e->buf->name, kiln_dtype_name(e->buf->dtype), kiln_dtype_name(e->dtype));
    vx_index(V, "load", e->buf, e->a);
    break;
  case KILN_LX_UN: vx(V, e->a); break;
  case KILN_LX_BIN:
    vx(V, e->a);
    vx(V, e->b);
    if (!e->a || !e->b) break;
    if (e->a->dtype != e->b->dtype && e->op != KILN_BIN_POW)
      verr(V, "operands of '%s' have different types: %s and %s", kiln_lx_op_name(e->op),
           kiln_dtype_name(e->a->dtype), kiln_dtype_name(e->b->dtype));
    else if ((e->op == KILN_BIN_AND || e->op == KILN_BIN_OR) && e->a->dtype != KILN_DT_BOOL)
      verr(V, "operands of '%s' are %s, not bool", kiln_lx_op_name(e->op), kiln_dtype_name(e->a->dtype));
    break;
  case KILN_LX_SELECT:
    vx(V, e->a);
    if (e->a && e->a->dtype != KILN_DT_BOOL)
      verr(V, "select condition is %s, not bool", kiln_dtype_name(e->a->dtype));
    V->cond_depth++;
    vx(V, e->b);
    vx(V, e->c);
    V->cond_depth--;
    if (e->b && e->c && (e->b->dtype != e->dtype || e->c->dtype != e->dtype))
      verr(V, "select arms are %s and %s, the select %s", kiln_dtype_name(e->b->dtype), kiln_dtype_name(e->c->dtype),
           kiln_dtype_name(e->dtype));
    break;
  case KILN_LX_CAST: vx(V, e->a); break;
  }
}

static void vs_block(vctx *V, const kiln_ls *s);

static void vs(vctx *V, const kiln_ls *s) {
  switch (s->kind) {
  case KILN_LS_FOR:
    if (s->var < 0 || s->var >= V->k->nvars) { verr(V, "loop var i%d out of the kernel's %d", s->var, V->k->nvars); break; }
    if (V->var_open[s->var]) { verr(V, "loop var i%d reused by a loop nested in its own", s->var); break; }
    V->var_open[s->var] = 1;
    V->var_ext[s->var] = s->extent;
    V->gpu_depth += s->sched.gpu != 0;
    V->empty_depth += s->extent <= 0;
    vs_block(V, s->body);
    V->gpu_depth -= s->sched.gpu != 0;
    V->empty_depth -= s->extent <= 0;
    V->var_open[s->var] = 0;
    break;
  case KILN_LS_STORE:
    if (!own_buf(V, s->buf)) { verr(V, "store to a buffer not in the program"); break; }
    { /* a view is writable when the memory it shares is */
      const kiln_buf *r = kiln_buf_root(s->buf, NULL);
      if (r->kind != KILN_BUF_OUTPUT && r->kind != KILN_BUF_WORKSPACE && r->kind != KILN_BUF_STATE)
        verr(V, "store to '%s', a read-only %s buffer", s->buf->name, r->kind == KILN_BUF_INPUT ? "input" : "weight");
    }
    vx_index(V, "store", s->buf, s->index);
    vx(V, s->value);
    if (s->value && s->value->dtype != s->buf->dtype)
      verr(V, "store of a %s value into '%s' (%s)", kiln_dtype_name(s->value->dtype), s->buf->name,
           kiln_dtype_name(s->buf->dtype));
    break;
  case KILN_LS_DECL:
    vx(V, s->value);
    if (s->var < 0 || s->var >= V->k->nlocals) { verr(V, "local t%d out of the kernel's %d", s->var, V->k->nlocals); break; }
    if (V->local_live[s->var]) verr(V, "local t%d declared twice", s->var);
    if (s->value && s->value->dtype != s->dtype)
      verr(V, "local t%d declared %s, initialised with %s", s->var, kiln_dtype_name(s->dtype),
           kiln_dtype_name(s->value->dtype));
    V->local_live[s->var] = 1;
    V->local_type[s->var] = s->dtype;
    if (s->dtype == KILN_DT_I64 && !V->local_assigned[s->var] && s->value) {
      kiln_index_env env = {V->var_ext, V->local_rng, V->nlocals};
      kiln_index_rng *r = &V->local_rng[s->var];
      r->ok = kiln_index_range(&env, s->value, &r->lo, &r->hi);
      V->local_def[s->var] = s->value;
    }
    break;
  case KILN_LS_ASSIGN:
    vx(V, s->value);
    if (s->var < 0 || s->var >= V->k->nlocals || !V->local_live[s->var])
      verr(V, "assignment to local t%d before its declaration or outside its block", s->var);
    else if (s->value && s->value->dtype != V->local_type[s->var])
      verr(V, "local t%d declared %s, assigned %s", s->var, kiln_dtype_name(V->local_type[s->var]),
           kiln_dtype_name(s->value->dtype));
    break;
  case KILN_LS_IF:
    vx(V, s->value);
    if (s->value && s->value->dtype != KILN_DT_BOOL)
      verr(V, "if condition is %s, not bool", kiln_dtype_name(s->value->dtype));
    V->cond_depth++;
    vs_block(V, s->body);
    vs_block(V, s->orelse);
    V->cond_depth--;
    break;
  case KILN_LS_BARRIER:
    if (!V->gpu_depth) verr(V, "barrier outside any GPU-bound loop");
    break;
  }
}

/* A block's locals go out of scope at its end. */
static void vs_block(vctx *V, const kiln_ls *s) {
  for (const kiln_ls *t = s; t; t = t->next) vs(V, t);
  for (const kiln_ls *t = s; t; t = t->next)
    if (t->kind == KILN_LS_DECL && t->var >= 0 && t->var < V->k->nlocals) V->local_live[t->var] = 0;
}

static void scan_assigned(vctx *V, const kiln_ls *s) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_ASSIGN && s->var >= 0 && s->var < V->k->nlocals) V->local_assigned[s->var] = 1;
    scan_assigned(V, s->body);
    scan_assigned(V, s->orelse);
  }
}

int kiln_loop_verify(const kiln_program *p, kiln_diag *d) {
  int nerr = 0;
  for (int i = 0; i < p->nkernels; i++) {
    const kiln_kernel *k = p->kernels[i];
    vctx V = {.p = p, .k = k, .d = d};
    V.nvars = k->nvars > 0 ? k->nvars : 1;
    V.nlocals = k->nlocals > 0 ? k->nlocals : 1;
    V.var_ext = calloc((size_t)V.nvars, sizeof *V.var_ext);
    V.var_open = calloc((size_t)V.nvars, 1);
    V.seen = calloc((size_t)V.nvars, 1);
    V.local_live = calloc((size_t)V.nlocals, 1);
    V.local_assigned = calloc((size_t)V.nlocals, 1);
    V.local_type = calloc((size_t)V.nlocals, sizeof *V.local_type);
    V.local_rng = calloc((size_t)V.nlocals, sizeof *V.local_rng);
    V.local_def = calloc((size_t)V.nlocals, sizeof *V.local_def);
    KILN_ASSERT(V.var_ext && V.var_open && V.seen && V.local_live && V.local_assigned && V.local_type && V.local_rng &&
                V.local_def);
    scan_assigned(&V, k->body);
    vs_block(&V, k->body);
    nerr += V.nerr;
    free(V.var_ext); free(V.var_open); free(V.seen); free(V.local_live); free(V.local_assigned);
    free(V.local_type); free(V.local_rng); free(V.local_def);
  }
  return nerr;
}

int kiln_loop_verify_wanted(void) {
#ifndef NDEBUG
  return 1;
#else
  const char *v = getenv("KILN_VERIFY_LOOPS");
  return v && *v && strcmp(v, "0") != 0;
#endif
}
