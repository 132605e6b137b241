/* kiln run --profile: the per-kernel table.
 *
 * The JIT compiles the program with a timing call before the first kernel
 * and after each one (kiln_llvm_jit_compile_with; normal runs carry no
 * such calls), so a kernel's time is the wall time between its two marks,
 * the pool hand-off of a threaded kernel included.  Per kernel the table
 * gives the median over the --repeat runs, its share of the sum of the
 * medians, and for kernels doing multiply-accumulates (Conv,
 * ConvTranspose, Gemm, MatMul: the op table's MAC counts, as `kiln
 * inspect` reports them) MFLOP = 2 x MACs / 1e6, GFLOP/s and the share of
 * the FMA peak: one core's measured peak (kiln_llvm_fma_peak) times the
 * threads.  A node lowered to several kernels (a padding copy, then the
 * convolution) has its MACs counted once, on its kernel with the most work
 * (kiln_schedule_work), so the MFLOP column sums to the model's total.
 * Rows come slowest first; `#` is the kernel's place in the run.  Node
 * names come from the model: printed in display form (ir/text_escape.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/ops.h"
#include "../ir/text_escape.h"
#include "../passes/lower.h"
#include "cli.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int64_t body_work(const kiln_kernel *k) {
  int64_t w = 0;
  for (const kiln_ls *s = k->body; s; s = s->next) {
    int64_t x = kiln_schedule_work(s);
    w = x > INT64_MAX - w ? INT64_MAX : w + x;
  }
  return w;
}

static int covers(const kiln_kernel *k, const kiln_node *n) {
  for (int i = 0; i < k->nnodes; i++)
    if (k->nodes[i] == n) return 1;
  return 0;
}

/* MACs of kernel k's nodes that k owns: of the kernels covering a node, the
 * one with the most work (the first, on a tie). */
static int64_t kernel_macs(const kiln_program *p, int k, const int64_t *work) {
  int64_t m = 0;
  const kiln_kernel *kn = p->kernels[k];
  for (int i = 0; i < kn->nnodes; i++) {
    const kiln_node *n = kn->nodes[i];
    kiln_macs_fn fn = kiln_op_get(n->op)->macs;
    if (!fn) continue;
    int owner = k;
    for (int j = 0; j < p->nkernels; j++)
      if (covers(p->kernels[j], n) && (work[j] > work[owner] || (work[j] == work[owner] && j < owner))) owner = j;
    if (owner == k) m += fn(n);
  }
  return m;
}

typedef struct row { int k; double sec; int64_t macs; } row;

static int slowest_first(const void *a, const void *b) {
  const row *x = a, *y = b;
  return x->sec > y->sec ? -1 : x->sec < y->sec ? 1 : x->k - y->k;
}

int kiln_cli_profile_print(const kiln_program *p, const double *times, int repeat, int threads, double peak_core,
                           int vector_bits) {
  int nk = p->nkernels;
  row *rows = calloc((size_t)nk + 1, sizeof *rows);
  double *col = calloc((size_t)repeat + 1, sizeof *col);
  int64_t *work = calloc((size_t)nk + 1, sizeof *work);
  if (!rows || !col || !work) { free(rows); free(col); free(work); return -1; }
  for (int k = 0; k < nk; k++) work[k] = body_work(p->kernels[k]);
  double total = 0;
  int64_t total_macs = 0;
  for (int k = 0; k < nk; k++) {
    for (int r = 0; r < repeat; r++) col[r] = times[(size_t)r * (size_t)nk + (size_t)k];
    qsort(col, (size_t)repeat, sizeof *col, cmp_double);
    /* a one-image program run once per image (p->images): its nodes' MACs are one image's */
    rows[k] = (row){k, col[repeat / 2], kernel_macs(p, k, work) * (p->images > 1 ? p->images : 1)};
    total += rows[k].sec;
    total_macs += rows[k].macs;
  }
  qsort(rows, (size_t)nk, sizeof *rows, slowest_first);
  double peak = peak_core * threads;
  printf("profile: %d kernels, median of %d run%s, %d thread%s; FMA peak %.1f GFLOP/s per core "
         "(measured: FMA-chain loop, %d-bit vectors) x %d = %.1f GFLOP/s\n",
         nk, repeat, repeat == 1 ? "" : "s", threads, threads == 1 ? "" : "s", peak_core, vector_bits, threads, peak);
  if (p->images > 1)
    printf("(one image at a time: each kernel ran %lld times a run, once per image; times are their sums)\n",
           (long long)p->images);
  printf("%5s %10s %7s %10s %9s %6s  %s\n", "#", "ms", "share%", "MFLOP", "GFLOP/s", "%peak", "kernel  nodes");
  for (int i = 0; i < nk; i++) {
    const row *r = &rows[i];
    const kiln_kernel *kn = p->kernels[r->k];
    printf("%5d %10.4f %7.2f", r->k, 1e3 * r->sec, total > 0 ? 100 * r->sec / total : 0);
    if (r->macs > 0 && r->sec > 0) {
      double gf = 2.0 * (double)r->macs / r->sec / 1e9;
      printf(" %10.3f %9.2f %6.1f  ", 2e-6 * (double)r->macs, gf, peak > 0 ? 100 * gf / peak : 0);
    } else {
      printf(" %10s %9s %6s  ", "-", "-", "-");
    }
    kiln_put_display(stdout, kn->name);
    printf("  ");
    if (kn->nnodes == 0) printf("(copy)");
    for (int j = 0; j < kn->nnodes; j++) {
      const kiln_node *n = kn->nodes[j];
      if (j) printf(" + ");
      if (n->name && n->name[0]) { kiln_put_display(stdout, n->name); printf(" "); }
      printf("(%s)", kiln_op_get(n->op)->name);
    }
    printf("\n");
  }
  printf("%5s %10.4f %7.2f %10.3f", "total", 1e3 * total, total > 0 ? 100.0 : 0, 2e-6 * (double)total_macs);
  if (total_macs > 0 && total > 0) {
    double gf = 2.0 * (double)total_macs / total / 1e9;
    printf(" %9.2f %6.1f", gf, peak > 0 ? 100 * gf / peak : 0);
  }
  printf("\n");
  free(rows);
  free(col);
  free(work);
  return 0;
}
