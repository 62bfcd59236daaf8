/* Token files for --calib / --tokens (SPEC.md "Command line"): `.npy` (1-D integer array),
 * `.h5` (integer dataset /tokens, 1-D), anything else raw bytes = tokens 0..255 (only for a
 * 256-token vocabulary). Serial, not collective: one rank reads and broadcasts, or each reads. */
#ifndef MQ_IO_TOKENS_H
#define MQ_IO_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

/* Reads all tokens of path into *out ([*n], mq_alloc'd, caller frees with mq_free) and checks
 * every id is in [0, vocab_size). Errors: MQ_EINPUT "<path>: <reason>", e.g. "<path>: token
 * <id> at position <i> is outside the vocabulary (size V)", "<path>: raw byte files need a
 * 256-token vocabulary", unsupported npy dtype/shape/order, missing /tokens; MQ_EFAIL on out of
 * memory. *out is NULL and *n is 0 on failure. An empty file is an error. */
mq_status mq_tokens_read(const char *path, int vocab_size, int32_t **out, size_t *n,
                         mq_error *err);

#endif
