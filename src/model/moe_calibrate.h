/* The experts of a mixture-of-experts block in `quantize` (docs/ARCHITECTURE.md, "Mixtures of
 * experts"). After the attention groups, in the true-sequential order:
 *   1. every expert's gate and up (and the shared expert's), sharing one H per expert;
 *   2. every expert's down, from the inputs the quantized gate/up give;
 *   3. both streams advanced through the block's MLP.
 * The router (and the shared-expert gate) stay in full precision. Expert e's samples are the
 * tokens the quantized stream routes to it: X̃ the quantized stream's inputs of those tokens, X
 * the full-precision stream's inputs of the same tokens (so G = X̃ᵀX is defined). An expert
 * that fewer than min_tokens tokens reach (or every expert, with all_tokens) is calibrated on
 * every token instead; its layers say so (result scalar `routed` < `samples`).
 *
 * Experts are independent layers: `groups` groups of contiguous ranks quantize `groups`
 * experts at a time, each splitting rows and samples as the engine does. The tokens travel to
 * the group that quantizes their expert (MPI_Alltoallv, whole chunks of windows, so every
 * chunk's sums are computed alike on any number of ranks and groups: results are
 * bit-identical). */
#ifndef MQ_MODEL_MOE_CALIBRATE_H
#define MQ_MODEL_MOE_CALIBRATE_H

#include <stddef.h>

#include "model/llama.h"
#include "mpiquant.h"
#include "parallel/layer_engine.h"

/* What the pipeline does with each layer, called collectively in expert order. */
typedef struct mq_moe_hooks {
  /* 1 when layer `name` was written by an interrupted run (--resume), the same on every rank */
  int (*done)(void *user, const char *name);
  /* that layer's Ŵ, every row [rows, cols], on every rank */
  mq_status (*read_back)(void *user, const char *name, size_t rows, size_t cols, float *What,
                         mq_error *err);
  /* write and report a quantized layer: this rank holds rows [row0, row0 + res->rows) */
  mq_status (*write)(void *user, const char *name, size_t total_rows, size_t row0,
                     mq_layer_result *res, const mq_layer_phases *ph, mq_error *err);
  void *user;
} mq_moe_hooks;

typedef struct mq_moe_run {
  mq_ctx *ctx;
  const mq_llama_config *cfg;
  const mq_quant_options *opts;
  mq_llama_ctx *fwd;      /* one window's forward workspace */
  size_t L, nwin;         /* tokens per window; windows in all */
  size_t chunk_windows;   /* windows per chunk of the sums; ranks hold whole chunks */
  size_t w0, nw;          /* this rank's windows */
  int groups;             /* expert groups (clamped to [1, min(ranks, experts)]) */
  int all_tokens;         /* calibrate every expert on every token */
  size_t min_tokens;      /* routed to fewer: calibrated on every token */
  mq_moe_hooks hooks;
  double *t_forward, *t_layers; /* seconds accumulated into the pipeline's figures */
  size_t *experts_all_tokens;   /* experts calibrated on every token (added to) */
} mq_moe_run;

/* Collective. Quantizes the experts of block fp (a mixture-of-experts block) and gives q its
 * quantized experts (router and shared gate shared with fp), then advances both streams:
 * hf += moe_fp(xf), hq += moe_q(xq). xf, xq: the post-attention norm of each stream, hf, hq the
 * residual streams, all [nw·L, hidden]. */
mq_status mq__moe_quantize_block(const mq_moe_run *m, const mq_llama_block *fp,
                                 mq_llama_block *q, const float *xf, const float *xq, float *hf,
                                 float *hq, mq_error *err);
/* Releases what mq__moe_quantize_block gave q (accepts a block without it). */
void mq__moe_release_quantized(mq_llama_block *q);

#endif
