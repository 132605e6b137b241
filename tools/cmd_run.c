/* kiln run: compile a model for this CPU (LLVM JIT) and run it on input
 * tensors from .npy/.pb files (or seeded random data), print a summary
 * (top-5 classes for a classifier output) and optionally write outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../backends/cuda/kiln_cuda.h"
#include "../backends/cuda/kiln_cuda_gpu.h"
#include "../backends/llvm/kiln_llvm.h"
#include "../ir/text_escape.h"
#include "../passes/lower.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "cmd_run_volume.h"
#include "tensor_io.h"

static const char help[] =
    "usage: kiln run [options] MODEL\n\n"
    "Compiles MODEL for this CPU and runs it once (or --repeat times).\n\n"
    "options:\n"
    "  --input NAME=FILE  input tensor from a .npy or .pb file (repeat per input;\n"
    "                     NAME= may be left out when the model has one input)\n"
    "  --random           fill inputs without a file with seeded uniform [0,1) data\n"
    "  --output DIR       write every output to DIR/NAME.npy (or .pb with --format pb)\n"
    "  --format npy|pb    output file format (default npy)\n"
    "  --batch N          bind the symbolic batch dim to N when no input file fixes it\n"
    "                     (default 1)\n"
    "  --dim NAME=N       bind symbolic dim NAME to N (input files must agree)\n"
    "  --repeat N         run N times and report the median time\n"
    "  --warmup N         run N times more before the timed runs, untimed (default\n"
    "                     0): first-touch page faults, cold caches and an idle\n"
    "                     core's wake-up then stay out of the median, as in\n"
    "                     bench/bench.py's ONNX Runtime timing\n"
    "  --threads N        run parallel loops on N threads (default 1)\n"
    "  --profile          print a table of every kernel: the graph nodes it computes,\n"
    "                     its median time over the --repeat runs, share of the total,\n"
    "                     GFLOP/s (2 x MACs of Conv, ConvTranspose, Gemm, MatMul) and\n"
    "                     % of the FMA peak (one core's, measured at start with an\n"
    "                     FMA-chain loop, x threads); the timing calls are compiled\n"
    "                     in only with --profile\n"
    "  --target T         cpu (default: LLVM, this CPU), cuda-host (the CUDA code run on\n"
    "                     the CPU by an emulation, compiled with cc) or cuda (a GPU:\n"
    "                     NVRTC compiles the kernels, kiln's runtime runs them on the\n"
    "                     CUDA driver; the network is a CUDA Graph from run 2 on)\n"
    "  --arch LIST        --target cuda: the architectures NVRTC compiles cubins for\n"
    "                     (e.g. sm_80,sm_90, plus PTX for the newest; default: the\n"
    "                     GPU's own architecture, no PTX)\n"
    "  --tf32             with --target cuda/cuda-host: convolutions on TF32 tensor\n"
    "                     cores (sm_80+): operands rounded to 10 mantissa bits, sums in\n"
    "                     f32; relative error ~1e-3 instead of ~1e-6 (README: CUDA)\n"
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
    "  --dump-after PASS  print the IR after PASS to stderr (`list`: the passes)\n"
    "  --time             print each compilation stage's wall and CPU time to stderr\n"
    "  --image FILE|DIR   classify PNG/JPEG photos (options: kiln run --image x --help)\n"
    "  --volume FILE      input from a NIfTI volume (.nii, .nii.gz); or --dicom DIR,\n"
    "                     a DICOM series; with --window C,W, --seg-out FILE.nii.gz,\n"
    "                     --overlay-out DIR (see README: medical volumes)\n"
    "  -h, --help         show this help\n";

enum { MAX_INPUTS = 64 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Output summary: shape, range; top-5 for a classifier-like output. */
static void summarise(const kiln_graph *g, const kiln_buf *b, const void *data) {
  char ty[256];
  kiln_value v = {0};
  v.dtype = b->dtype;
  v.rank = b->rank;
  memcpy(v.dims, b->dims, sizeof v.dims);
  kiln_value_type_str(g, &v, ty, sizeof ty);
  double lo = INFINITY, hi = -INFINITY, sum = 0;
  for (int64_t i = 0; i < b->numel; i++) {
    double x = kiln_dtype_load_f(b->dtype, data, (size_t)i);
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
    sum += x;
  }
  printf("output ");
  kiln_put_display(stdout, b->name);
  printf(" : ");
  kiln_put_display(stdout, ty);
  printf("  min %.6g  max %.6g  mean %.6g\n", lo, hi, b->numel ? sum / (double)b->numel : 0);
  int64_t classes = b->rank ? b->dims[b->rank - 1] : 0;
  if (kiln_dtype_is_float(b->dtype) && classes >= 5 && b->numel == classes) {
    int top[5];
    for (int k = 0; k < 5; k++) {
      top[k] = -1;
      for (int64_t c = 0; c < classes; c++) {
        int taken = 0;
        for (int j = 0; j < k; j++) taken |= top[j] == c;
        if (!taken && (top[k] < 0 || kiln_dtype_load_f(b->dtype, data, (size_t)c) > kiln_dtype_load_f(b->dtype, data, (size_t)top[k])))
          top[k] = (int)c;
      }
    }
    printf("  top-5:");
    for (int k = 0; k < 5; k++) printf("  #%d (%.4g)", top[k], kiln_dtype_load_f(b->dtype, data, (size_t)top[k]));
    printf("\n");
  }
}

/* The command's inputs, bound in the pipeline's import pass. */
typedef struct run_inputs {
  kiln_cli_bindings *bind;
  int nin;
  const char **in_names, **in_files;
  kiln_tensor *tensors;
  const char *path;
  kiln_value *bound_to[MAX_INPUTS]; /* out: the input each --input names */
  kiln_value *inputs[MAX_INPUTS];   /* out: the graph's inputs, before folding */
  int ninputs;
  double t0; /* out: when compiling started */
} run_inputs;

/* Match --input options to model inputs and read them; bind the
 * symbolic dims they fix, and bind inputs that decide shapes as
 * compile-time constants (kiln compiles for each run). */
static int bind_inputs(kiln_graph *g, void *ctx, kiln_diag *d) {
  run_inputs *ri = ctx;
  const char *path = ri->path;
  kiln_cli_bindings dims_only = *ri->bind;
  dims_only.batch = 0; /* --batch applies where no input file fixes the batch */
  if (kiln_cli_bind_dims(g, &dims_only, d)) return -1;
  kiln_value **bound_to = ri->bound_to;
  char *deciding = kiln_pass_shape_deciding(g);
  if (!deciding) return kiln_error(d, NULL, "out of memory");
  for (int i = 0; i < ri->nin; i++) {
    kiln_value *v = NULL;
    const char *name = ri->in_names[i], *file = ri->in_files[i];
    if (!name) {
      if (g->ninputs != 1) { kiln_error(d, NULL, "%s: the model has %d inputs: write --input NAME=FILE", path, g->ninputs); goto fail; }
      v = g->inputs[0];
    } else if (!(v = kiln_cli_find_input(g, name))) {
      int bound = 0;
      for (int j = 0; j < i; j++) bound |= bound_to[j] && !strcmp(bound_to[j]->name, name);
      if (bound) kiln_error(d, NULL, "input '%s' is given twice", name);
      else kiln_error(d, NULL, "%s: the model has no input named '%s'", path, name);
      goto fail;
    }
    for (int j = 0; j < i; j++)
      if (bound_to[j] == v) { kiln_error(d, NULL, "input '%s' is given twice", v->name); goto fail; }
    bound_to[i] = v;
    kiln_tensor *t = &ri->tensors[i];
    if (kiln_tensor_read(file, t, d) || kiln_cli_bind_input(g, v, t, file, d)) goto fail;
    if (deciding[v->id] && kiln_pass_bind_input(g, v->name, t->dtype, t->rank, t->dims, t->data, d)) goto fail;
  }
  free(deciding);
  if (ri->bind->batch > 0) kiln_cli_bind_batch(g, ri->bind->batch);
  if (kiln_cli_require_static(g, "--input", d)) return -1;
  ri->ninputs = g->ninputs;
  for (int k = 0; k < ri->ninputs && k < MAX_INPUTS; k++) ri->inputs[k] = g->inputs[k];
  ri->t0 = now();
  return 0;
fail:
  free(deciding);
  return -1;
}

int kiln_cmd_run(int argc, char **argv) {
  const char *path = NULL, *outdir = NULL, *format = "npy";
  const char *in_names[MAX_INPUTS], *in_files[MAX_INPUTS];
  int nin = 0, random = 0, repeat = 1, warmup = 0, threads = 1, dump_after = 0, profile = 0, timed = 0;
  const char *target_name = "cpu", *arch_list = NULL;
  int tf32 = 0, keep_f16 = 0, lean_memory = 0, nchwc = 0;
  kiln_cli_bindings bind = {0};
  int images = 0, profiled = 0;
  for (int i = 1; i < argc; i++) {
    images |= !strcmp(argv[i], "--image");
    profiled |= !strcmp(argv[i], "--profile");
  }
  if (images && profiled) return kiln_cli_usage_error("run", "--profile times tensor runs (--input, --random), not --image");
  if (images) return kiln_cmd_run_images(argc, argv); /* photos in: cmd_run_image.c */
  kiln_volume_opts vol = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int vo = kiln_volume_parse_opt(&vol, argc, argv, &i);
    if (vo) { if (vo == 2) return 2; continue; }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
    else if (!strcmp(a, "--random")) random = 1;
    else if (!strcmp(a, "--profile")) profile = 1;
    else if (!strcmp(a, "--time")) timed = 1;
    else if (!strcmp(a, "--tf32")) tf32 = 1;
    else if (!strcmp(a, "--keep-f16")) keep_f16 = 1;
    else if (!strcmp(a, "--lean-memory")) lean_memory = 1;
    else if (!strcmp(a, "--layout")) {
      const char *v = i + 1 < argc ? argv[++i] : "";
      if (strcmp(v, "plain") && strcmp(v, "nchwc"))
        return kiln_cli_usage_error("run", "--layout must be plain or nchwc, got '%s'", v);
      nchwc = !strcmp(v, "nchwc");
    }
    else if (!strcmp(a, "--dump-after")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("run", "%s needs a value", a);
      int r = kiln_cli_dump_option("run", argv[++i], &dump_after);
      if (r) { kiln_cli_bindings_free(&bind); return r == 3 ? 0 : r; }
    }
    else if (!strcmp(a, "--input") || !strcmp(a, "--output") || !strcmp(a, "--format") || !strcmp(a, "--batch") ||
             !strcmp(a, "--dim") || !strcmp(a, "--repeat") || !strcmp(a, "--warmup") || !strcmp(a, "--threads") || !strcmp(a, "--target") ||
             !strcmp(a, "--arch")) {
      if (i + 1 >= argc) return kiln_cli_usage_error("run", "%s needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "--output")) outdir = v;
      else if (!strcmp(a, "--arch")) arch_list = v;
      else if (!strcmp(a, "--target")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda-host") && strcmp(v, "cuda"))
          return kiln_cli_usage_error("run", "--target must be cpu, cuda-host or cuda, got '%s'", v);
        target_name = v;
      }
      else if (!strcmp(a, "--format")) {
        if (strcmp(v, "npy") && strcmp(v, "pb")) return kiln_cli_usage_error("run", "--format must be npy or pb, got '%s'", v);
        format = v;
      } else if (!strcmp(a, "--batch") || !strcmp(a, "--dim")) {
        if (kiln_cli_binding_option("run", a, v, &bind)) { kiln_cli_bindings_free(&bind); return 2; }
      } else if (!strcmp(a, "--threads")) {
        int64_t t = kiln_cli_parse_count(v);
        if (t < 0 || t > 1024) return kiln_cli_usage_error("run", "--threads must be a positive integer, got '%s'", v);
        threads = (int)t;
      } else if (!strcmp(a, "--repeat")) {
        int64_t r = kiln_cli_parse_count(v);
        if (r < 0 || r > 100000) return kiln_cli_usage_error("run", "--repeat must be a positive integer, got '%s'", v);
        repeat = (int)r;
      } else if (!strcmp(a, "--warmup")) {
        int64_t r = kiln_cli_parse_int(v, 0, 100000);
        if (r < 0) return kiln_cli_usage_error("run", "--warmup must be a non-negative integer, got '%s'", v);
        warmup = (int)r;
      } else {
        if (nin == MAX_INPUTS) return kiln_cli_usage_error("run", "too many --input options");
        const char *eq = strchr(v, '=');
        in_names[nin] = eq ? strndup(v, (size_t)(eq - v)) : NULL;
        in_files[nin] = eq ? eq + 1 : v;
        if (!in_files[nin][0]) return kiln_cli_usage_error("run", "--input '%s' names no file", v);
        nin++;
      }
    } else if (a[0] == '-' && a[1]) return kiln_cli_usage_error("run", "unknown option '%s'", a);
    else if (path) return kiln_cli_usage_error("run", "more than one model given ('%s' and '%s')", path, a);
    else path = a;
  }
  if (!path) return kiln_cli_usage_error("run", "no model given");
  if (vol.nifti || vol.dicom || vol.seg_out || vol.overlay_out || vol.window) { /* medical volumes */
    if (outdir) {
      struct stat st;
      if (stat(outdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kiln: error: %s: output folder does not exist\n", outdir);
        return 1;
      }
    }
    if (profile) return kiln_cli_usage_error("run", "--profile times tensor runs (--input, --random), not volumes");
    if (!vol.nifti == !vol.dicom || nin || random)
      return kiln_cli_usage_error("run", "give one of --volume FILE or --dicom DIR (and no --input/--random)");
    vol.dump_after = dump_after;
    return kiln_run_volume(path, &vol, threads, outdir, format);
  }
  char tmpdir[4096] = "";
  const char *writedir = outdir;
  int rc = 1;
  kiln_diag d = {0};
  kiln_tensor tensors[MAX_INPUTS] = {0};
  void **bufs = NULL, *ws = NULL, **outs = NULL;
  kiln_llvm_jit *jit = NULL;
  kiln_cuda_host *cuda_host = NULL;
  kiln_cuda_gpu *cuda_gpu = NULL;
  int archs[KILN_CUDA_MAX_ARCHS], narchs = 0;
  if (arch_list && strcmp(target_name, "cuda")) return kiln_cli_usage_error("run", "--arch is for --target cuda");
  if (arch_list && (narchs = kiln_cuda_parse_archs(arch_list, archs, &d)) < 0) {
    kiln_cli_report(&d);
    return 2;
  }
  int on_gpu = strcmp(target_name, "cpu") != 0;
  if (tf32 && !on_gpu) return kiln_cli_usage_error("run", "--tf32 is for --target cuda or cuda-host");
  if (on_gpu && profile) return kiln_cli_usage_error("run", "--profile times the CPU backend's kernels, not --target %s", target_name);
  int nbufs = 0;
  kiln_graph *g = NULL;
  /* An existing --output folder gets each file atomically; a missing one
   * is filled as a temporary sibling and renamed into place at the end, so
   * a failed run leaves no half-written folder either. */
  if (outdir) {
    struct stat st;
    if (stat(outdir, &st) == 0 && !S_ISDIR(st.st_mode)) {
      kiln_error(&d, NULL, "%s: exists and is not a folder", outdir);
      goto fail;
    }
    if (stat(outdir, &st) != 0) {
      /* Missing parents are made first (like mkdir -p): empty folders. */
      char parent[4096];
      snprintf(parent, sizeof parent, "%s", outdir);
      for (char *c = parent + 1; *c; c++)
        if (*c == '/') { *c = 0; mkdir(parent, 0777); *c = '/'; }
      if (kiln_out_dir_begin(outdir, tmpdir, sizeof tmpdir, &d)) goto fail;
      writedir = tmpdir;
    }
  }
  run_inputs ri = {.bind = &bind, .nin = nin, .in_names = in_names, .in_files = in_files, .tensors = tensors,
                   .path = path};
  kiln_pipeline pl;
  if (!strcmp(target_name, "cuda") && !narchs) { /* the GPU present (no driver, no device: one line) */
    if ((archs[0] = kiln_cuda_gpu_arch(path, &d)) < 0) goto fail;
    narchs = 1;
  }
  kiln_target target = on_gpu ? kiln_target_gpu_default() : kiln_llvm_target(0);
  target.tf32 = tf32;
  target.keep_narrow = keep_f16;
  target.lean_memory = lean_memory;
  target.layout_nchwc = nchwc;
  kiln_timing timing;
  kiln_timing_start(&timing, timed ? stderr : NULL);
  kiln_pipeline_opts po = {.path = path, .bind = bind_inputs, .bind_ctx = &ri, .dump_after = (kiln_pass_id)dump_after,
                           .target = &target, .timing = &timing, .per_image = on_gpu ? 0 : 2};
  int prc = kiln_pipeline_run(&po, &pl, &d);
  g = pl.graph;
  if (prc) goto fail;
  kiln_program *p = pl.program;
  kiln_value **inputs = ri.inputs, **bound_to = ri.bound_to;
  int ninputs = ri.ninputs;
  double t0 = ri.t0;
  if (!strcmp(target_name, "cuda")) {
    if (!(cuda_gpu = kiln_cuda_gpu_compile(p, archs, narchs, arch_list != NULL, path, &d))) goto fail;
  } else if (on_gpu) {
    if (!(cuda_host = kiln_cuda_host_compile(p, &d))) goto fail;
  } else if (!(jit = kiln_llvm_jit_compile_with(p, profile, &timing, &d))) goto fail;
  kiln_timing_total(&timing, "total");
  if (jit && kiln_llvm_jit_set_threads(jit, threads)) { kiln_error(&d, NULL, "cannot start %d threads", threads); goto fail; }
  double t1 = now();
  nbufs = p->nbufs;
  bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  outs = calloc((size_t)p->nbufs + 1, sizeof *outs);
  kiln_llvm_jit_bind(p, bufs, ws);
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    size_t bytes = (size_t)buf->numel * kiln_dtype_size(buf->dtype);
    /* 64-byte aligned, as the workspace: a 1x1 convolution reading a graph
     * input 4 bytes off a cache line ran 155 GFLOP/s against 206 aligned
     * (one Intel AVX-512 core: every vector load split in two lines) */
    if (buf->kind == KILN_BUF_OUTPUT) {
      if (!(bufs[b] = outs[b] = aligned_alloc(64, (bytes + 8 + 63) & ~(size_t)63))) {
        kiln_error(&d, NULL, "%s: out of memory for output '%s'", path, buf->name);
        goto fail;
      }
      memset(bufs[b], 0, bytes + 8);
    }
    if (buf->kind != KILN_BUF_INPUT) continue;
    const kiln_value *v = inputs[0];
    for (int k = 0; k < ninputs; k++)
      if (!strcmp(inputs[k]->name, buf->name)) v = inputs[k];
    for (int i = 0; i < nin; i++)
      if (bound_to[i] == v) bufs[b] = tensors[i].data;
    if (bufs[b]) continue;
    if (!random) { kiln_error(&d, NULL, "%s: input '%s' is required: --input %s=FILE, or --random", path, buf->name, buf->name); goto fail; }
    bufs[b] = outs[b] = aligned_alloc(64, (bytes + 8 + 63) & ~(size_t)63);
    if (!bufs[b]) { kiln_error(&d, NULL, "%s: out of memory for input '%s'", path, buf->name); goto fail; }
    for (int64_t e = 0; e < buf->numel; e++) { /* xorshift64*: reproducible */
      seed ^= seed >> 12; seed ^= seed << 25; seed ^= seed >> 27;
      kiln_dtype_store_f(buf->dtype, bufs[b], (size_t)e, (double)((seed * 2685821657736338717ull) >> 11) / 9007199254740992.0);
    }
  }
  double peak = 0; /* profiling: one core's FMA peak, measured before the runs */
  if (profile && (peak = kiln_llvm_fma_peak(&d)) < 0) goto fail;
  double *times = calloc((size_t)repeat, sizeof *times);
  double *ktimes = profile ? calloc((size_t)repeat * (size_t)p->nkernels + 1, sizeof *ktimes) : NULL;
  if (!times || (profile && !ktimes)) { free(times); kiln_error(&d, NULL, "out of memory"); goto fail; }
  for (int r = -warmup; r < repeat; r++) { /* r < 0: warm-up, untimed */
    double s = now();
    if (cuda_gpu) {
      if (kiln_cuda_gpu_run(cuda_gpu, bufs, &d)) { free(times); free(ktimes); goto fail; }
    } else if (!cuda_host) kiln_llvm_jit_run(jit, bufs);
    else if (kiln_cuda_host_run(cuda_host, bufs)) {
      free(times);
      free(ktimes);
      kiln_error(&d, NULL, "%s: cuda-host: out of memory running the kernels", path);
      goto fail;
    }
    if (r < 0) continue;
    times[r] = now() - s;
    int nst = 0;
    const double *st = ktimes ? kiln_llvm_jit_profile(jit, &nst) : NULL;
    for (int k = 0; ktimes && k < p->nkernels; k++) { /* summed over the images (a row of stamps each) */
      double sum = 0;
      for (int row = 0; row + p->nkernels < nst; row += p->nkernels + 1) sum += st[row + k + 1] - st[row + k];
      ktimes[(size_t)r * (size_t)p->nkernels + (size_t)k] = sum;
    }
  }
  qsort(times, (size_t)repeat, sizeof *times, cmp_double);
  printf("compiled in %.1f ms; ran in %.3f ms%s; workspace %.2f MB\n", 1e3 * (t1 - t0), 1e3 * times[repeat / 2],
         repeat > 1 ? " (median)" : "", (double)p->workspace_bytes / 1e6);
  free(times);
  if (cuda_gpu) printf("GPU code: %s\n", kiln_cuda_gpu_image(cuda_gpu));
  if (ktimes && kiln_cli_profile_print(p, ktimes, repeat, threads, peak, 8 * target.vector_bytes)) {
    free(ktimes);
    kiln_error(&d, NULL, "out of memory");
    goto fail;
  }
  free(ktimes);
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind != KILN_BUF_OUTPUT) continue;
    summarise(g, buf, bufs[b]);
    if (outdir) {
      char file[4096];
      kiln_tensor t = {.name = buf->name, .dtype = buf->dtype, .rank = buf->rank, .data = bufs[b],
                       .nbytes = (size_t)buf->numel * kiln_dtype_size(buf->dtype)};
      memcpy(t.dims, buf->dims, sizeof t.dims);
      char safe[256];
      kiln_file_name_for(safe, sizeof safe, buf->name);
      snprintf(file, sizeof file, "%s/%s.%s", writedir, safe, format);
      if (kiln_tensor_write(file, &t, &d)) goto fail;
    }
  }
  if (tmpdir[0] && kiln_out_dir_commit(outdir, tmpdir, &d)) goto fail;
  rc = 0;
fail:
  if (rc) kiln_cli_report(&d);
  kiln_out_dir_abort(tmpdir);
  for (int b = 0; outs && b < nbufs; b++) free(outs[b]);
  free(outs);
  free(bufs);
  free(ws);
  kiln_llvm_jit_free(jit);
  kiln_cuda_host_free(cuda_host);
  kiln_cuda_gpu_free(cuda_gpu);
  for (int i = 0; i < nin; i++) { kiln_tensor_free(&tensors[i]); free((void *)in_names[i]); }
  kiln_graph_free(g);
  kiln_cli_bindings_free(&bind);
  return rc;
}
