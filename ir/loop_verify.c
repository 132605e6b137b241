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
 *  - GPU kernels (k->launch, ir/loop.h's GPU section): the recorded launch
 *    is what the bound loops give; block-bound loops nest at the top, the
 *    thread-bound ones perfectly, in the block body, under no sequential
 *    loop or IF; the block body holds only SHARED allocations, locals and
 *    the thread nest (any other statement would run once per thread); a
 *    LOCAL allocation sits under the thread loops; a barrier under the
 *    thread loops and under no IF whose condition may differ between
 *    threads (one reading a thread var, a load, or an assigned local); a
 *    SHARED or LOCAL buffer is used only by its kernel, where allocated.
 *    CPU kernels bind no loop and allocate nothing;
 *  - a COMBINE sits inside the REDUCE of its local and has its dtype (or
 *    is an f32 value of an f64 ADD, an accurate sum); the reduced local is
 *    not read inside its REDUCE's body; once kiln_expand_reduce ran
 *    (p->reductions_expanded) no REDUCE or COMBINE is left;
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
#include "loop_walk.h"

typedef struct vctx {
  const kiln_program *p;
  const kiln_kernel *k;
  kiln_diag *d;
  int nerr;
  int nvars, nlocals;        /* array sizes (>= the kernel's counts) */
  int64_t *var_ext;          /* extent of each open loop var */
  char *var_open;
  char *local_live;          /* declared and in scope */
  unsigned char *local_assigned; /* kiln_loop_locals flags: KILN_LOCAL_ASSIGNED anywhere in the kernel */
  kiln_dtype *local_type;
  kiln_index_rng *local_rng; /* never-assigned i64 locals */
  const kiln_lx **local_def; /* their declared values */
  char *seen;                /* scratch for affine() */
  char *reduce_open;         /* per local: inside the body of its REDUCE */
  int gpu_depth;             /* enclosing GPU-bound loops */
  int cond_depth;            /* enclosing IFs and SELECT arms */
  int empty_depth;           /* enclosing loops that never run */
  int thread_depth;          /* enclosing thread-bound loops (GPU kernels) */
  int plain_depth;           /* enclosing unbound loops and IFs under them */
  int divergent_depth;       /* enclosing IFs whose condition may differ between threads */
  char *var_thread;          /* loop var bound to a thread axis */
  char *local_uniform;       /* never assigned, declared from a uniform value */
  char *alloc_live;          /* scoped buffers allocated and in scope */
} vctx;

static void verr(vctx *V, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(vctx *V, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  V->nerr++;
  char with[300] = "";
  size_t w = 0; /* the epilogue's nodes, when the kernel computes more than its node */
  for (int i = 1; i < V->k->nnodes && w < sizeof with; i++) {
    const kiln_node *st = V->k->nodes[i];
    w += (size_t)snprintf(with + w, sizeof with - w, "%s'%s' (%s)", i == 1 ? " (with " : ", ", st->name,
                          kiln_op_get(st->op)->name);
  }
  if (V->k->nnodes > 1 && w < sizeof with) snprintf(with + w, sizeof with - w, ")");
  kiln_error(V->d, V->k->node ? &V->k->node->loc : NULL, "loop IR: kernel '%s'%s: %s", V->k->name, with, msg);
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
  if (b && b->scope != KILN_SCOPE_GLOBAL) {
    if (b->id < 0 || b->id >= V->k->nallocs || V->k->allocs[b->id] != b)
      verr(V, "%s buffer '%s' used outside the kernel that allocates it",
           b->scope == KILN_SCOPE_SHARED ? "shared" : "local", b->name);
    else if (!V->alloc_live[b->id])
      verr(V, "%s buffer '%s' used outside the block that allocates it",
           b->scope == KILN_SCOPE_SHARED ? "shared" : "local", b->name);
    else return 1;
    return -1; /* reported */
  }
  return b && b->id >= 0 && b->id < V->p->nbufs && V->p->bufs[b->id] == b;
}

/* The same value in every thread of a block (see the top). */
static int uniform(vctx *V, const kiln_lx *e) {
  if (!e) return 1;
  switch (e->kind) {
  case KILN_LX_CONST: return 1;
  case KILN_LX_INDEX: return e->var >= 0 && e->var < V->nvars && !V->var_thread[e->var];
  case KILN_LX_LOCAL: return e->var >= 0 && e->var < V->nlocals && V->local_uniform[e->var];
  case KILN_LX_LOAD: return 0;
  default: return uniform(V, e->a) && uniform(V, e->b) && uniform(V, e->c);
  }
}

/* In a GPU kernel, a statement of kind `what` outside the thread loops. */
static void block_level(vctx *V, const char *what) {
  if (V->k->launch && !V->thread_depth)
    verr(V, "%s outside the thread-bound loops (every thread of the block would run it)", what);
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
  case KILN_LX_LOAD: {
    int own = own_buf(V, e->buf);
    if (own < 0) break;
    if (!own) { verr(V, "load from a buffer not in the program"); break; }
    if (e->dtype != e->buf->dtype)
      verr(V, "load from '%s' (%s) typed %s", e->buf->name, kiln_dtype_name(e->buf->dtype), kiln_dtype_name(e->dtype));
    vx_index(V, "load", e->buf, e->a);
    break;
  }
  case KILN_LX_UN:
    vx(V, e->a);
    if (e->op == KILN_UN_BITCAST && e->a && kiln_dtype_size(e->a->dtype) != kiln_dtype_size(e->dtype))
      verr(V, "bitcast of %s to %s", kiln_dtype_name(e->a->dtype), kiln_dtype_name(e->dtype));
    if (e->op == KILN_UN_TF32 && ((e->a && e->a->dtype != KILN_DT_F32) || !V->k->launch))
      verr(V, "tf32 rounding of a %s value%s (f32 in GPU kernels only)", e->a ? kiln_dtype_name(e->a->dtype) : "missing",
           V->k->launch ? "" : " in a CPU kernel");
    break;
  case KILN_LX_BIN:
    vx(V, e->a);
    vx(V, e->b);
    if (!e->a || !e->b) break;
    if (e->a->dtype != e->b->dtype && e->op != KILN_BIN_POW)
      verr(V, "operands of '%s' have different types: %s and %s", kiln_lx_op_name(e->op),
           kiln_dtype_name(e->a->dtype), kiln_dtype_name(e->b->dtype));
    else if ((e->op == KILN_BIN_AND || e->op == KILN_BIN_OR) && e->a->dtype != KILN_DT_BOOL)
      verr(V, "operands of '%s' are %s, not bool", kiln_lx_op_name(e->op), kiln_dtype_name(e->a->dtype));
    else if (e->op == KILN_BIN_XOR && !kiln_dtype_is_int(e->a->dtype))
      verr(V, "operands of '^' are %s, not integers", kiln_dtype_name(e->a->dtype));
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
  case KILN_LX_FMA:
    vx(V, e->a);
    vx(V, e->b);
    vx(V, e->c);
    if (!e->a || !e->b || !e->c) break;
    if ((e->dtype != KILN_DT_F32 && e->dtype != KILN_DT_F64) || e->a->dtype != e->dtype || e->b->dtype != e->dtype ||
        e->c->dtype != e->dtype)
      verr(V, "fma of %s, %s and %s into %s (f32 or f64 throughout)", kiln_dtype_name(e->a->dtype),
           kiln_dtype_name(e->b->dtype), kiln_dtype_name(e->c->dtype), kiln_dtype_name(e->dtype));
    break;
  }
}

static void vs_block(vctx *V, const kiln_ls *s);

static void vs(vctx *V, const kiln_ls *s) {
  switch (s->kind) {
  case KILN_LS_FOR: {
    if (s->var < 0 || s->var >= V->k->nvars) { verr(V, "loop var i%d out of the kernel's %d", s->var, V->k->nvars); break; }
    if (V->var_open[s->var]) { verr(V, "loop var i%d reused by a loop nested in its own", s->var); break; }
    int gb = s->sched.gpu, blk = gb >= 1 && gb <= 3, thr = gb >= 4 && gb <= 6;
    if (gb < 0 || gb > 6) verr(V, "loop i%d bound to %d, not a GPU axis", s->var, gb);
    else if (gb && !V->k->launch) verr(V, "loop i%d is GPU-bound in a kernel with no launch", s->var);
    else if (V->k->launch) {
      if (blk && (V->thread_depth || V->plain_depth))
        verr(V, "block-bound loop i%d is not in the block-loop nest at the top of the kernel", s->var);
      if (thr && V->plain_depth) verr(V, "thread-bound loop i%d under a sequential loop or IF", s->var);
      if (thr && s->body && s->body->next)
        for (const kiln_ls *t = s->body; t; t = t->next)
          if (t->kind == KILN_LS_FOR && t->sched.gpu >= 4) {
            verr(V, "thread-bound loops i%d and i%d are not perfectly nested", s->var, t->var);
            break;
          }
      if (!gb) block_level(V, "a sequential loop");
    }
    V->var_open[s->var] = 1;
    V->var_ext[s->var] = s->extent;
    V->var_thread[s->var] = (char)thr;
    V->gpu_depth += gb != 0;
    V->thread_depth += thr;
    V->plain_depth += gb == 0;
    V->empty_depth += s->extent <= 0;
    vs_block(V, s->body);
    V->gpu_depth -= gb != 0;
    V->thread_depth -= thr;
    V->plain_depth -= gb == 0;
    V->empty_depth -= s->extent <= 0;
    V->var_open[s->var] = 0;
    V->var_thread[s->var] = 0;
    break;
  }
  case KILN_LS_STORE: {
    block_level(V, "a store");
    int own = own_buf(V, s->buf);
    if (own < 0) break;
    if (!own) { verr(V, "store to a buffer not in the program"); break; }
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
  }
  case KILN_LS_DECL:
    vx(V, s->value);
    if (s->var < 0 || s->var >= V->k->nlocals) { verr(V, "local t%d out of the kernel's %d", s->var, V->k->nlocals); break; }
    if (V->local_live[s->var]) verr(V, "local t%d declared twice", s->var);
    if (s->value && s->value->dtype != s->dtype)
      verr(V, "local t%d declared %s, initialised with %s", s->var, kiln_dtype_name(s->dtype),
           kiln_dtype_name(s->value->dtype));
    V->local_live[s->var] = 1;
    V->local_type[s->var] = s->dtype;
    V->local_uniform[s->var] = !(V->local_assigned[s->var] & KILN_LOCAL_ASSIGNED) && uniform(V, s->value);
    if (s->dtype == KILN_DT_I64 && !(V->local_assigned[s->var] & KILN_LOCAL_ASSIGNED) && s->value) {
      kiln_index_env env = {V->var_ext, V->local_rng, V->nlocals};
      kiln_index_rng *r = &V->local_rng[s->var];
      r->ok = kiln_index_range(&env, s->value, &r->lo, &r->hi);
      V->local_def[s->var] = s->value;
    }
    break;
  case KILN_LS_ASSIGN:
    block_level(V, "an assignment");
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
    block_level(V, "an if");
    {
      int div = !uniform(V, s->value);
      V->cond_depth++;
      V->plain_depth++;
      V->divergent_depth += div;
      vs_block(V, s->body);
      vs_block(V, s->orelse);
      V->cond_depth--;
      V->plain_depth--;
      V->divergent_depth -= div;
    }
    break;
  case KILN_LS_PREFETCH: {
    int own = own_buf(V, s->buf);
    if (own < 0) break;
    if (!own || s->buf->scope != KILN_SCOPE_GLOBAL) { verr(V, "prefetch of a buffer not in the program's table"); break; }
    vx_index(V, "prefetch", s->buf, s->index);
    break;
  }
  case KILN_LS_BARRIER:
    if (!V->gpu_depth) verr(V, "barrier outside any GPU-bound loop");
    else if (V->k->launch && !V->thread_depth) verr(V, "barrier outside the thread-bound loops");
    else if (V->divergent_depth) verr(V, "barrier under an IF whose condition may differ between threads");
    break;
  case KILN_LS_MMA: { /* where a barrier may be (ir/loop.h, "TF32"), on LOCAL f32 fragments */
    if (!V->k->launch || !V->thread_depth) verr(V, "warp mma outside the thread-bound loops of a GPU kernel");
    else if (V->divergent_depth) verr(V, "warp mma under an IF whose condition may differ between threads");
    const kiln_buf *fr[3] = {s->buf, s->mma.a, s->mma.b};
    int64_t need[3] = {4 * (int64_t)s->mma.wm * s->mma.wn, 4 * (int64_t)s->mma.wm, 2 * (int64_t)s->mma.wn};
    for (int i = 0; i < 3; i++) {
      if (!fr[i] || fr[i]->scope != KILN_SCOPE_LOCAL || fr[i]->dtype != KILN_DT_F32) {
        verr(V, "warp mma fragment %d is not a local f32 buffer", i);
        break;
      }
      if (own_buf(V, fr[i]) < 1) break;
      if (s->mma.wm < 1 || s->mma.wn < 1 || fr[i]->numel < need[i])
        verr(V, "warp mma %dx%d: fragment buffer '%s' holds %lld elements, needs %lld", s->mma.wm, s->mma.wn,
             fr[i]->name, (long long)fr[i]->numel, (long long)need[i]);
    }
    if (V->k->launch && (V->k->launch->block[0] * V->k->launch->block[1] * V->k->launch->block[2]) % 32)
      verr(V, "warp mma in a block of %lld threads, not whole warps",
           (long long)(V->k->launch->block[0] * V->k->launch->block[1] * V->k->launch->block[2]));
    break;
  }
  case KILN_LS_ALLOC: {
    const kiln_buf *b = s->buf;
    if (!b || b->scope == KILN_SCOPE_GLOBAL || b->id < 0 || b->id >= V->k->nallocs || V->k->allocs[b->id] != b) {
      verr(V, "allocation of a buffer that is not one of the kernel's shared or local buffers");
      break;
    }
    int shared = b->scope == KILN_SCOPE_SHARED;
    if (!V->k->launch) verr(V, "%s buffer '%s' allocated in a CPU kernel (no launch)", shared ? "shared" : "local", b->name);
    else if (shared && V->gpu_depth - V->thread_depth == 0)
      verr(V, "shared buffer '%s' allocated outside any block-bound loop", b->name);
    else if (shared && (V->thread_depth || V->plain_depth))
      verr(V, "shared buffer '%s' allocated outside the block body (under thread-bound or sequential loops)", b->name);
    else if (!shared && !V->thread_depth) verr(V, "local buffer '%s' allocated outside the thread-bound loops", b->name);
    if (V->alloc_live[b->id]) verr(V, "buffer '%s' allocated twice", b->name);
    V->alloc_live[b->id] = 1;
    break;
  }
  case KILN_LS_REDUCE:
    if (V->p->reductions_expanded) verr(V, "reduction of t%d left after expand-reduce", s->var);
    vx(V, s->value);
    if (s->var < 0 || s->var >= V->k->nlocals) { verr(V, "local t%d out of the kernel's %d", s->var, V->k->nlocals); break; }
    if (V->local_live[s->var] || V->reduce_open[s->var]) verr(V, "local t%d declared twice", s->var);
    if ((unsigned)s->reduce >= KILN_RED_OP_COUNT) verr(V, "reduction of t%d has no combiner", s->var);
    if (s->value && s->value->dtype != s->dtype)
      verr(V, "reduction t%d declared %s, initialised with %s", s->var, kiln_dtype_name(s->dtype),
           kiln_dtype_name(s->value->dtype));
    V->reduce_open[s->var] = 1;
    vs_block(V, s->body);
    V->reduce_open[s->var] = 0;
    V->local_live[s->var] = 1;
    V->local_type[s->var] = s->dtype;
    break;
  case KILN_LS_COMBINE:
    if (V->p->reductions_expanded) verr(V, "combine into t%d left after expand-reduce", s->var);
    vx(V, s->value);
    if (s->var < 0 || s->var >= V->k->nlocals || !V->reduce_open[s->var]) {
      verr(V, "combine into t%d outside its reduction", s->var);
      break;
    }
    if (s->value && s->value->dtype != s->dtype &&
        !(s->reduce == KILN_RED_ADD && s->dtype == KILN_DT_F64 && s->value->dtype == KILN_DT_F32))
      verr(V, "combine of a %s value into reduction t%d (%s)", kiln_dtype_name(s->value->dtype), s->var,
           kiln_dtype_name(s->dtype));
    break;
  }
}

/* A block's locals and allocations go out of scope at its end. */
static void vs_block(vctx *V, const kiln_ls *s) {
  for (const kiln_ls *t = s; t; t = t->next) vs(V, t);
  for (const kiln_ls *t = s; t; t = t->next) {
    if ((t->kind == KILN_LS_DECL || t->kind == KILN_LS_REDUCE) && t->var >= 0 && t->var < V->k->nlocals) V->local_live[t->var] = 0;
    if (t->kind == KILN_LS_ALLOC && t->buf && t->buf->id >= 0 && t->buf->id < V->k->nallocs &&
        V->k->allocs[t->buf->id] == t->buf)
      V->alloc_live[t->buf->id] = 0;
  }
}

/* A GPU kernel's recorded launch against its bound loops. */
static void check_launch(vctx *V) {
  const kiln_launch *r = V->k->launch;
  kiln_launch l;
  if (!r) return;
  if (kiln_kernel_launch_of(V->k, &l)) { verr(V, "a GPU axis is bound by two loops"); return; }
  if (memcmp(&l, r, sizeof l))
    verr(V, "recorded launch grid(%lld, %lld, %lld) block(%lld, %lld, %lld) is not its bound loops' "
            "grid(%lld, %lld, %lld) block(%lld, %lld, %lld)",
         (long long)r->grid[0], (long long)r->grid[1], (long long)r->grid[2], (long long)r->block[0],
         (long long)r->block[1], (long long)r->block[2], (long long)l.grid[0], (long long)l.grid[1],
         (long long)l.grid[2], (long long)l.block[0], (long long)l.block[1], (long long)l.block[2]);
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
    V.var_thread = calloc((size_t)V.nvars, 1);
    V.local_uniform = calloc((size_t)V.nlocals, 1);
    V.alloc_live = calloc((size_t)k->nallocs + 1, 1);
    V.reduce_open = calloc((size_t)V.nlocals, 1);
    KILN_ASSERT(V.var_ext && V.var_open && V.seen && V.local_live && V.local_assigned && V.local_type && V.local_rng &&
                V.local_def && V.var_thread && V.local_uniform && V.alloc_live && V.reduce_open);
    kiln_loop_locals(k->body, k->nlocals, V.local_assigned);
    check_launch(&V);
    vs_block(&V, k->body);
    nerr += V.nerr;
    free(V.var_ext); free(V.var_open); free(V.seen); free(V.local_live); free(V.local_assigned);
    free(V.local_type); free(V.local_rng); free(V.local_def);
    free(V.var_thread); free(V.local_uniform); free(V.alloc_live); free(V.reduce_open);
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
