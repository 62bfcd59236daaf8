/* `mpiquant export` (io/export.h): a deployable Hugging Face checkpoint (DIR/model.safetensors
 * or shards, DIR/config.json, the checkpoint's tokenizer and generation files) from a complete
 * result file. Rank 0 does all the work; the other ranks wait and return the agreed status.
 *
 * Formats
 *   dequant   every "<module>.weight" dequantized (io/result_tensors.h) and written in the
 *             checkpoint's dtype: --dtype, else config.json's torch_dtype (bfloat16 -> BF16,
 *             float16 -> F16, anything else or no config -> F32); float32 -> F16/BF16 rounds to
 *             nearest even. Every other tensor keeps its original dtype.
 *   gptq      the AutoGPTQ / transformers GPTQ layout, per quantized module (followed:
 *             AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py, QuantLinear.__init__ and
 *             pack()):
 *               <module>.qweight int32 [cols·bits/32, rows]: the codes of output row r packed
 *                 along the input dimension, 32/bits per int32, lowest bits first; for 3 bits
 *                 AutoGPTQ packs 32 codes into 3 int32s with codes 10 and 21 split across words,
 *                 which is the same dense little-endian bit stream as for 2, 4 and 8 bits. That
 *                 is exactly the result file's row stream, so qweight is its transpose.
 *               <module>.qzeros int32 [ngroups, rows·bits/32]: the zero points of each group
 *                 packed the same way along the output dimension; v1 stores zero − 1 (pack():
 *                 `zeros -= 1`, the forward adds 1 back).
 *               <module>.scales float16 [ngroups, rows]; <module>.g_idx int32 [cols].
 *             Loaders size these buffers as infeatures // 32 * bits and outfeatures // 32 * bits,
 *             so rows and cols must be multiples of 32; ngroups must be ceil(cols / group_size).
 *             A zero point of 0 has no v1 encoding (zero − 1 = −1 spills into the neighbours,
 *             and GPTQModel's convert_gptq_v1_to_v2_format_module, gptqmodel/utils/model.py,
 *             adds 1 to every packed field at once, so a stored field must stay below maxq's
 *             carry): v1 takes zero points 1..maxq, v2 0..maxq; others are rejected (a zero
 *             point 0 with a hint to use gptq_v2).
 *             config.json gains "quantization_config" (transformers GPTQConfig keys: quant_method,
 *             bits, group_size, desc_act, sym, static_groups, damp_percent, true_sequential,
 *             checkpoint_format), and torch_dtype becomes float16 (the dtype of the scales, the
             activation dtype vLLM's GPTQ kernels take; the other tensors keep their stored
             dtype and are cast by the loader); quantize_config.json (AutoGPTQ's file) is written
             too. Scales must be float16 values (--scale-dtype float16) unless
             --allow-requantize rounds them; export_gptq.c has the checks and which consumer
             refuses what.
 *   gptq_v2   the same with the zero points stored as they are (GPTQModel's v2 checkpoint
 *             format) and checkpoint_format "gptq_v2".
 *
 * Where the rest comes from: the result file's /model (config and non-quantized tensors, as
 * `quantize` writes them); --model DIR supplies config.json and/or the checkpoint's
 * non-quantized tensors only when the result file lacks them.
 *
 * Output files are written into a staging folder beside DIR, which replaces DIR only when
 * everything is written (io/outdir.h; an existing non-empty DIR needs force), so a failed
 * export leaves DIR as it was. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/export.h"
#include "io/export_internal.h"
#include "io/gguf_llama.h"
#include "io/outdir.h"

const char *const mq_export_format_names[4] = {"gptq", "gptq_v2", "dequant", "gguf"};
const char *const mq_export_dtype_names[4] = {"auto", "float32", "float16", "bfloat16"};

/* Files of --model DIR copied as they are when present: what transformers, vLLM and GPTQModel
 * read besides the weights and config.json to load a folder as a model. */
static const char *const model_files[] = {
    "tokenizer.json",     "tokenizer_config.json", "tokenizer.model",  "special_tokens_map.json",
    "added_tokens.json",  "vocab.json",            "merges.txt",       "generation_config.json",
    "chat_template.json", "chat_template.jinja"};

/* ---- small file helpers ---- */

/* "<dir>/<name>" into a fresh mq_alloc'd string. */
static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = mq_alloc(n, 1);
  if (s != NULL) snprintf(s, n, "%s/%s", dir, name);
  return s;
}

static mq_status write_json(const json_t *j, const char *dir, const char *name, mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = NULL;
  char *path = join(dir, name);
  MQ_CHECK_ALLOC(err, path, strlen(dir) + strlen(name) + 2);
  f = fopen(path, "w");
  if (f == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create: %s", path, strerror(errno));
  if (json_dumpf(j, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF)
    MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  MQ_CHECK(mq_stw_finish_file(&f, path, err));
cleanup:
  if (f != NULL) fclose(f);
  mq_free(path);
  return st;
}

/* Copies src to dst byte for byte (src must be a regular file). */
static mq_status copy_file(const char *src, const char *dst, mq_error *err) {
  mq_status st = MQ_OK;
  FILE *in = NULL, *out = NULL;
  struct stat sb;
  enum { CHUNK = 1 << 16 };
  char *buf = mq_alloc(CHUNK, 1);
  MQ_CHECK_ALLOC(err, buf, CHUNK);
  in = fopen(src, "rb");
  if (in == NULL || fstat(fileno(in), &sb) != 0 || !S_ISREG(sb.st_mode))
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot read%s%s", src, in == NULL ? ": " : " (not a file)",
            in == NULL ? strerror(errno) : "");
  out = fopen(dst, "wb");
  if (out == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create: %s", dst, strerror(errno));
  for (size_t n; (n = fread(buf, 1, CHUNK, in)) > 0;)
    if (fwrite(buf, 1, n, out) != n)
      MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", dst, strerror(errno));
  if (ferror(in)) MQ_FAIL(err, MQ_EINPUT, "%s: read failed: %s", src, strerror(errno));
  MQ_CHECK(mq_stw_finish_file(&out, dst, err));
cleanup:
  if (in != NULL) fclose(in);
  if (out != NULL) fclose(out);
  mq_free(buf);
  return st;
}

/* The tokenizer and generation files of --model DIR that exist, copied into dir. */
static mq_status copy_model_files(const mq_export_args *a, const char *dir, mq_error *err) {
  mq_status st = MQ_OK;
  char *src = NULL, *dst = NULL;
  size_t ncopied = 0;
  if (a->model == NULL) {
    MQ_WARN("export: no --model DIR: no tokenizer or generation files copied (tokenizer.json, "
            "tokenizer_config.json, generation_config.json, ...); give the checkpoint folder");
    return MQ_OK;
  }
  for (size_t i = 0; i < sizeof model_files / sizeof model_files[0]; i++) {
    src = join(a->model, model_files[i]);
    dst = join(dir, model_files[i]);
    MQ_CHECK_ALLOC(err, src && dst, strlen(a->model) + strlen(dir) + 64);
    if (access(src, F_OK) == 0) {
      MQ_CHECK(copy_file(src, dst, err));
      ncopied++;
    }
    mq_free(src);
    mq_free(dst);
    src = dst = NULL;
  }
  MQ_INFO("export: copied %zu tokenizer/generation file(s) from %s", ncopied, a->model);
  if (ncopied == 0) MQ_WARN("export: %s has no tokenizer or generation files to copy", a->model);
cleanup:
  mq_free(src);
  mq_free(dst);
  return st;
}

/* ---- config.json ---- */

/* The config: /model/config of the result file, else --model DIR/config.json, else NULL. */
static mq_status load_config(mq__export_job *job, mq_error *err) {
  mq_status st = MQ_OK;
  json_error_t je;
  char *path = NULL;
  const char *text = mq_result_tensors_config_json(&job->src);
  if (text != NULL) {
    job->config = json_loads(text, 0, &je);
    if (job->config == NULL || !json_is_object(job->config))
      MQ_FAIL(err, MQ_EINPUT, "%s: /model/config is not a JSON object%s%s", job->a->in,
              job->config == NULL ? ": " : "", job->config == NULL ? je.text : "");
  } else if (job->a->model != NULL) {
    path = join(job->a->model, "config.json");
    MQ_CHECK_ALLOC(err, path, strlen(job->a->model) + 16);
    if (access(path, R_OK) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    job->config = json_load_file(path, 0, &je);
    if (job->config == NULL || !json_is_object(job->config))
      MQ_FAIL(err, MQ_EINPUT, "%s: not a JSON object%s%s", path, job->config == NULL ? ": " : "",
              job->config == NULL ? je.text : "");
  }
cleanup:
  mq_free(path);
  return st;
}

/* Dequantized weights' dtype: --dtype, else the config's torch_dtype (or newer "dtype"). */
static mq_stw_dtype dequant_dtype(const mq__export_job *job) {
  if (job->a->dtype == MQ_EXPORT_DTYPE_F32) return MQ_STW_F32;
  if (job->a->dtype == MQ_EXPORT_DTYPE_F16) return MQ_STW_F16;
  if (job->a->dtype == MQ_EXPORT_DTYPE_BF16) return MQ_STW_BF16;
  const char *td = NULL;
  if (job->config != NULL) {
    td = json_string_value(json_object_get(job->config, "torch_dtype"));
    if (td == NULL) td = json_string_value(json_object_get(job->config, "dtype"));
  }
  if (td != NULL && !strcmp(td, "bfloat16")) return MQ_STW_BF16;
  if (td != NULL && (!strcmp(td, "float16") || !strcmp(td, "half"))) return MQ_STW_F16;
  return MQ_STW_F32;
}

/* config.json as exported: gptq gains quantization_config and torch_dtype float16 (and "dtype",
 * the newer key, when the config has it); dequant loses any quantization_config. */
static mq_status final_config(mq__export_job *job, const json_t *qc, mq_error *err) {
  mq_status st = MQ_OK;
  json_t *c = job->config;
  if (qc == NULL) {
    (void)json_object_del(c, "quantization_config"); /* plain weights now */
    return MQ_OK;
  }
  if (json_object_set(c, "quantization_config", (json_t *)qc) != 0 ||
      json_object_set_new(c, "torch_dtype", json_string("float16")) != 0 ||
      (json_object_get(c, "dtype") != NULL &&
       json_object_set_new(c, "dtype", json_string("float16")) != 0))
    MQ_FAIL(err, MQ_EFAIL, "config.json: out of memory");
cleanup:
  return st;
}

/* ---- tensor data (the writer's fill callback) ---- */

static mq_status convert_out(const char *name, const float *x, size_t n, mq_stw_dtype dt,
                             void *buf, mq_error *err) {
  mq_status st = MQ_OK;
  uint16_t *h = buf;
  for (size_t i = 0; i < n; i++) /* nothing that is not a number leaves in an export */
    if (!isfinite(x[i])) MQ_FAIL(err, MQ_EINPUT, "%s: element %zu is not finite", name, i);
  if (dt == MQ_STW_F32) {
    if ((const void *)x != buf) memcpy(buf, x, n * sizeof *x);
  } else if (dt == MQ_STW_BF16) {
    for (size_t i = 0; i < n; i++)
      if (((h[i] = mq_stw_f32_to_bf16(x[i])) & 0x7f80u) == 0x7f80u) /* rounded up to Inf */
        MQ_FAIL(err, MQ_ENUMERIC, "%s: value %g overflows bfloat16", name, (double)x[i]);
  } else {
    for (size_t i = 0; i < n; i++) {
      h[i] = mq_stw_f32_to_f16(x[i]);
      if ((h[i] & 0x7c00u) == 0x7c00u && isfinite(x[i]))
        MQ_FAIL(err, MQ_EINPUT, "%s: value %g overflows float16 (try --dtype float32 or "
                "bfloat16)", name, (double)x[i]);
    }
  }
cleanup:
  return st;
}

static mq_status fill_tensor(void *ctx, size_t tag, void *buf, size_t nbytes, mq_error *err) {
  mq_status st = MQ_OK;
  mq__export_job *job = ctx;
  const mq__export_item *it = &job->items[tag];
  float *x = NULL;
  if (it->kind != MQ__EX_DEQUANT && it->kind != MQ__EX_RESULT_TENSOR &&
      it->kind != MQ__EX_CKPT_TENSOR) {
    MQ_CHECK(mq__export_fill_gptq(job, it, buf, err));
    goto cleanup;
  }
  size_t n = nbytes / mq_stw_dtype_size(it->dtype);
  /* float32 output is read in place; 16-bit output needs a float32 scratch copy */
  x = it->dtype == MQ_STW_F32 ? buf : mq_alloc(n, sizeof *x);
  MQ_CHECK_ALLOC(err, x, n * sizeof *x);
  if (it->kind == MQ__EX_CKPT_TENSOR) MQ_CHECK(mq_st_read_f32(job->ckpt, it->name, x, n, err));
  else MQ_CHECK(job->src.read(job->src.ctx, it->name, x, n, err));
  MQ_CHECK(convert_out(it->name, x, n, it->dtype, buf, err));
cleanup:
  if (x != buf) mq_free(x);
  return st;
}

/* ---- planning: which tensors go into the safetensors file(s) ---- */

static mq_stw_dtype dtype_from_name(const char *s) {
  if (s != NULL && !strcmp(s, "F16")) return MQ_STW_F16;
  if (s != NULL && !strcmp(s, "BF16")) return MQ_STW_BF16;
  return MQ_STW_F32;
}

mq_status mq__export_add_item(mq__export_job *job, mq_st_writer *w, const char *tensor,
                              mq__export_kind kind, const char *name, mq_stw_dtype dt, int ndim,
                              const size_t *shape, mq_error *err) {
  job->items[job->nitems] = (mq__export_item){.kind = kind, .name = name, .dtype = dt};
  mq_status st = mq_stw_add(w, tensor, dt, ndim, shape, fill_tensor, job, job->nitems, err);
  if (st == MQ_OK) job->nitems++;
  return st;
}

/* --model checkpoint: every quantized module must be there with the layer's shape; every other
 * tensor is copied in its own dtype. */
static mq_status plan_checkpoint(mq__export_job *job, mq_st_writer *w, mq_error *err) {
  mq_status st = MQ_OK;
  size_t nt = mq_result_tensors_count(&job->src);
  mq_result_tensor_info ti;
  mq_st_tensor_info ci;
  for (size_t i = 0; i < nt; i++) {
    if (!mq_result_tensors_info(&job->src, i, &ti) || ti.module == NULL) continue;
    if (!mq_st_find(job->ckpt, ti.name, &ci))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: not in the checkpoint (layer names of %s must be its "
              "module names)", job->a->model, ti.name, job->a->in);
    if (ci.ndim != 2 || ci.shape[0] != ti.shape[0] || ci.shape[1] != ti.shape[1])
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: checkpoint shape differs from /layers/%s [%zu, %zu]",
              job->a->model, ti.name, ti.module, ti.shape[0], ti.shape[1]);
  }
  size_t nc = mq_st_count(job->ckpt);
  for (size_t i = 0; i < nc; i++) {
    const char *name = mq_st_name(job->ckpt, i);
    if (job->src.find(job->src.ctx, name, NULL, NULL)) continue; /* a quantized weight */
    (void)mq_st_find(job->ckpt, name, &ci);
    mq_stw_dtype dt = dtype_from_name(mq_st_dtype_name(ci.dtype));
    MQ_CHECK(mq__export_add_item(job, w, name, MQ__EX_CKPT_TENSOR, name, dt, ci.ndim, ci.shape,
                                 err));
  }
cleanup:
  return st;
}

static mq_status plan(mq__export_job *job, mq_st_writer *w, mq_error *err) {
  mq_status st = MQ_OK;
  size_t nt = mq_result_tensors_count(&job->src), cap = 4 * nt + 1;
  const int gptq = job->a->format != MQ_EXPORT_DEQUANT;
  const char *first = NULL; /* the first quantized module */
  if (job->ckpt != NULL) cap += mq_st_count(job->ckpt);
  job->items = mq_alloc(cap, sizeof *job->items);
  MQ_CHECK_ALLOC(err, job->items, cap * sizeof *job->items);
  mq_stw_dtype wdt = dequant_dtype(job);
  mq_result_tensor_info ti;
  size_t nlayers = 0;
  if (gptq) mq__export_gptq_format_warnings(job);
  for (size_t i = 0; i < nt; i++) {
    (void)mq_result_tensors_info(&job->src, i, &ti);
    if (ti.module == NULL)
      MQ_CHECK(mq__export_add_item(job, w, ti.name, MQ__EX_RESULT_TENSOR, ti.name,
                                   dtype_from_name(ti.dtype), ti.ndim, ti.shape, err));
    else if (!gptq)
      MQ_CHECK(mq__export_add_item(job, w, ti.name, MQ__EX_DEQUANT, ti.name, wdt, 2, ti.shape,
                                   err));
    else
      MQ_CHECK(mq__export_plan_gptq(job, w, &ti, err));
    if (ti.module != NULL && first == NULL) first = ti.module;
    nlayers += ti.module != NULL;
  }
  if (nlayers == 0) MQ_FAIL(err, MQ_EINPUT, "%s: no quantized layers to export", job->a->in);
  if (job->ckpt != NULL) MQ_CHECK(plan_checkpoint(job, w, err));
  if (gptq && !job->a->allow_requantize) /* float32 scales: refused before anything is written */
    MQ_CHECK(mq__export_gptq_precheck(job, first, err));
  MQ_INFO("export: %zu quantized layer(s), %zu tensor(s) in all, format %s%s%s", nlayers,
          mq_stw_count(w), mq_export_format_names[job->a->format],
          !gptq ? ", weights as " : "", !gptq ? mq_stw_dtype_name(wdt) : "");
cleanup:
  return st;
}

/* ---- writing ---- */

/* model.safetensors, or the shards and their index when the data exceeds the limit. */
static mq_status write_weights(const mq_export_args *a, mq_st_writer *w, const char *dir,
                               mq_error *err) {
  mq_status st = MQ_OK;
  char *path = NULL, name[64];
  json_t *index = NULL, *map = NULL;
  uint64_t limit = a->max_shard_size ? a->max_shard_size : MQ_EXPORT_DEFAULT_SHARD_SIZE;
  size_t nshards = mq_stw_shard(w, limit);
  if (nshards == 1) {
    path = join(dir, "model.safetensors");
    MQ_CHECK_ALLOC(err, path, strlen(dir) + 20);
    MQ_CHECK(mq_stw_write(w, path, err));
    goto cleanup;
  }
  if (nshards > 99999) MQ_FAIL(err, MQ_EUSAGE, "--max-shard-size: %llu bytes makes %zu shards "
                               "(at most 99999)", (unsigned long long)limit, nshards);
  map = json_object();
  index = json_pack("{s:{s:I}}", "metadata", "total_size", (json_int_t)mq_stw_total_bytes(w));
  MQ_CHECK_ALLOC(err, map && index, 256);
  if (json_object_set(index, "weight_map", map) != 0)
    MQ_FAIL(err, MQ_EFAIL, "model.safetensors.index.json: out of memory");
  for (size_t i = 0, k; mq_stw_tensor(w, i, &k) != NULL; i++) {
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, nshards);
    if (json_object_set_new(map, mq_stw_tensor(w, i, NULL), json_string(name)) != 0)
      MQ_FAIL(err, MQ_EFAIL, "model.safetensors.index.json: out of memory");
  }
  for (size_t k = 0; k < nshards; k++) {
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, nshards);
    path = join(dir, name);
    MQ_CHECK_ALLOC(err, path, strlen(dir) + sizeof name);
    MQ_CHECK(mq_stw_write_shard(w, k, path, err));
    mq_free(path);
    path = NULL;
  }
  MQ_CHECK(write_json(index, dir, "model.safetensors.index.json", err));
  MQ_INFO("export: %zu shards of at most %.4g bytes of data each", nshards, (double)limit);
cleanup:
  json_decref(map);
  json_decref(index);
  mq_free(path);
  return st;
}

mq_status mq_export_checkpoint(const mq_export_args *a, mq_error *err) {
  mq_status st = MQ_OK;
  mq__export_job job = {.a = a};
  mq_outdir od = {0};
  mq_st_writer *w = NULL;
  json_t *qc = NULL;
  const int gptq = a->format != MQ_EXPORT_DEQUANT;
  if (a->format == MQ_EXPORT_GGUF) return mq_gguf_export_llama(a, err); /* one file, own plan */
  if (a->report != NULL) memset(a->report, 0, sizeof *a->report);
  const double t0 = mq_wtime();
  MQ_CHECK(mq_result_tensors_open(a->in, &job.src, err));
  job.meta = mq_result_tensors_meta(&job.src);
  MQ_CHECK(load_config(&job, err));
  if (!mq_result_tensors_has_model_tensors(&job.src) && a->model != NULL)
    MQ_CHECK(mq_st_open_dir(a->model, &job.ckpt, err));
  if (job.config == NULL)
    MQ_WARN("export: no config.json (%s has no /model/config and no --model was given)", a->in);
  MQ_CHECK(mq_stw_create(&w, err));
  MQ_CHECK(mq_stw_set_metadata(w, "format", "pt", err));
  MQ_CHECK(mq_stw_set_metadata(w, "quantized_by", "mpiquant " MQ_VERSION_STRING, err));
  MQ_CHECK(plan(&job, w, err));

  MQ_CHECK(mq_outdir_begin(a->out, a->force, &od, err)); /* staged, renamed into place last */
  MQ_CHECK(write_weights(a, w, od.tmp, err));
  if (gptq) { /* after the data: desc_act depends on the g_idx seen */
    qc = mq__export_quantization_config(&job);
    MQ_CHECK_ALLOC(err, qc, 256);
    MQ_CHECK(write_json(qc, od.tmp, "quantize_config.json", err));
  }
  if (job.config != NULL) {
    MQ_CHECK(final_config(&job, qc, err));
    MQ_CHECK(write_json(job.config, od.tmp, "config.json", err));
  }
  MQ_CHECK(copy_model_files(a, od.tmp, err));
  MQ_CHECK(mq_outdir_commit(&od, err));
  if (gptq) mq__export_gptq_report(&job);
  if (a->report != NULL) a->report->seconds = mq_wtime() - t0;
  MQ_INFO("export: wrote %s in %.2f s", a->out, mq_wtime() - t0);
cleanup:
  mq_outdir_abort(&od, err); /* a failure inside it is blamed on a->out */
  json_decref(qc);
  json_decref(job.config);
  mq_stw_free(&w);
  mq_free(job.items);
  mq_layer_result_free(&job.layer);
  mq_st_close(&job.ckpt);
  mq_result_tensors_close(&job.src);
  return st;
}
