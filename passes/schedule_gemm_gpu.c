/* The GPU schedule of Gemm and MatMul: the convolution's shared-memory
 * tiled product (schedule_conv_gpu.c, kiln_gpu_gemm_build) with a plain
 * B access instead of the im2col gather -- a GEMM is the implicit GEMM
 * whose X' is a matrix.
 *
 *   rows    m < M:   Y's rows (A's rows; transA reads A down its columns)
 *   columns col < N: Y's columns (B's columns; transB reads B across rows)
 *   blockIdx.z:      MatMul's batch (1 for Gemm)
 *
 * Columns go to threadIdx.x so that both the B tile's loads (B[k, col],
 * consecutive threads consecutive columns: coalesced when B is [K, N]
 * row-major, the dense-gemm pass's form for constant weights) and the
 * stores of Y (row-major [M, N]) are coalesced.  The store of each sum is
 * Gemm's alpha/beta*C (kiln_lower_gemm_scale, shared with the CPU
 * lowering) and then the node's fused epilogue (kiln_lower_store), so a
 * Gemm + bias Add + Relu is one launch.
 *
 * MatMul's batch: an operand either has Y's batch dims (offset z * its
 * matrix size) or none / only 1s (offset 0: shared by every batch);
 * other broadcasts are refused and stay on the plain thread mapping.
 *
 * Tiles are chosen by the caller (schedule_gpu.c, see gemm_tile there). */
#include "conv_def.h"

#define B (&L->b)

typedef struct gemm_ctx {
  const kiln_value *y;
  const kiln_buf *c;   /* Gemm's C, or NULL */
  int nb, yi, yj;      /* Y's batch rank; whether Y has the row / the column dim */
  int64_t M, N;
} gemm_ctx;

/* Y[batch(z), m, col] = epilogue(scale(v)) */
static void gemm_store(kiln_lctx *L, const kiln_gpu_gemm *gm, kiln_lx *z, kiln_lx *m, kiln_lx *col, kiln_lx *v) {
  const gemm_ctx *c = gm->ctx;
  v = kiln_lower_gemm_scale(L, gm->node, c->c, v, m, col);
  kiln_lx *idx[KILN_MAX_RANK], *q = z;
  for (int d = c->nb - 1; d >= 0; d--) { /* z row-major over Y's batch dims */
    int64_t e = c->y->dims[d];
    idx[d] = e == 1 ? kiln_lx_const_i(B, 0) : d == 0 ? q : kiln_lx_bin(B, KILN_BIN_REM, q, kiln_lx_const_i(B, e));
    if (d > 0 && e > 1) q = kiln_lx_bin(B, KILN_BIN_DIV, q, kiln_lx_const_i(B, e));
  }
  int r = c->nb;
  if (c->yi) idx[r++] = m;
  if (c->yj) idx[r++] = col;
  kiln_lx *flat = kiln_lx_iadd(B, kiln_lx_iadd(B, kiln_lx_imul(B, z, c->M * c->N), kiln_lx_imul(B, m, c->N)), col);
  kiln_lower_store(L, gm->node, 0, idx, flat, v);
}

/* The offset step of a MatMul operand per batch z: its matrix size when
 * it has Y's batch, 0 when it has none; -1 otherwise. */
static int64_t batch_step(const kiln_value *v, int mat_rank, int64_t Z, int64_t size) {
  int64_t numel = 1;
  for (int d = 0; d < v->rank - mat_rank; d++) numel *= v->dims[d];
  return numel == 1 ? 0 : numel == Z ? size : -1;
}

/* gm's sizes and strides and c's shape for Gemm/MatMul node n; returns
 * NULL, or why the tiled schedule does not take n. */
static const char *geometry(const kiln_node *n, kiln_gpu_gemm *gm, gemm_ctx *c) {
  if (!n || (n->op != KILN_OP_GEMM && n->op != KILN_OP_MATMUL)) return "covers Gemm and MatMul only";
  const kiln_value *A = n->nin > 1 ? n->in[0] : NULL, *Bv = n->nin > 1 ? n->in[1] : NULL;
  const kiln_value *Y = n->nout > 0 ? n->out[0] : NULL;
  if (!A || !Bv || !Y || A->rank < 1 || Bv->rank < 1 || Y->layout != KILN_LAYOUT_PLAIN ||
      A->layout != KILN_LAYOUT_PLAIN || Bv->layout != KILN_LAYOUT_PLAIN)
    return "needs plain A, B and Y";
  gm->ct = kiln_lower_ctype(Y->dtype);
  if (gm->ct != KILN_DT_F32 && gm->ct != KILN_DT_F64) return "computes floats only";
  *c = (gemm_ctx){.y = Y};
  gm->Z = 1;
  if (n->op == KILN_OP_GEMM) {
    const kiln_attrs_gemm *at = n->attrs;
    if (A->rank != 2 || Bv->rank != 2 || Y->rank != 2) return "needs 2-D A, B and Y";
    gm->M = Y->dims[0];
    gm->N = Y->dims[1];
    gm->K = at->transA ? A->dims[0] : A->dims[1];
    gm->a_m = at->transA ? 1 : gm->K;
    gm->a_k = at->transA ? gm->M : 1;
    gm->b_k = at->transB ? 1 : gm->N;
    gm->b_n = at->transB ? gm->K : 1;
    c->yi = c->yj = 1;
  } else { /* numpy: a 1-D A is a row, a 1-D B a column, that dim absent from Y */
    int ra = A->rank, rb = Bv->rank;
    gm->M = ra > 1 ? A->dims[ra - 2] : 1;
    gm->K = A->dims[ra - 1];
    gm->N = rb > 1 ? Bv->dims[rb - 1] : 1;
    gm->a_m = gm->K;
    gm->a_k = 1;
    gm->b_k = gm->N;
    gm->b_n = 1;
    c->yi = ra > 1;
    c->yj = rb > 1;
    c->nb = Y->rank - c->yi - c->yj;
    for (int k = 0; k < c->nb; k++) gm->Z *= Y->dims[k];
    gm->a_z = batch_step(A, ra > 1 ? 2 : 1, gm->Z, gm->M * gm->K);
    gm->b_z = batch_step(Bv, rb > 1 ? 2 : 1, gm->Z, gm->K * gm->N);
    if (gm->a_z < 0 || gm->b_z < 0) return "does not broadcast part of a batch";
  }
  c->M = gm->M;
  c->N = gm->N;
  if (gm->M < 1 || gm->N < 1 || gm->K < 1 || gm->Z < 1) return "needs a non-empty product";
  return NULL;
}

int kiln_gpu_gemm_tiled(const kiln_node *n, int64_t *rows) {
  kiln_gpu_gemm gm = {0};
  gemm_ctx c;
  if (geometry(n, &gm, &c)) return 0;
  if (rows) *rows = gm.M;
  return 1;
}

int kiln_schedule_gemm_gpu(kiln_program *p, const kiln_node *n, const kiln_conv_gpu_tile *t, kiln_diag *d) {
  kiln_lctx Lc, *L = &Lc;
  kiln_gpu_schedule_ctx(L, p, n, d);
  kiln_gpu_gemm gm = {0};
  gemm_ctx c;
  const char *why = geometry(n, &gm, &c);
  if (why) return kiln_lower_fail(L, n, "the GPU GEMM schedule %s", why);
  if (kiln_lower_check_epilogue(L, n)) return -1;
  gm.store = gemm_store;
  gm.ctx = &c;
  gm.node = n;
  gm.a = kiln_lower_buf(L, n->in[0]);
  gm.b = kiln_lower_buf(L, n->in[1]);
  if (n->op == KILN_OP_GEMM && n->nin > 2 && n->in[2] && ((const kiln_attrs_gemm *)n->attrs)->beta != 0)
    c.c = kiln_lower_buf(L, n->in[2]);
  return kiln_gpu_gemm_build(L, n, &gm, t);
}
