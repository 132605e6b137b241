/* Twin kernels found before LLVM (backends/llvm/llvm_twins.c): kernels
 * whose loop IR is the same up to which buffers fill their slots are
 * printed once, each keeps its own wrapper (its own buffers), and kernels
 * that differ in anything the printer reads (a constant, a loop's
 * schedule, one buffer used where the other uses two) are printed apart.
 * The count comes from the `--time` line "kiln: llvm: K kernels, P
 * printed, T share a twin's functions"; values are worked out by hand in
 * integers exact in f32, never taken from kiln. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm/kiln_llvm.h"
#include "tests/ir/ir_test.h"

TestSuite(llvm_twins, .init = graph_setup, .fini = graph_teardown);

enum { N = 32 };

/* out[i] = in[i] * c + 1 for i < N, the loop scheduled `sched` */
static void affine(kiln_program *p, const char *name, const kiln_buf *in, const kiln_buf *out, double c, kiln_sched sched) {
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, name, NULL);
  int i = kiln_lb_for(&B, N, sched);
  kiln_lx *v = kiln_lx_bin(&B, KILN_BIN_MUL, kiln_lx_load(&B, in, kiln_lx_index(&B, i)), kiln_lx_const_f(&B, KILN_DT_F32, c));
  kiln_lb_store(&B, out, kiln_lx_index(&B, i), kiln_lx_bin(&B, KILN_BIN_ADD, v, kiln_lx_const_f(&B, KILN_DT_F32, 1)));
  kiln_lb_end(&B);
}

/* s = 0; for i: s += in[i]; out[0] = s  (heavy tier) */
static void sum(kiln_program *p, const char *name, const kiln_buf *in, const kiln_buf *out) {
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, name, NULL);
  int t = kiln_lb_decl(&B, KILN_DT_F32, kiln_lx_const_f(&B, KILN_DT_F32, 0));
  int i = kiln_lb_for(&B, N, (kiln_sched){0});
  kiln_lb_assign(&B, t, kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_local(&B, t), kiln_lx_load(&B, in, kiln_lx_index(&B, i))));
  kiln_lb_end(&B);
  kiln_lb_store(&B, out, kiln_lx_const_i(&B, 0), kiln_lx_local(&B, t));
}

/* Compiles p with --time's counters on; returns the JIT (values checked
 * by the caller) and the numbers of the "kiln: llvm:" line. */
static kiln_llvm_jit *compile_counted(kiln_program *p, int *kernels, int *printed, int *twins) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cr_assert_not_null(f);
  kiln_timing t;
  kiln_timing_start(&t, f);
  kiln_diag d = {0};
  kiln_llvm_jit *j = kiln_llvm_jit_compile_with(p, 0, &t, &d);
  fclose(f);
  cr_assert_not_null(j, "%s", d.msg);
  const char *line = strstr(text, "kiln: llvm: ");
  cr_assert_not_null(line, "no twin count in:\n%s", text);
  cr_assert_eq(sscanf(line, "kiln: llvm: %d kernels, %d printed, %d share", kernels, printed, twins), 3, "%s", line);
  free(text);
  return j;
}

static void check_affine(const float *in, const float *out, double c, const char *what) {
  for (int i = 0; i < N; i++) cr_assert_eq(out[i], (float)(in[i] * c + 1), "%s[%d] = %g", what, i, out[i]);
}

/* A chain of four twins (x -> a -> b -> c -> d, each *3 + 1, threaded)
 * and two twin sums: 6 kernels, 2 printed, 4 reuse; every kernel writes
 * its own buffer, on one thread and on two. */
static void chain(int threads) {
  unsetenv("KILN_OPT");
  kiln_program *p = t_program();
  kiln_buf *x = t_buf(p, "x", N, KILN_BUF_INPUT, NULL), *o[4], *s[2];
  const char *names[4] = {"a", "b", "c", "d"};
  for (int k = 0; k < 4; k++) o[k] = t_buf(p, names[k], N, KILN_BUF_OUTPUT, NULL);
  s[0] = t_buf(p, "sx", 1, KILN_BUF_OUTPUT, NULL);
  s[1] = t_buf(p, "sd", 1, KILN_BUF_OUTPUT, NULL);
  for (int k = 0; k < 4; k++)
    affine(p, names[k], k ? o[k - 1] : x, o[k], 3, (kiln_sched){.parallel = 1, .threads = 1});
  sum(p, "sumx", x, s[0]);
  sum(p, "sumd", o[3], s[1]);
  int kernels, printed, twins;
  kiln_llvm_jit *j = compile_counted(p, &kernels, &printed, &twins);
  cr_assert_eq(kernels, 6);
  cr_assert_eq(printed, 2, "one affine body, one sum body: %d printed", printed);
  cr_assert_eq(twins, 4);
  float xv[N], ov[4][N], sx = -1, sd = -1;
  for (int i = 0; i < N; i++) xv[i] = (float)(i - 10);
  void *bufs[8] = {xv, ov[0], ov[1], ov[2], ov[3], &sx, &sd, NULL};
  cr_assert_eq(kiln_llvm_jit_set_threads(j, threads), 0);
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  check_affine(xv, ov[0], 3, "a");
  for (int k = 1; k < 4; k++) check_affine(ov[k - 1], ov[k], 3, names[k]);
  /* x = i - 10: sum = 496 - 320 = 176; d = 81 x + 40 (3(3(3(3x+1)+1)+1)+1): 81 * 176 + 40 * 32 */
  cr_assert_eq(sx, 176.0f, "sx = %g", sx);
  cr_assert_eq(sd, 81.0f * 176 + 40 * 32, "sd = %g", sd);
}
Test(llvm_twins, chain_printed_once) { chain(1); }
Test(llvm_twins, chain_printed_once_pool) { chain(2); }

/* Near twins are not twins: another constant, another schedule (the
 * threaded loop is a function of its own), one buffer read and written
 * (one slot) where the twin has two.  Each is printed and computes its own
 * result. */
Test(llvm_twins, near_twins_printed_apart) {
  unsetenv("KILN_OPT");
  kiln_program *p = t_program();
  kiln_buf *x = t_buf(p, "x", N, KILN_BUF_INPUT, NULL), *a = t_buf(p, "a", N, KILN_BUF_OUTPUT, NULL);
  kiln_buf *b = t_buf(p, "b", N, KILN_BUF_OUTPUT, NULL), *c = t_buf(p, "c", N, KILN_BUF_OUTPUT, NULL);
  kiln_buf *e = t_buf(p, "e", N, KILN_BUF_OUTPUT, NULL);
  affine(p, "k_a", x, a, 3, (kiln_sched){0});                              /* a = 3x + 1 */
  affine(p, "k_b", x, b, 5, (kiln_sched){0});                              /* b = 5x + 1: constant */
  affine(p, "k_c", x, c, 3, (kiln_sched){.parallel = 1, .threads = 1});    /* c = 3x + 1: schedule */
  affine(p, "k_e", x, e, 3, (kiln_sched){0});                              /* e = 3x + 1: k_a's twin */
  affine(p, "k_e2", e, e, 3, (kiln_sched){0});                             /* e = 3e + 1: one slot */
  int kernels, printed, twins;
  kiln_llvm_jit *j = compile_counted(p, &kernels, &printed, &twins);
  cr_assert_eq(kernels, 5);
  cr_assert_eq(printed, 4, "%d printed", printed);
  cr_assert_eq(twins, 1);
  float xv[N], av[N], bv[N], cv[N], ev[N], e1[N];
  for (int i = 0; i < N; i++) xv[i] = (float)(2 * i - 7);
  void *bufs[6] = {xv, av, bv, cv, ev, NULL};
  kiln_llvm_jit_run(j, bufs);
  kiln_llvm_jit_free(j);
  check_affine(xv, av, 3, "a");
  check_affine(xv, bv, 5, "b");
  check_affine(xv, cv, 3, "c");
  for (int i = 0; i < N; i++) e1[i] = xv[i] * 3 + 1;
  check_affine(e1, ev, 3, "e");
}
