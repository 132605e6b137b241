/* The loop IR: what every backend prints.
 *
 * A program is a table of buffers (flat, typed arrays: inputs, outputs,
 * weights, workspace, state) and an ordered list of kernels.  A kernel is a tree
 * of statements: counted loops (with a schedule: parallel, vector width,
 * unroll, GPU binding), stores of expressions into buffers, scalar locals
 * (accumulators), conditionals, and reductions (see "Reductions" below).  Expressions are typed trees: constants,
 * loop indices, locals, loads, unary/binary math, selects and casts.
 *
 * State buffers (KILN_BUF_STATE) persist across runs of one model
 * instance: the runner sets them to their initial contents once, kernels
 * read and write them, and each instance (JIT, compiled runtime model,
 * emit-c caller's state memory) has its own; they are packed in a state
 * blob (kiln_program.state_bytes).  A view (kiln_buf.view_of) shares its
 * root's bytes at an offset instead of having storage; every printer
 * addresses it as root + offset (kiln_buf_root).  See ir/README.md.
 *
 * All op semantics live in the lowering (passes/lower_*.c, the `lower` and
 * `scalar` columns of ops.def); printers (LLVM, C, CUDA) translate this IR
 * one construct at a time and know nothing about ops.
 *
 * ---- Semantics of the edge cases ----
 * Every printer and the interpreter (loop_eval.c, which the constant folder
 * runs) give these exact results; none of them is undefined behaviour in
 * the generated LLVM IR or C.  Tests: tests/ir/test_semantics.py (op by
 * op, vs numpy and ONNX Runtime) and tests/ir/test_loop_semantics.c.
 *
 *  - Integer ADD, SUB, MUL, NEG, ABS wrap around modulo 2^bits of the
 *    dtype (two's complement): INT32_MAX + 1 == INT32_MIN, ABS(INT_MIN) ==
 *    INT_MIN.  Exception: index arithmetic (expressions built only from
 *    loop indices and constants) never overflows, because extents are
 *    static and bounded by buffer sizes; printers may mark it no-wrap.
 *  - XOR is bitwise, on integer dtypes only (the result fits the dtype:
 *    no wrap).  With u64 MUL (wraps) and u64 DIV by a power of two (a
 *    logical shift) it computes counter-based hashes such as the training
 *    Dropout mask (passes/lower_dropout.c).
 *  - Integer DIV truncates toward zero and REM has the dividend's sign
 *    (C99), with: x / 0 == 0, x % 0 == x, INT_MIN / -1 == INT_MIN (wraps),
 *    INT_MIN % -1 == 0.  Printers guard a division only when the divisor
 *    is not a constant, or is the constant 0 or -1 (one helper,
 *    kiln_lx_div_needs_guard, decides this for every printer).
 *  - Float -> integer CAST truncates toward zero and saturates: values
 *    beyond the target's range give its min/max (+-Inf included), NaN
 *    gives 0.  Integer -> float rounds to nearest even.  Anything -> bool
 *    is "!= 0" (NaN -> true).
 *  - CAST to f16/bf16 rounds to nearest even with subnormals, overflow to
 *    +-Inf and NaN -> quiet NaN (sign kept; f16 0x7e00, bf16 keeps the top
 *    payload bits); from f64 or an integer it first converts to f32 (as
 *    ONNX Runtime does).  f16/bf16 -> wider is
 *    exact (a NaN keeps its sign and payload, quiet or signalling).
 *    Printers implement these as integer bit manipulation, or with the
 *    target's conversion instructions where they give the same bits
 *    (the LLVM backend's f16 with F16C: fpext/fptrunc plus a NaN
 *    fix-up), never as calls into compiler-rt (portable hosts: any x86-64
 *    CPU).
 *  - Float arithmetic is IEEE-754 in the expression's dtype, round to
 *    nearest even; f16/bf16 values are not computed on (the lowering
 *    widens them to f32).  EXP, LOG, TANH, ERF, POW, REM (fmod) are libm's
 *    functions (f32 calls the f variant: expf...).
 *  - FMA(a, b, c) is a * b + c with one rounding (C99 fma/fmaf), f32 or
 *    f64 only; printers emit the fused operation itself (llvm.fma, fmaf),
 *    never a separate multiply and add.  Lowerings use it where the target
 *    fuses in hardware (kiln_target_has_fma) and a multiply and an add
 *    (two roundings) elsewhere.
 *  - Comparisons LT, LE, EQ are false when an operand is NaN, NE is true.
 *  - MIN(a, b) is `a < b ? a : b` and MAX(a, b) is `a < b ? b : a`: with
 *    a NaN operand the comparison is false, so MIN gives b and MAX gives a
 *    (whichever is NaN).  Ops whose ONNX meaning
 *    propagates NaN from every operand (Max, Min, MaxPool: ONNX Runtime
 *    returns NaN) add an explicit ISNAN in the lowering
 *    (kiln_lower_max_nan); the printers never special-case ops.
 *
 * ---- GPU kernels: launches, bindings, memory scopes ----
 * A kernel whose `launch` is set is one GPU launch (the host runs kernels
 * in program order, each after the previous one has finished).  Its body
 * is a perfect nest of block-bound loops (sched.gpu 1..3: blockIdx x/y/z),
 * then the block body: KILN_LS_ALLOCs of SHARED buffers, DECLs and one
 * perfect nest of thread-bound loops (sched.gpu 4..6: threadIdx x/y/z),
 * whose body every thread of the block runs.  A launch's grid is the
 * extents of its block-bound loops and its block the extents of its
 * thread-bound loops, per axis (1 for an axis no loop binds): a bound
 * loop is the axis itself (iteration i = blockIdx or threadIdx == i), never
 * a grid-stride loop.  Memory scopes (kiln_buf.scope): GLOBAL buffers are
 * the program's table, seen by every kernel; SHARED ones live per block
 * and LOCAL ones per thread (registers), allocated by a KILN_LS_ALLOC in
 * the block body, under the block-bound loops (SHARED), or under the
 * thread-bound loops (LOCAL), visible
 * from there to the end of the enclosing block and in no other kernel;
 * their contents start undefined.  KILN_LS_BARRIER is __syncthreads():
 * every thread of the block reaches it before any goes on; it sits under
 * the thread-bound loops, under sequential loops and IFs whose condition
 * is the same for every thread of a block (uniform: no thread var, no
 * load).  Between two barriers the threads of a block may run in any
 * order, so a SHARED element one thread writes is read or written by
 * another only after a barrier.  CPU backends print only kernels with no
 * launch; loop_eval.c emulates a launch (blocks one after another, each
 * block's threads segment by segment between barriers).
 *
 * ---- TF32 tensor cores (kiln run --tf32) ----
 * TF32(x) (KILN_UN_TF32, f32 only) is x with 10 mantissa bits, as PTX
 * cvt.rna.tf32.f32 computes it on sm_80+ (the SASS it compiles to: add
 * 0x1000 to the bits unless |x| is inf or NaN, then clear the low 13):
 * round to nearest, ties away from zero; subnormals kept (rounded the same
 * way, possibly up to the smallest normal); a finite value past TF32's
 * largest rounds to +-inf; -0 stays -0; inf stays inf; a NaN keeps its
 * sign and top payload bits (one whose payload lies only in the low 13
 * bits becomes inf, as on the hardware).
 *
 * KILN_LS_MMA is mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 over
 * a warp tile: for i < wm, j < wn, the 16x8 tile D(i,j) += A(i) (16x8, k
 * along columns) x B(j) (8x8), where each lane of a warp (32 consecutive
 * linear thread ids, x fastest) holds, per PTX ISA 9.7.14.5.7 (.tf32),
 * with g = lane / 4 and t = lane % 4:
 *   A(i): a[4i + r]  r = 0: (row g, col t)    1: (g + 8, t)
 *                        2: (g, t + 4)        3: (g + 8, t + 4)
 *   B(j): b[2j + r]  r = 0: (row t, col g)    1: (t + 4, g)
 *   D(i,j): c[4(i*wn + j) + r]  r = 0: (g, 2t)  1: (g, 2t + 1)
 *                               2: (g + 8, 2t)  3: (g + 8, 2t + 1)
 * Operands are used as TF32 (their low 13 bits ignored; the schedule
 * rounds them with TF32() when it loads the fragments), products are
 * exact in f32 and each D element adds its 8 products in k order to c,
 * rounding in f32 each time (the hardware's internal order and rounding
 * are unspecified: results may differ by f32 rounding).  It is warp-
 * collective: every lane must have written its fragments before any
 * lane's D is computed, so it sits where a BARRIER may (under the thread
 * loops, uniform control flow: every thread of the block runs it equally
 * often) and the block's threads are a whole number of warps; emulations
 * treat it as a meeting of the block's threads.  It reads and writes only
 * LOCAL buffers.  Both appear only in GPU kernels (the verifier checks):
 * the CPU backends never print them.
 *
 * ---- Prefetch ----
 * KILN_LS_PREFETCH (buf, index) says the cache line holding buf[index]
 * (a GLOBAL buffer, index in bounds: the verifier checks it) will be read
 * soon and should be brought into the L2.  It computes nothing: an
 * evaluator only checks the index, a backend without prefetch prints
 * nothing, and a program means the same with every prefetch removed.  CPU
 * printers emit llvm.prefetch (read, locality 2: x86 prefetcht1) or
 * __builtin_prefetch(p, 0, 2); GPU printers skip it.  Lowerings use it
 * where the hardware prefetchers cannot know what comes next: the
 * transposed GEMM reads its next chunk of weights, a jump of many pages
 * (passes/lower_conv_gemmt.c).  A near prefetch (`prefetch.l1`, flag
 * near) asks for the L1 instead (locality 3: prefetcht0), for a line read
 * a few steps later from the L2, where the step between lines is a page or
 * more and the L1's own prefetcher does not follow (the register path's
 * 1x1 tiles, one input channel a step: passes/lower_conv.c).
 *
 * ---- Reductions ----
 * A reduction is stated as what it computes, not as accumulator code:
 *
 *   t : dtype = reduce OP from INIT:      KILN_LS_REDUCE (var t, reduce OP,
 *     for r0 ..:                          value INIT, body)
 *       if mask:                          (any statements, loops, IFs)
 *         combine t <- value              KILN_LS_COMBINE (var t, value)
 *
 * t is INIT combined by OP with every value the body's COMBINEs (of var
 * t) contribute; t is readable only after the statement (in the
 * enclosing block, like a DECL), never inside its body.  A masked
 * (skipped) or empty iteration space contributes nothing: an empty window
 * gives INIT.  The combiners (kiln_reduce_op), with t's dtype T:
 *   ADD      t + v (integer: wraps, as ADD above)        identity 0
 *   MAX, MIN the loop IR's MAX(t, v) / MIN(v, t), i.e. v replaces t when
 *            t < v / v < t: a NaN contribution is ignored, a NaN INIT
 *            stays NaN (Softmax's max)                    identity
 *            -inf / +inf (integers: T's min / max; unsigned, bool: 0 / max)
 *   MAX_NAN, MIN_NAN  any NaN (INIT or contribution) gives NaN, as ONNX
 *            Max / MaxPool / ReduceMax need (kiln_lower_max_nan's form:
 *            (t < v || isnan(v)) ? v : t)
 * kiln_lx_reduce_identity gives the identity; INIT is often it.
 * A COMBINE's value has T, except for an accurate float sum: an ADD
 * reduction declared f64 may combine f32 values ("the sum of these f32
 * values, to f64-like accuracy").
 *
 * The order of combination is unspecified: a schedule may split and
 * reassociate (float sums then differ by rounding; MAX/MIN may pick
 * either of +0 / -0).  `sched.vector` on the REDUCE asks for that many
 * interleaved partial results (lanes), folded in halves at the end.  The
 * CPU form (passes/expand_reduce.c, run right after lowering; printers
 * never see a REDUCE) is: a plain accumulator, in source order; with lanes,
 * lane l takes iterations l mod lanes of the innermost loop; an f64 sum of
 * f32 values adds each innermost row in f32 blocks of 128 into the f64
 * total (rows shorter than 8 straight into it), which keeps the result
 * within a few f32 ulps of the exact sum for any length (lower.h:
 * kiln_sum_dtype says when a lowering asks for it).  The interpreter
 * (loop_eval.c) runs a REDUCE in source order, in T (the exact order-
 * and precision-defining reference); the constant folder expands first,
 * so it folds exactly what run time computes. */
#ifndef KILN_LOOP_H
#define KILN_LOOP_H

#include <stdint.h>
#include <stdio.h>

#include "graph.h"
#include "target.h"

typedef enum kiln_buf_kind {
  KILN_BUF_INPUT,     /* supplied by the caller at run time */
  KILN_BUF_OUTPUT,    /* written for the caller */
  KILN_BUF_WEIGHT,    /* constant data known at compile time */
  KILN_BUF_WORKSPACE, /* intermediate activation, placed by the memory plan */
  KILN_BUF_STATE      /* persistent mutable state (parameters, optimizer moments,
                         BatchNorm running statistics): read and written by
                         kernels, kept across runs of one model instance, in
                         the state blob; initial contents from `data`, or zeros */
} kiln_buf_kind;

/* Where a buffer lives (GPU kernels; see the top of this file). */
typedef enum kiln_scope {
  KILN_SCOPE_GLOBAL,  /* the program's buffer table: every kernel sees it */
  KILN_SCOPE_SHARED,  /* one per GPU block (__shared__), a kernel's KILN_LS_ALLOC */
  KILN_SCOPE_LOCAL    /* one per GPU thread (registers), a kernel's KILN_LS_ALLOC */
} kiln_scope;

typedef struct kiln_buf {
  int id;                /* GLOBAL: index in p->bufs; SHARED/LOCAL: in its kernel's allocs */
  const char *name;      /* the graph value's name */
  kiln_dtype dtype;
  int rank;
  int64_t dims[KILN_MAX_RANK];
  int64_t numel;
  kiln_buf_kind kind;
  int io_index;          /* position among inputs / outputs */
  const void *data;      /* weights: contents; state: initial contents (NULL: zeros) */
  int64_t offset;        /* workspace: byte offset in the activation arena;
                            weights: byte offset in the packed weights file;
                            state: byte offset in the state blob */
  /* A view is no storage of its own: its bytes are view_of's, from byte
   * view_offset on (Reshape/Flatten/Squeeze/Unsqueeze/Identity outputs, a
   * Concat input written straight into its slice of the output).  Views
   * chain; kiln_buf_root finds the buffer that owns the memory.  A view
   * keeps the kind its value would have had (workspace, almost always);
   * printers and runners address it only as root + offset, and the memory
   * plan gives root and views one allocation, live over the union of
   * their ranges. */
  const struct kiln_buf *view_of;
  int64_t view_offset;
  kiln_scope scope;      /* GLOBAL unless allocated in a kernel (then kind WORKSPACE) */
  int scratch;           /* a kernel's own working storage (kiln_lower_scratch), no graph
                            value: the plain memory plan leaves it out */
} kiln_buf;

/* The buffer owning b's memory (b itself unless b is a view); *byte_offset
 * (may be NULL) gets b's offset in it. */
const kiln_buf *kiln_buf_root(const kiln_buf *b, int64_t *byte_offset);

typedef enum kiln_lx_kind {
  KILN_LX_CONST,  /* number of the expression's dtype */
  KILN_LX_INDEX,  /* loop variable `var` (i64) */
  KILN_LX_LOCAL,  /* scalar local `var` */
  KILN_LX_LOAD,   /* buf[a] */
  KILN_LX_UN,     /* op(a) */
  KILN_LX_BIN,    /* op(a, b) */
  KILN_LX_SELECT, /* a ? b : c */
  KILN_LX_CAST,   /* (dtype) a */
  KILN_LX_FMA     /* a * b + c rounded once (f32, f64): fma(a, b, c) */
} kiln_lx_kind;

typedef enum kiln_lx_op {
  /* unary */
  KILN_UN_NEG, KILN_UN_ABS, KILN_UN_EXP, KILN_UN_LOG, KILN_UN_SQRT, KILN_UN_TANH, KILN_UN_ERF,
  KILN_UN_FLOOR, KILN_UN_CEIL, KILN_UN_ROUND_EVEN, KILN_UN_NOT, KILN_UN_ISNAN,
  KILN_UN_TF32,   /* f32 -> f32 rounded to TF32 as cvt.rna.tf32.f32 does (see "TF32" above) */
  KILN_UN_BITCAST, /* the same bits as the other type of the size: f32 <-> i32, f64 <-> i64
                    * (vectorisable exponent arithmetic: lower_elementwise.c's exp) */
  /* binary: arithmetic (a op b), result of the operands' dtype */
  KILN_BIN_ADD, KILN_BIN_SUB, KILN_BIN_MUL, KILN_BIN_DIV, KILN_BIN_REM, KILN_BIN_MIN, KILN_BIN_MAX,
  KILN_BIN_POW,
  KILN_BIN_XOR,   /* bitwise exclusive or: integer dtypes only (counter-based hashing) */
  /* binary: comparisons and logic, result bool */
  KILN_BIN_LT, KILN_BIN_LE, KILN_BIN_EQ, KILN_BIN_NE, KILN_BIN_AND, KILN_BIN_OR,
  KILN_LX_OP_COUNT
} kiln_lx_op;

typedef struct kiln_lx {
  kiln_lx_kind kind;
  kiln_lx_op op;
  kiln_dtype dtype;   /* bool results use KILN_DT_BOOL */
  double f;           /* CONST (float dtypes) */
  int64_t i;          /* CONST (integer dtypes) */
  int var;            /* INDEX / LOCAL */
  const kiln_buf *buf;/* LOAD */
  struct kiln_lx *a, *b, *c;
} kiln_lx;

/* A loop's schedule: how to run it, never what it computes.  `parallel`
 * is legality only: the lowering sets it on every loop whose iterations
 * are independent (each writes its own elements, reads nothing another
 * iteration writes, and assigns no local declared outside the loop), at
 * any depth.  Whether threading pays is `threads`, set by the
 * schedule-threads pass (passes/schedule_threads.c) from the target on at
 * most one top-level parallel loop per kernel; printers hand exactly the
 * loops with `threads` to the thread pool. */
typedef struct kiln_sched {
  int parallel;       /* iterations are independent: may run on different threads */
  int threads;        /* this loop runs on the thread pool (top level, parallel) */
  int vector;         /* vector width hint, 0 = backend's choice */
  int unroll;         /* unroll factor hint, 0 = backend's choice */
  int gpu;            /* 0: none; 1..3: block x/y/z; 4..6: thread x/y/z */
  int masked_tail;    /* an innermost loop shorter than a vector or two: vectorise it
                         whole, the lanes past its end masked off, rather than run it
                         scalar (a hint; backends without masks ignore it) */
} kiln_sched;

typedef enum kiln_ls_kind {
  KILN_LS_FOR,     /* for var in [0, extent): body */
  KILN_LS_STORE,   /* buf[index] = value */
  KILN_LS_DECL,    /* local var : dtype = value */
  KILN_LS_ASSIGN,  /* local var = value */
  KILN_LS_IF,      /* if cond: body else: orelse */
  KILN_LS_BARRIER, /* GPU block barrier (threads of a block meet) */
  KILN_LS_ALLOC,   /* buf (SHARED or LOCAL scope) exists from here to the end of the block */
  KILN_LS_REDUCE,  /* local var : dtype = value (init) combined by `reduce` with what body COMBINEs */
  KILN_LS_COMBINE, /* contribute value to the enclosing REDUCE of local var */
  KILN_LS_MMA,     /* warp MMA m16n8k8 TF32: buf (LOCAL C fragments) += mma.a x mma.b (see "TF32") */
  KILN_LS_PREFETCH /* a hint: the cache line holding buf[index] will be read soon (see "Prefetch") */
} kiln_ls_kind;

typedef enum kiln_reduce_op {
  KILN_RED_ADD,     /* t + v; identity 0 */
  KILN_RED_MAX,     /* MAX(t, v): NaN contributions ignored; identity -inf / T's min */
  KILN_RED_MIN,     /* MIN(v, t): NaN contributions ignored; identity +inf / T's max */
  KILN_RED_MAX_NAN, /* larger, any NaN gives NaN (ONNX Max, MaxPool, ReduceMax) */
  KILN_RED_MIN_NAN, /* smaller, any NaN gives NaN (ONNX Min, ReduceMin) */
  KILN_RED_OP_COUNT
} kiln_reduce_op;

typedef struct kiln_ls {
  kiln_ls_kind kind;
  struct kiln_ls *next;      /* next statement in the same block */
  int var;                   /* FOR: loop var; DECL/ASSIGN: local */
  int64_t extent;            /* FOR */
  kiln_sched sched;          /* FOR */
  struct kiln_ls *body;      /* FOR, IF */
  struct kiln_ls *orelse;    /* IF */
  const kiln_buf *buf;       /* STORE, ALLOC */
  kiln_lx *index, *value;    /* STORE: index, value; DECL/ASSIGN: value; IF: value = cond */
  kiln_dtype dtype;          /* DECL, REDUCE, COMBINE: the local's dtype */
  kiln_reduce_op reduce;     /* REDUCE, COMBINE: the combiner (sched.vector on a REDUCE: lanes) */
  int near;                  /* PREFETCH: into the L1 (x86 prefetcht0), not only the L2 */
  struct {                   /* MMA: a warp tile of wm x wn m16n8k8 products */
    const kiln_buf *a, *b;   /* LOCAL f32 A fragments (4 per tile row), B fragments (2 per tile column) */
    int wm, wn;
  } mma;
} kiln_ls;

/* One GPU launch: grid[a] is the extent of the loop bound to blockIdx a,
 * block[a] of the loop bound to threadIdx a (1 where no loop binds a). */
typedef struct kiln_launch {
  int64_t grid[3], block[3];
} kiln_launch;

typedef struct kiln_kernel {
  const char *name;          /* C identifier, unique in the program */
  const kiln_node *node;     /* the graph node it computes (comments, errors) */
  const kiln_node **nodes;   /* every graph node it computes: nodes[0] == node, then
                                node's epilogue steps (kiln_epilogue), in order */
  int nnodes;                /* 0 for a copy kernel (node NULL) */
  kiln_ls *body;
  int nvars, nlocals;        /* loop vars and locals are numbered 0.. */
  const char **local_names;  /* NULL, or per local a C identifier (NULL: tN); set by
                                kiln_simplify_index for the values it hoists */
  const unsigned char *local_index; /* NULL, or per local 1 when it holds index
                                arithmetic (declared once from a kiln_lx_is_index_expr
                                value, never assigned); set by kiln_simplify_index */
  const kiln_launch *launch; /* NULL: a CPU kernel; else one GPU launch (kiln_lb_launch) */
  int explicit_vectors;      /* 1: the lowering unrolled a register tile of sums (its lanes
                                are scalar locals, its loads consecutive): a printer's
                                compiler need only group them into vectors (SLP), not
                                vectorise or unroll loops (backends/llvm/llvm_optimise.c) */
  const char *schedule;      /* NULL, or set by the lowering: the schedule it chose, in a few
                                words (`kiln inspect --verbose` prints it per node) */
  int reused_vectors;        /* 1: its tile reuses whole vectors of loaded lanes across rows
                                (the transposed GEMM's weight vectors, one per row of
                                positions): the C printer asks GCC to keep them in
                                registers (backends/c/c_emit.c, KILN_KEEP_VECTORS) */
  kiln_dtype *local_dtype;   /* per local the builder declared (kiln_lb_decl, kiln_lb_reduce_begin)
                                its dtype, UNDEF for others: kiln_lx_local's lookup without a
                                walk of the kernel; cap_local_dtype entries */
  int cap_local_dtype;
  kiln_buf **allocs;         /* its SHARED/LOCAL buffers, by id (KILN_LS_ALLOC) */
  int nallocs, cap_allocs;
  const kiln_buf *stores_once; /* set by a lowering: the kernel stores each element of this
                                buffer exactly once, and each such store's value reads
                                other buffers only at the stored index (the register-tiled
                                conv's epilogue store): plan_inplace.c takes its word */
} kiln_kernel;

typedef struct kiln_program {
  kiln_arena *arena;         /* the graph's arena: the program lives as long */
  const kiln_graph *graph;
  kiln_buf **bufs; int nbufs, cap_bufs;
  kiln_kernel **kernels; int nkernels, cap_kernels;
  int ninputs, noutputs;
  int64_t workspace_bytes;   /* size of the activation arena */
  int64_t plain_workspace_bytes; /* the same plan with no kernel scratch (kiln_buf.scratch):
                                the graph values' own peak, what the arena should not exceed */
  int64_t weights_bytes;     /* size of the packed weights (64-byte aligned entries) */
  int reductions_expanded;   /* set by kiln_expand_reduce: no REDUCE/COMBINE is left */
  kiln_target target;        /* what it was lowered and scheduled for */
  int64_t state_bytes;       /* size of the state blob (64-byte aligned entries);
                                0: the program has no state */
  int64_t images;            /* > 1: the kernels compute one image; a run runs them this many
                                times, the input and output buffers (whose dims and numel are
                                the whole batch's) moved on by one image each time
                                (passes/per_image.c); else 1 */
  int64_t image_slots;       /* > 1 (with images > 1): that many images may run at once, one per
                                thread, each in its own copy of the workspace: workspace_bytes
                                is image_slots x image_workspace_bytes (slot t's buffers at
                                + t x image_workspace_bytes); else one image after another */
  int64_t image_workspace_bytes;
} kiln_program;

/* ---- building (used by the lowering) ---- */
typedef struct kiln_lb {
  kiln_program *p;
  kiln_kernel *k;
  kiln_ls **tail;            /* where the next statement is appended */
  kiln_ls **stack[32];       /* saved tails of enclosing blocks */
  int depth;
} kiln_lb;

void kiln_lb_kernel(kiln_lb *b, const char *name, const kiln_node *node);
kiln_lx *kiln_lx_const_f(kiln_lb *b, kiln_dtype t, double v);
kiln_lx *kiln_lx_const_i(kiln_lb *b, int64_t v);      /* i64 */
kiln_lx *kiln_lx_index(kiln_lb *b, int var);
kiln_lx *kiln_lx_local(kiln_lb *b, int local);
kiln_lx *kiln_lx_load(kiln_lb *b, const kiln_buf *buf, kiln_lx *index);
kiln_lx *kiln_lx_un(kiln_lb *b, kiln_lx_op op, kiln_lx *a);
kiln_lx *kiln_lx_bin(kiln_lb *b, kiln_lx_op op, kiln_lx *a, kiln_lx *c);
kiln_lx *kiln_lx_select(kiln_lb *b, kiln_lx *cond, kiln_lx *a, kiln_lx *c);
kiln_lx *kiln_lx_cast(kiln_lb *b, kiln_dtype t, kiln_lx *a);
kiln_lx *kiln_lx_fma(kiln_lb *b, kiln_lx *a, kiln_lx *m, kiln_lx *c);  /* a * m + c, one rounding */
/* Index arithmetic with constant folding (i64). */
kiln_lx *kiln_lx_iadd(kiln_lb *b, kiln_lx *a, kiln_lx *c);
kiln_lx *kiln_lx_imul(kiln_lb *b, kiln_lx *a, int64_t k);
/* for v in [0, extent): returns v; statements go into the body until kiln_lb_end. */
int kiln_lb_for(kiln_lb *b, int64_t extent, kiln_sched sched);
void kiln_lb_if(kiln_lb *b, kiln_lx *cond);
void kiln_lb_else(kiln_lb *b);
void kiln_lb_end(kiln_lb *b);
void kiln_lb_store(kiln_lb *b, const kiln_buf *buf, kiln_lx *index, kiln_lx *value);
int kiln_lb_decl(kiln_lb *b, kiln_dtype t, kiln_lx *init);
void kiln_lb_assign(kiln_lb *b, int local, kiln_lx *value);
/* A reduction (see "Reductions" above): returns the local it declares,
 * `t` of dtype t, starting from init (NULL: the identity of op); the
 * statements up to kiln_lb_reduce_end are its body, where kiln_lb_combine
 * contributes values.  sched.vector: lanes (0: one). */
int kiln_lb_reduce_begin(kiln_lb *b, kiln_reduce_op op, kiln_dtype t, kiln_lx *init, kiln_sched sched);
void kiln_lb_combine(kiln_lb *b, int local, kiln_lx *value);
void kiln_lb_reduce_end(kiln_lb *b);
/* The larger (is_max) or smaller of acc and x, a NaN x giving NaN:
 * (acc < x || isnan(x)) ? x : acc (MAX_NAN / MIN_NAN; with a NaN acc it
 * stays NaN as x never replaces it). */
kiln_lx *kiln_lx_max_nan(kiln_lb *b, int is_max, kiln_lx *acc, kiln_lx *x);
/* The identity of op in dtype t (a constant). */
kiln_lx *kiln_lx_reduce_identity(kiln_lb *b, kiln_reduce_op op, kiln_dtype t);
const char *kiln_reduce_op_name(kiln_reduce_op op);

/* GPU kernels: a SHARED or LOCAL buffer of numel elements, allocated here
 * (a KILN_LS_ALLOC statement) and owned by the current kernel; a barrier;
 * and, once the kernel is built, its launch recorded from its bound loops
 * (kiln_kernel_launch_of).  name is copied; it appears in dumps only. */
kiln_buf *kiln_lb_alloc(kiln_lb *b, const char *name, kiln_scope scope, kiln_dtype t, int64_t numel);
void kiln_lb_barrier(kiln_lb *b);
/* KILN_LS_PREFETCH (see "Prefetch" above): buf[index]'s line is read soon. */
void kiln_lb_prefetch(kiln_lb *b, const kiln_buf *buf, kiln_lx *index);
/* The same, into the L1: the line is read within a few hundred cycles. */
void kiln_lb_prefetch_l1(kiln_lb *b, const kiln_buf *buf, kiln_lx *index);
/* A warp MMA (KILN_LS_MMA, see "TF32" above): c (LOCAL f32, 4*wm*wn) +=
 * the warp's A fragments a (LOCAL f32, 4*wm) x B fragments bf (2*wn). */
void kiln_lb_mma(kiln_lb *b, const kiln_buf *c, const kiln_buf *a, const kiln_buf *bf, int wm, int wn);
void kiln_lb_launch(kiln_lb *b);
/* The grid and block k's bound loops give (1 per unbound axis); returns 0,
 * or -1 when an axis is bound by two loops. */
int kiln_kernel_launch_of(const kiln_kernel *k, kiln_launch *out);

kiln_buf *kiln_program_add_buf(kiln_program *p, const kiln_value *v, kiln_buf_kind kind);
/* Fills a state blob of p->state_bytes with every state buffer's initial
 * contents (its data, or zeros).  Runners call it once per model instance,
 * not per run: state persists across runs. */
void kiln_program_state_init(const kiln_program *p, void *state);
/* Human-readable dump (kiln inspect --loops, --dump-after, tests); model
 * names in display form (kiln_put_display). */
void kiln_program_print(const kiln_program *p, FILE *f);
const char *kiln_lx_op_name(kiln_lx_op op);
/* One expression as the dump writes it (k: its kernel, for local names). */
void kiln_lx_print(const kiln_kernel *k, const kiln_lx *e, FILE *f);
/* True when an integer DIV/REM by `divisor` needs the x/0, INT_MIN/-1
 * guard: unless the divisor is a constant other than 0 and -1. */
int kiln_lx_div_needs_guard(const kiln_lx *divisor);
/* True for index arithmetic: only loop indices, constants, locals that
 * hold index arithmetic (k->local_index; k may be NULL) and
 * ADD/SUB/MUL/DIV/REM/MIN/MAX of them (cannot overflow, see above). */
int kiln_lx_is_index_expr(const kiln_kernel *k, const kiln_lx *e);

/* ---- interpreting (constant folding, tests): loop_eval.c ---- */
/* Runs kernel k of p with bufs[i] the memory of p->bufs[i] (for a view:
 * unused, its root's memory + offset is used), following the semantics
 * above.  Returns 0, or -1 when an index falls outside its
 * buffer (nothing is written out of bounds).  A GPU kernel (k->launch) is
 * emulated: blocks one after another, SHARED buffers per block and LOCAL
 * ones, loop vars and locals per thread; the threads of a block run each
 * barrier-free run of statements one thread after another, and meet at
 * barriers.  It also returns -1 on a data race (a SHARED element written
 * by one thread and read or written by another with no barrier between)
 * and on a barrier that threads of a block reach differently. */
int kiln_loop_eval(const kiln_program *p, const kiln_kernel *k, void **bufs);

/* ---- verifying: loop_verify.c ---- */
/* Checks p's invariants: loop vars used only inside their loops, locals
 * declared before use and in scope, stores only to outputs, workspace and
 * state (views: by their root's kind),
 * consistent types (BIN operands alike, bool conditions, i64 indices),
 * barriers only under GPU-bound loops, and no index provably outside its
 * buffer (interval analysis; silent where it cannot decide); in GPU
 * kernels also the launch structure described at the top of this file
 * (recorded launch = bound loops, SHARED allocations in the block body,
 * LOCAL ones under the thread loops, barriers under the thread loops and
 * no non-uniform IF, scoped buffers used only where allocated); a COMBINE
 * only inside the REDUCE of its local, with its dtype (or f32 into an f64
 * ADD), the reduced local not read in the body, and no REDUCE/COMBINE at
 * all once p->reductions_expanded is set.  Returns the
 * number of errors; the first is recorded in d as
 * "FILE: node 'NAME' (Op): loop IR: kernel 'K': what is wrong". */
int kiln_loop_verify(const kiln_program *p, kiln_diag *d);
/* Whether kiln_pipeline_run verifies after each loop pass: always in debug builds (no NDEBUG), else
 * when the environment sets KILN_VERIFY_LOOPS (not "0"), as the
 * conformance runners do. */
int kiln_loop_verify_wanted(void);

#endif
