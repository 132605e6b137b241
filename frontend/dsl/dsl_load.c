/* kiln_dsl_load: file -> tokens -> syntax tree -> elaborated graph.
 *
 * The source text is copied into the graph's arena: node locations point
 * into it (kiln_loc.source), so a diagnostic raised later, by shape
 * inference or lowering, still shows the offending line with a caret.
 * Elaboration state lives in a separate arena that is freed on return. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsl_internal.h"

enum { MAX_SOURCE = 4 << 20 };

kiln_dsl_limits kiln_dsl_default_limits(void) {
  return (kiln_dsl_limits){.max_params = (int64_t)1 << 28, .max_steps = 1 << 20, .max_repeat = 10000, .max_depth = 64};
}

kiln_graph *kiln_dsl_load_buffer(const char *src, size_t len, const char *name, const char *base_dir,
                                 const kiln_dsl_limits *limits, kiln_diag *d) {
  kiln_loc loc = {.file = name, .node_index = -1};
  if (len > MAX_SOURCE) {
    kiln_error(d, &loc, "file is larger than %d MB; is it really a .kiln file?", MAX_SOURCE >> 20);
    return NULL;
  }
  kiln_graph *g = kiln_graph_new();
  g->file = kiln_arena_strdup(&g->arena, name);
  g->producer = "kiln dsl";
  g->ir_version = 8; /* what kiln export writes for these graphs */
  g->opset = 17;
  kiln_arena ar;
  kiln_arena_init(&ar);
  char *text = kiln_arena_alloc(&g->arena, len + 1);
  if (len) memcpy(text, src, len);
  dsl_src s = {.file = g->file, .text = text, .len = len, .arena = &ar, .d = d};
  dsl_ctx c = {.src = &s, .g = g, .ar = &ar, .d = d, .base_dir = base_dir};
  c.lim = limits ? *limits : kiln_dsl_default_limits();
  kiln_strmap_init(&c.values, &ar);
  kiln_strmap_init(&c.counters, &ar);
  dsl_tok *toks;
  int ntoks;
  dsl_program prog;
  int rc = dsl_lex(&s, &toks, &ntoks) || dsl_parse(&s, toks, ntoks, &prog) || dsl_elaborate(&c, &prog) ||
           kiln_graph_toposort(g, d) || kiln_graph_verify(g, d);
  if (rc && !d->failed) kiln_error(d, &loc, "internal error: elaboration failed without a message");
  if (!rc) g->name = kiln_arena_strdup(&g->arena, prog.network->name);
  dsl_weights_close(c.weights);
  kiln_arena_free(&ar);
  if (rc) {
    kiln_graph_free(g);
    return NULL;
  }
  return g;
}

kiln_graph *kiln_dsl_load(const char *path, kiln_diag *d) {
  kiln_loc loc = {.file = path, .node_index = -1};
  struct stat st;
  FILE *f = fopen(path, "rb");
  if (!f) { kiln_error(d, &loc, "cannot open: %s", strerror(errno)); return NULL; }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    kiln_error(d, &loc, "not a regular file");
    return NULL;
  }
  if (st.st_size > MAX_SOURCE) {
    fclose(f);
    kiln_error(d, &loc, "file is larger than %d MB; is it really a .kiln file?", MAX_SOURCE >> 20);
    return NULL;
  }
  size_t len = (size_t)st.st_size;
  char *buf = malloc(len + 1);
  if (!buf || fread(buf, 1, len, f) != len) {
    free(buf);
    fclose(f);
    kiln_error(d, &loc, "read error");
    return NULL;
  }
  fclose(f);
  char *dir = strdup(path);
  kiln_graph *g = dir ? kiln_dsl_load_buffer(buf, len, path, dirname(dir), NULL, d) : NULL;
  free(dir);
  free(buf);
  return g;
}
