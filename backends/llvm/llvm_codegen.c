/* Loop IR -> LLVM IR.  Each kernel kN becomes:
 *   `void kN(ptr bufs)`, the wrapper: bufs is the array of buffer base
 *     pointers (a view's address is its root's entry + its offset; its own
 *     entry is not read; bufs[nbufs] is the thread pool); it copies the
 *     bases of the buffers the kernel uses, in the order the kernel first
 *     uses them, into a small `slots` array (then the pool, then the
 *     kernel's threaded loops' functions) and calls
 *   `void kN_b(ptr slots)`, the body, which runs the statements, and hands
 *     each top-level loop marked `threads` to the pool as
 *   `void kN_pJ(ptr slots, i64 lo, i64 hi)`.
 * Bodies and loops never see a buffer id or another function's name, so
 * two kernels doing the same work on other buffers (ResNet's repeated
 * blocks) would print identical bodies and loops: such a twin is found
 * before printing (llvm_twins.c) and gets only its wrapper, which calls
 * the first one's body and loops.  `void kiln_run(ptr bufs)`
 * calls the wrappers in order.  Bodies and loops go to the light or heavy
 * module by their own statements (kiln_llvm_heavy), heavy ones of a kernel
 * with explicit vectors (register tiles) to the tiled module.  Loops are emitted in
 * the canonical header/body/latch form the loop vectoriser expects; locals
 * are allocas that mem2reg/SROA promote (a register tile's rows vector
 * allocas: llvm_lanes.c).  Only constructs are translated here:
 * no op knowledge. */
#include "llvm_internal.h"

#include <llvm-c/DebugInfo.h>
#include <string.h>

#include "../../ir/loop_walk.h"

static LLVMTypeRef storage_type(cg *c, kiln_dtype t) {
  switch (t) {
  case KILN_DT_F32: return LLVMFloatTypeInContext(c->ctx);
  case KILN_DT_F64: return LLVMDoubleTypeInContext(c->ctx);
  case KILN_DT_F16: return LLVMHalfTypeInContext(c->ctx);
  case KILN_DT_BF16: return LLVMBFloatTypeInContext(c->ctx);
  case KILN_DT_I8: case KILN_DT_U8: case KILN_DT_BOOL: return LLVMInt8TypeInContext(c->ctx);
  case KILN_DT_I16: case KILN_DT_U16: return LLVMInt16TypeInContext(c->ctx);
  case KILN_DT_I32: case KILN_DT_U32: return LLVMInt32TypeInContext(c->ctx);
  default: return LLVMInt64TypeInContext(c->ctx);
  }
}

LLVMTypeRef kiln_llvm_value_type(cg *c, kiln_dtype t) {
  return t == KILN_DT_BOOL ? LLVMInt1TypeInContext(c->ctx) : storage_type(c, t);
}

static int is_unsigned(kiln_dtype t) {
  return t == KILN_DT_U8 || t == KILN_DT_U16 || t == KILN_DT_U32 || t == KILN_DT_U64 || t == KILN_DT_BOOL;
}

LLVMValueRef kiln_llvm_call_intrinsic(cg *c, const char *name, LLVMTypeRef *types, int ntypes, LLVMValueRef *args,
                                      int nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, types, (size_t)ntypes);
  LLVMTypeRef fty = LLVMIntrinsicGetType(c->ctx, id, types, (size_t)ntypes);
  return LLVMBuildCall2(c->b, fty, fn, args, (unsigned)nargs, "");
}

/* libm call (tanh, erf): resolved in the JIT from the process, and by the
 * linker for compiled artifacts. */
static LLVMValueRef call_libm(cg *c, const char *f32name, const char *f64name, LLVMValueRef x, kiln_dtype t) {
  const char *name = t == KILN_DT_F64 ? f64name : f32name;
  LLVMTypeRef ty = kiln_llvm_value_type(c, t);
  LLVMTypeRef fty = LLVMFunctionType(ty, &ty, 1, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
  if (!fn) {
    fn = LLVMAddFunction(c->mod, name, fty);
    LLVMSetLinkage(fn, LLVMExternalLinkage);
  }
  return LLVMBuildCall2(c->b, fty, fn, &x, 1, "");
}

/* Casts follow ir/loop.h: f16/bf16 go through f32, by hardware
 * conversions where the target has them (f16 with F16C) and bit
 * manipulation otherwise (llvm_portable.c), float -> int saturates. */
static LLVMValueRef cast(cg *c, LLVMValueRef v, kiln_dtype from, kiln_dtype to) {
  if (from == to) return v;
  if (from == KILN_DT_F16 && c->native_f16) return cast(c, kiln_llvm_widen_f16_native(c, v), KILN_DT_F32, to);
  if (to == KILN_DT_F16 && c->native_f16) return kiln_llvm_narrow_f16_native(c, cast(c, v, from, KILN_DT_F32));
  if (from == KILN_DT_F16 || from == KILN_DT_BF16)
    return cast(c, kiln_llvm_widen_f32(c, v, from == KILN_DT_BF16), KILN_DT_F32, to);
  if (to == KILN_DT_F16 || to == KILN_DT_BF16)
    return kiln_llvm_narrow_f32(c, cast(c, v, from, KILN_DT_F32), to == KILN_DT_BF16);
  LLVMTypeRef ty = kiln_llvm_value_type(c, to);
  int ff = kiln_dtype_is_float(from), tf = kiln_dtype_is_float(to);
  if (to == KILN_DT_BOOL) {
    return ff ? LLVMBuildFCmp(c->b, LLVMRealUNE, v, LLVMConstNull(LLVMTypeOf(v)), "")
              : LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
  }
  if (ff && tf) return from == KILN_DT_F32 ? LLVMBuildFPExt(c->b, v, ty, "") : LLVMBuildFPTrunc(c->b, v, ty, "");
  if (ff && !tf) { /* saturating: out-of-range and NaN are defined */
    LLVMTypeRef tys[2] = {ty, LLVMTypeOf(v)};
    return kiln_llvm_call_intrinsic(c, is_unsigned(to) ? "llvm.fptoui.sat" : "llvm.fptosi.sat", tys, 2, &v, 1);
  }
  if (!ff && tf) return is_unsigned(from) ? LLVMBuildUIToFP(c->b, v, ty, "") : LLVMBuildSIToFP(c->b, v, ty, "");
  unsigned fb = LLVMGetIntTypeWidth(LLVMTypeOf(v)), tb = LLVMGetIntTypeWidth(ty);
  if (fb == tb) return v;
  if (fb > tb) return LLVMBuildTrunc(c->b, v, ty, "");
  return is_unsigned(from) ? LLVMBuildZExt(c->b, v, ty, "") : LLVMBuildSExt(c->b, v, ty, "");
}

/* Integer DIV / REM as ir/loop.h defines them: x / 0 == 0, x % 0 == x,
 * MIN / -1 == MIN, MIN % -1 == 0 (LLVM's sdiv/srem are undefined there).
 * No guard when the divisor is a constant other than 0 and -1. */
static LLVMValueRef int_divrem(cg *c, const kiln_lx *e, LLVMValueRef a, LLVMValueRef b, int un) {
  int div = e->op == KILN_BIN_DIV;
  if (!kiln_lx_div_needs_guard(e->b))
    return div ? (un ? LLVMBuildUDiv(c->b, a, b, "") : LLVMBuildSDiv(c->b, a, b, ""))
               : (un ? LLVMBuildURem(c->b, a, b, "") : LLVMBuildSRem(c->b, a, b, ""));
  LLVMTypeRef ty = LLVMTypeOf(a);
  LLVMValueRef zero = LLVMBuildICmp(c->b, LLVMIntEQ, b, LLVMConstNull(ty), "");
  LLVMValueRef bad = zero, neg1 = NULL;
  if (!un) {
    neg1 = LLVMBuildICmp(c->b, LLVMIntEQ, b, LLVMConstAllOnes(ty), "");
    bad = LLVMBuildOr(c->b, zero, neg1, "");
  }
  LLVMValueRef d = LLVMBuildSelect(c->b, bad, LLVMConstInt(ty, 1, 0), b, "");
  if (!div) /* x % 1 == 0 already covers -1 */
    return LLVMBuildSelect(c->b, zero, a, un ? LLVMBuildURem(c->b, a, d, "") : LLVMBuildSRem(c->b, a, d, ""), "");
  LLVMValueRef q = un ? LLVMBuildUDiv(c->b, a, d, "") : LLVMBuildSDiv(c->b, a, d, "");
  if (neg1) q = LLVMBuildSelect(c->b, neg1, LLVMBuildNeg(c->b, a, ""), q, ""); /* wraps */
  return LLVMBuildSelect(c->b, zero, LLVMConstNull(ty), q, "");
}

LLVMValueRef kiln_llvm_buf_ptr(cg *c, const kiln_buf *b, LLVMValueRef index) {
  return LLVMBuildGEP2(c->b, storage_type(c, b->dtype), c->base[b->id], &index, 1, "");
}

/* e's operator applied to a, the value of e->a (a scalar, or a vector of
 * lanes: llvm_lanes.c). */
LLVMValueRef kiln_llvm_unary_op(cg *c, const kiln_lx *e, LLVMValueRef a) {
  kiln_dtype t = e->a->dtype;
  LLVMTypeRef ty = LLVMTypeOf(a);
  int fl = kiln_dtype_is_float(t);
  switch (e->op) {
  case KILN_UN_NEG: return fl ? LLVMBuildFNeg(c->b, a, "") : LLVMBuildNeg(c->b, a, "");
  case KILN_UN_ABS:
    if (fl) return kiln_llvm_call_intrinsic(c, "llvm.fabs", &ty, 1, &a, 1);
    if (is_unsigned(t)) return a;
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, LLVMConstNull(ty), ""), LLVMBuildNeg(c->b, a, ""),
                           a, "");
  case KILN_UN_EXP: return kiln_llvm_call_intrinsic(c, "llvm.exp", &ty, 1, &a, 1);
  case KILN_UN_LOG: return kiln_llvm_call_intrinsic(c, "llvm.log", &ty, 1, &a, 1);
  case KILN_UN_SQRT: return kiln_llvm_call_intrinsic(c, "llvm.sqrt", &ty, 1, &a, 1);
  case KILN_UN_FLOOR: return fl ? kiln_llvm_call_intrinsic(c, "llvm.floor", &ty, 1, &a, 1) : a;
  case KILN_UN_CEIL: return fl ? kiln_llvm_call_intrinsic(c, "llvm.ceil", &ty, 1, &a, 1) : a;
  case KILN_UN_ROUND_EVEN: return fl ? kiln_llvm_call_intrinsic(c, "llvm.roundeven", &ty, 1, &a, 1) : a;
  case KILN_UN_TANH: return call_libm(c, "tanhf", "tanh", a, t);
  case KILN_UN_ERF: return call_libm(c, "erff", "erf", a, t);
  case KILN_UN_NOT: return LLVMBuildNot(c->b, a, "");
  case KILN_UN_ISNAN: return LLVMBuildFCmp(c->b, LLVMRealUNO, a, a, "");
  case KILN_UN_BITCAST: return LLVMBuildBitCast(c->b, a, kiln_llvm_value_type(c, e->dtype), "");
  default: return NULL;
  }
}

/* e's operator applied to a and b, the values of e->a and e->b (scalars,
 * or vectors of lanes). */
LLVMValueRef kiln_llvm_binary_op(cg *c, const kiln_lx *e, LLVMValueRef a, LLVMValueRef b) {
  kiln_dtype t = e->a->dtype;
  int fl = kiln_dtype_is_float(t), un = is_unsigned(t);
  LLVMTypeRef ty = LLVMTypeOf(a);
  switch (e->op) {
  case KILN_BIN_ADD: return fl ? LLVMBuildFAdd(c->b, a, b, "") : LLVMBuildAdd(c->b, a, b, "");
  case KILN_BIN_SUB: return fl ? LLVMBuildFSub(c->b, a, b, "") : LLVMBuildSub(c->b, a, b, "");
  case KILN_BIN_MUL: return fl ? LLVMBuildFMul(c->b, a, b, "") : LLVMBuildMul(c->b, a, b, "");
  case KILN_BIN_DIV: return fl ? LLVMBuildFDiv(c->b, a, b, "") : int_divrem(c, e, a, b, un);
  case KILN_BIN_REM: return fl ? LLVMBuildFRem(c->b, a, b, "") : int_divrem(c, e, a, b, un);
  case KILN_BIN_MIN:
  case KILN_BIN_MAX: {
    int mx = e->op == KILN_BIN_MAX;
    LLVMValueRef lt = fl ? LLVMBuildFCmp(c->b, LLVMRealOLT, a, b, "")
                         : LLVMBuildICmp(c->b, un ? LLVMIntULT : LLVMIntSLT, a, b, "");
    return LLVMBuildSelect(c->b, lt, mx ? b : a, mx ? a : b, "");
  }
  case KILN_BIN_POW: return kiln_llvm_call_intrinsic(c, "llvm.pow", &ty, 1, (LLVMValueRef[]){a, b}, 2);
  case KILN_BIN_XOR: return LLVMBuildXor(c->b, a, b, "");
  case KILN_BIN_LT: return fl ? LLVMBuildFCmp(c->b, LLVMRealOLT, a, b, "") : LLVMBuildICmp(c->b, un ? LLVMIntULT : LLVMIntSLT, a, b, "");
  case KILN_BIN_LE: return fl ? LLVMBuildFCmp(c->b, LLVMRealOLE, a, b, "") : LLVMBuildICmp(c->b, un ? LLVMIntULE : LLVMIntSLE, a, b, "");
  case KILN_BIN_EQ: return fl ? LLVMBuildFCmp(c->b, LLVMRealOEQ, a, b, "") : LLVMBuildICmp(c->b, LLVMIntEQ, a, b, "");
  case KILN_BIN_NE: return fl ? LLVMBuildFCmp(c->b, LLVMRealUNE, a, b, "") : LLVMBuildICmp(c->b, LLVMIntNE, a, b, "");
  case KILN_BIN_AND: return LLVMBuildAnd(c->b, a, b, "");
  case KILN_BIN_OR: return LLVMBuildOr(c->b, a, b, "");
  default: return NULL;
  }
}

/* f32(f16(x)) for an f32 x (kiln.RoundTo) where the target converts
 * natively: kiln_llvm_round_f16_native, which takes vectors too. */
int kiln_llvm_is_round_f16(const cg *c, const kiln_lx *e) {
  return c->native_f16 && e->kind == KILN_LX_CAST && e->dtype == KILN_DT_F32 && e->a->kind == KILN_LX_CAST &&
         e->a->dtype == KILN_DT_F16 && e->a->a->dtype == KILN_DT_F32;
}

LLVMValueRef kiln_llvm_expr(cg *c, const kiln_lx *e) {
  switch (e->kind) {
  case KILN_LX_CONST: {
    LLVMTypeRef ty = kiln_llvm_value_type(c, e->dtype);
    if (kiln_dtype_is_float(e->dtype)) return LLVMConstReal(ty, e->f);
    if (e->dtype == KILN_DT_BOOL) return LLVMConstInt(ty, e->i != 0 || e->f != 0, 0);
    return LLVMConstInt(ty, (unsigned long long)e->i, 1);
  }
  case KILN_LX_INDEX: return c->index[e->var];
  case KILN_LX_LOCAL: return LLVMBuildLoad2(c->b, kiln_llvm_value_type(c, e->dtype), c->local[e->var], "");
  case KILN_LX_LOAD: {
    LLVMValueRef v = LLVMBuildLoad2(c->b, storage_type(c, e->buf->dtype), kiln_llvm_buf_ptr(c, e->buf, kiln_llvm_expr(c, e->a)), "");
    if (e->buf->dtype == KILN_DT_BOOL) v = LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
    return v;
  }
  case KILN_LX_UN: return kiln_llvm_unary_op(c, e, kiln_llvm_expr(c, e->a));
  case KILN_LX_BIN: {
    LLVMValueRef a = kiln_llvm_expr(c, e->a); /* a's code first */
    return kiln_llvm_binary_op(c, e, a, kiln_llvm_expr(c, e->b));
  }
  case KILN_LX_SELECT: {
    LLVMValueRef a = kiln_llvm_expr(c, e->a), b = kiln_llvm_expr(c, e->b);
    return LLVMBuildSelect(c->b, a, b, kiln_llvm_expr(c, e->c), "");
  }
  case KILN_LX_CAST:
    if (kiln_llvm_is_round_f16(c, e)) /* f32(f16(x)): kiln.RoundTo */
      return kiln_llvm_round_f16_native(c, kiln_llvm_expr(c, e->a->a));
    return cast(c, kiln_llvm_expr(c, e->a), e->a->dtype, e->dtype);
  case KILN_LX_FMA: {
    LLVMTypeRef ty = kiln_llvm_value_type(c, e->dtype);
    LLVMValueRef args[3] = {kiln_llvm_expr(c, e->a), kiln_llvm_expr(c, e->b), kiln_llvm_expr(c, e->c)};
    return kiln_llvm_call_intrinsic(c, "llvm.fma", &ty, 1, args, 3);
  }
  }
  return NULL;
}

static void stmts(cg *c, const kiln_ls *s);

/* The loop's schedule hints as its llvm.loop metadata on the latch branch
 * (the loop passes honour them at any tier that runs them):
 *  - sched.unroll N > 1: llvm.loop.unroll.full when N covers the extent,
 *    else unroll.count N;
 *  - sched.masked_tail: llvm.loop.vectorize.predicate.enable, the loop
 *    vectorised with its tail folded into masked lanes (AVX-512 masks,
 *    AVX2 vmaskmov): a loop of 13 runs as one 16-lane vector, where the
 *    vectoriser would otherwise leave it scalar. */
static void loop_hints(cg *c, LLVMValueRef latch, const kiln_ls *s) {
  LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx), i1 = LLVMInt1TypeInContext(c->ctx);
  LLVMMetadataRef ops[3];
  int n = 1;
  if (s->sched.unroll > 1) {
    int full = s->sched.unroll >= s->extent;
    const char *key = full ? "llvm.loop.unroll.full" : "llvm.loop.unroll.count";
    LLVMMetadataRef prop[2] = {LLVMMDStringInContext2(c->ctx, key, strlen(key)),
                               LLVMValueAsMetadata(LLVMConstInt(i32, (unsigned long long)s->sched.unroll, 0))};
    ops[n++] = LLVMMDNodeInContext2(c->ctx, prop, full ? 1 : 2);
  }
  if (s->sched.masked_tail) {
    const char *key = "llvm.loop.vectorize.predicate.enable";
    LLVMMetadataRef prop[2] = {LLVMMDStringInContext2(c->ctx, key, strlen(key)), LLVMValueAsMetadata(LLVMConstInt(i1, 1, 0))};
    ops[n++] = LLVMMDNodeInContext2(c->ctx, prop, 2);
  }
  if (n == 1) return;
  LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);
  ops[0] = self;
  LLVMMetadataRef id = LLVMMDNodeInContext2(c->ctx, ops, (size_t)n);
  LLVMMetadataReplaceAllUsesWith(self, id); /* the loop id names itself; deletes self */
  LLVMSetMetadata(latch, LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9), LLVMMetadataAsValue(c->ctx, id));
}

/* for var in [lo, hi): lo/hi NULL mean 0 and the loop's extent. */
static void loop_range(cg *c, const kiln_ls *s, LLVMValueRef lo, LLVMValueRef hi) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c->ctx);
  if (!lo) lo = LLVMConstInt(i64, 0, 0);
  if (!hi) hi = LLVMConstInt(i64, (unsigned long long)s->extent, 1);
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
  LLVMBuildBr(c->b, head);
  LLVMPositionBuilderAtEnd(c->b, head);
  LLVMValueRef i = LLVMBuildPhi(c->b, i64, "i");
  LLVMValueRef go = LLVMBuildICmp(c->b, LLVMIntSLT, i, hi, "");
  LLVMBuildCondBr(c->b, go, body, exit);
  LLVMPositionBuilderAtEnd(c->b, body);
  c->index[s->var] = i;
  stmts(c, s->body);
  LLVMValueRef next = LLVMBuildNSWAdd(c->b, i, LLVMConstInt(i64, 1, 0), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  loop_hints(c, LLVMBuildBr(c->b, head), s);
  LLVMValueRef vals[2] = {lo, next};
  LLVMBasicBlockRef blocks[2] = {pre, latch};
  LLVMAddIncoming(i, vals, blocks, 2);
  LLVMPositionBuilderAtEnd(c->b, exit);
}

static void stmts(cg *c, const kiln_ls *s) {
  const kiln_ls *outer = c->block;
  c->block = s;
  for (; s; s = s->next) {
    const kiln_ls *last = c->lanes ? kiln_llvm_lane_run(c, s) : NULL; /* W lanes as one vector */
    if (last) {
      s = last;
      continue;
    }
    switch (s->kind) {
    case KILN_LS_FOR: loop_range(c, s, NULL, NULL); break;
    case KILN_LS_STORE: {
      LLVMValueRef v = kiln_llvm_expr(c, s->value);
      if (s->buf->dtype == KILN_DT_BOOL) v = LLVMBuildZExt(c->b, v, LLVMInt8TypeInContext(c->ctx), "");
      LLVMBuildStore(c->b, v, kiln_llvm_buf_ptr(c, s->buf, kiln_llvm_expr(c, s->index)));
      break;
    }
    case KILN_LS_DECL:
    case KILN_LS_ASSIGN: LLVMBuildStore(c->b, kiln_llvm_expr(c, s->value), c->local[s->var]); break;
    case KILN_LS_IF: {
      LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "then");
      LLVMBasicBlockRef els = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "else");
      LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "join");
      LLVMBuildCondBr(c->b, kiln_llvm_expr(c, s->value), then, els);
      LLVMPositionBuilderAtEnd(c->b, then);
      stmts(c, s->body);
      LLVMBuildBr(c->b, join);
      LLVMPositionBuilderAtEnd(c->b, els);
      stmts(c, s->orelse);
      LLVMBuildBr(c->b, join);
      LLVMPositionBuilderAtEnd(c->b, join);
      break;
    }
    case KILN_LS_PREFETCH: { /* llvm.prefetch(p, read, locality 2 (x86: prefetcht1) or near 3 (prefetcht0), data) */
      LLVMTypeRef i32 = LLVMInt32TypeInContext(c->ctx);
      LLVMValueRef p = kiln_llvm_buf_ptr(c, s->buf, kiln_llvm_expr(c, s->index));
      LLVMTypeRef pt = LLVMTypeOf(p);
      LLVMValueRef args[4] = {p, LLVMConstInt(i32, 0, 0), LLVMConstInt(i32, s->near ? 3 : 2, 0), LLVMConstInt(i32, 1, 0)};
      kiln_llvm_call_intrinsic(c, "llvm.prefetch", &pt, 1, args, 4);
      break;
    }
    case KILN_LS_BARRIER: break; /* one CPU thread per block: nothing to wait for */
    case KILN_LS_ALLOC: break; /* GPU kernels only, which CPU backends never get */
    case KILN_LS_MMA: KILN_ASSERT(!"warp mma: GPU kernels only (the verifier rejects it elsewhere)"); break;
    case KILN_LS_REDUCE:
    case KILN_LS_COMBINE: KILN_ASSERT(!"reductions are expanded before printing (passes/expand_reduce.c)"); break;
    }
  }
  c->block = outer;
}

/* Allocas for every DECL, in the entry block (mem2reg needs them there). */
static int alloca_decl(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_DECL) kiln_llvm_lane_alloca(w->ctx, s);
  return KILN_WALK_CONTINUE;
}
static void declare_locals(cg *c, const kiln_ls *s) {
  kiln_llvm_lane_anchors(c, s);
  kiln_walk w = {.stmt_pre = alloca_decl, .ctx = c};
  kiln_walk_block(&w, s);
}

/* Whether workspace buffers a and b are one address: neither a view, both
 * at one planned offset of the arena (plan_inplace.c writes a kernel's
 * output over its dying input). */
static int same_address(const kiln_program *p, const kiln_buf *a, const kiln_buf *b) {
  return p && p->workspace_bytes > 0 && !a->view_of && !b->view_of && a->kind == KILN_BUF_WORKSPACE &&
         b->kind == KILN_BUF_WORKSPACE && a->offset == b->offset;
}

/* The slot a function reads buffer id's base from, given the buffers it
 * uses: the first slot of a buffer it uses at the same address.  A kernel
 * written in place then reads one slot for input and output: LLVM sees
 * each element read and written at the same address and vectorises
 * without a runtime overlap check, which in-place buffers (distance 0)
 * would always fail, sending every element to the scalar loop.  Workspace
 * buffers at one planned offset are one address wherever the arena is
 * bound as planned (kiln_llvm_jit_bind, the runtime), which kiln_llvm.h
 * requires of callers.  Only buffers the function itself uses count, so
 * aliasing elsewhere in the kernel leaves the function as its twins print
 * it (llvm_twins.c). */
int kiln_llvm_load_slot(const cg *c, const unsigned char *used, int id) {
  const kiln_program *p = c->prog;
  for (int s = 0; s < c->slot_of[id]; s++)
    if (used[c->slot_buf[s]] && same_address(p, p->bufs[c->slot_buf[s]], p->bufs[id])) return s;
  return c->slot_of[id];
}

/* Loads the base pointer of every buffer the statements touch from the
 * kernel's slots (kernel_wrapper put them there, views' offsets applied). */
static void load_bases(cg *c, const kiln_program *p, const kiln_ls *body, LLVMValueRef slots, unsigned char *used) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0);
  memset(used, 0, (size_t)p->nbufs + 1);
  kiln_loop_bufs_used(body, used);
  c->used = used;
  for (int i = 0; i < p->nbufs; i++) {
    if (!used[i]) continue;
    LLVMValueRef idx = LLVMConstInt(LLVMInt64TypeInContext(c->ctx), (unsigned long long)kiln_llvm_load_slot(c, used, i), 0);
    c->base[i] = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, slots, &idx, 1, ""), "");
  }
}

/* A kernel's buffers get slots in the order the kernel first uses them, so
 * that two kernels doing the same work on different buffers have the same
 * body function (printed once: llvm_twins.c).  Buffers at one address keep
 * slots of their own (kiln_llvm_load_slot picks the one a function reads). */
static void add_slot(cg *c, const kiln_buf *b) {
  if (!b || b->scope != KILN_SCOPE_GLOBAL || c->slot_of[b->id] >= 0) return;
  c->slot_buf[c->nslots] = b->id;
  c->slot_of[b->id] = c->nslots++;
}
static int slot_stmt(kiln_walk *w, const kiln_ls *s) {
  if (s->kind == KILN_LS_STORE || s->kind == KILN_LS_PREFETCH) add_slot(w->ctx, s->buf);
  return KILN_WALK_CONTINUE;
}
static int slot_expr(kiln_walk *w, const kiln_lx *e) {
  if (e->kind == KILN_LX_LOAD) add_slot(w->ctx, e->buf);
  return KILN_WALK_CONTINUE;
}

/* Slots for the buffers kernel kn uses, in the order it first uses them. */
static void assign_slots(cg *c, const kiln_program *p, const kiln_kernel *kn) {
  for (int i = 0; i < p->nbufs; i++) c->slot_of[i] = -1;
  c->nslots = 0;
  kiln_walk w = {.stmt_pre = slot_stmt, .expr_pre = slot_expr, .ctx = c};
  kiln_walk_block(&w, kn->body);
}

/* void kN(ptr bufs): fills slots[] with the base pointers of the buffers
 * kernel kn uses (a view is its root's memory from its offset on), the
 * thread pool (bufs[nbufs]) after them, then the kernel's threaded loops
 * (loops[0..nloops)), and calls the body. */
static void kernel_wrapper(cg *c, const kiln_program *p, LLVMValueRef fn, LLVMValueRef body, LLVMValueRef *loops,
                           int nloops) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &ptr, 1, 0);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  LLVMValueRef bufs = LLVMGetParam(fn, 0);
  int n = c->nslots + 1 + nloops;
  LLVMValueRef slots = LLVMBuildArrayAlloca(c->b, ptr, LLVMConstInt(i64, (unsigned long long)n, 0), "slots");
  for (int s = 0; s < n; s++) {
    LLVMValueRef v;
    if (s <= c->nslots) {
      int64_t off = 0, id = p->nbufs; /* slot nslots: the pool */
      if (s < c->nslots) id = kiln_buf_root(p->bufs[c->slot_buf[s]], &off)->id;
      LLVMValueRef idx = LLVMConstInt(i64, (unsigned long long)id, 0);
      v = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, bufs, &idx, 1, ""), "");
      if (off) {
        LLVMValueRef o = LLVMConstInt(i64, (unsigned long long)off, 0);
        v = LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->ctx), v, &o, 1, "");
      }
    } else {
      v = loops[s - c->nslots - 1];
    }
    LLVMValueRef si = LLVMConstInt(i64, (unsigned long long)s, 0);
    LLVMBuildStore(c->b, v, LLVMBuildGEP2(c->b, ptr, slots, &si, 1, ""));
  }
  LLVMBuildCall2(c->b, fty, body, &slots, 1, "");
  LLVMBuildRetVoid(c->b);
}

/* The target's vector width as the loop and SLP vectorisers' preference:
 * LLVM's tuning for some CPUs (Intel server cores) prefers 256-bit vectors
 * even where 512-bit ones exist; the target description decides. */
static void prefer_width(cg *c, LLVMValueRef fn, const kiln_program *p) {
  char bits[16];
  if (p->target.vector_bytes <= 0) return;
  int n = snprintf(bits, sizeof bits, "%d", p->target.vector_bytes * 8);
  LLVMAttributeRef a = LLVMCreateStringAttribute(c->ctx, "prefer-vector-width", 19, bits, (unsigned)n);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

/* Every function printed here stays a function of its own (each has one
 * call site, so LLVM would inline it): the optimisation tiers and mergefunc
 * work function by function, and a light body inlined into a heavy caller
 * would be optimised at O3 after all. */
static void no_inline(cg *c, LLVMValueRef fn) {
  unsigned id = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, id, 0));
}

/* A kernel's top-level loop marked `threads` (schedule-threads) is outlined into a function over
 * a range of iterations when no local of the kernel crosses into it. */
static int outlinable(const kiln_kernel *k) {
  for (const kiln_ls *s = k->body; s; s = s->next)
    if (s->kind == KILN_LS_DECL || s->kind == KILN_LS_ASSIGN) return 0;
  return 1;
}

/* The tier of a function of kernel kn doing `block` (llvm_optimise.c):
 * light when the block does no accumulation, tiled when it does and the
 * lowering made kn's vectors explicit, else heavy; one when there are no
 * tiers (KILN_OPT=O3). */
enum { TIER_LIGHT, TIER_HEAVY, TIER_TILED };
static int tier_of(cg *c, const kiln_kernel *kn, int heavy) {
  if (!c->light) return TIER_HEAVY;
  return !heavy ? TIER_LIGHT : kn->explicit_vectors && c->tiled ? TIER_TILED : TIER_HEAVY;
}
/* With several modules every kernel function is external until they are
 * linked. */
static LLVMModuleRef tier_module(cg *c, int tier) {
  return tier == TIER_LIGHT ? c->light : tier == TIER_TILED ? c->tiled : c->main;
}
static LLVMValueRef add_function(cg *c, LLVMModuleRef m, const char *name, LLVMTypeRef fty, const kiln_program *p) {
  LLVMValueRef fn = LLVMAddFunction(m, name, fty);
  LLVMSetLinkage(fn, c->light ? LLVMExternalLinkage : LLVMInternalLinkage);
  LLVMSetUnnamedAddress(fn, LLVMGlobalUnnamedAddr); /* mergefunc may replace it by its twin */
  prefer_width(c, fn, p);
  no_inline(c, fn);
  return fn;
}
/* fn as seen from module m: itself, or a declaration of it (linked later). */
static LLVMValueRef seen_from(LLVMModuleRef m, LLVMValueRef fn) {
  if (LLVMGetGlobalParent(fn) == m) return fn;
  size_t len;
  const char *name = LLVMGetValueName2(fn, &len);
  LLVMValueRef decl = LLVMGetNamedFunction(m, name);
  return decl ? decl : LLVMAddFunction(m, name, LLVMGlobalGetValueType(fn));
}

/* void name_pJ(ptr slots, i64 lo, i64 hi): iterations [lo, hi) of s, in
 * the module s's own work decides. */
static LLVMValueRef outline(cg *c, const kiln_program *p, const kiln_kernel *kn, const kiln_ls *s, int j, unsigned char *used) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef params[3] = {ptr, i64, i64};
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 3, 0);
  char name[256];
  snprintf(name, sizeof name, "%s_p%d", kn->name, j);
  LLVMValueRef saved_fn = c->fn;
  LLVMModuleRef saved_mod = c->mod;
  LLVMBasicBlockRef saved_bb = LLVMGetInsertBlock(c->b);
  c->mod = tier_module(c, tier_of(c, kn, kiln_llvm_heavy(s, 1)));
  LLVMValueRef fn = add_function(c, c->mod, name, fty, p);
  c->fn = fn;
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  kiln_ls one = *s;
  one.next = NULL;
  load_bases(c, p, &one, LLVMGetParam(fn, 0), used);
  declare_locals(c, s->body);
  loop_range(c, s, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2));
  LLVMBuildRetVoid(c->b);
  c->fn = saved_fn;
  c->mod = saved_mod;
  LLVMPositionBuilderAtEnd(c->b, saved_bb);
  return fn;
}

static LLVMValueRef parallel_for_decl(cg *c) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef params[4] = {ptr, ptr, ptr, i64};
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 4, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(c->mod, "kiln_rt_parallel_for");
  if (!fn) fn = LLVMAddFunction(c->mod, "kiln_rt_parallel_for", fty);
  return fn;
}

/* Whether the body function of kn (what is not outlined) accumulates. */
static int body_heavy(const kiln_kernel *kn, int outlined) {
  if (!outlined) return kiln_llvm_heavy(kn->body, 0);
  for (const kiln_ls *s = kn->body; s; s = s->next)
    if (!(s->kind == KILN_LS_FOR && s->sched.threads) && kiln_llvm_heavy(s, 1)) return 1;
  return 0;
}

/* Kernel kn as three kinds of function (see the top of the file): the
 * wrapper kN, which fills the slots; the body kN_b, which runs the
 * statements; one kN_pJ per threaded loop.  Body and loops each go to the
 * tier their own statements decide. */
static int kernel(cg *c, const kiln_program *p, const kiln_kernel *kn, LLVMValueRef wrapper, unsigned char *used) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &ptr, 1, 0);
  LLVMTypeRef pfty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), (LLVMTypeRef[]){ptr, ptr, ptr, i64}, 4, 0);
  int outlined = outlinable(kn), nloops = 0;
  for (const kiln_ls *s = kn->body; outlined && s; s = s->next) nloops += s->kind == KILN_LS_FOR && s->sched.threads;
  LLVMValueRef *loops = calloc((size_t)nloops + 1, sizeof *loops);
  int *decide = calloc((size_t)nloops + 2, sizeof *decide);
  if (!loops || !decide) {
    free(loops);
    free(decide);
    return -1;
  }
  assign_slots(c, p, kn);
  /* what the printer decides per function, beside the statements: the
   * twins' key (llvm_twins.c) */
  decide[0] = outlined;
  decide[1] = tier_of(c, kn, body_heavy(kn, outlined));
  int j = 0;
  for (const kiln_ls *s = kn->body; outlined && s; s = s->next)
    if (s->kind == KILN_LS_FOR && s->sched.threads) decide[2 + j++] = tier_of(c, kn, kiln_llvm_heavy(s, 1));
  const kiln_llvm_printed *twin = kiln_llvm_twin_find(c, kn, decide, nloops + 2);
  free(decide);
  if (twin) {
    kernel_wrapper(c, p, wrapper, twin->body, twin->loops, twin->nloops);
    free(loops);
    return 0;
  }
  char bname[300];
  snprintf(bname, sizeof bname, "%s_b", kn->name);
  c->mod = tier_module(c, tier_of(c, kn, body_heavy(kn, outlined)));
  c->fn = add_function(c, c->mod, bname, fty, p);
  LLVMValueRef body_fn = c->fn;
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
  LLVMValueRef slots = LLVMGetParam(c->fn, 0);
  if (outlined) {
    /* the pool pointer travels in the slot after the buffers, the
     * threaded loops' functions after it: a body names no function of its
     * own, so twins' bodies stay identical */
    LLVMValueRef idx = LLVMConstInt(i64, (unsigned long long)c->nslots, 0);
    LLVMValueRef pool = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, slots, &idx, 1, ""), "pool");
    j = 0;
    for (const kiln_ls *s = kn->body; s; s = s->next) {
      if (s->kind == KILN_LS_FOR && s->sched.threads) {
        loops[j] = outline(c, p, kn, s, j, used);
        LLVMValueRef fi = LLVMConstInt(i64, (unsigned long long)(c->nslots + 1 + j++), 0);
        LLVMValueRef loop = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, slots, &fi, 1, ""), "");
        LLVMValueRef args[4] = {pool, loop, slots, LLVMConstInt(i64, (unsigned long long)s->extent, 1)};
        LLVMBuildCall2(c->b, pfty, parallel_for_decl(c), args, 4, "");
      } else {
        kiln_ls one = *s;
        one.next = NULL;
        load_bases(c, p, &one, slots, used);
        declare_locals(c, &one);
        stmts(c, &one);
      }
    }
  } else {
    load_bases(c, p, kn->body, slots, used);
    declare_locals(c, kn->body);
    stmts(c, kn->body);
  }
  LLVMBuildRetVoid(c->b);
  for (int k = 0; k < nloops; k++) loops[k] = seen_from(c->main, loops[k]);
  body_fn = seen_from(c->main, body_fn);
  kernel_wrapper(c, p, wrapper, body_fn, loops, nloops);
  int rc = kiln_llvm_twin_add(c, body_fn, loops, nloops);
  free(loops);
  return rc;
}

/* to[b] = from[b] + index x stride for every root buffer b that moves
 * per image (io: the inputs and outputs, by one image of theirs) or per
 * image slot (!io: the workspace, by one slot's copy); views follow their
 * roots in the kernels. */
static void move_roots(cg *c, const kiln_program *p, LLVMValueRef from, LLVMValueRef to, LLVMValueRef index, int io) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->view_of) continue;
    int64_t stride;
    if (io && (b->kind == KILN_BUF_INPUT || b->kind == KILN_BUF_OUTPUT))
      stride = b->numel / p->images * (int64_t)kiln_dtype_size(b->dtype);
    else if (!io && b->kind == KILN_BUF_WORKSPACE && b->scope == KILN_SCOPE_GLOBAL)
      stride = p->image_workspace_bytes;
    else
      continue;
    LLVMValueRef idx = LLVMConstInt(i64, (unsigned long long)i, 0);
    LLVMValueRef base = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, from, &idx, 1, ""), "");
    LLVMValueRef off = LLVMBuildMul(c->b, index, LLVMConstInt(i64, (unsigned long long)stride, 0), "");
    LLVMBuildStore(c->b, LLVMBuildGEP2(c->b, i8, base, &off, 1, ""), LLVMBuildGEP2(c->b, ptr, to, &idx, 1, ""));
  }
}

/* One image at a time (kiln_program.images, passes/per_image.c): the
 * entry runs every kernel once per image on a copy of the buffer table in
 * which each input and output buffer points at image n of the caller's
 * tensor (views reach them through their roots); profiling stamps go to
 * row n of an images x (nkernels + 1) table. */
typedef struct image_loop {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef n;
} image_loop;

static void image_loop_begin(cg *c, const kiln_program *p, image_loop *il, LLVMValueRef *bufs, LLVMValueRef *stamps) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef dbl = LLVMDoubleTypeInContext(c->ctx);
  LLVMTypeRef table = LLVMArrayType2(ptr, (uint64_t)p->nbufs + 1); /* + the thread pool's slot */
  LLVMValueRef copy = LLVMBuildAlloca(c->b, table, "bufs.image");
  LLVMBuildMemCpy(c->b, copy, 8, *bufs, 8, LLVMConstInt(i64, (unsigned long long)(p->nbufs + 1) * 8, 0));
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
  il->head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "image");
  il->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "images.done");
  LLVMBuildBr(c->b, il->head);
  LLVMPositionBuilderAtEnd(c->b, il->head);
  il->n = LLVMBuildPhi(c->b, i64, "n");
  LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
  LLVMAddIncoming(il->n, &zero, &pre, 1);
  move_roots(c, p, *bufs, copy, il->n, 1);
  if (*stamps) {
    LLVMValueRef row = LLVMBuildMul(c->b, il->n, LLVMConstInt(i64, (unsigned long long)p->nkernels + 1, 0), "");
    *stamps = LLVMBuildGEP2(c->b, dbl, *stamps, &row, 1, "");
  }
  *bufs = copy;
}

static void image_loop_end(cg *c, const kiln_program *p, image_loop *il) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMValueRef next = LLVMBuildAdd(c->b, il->n, LLVMConstInt(i64, 1, 0), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  LLVMAddIncoming(il->n, &next, &latch, 1);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntULT, next, LLVMConstInt(i64, (unsigned long long)p->images, 0), ""),
                  il->head, il->exit);
  LLVMPositionBuilderAtEnd(c->b, il->exit);
}

/* Image slots (kiln_program.image_slots): slot t of [lo, hi) runs images
 * t, t + slots, ... in its own copy of the workspace (every workspace root
 * moved on by t slots; views follow their roots), its kernels on no pool
 * (their parallel loops inline): kiln_rt_parallel_for's body, one slot a
 * thread. */
static LLVMValueRef image_slots_fn(cg *c, const kiln_program *p, LLVMValueRef *fns, LLVMTypeRef kty) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef params[3] = {ptr, i64, i64};
  LLVMValueRef fn = LLVMAddFunction(c->mod, "kiln_image_slots", LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 3, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, fn, "entry");
  LLVMBasicBlockRef shead = LLVMAppendBasicBlockInContext(c->ctx, fn, "slot");
  LLVMBasicBlockRef sbody = LLVMAppendBasicBlockInContext(c->ctx, fn, "slot.body");
  LLVMBasicBlockRef ihead = LLVMAppendBasicBlockInContext(c->ctx, fn, "image");
  LLVMBasicBlockRef ibody = LLVMAppendBasicBlockInContext(c->ctx, fn, "image.body");
  LLVMBasicBlockRef slatch = LLVMAppendBasicBlockInContext(c->ctx, fn, "slot.next");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "done");
  LLVMValueRef bufs = LLVMGetParam(fn, 0), lo = LLVMGetParam(fn, 1), hi = LLVMGetParam(fn, 2);
  LLVMPositionBuilderAtEnd(c->b, entry);
  LLVMValueRef copy = LLVMBuildAlloca(c->b, LLVMArrayType2(ptr, (uint64_t)p->nbufs + 1), "bufs.slot");
  LLVMBuildBr(c->b, shead);
  LLVMPositionBuilderAtEnd(c->b, shead);
  LLVMValueRef t = LLVMBuildPhi(c->b, i64, "t");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, t, hi, ""), sbody, done);
  LLVMPositionBuilderAtEnd(c->b, sbody);
  LLVMBuildMemCpy(c->b, copy, 8, bufs, 8, LLVMConstInt(i64, (unsigned long long)(p->nbufs + 1) * 8, 0));
  LLVMValueRef at = LLVMConstInt(i64, (unsigned long long)p->nbufs, 0);
  LLVMBuildStore(c->b, LLVMConstPointerNull(ptr), LLVMBuildGEP2(c->b, ptr, copy, &at, 1, "")); /* no pool */
  move_roots(c, p, bufs, copy, t, 0);
  LLVMBuildBr(c->b, ihead);
  LLVMPositionBuilderAtEnd(c->b, ihead);
  LLVMValueRef n = LLVMBuildPhi(c->b, i64, "n");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, n, LLVMConstInt(i64, (unsigned long long)p->images, 0), ""),
                  ibody, slatch);
  LLVMPositionBuilderAtEnd(c->b, ibody);
  move_roots(c, p, bufs, copy, n, 1);
  for (int k = 0; k < p->nkernels; k++) LLVMBuildCall2(c->b, kty, fns[k], &copy, 1, "");
  LLVMValueRef nnext = LLVMBuildAdd(c->b, n, LLVMConstInt(i64, (unsigned long long)p->image_slots, 0), "");
  LLVMBuildBr(c->b, ihead);
  LLVMAddIncoming(n, (LLVMValueRef[]){t, nnext}, (LLVMBasicBlockRef[]){sbody, ibody}, 2);
  LLVMPositionBuilderAtEnd(c->b, slatch);
  LLVMValueRef tnext = LLVMBuildAdd(c->b, t, LLVMConstInt(i64, 1, 0), "");
  LLVMBuildBr(c->b, shead);
  LLVMAddIncoming(t, (LLVMValueRef[]){lo, tnext}, (LLVMBasicBlockRef[]){entry, slatch}, 2);
  LLVMPositionBuilderAtEnd(c->b, done);
  LLVMBuildRetVoid(c->b);
  return fn;
}

int kiln_llvm_codegen(cg *c, const kiln_program *p) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c->ctx, 0), i64 = LLVMInt64TypeInContext(c->ctx);
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &ptr, 1, 0);
  LLVMValueRef *fns = calloc((size_t)p->nkernels + 1, sizeof *fns);
  unsigned char *used = calloc((size_t)p->nbufs + 1, 1);
  c->base = calloc((size_t)p->nbufs + 1, sizeof *c->base);
  c->prog = p;
  c->slot_of = calloc((size_t)p->nbufs + 1, sizeof *c->slot_of);
  c->slot_buf = calloc((size_t)p->nbufs + 1, sizeof *c->slot_buf);
  c->twins = kiln_llvm_twins_new();
  if (!fns || !used || !c->base || !c->slot_of || !c->slot_buf || !c->twins) {
    free(fns);
    free(used);
    return -1;
  }
  c->main = c->mod;
  for (int k = 0; k < p->nkernels; k++) {
    const kiln_kernel *kn = p->kernels[k];
    fns[k] = LLVMAddFunction(c->main, kn->name, fty);
    LLVMSetLinkage(fns[k], LLVMInternalLinkage);
    no_inline(c, fns[k]);
    c->index = calloc((size_t)kn->nvars + 1, sizeof *c->index);
    c->local = calloc((size_t)kn->nlocals + 1, sizeof *c->local);
    /* register tiles as vectors of the target's f32 lanes (llvm_lanes.c),
     * whichever tier their functions go to */
    c->lanes = kn->explicit_vectors || kn->reused_vectors ? kiln_llvm_tile_lanes(p) : 0;
    if (c->lanes > c->lanes_max) c->lanes_max = c->lanes;
    c->group = c->lanes ? calloc((size_t)kn->nlocals + 1, sizeof *c->group) : NULL;
    c->anchor = c->lanes ? calloc((size_t)kn->nlocals + 1, 1) : NULL;
    int rc = c->index && c->local && (!c->lanes || (c->group && c->anchor)) ? kernel(c, p, kn, fns[k], used) : -1;
    free(c->index);
    free(c->local);
    free(c->group);
    free(c->anchor);
    c->index = c->local = c->group = NULL;
    c->anchor = NULL;
    c->lanes = 0;
    if (rc) {
      free(fns);
      free(used);
      return -1;
    }
  }
  c->mod = c->main;
  /* profiling: kiln_run(bufs, stamps) marks the time around each kernel */
  LLVMTypeRef mfty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), (LLVMTypeRef[]){ptr, i64}, 2, 0);
  LLVMTypeRef rfty = c->profile ? LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), (LLVMTypeRef[]){ptr, ptr}, 2, 0) : fty;
  LLVMValueRef mark = c->profile ? LLVMAddFunction(c->mod, "kiln_rt_profile_mark", mfty) : NULL;
  c->fn = LLVMAddFunction(c->mod, c->entry ? c->entry : "kiln_run", rfty);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
  LLVMValueRef arg = LLVMGetParam(c->fn, 0), stamps = mark ? LLVMGetParam(c->fn, 1) : NULL;
  if (p->images > 1 && p->image_slots > 1 && !mark) { /* images at once, a slot a thread */
    LLVMValueRef slots = image_slots_fn(c, p, fns, fty);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(c->fn));
    LLVMValueRef at = LLVMConstInt(i64, (unsigned long long)p->nbufs, 0);
    LLVMValueRef pool = LLVMBuildLoad2(c->b, ptr, LLVMBuildGEP2(c->b, ptr, arg, &at, 1, ""), "pool");
    LLVMValueRef pf = parallel_for_decl(c);
    LLVMValueRef args[4] = {pool, slots, arg, LLVMConstInt(i64, (unsigned long long)p->image_slots, 0)};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(pf), pf, args, 4, "");
    LLVMBuildRetVoid(c->b);
    free(fns);
    free(used);
    return 0;
  }
  image_loop il = {0};
  if (p->images > 1) image_loop_begin(c, p, &il, &arg, &stamps);
  for (int k = 0; k <= p->nkernels; k++) {
    if (mark) {
      LLVMValueRef margs[2] = {stamps, LLVMConstInt(i64, (unsigned long long)k, 0)};
      LLVMBuildCall2(c->b, mfty, mark, margs, 2, "");
    }
    if (k < p->nkernels) LLVMBuildCall2(c->b, fty, fns[k], &arg, 1, "");
  }
  if (p->images > 1) image_loop_end(c, p, &il);
  LLVMBuildRetVoid(c->b);
  free(fns);
  free(used);
  return 0;
}

void kiln_llvm_codegen_free(cg *c) {
  free(c->base);
  free(c->slot_of);
  free(c->slot_buf);
  c->base = NULL;
  c->slot_of = c->slot_buf = NULL;
  kiln_llvm_twins_free(c->twins);
  c->twins = NULL;
  if (c->light) LLVMDisposeModule(c->light); /* not linked: an error path */
  if (c->tiled) LLVMDisposeModule(c->tiled);
  c->light = c->tiled = NULL;
}
