/* Accurate long sums, the lowering's side: a thin builder over the loop
 * IR's ADD reduction (ir/loop.h, "Reductions") for every lowering that
 * adds up many values (ReduceSum/ReduceMean, GlobalAveragePool,
 * AveragePool, Softmax and LogSoftmax denominators, BatchNormalization and
 * InstanceNormalization statistics).  A float32 sum of more than 256 terms
 * is declared f64 (kiln_sum_dtype, expand_reduce.c), which the CPU
 * expansion adds in float32 blocks of 128 into a float64 total: within a
 * few float32 ulps of the exact sum for any length (expand_reduce.c says
 * why); the result, divided in that precision, is rounded to ct once. */
#include "lower.h"

int kiln_sum_begin(kiln_lctx *L, kiln_dtype ct, int64_t count) {
  return kiln_lb_reduce_begin(&L->b, KILN_RED_ADD, kiln_sum_dtype(ct, count), NULL, (kiln_sched){0});
}

/* interleaved partial sums (expand_reduce.c's lanes: vector accumulators
 * instead of one latency-bound serial chain; f64 lanes for the long f32
 * sums, as accurate as the blocked form) */
enum { GAP_LANES = 8 };

int kiln_gap_sum_begin(kiln_lctx *L, kiln_dtype ct, int64_t S) {
  kiln_sched lanes = {.vector = S >= 2 * GAP_LANES ? GAP_LANES : 0};
  return kiln_lb_reduce_begin(&L->b, KILN_RED_ADD, kiln_sum_dtype(ct, S), NULL, lanes);
}

kiln_lx *kiln_sum_result(kiln_lctx *L, int sum, kiln_dtype ct, kiln_lx *divisor) {
  kiln_lx *v = kiln_lx_local(&L->b, sum);
  if (divisor) v = kiln_lx_bin(&L->b, KILN_BIN_DIV, v, kiln_lx_cast(&L->b, v->dtype, divisor));
  return kiln_lx_cast(&L->b, ct, v);
}
