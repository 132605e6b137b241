/* Tensor files for `kiln run`: NumPy .npy (v1/v2/v3, C order, little
 * endian) and ONNX TensorProto .pb, read and written; writes go to a temp
 * file renamed into place so a failed run leaves no half-written output. */
#ifndef KILN_TENSOR_IO_H
#define KILN_TENSOR_IO_H

#include "../frontend/onnx/kiln_onnx.h"

/* By extension: .npy or .pb.  On error returns -1 with d set. */
int kiln_tensor_read(const char *path, kiln_tensor *t, kiln_diag *d);
int kiln_tensor_write(const char *path, const kiln_tensor *t, kiln_diag *d);
int kiln_npy_read(const char *path, kiln_tensor *t, kiln_diag *d);
int kiln_npy_write(const char *path, const kiln_tensor *t, kiln_diag *d);
int kiln_pb_write(const char *path, const kiln_tensor *t, kiln_diag *d);
/* Writes len bytes to path atomically (temp file in the same folder + rename). */
int kiln_write_atomic(const char *path, const void *data, size_t len, kiln_diag *d);

#endif
