/* A tensor source (io/tensor_source.h) over a safetensors checkpoint directory (one file or
 * shards, io/safetensors.h), and the checkpoint's identity. Not collective: every rank that
 * needs weights opens its own. */
#ifndef MQ_IO_CHECKPOINT_SOURCE_H
#define MQ_IO_CHECKPOINT_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "io/h5result.h"
#include "io/tensor_source.h"
#include "mpiquant.h"

/* Opens dir (headers validated here, see mq_st_open_dir) and fills *src; src->ctx owns the
 * handle; read() refuses a non-finite value (MQ_EINPUT "<name>: element k is NaN"). Errors:
 * those of mq_st_open_dir; *src is zeroed on failure. */
mq_status mq_checkpoint_source_open(const char *dir, mq_tensor_source *src, mq_error *err);
/* Accepts a zeroed source; zeroes it. */
void mq_checkpoint_source_close(mq_tensor_source *src);

/* The checkpoint's identity, written by `quantize` as the result file's root attribute
 * checkpoint_hash (mq_h5_result_set_checkpoint): 64-bit FNV-1a over config.json's bytes
 * (config[len]) followed by one line per tensor in strcmp order of the names,
 *   "<name> <dtype> <d0>,<d1>,...\n"   (dtype F32, F16 or BF16; no dimensions for a scalar).
 * The tensor data is not read. 0 when src is not a checkpoint source. */
uint64_t mq_checkpoint_source_hash(const mq_tensor_source *src, const char *config, size_t len);
/* The same for a checkpoint directory: its config.json (read without blocking) and headers. */
mq_status mq_checkpoint_dir_hash(const char *dir, uint64_t *hash, mq_error *err);

/* MQ_EINPUT "<result>: written from another checkpoint (checkpoint_hash <file's>; <dir> has
 * <hash>)" when meta (read from result) has a checkpoint_hash different from hash; MQ_OK when
 * it has none (files of `layer`, or of a quantize that did not record it). */
mq_status mq_checkpoint_check_result(const char *result, const mq_result_meta *meta,
                                     const char *dir, uint64_t hash, mq_error *err);
/* The same from the paths: reads result's root attributes and hashes dir (used by `export
 * --model`). */
mq_status mq_checkpoint_check_result_file(const char *result, const char *dir, mq_error *err);

#endif
