/* Llama-family (and Gemma 2) forward pass on one window (see llama.h). Every matrix product is
 * one cblas_sgemm whose shape depends only on the config and seqlen; norms, softmax and the
 * log-sum-exp of the head accumulate in double.
 *
 * Scratch layout (floats, T = seqlen), sized once by mq_llama_ctx_init:
 *   [ xa/xm: T*hidden | ya: T*nh*hd | ym: T*inter ]   block part: mq_llama_block_forward only
 *   [ work ]                                          used by attention, mlp_act and the head:
 *     attention: q [T, nh*hd], k and v [T, nkv*hd], scores [ATT_ROWS, T]
 *     mlp_act:   up projection [T, inter]
 *     head:      logits tile [HEAD_ROWS, vocab] */
#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "core/mem.h"
#include "core/status.h"
#include "model/llama.h"

/* Query rows per attention tile: a tile [r0, r0+ATT_ROWS) attends to keys [0, r0+ATT_ROWS),
 * so the causal upper triangle is skipped except inside the diagonal tiles. */
enum { ATT_ROWS = 128 };
/* Token rows per logits tile of the head. */
enum { HEAD_ROWS = 64 };

typedef struct dims {
  size_t T, hid, inter, nh, nkv, hd, qdim, kvdim, vocab;
} dims;

static dims get_dims(const mq_llama_ctx *ctx) {
  const mq_llama_config *c = ctx->cfg;
  dims d;
  d.T = ctx->seqlen;
  d.hid = (size_t)c->hidden_size;
  d.inter = (size_t)c->intermediate_size;
  d.nh = (size_t)c->num_attention_heads;
  d.nkv = (size_t)c->num_key_value_heads;
  d.hd = (size_t)c->head_dim;
  d.qdim = d.nh * d.hd;
  d.kvdim = d.nkv * d.hd;
  d.vocab = (size_t)c->vocab_size;
  return d;
}

static size_t block_part(const dims *d) { return d->T * (d->hid + d->qdim + d->inter); }

static float *work_area(const mq_llama_ctx *ctx) {
  dims d = get_dims(ctx);
  return ctx->scratch + block_part(&d);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* a*b, or 0 (with *ovf set) when it overflows. */
static size_t mul_ovf(size_t a, size_t b, int *ovf) {
  if (a != 0 && b > (size_t)-1 / a) {
    *ovf = 1;
    return 0;
  }
  return a * b;
}

/* rope_scaling (HF modeling_rope_utils): "linear" divides every frequency by the factor;
 * "llama3" divides the long wavelengths (> original context / low_freq_factor) by it, keeps the
 * short ones (< original context / high_freq_factor) and blends linearly in 1/wavelength
 * between. */
static double scaled_inv_freq(const mq_llama_config *cfg, double inv) {
  if (cfg->rope_scaling == MQ_ROPE_LINEAR) return inv / cfg->rope_factor;
  if (cfg->rope_scaling != MQ_ROPE_LLAMA3) return inv;
  double ctx = cfg->rope_original_max_positions, factor = cfg->rope_factor;
  double lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
  double wavelen = 6.283185307179586476925286766559 / inv; /* 2π / inv */
  if (wavelen < ctx / hi) return inv;
  if (wavelen > ctx / lo) return inv / factor;
  double smooth = (ctx / wavelen - lo) / (hi - lo);
  return (1.0 - smooth) * inv / factor + smooth * inv;
}

mq_status mq_llama_ctx_init(mq_llama_ctx *ctx, const mq_llama_config *cfg, size_t seqlen,
                            mq_error *err) {
  mq_status st = MQ_OK;
  memset(ctx, 0, sizeof *ctx);
  ctx->cfg = cfg;
  ctx->seqlen = seqlen;
  if (seqlen == 0 || cfg->head_dim <= 0 || cfg->head_dim % 2 != 0)
    MQ_FAIL(err, MQ_EINPUT, "seqlen %zu / head_dim %d: need seqlen >= 1 and an even head_dim",
            seqlen, cfg->head_dim);
  dims d = get_dims(ctx);
  int ovf = 0;
  size_t T = d.T;
  size_t blockp = mul_ovf(T, d.hid + d.qdim + d.inter, &ovf);
  size_t att = mul_ovf(T, d.qdim + 2 * d.kvdim, &ovf) + mul_ovf(ATT_ROWS, T, &ovf);
  size_t work = max_sz(att, max_sz(mul_ovf(T, d.inter, &ovf), mul_ovf(HEAD_ROWS, d.vocab, &ovf)));
  work = max_sz(work, mul_ovf(T, d.hid, &ovf)); /* a tapped residual's x·Wᵀ */
  size_t half = d.hd / 2;
  size_t ntab = mul_ovf(T, half, &ovf);
  if (ovf || blockp + work < blockp)
    MQ_FAIL(err, MQ_EINPUT, "seqlen %zu: workspace size overflows", seqlen);
  ctx->scratch_len = blockp + work;
  ctx->scratch = mq_alloc(ctx->scratch_len, sizeof(float));
  ctx->rope_cos = mq_alloc(ntab, sizeof(double));
  ctx->rope_sin = mq_alloc(ntab, sizeof(double));
  MQ_CHECK_ALLOC(err, ctx->scratch && ctx->rope_cos && ctx->rope_sin,
                 ctx->scratch_len * sizeof(float));
  if (cfg->moe_style != MQ_MOE_NONE) { /* T is at most 2^31 tokens: no overflow below */
    size_t k = (size_t)cfg->experts_per_tok, len = mq__llama_moe_scratch_len(cfg, T);
    ctx->moe_sel = mq_alloc(T * (k + 1), sizeof *ctx->moe_sel);
    ctx->moe_weight = mq_alloc(T * k, sizeof *ctx->moe_weight);
    ctx->moe_scratch = mq_alloc(len, sizeof *ctx->moe_scratch);
    MQ_CHECK_ALLOC(err, ctx->moe_sel && ctx->moe_weight && ctx->moe_scratch, len * sizeof(float));
  }
  /* HF rotary: inv_freq[i] = 1 / theta^(2i/hd), angle(t, i) = t * inv_freq[i], in double. */
  for (size_t i = 0; i < half; i++) {
    double inv = scaled_inv_freq(cfg, 1.0 / pow(cfg->rope_theta, (double)(2 * i) / (double)d.hd));
    for (size_t t = 0; t < T; t++) {
      double a = (double)t * inv;
      ctx->rope_cos[t * half + i] = cos(a);
      ctx->rope_sin[t * half + i] = sin(a);
    }
  }
cleanup:
  if (st != MQ_OK) mq_llama_ctx_free(ctx);
  return st;
}

void mq_llama_ctx_free(mq_llama_ctx *ctx) {
  if (ctx == NULL) return;
  mq_free(ctx->scratch);
  mq_free(ctx->rope_cos);
  mq_free(ctx->rope_sin);
  mq_free(ctx->moe_sel);
  mq_free(ctx->moe_weight);
  mq_free(ctx->moe_scratch);
  memset(ctx, 0, sizeof *ctx);
}

void mq_llama_embed(const mq_llama_ctx *ctx, const mq_llama_outer *outer, const int32_t *tokens,
                    float *h) {
  dims d = get_dims(ctx);
  for (size_t t = 0; t < d.T; t++)
    memcpy(h + t * d.hid, outer->embed + (size_t)tokens[t] * d.hid, d.hid * sizeof(float));
  if (ctx->cfg->embed_scale > 0.0) { /* Gemma: the normalizer is a tensor of the model dtype */
    float scale = (float)ctx->cfg->embed_scale;
    for (size_t k = 0; k < d.T * d.hid; k++) h[k] *= scale;
  }
}

/* cap·tanh(x/cap) on n values (Gemma 2's soft-capping of scores and logits). */
static void softcap(float *x, size_t n, double cap) {
  for (size_t k = 0; k < n; k++) x[k] = (float)(cap * tanh((double)x[k] / cap));
}

void mq_llama_rmsnorm(const float *x, const float *weight, size_t n, size_t dim, double eps,
                      float *out) {
  for (size_t r = 0; r < n; r++) {
    const float *xr = x + r * dim;
    float *yr = out + r * dim;
    double ss = 0.0;
    for (size_t i = 0; i < dim; i++) ss += (double)xr[i] * (double)xr[i];
    double inv = 1.0 / sqrt(ss / (double)dim + eps);
    for (size_t i = 0; i < dim; i++) yr[i] = (float)((double)xr[i] * inv * (double)weight[i]);
  }
}

static void add_bias(float *y, const float *bias, size_t T, size_t out) {
  if (bias)
    for (size_t t = 0; t < T; t++)
      for (size_t j = 0; j < out; j++) y[t * out + j] += bias[j];
}

/* y = x·Wᵀ (+ bias) for linear `which`: x [T, in], W [out, in], y [T, out], row-major; the tap
 * sees x·Wᵀ before the bias. */
static void linear(const mq_llama_ctx *ctx, mq_llama_linear which, const float *x,
                   const float *w, const float *bias, float *y) {
  size_t T = ctx->seqlen, out = 0, in = 0;
  mq_llama_linear_shape(ctx->cfg, which, &out, &in);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)out, (int)in, 1.0f, x,
              (int)in, w, (int)in, 0.0f, y, (int)out);
  if (ctx->tap != NULL && ctx->tap->observe != NULL)
    ctx->tap->observe(ctx->tap->user, which, y, T, out);
  add_bias(y, bias, T, out);
}

void mq_llama_attn_input(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *h,
                         float *xa) {
  dims d = get_dims(ctx);
  mq_llama_rmsnorm(h, blk->attn_norm, d.T, d.hid, ctx->cfg->rms_norm_eps, xa);
}

void mq_llama_mlp_input(const mq_llama_ctx *ctx, const mq_llama_block *blk, const float *h,
                        float *xm) {
  dims d = get_dims(ctx);
  mq_llama_rmsnorm(h, blk->mlp_norm, d.T, d.hid, ctx->cfg->rms_norm_eps, xm);
}

/* Rotary embedding in place on x [T, nheads*hd] (HF rotate_half: pairs (i, i + hd/2)). */
static void rope(const mq_llama_ctx *ctx, float *x, size_t nheads) {
  dims d = get_dims(ctx);
  size_t half = d.hd / 2, ld = nheads * d.hd;
  for (size_t t = 0; t < d.T; t++) {
    const double *c = ctx->rope_cos + t * half, *s = ctx->rope_sin + t * half;
    for (size_t hh = 0; hh < nheads; hh++) {
      float *v = x + t * ld + hh * d.hd;
      for (size_t i = 0; i < half; i++) {
        double a = v[i], b = v[i + half];
        v[i] = (float)(a * c[i] - b * s[i]);
        v[i + half] = (float)(b * c[i] + a * s[i]);
      }
    }
  }
}

/* Causal softmax of the rows of a score tile: row i (query r0 + i) over keys 0..r0+i; the
 * masked entries of the row are set to 0. s [rows, ncol]. */
static void softmax_causal(float *s, size_t rows, size_t ncol, size_t r0) {
  for (size_t i = 0; i < rows; i++) {
    float *row = s + i * ncol;
    size_t n = r0 + i + 1;
    float m = row[0];
    for (size_t c = 1; c < n; c++) m = row[c] > m ? row[c] : m;
    double sum = 0.0;
    for (size_t c = 0; c < n; c++) {
      float e = expf(row[c] - m);
      row[c] = e;
      sum += (double)e;
    }
    float inv = (float)(1.0 / sum);
    for (size_t c = 0; c < n; c++) row[c] *= inv;
    for (size_t c = n; c < ncol; c++) row[c] = 0.0f;
  }
}

void mq_llama_attention(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xa,
                        float *ya) {
  dims d = get_dims(ctx);
  float *q = work_area(ctx);        /* [T, qdim] */
  float *k = q + d.T * d.qdim;      /* [T, kvdim] */
  float *v = k + d.T * d.kvdim;     /* [T, kvdim] */
  float *s = v + d.T * d.kvdim;     /* [ATT_ROWS, T] */
  linear(ctx, MQ_LIN_Q, xa, blk->w[MQ_LIN_Q], blk->bias[MQ_LIN_Q], q);
  linear(ctx, MQ_LIN_K, xa, blk->w[MQ_LIN_K], blk->bias[MQ_LIN_K], k);
  linear(ctx, MQ_LIN_V, xa, blk->w[MQ_LIN_V], blk->bias[MQ_LIN_V], v);
  if (blk->q_norm != NULL) { /* Qwen3: each head's vector normalised before the rotation */
    mq_llama_rmsnorm(q, blk->q_norm, d.T * d.nh, d.hd, ctx->cfg->rms_norm_eps, q);
    mq_llama_rmsnorm(k, blk->k_norm, d.T * d.nkv, d.hd, ctx->cfg->rms_norm_eps, k);
  }
  rope(ctx, q, d.nh);
  rope(ctx, k, d.nkv);
  const mq_llama_config *cfg = ctx->cfg; /* Gemma 2: query_pre_attn_scalar^-0.5 */
  double base = cfg->query_pre_attn_scalar > 0.0 ? cfg->query_pre_attn_scalar : (double)d.hd;
  float scale = (float)(1.0 / sqrt(base));
  size_t group = d.nh / d.nkv; /* query head j uses kv head j / group */
  for (size_t j = 0; j < d.nh; j++) {
    const float *kj = k + (j / group) * d.hd, *vj = v + (j / group) * d.hd;
    for (size_t r0 = 0; r0 < d.T; r0 += ATT_ROWS) {
      size_t rows = d.T - r0 < ATT_ROWS ? d.T - r0 : ATT_ROWS, ncol = r0 + rows;
      /* s = scale · Q[r0:r0+rows, head j] · K[0:ncol, kv head]ᵀ */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)ncol, (int)d.hd,
                  scale, q + r0 * d.qdim + j * d.hd, (int)d.qdim, kj, (int)d.kvdim, 0.0f, s,
                  (int)ncol);
      if (cfg->attn_softcap > 0.0) softcap(s, rows * ncol, cfg->attn_softcap); /* pre-mask */
      softmax_causal(s, rows, ncol, r0);
      /* ya[r0:r0+rows, head j] = s · V[0:ncol, kv head] */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d.hd, (int)ncol,
                  1.0f, s, (int)ncol, vj, (int)d.kvdim, 0.0f, ya + r0 * d.qdim + j * d.hd,
                  (int)d.qdim);
    }
  }
}

void mq_llama_residual(const mq_llama_ctx *ctx, const mq_llama_block *blk, mq_llama_linear which,
                       const float *x, float *h) {
  dims d = get_dims(ctx);
  size_t out = 0, in = 0;
  mq_llama_linear_shape(ctx->cfg, which, &out, &in);
  /* x·Wᵀ on its own, then added: the product is what the tap sees, and the same bits whether a
   * tap is set or not (a GEMM accumulating onto h would round its K panels onto h instead) */
  float *y = work_area(ctx); /* [T, out] */
  linear(ctx, which, x, blk->w[which], NULL, y);
  const float *post = which == MQ_LIN_O ? blk->post_attn_norm
                      : which == MQ_LIN_DOWN ? blk->post_mlp_norm : NULL;
  if (post != NULL) { /* Gemma 2: the layer's output normalised before it joins h */
    add_bias(y, blk->bias[which], d.T, out);
    mq_llama_rmsnorm(y, post, d.T, out, ctx->cfg->rms_norm_eps, y);
    for (size_t k = 0; k < d.T * out; k++) h[k] += y[k];
    return;
  }
  for (size_t k = 0; k < d.T * out; k++) h[k] += y[k];
  add_bias(h, blk->bias[which], d.T, out);
}

/* gelu_pytorch_tanh: x/2 · (1 + tanh(sqrt(2/π) · (x + 0.044715 x³))). */
static float gelu_tanh(float x) {
  double v = x;
  return (float)(0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v))));
}

void mq_llama_mlp_act(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *ym) {
  dims d = get_dims(ctx);
  float *u = work_area(ctx); /* [T, inter] */
  linear(ctx, MQ_LIN_GATE, xm, blk->w[MQ_LIN_GATE], blk->bias[MQ_LIN_GATE], ym);
  linear(ctx, MQ_LIN_UP, xm, blk->w[MQ_LIN_UP], blk->bias[MQ_LIN_UP], u);
  size_t n = d.T * d.inter;
  if (ctx->cfg->gemma2) { /* GeGLU */
    for (size_t i = 0; i < n; i++) ym[i] = gelu_tanh(ym[i]) * u[i];
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float g = ym[i];
    ym[i] = g / (1.0f + expf(-g)) * u[i];
  }
}

void mq_llama_block_forward(mq_llama_ctx *ctx, const mq_llama_block *blk, float *h) {
  dims d = get_dims(ctx);
  float *xa = ctx->scratch;       /* [T, hidden], also xm */
  float *ya = xa + d.T * d.hid;   /* [T, qdim] */
  float *ym = ya + d.T * d.qdim;  /* [T, inter] */
  mq_llama_attn_input(ctx, blk, h, xa);
  mq_llama_attention(ctx, blk, xa, ya);
  mq_llama_residual(ctx, blk, MQ_LIN_O, ya, h);
  mq_llama_mlp_input(ctx, blk, h, xa);
  if (blk->moe) {
    mq_llama_moe(ctx, blk, xa, h);
    return;
  }
  mq_llama_mlp_act(ctx, blk, xa, ym);
  mq_llama_residual(ctx, blk, MQ_LIN_DOWN, ym, h);
}

double mq_llama_window_nll(mq_llama_ctx *ctx, const mq_llama_outer *outer, const int32_t *tokens,
                           float *h, float *logits) {
  dims d = get_dims(ctx);
  float *tile = work_area(ctx); /* [HEAD_ROWS, vocab] */
  double total = 0.0;
  mq_llama_rmsnorm(h, outer->final_norm, d.T, d.hid, ctx->cfg->rms_norm_eps, h);
  for (size_t t0 = 0; t0 < d.T; t0 += HEAD_ROWS) {
    size_t rows = d.T - t0 < HEAD_ROWS ? d.T - t0 : HEAD_ROWS;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)d.vocab, (int)d.hid,
                1.0f, h + t0 * d.hid, (int)d.hid, outer->lm_head, (int)d.hid, 0.0f, tile,
                (int)d.vocab);
    if (ctx->cfg->final_softcap > 0.0) softcap(tile, rows * d.vocab, ctx->cfg->final_softcap);
    if (logits) memcpy(logits + t0 * d.vocab, tile, rows * d.vocab * sizeof(float));
    for (size_t i = 0; i < rows; i++) {
      size_t t = t0 + i;
      if (t + 1 >= d.T) break; /* the last position predicts nothing inside the window */
      const float *row = tile + i * d.vocab;
      double m = row[0];
      for (size_t c = 1; c < d.vocab; c++) m = row[c] > m ? row[c] : m;
      double sum = 0.0;
      for (size_t c = 0; c < d.vocab; c++) sum += exp((double)row[c] - m);
      total += m + log(sum) - (double)row[tokens[t + 1]];
    }
  }
  return total;
}
