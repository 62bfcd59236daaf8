/* A tensor source (io/tensor_source.h) over a safetensors checkpoint directory (one file or
 * shards, io/safetensors.h). Not collective: every rank that needs weights opens its own. */
#ifndef MQ_IO_CHECKPOINT_SOURCE_H
#define MQ_IO_CHECKPOINT_SOURCE_H

#include "io/tensor_source.h"
#include "mpiquant.h"

/* Opens dir (headers validated here, see mq_st_open_dir) and fills *src; src->ctx owns the
 * handle. Errors: those of mq_st_open_dir; *src is zeroed on failure. */
mq_status mq_checkpoint_source_open(const char *dir, mq_tensor_source *src, mq_error *err);
/* Accepts a zeroed source; zeroes it. */
void mq_checkpoint_source_close(mq_tensor_source *src);

#endif
