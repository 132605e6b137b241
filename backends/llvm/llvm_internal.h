/* Shared by the LLVM backend's files. */
#ifndef KILN_LLVM_INTERNAL_H
#define KILN_LLVM_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdlib.h>

#include "kiln_llvm.h"

typedef struct kiln_llvm_twins kiln_llvm_twins;

typedef struct cg {
  LLVMContextRef ctx;
  LLVMModuleRef mod;    /* the module being printed into: main, light or tiled */
  LLVMModuleRef main;   /* the entry, the kernels' wrappers, heavy functions (llvm_optimise.c) */
  LLVMModuleRef light;  /* the light functions; NULL: everything in main */
  LLVMModuleRef tiled;  /* heavy functions of kernels with explicit vectors (register
                           tiles); NULL: in main */
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMValueRef *base;   /* per buffer id: its base pointer in this kernel */
  int *slot_of;         /* per buffer id: its slot in this kernel's body (-1: unused) */
  int *slot_buf;        /* per slot: the buffer id */
  const kiln_program *prog; /* the program being printed */
  int nslots;           /* this kernel's slots (the pool's slot is the next) */
  LLVMValueRef *index;  /* per loop var: the induction variable */
  LLVMValueRef *local;  /* per local: its alloca (a lane of a group's: llvm_lanes.c) */
  LLVMValueRef *group;  /* per local starting a group of anchor[] f32 locals: the group's
                           <anchor x float> alloca; NULL when lanes is 0 */
  unsigned char *anchor; /* per local: 0, or a group of that many lanes may start there
                           (`lanes`, or a half or quarter of it: llvm_lanes.c) */
  int lane_groups, lane_runs, lanes_max; /* groups and runs printed, widest (--time) */
  int lanes;            /* f32 lanes of this kernel's register tiles as vectors; 0: none */
  const kiln_ls *block; /* the statement list being printed (stmts): the loads beside a
                           run that make its every-other loads whole (llvm_lanes.c) */
  const unsigned char *used; /* the buffers the function being printed uses (load_bases) */
  const char *entry;    /* name of the function running every kernel */
  int profile;          /* the entry takes (bufs, stamps) and marks each kernel's
                           start and end (kiln_rt_profile_mark); JIT only */
  int native_f16;       /* the target converts f16 <-> f32 in hardware (F16C) */
  kiln_llvm_twins *twins; /* the kernels printed so far, by key (llvm_twins.c) */
} cg;

/* llvm_twins.c: a kernel's printed functions, and kernels that share them. */
typedef struct kiln_llvm_printed {
  LLVMValueRef body;    /* kN_b, as seen from the main module */
  LLVMValueRef *loops;  /* kN_pJ, as seen from the main module */
  int nloops;
} kiln_llvm_printed;
kiln_llvm_twins *kiln_llvm_twins_new(void);
void kiln_llvm_twins_free(kiln_llvm_twins *t);
/* The functions printed for an earlier kernel that kn (its slots assigned
 * in c) would print again, given the printer's per-function decisions
 * (outlined, tiers); NULL when kn is the first of its kind, whose key is
 * then kept for kiln_llvm_twin_add. */
const kiln_llvm_printed *kiln_llvm_twin_find(cg *c, const kiln_kernel *kn, const int *decisions, int ndecisions);
/* llvm_codegen.c: the slot a function using the buffers marked in used
 * reads buffer id's base from. */
int kiln_llvm_load_slot(const cg *c, const unsigned char *used, int id);
/* llvm_lanes.c: register tiles as vectors.  The allocas for the DECL s
 * (a group's when it starts one: the DECLs it covers); the run of lanes
 * starting at s printed as vector statements (its last statement), or
 * NULL. */
#define KILN_LLVM_MAX_LANES 16
int kiln_llvm_tile_lanes(const kiln_program *p);
void kiln_llvm_lanes_report(const cg *c, kiln_timing *t);
void kiln_llvm_lane_anchors(cg *c, const kiln_ls *block);
int kiln_llvm_lane_alloca(cg *c, const kiln_ls *s);
const kiln_ls *kiln_llvm_lane_run(cg *c, const kiln_ls *s);
/* llvm_codegen.c, for llvm_lanes.c: expressions, operators on given
 * operands (scalars or vectors), buffer addresses, intrinsics. */
LLVMValueRef kiln_llvm_expr(cg *c, const kiln_lx *e);
int kiln_llvm_is_round_f16(const cg *c, const kiln_lx *e);
LLVMValueRef kiln_llvm_unary_op(cg *c, const kiln_lx *e, LLVMValueRef a);
LLVMValueRef kiln_llvm_binary_op(cg *c, const kiln_lx *e, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef kiln_llvm_buf_ptr(cg *c, const kiln_buf *b, LLVMValueRef index);
LLVMValueRef kiln_llvm_call_intrinsic(cg *c, const char *name, LLVMTypeRef *types, int ntypes, LLVMValueRef *args,
                                      int nargs);
/* Records the functions printed for the kernel kiln_llvm_twin_find last
 * found no twin of.  -1: out of memory. */
int kiln_llvm_twin_add(cg *c, LLVMValueRef body, const LLVMValueRef *loops, int nloops);
/* With --time: "kiln: llvm: K kernels, P printed, T share a twin's functions". */
void kiln_llvm_twins_report(const cg *c, kiln_timing *t);

/* Prints p into c->mod (and c->light, c->tiled, when set).  -1: out of memory. */
int kiln_llvm_codegen(cg *c, const kiln_program *p);
/* llvm_jit.c: a target machine for KILN_CPU's CPU, or this host's. */
LLVMTargetMachineRef kiln_llvm_host_machine(const char *triple, kiln_diag *d);
void kiln_llvm_codegen_free(cg *c);
/* llvm_optimise.c: runs the tiers' pipelines (kiln_llvm_heavy and the
 * kernel's explicit_vectors decide the tier) and links c->light and
 * c->tiled into c->mod. */
/* A tier's module (c->light, c->tiled) for c->mod's target (NULL when
 * KILN_OPT=O3: one tier); all modules verified (-1 with d set). */
LLVMModuleRef kiln_llvm_tier_module(cg *c, const char *name);
int kiln_llvm_verify(cg *c, kiln_diag *d);
int kiln_llvm_optimise(cg *c, LLVMTargetMachineRef tm, kiln_timing *t, kiln_diag *d);
LLVMTypeRef kiln_llvm_value_type(cg *c, kiln_dtype t);
/* llvm_portable.c: f16/bf16 conversions as bit manipulation, the target
 * CPU (KILN_CPU overrides the host), the symbols generated code may use. */
LLVMValueRef kiln_llvm_narrow_f32(cg *c, LLVMValueRef v, int bf16);
LLVMValueRef kiln_llvm_widen_f32(cg *c, LLVMValueRef v, int bf16);
/* The same for f16 through LLVM's half conversions (cg.native_f16), bit
 * for bit the results of the two above. */
LLVMValueRef kiln_llvm_narrow_f16_native(cg *c, LLVMValueRef v);
LLVMValueRef kiln_llvm_round_f16_native(cg *c, LLVMValueRef v); /* f32(f16(v)) */
LLVMValueRef kiln_llvm_widen_f16_native(cg *c, LLVMValueRef v);
int kiln_llvm_tm_native_f16(LLVMTargetMachineRef tm);
void kiln_llvm_target_cpu(char **cpu, char **features);
void kiln_llvm_target_cpu_free(char *cpu, char *features);
int kiln_llvm_symbol_allowed(const char *name);
int kiln_llvm_object_foreign_symbols(LLVMMemoryBufferRef obj, char *bad, size_t size);

#endif
