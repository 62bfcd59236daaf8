/* Runs the Llama forward pass of src/model over the first NWIN windows of SEQLEN tokens and
 * writes the logits, float32 [NWIN, SEQLEN, vocab] row-major, to OUT (run_forward.py compares
 * them with the numpy reference tests/oracle/llama_ref.py). Checks on the way:
 *   - the NLL returned by mq_llama_window_nll equals the one recomputed here from its logits;
 *   - the block stages called one by one give the same bits as mq_llama_block_forward;
 *   - mq_llama_rmsnorm in place equals out of place;
 *   - a window's logits do not depend on how many windows are processed with it (the first
 *     window is recomputed alone, with a fresh context).
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

/* Logits of windows [0, nwin) of tokens, processed together block by block (as eval does):
 * out [nwin, T, vocab]; nll[w] the window sums. */
static void run_windows(const mq_tensor_source *src, const mq_llama_config *cfg,
                        const int32_t *tokens, size_t T, size_t nwin, float *out, double *nll) {
  mq_error err;
  mq_error_clear(&err);
  mq_llama_ctx ctx;
  mq_llama_outer outer;
  mq_llama_block blk;
  size_t hid = (size_t)cfg->hidden_size, vocab = (size_t)cfg->vocab_size;
  if (mq_llama_ctx_init(&ctx, cfg, T, &err) != MQ_OK) die(&err);
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
  float *h1 = mq_alloc(T * hid, 4), *h2 = mq_alloc(T * hid, 4), *x = mq_alloc(T * hid, 4);
  float *ya = mq_alloc(T * qdim, 4), *ym = mq_alloc(T * inter, 4), *x2 = mq_alloc(T * hid, 4);
  if (!h1 || !h2 || !x || !ya || !ym || !x2) exit(1);
  mq_llama_embed(&ctx, &outer, tokens, h1);
  memcpy(h2, h1, T * hid * sizeof(float));
  mq_llama_block_forward(&ctx, &blk, h1);
  mq_llama_attn_input(&ctx, &blk, h2, x);
  mq_llama_rmsnorm(h2, blk.attn_norm, T, hid, cfg->rms_norm_eps, x2);
  MQ_EXPECT_MEM_EQ(x, x2, T * hid * sizeof(float));
  memcpy(x2, h2, T * hid * sizeof(float));
  mq_llama_rmsnorm(x2, blk.attn_norm, T, hid, cfg->rms_norm_eps, x2); /* in place */
  MQ_EXPECT_MEM_EQ(x, x2, T * hid * sizeof(float));
  mq_llama_attention(&ctx, &blk, x, ya);
  mq_llama_residual(&ctx, &blk, MQ_LIN_O, ya, h2);
  mq_llama_mlp_input(&ctx, &blk, h2, x);
  mq_llama_mlp_act(&ctx, &blk, x, ym);
  mq_llama_residual(&ctx, &blk, MQ_LIN_DOWN, ym, h2);
  MQ_EXPECT_MEM_EQ(h1, h2, T * hid * sizeof(float));
  double ss = 0.0;
  for (size_t i = 0; i < T * hid; i++) ss += (double)h1[i] * h1[i];
  MQ_EXPECT(isfinite(ss));
  MQ_EXPECT_GT(ss, 0.0);
  mq_free(h1), mq_free(h2), mq_free(x), mq_free(ya), mq_free(ym), mq_free(x2);
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
  run_windows(&src, &cfg, tokens, T, nwin, logits, nll);
  run_windows(&src, &cfg, tokens, T, 1, alone, &nll_alone);
  MQ_EXPECT_MEM_EQ(alone, logits, T * vocab * sizeof(float));
  MQ_EXPECT_EQ_DBL(nll_alone, nll[0]);
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
  mq_free(logits);
  mq_free(alone);
  mq_free(nll);
  mq_free(tokens);
  mq_checkpoint_source_close(&src);
  mq_llama_config_free(&cfg);
  return mq_test_finish("test_forward");
}
