/* A tensor source (io/tensor_source.h) over a result file (SPEC.md "Result file"):
 *   "<module>.weight"  for every group /layers/<module>: the dequantized weight
 *                      Ŵ[r,c] = scales[r,g]·(code[r,c] − zeros[r,g]), g = g_idx[c], as float32
 *                      [rows, cols] (mq_layer_result_dequantize, the one definition of Ŵ);
 *   "<name>"           for every dataset /model/tensors/<name> (written by `quantize`: the
 *                      tensors that were not quantized), converted to float32.
 * plus /model/config (config.json's text; a scalar string dataset, or a string attribute
 * "config" of /model) when present.
 *
 * Serial HDF5, rank-local: every rank that needs weights opens the file read-only itself. The
 * file is treated as hostile (io/h5common.h): open() accepts only a complete mpiquant result file
 * (complete=1, bits 2..8) and checks every layer's shapes (qweight [rows, ceil(cols·bits/32)],
 * scales and zeros [rows, ngroups], g_idx [cols], the attributes rows and cols) and every
 * attribute and string it reads (class, one element); reading a layer checks g_idx ∈
 * [0, ngroups), finite scales and zeros ∈ [0, 2^bits − 1]. Failures are MQ_EINPUT
 * "<path>: /layers/<name>: <reason>" (or "<path>: <object>: <reason>"). Every value read is
 * finite: a NaN or Inf in /model/tensors is MQ_EINPUT, a dequantized weight that overflows
 * float32 (a huge scale times a code) MQ_ENUMERIC. */
#ifndef MQ_IO_RESULT_TENSORS_H
#define MQ_IO_RESULT_TENSORS_H

#include <stddef.h>

#include "io/h5result.h"
#include "io/tensor_source.h"
#include "mpiquant.h"

#define MQ_RT_MAX_DIMS 8

/* Opens path and fills *src (find/read/ctx). find() reports the true ndim but at most 2 dims of
 * the shape; mq_result_tensors_info() gives all of them. On failure *src is zeroed. */
mq_status mq_result_tensors_open(const char *path, mq_tensor_source *src, mq_error *err);
/* Accepts a zeroed source; zeroes it. */
void mq_result_tensors_close(mq_tensor_source *src);

/* config.json's text from /model/config (NUL-terminated, owned by the source), or NULL. */
const char *mq_result_tensors_config_json(const mq_tensor_source *src);
/* 1 when the file has a /model/tensors group (a file written by `quantize`), else 0. */
int mq_result_tensors_has_model_tensors(const mq_tensor_source *src);
/* Root attributes (bits, group_size, sym, act_order, static_groups, damp, method, ...). */
const mq_result_meta *mq_result_tensors_meta(const mq_tensor_source *src);

typedef struct mq_result_tensor_info {
  const char *name;   /* tensor name ("<module>.weight" or the /model/tensors name) */
  const char *module; /* quantized layer: <module> (the /layers group); else NULL */
  const char *dtype;  /* /model/tensors: the original safetensors dtype ("F32", "F16", "BF16";
                         from the `dtype` attribute, else from the dataset type); layers: NULL */
  int ndim;
  size_t shape[MQ_RT_MAX_DIMS];
  size_t count;       /* product of shape */
  size_t ngroups;     /* layers: columns of scales/zeros; else 0 */
} mq_result_tensor_info;

/* Tensors in strcmp order of their names. Returns 0 when i >= count. Pointers owned by the
 * source. */
size_t mq_result_tensors_count(const mq_tensor_source *src);
int mq_result_tensors_info(const mq_tensor_source *src, size_t i, mq_result_tensor_info *info);

/* The packed layer /layers/<module> as stored: res->{rows, cols, ngroups, words, bits, qweight,
 * scales, zeros, g_idx} (arrays mq_alloc'd, released by mq_layer_result_free; the error
 * attributes are left 0), read by mq__h5_layer_read (io/h5common.h): checks g_idx ∈ [0, ngroups),
 * finite scales and zeros ∈ [0, 2^bits − 1]. */
mq_status mq_result_tensors_read_layer(const mq_tensor_source *src, const char *module,
                                       mq_layer_result *res, mq_error *err);

#endif
