/* Setting up and closing a `quantize` run (model/pipeline.h): calibration windows, checkpoint,
 * activation streams, the non-quantized tensors of the result file, the --resume key. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/tokens.h"
#include "model/pipeline.h"
#include "parallel/partition.h"

/* ---- calibration windows ---- */

/* splitmix64: a documented, seedable mixer; the window starts are the same on every rank. */
static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *b = data;
  for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 0x100000001B3ULL;
  return h;
}

/* Collective (the calibration text is tokenized split across the ranks, io/tokens.h). Window
 * i starts at a uniformly drawn offset in [0, ntok − L] (mixer(seed, i)); this rank keeps its
 * own. */
mq_status mq__pipeline_draw_windows(pipeline *p, mq_error *err) {
  mq_status st = MQ_OK;
  int32_t *all = NULL;
  size_t ntok = 0, L = p->L;
  /* collective: the text is tokenized split across the ranks (io/tokens.h) */
  MQ_CHECK(mq_tokens_read_model(p->comm, p->args->calib, p->args->model_dir, p->cfg.vocab_size,
                                &all, &ntok, err));
  if (ntok < L)
    MQ_FAIL(err, MQ_EINPUT, "%s: %zu tokens, fewer than one window of --seqlen %zu",
            p->args->calib, ntok, L);
  p->calib_hash = fnv1a(0xcbf29ce484222325ULL, all, ntok * sizeof *all);
  p->tokens = mq_alloc(p->nw * L + 1, sizeof *p->tokens);
  MQ_CHECK_ALLOC(err, p->tokens, p->nw * L * sizeof *p->tokens);
  for (size_t w = 0; w < p->nw; w++) {
    uint64_t key = splitmix64(p->opts.seed ^ splitmix64((uint64_t)(p->w0 + w)));
    size_t start = (size_t)(key % (uint64_t)(ntok - L + 1));
    memcpy(p->tokens + w * L, all + start, L * sizeof *all);
  }
cleanup:
  mq_free(all);
  return st;
}


/* ---- what is not quantized ---- */

static const char *storage_dtype(const mq_llama_config *cfg) {
  if (!strcmp(cfg->torch_dtype, "bfloat16")) return "BF16";
  if (!strcmp(cfg->torch_dtype, "float16")) return "F16";
  return "F32";
}

/* Collective. Copies tensor `name` (when the checkpoint has it) into /model/tensors: rank 0
 * reads, everyone takes part in the write. */
static mq_status copy_tensor(pipeline *p, const char *name, mq_error *err) {
  mq_status st = MQ_OK;
  int ndim = 0;
  size_t shape[2] = {0, 0};
  float *data = NULL;
  if (!p->ckpt.find(p->ckpt.ctx, name, &ndim, shape)) return MQ_OK; /* same on every rank */
  size_t count = shape[0] * (ndim > 1 ? shape[1] : 1);
  if (p->rank == 0) {
    data = mq_alloc(count + 1, sizeof *data);
    st = data ? p->ckpt.read(p->ckpt.ctx, name, data, count, err)
              : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (%s)", name);
  }
  MQ_AGREE(p->comm, st);
  MQ_CHECK(mq_h5_result_write_tensor(p->rf, name, data, ndim < 1 ? 1 : ndim, shape,
                                     storage_dtype(&p->cfg), err));
cleanup:
  mq_free(data);
  return st;
}

/* Collective. /model/config and every tensor that is not a quantized linear's weight. */
mq_status mq__pipeline_write_model_part(pipeline *p, mq_error *err) {
  mq_status st = MQ_OK;
  char name[200];
  static const char *const outer[] = {"model.embed_tokens.weight", "model.norm.weight",
                                      "lm_head.weight"};
  static const char *const norms[] = {"input_layernorm.weight", "post_attention_layernorm.weight"};
  MQ_CHECK(mq_h5_result_write_config(p->rf, p->cfg.json_text, p->cfg.json_len, err));
  for (size_t i = 0; i < sizeof outer / sizeof outer[0]; i++)
    MQ_CHECK(copy_tensor(p, outer[i], err));
  static const char *const kept[] = {"self_attn.q_norm.weight", "self_attn.k_norm.weight",
                                     "mlp.shared_expert_gate.weight",
                                     "pre_feedforward_layernorm.weight", /* Gemma 2 */
                                     "post_feedforward_layernorm.weight"}; /* when present */
  for (int b = 0; b < p->cfg.num_hidden_layers; b++) {
    for (int k = 0; k < 2; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s", b, norms[k]);
      MQ_CHECK(copy_tensor(p, name, err));
    }
    for (size_t k = 0; k < sizeof kept / sizeof kept[0]; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s", b, kept[k]);
      MQ_CHECK(copy_tensor(p, name, err));
    }
    if (mq_llama_is_moe(&p->cfg, b)) { /* the router stays in full precision */
      mq_llama_router_name(&p->cfg, b, name, sizeof name - 8);
      strcat(name, ".weight");
      MQ_CHECK(copy_tensor(p, name, err));
    }
    for (int k = 0; k < MQ_LIN_COUNT; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s.bias", b, mq_llama_linear_names[k]);
      MQ_CHECK(copy_tensor(p, name, err));
    }
  }
cleanup:
  return st;
}

/* Everything the codes depend on; --resume continues only a file with the same key. */
void mq__pipeline_resume_key(const pipeline *p, char *key, size_t len) {
  const mq_quant_options *o = &p->opts;
  uint64_t cfg_hash = fnv1a(0xcbf29ce484222325ULL, p->cfg.json_text, p->cfg.json_len);
  snprintf(key, len,
           "method=%s rounding=%s bits=%d group_size=%d sym=%d act_order=%d static_groups=%d "
           "mse=%d lambda_mode=%d damp=%.17g lambda=%.17g block_size=%d seed=%llu factor=%d "
           "scale_fp16=%d nsamples=%zu seqlen=%zu calib=%016llx config=%016llx "
           "experts_all_tokens=%d expert_min_tokens=%zu",
           mq_method_names[o->method], mq_rounding_names[o->rounding], o->bits, o->group_size,
           o->sym, o->act_order, o->static_groups, o->mse, (int)o->lambda_mode, o->damp, o->lambda,
           o->block_size, (unsigned long long)o->seed, (int)o->factor, o->scale_fp16, p->nwin, p->L,
           (unsigned long long)p->calib_hash, (unsigned long long)cfg_hash,
           p->args->experts_all_tokens, p->args->expert_min_tokens);
  if (o->gram_f32) { /* appended only when set: keys of earlier files stay what they were */
    size_t used = strlen(key);
    if (used < len) snprintf(key + used, len - used, " gram_products=float32");
  }
}

/* ---- setup ---- */

/* Local. Config, checkpoint, window length, this rank's windows. */
mq_status mq__pipeline_open_local(pipeline *p, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_model_quantize_args *a = p->args;
  MQ_CHECK(mq_llama_config_read_dir(a->model_dir, &p->cfg, err));
  MQ_CHECK(mq_checkpoint_source_open(a->model_dir, &p->ckpt, err));
  MQ_CHECK(mq_llama_check_shapes(&p->ckpt, &p->cfg, a->model_dir, err)); /* before sizing */
  size_t maxpos = p->cfg.max_position_embeddings > 0 ? (size_t)p->cfg.max_position_embeddings : 0;
  p->L = a->seqlen > 0 ? a->seqlen : 2048;
  if (a->seqlen == 0 && maxpos > 0 && p->L > maxpos) p->L = maxpos;
  if (maxpos > 0 && p->L > maxpos)
    MQ_FAIL(err, MQ_EUSAGE, "--seqlen: %zu exceeds the model's max_position_embeddings (%zu)",
            p->L, maxpos);
  size_t window = p->cfg.sliding_window > 0 ? (size_t)p->cfg.sliding_window : 0;
  if (a->seqlen == 0 && window > 0 && p->L > window) p->L = window;
  if (window > 0 && p->L > window)
    MQ_FAIL(err, MQ_EUSAGE, "--seqlen: %zu exceeds the model's sliding_window (%zu), whose "
            "windowed attention is not implemented", p->L, window);
  p->nwin = a->nsamples;
  /* Ranks get whole chunks of ~MQ_CHUNK_TOKENS tokens: each chunk's DSYRK is the same wherever
   * it runs (rank-count independence), and short windows do not pay one exact-sum conversion
   * of cols² per window. */
  p->chunk_windows = p->L >= MQ_CHUNK_TOKENS ? 1 : MQ_CHUNK_TOKENS / p->L;
  size_t nchunks = (p->nwin + p->chunk_windows - 1) / p->chunk_windows, c0, nc;
  mq_partition(nchunks, p->nranks, p->rank, &c0, &nc);
  p->w0 = c0 * p->chunk_windows < p->nwin ? c0 * p->chunk_windows : p->nwin;
  size_t wend = (c0 + nc) * p->chunk_windows < p->nwin ? (c0 + nc) * p->chunk_windows : p->nwin;
  p->nw = wend - p->w0;
cleanup:
  return st;
}

/* Local. The residual streams [ntok, hid] and the stage buffers [ntok, width]: in memory, or
 * with --spill-dir in one file mapping there, each buffer 64-byte aligned. */
static mq_status alloc_streams(pipeline *p, size_t ntok, size_t hid, mq_error *err) {
  mq_status st = MQ_OK;
  float **bufs[6] = {&p->hf, &p->hq, &p->af, &p->aq, &p->bf, &p->bq};
  size_t len[6], total = 0;
  for (int k = 0; k < 6; k++) {
    len[k] = ((ntok * (k < 2 ? hid : p->width) + 1) * sizeof(float) + 63) / 64 * 64;
    total += len[k];
  }
  if (!p->args->spill) {
    for (int k = 0; k < 6; k++) *bufs[k] = mq_alloc(len[k], 1);
    MQ_CHECK_ALLOC(err, p->hf && p->hq && p->af && p->aq && p->bf && p->bq, total);
    return MQ_OK;
  }
  MQ_CHECK(mq_spill_map(p->args->spill_dir, total, &p->spill, err));
  char *at = p->spill.base;
  for (int k = 0; k < 6; k++, at += len[k - 1]) *bufs[k] = (float *)(void *)at;
  MQ_INFO("activation streams: %.3g GiB per rank in a file on %s (--spill-dir)",
          (double)total / 1073741824.0, p->args->spill_dir);
cleanup:
  return st;
}

/* Local. Buffers; both streams start as the embeddings of this rank's windows. */
mq_status mq__pipeline_open_streams(pipeline *p, mq_error *err) {
  mq_status st = MQ_OK;
  mq_llama_outer outer = {0};
  const mq_model_quantize_args *a = p->args;
  MQ_CHECK(mq_llama_ctx_init(&p->fwd, &p->cfg, p->L, err));
  MQ_CHECK(mq_output_errors_create(&p->cfg, p->L, p->nw, &p->oe, err));
  size_t hid = (size_t)p->cfg.hidden_size, attn = (size_t)p->cfg.num_attention_heads * (size_t)p->cfg.head_dim;
  size_t inter = (size_t)p->cfg.intermediate_size, ntok = p->nw * p->L;
  p->width = hid > attn ? hid : attn;
  if (inter > p->width) p->width = inter;
  MQ_CHECK(alloc_streams(p, ntok, hid, err));
  st = mq_llama_outer_load(&p->ckpt, &p->cfg, &outer, err);
  if (st != MQ_OK) mq__error_blame(err, a->model_dir);
  MQ_CHECK(st);
  for (size_t w = 0; w < p->nw; w++)
    mq_llama_embed(&p->fwd, &outer, p->tokens + w * p->L, p->hf + w * p->L * hid);
  memcpy(p->hq, p->hf, ntok * hid * sizeof *p->hq);
cleanup:
  mq_llama_outer_free(&outer);
  return st;
}

void mq__pipeline_close(pipeline *p) {
  mq_report_discard(&p->report);
  mq_h5_result_abort(&p->rf); /* collective; NULL after a successful finish */
  mq_hessian_cache_free(&p->cache);
  mq_llama_ctx_free(&p->fwd);
  mq_output_errors_free(&p->oe);
  float *bufs[6] = {p->hf, p->hq, p->af, p->aq, p->bf, p->bq};
  if (p->spill.base != NULL) mq_spill_unmap(&p->spill);
  else
    for (int k = 0; k < 6; k++) mq_free(bufs[k]);
  mq_free(p->tokens);
  mq_checkpoint_source_close(&p->ckpt);
  mq_llama_config_free(&p->cfg);
}
