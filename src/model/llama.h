/* Llama-family decoder forward pass (SPEC.md "Supported models"): RMSNorm, rotary embeddings
 * (HF half-split convention, rope_theta), grouped-query attention (Qwen3's per-head q/k norms),
 * SwiGLU MLP or a mixture of SwiGLU experts (moe.c), optional q/k/v (and o) biases, tied or
 * separate lm_head. Float32 activations and weights, every matrix
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
 * mq_llama_block_forward() runs them all. Gemma 2 (cfg->gemma2) changes the stages, not their
 * inputs' roles: embeddings times sqrt(hidden); norms by (1 + weight); scores scaled by
 * query_pre_attn_scalar^-0.5 and soft-capped; ym = gelu_tanh(xm·gateᵀ) ⊙ (xm·upᵀ); the residual
 * adds are h += rmsnorm(ya·oᵀ, post_attn_norm) and h += rmsnorm(ym·downᵀ, post_mlp_norm) (the
 * tap still sees the products ya·oᵀ and ym·downᵀ); the logits soft-capped. */
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

/* The three linears of an expert (a SwiGLU MLP of its own width). */
typedef enum mq_expert_linear { MQ_EXP_GATE, MQ_EXP_UP, MQ_EXP_DOWN, MQ_EXP_COUNT } mq_expert_linear;

typedef struct mq_llama_expert {
  size_t inter;               /* its width */
  float *w[MQ_EXP_COUNT];     /* gate and up [inter, hidden], down [hidden, inter] */
} mq_llama_expert;

typedef struct mq_llama_block {
  int layer;                   /* its index in the model */
  float *attn_norm, *mlp_norm; /* [hidden]; Gemma 2: input_ and pre_feedforward_layernorm */
  /* [hidden], Gemma 2 (cfg->gemma2) only, else NULL: post_attention_layernorm and
   * post_feedforward_layernorm, applied to the o and down products before the residual add.
   * A Gemma 2 block's norms hold (1 + weight) as loaded (the checkpoint stores weight). */
  float *post_attn_norm, *post_mlp_norm;
  float *q_norm, *k_norm;      /* [head_dim], Qwen3 (cfg->qk_norm); NULL otherwise */
  /* weights, PyTorch layout [out, in]:
   *   q [nh*hd, hidden], k and v [nkv*hd, hidden], o [hidden, nh*hd],
   *   gate and up [inter, hidden], down [hidden, inter] (NULL in a mixture-of-experts block) */
  float *w[MQ_LIN_COUNT];
  float *bias[MQ_LIN_COUNT]; /* [out] or NULL: any linear whose "<module>.bias" exists */
  /* Mixture-of-experts block (cfg->moe_block[layer]): the router [num_experts, hidden] and
   * nexperts experts: the num_experts routed ones, then Qwen2-MoE's shared expert, whose
   * weight is sigmoid(shared_gate · x) (shared_gate [1, hidden]) */
  int moe;
  float *router, *shared_gate;
  size_t nexperts;
  mq_llama_expert *experts;    /* [nexperts] */
} mq_llama_block;

/* Module name of expert e's linear (e == num_experts: the shared expert) in block `layer`,
 * e.g. "model.layers.3.block_sparse_moe.experts.5.w1" or "model.layers.3.mlp.shared_expert.
 * down_proj"; and of a block's router. */
void mq_llama_expert_name(const mq_llama_config *cfg, int layer, size_t e, mq_expert_linear which,
                          char *buf, size_t len);
void mq_llama_router_name(const mq_llama_config *cfg, int layer, char *buf, size_t len);
/* Whether block `layer` is a mixture of experts, and how many experts it has (with a shared
 * one). */
int mq_llama_is_moe(const mq_llama_config *cfg, int layer);
size_t mq_llama_expert_count(const mq_llama_config *cfg);
/* Rows and columns of expert e's linear. */
void mq_llama_expert_shape(const mq_llama_config *cfg, size_t e, mq_expert_linear which,
                           size_t *rows, size_t *cols);

/* A fused module of a cfg->fused checkpoint (Phi-3): one tensor "<module>.weight" whose rows
 * are the linears first..last stacked in order, "self_attn.qkv_proj" (q, k, v) and
 * "mlp.gate_up_proj" (gate, up). The block holds them split (w[first..last]); calibration
 * quantizes and writes each as one layer under its own name. */
typedef struct mq_llama_fused {
  const char *module;          /* "self_attn.qkv_proj" or "mlp.gate_up_proj" */
  mq_llama_linear first, last; /* the linears it covers */
} mq_llama_fused;

/* The fused module covering linear `which`, or NULL (not a fused config, or o/down). */
const mq_llama_fused *mq_llama_fused_of(const mq_llama_config *cfg, mq_llama_linear which);
/* Rows of a fused module: the covered linears' rows summed (columns: hidden). */
size_t mq_llama_fused_rows(const mq_llama_config *cfg, const mq_llama_fused *f);

/* Rows (out) and columns (in) of linear `which`. */
void mq_llama_linear_shape(const mq_llama_config *cfg, mq_llama_linear which, size_t *rows,
                           size_t *cols);

/* Loads block `layer` ("model.layers.<layer>.*"): norms, the seven weights (a fused config's
 * qkv_proj and gate_up_proj split into them by rows) and any biases that
 * exist (none for a fused config, as Phi-3 has none), every value checked finite (MQ_EINPUT "<name>: element k is NaN") (q/k/v biases are required when cfg->attention_bias; o and the MLP ones, e.g. Llama's
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
  /* may be NULL; the dense linears only (an expert's products are not shown) */
  void (*observe)(void *user, mq_llama_linear which, const float *y, size_t T, size_t out);
  /* may be NULL; once per window per mixture-of-experts block: each token's experts_per_tok
   * routed experts sel [T, k] in decreasing weight, and their weights [T, k] */
  void (*route)(void *user, const int32_t *sel, const float *weight, size_t T, size_t k);
  void *user;
} mq_llama_tap;

/* Per-window workspace: rotary tables and scratch for one window of seqlen tokens. */
typedef struct mq_llama_ctx {
  const mq_llama_config *cfg;
  size_t seqlen;
  double *rope_cos, *rope_sin; /* [seqlen, head_dim/2] */
  float *scratch;              /* owned; sized by init */
  size_t scratch_len;
  /* mixture of experts only (NULL otherwise): routing of a window, sel and weight [seqlen, k],
   * and the experts' scratch (moe.c) */
  int32_t *moe_sel;
  float *moe_weight, *moe_scratch;
  const mq_llama_tap *tap;     /* NULL: none (set by the caller between calls) */
} mq_llama_ctx;

mq_status mq_llama_ctx_init(mq_llama_ctx *ctx, const mq_llama_config *cfg, size_t seqlen,
                            mq_error *err);
void mq_llama_ctx_free(mq_llama_ctx *ctx);

/* h[t] = embed[tokens[t]] (times cfg->embed_scale when set, rounded to float first as HF's
 * normalizer is), h [seqlen, hidden]. Tokens must be < vocab (checked by the reader). */
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
/* h += x·Wᵀ (+ bias) for linear `which` (o or down); x [seqlen, in], h [seqlen, out]. With
 * the block's post norm of that linear (Gemma 2): h += rmsnorm(x·Wᵀ (+ bias)). */
void mq_llama_residual(const mq_llama_ctx *ctx, const mq_llama_block *blk, mq_llama_linear which,
                       const float *x, float *h);
void mq_llama_mlp_input(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *h,
                        float *xm);
void mq_llama_mlp_act(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *ym);

/* Mixture-of-experts MLP (moe.c). Routing of a window's tokens x [seqlen, hidden]: sel and
 * weight [seqlen, k] (k = experts_per_tok), the experts in decreasing probability (ties to the
 * lower index), weights renormalised when cfg->norm_topk_prob; shown to the tap's route(). */
void mq_llama_route(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *x,
                    int32_t *sel, float *weight);
/* act [n, inter] = silu(x·gateᵀ) ⊙ (x·upᵀ) of expert ex on n gathered rows x [n, hidden]; up is
 * scratch [n, inter]. One GEMM shape per n: a window's rows give the same bits anywhere. */
void mq_llama_expert_act(const mq_llama_config *cfg, const mq_llama_expert *ex, const float *x,
                         size_t n, float *act, float *up);
/* The rows of x [seqlen, hidden] whose tokens the routing sel [seqlen, k] sends to expert e, in
 * token order: their indices tok[0..n), returned n (every token for the shared expert). */
size_t mq_llama_expert_tokens(const mq_llama_config *cfg, const int32_t *sel, size_t seqlen,
                              size_t e, int32_t *tok);
/* Floats of ctx->moe_scratch a window of seqlen tokens needs (0 for a dense model). */
size_t mq__llama_moe_scratch_len(const mq_llama_config *cfg, size_t seqlen);
/* h += moe(xm): every expert on its tokens, weighted, summed in expert order (xm [seqlen,
 * hidden], the post-attention norm of h). */
void mq_llama_moe(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *h);

/* All stages: h [seqlen, hidden] in, the block's output out. */
void mq_llama_block_forward(mq_llama_ctx *ctx, const mq_llama_block *blk, float *h);

/* Final norm + head on h (consumed), the logits soft-capped when cfg->final_softcap, then the
 * negative log-likelihood of tokens[1..T-1] given the logits of positions 0..T-2: returns the
 * sum (double); logits may be NULL or [seqlen, vocab] to receive them (tests). */
double mq_llama_window_nll(mq_llama_ctx *ctx, const mq_llama_outer *outer, const int32_t *tokens,
                           float *h, float *logits);

#endif
