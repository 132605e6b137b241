/* The C source backend: prints a loop IR program as dependency-free C99
 * (kiln emit-c).  The printer is shared with the CUDA backend through
 * kiln_c_hooks (c_emit.h): a dialect overrides only what differs (kernel
 * signature, helper qualifiers, GPU-bound loops, scoped buffers, barriers,
 * launches). */
#ifndef KILN_C_H
#define KILN_C_H

#include <stdio.h>

#include "../../ir/loop.h"

typedef struct kiln_c_options {
  const char *prefix;      /* C identifier prefixing every public symbol */
  const char *model;       /* source file name, for comments */
  int weights_file;        /* 1: weights come from a binary blob given at run time;
                              0: PREFIX_weights.c holds them as const arrays */
  int threads;             /* 1: top-level parallel loops go through a host callback */
} kiln_c_options;

/* The three files; each is returned malloc'd (NUL-terminated). */
typedef struct kiln_c_output {
  char *header, *source, *weights; /* weights: NULL when weights_file */
  unsigned char *blob;             /* weights_file: the packed weights */
  size_t blob_len;
} kiln_c_output;

int kiln_c_emit(const kiln_program *p, const kiln_c_options *o, kiln_c_output *out, kiln_diag *d);
void kiln_c_output_free(kiln_c_output *out);

#endif
