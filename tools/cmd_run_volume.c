/* `kiln run MODEL --volume FILE.nii[.gz] | --dicom DIR`: the model's one
 * input is fed from a medical volume.  The volume is brought to the closest
 * canonical (RAS+) orientation, windowed (--window), and resampled
 * (trilinear) to the model's input size: a rank-5 input [N,C,D,H,W] gets
 * the whole volume as D=S, H=A, W=R; a rank-4 input [N,C,H,W] is run once
 * per axial slice (H=A, W=R, slices kept).  Symbolic spatial dims take the
 * volume's own size (no resampling); C > 1 repeats the intensity.  The first
 * output, when it has the input's spatial shape, is a per-voxel class score
 * map: argmax over the channel axis (ties: the lower class; one channel:
 * score > 0.5) gives labels, resampled back (nearest) to the canonical grid,
 * reoriented to the input grid and written as NIfTI with the input's
 * geometry (--seg-out) and as axial PNG overlays (--overlay-out). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../backends/llvm/kiln_llvm.h"
#include "../passes/lower.h"
#include "../passes/passes.h"
#include "../passes/pipeline.h"
#include "cli.h"
#include "cmd_run_volume.h"
#include "tensor_io.h"
#include "volume/volume.h"

int kiln_volume_parse_opt(kiln_volume_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (strcmp(a, "--volume") && strcmp(a, "--dicom") && strcmp(a, "--seg-out") && strcmp(a, "--overlay-out") &&
      strcmp(a, "--window"))
    return 0;
  if (*i + 1 >= argc) return kiln_cli_usage_error("run", "%s needs a value", a);
  const char *v = argv[++*i];
  if (!strcmp(a, "--volume")) o->nifti = v;
  else if (!strcmp(a, "--dicom")) o->dicom = v;
  else if (!strcmp(a, "--seg-out")) o->seg_out = v;
  else if (!strcmp(a, "--overlay-out")) o->overlay_out = v;
  else {
    char *end;
    o->center = strtod(v, &end);
    if (end == v || *end != ',') return kiln_cli_usage_error("run", "--window must be CENTER,WIDTH, got '%s'", v);
    const char *w = end + 1;
    o->width = strtod(w, &end);
    if (end == w || *end || !isfinite(o->center) || !isfinite(o->width) || !(o->width > 0))
      return kiln_cli_usage_error("run", "--window must be CENTER,WIDTH with WIDTH > 0, got '%s'", v);
    o->window = 1;
  }
  return 1;
}

static int parent_exists(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return 1;
  char dir[4096];
  snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  struct stat st;
  return !dir[0] || (stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
}

static int write_overlays(const char *dir, const float *gray, const uint8_t *lab, const int64_t n[3], kiln_diag *d) {
  char tmp[4096];
  if (kiln_out_dir_begin(dir, tmp, sizeof tmp, d)) return -1;
  size_t plane = (size_t)(n[0] * n[1]);
  for (int64_t k = 0; k < n[2]; k++) {
    void *png;
    size_t len;
    char name[64];
    snprintf(name, sizeof name, "slice_%04lld.png", (long long)k);
    if (kiln_volume_overlay_png(gray + k * plane, lab + k * plane, n[0], n[1], &png, &len, d) ||
        kiln_out_dir_write(tmp, name, png, len, d)) {
      if (!d->failed) free(png);
      kiln_out_dir_abort(tmp);
      return -1;
    }
    free(png);
  }
  return kiln_out_dir_commit(dir, tmp, d);
}

int kiln_run_volume(const char *model, const kiln_volume_opts *o, int threads, const char *outdir,
                    const char *format) {
  int rc = 1;
  kiln_diag d = {0};
  kiln_volume vol = {0};
  kiln_canon cn;
  kiln_graph *g = NULL;
  kiln_llvm_jit *jit = NULL;
  kiln_program *p = NULL;
  void **bufs = NULL, *ws = NULL;
  float *canon = NULL, *grid = NULL;
  void **stacked = NULL;
  uint8_t *mlab = NULL, *clab = NULL, *vlab = NULL;
  const char *src = o->nifti ? o->nifti : o->dicom;
  size_t sl = o->seg_out ? strlen(o->seg_out) : 0;
  if (o->seg_out && !(sl > 4 && !strcmp(o->seg_out + sl - 4, ".nii")) && !(sl > 7 && !strcmp(o->seg_out + sl - 7, ".nii.gz"))) {
    kiln_error(&d, NULL, "%s: --seg-out must name a .nii or .nii.gz file", o->seg_out);
    goto fail;
  }
  if (o->seg_out && !parent_exists(o->seg_out)) { kiln_error(&d, NULL, "%s: its folder does not exist", o->seg_out); goto fail; }
  if (o->overlay_out && kiln_out_dir_check(o->overlay_out, &d)) goto fail;
  if (o->nifti ? kiln_volume_read_nifti(o->nifti, &vol, &d) : kiln_volume_read_dicom(o->dicom, &vol, &d)) goto fail;
  g = kiln_cli_import(model, &d);
  if (!g) goto fail;
  if (g->ninputs != 1) { kiln_error(&d, NULL, "%s: a volume model must have one input, this one has %d", model, g->ninputs); goto fail; }
  kiln_value *in = g->inputs[0];
  int rank = in->rank;
  if ((rank != 4 && rank != 5) || !kiln_dtype_is_float(in->dtype)) {
    char ty[256];
    kiln_value_type_str(g, in, ty, sizeof ty);
    kiln_error(&d, NULL, "%s: input '%s' is %s: a volume needs a float [N,C,H,W] (2-D, per slice) or [N,C,D,H,W] input",
               model, in->name, ty);
    goto fail;
  }
  kiln_volume_canon(&vol, &cn);
  int64_t count = cn.n[0] * cn.n[1] * cn.n[2];
  canon = malloc((size_t)count * sizeof *canon);
  if (!canon) { kiln_error(&d, NULL, "%s: out of memory", src); goto fail; }
  kiln_volume_to_canon(&vol, &cn, vol.data, canon, sizeof *canon);
  if (o->window) kiln_volume_window(canon, count, o->center, o->width);
  /* Bind symbolic dims: N and C to 1, spatial dims to the volume's size. */
  int64_t want[5] = {1, 1, cn.n[2], cn.n[1], cn.n[0]};
  for (int k = 0; k < rank; k++) {
    int64_t dim = in->dims[k];
    if (KILN_DIM_IS_SYM(dim)) kiln_pass_bind_sym(g, dim, want[k + 5 - rank]);
  }
  for (int s = 0; s < g->nsyms; s++) kiln_pass_bind_sym(g, -(s + 1), 1);
  if (in->dims[0] != 1) { kiln_error(&d, NULL, "%s: input '%s' has batch %lld; a volume needs batch 1", model, in->name, (long long)in->dims[0]); goto fail; }
  int64_t chans = in->dims[1];
  /* Model grid m (i fastest): W, H, and D (3-D) or the slices (2-D). */
  int64_t m[3] = {in->dims[rank - 1], in->dims[rank - 2], rank == 5 ? in->dims[2] : cn.n[2]};
  int64_t runs = rank == 5 ? 1 : cn.n[2], per_run = m[0] * m[1] * (rank == 5 ? m[2] : 1);
  if (m[0] < 1 || m[1] < 1 || m[2] < 1 || chans < 1) {
    kiln_error(&d, NULL, "%s: input '%s' has an empty dimension", model, in->name);
    goto fail;
  }
  if (m[0] > KILN_VOLUME_MAX_VOXELS / m[1] || m[0] * m[1] > KILN_VOLUME_MAX_VOXELS / m[2] ||
      chans > KILN_VOLUME_MAX_VOXELS / (m[0] * m[1] * m[2])) {
    kiln_error(&d, NULL, "%s: input '%s' is too large", model, in->name);
    goto fail;
  }
  grid = malloc((size_t)(m[0] * m[1] * m[2]) * sizeof *grid);
  if (!grid || kiln_volume_resample(canon, cn.n, grid, m)) { kiln_error(&d, NULL, "%s: out of memory", src); goto fail; }
  /* The rest of the pipeline (the graph is imported and bound above). */
  kiln_pipeline pl;
  kiln_target target = kiln_llvm_target(0);
  kiln_pipeline_opts po = {.graph = g, .dump_after = (kiln_pass_id)o->dump_after, .target = &target};
  if (kiln_pipeline_run(&po, &pl, &d)) goto fail;
  if (!(p = pl.program) || !(jit = kiln_llvm_jit_compile(p, &d))) goto fail;
  if (kiln_llvm_jit_set_threads(jit, threads)) { kiln_error(&d, NULL, "cannot start %d threads", threads); goto fail; }
  bufs = calloc((size_t)p->nbufs + 1, sizeof *bufs);
  stacked = calloc((size_t)p->nbufs + 1, sizeof *stacked);
  ws = aligned_alloc(64, ((size_t)p->workspace_bytes + 127) & ~(size_t)63);
  if (!bufs || !stacked || !ws) { kiln_error(&d, NULL, "out of memory"); goto fail; }
  kiln_llvm_jit_bind(p, bufs, ws);
  int inb = -1, seg = -1;
  for (int b = 0; b < p->nbufs; b++) {
    const kiln_buf *buf = p->bufs[b];
    size_t bytes = (size_t)buf->numel * kiln_dtype_size(buf->dtype);
    if (buf->kind == KILN_BUF_INPUT) inb = b;
    if (buf->kind != KILN_BUF_INPUT && buf->kind != KILN_BUF_OUTPUT) continue;
    if (bytes > ((size_t)1 << 40) / (size_t)runs) { kiln_error(&d, NULL, "output '%s' is too large", buf->name); goto fail; }
    bufs[b] = calloc(1, bytes + 8);
    if (buf->kind == KILN_BUF_OUTPUT) {
      stacked[b] = calloc(1, bytes * (size_t)runs + 8);
      if (buf->io_index == 0) seg = b;
    }
    if (!bufs[b] || (buf->kind == KILN_BUF_OUTPUT && !stacked[b])) { kiln_error(&d, NULL, "out of memory"); goto fail; }
  }
  for (int64_t r = 0; r < runs; r++) {
    for (int64_t c = 0; c < chans; c++)
      for (int64_t e = 0; e < per_run; e++)
        kiln_dtype_store_f(p->bufs[inb]->dtype, bufs[inb], (size_t)(c * per_run + e), grid[r * per_run + e]);
    kiln_llvm_jit_run(jit, bufs);
    for (int b = 0; b < p->nbufs; b++)
      if (stacked[b]) {
        size_t bytes = (size_t)p->bufs[b]->numel * kiln_dtype_size(p->bufs[b]->dtype);
        memcpy((char *)stacked[b] + (size_t)r * bytes, bufs[b], bytes);
      }
  }
  printf("volume %s: %lld x %lld x %lld voxels -> model grid %lld x %lld x %lld%s\n", src, (long long)vol.n[0],
         (long long)vol.n[1], (long long)vol.n[2], (long long)m[0], (long long)m[1], (long long)m[2],
         rank == 4 ? " (2-D model, slice by slice)" : "");
  for (int b = 0; b < p->nbufs; b++) {
    if (!stacked[b]) continue;
    const kiln_buf *buf = p->bufs[b];
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t e = 0; e < buf->numel * runs; e++) {
      double x = kiln_dtype_load_f(buf->dtype, stacked[b], (size_t)e);
      lo = x < lo ? x : lo;
      hi = x > hi ? x : hi;
    }
    printf("output %s : min %.6g  max %.6g\n", buf->name, lo, hi);
  }
  if (o->seg_out || o->overlay_out) {
    const kiln_buf *sb = seg >= 0 ? p->bufs[seg] : NULL;
    int ok = sb && sb->rank == rank && kiln_dtype_is_float(sb->dtype) && sb->dims[0] == 1;
    for (int k = 2; ok && k < rank; k++) ok = sb->dims[k] == in->dims[k];
    if (!ok) { kiln_error(&d, NULL, "%s: a segmentation needs the first output to be per-voxel class scores of the input's spatial shape", model); goto fail; }
    int64_t classes = sb->dims[1];
    if (classes > 256) { kiln_error(&d, NULL, "%s: output '%s' has %lld classes; labels are written as uint8 (at most 256)", model, sb->name, (long long)classes); goto fail; }
    int64_t mcount = m[0] * m[1] * m[2];
    mlab = malloc((size_t)mcount);
    clab = malloc((size_t)count);
    vlab = malloc((size_t)count);
    if (!mlab || !clab || !vlab) { kiln_error(&d, NULL, "out of memory"); goto fail; }
    int64_t hist[256] = {0};
    for (int64_t r = 0; r < runs; r++)
      for (int64_t e = 0; e < per_run; e++) {
        size_t base = (size_t)(r * classes * per_run + e);
        int best = 0;
        double bx = kiln_dtype_load_f(sb->dtype, stacked[seg], base);
        if (classes == 1) best = bx > 0.5;
        for (int64_t c = 1; c < classes; c++) {
          double x = kiln_dtype_load_f(sb->dtype, stacked[seg], base + (size_t)(c * per_run));
          if (x > bx) { bx = x; best = (int)c; }
        }
        mlab[r * per_run + e] = (uint8_t)best;
      }
    kiln_volume_labels_back(mlab, m, clab, cn.n);
    kiln_volume_from_canon(&vol, &cn, clab, vlab, 1);
    for (int64_t e = 0; e < count; e++) hist[vlab[e]]++;
    printf("segmentation: %lld classes; voxels per label:", (long long)(classes > 1 ? classes : 2));
    for (int c = 0; c < 256; c++) if (hist[c]) printf(" %d:%lld", c, (long long)hist[c]);
    printf("\n");
    if (o->overlay_out) {
      if (!o->window) { /* no window: show the volume's own range */
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t e = 0; e < count; e++) { lo = canon[e] < lo ? canon[e] : lo; hi = canon[e] > hi ? canon[e] : hi; }
        kiln_volume_window(canon, count, 0.5 * ((double)lo + hi), hi > lo ? (double)hi - lo : 1);
      }
      if (write_overlays(o->overlay_out, canon, clab, cn.n, &d)) goto fail;
    }
    if (o->seg_out && kiln_volume_write_labels(o->seg_out, &vol, vlab, &d)) goto fail;
    if (o->seg_out) printf("wrote %s\n", o->seg_out);
    if (o->overlay_out) printf("wrote %lld overlays to %s\n", (long long)cn.n[2], o->overlay_out);
  }
  /* Raw outputs last, so that a failure above leaves none behind; a
   * 2-D model's slices are stacked along the batch axis. */
  for (int b = 0; outdir && b < p->nbufs; b++) {
    if (!stacked[b]) continue;
    const kiln_buf *buf = p->bufs[b];
    kiln_tensor t = {.name = buf->name, .dtype = buf->dtype, .rank = buf->rank, .data = stacked[b],
                     .nbytes = (size_t)buf->numel * kiln_dtype_size(buf->dtype) * (size_t)runs};
    memcpy(t.dims, buf->dims, sizeof t.dims);
    if (rank == 4 && t.rank > 0) t.dims[0] *= runs;
    {
      char file[4096], safe[256];
      kiln_file_name_for(safe, sizeof safe, buf->name);
      snprintf(file, sizeof file, "%s/%s.%s", outdir, safe, format);
      if (kiln_tensor_write(file, &t, &d)) goto fail;
    }
  }
  rc = 0;
fail:
  if (rc) kiln_cli_report(&d);
  for (int b = 0; p && b < p->nbufs; b++) {
    if (bufs && (p->bufs[b]->kind == KILN_BUF_INPUT || p->bufs[b]->kind == KILN_BUF_OUTPUT)) free(bufs[b]);
    if (stacked) free(stacked[b]);
  }
  free(bufs);
  free(stacked);
  free(ws);
  free(canon);
  free(grid);
  free(mlab);
  free(clab);
  free(vlab);
  kiln_llvm_jit_free(jit);
  kiln_graph_free(g);
  kiln_volume_free(&vol);
  return rc;
}
