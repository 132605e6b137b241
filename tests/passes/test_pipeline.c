/* The pipeline (passes/pipeline.c): pass names, the from/until range, the
 * bind hook inside import, and --dump-after's text going to one pass only. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../frontend/dsl/kiln_dsl.h"
#include "../../passes/passes.h"
#include "../../passes/pipeline.h"

static const char src[] = "network n {\n"
                          "  input x: [N, 3, 8, 8]\n"
                          "  c1: conv(4, 3x3, pad=1, bias=false) -> relu\n"
                          "}\n";

static kiln_graph *load(void) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_dsl_load_buffer(src, strlen(src), "n.kiln", NULL, NULL, &d);
  cr_assert(g, "%s", d.msg);
  return g;
}

static int bind_batch(kiln_graph *g, void *ctx, kiln_diag *d) {
  (void)d;
  ++*(int *)ctx;
  kiln_pass_bind_sym(g, -1, 2);
  return 0;
}

static int bind_fails(kiln_graph *g, void *ctx, kiln_diag *d) {
  (void)g;
  (void)ctx;
  return kiln_error(d, NULL, "n.kiln: no such input");
}

Test(pipeline, pass_names_round_trip_in_order) {
  const char *want[] = {"import", "infer-shapes", "train", "per-image", "fold-batchnorm", "dense-gemm", "widen-f16", "fuse-epilogue", "fuse-pool", "layout-nchwc", "lower", "expand-reduce",
                        "simplify-index", "schedule-threads", "schedule-gpu", "plan-memory"};
  for (int i = 0; i < 14; i++) {
    cr_assert_str_eq(kiln_pass_name((kiln_pass_id)(KILN_PASS_IMPORT + i)), want[i]);
    cr_assert_eq(kiln_pass_lookup(want[i]), KILN_PASS_IMPORT + i);
  }
  cr_assert_eq(kiln_pass_lookup("bogus"), KILN_PASS_NONE);
  cr_assert_eq(kiln_pass_lookup("none"), KILN_PASS_NONE);
  cr_assert_str_eq(kiln_pass_list(), "import, infer-shapes, train, per-image, fold-batchnorm, dense-gemm, widen-f16, fuse-epilogue, fuse-pool, layout-nchwc, lower, expand-reduce, "
                                       "simplify-index, schedule-threads, schedule-gpu, plan-memory");
}

Test(pipeline, until_and_from_split_the_run_and_dump_only_the_pass_asked) {
  int calls = 0;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_pipeline_opts o = {.graph = load(), .bind = bind_batch, .bind_ctx = &calls, .until = KILN_PASS_INFER_SHAPES,
                          .dump_after = KILN_PASS_PLAN_MEMORY, .dump = f};
  cr_assert_eq(kiln_pipeline_run(&o, &pl, &d), 0, "%s", d.msg);
  cr_assert_eq(calls, 1);
  cr_assert_null(pl.program, "stopped after infer-shapes");
  cr_assert_eq(pl.dumped, 0);
  /* conv 3x3 pad 1 keeps 8x8; the batch bound to 2 by the hook */
  const kiln_value *y = pl.graph->outputs[0];
  cr_assert_eq(y->rank, 4);
  int64_t want[4] = {2, 4, 8, 8};
  for (int k = 0; k < 4; k++) cr_assert_eq(y->dims[k], want[k]);
  kiln_pipeline_opts rest = {.graph = pl.graph, .from = KILN_PASS_LOWER, .dump_after = KILN_PASS_PLAN_MEMORY, .dump = f};
  kiln_pipeline pl2;
  cr_assert_eq(kiln_pipeline_run(&rest, &pl2, &d), 0, "%s", d.msg);
  cr_assert_eq(calls, 1, "the hook belongs to import, which did not run again");
  cr_assert(pl2.program && pl2.dumped);
  /* planned: x (input) and the output keep their own storage; the conv's
   * 2*4*8*8 f32 result lives in the workspace */
  cr_assert_geq(pl2.program->workspace_bytes, 2 * 4 * 8 * 8 * 4);
  fclose(f);
  cr_assert(!strncmp(text, "# kiln: IR after plan-memory\nbuffer %x : f32[384] input\n", 55), "%s", text);
  cr_assert_eq(strstr(text + 1, "# kiln: IR after"), NULL, "one dump only:\n%s", text);
  free(text);
  kiln_graph_free(pl.graph);
}

Test(pipeline, a_failing_bind_stops_before_shapes_and_keeps_the_graph_for_the_caller) {
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_pipeline_opts o = {.graph = load(), .bind = bind_fails, .dump_after = KILN_PASS_IMPORT};
  cr_assert_eq(kiln_pipeline_run(&o, &pl, &d), -1);
  cr_assert_str_eq(d.msg, "n.kiln: no such input");
  cr_assert(pl.graph && !pl.program && !pl.dumped);
  kiln_graph_free(pl.graph);
}
