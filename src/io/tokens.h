/* Token files for --calib / --tokens (SPEC.md "Command line"): `.npy` (integer array, 1-D, or
 * 2-D [samples, seqlen] flattened in row order), `.h5` (integer dataset /tokens, 1-D), text
 * (`.txt`: one document, the whole file; `.jsonl`: one JSON object per line with a string
 * "text") through the model's tokenizer.json (io/tokenizer.h), anything else raw bytes = tokens
 * 0..255 (only for a 256-token vocabulary). mq_tokens_read is serial; mq_tokens_read_model is
 * collective (text split across the ranks, token files read by rank 0 and broadcast). Files are
 * opened without blocking (io/paths.h): a FIFO is refused, never read. */
#ifndef MQ_IO_TOKENS_H
#define MQ_IO_TOKENS_H

#include <mpi.h>
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

/* Collective over comm: the tokens of path for a model, identical on every rank. model_dir (may
 * be NULL: then path is read as by mq_tokens_read) is the checkpoint directory. A text file
 * (.txt, .jsonl) is tokenized with <model_dir>/tokenizer.json when rank 0 finds one (each
 * document with the post-processor's special tokens, e.g. BOS), its documents split across the
 * ranks (mq_tokenizer_encode_file: the ids do not depend on the rank count); without one, a
 * 256-token vocabulary reads it as raw bytes (the old behaviour) and any other vocabulary fails
 * with MQ_EINPUT naming the missing tokenizer.json. Other files: rank 0 reads them as
 * mq_tokens_read and broadcasts. Errors of the tokenizer: MQ_EINPUT
 * "<model_dir>/tokenizer.json: <reason>". The status is agreed by all ranks; the cause is
 * recorded in err on the ranks that saw it. *out is NULL and *n 0 on failure. */
mq_status mq_tokens_read_model(MPI_Comm comm, const char *path, const char *model_dir,
                               int vocab_size, int32_t **out, size_t *n, mq_error *err);

/* 1 when path names a text file for the tokenizer (.txt or .jsonl). */
int mq_tokens_is_text(const char *path);

/* Writes tok[n] as a 1-D little-endian int32 .npy (version 1.0). A failure removes the partial
 * file. Errors: MQ_EFAIL "<path>: cannot write: <reason>". */
mq_status mq_tokens_write_npy(const char *path, const int32_t *tok, size_t n, mq_error *err);

#endif
