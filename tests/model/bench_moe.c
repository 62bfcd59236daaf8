/* Times the mixture-of-experts MLP (mq_llama_moe) of a synthetic Mixtral-style block (random
 * router and experts in memory; default 8 experts, top-2, hidden 2048, expert width 5632) on
 * one window of --seqlen tokens, and sets its rate against cblas_sgemm on the experts' own
 * shape (M = the average routed tokens per expert) and on a square product of order --gemm-n,
 * both measured in the same run. Flops counted: the router 2·T·hidden·E and, per expert, the
 * three products on its routed rows, 2·n_e·3·hidden·width. Threads: OPENBLAS_NUM_THREADS.
 *
 * usage: bench_moe [--hidden H] [--inter W] [--experts E] [--topk K] [--seqlen T] [--reps R]
 *                  [--gemm-n N] */
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

/* Best of three SGEMMs C [m, n] = A [m, k]·B [n, k]ᵀ, GFLOP/s. */
static double sgemm_rate(size_t m, size_t n, size_t k) {
  float *a = bench_alloc("bench_moe", m * k), *b = bench_alloc("bench_moe", n * k);
  float *c = bench_alloc("bench_moe", m * n);
  bench_fill(a, m * k, 4, 1.0);
  bench_fill(b, n * k, 5, 1.0);
  double best = INFINITY;
  for (int r = 0; r < 3; r++) {
    double t0 = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k,
                b, (int)k, 0.0f, c, (int)n);
    double dt = bench_now() - t0;
    best = dt < best ? dt : best;
  }
  mq_free(a);
  mq_free(b);
  mq_free(c);
  return 2.0 * (double)m * (double)n * (double)k / best / 1e9;
}

int main(int argc, char **argv) {
  long hidden = 2048, inter = 5632, E = 8, K = 2, T = 2048, reps = 3, gn = 2048;
  for (int i = 1; i + 1 < argc; i += 2) {
    long v = atol(argv[i + 1]);
    if (!strcmp(argv[i], "--hidden")) hidden = v;
    else if (!strcmp(argv[i], "--inter")) inter = v;
    else if (!strcmp(argv[i], "--experts")) E = v;
    else if (!strcmp(argv[i], "--topk")) K = v;
    else if (!strcmp(argv[i], "--seqlen")) T = v;
    else if (!strcmp(argv[i], "--reps")) reps = v;
    else if (!strcmp(argv[i], "--gemm-n")) gn = v;
    else {
      fprintf(stderr, "bench_moe: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (hidden <= 0 || inter <= 0 || E < 1 || K < 1 || K > E || T < 1 || reps < 1 || gn < 1) {
    fprintf(stderr, "bench_moe: inconsistent shape\n");
    return 2;
  }
  mq_llama_config cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.architecture, sizeof cfg.architecture, "MixtralForCausalLM");
  cfg.hidden_size = (int)hidden;
  cfg.intermediate_size = cfg.moe_intermediate_size = (int)inter;
  cfg.num_hidden_layers = 1;
  cfg.num_attention_heads = cfg.num_key_value_heads = 1;
  cfg.head_dim = 2;
  cfg.vocab_size = 1;
  cfg.rope_theta = 10000.0;
  cfg.moe_style = MQ_MOE_MIXTRAL;
  cfg.num_experts = (int)E;
  cfg.experts_per_tok = (int)K;
  cfg.norm_topk_prob = 1;
  cfg.moe_block[0] = 1;

  size_t H = (size_t)hidden, W = (size_t)inter, n = (size_t)T;
  mq_llama_block blk;
  memset(&blk, 0, sizeof blk);
  blk.moe = 1;
  blk.nexperts = (size_t)E;
  blk.router = bench_alloc("bench_moe", (size_t)E * H);
  bench_fill(blk.router, (size_t)E * H, 7, 1.0);
  blk.experts = mq_calloc((size_t)E, sizeof *blk.experts);
  for (long e = 0; e < E; e++) {
    blk.experts[e].inter = W;
    for (int k = 0; k < MQ_EXP_COUNT; k++) {
      blk.experts[e].w[k] = bench_alloc("bench_moe", H * W);
      bench_fill(blk.experts[e].w[k], H * W, 100 + (uint64_t)(e * 3 + k),
           sqrt(3.0 / (double)(k == MQ_EXP_DOWN ? W : H)));
    }
  }
  mq_llama_ctx ctx;
  mq_error err;
  mq_error_clear(&err);
  if (mq_llama_ctx_init(&ctx, &cfg, n, &err) != MQ_OK) {
    fprintf(stderr, "bench_moe: %s\n", err.msg);
    return 1;
  }
  float *x = bench_alloc("bench_moe", n * H), *h = bench_alloc("bench_moe", n * H);
  bench_fill(x, n * H, 3, 1.0);
  double flops = 2.0 * (double)T * (double)H * (double)E +
                 2.0 * (double)T * (double)K * 3.0 * (double)H * (double)W;
  printf("moe mlp: hidden %ld, expert width %ld, %ld experts, top-%ld, window %ld tokens; "
         "experts %.2f GB; %.1f GFLOP per window\n", hidden, inter, E, K, T,
         4.0 * 3.0 * (double)E * (double)(H * W) / 1e9, flops / 1e9);
  double best = INFINITY;
  for (long r = 0; r < reps; r++) {
    memset(h, 0, n * H * sizeof *h);
    double t0 = bench_now();
    mq_llama_moe(&ctx, &blk, x, h);
    double dt = bench_now() - t0;
    printf("rep %ld: %.3f s, %.1f GFLOP/s\n", r + 1, dt, flops / dt / 1e9);
    best = dt < best ? dt : best;
  }
  double rate = flops / best / 1e9;
  size_t m = (size_t)((double)T * (double)K / (double)E + 0.5);
  double own = sgemm_rate(m > 0 ? m : 1, W, H), square = sgemm_rate((size_t)gn, (size_t)gn,
                                                                    (size_t)gn);
  printf("moe mlp: best %.3f s, %.1f GFLOP/s; sgemm at the experts' shape %zux%zux%zu: %.1f "
         "GFLOP/s (ratio %.2f); square %ld: %.1f GFLOP/s (ratio %.2f); OpenBLAS threads %d\n",
         best, rate, m, W, H, own, rate / own, gn, square, rate / square,
         openblas_get_num_threads());
  mq_llama_ctx_free(&ctx);
  mq_free(x);
  mq_free(h);
  mq_llama_block_free(&blk);
  return 0;
}
