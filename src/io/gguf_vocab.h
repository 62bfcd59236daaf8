/* The tokenizer section of a GGUF file (tokenizer.ggml.* keys) for llama.cpp.
 *
 * Two sources, nothing guessed:
 *   - a Hugging Face tokenizer.json (with tokenizer_config.json beside it, optional) whose model
 *     is byte-level BPE (model.type "BPE" under a ByteLevel pre-tokenizer, as GPT-2, Llama 3,
 *     Qwen): written as llama.cpp's "gpt2" tokenizer: tokenizer.ggml.tokens (the vocabulary
 *     by id, added tokens included, rows of the embedding beyond it as "[PAD<id>]"),
 *     token_type (1 normal, 3 control = special added token, 4 user-defined = other added
 *     token, 5 unused = padding), merges ("a b", rank order), pre (the pre-tokenizer's split
 *     regex recognised: Llama 3's -> "llama-bpe", GPT-2's ByteLevel regex -> "gpt-2"; any other
 *     is refused, because llama.cpp would then split text differently), bos/eos ids (config.json
 *     bos_token_id/eos_token_id, else tokenizer_config.json's tokens), add_bos_token and
 *     chat_template from tokenizer_config.json. SentencePiece-style tokenizers (BPE with
 *     byte_fallback, Unigram) and WordPiece are refused: their llama.cpp form needs scores that
 *     tokenizer.json does not carry (use llama.cpp's own converter on tokenizer.model).
 *   - no tokenizer.json and a vocabulary of exactly 256: the model is byte-level (token id =
 *     byte value, as mpiquant's raw-byte token files, e.g. data/demo-model). Written as a "gpt2"
 *     tokenizer whose 256 tokens are the bytes in GPT-2's byte-to-unicode spelling, no merges
 *     and pre-tokenizer "default": llama.cpp then tokenizes any text to exactly its bytes.
 *     No special tokens exist: bos = eos = 0 (NUL, which text never contains), add_bos_token
 *     false.
 * Anything else is refused (MQ_EINPUT) with the reason. */
#ifndef MQ_IO_GGUF_VOCAB_H
#define MQ_IO_GGUF_VOCAB_H

#include <jansson.h>

#include "io/gguf_write.h"
#include "mpiquant.h"

/* Adds the tokenizer keys for a model with vocab_size embedding rows. tokenizer_dir: the
 * directory holding tokenizer.json (--model), or NULL; config: config.json (for bos/eos ids), or
 * NULL. *kind is set to a short description for the log ("byte-level (256 tokens)", ...). */
mq_status mq_gguf_vocab_add(mq_gguf_writer *w, const char *tokenizer_dir, const json_t *config,
                            size_t vocab_size, char *kind, size_t kind_len, mq_error *err);

#endif
