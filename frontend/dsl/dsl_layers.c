/* The layers: each DSL layer kind lowers to the ONNX-equivalent node(s) of
 * kiln's graph IR (conv -> Conv, batchnorm -> BatchNormalization, relu6 ->
 * Clip, dense -> Gemm with transB, ...), creating the parameters it owns
 * (named LAYER.weight, LAYER.bias, LAYER.running_mean, ... as PyTorch
 * names them, so weights exported from PyTorch load by name).
 *
 * Each node's shape function runs as soon as the node exists: the next
 * layer needs this one's output shape (a conv's weight has as many input
 * channels as its input has), and a mismatch is reported at the layer that
 * caused it, with the layer's DSL location.  Argument errors point at the
 * argument itself.  The table at the bottom is the list of layers: its
 * parameter specs are what the elaborator binds arguments against, and
 * docs/dsl.md documents the same names and defaults. */
#include <math.h>
#include <string.h>

#include "dsl_internal.h"

enum { MAX_CHANNELS = 1 << 20, MAX_WINDOW = 1 << 16 };

/* ---- arguments ---- */

static int find_arg(dsl_layer *L, const char *name) {
  for (int i = 0; i < L->npar; i++)
    if (!strcmp(L->pnames[i], name)) return i;
  KILN_ASSERT(!"layer parameter missing from its spec");
  return -1;
}

static const dsl_val *arg(dsl_layer *L, const char *name) { return &L->args[find_arg(L, name)]; }

/* Error at the argument `param` when it was written, else at the layer. */
static int lfail(dsl_layer *L, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lfail(dsl_layer *L, const char *param, const char *fmt, ...) {
  kiln_loc loc = L->loc;
  if (param) {
    const dsl_ast *at = L->arg_at[find_arg(L, param)];
    if (at) { loc.line = at->line; loc.col = at->col; }
  }
  va_list ap;
  va_start(ap, fmt);
  kiln_verror(L->c->d, &loc, fmt, ap);
  va_end(ap);
  return -1;
}

static int get_int(dsl_layer *L, const char *p, int64_t lo, int64_t hi, int64_t *out) {
  const dsl_val *v = arg(L, p);
  if (v->kind != V_INT || v->i < lo || v->i > hi)
    return lfail(L, p, "'%s' must be an integer from %lld to %lld, got %s", p, (long long)lo, (long long)hi,
                 dsl_val_str(L->c, v));
  *out = v->i;
  return 0;
}

static int get_bool(dsl_layer *L, const char *p, int *out) {
  const dsl_val *v = arg(L, p);
  if (v->kind != V_BOOL) return lfail(L, p, "'%s' must be true or false, got %s", p, dsl_val_str(L->c, v));
  *out = (int)v->i;
  return 0;
}

static int get_float(dsl_layer *L, const char *p, double lo, double hi, double *out) {
  const dsl_val *v = arg(L, p);
  double f = v->kind == V_INT ? (double)v->i : v->f;
  if ((v->kind != V_INT && v->kind != V_FLOAT) || !(f >= lo && f <= hi))
    return lfail(L, p, "'%s' must be a number from %g to %g, got %s", p, lo, hi, dsl_val_str(L->c, v));
  *out = f;
  return 0;
}

/* An int for every spatial dim, or a list of sp ints (3x3 is a list). */
static int get_window(dsl_layer *L, const char *p, int sp, int64_t lo, int64_t *out) {
  const dsl_val *v = arg(L, p);
  if (v->kind == V_INT) {
    for (int i = 0; i < sp; i++) out[i] = v->i;
  } else if (v->kind == V_LIST && v->n == sp) {
    for (int i = 0; i < sp; i++) {
      if (v->items[i].kind != V_INT) goto bad;
      out[i] = v->items[i].i;
    }
  } else goto bad;
  for (int i = 0; i < sp; i++)
    if (out[i] < lo || out[i] > MAX_WINDOW) goto bad;
  return 0;
bad:
  return lfail(L, p, "'%s' must be an integer >= %lld or %d of them (like %s) for this %dD input, got %s", p,
               (long long)lo, sp, sp == 3 ? "3x3x3" : sp == 2 ? "3x3" : "[3]", sp, dsl_val_str(L->c, v));
}

/* Padding: an int, one per spatial dim, 2 per spatial dim (ONNX order:
 * all begins then all ends), or same / valid. */
static int get_pads(dsl_layer *L, const char *p, int sp, int64_t *pads, const char **auto_pad) {
  const dsl_val *v = arg(L, p);
  *auto_pad = "NOTSET";
  if (v->kind == V_STR) {
    if (!strcmp(v->s, "same")) *auto_pad = "SAME_UPPER";
    else if (!strcmp(v->s, "valid")) *auto_pad = "VALID";
    else return lfail(L, p, "'%s' must be a number, a list, same or valid, got %s", p, dsl_val_str(L->c, v));
    return 0;
  }
  if (v->kind == V_LIST && v->n == 2 * sp) {
    for (int i = 0; i < 2 * sp; i++) {
      if (v->items[i].kind != V_INT || v->items[i].i < 0 || v->items[i].i > MAX_WINDOW) goto bad;
      pads[i] = v->items[i].i;
    }
    return 0;
  }
  int64_t half[8];
  if (v->kind == V_INT || (v->kind == V_LIST && v->n == sp)) {
    if (get_window(L, p, sp, 0, half)) return -1;
    for (int i = 0; i < sp; i++) pads[i] = pads[i + sp] = half[i];
    return 0;
  }
bad:
  return lfail(L, p, "'%s' must be an integer, %d or %d integers, same or valid, got %s", p, sp, 2 * sp,
               dsl_val_str(L->c, v));
}

static int get_init(dsl_layer *L, const char *p, dsl_val *out) {
  const dsl_val *v = arg(L, p);
  if (v->kind != V_INIT)
    return lfail(L, p, "'%s' must be an initializer (he, xavier, zeros, normal(0.01), ...), got %s", p,
                 dsl_val_str(L->c, v));
  *out = *v;
  return 0;
}

/* ---- tensors ---- */

static kiln_value *in1(dsl_layer *L) {
  if (L->nin != 1) {
    lfail(L, NULL, "takes one tensor, got %d (a tuple flows into it)", L->nin);
    return NULL;
  }
  return L->in[0];
}

static const char *shape_of(dsl_layer *L, const kiln_value *v) {
  char ty[160];
  kiln_value_type_str(L->c->g, v, ty, sizeof ty);
  return kiln_arena_strdup(L->c->ar, ty + 3); /* drop "f32" */
}

/* An (N, C, spatial...) input with a static channel dim; returns the spatial rank. */
static int spatial_input(dsl_layer *L, kiln_value *x, int min_sp, int max_sp) {
  int sp = x->rank - 2;
  if (sp < min_sp || sp > max_sp) {
    if (x->rank == 2)
      return lfail(L, NULL, "needs an image or volume (N, C, H, W...) input, got %s: it comes after the flatten",
                   shape_of(L, x)), -1;
    return lfail(L, NULL, "needs an (N, C, %s) input, got %s", max_sp == 3 ? "D1[, D2[, D3]]" : "D1, D2", shape_of(L, x)), -1;
  }
  if (KILN_DIM_IS_SYM(x->dims[1])) return lfail(L, NULL, "the channel dim of %s must be a number", shape_of(L, x)), -1;
  return sp;
}

static const char *sub_name(dsl_layer *L, const char *suffix) {
  return kiln_arena_printf(&L->c->g->arena, "%s.%s", L->name, suffix);
}

static int claim(dsl_layer *L, const char *name, void *owner) {
  if (kiln_strmap_get(&L->c->values, name))
    return lfail(L, NULL, "the name '%s' is already taken; give this layer another label", name);
  kiln_strmap_put(&L->c->values, name, owner);
  return 0;
}

/* A learnable parameter: loaded from the weights file, or initialised. */
static kiln_value *param(dsl_layer *L, const char *suffix, int rank, const int64_t *dims, const dsl_val *init,
                         int64_t fan_in, int64_t fan_out) {
  dsl_ctx *c = L->c;
  int64_t numel = 1;
  for (int i = 0; i < rank; i++)
    if (__builtin_mul_overflow(numel, dims[i], &numel) || numel > c->lim.max_params) {
      lfail(L, NULL, "its %s would have more than %lld elements", suffix, (long long)c->lim.max_params);
      return NULL;
    }
  if (c->params + numel > c->lim.max_params) {
    lfail(L, NULL, "the network would have more than %lld parameters", (long long)c->lim.max_params);
    return NULL;
  }
  c->params += numel;
  const char *name = sub_name(L, suffix);
  if (claim(L, name, L)) return NULL;
  float *data = kiln_arena_array(&c->g->arena, (size_t)numel, sizeof *data);
  if (c->weights) {
    if (dsl_weights_get(c->weights, name, rank, dims, data, &L->loc, c->d)) return NULL;
  } else {
    uint64_t seed = c->seed; /* the network's, unless the layer has seed=N */
    for (int i = 0; i < L->npar; i++)
      if (!strcmp(L->pnames[i], "seed") && L->args[i].kind != V_NONE) {
        if (L->args[i].kind != V_INT || L->args[i].i < 0) {
          lfail(L, "seed", "'seed' must be a non-negative integer, got %s", dsl_val_str(c, &L->args[i]));
          return NULL;
        }
        seed = (uint64_t)L->args[i].i;
      }
    dsl_init_fill(data, numel, init, seed, name, fan_in, fan_out);
  }
  kiln_value *v = kiln_value_const(c->g, name, KILN_DT_F32, rank, dims, data);
  v->kind = KILN_VALUE_PARAM;
  return v;
}

/* A constant that is not learned (clip bounds, dropout ratio, scales, shapes). */
static kiln_value *konst(dsl_layer *L, const char *suffix, kiln_dtype t, int rank, int64_t n, const void *data) {
  const char *name = sub_name(L, suffix);
  if (claim(L, name, L)) return NULL;
  int64_t dims[1] = {n};
  void *copy = kiln_arena_memdup(&L->c->g->arena, data, (size_t)n * kiln_dtype_size(t));
  return kiln_value_const(L->c->g, name, t, rank, dims, copy);
}

/* A node with its output value, located at the layer; attributes are set
 * by the caller before finish() runs the shape function. */
static kiln_node *mk_node(dsl_layer *L, kiln_op op, const char *name, kiln_value **ins, int nin) {
  kiln_node *n = kiln_node_new(L->c->g, op, name, nin, 1);
  n->loc = L->loc;
  n->loc.node_name = n->name;
  for (int k = 0; k < nin; k++) kiln_node_set_input(n, k, ins[k]);
  kiln_node_set_output(n, 0, kiln_value_new(L->c->g, name, KILN_VALUE_ACTIVATION));
  return n;
}

static int finish(dsl_layer *L, kiln_node *n, dsl_val *out) {
  kiln_shape_ctx sc = {L->c->g, L->c->d, 1 << 22};
  if (kiln_op_get(n->op)->shape(&sc, n)) return -1;
  kiln_strmap_put(&L->c->values, n->out[0]->name, n->out[0]);
  *out = (dsl_val){.kind = V_TENSOR, .t = n->out[0]};
  return 0;
}

static kiln_ints ints(dsl_layer *L, const int64_t *v, int n) {
  return (kiln_ints){n, kiln_arena_memdup(&L->c->g->arena, v, (size_t)n * sizeof *v)};
}

/* ---- convolution ---- */

typedef struct conv_args {
  int transpose, depthwise;
} conv_args;

static int build_conv_like(dsl_layer *L, dsl_val *out, conv_args ca) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  int sp = spatial_input(L, x, 1, 3);
  if (sp < 0) return -1;
  int64_t cin = x->dims[1], cout, groups = 1, k[3], s[3], dil[3], pads[6], opad[3] = {0, 0, 0};
  const char *auto_pad;
  int bias;
  dsl_val winit, binit;
  if (ca.depthwise) {
    int64_t mult;
    if (get_int(L, "multiplier", 1, MAX_CHANNELS, &mult)) return -1;
    groups = cin;
    cout = cin * mult;
  } else {
    if (get_int(L, "out", 1, MAX_CHANNELS, &cout) || get_int(L, "groups", 1, MAX_CHANNELS, &groups)) return -1;
    const dsl_val *want = arg(L, "in");
    if (want->kind != V_NONE && (want->kind != V_INT || want->i != cin)) {
      if (want->kind != V_INT) return lfail(L, "in", "'in' must be an integer, got %s", dsl_val_str(L->c, want));
      return lfail(L, NULL, "expects %lld input channels, got %lld (input %s)", (long long)want->i, (long long)cin,
                   shape_of(L, x));
    }
    if (cin % groups)
      return lfail(L, "groups", "groups=%lld does not divide the %lld input channels", (long long)groups, (long long)cin);
    if (cout % groups)
      return lfail(L, "groups", "groups=%lld does not divide the %lld output channels", (long long)groups, (long long)cout);
  }
  if (get_window(L, "kernel", sp, 1, k) || get_window(L, "stride", sp, 1, s) || get_window(L, "dilation", sp, 1, dil) ||
      get_pads(L, "pad", sp, pads, &auto_pad) || get_bool(L, "bias", &bias) || get_init(L, "init", &winit) ||
      get_init(L, "bias_init", &binit))
    return -1;
  if (ca.transpose && get_window(L, "output_pad", sp, 0, opad)) return -1;
  int64_t wd[5], recept = 1;
  for (int i = 0; i < sp; i++) { wd[2 + i] = k[i]; recept *= k[i]; }
  if (ca.transpose) { wd[0] = cin; wd[1] = cout / groups; }
  else { wd[0] = cout; wd[1] = cin / groups; }
  /* PyTorch's fans: dim 1 (resp. 0) of the weight times the receptive field. */
  kiln_value *ins[3] = {x, param(L, "weight", sp + 2, wd, &winit, wd[1] * recept, wd[0] * recept), NULL};
  if (!ins[1]) return -1;
  if (bias && !(ins[2] = param(L, "bias", 1, &cout, &binit, wd[1] * recept, wd[0] * recept))) return -1;
  kiln_node *n = mk_node(L, ca.transpose ? KILN_OP_CONV_TRANSPOSE : KILN_OP_CONV, L->name, ins, bias ? 3 : 2);
  kiln_attrs_conv *a = n->attrs;
  a->kernel_shape = ints(L, k, sp);
  a->strides = ints(L, s, sp);
  a->dilations = ints(L, dil, sp);
  a->group = groups;
  a->auto_pad = auto_pad;
  if (!strcmp(auto_pad, "NOTSET")) a->pads = ints(L, pads, 2 * sp);
  if (ca.transpose) a->output_padding = ints(L, opad, sp);
  return finish(L, n, out);
}

static int build_conv(dsl_layer *L, dsl_val *out) { return build_conv_like(L, out, (conv_args){0, 0}); }
static int build_depthwise(dsl_layer *L, dsl_val *out) { return build_conv_like(L, out, (conv_args){0, 1}); }
static int build_conv_transpose(dsl_layer *L, dsl_val *out) { return build_conv_like(L, out, (conv_args){1, 0}); }

/* ---- pooling, resizing ---- */

static int build_pool(dsl_layer *L, dsl_val *out, kiln_op op) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  int sp = spatial_input(L, x, 1, 3);
  if (sp < 0) return -1;
  int64_t k[3], s[3], dil[3] = {1, 1, 1}, pads[6];
  const char *auto_pad;
  int ceil_mode, count_pad = 0;
  if (get_window(L, "kernel", sp, 1, k) || get_pads(L, "pad", sp, pads, &auto_pad) || get_bool(L, "ceil", &ceil_mode))
    return -1;
  if (arg(L, "stride")->kind == V_NONE) memcpy(s, k, sizeof s);
  else if (get_window(L, "stride", sp, 1, s)) return -1;
  if (op == KILN_OP_MAX_POOL && get_window(L, "dilation", sp, 1, dil)) return -1;
  if (op == KILN_OP_AVERAGE_POOL && get_bool(L, "count_pad", &count_pad)) return -1;
  kiln_node *n = mk_node(L, op, L->name, &x, 1);
  kiln_attrs_pool *a = n->attrs;
  a->kernel_shape = ints(L, k, sp);
  a->strides = ints(L, s, sp);
  if (op == KILN_OP_MAX_POOL) a->dilations = ints(L, dil, sp);
  a->ceil_mode = ceil_mode;
  a->count_include_pad = count_pad;
  a->auto_pad = auto_pad;
  if (!strcmp(auto_pad, "NOTSET")) a->pads = ints(L, pads, 2 * sp);
  return finish(L, n, out);
}

static int build_maxpool(dsl_layer *L, dsl_val *out) { return build_pool(L, out, KILN_OP_MAX_POOL); }
static int build_avgpool(dsl_layer *L, dsl_val *out) { return build_pool(L, out, KILN_OP_AVERAGE_POOL); }

static int build_global(dsl_layer *L, dsl_val *out, kiln_op op) {
  kiln_value *x = in1(L);
  if (!x || spatial_input(L, x, 1, 6) < 0) return -1;
  return finish(L, mk_node(L, op, L->name, &x, 1), out);
}
static int build_global_avgpool(dsl_layer *L, dsl_val *out) { return build_global(L, out, KILN_OP_GLOBAL_AVERAGE_POOL); }
static int build_global_maxpool(dsl_layer *L, dsl_val *out) { return build_global(L, out, KILN_OP_GLOBAL_MAX_POOL); }

static int build_upsample(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  int sp = spatial_input(L, x, 1, 3);
  if (sp < 0) return -1;
  const dsl_val *sv = arg(L, "scale"), *mv = arg(L, "mode");
  float scales[5] = {1, 1, 1, 1, 1};
  for (int i = 0; i < sp; i++) {
    const dsl_val *e = sv->kind == V_LIST && sv->n == sp ? &sv->items[i] : sv;
    double f = e->kind == V_INT ? (double)e->i : e->kind == V_FLOAT ? e->f : -1;
    if (!(f > 0 && f <= 1024))
      return lfail(L, "scale", "'scale' must be a positive number (or %d of them), got %s", sp, dsl_val_str(L->c, sv));
    scales[2 + i] = (float)f;
  }
  const char *mode;
  if (mv->kind == V_STR && !strcmp(mv->s, "nearest")) mode = "nearest";
  else if (mv->kind == V_STR && (!strcmp(mv->s, "linear") || !strcmp(mv->s, "bilinear") || !strcmp(mv->s, "trilinear")))
    mode = "linear";
  else return lfail(L, "mode", "'mode' must be nearest or linear, got %s", dsl_val_str(L->c, mv));
  kiln_value *ins[3] = {x, NULL, konst(L, "scales", KILN_DT_F32, 1, sp + 2, scales)};
  if (!ins[2]) return -1;
  kiln_node *n = mk_node(L, KILN_OP_RESIZE, L->name, ins, 3);
  ((kiln_attrs_resize *)n->attrs)->mode = mode;
  return finish(L, n, out);
}

/* ---- dense, shapes, joins ---- */

static int build_dense(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  int64_t nout;
  int bias;
  dsl_val winit, binit;
  if (x->rank != 2)
    return lfail(L, NULL, "needs a (N, features) input, got %s: put flatten (or global_avgpool -> flatten) before it",
                 shape_of(L, x));
  int64_t nin = x->dims[1];
  if (KILN_DIM_IS_SYM(nin)) return lfail(L, NULL, "the feature dim of %s must be a number", shape_of(L, x));
  const dsl_val *want = arg(L, "in");
  if (want->kind != V_NONE && (want->kind != V_INT || want->i != nin)) {
    if (want->kind != V_INT) return lfail(L, "in", "'in' must be an integer, got %s", dsl_val_str(L->c, want));
    return lfail(L, NULL, "expects %lld input features, got %lld (input %s)", (long long)want->i, (long long)nin,
                 shape_of(L, x));
  }
  if (get_int(L, "out", 1, (int64_t)1 << 24, &nout) || get_bool(L, "bias", &bias) || get_init(L, "init", &winit) ||
      get_init(L, "bias_init", &binit))
    return -1;
  int64_t wd[2] = {nout, nin};
  kiln_value *ins[3] = {x, param(L, "weight", 2, wd, &winit, nin, nout), NULL};
  if (!ins[1]) return -1;
  if (bias && !(ins[2] = param(L, "bias", 1, &nout, &binit, nin, nout))) return -1;
  kiln_node *n = mk_node(L, KILN_OP_GEMM, L->name, ins, bias ? 3 : 2);
  ((kiln_attrs_gemm *)n->attrs)->transB = 1;
  return finish(L, n, out);
}

static int build_flatten(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  int64_t axis;
  if (!x || get_int(L, "axis", 0, x->rank, &axis)) return -1;
  kiln_node *n = mk_node(L, KILN_OP_FLATTEN, L->name, &x, 1);
  ((kiln_attrs_flatten *)n->attrs)->axis = axis;
  return finish(L, n, out);
}

static int build_reshape(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  const dsl_val *sv = arg(L, "shape");
  int64_t dims[KILN_MAX_RANK];
  if (sv->kind != V_LIST || sv->n < 1 || sv->n > KILN_MAX_RANK) goto bad;
  for (int i = 0; i < sv->n; i++) {
    if (sv->items[i].kind != V_INT || sv->items[i].i < -1) goto bad;
    dims[i] = sv->items[i].i;
  }
  kiln_value *ins[2] = {x, konst(L, "shape", KILN_DT_I64, 1, sv->n, dims)};
  if (!ins[1]) return -1;
  return finish(L, mk_node(L, KILN_OP_RESHAPE, L->name, ins, 2), out);
bad:
  return lfail(L, "shape", "'shape' must be a list of 1 to %d dims (0 keeps the input's dim, -1 infers one), got %s",
               KILN_MAX_RANK, dsl_val_str(L->c, sv));
}

/* Flow tensors followed by the tensors given as arguments. */
static kiln_value **joined(dsl_layer *L, int *n) {
  kiln_value **all = kiln_arena_array(L->c->ar, (size_t)(L->nin + L->nextra), sizeof *all);
  for (int i = 0; i < L->nin; i++) all[i] = L->in[i];
  for (int i = 0; i < L->nextra; i++) all[L->nin + i] = L->extra[i].t;
  *n = L->nin + L->nextra;
  return all;
}

static int build_concat(dsl_layer *L, dsl_val *out) {
  int n;
  kiln_value **all = joined(L, &n);
  int64_t axis;
  if (get_int(L, "axis", -KILN_MAX_RANK, KILN_MAX_RANK - 1, &axis)) return -1;
  kiln_node *nd = mk_node(L, KILN_OP_CONCAT, L->name, all, n);
  ((kiln_attrs_concat *)nd->attrs)->axis = axis;
  return finish(L, nd, out);
}

static int build_add(dsl_layer *L, dsl_val *out) {
  int n;
  kiln_value **all = joined(L, &n);
  if (n < 2) return lfail(L, NULL, "adds two or more tensors, got one: write add(shortcut) or (a, b) -> add");
  kiln_value *acc = all[0];
  for (int i = 1; i < n; i++) { /* a chain of binary Adds; the last one has the layer's name */
    const char *name = i == n - 1 ? L->name : sub_name(L, kiln_arena_printf(L->c->ar, "%d", i));
    if (i < n - 1 && claim(L, name, L)) return -1;
    kiln_value *ins[2] = {acc, all[i]};
    if (finish(L, mk_node(L, KILN_OP_ADD, name, ins, 2), out)) return -1;
    acc = out->t;
  }
  return 0;
}

/* ---- normalisation, dropout, activations ---- */

static int build_batchnorm(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  if (x->rank < 2 || KILN_DIM_IS_SYM(x->dims[1]))
    return lfail(L, NULL, "needs an (N, C, ...) input with a known channel count, got %s", shape_of(L, x));
  double eps, momentum;
  if (get_float(L, "eps", 0, 1, &eps) || get_float(L, "momentum", 0, 1, &momentum)) return -1;
  int64_t c = x->dims[1];
  dsl_val ones = {.kind = V_INIT, .i = I_CONSTANT, .f = 1}, zeros = {.kind = V_INIT, .i = I_CONSTANT, .f = 0};
  kiln_value *ins[5] = {x, param(L, "weight", 1, &c, &ones, c, c), NULL, NULL, NULL};
  if (!ins[1] || !(ins[2] = param(L, "bias", 1, &c, &zeros, c, c)) ||
      !(ins[3] = param(L, "running_mean", 1, &c, &zeros, c, c)) || !(ins[4] = param(L, "running_var", 1, &c, &ones, c, c)))
    return -1;
  L->c->params -= 2 * c; /* running statistics are not learnable parameters */
  kiln_node *n = mk_node(L, KILN_OP_BATCH_NORM, L->name, ins, 5);
  kiln_attrs_batchnorm *a = n->attrs;
  a->epsilon = (float)eps;
  a->momentum = (float)momentum;
  return finish(L, n, out);
}

static int build_dropout(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  double rate;
  if (!x || get_float(L, "rate", 0, 0.999, &rate)) return -1;
  float r = (float)rate;
  kiln_value *ins[2] = {x, konst(L, "ratio", KILN_DT_F32, 0, 1, &r)};
  if (!ins[1]) return -1;
  return finish(L, mk_node(L, KILN_OP_DROPOUT, L->name, ins, 2), out);
}

static int build_unary(dsl_layer *L, dsl_val *out, kiln_op op) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  kiln_node *n = mk_node(L, op, L->name, &x, 1);
  if (op == KILN_OP_LEAKY_RELU || op == KILN_OP_ELU) {
    double alpha;
    if (get_float(L, "alpha", 0, 1e6, &alpha)) return -1;
    if (op == KILN_OP_LEAKY_RELU) ((kiln_attrs_leaky_relu *)n->attrs)->alpha = (float)alpha;
    else ((kiln_attrs_elu *)n->attrs)->alpha = (float)alpha;
  }
  if (op == KILN_OP_SOFTMAX || op == KILN_OP_LOG_SOFTMAX) {
    int64_t axis;
    if (get_int(L, "axis", -x->rank, x->rank - 1, &axis)) return -1;
    ((kiln_attrs_softmax *)n->attrs)->axis = axis;
  }
  return finish(L, n, out);
}

#define UNARY(fn, op) \
  static int fn(dsl_layer *L, dsl_val *out) { return build_unary(L, out, op); }
UNARY(build_relu, KILN_OP_RELU)
UNARY(build_leaky_relu, KILN_OP_LEAKY_RELU)
UNARY(build_elu, KILN_OP_ELU)
UNARY(build_sigmoid, KILN_OP_SIGMOID)
UNARY(build_tanh, KILN_OP_TANH)
UNARY(build_hard_swish, KILN_OP_HARD_SWISH)
UNARY(build_softmax, KILN_OP_SOFTMAX)
UNARY(build_log_softmax, KILN_OP_LOG_SOFTMAX)
UNARY(build_identity, KILN_OP_IDENTITY)

static int build_relu6(dsl_layer *L, dsl_val *out) {
  kiln_value *x = in1(L);
  if (!x) return -1;
  float lo = 0, hi = 6;
  kiln_value *ins[3] = {x, konst(L, "min", KILN_DT_F32, 0, 1, &lo), konst(L, "max", KILN_DT_F32, 0, 1, &hi)};
  if (!ins[1] || !ins[2]) return -1;
  return finish(L, mk_node(L, KILN_OP_CLIP, L->name, ins, 3), out);
}

/* ---- the table ---- */

#define CONV_COMMON "dilation=1 groups=1 bias=true init=he bias_init=zeros seed=none in=none"
static const dsl_layer_def layers[] = {
    {"conv", "out kernel stride=1 pad=0 " CONV_COMMON, "the number of output channels and the kernel size", 0, build_conv},
    {"depthwise", "kernel stride=1 pad=0 dilation=1 multiplier=1 bias=true init=he bias_init=zeros seed=none",
     "the kernel size", 0, build_depthwise},
    {"conv_transpose", "out kernel stride=1 pad=0 output_pad=0 " CONV_COMMON,
     "the number of output channels and the kernel size", 0, build_conv_transpose},
    {"deconv", "out kernel stride=1 pad=0 output_pad=0 " CONV_COMMON, "the number of output channels and the kernel size",
     0, build_conv_transpose},
    {"upsample", "scale=2 mode=nearest", "the scale factor", 0, build_upsample},
    {"maxpool", "kernel stride=none pad=0 dilation=1 ceil=false", "the window size", 0, build_maxpool},
    {"avgpool", "kernel stride=none pad=0 ceil=false count_pad=false", "the window size", 0, build_avgpool},
    {"global_avgpool", "", "", 0, build_global_avgpool},
    {"global_maxpool", "", "", 0, build_global_maxpool},
    {"dense", "out bias=true init=he bias_init=zeros seed=none in=none", "the number of output features", 0, build_dense},
    {"fc", "out bias=true init=he bias_init=zeros seed=none in=none", "the number of output features", 0, build_dense},
    {"flatten", "axis=1", "", 0, build_flatten},
    {"reshape", "shape", "the new shape, e.g. [0, -1]", 0, build_reshape},
    {"concat", "axis=1", "", 1, build_concat},
    {"add", "", "", 1, build_add},
    {"batchnorm", "eps=1e-5 momentum=0.9", "", 0, build_batchnorm},
    {"bn", "eps=1e-5 momentum=0.9", "", 0, build_batchnorm},
    {"dropout", "rate=0.5", "", 0, build_dropout},
    {"relu", "", "", 0, build_relu},
    {"leaky_relu", "alpha=0.01", "", 0, build_leaky_relu},
    {"relu6", "", "", 0, build_relu6},
    {"elu", "alpha=1.0", "", 0, build_elu},
    {"sigmoid", "", "", 0, build_sigmoid},
    {"tanh", "", "", 0, build_tanh},
    {"hard_swish", "", "", 0, build_hard_swish},
    {"softmax", "axis=1", "", 0, build_softmax},
    {"log_softmax", "axis=1", "", 0, build_log_softmax},
    {"identity", "", "", 0, build_identity},
};

const dsl_layer_def *dsl_layer_find(const char *name) {
  for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
    if (!strcmp(layers[i].name, name)) return &layers[i];
  return NULL;
}

const char *dsl_layer_suggest(const char *name) {
  const char *best = NULL;
  int bd = 3;
  for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
    int d = dsl_edit_distance(name, layers[i].name);
    if (d < bd) { bd = d; best = layers[i].name; }
  }
  return best;
}
