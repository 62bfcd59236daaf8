/* config.json and the metadata keys of the GGUF llama export (io/gguf_llama.h). */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/status.h"
#include "io/gguf_llama_internal.h"
#include "io/gguf_vocab.h"

/* The result file's /model/config text parsed by the one config reader (io/hfconfig.h), which
 * reads paths: the text goes through an anonymous memory file. Messages name "<in>:
 * /model/config" instead of the descriptor's path. */
static mq_status config_from_text(gg_job *job, const char *text, mq_error *err) {
  mq_status st = MQ_OK;
  char path[64];
  size_t len = strlen(text), done = 0;
  int fd = memfd_create("config.json", MFD_CLOEXEC);
  if (fd < 0) MQ_FAIL(err, MQ_EFAIL, "memfd_create: %s", strerror(errno));
  while (done < len) {
    ssize_t k = write(fd, text + done, len - done);
    if (k <= 0) MQ_FAIL(err, MQ_EFAIL, "memfd write: %s", strerror(errno));
    done += (size_t)k;
  }
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  st = mq_llama_config_read(path, &job->cfg, err);
  if (st != MQ_OK && !strncmp(err->msg, path, strlen(path))) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s: /model/config%s", job->a->in, err->msg + strlen(path));
    memcpy(err->msg, msg, sizeof msg);
  }
cleanup:
  if (fd >= 0) close(fd);
  return st;
}

mq_status mq__gguf_load_config(gg_job *job, mq_error *err) {
  mq_status st = MQ_OK;
  json_error_t je;
  const char *text = mq_result_tensors_config_json(&job->src);
  if (text != NULL) MQ_CHECK(config_from_text(job, text, err));
  else if (job->a->model != NULL) MQ_CHECK(mq_llama_config_read_dir(job->a->model, &job->cfg, err));
  else
    MQ_FAIL(err, MQ_EINPUT, "%s: no /model/config and no --model: GGUF needs the model's "
            "config.json", job->a->in);
  job->config = json_loadb(job->cfg.json_text, job->cfg.json_len, 0, &je);
  MQ_CHECK_ALLOC(err, job->config, job->cfg.json_len); /* parsed once already: memory */
  const char *arch = job->cfg.architecture;
  if (strcmp(arch, "LlamaForCausalLM") != 0 && strcmp(arch, "MistralForCausalLM") != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: GGUF export writes the llama architecture "
            "(LlamaForCausalLM, MistralForCausalLM) only", job->a->in, arch);
  if (job->cfg.head_dim % 2 != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: head_dim %d is odd: no rotary pairs", job->a->in,
            job->cfg.head_dim);
  if (job->cfg.sliding_window > 0)
    MQ_WARN("export: config.json's sliding_window %d is not written (llama.cpp's llama attends to "
            "the whole context; identical up to that length)", job->cfg.sliding_window);
cleanup:
  return st;
}

void mq__gguf_rope_freqs(const mq_llama_config *c, float *out) {
  const double pi = 3.14159265358979323846;
  const double lo_wave = c->rope_original_max_positions / c->rope_low_freq_factor;
  const double hi_wave = c->rope_original_max_positions / c->rope_high_freq_factor;
  for (int i = 0; i < c->head_dim / 2; i++) {
    double freq = pow(c->rope_theta, -2.0 * i / c->head_dim), wave = 2 * pi / freq, f;
    if (wave < hi_wave) {
      f = 1.0;
    } else if (wave > lo_wave) {
      f = c->rope_factor;
    } else {
      double smooth = (c->rope_original_max_positions / wave - c->rope_low_freq_factor) /
                      (c->rope_high_freq_factor - c->rope_low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / c->rope_factor + smooth);
    }
    out[i] = (float)f;
  }
}

/* llama_ftype of the file: what the linears are stored as. */
static uint32_t file_type(mq_ggml_type t) {
  switch (t) {
  case MQ_GGML_F32: return 0;
  case MQ_GGML_F16: return 1;
  case MQ_GGML_Q4_0: return 2;
  case MQ_GGML_Q4_1: return 3;
  case MQ_GGML_Q8_0: return 7;
  case MQ_GGML_Q5_0: return 8;
  case MQ_GGML_Q5_1: return 9;
  case MQ_GGML_BF16: return 32;
  }
  return 0;
}

/* general.name: the config's _name_or_path (last component), else the result file's name
 * without its extension. */
static void model_name(const gg_job *job, char *out, size_t len) {
  const char *n = json_string_value(json_object_get(job->config, "_name_or_path"));
  if (n == NULL || n[0] == '\0') n = job->a->in;
  const char *slash = strrchr(n, '/');
  if (slash != NULL && slash[1] != '\0') n = slash + 1;
  snprintf(out, len, "%s", n);
  char *dot = strrchr(out, '.');
  if (dot != NULL && dot != out && (!strcmp(dot, ".h5") || !strcmp(dot, ".hdf5"))) *dot = '\0';
}

mq_status mq__gguf_add_metadata(const gg_job *job, mq_gguf_writer *w, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_llama_config *c = &job->cfg;
  const mq_quant_options *o = &job->meta->opts;
  const int blocks = !job->a->dequantize;
  char name[256], kind[160];
  model_name(job, name, sizeof name);
  uint32_t ctx = c->max_position_embeddings > 0 ? (uint32_t)c->max_position_embeddings : 2048;
  if (c->max_position_embeddings <= 0)
    MQ_WARN("export: config.json has no max_position_embeddings: context_length 2048 written");
  MQ_CHECK(mq_gguf_kv_str(w, "general.architecture", "llama", err));
  MQ_CHECK(mq_gguf_kv_str(w, "general.type", "model", err));
  MQ_CHECK(mq_gguf_kv_str(w, "general.name", name, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "general.file_type", file_type(job->linear_type), err));
  if (blocks) MQ_CHECK(mq_gguf_kv_u32(w, "general.quantization_version", 2, err));
  MQ_CHECK(mq_gguf_kv_str(w, "general.quantized_by", "mpiquant " MQ_VERSION_STRING, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.context_length", ctx, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim, err));
  MQ_CHECK(mq_gguf_kv_f32(w, "llama.rope.freq_base", (float)c->rope_theta, err));
  if (c->rope_scaling == MQ_ROPE_LINEAR) {
    MQ_CHECK(mq_gguf_kv_str(w, "llama.rope.scaling.type", "linear", err));
    MQ_CHECK(mq_gguf_kv_f32(w, "llama.rope.scaling.factor", (float)c->rope_factor, err));
  }
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads,
                          err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim, err));
  MQ_CHECK(mq_gguf_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps,
                          err));
  MQ_CHECK(mq_gguf_kv_str(w, "mpiquant.method", mq_method_names[o->method], err));
  MQ_CHECK(mq_gguf_kv_u32(w, "mpiquant.bits", (uint32_t)o->bits, err));
  MQ_CHECK(mq_gguf_kv_i32(w, "mpiquant.group_size", o->group_size, err));
  MQ_CHECK(mq_gguf_kv_bool(w, "mpiquant.sym", o->sym, err));
  MQ_CHECK(mq_gguf_kv_bool(w, "mpiquant.act_order", o->act_order, err));
  MQ_CHECK(mq_gguf_kv_bool(w, "mpiquant.static_groups", o->static_groups, err));
  /* written before the data: says requantization was allowed, not that it happened */
  MQ_CHECK(mq_gguf_kv_bool(w, "mpiquant.allow_requantize", job->a->allow_requantize && blocks,
                           err));
  MQ_CHECK(mq_gguf_vocab_add(w, job->a->model, job->config, (size_t)c->vocab_size, kind,
                             sizeof kind, err));
  MQ_INFO("export: tokenizer: %s", kind);
cleanup:
  return st;
}
