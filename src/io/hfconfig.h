/* Hugging Face config.json of the Llama family (SPEC.md "Command line", supported models):
 * LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM
 * (fused qkv_proj and gate_up_proj) and the mixtures of experts MixtralForCausalLM,
 * Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, and Gemma2ForCausalLM. Parsed with jansson, validated, and kept verbatim
 * as text (the result file stores it). Not collective. */
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
#define MQ_CONFIG_MAX_EXPERTS (1LL << 12)

/* How a mixture-of-experts block names its tensors (module names under "model.layers.<i>."):
 * Mixtral  block_sparse_moe.gate, block_sparse_moe.experts.<j>.w1 (gate) / w3 (up) / w2 (down);
 * Qwen     mlp.gate, mlp.experts.<j>.gate_proj / up_proj / down_proj, and Qwen2-MoE's
 *          mlp.shared_expert.gate_proj / up_proj / down_proj with mlp.shared_expert_gate. */
typedef enum mq_moe_style { MQ_MOE_NONE = 0, MQ_MOE_MIXTRAL = 1, MQ_MOE_QWEN = 2 } mq_moe_style;

typedef struct mq_llama_config {
  char architecture[64];        /* architectures[0] */
  int hidden_size;              /* d_model */
  int intermediate_size;        /* MLP width */
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;      /* default: num_attention_heads */
  int head_dim;                 /* config's head_dim, else hidden_size / num_attention_heads */
  int qk_norm;                  /* Qwen3: RMSNorm of each q and k head (q_norm, k_norm [head_dim])
                                   before the rotary embedding */
  int fused;                    /* Phi-3: the checkpoint stores q/k/v as one self_attn.qkv_proj
                                   and gate/up as one mlp.gate_up_proj (rows stacked in that
                                   order); quantized and written as those fused layers */
  /* Gemma 2 (gemma2 set; every field below 0 for the other families): RMSNorm scales by
   * (1 + weight); four norms per block, the attention's and the MLP's outputs normalised
   * (post_attention_layernorm, post_feedforward_layernorm) before the residual add and the MLP
   * input by pre_feedforward_layernorm; GeGLU (gelu_pytorch_tanh); embeddings times
   * sqrt(hidden_size); scores scaled by query_pre_attn_scalar^-0.5; soft-capping
   * cap·tanh(x/cap) of the attention scores and of the logits. */
  int gemma2;
  double embed_scale;          /* sqrt(hidden_size) for Gemma 2; 0: embeddings as stored */
  double query_pre_attn_scalar; /* 0: scores scaled by head_dim^-0.5 */
  double attn_softcap;         /* attn_logit_softcapping; 0: none */
  double final_softcap;        /* final_logit_softcapping; 0: none */
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
  /* Mixture of experts (moe_style != MQ_MOE_NONE): a block whose moe_block[i] is set replaces
   * its MLP by a router over num_experts experts of width moe_intermediate_size; each token
   * goes to its experts_per_tok most probable ones (softmax over all), weights renormalised to
   * sum 1 when norm_topk_prob (always for Mixtral); Qwen2-MoE adds a shared expert of width
   * shared_expert_intermediate_size (0: none) scaled by sigmoid(shared_expert_gate · x). Other
   * blocks (mlp_only_layers, decoder_sparse_step) keep the dense MLP of intermediate_size. */
  mq_moe_style moe_style;
  int num_experts, experts_per_tok, moe_intermediate_size, shared_expert_intermediate_size;
  int norm_topk_prob;
  unsigned char moe_block[MQ_CONFIG_MAX_LAYERS];
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
