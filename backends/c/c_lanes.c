/* Lane runs: consecutive stores that differ only lane by lane, printed as
 * one loop, so that C compilers vectorise them (c_lanes.h).
 *
 * Why: a register-tiled convolution (passes/lower_conv.c) ends in one
 * store per accumulator, y[b + j] = relu(t_{a+j}) for j < 48.  LLVM's SLP
 * vectoriser groups such stores.  GCC's (12, -O3 -march=native) does not
 * when the stored value holds a select (Relu, Clip), and then leaves the
 * whole tile scalar, accumulators included: SqueezeNet's 1x1
 * convolutions ran 24-34x slower than from the LLVM backend.  Printed as
 *   { float lane0[48]; lane0[0] = t16; ... lane0[47] = t63;
 *     for (j = 0; j < 48; ++j) y[b + j] = relu(lane0[j]); }
 * (j: the first loop var the kernel does not use)
 * the accumulators feed plain stores, which GCC groups (and with them the
 * tile), and the loop vectorises.  The statements and their order are the
 * loop IR's: only the spelling changes.
 *
 * A run is statements S_0..S_{n-1}, each a STORE into the same buffer at
 * index I_0 + j, whose values are one tree except at leaves that are
 *   - the same in every S_j (constants, loop indices, locals, loads), or
 *   - lane-linear: local v_0 + j (an f32/f64 accumulator), or a load of
 *     one buffer at index X_0 + j (a residual, a bias row).
 * A plain copy of lane-linear locals is left alone: compilers group those
 * already. */
#include "c_lanes.h"

#include <string.h>

const char kiln_c_lane_name[] = "lane";

enum { MAX_LEAVES = 64, LANE_MIN = 4 };

/* x as base + c (c the constant terms of a left-nested i64 sum); base NULL
 * when x is a constant. */
static const kiln_lx *split(const kiln_lx *x, int64_t *c) {
  *c = 0;
  while (x && x->kind == KILN_LX_BIN && x->op == KILN_BIN_ADD && x->b->kind == KILN_LX_CONST && x->dtype == KILN_DT_I64) {
    *c += x->b->i;
    x = x->a;
  }
  if (x && x->kind == KILN_LX_CONST && x->dtype == KILN_DT_I64) {
    *c += x->i;
    return NULL;
  }
  return x;
}

static int same(const kiln_lx *x, const kiln_lx *y) {
  if (x == y) return 1;
  if (!x || !y || x->kind != y->kind || x->op != y->op || x->dtype != y->dtype) return 0;
  switch (x->kind) {
  case KILN_LX_CONST: return x->i == y->i && !memcmp(&x->f, &y->f, sizeof x->f);
  case KILN_LX_INDEX:
  case KILN_LX_LOCAL: return x->var == y->var;
  case KILN_LX_LOAD: return x->buf == y->buf && same(x->a, y->a);
  default: return same(x->a, y->a) && same(x->b, y->b) && same(x->c, y->c);
  }
}

typedef struct matcher {
  int nleaves;                /* leaves met so far in this walk */
  unsigned char linear[MAX_LEAVES]; /* per leaf, set by lane 1 */
  int64_t lane;               /* j */
} matcher;

/* Leaf pos of S_j is leaf pos of S_0 (`lin` 0) or its lane-j copy (1). */
static int leaf(matcher *m, int lin) {
  int pos = m->nleaves++;
  if (pos >= MAX_LEAVES) return 0;
  if (m->lane == 1) m->linear[pos] = (unsigned char)lin;
  return m->linear[pos] == lin;
}

/* Whether y (in S_j) is x (in S_0) lane by lane; see the top of the file. */
static int match(matcher *m, const kiln_lx *x, const kiln_lx *y) {
  if (!x || !y) return x == y;
  if (x->kind != y->kind || x->op != y->op || x->dtype != y->dtype) return 0;
  switch (x->kind) {
  case KILN_LX_CONST:
  case KILN_LX_INDEX: return same(x, y) && leaf(m, 0);
  case KILN_LX_LOCAL:
    if (y->var == x->var) return leaf(m, 0);
    return y->var == x->var + m->lane && (x->dtype == KILN_DT_F32 || x->dtype == KILN_DT_F64) && leaf(m, 1);
  case KILN_LX_LOAD: {
    int64_t cx, cy;
    const kiln_lx *bx = split(x->a, &cx), *by = split(y->a, &cy);
    if (x->buf != y->buf || !same(bx, by)) return 0;
    if (cy == cx) return leaf(m, 0);
    return cy == cx + m->lane && leaf(m, 1);
  }
  default: return match(m, x->a, y->a) && match(m, x->b, y->b) && match(m, x->c, y->c);
  }
}

/* S_0's value with lane-linear leaves rewritten for lane `j` (an INDEX):
 * a local becomes element j of its lane array, a load's index gains j. */
typedef struct rewriter {
  kiln_arena *a;
  const matcher *m;
  int pos;
  kiln_c_lanes *out;
  const kiln_lx *j;
} rewriter;

static kiln_lx *node(rewriter *r, const kiln_lx *like) {
  kiln_lx *x = kiln_arena_alloc(r->a, sizeof *x);
  *x = *like;
  return x;
}

static const kiln_lx *rewrite(rewriter *r, const kiln_lx *x) {
  if (!x) return NULL;
  switch (x->kind) {
  case KILN_LX_CONST:
  case KILN_LX_INDEX: r->pos++; return x;
  case KILN_LX_LOCAL:
  case KILN_LX_LOAD: {
    if (!r->m->linear[r->pos++]) return x;
    kiln_lx *y = node(r, x);
    if (x->kind == KILN_LX_LOCAL) { /* element j of a lane array: one per local read (Relu reads it twice) */
      for (int k = 0; k < r->out->narrays; k++)
        if (r->out->arrays[k].first_local == x->var) {
          y->kind = KILN_LX_LOAD;
          y->buf = r->out->arrays[k].buf;
          y->a = (kiln_lx *)r->j;
          return y;
        }
      kiln_c_lane_array *arr = &r->out->arrays[r->out->narrays++];
      kiln_buf *b = kiln_arena_alloc(r->a, sizeof *b);
      memset(b, 0, sizeof *b);
      b->id = arr - r->out->arrays;
      b->name = kiln_c_lane_name;
      b->dtype = x->dtype;
      b->numel = r->out->n;
      b->scope = KILN_SCOPE_LOCAL;
      arr->buf = b;
      arr->first_local = x->var;
      y->kind = KILN_LX_LOAD;
      y->buf = b;
      y->a = (kiln_lx *)r->j;
      return y;
    }
    kiln_lx *idx = node(r, x->a);
    idx->kind = KILN_LX_BIN;
    idx->op = KILN_BIN_ADD;
    idx->dtype = KILN_DT_I64;
    idx->a = x->a;
    idx->b = (kiln_lx *)r->j;
    idx->c = NULL;
    y->a = idx;
    return y;
  }
  default: {
    kiln_lx *y = node(r, x);
    y->a = (kiln_lx *)rewrite(r, x->a);
    y->b = (kiln_lx *)rewrite(r, x->b);
    y->c = (kiln_lx *)rewrite(r, x->c);
    return y;
  }
  }
}

/* How many of the lane arrays a value with these leaves needs. */
static int count_linear_locals(const kiln_lx *x, const matcher *m, int *pos) {
  if (!x) return 0;
  if (x->kind == KILN_LX_CONST || x->kind == KILN_LX_INDEX || x->kind == KILN_LX_LOAD) {
    (*pos)++;
    return 0;
  }
  if (x->kind == KILN_LX_LOCAL) return m->linear[(*pos)++];
  return count_linear_locals(x->a, m, pos) + count_linear_locals(x->b, m, pos) + count_linear_locals(x->c, m, pos);
}

int kiln_c_lane_run(const kiln_ls *s, kiln_arena *a, int index_var, kiln_c_lanes *out) {
  memset(out, 0, sizeof *out);
  if (s->kind != KILN_LS_STORE || s->value->kind == KILN_LX_LOCAL) return 0;
  int64_t c0;
  const kiln_lx *base = split(s->index, &c0);
  matcher m = {0};
  int n = 1;
  for (const kiln_ls *t = s->next; t && t->kind == KILN_LS_STORE && t->buf == s->buf; t = t->next, n++) {
    int64_t c;
    if (!same(split(t->index, &c), base) || c != c0 + n) break;
    m.lane = n;
    m.nleaves = 0;
    if (!match(&m, s->value, t->value)) break;
  }
  if (n < LANE_MIN) return 0;
  int pos = 0, narrays = count_linear_locals(s->value, &m, &pos);
  out->n = n;
  out->arrays = kiln_arena_array(a, (size_t)(narrays ? narrays : 1), sizeof *out->arrays);
  kiln_lx *j = kiln_arena_alloc(a, sizeof *j);
  memset(j, 0, sizeof *j);
  j->kind = KILN_LX_INDEX;
  j->dtype = KILN_DT_I64;
  j->var = index_var;
  rewriter r = {.a = a, .m = &m, .out = out, .j = j};
  kiln_ls *store = kiln_arena_alloc(a, sizeof *store);
  *store = *s;
  store->next = NULL;
  store->value = (kiln_lx *)rewrite(&r, s->value);
  kiln_lx *idx = kiln_arena_alloc(a, sizeof *idx);
  *idx = *s->index;
  idx->kind = KILN_LX_BIN;
  idx->op = KILN_BIN_ADD;
  idx->dtype = KILN_DT_I64;
  idx->a = s->index;
  idx->b = j;
  idx->c = NULL;
  store->index = idx;
  memset(&out->loop, 0, sizeof out->loop);
  out->loop.kind = KILN_LS_FOR;
  out->loop.var = index_var;
  out->loop.extent = n;
  out->loop.body = store;
  return n;
}
