/* The LLVM backend's compile-time structure (backends/llvm/llvm_optimise.c,
 * llvm_codegen.c): which statements go to the O3 tier, and that kernels
 * printed as one shared body (buffers passed through per-kernel slots,
 * twins merged by mergefunc) still compute each kernel's own result, with
 * two tiers and with one (KILN_OPT=O3), on one thread and on the pool.
 * Every expected value is worked out by hand from the kernels written
 * below, in integers small enough to be exact in f32. */
#include <stdlib.h>
#include <unistd.h>

#include "backends/llvm/kiln_llvm.h"
#include "tests/ir/ir_test.h"

TestSuite(llvm_tiers, .init = graph_setup, .fini = graph_teardown);

static kiln_lx *idx(kiln_lb *B, int var) { return kiln_lx_index(B, var); }

/* for i in 0..8: out[i] = in[i] * 2  -- elementwise: light */
Test(llvm_tiers, elementwise_is_light) {
  kiln_program *p = t_program();
  kiln_buf *in = t_buf(p, "in", 8, KILN_BUF_INPUT, NULL), *out = t_buf(p, "out", 8, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0", NULL);
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out, idx(&B, i), kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, in, idx(&B, i)), kiln_lx_const_f(&B, KILN_DT_F32, 2)));
  kiln_lb_end(&B);
  cr_assert_eq(kiln_llvm_heavy(p->kernels[0]->body, 0), 0);
}

/* t = 0; for i: t = t + in[i]; out[0] = t  -- a local accumulated in a loop: heavy;
 * the final store alone (outside any loop) is light. */
Test(llvm_tiers, local_accumulation_is_heavy) {
  kiln_program *p = t_program();
  kiln_buf *in = t_buf(p, "in", 8, KILN_BUF_INPUT, NULL), *out = t_buf(p, "out", 1, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0", NULL);
  int t = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_const_f(&B, KILN_DT_F32, 0));
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_assign(&B, t, kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_local(&B, t), kiln_lx_load(&B, in, idx(&B, i))));
  kiln_lb_end(&B);
  kiln_lb_store(&B, out, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  const kiln_ls *body = p->kernels[0]->body;
  cr_assert_eq(kiln_llvm_heavy(body, 0), 1);
  cr_assert_eq(kiln_llvm_heavy(body->next, 1), 1, "the loop alone");
  cr_assert_eq(kiln_llvm_heavy(body->next->next, 1), 0, "the store after it");
}

/* for i: for j: out[i] = out[i] + in[j]  -- accumulating into memory, as
 * convolutions do: heavy.  for i: out[i] = in[i] + 1 writing a buffer it
 * does not read: light. */
Test(llvm_tiers, store_accumulation_is_heavy) {
  kiln_program *p = t_program();
  kiln_buf *in = t_buf(p, "in", 8, KILN_BUF_INPUT, NULL), *out = t_buf(p, "out", 8, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0", NULL);
  int i = kiln_lb_for(&B, 8, (kiln_sched){0});
  int j = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out, idx(&B, i),
                kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_load(&B, out, idx(&B, i)), kiln_lx_load(&B, in, idx(&B, j))));
  kiln_lb_end(&B);
  kiln_lb_end(&B);
  kiln_lb_kernel(&B, "k1", NULL);
  i = kiln_lb_for(&B, 8, (kiln_sched){0});
  kiln_lb_store(&B, out, idx(&B, i), kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_load(&B, in, idx(&B, i)), kiln_lx_const_f(&B, KILN_DT_F32, 1)));
  kiln_lb_end(&B);
  cr_assert_eq(kiln_llvm_heavy(p->kernels[0]->body, 0), 1);
  cr_assert_eq(kiln_llvm_heavy(p->kernels[1]->body, 0), 0);
}

/* Four kernels, two pairs of twins (the same work on other buffers):
 *   k0: for i (threads): w[i] = x[i] * 3 + 1       light
 *   k1: for i (threads): y[i] = w[i] * 3 + 1       light, k0's twin
 *   k2: s = 0; for i: s += x[i]; sx[0] = s          heavy
 *   k3: s = 0; for i: s += y[i]; sy[0] = s          heavy, k2's twin
 * With x[i] = i - 20 (i < 64): w = 3i - 59, y = 9i - 176,
 * sx = sum(i) - 20*64 = 2016 - 1280 = 736, sy = 9*2016 - 176*64 = 6880. */
enum { N = 64 };
static kiln_program *twins(void) {
  kiln_program *p = t_program();
  kiln_buf *x = t_buf(p, "x", N, KILN_BUF_INPUT, NULL), *w = t_buf(p, "w", N, KILN_BUF_OUTPUT, NULL);
  kiln_buf *y = t_buf(p, "y", N, KILN_BUF_OUTPUT, NULL);
  kiln_buf *sx = t_buf(p, "sx", 1, KILN_BUF_OUTPUT, NULL), *sy = t_buf(p, "sy", 1, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  const kiln_buf *src[2] = {x, w}, *dst[2] = {w, y}, *sum_in[2] = {x, y}, *sum_out[2] = {sx, sy};
  for (int k = 0; k < 2; k++) {
    kiln_lb_kernel(&B, k ? "k1_b" : "k0_a", NULL);
    int i = kiln_lb_for(&B, N, (kiln_sched){.parallel = 1, .threads = 1});
    kiln_lx *v = kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, src[k], idx(&B, i)), kiln_lx_const_f(&B, KILN_DT_F32, 3));
    kiln_lb_store(&B, dst[k], idx(&B, i), kiln_lx_bin(&B, KILN_BIN_ADD, v, kiln_lx_const_f(&B, KILN_DT_F32, 1)));
    kiln_lb_end(&B);
  }
  for (int k = 0; k < 2; k++) {
    kiln_lb_kernel(&B, k ? "k3_d" : "k2_c", NULL);
    int t = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_const_f(&B, KILN_DT_F32, 0));
    int i = kiln_lb_for(&B, N, (kiln_sched){0});
    kiln_lb_assign(&B, t, kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_local(&B, t), kiln_lx_load(&B, sum_in[k], idx(&B, i))));
    kiln_lb_end(&B);
    kiln_lb_store(&B, sum_out[k], kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
  }
  return p;
}

static void check_twins(const char *opt, int threads) {
  if (opt) setenv("KILN_OPT", opt, 1);
  else unsetenv("KILN_OPT");
  kiln_program *p = twins();
  cr_assert_eq(kiln_llvm_heavy(p->kernels[0]->body, 0) + kiln_llvm_heavy(p->kernels[1]->body, 0), 0);
  cr_assert_eq(kiln_llvm_heavy(p->kernels[2]->body, 0) + kiln_llvm_heavy(p->kernels[3]->body, 0), 2);
  float x[N], w[N], y[N], sx = -1, sy = -1;
  for (int i = 0; i < N; i++) x[i] = (float)(i - 20);
  void *bufs[6] = {x, w, y, &sx, &sy, NULL};
  kiln_diag d = {0};
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert_not_null(j, "%s", d.msg);
  cr_assert_eq(kiln_llvm_jit_set_threads(j, threads), 0);
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(w[i], (float)(3 * i - 59), "w[%d] = %g", i, w[i]);
    cr_assert_eq(y[i], (float)(9 * i - 176), "y[%d] = %g", i, y[i]);
  }
  cr_assert_eq(sx, 736.0f, "sx = %g", sx);
  cr_assert_eq(sy, 6880.0f, "sy = %g", sy);
}

Test(llvm_tiers, twins_two_tiers) { check_twins(NULL, 1); }
Test(llvm_tiers, twins_two_tiers_pool) { check_twins(NULL, 2); }
Test(llvm_tiers, twins_one_tier) { check_twins("O3", 1); }
Test(llvm_tiers, twins_one_tier_pool) { check_twins("O3", 2); }

/* The object file (kiln compile) links the tiers into one module: only
 * the entry point and the buffer table are exported, whatever the tiers. */
Test(llvm_tiers, object_exports_only_entry_points) {
  unsetenv("KILN_OPT");
  kiln_program *p = twins();
  void *obj = NULL;
  size_t len = 0;
  kiln_diag d = {0};
  cr_assert_eq(kiln_llvm_emit_object(p, "net", 0, &obj, &len, NULL, &d), 0, "%s", d.msg);
  char path[64], cmd[160];
  snprintf(path, sizeof path, "/tmp/kiln-tiers-%ld.o", (long)getpid());
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(obj, 1, len, f), len);
  fclose(f);
  free(obj);
  /* defined global symbols (nm -g --defined-only), sorted */
  snprintf(cmd, sizeof cmd, "nm -g --defined-only %s | awk '{print $3}' | sort | tr '\\n' ' '", path);
  FILE *nm = popen(cmd, "r");
  cr_assert_not_null(nm);
  char out[256] = "";
  size_t n = fread(out, 1, sizeof out - 1, nm);
  out[n] = 0;
  pclose(nm);
  remove(path);
  cr_assert_str_eq(out, "net_kernels net_layout ");
}

/* A kernel the lowering marked explicit_vectors goes to the tiled tier
 * (its own pipeline: SLP and the unroller, no loop vectoriser), and loop
 * IR unroll hints become llvm.loop metadata: unroll 4 of a 10-trip loop
 * (unroll.count, a remainder of 2) and unroll 8 of an 8-trip one (full).
 *   for i < 8 (threads): a[l] = 0 (l < 4);
 *                        for t < 10 (unroll 4): a[l] = fma(x[t], w[l], a[l]);
 *                        for u < 8 (unroll 8): a[l] = a[l] + x[u];
 *                        y[i*4 + l] = a[l] * (i + 1)
 * With x[t] = t + 1 and w[l] = l - 1:  sum(x[0..10)) = 55,
 * sum(x[0..8)) = 36, so y[i*4 + l] = (55 (l - 1) + 36) (i + 1). */
static void check_tiled(const char *opt) {
  if (opt) setenv("KILN_OPT", opt, 1);
  else unsetenv("KILN_OPT");
  kiln_program *p = t_program();
  kiln_buf *x = t_buf(p, "x", 10, KILN_BUF_INPUT, NULL), *w = t_buf(p, "w", 4, KILN_BUF_INPUT, NULL);
  kiln_buf *y = t_buf(p, "y", 32, KILN_BUF_OUTPUT, NULL);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_tile", NULL);
  B.k->explicit_vectors = 1;
  int i = kiln_lb_for(&B, 8, (kiln_sched){.parallel = 1, .threads = 1});
  int a[4];
  for (int l = 0; l < 4; l++) a[l] = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_const_f(&B, KILN_DT_F32, 0));
  int t = kiln_lb_for(&B, 10, (kiln_sched){.unroll = 4});
  for (int l = 0; l < 4; l++)
    kiln_lb_assign(&B, a[l], kiln_lx_fma(&B, kiln_lx_load(&B, x, idx(&B, t)), kiln_lx_load(&B, w, kiln_lx_const_i(&B, l)),
                                         kiln_lx_local(&B, a[l])));
  kiln_lb_end(&B);
  int u = kiln_lb_for(&B, 8, (kiln_sched){.unroll = 8});
  for (int l = 0; l < 4; l++)
    kiln_lb_assign(&B, a[l], kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_local(&B, a[l]), kiln_lx_load(&B, x, idx(&B, u))));
  kiln_lb_end(&B);
  kiln_lx *scale = kiln_lx_cast(&B, KILN_DT_F32, kiln_lx_iadd(&B, idx(&B, i), kiln_lx_const_i(&B, 1)));
  for (int l = 0; l < 4; l++)
    kiln_lb_store(&B, y, kiln_lx_iadd(&B, kiln_lx_imul(&B, idx(&B, i), 4), kiln_lx_const_i(&B, l)),
                  kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_local(&B, a[l]), scale));
  kiln_lb_end(&B);
  float xv[10], wv[4] = {-1, 0, 1, 2}, yv[32];
  for (int k = 0; k < 10; k++) xv[k] = (float)(k + 1);
  void *bufs[4] = {xv, wv, yv, NULL};
  kiln_diag d = {0};
  kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
  cr_assert_not_null(j, "%s", d.msg);
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  for (int k = 0; k < 32; k++) {
    float want = (float)((55 * (k % 4 - 1) + 36) * (k / 4 + 1));
    cr_assert_eq(yv[k], want, "y[%d] = %g, want %g", k, yv[k], want);
  }
}

Test(llvm_tiers, tiled_kernel_with_unroll_hints) { check_tiled(NULL); }
Test(llvm_tiers, tiled_kernel_with_unroll_hints_one_tier) { check_tiled("O3"); }
