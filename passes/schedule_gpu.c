/* schedule_gpu: program -> program whose every kernel is one GPU launch
 * (on a GPU target; a CPU target's program is left as it is).
 *
 * The lowering states each kernel for any target and marks every loop
 * with independent iterations `parallel` (ir/loop.h); this pass maps a
 * kernel onto a grid of blocks of threads, each thread computing what one
 * iteration of the kernel's outer parallel loop nest computed:
 *
 *   [decls] for i in 0..A parallel: for j in 0..B parallel: body
 *   ->  for b in 0..G   blockIdx.x            G = ceil(A*B / T)
 *         for t in 0..T threadIdx.x           T = min(A*B, 256)
 *           f = MIN(b*T + t, A*B - 1)         (the flat iteration, an index local, if read)
 *           [decls]
 *           if b*T + t < A*B:                 (left out when T divides A*B)
 *             body with i = f / B, j = f % B
 *
 * The nest is collapsed while a loop's body is (decls and) exactly one
 * parallel loop: schedule_threads.c's collapse, the decls (index
 * arithmetic hoisted by simplify-index, assigned by no iteration) moving
 * into the thread.  f is clamped so its interval -- and every index
 * computed from it -- stays inside the buffers for the verifier's
 * interval analysis; the IF keeps the surplus threads of the last block
 * from storing.  A kernel whose body is several top-level loops (the
 * convolution's packing then computing, Concat's copies) is first split
 * into one kernel per loop, named kN_node_1, _2 ... (launches run in
 * program order, each after the previous one, as the loops did).  A
 * kernel of any other shape (a top-level loop that is not parallel,
 * statements around its loop, no loop) runs as one block of one thread:
 * correct first, as the CPU ran it.
 *
 * Same values: each iteration of the parallel nest runs once, on its own
 * thread; parallel iterations are independent by the lowering's
 * guarantee, so their order does not matter.  No barriers and no shared
 * memory: threads never communicate (runtime/kiln_cuda_host.h's emulation
 * runs such kernels as plain loops).  Reductions were expanded plainly
 * before (inside one thread, in source order).
 *
 * Kernels scheduled before (a launch set: schedule_reduce_gpu.c's block
 * reductions, run after lowering) are left as they are.
 *
 * Products first: a Conv, Gemm or MatMul kernel with a plain output
 * computed in f32 (f32, f16 or bf16 data) is replaced by the shared-memory
 * tiled product (schedule_conv_gpu.c's implicit GEMM, schedule_gemm_gpu.c
 * for Gemm/MatMul: tiles of A and B between barriers, a register tile
 * per thread, see product_tile for the sizes), with its fused epilogue
 * (bias, activations, residual Add) applied at the store, keeping the CPU
 * kernel's name and place.  Where that schedule refuses the node, the CPU
 * kernel is mapped as above.
 * Depthwise convolutions (group == C, 1-D/2-D, any float type, fused
 * epilogue or not) take schedule_dw_gpu.c's direct schedule before the
 * products: a SHARED input tile with its halo, taps in registers. */
#include <string.h>

#include "conv_def.h"
#include "lower.h"

enum { THREADS = 256 }; /* threads per block: 8 warps, a common choice for elementwise kernels */

static kiln_ls *stmt(kiln_program *p, kiln_ls_kind kind) {
  kiln_ls *s = kiln_arena_alloc(p->arena, sizeof *s);
  memset(s, 0, sizeof *s);
  s->kind = kind;
  return s;
}

/* Every read of loop var `var` under e becomes a read of index local
 * `local` (local < 0: only counted); returns the number of reads. */
static int var_to_local(kiln_lx *e, int var, int local, int depth) {
  if (!e || depth > 10000) return 0;
  if (e->kind == KILN_LX_INDEX && e->var == var) {
    if (local >= 0) {
      e->kind = KILN_LX_LOCAL;
      e->var = local;
    }
    return 1;
  }
  return var_to_local(e->a, var, local, depth + 1) + var_to_local(e->b, var, local, depth + 1) +
         var_to_local(e->c, var, local, depth + 1);
}

int kiln_schedule_var_to_local(kiln_ls *s, int var, int local) {
  int n = 0;
  for (; s; s = s->next)
    n += var_to_local(s->index, var, local, 0) + var_to_local(s->value, var, local, 0) +
         kiln_schedule_var_to_local(s->body, var, local) + kiln_schedule_var_to_local(s->orelse, var, local);
  return n;
}

/* for b in 0..G blockIdx.x: for t in 0..T threadIdx.x: body; returns the thread loop. */
static kiln_ls *grid(kiln_program *p, kiln_kernel *k, int64_t G, int64_t T, kiln_ls *body) {
  kiln_ls *b = stmt(p, KILN_LS_FOR), *t = stmt(p, KILN_LS_FOR);
  b->var = k->nvars++;
  b->extent = G;
  b->sched.gpu = 1;
  t->var = k->nvars++;
  t->extent = T;
  t->sched.gpu = 4;
  b->body = t;
  t->body = body;
  k->body = b;
  return t;
}

static void map_kernel(kiln_program *p, kiln_kernel *k) {
  kiln_ls *decls = k->body, *last_decl = NULL, *f = k->body;
  while (f && f->kind == KILN_LS_DECL) last_decl = f, f = f->next;
  if (!(f && f->kind == KILN_LS_FOR && f->sched.parallel && !f->sched.gpu && !f->next && f->extent > 0)) {
    grid(p, k, 1, 1, k->body); /* one thread */
    return;
  }
  kiln_ls *in;
  while ((in = kiln_schedule_inner_parallel(f)) != NULL && in->extent <= INT64_MAX / f->extent / 2)
    kiln_schedule_collapse(p, k, f, in);
  int64_t n = f->extent, T = n < THREADS ? n : THREADS, G = (n + T - 1) / T;
  kiln_lb lb = {.p = p, .k = k};
  kiln_ls *t = grid(p, k, G, T, NULL);
  kiln_lx *flat = kiln_lx_iadd(&lb, kiln_lx_imul(&lb, kiln_lx_index(&lb, k->body->var), T), kiln_lx_index(&lb, t->var));
  kiln_ls *d = NULL;
  if (kiln_schedule_var_to_local(f->body, f->var, -1)) { /* the flat iteration, when the body reads it */
    d = stmt(p, KILN_LS_DECL);
    d->var = kiln_schedule_index_local(p, k);
    d->dtype = KILN_DT_I64;
    d->value = n % T ? kiln_lx_bin(&lb, KILN_BIN_MIN, flat, kiln_lx_const_i(&lb, n - 1)) : flat;
    kiln_schedule_var_to_local(f->body, f->var, d->var);
  }
  kiln_ls *work = f->body;
  if (n % T) {
    kiln_ls *cond = stmt(p, KILN_LS_IF);
    cond->value = kiln_lx_bin(&lb, KILN_BIN_LT, flat, kiln_lx_const_i(&lb, n));
    cond->body = f->body;
    work = cond;
  }
  kiln_ls *first = work;
  if (last_decl) { /* the hoisted decls, then the work */
    last_decl->next = work;
    first = decls;
  }
  if (d) {
    d->next = first;
    first = d;
  }
  t->body = first;
}

/* Replaces kernel i by schedule_dw_gpu.c's direct schedule when it is a
 * depthwise Conv's (fused epilogue included), before the implicit GEMM. */
static void dw_kernel(kiln_program *p, int i) {
  kiln_kernel *k = p->kernels[i];
  const kiln_node *n = k->node;
  if (k->launch || !n || n->op != KILN_OP_CONV || n->nin < 2 || !n->in[0] || !n->in[1] || n->nout < 1 || !n->out[0] ||
      n->out[0]->layout != KILN_LAYOUT_PLAIN || !kiln_dtype_is_float(n->out[0]->dtype) || n->in[0]->rank < 3 ||
      n->in[0]->rank > 4 || ((const kiln_attrs_conv *)n->attrs)->group != n->in[0]->dims[1] || n->in[1]->dims[1] != 1)
    return;
  kiln_diag d = {0};
  int before = p->nkernels;
  if (kiln_schedule_dw_gpu(p, n, NULL, &d) || p->nkernels != before + 1) {
    p->nkernels = before; /* declined: the CPU kernel stays and is mapped below */
    return;
  }
  kiln_kernel *g = p->kernels[--p->nkernels];
  g->name = k->name;
  p->kernels[i] = g;
}

/* The block tile of a product with M rows per block-row group (a
 * group's output channels, Gemm's rows) and N columns: 64x64x16 with a
 * 4x4 register tile per thread (256 threads); the rows shrink to the
 * power of two covering M (no idle rows for small groups).  With few rows
 * (a Gemm/MatMul with M <= 8: a batch-1..8 classifier, 1 x 1000 x 2048 for ResNet-50)
 * the 64-column tile would leave ~16 blocks for 132 SMs; such products
 * are matrix-vector products bound by reading B once, so the tile
 * becomes 16 columns wide, one column per thread, bk = 64 deep: N/16
 * blocks (63 for 1000 classes), each thread 64 independent coalesced B
 * loads per step.  Split-K (blocks summing slices of K, a second launch
 * adding them) would fill every SM, at the price of a workspace and a
 * launch: not done yet. */
static kiln_conv_gpu_tile product_tile(int64_t M, int gemm) {
  kiln_conv_gpu_tile t = {.bm = 64, .bn = 64, .bk = 16, .rm = 4, .rn = 4};
  while (t.bm > 1 && t.bm / 2 >= M) t.bm /= 2;
  if (t.rm > t.bm) t.rm = t.bm;
  if (gemm && M <= 8) t = (kiln_conv_gpu_tile){.bm = t.bm, .bn = 16, .bk = 64, .rm = 1, .rn = 1};
  return t;
}

/* Replaces kernel i (a Conv's, a Gemm's or a MatMul's) by the
 * shared-memory tiled GPU schedule, its fused epilogue at the store, when
 * it applies (see the top). */
static void tile_kernel(kiln_program *p, int i) {
  kiln_kernel *k = p->kernels[i];
  const kiln_node *n = k->node;
  if (k->launch || !n || n->nout < 1 || !n->out[0] || n->out[0]->layout != KILN_LAYOUT_PLAIN || n->nin < 2 ||
      !n->in[1] || n->in[1]->rank < 1)
    return;
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  if (ct != KILN_DT_F32) return; /* f32, or f16/bf16 computed in f32 */
  kiln_diag d = {0};
  int before = p->nkernels, rc;
  int64_t rows;
  if (n->op == KILN_OP_CONV) {
    int64_t groups = ((const kiln_attrs_conv *)n->attrs)->group;
    kiln_conv_gpu_tile t = product_tile(n->in[1]->dims[0] / (groups > 0 ? groups : 1), 0);
    rc = kiln_schedule_conv_gpu(p, n, &t, &d);
  } else if (kiln_gpu_gemm_tiled(n, &rows)) {
    kiln_conv_gpu_tile t = product_tile(rows, 1);
    rc = kiln_schedule_gemm_gpu(p, n, &t, &d);
  } else
    return;
  if (rc || p->nkernels != before + 1) {
    p->nkernels = before; /* refused: the CPU kernel stays */
    return;
  }
  kiln_kernel *g = p->kernels[--p->nkernels];
  g->name = k->name;
  p->kernels[i] = g;
}

/* Kernel k, whose top-level statements are all loops, as one kernel per
 * loop (each a copy of k's record with one loop for body) into out;
 * returns how many (0: k is not all loops, left as it is). */
static int split(kiln_program *p, kiln_kernel *k, kiln_kernel **out) {
  int n = 0;
  for (kiln_ls *s = k->body; s; s = s->next)
    if (s->kind != KILN_LS_FOR) return 0;
  for (kiln_ls *s = k->body, *next; s; s = next, n++) {
    next = s->next;
    kiln_kernel *c = kiln_arena_alloc(p->arena, sizeof *c);
    *c = *k;
    c->name = kiln_arena_printf(p->arena, "%s_%d", k->name, n + 1);
    c->body = s;
    s->next = NULL;
    out[n] = c;
  }
  return n;
}

void kiln_schedule_gpu(kiln_program *p) {
  if (p->target.kind != KILN_TARGET_GPU) return;
  for (int i = 0; i < p->nkernels; i++) dw_kernel(p, i);
  for (int i = 0; i < p->nkernels; i++) tile_kernel(p, i);
  int total = 0;
  for (int i = 0; i < p->nkernels; i++) {
    int stmts = 0;
    for (kiln_ls *s = p->kernels[i]->body; s; s = s->next) stmts++;
    total += p->kernels[i]->launch || stmts < 2 ? 1 : stmts;
  }
  if (total > p->nkernels) { /* kernels of several loops split */
    kiln_kernel **ks = kiln_arena_array(p->arena, (size_t)total + 1, sizeof *ks);
    int n = 0;
    for (int i = 0; i < p->nkernels; i++) {
      kiln_kernel *k = p->kernels[i];
      int got = !k->launch && k->body && k->body->next ? split(p, k, ks + n) : 0;
      if (got) n += got;
      else ks[n++] = k;
    }
    p->kernels = ks;
    p->nkernels = p->cap_kernels = n;
  }
  for (int i = 0; i < p->nkernels; i++) {
    kiln_kernel *k = p->kernels[i];
    if (k->launch) continue; /* scheduled for the GPU by its lowering */
    map_kernel(p, k);
    kiln_launch *l = kiln_arena_alloc(p->arena, sizeof *l);
    KILN_ASSERT(kiln_kernel_launch_of(k, l) == 0);
    k->launch = l;
  }
}
