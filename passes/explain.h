/* Explanation graphs: an inference graph (a classifier) turned into a
 * graph that also computes which parts of the input drove its decision.
 *
 * The contract of kiln_explain_build.  The result is an ordinary graph,
 * compiled like any other (LLVM JIT, `kiln compile`, `kiln emit-c`):
 *   inputs   the model's inputs, in order, then
 *            "class"   int64 [N]: the class to explain per item; a
 *                      negative value means the predicted one (ArgMax of
 *                      the logits; ties: the lowest index).  A class >= C
 *                      selects nothing (score 0, cam 0): hosts check it.
 *   outputs  "cam"     float32.  gradcam / gradcam++: the class activation
 *                      map at the chosen layer's resolution, [N, h, w] or
 *                      [N, d, h, w], before any normalisation.  saliency:
 *                      max over channels of |dScore/dx|, at the input's
 *                      resolution ([N, H, W] / [N, D, H, W]).
 *            "logits"  float32 [N, C]: the scores that were
 *                      differentiated.  When the model's output comes
 *                      from Softmax / LogSoftmax (through Flatten, Reshape,
 *                      Squeeze or Identity), its input: the Grad-CAM
 *                      paper differentiates the pre-softmax score.
 *            "grad"    saliency only: dScore/dx, float32, the input's shape.
 *   Score = sum over items of logits[n, class_n] (one-hot of the class by
 *   Equal against 0..C-1, times the logits, ReduceSum); items do not
 *   interact, so its gradient is each item's own.
 *
 * Methods, with g = dScore/dA (A: the layer's feature map [N, K, sp...]):
 *   gradcam    alpha_k = mean_sp g_k; cam = ReLU(sum_k alpha_k A_k)
 *              (Selvaraju et al. 2017, eq. 1-2).
 *   gradcam++  Chattopadhay et al. 2018, eq. 19 with the exponential score
 *              Y = exp(S), whose higher derivatives are powers of g when
 *              the network is piecewise linear after A:
 *                a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)   (0 where the
 *                       denominator is 0),
 *                w_k  = sum_ij a_ij ReLU(g_ij),
 *                cam  = ReLU(sum_k w_k A_k).
 *              The common factor exp(S) of every w_k is left out (as in
 *              pytorch-grad-cam): it scales the map, not its shape.
 *   saliency   cam = max_c |dScore/dx_c| (Simonyan et al. 2014).
 * Integrated gradients are the host's loop over the saliency graph
 * (tools/cmd_explain.c).
 *
 * The layer: opts->layer names a value (an error lists the candidates when
 * it is unknown); by default the last value, in topological order, among
 * the logits' ancestors that is a 4-D/5-D float activation with more than
 * one spatial element, not made by MaxPool / AveragePool: the feature map
 * that feeds global pooling, or the last conv block's output before the
 * pooling and Flatten of a classifier head (VGG's last ReLU, as the
 * Grad-CAM paper uses).  Names the graph gives its new values
 * ("class", "cam", "logits", "grad") must not be model inputs; a model
 * activation already using one is renamed NAME + ".model". */
#ifndef KILN_EXPLAIN_H
#define KILN_EXPLAIN_H

#include "../ir/graph.h"

typedef enum kiln_explain_method {
  KILN_EXPLAIN_GRADCAM,
  KILN_EXPLAIN_GRADCAM_PP,
  KILN_EXPLAIN_SALIENCY
} kiln_explain_method;

/* What kiln_explain_build chose (pointers into the graph). */
typedef struct kiln_explain_info {
  const kiln_value *input;  /* the differentiated model input (the first float input) */
  const kiln_value *layer;  /* gradcam / gradcam++: the feature map A */
  const kiln_value *logits; /* the value the score reads, before flattening */
  int64_t classes;          /* C */
} kiln_explain_info;

typedef struct kiln_explain_opts {
  kiln_explain_method method;
  const char *layer;        /* NULL: the default layer */
  kiln_explain_info *info;  /* out, optional */
} kiln_explain_opts;

/* On a shape-inferred graph: builds the explanation graph in place (its
 * shapes inferred again).  0, or -1 with d set. */
int kiln_explain_build(kiln_graph *g, const kiln_explain_opts *o, kiln_diag *d);
/* "gradcam", "gradcam++", "saliency"; and back (-1: unknown). */
const char *kiln_explain_method_name(kiln_explain_method m);
int kiln_explain_method_lookup(const char *s);

#endif
