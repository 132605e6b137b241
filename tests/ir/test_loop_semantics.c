/* ir/loop.h's integer DIV / REM / wrap semantics at the loop IR level, where
 * REM (no ONNX op of kiln's reaches it; index arithmetic uses it) and
 * constant divisors are reached directly.  One hand-built kernel runs
 * through the interpreter (ir/loop_eval.c, what the constant folder uses),
 * the LLVM JIT and the C backend (cc, dlopen); each output must equal the
 * expectation written below from the definition:
 *   x / 0 == 0, x % 0 == x, MIN / -1 == MIN, MIN % -1 == 0, C99 truncation
 *   otherwise; MUL wraps modulo 2^bits. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backends/c/kiln_c.h"
#include "backends/llvm/kiln_llvm.h"
#include "ir_test.h"

TestSuite(loop_semantics, .init = graph_setup, .fini = graph_teardown);

enum { N = 8, NOUT = 5 };
/* outputs: a / b, a % b, a % 3, a / -1, a * a */
static const char *const out_names[NOUT] = {"div", "rem", "rem3", "divm1", "sq"};

/* A program with inputs a, b and the NOUT outputs, all dtype t and N long. */
static kiln_program *ab_program(kiln_dtype t, kiln_buf **a, kiln_buf **b, kiln_buf **o) {
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  kiln_value v = {.dtype = t, .rank = 1, .dims = {N}, .id = -1};
  v.name = "a";
  *a = kiln_program_add_buf(p, &v, KILN_BUF_INPUT);
  v.name = "b";
  *b = kiln_program_add_buf(p, &v, KILN_BUF_INPUT);
  for (int k = 0; k < NOUT; k++) {
    v.name = out_names[k];
    o[k] = kiln_program_add_buf(p, &v, KILN_BUF_OUTPUT);
  }
  return p;
}

static kiln_program *build(kiln_dtype t) {
  kiln_buf *a, *b, *o[NOUT];
  kiln_program *p = ab_program(t, &a, &b, o);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_divrem", NULL);
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, N, (kiln_sched){0}));
  kiln_lx *x = kiln_lx_load(&B, a, i), *y = kiln_lx_load(&B, b, i);
  /* a hint that changes nothing (ir/loop.h, "Prefetch"): every backend
   * prints it (the C compiles -Wall -Wpedantic -Werror) and computes the
   * same; b's element N - 1 - i, in bounds */
  kiln_lb_prefetch(&B, b, kiln_lx_bin(&B, KILN_BIN_SUB, kiln_lx_const_i(&B, N - 1), i));
  kiln_lb_store(&B, o[0], i, kiln_lx_bin(&B, KILN_BIN_DIV, x, y));
  kiln_lb_store(&B, o[1], i, kiln_lx_bin(&B, KILN_BIN_REM, x, y));
  kiln_lb_store(&B, o[2], i, kiln_lx_bin(&B, KILN_BIN_REM, x, kiln_lx_const_f(&B, t, 3)));
  kiln_lb_store(&B, o[3], i, kiln_lx_bin(&B, KILN_BIN_DIV, x, kiln_lx_const_f(&B, t, -1)));
  kiln_lb_store(&B, o[4], i, kiln_lx_bin(&B, KILN_BIN_MUL, x, x));
  kiln_lb_end(&B);
  return p;
}

/* Runs p on a, b through backend `how`; outputs into out[k]. */
static void run(const kiln_program *p, const char *how, const void *a, const void *b, void **out) {
  void *bufs[2 + NOUT + 1] = {(void *)a, (void *)b};
  for (int k = 0; k < NOUT; k++) bufs[2 + k] = out[k];
  if (!strcmp(how, "eval")) {
    cr_assert_eq(kiln_loop_eval(p, p->kernels[0], bufs), 0);
  } else if (!strcmp(how, "llvm")) {
    kiln_diag d = {0};
    kiln_llvm_jit *j = kiln_llvm_jit_compile(p, &d);
    cr_assert_not_null(j, "%s", d.msg);
    kiln_llvm_jit_run(j, bufs);
    kiln_llvm_jit_free(j);
  } else {
    kiln_diag d = {0};
    kiln_c_options o = {.prefix = "net", .model = "test"};
    kiln_c_output co;
    cr_assert_eq(kiln_c_emit(p, &o, &co, &d), 0, "%s", d.msg);
    char dir[64], path[128], cmd[512];
    snprintf(dir, sizeof dir, "/tmp/kiln-loopsem-%ld", (long)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    cr_assert_eq(system(cmd), 0);
    const char *names[3] = {"net.h", "net.c", "net_weights.c"};
    const char *texts[3] = {co.header, co.source, co.weights};
    for (int f = 0; f < 3; f++) {
      snprintf(path, sizeof path, "%s/%s", dir, names[f]);
      FILE *fp = fopen(path, "w");
      cr_assert_not_null(fp);
      fputs(texts[f] ? texts[f] : "", fp);
      fclose(fp);
    }
    kiln_c_output_free(&co);
    /* UBSan aborts on any undefined behaviour in the generated code */
    snprintf(cmd, sizeof cmd,
             "cc -std=c99 -O1 -Wall -Wextra -Wpedantic -Werror -fPIC -shared -fsanitize=undefined "
             "-fno-sanitize-recover=all -o %s/net.so %s/net.c %s/net_weights.c -lm",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "generated C does not compile");
    snprintf(path, sizeof path, "%s/net.so", dir);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(dl, "%s", dlerror());
    int (*fn)(const void *, const void *const *, void *const *, void *) =
        (int (*)(const void *, const void *const *, void *const *, void *))(uintptr_t)dlsym(dl, "net_run_v");
    cr_assert_not_null(fn);
    const void *in[2] = {a, b};
    char ws[64];
    fn(NULL, in, out, ws);
    dlclose(dl);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
  }
}

#define CHECK(T, DT, MIN)                                                                                  \
  do {                                                                                                     \
    static const T a[N] = {7, -7, 7, -7, MIN, MIN, 5, 0};                                                  \
    static const T b[N] = {2, 2, -2, -2, -1, 0, 0, -1};                                                    \
    static const T want[NOUT][N] = {                                                                       \
        {3, -3, -3, 3, MIN, 0, 0, 0},      /* a / b: MIN / -1 == MIN, x / 0 == 0 */                        \
        {1, -1, 1, -1, 0, MIN, 5, 0},      /* a % b: MIN % -1 == 0, x % 0 == x */                          \
        {1, -1, 1, -1, -2, -2, 2, 0},      /* a % 3 (no guard): MIN = -(3 * k + 2) */                     \
        {-7, 7, -7, 7, MIN, MIN, -5, 0},   /* a / -1 (guarded constant): wraps at MIN */                   \
        {49, 49, 49, 49, 0, 0, 25, 0}};    /* a * a wraps: MIN * MIN == 2^(2 bits - 2) == 0 */             \
    const char *const hows[3] = {"eval", "llvm", "c"};                                                     \
    kiln_program *p = build(DT);                                                                           \
    for (int h = 0; h < 3; h++) {                                                                          \
      T got[NOUT][N];                                                                                      \
      void *out[NOUT];                                                                                     \
      memset(got, 0x5a, sizeof got);                                                                       \
      for (int k = 0; k < NOUT; k++) out[k] = got[k];                                                      \
      run(p, hows[h], a, b, out);                                                                          \
      for (int k = 0; k < NOUT; k++)                                                                       \
        for (int i = 0; i < N; i++)                                                                        \
          cr_expect_eq(got[k][i], want[k][i], "%s %s[%d]: %lld, expected %lld", hows[h], out_names[k], i, \
                       (long long)got[k][i], (long long)want[k][i]);                                       \
    }                                                                                                      \
  } while (0)

Test(loop_semantics, i32_div_rem_wrap) { CHECK(int32_t, KILN_DT_I32, INT32_MIN); }
Test(loop_semantics, i64_div_rem_wrap) { CHECK(int64_t, KILN_DT_I64, INT64_MIN); }
Test(loop_semantics, i8_div_rem_wrap) { CHECK(int8_t, KILN_DT_I8, INT8_MIN); }

/* FMA(a, b, c) rounds once: with a = 1 + e, a * a + c for c = -(1 + 2e)
 * is exactly e^2 fused, but 0 as a multiply then an add (a * a = 1 + 2e +
 * e^2 rounds to 1 + 2e, e^2 being half an ulp of 1 and 1 + 2e even).
 * e = 2^-12 (f32), 2^-27 (f64).  Outputs: fma(a, a, c), a * a + c, and a
 * three times (unused). */
static kiln_program *build_fma(kiln_dtype t) {
  kiln_buf *a, *b, *o[NOUT];
  kiln_program *p = ab_program(t, &a, &b, o);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_fma", NULL);
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, N, (kiln_sched){0}));
  kiln_lx *x = kiln_lx_load(&B, a, i), *c = kiln_lx_load(&B, b, i);
  kiln_lb_store(&B, o[0], i, kiln_lx_fma(&B, x, x, c));
  kiln_lb_store(&B, o[1], i, kiln_lx_bin(&B, KILN_BIN_ADD, kiln_lx_bin(&B, KILN_BIN_MUL, x, x), c));
  for (int k = 2; k < NOUT; k++) kiln_lb_store(&B, o[k], i, x);
  kiln_lb_end(&B);
  return p;
}

#define CHECK_FMA(T, DT, E)                                                                          \
  do {                                                                                               \
    T a[N], b[N];                                                                                    \
    for (int i = 0; i < N; i++) a[i] = (T)1 + (T)(E), b[i] = -((T)1 + (T)2 * (T)(E));                \
    const char *const hows[3] = {"eval", "llvm", "c"};                                               \
    kiln_program *p = build_fma(DT);                                                                 \
    for (int h = 0; h < 3; h++) {                                                                    \
      T got[NOUT][N];                                                                                \
      void *out[NOUT];                                                                               \
      for (int k = 0; k < NOUT; k++) out[k] = got[k];                                                \
      run(p, hows[h], a, b, out);                                                                    \
      for (int i = 0; i < N; i++) {                                                                  \
        cr_expect_eq(got[0][i], (T)(E) * (T)(E), "%s fma[%d]: %a", hows[h], i, (double)got[0][i]);  \
        cr_expect_eq(got[1][i], (T)0, "%s mul+add[%d]: %a", hows[h], i, (double)got[1][i]);          \
      }                                                                                              \
    }                                                                                                \
  } while (0)

Test(loop_semantics, f32_fma_rounds_once) { CHECK_FMA(float, KILN_DT_F32, 0x1p-12); }
Test(loop_semantics, f64_fma_rounds_once) { CHECK_FMA(double, KILN_DT_F64, 0x1p-27); }

/* XOR (integer only, bitwise) with the u64 arithmetic the Dropout mask
 * hash is made of (passes/lower_dropout.c): MUL wrapping mod 2^64 and DIV
 * by a power of two as a logical shift.  Outputs: a ^ b, a ^ K (K a
 * 64-bit constant narrowed to T), a ^ (a / 8), (a * b) ^ a (wrapping), a.
 * The expectation is C's own ^ on T (computed here in uint64_t where C's
 * signed multiply could overflow). */
static kiln_program *build_xor(kiln_dtype t, int64_t k) {
  kiln_buf *a, *b, *o[NOUT];
  kiln_program *p = ab_program(t, &a, &b, o);
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_xor", NULL);
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, N, (kiln_sched){0}));
  kiln_lx *x = kiln_lx_load(&B, a, i), *y = kiln_lx_load(&B, b, i);
  kiln_lx *K = kiln_lx_const_i(&B, k), *eight = kiln_lx_const_i(&B, 8);
  K->dtype = eight->dtype = t;
  kiln_lb_store(&B, o[0], i, kiln_lx_bin(&B, KILN_BIN_XOR, x, y));
  kiln_lb_store(&B, o[1], i, kiln_lx_bin(&B, KILN_BIN_XOR, x, K));
  kiln_lb_store(&B, o[2], i, kiln_lx_bin(&B, KILN_BIN_XOR, x, kiln_lx_bin(&B, KILN_BIN_DIV, x, eight)));
  kiln_lb_store(&B, o[3], i, kiln_lx_bin(&B, KILN_BIN_XOR, kiln_lx_bin(&B, KILN_BIN_MUL, x, y), x));
  kiln_lb_store(&B, o[4], i, x);
  kiln_lb_end(&B);
  return p;
}

#define CHECK_XOR(T, DT)                                                                                 \
  do {                                                                                                   \
    const uint64_t K64 = 0x9E3779B97F4A7C15ull;                                                          \
    const T a[N] = {0, 1, (T)-1, (T)0x5a5a5a5a5a5a5a5aull, (T)0x8000000000000000ull, 7,                  \
                    (T)12345678901234567ull, (T)0xBF58476D1CE4E5B9ull};                                  \
    const T b[N] = {0, (T)-1, (T)-1, (T)0xa5a5a5a5a5a5a5a5ull, 3, (T)0x94D049BB133111EBull, 2, (T)K64};  \
    const char *const hows[3] = {"eval", "llvm", "c"};                                                   \
    kiln_program *p = build_xor(DT, (int64_t)(T)K64);                                                    \
    for (int h = 0; h < 3; h++) {                                                                        \
      T got[NOUT][N];                                                                                    \
      void *out[NOUT];                                                                                   \
      for (int k = 0; k < NOUT; k++) out[k] = got[k];                                                    \
      run(p, hows[h], a, b, out);                                                                        \
      for (int i = 0; i < N; i++) {                                                                      \
        T w[4] = {(T)(a[i] ^ b[i]), (T)(a[i] ^ (T)K64), (T)(a[i] ^ (T)(a[i] / 8)),                       \
                  (T)((T)((uint64_t)a[i] * (uint64_t)b[i]) ^ a[i])};                                     \
        for (int k = 0; k < 4; k++)                                                                      \
          cr_expect_eq(got[k][i], w[k], "%s out %d [%d]: %llx, expected %llx", hows[h], k, i,            \
                       (unsigned long long)got[k][i], (unsigned long long)w[k]);                         \
      }                                                                                                  \
    }                                                                                                    \
  } while (0)

Test(loop_semantics, u64_xor_mul_shift) { CHECK_XOR(uint64_t, KILN_DT_U64); }
Test(loop_semantics, i32_xor) { CHECK_XOR(int32_t, KILN_DT_I32); }
Test(loop_semantics, i8_xor) { CHECK_XOR(int8_t, KILN_DT_I8); }

/* KILN_UN_BITCAST: the same bits as the other type of the size (f32 <->
 * i32, f64 <-> i64), in every backend.  Inputs a (float type F) and b
 * (integer type I); outputs: bits(a), float of b's bits, the round trips
 * float(bits(a)) and bits(float(b)), and a copied.  Expectations from
 * memcpy.  The values: 1, -0, inf, a quiet NaN with a payload, the least
 * subnormal, -3.5, the largest finite, the least normal. */
static kiln_program *build_bitcast(kiln_dtype ft, kiln_dtype it) {
  kiln_program *p = kiln_arena_alloc(&g->arena, sizeof *p);
  p->arena = &g->arena;
  p->graph = g;
  kiln_value v = {.rank = 1, .dims = {N}, .id = -1};
  const kiln_dtype types[2 + NOUT] = {ft, it, it, ft, ft, it, ft};
  const char *names[2 + NOUT] = {"a", "b", "bits_a", "float_b", "round_a", "round_b", "copy_a"};
  kiln_buf *bf[2 + NOUT];
  for (int k = 0; k < 2 + NOUT; k++) {
    v.dtype = types[k];
    v.name = names[k];
    bf[k] = kiln_program_add_buf(p, &v, k < 2 ? KILN_BUF_INPUT : KILN_BUF_OUTPUT);
  }
  kiln_lb B = {.p = p};
  kiln_lb_kernel(&B, "k0_bitcast", NULL);
  kiln_lx *i = kiln_lx_index(&B, kiln_lb_for(&B, N, (kiln_sched){0}));
  kiln_lx *x = kiln_lx_load(&B, bf[0], i), *y = kiln_lx_load(&B, bf[1], i);
  kiln_lb_store(&B, bf[2], i, kiln_lx_un(&B, KILN_UN_BITCAST, x));
  kiln_lb_store(&B, bf[3], i, kiln_lx_un(&B, KILN_UN_BITCAST, y));
  kiln_lb_store(&B, bf[4], i, kiln_lx_un(&B, KILN_UN_BITCAST, kiln_lx_un(&B, KILN_UN_BITCAST, x)));
  kiln_lb_store(&B, bf[5], i, kiln_lx_un(&B, KILN_UN_BITCAST, kiln_lx_un(&B, KILN_UN_BITCAST, y)));
  kiln_lb_store(&B, bf[6], i, x);
  kiln_lb_end(&B);
  return p;
}

#define CHECK_BITCAST(F, I, FT, IT, BITS)                                                                  \
  do {                                                                                                     \
    F a[N];                                                                                                \
    I b[N];                                                                                                \
    for (int k = 0; k < N; k++) memcpy(&a[k], &BITS[k], sizeof(F)), b[k] = (I)BITS[(k + 3) % N];           \
    const char *const hows[3] = {"eval", "llvm", "c"};                                                     \
    kiln_program *p = build_bitcast(FT, IT);                                                               \
    for (int h = 0; h < 3; h++) {                                                                          \
      I bits_a[N], round_b[N];                                                                             \
      F float_b[N], round_a[N], copy_a[N];                                                                 \
      void *out[NOUT] = {bits_a, float_b, round_a, round_b, copy_a};                                       \
      run(p, hows[h], a, b, out);                                                                          \
      for (int i = 0; i < N; i++) {                                                                        \
        I wa, gb, ra;                                                                                      \
        memcpy(&wa, &a[i], sizeof wa);                                                                     \
        memcpy(&gb, &float_b[i], sizeof gb);                                                               \
        memcpy(&ra, &round_a[i], sizeof ra);                                                               \
        cr_expect_eq(bits_a[i], wa, "%s bits(a)[%d]: %llx, expected %llx", hows[h], i,                     \
                     (unsigned long long)bits_a[i], (unsigned long long)wa);                               \
        cr_expect_eq(gb, b[i], "%s float(b)[%d] has bits %llx, expected %llx", hows[h], i,                 \
                     (unsigned long long)gb, (unsigned long long)b[i]);                                    \
        cr_expect_eq(ra, wa, "%s round trip of a[%d]: bits %llx", hows[h], i, (unsigned long long)ra);     \
        cr_expect_eq(round_b[i], b[i], "%s round trip of b[%d]: %llx", hows[h], i,                         \
                     (unsigned long long)round_b[i]);                                                      \
      }                                                                                                    \
    }                                                                                                      \
  } while (0)

Test(loop_semantics, f32_i32_bitcast) {
  static const uint32_t bits[N] = {0x3f800000u, 0x80000000u, 0x7f800000u, 0x7fc01234u,
                                   0x00000001u, 0xc0600000u, 0x7f7fffffu, 0x00800000u};
  CHECK_BITCAST(float, int32_t, KILN_DT_F32, KILN_DT_I32, bits);
}

Test(loop_semantics, f64_i64_bitcast) {
  static const uint64_t bits[N] = {0x3ff0000000000000ull, 0x8000000000000000ull, 0x7ff0000000000000ull,
                                   0x7ff8000000001234ull, 0x0000000000000001ull, 0xc00c000000000000ull,
                                   0x7fefffffffffffffull, 0x0010000000000000ull};
  CHECK_BITCAST(double, int64_t, KILN_DT_F64, KILN_DT_I64, bits);
}
