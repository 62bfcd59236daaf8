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

/* The tensors of block `layer` (norms, the seven linears, their biases), shapes only. */
static mq_status check_block(const mq_tensor_source *src, const mq_llama_config *cfg, int layer,
                             mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  int present = 0;
  size_t hid = (size_t)cfg->hidden_size;
  static const char *const norms[2] = {"input_layernorm", "post_attention_layernorm"};
  for (int k = 0; k < 2; k++) {
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, norms[k]);
    MQ_CHECK(check_shape(src, name, hid, 0, 0, &present, err));
  }
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, mq_llama_linear_names[k]);
    MQ_CHECK(check_shape(src, name, rows, cols, 0, &present, err));
    snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, mq_llama_linear_names[k]);
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

mq_status mq_llama_block_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              int layer, mq_llama_block *blk, mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  size_t hid = (size_t)cfg->hidden_size;
  memset(blk, 0, sizeof *blk);
  if (layer < 0 || layer >= cfg->num_hidden_layers)
    MQ_FAIL(err, MQ_EFAIL, "block %d: outside 0..%d", layer, cfg->num_hidden_layers - 1);
  snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
  MQ_CHECK(load_tensor(src, name, hid, 0, 0, &blk->attn_norm, err));
  snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
  MQ_CHECK(load_tensor(src, name, hid, 0, 0, &blk->mlp_norm, err));
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, mq_llama_linear_names[k]);
    MQ_CHECK(load_tensor(src, name, rows, cols, 0, &blk->w[k], err));
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
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    mq_free(blk->w[k]);
    mq_free(blk->bias[k]);
  }
  memset(blk, 0, sizeof *blk);
}

mq_status mq_llama_outer_load(const mq_tensor_source *src, const mq_llama_config *cfg,
                              mq_llama_outer *out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t vocab = (size_t)cfg->vocab_size, hid = (size_t)cfg->hidden_size;
  memset(out, 0, sizeof *out);
  MQ_CHECK(load_tensor(src, "model.embed_tokens.weight", vocab, hid, 0, &out->embed, err));
  MQ_CHECK(load_tensor(src, "model.norm.weight", hid, 0, 0, &out->final_norm, err));
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
