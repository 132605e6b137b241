/* Matrix products: Gemm and MatMul.  Both lower to one shared kernel body
 * per (batch of) matrix product, computed in kiln_lower_ctype (f16/bf16 in
 * f32):
 *
 *   row-accumulate form (B contiguous along N and Y stored in the compute
 *   type: MatMul, Gemm without transB): i (parallel), chunk of columns
 *   (parallel), k, j — the chunk of Y's row i is zeroed, then for each k
 *   the scalar A[i,k] times B's row k (that chunk of it) is added into it
 *   (up to 8 k per pass over the chunk, in k order: emit_mm), so the
 *   innermost loop runs over contiguous B and Y and vectorises; an
 *   epilogue pass over the chunk applies alpha and beta*C.  This form
 *   stays explicit code: its sum over k accumulates a whole row of Y in
 *   memory (a loop interchange of the dot form), which the loop IR's
 *   reduction, a scalar, does not state yet.
 *
 *   dot form (Gemm with transB, whose B rows are contiguous along K, as in
 *   exported Linear layers; or an f16/bf16 Y, which must not accumulate in
 *   its storage type): i (parallel), j, k — one ADD reduction per output
 *   (ir/loop.h), k innermost, expanded into DOT_W lane accumulators (see
 *   dot()).  On a 512^3 f32
 *   Gemm with transB=1 the row form (strided B) took ~600 ms, a single
 *   serial accumulator ~300 ms, the lane accumulators ~40 ms (row form
 *   without transB: ~20 ms).
 *
 * Gemm follows the ONNX reference: Y = (op(A) op(B)) * alpha + C * beta,
 * with C (numpy-broadcast to [M,N]) skipped when absent or beta == 0. */
#include <string.h>

#include "lower.h"

#define LB (&L->b)



typedef struct mm {
  const kiln_buf *a, *b, *y;
  int64_t M, N, K;
  int64_t sa_i, sa_k, sb_k, sb_j; /* element strides of A and B */
  int b_chunked;                  /* B re-laid chunk-major: Bc[c, k, jj] = B[k, c*jc + jj] (chunk_weights) */
  kiln_lx *a0, *b0, *y0;          /* base offsets (the batch's matrices) */
  /* epilogue (Gemm): v * alpha + C[i,j] * beta */
  double alpha, beta;
  const kiln_value *cv;           /* NULL: no C */
  const kiln_buf *c;
  /* the final store (lower_store.c): Y's logical index is the batch
   * index, then i unless A is 1-D, then j unless B is 1-D */
  const kiln_node *n;
  kiln_lx **bidx;
  int nb, yi, yj;
} mm;

static void store_y(kiln_lctx *L, const mm *m, kiln_lx *i, kiln_lx *j, kiln_lx *flat, kiln_lx *v) {
  kiln_lx *idx[KILN_MAX_RANK];
  int r = 0;
  for (; r < m->nb; r++) idx[r] = m->bidx[r];
  if (m->yi) idx[r++] = i;
  if (m->yj) idx[r++] = j;
  kiln_lower_store(L, m->n, 0, idx, flat, v);
}

kiln_lx *kiln_lower_gemm_scale(kiln_lctx *L, const kiln_node *n, const kiln_buf *c, kiln_lx *v, kiln_lx *i,
                               kiln_lx *j) {
  if (n->op != KILN_OP_GEMM) return v;
  const kiln_attrs_gemm *at = n->attrs;
  kiln_dtype ct = v->dtype;
  if (at->alpha != 1) v = kiln_lx_bin(LB, KILN_BIN_MUL, v, kiln_lx_const_f(LB, ct, at->alpha));
  if (c && n->nin > 2 && n->in[2] && at->beta != 0) {
    kiln_lx *ij[2] = {i, j};
    kiln_lx *cv = kiln_lower_load(L, c, kiln_lower_bcast_offset(L, n->in[2], 2, ij));
    cv = kiln_lx_cast(LB, ct, cv);
    if (at->beta != 1) cv = kiln_lx_bin(LB, KILN_BIN_MUL, cv, kiln_lx_const_f(LB, ct, at->beta));
    v = kiln_lx_bin(LB, KILN_BIN_ADD, v, cv);
  }
  return v;
}

static kiln_lx *epilogue(kiln_lctx *L, const mm *m, kiln_lx *v, kiln_lx *i, kiln_lx *j) {
  return kiln_lower_gemm_scale(L, m->n, m->c, v, i, j);
}

static int has_epilogue(const mm *m) { return m->alpha != 1 || m->cv; }

/* sum_k A[a_row + k*sa_k] * B[b_col + k*sb_k] in ct: the loop IR's ADD
 * reduction (ir/loop.h).  Long sums ask for DOT_W lanes (independent
 * partial sums, lane l taking k = l mod DOT_W, folded in halves at the
 * end; expand_reduce.c): chains LLVM's SLP vectoriser turns into vector
 * accumulators, where a single serial sum would be latency-bound and
 * cannot be reassociated.  The summation order differs from a serial sum
 * by rounding only. */
enum { DOT_W = 8 };
static kiln_lx *dot(kiln_lctx *L, kiln_nest *ns, const mm *m, kiln_lx *a_row, kiln_lx *b_col, kiln_dtype ct) {
  kiln_sched lanes = {.vector = m->K >= 2 * DOT_W ? DOT_W : 0};
  int acc = kiln_lb_reduce_begin(LB, KILN_RED_ADD, ct, NULL, lanes);
  kiln_lx *k = kiln_nest_for(L, ns, m->K, 0);
  kiln_lx *av = kiln_lower_load(L, m->a, kiln_lx_iadd(LB, a_row, kiln_lx_imul(LB, k, m->sa_k)));
  kiln_lx *bv = kiln_lower_load(L, m->b, kiln_lx_iadd(LB, b_col, kiln_lx_imul(LB, k, m->sb_k)));
  kiln_lb_combine(LB, acc, kiln_lx_bin(LB, KILN_BIN_MUL, av, bv));
  kiln_nest_end(L, ns);
  kiln_lb_reduce_end(LB);
  return kiln_lx_local(LB, acc);
}

/* The row form's chunk of columns: the largest divisor of n at most
 * ROW_CHUNK (a whole number of chunks, no tail), when that is at least 64
 * wide (narrower chunks would cost more in loop overhead than they win);
 * else n (one chunk). */
enum { ROW_CHUNK = 512 };
static int64_t row_chunk(int64_t n) {
  for (int64_t d = n < ROW_CHUNK ? n : ROW_CHUNK; d >= 64; d--)
    if (n % d == 0) return d;
  return n;
}

/* Emits Y[y0 + i*N + j] = epilogue(sum_k A[a0 + i*sa_i + k*sa_k] * B[b0 + k*sb_k + j*sb_j]).
 * `par`: the i loop may be parallel (it is the outermost loop). */
static void emit_mm(kiln_lctx *L, kiln_nest *ns, const mm *m, int par) {
  kiln_dtype ct = kiln_lower_ctype(m->a->dtype);
  int row_form = m->sb_j == 1 && m->y->dtype == ct;
  kiln_lx *i = kiln_nest_for(L, ns, m->M, par);
  kiln_lx *a_row = kiln_lx_iadd(LB, m->a0, kiln_lx_imul(LB, i, m->sa_i));
  kiln_lx *y_row = kiln_lx_iadd(LB, m->y0, kiln_lx_imul(LB, i, m->N));
  if (row_form) {
    /* Y's row in chunks of jc columns, each zeroed, accumulated over k and
     * finished on its own: the chunks are independent, so a batch-1 Gemm
     * (one row: a classifier, AlexNet's and VGG's 4096-wide layers, where
     * the k loop carries the sums) still has a parallel loop for the
     * thread pool, and a chunk of Y stays in L1 while B streams past */
    int64_t jc = row_chunk(m->N), nc = m->N / jc;
    kiln_lx *ci = kiln_nest_for(L, ns, nc, par), *c0 = kiln_lx_imul(LB, ci, jc);
    kiln_lx *j = kiln_lx_iadd(LB, c0, kiln_nest_for(L, ns, jc, par));
    kiln_lb_store(LB, m->y, kiln_lx_iadd(LB, y_row, j), kiln_lx_const_f(LB, ct, 0));
    kiln_nest_end(L, ns);
    /* KU consecutive k per pass over the chunk, added one after another
     * in k order: the same sums, rounded the same way, as one k per pass,
     * with an eighth of the loads and stores of Y's chunk.  With one k a
     * pass, a store per FMA held ResNet-50's batch-1 classifier
     * (2048 -> 1000) to 0.31 ms; with 4 a pass 0.23, with 8 0.20 */
    enum { KU_MAX = 8 };
    int64_t ku = KU_MAX;
    while (m->K % ku) ku /= 2;
    kiln_lx *k0 = kiln_lx_imul(LB, kiln_nest_for(L, ns, m->K / ku, 0), ku);
    int aik[KU_MAX];
    kiln_lx *b_row[KU_MAX];
    for (int u = 0; u < ku; u++) {
      kiln_lx *k = kiln_lx_iadd(LB, k0, kiln_lx_const_i(LB, u));
      aik[u] = kiln_lb_decl(LB, ct, kiln_lower_load(L, m->a, kiln_lx_iadd(LB, a_row, kiln_lx_imul(LB, k, m->sa_k))));
      b_row[u] = kiln_lx_iadd(LB, m->b0, kiln_lx_imul(LB, k, m->b_chunked ? jc : m->sb_k));
      if (m->b_chunked) b_row[u] = kiln_lx_iadd(LB, b_row[u], kiln_lx_imul(LB, ci, m->K * jc));
    }
    kiln_lx *jj = kiln_nest_for(L, ns, jc, 0);
    j = kiln_lx_iadd(LB, c0, jj);
    kiln_lx *yo = kiln_lx_iadd(LB, y_row, j);
    kiln_lx *sum = kiln_lx_load(LB, m->y, yo);
    for (int u = 0; u < ku; u++) {
      kiln_lx *bkj = kiln_lower_load(L, m->b, kiln_lx_iadd(LB, b_row[u], m->b_chunked ? jj : kiln_lx_imul(LB, j, m->sb_j)));
      sum = kiln_lx_bin(LB, KILN_BIN_ADD, sum, kiln_lx_bin(LB, KILN_BIN_MUL, kiln_lx_local(LB, aik[u]), bkj));
    }
    kiln_lb_store(LB, m->y, yo, sum);
    kiln_nest_end(L, ns);
    kiln_nest_end(L, ns);
    if (has_epilogue(m) || kiln_lower_has_epilogue(m->n)) {
      j = kiln_lx_iadd(LB, c0, kiln_nest_for(L, ns, jc, par));
      yo = kiln_lx_iadd(LB, y_row, j);
      store_y(L, m, i, j, yo, epilogue(L, m, kiln_lx_load(LB, m->y, yo), i, j));
      kiln_nest_end(L, ns);
    }
    kiln_nest_end(L, ns);
  } else {
    kiln_lx *j = kiln_nest_for(L, ns, m->N, par);
    kiln_lx *b_col = kiln_lx_iadd(LB, m->b0, kiln_lx_imul(LB, j, m->sb_j));
    store_y(L, m, i, j, kiln_lx_iadd(LB, y_row, j), epilogue(L, m, dot(L, ns, m, a_row, b_col, ct), i, j));
    kiln_nest_end(L, ns);
  }
  kiln_nest_end(L, ns);
}

/* A constant B [K, N] of the row form re-laid chunk-major, Bc[c, k, jj] =
 * B[k, c*jc + jj], made here (f32/f64, the compute type): each chunk's
 * k loop then streams one contiguous K x jc block instead of K rows of
 * jc columns at a stride of N.  A batch-1 classifier reads every weight
 * once, so it runs at the speed memory delivers B: with rows of 2 KB
 * 4 KB apart (ResNet-50's 2048 -> 1000 in two chunks) the prefetchers
 * delivered ~10 GB/s. */
static size_t chunked_at(int64_t src, const int64_t *shape) { /* shape: K, N, jc */
  int64_t k = src / shape[1], j = src % shape[1], jc = shape[2];
  return (size_t)(((j / jc) * shape[0] + k) * jc + j % jc);
}

static const kiln_buf *chunk_weights(kiln_lctx *L, const kiln_value *v, int64_t K, int64_t N, int64_t jc,
                                     kiln_dtype ct) {
  const int64_t shape[3] = {K, N, jc};
  return kiln_lower_relaid_weight(L, v, ct, K * N, "chunked", chunked_at, shape, jc, 1); /* (jc divides N) */
}

/* A constant B given transposed (transB: B is [N, K], as exporters write
 * Linear layers) re-laid for the row form in the same one copy: Bc[c, k,
 * jj] = B[c*jc + jj, k] (jc = N: plain B^T).  The dense-gemm pass used to
 * transpose such a B into a graph constant that chunk_weights then copied
 * again: two fresh copies of VGG-16's 400 MB fc6, at the cost of page
 * faults, before any of it ran.  64 x 64 tiles, j innermost: a tile's
 * writes run along jj (contiguous) while its reads touch 64 rows of B.
 * (On a GPU target dense-gemm still transposes such a B in the graph:
 * the GPU schedule reads it from there.) */
static const kiln_buf *chunk_weights_t(kiln_lctx *L, const kiln_value *v, int64_t K, int64_t N, int64_t jc,
                                       kiln_dtype ct) {
  enum { TB = 64 };
  size_t es = kiln_dtype_size(ct);
  unsigned char *out = kiln_arena_array(L->b.p->arena, (size_t)(K * N) + 1, es);
  const unsigned char *src = v->data;
  size_t at[TB]; /* where row j of B (k = 0) lands: no division per element */
  for (int64_t j0 = 0; j0 < N; j0 += TB) {
    int64_t jn = N - j0 < TB ? N - j0 : TB;
    for (int64_t j = 0; j < jn; j++) at[j] = (size_t)((j0 + j) / jc * K * jc + (j0 + j) % jc);
    for (int64_t k0 = 0; k0 < K; k0 += TB)
      for (int64_t k = k0; k < k0 + TB && k < K; k++) {
        size_t kk = (size_t)(k * jc);
        const unsigned char *col = src + es * (size_t)(j0 * K + k);
        if (es == 4) /* memcpy: initializers need not be aligned */
          for (int64_t j = 0; j < jn; j++) memcpy(out + 4 * (at[j] + kk), col + 4 * (size_t)(j * K), 4);
        else
          for (int64_t j = 0; j < jn; j++) memcpy(out + 8 * (at[j] + kk), col + 8 * (size_t)(j * K), 8);
      }
  }
  return kiln_lower_weight_data(L, v, ct, out, K * N, jc < N ? "chunked" : "T");
}

int kiln_lower_gemm(kiln_lctx *L, const kiln_node *n) {
  const kiln_attrs_gemm *at = n->attrs;
  const kiln_value *A = n->in[0], *Bv = n->in[1], *C = n->nin > 2 ? n->in[2] : NULL, *Y = n->out[0];
  mm m = {0};
  m.a = kiln_lower_weight_ct(L, A);
  m.y = kiln_lower_buf(L, Y);
  m.M = Y->dims[0];
  m.N = Y->dims[1];
  m.K = at->transA ? A->dims[0] : A->dims[1];
  m.sa_i = at->transA ? 1 : m.K;
  m.sa_k = at->transA ? m.M : 1;
  m.sb_k = at->transB ? 1 : m.N;
  m.sb_j = at->transB ? m.K : 1;
  m.alpha = at->alpha;
  m.beta = at->beta;
  m.n = n;
  kiln_dtype ct = kiln_lower_ctype(A->dtype);
  int fixed_b = kiln_lower_fixed_weight(L, Bv) && Bv->rank == 2 && m.y->dtype == ct && (ct == KILN_DT_F32 || ct == KILN_DT_F64);
  if (!at->transB && fixed_b && row_chunk(m.N) < m.N) { /* the row form, more than one chunk */
    m.b = chunk_weights(L, Bv, m.K, m.N, row_chunk(m.N), ct);
    m.b_chunked = 1;
  } else if (at->transB && fixed_b && Bv->dtype == ct && L->target->kind != KILN_TARGET_GPU) {
    /* the row form over B^T, transposed here (a GPU target's schedule
     * replaces this kernel and reads B as it is) */
    m.b = chunk_weights_t(L, Bv, m.K, m.N, row_chunk(m.N), ct);
    m.b_chunked = 1;
    m.sb_k = m.N;
    m.sb_j = 1;
  } else m.b = kiln_lower_weight_ct(L, Bv); /* f16 weights: read as f32 copies */
  m.yi = m.yj = 1;
  if (C && at->beta != 0) {
    m.cv = C;
    m.c = kiln_lower_weight_ct(L, C);
  }
  kiln_lower_begin(L, n);
  m.a0 = m.b0 = m.y0 = kiln_lx_const_i(LB, 0);
  kiln_nest ns = {0};
  emit_mm(L, &ns, &m, 1);
  return 0;
}

/* MatMul, numpy semantics: a 1-D A is a row [1,K] and a 1-D B a column
 * [K,1] (that dim absent from Y); the batch dims (all but the last two)
 * broadcast. */
int kiln_lower_matmul(kiln_lctx *L, const kiln_node *n) {
  const kiln_value *A = n->in[0], *Bv = n->in[1], *Y = n->out[0];
  int ra = A->rank, rb = Bv->rank;
  mm m = {0};
  m.a = kiln_lower_weight_ct(L, A);
  m.b = kiln_lower_weight_ct(L, Bv); /* f16 weights: read as f32 copies */
  m.y = kiln_lower_buf(L, Y);
  m.M = ra > 1 ? A->dims[ra - 2] : 1;
  m.K = A->dims[ra - 1];
  m.N = rb > 1 ? Bv->dims[rb - 1] : 1;
  m.sa_i = m.K;
  m.sa_k = 1;
  m.sb_k = m.N;
  m.sb_j = 1;
  m.alpha = 1;
  m.n = n;
  m.yi = ra > 1;
  m.yj = rb > 1;
  int nb = Y->rank - (ra > 1) - (rb > 1); /* batch rank */
  kiln_value abat = *A, bbat = *Bv, ybat = *Y;
  abat.rank = ra > 2 ? ra - 2 : 0;
  bbat.rank = rb > 2 ? rb - 2 : 0;
  ybat.rank = nb;
  kiln_lower_begin(L, n);
  kiln_nest ns = {0};
  kiln_lx *bidx[KILN_MAX_RANK];
  for (int d = 0; d < nb; d++) bidx[d] = kiln_nest_for(L, &ns, Y->dims[d], 1);
  m.a0 = kiln_lx_imul(LB, kiln_lower_bcast_offset(L, &abat, nb, bidx), m.M * m.K);
  m.b0 = kiln_lx_imul(LB, kiln_lower_bcast_offset(L, &bbat, nb, bidx), m.K * m.N);
  m.y0 = kiln_lx_imul(LB, kiln_lower_offset(L, &ybat, bidx), m.M * m.N);
  m.bidx = bidx;
  m.nb = nb;
  emit_mm(L, &ns, &m, 1);
  for (int d = 0; d < nb; d++) kiln_nest_end(L, &ns);
  return 0;
}
