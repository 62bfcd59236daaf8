/* config.json of Llama-family checkpoints (see hfconfig.h). */
#include "io/hfconfig.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/paths.h"

/* A config.json is a few KB; anything this large is not one. */
enum { MAX_CONFIG_BYTES = 16 << 20 };

/* What an architecture changes in the forward pass. */
typedef struct arch_traits {
  const char *name;
  int qkv_bias;       /* q/k/v biases whatever attention_bias says (Qwen2, Qwen2-MoE) */
  int qk_norm;        /* per-head q/k RMSNorm (Qwen3, Qwen3-MoE) */
  mq_moe_style moe;
  int fused;          /* qkv_proj and gate_up_proj stored fused (Phi-3) */
  int gemma2;         /* Gemma 2's norms, GeGLU, scaling and soft-capping (hfconfig.h) */
} arch_traits;

/* The one list of supported architectures (the refusal message is built from it). */
static const arch_traits supported[] = {
    {"LlamaForCausalLM", 0, 0, MQ_MOE_NONE, 0, 0},
    {"MistralForCausalLM", 0, 0, MQ_MOE_NONE, 0, 0},
    {"Qwen2ForCausalLM", 1, 0, MQ_MOE_NONE, 0, 0},
    {"Qwen3ForCausalLM", 0, 1, MQ_MOE_NONE, 0, 0},
    {"Phi3ForCausalLM", 0, 0, MQ_MOE_NONE, 1, 0},
    {"MixtralForCausalLM", 0, 0, MQ_MOE_MIXTRAL, 0, 0},
    {"Qwen2MoeForCausalLM", 1, 0, MQ_MOE_QWEN, 0, 0},
    {"Qwen3MoeForCausalLM", 0, 1, MQ_MOE_QWEN, 0, 0},
    {"Gemma2ForCausalLM", 0, 0, MQ_MOE_NONE, 0, 1}};
enum { NSUPPORTED = sizeof supported / sizeof supported[0] };

/* "LlamaForCausalLM, MistralForCausalLM, ..." into buf. */
static void supported_list(char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < NSUPPORTED && used < len; k++) {
    int n = snprintf(buf + used, len - used, "%s%s", k ? ", " : "", supported[k].name);
    if (n < 0) break;
    used += (size_t)n;
  }
}

/* Positive int field, at most max; `def` < 0 means required, 0 means optional with *out = 0
 * when absent. */
static mq_status get_pos_int(const char *path, const json_t *root, const char *field, int def,
                             long long max, int *out, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *j = json_object_get(root, field);
  if (!j || json_is_null(j)) {
    if (def < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing", path, field);
    *out = def;
    goto cleanup;
  }
  if (!json_is_integer(j)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not an integer", path, field);
  json_int_t v = json_integer_value(j);
  if (v <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: must be positive, got %lld", path, field, (long long)v);
  if (v > INT_MAX || v > max)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %lld is beyond what a model of this family can have (at "
            "most %lld)", path, field, (long long)v, max);
  *out = (int)v;
cleanup:
  return st;
}

/* Positive finite number (integer or real); def when absent. */
static mq_status get_pos_real(const char *path, const json_t *root, const char *field, double def,
                              double *out, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *j = json_object_get(root, field);
  if (!j || json_is_null(j)) {
    *out = def;
    goto cleanup;
  }
  if (!json_is_number(j)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a number", path, field);
  double v = json_number_value(j);
  if (!(v > 0.0) || !isfinite(v))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: must be a positive finite number, got %g", path, field, v);
  *out = v;
cleanup:
  return st;
}

static mq_status get_bool(const char *path, const json_t *root, const char *field, int def,
                          int *out, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *j = json_object_get(root, field);
  if (!j || json_is_null(j))
    *out = def;
  else if (json_is_boolean(j))
    *out = json_is_true(j);
  else
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a boolean", path, field);
cleanup:
  return st;
}

/* A positive number field of rope_scaling. */
static mq_status rope_number(const char *path, const json_t *rs, const char *field, double *out,
                             mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *v = json_object_get(rs, field);
  if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
    MQ_FAIL(err, MQ_EINPUT, "%s: rope_scaling: %s: missing or not a positive number", path, field);
  *out = json_number_value(v);
cleanup:
  return st;
}

/* rope_scaling as HF's modeling_rope_utils reads it: "default", "linear", "llama3". */
static mq_status parse_rope_scaling(const char *path, const json_t *rs, mq_llama_config *c,
                                    mq_error *err) {
  mq_status st = MQ_OK;
  c->rope_scaling = MQ_ROPE_PLAIN;
  if (rs == NULL || json_is_null(rs)) return MQ_OK;
  const json_t *t = json_object_get(rs, "rope_type");
  if (t == NULL) t = json_object_get(rs, "type");
  const char *type = json_is_string(t) ? json_string_value(t) : "?";
  if (!strcmp(type, "default")) return MQ_OK;
  if (!strcmp(type, "linear")) {
    c->rope_scaling = MQ_ROPE_LINEAR;
    return rope_number(path, rs, "factor", &c->rope_factor, err);
  }
  if (strcmp(type, "llama3") != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: rope_scaling: type '%.40s' is not supported (default, linear, "
            "llama3)", path, type);
  c->rope_scaling = MQ_ROPE_LLAMA3;
  MQ_CHECK(rope_number(path, rs, "factor", &c->rope_factor, err));
  MQ_CHECK(rope_number(path, rs, "low_freq_factor", &c->rope_low_freq_factor, err));
  MQ_CHECK(rope_number(path, rs, "high_freq_factor", &c->rope_high_freq_factor, err));
  MQ_CHECK(rope_number(path, rs, "original_max_position_embeddings",
                       &c->rope_original_max_positions, err));
  if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
    MQ_FAIL(err, MQ_EINPUT, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor", path);
cleanup:
  return st;
}

/* The MLP's activation: silu (SwiGLU), or for Gemma 2 gelu_pytorch_tanh (GeGLU), read as
 * transformers does from hidden_activation (hidden_act when absent; the default when both
 * are). Any other is refused. */
static mq_status check_activation(const char *path, const json_t *root, const mq_llama_config *c,
                                  mq_error *err) {
  mq_status st = MQ_OK;
  const char *field = "hidden_act", *want = c->gemma2 ? "gelu_pytorch_tanh" : "silu";
  const json_t *act = json_object_get(root, field);
  const json_t *gact = json_object_get(root, "hidden_activation");
  if (c->gemma2 && gact != NULL && !json_is_null(gact)) {
    field = "hidden_activation";
    act = gact;
  }
  if (act != NULL && !(c->gemma2 && json_is_null(act)) &&
      (!json_is_string(act) || strcmp(json_string_value(act), want) != 0))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: '%.40s' is not supported (%s with %s only)", path, field,
            json_is_string(act) ? json_string_value(act) : "?", c->gemma2 ? "GeGLU" : "SwiGLU",
            want);
cleanup:
  return st;
}

/* A soft-capping field: def when absent, 0 (none) when null, else a positive number. */
static mq_status get_softcap(const char *path, const json_t *root, const char *field, double def,
                             double *out, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *j = json_object_get(root, field);
  *out = j == NULL ? def : 0.0;
  if (j != NULL && !json_is_null(j))
    MQ_CHECK(get_pos_real(path, root, field, def, out, err));
cleanup:
  return st;
}

/* Gemma 2's departures from Llama (hfconfig.h), with transformers' Gemma2Config defaults for
 * absent fields: query_pre_attn_scalar 256, attn_logit_softcapping 50, final_logit_softcapping
 * 30 (null: no capping). */
static mq_status parse_gemma2(const char *path, const json_t *root, mq_llama_config *c,
                              mq_error *err) {
  mq_status st = MQ_OK;
  c->embed_scale = sqrt((double)c->hidden_size);
  MQ_CHECK(get_pos_real(path, root, "query_pre_attn_scalar", 256.0, &c->query_pre_attn_scalar,
                        err));
  MQ_CHECK(get_softcap(path, root, "attn_logit_softcapping", 50.0, &c->attn_softcap, err));
  MQ_CHECK(get_softcap(path, root, "final_logit_softcapping", 30.0, &c->final_softcap, err));
cleanup:
  return st;
}

/* Features that change the forward pass and are not implemented are refused here, so no model
 * is evaluated or calibrated with the wrong math: scaled rotary embeddings (Llama 3's
 * rope_scaling), activations other than SiLU (GELU-tanh for Gemma 2), a partial rotary
 * embedding (Phi-3's partial_rotary_factor). A sliding window is recorded: the commands refuse
 * windows longer than it (Gemma 2's alternate layers' window is then the whole causal
 * context). */
static mq_status check_unsupported(const char *path, const json_t *root, mq_llama_config *c,
                                   mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(parse_rope_scaling(path, json_object_get(root, "rope_scaling"), c, err));
  MQ_CHECK(check_activation(path, root, c, err));
  /* Phi-3 family: a rotary embedding over part of each head is not implemented */
  const json_t *prf = json_object_get(root, "partial_rotary_factor");
  if (prf != NULL && !json_is_null(prf) &&
      (!json_is_number(prf) || json_number_value(prf) != 1.0))
    MQ_FAIL(err, MQ_EINPUT, "%s: partial_rotary_factor: %g is not supported (rotary embedding "
            "of whole heads only)", path, json_is_number(prf) ? json_number_value(prf) : NAN);
  const json_t *use = json_object_get(root, "use_sliding_window");
  const json_t *sw = json_object_get(root, "sliding_window");
  c->sliding_window = 0;
  if (json_is_integer(sw) && json_integer_value(sw) > 0 && !json_is_false(use))
    c->sliding_window = json_integer_value(sw) > INT_MAX ? INT_MAX : (int)json_integer_value(sw);
cleanup:
  return st;
}

/* mlp_only_layers: block indices that keep a dense MLP (Qwen MoE). */
static mq_status parse_dense_layers(const char *path, const json_t *root, mq_llama_config *c,
                                    mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *list = json_object_get(root, "mlp_only_layers");
  if (list == NULL || json_is_null(list)) return MQ_OK;
  if (!json_is_array(list)) MQ_FAIL(err, MQ_EINPUT, "%s: mlp_only_layers: not a list", path);
  for (size_t k = 0; k < json_array_size(list); k++) {
    const json_t *v = json_array_get(list, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= c->num_hidden_layers)
      MQ_FAIL(err, MQ_EINPUT, "%s: mlp_only_layers: element %zu is not a block index 0..%d",
              path, k, c->num_hidden_layers - 1);
    c->moe_block[json_integer_value(v)] = 0;
  }
cleanup:
  return st;
}

/* The experts of a mixture-of-experts architecture, and which blocks have them. */
static mq_status parse_moe(const char *path, const json_t *root, mq_moe_style style,
                           mq_llama_config *c, mq_error *err) {
  mq_status st = MQ_OK;
  c->moe_style = style;
  if (style == MQ_MOE_NONE) return MQ_OK;
  const char *count = style == MQ_MOE_MIXTRAL ? "num_local_experts" : "num_experts";
  MQ_CHECK(get_pos_int(path, root, count, -1, MQ_CONFIG_MAX_EXPERTS, &c->num_experts, err));
  MQ_CHECK(get_pos_int(path, root, "num_experts_per_tok", -1, MQ_CONFIG_MAX_EXPERTS,
                       &c->experts_per_tok, err));
  if (c->experts_per_tok > c->num_experts)
    MQ_FAIL(err, MQ_EINPUT, "%s: num_experts_per_tok: %d exceeds %s (%d)", path,
            c->experts_per_tok, count, c->num_experts);
  int step = 1;
  if (style == MQ_MOE_MIXTRAL) { /* every block; the experts have intermediate_size */
    c->moe_intermediate_size = c->intermediate_size;
    c->norm_topk_prob = 1;
  } else {
    MQ_CHECK(get_pos_int(path, root, "moe_intermediate_size", -1, MQ_CONFIG_MAX_WIDTH,
                         &c->moe_intermediate_size, err));
    MQ_CHECK(get_bool(path, root, "norm_topk_prob", 0, &c->norm_topk_prob, err));
    MQ_CHECK(get_pos_int(path, root, "decoder_sparse_step", 1, MQ_CONFIG_MAX_LAYERS, &step, err));
    if (strcmp(c->architecture, "Qwen2MoeForCausalLM") == 0)
      MQ_CHECK(get_pos_int(path, root, "shared_expert_intermediate_size", -1,
                           MQ_CONFIG_MAX_WIDTH, &c->shared_expert_intermediate_size, err));
  }
  for (int b = 0; b < c->num_hidden_layers; b++) c->moe_block[b] = (b + 1) % step == 0;
  MQ_CHECK(parse_dense_layers(path, root, c, err));
cleanup:
  return st;
}

static mq_status parse(const char *path, const json_t *root, mq_llama_config *c, mq_error *err) {
  mq_status st = MQ_OK;
  if (!json_is_object(root)) MQ_FAIL(err, MQ_EINPUT, "%s: not a JSON object", path);
  const json_t *arch = json_object_get(root, "architectures");
  if (!json_is_array(arch) || json_array_size(arch) == 0 ||
      !json_is_string(json_array_get(arch, 0)))
    MQ_FAIL(err, MQ_EINPUT, "%s: architectures: missing or not a list of names", path);
  const char *a = json_string_value(json_array_get(arch, 0));
  const arch_traits *tr = NULL;
  for (size_t k = 0; k < NSUPPORTED; k++)
    if (strcmp(a, supported[k].name) == 0) tr = &supported[k];
  if (strncmp(a, "Gemma3", 6) == 0) /* Gemma3ForCausalLM, Gemma3ForConditionalGeneration */
    MQ_FAIL(err, MQ_EINPUT, "%s: unsupported architecture %.80s (Gemma 3 needs the per-head "
            "q_norm/k_norm, local and global rotary bases (rope_local_base_freq) and, for "
            "Gemma3ForConditionalGeneration, the multimodal checkpoint layout: not implemented; "
            "Gemma2ForCausalLM is supported)", path, a);
  if (tr == NULL) {
    char list[400];
    supported_list(list, sizeof list);
    MQ_FAIL(err, MQ_EINPUT, "%s: unsupported architecture %.80s (supported: %s)", path, a, list);
  }
  snprintf(c->architecture, sizeof c->architecture, "%s", a);
  MQ_CHECK(get_pos_int(path, root, "hidden_size", -1, MQ_CONFIG_MAX_WIDTH, &c->hidden_size, err));
  MQ_CHECK(get_pos_int(path, root, "intermediate_size", -1, MQ_CONFIG_MAX_WIDTH,
                       &c->intermediate_size, err));
  MQ_CHECK(get_pos_int(path, root, "num_hidden_layers", -1, MQ_CONFIG_MAX_LAYERS,
                       &c->num_hidden_layers, err));
  MQ_CHECK(get_pos_int(path, root, "num_attention_heads", -1, MQ_CONFIG_MAX_HEADS,
                       &c->num_attention_heads, err));
  MQ_CHECK(get_pos_int(path, root, "num_key_value_heads", c->num_attention_heads,
                       MQ_CONFIG_MAX_HEADS, &c->num_key_value_heads, err));
  MQ_CHECK(get_pos_int(path, root, "vocab_size", -1, MQ_CONFIG_MAX_VOCAB, &c->vocab_size, err));
  MQ_CHECK(get_pos_int(path, root, "max_position_embeddings", 0, INT_MAX,
                       &c->max_position_embeddings, err));
  MQ_CHECK(get_pos_real(path, root, "rms_norm_eps", 1e-6, &c->rms_norm_eps, err));
  MQ_CHECK(get_pos_real(path, root, "rope_theta", 10000.0, &c->rope_theta, err));
  /* Gemma ties its head by default */
  MQ_CHECK(get_bool(path, root, "tie_word_embeddings", tr->gemma2, &c->tie_word_embeddings, err));
  MQ_CHECK(get_bool(path, root, "attention_bias", tr->qkv_bias, &c->attention_bias, err));
  if (tr->qkv_bias) c->attention_bias = 1; /* Qwen2 (-MoE) always has q/k/v biases */
  if (tr->fused) c->attention_bias = 0;    /* Phi-3's linears have no biases */
  c->qk_norm = tr->qk_norm;
  c->fused = tr->fused;
  c->gemma2 = tr->gemma2;
  if (c->num_attention_heads % c->num_key_value_heads != 0)
    MQ_FAIL(err, MQ_EINPUT,
            "%s: num_key_value_heads: num_attention_heads (%d) is not divisible by %d", path,
            c->num_attention_heads, c->num_key_value_heads);
  /* An explicit head_dim (Mistral-Nemo, Qwen3) may differ from hidden / heads. */
  MQ_CHECK(get_pos_int(path, root, "head_dim", 0, MQ_CONFIG_MAX_WIDTH, &c->head_dim, err));
  if (c->head_dim == 0 && c->hidden_size % c->num_attention_heads != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: hidden_size: %d is not divisible by num_attention_heads (%d)",
            path, c->hidden_size, c->num_attention_heads);
  if (c->head_dim == 0) c->head_dim = c->hidden_size / c->num_attention_heads;
  if ((long long)c->head_dim * c->num_attention_heads > MQ_CONFIG_MAX_WIDTH)
    MQ_FAIL(err, MQ_EINPUT, "%s: head_dim: %d x %d heads is beyond %lld", path, c->head_dim,
            c->num_attention_heads, MQ_CONFIG_MAX_WIDTH);
  MQ_CHECK(parse_moe(path, root, tr->moe, c, err));
  if (c->gemma2) MQ_CHECK(parse_gemma2(path, root, c, err));
  MQ_CHECK(check_unsupported(path, root, c, err));
  /* transformers >= 4.56 writes "dtype"; older files "torch_dtype" */
  const json_t *dt = json_object_get(root, "torch_dtype");
  if (!json_is_string(dt)) dt = json_object_get(root, "dtype");
  if (json_is_string(dt))
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", json_string_value(dt));
cleanup:
  return st;
}

mq_status mq_llama_config_read(const char *path, mq_llama_config *cfg, mq_error *err) {
  mq_status st = MQ_OK;
  json_t *root = NULL;
  memset(cfg, 0, sizeof *cfg);
  MQ_CHECK(mq_path_read_all(path, MAX_CONFIG_BYTES, &cfg->json_text, &cfg->json_len, err));
  json_error_t jerr;
  root = json_loadb(cfg->json_text, cfg->json_len, 0, &jerr);
  if (!root)
    MQ_FAIL(err, MQ_EINPUT, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
  MQ_CHECK(parse(path, root, cfg, err));
cleanup:
  json_decref(root);
  if (st != MQ_OK) mq_llama_config_free(cfg);
  return st;
}

mq_status mq_llama_config_read_dir(const char *dir, mq_llama_config *cfg, mq_error *err) {
  mq_status st = MQ_OK;
  size_t len = strlen(dir) + sizeof "/config.json";
  char *path = mq_alloc(len, 1);
  memset(cfg, 0, sizeof *cfg);
  MQ_CHECK_ALLOC(err, path, len);
  snprintf(path, len, "%s/config.json", dir);
  MQ_CHECK(mq_llama_config_read(path, cfg, err));
cleanup:
  mq_free(path);
  return st;
}

void mq_llama_config_free(mq_llama_config *cfg) {
  if (!cfg) return;
  mq_free(cfg->json_text);
  memset(cfg, 0, sizeof *cfg);
}
