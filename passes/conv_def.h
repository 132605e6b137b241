/* The convolution's compute definition, apart from any schedule of it.
 *
 * Conv:          Y[n, m, o] = B[m] + sum over c < Cg, taps k of
 *                             X[n, grp*Cg + c, o*s + k*d - pb] * W[m, c, k]
 * ConvTranspose: Y[n, m, o] = B[m] + sum over c < Cg, taps k where
 *                             t = o + pb - k*d is a multiple of s inside X of
 *                             X[n, grp*Cg + c, t / s] * W[grp*Cg + c, m', k]
 * with grp = m / Mg, m' = m % Mg, and positions outside X reading zero.
 * kiln_conv_geom holds every size and stride these formulas need, taken
 * once from the node (attributes canonical after shape inference); the
 * CPU lowering (lower_conv.c) and the GPU schedule (schedule_conv_gpu.c)
 * are two schedules of the same definition and read only this. */
#ifndef KILN_CONV_DEF_H
#define KILN_CONV_DEF_H

#include "lower.h"

/* The geometry Conv and ConvTranspose share. */
typedef struct kiln_conv_geom {
  int sp;                                       /* spatial dims, 1..3 */
  int64_t N, C, M, G, Cg, Mg;                   /* batch, in/out channels, groups */
  int64_t in[3], out[3], K[3], s[3], d[3], pb[3];
  int64_t xstr[3], ystr[3], kstr[3];            /* row-major spatial strides */
  int64_t isz, osz, ksz;                        /* spatial sizes */
} kiln_conv_geom;

/* Fills g from node n (Conv or ConvTranspose); returns 0, or -1 with a
 * located error in L (blocked layouts, non-float or mixed X/W types,
 * non-canonical window attributes). */
int kiln_conv_setup(kiln_lctx *L, const kiln_node *n, kiln_conv_geom *g);
/* The window part of g (g->sp set): spatial extents, strides and sizes
 * from canonical attributes a, input x and output y ("out" = y's spatial
 * dims; the weight gradient passes dY as y). */
void kiln_conv_geom_window(kiln_conv_geom *g, const kiln_attrs_conv *a, const kiln_value *x, const kiln_value *y);

/* Conv's definition as data: the geometry and the four tensors of
 *   Y[n, m, o] = B[m] + sum over c < Cg, taps k of X[n, grp*Cg + c, pos(o, k)] * W[m, c, k]
 * with grp = m / Mg and pos(o, k) = o*s + k*d - pb per spatial dim (X is
 * zero outside).  A schedule reorders this sum, never changes its terms. */
typedef struct kiln_conv_def {
  kiln_conv_geom g;
  const kiln_value *x, *w, *b, *y;  /* b NULL: no bias (0) */
} kiln_conv_def;

/* Fills def from Conv node n (kiln_conv_setup, plus W's shape checked
 * against X, Y and group); returns 0, or -1 with a located error in L. */
int kiln_conv_def_of(kiln_lctx *L, const kiln_node *n, kiln_conv_def *def);
/* pos along spatial dim i of output index o through tap k, o*s + k*d - pb,
 * and the condition that it lies in [0, in) -- NULL when it does for every
 * o < out and k < K (no padding reached on that side). */
kiln_lx *kiln_conv_in_pos(kiln_lb *b, const kiln_conv_geom *g, int i, kiln_lx *o, kiln_lx *k);
kiln_lx *kiln_conv_in_bounds(kiln_lb *b, const kiln_conv_geom *g, int i, kiln_lx *pos);

/* Bytes of scratch node n's kernel may take without raising the plain
 * memory plan's peak: what the graph values live while it runs leave free
 * below that peak, less a margin for the gaps (live_values.c); -1: no
 * memory to count with. */
int64_t kiln_lower_scratch_room(const kiln_lctx *L, const kiln_node *n);

/* The depthwise schedule (lower_conv_dw.c): Conv node n with geometry g
 * when group == C (any channel multiplier), 1-D or 2-D; returns 0, or -1
 * having emitted nothing for a shape it declines. */
int kiln_lower_conv_dw(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
/* The CPU register tile (lower_conv.c, "the register path"): sums of mb
 * rows (output channels) by vl positions kept in registers, at most
 * KILN_CONV_RB_MB_MAX by KILN_CONV_RB_VL_MAX; kiln_conv_reg_shape picks
 * them for target t, compute type ct and Mg output channels per group.
 * Convolutions summing fewer than KILN_CONV_RB_MIN_TERMS products per
 * output stay off that path. */
enum { KILN_CONV_RB_MB_MAX = 8, KILN_CONV_RB_VL_MAX = 64, KILN_CONV_RB_MIN_TERMS = 32 };
/* The strided kernel's limits (lower_conv_strided.c), which the NCHWc
 * layout pass (layout_nchwc.c) asks before it blocks a convolution's
 * values: outputs a tile, taps of a window row, products an output. */
enum { KILN_CONV_NCHWC_PB = 6, KILN_CONV_NCHWC_K_MAX = 11, KILN_CONV_NCHWC_MIN_TERMS = KILN_CONV_RB_MIN_TERMS };
/* Whether Conv n is one the NCHWc layout pass may give blocked values
 * (block b): the shapes lower_conv_strided.c takes from either layout. */
int kiln_conv_nchwc_shape(const kiln_node *n, int64_t b);
void kiln_conv_reg_shape(const kiln_target *t, kiln_dtype ct, int64_t Mg, int64_t *mb, int64_t *vl);

/* Conv as a GEMM over im2col rows (lower_conv_im2col.c): wanted for one
 * group with few input channels and several taps, or a 1x1 stride-1
 * unpadded convolution with 8..31 input channels, in compute type ct;
 * the lowering emits the node's kernel and returns 0. */
int kiln_conv_im2col_wanted(const kiln_conv_geom *g, kiln_dtype ct);
int kiln_lower_conv_im2col(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
/* Xc[n, c*taps + t, p] (rows of osz) = the input tap t of channel c reads
 * for output position p of image n (zero in the padding), for every image,
 * channel and output position, in one parallel loop: im2col's pack, for
 * the transposed GEMM's convolutions with taps. */
void kiln_conv_im2col_pack(kiln_lctx *L, const kiln_conv_geom *g, const kiln_buf *x, const kiln_buf *xc, kiln_dtype ct);
/* Conv as a transposed GEMM, vectors over output channels
 * (lower_conv_gemmt.c): wanted for a one-group convolution on a small map
 * (<= 169 positions: 13x13) with at least KILN_CONV_RB_MIN_TERMS products
 * per output and constant weights: 1x1 stride-1 unpadded ones, and others
 * (over packed im2col rows) where the positions leave a partial vector
 * and the channels fill a block. */
int kiln_conv_gemmt_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
int kiln_lower_conv_gemmt(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
/* Wt[blk, k, l] = W[blk*rv + l, k] (0 past M): W [M, K] re-laid in blocks
 * of rv output channels, a weight buffer in compute type ct. */
const kiln_buf *kiln_conv_blocked_weights(kiln_lctx *L, const kiln_value *v, int64_t M, int64_t K, int64_t rv,
                                          kiln_dtype ct);
/* Strided 2-D Conv reading X in place, vectors along output channels
 * (lower_conv_strided.c): wanted for one group, strides > 1, constant
 * weights and at least a whole block of output channels, on a lean_memory
 * target where the register path's phase planes do not fit (!planes_fit);
 * the lowering emits the node's kernel and returns 0. */
int kiln_conv_strided_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g, int planes_fit);
int kiln_lower_conv_strided(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
/* Conv 3x3 stride 1 as Winograd's F(m x m, 3 x 3) (lower_conv_winograd.c)
 * for one group, at least 32 input and output channels, float32 outputs
 * and constant weights, on a CPU target, where its scratch fits in memory
 * the plain plan leaves free; returns 0, or -1 having emitted nothing for
 * a convolution it declines (as kiln_lower_conv_dw), or 1 having emitted
 * nothing for one it takes whose fused pool's window does not divide its
 * tile (kiln_lower_conv lowers that one without the pool). */
int kiln_lower_conv_winograd(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
/* ConvTranspose whose kernel equals its stride (no pads, dilation 1, out
 * == in * stride, one group, constant weights): every phase a 1x1
 * convolution, all of them one transposed GEMM (lower_conv_gemmt.c). */
int kiln_convt_gemmt_wanted(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);
int kiln_lower_convt_gemmt(kiln_lctx *L, const kiln_node *n, const kiln_conv_geom *g);

/* A GPU schedule of Conv (schedule_conv_gpu.c): implicit GEMM per group,
 * rows = the group's output channels, columns = N * output positions,
 * reduction = C/group * taps.  A block computes a bm x bn tile of outputs
 * with (bm/rm) x (bn/rn) threads, each an rm x rn micro-tile in LOCAL
 * registers; bk-deep slices of W and of X (gathered im2col-style on the
 * fly, zero outside the input) go through SHARED tiles between barriers. */
typedef struct kiln_conv_gpu_tile {
  int64_t bm, bn, bk;  /* block tile: output channels, output columns, reduction step */
  int64_t rm, rn;      /* per-thread micro-tile (divides bm, bn) */
} kiln_conv_gpu_tile;

/* The shared-memory tiled product the GPU schedules share: for z < Z
 * (blockIdx.z), Y[z, m, col] = sum over kg < K of A[z, m, kg] * B[z, kg, col],
 * m < M, col < N, in compute type ct, with A[z, m, kg] = a[z*a_z + m*a_m +
 * kg*a_k] and B plain (b[z*b_z + kg*b_k + col*b_n]) or, when conv is set,
 * the im2col X' of that convolution (b = X, z the group).  store emits
 * what becomes of each finished sum v (bias, Gemm's alpha/beta*C, the
 * node's fused epilogue, the store itself); it runs only where m < M and
 * col < N.  Conv and Gemm/MatMul (schedule_gemm_gpu.c) both build it. */
typedef struct kiln_gpu_gemm kiln_gpu_gemm;
struct kiln_gpu_gemm {
  int64_t M, N, K, Z;
  kiln_dtype ct;
  const kiln_buf *a, *b;
  int64_t a_z, a_m, a_k, b_z, b_k, b_n;
  const kiln_conv_geom *conv;
  void (*store)(kiln_lctx *L, const kiln_gpu_gemm *gm, kiln_lx *z, kiln_lx *m, kiln_lx *col, kiln_lx *v);
  const void *ctx;       /* the store's data */
  const kiln_node *node; /* the node computed */
};
/* Emits one GPU kernel computing gm for node n with tile t (see
 * kiln_conv_gpu_tile); returns 0, or -1 with a located error in L->d. */
int kiln_gpu_gemm_build(kiln_lctx *L, const kiln_node *n, const kiln_gpu_gemm *gm, const kiln_conv_gpu_tile *t);
/* L set up to schedule node n of program p (already lowered): n's values
 * and its epilogue steps' keep the buffers the lowering gave them. */
void kiln_gpu_schedule_ctx(kiln_lctx *L, kiln_program *p, const kiln_node *n, kiln_diag *d);

/* Appends to p (lowered from n's graph: n's values' buffers are found by
 * name, others added) one GPU kernel, one launch, computing Conv node n
 * with tile t, its fused epilogue applied at the store.  Returns 0, or -1
 * with a located error in d (not a Conv, a tile the block cannot hold). */
int kiln_schedule_conv_gpu(kiln_program *p, const kiln_node *n, const kiln_conv_gpu_tile *t, kiln_diag *d);
/* The same for Gemm or MatMul node n (schedule_gemm_gpu.c): rows = Y's
 * rows, columns = Y's columns, blockIdx.z = MatMul's batch; refuses (-1)
 * a batch broadcast other than a whole operand shared by every batch. */
int kiln_schedule_gemm_gpu(kiln_program *p, const kiln_node *n, const kiln_conv_gpu_tile *t, kiln_diag *d);

/* The direct depthwise GPU schedule (schedule_dw_gpu.c): a block computes
 * tz planes x ty output rows x tx*rw output columns from a SHARED input
 * tile with its halo; thread (x, y, z) computes rw outputs of one row,
 * tx apart. */
typedef struct kiln_dw_gpu_tile {
  int64_t tx, ty, tz;  /* threads along output columns, rows, planes (n, m) */
  int64_t rw;          /* outputs per thread along a row */
} kiln_dw_gpu_tile;

/* g is depthwise (group == C, one input channel per group), 1-D or 2-D. */
int kiln_dw_gpu_wanted(const kiln_conv_geom *g);
/* The tile the schedule picks for g with compute type ct (see the file's top). */
void kiln_dw_gpu_tile_for(const kiln_conv_geom *g, kiln_dtype ct, kiln_dw_gpu_tile *t);
/* Appends to p one GPU kernel computing depthwise Conv node n and its
 * fused epilogue with tile t (NULL: kiln_dw_gpu_tile_for's).  Returns 0,
 * or -1 with a located error in d (not depthwise, a tile over a block's
 * limits or 48 KiB of shared memory). */
int kiln_schedule_dw_gpu(kiln_program *p, const kiln_node *n, const kiln_dw_gpu_tile *t, kiln_diag *d);

#endif
