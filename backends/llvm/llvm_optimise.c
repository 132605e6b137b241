/* Tiered optimisation: each function gets the pipeline its work needs.
 *
 * `kiln compile --time` showed LLVM's optimiser and code generator taking
 * nearly all of a network's compile time, and much of it on kernels that do
 * no arithmetic worth the effort: an elementwise Relu over 16x55x55 floats
 * was fully unrolled by default<O3> into 2,300 lines of IR, on which the
 * code generator's loop strength reduction then spent half a second.  Such
 * kernels are memory-bound: a vectorised loop runs them as fast as an
 * unrolled one.  So the code generator (llvm_codegen.c) puts each function
 * it prints (a kernel's body, each of its threaded loops) in one of three
 * modules of the same context, by what that function's own statements do
 * and what the lowering says of its kernel:
 *
 *   heavy  an accumulation loop (a local assigned inside a loop, or a
 *          store reading what it writes: pooling, reductions, GEMM,
 *          depthwise and generic convolutions); also the entry and the
 *          kernels' wrappers: default<O3>, as before;
 *   tiled  an accumulation loop of a kernel whose lowering unrolled a
 *          register tile (kiln_kernel.explicit_vectors: the register-
 *          blocked, im2col, transposed-GEMM and Winograd convolutions):
 *          the printer writes the tile's lanes as vectors already
 *          (llvm_lanes.c), so all it needs is locals to registers, loads
 *          de-duplicated and hoisted, and SLP for what stayed scalar.
 *          default<O3> spent most of ResNet-50's compile time there
 *          re-deriving what the lowering knew (DSE, eight instcombines,
 *          loop passes for loops that have nothing left to vectorise);
 *          TILED_PIPELINE below keeps: SROA (a tile row is one vector
 *          alloca whose lanes statements outside a vector run still read
 *          one by one), early-cse, LICM, indvars (without it SLP's pointer
 *          analysis costs 10x more), SLP, then O3's unroller, which unrolls
 *          what the loop IR asks (sched.unroll: a 3x3 window's taps) and
 *          what O3 unrolled before (tests/backends/llvm/test_tiled_vectors.py
 *          reads the machine code).  ResNet-50's tiled module took 1.65 s
 *          under the older pipeline, 1.30 s under this one with scalar lanes
 *          and 0.15 s with vector ones;
 *   light  everything else (copies, elementwise, casts, a convolution's
 *          input packing): default<O2> with loop unrolling off (the
 *          vectorisers stay on).
 *
 * LLVM's new pass manager runs one pipeline over a whole module (the C API
 * has no per-function entry point in LLVM 19), hence one module per tier.
 * Each is optimised on its own (mergefunc first, for functions that came
 * out equal though their loop IR differs; twin kernels, the same loop IR on
 * other buffers, are printed once to begin with: llvm_twins.c), then the
 * tiled and light ones are linked into the heavy one and every function
 * but the entry is made internal again, so the object and the JIT see one
 * module as before.  Functions are `noinline`, so the tiers stay apart and
 * no function grows to the size of the network.
 *
 * KILN_OPT=O3 in the environment puts every kernel in the heavy tier (the
 * single default<O3> module kiln used before): for comparing them in one
 * benchmark run, and as a way back should a kernel ever need more. */
#include <llvm-c/Analysis.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <string.h>

#include "../../ir/loop_walk.h"
#include "llvm_internal.h"

/* An accumulation inside a loop: a local assigned (or a reduction
 * combined) there, or a store whose value reads the buffer it writes
 * (convolutions accumulate into their output). */
typedef struct accum {
  const kiln_buf *stored; /* the buffer of the STORE whose value is walked */
  int found;
} accum;

static int accum_stmt(kiln_walk *w, const kiln_ls *s) {
  accum *a = w->ctx;
  if ((s->kind == KILN_LS_ASSIGN || s->kind == KILN_LS_COMBINE) && w->depth > 0) a->found = 1;
  a->stored = s->kind == KILN_LS_STORE && w->depth > 0 ? s->buf : NULL;
  return a->found ? KILN_WALK_SKIP : KILN_WALK_CONTINUE;
}
static int accum_expr(kiln_walk *w, const kiln_lx *e) {
  accum *a = w->ctx;
  if (e->kind == KILN_LX_LOAD && a->stored && e->buf == a->stored) a->found = 1;
  return a->found ? KILN_WALK_SKIP : KILN_WALK_CONTINUE;
}

/* The tiled tier's pipeline (see the top of the file). */
#define TILED_PIPELINE \
  "mergefunc,function(sroa,early-cse<memssa>,instcombine,simplifycfg,loop-mssa(licm),loop(loop-rotate,indvars)," \
  "early-cse<memssa>,slp-vectorizer,loop-unroll<O3>,instcombine,simplifycfg)"

int kiln_llvm_heavy(const kiln_ls *s, int one) {
  accum a = {0};
  kiln_walk w = {.stmt_pre = accum_stmt, .expr_pre = accum_expr, .ctx = &a};
  if (one) kiln_walk_stmt(&w, s);
  else kiln_walk_block(&w, s);
  return a.found;
}

LLVMModuleRef kiln_llvm_tier_module(cg *c, const char *name) {
  const char *only = getenv("KILN_OPT");
  if (only && !strcmp(only, "O3")) return NULL;
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext(name, c->ctx);
  LLVMSetSourceFileName(m, "", 0); /* no file symbol (the symbol check) */
  LLVMSetTarget(m, LLVMGetTarget(c->mod));
  LLVMSetDataLayout(m, LLVMGetDataLayoutStr(c->mod));
  return m;
}

/* LLVM's verifier over the printed modules: in debug and sanitizer builds
 * and whenever the loop-IR verifier runs (KILN_VERIFY_LOOPS: the
 * conformance suites), as that one does.  A release build trusts the
 * printer, as it trusts the loop IR: the check cost ResNet-50 65 ms of a
 * 2.5 s compile, on code that passed it in every test. */
int kiln_llvm_verify(cg *c, kiln_diag *d) {
  if (!kiln_loop_verify_wanted()) return 0;
  LLVMModuleRef mods[3] = {c->mod, c->light, c->tiled};
  for (int i = 0; i < 3; i++) {
    char *err = NULL;
    if (mods[i] && LLVMVerifyModule(mods[i], LLVMReturnStatusAction, &err)) {
      kiln_error(d, NULL, "internal error: generated LLVM IR is invalid: %.400s", err);
      LLVMDisposeMessage(err);
      return -1;
    }
    LLVMDisposeMessage(err);
  }
  return 0;
}

static int run_pipeline(LLVMModuleRef mod, const char *pipeline, int unroll, LLVMTargetMachineRef tm, kiln_diag *d) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, unroll);
  LLVMErrorRef err = LLVMRunPasses(mod, pipeline, tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (!err) return 0;
  char *m = LLVMGetErrorMessage(err);
  kiln_error(d, NULL, "LLVM: optimisation failed: %s", m);
  LLVMDisposeErrorMessage(m);
  return -1;
}

/* Links tier module *m into c->mod (which takes it, even on failure). */
static int link_tier(cg *c, LLVMModuleRef *m, kiln_diag *d) {
  LLVMModuleRef tier = *m;
  *m = NULL;
  if (tier && LLVMLinkModules2(c->mod, tier))
    return kiln_error(d, NULL, "internal error: cannot link the kernels' modules");
  return 0;
}

int kiln_llvm_optimise(cg *c, LLVMTargetMachineRef tm, kiln_timing *t, kiln_diag *d) {
  if (run_pipeline(c->mod, "mergefunc,default<O3>", 1, tm, d)) return -1;
  kiln_timing_mark(t, "llvm-optimise-heavy");
  if (!c->light) return 0;
  if (run_pipeline(c->tiled, TILED_PIPELINE, 0, tm, d)) return -1;
  kiln_timing_mark(t, "llvm-optimise-tiled");
  if (run_pipeline(c->light, "mergefunc,default<O2>", 0, tm, d)) return -1;
  kiln_timing_mark(t, "llvm-optimise-light");
  if (link_tier(c, &c->tiled, d) || link_tier(c, &c->light, d)) return -1;
  /* functions were external only to be linked: the object exports nothing but the entry */
  LLVMValueRef entry = LLVMGetNamedFunction(c->mod, c->entry ? c->entry : "kiln_run");
  for (LLVMValueRef fn = LLVMGetFirstFunction(c->mod); fn; fn = LLVMGetNextFunction(fn))
    if (!LLVMIsDeclaration(fn) && fn != entry) LLVMSetLinkage(fn, LLVMInternalLinkage);
  kiln_timing_mark(t, "llvm-link");
  return 0;
}
