/* kiln inspect: import a model, infer every shape, and print a summary
 * (inputs, outputs, op histogram, parameters, MACs), every node (--verbose),
 * the graph IR (--ir), the loop IR after the loop passes and the memory
 * plan (--loops), or the same facts as JSON (--json). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/text_escape.h"
#include "../passes/lower.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "train_opts.h"

static const char help[] =
    "usage: kiln inspect [options] MODEL\n\n"
    "Imports MODEL (.onnx), checks it, infers every tensor's shape and prints a summary:\n"
    "inputs and outputs, op histogram, learnable parameters, multiply-accumulates.\n\n"
    "options:\n"
    "  --verbose     also list every node with its output shapes, what was fused\n"
    "                into what, and each convolution's schedule [in brackets] as\n"
    "                lowered for --target (Winograd tile, GEMM form, depthwise)\n"
    "  --ir          print kiln's graph IR after shape inference\n"
    "  --loops       print the loop IR: kernels, loops and buffers after the loop\n"
    "                passes and the memory plan (symbolic dims bound; batch 1)\n"
    "  --json        print the summary as one JSON object\n"
    "  --batch N     bind the symbolic batch dim to N (default: keep it symbolic)\n"
    "  --dim NAME=N  bind symbolic dim NAME to N (default: keep it symbolic)\n"
    "  --dump-after PASS  print the IR after PASS to stderr (`list`: the passes)\n"
    "  --target T    what --loops and --dump-after compile for: cpu (default: the fixed\n"
    "                C target) or cuda (a GPU: every kernel one launch, schedule-gpu;\n"
    "                the summary then lists every kernel's launch shape)\n"
    "  --tf32        with --target cuda: convolutions on TF32 tensor cores (10-bit\n"
    "                mantissas, relative error ~1e-3; README: CUDA)\n"
    "  --layout L    plain (default) or nchwc: the blocked layout pass (the values'\n"
    "                layouts show as @nchw16c)\n"
    "  --lean-memory the C target with peak workspace at most the plain plan's\n"
    "                (as `kiln run --lean-memory`: slower strided convolutions)\n"
    "  --train       summarise one training step instead (trained/frozen parameters,\n"
    "                optimizer state, peak training memory); --dump-after train shows it\n"
    "  -h, --help    show this help\n\n";

static void json_str(FILE *f, const char *s) { kiln_put_json_string(f, s); }

static void json_shape(FILE *f, const kiln_graph *g, const kiln_value *v) {
  fputc('[', f);
  for (int i = 0; i < v->rank; i++) {
    if (i) fputc(',', f);
    if (KILN_DIM_IS_SYM(v->dims[i])) json_str(f, g->syms[-v->dims[i] - 1]);
    else fprintf(f, "%" PRId64, v->dims[i]);
  }
  fputc(']', f);
}

static void json_values(FILE *f, const kiln_graph *g, kiln_value **vs, int n) {
  fputc('[', f);
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s{\"name\": ", i ? ", " : "");
    json_str(f, vs[i]->name);
    fprintf(f, ", \"dtype\": \"%s\", \"shape\": ", kiln_dtype_name(vs[i]->dtype));
    json_shape(f, g, vs[i]);
    fputc('}', f);
  }
  fputc(']', f);
}

/* Op histogram in op-table order (stable output). */
static void histogram(const kiln_graph *g, int *count) {
  memset(count, 0, sizeof(int) * KILN_OP_COUNT);
  for (int i = 0; i < g->nnodes; i++) count[g->nodes[i]->op]++;
}


static const char *group3(int64_t v, char *buf) { /* 25557032 -> 25,557,032 */
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%" PRId64, v), j = 0;
  for (int i = 0; i < n; i++) {
    buf[j++] = tmp[i];
    if (tmp[i] != '-' && (n - i - 1) % 3 == 0 && i != n - 1) buf[j++] = ',';
  }
  buf[j] = 0;
  return buf;
}

static const char *human(double v, const char *unit, char *buf) {
  const char *p = "";
  if (v >= 1e9) { v /= 1e9; p = "G"; }
  else if (v >= 1e6) { v /= 1e6; p = "M"; }
  else if (v >= 1e3) { v /= 1e3; p = "K"; }
  sprintf(buf, "%.2f %s%s", v, p, unit);
  return buf;
}

/* Peak activation memory from kiln's memory plan (the lowered program's
 * workspace, from the pipeline's loop passes, which print their dump here);
 * *plain gets the plain plan's figure (graph values only, no kernel
 * scratch: plan_memory.c); -1 when the graph cannot be planned (symbolic dims, or an op the code
 * generators do not handle yet). */
static int64_t peak_bytes(kiln_graph *g, kiln_model_opts *o, int64_t *plain) {
  if (g->nsyms) {
    for (int i = 0; i < g->nvalues; i++)
      if (!kiln_value_is_static(g->values[i]) && g->values[i]->rank >= 0) return -1;
  }
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = g, .from = KILN_PASS_LOWER, .dump_after = (kiln_pass_id)o->dump_after,
                           .target = o->target};
  int rc = kiln_pipeline_run(&po, &pl, &d);
  o->dumped |= pl.dumped;
  if (!rc) o->program = pl.program; /* (--target cuda: its launches are listed) */
  *plain = rc ? -1 : pl.program->plain_workspace_bytes;
  return rc ? -1 : pl.program->workspace_bytes;
}

/* The schedule the lowering chose for node n's kernel (kiln_kernel.schedule),
 * or NULL: none named (the generic loop nest, or no program). */
static const char *schedule_of(const kiln_program *p, const kiln_node *n) {
  for (int k = 0; p && k < p->nkernels; k++)
    if (p->kernels[k]->node == n && p->kernels[k]->schedule) return p->kernels[k]->schedule;
  return NULL;
}

/* --target cuda: every kernel's launch shape, in launch order, and its
 * estimated work (GPU audits: a large one launched as a few threads). */
static void print_launches(const kiln_program *p) {
  printf("launches  %d GPU kernels, in order (--loops prints their code)\n", p->nkernels);
  for (int k = 0; k < p->nkernels; k++) {
    const kiln_kernel *x = p->kernels[k];
    if (!x->launch) continue;
    printf("  %-28s grid (%" PRId64 ", %" PRId64 ", %" PRId64 ")  block (%" PRId64 ", %" PRId64 ", %" PRId64 ")", x->name,
           x->launch->grid[0], x->launch->grid[1], x->launch->grid[2], x->launch->block[0], x->launch->block[1],
           x->launch->block[2]);
    if (x->node) {
      printf("  node '");
      kiln_put_display(stdout, x->node->name);
      printf("' (%s)", kiln_op_get(x->node->op)->name);
    }
    /* the launch's estimated operations (loads, stores, arithmetic; schedule_threads.c's measure) */
    int64_t work = 0;
    for (const kiln_ls *s = x->body; s; s = s->next) work += kiln_schedule_work(s);
    printf("  work %" PRId64 "\n", work);
  }
}

/* Symbolic dims still unbound in the inputs: *batch when a leading dim is
 * one, and the others' names in list (empty when none).  MACs scale with
 * the batch but depend on the other dims non-linearly: with those left
 * symbolic, MACs are reported as unknown rather than as a wrong number. */
static void unbound_dims(const kiln_graph *g, int *batch, char *list, size_t size) {
  size_t n = 0;
  *batch = 0;
  list[0] = 0;
  for (int s = 0; s < g->nsyms; s++) {
    int lead = 0, other = 0;
    for (int i = 0; i < g->ninputs; i++)
      for (int k = 0; k < g->inputs[i]->rank; k++)
        if (g->inputs[i]->dims[k] == -(s + 1)) *(k ? &other : &lead) = 1;
    *batch |= lead;
    if (other && n < size) n += (size_t)snprintf(list + n, size - n, "%s%s", n ? ", " : "", g->syms[s]);
  }
}

static void print_json(const char *path, kiln_graph *g, const kiln_model_opts *o, int64_t peak, int64_t plain) {
  int count[KILN_OP_COUNT];
  histogram(g, count);
  printf("{\"model\": ");
  json_str(stdout, path);
  printf(", \"ir_version\": %" PRId64 ", \"opset\": %" PRId64 ", \"producer\": ", g->ir_version, g->opset);
  json_str(stdout, g->producer);
  printf(", \"inputs\": ");
  json_values(stdout, g, g->inputs, g->ninputs);
  printf(", \"outputs\": ");
  json_values(stdout, g, g->outputs, g->noutputs);
  printf(", \"nodes\": %d, \"op_histogram\": {", g->nnodes);
  for (int i = 0, first = 1; i < KILN_OP_COUNT; i++)
    if (count[i]) {
      printf("%s\"%s\": %d", first ? "" : ", ", kiln_op_get((kiln_op)i)->name, count[i]);
      first = 0;
    }
  int batch;
  char dims[512], macs[32] = "null"; /* unknown while non-batch dims are symbolic */
  unbound_dims(g, &batch, dims, sizeof dims);
  if (!dims[0]) snprintf(macs, sizeof macs, "%" PRId64, kiln_cli_macs(g));
  printf("}, \"params\": %" PRId64 ", \"bn_stats\": %" PRId64 ", \"macs\": %s, \"weights_bytes\": %" PRId64
         ", \"peak_activation_bytes\": %" PRId64 ", \"plain_activation_bytes\": %" PRId64 ", \"batch_bound\": %s}\n",
         o->params, o->bn_stats, macs, o->param_bytes, peak, plain, o->bound_note ? "true" : "false");
}

static void print_summary(const char *path, kiln_graph *g, const kiln_model_opts *o, int64_t peak, int64_t plain,
                          int verbose) {
  char ty[256], b1[64], b2[64], b3[64];
  int count[KILN_OP_COUNT];
  printf("model     ");
  kiln_put_display(stdout, path);
  printf("\n");
  size_t plen = strlen(path);
  if (plen > 5 && !strcmp(path + plen - 5, ".kiln"))
    printf("format    kiln DSL (kiln export writes it as ONNX opset %" PRId64 ")\n", g->opset);
  else {
    printf("format    ONNX ir_version %" PRId64 ", opset %" PRId64 "%s", g->ir_version, g->opset,
           g->producer[0] ? ", producer " : "");
    kiln_put_display(stdout, g->producer);
    printf("\n");
  }
  for (int i = 0; i < g->ninputs; i++) {
    kiln_value_type_str(g, g->inputs[i], ty, sizeof ty);
    printf("%-9s ", i ? "" : "inputs");
    kiln_put_display_pad(stdout, g->inputs[i]->name, 24);
    printf(" ");
    kiln_put_display(stdout, ty);
    printf("\n");
  }
  for (int i = 0; i < g->noutputs; i++) {
    kiln_value_type_str(g, g->outputs[i], ty, sizeof ty);
    printf("%-9s ", i ? "" : "outputs");
    kiln_put_display_pad(stdout, g->outputs[i]->name, 24);
    printf(" ");
    kiln_put_display(stdout, ty);
    printf("\n");
  }
  histogram(g, count);
  printf("nodes     %d\nops      ", g->nnodes);
  int col = 10;
  for (int i = 0; i < KILN_OP_COUNT; i++) {
    if (!count[i]) continue;
    char item[96];
    int w = snprintf(item, sizeof item, " %s x%d", kiln_op_get((kiln_op)i)->name, count[i]);
    if (col + w > 96) { printf("\n         "); col = 10; }
    col += printf("%s", item);
  }
  printf("\nparams    %s learnable (%s)", group3(o->params, b1), human((double)o->param_bytes, "B", b2));
  if (o->bn_stats) printf(", plus %s BatchNorm running statistics", group3(o->bn_stats, b1));
  int64_t macs = kiln_cli_macs(g);
  int batch;
  char dims[512];
  unbound_dims(g, &batch, dims, sizeof dims);
  if (dims[0]) printf("\nMACs      unknown: they depend on %s (bind with --dim NAME=N)\n", dims);
  else printf("\nMACs      %s (%s)%s\n", human((double)macs, "", b2), group3(macs, b1), batch ? " per batch item" : "");
  /* the plan's peak (kernel scratch included) beside the plain plan's
   * (graph values only): scratch should fit in the plain plan's figure */
  if (peak >= 0) printf("memory    %s peak workspace (plain plan %s), %s weights\n", human((double)peak, "B", b1),
                        human((double)plain, "B", b3), human((double)o->param_bytes, "B", b2));
  else printf("memory    (no plan: %s)\n", dims[0] ? "bind the symbolic dims with --dim NAME=N"
                                          : batch ? "bind the batch with --batch N" : "an op is not yet lowered");
  if (verbose) {
    if (o->program && (!o->target || o->target->kind == KILN_TARGET_CPU))
      printf("\nschedules [in brackets] as lowered for the fixed C target (64-byte vectors, 8 cores; `kiln\n"
             "emit-c` prints the same); `kiln run` lowers for this CPU, whose cores and caches can change them\n");
    printf("\n");
    for (int i = 0; i < g->nnodes; i++) {
      const kiln_node *n = g->nodes[i];
      printf("  #%-4d %-22s ", i, kiln_op_get(n->op)->name);
      kiln_put_display_pad(stdout, n->name[0] ? n->name : "-", 28);
      for (int k = 0; k < n->nout; k++) {
        if (!n->out[k]) continue;
        kiln_value_type_str(g, n->out[k], ty, sizeof ty);
        printf(" ");
        kiln_put_display(stdout, ty);
      }
      /* an epilogue step (passes/fuse_epilogue.c): no kernel of its own */
      for (int j = 0; n->fused_into && j < i; j++)
        if (g->nodes[j] == n->fused_into) printf("  (fused into #%d)", j);
      const char *sched = schedule_of(o->program, n);
      if (sched) printf("  [%s]", sched);
      printf("\n");
    }
  }
}

int kiln_cmd_inspect(int argc, char **argv) {
  int verbose = 0, ir = 0, json = 0, loops = 0, train = 0, tr;
  const char *path = NULL;
  kiln_cli_train topts;
  kiln_cli_train_init(&topts);
  kiln_cli_bindings bind = {0};
  kiln_model_opts o = {.bind = &bind};
  kiln_target gpu = kiln_target_gpu_default(), lean = kiln_target_c();
  lean.lean_memory = 1;
  int lean_memory = 0, nchwc = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); fputs(kiln_train_opts_usage, stdout); return 0; }
    else if (!strcmp(a, "--train")) train = 1;
    else if ((tr = kiln_train_option("inspect", argc, argv, &i, &topts)) != 1) {
      if (tr) { kiln_cli_bindings_free(&bind); kiln_cli_train_free(&topts); return tr; }
    }
    else if (!strcmp(a, "--target")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("inspect", "%s needs a value", a);
      const char *v = argv[++i];
      if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "cuda-host"))
        return kiln_cli_usage_error("inspect", "--target must be cpu, cuda or cuda-host, got '%s'", v);
      o.target = strcmp(v, "cpu") ? &gpu : NULL;
    }
    else if (!strcmp(a, "--tf32")) gpu.tf32 = 1;
    else if (!strcmp(a, "--lean-memory")) lean_memory = 1;
    else if (!strcmp(a, "--layout")) {
      const char *v = i + 1 < argc ? argv[++i] : "";
      if (strcmp(v, "plain") && strcmp(v, "nchwc"))
        return kiln_cli_usage_error("inspect", "--layout must be plain or nchwc, got '%s'", v);
      nchwc = !strcmp(v, "nchwc");
    }
    else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) verbose = 1;
    else if (!strcmp(a, "--ir")) ir = 1;
    else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--loops")) loops = 1;
    else if (!strcmp(a, "--dump-after")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("inspect", "%s needs a value", a);
      int r = kiln_cli_dump_option("inspect", argv[++i], &o.dump_after);
      if (r) { kiln_cli_bindings_free(&bind); return r == 3 ? 0 : r; }
    }
    else if (!strcmp(a, "--batch") || !strcmp(a, "--dim")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("inspect", "%s needs a value", a);
      if (kiln_cli_binding_option("inspect", a, argv[++i], &bind)) { kiln_cli_bindings_free(&bind); return 2; }
    } else if (a[0] == '-' && a[1]) return kiln_cli_usage_error("inspect", "unknown option '%s'", a);
    else if (path) return kiln_cli_usage_error("inspect", "more than one model given ('%s' and '%s')", path, a);
    else path = a;
  }
  if (!path) return kiln_cli_usage_error("inspect", "no model given");
  if (topts.given && !train) {
    kiln_cli_train_free(&topts);
    return kiln_cli_usage_error("inspect", "training options need --train");
  }
  kiln_diag d = {0};
  if (gpu.tf32 && o.target != &gpu) return kiln_cli_usage_error("inspect", "--tf32 is for --target cuda or cuda-host");
  if (lean_memory && o.target == &gpu) return kiln_cli_usage_error("inspect", "--lean-memory is for the CPU target");
  if (nchwc && o.target == &gpu) return kiln_cli_usage_error("inspect", "--layout nchwc is for the CPU target");
  if (lean_memory) o.target = &lean;
  if (nchwc) {
    if (!lean_memory) lean.lean_memory = 0;
    lean.layout_nchwc = 1;
    o.target = &lean;
  }
  o.static_shapes = o.lower = loops || train; /* --loops, --train: the whole pipeline, as compile runs it */
  /* --loops and --dump-after show the pipeline as compile runs it (on a CPU: one image at a time) */
  o.per_image = (loops || o.dump_after) && o.target != &gpu; /* the C target: one image after another */
  if (train) o.train = &topts.t;
  kiln_graph *g = kiln_cli_load(path, &o, &d);
  if (!g) { kiln_cli_report(&d); kiln_cli_bindings_free(&bind); kiln_cli_train_free(&topts); return 1; }
  if (train && !loops) { /* the training step's summary */
    int rc = kiln_cli_inspect_train(path, g, o.program, &topts.t, json, &d);
    if (rc) kiln_cli_report(&d);
    else if (!json && o.target == &gpu && o.program) print_launches(o.program); /* the step's launches */
    kiln_graph_free(g);
    kiln_cli_bindings_free(&bind);
    kiln_cli_train_free(&topts);
    return rc ? 1 : 0;
  }
  if (o.bound_note && !json)
    fprintf(stderr, "kiln: note: symbolic dims bound to 1 to infer shapes (choose with --batch N or --dim NAME=N)\n");
  /* The loop passes run for the memory figure, or for a dump after one. */
  int64_t peak = -1, plain = -1;
  if (!loops && (!ir || o.dump_after >= KILN_PASS_LOWER)) peak = peak_bytes(g, &o, &plain);
  if (o.dump_after && !o.dumped)
    fprintf(stderr, "kiln: note: --dump-after %s printed nothing: the model could not be lowered (bind its symbolic "
                    "dims with --batch N or --dim NAME=N)\n", kiln_pass_name((kiln_pass_id)o.dump_after));
  if (loops) kiln_program_print(o.program, stdout);
  else if (json) print_json(path, g, &o, peak, plain);
  else if (ir) kiln_graph_print(g, stdout);
  else {
    print_summary(path, g, &o, peak, plain, verbose);
    if (o.target == &gpu && o.program) print_launches(o.program);
  }
  kiln_graph_free(g);
  kiln_cli_bindings_free(&bind);
  kiln_cli_train_free(&topts);
  return 0;
}
