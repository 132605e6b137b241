/* Graph passes.  Each is `ir -> ir`: it transforms the graph in place and
 * returns 0, or -1 with a located diagnostic.  Contracts are one line each,
 * at the top of each pass's file. */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "../ir/graph.h"

/* Runs shape functions in order and folds constants; see infer_shapes.c. */
int kiln_pass_infer_shapes(kiln_graph *g, kiln_diag *d);
/* Folds inference BatchNormalization into Conv/Gemm weights and bypasses
 * no-op Cast/Identity/Transpose pairs; see fold_batchnorm.c. */
int kiln_pass_fold_batchnorm(kiln_graph *g, kiln_diag *d);
/* Gemm with transB = 1 reads B^T (transB = 0) where the lowering would
 * not re-lay B itself; a Conv whose one window covers its whole input
 * becomes Flatten + Gemm + Reshape: both lower to the vectorised row
 * form; see dense_gemm.c.  t: the target (NULL: a CPU). */
struct kiln_target;
int kiln_pass_dense_gemm(kiln_graph *g, const struct kiln_target *t, kiln_diag *d);
/* per_image.c: a batch-N inference graph computed image by image is
 * rewritten for one image, g->images = N (the backends loop). */
int kiln_pass_per_image(kiln_graph *g, kiln_diag *d);
/* Replaces symbolic dim `sym` (a negative dim) by `value` on every value. */
void kiln_pass_bind_sym(kiln_graph *g, kiln_dim sym, int64_t value);
/* Turns graph input `name` into a constant with the given contents (kiln
 * specialises on inputs that determine shapes).  data must outlive g. */
int kiln_pass_bind_input(kiln_graph *g, const char *name, kiln_dtype t, int rank, const int64_t *dims,
                         const void *data, kiln_diag *d);

/* On a CPU target, f16/bf16 tensors inside an inference graph become f32
 * tensors holding the same (rounded) values; see widen_f16.c. */
struct kiln_target;
int kiln_pass_widen_f16(kiln_graph *g, const struct kiln_target *t, kiln_diag *d);

/* Fuses elementwise chains into the epilogue of the Conv, ConvTranspose,
 * Gemm, MatMul or elementwise node producing them; see fuse_epilogue.c. */
int kiln_pass_fuse_epilogue(kiln_graph *g, kiln_diag *d);
/* Appends `step` (g->nodes[to]) to into's epilogue, whose chain so far
 * ends at g->nodes[from], when no node between them updates a value in
 * place (the kernel moves to the step's place) and the chain stays
 * computable (kiln_epilogue_refusal); 1 when kept, else 0 with nothing
 * changed: the step stays a kernel of its own. */
int kiln_epilogue_try_append(kiln_graph *g, kiln_node *into, kiln_node *step, int from, int to);

/* Fuses MaxPool/AveragePool whose windows tile their input into the
 * producing Conv's epilogue, as its last step (CPU targets); see
 * fuse_pool.c. */
int kiln_pass_fuse_pool(kiln_graph *g, const struct kiln_target *t, kiln_diag *d);

/* Stores the values passed between direct convolutions channel-blocked
 * (NCHWc) on a CPU target that asks for it; see layout_nchwc.c. */
int kiln_pass_layout_nchwc(kiln_graph *g, const struct kiln_target *t, kiln_diag *d);

/* Reads the model's `kiln.state` metadata (PARAM=VALUE,...): PARAM becomes
 * state, VALUE updates it in place on every run; see state.c. */
int kiln_pass_bind_state(kiln_graph *g, kiln_diag *d);

/* Marks (by value id; calloc'd, caller frees) every value whose contents
 * decide a shape, so graph inputs among them must be bound as constants. */
char *kiln_pass_shape_deciding(const kiln_graph *g);

#endif
