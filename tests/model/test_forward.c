/* Runs the Llama forward pass of src/model over the first NWIN windows of SEQLEN tokens and
 * writes the logits, float32 [NWIN, SEQLEN, vocab] row-major, to OUT (run_forward.py compares
 * them with the numpy reference tests/lib/llama_ref.py). For a mixture-of-experts model it also
 * records, through the tap's route(), each token's top-k experts and their weights in every MoE
 * block and writes them to OUT.routes (int32) and OUT.rweights (float32), both
 * [n_moe_blocks, NWIN, SEQLEN, k]. Checks on the way:
 *   - the NLL returned by mq_llama_window_nll equals the one recomputed here from its logits;
 *   - the block stages called one by one give the same bits as mq_llama_block_forward;
 *   - mq_llama_rmsnorm in place equals out of place;
 *   - a window's logits do not depend on how many windows are processed with it (the first
 *     window is recomputed alone, with a fresh context), nor its routing;
 *   - MoE: route() is called once per window and MoE block, with k distinct experts in
 *     [0, num_experts) per token, weights in (0, 1] non-increasing, summing to 1 when
 *     renormalised (norm_topk_prob; always for Mixtral) and to less than 1 otherwise;
 *     mq_llama_route() called alone gives the routing the block's forward showed.
 * Prints "nll <window> <sum>" per window.
 *
 * usage: test_forward MODEL_DIR TOKENS SEQLEN NWIN OUT */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/checkpoint_source.h"
#include "io/hfconfig.h"
#include "io/tokens.h"
#include "model/llama.h"
#include "mq_test.h"

static void die(const mq_error *err) {
  fprintf(stderr, "test_forward: %s\n", err->msg);
  exit(1);
}

/* What the tap's route() saw: call c fills sel/weight + c * T * k (calls come block by block,
 * window by window within a block: the order run_windows makes them). */
typedef struct route_rec {
  const mq_llama_config *cfg;
  int32_t *sel;
  float *weight;
  size_t T, k, calls, max_calls;
} route_rec;

static void record_route(void *user, const int32_t *sel, const float *weight, size_t T,
                         size_t k) {
  route_rec *r = user;
  MQ_EXPECT_EQ_INT(T, r->T);
  MQ_EXPECT_EQ_INT(k, r->k);
  MQ_EXPECT_LT(r->calls, r->max_calls);
  if (T != r->T || k != r->k || r->calls >= r->max_calls) return;
  size_t E = (size_t)r->cfg->num_experts;
  for (size_t t = 0; t < T; t++) {
    const int32_t *s = sel + t * k;
    const float *w = weight + t * k;
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
      MQ_EXPECT(s[i] >= 0 && (size_t)s[i] < E);
      for (size_t j = 0; j < i; j++) MQ_EXPECT(s[i] != s[j]);
      MQ_EXPECT(w[i] > 0.0f && w[i] <= 1.0f);
      if (i > 0) MQ_EXPECT_LE(w[i], w[i - 1]);
      sum += w[i];
    }
    if (r->cfg->norm_topk_prob)
      MQ_EXPECT_NEAR(sum, 1.0, 1e-5);
    else if (k < E)
      MQ_EXPECT_LT(sum, 1.0);
  }
  memcpy(r->sel + r->calls * T * k, sel, T * k * sizeof *sel);
  memcpy(r->weight + r->calls * T * k, weight, T * k * sizeof *weight);
  r->calls++;
}

/* Writes n items of size sz to path + suffix; 1 on success. */
static int write_file(const char *path, const char *suffix, const void *data, size_t sz,
                      size_t n) {
  char name[4096];
  snprintf(name, sizeof name, "%s%s", path, suffix);
  FILE *f = fopen(name, "wb");
  if (f == NULL) return 0;
  int ok = fwrite(data, sz, n, f) == n;
  return fclose(f) == 0 && ok;
}

static size_t moe_blocks(const mq_llama_config *cfg) {
  size_t n = 0;
  for (int l = 0; l < cfg->num_hidden_layers; l++) n += mq_llama_is_moe(cfg, l) != 0;
  return n;
}

/* Logits of windows [0, nwin) of tokens, processed together block by block (as eval does):
 * out [nwin, T, vocab]; nll[w] the window sums; rec (NULL for a dense model) receives the
 * routing, [moe block][window]. */
static void run_windows(const mq_tensor_source *src, const mq_llama_config *cfg,
                        const int32_t *tokens, size_t T, size_t nwin, float *out, double *nll,
                        route_rec *rec) {
  mq_error err;
  mq_error_clear(&err);
  mq_llama_ctx ctx;
  mq_llama_outer outer;
  mq_llama_block blk;
  mq_llama_tap tap = {.observe = NULL, .route = record_route, .user = rec};
  size_t hid = (size_t)cfg->hidden_size, vocab = (size_t)cfg->vocab_size;
  if (mq_llama_ctx_init(&ctx, cfg, T, &err) != MQ_OK) die(&err);
  if (rec != NULL) ctx.tap = &tap;
  float *H = mq_alloc(nwin * T * hid, sizeof(float));
  if (!H) exit(1);
  if (mq_llama_outer_load(src, cfg, &outer, &err) != MQ_OK) die(&err);
  for (size_t w = 0; w < nwin; w++) mq_llama_embed(&ctx, &outer, tokens + w * T, H + w * T * hid);
  for (int l = 0; l < cfg->num_hidden_layers; l++) {
    if (mq_llama_block_load(src, cfg, l, &blk, &err) != MQ_OK) die(&err);
    for (size_t w = 0; w < nwin; w++) mq_llama_block_forward(&ctx, &blk, H + w * T * hid);
    mq_llama_block_free(&blk);
  }
  for (size_t w = 0; w < nwin; w++)
    nll[w] = mq_llama_window_nll(&ctx, &outer, tokens + w * T, H + w * T * hid,
                                 out + w * T * vocab);
  mq_llama_outer_free(&outer);
  mq_llama_ctx_free(&ctx);
  mq_free(H);
  if (rec != NULL) MQ_EXPECT_EQ_INT(rec->calls, moe_blocks(cfg) * nwin);
}

/* Block 0's MLP stage from xm, into h: dense (mlp_act, down) or MoE. For MoE the routing of xm
 * by mq_llama_route alone is compared with want [T, k] (the one block_forward showed). */
static void mlp_stage(mq_llama_ctx *ctx, const mq_llama_block *blk, const float *xm, float *ym,
                      float *h, const int32_t *want_sel, const float *want_w) {
  if (!blk->moe) {
    mq_llama_mlp_act(ctx, blk, xm, ym);
    mq_llama_residual(ctx, blk, MQ_LIN_DOWN, ym, h);
    return;
  }
  size_t n = ctx->seqlen * (size_t)ctx->cfg->experts_per_tok;
  int32_t *sel = mq_alloc(n, sizeof *sel);
  float *w = mq_alloc(n, sizeof *w);
  if (!sel || !w) exit(1);
  mq_llama_route(ctx, blk, xm, sel, w);
  MQ_EXPECT_MEM_EQ(sel, want_sel, n * sizeof *sel);
  MQ_EXPECT_MEM_EQ(w, want_w, n * sizeof *w);
  mq_llama_moe(ctx, blk, xm, h);
  mq_free(sel);
  mq_free(w);
}

/* Each expert's shapes: gate and up [width, hidden], down [hidden, width], the routed ones of
 * moe_intermediate_size, Qwen2-MoE's shared one of shared_expert_intermediate_size. */
static void check_expert_shapes(const mq_llama_config *cfg) {
  size_t n = mq_llama_expert_count(cfg), E = (size_t)cfg->num_experts, rows = 0, cols = 0;
  size_t hid = (size_t)cfg->hidden_size;
  MQ_EXPECT_EQ_INT(n, E + (cfg->shared_expert_intermediate_size > 0));
  for (size_t e = 0; e < n; e++) {
    size_t width = (size_t)(e < E ? cfg->moe_intermediate_size
                                  : cfg->shared_expert_intermediate_size);
    mq_llama_expert_shape(cfg, e, MQ_EXP_GATE, &rows, &cols);
    MQ_EXPECT(rows == width && cols == hid);
    mq_llama_expert_shape(cfg, e, MQ_EXP_UP, &rows, &cols);
    MQ_EXPECT(rows == width && cols == hid);
    mq_llama_expert_shape(cfg, e, MQ_EXP_DOWN, &rows, &cols);
    MQ_EXPECT(rows == hid && cols == width);
  }
}

/* Block 0 on window 0: stages one by one vs mq_llama_block_forward, bit for bit. */
static void check_stages(const mq_tensor_source *src, const mq_llama_config *cfg,
                         const int32_t *tokens, size_t T) {
  mq_error err;
  mq_error_clear(&err);
  mq_llama_ctx ctx;
  mq_llama_outer outer;
  mq_llama_block blk;
  size_t hid = (size_t)cfg->hidden_size, rows = 0, inter = (size_t)cfg->intermediate_size;
  size_t qdim = (size_t)cfg->num_attention_heads * (size_t)cfg->head_dim, cols = 0;
  mq_llama_linear_shape(cfg, MQ_LIN_O, &rows, &cols);
  MQ_EXPECT_EQ_INT(rows, hid);
  MQ_EXPECT_EQ_INT(cols, qdim);
  mq_llama_linear_shape(cfg, MQ_LIN_DOWN, &rows, &cols);
  MQ_EXPECT_EQ_INT(cols, inter);
  if (mq_llama_ctx_init(&ctx, cfg, T, &err) != MQ_OK) die(&err);
  if (mq_llama_outer_load(src, cfg, &outer, &err) != MQ_OK) die(&err);
  if (mq_llama_block_load(src, cfg, 0, &blk, &err) != MQ_OK) die(&err);
  size_t nk = T * (size_t)(cfg->experts_per_tok > 0 ? cfg->experts_per_tok : 1);
  route_rec rec = {.cfg = cfg, .T = T, .k = (size_t)cfg->experts_per_tok, .max_calls = 1};
  rec.sel = mq_alloc(nk, sizeof *rec.sel);
  rec.weight = mq_alloc(nk, sizeof *rec.weight);
  mq_llama_tap tap = {.observe = NULL, .route = record_route, .user = &rec};
  if (!rec.sel || !rec.weight) exit(1);
  float *h1 = mq_alloc(T * hid, 4), *h2 = mq_alloc(T * hid, 4), *x = mq_alloc(T * hid, 4);
  float *ya = mq_alloc(T * qdim, 4), *ym = mq_alloc(T * inter, 4), *x2 = mq_alloc(T * hid, 4);
  if (!h1 || !h2 || !x || !ya || !ym || !x2) exit(1);
  mq_llama_embed(&ctx, &outer, tokens, h1);
  memcpy(h2, h1, T * hid * sizeof(float));
  ctx.tap = &tap;
  mq_llama_block_forward(&ctx, &blk, h1);
  ctx.tap = NULL;
  MQ_EXPECT_EQ_INT(rec.calls, blk.moe ? 1 : 0);
  mq_llama_attn_input(&ctx, &blk, h2, x);
  mq_llama_rmsnorm(h2, blk.attn_norm, T, hid, cfg->rms_norm_eps, x2);
  MQ_EXPECT_MEM_EQ(x, x2, T * hid * sizeof(float));
  memcpy(x2, h2, T * hid * sizeof(float));
  mq_llama_rmsnorm(x2, blk.attn_norm, T, hid, cfg->rms_norm_eps, x2); /* in place */
  MQ_EXPECT_MEM_EQ(x, x2, T * hid * sizeof(float));
  mq_llama_attention(&ctx, &blk, x, ya);
  mq_llama_residual(&ctx, &blk, MQ_LIN_O, ya, h2);
  mq_llama_mlp_input(&ctx, &blk, h2, x);
  mlp_stage(&ctx, &blk, x, ym, h2, rec.sel, rec.weight);
  MQ_EXPECT_MEM_EQ(h1, h2, T * hid * sizeof(float));
  double ss = 0.0;
  for (size_t i = 0; i < T * hid; i++) ss += (double)h1[i] * h1[i];
  MQ_EXPECT(isfinite(ss));
  MQ_EXPECT_GT(ss, 0.0);
  mq_free(h1), mq_free(h2), mq_free(x), mq_free(ya), mq_free(ym), mq_free(x2);
  mq_free(rec.sel), mq_free(rec.weight);
  mq_llama_block_free(&blk);
  mq_llama_outer_free(&outer);
  mq_llama_ctx_free(&ctx);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: test_forward MODEL_DIR TOKENS SEQLEN NWIN OUT\n");
    return 2;
  }
  mq_error err;
  mq_error_clear(&err);
  mq_llama_config cfg;
  mq_tensor_source src;
  int32_t *tokens = NULL;
  size_t ntok = 0, T = (size_t)atol(argv[3]), nwin = (size_t)atol(argv[4]);
  if (mq_llama_config_read_dir(argv[1], &cfg, &err) != MQ_OK) die(&err);
  if (mq_checkpoint_source_open(argv[1], &src, &err) != MQ_OK) die(&err);
  if (mq_tokens_read(argv[2], cfg.vocab_size, &tokens, &ntok, &err) != MQ_OK) die(&err);
  if (T < 2 || nwin < 1 || nwin * T > ntok) {
    fprintf(stderr, "test_forward: %zu tokens, need %zu windows of %zu\n", ntok, nwin, T);
    return 2;
  }
  size_t vocab = (size_t)cfg.vocab_size;
  float *logits = mq_alloc(nwin * T * vocab, sizeof(float));
  float *alone = mq_alloc(T * vocab, sizeof(float));
  double *nll = mq_alloc(nwin, sizeof(double)), nll_alone = 0.0;
  if (!logits || !alone || !nll) return 1;
  size_t nmoe = moe_blocks(&cfg), k = (size_t)cfg.experts_per_tok;
  route_rec all = {.cfg = &cfg, .T = T, .k = k, .max_calls = nmoe * nwin};
  route_rec one = {.cfg = &cfg, .T = T, .k = k, .max_calls = nmoe};
  if (nmoe > 0) {
    check_expert_shapes(&cfg);
    all.sel = mq_alloc(nmoe * nwin * T * k, sizeof *all.sel);
    all.weight = mq_alloc(nmoe * nwin * T * k, sizeof *all.weight);
    one.sel = mq_alloc(nmoe * T * k, sizeof *one.sel);
    one.weight = mq_alloc(nmoe * T * k, sizeof *one.weight);
    if (!all.sel || !all.weight || !one.sel || !one.weight) return 1;
  }
  run_windows(&src, &cfg, tokens, T, nwin, logits, nll, nmoe > 0 ? &all : NULL);
  run_windows(&src, &cfg, tokens, T, 1, alone, &nll_alone, nmoe > 0 ? &one : NULL);
  MQ_EXPECT_MEM_EQ(alone, logits, T * vocab * sizeof(float));
  MQ_EXPECT_EQ_DBL(nll_alone, nll[0]);
  for (size_t b = 0; b < nmoe; b++) { /* window 0 of block b: [b][0] of all, [b] of one */
    MQ_EXPECT_MEM_EQ(one.sel + b * T * k, all.sel + b * nwin * T * k, T * k * sizeof(int32_t));
    MQ_EXPECT_MEM_EQ(one.weight + b * T * k, all.weight + b * nwin * T * k, T * k * sizeof(float));
  }
  for (size_t w = 0; w < nwin; w++) {
    double s = 0.0; /* recompute from the returned logits */
    for (size_t t = 0; t + 1 < T; t++) {
      const float *row = logits + (w * T + t) * vocab;
      double m = -INFINITY, z = 0.0;
      for (size_t c = 0; c < vocab; c++) m = fmax(m, row[c]);
      for (size_t c = 0; c < vocab; c++) z += exp(row[c] - m);
      s += m + log(z) - row[tokens[w * T + t + 1]];
    }
    MQ_EXPECT_NEAR(nll[w], s, 1e-12);
    printf("nll %zu %.17g\n", w, nll[w]);
  }
  check_stages(&src, &cfg, tokens, T);
  FILE *f = fopen(argv[5], "wb");
  MQ_EXPECT(f != NULL);
  if (f) {
    MQ_EXPECT_EQ_INT(fwrite(logits, sizeof(float), nwin * T * vocab, f), nwin * T * vocab);
    fclose(f);
  }
  if (nmoe > 0) {
    size_t n = nmoe * nwin * T * k;
    MQ_EXPECT(write_file(argv[5], ".routes", all.sel, sizeof(int32_t), n));
    MQ_EXPECT(write_file(argv[5], ".rweights", all.weight, sizeof(float), n));
  }
  mq_free(all.sel), mq_free(all.weight), mq_free(one.sel), mq_free(one.weight);
  mq_free(logits);
  mq_free(alone);
  mq_free(nll);
  mq_free(tokens);
  mq_checkpoint_source_close(&src);
  mq_llama_config_free(&cfg);
  return mq_test_finish("test_forward");
}
