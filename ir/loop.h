/* The loop IR: what every backend prints.
 *
 * A program is a table of buffers (flat, typed arrays: inputs, outputs,
 * weights, workspace, state) and an ordered list of kernels.  A kernel is a tree
 * of statements: counted loops (with a schedule: parallel, vector width,
 * unroll, GPU binding), stores of expressions into buffers, scalar locals
 * (accumulators), and conditionals.  Expressions are typed trees: constants,
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
 *    exact.  Printers implement these as integer bit manipulation, never
 *    as calls into compiler-rt (portable hosts: any x86-64 CPU).
 *  - Float arithmetic is IEEE-754 in the expression's dtype, round to
 *    nearest even; f16/bf16 values are not computed on (the lowering
 *    widens them to f32).  EXP, LOG, TANH, ERF, POW, REM (fmod) are libm's
 *    functions (f32 calls the f variant: expf...).
 *  - Comparisons LT, LE, EQ are false when an operand is NaN, NE is true.
 *  - MIN(a, b) is `a < b ? a : b` and MAX(a, b) is `a < b ? b : a`: with
 *    a NaN operand the comparison is false, so MIN gives b and MAX gives a
 *    (whichever is NaN).  Ops whose ONNX meaning
 *    propagates NaN from every operand (Max, Min, MaxPool: ONNX Runtime
 *    returns NaN) add an explicit ISNAN in the lowering
 *    (kiln_lower_max_nan); the printers never special-case ops. */
#ifndef KILN_LOOP_H
#define KILN_LOOP_H

#include <stdint.h>
#include <stdio.h>

#include "graph.h"

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

typedef struct kiln_buf {
  int id;
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
  KILN_LX_CAST    /* (dtype) a */
} kiln_lx_kind;

typedef enum kiln_lx_op {
  /* unary */
  KILN_UN_NEG, KILN_UN_ABS, KILN_UN_EXP, KILN_UN_LOG, KILN_UN_SQRT, KILN_UN_TANH, KILN_UN_ERF,
  KILN_UN_FLOOR, KILN_UN_CEIL, KILN_UN_ROUND_EVEN, KILN_UN_NOT, KILN_UN_ISNAN,
  /* binary: arithmetic (a op b), result of the operands' dtype */
  KILN_BIN_ADD, KILN_BIN_SUB, KILN_BIN_MUL, KILN_BIN_DIV, KILN_BIN_REM, KILN_BIN_MIN, KILN_BIN_MAX,
  KILN_BIN_POW,
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

typedef struct kiln_sched {
  int parallel;       /* iterations may run on different threads */
  int vector;         /* vector width hint, 0 = backend's choice */
  int unroll;         /* unroll factor hint, 0 = backend's choice */
  int gpu;            /* 0: none; 1..3: block x/y/z; 4..6: thread x/y/z */
} kiln_sched;

typedef enum kiln_ls_kind {
  KILN_LS_FOR,     /* for var in [0, extent): body */
  KILN_LS_STORE,   /* buf[index] = value */
  KILN_LS_DECL,    /* local var : dtype = value */
  KILN_LS_ASSIGN,  /* local var = value */
  KILN_LS_IF,      /* if cond: body else: orelse */
  KILN_LS_BARRIER  /* GPU block barrier (threads of a block meet) */
} kiln_ls_kind;

typedef struct kiln_ls {
  kiln_ls_kind kind;
  struct kiln_ls *next;      /* next statement in the same block */
  int var;                   /* FOR: loop var; DECL/ASSIGN: local */
  int64_t extent;            /* FOR */
  kiln_sched sched;          /* FOR */
  struct kiln_ls *body;      /* FOR, IF */
  struct kiln_ls *orelse;    /* IF */
  const kiln_buf *buf;       /* STORE */
  kiln_lx *index, *value;    /* STORE: index, value; DECL/ASSIGN: value; IF: value = cond */
  kiln_dtype dtype;          /* DECL */
} kiln_ls;

typedef struct kiln_kernel {
  const char *name;          /* C identifier, unique in the program */
  const kiln_node *node;     /* the graph node it computes (comments, errors) */
  kiln_ls *body;
  int nvars, nlocals;        /* loop vars and locals are numbered 0.. */
  const char **local_names;  /* NULL, or per local a C identifier (NULL: tN); set by
                                kiln_simplify_index for the values it hoists */
  const unsigned char *local_index; /* NULL, or per local 1 when it holds index
                                arithmetic (declared once from a kiln_lx_is_index_expr
                                value, never assigned); set by kiln_simplify_index */
} kiln_kernel;

typedef struct kiln_program {
  kiln_arena *arena;         /* the graph's arena: the program lives as long */
  const kiln_graph *graph;
  kiln_buf **bufs; int nbufs, cap_bufs;
  kiln_kernel **kernels; int nkernels, cap_kernels;
  int ninputs, noutputs;
  int64_t workspace_bytes;   /* size of the activation arena */
  int64_t weights_bytes;     /* size of the packed weights (64-byte aligned entries) */
  int64_t state_bytes;       /* size of the state blob (64-byte aligned entries);
                                0: the program has no state */
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
 * unused, its root's memory + offset is used), following the semantics above.  Returns 0, or -1 when an index falls outside its
 * buffer (nothing is written out of bounds). */
int kiln_loop_eval(const kiln_program *p, const kiln_kernel *k, void **bufs);

/* ---- verifying: loop_verify.c ---- */
/* Checks p's invariants: loop vars used only inside their loops, locals
 * declared before use and in scope, stores only to outputs, workspace and
 * state (views: by their root's kind),
 * consistent types (BIN operands alike, bool conditions, i64 indices),
 * barriers only under GPU-bound loops, and no index provably outside its
 * buffer (interval analysis; silent where it cannot decide).  Returns the
 * number of errors; the first is recorded in d as
 * "FILE: node 'NAME' (Op): loop IR: kernel 'K': what is wrong". */
int kiln_loop_verify(const kiln_program *p, kiln_diag *d);
/* Whether kiln_lower verifies: always in debug builds (no NDEBUG), else
 * when the environment sets KILN_VERIFY_LOOPS (not "0"), as the
 * conformance runners do. */
int kiln_loop_verify_wanted(void);

#endif
