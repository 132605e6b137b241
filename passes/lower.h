/* Lowering: graph IR -> loop IR.  kiln_lower walks the (shape-inferred,
 * static) graph in order, gives every value a buffer, and calls each node's
 * `lower` entry from ops.def, which appends one kernel.  This header also
 * holds the helpers those entries share. */
#ifndef KILN_LOWER_H
#define KILN_LOWER_H

#include "../ir/loop.h"

/* Which values share another's bytes (passes/views.c): by value id, the
 * value whose storage it is a view of (NULL: its own storage) and the
 * byte offset in it. */
typedef struct kiln_views {
  const kiln_value **root;
  int64_t *offset;
} kiln_views;

typedef struct kiln_lctx {
  kiln_lb b;            /* the builder; b.p is the program */
  kiln_graph *g;
  kiln_diag *d;
  kiln_buf **buf_of;    /* by value id */
  const kiln_target *target; /* what the code is for: vector width, caches (never NULL) */
  const kiln_views *views; /* NULL: every value its own storage (constant folding) */
  const char *mutated;  /* by value id: updated in place (state); NULL: none */
  kiln_buf **wide_of;   /* by value id: an f16/bf16 weight's compute-type copy
                           (kiln_lower_weight_ct; allocated on first use) */
} kiln_lctx;

/* views: the values that become views instead of copies (see views.c). */
kiln_views *kiln_plan_views(kiln_graph *g);

/* lower: graph (static shapes) -> program; returns NULL with d set.  The
 * loop passes (expand_reduce, simplify_index, plan_memory) are run after it by the
 * pipeline (pipeline.h), not by kiln_lower. */
kiln_program *kiln_lower(kiln_graph *g, kiln_diag *d);
/* The same for target t (NULL: kiln_target_default()); p->target = *t. */
kiln_program *kiln_lower_with(kiln_graph *g, const kiln_target *t, kiln_diag *d);
/* plan_memory: places workspace buffers by liveness; sets workspace_bytes. */
/* plan_memory: places workspace buffers by liveness (a view and its root
 * as one allocation), packs weights and state; sets workspace_bytes,
 * weights_bytes, state_bytes. */
void kiln_plan_memory(kiln_program *p);
/* plan_inplace: whether kernel k may write `out` over `in`'s memory,
 * element by element (see plan_inplace.c). */
int kiln_inplace_ok(const kiln_kernel *k, const kiln_buf *out, const kiln_buf *in);
/* simplify_index: folds, canonicalises and hoists i64 index math in every
 * kernel; same values computed (see passes/simplify_index.c). */
void kiln_simplify_index(kiln_program *p);
/* expand_reduce: rewrites every REDUCE into CPU accumulator code (plain,
 * lanes, or blocked f64 totals of f32 blocks; passes/expand_reduce.c) and
 * sets p->reductions_expanded.  Run right after kiln_lower. */
void kiln_expand_reduce(kiln_program *p);
/* schedule_threads: per kernel, sets `threads` on the top-level parallel
 * loop worth running on the pool for p->target, collapsing a too-short
 * one with the parallel loop inside it (passes/schedule_threads.c). */
void kiln_schedule_threads(kiln_program *p);
/* The work in s (a loop: its trip count times its body's), in the units
 * target->thread_min_work is measured in. */
int64_t kiln_schedule_work(const kiln_ls *s);
/* Shared with schedule_gpu: the parallel loop directly inside `outer`
 * (after decls only) or NULL; `outer` rewritten in place into one loop
 * over both (see schedule_threads.c); one more i64 index local in k. */
kiln_ls *kiln_schedule_inner_parallel(kiln_ls *outer);
void kiln_schedule_collapse(kiln_program *p, kiln_kernel *k, kiln_ls *outer, kiln_ls *in);
int kiln_schedule_index_local(kiln_program *p, kiln_kernel *k);
/* schedule_gpu: on a GPU target, makes every kernel one launch: its
 * collapsed outer parallel loop nest over blocks of threads, else one
 * thread (passes/schedule_gpu.c).  Nothing on a CPU target. */
void kiln_schedule_gpu(kiln_program *p);
/* Whether schedule_gpu gives Gemm/MatMul node n the shared-memory tiled
 * product (schedule_gemm_gpu.c); *rows (if not NULL): its rows per batch.
 * schedule_reduce_gpu leaves such kernels to it. */
int kiln_gpu_gemm_tiled(const kiln_node *n, int64_t *rows);
/* Every read of loop var `var` in the statements s.. becomes a read of
 * index local `local` (local < 0: only counted); returns the reads. */
int kiln_schedule_var_to_local(kiln_ls *s, int var, int local);
/* schedule_reduce_gpu: on a GPU target, right after lowering (REDUCEs
 * unexpanded), a kernel that would run as one thread, or one block-sized
 * nest of long reductions, as blocks of threads reducing in shared memory
 * (passes/schedule_reduce_gpu.c).  Nothing on a CPU target. */
void kiln_schedule_reduce_gpu(kiln_program *p);

/* Interval analysis of i64 index expressions (simplify_index.c, shared
 * with the loop-IR verifier): var_ext[v] is loop var v's extent, local_rng
 * (NULL: none known) the range of each never-assigned i64 local.  Returns
 * 1 with [*lo, *hi] containing every value e can take, or 0: unknown. */
typedef struct kiln_index_rng { int ok; int64_t lo, hi; } kiln_index_rng;
typedef struct kiln_index_env {
  const int64_t *var_ext;
  const kiln_index_rng *local_rng;
  int nlocals;
} kiln_index_env;
int kiln_index_range(const kiln_index_env *env, const kiln_lx *e, int64_t *lo, int64_t *hi);

/* Every lower/scalar function named in ops.def. */
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) \
  int lower(kiln_lctx *L, const kiln_node *n);
#include "../ir/ops.def"
#undef KILN_OP
#define KILN_OP(E, name, attrs, ins, outs, shape, fold, macs, lower, scalar, grad) \
  kiln_lx *kiln_scalar_##scalar(kiln_lctx *L, const kiln_node *n, kiln_lx **in);
#include "../ir/ops.def"
#undef KILN_OP

/* ---- helpers for lowering functions ---- */
kiln_buf *kiln_lower_buf(kiln_lctx *L, const kiln_value *v);
/* v's buffer as a kernel that computes in the compute type should read
 * it: for an f16/bf16 weight (an initializer: contents known, never
 * updated), an f32 weight buffer holding its values converted once, here
 * at compile time (exact: f32 holds every f16/bf16 value), shared by every
 * kernel that asks; so inner loops read W with no conversion.  Any other
 * value: kiln_lower_buf's. */
kiln_buf *kiln_lower_weight_ct(kiln_lctx *L, const kiln_value *v);
/* v's contents are fixed at compile time: an initializer nothing updates
 * (training state, an in-place write) or aliases (a view), so a lowering
 * may re-lay it into a weight buffer of its own. */
int kiln_lower_fixed_weight(const kiln_lctx *L, const kiln_value *v);
/* The schedule of an innermost sequential loop of `extent` iterations whose
 * body works on ct elements at consecutive (or interleaved) addresses:
 * masked_tail where the loop is too short for the vectoriser's whole
 * vectors (ir/loop.h), else plain. */
kiln_sched kiln_lower_short_loop(const kiln_lctx *L, int64_t extent, kiln_dtype ct);
/* A weight buffer `<v>.<suffix>` of numel elements of ct (f32 or f64),
 * zero but for v's elements, each converted and placed at dest(its flat
 * index in v, shape): a schedule's re-laid copy of a fixed weight, made
 * once at compile time.  dest is called once per `run` elements (v's
 * numel a multiple of it, else once per element): the run from src (a
 * multiple of run) lands at dest(src) + j * step. */
kiln_buf *kiln_lower_relaid_weight(kiln_lctx *L, const kiln_value *v, kiln_dtype ct, int64_t numel, const char *suffix,
                                   size_t (*dest)(int64_t src, const int64_t *shape), const int64_t *shape,
                                   int64_t run, int64_t step);
/* A weight buffer `<v>.<suffix>` of numel elements of ct holding data
 * (arena memory, computed at compile time from v's contents). */
kiln_buf *kiln_lower_weight_data(kiln_lctx *L, const kiln_value *v, kiln_dtype ct, const void *data, int64_t numel,
                                 const char *suffix);
/* Dropout node n has a mask output something reads (a node, the caller,
 * an in-place update); else it is a plain copy of its input. */
int kiln_dropout_mask_wanted(const kiln_node *n);
/* Starts the node's kernel (named after the node). */
void kiln_lower_begin(kiln_lctx *L, const kiln_node *n);
/* Names the current kernel's schedule (printf-style; kiln_kernel.schedule). */
void kiln_lower_schedule(kiln_lctx *L, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Opens one loop per dim of `v` (outermost first); idx[i] gets dim i's
 * index.  Close with kiln_lower_close(L, v->rank). */
void kiln_lower_loops(kiln_lctx *L, const kiln_value *v, kiln_lx **idx);
void kiln_lower_close(kiln_lctx *L, int n);
/* ---- the output store and addressing (lower_store.c) ---- */
/* Offset of logical index idx (one per dim) into v's buffer for v's layout
 * (PLAIN: row-major, as kiln_lower_offset; NCHWC: N, C/b, spatial..., b). */
kiln_lx *kiln_lower_addr(kiln_lctx *L, const kiln_value *v, kiln_lx **idx);
/* Every lowering's final store of output `slot` of n at logical index idx
 * (value in the compute type): applies n's epilogue (slot 0 only) and
 * stores into kiln_lower_result(n, slot) through kiln_lower_addr.  The
 * _flat form takes the row-major element number of n->out[slot] instead
 * (== its offset when plain) and derives idx only if it must. */
void kiln_lower_store_output(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx **idx, kiln_lx *value);
void kiln_lower_store_flat(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx *flat, kiln_lx *value);
/* Both at once (either may be NULL): flat must be idx's element number. */
void kiln_lower_store(kiln_lctx *L, const kiln_node *n, int slot, kiln_lx **idx, kiln_lx *flat, kiln_lx *value);
/* How many leading epilogue steps of n read nothing but the running value
 * (Relu, Clip with constant bounds, kiln.RoundTo...): a lowering that keeps
 * its sums in a scratch before the final store may apply these where the
 * sums are still vectors in registers (kiln_lower_apply_steps), and the
 * rest on the way out (kiln_lower_store_rest, `done` of them applied). */
int kiln_lower_pointwise_steps(const kiln_node *n);
kiln_lx *kiln_lower_apply_steps(kiln_lctx *L, const kiln_node *n, kiln_lx *value, int count);
void kiln_lower_store_rest(kiln_lctx *L, const kiln_node *n, kiln_lx **idx, kiln_lx *flat, kiln_lx *value, int done);
/* The same with off the element's offset in the result's buffer and in
 * every epilogue operand's: one layout and shape for all of them (the
 * NCHWc convolution's blocked result and residual, kiln_epilogue_refusal). */
void kiln_lower_store_phys(kiln_lctx *L, const kiln_node *n, kiln_lx *off, kiln_lx *value, int done);
/* Gemm's v * alpha + C[i, j] * beta, C (numpy-broadcast to [M, N]) read
 * from buffer c, skipped when c is NULL, C absent or beta 0; any other
 * node (MatMul): v.  The one statement of Gemm's scaling, for the CPU
 * lowering (lower_linalg.c) and the GPU schedule (schedule_gemm_gpu.c). */
kiln_lx *kiln_lower_gemm_scale(kiln_lctx *L, const kiln_node *n, const kiln_buf *c, kiln_lx *v, kiln_lx *i,
                               kiln_lx *j);
/* n has epilogue steps: a lowering that accumulates in n->out[0]'s buffer
 * must then end with one pass storing every element through the above. */
int kiln_lower_has_epilogue(const kiln_node *n);
/* The value the final store of `slot` writes: the last epilogue step's
 * output for slot 0 when there are steps, else n->out[slot]. */
const kiln_value *kiln_lower_result(const kiln_node *n, int slot);
/* ---- a pool at the end of a Conv's epilogue (fuse_pool.c) ---- */
/* Pool p's windows tile its input (kernel = stride, no pads or dilation,
 * at most KILN_POOL_STEP_TAPS taps, no Indices): a Conv's epilogue may end
 * in it. */
enum { KILN_POOL_STEP_TAPS = 64 };
int kiln_pool_tiles_input(const kiln_node *p);
/* p is a float GlobalAveragePool: its one window is the whole plane, which
 * only the transposed GEMM pools (lower_conv_gemmt.c). */
int kiln_pool_is_gap(const kiln_node *p);
/* The pool n's epilogue ends in, or NULL.  A lowering of n either stores
 * through kiln_lower_store_window (whole windows) or lowers n without it
 * and the pool after (kiln_lower_conv does that for the schedules that
 * store single outputs). */
const kiln_node *kiln_lower_pool_step(const kiln_node *n);
/* Window extents of that pool along each spatial dim (its kernel_shape;
 * a GlobalAveragePool's: its input's plane). */
void kiln_lower_pool_window(const kiln_node *pool, int64_t *k);
/* The final store of one pooled output of n: pidx is its logical index
 * in the pool's output (n, c, pooled positions), vals the window's
 * results of n (row-major over the window, `done` leading epilogue steps
 * applied).  Each value goes through the remaining steps at its own
 * output index (pidx * k + its place in the window), is rounded to the
 * pool's input type as the unfused graph stores it, and the window's max
 * (NaN-propagating, as lower_pool.c) or mean lands in the pool's output. */
void kiln_lower_store_window(kiln_lctx *L, const kiln_node *n, kiln_lx **pidx, kiln_lx *const *vals, int done);
/* A GlobalAveragePool at the end of n's epilogue (fuse_pool.c), which a
 * schedule sums from its own scratch (lower_conv_gemmt.c): the value of
 * n's plain output at `flat` after the steps from `done` up to the pool,
 * rounded to the pool's input type as the unfused graph stores it, in its
 * compute type; NULL where a step failed (L->d says why). */
kiln_lx *kiln_lower_pool_input(kiln_lctx *L, const kiln_node *n, kiln_lx *flat, kiln_lx *value, int done);
/* Opens GlobalAveragePool's sum of S values (lower_sum.c): the unfused
 * pool (lower_pool.c) and a fused one (lower_conv_gemmt.c) add in the same
 * order, so their results are equal bit for bit. */
int kiln_gap_sum_begin(kiln_lctx *L, kiln_dtype ct, int64_t S);
/* Fails (one-line error) unless n's epilogue is a chain the store can
 * compute: elementwise steps, each reading the previous result (used
 * nowhere else, not a graph output), shape unchanged, plain operands. */
int kiln_lower_check_epilogue(kiln_lctx *L, const kiln_node *n);
/* The same conditions without failing (the fusion pass asks before it
 * keeps a step): 0 when n's epilogue is computable, else 1 with r saying
 * why: r->step the refused step (r->node), or -1 when output r->out is
 * read by r->node before the last step. */
typedef struct kiln_epi_refusal {
  const char *what;
  int step, out;
  const kiln_node *node;
} kiln_epi_refusal;
int kiln_epilogue_refusal(const kiln_graph *g, const kiln_node *n, kiln_epi_refusal *r);
/* Elementwise node st at an output index of y (idx, or flat when idx is
 * NULL): its scalar function, the input `prev` (may be NULL) taking
 * `carried`, the others loaded (broadcast). NULL on failure (d set). */
kiln_lx *kiln_lower_apply(kiln_lctx *L, const kiln_node *st, const kiln_value *prev, kiln_lx *carried,
                          const kiln_value *y, kiln_lx **idx, kiln_lx *flat);
/* Row-major offset of idx (one per dim) into v. */
kiln_lx *kiln_lower_offset(kiln_lctx *L, const kiln_value *v, kiln_lx **idx);
/* Offset into `in` broadcast against an output of rank out_rank. */
kiln_lx *kiln_lower_bcast_offset(kiln_lctx *L, const kiln_value *in, int out_rank, kiln_lx **idx);
/* Compute type of an element: f16/bf16 widen to f32. */
kiln_dtype kiln_lower_ctype(kiln_dtype t);
/* e^x in x's compute type (lower_elementwise.c): libm's for f64; for f32
 * vectorisable arithmetic (declares locals: call it where statements may
 * go, as scalar functions are). */
kiln_lx *kiln_lower_exp(kiln_lctx *L, kiln_lx *x);
/* ln x, the same way (lower_elementwise.c). */
kiln_lx *kiln_lower_log(kiln_lctx *L, kiln_lx *x);
/* Pooling windows (lower_pool.c; the pool gradients share them):
 * 0 <= i < hi as a condition, only the halves that can fail (NULL: always
 * true); and the AveragePool divisor along one dim, the taps k in [0, K)
 * with lo <= o*s - pb + k*d < hi (i64). */
kiln_lx *kiln_lower_in_range(kiln_lctx *L, kiln_lx *i, int need_lo, int need_hi, int64_t hi);
kiln_lx *kiln_lower_pool_taps(kiln_lctx *L, kiln_lx *o, int64_t s, int64_t pb, int64_t K, int64_t d, int64_t lo,
                              int64_t hi, int64_t nout);
/* MaxPool/AveragePool by static regions (lower_pool_fast.c): 1 when it
 * lowered n, 0 when n is not a case for it (nothing emitted). */
int kiln_lower_pool_fast(kiln_lctx *L, const kiln_node *n);
/* Loop nests that leave out extent-1 loops (their index is the constant 0);
 * a loop is marked parallel when asked (its iterations are independent),
 * at any depth. */
typedef struct kiln_nest {
  int depth, nopen;
  char opened[64];
} kiln_nest;
kiln_lx *kiln_nest_for(kiln_lctx *L, kiln_nest *ns, int64_t extent, int par);
void kiln_nest_end(kiln_lctx *L, kiln_nest *ns);
/* A workspace buffer of numel elements private to the kernel being lowered
 * (scratch: packed operands, partial results); the memory plan places it
 * like any activation, live only during that kernel. */
kiln_buf *kiln_lower_scratch(kiln_lctx *L, const char *name, kiln_dtype t, int64_t numel);
/* Loads buf[off] widened to the compute type. */
kiln_lx *kiln_lower_load(kiln_lctx *L, const kiln_buf *b, kiln_lx *off);
/* Accurate sums: the loop IR's ADD reduction (ir/loop.h), declared in
 * kiln_sum_dtype(ct, count): f64 for a float32 sum of more than 256 terms
 * (expand_reduce.c then adds it in float32 blocks into a float64 total),
 * else ct.  kiln_sum_begin opens that reduction (combine ct values into
 * it; close with kiln_lb_reduce_end); kiln_sum_result is its total
 * (/ divisor, in the total's precision) as ct (lower_sum.c). */
kiln_dtype kiln_sum_dtype(kiln_dtype ct, int64_t count);
int kiln_sum_begin(kiln_lctx *L, kiln_dtype ct, int64_t count);
kiln_lx *kiln_sum_result(kiln_lctx *L, int sum, kiln_dtype ct, kiln_lx *divisor);

/* The larger (is_max) or smaller of acc and x, a NaN in either giving
 * NaN: Max, Min, MaxPool as ONNX Runtime computes them.  The loop IR's
 * MIN/MAX pass a NaN through from one operand only (ir/loop.h). */
kiln_lx *kiln_lower_max_nan(kiln_lctx *L, int is_max, kiln_lx *acc, kiln_lx *x);
int kiln_lower_fail(kiln_lctx *L, const kiln_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
