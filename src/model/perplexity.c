/* Perplexity of a checkpoint, or of a result file over it (mq_model_perplexity, mpiquant.h).
 * The text is cut into windows of seqlen tokens; ranks take contiguous ranges of windows and
 * run them block by block, only one block's weights resident at a time, the hidden states of a
 * rank's windows kept [nwin_local, seqlen, hidden]. Every window is computed with the same
 * shapes wherever it runs, and rank 0 sums the per-window NLLs in window order, so the
 * perplexity does not depend on the number of ranks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/checkpoint_source.h"
#include "io/hfconfig.h"
#include "io/result_tensors.h"
#include "io/tokens.h"
#include "model/llama.h"
#include "parallel/ctx.h"
#include "parallel/partition.h"

/* Two sources stacked: a tensor is looked up in `top` (the result file) first. */
typedef struct overlay {
  mq_tensor_source top, base;
} overlay;

static int overlay_find(void *ctx, const char *name, int *ndim, size_t shape[2]) {
  overlay *o = ctx;
  return o->top.find(o->top.ctx, name, ndim, shape) || o->base.find(o->base.ctx, name, ndim, shape);
}

static mq_status overlay_read(void *ctx, const char *name, float *out, size_t count,
                              mq_error *err) {
  overlay *o = ctx;
  if (o->top.find(o->top.ctx, name, NULL, NULL)) return o->top.read(o->top.ctx, name, out, count, err);
  return o->base.read(o->base.ctx, name, out, count, err);
}

/* After a failed load: messages of the model layer name a tensor ("<name>: shape ..."), the
 * error line names a file, so prefix the checkpoint directory unless the message already starts
 * with one of our paths (read errors name the shard file). */
static void blame(mq_error *err, const mq_perplexity_args *a) {
  if (a->quantized && !strncmp(err->msg, a->quantized, strlen(a->quantized))) return;
  mq__error_blame(err, a->model_dir);
}

/* Every failure is agreed on before the next collective. */
mq_status mq_model_perplexity(mq_ctx *ctx, const mq_perplexity_args *a, mq_perplexity *out) {
  mq_status st = MQ_OK;
  mq_error *err = &ctx->err;
  mq_llama_config cfg;
  mq_tensor_source src = {0};
  overlay ov = {{0}, {0}};
  int32_t *tokens = NULL;
  size_t ntok = 0;
  float *H = NULL;
  double *wnll = NULL, *all = NULL;
  int *counts = NULL, *displs = NULL;
  mq_llama_ctx fwd = {0};
  mq_llama_block blk = {0};
  mq_llama_outer outer = {0};
  memset(&cfg, 0, sizeof cfg);
  double t0 = mq_wtime();

  MQ_AGREE(ctx->comm, mq_llama_config_read_dir(a->model_dir, &cfg, err));
  MQ_AGREE(ctx->comm, mq_checkpoint_source_open(a->model_dir, &ov.base, err));
  src = ov.base;
  if (a->quantized) {
    MQ_AGREE(ctx->comm, mq_result_tensors_open(a->quantized, &ov.top, err));
    src = (mq_tensor_source){.find = overlay_find, .read = overlay_read, .ctx = &ov};
    /* a result file of another checkpoint is refused (when it says which it was made from) */
    MQ_AGREE(ctx->comm, mq_checkpoint_check_result(
                            a->quantized, mq_result_tensors_meta(&ov.top), a->model_dir,
                            mq_checkpoint_source_hash(&ov.base, cfg.json_text, cfg.json_len), err));
  }
  /* every shape the config implies, before anything is sized from the config */
  st = mq_llama_check_shapes(&src, &cfg, NULL, err);
  if (st != MQ_OK) blame(err, a);
  MQ_AGREE(ctx->comm, st);
  /* collective: text split across the ranks, token files read by rank 0 (io/tokens.h) */
  MQ_CHECK(mq_tokens_read_model(ctx->comm, a->tokens, a->model_dir, cfg.vocab_size, &tokens,
                                &ntok, err));

  size_t L = 2048;
  if (a->seqlen > 0) {
    L = (size_t)a->seqlen;
    if (cfg.max_position_embeddings > 0 && L > (size_t)cfg.max_position_embeddings)
      MQ_WARN("--seqlen %zu exceeds the model's max_position_embeddings (%d)", L,
              cfg.max_position_embeddings);
  } else if (cfg.max_position_embeddings > 0 && L > (size_t)cfg.max_position_embeddings) {
    L = (size_t)cfg.max_position_embeddings;
  }
  if (cfg.sliding_window > 0 && L > (size_t)cfg.sliding_window) { /* not implemented */
    if (a->seqlen > 0)
      MQ_FAIL(err, MQ_EUSAGE, "--seqlen: %zu exceeds the model's sliding_window (%d), whose "
              "windowed attention is not implemented", L, cfg.sliding_window);
    L = (size_t)cfg.sliding_window;
  }
  size_t nwin = ntok / L;
  if (nwin == 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %zu tokens, fewer than one window of %zu (--seqlen)", a->tokens,
            ntok, L);
  if (a->nwindows > 0 && (size_t)a->nwindows < nwin) nwin = (size_t)a->nwindows;
  if (nwin > (size_t)INT32_MAX) MQ_FAIL(err, MQ_EINPUT, "%s: too many windows", a->tokens);
  size_t first = 0, count = 0, hid = (size_t)cfg.hidden_size;
  mq_partition(nwin, ctx->size, ctx->rank, &first, &count);
  MQ_INFO("eval %s: %d blocks, hidden %d, vocab %d; %zu tokens -> %zu windows of %zu, %zu on "
          "rank 0, %d ranks",
          a->model_dir, cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, ntok, nwin, L, count,
          ctx->size);

  /* Workspace and the hidden states of this rank's windows, H [count, L, hidden]. */
  if (count > 0) {
    st = mq_llama_ctx_init(&fwd, &cfg, L, err);
    if (st == MQ_OK) {
      H = mq_alloc(count * L, hid * sizeof(float));
      wnll = mq_alloc(count, sizeof(double));
      if (!H || !wnll)
        st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                      count * L * hid * sizeof(float));
    }
  }
  MQ_AGREE(ctx->comm, st);

  /* Embedding (the outer tensors are loaded again for the head, so that neither stays
   * resident while the blocks run). */
  if (count > 0) {
    st = mq_llama_outer_load(&src, &cfg, &outer, err);
    blame(err, a);
    if (st == MQ_OK)
      for (size_t w = 0; w < count; w++)
        mq_llama_embed(&fwd, &outer, tokens + (first + w) * L, H + w * L * hid);
    mq_llama_outer_free(&outer);
  }
  MQ_AGREE(ctx->comm, st);

  for (int layer = 0; layer < cfg.num_hidden_layers; layer++) {
    double tb = mq_wtime();
    if (count > 0) {
      st = mq_llama_block_load(&src, &cfg, layer, &blk, err);
      blame(err, a);
      if (st == MQ_OK)
        for (size_t w = 0; w < count; w++) mq_llama_block_forward(&fwd, &blk, H + w * L * hid);
      mq_llama_block_free(&blk);
    }
    MQ_AGREE(ctx->comm, st);
    double el = mq_wtime() - t0;
    MQ_INFO("block %d/%d: %.2fs  elapsed %.1fs  ETA %.1fs", layer + 1, cfg.num_hidden_layers,
            mq_wtime() - tb, el, el / (layer + 1) * (cfg.num_hidden_layers - layer - 1));
  }

  if (count > 0) {
    st = mq_llama_outer_load(&src, &cfg, &outer, err);
    blame(err, a);
    for (size_t w = 0; st == MQ_OK && w < count; w++) {
      wnll[w] = mq_llama_window_nll(&fwd, &outer, tokens + (first + w) * L, H + w * L * hid,
                                    NULL);
      /* an overflow in the forward pass gives infinite logits and a NaN or infinite NLL */
      if (!isfinite(wnll[w]))
        st = mq__fail(err, MQ_ENUMERIC, __FILE__, __LINE__,
                      "%s: window %zu (tokens %zu..%zu of %s): the negative log-likelihood is "
                      "%g (non-finite logits): numerical failure",
                      a->quantized ? a->quantized : a->model_dir, first + w, (first + w) * L,
                      (first + w + 1) * L - 1, a->tokens, wnll[w]);
    }
    mq_llama_outer_free(&outer);
  }
  MQ_AGREE(ctx->comm, st);

  /* Per-window sums to rank 0, added in window order: the same bits at any rank count. */
  if (ctx->rank == 0) {
    all = mq_alloc(nwin, sizeof(double));
    counts = mq_alloc((size_t)ctx->size, sizeof(int));
    displs = mq_alloc((size_t)ctx->size, sizeof(int));
    if (!all || !counts || !displs)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                    nwin * sizeof(double));
    for (int r = 0; st == MQ_OK && r < ctx->size; r++) {
      size_t f = 0, c = 0;
      mq_partition(nwin, ctx->size, r, &f, &c);
      counts[r] = (int)c;
      displs[r] = (int)f;
    }
  }
  MQ_AGREE(ctx->comm, st);
  MPI_Gatherv(wnll, (int)count, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, ctx->comm);
  double total = 0.0;
  if (ctx->rank == 0)
    for (size_t w = 0; w < nwin; w++) total += all[w];
  MPI_Bcast(&total, 1, MPI_DOUBLE, 0, ctx->comm);
  size_t predicted = nwin * (L - 1);
  double mean = total / (double)predicted;
  *out = (mq_perplexity){.perplexity = exp(mean), .nll = mean, .tokens = predicted, .seqlen = L};
  MQ_INFO("%zu windows, %zu predicted tokens: mean NLL %.6f  %.1fs", nwin, predicted, mean,
          mq_wtime() - t0);
cleanup:
  mq_llama_block_free(&blk);
  mq_llama_outer_free(&outer);
  mq_llama_ctx_free(&fwd);
  mq_free(H);
  mq_free(wnll);
  mq_free(all);
  mq_free(counts);
  mq_free(displs);
  mq_free(tokens);
  mq_result_tensors_close(&ov.top);
  mq_checkpoint_source_close(&ov.base);
  mq_llama_config_free(&cfg);
  return st;
}

