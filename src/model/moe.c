/* Mixture-of-experts MLP of one window (llama.h): a router picks each token's experts, every
 * expert runs as one SwiGLU on the rows routed to it, and the weighted outputs are summed in
 * expert order. Every product is one cblas_sgemm whose shape depends only on the window's
 * routing, so a window gives the same bits wherever it runs.
 *
 * moe_scratch layout (floats, T = seqlen, im = the widest expert, E = num_experts):
 *   acc [T, hidden] | xg [T, hidden] | act [T, im] | up [T, im] | y [T, hidden] | logits [T, E]
 * moe_sel holds sel [T, k] then a token list [T]. */
#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "model/llama.h"

static size_t widest_expert(const mq_llama_config *cfg) {
  size_t a = (size_t)cfg->moe_intermediate_size, b = (size_t)cfg->shared_expert_intermediate_size;
  return a > b ? a : b;
}

size_t mq__llama_moe_scratch_len(const mq_llama_config *cfg, size_t seqlen) {
  if (cfg->moe_style == MQ_MOE_NONE) return 0;
  size_t hid = (size_t)cfg->hidden_size;
  return seqlen * (3 * hid + 2 * widest_expert(cfg) + (size_t)cfg->num_experts);
}

/* Token t's k experts by decreasing logit (softmax is monotone), ties to the lower index. */
static void top_k(const float *logits, size_t E, size_t k, int32_t *sel) {
  for (size_t i = 0; i < k; i++) {
    int32_t best = -1;
    for (size_t e = 0; e < E; e++) {
      int taken = 0;
      for (size_t j = 0; j < i; j++) taken |= sel[j] == (int32_t)e;
      if (!taken && (best < 0 || logits[e] > logits[best])) best = (int32_t)e;
    }
    sel[i] = best;
  }
}

void mq_llama_route(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *x,
                    int32_t *sel, float *weight) {
  const mq_llama_config *cfg = ctx->cfg;
  size_t T = ctx->seqlen, hid = (size_t)cfg->hidden_size, E = (size_t)cfg->num_experts;
  size_t k = (size_t)cfg->experts_per_tok;
  float *logits = ctx->moe_scratch + T * (3 * hid + 2 * widest_expert(cfg)); /* [T, E] */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)E, (int)hid, 1.0f, x,
              (int)hid, blk->router, (int)hid, 0.0f, logits, (int)E);
  for (size_t t = 0; t < T; t++) {
    const float *l = logits + t * E;
    int32_t *s = sel + t * k;
    top_k(l, E, k, s);
    double m = l[s[0]], all = 0.0, picked = 0.0; /* softmax over all E, in double */
    for (size_t e = 0; e < E; e++) all += exp((double)l[e] - m);
    for (size_t i = 0; i < k; i++) picked += exp((double)l[s[i]] - m);
    double norm = cfg->norm_topk_prob ? picked : all;
    for (size_t i = 0; i < k; i++) weight[t * k + i] = (float)(exp((double)l[s[i]] - m) / norm);
  }
  if (ctx->tap != NULL && ctx->tap->route != NULL)
    ctx->tap->route(ctx->tap->user, sel, weight, T, k);
}

size_t mq_llama_expert_tokens(const mq_llama_config *cfg, const int32_t *sel, size_t seqlen,
                              size_t e, int32_t *tok) {
  size_t k = (size_t)cfg->experts_per_tok, n = 0;
  for (size_t t = 0; t < seqlen; t++) {
    int hit = e >= (size_t)cfg->num_experts; /* the shared expert sees every token */
    for (size_t i = 0; i < k && !hit; i++) hit = sel[t * k + i] == (int32_t)e;
    if (hit) tok[n++] = (int32_t)t;
  }
  return n;
}

void mq_llama_expert_act(const mq_llama_config *cfg, const mq_llama_expert *ex, const float *x,
                         size_t n, float *act, float *up) {
  size_t hid = (size_t)cfg->hidden_size, inter = ex->inter;
  if (n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)inter, (int)hid, 1.0f, x,
              (int)hid, ex->w[MQ_EXP_GATE], (int)hid, 0.0f, act, (int)inter);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)inter, (int)hid, 1.0f, x,
              (int)hid, ex->w[MQ_EXP_UP], (int)hid, 0.0f, up, (int)inter);
  for (size_t i = 0; i < n * inter; i++) {
    float g = act[i];
    act[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

/* The weight of expert e for token t: its routing weight, or the shared expert's gate. */
static float expert_weight(const mq_llama_block *blk, const mq_llama_config *cfg,
                           const int32_t *sel, const float *weight, const float *xt, size_t t,
                           size_t e) {
  size_t k = (size_t)cfg->experts_per_tok, hid = (size_t)cfg->hidden_size;
  if (e < (size_t)cfg->num_experts) {
    for (size_t i = 0; i < k; i++)
      if (sel[t * k + i] == (int32_t)e) return weight[t * k + i];
    return 0.0f;
  }
  double z = 0.0;
  for (size_t j = 0; j < hid; j++) z += (double)xt[j] * (double)blk->shared_gate[j];
  return (float)(1.0 / (1.0 + exp(-z)));
}

void mq_llama_moe(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *h) {
  const mq_llama_config *cfg = ctx->cfg;
  size_t T = ctx->seqlen, hid = (size_t)cfg->hidden_size, im = widest_expert(cfg);
  size_t k = (size_t)cfg->experts_per_tok;
  float *acc = ctx->moe_scratch, *xg = acc + T * hid, *act = xg + T * hid, *up = act + T * im;
  float *y = up + T * im;
  int32_t *sel = ctx->moe_sel, *tok = sel + T * k;
  mq_llama_route(ctx, blk, xm, sel, ctx->moe_weight);
  memset(acc, 0, T * hid * sizeof *acc);
  for (size_t e = 0; e < blk->nexperts; e++) {
    const mq_llama_expert *ex = &blk->experts[e];
    size_t n = mq_llama_expert_tokens(cfg, sel, T, e, tok);
    if (n == 0) continue;
    for (size_t i = 0; i < n; i++)
      memcpy(xg + i * hid, xm + (size_t)tok[i] * hid, hid * sizeof *xg);
    mq_llama_expert_act(cfg, ex, xg, n, act, up);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)hid, (int)ex->inter, 1.0f,
                act, (int)ex->inter, ex->w[MQ_EXP_DOWN], (int)ex->inter, 0.0f, y, (int)hid);
    for (size_t i = 0; i < n; i++) {
      size_t t = (size_t)tok[i];
      float wt = expert_weight(blk, cfg, sel, ctx->moe_weight, xm + t * hid, t, e);
      for (size_t j = 0; j < hid; j++) acc[t * hid + j] += wt * y[i * hid + j];
    }
  }
  for (size_t i = 0; i < T * hid; i++) h[i] += acc[i];
}
