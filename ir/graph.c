/* Graph construction, ordering and pruning. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

kiln_graph *kiln_graph_new(void) {
  kiln_graph *g = calloc(1, sizeof *g);
  if (!g) {
    fprintf(stderr, "kiln: fatal: out of memory\n");
    abort();
  }
  kiln_arena_init(&g->arena);
  g->name = "";
  g->producer = "";
  return g;
}

void kiln_graph_free(kiln_graph *g) {
  if (!g) return;
  for (struct kiln_release *r = g->release; r; r = r->next) r->fn(r->p);
  kiln_arena_free(&g->arena);
  free(g);
}

void kiln_graph_on_free(kiln_graph *g, void (*fn)(void *), void *p) {
  struct kiln_release *r = kiln_arena_alloc(&g->arena, sizeof *r);
  r->fn = fn;
  r->p = p;
  r->next = g->release;
  g->release = r;
}

/* Grows an arena-backed pointer array; old storage is simply abandoned. */
static void push(kiln_arena *a, void ***arr, int *n, int *cap, void *item) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 16;
    void **na = kiln_arena_array(a, (size_t)nc, sizeof *na);
    if (*n) memcpy(na, *arr, (size_t)*n * sizeof *na);
    *arr = na;
    *cap = nc;
  }
  (*arr)[(*n)++] = item;
}

kiln_value *kiln_value_new(kiln_graph *g, const char *name, kiln_value_kind kind) {
  kiln_value *v = kiln_arena_alloc(&g->arena, sizeof *v);
  v->name = kiln_arena_strdup(&g->arena, name ? name : "");
  v->kind = kind;
  v->rank = -1;
  v->buffer = -1;
  v->id = g->nvalues;
  push(&g->arena, (void ***)&g->values, &g->nvalues, &g->cap_values, v);
  return v;
}

kiln_value *kiln_value_const(kiln_graph *g, const char *name, kiln_dtype t, int rank,
                             const int64_t *dims, const void *data) {
  kiln_value *v = kiln_value_new(g, name, KILN_VALUE_CONST);
  v->dtype = t;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->dims[i] = dims[i];
  v->data = data;
  return v;
}

kiln_value *kiln_graph_new_input(kiln_graph *g, const char *name, kiln_dtype t, int rank, const kiln_dim *dims) {
  kiln_value *v = kiln_value_new(g, name, KILN_VALUE_INPUT);
  v->dtype = t;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->dims[i] = dims[i];
  kiln_graph_add_input(g, v);
  return v;
}

kiln_node *kiln_node_new(kiln_graph *g, kiln_op op, const char *name, int nin, int nout) {
  kiln_node *n = kiln_arena_alloc(&g->arena, sizeof *n);
  const kiln_op_info *info = kiln_op_get(op);
  n->op = op;
  n->name = kiln_arena_strdup(&g->arena, name ? name : "");
  n->id = g->nnodes;
  n->nin = nin;
  n->nout = nout;
  n->in = kiln_arena_array(&g->arena, (size_t)(nin ? nin : 1), sizeof *n->in);
  n->out = kiln_arena_array(&g->arena, (size_t)(nout ? nout : 1), sizeof *n->out);
  n->attrs = kiln_arena_alloc(&g->arena, info->attrs->size);
  kiln_attrs_init(info->attrs, n->attrs);
  n->loc.file = g->file;
  n->loc.node_name = n->name;
  n->loc.op_type = info->name;
  n->loc.node_index = n->id;
  push(&g->arena, (void ***)&g->nodes, &g->nnodes, &g->cap_nodes, n);
  return n;
}

const char *kiln_graph_unique_name(kiln_graph *g, const char *base, const char *tag) {
  const char *name = kiln_arena_printf(&g->arena, "%s_%s", base, tag);
  for (int n = 1;; n++) {
    int clash = 0;
    for (int i = 0; i < g->nvalues && !clash; i++) clash = !strcmp(g->values[i]->name, name);
    if (!clash) return name;
    name = kiln_arena_printf(&g->arena, "%s_%s%d", base, tag, n);
  }
}

void kiln_node_fuse(kiln_graph *g, kiln_node *into, kiln_node *step) {
  push(&g->arena, (void ***)&into->epi.steps, &into->epi.nsteps, &into->epi.cap, step);
  step->fused_into = into;
}

void kiln_graph_add_input(kiln_graph *g, kiln_value *v) {
  int cap = g->ninputs;
  push(&g->arena, (void ***)&g->inputs, &g->ninputs, &cap, v);
}

void kiln_graph_add_output(kiln_graph *g, kiln_value *v) {
  int cap = g->noutputs;
  push(&g->arena, (void ***)&g->outputs, &g->noutputs, &cap, v);
  v->is_output = 1;
}

void kiln_node_set_input(kiln_node *n, int slot, kiln_value *v) {
  if (n->in[slot]) n->in[slot]->uses--;
  n->in[slot] = v;
  if (v) v->uses++;
}

void kiln_node_set_output(kiln_node *n, int slot, kiln_value *v) {
  n->out[slot] = v;
  if (v) {
    v->producer = n;
    v->producer_slot = slot;
    v->kind = KILN_VALUE_ACTIVATION;
  }
}

int kiln_graph_sym(kiln_graph *g, const char *name) {
  for (int i = 0; i < g->nsyms; i++)
    if (strcmp(g->syms[i], name) == 0) return -(i + 1);
  if (g->nsyms == KILN_MAX_SYMS) return -KILN_MAX_SYMS; /* share the last one (importers check first) */
  g->syms[g->nsyms++] = kiln_arena_strdup(&g->arena, name);
  return -g->nsyms;
}

/* Saturates at INT64_MAX rather than overflowing: each dim is bounded, but
 * their product need not be (e.g. [2^40, 2^40, 0], which is empty). */
int64_t kiln_value_numel(const kiln_value *v, int64_t sym_value) {
  int64_t n = 1;
  for (int i = 0; i < v->rank; i++) {
    int64_t d = KILN_DIM_IS_SYM(v->dims[i]) ? sym_value : v->dims[i];
    if (d == 0) return 0;
    n = d > 0 && n > INT64_MAX / d ? INT64_MAX : n * d;
  }
  return n;
}

size_t kiln_value_nbytes(const kiln_value *v) {
  return (size_t)kiln_value_numel(v, 1) * kiln_dtype_size(v->dtype);
}

int kiln_value_is_static(const kiln_value *v) {
  if (v->rank < 0) return 0;
  for (int i = 0; i < v->rank; i++)
    if (KILN_DIM_IS_SYM(v->dims[i])) return 0;
  return 1;
}

void kiln_value_type_str(const kiln_graph *g, const kiln_value *v, char *buf, int size) {
  int n = snprintf(buf, (size_t)size, "%s", kiln_dtype_name(v->dtype));
  if (v->rank < 0) { snprintf(buf + n, (size_t)(size - n), "[?]"); return; }
  n += snprintf(buf + n, (size_t)(size - n), "[");
  for (int i = 0; i < v->rank && n < size; i++) {
    kiln_dim d = v->dims[i];
    const char *sep = i ? "," : "";
    if (KILN_DIM_IS_SYM(d) && -d - 1 < g->nsyms)
      n += snprintf(buf + n, (size_t)(size - n), "%s%s", sep, g->syms[-d - 1]);
    else
      n += snprintf(buf + n, (size_t)(size - n), "%s%lld", sep, (long long)d);
  }
  if (n < size) snprintf(buf + n, (size_t)(size - n), "]");
  if (v->layout == KILN_LAYOUT_NCHWC && n < size)
    snprintf(buf + strlen(buf), (size_t)size - strlen(buf), "@nchw%dc", v->layout_block);
}

/* Kahn's algorithm with a queue ordered by original position, so a graph
 * already in order keeps it exactly (stable printing, stable diffs). */
int kiln_graph_toposort(kiln_graph *g, kiln_diag *d) {
  int n = g->nnodes;
  if (n == 0) return 0;
  int *pending = calloc((size_t)n, sizeof *pending);
  int *pos = calloc((size_t)g->nvalues + 1, sizeof *pos);
  kiln_node **order = calloc((size_t)n, sizeof *order);
  /* consumers of each node's outputs: edge lists built by counting */
  int *head = malloc(((size_t)n + 1) * sizeof *head);
  int nedges = 0;
  for (int i = 0; i < n; i++) nedges += g->nodes[i]->nin;
  int *edge = malloc(((size_t)nedges + 1) * sizeof *edge);
  if (!pending || !pos || !order || !head || !edge) {
    fprintf(stderr, "kiln: fatal: out of memory\n");
    abort();
  }
  for (int i = 0; i < n; i++) g->nodes[i]->id = i;
  /* count, per producer node, how many consumer edges it has */
  int *cnt = calloc((size_t)n + 1, sizeof *cnt);
  for (int i = 0; i < n; i++) {
    kiln_node *nd = g->nodes[i];
    for (int k = 0; k < nd->nin; k++) {
      kiln_value *v = nd->in[k];
      if (v && v->producer) { cnt[v->producer->id]++; pending[i]++; }
    }
  }
  head[0] = 0;
  for (int i = 0; i < n; i++) head[i + 1] = head[i] + cnt[i];
  memset(cnt, 0, ((size_t)n + 1) * sizeof *cnt);
  for (int i = 0; i < n; i++) {
    kiln_node *nd = g->nodes[i];
    for (int k = 0; k < nd->nin; k++) {
      kiln_value *v = nd->in[k];
      if (v && v->producer) {
        int p = v->producer->id;
        edge[head[p] + cnt[p]++] = i;
      }
    }
  }
  /* min-heap on index */
  int *heap = malloc(((size_t)n + 1) * sizeof *heap), hn = 0, done = 0;
#define HPUSH(x) do { int j = hn++; heap[j] = (x); \
    while (j && heap[(j - 1) / 2] > heap[j]) { int t = heap[j]; heap[j] = heap[(j-1)/2]; heap[(j-1)/2] = t; j = (j-1)/2; } } while (0)
  for (int i = 0; i < n; i++) if (!pending[i]) HPUSH(i);
  while (hn) {
    int top = heap[0];
    heap[0] = heap[--hn];
    for (int j = 0;;) {
      int l = 2 * j + 1, r = l + 1, m = j;
      if (l < hn && heap[l] < heap[m]) m = l;
      if (r < hn && heap[r] < heap[m]) m = r;
      if (m == j) break;
      int t = heap[j]; heap[j] = heap[m]; heap[m] = t; j = m;
    }
    order[done++] = g->nodes[top];
    for (int e = head[top]; e < head[top + 1]; e++)
      if (--pending[edge[e]] == 0) HPUSH(edge[e]);
  }
#undef HPUSH
  int rc = 0;
  if (done < n) {
    kiln_node *bad = NULL;
    for (int i = 0; i < n && !bad; i++) if (pending[i]) bad = g->nodes[i];
    rc = kiln_error(d, &bad->loc, "graph has a cycle through this node");
  } else {
    for (int i = 0; i < n; i++) {
      g->nodes[i] = order[i];
      g->nodes[i]->id = i;
    }
  }
  free(pending); free(pos); free(order); free(head); free(edge); free(cnt); free(heap);
  return rc;
}

void kiln_graph_prune(kiln_graph *g) {
  /* Walk backwards: a node is live if it is not dead and something reads
   * one of its outputs, one of them is a graph output, or one updates
   * state in place. */
  for (int i = g->nnodes - 1; i >= 0; i--) {
    kiln_node *n = g->nodes[i];
    int live = 0;
    if (!n->dead)
      for (int k = 0; k < n->nout; k++)
        if (n->out[k] && (n->out[k]->uses > 0 || n->out[k]->is_output || n->out[k]->aliases)) live = 1; /* aliases: updates state */
    if (!live) {
      n->dead = 1;
      for (int k = 0; k < n->nin; k++) kiln_node_set_input(n, k, NULL);
    }
  }
  int m = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i]->dead) g->nodes[m++] = g->nodes[i];
  g->nnodes = m;
  for (int i = 0; i < m; i++) g->nodes[i]->id = i;
}
