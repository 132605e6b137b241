/* Reverse-mode differentiation on the graph IR: the interface between
 * autodiff (passes/autodiff.c, which walks the graph backwards) and the
 * gradient column of the op table (ops.def `grad`: kiln_grad_<name>, one
 * function per op, in passes/grad_*.c).
 *
 * A gradient function receives the forward node n and dy[k], the gradient
 * of the loss with respect to n->out[k] (same dtype and shape as out[k]),
 * NULL when no gradient flows into that output.  For every input k with
 * kiln_grad_wanted(c, n, k) it sets dx[k] to a value of in[k]'s dtype and
 * shape (kiln_grad_unbroadcast helps with broadcasting); it leaves the
 * others NULL.  It builds those values from ordinary graph nodes
 * (existing ops, or gradient ops that are rows of the table themselves,
 * e.g. ConvGradWeight), appended through this interface: each node is
 * shape-inferred at once, so the next one can read its shape, and carries
 * the forward node's location, so a failure names the node it came from.
 * Return 0, or -1 after kiln_grad_fail / a failed helper (c's diagnostic
 * is then set).  The functions never modify n. */
#ifndef KILN_GRAD_H
#define KILN_GRAD_H

#include "../ir/graph.h"

typedef struct kiln_grad_ctx kiln_grad_ctx;

/* Whether the gradient of n->in[k] is needed (an input on a path from a
 * trained parameter). */
int kiln_grad_wanted(const kiln_grad_ctx *c, const kiln_node *n, int k);

/* A new node of op with nin inputs and nout outputs, default attributes
 * (fill m->attrs, cast to the op's kiln_attrs_<kind>), named after the
 * forward node.  Set its inputs with kiln_node_set_input (absent optional
 * inputs stay NULL), then kiln_grad_emit. */
kiln_node *kiln_grad_node(kiln_grad_ctx *c, kiln_op op, int nin, int nout);
/* Creates m's outputs (those with want_out bit k set; all when want_out
 * is -1) and runs the op's shape function; 0, or -1 with c's diag set. */
int kiln_grad_emit(kiln_grad_ctx *c, kiln_node *m, int want_out);
/* The common case: op applied to in[0..nin) with default attributes;
 * returns out[0], NULL on failure. */
kiln_value *kiln_grad_apply(kiln_grad_ctx *c, kiln_op op, int nin, kiln_value *const *in);
kiln_value *kiln_grad_apply1(kiln_grad_ctx *c, kiln_op op, kiln_value *a);
kiln_value *kiln_grad_apply2(kiln_grad_ctx *c, kiln_op op, kiln_value *a, kiln_value *b);

/* Constants made in the graph's arena: a scalar (rank 0) of dtype t, and
 * a 1-D int64 tensor (axes, shapes, pads). */
kiln_value *kiln_grad_scalar(kiln_grad_ctx *c, kiln_dtype t, double v);
kiln_value *kiln_grad_ints(kiln_grad_ctx *c, int n, const int64_t *v);
/* g (the gradient of a broadcast result) summed over the axes where
 * `like` was broadcast, then reshaped to like's shape: the gradient of
 * like.  Returns g itself when the shapes already match. */
kiln_value *kiln_grad_unbroadcast(kiln_grad_ctx *c, kiln_value *g, const kiln_value *like);
/* ReduceSum of x over axes (keepdims as given); NULL on failure. */
kiln_value *kiln_grad_sum_axes(kiln_grad_ctx *c, kiln_value *x, int naxes, const int64_t *axes, int keepdims);
/* x reshaped to like's shape (a view: no copy after lowering). */
kiln_value *kiln_grad_reshape_like(kiln_grad_ctx *c, kiln_value *x, const kiln_value *like);

/* A context for building nodes outside autodiff (the loss and optimizer
 * nodes of passes/train.c): the helpers above, with no forward node
 * (nothing is wanted; made values are named after `prefix`). */
kiln_grad_ctx *kiln_grad_builder(kiln_graph *g, const char *prefix, kiln_diag *d);

/* A located error naming the forward node: "gradient of ...: what". */
int kiln_grad_fail(kiln_grad_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
kiln_graph *kiln_grad_graph(kiln_grad_ctx *c);

/* The gradient of ops through which nothing flows (ops.def `nondiff`). */
int kiln_grad_nondiff(kiln_grad_ctx *c, const kiln_node *n, kiln_value *const *dy, kiln_value **dx);

/* ---- autodiff ---- */

/* Appends to g the nodes computing d loss / d wrt[i] for each i into
 * grads[i] (NULL when wrt[i] does not affect the loss: its gradient is
 * zero).  loss must be a float value with one element; g must have its
 * shapes inferred.  Every op on a path from a wrt value to the loss must
 * have a gradient (ops.def); otherwise the error names the node and op.
 * Gradients reaching a value along several paths are added. */
int kiln_autodiff(kiln_graph *g, kiln_value *loss, int nwrt, kiln_value *const *wrt, kiln_value **grads,
                  kiln_diag *d);

#endif
