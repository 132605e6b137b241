/* kiln compile: ahead-of-time compilation to a folder holding
 *   PREFIX.o         the network's kernels (relocatable, PIC) and buffer table
 *   PREFIX.h         the C API: create / run / destroy, tensor names and shapes
 *   PREFIX.weights   the packed weights, mmap'd by the runtime at create time
 *   kiln_runtime.[ch] the runtime (libc only), to compile with the program
 *   libPREFIX.so     with --shared: all of the above linked (weights stay a file)
 * Weights live in a file rather than in the object: a 100 MB array in an
 * object makes every link slow and every process copy it, while an mmap'd
 * file is shared between processes and can be replaced without relinking.
 * Everything is written into a temporary folder renamed into place at the
 * end, so a failure leaves no half-written artifact. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../backends/c/c_names.h"
#include "../backends/llvm/kiln_llvm.h"
#include "../passes/lower.h"
#include "../passes/passes.h"
#include "cli.h"
#include "tensor_io.h"
#include "explain_opts.h"
#include "train_opts.h"

extern const char kiln_runtime_c_source[], kiln_runtime_h_source[];

static const char help[] =
    "usage: kiln compile [options] MODEL -o DIR\n\n"
    "Compiles MODEL ahead of time into DIR: PREFIX.o, PREFIX.h (C API),\n"
    "PREFIX.weights and the runtime sources kiln_runtime.c/.h.  Build a program with\n"
    "  cc main.c DIR/PREFIX.o DIR/kiln_runtime.c -IDIR -lm -pthread\n\n"
    "options:\n"
    "  -o, --output DIR   output folder (must not exist, or be empty)\n"
    "  --name PREFIX      C identifier prefixing the API (default: from the file name)\n"
    "  --batch N          bind the symbolic batch dim to N (default 1)\n"
    "  --dim NAME=N       bind symbolic dim NAME to N (every other one must be bound)\n"
    "  --const NAME=FILE  freeze input NAME to the tensor in FILE (.npy/.pb): needed\n"
    "                     for inputs that decide shapes (Reshape shape, Pad pads...)\n"
    "  --portable         target baseline x86-64 instead of this machine's CPU\n"
    "  --keep-f16         keep float16/bfloat16 tensors narrow in memory (half the\n"
    "                     activation memory, slower); by default they are f32 buffers\n"
    "                     holding the same rounded values (same results, faster)\n"
    "  --layout L         plain (default) or nchwc: values between direct\n"
    "                     convolutions stored channel-blocked (bench/README: level\n"
    "                     with plain on ResNet-50, slower on MobileNetV2, here)\n"
    "  --lean-memory      peak workspace at most the plain memory plan's: scratch\n"
    "                     counted exactly, strided convolutions read their input\n"
    "                     in place where phase planes would not fit (slower:\n"
    "                     ResNet-50 about 4%)\n"
    "  --target cuda      compile for a GPU instead: PREFIX.cu (CUDA C), NVRTC's cubins\n"
    "                     and PTX, PREFIX_cuda.c/.h (loader, images embedded), the\n"
    "                     runtime kiln_cuda_rt.c/.h; DIR/README.txt says how to build\n"
    "  --arch LIST        with --target cuda: cubin architectures (e.g. sm_80,sm_90;\n"
    "                     default: the GPU present, else sm_80,sm_90), PTX for the newest\n"
    "  --tf32             with --target cuda: convolutions on TF32 tensor\n"
    "                     cores (sm_80+): operands rounded to 10 mantissa bits, sums in\n"
    "                     f32; relative error ~1e-3 instead of ~1e-6 (README: CUDA)\n"
    "  --shared           also link libPREFIX.so (needs a C compiler, `cc`)\n"
    "  --dump-after PASS  print the IR after PASS to stderr (`list`: the passes)\n"
    "  --time             print each compilation stage's wall and CPU time to stderr\n"
    "  --train            compile one training step instead (header: its inputs and state)\n"
    "  -h, --help         show this help\n\n";

static const char *c_type(kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return "float";
  case KILN_DT_F64: return "double";
  case KILN_DT_I8: return "int8_t";
  case KILN_DT_U8: case KILN_DT_BOOL: return "uint8_t";
  case KILN_DT_I16: return "int16_t";
  case KILN_DT_U16: case KILN_DT_F16: case KILN_DT_BF16: return "uint16_t";
  case KILN_DT_I32: return "int32_t";
  case KILN_DT_U32: return "uint32_t";
  case KILN_DT_I64: return "int64_t";
  default: return "uint64_t";
  }
}

/* Input k then output k, in order (k < ninputs + noutputs). */
static const kiln_buf *io_buf(const kiln_program *p, int k) {
  int io = k >= p->ninputs, i = io ? k - p->ninputs : k;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b]->kind == (io ? KILN_BUF_OUTPUT : KILN_BUF_INPUT) && p->bufs[b]->io_index == i) return p->bufs[b];
  return NULL;
}

/* The header: sizes and shapes as macros, the typed run wrapper.  Model
 * names appear escaped (c_names.h): in comments, as string literals, and as
 * distinct identifiers (one namespace for inputs and outputs; never
 * WORKSPACE or WEIGHTS, left to the header's own PREFIX_WORKSPACE_* and
 * PREFIX_WEIGHTS_* macros, as in emit-c's header). */
static char *make_header(const kiln_program *p, const char *prefix, const char *model, int train) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  char up[256];
  kiln_c_identifier_from(up, sizeof up, prefix, 1);
  int nio = p->ninputs + p->noutputs;
  const char **names = kiln_arena_array(p->arena, (size_t)nio + 1, sizeof *names);
  for (int k = 0; k < nio; k++) names[k] = io_buf(p, k)->name;
  static const char *const fixed[] = {"WORKSPACE", "WEIGHTS", "STATE", NULL};
  char **lo = kiln_c_idents(p->arena, names, nio, 0, NULL), **hi = kiln_c_idents(p->arena, names, nio, 1, fixed);
  fprintf(f, "/* %s.h: generated by kiln from ", prefix);
  kiln_c_put_comment(f, model, KILN_C_NAME_SHOWN);
  fprintf(f, ".  Do not edit.\n *\n");
  fprintf(f, " *   %s_model *m;\n *   if (%s_create(\"%s.weights\", &m) != KILN_RT_OK) ...\n", prefix, prefix, prefix);
  fprintf(f, " *   %s_run(m, inputs..., outputs...);   (dense row-major tensors, shapes below)\n", prefix);
  fprintf(f, " *   %s_destroy(m);\n * One model instance runs one call at a time; create one per thread.\n", prefix);
  fprintf(f, " * State (%s_STATE_BYTES > 0: values the model updates in place, such as\n"
             " * parameters or running statistics) belongs to the instance: create sets it\n"
             " * to its initial contents (stored after the weights in %s.weights), each run\n"
             " * reads and updates it, so runs on one instance see each other's updates and\n"
             " * two instances never share it.  %s_state gives its bytes (to save or restore\n"
             " * them), %s_reset_state sets them back to the initial contents. */\n", up, prefix, prefix, prefix);
  if (train)
    fprintf(f, "/* Training step (kiln compile --train): one %s_run is one optimizer step on one\n"
               " * mini-batch.  Inputs: the model's inputs (the batch), then `label` (int64 class\n"
               " * ids for the cross-entropy and Dice losses, else targets shaped like the output),\n"
               " * `lr` (float scalar: this step's learning rate) and `step` (float scalar: the\n"
               " * step number t = 1, 2, ...: Adam's bias correction).  Outputs: `loss` (float\n"
               " * scalar, the batch mean), then the network output the loss reads.  The trained\n"
               " * parameters and the optimizer's moments are the instance's state: %s_state\n"
               " * gives them after training (each state tensor at its offset in %s_layout,\n"
               " * the same layout `kiln inspect --loops --train` prints), %s_reset_state\n"
               " * starts over from the model's initial parameters. */\n", prefix, prefix, prefix, prefix);
  fprintf(f, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n#include \"kiln_runtime.h\"\n\n", up, up);
  fprintf(f, "#define %s_NUM_INPUTS %d\n#define %s_NUM_OUTPUTS %d\n", up, p->ninputs, up, p->noutputs);
  fprintf(f, "#define %s_WORKSPACE_BYTES %lld\n#define %s_WEIGHTS_BYTES %lld\n", up, (long long)p->workspace_bytes, up,
          (long long)p->weights_bytes);
  fprintf(f, "#define %s_STATE_BYTES %lld\n\n", up, (long long)p->state_bytes);
  for (int j = 0; j < nio; j++) {
    const kiln_buf *x = io_buf(p, j);
    const char *nm = hi[j];
    fprintf(f, "/* %s %d: '", j >= p->ninputs ? "output" : "input", j >= p->ninputs ? j - p->ninputs : j);
    kiln_c_put_comment(f, x->name, KILN_C_NAME_SHOWN);
    fprintf(f, "', %s[", kiln_dtype_name(x->dtype));
    for (int k = 0; k < x->rank; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)x->dims[k]);
    fprintf(f, "] */\n#define %s_%s_NAME \"", up, nm);
    kiln_c_put_string(f, x->name);
    fprintf(f, "\"\n#define %s_%s_RANK %d\n#define %s_%s_SIZE %lld\n", up, nm, x->rank, up, nm, (long long)x->numel);
    fprintf(f, "#define %s_%s_SHAPE {", up, nm);
    for (int k = 0; k < x->rank; k++) fprintf(f, "%s%lld", k ? ", " : "", (long long)x->dims[k]);
    fprintf(f, "%s}\n\n", x->rank ? "" : "1 /* rank 0 (a scalar): {} is not valid C */");
  }
  fprintf(f, "extern const int64_t %s_layout[];\nvoid %s_kernels(void **bufs);\ntypedef kiln_rt_model %s_model;\n\n",
          prefix, prefix, prefix);
  fprintf(f, "static inline kiln_rt_status %s_create(const char *weights_path, %s_model **m) {\n", prefix, prefix);
  fprintf(f, "  return kiln_rt_create(%s_layout, %s_kernels, weights_path, m);\n}\n\n", prefix, prefix);
  fprintf(f, "static inline kiln_rt_status %s_run(%s_model *m", prefix, prefix);
  for (int j = 0; j < nio; j++) {
    int out = j >= p->ninputs;
    fprintf(f, ",\n    %s%s *%s_%s", out ? "" : "const ", c_type(io_buf(p, j)->dtype), out ? "out" : "in", lo[j]);
  }
  fprintf(f, ") {\n  const void *in[%d] = {", p->ninputs + 1);
  for (int i = 0; i < p->ninputs; i++) fprintf(f, "%sin_%s", i ? ", " : "", lo[i]);
  fprintf(f, "%s};\n  void *out[%d] = {", p->ninputs ? "" : "0", p->noutputs + 1);
  for (int i = 0; i < p->noutputs; i++) fprintf(f, "%sout_%s", i ? ", " : "", lo[p->ninputs + i]);
  fprintf(f, "};\n  return kiln_rt_run(m, in, out);\n}\n\n");
  fprintf(f, "static inline kiln_rt_status %s_set_threads(%s_model *m, int nthreads) {\n", prefix, prefix);
  fprintf(f, "  return kiln_rt_set_threads(m, nthreads);\n}\n\n");
  fprintf(f, "/* The instance's state (NULL when %s_STATE_BYTES is 0), %s_STATE_BYTES bytes. */\n", up, up);
  fprintf(f, "static inline void *%s_state(%s_model *m) { return kiln_rt_state(m, 0); }\n", prefix, prefix);
  fprintf(f, "static inline kiln_rt_status %s_reset_state(%s_model *m) { return kiln_rt_reset_state(m); }\n\n", prefix,
          prefix);
  fprintf(f, "static inline void %s_destroy(%s_model *m) { kiln_rt_destroy(m); }\n\n#endif\n", prefix, prefix);
  fclose(f);
  return buf;
}

int kiln_cmd_compile(int argc, char **argv) {
  const char *path = NULL, *outdir = NULL, *name = NULL;
  int portable = 0, shared = 0, timed = 0;
  const char *target_name = "cpu", *arch_list = NULL;
  int tf32 = 0, keep_f16 = 0, lean_memory = 0, nchwc = 0;
  kiln_cli_bindings bind = {0};
  int dump_after = 0; /* KILN_PASS_NONE */
  int train = 0, tr;
  kiln_cli_train topts;
  kiln_cli_train_init(&topts);
  topts.own_output = 1; /* -o/--output DIR */
  kiln_cli_explain eopts = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); fputs(kiln_train_opts_usage, stdout); fputs(kiln_explain_opts_usage, stdout); return 0; }
    else if (!strcmp(a, "--train")) train = 1;
    else if ((tr = kiln_explain_option("compile", argc, argv, &i, &eopts)) != 1) {
      if (tr) { kiln_cli_bindings_free(&bind); kiln_cli_train_free(&topts); return tr; }
    }
    else if ((tr = kiln_train_option("compile", argc, argv, &i, &topts)) != 1) {
      if (tr) { kiln_cli_bindings_free(&bind); kiln_cli_train_free(&topts); return tr; }
    }
    else if (!strcmp(a, "--portable")) portable = 1;
    else if (!strcmp(a, "--shared")) shared = 1;
    else if (!strcmp(a, "--tf32")) tf32 = 1;
    else if (!strcmp(a, "--keep-f16")) keep_f16 = 1;
    else if (!strcmp(a, "--lean-memory")) lean_memory = 1;
    else if (!strcmp(a, "--layout")) {
      const char *v = i + 1 < argc ? argv[++i] : "";
      if (strcmp(v, "plain") && strcmp(v, "nchwc"))
        return kiln_cli_usage_error("compile", "--layout must be plain or nchwc, got '%s'", v);
      nchwc = !strcmp(v, "nchwc");
    }
    else if (!strcmp(a, "--time")) timed = 1;
    else if (!strcmp(a, "--dump-after")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("compile", "%s needs a value", a);
      int r = kiln_cli_dump_option("compile", argv[++i], &dump_after);
      if (r) { kiln_cli_bindings_free(&bind); return r == 3 ? 0 : r; }
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--name") || !strcmp(a, "--batch") ||
             !strcmp(a, "--dim") || !strcmp(a, "--const") || !strcmp(a, "--target") || !strcmp(a, "--arch")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("compile", "%s needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "--name")) name = v;
      else if (!strcmp(a, "--arch")) arch_list = v;
      else if (!strcmp(a, "--target")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda")) return kiln_cli_usage_error("compile", "--target must be cpu or cuda, got '%s'", v);
        target_name = v;
      }
      else if (!strcmp(a, "-o") || !strcmp(a, "--output")) outdir = v;
      else if (kiln_cli_binding_option("compile", a, v, &bind)) { kiln_cli_bindings_free(&bind); return 2; }
    } else if (a[0] == '-' && a[1]) return kiln_cli_usage_error("compile", "unknown option '%s'", a);
    else if (path) return kiln_cli_usage_error("compile", "more than one model given ('%s' and '%s')", path, a);
    else path = a;
  }
  if (!path) return kiln_cli_usage_error("compile", "no model given");
  if (!outdir) return kiln_cli_usage_error("compile", "no output folder given (-o DIR)");
  if (topts.given && !train) {
    kiln_cli_train_free(&topts);
    return kiln_cli_usage_error("compile", "training options need --train");
  }
  if ((eopts.given && !eopts.on) || (eopts.on && train)) {
    kiln_cli_train_free(&topts);
    return kiln_cli_usage_error("compile", eopts.on ? "--explain and --train exclude each other" : "--layer and --method need --explain");
  }
  char prefix[128];
  if (name) {
    if (!kiln_c_identifier_ok(name))
      return kiln_cli_usage_error("compile", "--name '%s' is not a C identifier (letters, digits, _; not starting with a digit)", name);
    snprintf(prefix, sizeof prefix, "%s", name);
  } else {
    kiln_c_prefix_for(path, prefix, sizeof prefix);
  }
  int cuda = !strcmp(target_name, "cuda");
  if (arch_list && !cuda) return kiln_cli_usage_error("compile", "--arch is for --target cuda");
  if (tf32 && !cuda) return kiln_cli_usage_error("compile", "--tf32 is for --target cuda");
  if (cuda && (train || eopts.on || portable || shared))
    return kiln_cli_usage_error("compile", "--target cuda compiles inference only (no --train, --explain, --portable, --shared)");
  if (cuda) {
    kiln_timing ct;
    kiln_timing_start(&ct, timed ? stderr : NULL);
    int crc = kiln_cli_compile_cuda(path, outdir, prefix, &bind, arch_list, tf32, dump_after, &ct);
    kiln_cli_bindings_free(&bind);
    kiln_cli_train_free(&topts);
    return crc;
  }
  kiln_diag d = {0};
  int rc = 1;
  char tmp[4096] = "";
  void *obj = NULL;
  char *header = NULL;
  unsigned char *weights = NULL;
  kiln_target target = kiln_llvm_target(portable);
  target.keep_narrow = keep_f16;
  target.lean_memory = lean_memory;
  target.layout_nchwc = nchwc;
  kiln_timing timing;
  kiln_timing_start(&timing, timed ? stderr : NULL);
  kiln_model_opts o = {.bind = &bind, .static_shapes = 1, .lower = 1, .per_image = 2, .dump_after = dump_after, .target = &target,
                       .timing = &timing};
  if (train) o.train = &topts.t;
  if (eopts.on) o.explain = &eopts.e;
  kiln_graph *g = NULL;
  if (kiln_out_dir_check(outdir, &d)) goto fail;
  g = kiln_cli_load(path, &o, &d); /* the pipeline, through plan-memory */
  if (!g) goto fail;
  kiln_program *p = o.program;
  size_t olen = 0;
  fprintf(stderr, "kiln: compiling %d kernels for %s...\n", p->nkernels, portable ? "x86-64" : "this CPU");
  if (kiln_llvm_emit_object(p, prefix, portable, &obj, &olen, &timing, &d)) goto fail;
  header = make_header(p, prefix, path, train);
  if (eopts.on && kiln_cli_explain_header(&header, p, prefix, &eopts.e, 1, 0, &d)) goto fail;
  /* the weights, then the state's initial contents (kiln_runtime.h) */
  weights = calloc(1, (size_t)(p->weights_bytes + p->state_bytes) + 1);
  if (!weights) { kiln_error(&d, NULL, "out of memory"); goto fail; }
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *x = p->bufs[b];
    if (x->kind == KILN_BUF_WEIGHT && x->data)
      memcpy(weights + x->offset, x->data, (size_t)x->numel * kiln_dtype_size(x->dtype));
  }
  kiln_program_state_init(p, weights + p->weights_bytes);
  if (kiln_out_dir_begin(outdir, tmp, sizeof tmp, &d)) goto fail;
  char file[256];
  snprintf(file, sizeof file, "%s.o", prefix);
  if (kiln_out_dir_write(tmp, file, obj, olen, &d)) goto fail;
  snprintf(file, sizeof file, "%s.h", prefix);
  if (kiln_out_dir_write(tmp, file, header, strlen(header), &d)) goto fail;
  snprintf(file, sizeof file, "%s.weights", prefix);
  if (kiln_out_dir_write(tmp, file, weights, (size_t)(p->weights_bytes + p->state_bytes), &d)) goto fail;
  if (kiln_out_dir_write(tmp, "kiln_runtime.c", kiln_runtime_c_source, strlen(kiln_runtime_c_source), &d) ||
      kiln_out_dir_write(tmp, "kiln_runtime.h", kiln_runtime_h_source, strlen(kiln_runtime_h_source), &d))
    goto fail;
  if (shared) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O2 -pthread -o '%s/lib%s.so' '%s/%s.o' '%s/kiln_runtime.c' -lm", tmp, prefix, tmp,
             prefix, tmp);
    if (strchr(tmp, '\'') || system(cmd) != 0) { kiln_error(&d, NULL, "linking lib%s.so with cc failed", prefix); goto fail; }
  }
  if (kiln_out_dir_commit(outdir, tmp, &d)) goto fail;
  kiln_timing_mark(&timing, "write");
  kiln_timing_total(&timing, "total");
  printf("wrote %s/: %s.o (%zu bytes, %d kernels), %s.h, %s.weights (%lld bytes), kiln_runtime.c/.h%s\n", outdir,
         prefix, olen, p->nkernels, prefix, prefix, (long long)p->weights_bytes, shared ? ", lib.so" : "");
  printf("params %lld, MACs %lld, peak activation memory %lld bytes\n", (long long)o.params,
         (long long)kiln_cli_macs(g), (long long)p->workspace_bytes);
  rc = 0;
fail:
  if (rc) kiln_cli_report(&d);
  kiln_out_dir_abort(tmp);
  free(obj);
  free(header);
  free(weights);
  kiln_graph_free(g);
  kiln_cli_bindings_free(&bind);
  kiln_cli_train_free(&topts);
  return rc;
}
