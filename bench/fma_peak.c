/* Peak single-precision FMA throughput of this host, the ceiling bench.py
 * reports kiln's convolution GFLOP/s against.
 *
 *   cc -std=c11 -O2 -march=native -pthread bench/fma_peak.c -o fma_peak
 *   ./fma_peak [THREADS] [SECONDS]   ->  "fma_peak isa=AVX-512 ... threads=1 gflops=123.4"
 *
 * Each thread runs NCHAINS independent chains acc[i] = acc[i] * m + a on
 * the widest vectors the compiler targets (-march=native: 512-bit with
 * AVX-512F, 256-bit with AVX2+FMA, else 128-bit SSE with separate mul and
 * add).  Twelve chains cover the FMA latency x ports of current x86 cores
 * (4 cycles x 2 ports = 8 in flight) with room to spare, and fit in the 16
 * vector registers AVX2 has.  m and a keep the values bounded (m < 1), and
 * the result is printed so the compiler cannot drop the loop.  FLOPs count
 * 2 per lane per FMA.  Threads run the same loop at once; the figure is
 * their sum, and the best of TRIALS trials of SECONDS/TRIALS each is
 * printed: other load on the machine only ever lowers a trial.  On an SMT
 * machine, two threads on one physical core give about one core's peak. */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define ISA "AVX-512"
#define SET1(x) _mm512_set1_ps(x)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
static float first(vec v) { return _mm512_cvtss_f32(v); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define ISA "AVX2"
#define SET1(x) _mm256_set1_ps(x)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float first(vec v) { return _mm256_cvtss_f32(v); }
#else
typedef __m128 vec;
#define LANES 4
#define ISA "SSE (no FMA)"
#define SET1(x) _mm_set1_ps(x)
#define FMA(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
static float first(vec v) { return _mm_cvtss_f32(v); }
#endif

enum { NCHAINS = 12, INNER = 1 << 14, TRIALS = 5 };

typedef struct job {
  double seconds; /* run at least this long */
  double flops;   /* out */
  float sink;     /* out: keeps the chains alive */
} job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Twelve accumulators as named variables, not an array: at -O2 the
 * compiler keeps them in registers only when no loop indexes them. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) vec acc##i = SET1(0.001f * (float)(i));
#define STEP(i) acc##i = FMA(acc##i, m, a);
#define SUM(i) s += first(acc##i);

static void *run(void *arg) {
  job *j = arg;
  CHAINS(DECL)
  const vec m = SET1(0.999999f), a = SET1(1e-7f);
  long rounds = 0;
  double t0 = now();
  do {
    for (int k = 0; k < INNER; k++) { CHAINS(STEP) }
    rounds++;
  } while (now() - t0 < j->seconds);
  double t = now() - t0;
  float s = 0;
  CHAINS(SUM)
  j->sink = s;
  j->flops = 2.0 * LANES * NCHAINS * (double)INNER * (double)rounds / t;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  if (threads < 1 || threads > 256 || !(seconds > 0 && seconds < 60)) {
    fprintf(stderr, "usage: fma_peak [THREADS 1..256] [SECONDS]\n");
    return 2;
  }
  pthread_t tid[256];
  job jobs[256];
  double best = 0, sink = 0;
  for (int trial = 0; trial < TRIALS; trial++) {
    for (int t = 0; t < threads; t++) {
      jobs[t] = (job){.seconds = seconds / TRIALS};
      if (pthread_create(&tid[t], NULL, run, &jobs[t])) { perror("pthread_create"); return 1; }
    }
    double total = 0;
    for (int t = 0; t < threads; t++) {
      pthread_join(tid[t], NULL);
      total += jobs[t].flops;
      sink += jobs[t].sink;
    }
    if (total > best) best = total;
  }
  printf("fma_peak isa=%s lanes=%d threads=%d gflops=%.1f (sink %g)\n", ISA, LANES, threads, best / 1e9, sink);
  return 0;
}
