/* `mpiquant export` (io/export.h): a deployable Hugging Face checkpoint (DIR/model.safetensors, DIR/config.json) from a complete
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
 *             checkpoint_format); quantize_config.json (AutoGPTQ's file) is written too.
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
#include "core/pack.h"
#include "core/status.h"
#include "io/export.h"
#include "io/gguf_llama.h"
#include "io/outdir.h"
#include "io/result_tensors.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

const char *const mq_export_format_names[4] = {"gptq", "gptq_v2", "dequant", "gguf"};
const char *const mq_export_dtype_names[4] = {"auto", "float32", "float16", "bfloat16"};


typedef enum item_kind {
  IT_DEQUANT,       /* "<module>.weight" dequantized */
  IT_QWEIGHT,       /* gptq tensors of a module */
  IT_QZEROS,
  IT_SCALES,
  IT_GIDX,
  IT_RESULT_TENSOR, /* /model/tensors/<name> */
  IT_CKPT_TENSOR    /* --model checkpoint tensor */
} item_kind;

typedef struct export_item {
  item_kind kind;
  const char *name; /* source tensor name (owned by the source or checkpoint) or module */
  mq_stw_dtype dtype;
} export_item;

typedef struct export_job {
  const mq_export_args *a;
  mq_tensor_source src;
  mq_st_model *ckpt;          /* --model checkpoint when its tensors are used, else NULL */
  json_t *config;             /* config.json to write (NULL: none known) */
  const mq_result_meta *meta;
  export_item *items;         /* [nitems] the writer's tags index this */
  size_t nitems;
  mq_layer_result layer;      /* gptq: the packed layer last read */
  const char *layer_module;   /* its module name (NULL: none) */
  int desc_act;               /* some g_idx is not c / group_size */
} export_job;

/* ---- small file helpers ---- */

/* "<dir>/<name>" into a fresh mq_alloc'd string. */
static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = mq_alloc(n, 1);
  if (s != NULL) snprintf(s, n, "%s/%s", dir, name);
  return s;
}

static mq_status write_json(const json_t *j, const char *path, mq_error *err) {
  mq_status st = MQ_OK;
  int created = 0;
  FILE *f = fopen(path, "w");
  if (f == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create: %s", path, strerror(errno));
  created = 1;
  if (json_dumpf(j, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF)
    MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  MQ_CHECK(mq_stw_finish_file(&f, path, err));
cleanup:
  if (f != NULL) fclose(f);
  if (st != MQ_OK && created) (void)remove(path);
  return st;
}

/* ---- config.json ---- */

/* The config: /model/config of the result file, else --model DIR/config.json, else NULL. */
static mq_status load_config(export_job *job, mq_error *err) {
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
static mq_stw_dtype dequant_dtype(const export_job *job) {
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

static json_t *quantization_config(const export_job *job) {
  const mq_quant_options *o = &job->meta->opts;
  return json_pack("{s:s, s:i, s:i, s:b, s:b, s:b, s:f, s:b, s:s}", "quant_method", "gptq",
                   "bits", o->bits, "group_size", o->group_size, "desc_act",
                   o->act_order || job->desc_act, "sym", o->sym, "static_groups",
                   o->static_groups, "damp_percent", isfinite(o->damp) ? o->damp : 0.01,
                   "true_sequential", 1, "checkpoint_format",
                   job->a->format == MQ_EXPORT_GPTQ_V2 ? "gptq_v2" : "gptq");
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

/* The packed layer `module`, read once for its four gptq tensors (usually adjacent). */
static mq_status cached_layer(export_job *job, const char *module, mq_error *err) {
  if (job->layer_module != NULL && strcmp(job->layer_module, module) == 0) return MQ_OK;
  mq_layer_result_free(&job->layer);
  job->layer_module = NULL;
  mq_status st = mq_result_tensors_read_layer(&job->src, module, &job->layer, err);
  if (st == MQ_OK) job->layer_module = module;
  return st;
}

/* int32 [ngroups, rows·bits/32]: group g's zero points (v1: minus 1) packed along the rows. */
static mq_status fill_qzeros(export_job *job, const char *module, int32_t *out, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_layer_result *l = &job->layer;
  const int v1 = job->a->format == MQ_EXPORT_GPTQ, sym = job->meta->opts.sym;
  /* v1: stored zero − 1 must be a field value that GPTQModel's v1 -> v2 conversion can add 1
   * to without a carry into the neighbour, so 1..maxq; v2: 0..maxq. */
  const int32_t lo = v1 ? 1 : 0, hi = (1 << l->bits) - 1;
  size_t zw = l->rows * (size_t)l->bits / 32;
  uint8_t *codes = mq_alloc(l->rows, 1);
  MQ_CHECK_ALLOC(err, codes, l->rows);
  for (size_t g = 0; g < l->ngroups; g++) {
    for (size_t r = 0; r < l->rows; r++) {
      int32_t z = l->zeros[r * l->ngroups + g];
      if (sym && z != (1 << (l->bits - 1)))
        MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: file says sym but zero point %d (row %zu, "
                "group %zu) is not 2^(bits-1)", job->a->in, module, (int)z, r, g);
      if (z < lo || z > hi)
        MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: zero point %d (row %zu, group %zu) cannot be "
                "stored in the %s format (range %d..%d)%s", job->a->in, module, (int)z, r, g,
                mq_export_format_names[job->a->format], (int)lo, (int)hi,
                v1 && z == 0 ? "; use --format gptq_v2" : "");
      codes[r] = (uint8_t)(z - (v1 ? 1 : 0));
    }
    uint32_t *w = (uint32_t *)(void *)(out + g * zw);
    mq_pack_row(codes, l->rows, l->bits, w);
  }
cleanup:
  mq_free(codes);
  return st;
}

static mq_status fill_gptq(export_job *job, const export_item *it, void *buf, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(cached_layer(job, it->name, err));
  const mq_layer_result *l = &job->layer;
  if (it->kind == IT_QWEIGHT) { /* [words, rows]: the transpose of the result's [rows, words] */
    uint32_t *q = buf;
    for (size_t k = 0; k < l->words; k++)
      for (size_t r = 0; r < l->rows; r++) q[k * l->rows + r] = l->qweight[r * l->words + k];
  } else if (it->kind == IT_QZEROS) {
    MQ_CHECK(fill_qzeros(job, it->name, buf, err));
  } else if (it->kind == IT_SCALES) { /* float16 [ngroups, rows] */
    uint16_t *h = buf;
    for (size_t g = 0; g < l->ngroups; g++)
      for (size_t r = 0; r < l->rows; r++) {
        float s = l->scales[r * l->ngroups + g];
        uint16_t v = mq_stw_f32_to_f16(s);
        if ((v & 0x7c00u) == 0x7c00u || ((v & 0x7fffu) == 0 && s != 0.0f))
          MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: scale %g (row %zu, group %zu) is outside "
                  "the float16 range of the gptq format", job->a->in, it->name, (double)s, r, g);
        h[g * l->rows + r] = v;
      }
  } else { /* g_idx int32 [cols] */
    int gs = job->meta->opts.group_size > 0 ? job->meta->opts.group_size : (int)l->cols;
    memcpy(buf, l->g_idx, l->cols * sizeof *l->g_idx);
    for (size_t c = 0; c < l->cols; c++)
      if ((size_t)l->g_idx[c] != c / (size_t)gs) job->desc_act = 1;
  }
cleanup:
  return st;
}

static mq_status fill_tensor(void *ctx, size_t tag, void *buf, size_t nbytes, mq_error *err) {
  mq_status st = MQ_OK;
  export_job *job = ctx;
  const export_item *it = &job->items[tag];
  float *x = NULL;
  if (it->kind != IT_DEQUANT && it->kind != IT_RESULT_TENSOR && it->kind != IT_CKPT_TENSOR) {
    MQ_CHECK(fill_gptq(job, it, buf, err));
    goto cleanup;
  }
  size_t n = nbytes / mq_stw_dtype_size(it->dtype);
  /* float32 output is read in place; 16-bit output needs a float32 scratch copy */
  x = it->dtype == MQ_STW_F32 ? buf : mq_alloc(n, sizeof *x);
  MQ_CHECK_ALLOC(err, x, n * sizeof *x);
  if (it->kind == IT_CKPT_TENSOR) MQ_CHECK(mq_st_read_f32(job->ckpt, it->name, x, n, err));
  else MQ_CHECK(job->src.read(job->src.ctx, it->name, x, n, err));
  MQ_CHECK(convert_out(it->name, x, n, it->dtype, buf, err));
cleanup:
  if (x != buf) mq_free(x);
  return st;
}

/* ---- planning: which tensors go into model.safetensors ---- */

static mq_stw_dtype dtype_from_name(const char *s) {
  if (s != NULL && !strcmp(s, "F16")) return MQ_STW_F16;
  if (s != NULL && !strcmp(s, "BF16")) return MQ_STW_BF16;
  return MQ_STW_F32;
}

static mq_status add_item(export_job *job, mq_st_writer *w, const char *tensor, item_kind kind,
                          const char *name, mq_stw_dtype dt, int ndim, const size_t *shape,
                          mq_error *err) {
  job->items[job->nitems] = (export_item){.kind = kind, .name = name, .dtype = dt};
  mq_status st = mq_stw_add(w, tensor, dt, ndim, shape, fill_tensor, job, job->nitems, err);
  if (st == MQ_OK) job->nitems++;
  return st;
}

/* The four gptq tensors of a layer, after checking the layout can hold it. */
static mq_status plan_gptq(export_job *job, mq_st_writer *w, const mq_result_tensor_info *ti,
                           mq_error *err) {
  mq_status st = MQ_OK;
  const char *m = ti->module;
  const int bits = job->meta->opts.bits;
  size_t rows = ti->shape[0], cols = ti->shape[1];
  char name[600];
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    MQ_FAIL(err, MQ_EINPUT, "%s: %d-bit codes have no %s layout (2, 3, 4 or 8 bits)", job->a->in,
            bits, mq_export_format_names[job->a->format]);
  if (rows % 32 != 0 || cols % 32 != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: %zux%zu: the %s layout needs rows and columns that "
            "are multiples of 32", job->a->in, m, rows, cols, mq_export_format_names[job->a->format]);
  if (ti->ngroups != mq_ngroups(cols, job->meta->opts.group_size))
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: %zu groups, but group_size %d over %zu columns "
            "makes %zu", job->a->in, m, ti->ngroups, job->meta->opts.group_size, cols,
            mq_ngroups(cols, job->meta->opts.group_size));
  if (strlen(m) + 10 > sizeof name) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: name too long", job->a->in, m);
  size_t qw[2] = {cols * (size_t)bits / 32, rows}, qz[2] = {ti->ngroups, rows * (size_t)bits / 32};
  size_t sc[2] = {ti->ngroups, rows}, gi[1] = {cols};
  snprintf(name, sizeof name, "%s.qweight", m);
  MQ_CHECK(add_item(job, w, name, IT_QWEIGHT, m, MQ_STW_I32, 2, qw, err));
  snprintf(name, sizeof name, "%s.qzeros", m);
  MQ_CHECK(add_item(job, w, name, IT_QZEROS, m, MQ_STW_I32, 2, qz, err));
  snprintf(name, sizeof name, "%s.scales", m);
  MQ_CHECK(add_item(job, w, name, IT_SCALES, m, MQ_STW_F16, 2, sc, err));
  snprintf(name, sizeof name, "%s.g_idx", m);
  MQ_CHECK(add_item(job, w, name, IT_GIDX, m, MQ_STW_I32, 1, gi, err));
cleanup:
  return st;
}

/* --model checkpoint: every quantized module must be there with the layer's shape; every other
 * tensor is copied in its own dtype. */
static mq_status plan_checkpoint(export_job *job, mq_st_writer *w, mq_error *err) {
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
    MQ_CHECK(add_item(job, w, name, IT_CKPT_TENSOR, name, dt, ci.ndim, ci.shape, err));
  }
cleanup:
  return st;
}

static mq_status plan(export_job *job, mq_st_writer *w, mq_error *err) {
  mq_status st = MQ_OK;
  size_t nt = mq_result_tensors_count(&job->src), cap = 4 * nt + 1;
  if (job->ckpt != NULL) cap += mq_st_count(job->ckpt);
  job->items = mq_alloc(cap, sizeof *job->items);
  MQ_CHECK_ALLOC(err, job->items, cap * sizeof *job->items);
  mq_stw_dtype wdt = dequant_dtype(job);
  mq_result_tensor_info ti;
  size_t nlayers = 0;
  for (size_t i = 0; i < nt; i++) {
    (void)mq_result_tensors_info(&job->src, i, &ti);
    if (ti.module == NULL)
      MQ_CHECK(add_item(job, w, ti.name, IT_RESULT_TENSOR, ti.name, dtype_from_name(ti.dtype),
                        ti.ndim, ti.shape, err));
    else if (job->a->format == MQ_EXPORT_DEQUANT)
      MQ_CHECK(add_item(job, w, ti.name, IT_DEQUANT, ti.name, wdt, 2, ti.shape, err));
    else
      MQ_CHECK(plan_gptq(job, w, &ti, err));
    nlayers += ti.module != NULL;
  }
  if (nlayers == 0) MQ_FAIL(err, MQ_EINPUT, "%s: no quantized layers to export", job->a->in);
  if (job->ckpt != NULL) MQ_CHECK(plan_checkpoint(job, w, err));
  MQ_INFO("export: %zu quantized layer(s), %zu tensor(s) in all, format %s%s%s", nlayers,
          mq_stw_count(w), mq_export_format_names[job->a->format],
          job->a->format == MQ_EXPORT_DEQUANT ? ", weights as " : "",
          job->a->format == MQ_EXPORT_DEQUANT ? mq_stw_dtype_name(wdt) : "");
cleanup:
  return st;
}

/* ---- the export itself (rank 0) ---- */

typedef struct out_file {
  const char *name; /* final name in DIR */
  char *tmp, *final;
  int written;
} out_file;

mq_status mq_export_checkpoint(const mq_export_args *a, mq_error *err) {
  mq_status st = MQ_OK;
  export_job job = {.a = a};
  mq_outdir od = {0};
  mq_st_writer *w = NULL;
  json_t *qc = NULL;
  out_file files[3] = {{.name = "model.safetensors"}, {.name = "config.json"},
                       {.name = "quantize_config.json"}};
  const int gptq = a->format != MQ_EXPORT_DEQUANT;
  if (a->format == MQ_EXPORT_GGUF) return mq_gguf_export_llama(a, err); /* one file, own plan */
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
  const char *dir = od.tmp;
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(dir) + strlen(files[k].name) + strlen(suffix) + 3;
    files[k].final = join(dir, files[k].name);
    files[k].tmp = mq_alloc(n, 1);
    MQ_CHECK_ALLOC(err, files[k].final && files[k].tmp, n);
    snprintf(files[k].tmp, n, "%s/.%s%s", dir, files[k].name, suffix);
  }
  MQ_CHECK(mq_stw_write(w, files[0].tmp, err));
  files[0].written = 1;
  if (gptq) { /* after the data: desc_act depends on the g_idx seen */
    qc = quantization_config(&job);
    MQ_CHECK_ALLOC(err, qc, 256);
    if (job.config != NULL && json_object_set(job.config, "quantization_config", qc) != 0)
      MQ_FAIL(err, MQ_EFAIL, "config.json: out of memory");
    MQ_CHECK(write_json(qc, files[2].tmp, err));
    files[2].written = 1;
  } else if (job.config != NULL) {
    (void)json_object_del(job.config, "quantization_config"); /* plain weights now */
  }
  if (job.config != NULL) {
    MQ_CHECK(write_json(job.config, files[1].tmp, err));
    files[1].written = 1;
  }
  /* Publish: config files first, the model file last. */
  for (int k = 2; k >= 0; k--) {
    if (!files[k].written) continue;
    if (rename(files[k].tmp, files[k].final) != 0)
      MQ_FAIL(err, MQ_EFAIL, "%s: cannot rename to %s: %s", files[k].tmp, files[k].final,
              strerror(errno));
    files[k].written = 0;
  }
  if (!gptq && files[2].final != NULL) (void)remove(files[2].final); /* stale gptq leftovers */
  char *index = join(dir, "model.safetensors.index.json");
  if (index != NULL && access(index, F_OK) == 0) { /* it would shadow the new single file */
    MQ_WARN("export: removing stale %s", index);
    (void)remove(index);
  }
  mq_free(index);
  MQ_CHECK(mq_outdir_commit(&od, err));
  MQ_INFO("export: wrote %s/%s", a->out, files[0].name);
cleanup:
  mq_outdir_abort(&od, err); /* a failure inside it is blamed on a->out */
  for (int k = 0; k < 3; k++) {
    if (files[k].written) (void)remove(files[k].tmp);
    mq_free(files[k].tmp);
    mq_free(files[k].final);
  }
  json_decref(qc);
  json_decref(job.config);
  mq_stw_free(&w);
  mq_free(job.items);
  mq_layer_result_free(&job.layer);
  mq_st_close(&job.ckpt);
  mq_result_tensors_close(&job.src);
  return st;
}

