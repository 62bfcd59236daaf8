/* Times mq_llama_block_forward on a synthetic block (random weights in memory, default the
 * Llama-7B shape: hidden 4096, intermediate 11008, 32 heads) over one window of --seqlen tokens
 * and sets the achieved rate against cblas_sgemm on a square product of order --gemm-n (4096)
 * measured in the same run. Flops counted: the GEMMs of the seven linear layers,
 * 2·T·hidden·(qdim + 2·kvdim + qdim) + 2·T·3·hidden·inter, plus causal attention
 * 2·2·T²·nh·hd / 2 (QKᵀ and PV over the lower triangle only). Threads: OPENBLAS_NUM_THREADS.
 *
 * usage: bench_forward [--hidden H] [--inter I] [--heads N] [--kv-heads K] [--seqlen T]
 *                      [--reps R] [--gemm-n N] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blas.h"
#include "core/mem.h"
#include "model/llama.h"
#include "bench_common.h"

int main(int argc, char **argv) {
  long hidden = 4096, inter = 11008, heads = 32, kv = 32, T = 2048, reps = 2, gn = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    long v = atol(argv[i + 1]);
    if (!strcmp(argv[i], "--hidden")) hidden = v;
    else if (!strcmp(argv[i], "--inter")) inter = v;
    else if (!strcmp(argv[i], "--heads")) heads = v;
    else if (!strcmp(argv[i], "--kv-heads")) kv = v;
    else if (!strcmp(argv[i], "--seqlen")) T = v;
    else if (!strcmp(argv[i], "--reps")) reps = v;
    else if (!strcmp(argv[i], "--gemm-n")) gn = v;
    else {
      fprintf(stderr, "bench_forward: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (hidden <= 0 || inter <= 0 || heads <= 0 || kv <= 0 || T < 2 || reps < 1 || gn < 1 ||
      hidden % heads || heads % kv || (hidden / heads) % 2) {
    fprintf(stderr, "bench_forward: inconsistent shape\n");
    return 2;
  }
  mq_llama_config cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.architecture, sizeof cfg.architecture, "LlamaForCausalLM");
  cfg.hidden_size = (int)hidden;
  cfg.intermediate_size = (int)inter;
  cfg.num_hidden_layers = 1;
  cfg.num_attention_heads = (int)heads;
  cfg.num_key_value_heads = (int)kv;
  cfg.head_dim = (int)(hidden / heads);
  cfg.vocab_size = 32000;
  cfg.rms_norm_eps = 1e-5;
  cfg.rope_theta = 10000.0;

  mq_llama_block blk;
  memset(&blk, 0, sizeof blk);
  size_t H = (size_t)hidden, n = (size_t)T;
  blk.attn_norm = bench_alloc("bench_forward", H);
  blk.mlp_norm = bench_alloc("bench_forward", H);
  bench_fill(blk.attn_norm, H, 1, 0.1);
  bench_fill(blk.mlp_norm, H, 2, 0.1);
  for (size_t i = 0; i < H; i++) blk.attn_norm[i] += 1.0f, blk.mlp_norm[i] += 1.0f;
  double wbytes = 0.0;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(&cfg, (mq_llama_linear)k, &rows, &cols);
    blk.w[k] = bench_alloc("bench_forward", rows * cols);
    bench_fill(blk.w[k], rows * cols, 10 + (uint64_t)k, sqrt(3.0 / (double)cols));
    wbytes += 4.0 * (double)(rows * cols);
  }
  mq_llama_ctx ctx;
  mq_error err;
  mq_error_clear(&err);
  if (mq_llama_ctx_init(&ctx, &cfg, n, &err) != MQ_OK) {
    fprintf(stderr, "bench_forward: %s\n", err.msg);
    return 1;
  }
  float *h0 = bench_alloc("bench_forward", n * H), *h = bench_alloc("bench_forward", n * H);
  bench_fill(h0, n * H, 3, 1.0);

  double qdim = (double)hidden, kvdim = (double)(kv * (hidden / heads)), Td = (double)T;
  double lin = 2.0 * Td * (double)hidden * (qdim + 2.0 * kvdim + qdim) +
               2.0 * Td * 3.0 * (double)hidden * (double)inter;
  double att = 2.0 * 2.0 * Td * Td * qdim / 2.0; /* causal */
  printf("block: hidden %ld, intermediate %ld, heads %ld/%ld (q/kv), head_dim %ld, window %ld "
         "tokens; weights %.2f GB, workspace %.2f GB\n",
         hidden, inter, heads, kv, hidden / heads, T, wbytes / 1e9,
         4.0 * (double)ctx.scratch_len / 1e9);
  printf("flops per block: linear %.1f GFLOP + causal attention %.1f GFLOP = %.1f GFLOP\n",
         lin / 1e9, att / 1e9, (lin + att) / 1e9);

  double best = INFINITY;
  for (long r = 0; r < reps; r++) {
    memcpy(h, h0, n * H * sizeof(float));
    double t0 = bench_now();
    mq_llama_block_forward(&ctx, &blk, h);
    double dt = bench_now() - t0;
    double ss = 0.0;
    for (size_t i = 0; i < n * H; i++) ss += (double)h[i] * h[i];
    printf("rep %ld: %.3f s, %.1f GFLOP/s (output rms %.3g)\n", r + 1, dt, (lin + att) / dt / 1e9,
           sqrt(ss / (double)(n * H)));
    best = dt < best ? dt : best;
  }
  /* Where the time goes: the stages one by one (same work as one block_forward). */
  {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(&cfg, MQ_LIN_Q, &rows, &cols);
    float *x = bench_alloc("bench_forward", n * H), *ya = bench_alloc("bench_forward", n * rows);
    float *ym = bench_alloc("bench_forward", n * (size_t)inter);
    double ts[6];
    memcpy(h, h0, n * H * sizeof(float));
    double t0 = bench_now();
    mq_llama_attn_input(&ctx, &blk, h, x);
    ts[0] = bench_now();
    mq_llama_attention(&ctx, &blk, x, ya);
    ts[1] = bench_now();
    mq_llama_residual(&ctx, &blk, MQ_LIN_O, ya, h);
    ts[2] = bench_now();
    mq_llama_mlp_input(&ctx, &blk, h, x);
    ts[3] = bench_now();
    mq_llama_mlp_act(&ctx, &blk, x, ym);
    ts[4] = bench_now();
    mq_llama_residual(&ctx, &blk, MQ_LIN_DOWN, ym, h);
    ts[5] = bench_now();
    double qkv = 2.0 * Td * (double)hidden * (qdim + 2.0 * kvdim), o = 2.0 * Td * qdim * (double)hidden;
    double gu = 2.0 * Td * 2.0 * (double)hidden * (double)inter, dn = gu / 2.0;
    printf("stages: attn_norm %.3fs | attention (q,k,v + rope + softmax(QK')V) %.3fs, %.1f GFLOP/s"
           " | o %.3fs, %.1f GFLOP/s | mlp_norm %.3fs | gate,up + silu %.3fs, %.1f GFLOP/s | "
           "down %.3fs, %.1f GFLOP/s\n",
           ts[0] - t0, ts[1] - ts[0], (qkv + att) / (ts[1] - ts[0]) / 1e9, ts[2] - ts[1],
           o / (ts[2] - ts[1]) / 1e9, ts[3] - ts[2], ts[4] - ts[3], gu / (ts[4] - ts[3]) / 1e9,
           ts[5] - ts[4], dn / (ts[5] - ts[4]) / 1e9);
    mq_free(x);
    mq_free(ya);
    mq_free(ym);
  }
  mq_llama_ctx_free(&ctx);
  mq_free(h);
  mq_free(h0);
  mq_llama_block_free(&blk);

  /* Same-run SGEMM reference: best of 3 square products of order gn. */
  size_t g = (size_t)gn;
  float *a = bench_alloc("bench_forward", g * g), *b = bench_alloc("bench_forward", g * g);
  float *c = bench_alloc("bench_forward", g * g);
  bench_fill(a, g * g, 4, 1.0);
  bench_fill(b, g * g, 5, 1.0);
  double gbest = INFINITY;
  for (int r = 0; r < 3; r++) {
    double t0 = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)gn, (int)gn, (int)gn, 1.0f, a,
                (int)gn, b, (int)gn, 0.0f, c, (int)gn);
    double dt = bench_now() - t0;
    gbest = dt < gbest ? dt : gbest;
  }
  double grate = 2.0 * (double)gn * (double)gn * (double)gn / gbest / 1e9;
  double frate = (lin + att) / best / 1e9;
  printf("forward: best %.3f s, %.1f GFLOP/s; sgemm %ldx%ldx%ld: %.1f GFLOP/s; ratio %.2f "
         "(OpenBLAS threads %d)\n",
         best, frate, gn, gn, gn, grate, frate / grate, openblas_get_num_threads());
  mq_free(a);
  mq_free(b);
  mq_free(c);
  return 0;
}
