/* attack: an inference graph -> the graph of a gradient attack (FGSM, PGD:
 * `kiln attack`, tools/cmd_attack.c).
 *
 * For a classifier y = f(x) the attack needs, at a point x and for a class
 * label per sample, the softmax cross-entropy of the logits against the
 * label and its gradient with respect to x.  kiln_attack_build appends
 * exactly that to g (an ordinary graph: it runs through the pipeline and
 * the JIT like any other, compiled once and run at every attack step):
 *
 *   logits  = y, or the input of y's producer when that is a Softmax or
 *             LogSoftmax (the probabilities' own logits: a loss on the
 *             probabilities would saturate), reshaped to [N, C] with
 *             C = elements per sample (so [N, 1000, 1, 1] is 1000 classes),
 *             cast to float32 when narrower (f16, bf16): the loss type T
 *   loss[n] = -log softmax(logits[n])[label[n]]           (T [N])
 *   grad    = d (sum_n loss[n]) / d x                     (x's dtype, shape)
 *
 * Summing over the batch keeps samples apart: sample n's gradient is that
 * of its own loss, as long as the network treats samples independently
 * (inference BatchNorm does).  A targeted attack passes the target class
 * as the label and descends the loss; an untargeted one passes the
 * true/predicted class and ascends it.  The graph gets the input
 * KILN_ATTACK_LABEL (int64 [N]; the caller keeps labels in 0..C-1) and the
 * outputs KILN_ATTACK_LOGITS, KILN_ATTACK_LOSS and KILN_ATTACK_GRAD, in
 * that order; the model's own outputs are dropped. */
#ifndef KILN_ATTACK_H
#define KILN_ATTACK_H

#include "../ir/graph.h"

#define KILN_ATTACK_LABEL "attack.label"
#define KILN_ATTACK_LOGITS "attack.logits"
#define KILN_ATTACK_LOSS "attack.loss"
#define KILN_ATTACK_GRAD "attack.grad"

/* g: shape-inferred, static shapes.  input: the float input attacked
 * (NULL: the model's only input); output: the classifier output (NULL:
 * the first): [N, C] or [N, C, 1, ...] (one class vector per sample;
 * a segmentation map is refused).  Both need the batch as dim 0.  On success g's shapes are
 * inferred again and *classes is C.  0, or -1 with d set. */
int kiln_attack_build(kiln_graph *g, const char *input, const char *output, int64_t *classes, kiln_diag *d);

#endif
