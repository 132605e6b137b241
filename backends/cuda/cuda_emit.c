/* The CUDA dialect of the C printer (see kiln_cuda.h): only the hooks that
 * differ from C99 live here; c_emit.c prints everything else.  No op
 * knowledge: a launch's shape and every binding come from the loop IR
 * (passes/schedule_gpu.c). */
#include <inttypes.h>
#include <string.h>

#include "../../ir/loop_walk.h"
#include "../c/c_emit.h"
#include "kiln_cuda.h"

/* Under NVRTC there is no libc: the fixed-width types and the macros the
 * C printer's expressions use are defined here (C++17, CUDA's math
 * functions and isnan built in). */
static void preamble(FILE *f, const kiln_c_options *o) {
  fprintf(f, "/* Two ways to compile this file: NVRTC / nvcc (__CUDACC__: the kernels and\n"
             " * their __device__ helpers only; kiln's runtime launches them), or a host C\n"
             " * compiler (cc -x c), which runs every launch on the CPU through\n"
             " * kiln_cuda_host.h (blocks and threads as loops) and adds %s_run_v. */\n", o->prefix);
  fprintf(f, "#ifdef __CUDACC__\n"
             "typedef signed char int8_t;\ntypedef unsigned char uint8_t;\n"
             "typedef short int16_t;\ntypedef unsigned short uint16_t;\n"
             "typedef int int32_t;\ntypedef unsigned int uint32_t;\n"
             "typedef long long int64_t;\ntypedef unsigned long long uint64_t;\n"
             "#define INT64_C(x) x##LL\n#define UINT64_C(x) x##ULL\n"
             "#define INT64_MAX 9223372036854775807LL\n#define INT64_MIN (-INT64_MAX - 1)\n"
             "#define UINT64_MAX 18446744073709551615ULL\n"
             "#define NAN __int_as_float(0x7fc00000)\n#define INFINITY __int_as_float(0x7f800000)\n"
             "#define restrict __restrict__\n"
             "/* TF32 (kiln run --tf32, ir/loop.h): cvt.rna rounding, and a warp's m16n8k8\n"
             " * tensor-core products over its wm x wn tiles (fragments as the PTX ISA lays them) */\n"
             "static __device__ __forceinline__ float kiln_tf32(float x) {\n"
             "  uint32_t r;\n"
             "  asm(\"cvt.rna.tf32.f32 %%0, %%1;\" : \"=r\"(r) : \"f\"(x));\n"
             "  return __uint_as_float(r);\n"
             "}\n"
             "static __device__ __forceinline__ void kiln_mma_tf32(float *c, const float *a, const float *b, int wm, int wn) {\n"
             "#pragma unroll\n"
             "  for (int i = 0; i < wm; i++)\n"
             "#pragma unroll\n"
             "    for (int j = 0; j < wn; j++) {\n"
             "      float *d = c + 4 * (i * wn + j);\n"
             "      asm volatile(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%%0, %%1, %%2, %%3}, \"\n"
             "                   \"{%%4, %%5, %%6, %%7}, {%%8, %%9}, {%%0, %%1, %%2, %%3};\"\n"
             "                   : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])\n"
             "                   : \"r\"(__float_as_uint(a[4 * i])), \"r\"(__float_as_uint(a[4 * i + 1])),\n"
             "                     \"r\"(__float_as_uint(a[4 * i + 2])), \"r\"(__float_as_uint(a[4 * i + 3])),\n"
             "                     \"r\"(__float_as_uint(b[2 * j])), \"r\"(__float_as_uint(b[2 * j + 1])));\n"
             "    }\n"
             "}\n"
             "#define KILN_MMA_TF32(c, a, b, wm, wn) kiln_mma_tf32(c, a, b, wm, wn)\n"
             "#ifndef KILN_KERNEL /* (a file holding several programs renames their kernels) */\n"
             "#define KILN_KERNEL(name, threads) \\\n"
             "  extern \"C\" __global__ void __launch_bounds__(threads) name(void *const *bufs)\n"
             "#endif\n"
             "#else\n"
             "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n"
             "#include \"kiln_cuda_host.h\"\n#include \"%s.h\"\n"
             "#endif\n\n", o->prefix);
}

static int64_t threads_of(const kiln_kernel *k) {
  return k->launch->block[0] * k->launch->block[1] * k->launch->block[2];
}

static void kernel_open(FILE *f, const kiln_kernel *k) {
  const kiln_launch *l = k->launch;
  fprintf(f, "/* launch: grid (%" PRId64 ", %" PRId64 ", %" PRId64 "), block (%" PRId64 ", %" PRId64 ", %" PRId64 ") */\n",
          l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2]);
  fprintf(f, "KILN_KERNEL(%s, %" PRId64 ") {\n", k->name, threads_of(k));
}

typedef struct var_use { int var, used; } var_use;
static int find_var(kiln_walk *w, const kiln_lx *e) {
  var_use *u = w->ctx;
  if (e->kind == KILN_LX_INDEX && e->var == u->var) u->used = 1;
  return KILN_WALK_CONTINUE;
}

/* A bound loop is its axis (ir/loop.h): iteration i runs where the
 * block / thread index is i, in range by the launch's shape.  The var is
 * declared only when the body reads it (a one-thread launch does not). */
static void bound_loop(FILE *f, const kiln_ls *s, int ind) {
  static const char axis[] = "xyz";
  int g = s->sched.gpu;
  var_use u = {s->var, 0};
  kiln_walk w = {.expr_pre = find_var, .ctx = &u};
  kiln_walk_block(&w, s->body);
  fprintf(f, "%*s{ /* %s-bound, %" PRId64 " */\n", ind, "", g <= 3 ? "block" : "thread", s->extent);
  if (u.used)
    fprintf(f, "%*sconst int64_t i%d = (int64_t)%s.%c;\n", ind + 2, "", s->var, g <= 3 ? "blockIdx" : "threadIdx",
            axis[(g - 1) % 3]);
}

static void alloc(FILE *f, const kiln_ls *s, const char *ctype, const char *name, int ind) {
  fprintf(f, "%*s%s%s %s[%" PRId64 "];\n", ind, "", s->buf->scope == KILN_SCOPE_SHARED ? "__shared__ " : "", ctype, name,
          s->buf->numel ? s->buf->numel : 1);
}

static void barrier(FILE *f, int ind) { fprintf(f, "%*s__syncthreads();\n", ind, ""); }

static void mma(FILE *f, const kiln_ls *s, const char *c, const char *a, const char *b, int ind) {
  fprintf(f, "%*sKILN_MMA_TF32(%s, %s, %s, %d, %d);\n", ind, "", c, a, b, s->mma.wm, s->mma.wn);
}

/* A barrier, or a warp MMA (its emulation meets the block's threads too). */
static int find_barrier(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_BARRIER || s->kind == KILN_LS_MMA) *(int *)w->ctx = 1;
  return KILN_WALK_CONTINUE;
}

/* The host's launch; a kernel with barriers needs its threads interleaved
 * (KILN_LAUNCH_SYNC: runtime/kiln_cuda_host.h). */
static void call(FILE *f, const kiln_kernel *k) {
  const kiln_launch *l = k->launch;
  int barriers = 0;
  kiln_walk w = {.stmt_pre = find_barrier, .ctx = &barriers};
  kiln_walk_block(&w, k->body);
  fprintf(f, "  KILN_LAUNCH%s(%s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", bufs);\n",
          barriers ? "_SYNC" : "", k->name, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2]);
}

static const kiln_c_hooks cuda = {
    .helper_qual = "static __device__ ",
    .source_suffix = ".cu",
    .preamble = preamble,
    .kernel_open = kernel_open,
    .bound_loop = bound_loop,
    .alloc = alloc,
    .barrier = barrier,
    .mma = mma,
    .call = call,
    .host_begin = "#ifndef __CUDACC__ /* the host emulation's entry points */\n",
    .host_end = "#endif\n",
};

int kiln_cuda_emit(const kiln_program *p, const kiln_cuda_options *o, kiln_c_output *out, kiln_diag *d) {
  memset(out, 0, sizeof *out);
  for (int i = 0; i < p->nkernels; i++) {
    const kiln_kernel *k = p->kernels[i];
    if (!k->launch)
      return kiln_error(d, k->node ? kiln_node_loc(k->node) : NULL, "CUDA: kernel '%s' has no GPU launch (not scheduled for a GPU target)", k->name);
  }
  kiln_c_options co = {.prefix = o->prefix, .model = o->model, .weights_file = 1, .threads = 0};
  return kiln_c_emit_dialect(p, &co, &cuda, out, d);
}
