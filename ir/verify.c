/* The IR verifier: run after the importer and between passes (debug
 * builds and tests).  It checks invariants, not user errors: a failure here
 * means a kiln bug, but it is reported as a diagnostic so a fuzzer finds it
 * as a message rather than a crash. */
#include <stdlib.h>

#include "graph.h"

int kiln_graph_verify(const kiln_graph *g, kiln_diag *d) {
  char *seen = calloc((size_t)g->nvalues + 1, 1); /* 1 = defined so far */
  int rc = 0;
#define FAIL(loc, ...) do { rc = kiln_error(d, loc, "IR verifier: " __VA_ARGS__); goto out; } while (0)
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    if (v->id != i) FAIL(NULL, "value '%s' has id %d at position %d", v->name, v->id, i);
    if (!v->producer && (v->kind == KILN_VALUE_INPUT || v->data)) seen[i] = 1;
  }
  for (int i = 0; i < g->ninputs; i++)
    if (g->inputs[i]->kind != KILN_VALUE_INPUT) FAIL(NULL, "graph input '%s' is not an input value", g->inputs[i]->name);
  for (int i = 0; i < g->nnodes; i++) {
    const kiln_node *n = g->nodes[i];
    const kiln_op_info *info = kiln_op_get(n->op);
    if (!info) FAIL(NULL, "node %d has invalid op %d", i, (int)n->op);
    if (n->dead) FAIL(&n->loc, "dead node still in the graph");
    int lo, hi;
    kiln_sig_arity(info->inputs, &lo, &hi);
    if (n->nin < lo || n->nin > hi) FAIL(&n->loc, "%d inputs, op takes %d..%d", n->nin, lo, hi);
    kiln_sig_arity(info->outputs, &lo, &hi);
    if (n->nout < lo || n->nout > hi) FAIL(&n->loc, "%d outputs, op gives %d..%d", n->nout, lo, hi);
    for (int k = 0; k < n->nin; k++) {
      const kiln_value *v = n->in[k];
      kiln_slot s;
      kiln_sig_slot(info->inputs, k, &s);
      if (!v) {
        if (!s.optional) FAIL(&n->loc, "required input %d is missing", k);
        continue;
      }
      if (!seen[v->id]) FAIL(&n->loc, "input '%s' is used before it is defined", v->name);
    }
    for (int k = 0; k < n->nout; k++) {
      const kiln_value *v = n->out[k];
      if (!v) continue;
      /* Setting a value as the output of a second node moves its
       * back-pointer there, so a double definition shows up first as a
       * producer mismatch on the earlier node: name it for what it is. */
      const kiln_node *p = v->producer;
      if (p && p != n && !p->dead && v->producer_slot < p->nout && p->out[v->producer_slot] == v)
        FAIL(&n->loc, "value '%s' is defined twice (also by %s node '%s')", v->name, kiln_op_get(p->op)->name,
             p->name);
      if (v->producer != n || v->producer_slot != k)
        FAIL(&n->loc, "output '%s' does not point back to its node", v->name);
      if (seen[v->id]) FAIL(&n->loc, "value '%s' is defined twice", v->name);
      seen[v->id] = 1;
      if (v->rank >= 0) {
        if (v->rank > KILN_MAX_RANK) FAIL(&n->loc, "output '%s' has rank %d", v->name, v->rank);
        if (v->dtype == KILN_DT_UNDEF) FAIL(&n->loc, "output '%s' has a shape but no dtype", v->name);
      }
    }
  }
  for (int i = 0; i < g->noutputs; i++)
    if (!seen[g->outputs[i]->id]) FAIL(NULL, "graph output '%s' is never defined", g->outputs[i]->name);
  for (int i = 0; i < g->nvalues; i++) {
    const kiln_value *v = g->values[i];
    for (int k = 0; k < v->rank && v->rank <= KILN_MAX_RANK; k++) {
      kiln_dim dm = v->dims[k];
      if (KILN_DIM_IS_SYM(dm) && -dm - 1 >= g->nsyms)
        FAIL(NULL, "value '%s' has unknown symbolic dim %lld", v->name, (long long)dm);
    }
  }
#undef FAIL
out:
  free(seen);
  return rc;
}
