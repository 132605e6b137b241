/* Shared pieces of the kiln command-line tool. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdint.h>

#include "../ir/graph.h"

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

/* Prints "kiln: error: MSG" (and the note, if any) to stderr. */
void kiln_cli_report(const kiln_diag *d);
/* Prints "kiln: error: <fmt>" and returns 2 (usage errors). */
int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive integer option value; returns -1 if invalid. */
int64_t kiln_cli_parse_count(const char *s);

/* Loads a model (by extension) and infers shapes.  batch > 0 binds every
 * symbolic dim to it; batch == 0 keeps them symbolic where possible and,
 * if inference needs them, retries bound to 1 (setting *bound_note). */
typedef struct kiln_model_opts {
  int64_t batch;
  int bound_note; /* out: symbolic dims had to be bound to 1 */
  int64_t params, bn_stats, param_bytes; /* out: counted before folding */
} kiln_model_opts;
kiln_graph *kiln_cli_load(const char *path, kiln_model_opts *o, kiln_diag *d);
/* Output folders (out_dir.c): check, fill a temporary sibling, rename. */
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
/* Just the import (by extension), no shape inference. */
kiln_graph *kiln_cli_import(const char *path, kiln_diag *d);

#endif
