/* Compile, run, compare: the part of a conformance run that does not
 * depend on the backend.
 *
 * Tolerance: |got - want| <= atol + rtol * |want| with
 *   f32, f64: rtol 1e-4, atol 1e-5 (single-precision rounding differences
 *             between summation orders and libm implementations);
 *   f16: rtol 1e-3, atol 1e-3; bf16: rtol 1e-2, atol 1e-2 (their epsilons
 *             are 9.8e-4 and 7.8e-3: one unit of rounding);
 *   integers and bool: exact.  NaN matches NaN; infinities must match. */
#include "execute.h"

#include "../../passes/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int close_enough(kiln_dtype t, double got, double want) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  double rtol = 1e-4, atol = 1e-5;
  if (t == KILN_DT_F16) rtol = atol = 1e-3;
  if (t == KILN_DT_BF16) rtol = atol = 1e-2;
  if (!kiln_dtype_is_float(t)) rtol = atol = 0;
  return fabs(got - want) <= atol + rtol * fabs(want);
}

static int run_set(const suite_case *c, int set, suite_run *r, const suite_backend *be) {
  char why[600];
  if (suite_prepare(c, set, r)) return -1;
  kiln_diag d = {0};
  kiln_pipeline pl;
  kiln_pipeline_opts po = {.graph = r->g, .from = KILN_PASS_PER_IMAGE, .target = be->target, .per_image = be->per_image};
  if (kiln_pipeline_run(&po, &pl, &d)) { suite_fail_diag(r, c, &d); return -1; }
  kiln_program *p = pl.program;
  void *h = be->compile(p, c, &d);
  if (!h) { suite_fail_diag(r, c, &d); return -1; }
  void **bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  void *ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  void **got = calloc((size_t)p->nbufs + 1, sizeof *got);
  int rc = 0, in_k = 0;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind == KILN_BUF_WEIGHT) bufs[b] = (void *)buf->data;
    else if (buf->kind == KILN_BUF_WORKSPACE) bufs[b] = (char *)ws + buf->offset;
    else if (buf->kind == KILN_BUF_OUTPUT)
      got[b] = bufs[b] = calloc(1, (size_t)buf->numel * kiln_dtype_size(buf->dtype) + 8);
  }
  /* inputs in order, skipping the ones bound as constants */
  for (int i = 0; i < r->nin; i++) {
    if (r->bound[i]) continue;
    for (int b = 0; b < p->nbufs; b++)
      if (p->bufs[b]->kind == KILN_BUF_INPUT && p->bufs[b]->io_index == in_k) bufs[b] = r->in[i].data;
    in_k++;
  }
  be->run(h, p, bufs);
  for (int b = 0; b < p->nbufs && !rc; b++) {
    const kiln_buf *buf = p->bufs[b];
    if (buf->kind != KILN_BUF_OUTPUT) continue;
    int k = -1; /* outputs are numbered in graph order, matching output_K.pb */
    for (int o = 0; o < r->g->noutputs; o++)
      if (!strcmp(r->g->outputs[o]->name, buf->name)) k = o;
    kiln_tensor t = {0};
    if (k < 0 || suite_read_output(c, set, k, &t, &d)) {
      suite_set(r, "known-fail", "reference output unreadable");
      rc = -1;
      break;
    }
    size_t es = kiln_dtype_size(t.dtype) ? kiln_dtype_size(t.dtype) : 1;
    if (t.dtype != buf->dtype || (int64_t)(t.nbytes / es) != buf->numel) {
      snprintf(why, sizeof why, "output '%s': kiln gives %s[%lld], reference %s with %zu bytes", buf->name,
               kiln_dtype_name(buf->dtype), (long long)buf->numel, kiln_dtype_name(t.dtype), t.nbytes);
      suite_set(r, "known-fail", why);
      rc = -1;
    }
    for (int64_t e = 0; !rc && e < buf->numel; e++) {
      double g = kiln_dtype_load_f(buf->dtype, bufs[b], (size_t)e), w = kiln_dtype_load_f(t.dtype, t.data, (size_t)e);
      if (!close_enough(buf->dtype, g, w)) {
        snprintf(why, sizeof why, "set %d output '%s'[%lld]: got %.9g, want %.9g", set, buf->name, (long long)e, g, w);
        suite_set(r, "known-fail", why);
        rc = -1;
      }
    }
    kiln_tensor_free(&t);
  }
  for (int b = 0; b < p->nbufs; b++) free(got[b]);
  free(got);
  free(bufs);
  free(ws);
  be->release(h);
  return rc;
}

void suite_execute(const suite_case *c, suite_run *r, const suite_backend *b) {
  /* every program is verified after lowering and after the simplifier
   * (kiln_loop_verify); a verifier error fails the case like any other */
  setenv("KILN_VERIFY_LOOPS", "1", 1);
  int sets = suite_count_sets(c);
  if (sets == 0) sets = 1;
  for (int s = 0; s < sets; s++) {
    if (s) suite_run_free(r);
    if (run_set(c, s, r, b)) return;
  }
  suite_set(r, "pass", "");
}
