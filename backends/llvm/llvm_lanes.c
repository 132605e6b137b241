/* Register tiles printed as vectors.
 *
 * A kernel with explicit vectors (kiln_kernel.explicit_vectors: the
 * register-blocked, im2col, transposed-GEMM and Winograd convolutions;
 * or reused_vectors: the banded Winograd kernel, which stays in the heavy
 * tier, where default<O3> over ResNet-50's heavy module went from
 * 0.46-0.69 s to 0.26 s) holds its register tile as scalar locals, one
 * per lane: W consecutive statements do the same thing to W consecutive
 * locals and W consecutive elements of a buffer,
 *
 *   t71 : f32 = t7            t455 : f32 = %w[(base + 0)]
 *   t72 : f32 = t8            t456 : f32 = %w[(base + 1)] ...
 *   t71 = fma(t519, t455, t71)  ...  %y[(o + 5)] = t76 ...
 *
 * SLP used to find those vectors again, and that was 40% of the tiled
 * tier's optimisation time (ResNet-50, opt-19 -time-passes), on IR 16
 * times the size of the vector code.  Here the printer says it directly:
 * W = the target's f32 lanes (16 with AVX-512, 8 with AVX2).
 *
 *  - a group: W consecutive DECLs of f32 locals v, v+1, .., v+W-1 whose
 *    values are lanes of one vector (below) get one <W x float> alloca;
 *    each local is its lane (a GEP into it), so a statement that is not
 *    part of a run still reads and writes its local as a scalar, and SROA
 *    turns the allocas into vector registers;
 *  - a run: W consecutive DECLs or ASSIGNs of a group's locals in lane
 *    order, or STOREs to W consecutive elements of one f32 buffer, whose
 *    values are lane-wise equal: each node of lane j's expression is lane
 *    0's with every group local and buffer element moved on by j (a
 *    vector: group locals and contiguous loads), loads moved on by 2j
 *    (every other element: one load of the 2W elements around them,
 *    masked to the 2W-1 they span unless the block reads the one more
 *    anyway, and a shuffle; im2col's stride-2 packs, stride-2 pool and
 *    depthwise rows) or the same in every lane (a scalar, splat).  A run
 *    prints as one vector statement.
 *
 * Lane j of a run sees what the scalar statements would have seen: its
 * own lane of a group (which only its own statement writes), locals not
 * written by the run, and for STORE runs no element another lane of the
 * run stores (a load of the stored buffer, or one at the same address,
 * must read exactly the stored lane).  Vector and scalar arithmetic are
 * the same IEEE operations lane by lane (fma stays fused, min/max the
 * same compare and select; a max pool's isnan tests and their ors are
 * vectors of i1 inside one expression), so results are bit for bit those
 * of the scalar code.  Anything else (casts but float16 rounding, libm calls,
 * integer lanes) prints as scalars, as before, for SLP to find. */
#include "llvm_internal.h"

#include <stdio.h>
#include <string.h>

#include "../../ir/loop_walk.h"

enum { NO, SAME, LANES }; /* how W lane expressions relate */

static int same_expr(const kiln_lx *a, const kiln_lx *b) {
  if (a == b) return 1;
  if (!a || !b || a->kind != b->kind || a->dtype != b->dtype || a->op != b->op || a->var != b->var ||
      a->buf != b->buf || a->i != b->i || memcmp(&a->f, &b->f, sizeof a->f))
    return 0;
  return same_expr(a->a, b->a) && same_expr(a->b, b->b) && same_expr(a->c, b->c);
}

/* Index i as x + k, k an integer constant: x NULL when i is the
 * constant, x = i and k = 0 when it adds none. */
static void split_add(const kiln_lx *i, const kiln_lx **x, int64_t *k) {
  if (i->kind == KILN_LX_CONST && !kiln_dtype_is_float(i->dtype)) {
    *x = NULL, *k = i->i;
  } else if (i->kind == KILN_LX_BIN && i->op == KILN_BIN_ADD && i->b->kind == KILN_LX_CONST &&
             !kiln_dtype_is_float(i->b->dtype)) {
    *x = i->a, *k = i->b->i;
  } else {
    *x = i, *k = 0;
  }
}

/* Whether index ij is index i0 + j. */
static int index_step(const kiln_lx *i0, const kiln_lx *ij, int64_t j) {
  const kiln_lx *x0, *xj;
  int64_t k0, kj;
  if (ij->kind == KILN_LX_BIN && ij->op == KILN_BIN_ADD && ij->b->kind == KILN_LX_CONST && ij->b->i == j &&
      same_expr(ij->a, i0))
    return 1;
  split_add(i0, &x0, &k0);
  split_add(ij, &xj, &kj);
  return kj - k0 == j && (x0 ? xj && same_expr(x0, xj) : !xj);
}

/* The element step between the W lane loads e[] of one buffer: 1
 * (consecutive) or 2 (every other: a stride-2 convolution's taps), else 0. */
static int load_step(const kiln_lx *const *e, int w) {
  for (int step = 1; step <= 2; step++) {
    int j = 1;
    while (j < w && e[j]->buf == e[0]->buf && index_step(e[0]->a, e[j]->a, (int64_t)step * j)) j++;
    if (j == w) return step;
  }
  return 0;
}

typedef struct run {
  int w;
  int lo, hi;            /* locals the run writes (DECL/ASSIGN) */
  const kiln_ls *store;  /* the STORE of lane 0, for STORE runs */
} run;

/* Whether e reads a local in [lo, hi). */
static int reads_local(const kiln_lx *e, int lo, int hi) {
  if (!e) return 0;
  if (e->kind == KILN_LX_LOCAL && e->var >= lo && e->var < hi) return 1;
  return reads_local(e->a, lo, hi) || reads_local(e->b, lo, hi) || reads_local(e->c, lo, hi);
}

/* Whether buffer b is where STORE run r stores: the same buffer, or one
 * the function reads from the same slot (kiln_llvm_load_slot: a buffer
 * planned at the same address).  Other buffers a kernel uses never share
 * elements with it (views of one root are disjoint slices). */
static int stored_by(const cg *c, const run *r, const kiln_buf *b) {
  const kiln_buf *sb = r->store->buf;
  return b == sb || kiln_llvm_load_slot(c, c->used, b->id) == kiln_llvm_load_slot(c, c->used, sb->id);
}

/* Whether e loads from where STORE run r stores. */
static int loads_stored(const cg *c, const run *r, const kiln_lx *e) {
  if (!e) return 0;
  if (e->kind == KILN_LX_LOAD && stored_by(c, r, e->buf)) return 1;
  return loads_stored(c, r, e->a) || loads_stored(c, r, e->b) || loads_stored(c, r, e->c);
}

static int lane_op_ok(const kiln_lx *e) {
  if (e->kind == KILN_LX_FMA) return e->dtype == KILN_DT_F32;
  if (e->kind == KILN_LX_SELECT) return e->dtype == KILN_DT_F32;
  if (e->kind == KILN_LX_UN) {
    if (e->op == KILN_UN_ISNAN) return e->a->dtype == KILN_DT_F32; /* a max pool's NaN test */
    if (e->dtype != KILN_DT_F32) return 0;
    switch (e->op) {
    case KILN_UN_NEG: case KILN_UN_ABS: case KILN_UN_SQRT: case KILN_UN_FLOOR: case KILN_UN_CEIL:
    case KILN_UN_ROUND_EVEN: return 1;
    default: return 0;
    }
  }
  if (e->kind == KILN_LX_BIN) {
    if (e->a->dtype == KILN_DT_BOOL) return (e->op == KILN_BIN_OR || e->op == KILN_BIN_AND) && e->b->dtype == KILN_DT_BOOL;
    if (e->a->dtype != KILN_DT_F32) return 0;
    switch (e->op) {
    case KILN_BIN_ADD: case KILN_BIN_SUB: case KILN_BIN_MUL: case KILN_BIN_DIV: case KILN_BIN_MIN:
    case KILN_BIN_MAX: return e->dtype == KILN_DT_F32;
    case KILN_BIN_LT: case KILN_BIN_LE: case KILN_BIN_EQ: case KILN_BIN_NE: return e->dtype == KILN_DT_BOOL;
    default: return 0;
    }
  }
  return 0;
}

/* How the W lane expressions e[] relate (SAME, LANES or NO). */
static int classify(const cg *c, const run *r, const kiln_lx *const *e) {
  int w = r->w, j;
  for (j = 1; j < w && same_expr(e[0], e[j]); j++) {}
  if (j == w) /* no lane may see another's write: lane 0's store, say, read by every lane */
    return reads_local(e[0], r->lo, r->hi) || (r->store && loads_stored(c, r, e[0])) ? NO : SAME;
  for (j = 1; j < w; j++)
    if (e[j]->kind != e[0]->kind || e[j]->dtype != e[0]->dtype || e[j]->op != e[0]->op) return NO;
  const kiln_lx *ch[KILN_LLVM_MAX_LANES];
  switch (e[0]->kind) {
  case KILN_LX_LOCAL:
    if (e[0]->dtype != KILN_DT_F32 || !c->group[e[0]->var] || c->anchor[e[0]->var] != w) return NO;
    for (j = 1; j < w; j++)
      if (e[j]->var != e[0]->var + j) return NO;
    return LANES;
  case KILN_LX_LOAD:
    if (e[0]->buf->dtype != KILN_DT_F32 || !load_step(e, w)) return NO;
    /* a STORE run: each lane reads its own element of what it stores, if any */
    if (r->store && stored_by(c, r, e[0]->buf) && !same_expr(e[0]->a, r->store->index)) return NO;
    return LANES;
  case KILN_LX_CAST: /* f32(f16(x)), the rounding of float16 networks: natively only */
    if (!kiln_llvm_is_round_f16(c, e[0])) return NO;
    for (j = 0; j < w; j++) ch[j] = e[j]->a->a;
    for (j = 1; j < w; j++)
      if (!kiln_llvm_is_round_f16(c, e[j])) return NO;
    return classify(c, r, ch) == NO ? NO : LANES;
  case KILN_LX_UN: case KILN_LX_BIN: case KILN_LX_SELECT: case KILN_LX_FMA: {
    if (!lane_op_ok(e[0])) return NO;
    for (int k = 0; k < 3; k++) {
      const kiln_lx *k0 = k == 0 ? e[0]->a : k == 1 ? e[0]->b : e[0]->c;
      if (!k0) break;
      for (j = 0; j < w; j++) ch[j] = k == 0 ? e[j]->a : k == 1 ? e[j]->b : e[j]->c;
      if (classify(c, r, ch) == NO) return NO;
    }
    return LANES;
  }
  default: return NO;
  }
}

static LLVMValueRef splat(cg *c, LLVMValueRef v, int w) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), (unsigned)w);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx);
  LLVMValueRef one = LLVMBuildInsertElement(c->b, LLVMGetPoison(vt), v, LLVMConstInt(i32, 0, 0), "");
  return LLVMBuildShuffleVector(c->b, one, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(i32, (unsigned)w)), "");
}

static LLVMValueRef load_vector(cg *c, LLVMValueRef ptr, int w, unsigned align) {
  LLVMValueRef v = LLVMBuildLoad2(c->b, LLVMVectorType(LLVMFloatTypeInContext(c->ctx), (unsigned)w), ptr, "");
  if (align) LLVMSetAlignment(v, align);
  return v;
}

/* i as base + k, k the sum of the integer constants added along a
 * left-nested sum ((x + a) + b, as simplify-index writes indices); base
 * NULL when i is a constant. */
static const kiln_lx *split_deep(const kiln_lx *i, int64_t *k) {
  *k = 0;
  while (i->kind == KILN_LX_BIN && i->op == KILN_BIN_ADD && i->b->kind == KILN_LX_CONST &&
         !kiln_dtype_is_float(i->b->dtype)) {
    *k += i->b->i;
    i = i->a;
  }
  if (i->kind == KILN_LX_CONST && !kiln_dtype_is_float(i->dtype)) {
    *k += i->i;
    return NULL;
  }
  return i;
}

/* Whether e loads buf at base + k. */
static int expr_reads(const kiln_lx *e, const kiln_buf *buf, const kiln_lx *base, int64_t k) {
  if (!e) return 0;
  if (e->kind == KILN_LX_LOAD && e->buf == buf) {
    int64_t ek;
    const kiln_lx *eb = split_deep(e->a, &ek);
    if (ek == k && (eb ? base && same_expr(eb, base) : !base)) return 1;
  }
  return expr_reads(e->a, buf, base, k) || expr_reads(e->b, buf, base, k) || expr_reads(e->c, buf, base, k);
}

/* Whether a statement of block itself (not one inside its loops or IFs:
 * those run whenever the block does) loads buf at base + k: the printed
 * code reads that element in any case (a select's operands are all
 * evaluated, kiln_llvm_expr). */
static int block_reads(const kiln_ls *block, const kiln_buf *buf, const kiln_lx *base, int64_t k) {
  for (const kiln_ls *s = block; s; s = s->next)
    if (expr_reads(s->value, buf, base, k) || (s->kind == KILN_LS_STORE && expr_reads(s->index, buf, base, k)))
      return 1;
  return 0;
}

/* The W lanes loaded 2 elements apart from e0's index i (lane j at i + 2j)
 * out of the 2W elements from i - odd, loaded whole, or of the 2W-1 from i
 * as one masked load (the 2W-th may lie past the buffer), with the lanes
 * 2j + odd picked out (vpermt2ps on AVX-512, two loads and a shuffle where
 * SLP or the loop vectoriser would have gathered or gone scalar).  Whole
 * when the element before i (odd) or the one after the last lane is read
 * beside the run anyway (block_reads): a 3-wide stride-2 window's taps at
 * i, i + 1 and i + 2 then load the 2W from i (taps 0 and 1 alike, one load
 * for LLVM to merge) and the 2W from i + 1: four vector loads a row, as
 * the loop vectoriser's interleaved pairs, where masked loads took six. */
static LLVMValueRef load_every_other(cg *c, const kiln_lx *e0, int w) {
  LLVMTypeRef f32 = LLVMFloatTypeInContext(c->ctx), i32 = LLVMInt32TypeInContext(c->ctx), i1 = LLVMInt1TypeInContext(c->ctx);
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c->ctx), wide = LLVMVectorType(f32, (unsigned)(2 * w));
  int64_t k;
  const kiln_lx *base = split_deep(e0->a, &k);
  int odd = c->block && block_reads(c->block, e0->buf, base, k - 1);
  int whole = odd || (c->block && block_reads(c->block, e0->buf, base, k + 2 * (int64_t)w - 1));
  /* base + (k - odd), printed alike for every run that loads the same span, for CSE */
  LLVMValueRef kv = LLVMConstInt(i64, (unsigned long long)(k - odd), 1);
  LLVMValueRef ptr = kiln_llvm_buf_ptr(c, e0->buf, base ? LLVMBuildAdd(c->b, kiln_llvm_expr(c, base), kv, "") : kv);
  LLVMValueRef pick[KILN_LLVM_MAX_LANES], v;
  for (int j = 0; j < w; j++) pick[j] = LLVMConstInt(i32, (unsigned long long)(2 * j + odd), 0);
  if (whole) {
    v = LLVMBuildLoad2(c->b, wide, ptr, "");
    LLVMSetAlignment(v, 4);
  } else {
    LLVMValueRef mask[2 * KILN_LLVM_MAX_LANES];
    for (int j = 0; j < 2 * w; j++) mask[j] = LLVMConstInt(i1, j < 2 * w - 1, 0);
    LLVMTypeRef tys[2] = {wide, LLVMTypeOf(ptr)};
    LLVMValueRef args[4] = {ptr, LLVMConstInt(i32, 4, 0), LLVMConstVector(mask, (unsigned)(2 * w)), LLVMGetPoison(wide)};
    v = kiln_llvm_call_intrinsic(c, "llvm.masked.load", tys, 2, args, 4);
  }
  return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(wide), LLVMConstVector(pick, (unsigned)w), "");
}

/* The vector of lanes e[] (classify said SAME or LANES). */
static LLVMValueRef vexpr(cg *c, const run *r, const kiln_lx *const *e) {
  int w = r->w, j;
  for (j = 1; j < w && same_expr(e[0], e[j]); j++) {}
  if (j == w) return splat(c, kiln_llvm_expr(c, e[0]), w);
  const kiln_lx *ch[KILN_LLVM_MAX_LANES];
  LLVMValueRef v[3] = {NULL, NULL, NULL};
  switch (e[0]->kind) {
  case KILN_LX_CAST: /* kiln_llvm_is_round_f16 */
    for (j = 0; j < w; j++) ch[j] = e[j]->a->a;
    return kiln_llvm_round_f16_native(c, vexpr(c, r, ch));
  case KILN_LX_LOCAL: return load_vector(c, c->group[e[0]->var], w, 0);
  case KILN_LX_LOAD:
    if (load_step(e, w) == 2) return load_every_other(c, e[0], w);
    return load_vector(c, kiln_llvm_buf_ptr(c, e[0]->buf, kiln_llvm_expr(c, e[0]->a)), w, 4);
  default: break;
  }
  for (int k = 0; k < 3; k++) {
    if (!(k == 0 ? e[0]->a : k == 1 ? e[0]->b : e[0]->c)) break;
    for (j = 0; j < w; j++) ch[j] = k == 0 ? e[j]->a : k == 1 ? e[j]->b : e[j]->c;
    v[k] = vexpr(c, r, ch);
  }
  switch (e[0]->kind) {
  case KILN_LX_UN: return kiln_llvm_unary_op(c, e[0], v[0]);
  case KILN_LX_BIN: return kiln_llvm_binary_op(c, e[0], v[0], v[1]);
  case KILN_LX_SELECT: return LLVMBuildSelect(c->b, v[0], v[1], v[2], "");
  default: { /* FMA */
    LLVMTypeRef ty = LLVMTypeOf(v[0]);
    return kiln_llvm_call_intrinsic(c, "llvm.fma", &ty, 1, v, 3);
  }
  }
}

/* Whether n consecutive statements, a sequence that ends there, may be
 * a run or a group narrower than W: a width kiln_target_group_lanes gives
 * (half or a quarter of W, 4 lanes or more), the one rule the lowerings
 * write stride-2 rows too short for W lanes by (lower_conv_dw.c,
 * lower_pool_fast.c: MobileNetV2's 13- and 6-wide depthwise rows). */
static int narrow_width(const cg *c, int n) {
  return n > 0 && n < c->lanes && kiln_target_group_lanes(&c->prog->target, KILN_DT_F32, n) == n;
}

/* The run of DECLs/ASSIGNs (of one group) or STOREs starting at s: its
 * lane statements in st[], 0 when there is none.  Its width: the group's
 * (anchor[]), or for STOREs W, or the whole of a shorter sequence of
 * narrow_width. */
static int find_run(const cg *c, const kiln_ls *s, const kiln_ls **st, run *r, int decl_groups) {
  if (c->lanes < 2 || (s->kind != KILN_LS_DECL && s->kind != KILN_LS_ASSIGN && s->kind != KILN_LS_STORE)) return 0;
  int w = c->lanes;
  if (s->kind != KILN_LS_STORE) {
    if (!decl_groups && !c->group[s->var]) return 0;
    w = c->anchor[s->var];
    if (w < 2) return 0;
  }
  const kiln_ls *q = s;
  int n = 0;
  for (; n < w && q && q->kind == s->kind && (s->kind != KILN_LS_STORE || q->buf == s->buf); n++, q = q->next) st[n] = q;
  if (n < w && (s->kind != KILN_LS_STORE || !narrow_width(c, n))) return 0;
  w = n;
  *r = (run){.w = w, .lo = 0, .hi = 0, .store = NULL};
  if (s->kind == KILN_LS_STORE) {
    if (s->buf->dtype != KILN_DT_F32) return 0;
    for (int j = 1; j < w; j++)
      if (!index_step(s->index, st[j]->index, j)) return 0;
    r->store = s;
  } else {
    /* (an ASSIGN's dtype is its local's: its value's) */
    if (s->value->dtype != KILN_DT_F32) return 0;
    for (int j = 1; j < w; j++)
      if (st[j]->var != s->var + j || st[j]->value->dtype != KILN_DT_F32) return 0;
    r->lo = s->var, r->hi = s->var + w;
  }
  const kiln_lx *v[KILN_LLVM_MAX_LANES];
  for (int j = 0; j < w; j++) v[j] = st[j]->value;
  return classify(c, r, v) != NO;
}

/* Anchors: where groups start.  Zero-initialised accumulators are W
 * equal DECLs wherever a window starts, so the lanes of a group come from
 * how the locals are used: a window of W statements assigning v .. v+W-1,
 * or reading them as one operand, lane by lane, anchors a group at v.
 * Windows are taken greedily from the start of each such sequence, as
 * the lowering lays its tile rows out. */
static void anchor(cg *c, int var, int w) {
  if (c->anchor[var] < w) c->anchor[var] = (unsigned char)w;
}

static void operand_anchors(cg *c, const kiln_lx *const *e, int w) {
  int j;
  for (j = 1; j < w && e[j]->kind == e[0]->kind; j++) {}
  if (j < w) return;
  if (e[0]->kind == KILN_LX_LOCAL) {
    for (j = 1; j < w && e[j]->var == e[0]->var + j; j++) {}
    if (j == w) anchor(c, e[0]->var, w);
    return;
  }
  const kiln_lx *ch[KILN_LLVM_MAX_LANES];
  for (int k = 0; k < 3; k++) {
    if (!(k == 0 ? e[0]->a : k == 1 ? e[0]->b : e[0]->c)) return;
    for (j = 0; j < w; j++) {
      ch[j] = k == 0 ? e[j]->a : k == 1 ? e[j]->b : e[j]->c;
      if (!ch[j]) return;
    }
    operand_anchors(c, ch, w);
  }
}

/* Windows of W statements, or a whole sequence of narrow_width. */
static void anchor_block(cg *c, const kiln_ls *q) {
  int w = c->lanes;
  while (q) {
    const kiln_ls *st[KILN_LLVM_MAX_LANES], *r = q;
    int j = 0;
    for (; j < w && r && r->kind == q->kind &&
           (q->kind == KILN_LS_STORE ? r->buf == q->buf
                                     : (q->kind == KILN_LS_DECL || q->kind == KILN_LS_ASSIGN) && r->var == q->var + j);
         j++, r = r->next)
      st[j] = r;
    if (j < w && !narrow_width(c, j)) {
      q = q->next;
      continue;
    }
    if (q->kind != KILN_LS_STORE) anchor(c, q->var, j);
    const kiln_lx *v[KILN_LLVM_MAX_LANES];
    for (int k = 0; k < j; k++) v[k] = st[k]->value;
    operand_anchors(c, v, j);
    q = r; /* the next window starts after this one */
  }
}

static int anchor_stmt(kiln_walk *wk, const kiln_ls *s) {
  if (s->kind == KILN_LS_FOR || s->kind == KILN_LS_IF) {
    anchor_block(wk->ctx, s->body);
    anchor_block(wk->ctx, s->orelse);
  }
  return KILN_WALK_CONTINUE;
}

void kiln_llvm_lane_anchors(cg *c, const kiln_ls *block) {
  if (c->lanes < 2) return;
  anchor_block(c, block);
  kiln_walk wk = {.stmt_pre = anchor_stmt, .ctx = c};
  kiln_walk_block(&wk, block);
}

/* Allocas for the DECL at s, in the entry block: a group's vector when s
 * starts one (the number of DECLs it covers), else s's own scalar (1). */
int kiln_llvm_lane_alloca(cg *c, const kiln_ls *s) {
  const kiln_ls *st[KILN_LLVM_MAX_LANES];
  run r;
  if (c->local[s->var]) return 1; /* a lane of a group made before */
  if (c->lanes < 2 || s->kind != KILN_LS_DECL || !c->anchor[s->var] || !find_run(c, s, st, &r, 1)) {
    c->local[s->var] = LLVMBuildAlloca(c->b, kiln_llvm_value_type(c, s->dtype), "t");
    return 1;
  }
  LLVMTypeRef f32 = LLVMFloatTypeInContext(c->ctx), i32 = LLVMInt32TypeInContext(c->ctx);
  LLVMTypeRef vt = LLVMVectorType(f32, (unsigned)r.w);
  LLVMValueRef g = LLVMBuildAlloca(c->b, vt, "g");
  c->lane_groups++;
  c->group[s->var] = g;
  for (int j = 0; j < r.w; j++) {
    LLVMValueRef idx[2] = {LLVMConstInt(i32, 0, 0), LLVMConstInt(i32, (unsigned long long)j, 0)};
    c->local[s->var + j] = LLVMBuildInBoundsGEP2(c->b, vt, g, idx, 2, "");
  }
  return r.w;
}

/* Prints the run starting at s as vector statements; its last statement,
 * or NULL when no run starts at s. */
const kiln_ls *kiln_llvm_lane_run(cg *c, const kiln_ls *s) {
  const kiln_ls *st[KILN_LLVM_MAX_LANES];
  run r;
  if (!c->group || !find_run(c, s, st, &r, 0)) return NULL;
  const kiln_lx *v[KILN_LLVM_MAX_LANES];
  for (int j = 0; j < r.w; j++) v[j] = st[j]->value;
  LLVMValueRef x = vexpr(c, &r, v);
  c->lane_runs++;
  if (s->kind == KILN_LS_STORE) {
    LLVMValueRef store = LLVMBuildStore(c->b, x, kiln_llvm_buf_ptr(c, s->buf, kiln_llvm_expr(c, s->index)));
    LLVMSetAlignment(store, 4);
  } else {
    LLVMBuildStore(c->b, x, c->group[s->var]);
  }
  return st[r.w - 1];
}

/* W for p's register tiles: the target's f32 lanes (at most
 * KILN_LLVM_MAX_LANES); 0, scalar tiles for SLP as before, when the target
 * has no vectors or KILN_LANES=0 is set (for A/B runs and the test that
 * compares the two: tests/backends/llvm/test_tile_lanes.py). */
int kiln_llvm_tile_lanes(const kiln_program *p) {
  const char *env = getenv("KILN_LANES");
  int w = p->target.vector_bytes / 4;
  if ((env && !strcmp(env, "0")) || w < 2) return 0;
  return w < KILN_LLVM_MAX_LANES ? w : KILN_LLVM_MAX_LANES;
}

/* With --time: how many register-tile locals and statements printed as
 * vectors, and the widest W. */
void kiln_llvm_lanes_report(const cg *c, kiln_timing *t) {
  if (!kiln_timing_on(t)) return;
  fprintf(t->out, "kiln: llvm: register tiles: %d vector locals, %d vector statements (%d lanes)\n", c->lane_groups,
          c->lane_runs, c->lanes_max);
}
