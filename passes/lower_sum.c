/* Accurate long sums, shared by every lowering that adds up many values
 * (ReduceSum/ReduceMean, GlobalAveragePool, AveragePool, Softmax and
 * LogSoftmax denominators, BatchNormalization and InstanceNormalization
 * statistics).
 *
 * Adding n float32 values left to right has an error bound that grows with
 * n (about n * 2^-24 relative to the sum of magnitudes): a mean of 19,200
 * values near 1000 came out 2.2e-4 off, ten times ONNX Runtime's error.
 * So a long float32 sum is blocked, in the loop IR itself (printers stay
 * op-agnostic):
 *
 *   total : f64 = 0                      one per sum
 *   ... outer loops of the reduction ...
 *     for b in [0, extent / 128)          the innermost (row) loop, split
 *       part : f32 = 0
 *       for j in [0, 128): part += term(b*128 + j)
 *       total += (f64) part
 *     part : f32 = 0                      the row's tail, if any
 *     for j in [0, extent % 128): part += term(...)
 *     total += (f64) part
 *   result = (f32) (total / divisor)     the division in f64 too
 *
 * Each block's float32 sum errs by at most ~128 * 2^-24 of its magnitude
 * and the float64 total adds only ~count/128 * 2^-53, so the result is
 * within a few float32 ulps of the exact value for any length kiln can
 * address.  The inner loop stays a plain float32 accumulation, and the
 * float64 work is one add per 128 terms.  Rows shorter than 8 add each
 * term to the float64 total directly.
 *
 * Short sums (at most KILN_SUM_SHORT terms: ResNet's 7x7 global pool, 3x3
 * pooling windows), integer sums (exact, or wrapping) and float64 sums
 * keep the plain single-accumulator loop, unchanged. */
#include "lower.h"

#define LB (&L->b)

enum {
  KILN_SUM_SHORT = 256, /* sums of at most this many terms stay plain */
  KILN_SUM_BLOCK = 128, /* float32 block length of a long sum */
  KILN_SUM_ROW_MIN = 8  /* shorter rows go straight to the f64 total */
};

void kiln_sum_begin(kiln_lctx *L, kiln_sum *s, kiln_dtype ct, int64_t count) {
  s->ct = ct;
  s->wide = ct == KILN_DT_F32 && count > KILN_SUM_SHORT;
  s->wt = s->wide ? KILN_DT_F64 : ct;
  s->total = kiln_lb_decl(LB, s->wt, kiln_lx_const_f(LB, s->wt, 0));
}

/* acc += term(first + j) for j in [0, n), under the term's condition. */
static void add_terms(kiln_lctx *L, int acc, kiln_dtype at, kiln_lx *first, int64_t n, kiln_sum_term term,
                      void *ctx) {
  kiln_lx *j = kiln_lx_index(LB, kiln_lb_for(LB, n, (kiln_sched){0}));
  kiln_lx *cond = NULL;
  kiln_lx *t = term(L, ctx, first ? kiln_lx_iadd(LB, first, j) : j, &cond);
  if (cond) kiln_lb_if(LB, cond);
  kiln_lb_assign(LB, acc, kiln_lx_bin(LB, KILN_BIN_ADD, kiln_lx_local(LB, acc), kiln_lx_cast(LB, at, t)));
  if (cond) kiln_lb_end(LB);
  kiln_lb_end(LB);
}

/* One float32 block of n terms starting at `first`, folded into the total. */
static void add_block(kiln_lctx *L, kiln_sum *s, kiln_lx *first, int64_t n, kiln_sum_term term, void *ctx) {
  int part = kiln_lb_decl(LB, s->ct, kiln_lx_const_f(LB, s->ct, 0));
  add_terms(L, part, s->ct, first, n, term, ctx);
  kiln_lb_assign(LB, s->total,
                 kiln_lx_bin(LB, KILN_BIN_ADD, kiln_lx_local(LB, s->total), kiln_lx_cast(LB, s->wt, kiln_lx_local(LB, part))));
}

void kiln_sum_row(kiln_lctx *L, kiln_sum *s, int64_t extent, kiln_sum_term term, void *ctx) {
  if (extent <= 0) return;
  if (!s->wide || extent < KILN_SUM_ROW_MIN) {
    add_terms(L, s->total, s->wt, NULL, extent, term, ctx);
    return;
  }
  int64_t nb = extent / KILN_SUM_BLOCK, tail = extent % KILN_SUM_BLOCK;
  if (nb > 0) {
    kiln_lx *b = kiln_lx_index(LB, kiln_lb_for(LB, nb, (kiln_sched){0}));
    add_block(L, s, kiln_lx_imul(LB, b, KILN_SUM_BLOCK), KILN_SUM_BLOCK, term, ctx);
    kiln_lb_end(LB);
  }
  if (tail > 0) add_block(L, s, nb ? kiln_lx_const_i(LB, nb * KILN_SUM_BLOCK) : NULL, tail, term, ctx);
}

kiln_lx *kiln_sum_result(kiln_lctx *L, const kiln_sum *s, kiln_lx *divisor) {
  kiln_lx *v = kiln_lx_local(LB, s->total);
  if (divisor) v = kiln_lx_bin(LB, KILN_BIN_DIV, v, kiln_lx_cast(LB, s->wt, divisor));
  return kiln_lx_cast(LB, s->ct, v);
}
