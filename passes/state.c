/* state: the model's in-place updates, named in its metadata.
 *
 * ONNX has no portable way to say "this initializer is updated by the
 * model on every run" for inference runtimes, so kiln reads one metadata
 * entry, `kiln.state`, a comma-separated list of PARAM=VALUE pairs: PARAM,
 * an initializer, becomes state (KILN_VALUE_STATE: its data is the initial
 * contents), and VALUE, computed by a node, is written into PARAM's storage
 * (VALUE->aliases = PARAM, ir/README.md "Training"), so the next run reads
 * it.  A running counter: count=next with next = Add(count, 1).
 * Runs after import, before shapes are inferred (so state is not folded). */
#include "passes.h"

#include <string.h>

static kiln_value *find_value(kiln_graph *g, const char *name, size_t len) {
  for (int i = 0; i < g->nvalues; i++)
    if (strlen(g->values[i]->name) == len && !memcmp(g->values[i]->name, name, len)) return g->values[i];
  return NULL;
}

int kiln_pass_bind_state(kiln_graph *g, kiln_diag *d) {
  for (int m = 0; m < g->nmeta; m++) {
    if (strcmp(g->meta_keys[m], "kiln.state")) continue;
    const char *s = g->meta_values[m];
    while (*s) {
      size_t n = strcspn(s, ","), eq = strcspn(s, "=");
      if (eq >= n) return kiln_error(d, NULL, "%s: metadata kiln.state: '%.*s' is not PARAM=VALUE", g->file, (int)n, s);
      kiln_value *param = find_value(g, s, eq), *upd = find_value(g, s + eq + 1, n - eq - 1);
      if (!param || !param->data || param->producer || (param->kind != KILN_VALUE_PARAM && param->kind != KILN_VALUE_STATE))
        return kiln_error(d, NULL, "%s: metadata kiln.state: '%.*s' is not an initializer", g->file, (int)eq, s);
      if (!upd || !upd->producer)
        return kiln_error(d, NULL, "%s: metadata kiln.state: '%.*s' is not computed by a node", g->file,
                          (int)(n - eq - 1), s + eq + 1);
      if (upd->aliases || param->kind == KILN_VALUE_STATE)
        return kiln_error(d, NULL, "%s: metadata kiln.state: '%.*s' is named twice", g->file, (int)n, s);
      param->kind = KILN_VALUE_STATE;
      upd->aliases = param;
      s += n;
      if (*s == ',') s++;
    }
  }
  return 0;
}
