/* The compiler pipeline, in one place: every command that compiles a model
 * (run, compile, emit-c, inspect) runs it through kiln_pipeline_run.  The
 * passes, in order (also `kiln COMMAND --dump-after list`):
 *   import          model file -> graph IR, then the command's bindings
 *                   (--batch, --dim, --const, --input, image/volume size)
 *   infer-shapes    every value's dtype and shape; constants folded
 *   train           training only: loss, gradients (autodiff), optimizer updates in place;
 *                   or, for explanations, the explanation graph (passes/explain.h)
 *   fold-batchnorm  inference BN folded into Conv/Gemm weights; no-op Cast/Identity/Transpose pairs bypassed
 *   dense-gemm      Gemm with transB reads B^T; a Conv whose one window is its whole input is a Gemm
 *   widen-f16       CPU inference: f16/bf16 tensors become f32 ones holding the same values
 *   fuse-epilogue   elementwise chains fused into their producer's output store
 *   lower           graph IR -> loop IR (one kernel per node)
 *   expand-reduce   reductions -> CPU accumulator code (plain, lanes, blocked f64 sums)
 *   simplify-index  index arithmetic folded, canonicalised, hoisted
 *   schedule-threads  which loop of each kernel runs on the thread pool (target)
 *   schedule-gpu    GPU target: every kernel one launch (blocks x threads)
 *   plan-memory     workspace buffers placed by liveness
 * The backend (LLVM JIT or object, C printer) is the command's own last step. */
#ifndef KILN_PIPELINE_H
#define KILN_PIPELINE_H

#include <stdio.h>

#include "../ir/loop.h"
#include "../ir/timing.h"

typedef enum kiln_pass_id {
  KILN_PASS_NONE, /* 0: options left out mean "from the first", "to the last", "no dump" */
  KILN_PASS_IMPORT,
  KILN_PASS_INFER_SHAPES,
  KILN_PASS_TRAIN, /* only with opts.train: the training step (passes/train.h) */
  KILN_PASS_PER_IMAGE, /* only with opts.per_image: batch N as N one-image runs */
  KILN_PASS_FOLD_BATCHNORM,
  KILN_PASS_DENSE_GEMM, /* Gemm transB and whole-input Convs as row-form Gemms */
  KILN_PASS_WIDEN_F16, /* CPU: f16/bf16 tensors kept as f32 holding the same values */
  KILN_PASS_FUSE_EPILOGUE, /* elementwise chains into their producer's epilogue */
  KILN_PASS_FUSE_POOL, /* CPU: pools whose windows tile their input into the Conv before */
  KILN_PASS_LAYOUT_NCHWC, /* CPU: values between direct convolutions channel-blocked */
  KILN_PASS_LOWER,
  KILN_PASS_EXPAND_REDUCE,
  KILN_PASS_SIMPLIFY_INDEX,
  KILN_PASS_SCHEDULE_THREADS,
  KILN_PASS_SCHEDULE_GPU,
  KILN_PASS_PLAN_MEMORY,
  KILN_PASS_COUNT
} kiln_pass_id;

/* The command's bindings, applied to the freshly imported graph (part of
 * the import pass); 0, or -1 with d set. */
typedef int (*kiln_bind_fn)(kiln_graph *g, void *ctx, kiln_diag *d);

typedef struct kiln_pipeline_opts {
  const char *path;     /* the model: .kiln is DSL source, anything else ONNX */
  kiln_graph *graph;    /* or a graph the command imported itself (path unused) */
  kiln_bind_fn bind;    /* optional */
  void *bind_ctx;
  kiln_pass_id from;       /* first pass run (those before it ran already); NONE: import */
  kiln_pass_id until;      /* last pass run; NONE: plan-memory */
  kiln_pass_id dump_after; /* print the IR after this pass to `dump`; NONE: no dump */
  FILE *dump;           /* NULL: stderr */
  const kiln_target *target; /* what to lower and schedule for; NULL: kiln_target_default() */
  kiln_timing *timing;  /* --time: each pass's wall time; NULL: not timed */
  const struct kiln_train_opts *train; /* NULL: inference; else the graph becomes one training step */
  const struct kiln_explain_opts *explain; /* NULL: none; else the explanation graph (in the train pass's slot) */
  int per_image;        /* the backend runs a one-image program once per image (LLVM, C):
                           batch-N inference graphs may be rewritten so (passes/per_image.c);
                           2: and it can run images at once on its threads (LLVM), one
                           workspace copy per slot (kiln_program.image_slots) */
} kiln_pipeline_opts;

typedef struct kiln_pipeline {
  kiln_graph *graph;     /* always set when there is one, even on failure: the caller frees it */
  kiln_program *program; /* set once lower ran (in graph's arena) */
  int dumped;            /* the IR after dump_after was printed */
} kiln_pipeline;

/* Runs passes opts->from..opts->until; 0, or -1 with d set. */
int kiln_pipeline_run(const kiln_pipeline_opts *o, kiln_pipeline *out, kiln_diag *d);
/* The import pass's reading of a model file (no bindings). */
kiln_graph *kiln_pipeline_import(const char *path, kiln_diag *d);
/* A pass's name ("infer-shapes"), and the pass named s (NONE if none). */
const char *kiln_pass_name(kiln_pass_id id);
kiln_pass_id kiln_pass_lookup(const char *s);
/* "import, infer-shapes, ..." for usage messages. */
const char *kiln_pass_list(void);

#endif
