/* kiln.DropoutMask: the training-mode Dropout's mask, drawn from a
 * counter-based hash so that it is deterministic, needs no generator
 * state (a kernel computes any element from its coordinates alone: any
 * thread, any order), and is the same bits in the LLVM JIT, the loop-IR
 * interpreter and the emitted C, which all compute this one loop IR.
 *
 * The hash, in unsigned 64-bit arithmetic (wrapping), with
 *   GAMMA  = 0x9E3779B97F4A7C15
 *   mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
 *            z ^= z >> 27; z *= 0x94D049BB133111EB; return z ^ (z >> 31)
 * (splitmix64's output function):
 *   key    = mix(seed + GAMMA * (stream + 1))    at compile time: seed is the
 *                                                Dropout's ONNX seed (0 when
 *                                                absent), stream its ordinal
 *                                                among the graph's Dropouts
 *   skey   = mix(key + GAMMA * step)             once per run: step is the
 *                                                training step's f32 `step`
 *                                                input converted to an integer
 *   r[i]   = mix(skey + GAMMA * (i + 1)) >> 40   per element: i is the flat
 *                                                row-major index; r in [0, 2^24)
 *   mask[i] = r[i] >= ceil(ratio * 2^24) ? (float)(1 / (1 - ratio)) : 0
 * i.e. element i is kept when u = r[i] / 2^24, uniform in [0, 1), is >=
 * ratio (ratio as float32, computed in double: both sides exact), so
 * P(keep) = 1 - ratio up to 2^-24.  tests/passes/test_train_dropout.py
 * recomputes it in Python (the independent reference).
 *
 * The loop IR has no shifts: x >> k is the u64 division x / 2^k (exact,
 * and every printer's compiler turns it into a shift); ^ is KILN_BIN_XOR. */
#include <math.h>

#include "lower.h"

#define B (&L->b)

static const uint64_t GAMMA = 0x9E3779B97F4A7C15u;

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static kiln_lx *u64c(kiln_lctx *L, uint64_t v) {
  kiln_lx *e = kiln_lx_const_i(B, (int64_t)v);
  e->dtype = KILN_DT_U64;
  return e;
}

static kiln_lx *bin(kiln_lctx *L, kiln_lx_op op, kiln_lx *a, kiln_lx *b) { return kiln_lx_bin(B, op, a, b); }

/* z ^ (z >> k) for the local z. */
static kiln_lx *xorshift(kiln_lctx *L, int z, int k) {
  return bin(L, KILN_BIN_XOR, kiln_lx_local(B, z), bin(L, KILN_BIN_DIV, kiln_lx_local(B, z), u64c(L, (uint64_t)1 << k)));
}

/* mix(z) as loop IR: each stage a local, so z is computed once. */
static kiln_lx *mix_lx(kiln_lctx *L, kiln_lx *z) {
  int a = kiln_lb_decl(B, KILN_DT_U64, z);
  int b = kiln_lb_decl(B, KILN_DT_U64, bin(L, KILN_BIN_MUL, xorshift(L, a, 30), u64c(L, 0xBF58476D1CE4E5B9u)));
  int c = kiln_lb_decl(B, KILN_DT_U64, bin(L, KILN_BIN_MUL, xorshift(L, b, 27), u64c(L, 0x94D049BB133111EBu)));
  return xorshift(L, c, 31);
}

/* Elements first .. first + len - 1 of the mask: skey from the step (a
 * few operations per block), then one loop over the block. */
static void mask_block(kiln_lctx *L, const kiln_node *n, kiln_lx *first, int64_t len) {
  const kiln_attrs_dropout_mask *a = n->attrs;
  double ratio = (double)a->ratio;
  uint64_t threshold = (uint64_t)ceil(ratio * 0x1p24);
  kiln_dtype ct = kiln_lower_ctype(n->out[0]->dtype);
  uint64_t key = mix((uint64_t)a->seed + GAMMA * ((uint64_t)a->stream + 1));
  kiln_lx *step = kiln_lx_cast(B, KILN_DT_U64, kiln_lx_load(B, kiln_lower_buf(L, n->in[1]), kiln_lx_const_i(B, 0)));
  int skey = kiln_lb_decl(B, KILN_DT_U64, mix_lx(L, bin(L, KILN_BIN_ADD, u64c(L, key), bin(L, KILN_BIN_MUL, u64c(L, GAMMA), step))));
  kiln_lx *i = kiln_lx_iadd(B, first, kiln_lx_index(B, kiln_lb_for(B, len, (kiln_sched){.parallel = 1})));
  kiln_lx *ctr = bin(L, KILN_BIN_ADD, kiln_lx_cast(B, KILN_DT_U64, i), u64c(L, 1));
  kiln_lx *r = bin(L, KILN_BIN_DIV, mix_lx(L, bin(L, KILN_BIN_ADD, kiln_lx_local(B, skey), bin(L, KILN_BIN_MUL, u64c(L, GAMMA), ctr))),
                   u64c(L, (uint64_t)1 << 40));
  kiln_lx *keep = bin(L, KILN_BIN_LE, u64c(L, threshold), r);
  kiln_lx *v = kiln_lx_select(B, keep, kiln_lx_const_f(B, ct, 1.0 / (1.0 - ratio)), kiln_lx_const_f(B, ct, 0));
  kiln_lower_store_flat(L, n, 0, i, v);
  kiln_lb_end(B);
}

/* Blocks of BLOCK elements under a parallel loop (no local at the
 * kernel's top level, so the thread pool may take it:
 * schedule_threads.c), then the remainder under a loop of one. */
enum { BLOCK = 1024 };

int kiln_lower_dropout_mask(kiln_lctx *L, const kiln_node *n) {
  int64_t numel = kiln_value_numel(n->out[0], 1), nblocks = numel / BLOCK, rest = numel % BLOCK;
  kiln_lower_begin(L, n);
  if (nblocks > 0) {
    kiln_lx *blk = kiln_lx_index(B, kiln_lb_for(B, nblocks, (kiln_sched){.parallel = 1}));
    mask_block(L, n, kiln_lx_imul(B, blk, BLOCK), BLOCK);
    kiln_lb_end(B);
  }
  if (rest > 0) {
    kiln_lb_for(B, 1, (kiln_sched){0});
    mask_block(L, n, kiln_lx_const_i(B, nblocks * BLOCK), rest);
    kiln_lb_end(B);
  }
  return 0;
}
