/* The checkpoint's own tokenizer, in C: <model dir>/tokenizer.json (the Hugging Face
 * `tokenizers` format) turns calibration and evaluation text into the ids the model was trained
 * on. BPE models only:
 *   - byte-level BPE (GPT-2, Llama 3, Qwen 2/3, Mistral-Nemo): the pre-tokenizer's regex split,
 *     the byte-to-unicode alphabet, merges by rank, ignore_merges;
 *   - SentencePiece-style BPE (Llama 2, Mistral 7B, Mixtral): `▁` for spaces (Prepend/Replace
 *     normalizers or the Metaspace pre-tokenizer), byte fallback (<0xHH>), fuse_unk.
 * Normalizers: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Strip. Pre-tokenizers:
 * Sequence, Split, ByteLevel (last), Metaspace, Digits, Replace. Post-processors:
 * TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence. Added tokens are
 * matched in the text (leftmost-longest; lstrip/rstrip). Anything else in the file is refused
 * with MQ_EINPUT "<dir>/tokenizer.json: <what is not supported>", never guessed. The decoder,
 * truncation and padding sections are ignored (they do not change the ids of a document).
 *
 * Text is UTF-8; ill-formed bytes become U+FFFD (one per maximal ill-formed subpart, as Node,
 * browsers and Rust's String::from_utf8_lossy decode). Serial but for
 * mq_tokenizer_encode_file (collective); one tokenizer is used by one thread at a time (it keeps
 * a cache of pieces and scratch buffers). */
#ifndef MQ_IO_TOKENIZER_H
#define MQ_IO_TOKENIZER_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

typedef struct mq_tokenizer mq_tokenizer;

/* A growable list of token ids. Zero-initialise; release with mq_token_buf_free. */
typedef struct mq_token_buf {
  int32_t *ids; /* [n], capacity cap; mq_alloc'd */
  size_t n, cap;
} mq_token_buf;

void mq_token_buf_free(mq_token_buf *b);

/* Loads <model_dir>/tokenizer.json. Errors: MQ_EINPUT "<dir>/tokenizer.json: <reason>" (missing,
 * not JSON, truncated, unsupported component, merges naming tokens outside the vocabulary,
 * ids out of range ...); MQ_EFAIL out of memory. *out is NULL on failure. */
mq_status mq_tokenizer_load(const char *model_dir, mq_tokenizer **out, mq_error *err);
/* The same from the path of a tokenizer.json file. */
mq_status mq_tokenizer_load_file(const char *json_path, mq_tokenizer **out, mq_error *err);
/* Accepts NULL and *tok == NULL; sets *tok to NULL. */
void mq_tokenizer_free(mq_tokenizer **tok);
/* Largest id the tokenizer can produce + 1. */
int32_t mq_tokenizer_id_limit(const mq_tokenizer *tok);

/* Appends the ids of one document text[0..len) to out: the post-processor's special tokens
 * (e.g. BOS of TemplateProcessing) around the encoded text, as `tokenizer(text)` gives them. */
mq_status mq_tokenizer_encode(mq_tokenizer *tok, const char *text, size_t len, mq_token_buf *out,
                              mq_error *err);

/* Collective over comm (every rank passes its own tokenizer, loaded from the same file): the
 * documents of a text file, each encoded and appended to out in file order — `.jsonl`: one JSON
 * object per line with a string field "text" (blank lines skipped); any other name: the whole
 * file is one document. The documents are split across the ranks by bytes, cut only where a
 * document starts (tokenizer_docs.c), and every rank ends with all ids: the same array at any
 * rank count; a rank reads and tokenizes only the documents that start in its share (a .txt is
 * one document: rank 0's).
 * The file is opened without blocking and must be a regular file. *ndocs (may be NULL) counts
 * the documents; *nbytes (may be NULL) the text bytes encoded. Errors, agreed by all ranks and
 * recorded on the ranks that saw them: MQ_EINPUT "<path>: <reason>" (unreadable, "line N: ..."
 * with N counted in the whole file), or the tokenizer's; MQ_EFAIL out of memory. out is
 * unchanged on failure. */
mq_status mq_tokenizer_encode_file(MPI_Comm comm, mq_tokenizer *tok, const char *path,
                                   mq_token_buf *out, size_t *ndocs, size_t *nbytes,
                                   mq_error *err);

#endif
