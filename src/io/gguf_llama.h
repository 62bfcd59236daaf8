/* `mpiquant export --format gguf`: a whole Llama-family model (LlamaForCausalLM,
 * MistralForCausalLM) from a complete result file as one GGUF v3 file that llama.cpp loads
 * (architecture "llama"; container io/gguf_write.h, blocks io/gguf_blocks.h, tokenizer
 * io/gguf_vocab.h).
 *
 * Tensors (Hugging Face name -> GGUF name, ne = reversed shape):
 *   model.embed_tokens.weight -> token_embd.weight, model.norm.weight -> output_norm.weight,
 *   lm_head.weight -> output.weight (absent when tied: llama.cpp then uses token_embd),
 *   model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
 *   mlp.{gate,up,down}_proj}.{weight,bias} -> blk.N.{attn_norm, attn_{q,k,v,output}, ffn_norm,
 *   ffn_{gate,up,down}}.{weight,bias}; rotary_emb.inv_freq is dropped; any other name is
 *   refused. Llama 3 rope_scaling adds rope_freqs.weight (F32 [head_dim/2], the per-frequency
 *   divisors of llama.cpp's rope: 1 for short wavelengths, factor for long ones, the smooth
 *   blend between).
 * Types: every quantized linear (/layers/<module>) in its ggml block type (io/gguf_blocks.h;
 *   refused with the reason when the grid does not fit, MQ_EINPUT), or dequantized with
 *   args->dequantize (F32, or --dtype); 1-D tensors (norms, biases) F32; other 2-D tensors as
 *   stored (the checkpoint's F32/F16/BF16, exact), or --dtype float32|float16|bfloat16
 *   (float16 refuses values it cannot hold).
 * Rotary layout: Hugging Face rotates the two halves of each head (rotate_half), llama.cpp's
 *   "llama" rope adjacent pairs, so the rows of q_proj (per attention head) and k_proj (per
 *   key/value head) and their biases are reordered: GGUF row n·hd + 2j + h is HF row
 *   n·hd + h·hd/2 + j (hd = head_dim, j < hd/2, h ∈ {0, 1}). Whole rows move, so a quantized
 *   row keeps its blocks byte for byte.
 * Metadata: general.{architecture, type, name, file_type, quantization_version, quantized_by};
 *   llama.{vocab_size, context_length, embedding_length, block_count, feed_forward_length,
 *   rope.dimension_count, rope.freq_base, attention.{head_count, head_count_kv, key_length,
 *   value_length, layer_norm_rms_epsilon}} (+ rope.scaling.{type, factor} for linear scaling);
 *   mpiquant.{method, bits, group_size, sym, act_order, static_groups, allow_requantize}; the
 *   tokenizer (io/gguf_vocab.h: tokenizer.json of --model, or byte-level for 256 tokens).
 *
 * Where things come from: the result file's /model (config and non-quantized tensors); --model
 * DIR supplies config.json and the checkpoint's non-quantized tensors when the result file lacks
 * them, and tokenizer.json. Output: args->out ending in ".gguf" is the file; anything else is a
 * directory (created) receiving model.gguf. Written under a temporary name beside it and renamed
 * at the end; on failure nothing is left. Local (rank 0). */
#ifndef MQ_IO_GGUF_LLAMA_H
#define MQ_IO_GGUF_LLAMA_H

#include "io/export.h"
#include "mpiquant.h"

mq_status mq_gguf_export_llama(const mq_export_args *a, mq_error *err);

#endif
