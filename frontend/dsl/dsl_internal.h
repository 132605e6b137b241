/* Shared between the DSL's files; not part of kiln's API.
 *
 *   dsl_lex.c      bytes -> tokens (checks UTF-8, tracks line:col)
 *   dsl_parse.c    tokens -> syntax tree (dsl_ast)
 *   dsl_eval.c     syntax tree -> graph: scopes, expressions, statements,
 *                  blocks, loops, limits (the elaborator)
 *   dsl_layers.c   one function per layer kind: builds the ONNX-equivalent
 *                  node(s) and the parameters they own
 *   dsl_init.c     seeded parameter initializers (He, Xavier, ...)
 *   dsl_weights.c  parameters by name from a weights file (.onnx, .npz)
 * Everything the elaborator allocates lives in its own arena, freed when
 * elaboration ends; what the graph keeps (names, weights, the source text
 * for excerpts) is copied into the graph's arena. */
#ifndef KILN_DSL_INTERNAL_H
#define KILN_DSL_INTERNAL_H

#include "../../ir/shape.h"
#include "../../ir/strmap.h"
#include "kiln_dsl.h"

/* ---- tokens ---- */
typedef enum dsl_tok_kind {
  T_EOF, T_NEWLINE,   /* statement separators: newline or ';' */
  T_IDENT, T_INT, T_FLOAT, T_STRING,
  T_DIMS,             /* 3x3, 7x7, 3x3x3: a kernel size written as in papers */
  T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_LBRACE, T_RBRACE,
  T_COMMA, T_COLON, T_DOT, T_ASSIGN, T_ARROW,
  T_PLUS, T_MINUS, T_STAR, T_SLASH, T_DSLASH, T_PERCENT,
  T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
  /* keywords */
  T_BLOCK, T_NETWORK, T_INPUT, T_OUTPUT, T_SEED, T_WEIGHTS, T_IF, T_ELSE, T_FOR, T_IN, T_REPEAT,
  T_AND, T_OR, T_NOT, T_TRUE, T_FALSE, T_NONE
} dsl_tok_kind;

typedef struct dsl_tok {
  dsl_tok_kind kind;
  int line, col;
  const char *text; int len;  /* as written */
  int64_t ival;               /* T_INT */
  double fval;                /* T_FLOAT */
  const char *str;            /* T_STRING (unescaped), T_IDENT (NUL-terminated copy) */
  int ndims; int64_t *dims;   /* T_DIMS */
} dsl_tok;

typedef struct dsl_src {
  const char *file;    /* for locations */
  const char *text;    /* NUL-terminated copy in the graph's arena */
  size_t len;
  kiln_arena *arena;   /* the elaborator's arena */
  kiln_diag *d;
} dsl_src;

/* dsl_lex.c: the whole token array, ending in T_EOF; -1 on error. */
int dsl_lex(dsl_src *s, dsl_tok **toks, int *ntoks);
const char *dsl_tok_name(dsl_tok_kind k);

/* ---- syntax tree ---- */
typedef enum dsl_ast_kind {
  /* expressions */
  A_INT, A_FLOAT, A_STRING, A_BOOL, A_NONE, A_DIMS,
  A_NAME,        /* name: a variable, or a layer/block applied with no arguments */
  A_CURRENT,     /* `_`: the current tensor */
  A_IN,          /* `in`: the block's input */
  A_LIST,        /* [a, b]: items */
  A_TUPLE,       /* (a, b): items; a flow of several tensors */
  A_UNARY,       /* op a */
  A_BINARY,      /* a op b */
  A_CALL,        /* name(items): keys[i] names keyword arguments */
  A_INDEX,       /* a[b] */
  A_ATTR,        /* a.name */
  A_CHAIN,       /* items[0] -> items[1] -> ... */
  A_LABEL,       /* name: a  (names the layer or block a applies) */
  A_COND,        /* a if b else c */
  /* statements */
  A_EXPR,        /* a: a chain; its result becomes the current tensor */
  A_ASSIGN,      /* name = a: names a value, the current tensor stays */
  A_IF,          /* if a { b } else { c } */
  A_FOR,         /* [name2:] for name[, c->items...] in a { b } */
  A_REPEAT,      /* [name2:] repeat a { b } */
  A_INPUT,       /* input name: [items] (dtype in name2) */
  A_OUTPUT,      /* output name [= a] */
  A_SEED,        /* seed a */
  A_WEIGHTS,     /* weights a */
  A_BODY,        /* { items } */
  A_PARAM,       /* block parameter name [= a] */
  A_BLOCKDEF,    /* block name(items: A_PARAM) b */
  A_NETWORK      /* network name b */
} dsl_ast_kind;

typedef struct dsl_ast dsl_ast;
struct dsl_ast {
  dsl_ast_kind kind;
  int line, col;
  dsl_tok_kind op;          /* A_UNARY, A_BINARY */
  const char *name, *name2;
  int64_t ival;
  double fval;
  int64_t *dims;            /* A_DIMS: ival entries */
  dsl_ast *a, *b, *c;
  dsl_ast **items;
  const char **keys;        /* A_CALL: keyword of items[i], or NULL */
  int nitems;
};

typedef struct dsl_program {
  dsl_ast **globals; int nglobals;  /* A_ASSIGN at top level, in order */
  dsl_ast **blocks; int nblocks;    /* A_BLOCKDEF */
  dsl_ast *network;                 /* A_NETWORK */
} dsl_program;

/* dsl_parse.c */
int dsl_parse(dsl_src *s, const dsl_tok *toks, int ntoks, dsl_program *out);

/* ---- values (dsl_eval.c) ---- */
typedef enum dsl_val_kind {
  V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR,
  V_LIST,     /* [..] or (..): a flow of several tensors is a list of tensors */
  V_TENSOR,   /* a graph value */
  V_INIT      /* an initializer: he, xavier, normal(0.01), ... */
} dsl_val_kind;

typedef enum dsl_init_kind {
  I_HE_NORMAL, I_HE_UNIFORM, I_XAVIER_NORMAL, I_XAVIER_UNIFORM, I_LECUN_NORMAL,
  I_NORMAL, I_UNIFORM, I_CONSTANT
} dsl_init_kind;

typedef struct dsl_val dsl_val;
struct dsl_val {
  dsl_val_kind kind;
  int64_t i;             /* V_BOOL, V_INT; V_INIT: dsl_init_kind */
  double f;              /* V_FLOAT; V_INIT: std / limit / constant */
  const char *s;         /* V_STR */
  dsl_val *items; int n; /* V_LIST */
  kiln_value *t;         /* V_TENSOR */
};

/* The elaborator's state, shared with dsl_layers.c. */
typedef struct dsl_ctx {
  dsl_src *src;
  kiln_graph *g;
  kiln_arena *ar;            /* elaboration arena */
  kiln_diag *d;
  kiln_dsl_limits lim;
  const char *base_dir;      /* weights files; NULL = refused */
  kiln_strmap values;        /* every name in use (tensors, layers, block and
                                loop paths) -> its owner; only compared */
  kiln_strmap counters;      /* "path|kind" -> int* for automatic names */
  int64_t steps, params;
  uint64_t seed;             /* `seed N`, default 0 */
  struct dsl_weights *weights; /* `weights FILE`, or NULL */
  const char *weights_name;
} dsl_ctx;

/* A layer application being built (dsl_layers.c). */
typedef struct dsl_layer {
  dsl_ctx *c;
  const struct dsl_layer_def *def;
  kiln_loc loc;              /* the call; op_type = the layer's DSL name */
  const char *name;          /* full dotted name, e.g. "layer1.0.conv1" */
  kiln_value **in; int nin;  /* the incoming flow (tensors) */
  const char **pnames; int npar;   /* parameter names from def->params */
  dsl_val *args;             /* bound to pnames (defaults filled in) */
  const dsl_ast **arg_at;    /* where each argument was written, or NULL */
  dsl_val *extra; int nextra;       /* variadic tensors (add, concat) */
} dsl_layer;

typedef struct dsl_layer_def {
  const char *name;
  const char *params;        /* "out kernel stride=1 ..." (defaults are documentation) */
  const char *summary;       /* what it computes, for docs and errors */
  int variadic;              /* takes extra tensors positionally (add, concat) */
  int (*build)(dsl_layer *L, dsl_val *out);
} dsl_layer_def;

const dsl_layer_def *dsl_layer_find(const char *name);
/* The nearest layer name within edit distance 2, or NULL (for suggestions). */
const char *dsl_layer_suggest(const char *name);
int dsl_edit_distance(const char *a, const char *b);

/* dsl_eval.c: runs the program; the graph gets inputs, shape-inferred
 * nodes in order, and outputs. */
int dsl_elaborate(dsl_ctx *c, const dsl_program *prog);
/* Helpers used by the layers. */
int dsl_fail(dsl_ctx *c, const kiln_loc *loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *dsl_val_str(dsl_ctx *c, const dsl_val *v); /* for messages */
const char *dsl_kind_name(dsl_val_kind k);

/* dsl_init.c: fills n floats for parameter `name`; fan_in/fan_out as in
 * PyTorch (receptive field times in/out channels). */
void dsl_init_fill(float *out, int64_t n, const dsl_val *init, uint64_t seed, const char *name, int64_t fan_in,
                   int64_t fan_out);
/* Parses an initializer name ("he", "xavier", "zeros", ...); -1 if unknown. */
int dsl_init_by_name(const char *name, dsl_val *out);

/* dsl_weights.c */
typedef struct dsl_weights dsl_weights;
/* rel: as the network wrote it; it must stay inside base_dir (the rule of
 * ONNX external data, kiln_path_contained). */
dsl_weights *dsl_weights_open(const char *base_dir, const char *rel, const kiln_loc *loc, kiln_diag *d);
/* Copies tensor `name` into out (f32, numel elements) after checking its
 * shape; -1 with a located message when missing or of another shape. */
int dsl_weights_get(dsl_weights *w, const char *name, int rank, const int64_t *dims, float *out,
                    const kiln_loc *loc, kiln_diag *d);
void dsl_weights_close(dsl_weights *w);

#endif
