/* The pipeline: import -> infer-shapes -> [train] -> [per-image] -> fold-batchnorm -> dense-gemm -> widen-f16 -> fuse-epilogue -> fuse-pool -> layout-nchwc -> lower -> expand-reduce ->
 * simplify-index -> schedule-threads -> schedule-gpu -> plan-memory, read top to bottom in
 * kiln_pipeline_run (as QBE's main.c reads).  Commands used to repeat this sequence each in their own way;
 * now they differ only in how they bind their inputs (the bind callback)
 * and in the backend they hand the program to.  --dump-after prints the IR
 * after one pass: graph IR (ir/print.c) after a graph pass, loop IR
 * (kiln_program_print) after a loop pass; names are printed in display
 * form by both printers. */
#include "pipeline.h"

#include <string.h>

#include "../frontend/dsl/kiln_dsl.h"
#include "../frontend/onnx/kiln_onnx.h"
#include "lower.h"
#include "passes.h"
#include "explain.h"
#include "train.h"

/* Every pass's --dump-after name, in pipeline order: the one list both
 * names[] and kiln_pass_list() are made from. */
#define PASSES(X)                               \
  X(IMPORT, "import")                           \
  X(INFER_SHAPES, "infer-shapes")               \
  X(TRAIN, "train")                             \
  X(PER_IMAGE, "per-image")                     \
  X(FOLD_BATCHNORM, "fold-batchnorm")           \
  X(DENSE_GEMM, "dense-gemm")                   \
  X(WIDEN_F16, "widen-f16")                     \
  X(FUSE_EPILOGUE, "fuse-epilogue")             \
  X(FUSE_POOL, "fuse-pool")                     \
  X(LAYOUT_NCHWC, "layout-nchwc")               \
  X(LOWER, "lower")                             \
  X(EXPAND_REDUCE, "expand-reduce")             \
  X(SIMPLIFY_INDEX, "simplify-index")           \
  X(SCHEDULE_THREADS, "schedule-threads")       \
  X(SCHEDULE_GPU, "schedule-gpu")               \
  X(PLAN_MEMORY, "plan-memory")

#define AS_ENTRY(id, name) [KILN_PASS_##id] = name,
#define AS_LIST(id, name) ", " name
static const char *const names[KILN_PASS_COUNT] = {PASSES(AS_ENTRY)};

const char *kiln_pass_name(kiln_pass_id id) { return id > KILN_PASS_NONE && id < KILN_PASS_COUNT ? names[id] : "none"; }

kiln_pass_id kiln_pass_lookup(const char *s) {
  for (int i = KILN_PASS_NONE + 1; i < KILN_PASS_COUNT; i++)
    if (!strcmp(s, names[i])) return (kiln_pass_id)i;
  return KILN_PASS_NONE;
}

const char *kiln_pass_list(void) {
  return PASSES(AS_LIST) + 2; /* without the first ", " */
}

/* True when pass id is in opts' range. */
static int wanted(const kiln_pipeline_opts *o, kiln_pass_id id) {
  kiln_pass_id until = o->until ? o->until : KILN_PASS_PLAN_MEMORY;
  return id >= o->from && id <= until;
}

/* After pass id: its time (--time), then its dump (--dump-after), so that
 * printing the IR is not counted as the pass's time. */
static void dump(const kiln_pipeline_opts *o, kiln_pipeline *out, kiln_pass_id id) {
  kiln_timing_mark(o->timing, names[id]);
  if (o->dump_after != id) return;
  FILE *f = o->dump ? o->dump : stderr;
  fprintf(f, "# kiln: IR after %s\n", names[id]);
  if (id < KILN_PASS_LOWER) kiln_graph_print(out->graph, f);
  else kiln_program_print(out->program, f);
  fflush(f);
  out->dumped = 1;
}

kiln_graph *kiln_pipeline_import(const char *path, kiln_diag *d) {
  size_t n = strlen(path);
  if (n > 5 && !strcmp(path + n - 5, ".kiln")) return kiln_dsl_load(path, d);
  return kiln_onnx_load(path, d);
}

/* One image at a time on a backend with threads (per_image 2): as many
 * images at once as the target has cores (at most the batch), each in a
 * workspace of its own, their kernels single-threaded.  Two threads each
 * running whole images outpace two threads sharing every kernel: no
 * hand-off per kernel, and each layer's work stays on one core. */
static void image_slots(const kiln_pipeline_opts *o, kiln_program *p) {
  p->image_slots = 1;
  p->image_workspace_bytes = p->workspace_bytes;
  if (o->per_image < 2 || p->images < 2 || p->target.kind == KILN_TARGET_GPU) return;
  int64_t slots = p->target.cores < p->images ? p->target.cores : p->images;
  if (slots < 2) return;
  p->image_workspace_bytes = (p->workspace_bytes + 63) / 64 * 64;
  p->image_slots = slots;
  p->workspace_bytes = slots * p->image_workspace_bytes;
}

int kiln_pipeline_run(const kiln_pipeline_opts *o, kiln_pipeline *out, kiln_diag *d) {
  *out = (kiln_pipeline){.graph = o->graph};
  /* the loop-IR verifier: debug builds, or KILN_VERIFY_LOOPS=1 (tests) */
  int verify = kiln_loop_verify_wanted();
  if (o->from > KILN_PASS_LOWER) return kiln_error(d, NULL, "internal: the pipeline cannot start after lower");
  if (wanted(o, KILN_PASS_IMPORT)) {
    if (!out->graph && !(out->graph = kiln_pipeline_import(o->path, d))) return -1;
    if (kiln_pass_bind_state(out->graph, d)) return -1; /* metadata kiln.state */
    if (o->bind && o->bind(out->graph, o->bind_ctx, d)) return -1;
    if (o->train && kiln_train_prepare(out->graph, o->train, d)) return -1; /* parameters become state */
    dump(o, out, KILN_PASS_IMPORT);
  }
  kiln_graph *g = out->graph;
  if (!g) return kiln_error(d, NULL, "internal: the pipeline has no graph");
  if (wanted(o, KILN_PASS_INFER_SHAPES)) {
    if (kiln_pass_infer_shapes(g, d)) return -1;
    dump(o, out, KILN_PASS_INFER_SHAPES);
  }
  if (wanted(o, KILN_PASS_TRAIN)) { /* inference: the graph unchanged */
    if (o->train && kiln_pass_train(g, o->train, d)) return -1;
    if (o->explain && kiln_explain_build(g, o->explain, d)) return -1;
    dump(o, out, KILN_PASS_TRAIN);
  }
  if (wanted(o, KILN_PASS_PER_IMAGE)) { /* inference on a CPU backend that loops over the images */
    if (o->per_image && !o->train && !o->explain && kiln_pass_per_image(g, d)) return -1;
    dump(o, out, KILN_PASS_PER_IMAGE);
  }
  if (wanted(o, KILN_PASS_FOLD_BATCHNORM)) {
    if (kiln_pass_fold_batchnorm(g, d)) return -1;
    dump(o, out, KILN_PASS_FOLD_BATCHNORM);
  }
  if (wanted(o, KILN_PASS_DENSE_GEMM)) {
    if (kiln_pass_dense_gemm(g, o->target, d)) return -1;
    dump(o, out, KILN_PASS_DENSE_GEMM);
  }
  if (wanted(o, KILN_PASS_WIDEN_F16)) { /* not for training or explanations: they keep their types */
    if (!o->train && !o->explain && kiln_pass_widen_f16(g, o->target, d)) return -1;
    dump(o, out, KILN_PASS_WIDEN_F16);
  }
  if (wanted(o, KILN_PASS_FUSE_EPILOGUE)) {
    if (kiln_pass_fuse_epilogue(g, d)) return -1;
    dump(o, out, KILN_PASS_FUSE_EPILOGUE);
  }
  if (wanted(o, KILN_PASS_FUSE_POOL)) { /* after fuse-epilogue: Relu before the pool in the chain */
    if (kiln_pass_fuse_pool(g, o->target, d)) return -1;
    dump(o, out, KILN_PASS_FUSE_POOL);
  }
  if (wanted(o, KILN_PASS_LAYOUT_NCHWC)) { /* inference: training and explanations keep plain values */
    if (!o->train && !o->explain && kiln_pass_layout_nchwc(g, o->target, d)) return -1;
    dump(o, out, KILN_PASS_LAYOUT_NCHWC);
  }
  if (wanted(o, KILN_PASS_LOWER)) {
    if (!(out->program = kiln_lower_with(g, o->target, d))) return -1;
    kiln_schedule_reduce_gpu(out->program); /* GPU: block reductions, while REDUCEs are whole */
    dump(o, out, KILN_PASS_LOWER);
    if (verify && kiln_loop_verify(out->program, d)) return -1;
  }
  if (!out->program) return 0; /* stopped at a graph pass */
  if (wanted(o, KILN_PASS_EXPAND_REDUCE)) {
    kiln_expand_reduce(out->program);
    dump(o, out, KILN_PASS_EXPAND_REDUCE);
    if (verify && kiln_loop_verify(out->program, d)) return -1;
  }
  if (wanted(o, KILN_PASS_SIMPLIFY_INDEX)) {
    kiln_simplify_index(out->program);
    dump(o, out, KILN_PASS_SIMPLIFY_INDEX);
    if (verify && kiln_loop_verify(out->program, d)) return -1;
  }
  if (wanted(o, KILN_PASS_SCHEDULE_THREADS)) {
    kiln_schedule_threads(out->program);
    dump(o, out, KILN_PASS_SCHEDULE_THREADS);
    if (verify && kiln_loop_verify(out->program, d)) return -1;
  }
  if (wanted(o, KILN_PASS_SCHEDULE_GPU)) {
    kiln_schedule_gpu(out->program);
    dump(o, out, KILN_PASS_SCHEDULE_GPU);
    if (verify && kiln_loop_verify(out->program, d)) return -1;
  }
  if (wanted(o, KILN_PASS_PLAN_MEMORY)) {
    kiln_plan_memory(out->program);
    image_slots(o, out->program);
    dump(o, out, KILN_PASS_PLAN_MEMORY);
  }
  return 0;
}
