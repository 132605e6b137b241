/* Shorthands for building loop IR inside a lowering or GPU schedule
 * function that has `kiln_lctx *L` in scope (passes/lower.h): the
 * schedules read as the index arithmetic they emit, e.g.
 * IADD(IMUL(IDX(oy), stride), CI(-pad)).  Include after lower.h or
 * conv_def.h; every macro is local to the including file's functions. */
#ifndef KILN_LOWER_MACROS_H
#define KILN_LOWER_MACROS_H

#define B (&L->b)
#define CI(v) kiln_lx_const_i(B, (v))
#define BIN(op, a, b) kiln_lx_bin(B, KILN_BIN_##op, (a), (b))
#define IADD(a, b) kiln_lx_iadd(B, (a), (b))
#define IMUL(a, k) kiln_lx_imul(B, (a), (k))
#define IDX(v) kiln_lx_index(B, (v))
#define LOCAL(v) kiln_lx_local(B, (v))

#endif
