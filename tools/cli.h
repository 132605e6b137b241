/* Shared pieces of the kiln command-line tool. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdint.h>

#include "../ir/graph.h"
#include "../ir/loop.h"
#include "../ir/timing.h"
#include "tensor_io.h"

typedef struct kiln_cmd {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} kiln_cmd;

int kiln_cmd_inspect(int argc, char **argv);
int kiln_cmd_run(int argc, char **argv);
int kiln_cmd_run_images(int argc, char **argv); /* kiln run --image (cmd_run_image.c) */
int kiln_cmd_compile(int argc, char **argv);
int kiln_cmd_export(int argc, char **argv);
int kiln_cmd_emit_c(int argc, char **argv);
int kiln_cmd_train(int argc, char **argv); /* cmd_train.c, train_loop.c */
int kiln_cmd_explain(int argc, char **argv); /* cmd_explain.c */
int kiln_cmd_attack(int argc, char **argv); /* cmd_attack.c, passes/attack.c */

/* Prints "kiln: error: MSG" (and the note, if any) to stderr. */
void kiln_cli_report(const kiln_diag *d);
/* Prints "kiln: error: <fmt>" and returns 2 (usage errors). */
int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses an integer option value in [lo, hi]; returns -1 if invalid. */
int64_t kiln_cli_parse_int(const char *s, int64_t lo, int64_t hi);
/* Parses a positive integer option value (at most 2^30); returns -1 if invalid. */
int64_t kiln_cli_parse_count(const char *s);

/* --batch N, --dim NAME=N, --const NAME=FILE (bindings.c). */
enum { KILN_CLI_MAX_BIND = 64 };
typedef struct kiln_cli_bindings {
  int64_t batch; /* the batch dim (a symbolic leading dim of an input); 0: not given */
  int ndims, nconsts;
  const char *dim_name[KILN_CLI_MAX_BIND];
  int64_t dim_value[KILN_CLI_MAX_BIND];
  const char *const_name[KILN_CLI_MAX_BIND], *const_file[KILN_CLI_MAX_BIND];
  kiln_tensor consts[KILN_CLI_MAX_BIND]; /* read when bound; must outlive the graph */
} kiln_cli_bindings;
/* Takes opt (--batch, --dim, --const) with its value: 0, or 2 after a usage
 * error; 1 when opt is none of them. */
int kiln_cli_binding_option(const char *cmd, const char *opt, const char *val, kiln_cli_bindings *b);
/* Binds --dim and --batch dims; --const values (with the dims they fix). */
int kiln_cli_bind_dims(kiln_graph *g, const kiln_cli_bindings *b, kiln_diag *d);
void kiln_cli_bind_batch(kiln_graph *g, int64_t n); /* symbolic leading dims of inputs */
int kiln_cli_bind_consts(kiln_graph *g, kiln_cli_bindings *b, kiln_diag *d);
/* Checks tensor t fits input v and binds v's symbolic dims to t's. */
int kiln_cli_bind_input(kiln_graph *g, kiln_value *v, const kiln_tensor *t, const char *file, kiln_diag *d);
kiln_value *kiln_cli_find_input(const kiln_graph *g, const char *name);
/* Binds the batch dim to 1 if still symbolic, then fails naming the option
 * for any symbolic dim left or any input that decides shapes (`how` is the
 * option giving its value: "--const" or "--input"). */
int kiln_cli_require_static(kiln_graph *g, const char *how, kiln_diag *d);
void kiln_cli_bindings_free(kiln_cli_bindings *b);

/* Loads a model (by extension), applies the bindings and infers shapes.
 * With `static_shapes` (compile, emit-c) every dim must end up bound
 * (the batch dim defaults to 1).  Otherwise (inspect) unbound dims stay
 * symbolic where possible and, if inference needs them, are retried bound
 * to 1 (setting *bound_note). */
typedef struct kiln_model_opts {
  kiln_cli_bindings *bind;
  int static_shapes;
  int bound_note; /* out: symbolic dims had to be bound to 1 */
  int64_t params, bn_stats, param_bytes; /* out: counted before folding */
  int lower;             /* also run the loop passes (lower, simplify, plan) */
  int per_image;         /* for a backend that runs a one-image program per image (passes/per_image.c) */
  int dump_after;        /* --dump-after: a kiln_pass_id; 0 (KILN_PASS_NONE): none */
  int dumped;            /* out: the IR after dump_after was printed */
  kiln_program *program; /* out, with `lower` */
  const kiln_target *target; /* with `lower`: what to lower for (NULL: kiln_target_default()) */
  kiln_timing *timing;       /* --time: each pass's time (NULL: untimed) */
  const struct kiln_train_opts *train; /* --train: the graph becomes one training step (NULL: inference) */
  const struct kiln_explain_opts *explain; /* --explain: the explanation graph (passes/explain.h; NULL: none) */
  const char *params_file;   /* --params FILE: initializers replaced from a kiln parameter file (NULL: none) */
  int until;                 /* without `lower`: the last graph pass to run (a kiln_pass_id; 0: every one) */
} kiln_model_opts;
kiln_graph *kiln_cli_load(const char *path, kiln_model_opts *o, kiln_diag *d);
/* --dump-after VALUE (every command that compiles): 0 with *pass set; 2
 * after a usage error naming the passes; 3 for "list" (names printed to
 * stdout, the caller exits 0). */
int kiln_cli_dump_option(const char *cmd, const char *val, int *pass);
/* kiln run --profile's table (profile.c): times[r * nkernels + k] is kernel
 * k's time in run r (seconds); peak_core one core's FMA peak (GFLOP/s). */
int kiln_cli_profile_print(const kiln_program *p, const double *times, int repeat, int threads, double peak_core,
                           int vector_bits);
/* Output folders (out_dir.c): check, fill a temporary sibling, rename. */
/* kiln compile --target cuda (cmd_compile_cuda.c): 0, or 1 with the error reported. */
int kiln_cli_compile_cuda(const char *path, const char *outdir, const char *prefix, kiln_cli_bindings *bind,
                          const char *arch_list, int tf32, int dump_after, kiln_timing *timing);
int kiln_out_dir_check(const char *dir, kiln_diag *d);
int kiln_out_dir_begin(const char *dir, char *tmp, size_t size, kiln_diag *d);
int kiln_out_dir_write(const char *tmp, const char *name, const void *data, size_t len, kiln_diag *d);
int kiln_out_dir_commit(const char *dir, char *tmp, kiln_diag *d);
void kiln_out_dir_abort(char *tmp);
/* C identifiers for generated APIs. */
int kiln_c_identifier_ok(const char *s);
void kiln_c_identifier_from(char *out, size_t size, const char *name, int upper);
void kiln_c_prefix_for(const char *model_path, char *prefix, size_t size);
/* A file name (no folder) for a model-named tensor: the name itself when it
 * is 1..200 bytes, has no '/', '\\' or control byte and does not start
 * with '.'; otherwise those bytes replaced by '_', cut to 100 bytes (at a
 * UTF-8 boundary) and "_h" + 8 hex digits of FNV-1a-32 of the exact name
 * appended, so distinct names keep distinct files.  size >= 128. */
void kiln_file_name_for(char *out, size_t size, const char *name);
/* Multiply-accumulates of the whole graph (symbolic dims counted as 1). */
int64_t kiln_cli_macs(const kiln_graph *g);
/* Replaces g's float initializers by the tensors of the kiln parameter
 * file at path (params_file.c; format in emit_c_train.c); 0 or -1. */
int kiln_cli_apply_params(kiln_graph *g, const char *path, kiln_diag *d);
/* Just the import (by extension), no shape inference. */
kiln_graph *kiln_cli_import(const char *path, kiln_diag *d);

#endif
