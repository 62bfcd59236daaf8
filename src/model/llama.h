/* Llama-family decoder forward pass (SPEC.md "Supported models"): RMSNorm, rotary embeddings
 * (HF half-split convention, rope_theta), grouped-query attention, SwiGLU MLP, optional q/k/v
 * (and o) biases, tied or separate lm_head. Float32 activations and weights, every matrix
 * product one BLAS-3 call, softmax/norm statistics in double. Serial (no MPI): ranks split
 * windows, not the math.
 *
 * Unit of work: one window of `seqlen` tokens. Every call has the same shapes whatever else the
 * caller processes, so a window's activations have the same bits whichever rank computes them
 * and however many windows it holds (OpenBLAS' rounding depends on the GEMM's M).
 *
 * A block's forward is split into the stages the calibration pipeline needs (the inputs of each
 * group of linear layers in the true-sequential order [q,k,v] -> [o] -> [gate,up] -> [down]):
 *   xa = rmsnorm(h, attn_norm)                   input of q, k, v         [T, hidden]
 *   ya = attention(xa; q, k, v)                  input of o               [T, nh*hd]
 *   h += ya·oᵀ (+ o bias)
 *   xm = rmsnorm(h, mlp_norm)                    input of gate, up        [T, hidden]
 *   ym = silu(xm·gateᵀ) ⊙ (xm·upᵀ)               input of down            [T, inter]
 *   h += ym·downᵀ
 * mq_llama_block_forward() runs them all. */
#ifndef MQ_MODEL_LLAMA_H
#define MQ_MODEL_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "io/hfconfig.h"
#include "io/tensor_source.h"
#include "mpiquant.h"

/* The seven linear layers of a block, in the true-sequential order. */
typedef enum mq_llama_linear {
  MQ_LIN_Q, MQ_LIN_K, MQ_LIN_V, MQ_LIN_O, MQ_LIN_GATE, MQ_LIN_UP, MQ_LIN_DOWN, MQ_LIN_COUNT
} mq_llama_linear;

/* "self_attn.q_proj", ..., "mlp.down_proj" (module name = "model.layers.<i>." + this) */
extern const char *const mq_llama_linear_names[MQ_LIN_COUNT];

typedef struct mq_llama_block {
  float *attn_norm, *mlp_norm; /* [hidden] */
  /* weights, PyTorch layout [out, in]:
   *   q [nh*hd, hidden], k and v [nkv*hd, hidden], o [hidden, nh*hd],
   *   gate and up [inter, hidden], down [hidden, inter] */
  float *w[MQ_LIN_COUNT];
  float *bias[MQ_LIN_COUNT]; /* [out] or NULL: any linear whose "<module>.bias" exists */
} mq_llama_block;

/* Rows (out) and columns (in) of linear `which`. */
void mq_llama_linear_shape(const mq_llama_config *cfg, mq_llama_linear which, size_t *rows,
                           size_t *cols);

/* Loads block `layer` ("model.layers.<layer>.*"): norms, the seven weights and any biases that
 * exist, every value checked finite (MQ_EINPUT "<name>: element k is NaN") (q/k/v biases are required when cfg->attention_bias; o and the MLP ones, e.g. Llama's
 * mlp_bias, are used when present, as the reference does). Shapes are checked against cfg before
 * any data is read: MQ_EINPUT "<name>: shape [a, b], config expects [c, d]", "<name>: missing
 * tensor" (the CLI prefixes the checkpoint directory); read errors come from the source.
 * blk is zeroed on failure. */
mq_status mq_llama_block_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              int layer, mq_llama_block *blk, mq_error *err);
void mq_llama_block_free(mq_llama_block *blk); /* accepts a zeroed block */

/* Every tensor the forward pass reads (embedding, final norm, head, and each block's norms,
 * linears and biases) has the shape the config says, checked from the source's table without
 * reading data: call it before sizing anything from cfg, so that a config contradicting its
 * checkpoint is MQ_EINPUT "<dir>: <name>: shape [a, b], config expects [c, d]" or
 * "<dir>: <name>: missing tensor" rather than an allocation of the config's sizes. dir (the
 * checkpoint, for the message) may be NULL: then the caller names the file. */
mq_status mq_llama_check_shapes(const mq_tensor_source *src, const mq_llama_config *cfg,
                                const char *dir, mq_error *err);

/* Embedding, final norm and head. lm_head aliases embed when tied (tie_word_embeddings or no
 * lm_head.weight tensor). */
typedef struct mq_llama_outer {
  float *embed;      /* [vocab, hidden] */
  float *final_norm; /* [hidden] */
  float *lm_head;    /* [vocab, hidden], == embed when tied */
} mq_llama_outer;

mq_status mq_llama_outer_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              mq_llama_outer *out, mq_error *err);
void mq_llama_outer_free(mq_llama_outer *out);

/* A tap on the linear layers: when a context has one, every product x·Wᵀ of the stages is
 * shown to observe() before its bias is added (y [T, out], row-major). The calibration pipeline
 * measures each layer's output error from the two streams' own products this way, with no
 * extra GEMM. */
typedef struct mq_llama_tap {
  void (*observe)(void *user, mq_llama_linear which, const float *y, size_t T, size_t out);
  void *user;
} mq_llama_tap;

/* Per-window workspace: rotary tables and scratch for one window of seqlen tokens. */
typedef struct mq_llama_ctx {
  const mq_llama_config *cfg;
  size_t seqlen;
  double *rope_cos, *rope_sin; /* [seqlen, head_dim/2] */
  float *scratch;              /* owned; sized by init */
  size_t scratch_len;
  const mq_llama_tap *tap;     /* NULL: none (set by the caller between calls) */
} mq_llama_ctx;

mq_status mq_llama_ctx_init(mq_llama_ctx *ctx, const mq_llama_config *cfg, size_t seqlen,
                            mq_error *err);
void mq_llama_ctx_free(mq_llama_ctx *ctx);

/* h[t] = embed[tokens[t]], h [seqlen, hidden]. Tokens must be < vocab (checked by the reader). */
void mq_llama_embed(const mq_llama_ctx *ctx, const mq_llama_outer *outer, const int32_t *tokens,
                    float *h);

/* out = x / sqrt(mean(x²) + eps) ⊙ weight, row by row; x, out [n, dim] (may alias). */
void mq_llama_rmsnorm(const float *x, const float *weight, size_t n, size_t dim, double eps,
                      float *out);

/* Stages of one block on one window (shapes in the file comment). */
void mq_llama_attn_input(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *h,
                         float *xa);
void mq_llama_attention(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xa,
                        float *ya);
/* h += x·Wᵀ (+ bias) for linear `which` (o or down); x [seqlen, in], h [seqlen, out] */
void mq_llama_residual(const mq_llama_ctx *ctx, const mq_llama_block *blk, mq_llama_linear which,
                       const float *x, float *h);
void mq_llama_mlp_input(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *h,
                        float *xm);
void mq_llama_mlp_act(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *ym);

/* All stages: h [seqlen, hidden] in, the block's output out. */
void mq_llama_block_forward(mq_llama_ctx *ctx, const mq_llama_block *blk, float *h);

/* Final norm + head on h (consumed), then the negative log-likelihood of tokens[1..T-1] given
 * the logits of positions 0..T-2: returns the sum (double); logits may be NULL or [seqlen,
 * vocab] to receive them (tests). */
double mq_llama_window_nll(mq_llama_ctx *ctx, const mq_llama_outer *outer, const int32_t *tokens,
                           float *h, float *logits);

#endif
