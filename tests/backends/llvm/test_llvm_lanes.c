/* Register tiles printed as vectors (backends/llvm/llvm_lanes.c) keep the
 * scalar statements' meaning where lanes depend on each other: a run of W
 * lane statements may print as one vector statement only when no lane
 * reads what another lane of the run writes.  Each kernel below is marked
 * explicit_vectors (as the convolution lowerings mark theirs) for a target
 * of 8 f32 lanes, so 8 consecutive statements are candidates, and each
 * expected value is worked out from the scalar statements in order, in
 * small integers exact in f32.  Lanes that may be vectors (y[l] = y[l] * 2,
 * t[l] = x[l] + 1) must still give the scalar results; lanes that may not
 * (every lane reading lane 0's store or local, a store shifted by one over
 * the elements it reads) must give the sequential ones. */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/llvm/kiln_llvm.h"
#include "tests/ir/ir_test.h"

TestSuite(llvm_lanes, .init = graph_setup, .fini = graph_teardown);

enum { W = 8 };

static kiln_lx *ci(kiln_lb *B, int64_t v) { return kiln_lx_const_i(B, v); }
static kiln_lx *cf(kiln_lb *B, double v) { return kiln_lx_const_f(B, KILN_DT_F32, v); }
static kiln_lx *add(kiln_lb *B, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(B, KILN_BIN_ADD, a, b); }

static kiln_program *program(void) {
  kiln_program *p = t_program();
  p->target.vector_bytes = 32; /* 8 f32 lanes: AVX2's, legal on every x86-64 host through LLVM */
  return p;
}

static void run(kiln_program *p, void **bufs) {
  kiln_diag d = {0};
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert_not_null(j, "%s", d.msg);
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
}

/* The kernel's statements go in a loop of one iteration: a kernel's
 * top-level statements print one by one (llvm_codegen.c), a loop's body as
 * a block, as in the lowerings' tiles. */
static void start(kiln_lb *B, const char *name) {
  kiln_lb_kernel(B, name, NULL);
  B->k->explicit_vectors = 1;
  kiln_lb_for(B, 1, (kiln_sched){0});
}

/* y[l] = y[0] + 1 for l < 8, in order: lane 0 writes y[0] = 11, which
 * lanes 1..7 then read: y = 11, 12, 12, ... (a vector store would give
 * 11 everywhere).  Then z[l] = z[l] * 2: each lane its own element. */
Test(llvm_lanes, store_reading_another_lanes_element) {
  kiln_program *p = program();
  kiln_buf *y = t_buf(p, "y", W, KILN_BUF_OUTPUT, NULL), *z = t_buf(p, "z", W, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_shared_read");
  for (int l = 0; l < W; l++) kiln_lb_store(&B, y, ci(&B, l), add(&B, kiln_lx_load(&B, y, ci(&B, 0)), cf(&B, 1)));
  for (int l = 0; l < W; l++)
    kiln_lb_store(&B, z, ci(&B, l), kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, z, ci(&B, l)), cf(&B, 2)));
  kiln_lb_end(&B);
  float yv[W], zv[W];
  for (int l = 0; l < W; l++) yv[l] = 10, zv[l] = (float)l;
  run(p, (void *[]){yv, zv, NULL});
  for (int l = 0; l < W; l++) {
    cr_assert_eq(yv[l], l == 0 ? 11.0f : 12.0f, "y[%d] = %g", l, yv[l]);
    cr_assert_eq(zv[l], (float)(2 * l), "z[%d] = %g", l, zv[l]);
  }
}

/* y[l + 1] = y[l] + 1 for l < 8, in order: a prefix that carries, y[l] =
 * y[0] + l for l <= 8 (a vector would give y[l] = old y[l - 1] + 1 = 1). */
Test(llvm_lanes, store_shifted_over_what_it_reads) {
  kiln_program *p = program();
  kiln_buf *y = t_buf(p, "y", W + 1, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_shifted");
  for (int l = 0; l < W; l++) kiln_lb_store(&B, y, ci(&B, l + 1), add(&B, kiln_lx_load(&B, y, ci(&B, l)), cf(&B, 1)));
  kiln_lb_end(&B);
  float yv[W + 1] = {0};
  yv[0] = 5;
  run(p, (void *[]){yv, NULL});
  for (int l = 0; l <= W; l++) cr_assert_eq(yv[l], (float)(5 + l), "y[%d] = %g", l, yv[l]);
}

/* Locals: t[l] = x[l] + 1 (a group of 8, a vector run), then, in a loop
 * of 3, t[l] = t[l] + t[0] for l < 8 in order: lane 0 doubles t[0] first,
 * the other lanes read the doubled value.  With x[l] = l: t starts at
 * l + 1; each pass t[0] *= 2, t[l>0] += t[0] (new): after 3 passes t[0] =
 * 8 and t[l] = l + 1 + 2 + 4 + 8 = l + 15; y[l] = t[l]. */
Test(llvm_lanes, local_reading_another_lanes_local) {
  kiln_program *p = program();
  kiln_buf *x = t_buf(p, "x", W, KILN_BUF_INPUT, NULL), *y = t_buf(p, "y", W, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_local_read");
  int t[W];
  for (int l = 0; l < W; l++) t[l] = kiln_lb_decl(&B, KILN_DT_F32, add(&B, kiln_lx_load(&B, x, ci(&B, l)), cf(&B, 1)));
  kiln_lb_for(&B, 3, (kiln_sched){0});
  for (int l = 0; l < W; l++) kiln_lb_assign(&B, t[l], add(&B, kiln_lx_local(&B, t[l]), kiln_lx_local(&B, t[0])));
  kiln_lb_end(&B);
  for (int l = 0; l < W; l++) kiln_lb_store(&B, y, ci(&B, l), kiln_lx_local(&B, t[l]));
  kiln_lb_end(&B);
  float xv[W], yv[W];
  for (int l = 0; l < W; l++) xv[l] = (float)l;
  run(p, (void *[]){xv, yv, NULL});
  for (int l = 0; l < W; l++) cr_assert_eq(yv[l], l == 0 ? 8.0f : (float)(l + 15), "y[%d] = %g", l, yv[l]);
}

/* The register tile's own pattern, which prints as vectors: acc[l] =
 * b[l]; for k < 4: acc[l] = fma(x[k], w[k*8 + l], acc[l]); y[l] = max(acc[l], 0).
 * With b[l] = l - 20, x[k] = k + 1, w[k*8 + l] = l: acc[l] = l - 20 + 10 l
 * = 11 l - 20, so y = max(11 l - 20, 0). */
Test(llvm_lanes, register_tile) {
  kiln_program *p = program();
  kiln_buf *b = t_buf(p, "b", W, KILN_BUF_INPUT, NULL), *x = t_buf(p, "x", 4, KILN_BUF_INPUT, NULL);
  kiln_buf *w = t_buf(p, "w", 4 * W, KILN_BUF_INPUT, NULL), *y = t_buf(p, "y", W, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_tile");
  int acc[W], wl[W];
  for (int l = 0; l < W; l++) acc[l] = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, b, ci(&B, l)));
  int k = kiln_lb_for(&B, 4, (kiln_sched){0});
  for (int l = 0; l < W; l++)
    wl[l] = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, w, kiln_lx_iadd(&B, kiln_lx_imul(&B, kiln_lx_index(&B, k), W), ci(&B, l))));
  int xk = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, x, kiln_lx_index(&B, k)));
  for (int l = 0; l < W; l++)
    kiln_lb_assign(&B, acc[l], kiln_lx_fma(&B, kiln_lx_local(&B, xk), kiln_lx_local(&B, wl[l]), kiln_lx_local(&B, acc[l])));
  kiln_lb_end(&B);
  for (int l = 0; l < W; l++)
    kiln_lb_store(&B, y, ci(&B, l), kiln_lx_bin(&B, KILN_BIN_MAX, kiln_lx_local(&B, acc[l]), cf(&B, 0)));
  kiln_lb_end(&B);
  float bv[W], xv[4] = {1, 2, 3, 4}, wv[4 * W], yv[W];
  for (int l = 0; l < W; l++) bv[l] = (float)(l - 20);
  for (int i = 0; i < 4 * W; i++) wv[i] = (float)(i % W);
  run(p, (void *[]){bv, xv, wv, yv, NULL});
  for (int l = 0; l < W; l++) {
    float want = 11.0f * (float)l - 20.0f;
    cr_assert_eq(yv[l], want > 0 ? want : 0.0f, "y[%d] = %g", l, yv[l]);
  }
}

/* Loads of every other element (im2col's stride-2 packs): y[l] = x[2l] * 2
 * for l < 8 prints as one masked load of the 15 elements x[0..14] and a
 * shuffle.  x is exactly those 15 floats, placed at the end of a readable
 * page with an inaccessible page after it: a 16th lane loaded unmasked
 * would fault. */
Test(llvm_lanes, every_other_element_at_the_end_of_memory) {
  kiln_program *p = program();
  kiln_buf *x = t_buf(p, "x", 2 * W - 1, KILN_BUF_INPUT, NULL), *y = t_buf(p, "y", W, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_every_other");
  for (int l = 0; l < W; l++)
    kiln_lb_store(&B, y, ci(&B, l), kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, x, ci(&B, 2 * l)), cf(&B, 2)));
  kiln_lb_end(&B);
  long page = sysconf(_SC_PAGESIZE);
  char *mem = mmap(NULL, (size_t)(2 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(mem, MAP_FAILED);
  cr_assert_eq(mprotect(mem + page, (size_t)page, PROT_NONE), 0);
  float *xv = (float *)(mem + page) - (2 * W - 1), yv[W];
  for (int i = 0; i < 2 * W - 1; i++) xv[i] = (float)i;
  run(p, (void *[]){xv, yv, NULL});
  for (int l = 0; l < W; l++) cr_assert_eq(yv[l], (float)(4 * l), "y[%d] = %g", l, yv[l]);
  munmap(mem, (size_t)(2 * page));
}

/* A 3-wide stride-2 window's taps (a max pool's or depthwise row's): t0[l]
 * = x[2l], t1[l] = x[2l + 1], t2[l] = x[2l + 2], y[l] = t0 + t1 + t2 for
 * l < 8.  The taps read each other's ends, so the printer loads whole
 * spans: x[0..15] for taps 0 and 1, x[1..16] for tap 2 (its odd lanes).
 * x is exactly the 17 floats read, at the end of a readable page: a span
 * past x[16] (tap 2's even lanes from x[2]) would fault. */
Test(llvm_lanes, stride2_window_taps_at_the_end_of_memory) {
  kiln_program *p = program();
  kiln_buf *x = t_buf(p, "x", 2 * W + 1, KILN_BUF_INPUT, NULL), *y = t_buf(p, "y", W, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  start(&B, "k0_window");
  int t[3][W];
  for (int k = 0; k < 3; k++)
    for (int l = 0; l < W; l++) t[k][l] = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_load(&B, x, ci(&B, 2 * l + k)));
  for (int l = 0; l < W; l++)
    kiln_lb_store(&B, y, ci(&B, l),
                  add(&B, add(&B, kiln_lx_local(&B, t[0][l]), kiln_lx_local(&B, t[1][l])), kiln_lx_local(&B, t[2][l])));
  kiln_lb_end(&B);
  long page = sysconf(_SC_PAGESIZE);
  char *mem = mmap(NULL, (size_t)(2 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(mem, MAP_FAILED);
  cr_assert_eq(mprotect(mem + page, (size_t)page, PROT_NONE), 0);
  float *xv = (float *)(mem + page) - (2 * W + 1), yv[W];
  for (int i = 0; i < 2 * W + 1; i++) xv[i] = (float)i;
  run(p, (void *[]){xv, yv, NULL});
  for (int l = 0; l < W; l++) cr_assert_eq(yv[l], (float)(6 * l + 3), "y[%d] = %g", l, yv[l]);
  munmap(mem, (size_t)(2 * page));
}
