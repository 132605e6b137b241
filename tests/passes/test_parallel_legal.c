/* `parallel` means independent iterations (ir/loop.h), at every depth:
 * checked by running every parallel loop of a lowered network backwards
 * (index i read as extent-1-i) in the interpreter and getting the same
 * output, bit for bit, as in order.  A loop marked parallel whose
 * iterations depend on each other (an accumulation across them, a read of
 * what an earlier iteration wrote) gives different values or order. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/dsl/kiln_dsl.h"
#include "passes/lower.h"
#include "passes/pipeline.h"

static const char net[] = "network m {\n"
                          "  input x: [2, 3, 10, 10]\n"
                          "  conv(32, 3x3, pad=1) -> bn -> relu\n"
                          "  skip = _\n"
                          "  conv(32, 1x1) -> sigmoid\n"
                          "  add(skip) -> maxpool(2x2)\n"
                          "  depthwise(3x3, pad=1) -> relu6\n"
                          "  conv_transpose(32, 2x2, stride=2) -> avgpool(2x2) -> upsample(scale=2, mode=linear)\n"
                          "  concat(skip) -> global_avgpool -> flatten -> dense(5) -> softmax\n"
                          "}\n";

static kiln_program *lower(kiln_graph **gp) {
  kiln_diag d = {0};
  kiln_graph *g = kiln_dsl_load_buffer(net, strlen(net), "m.kiln", NULL, NULL, &d);
  cr_assert(g, "%s", d.msg);
  kiln_pipeline pl;
  kiln_pipeline_opts o = {.graph = g, .until = KILN_PASS_SIMPLIFY_INDEX};
  cr_assert_eq(kiln_pipeline_run(&o, &pl, &d), 0, "%s", d.msg);
  *gp = pl.graph;
  return pl.program;
}

static float *eval(const kiln_program *p, size_t *nout) {
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  float *out = NULL;
  for (int i = 0; i < p->nbufs; i++) {
    const kiln_buf *b = p->bufs[i];
    if (b->kind == KILN_BUF_WEIGHT) { bufs[i] = (void *)b->data; continue; }
    bufs[i] = calloc((size_t)b->numel + 1, kiln_dtype_size(b->dtype));
    if (b->kind == KILN_BUF_INPUT) {
      uint32_t s = 777;
      for (int64_t j = 0; j < b->numel; j++) {
        s = s * 1664525u + 1013904223u;
        ((float *)bufs[i])[j] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
      }
    }
    if (b->kind == KILN_BUF_OUTPUT) { out = bufs[i]; *nout = (size_t)b->numel; }
  }
  for (int k = 0; k < p->nkernels; k++) cr_assert_eq(kiln_loop_eval(p, p->kernels[k], bufs), 0);
  for (int i = 0; i < p->nbufs; i++)
    if (bufs[i] != out && p->bufs[i]->kind != KILN_BUF_WEIGHT) free(bufs[i]);
  free(bufs);
  return out;
}

/* The INDEX nodes of parallel loop vars, each once. */
typedef struct walk {
  kiln_lx **nodes;
  int n, cap;
  const int64_t *ext; /* per var: extent if parallel, else 0 */
} walk;

static void collect(walk *w, kiln_lx *e) {
  if (!e) return;
  if (e->kind == KILN_LX_INDEX) {
    if (w->ext[e->var] <= 0) return;
    for (int i = 0; i < w->n; i++)
      if (w->nodes[i] == e) return;
    if (w->n == w->cap) w->nodes = realloc(w->nodes, (size_t)(w->cap = w->cap * 2 + 16) * sizeof *w->nodes);
    w->nodes[w->n++] = e;
    return;
  }
  collect(w, e->a);
  collect(w, e->b);
  collect(w, e->c);
}

static void collect_list(walk *w, kiln_ls *s) {
  for (; s; s = s->next) {
    collect(w, s->index);
    collect(w, s->value);
    collect_list(w, s->body);
    collect_list(w, s->orelse);
  }
}

static void extents(const kiln_ls *s, int64_t *ext, int *npar) {
  for (; s; s = s->next) {
    if (s->kind == KILN_LS_FOR && s->sched.parallel) {
      ext[s->var] = s->extent;
      ++*npar;
    }
    extents(s->body, ext, npar);
    extents(s->orelse, ext, npar);
  }
}

/* Every parallel loop of p runs its iterations in reverse order. */
static int reverse_parallel_loops(kiln_program *p, int *most) {
  int npar = 0;
  *most = 0;
  for (int k = 0; k < p->nkernels; k++) {
    kiln_kernel *kn = p->kernels[k];
    int64_t *ext = calloc((size_t)kn->nvars + 1, sizeof *ext);
    int before = npar;
    extents(kn->body, ext, &npar);
    if (npar - before > *most) *most = npar - before;
    walk w = {.ext = ext};
    collect_list(&w, kn->body);
    for (int i = 0; i < w.n; i++) {
      kiln_lx *e = w.nodes[i], *v = kiln_arena_alloc(p->arena, sizeof *v), *c = kiln_arena_alloc(p->arena, sizeof *c);
      *v = *e;
      memset(c, 0, sizeof *c);
      c->kind = KILN_LX_CONST;
      c->dtype = KILN_DT_I64;
      c->i = ext[e->var] - 1;
      e->kind = KILN_LX_BIN;
      e->op = KILN_BIN_SUB;
      e->a = c;
      e->b = v;
    }
    free(w.nodes);
    free(ext);
  }
  return npar;
}

Test(parallel, every_parallel_loop_runs_backwards_to_the_same_values) {
  kiln_graph *g;
  kiln_program *p = lower(&g);
  size_t n0 = 0, n1 = 0;
  float *fwd = eval(p, &n0);
  int most;
  int npar = reverse_parallel_loops(p, &most);
  /* elementwise kernels without broadcasting are one flat loop; the
   * others (conv, pooling, resize...) nest several parallel loops */
  cr_assert_gt(npar, p->nkernels, "every kernel has a parallel loop (%d loops, %d kernels)", npar, p->nkernels);
  cr_assert_geq(most, 3, "inner loops are marked too (at most %d in one kernel)", most);
  float *bwd = eval(p, &n1);
  cr_assert_eq(n0, 2 * 5);
  cr_assert_eq(n0, n1);
  cr_assert_eq(memcmp(fwd, bwd, n0 * sizeof *fwd), 0, "reversed parallel loops changed the result");
  free(fwd);
  free(bwd);
  kiln_graph_free(g);
}
