/* ONNX conformance, import + shape inference: for every case of the suite,
 * import model.onnx, bind its test_data_set_0 inputs (shape-determining
 * inputs become constants, symbolic dims take the data's dims), infer
 * shapes, and compare every output's dtype and shape with output_K.pb.
 *
 * usage: conformance_shapes SUITE_DIR EXPECT_FILE [--update]
 * A case listed `pass` that fails is a regression (exit 1).  --update
 * rewrites EXPECT_FILE from this run (reasons come from kiln's messages;
 * review the diff before committing it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../frontend/onnx/kiln_onnx.h"
#include "../../passes/passes.h"
#include "suite.h"

typedef struct result {
  char status[32];
  char reason[512];
} result;

static void set(result *r, const char *status, const char *reason) {
  snprintf(r->status, sizeof r->status, "%s", status);
  snprintf(r->reason, sizeof r->reason, "%s", reason);
  for (char *p = r->reason; *p; p++) if (*p == '\n') *p = ' ';
}

/* Drops the "FILE: " prefix so reasons do not depend on where the suite lives. */
static const char *strip_file(const char *msg, const char *file) {
  size_t n = strlen(file);
  if (!strncmp(msg, file, n) && msg[n] == ':') return msg + n + 2;
  return msg;
}

/* Marks values whose contents decide some shape: those read by a
 * constant ('#') slot, and transitively the inputs of nodes computing them
 * (except Shape, which reads only its input's shape). */
static char *shape_deciding(const kiln_graph *g) {
  char *mark = calloc((size_t)g->nvalues + 1, 1);
  for (int i = g->nnodes - 1; i >= 0; i--) {
    const kiln_node *n = g->nodes[i];
    int needed = 0;
    for (int k = 0; k < n->nout; k++) needed |= n->out[k] && mark[n->out[k]->id];
    for (int k = 0; k < n->nin; k++) {
      kiln_slot s;
      if (!n->in[k]) continue;
      kiln_sig_slot(kiln_op_get(n->op)->inputs, k, &s);
      if (s.constant || (needed && n->op != KILN_OP_SHAPE)) mark[n->in[k]->id] = 1;
    }
  }
  return mark;
}

static void run_case(const suite_case *c, result *r) {
  char model[1400], path[1500];
  snprintf(model, sizeof model, "%s/model.onnx", c->dir);
  kiln_diag d = {0};
  kiln_graph *g = kiln_onnx_load(model, &d);
  if (!g) {
    const char *msg = strip_file(d.msg, model);
    set(r, strstr(msg, "unsupported op") ? "unsupported" : "known-fail", msg);
    return;
  }
  enum { MAXT = 64 };
  kiln_tensor ins[MAXT] = {0};
  int nins = 0;
  char *deciding = NULL;
  /* Inputs, bound in order (before shape inference mutates the list). */
  int ninputs = g->ninputs;
  kiln_value *inputs[MAXT];
  for (int i = 0; i < ninputs && i < MAXT; i++) inputs[i] = g->inputs[i];
  deciding = shape_deciding(g);
  for (int i = 0; i < ninputs && i < MAXT; i++) {
    kiln_value *v = inputs[i];
    snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", c->dir, i);
    kiln_tensor *t = &ins[nins];
    if (kiln_onnx_read_tensor_file(path, t, &d)) { set(r, "known-fail", strip_file(d.msg, c->dir)); goto out; }
    nins++;
    if (t->rank != v->rank || t->dtype != v->dtype) {
      char why[600];
      snprintf(why, sizeof why, "input '%s' data is %s rank %d, model says %s rank %d", v->name,
               kiln_dtype_name(t->dtype), t->rank, kiln_dtype_name(v->dtype), v->rank);
      set(r, "known-fail", why);
      goto out;
    }
    for (int k = 0; k < v->rank; k++)
      if (KILN_DIM_IS_SYM(v->dims[k])) kiln_pass_bind_sym(g, v->dims[k], t->dims[k]);
    if (deciding[v->id] &&
        kiln_pass_bind_input(g, v->name, t->dtype, t->rank, t->dims, t->data, &d)) {
      set(r, "known-fail", strip_file(d.msg, model));
      goto out;
    }
  }
  if (kiln_pass_infer_shapes(g, &d)) { set(r, "known-fail", strip_file(d.msg, model)); goto out; }
  for (int k = 0; k < g->noutputs; k++) {
    kiln_tensor t;
    snprintf(path, sizeof path, "%s/test_data_set_0/output_%d.pb", c->dir, k);
    if (kiln_onnx_read_tensor_file(path, &t, &d)) { set(r, "known-fail", "reference output unreadable"); goto out; }
    const kiln_value *v = g->outputs[k];
    int same = t.dtype == v->dtype && t.rank == v->rank;
    for (int i = 0; same && i < t.rank; i++) same = t.dims[i] == v->dims[i];
    if (!same) {
      char want[256], got[256], why[600];
      kiln_value tv = {0};
      tv.dtype = t.dtype;
      tv.rank = t.rank;
      memcpy(tv.dims, t.dims, sizeof tv.dims);
      kiln_value_type_str(g, &tv, want, sizeof want);
      kiln_value_type_str(g, v, got, sizeof got);
      snprintf(why, sizeof why, "output '%s': inferred %s, reference %s", v->name, got, want);
      set(r, "known-fail", why);
      kiln_tensor_free(&t);
      goto out;
    }
    kiln_tensor_free(&t);
  }
  set(r, "pass", "");
out:
  free(deciding);
  for (int i = 0; i < nins; i++) kiln_tensor_free(&ins[i]);
  kiln_graph_free(g);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SUITE_DIR EXPECT_FILE [--update]\n", argv[0]);
    return 2;
  }
  int update = argc > 3 && !strcmp(argv[3], "--update");
  static suite_case cases[SUITE_MAX_CASES];
  static suite_expect expect[SUITE_MAX_CASES];
  static result res[SUITE_MAX_CASES];
  int n = suite_list(argv[1], cases, SUITE_MAX_CASES);
  if (n < 0) {
    fprintf(stderr, "conformance: suite not found at %s\n", argv[1]);
    return 2;
  }
  int ne = suite_read_expect(argv[2], expect, SUITE_MAX_CASES);
  int pass = 0, unsupported = 0, known = 0, regressed = 0, fixed = 0, unlisted = 0;
  for (int i = 0; i < n; i++) {
    run_case(&cases[i], &res[i]);
    const suite_expect *e = suite_find_expect(expect, ne, cases[i].name);
    int ok = !strcmp(res[i].status, "pass");
    pass += ok;
    unsupported += !strcmp(res[i].status, "unsupported");
    known += !strcmp(res[i].status, "known-fail");
    if (!e) {
      unlisted++;
      if (!update) printf("NEW       %s: %s %s\n", cases[i].name, res[i].status, res[i].reason);
    } else if (!strcmp(e->status, "pass") && !ok) {
      regressed++;
      printf("REGRESSED %s: %s\n", cases[i].name, res[i].reason);
    } else if (strcmp(e->status, "pass") && ok) {
      fixed++;
      printf("FIXED     %s (listed %s: update the expectations)\n", cases[i].name, e->status);
    }
  }
  printf("conformance (import + shape inference): %d cases: %d pass, %d known-fail, %d unsupported op\n", n, pass,
         known, unsupported);
  if (update) {
    FILE *f = fopen(argv[2], "w");
    if (!f) { perror(argv[2]); return 2; }
    fprintf(f, "# ONNX backend-suite expectations for import + shape inference.\n"
               "# Regenerate with: build/tests/conformance_shapes SUITE tests/conformance/shapes.expect --update\n"
               "# status: pass | known-fail (kiln supports the ops but not this case) | unsupported (an op\n"
               "# outside kiln's op set).  A `pass` that fails makes the test fail.\n");
    for (int i = 0; i < n; i++)
      fprintf(f, "%-72s %-12s %s\n", cases[i].name, res[i].status, res[i].reason);
    fclose(f);
  }
  int bad = regressed + (update ? 0 : unlisted);
  printf("%d passed, %d failed\n", n - bad, bad);
  return bad ? 1 : 0;
}
