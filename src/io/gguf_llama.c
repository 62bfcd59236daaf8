/* `export --format gguf` (io/gguf_llama.h): the tensor plan, the tensor data and the export. */
#include "io/gguf_llama.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/gguf_llama_internal.h"
#include "io/safetensors_write.h"

/* Per block: Hugging Face suffix after "model.layers.N.", GGUF suffix after "blk.N.", and
 * whether a block cannot do without it. */
static const struct {
  const char *hf, *gg;
  int required;
} block_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", 1},
    {"self_attn.q_proj.weight", "attn_q.weight", 1},
    {"self_attn.q_proj.bias", "attn_q.bias", 0},
    {"self_attn.k_proj.weight", "attn_k.weight", 1},
    {"self_attn.k_proj.bias", "attn_k.bias", 0},
    {"self_attn.v_proj.weight", "attn_v.weight", 1},
    {"self_attn.v_proj.bias", "attn_v.bias", 0},
    {"self_attn.o_proj.weight", "attn_output.weight", 1},
    {"self_attn.o_proj.bias", "attn_output.bias", 0},
    {"post_attention_layernorm.weight", "ffn_norm.weight", 1},
    {"mlp.gate_proj.weight", "ffn_gate.weight", 1},
    {"mlp.gate_proj.bias", "ffn_gate.bias", 0},
    {"mlp.up_proj.weight", "ffn_up.weight", 1},
    {"mlp.up_proj.bias", "ffn_up.bias", 0},
    {"mlp.down_proj.weight", "ffn_down.weight", 1},
    {"mlp.down_proj.bias", "ffn_down.bias", 0},
};
enum { NSLOTS = sizeof block_names / sizeof *block_names, SLOT_Q_W = 1, SLOT_Q_B = 2,
       SLOT_K_W = 3, SLOT_K_B = 4 };

/* Fills it->name, layer, slot and heads from a Hugging Face tensor name. Returns 1 when mapped,
 * 0 for a tensor llama.cpp does not use (rotary inv_freq), -1 for an unknown name. */
static int map_name(const mq_llama_config *c, const char *hf, gg_item *it) {
  const char *p = strstr(hf, "rotary_emb.inv_freq");
  if (p != NULL && p[strlen("rotary_emb.inv_freq")] == '\0') return 0;
  it->heads = 0;
  if (!strcmp(hf, "model.embed_tokens.weight")) {
    snprintf(it->name, sizeof it->name, "token_embd.weight");
    it->layer = -1;
    it->slot = 0;
    return 1;
  }
  if (!strcmp(hf, "model.norm.weight") || !strcmp(hf, "lm_head.weight")) {
    int head = hf[0] == 'l';
    snprintf(it->name, sizeof it->name, head ? "output.weight" : "output_norm.weight");
    it->layer = c->num_hidden_layers;
    it->slot = head;
    return 1;
  }
  if (strncmp(hf, "model.layers.", 13) != 0 || hf[13] < '0' || hf[13] > '9') return -1;
  char *end;
  long layer = strtol(hf + 13, &end, 10);
  if (*end != '.' || layer >= c->num_hidden_layers || (end - hf > 14 && hf[13] == '0')) return -1;
  for (int s = 0; s < NSLOTS; s++)
    if (!strcmp(end + 1, block_names[s].hf)) {
      snprintf(it->name, sizeof it->name, "blk.%ld.%s", layer, block_names[s].gg);
      it->layer = (int)layer;
      it->slot = s;
      if (s == SLOT_Q_W || s == SLOT_Q_B) it->heads = (size_t)c->num_attention_heads;
      if (s == SLOT_K_W || s == SLOT_K_B) it->heads = (size_t)c->num_key_value_heads;
      return 1;
    }
  return -1;
}

/* The GGUF row `i` of a tensor with rotary rows of `heads` heads comes from this HF row. */
static size_t src_row(size_t i, size_t rows, size_t heads) {
  if (heads == 0) return i;
  size_t hd = rows / heads, n = i / hd, r = i % hd;
  return n * hd + (r % 2) * (hd / 2) + r / 2;
}

static mq_ggml_type dtype_type(mq_export_dtype d, const char *stored) {
  if (d == MQ_EXPORT_DTYPE_F32) return MQ_GGML_F32;
  if (d == MQ_EXPORT_DTYPE_F16) return MQ_GGML_F16;
  if (d == MQ_EXPORT_DTYPE_BF16) return MQ_GGML_BF16;
  if (stored != NULL && !strcmp(stored, "F16")) return MQ_GGML_F16;
  if (stored != NULL && !strcmp(stored, "BF16")) return MQ_GGML_BF16;
  return MQ_GGML_F32;
}

/* ---- planning ---- */

static mq_status add_item(gg_job *job, const gg_item *it, mq_error *err) {
  mq_status st = MQ_OK;
  if (job->nitems == job->cap) {
    size_t cap = job->cap ? 2 * job->cap : 64;
    gg_item *n = mq_alloc(cap, sizeof *n);
    MQ_CHECK_ALLOC(err, n, cap * sizeof *n);
    if (job->nitems) memcpy(n, job->items, job->nitems * sizeof *n);
    mq_free(job->items);
    job->items = n;
    job->cap = cap;
  }
  job->items[job->nitems++] = *it;
cleanup:
  return st;
}

/* One source tensor (quantized module when `module` is set). */
static mq_status plan_tensor(gg_job *job, const char *name, const char *module, gg_kind kind,
                             int ndim, const size_t *shape, const char *stored, mq_error *err) {
  mq_status st = MQ_OK;
  const char *where = job->ckpt != NULL && kind == GG_CKPT ? job->a->model : job->a->in;
  gg_item it = {.kind = kind, .src = module != NULL ? module : name, .ndim = ndim};
  int m = map_name(&job->cfg, name, &it);
  if (m == 0) return MQ_OK;
  if (m < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: no llama GGUF tensor has this name (Hugging Face Llama "
            "module names expected)", where, name);
  if (ndim != 1 && ndim != 2)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %d dimensions (1 or 2 expected)", where, name, ndim);
  it.rows = ndim == 2 ? shape[0] : 1;
  it.cols = ndim == 2 ? shape[1] : shape[0];
  size_t len = ndim == 2 ? it.rows : it.cols; /* what the rotary reorder permutes */
  if (it.heads && (len % it.heads != 0 || (len / it.heads) % 2 != 0))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %zu rows are not %zu heads of an even size", where, name,
            len, it.heads);
  if (module != NULL) it.type = job->linear_type;
  else if (ndim == 1) it.type = MQ_GGML_F32;
  else it.type = dtype_type(job->a->dtype, stored);
  if (kind == GG_BLOCKS && it.cols % 32 != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: %zu columns: GGUF blocks need a multiple of 32",
            job->a->in, module, it.cols);
  MQ_CHECK(add_item(job, &it, err));
cleanup:
  return st;
}

static int cmp_items(const void *x, const void *y) {
  const gg_item *a = x, *b = y;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return (a->slot > b->slot) - (a->slot < b->slot);
}

/* Every tensor llama.cpp needs, once each. */
static mq_status check_complete(gg_job *job, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_llama_config *c = &job->cfg;
  int have_embd = 0, have_norm = 0, have_head = 0;
  unsigned char *seen = mq_calloc((size_t)c->num_hidden_layers * NSLOTS, 1);
  MQ_CHECK_ALLOC(err, seen, (size_t)c->num_hidden_layers * NSLOTS);
  for (size_t i = 0; i < job->nitems; i++) {
    const gg_item *it = &job->items[i];
    if (i > 0 && cmp_items(it, it - 1) == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: given twice (quantized and not?)", job->a->in, it->name);
    if (it->layer == -1) have_embd = 1;
    else if (it->layer == c->num_hidden_layers) *(it->slot ? &have_head : &have_norm) = 1;
    else if (it->layer >= 0) seen[(size_t)it->layer * NSLOTS + (size_t)it->slot] = 1;
  }
  if (!have_embd || !have_norm)
    MQ_FAIL(err, MQ_EINPUT, "%s: no %s: GGUF needs the whole model%s", job->a->in,
            have_embd ? "model.norm.weight" : "model.embed_tokens.weight",
            job->ckpt == NULL ? " (--model DIR supplies what the result file lacks)" : "");
  if (!have_head && !c->tie_word_embeddings)
    MQ_WARN("export: no lm_head.weight: llama.cpp will use token_embd (tied embeddings)");
  for (int l = 0; l < c->num_hidden_layers; l++)
    for (int s = 0; s < NSLOTS; s++)
      if (block_names[s].required && !seen[(size_t)l * NSLOTS + (size_t)s])
        MQ_FAIL(err, MQ_EINPUT, "%s: model.layers.%d.%s: missing (GGUF needs the whole model%s)",
                job->a->in, l, block_names[s].hf,
                job->ckpt == NULL ? "; --model DIR supplies what the result file lacks" : "");
cleanup:
  mq_free(seen);
  return st;
}

static mq_status plan(gg_job *job, mq_error *err) {
  mq_status st = MQ_OK;
  size_t nt = mq_result_tensors_count(&job->src), nlayers = 0;
  mq_result_tensor_info ti;
  for (size_t i = 0; i < nt; i++) {
    (void)mq_result_tensors_info(&job->src, i, &ti);
    gg_kind kind = ti.module == NULL ? GG_TENSOR : job->a->dequantize ? GG_DEQUANT : GG_BLOCKS;
    nlayers += ti.module != NULL;
    MQ_CHECK(plan_tensor(job, ti.name, ti.module, kind, ti.ndim, ti.shape, ti.dtype, err));
  }
  if (nlayers == 0) MQ_FAIL(err, MQ_EINPUT, "%s: no quantized layers to export", job->a->in);
  for (size_t i = 0; job->ckpt != NULL && i < mq_st_count(job->ckpt); i++) {
    const char *name = mq_st_name(job->ckpt, i);
    mq_st_tensor_info ci;
    if (job->src.find(job->src.ctx, name, NULL, NULL)) continue; /* quantized */
    (void)mq_st_find(job->ckpt, name, &ci);
    MQ_CHECK(plan_tensor(job, name, NULL, GG_CKPT, ci.ndim, ci.shape,
                         mq_st_dtype_name(ci.dtype), err));
  }
  if (job->cfg.rope_scaling == MQ_ROPE_LLAMA3) {
    size_t half = (size_t)job->cfg.head_dim / 2;
    gg_item it = {.kind = GG_ROPE_FREQS, .name = "rope_freqs.weight", .type = MQ_GGML_F32,
                  .ndim = 1, .rows = 1, .cols = half, .layer = -2};
    MQ_CHECK(add_item(job, &it, err));
  }
  qsort(job->items, job->nitems, sizeof *job->items, cmp_items);
  MQ_CHECK(check_complete(job, err));
  MQ_INFO("export: %zu quantized layer(s) as %s, %zu tensor(s) in all", nlayers,
          mq_ggml_type_name(job->linear_type), job->nitems);
cleanup:
  return st;
}

/* ---- tensor data (the writer's fill callback) ---- */

static mq_status fill_blocks(gg_job *job, const gg_item *it, uint8_t *out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_layer_result l = {0};
  char what[600];
  snprintf(what, sizeof what, "%s: /layers/%s", job->a->in, it->src);
  MQ_CHECK(mq_result_tensors_read_layer(&job->src, it->src, &l, err));
  if (l.rows != it->rows || l.cols != it->cols)
    MQ_FAIL(err, MQ_EINPUT, "%s: %zux%zu, listed as %zux%zu", what, l.rows, l.cols, it->rows,
            it->cols);
  MQ_CHECK(mq_gguf_check_layout(&l, what, err));
  size_t row_bytes = it->cols / 32 * mq_ggml_block_bytes(it->type);
  for (size_t r = 0; r < it->rows; r++)
    MQ_CHECK(mq_gguf_encode_row(&l, it->type, src_row(r, it->rows, it->heads),
                                job->a->allow_requantize, what, out + r * row_bytes, &job->stats,
                                err));
cleanup:
  mq_layer_result_free(&l);
  return st;
}

/* Float data: read whole, rows reordered for q/k, converted to the item's type. */
static mq_status fill_floats(gg_job *job, const gg_item *it, void *out, mq_error *err) {
  mq_status st = MQ_OK;
  const size_t n = it->rows * it->cols;
  float *x = mq_alloc(n, sizeof *x);
  MQ_CHECK_ALLOC(err, x, n * sizeof *x);
  if (it->kind == GG_ROPE_FREQS) {
    mq__gguf_rope_freqs(&job->cfg, x);
  } else {
    const char *name = it->src;
    char wname[600];
    if (it->kind == GG_DEQUANT) { /* "<module>.weight" of the result source: Ŵ */
      snprintf(wname, sizeof wname, "%s.weight", it->src);
      name = wname;
    }
    if (it->kind == GG_CKPT) MQ_CHECK(mq_st_read_f32(job->ckpt, name, x, n, err));
    else MQ_CHECK(job->src.read(job->src.ctx, name, x, n, err));
  }
  /* 1-D q/k biases: the rotary reorder runs along their only dimension */
  const size_t rows = it->ndim == 1 ? it->cols : it->rows, cols = it->ndim == 1 ? 1 : it->cols;
  for (size_t r = 0; r < rows; r++) {
    const float *s = x + src_row(r, rows, it->heads) * cols;
    for (size_t c = 0; c < cols; c++) {
      size_t k = r * cols + c;
      if (it->type == MQ_GGML_F32) {
        ((float *)out)[k] = s[c];
      } else if (it->type == MQ_GGML_BF16) {
        ((uint16_t *)out)[k] = mq_stw_f32_to_bf16(s[c]);
      } else {
        uint16_t h = mq_stw_f32_to_f16(s[c]);
        if ((h & 0x7c00u) == 0x7c00u && s[c] == s[c])
          MQ_FAIL(err, MQ_EINPUT, "%s: %s: value %g overflows float16 (try --dtype float32 or "
                  "bfloat16)", job->a->in, it->name, (double)s[c]);
        ((uint16_t *)out)[k] = h;
      }
    }
  }
cleanup:
  mq_free(x);
  return st;
}

static mq_status fill_tensor(void *ctx, size_t tag, void *buf, size_t nbytes, mq_error *err) {
  gg_job *job = ctx;
  const gg_item *it = &job->items[tag];
  (void)nbytes;
  if (it->kind == GG_BLOCKS) return fill_blocks(job, it, buf, err);
  return fill_floats(job, it, buf, err);
}

/* ---- output paths ---- */

/* *final: args->out when it ends in ".gguf", else <out>/model.gguf (directory created, *made
 * set); *tmp: a hidden name beside it. */
static mq_status out_paths(const char *out, char **final, char **tmp, int *made, mq_error *err) {
  mq_status st = MQ_OK;
  size_t n = strlen(out);
  int is_file = n > 5 && !strcmp(out + n - 5, ".gguf");
  *final = mq_alloc(n + 16, 1);
  *tmp = mq_alloc(n + 64, 1);
  MQ_CHECK_ALLOC(err, *final && *tmp, n + 64);
  if (is_file) {
    snprintf(*final, n + 16, "%s", out);
  } else {
    struct stat sb;
    if (mkdir(out, 0777) == 0) *made = 1;
    else if (errno != EEXIST)
      MQ_FAIL(err, MQ_EFAIL, "%s: cannot create directory: %s", out, strerror(errno));
    if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
      MQ_FAIL(err, MQ_EUSAGE, "--out: %s is neither a .gguf file name nor a directory", out);
    snprintf(*final, n + 16, "%s/model.gguf", out);
  }
  const char *slash = strrchr(*final, '/');
  int dlen = slash ? (int)(slash - *final + 1) : 0;
  snprintf(*tmp, n + 64, "%.*s.%s.tmp.%ld", dlen, *final, slash ? slash + 1 : *final,
           (long)getpid());
cleanup:
  return st;
}

/* ---- the export ---- */

static mq_status choose_types(gg_job *job, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_quant_options *o = &job->meta->opts;
  job->qtype = MQ_GGML_F32;
  if (job->a->dequantize) {
    job->linear_type = dtype_type(job->a->dtype, "F32"); /* auto: F32 */
    return MQ_OK;
  }
  MQ_CHECK(mq_gguf_block_type(o->bits, o->sym, job->a->in, &job->qtype, err));
  job->linear_type = job->qtype;
cleanup:
  return st;
}

static void fill_report(const gg_job *job, double t0) {
  mq_export_report *r = job->a->report;
  const mq_gguf_requant_stats *s = &job->stats;
  if (s->blocks > 0)
    MQ_WARN("export: re-quantized %zu block(s) to float16 scales: %zu code(s) changed, added "
            "squared error %.6g (relative %.3g), largest scale change %.3g", s->blocks,
            s->codes_changed, s->sq_err, s->sq_ref > 0 ? sqrt(s->sq_err / s->sq_ref) : 0.0,
            s->max_rel_scale);
  if (r == NULL) return;
  r->requantized_blocks = s->blocks;
  r->codes_changed = s->codes_changed;
  r->added_sq_err = s->sq_err;
  r->rel_err = s->sq_ref > 0 ? sqrt(s->sq_err / s->sq_ref) : 0.0;
  r->max_rel_scale = s->max_rel_scale;
  r->seconds = mq_wtime() - t0;
}

mq_status mq_gguf_export_llama(const mq_export_args *a, mq_error *err) {
  mq_status st = MQ_OK;
  gg_job job = {.a = a};
  mq_gguf_writer *w = NULL;
  char *final = NULL, *tmp = NULL;
  int written = 0, made_dir = 0;
  const double t0 = mq_wtime();
  MQ_CHECK(mq_result_tensors_open(a->in, &job.src, err));
  job.meta = mq_result_tensors_meta(&job.src);
  MQ_CHECK(mq__gguf_load_config(&job, err));
  MQ_CHECK(choose_types(&job, err));
  if (!mq_result_tensors_has_model_tensors(&job.src)) {
    if (a->model == NULL)
      MQ_FAIL(err, MQ_EINPUT, "%s: no /model/tensors (a file of `layer`?): give --model DIR for "
              "the embeddings, norms and head", a->in);
    MQ_CHECK(mq_st_open_dir(a->model, &job.ckpt, err));
  }
  MQ_CHECK(plan(&job, err));
  MQ_CHECK(mq_gguf_create(&w, err));
  MQ_CHECK(mq__gguf_add_metadata(&job, w, err));
  for (size_t i = 0; i < job.nitems; i++) {
    const gg_item *it = &job.items[i];
    uint64_t ne[2] = {it->cols, it->rows};
    MQ_CHECK(mq_gguf_add_tensor(w, it->name, it->type, it->ndim, ne, fill_tensor, &job, i, err));
  }
  MQ_CHECK(out_paths(a->out, &final, &tmp, &made_dir, err));
  MQ_INFO("export: writing %s (%.1f MiB)", final, (double)mq_gguf_file_size(w) / 1048576.0);
  written = 1; /* mq_gguf_write removes its file itself on failure */
  MQ_CHECK(mq_gguf_write(w, tmp, err));
  if (rename(tmp, final) != 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
  written = 0;
  fill_report(&job, t0);
  MQ_INFO("export: wrote %s in %.2f s", final, mq_wtime() - t0);
cleanup:
  if (written) (void)remove(tmp);
  if (st != MQ_OK && made_dir) (void)rmdir(a->out); /* the directory this export created */
  mq_free(final);
  mq_free(tmp);
  mq_gguf_free(&w);
  mq_free(job.items);
  json_decref(job.config);
  mq_llama_config_free(&job.cfg);
  mq_st_close(&job.ckpt);
  mq_result_tensors_close(&job.src);
  return st;
}
