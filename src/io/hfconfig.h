/* Hugging Face config.json of the Llama family (SPEC.md "Command line", supported models):
 * LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM. Parsed with jansson, validated, and
 * kept verbatim as text (the result file stores it). Not collective. */
#ifndef MQ_IO_HFCONFIG_H
#define MQ_IO_HFCONFIG_H

#include <stddef.h>

#include "mpiquant.h"

/* Sanity limits of config.json's sizes, checked before anything is sized from them (the largest
 * published models stay far below): widths (hidden_size, intermediate_size), layers, heads,
 * vocabulary. A larger value is MQ_EINPUT naming the field. */
#define MQ_CONFIG_MAX_WIDTH (1LL << 20)
#define MQ_CONFIG_MAX_LAYERS (1LL << 12)
#define MQ_CONFIG_MAX_HEADS (1LL << 12)
#define MQ_CONFIG_MAX_VOCAB (1LL << 24)

typedef struct mq_llama_config {
  char architecture[64];        /* architectures[0] */
  int hidden_size;              /* d_model */
  int intermediate_size;        /* MLP width */
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;      /* default: num_attention_heads */
  int head_dim;                 /* hidden_size / num_attention_heads */
  int vocab_size;
  int max_position_embeddings;  /* 0 when absent */
  int sliding_window;           /* attention window of Mistral/Qwen2 configs; 0 = none (windows
                                   longer than it are refused: not implemented) */
  /* rope_scaling: none, "linear" (positions / factor) or "llama3" (Llama 3.1+: long
   * wavelengths / factor, short ones kept, a smooth blend between); others are refused */
  enum { MQ_ROPE_PLAIN = 0, MQ_ROPE_LINEAR = 1, MQ_ROPE_LLAMA3 = 2 } rope_scaling;
  double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  double rope_original_max_positions;
  double rms_norm_eps;          /* default 1e-6 */
  double rope_theta;            /* default 10000 */
  int tie_word_embeddings;      /* default 0 */
  int attention_bias;           /* q/k/v (and o for Llama) biases; Qwen2 always 1 */
  char torch_dtype[16];         /* "torch_dtype", else "dtype" (transformers >= 4.56):
                                   "bfloat16", ...; "" when absent */
  char *json_text;              /* the file's bytes, NUL-terminated, mq_alloc'd */
  size_t json_len;
} mq_llama_config;

/* Reads and validates path (a config.json, opened without blocking: a FIFO or device is
 * MQ_EINPUT "<path>: not a regular file"; larger than 16 MiB is refused). On success cfg owns
 * json_text (release with mq_llama_config_free). Errors: MQ_EINPUT "<path>: <field>: <reason>"
 * (missing, not a positive integer, beyond the MQ_CONFIG_MAX_* limits, not divisible, ...),
 * "<path>: unsupported architecture X (supported: ...)", "<path>: not valid JSON: ...";
 * MQ_EFAIL on out of memory. cfg is zeroed on failure. */
mq_status mq_llama_config_read(const char *path, mq_llama_config *cfg, mq_error *err);
/* Same from a directory: reads <dir>/config.json. */
mq_status mq_llama_config_read_dir(const char *dir, mq_llama_config *cfg, mq_error *err);
void mq_llama_config_free(mq_llama_config *cfg); /* accepts a zeroed struct */

#endif
