/* Loading a Llama-family block and the outer tensors (embedding, final norm, head) from a
 * tensor source, every shape checked against the config before any bytes are read. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "model/llama.h"

const char *const mq_llama_linear_names[MQ_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

void mq_llama_linear_shape(const mq_llama_config *cfg, mq_llama_linear which, size_t *rows,
                           size_t *cols) {
  size_t hid = (size_t)cfg->hidden_size, inter = (size_t)cfg->intermediate_size;
  size_t qdim = (size_t)cfg->num_attention_heads * (size_t)cfg->head_dim;
  size_t kvdim = (size_t)cfg->num_key_value_heads * (size_t)cfg->head_dim;
  switch (which) {
    case MQ_LIN_Q: *rows = qdim; *cols = hid; break;
    case MQ_LIN_K:
    case MQ_LIN_V: *rows = kvdim; *cols = hid; break;
    case MQ_LIN_O: *rows = hid; *cols = qdim; break;
    case MQ_LIN_GATE:
    case MQ_LIN_UP: *rows = inter; *cols = hid; break;
    case MQ_LIN_DOWN: *rows = hid; *cols = inter; break;
    default: *rows = 0; *cols = 0; break;
  }
}

static const mq_llama_fused fused_modules[2] = {{"self_attn.qkv_proj", MQ_LIN_Q, MQ_LIN_V},
                                                 {"mlp.gate_up_proj", MQ_LIN_GATE, MQ_LIN_UP}};

const mq_llama_fused *mq_llama_fused_of(const mq_llama_config *cfg, mq_llama_linear which) {
  for (int k = 0; cfg->fused && k < 2; k++)
    if (which >= fused_modules[k].first && which <= fused_modules[k].last) return &fused_modules[k];
  return NULL;
}

size_t mq_llama_fused_rows(const mq_llama_config *cfg, const mq_llama_fused *f) {
  size_t total = 0;
  for (int k = (int)f->first; k <= (int)f->last; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    total += rows;
  }
  return total;
}

static const char *const expert_suffix[2][MQ_EXP_COUNT] = {
    {"w1", "w3", "w2"}, {"gate_proj", "up_proj", "down_proj"}};

int mq_llama_is_moe(const mq_llama_config *cfg, int layer) {
  return cfg->moe_style != MQ_MOE_NONE && layer >= 0 && layer < cfg->num_hidden_layers &&
         cfg->moe_block[layer];
}

size_t mq_llama_expert_count(const mq_llama_config *cfg) {
  return (size_t)cfg->num_experts + (cfg->shared_expert_intermediate_size > 0);
}

void mq_llama_expert_shape(const mq_llama_config *cfg, size_t e, mq_expert_linear which,
                           size_t *rows, size_t *cols) {
  size_t hid = (size_t)cfg->hidden_size;
  size_t inter = e < (size_t)cfg->num_experts ? (size_t)cfg->moe_intermediate_size
                                              : (size_t)cfg->shared_expert_intermediate_size;
  *rows = which == MQ_EXP_DOWN ? hid : inter;
  *cols = which == MQ_EXP_DOWN ? inter : hid;
}

void mq_llama_expert_name(const mq_llama_config *cfg, int layer, size_t e, mq_expert_linear which,
                          char *buf, size_t len) {
  int qwen = cfg->moe_style == MQ_MOE_QWEN;
  const char *suffix = expert_suffix[qwen][which];
  if (!qwen)
    snprintf(buf, len, "model.layers.%d.block_sparse_moe.experts.%zu.%s", layer, e, suffix);
  else if (e < (size_t)cfg->num_experts)
    snprintf(buf, len, "model.layers.%d.mlp.experts.%zu.%s", layer, e, suffix);
  else
    snprintf(buf, len, "model.layers.%d.mlp.shared_expert.%s", layer, suffix);
}

void mq_llama_router_name(const mq_llama_config *cfg, int layer, char *buf, size_t len) {
  snprintf(buf, len, "model.layers.%d.%s", layer,
           cfg->moe_style == MQ_MOE_MIXTRAL ? "block_sparse_moe.gate" : "mlp.gate");
}

/* The per-block norms, module names under "model.layers.<i>.": Llama's two (the attention's
 * and the MLP's inputs), and Gemma 2's four (inputs, then the post norms of o and down). */
enum { NORMS_MAX = 4 };
static const char *const llama_norms[2] = {"input_layernorm", "post_attention_layernorm"};
static const char *const gemma2_norms[NORMS_MAX] = {
    "input_layernorm", "pre_feedforward_layernorm", "post_attention_layernorm",
    "post_feedforward_layernorm"};

static int block_norms(const mq_llama_config *cfg, const char *const **names) {
  *names = cfg->gemma2 ? gemma2_norms : llama_norms;
  return cfg->gemma2 ? 4 : 2;
}

/* Where norm k of block_norms() goes in a block. */
static float **norm_slot(mq_llama_block *blk, int k) {
  float **slot[NORMS_MAX] = {&blk->attn_norm, &blk->mlp_norm, &blk->post_attn_norm,
                             &blk->post_mlp_norm};
  return slot[k];
}

/* Gemma's RMSNorm scales by (1 + weight): added once here, in float as transformers does. */
static void norm_offset(const mq_llama_config *cfg, float *w, size_t n) {
  for (size_t i = 0; cfg->gemma2 && i < n; i++) w[i] = 1.0f + w[i];
}

/* Tensor `name` must have shape [rows] (cols == 0) or [rows, cols]; nothing is read.
 * `optional`: a missing tensor is no error (*present = 0). */
static mq_status check_shape(const mq_tensor_source *src, const char *name, size_t rows,
                             size_t cols, int optional, int *present, mq_error *err) {
  mq_status st = MQ_OK;
  int ndim = 0;
  size_t shape[2] = {0, 0};
  *present = 0;
  if (!src->find(src->ctx, name, &ndim, shape)) {
    if (optional) goto cleanup;
    MQ_FAIL(err, MQ_EINPUT, "%s: missing tensor", name);
  }
  int want = cols == 0 ? 1 : 2;
  if (ndim != want || shape[0] != rows || (want == 2 && shape[1] != cols)) {
    char got[96], exp[64];
    if (ndim == 1) snprintf(got, sizeof got, "[%zu]", shape[0]);
    else if (ndim == 2) snprintf(got, sizeof got, "[%zu, %zu]", shape[0], shape[1]);
    else snprintf(got, sizeof got, "with %d dimensions", ndim);
    if (want == 1) snprintf(exp, sizeof exp, "[%zu]", rows);
    else snprintf(exp, sizeof exp, "[%zu, %zu]", rows, cols);
    MQ_FAIL(err, MQ_EINPUT, "%s: shape %s, config expects %s", name, got, exp);
  }
  *present = 1;
cleanup:
  return st;
}

/* Reads tensor `name` of shape [rows] (cols == 0) or [rows, cols] into a fresh buffer *out.
 * `optional`: a missing tensor leaves *out NULL and is no error. */
static mq_status load_tensor(const mq_tensor_source *src, const char *name, size_t rows,
                             size_t cols, int optional, float **out, mq_error *err) {
  mq_status st = MQ_OK;
  float *buf = NULL;
  int present = 0;
  *out = NULL;
  MQ_CHECK(check_shape(src, name, rows, cols, optional, &present, err));
  if (!present) goto cleanup;
  size_t count = rows * (cols == 0 ? 1 : cols);
  buf = mq_alloc(count, sizeof *buf);
  MQ_CHECK_ALLOC(err, buf, count * sizeof *buf);
  MQ_CHECK(src->read(src->ctx, name, buf, count, err));
  /* a NaN or Inf weight would quantize to garbage without any error downstream */
  for (size_t k = 0; k < count; k++)
    if (!isfinite(buf[k]))
      MQ_FAIL(err, MQ_EINPUT, "%s: element %zu is %s", name, k, isnan(buf[k]) ? "NaN" : "infinite");
  *out = buf;
  buf = NULL;
cleanup:
  mq_free(buf);
  return st;
}

/* A mixture-of-experts block's router, shared-expert gate and experts, shapes only; an expert
 * beyond the config's count is refused (a config that miscounts its checkpoint). */
static mq_status check_experts(const mq_tensor_source *src, const mq_llama_config *cfg, int layer,
                               mq_error *err) {
  mq_status st = MQ_OK;
  char name[200];
  int present = 0;
  size_t hid = (size_t)cfg->hidden_size, E = (size_t)cfg->num_experts;
  mq_llama_router_name(cfg, layer, name, sizeof name - 8);
  strcat(name, ".weight");
  MQ_CHECK(check_shape(src, name, E, hid, 0, &present, err));
  if (cfg->shared_expert_intermediate_size > 0) {
    snprintf(name, sizeof name, "model.layers.%d.mlp.shared_expert_gate.weight", layer);
    MQ_CHECK(check_shape(src, name, 1, hid, 0, &present, err));
  }
  for (size_t e = 0; e < mq_llama_expert_count(cfg); e++)
    for (int k = 0; k < MQ_EXP_COUNT; k++) {
      size_t rows = 0, cols = 0;
      mq_llama_expert_shape(cfg, e, (mq_expert_linear)k, &rows, &cols);
      mq_llama_expert_name(cfg, layer, e, (mq_expert_linear)k, name, sizeof name - 8);
      strcat(name, ".weight");
      MQ_CHECK(check_shape(src, name, rows, cols, 0, &present, err));
    }
  mq_llama_expert_name(cfg, layer, E, MQ_EXP_GATE, name, sizeof name - 8);
  strcat(name, ".weight");
  if (cfg->moe_style == MQ_MOE_QWEN) /* experts.<E> (the shared one is named apart) */
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%zu.gate_proj.weight", layer, E);
  if (src->find(src->ctx, name, NULL, NULL))
    MQ_FAIL(err, MQ_EINPUT, "%s: present, but the config has %zu experts per block", name, E);
cleanup:
  return st;
}

/* The tensors of block `layer` (norms, the seven linears, their biases, or the experts), shapes
 * only. */
static mq_status check_block(const mq_tensor_source *src, const mq_llama_config *cfg, int layer,
                             mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  int present = 0;
  size_t hid = (size_t)cfg->hidden_size;
  static const char *const qk_norms[2] = {"self_attn.q_norm", "self_attn.k_norm"};
  const char *const *norms = NULL;
  int nnorms = block_norms(cfg, &norms);
  for (int k = 0; k < nnorms; k++) {
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, norms[k]);
    MQ_CHECK(check_shape(src, name, hid, 0, 0, &present, err));
  }
  for (int k = 0; k < 2; k++) {
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, qk_norms[k]);
    if (cfg->qk_norm) MQ_CHECK(check_shape(src, name, (size_t)cfg->head_dim, 0, 0, &present, err));
  }
  int moe = mq_llama_is_moe(cfg, layer);
  if (moe) MQ_CHECK(check_experts(src, cfg, layer, err));
  for (int k = 0; k < (moe ? MQ_LIN_GATE : MQ_LIN_COUNT); k++) {
    size_t rows = 0, cols = 0;
    const mq_llama_fused *f = mq_llama_fused_of(cfg, (mq_llama_linear)k);
    if (f != NULL) { /* the fused tensor once, at its first linear; no biases (Phi-3) */
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, f->module);
      if (k == (int)f->first)
        MQ_CHECK(check_shape(src, name, mq_llama_fused_rows(cfg, f), hid, 0, &present, err));
      continue;
    }
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, mq_llama_linear_names[k]);
    MQ_CHECK(check_shape(src, name, rows, cols, 0, &present, err));
    snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, mq_llama_linear_names[k]);
    if (!cfg->fused)
      MQ_CHECK(check_shape(src, name, rows, 0, !(cfg->attention_bias && k <= MQ_LIN_V), &present,
                           err));
  }
cleanup:
  return st;
}

mq_status mq_llama_check_shapes(const mq_tensor_source *src, const mq_llama_config *cfg,
                                const char *dir, mq_error *err) {
  mq_status st = MQ_OK;
  int present = 0;
  size_t vocab = (size_t)cfg->vocab_size, hid = (size_t)cfg->hidden_size;
  MQ_CHECK(check_shape(src, "model.embed_tokens.weight", vocab, hid, 0, &present, err));
  MQ_CHECK(check_shape(src, "model.norm.weight", hid, 0, 0, &present, err));
  if (!cfg->tie_word_embeddings)
    MQ_CHECK(check_shape(src, "lm_head.weight", vocab, hid, 1, &present, err));
  for (int layer = 0; layer < cfg->num_hidden_layers; layer++)
    MQ_CHECK(check_block(src, cfg, layer, err));
cleanup:
  if (st != MQ_OK && dir != NULL) mq__error_blame(err, dir);
  return st;
}

/* A mixture-of-experts block's router, shared-expert gate and experts. */
static mq_status load_experts(const mq_tensor_source *src, const mq_llama_config *cfg, int layer,
                              mq_llama_block *blk, mq_error *err) {
  mq_status st = MQ_OK;
  char name[200];
  size_t hid = (size_t)cfg->hidden_size;
  mq_llama_router_name(cfg, layer, name, sizeof name - 8);
  strcat(name, ".weight");
  MQ_CHECK(load_tensor(src, name, (size_t)cfg->num_experts, hid, 0, &blk->router, err));
  if (cfg->shared_expert_intermediate_size > 0) {
    snprintf(name, sizeof name, "model.layers.%d.mlp.shared_expert_gate.weight", layer);
    MQ_CHECK(load_tensor(src, name, 1, hid, 0, &blk->shared_gate, err));
  }
  blk->nexperts = mq_llama_expert_count(cfg);
  blk->experts = mq_calloc(blk->nexperts, sizeof *blk->experts);
  MQ_CHECK_ALLOC(err, blk->experts, blk->nexperts * sizeof *blk->experts);
  for (size_t e = 0; e < blk->nexperts; e++)
    for (int k = 0; k < MQ_EXP_COUNT; k++) {
      size_t rows = 0, cols = 0;
      mq_llama_expert_shape(cfg, e, (mq_expert_linear)k, &rows, &cols);
      blk->experts[e].inter = k == MQ_EXP_DOWN ? cols : rows;
      mq_llama_expert_name(cfg, layer, e, (mq_expert_linear)k, name, sizeof name - 8);
      strcat(name, ".weight");
      MQ_CHECK(load_tensor(src, name, rows, cols, 0, &blk->experts[e].w[k], err));
    }
cleanup:
  return st;
}

/* A fused module's tensor, its rows split into the covered linears' weights blk->w[first..]. */
static mq_status load_fused(const mq_tensor_source *src, const mq_llama_config *cfg, int layer,
                            const mq_llama_fused *f, mq_llama_block *blk, mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  float *all = NULL;
  size_t hid = (size_t)cfg->hidden_size, row0 = 0;
  snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, f->module);
  MQ_CHECK(load_tensor(src, name, mq_llama_fused_rows(cfg, f), hid, 0, &all, err));
  for (int k = (int)f->first; k <= (int)f->last; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    blk->w[k] = mq_alloc(rows * cols, sizeof *blk->w[k]);
    MQ_CHECK_ALLOC(err, blk->w[k], rows * cols * sizeof *blk->w[k]);
    memcpy(blk->w[k], all + row0 * hid, rows * cols * sizeof *blk->w[k]);
    row0 += rows;
  }
cleanup:
  mq_free(all);
  return st;
}

mq_status mq_llama_block_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              int layer, mq_llama_block *blk, mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  size_t hid = (size_t)cfg->hidden_size;
  memset(blk, 0, sizeof *blk);
  if (layer < 0 || layer >= cfg->num_hidden_layers)
    MQ_FAIL(err, MQ_EFAIL, "block %d: outside 0..%d", layer, cfg->num_hidden_layers - 1);
  blk->layer = layer;
  const char *const *norms = NULL;
  int nnorms = block_norms(cfg, &norms);
  for (int k = 0; k < nnorms; k++) {
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, norms[k]);
    MQ_CHECK(load_tensor(src, name, hid, 0, 0, norm_slot(blk, k), err));
    norm_offset(cfg, *norm_slot(blk, k), hid);
  }
  if (cfg->qk_norm) {
    snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", layer);
    MQ_CHECK(load_tensor(src, name, (size_t)cfg->head_dim, 0, 0, &blk->q_norm, err));
    snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", layer);
    MQ_CHECK(load_tensor(src, name, (size_t)cfg->head_dim, 0, 0, &blk->k_norm, err));
  }
  blk->moe = mq_llama_is_moe(cfg, layer);
  if (blk->moe) MQ_CHECK(load_experts(src, cfg, layer, blk, err));
  for (int k = 0; k < (blk->moe ? MQ_LIN_GATE : MQ_LIN_COUNT); k++) {
    size_t rows = 0, cols = 0;
    const mq_llama_fused *f = mq_llama_fused_of(cfg, (mq_llama_linear)k);
    if (f != NULL) { /* Phi-3: no biases */
      if (k == (int)f->first) MQ_CHECK(load_fused(src, cfg, layer, f, blk, err));
      continue;
    }
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, mq_llama_linear_names[k]);
    MQ_CHECK(load_tensor(src, name, rows, cols, 0, &blk->w[k], err));
    if (cfg->fused) continue; /* Phi-3's o and down have no biases either */
    /* Any linear may carry a bias (Llama's mlp_bias too); q/k/v must when attention_bias. */
    int required = cfg->attention_bias && k <= MQ_LIN_V;
    snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, mq_llama_linear_names[k]);
    MQ_CHECK(load_tensor(src, name, rows, 0, !required, &blk->bias[k], err));
  }
cleanup:
  if (st != MQ_OK) mq_llama_block_free(blk);
  return st;
}

void mq_llama_block_free(mq_llama_block *blk) {
  if (blk == NULL) return;
  mq_free(blk->attn_norm);
  mq_free(blk->mlp_norm);
  mq_free(blk->post_attn_norm);
  mq_free(blk->post_mlp_norm);
  mq_free(blk->q_norm);
  mq_free(blk->k_norm);
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    mq_free(blk->w[k]);
    mq_free(blk->bias[k]);
  }
  mq_free(blk->router);
  mq_free(blk->shared_gate);
  for (size_t e = 0; blk->experts != NULL && e < blk->nexperts; e++)
    for (int k = 0; k < MQ_EXP_COUNT; k++) mq_free(blk->experts[e].w[k]);
  mq_free(blk->experts);
  memset(blk, 0, sizeof *blk);
}

mq_status mq_llama_outer_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              mq_llama_outer *out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t vocab = (size_t)cfg->vocab_size, hid = (size_t)cfg->hidden_size;
  memset(out, 0, sizeof *out);
  MQ_CHECK(load_tensor(src, "model.embed_tokens.weight", vocab, hid, 0, &out->embed, err));
  MQ_CHECK(load_tensor(src, "model.norm.weight", hid, 0, 0, &out->final_norm, err));
  norm_offset(cfg, out->final_norm, hid);
  if (!cfg->tie_word_embeddings)
    MQ_CHECK(load_tensor(src, "lm_head.weight", vocab, hid, 1, &out->lm_head, err));
  if (out->lm_head == NULL) out->lm_head = out->embed; /* tied */
cleanup:
  if (st != MQ_OK) mq_llama_outer_free(out);
  return st;
}

void mq_llama_outer_free(mq_llama_outer *out) {
  if (out == NULL) return;
  if (out->lm_head != out->embed) mq_free(out->lm_head);
  mq_free(out->embed);
  mq_free(out->final_norm);
  memset(out, 0, sizeof *out);
}
