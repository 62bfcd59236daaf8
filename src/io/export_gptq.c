/* The GPTQ tensors of `mpiquant export --format gptq|gptq_v2` (layout: io/export.c), the
 * checks that make them exactly mpiquant's Ŵ, and the warnings about what their consumers load.
 *
 * Exactness. The layout stores float16 scales, and a consumer dequantizes with
 * float32(scale_f16)·(q − z). That equals the result file's Ŵ = scale·(q − z) bit for bit
 * only when every scale is a float16 value, which `--scale-dtype float16` makes the sweep
 * guarantee. Any other scale is refused (MQ_EINPUT, naming layer, row, group) unless
 * --allow-requantize: then the scale is rounded to nearest and the codes are kept. In float16's normal range the
 * rounding moves a scale by at most 2^-11 relative, so a code moves ŵ/s_f16 by at most
 * |q − z|·2^-11 ≤ 255·2^-11 < 1/2 and the nearest code is the one kept; the added error is
 * reported either way.
 *
 * What the consumers refuse (read in their sources; README "Exports" keeps the table):
 *   - asymmetric `gptq` (v1, zero − 1 stored): GPTQModel's loader refuses sym=false with
 *     checkpoint_format "gptq" unless its own metadata says GPTQModel made it; AutoGPTQ and
 *     vLLM load it;
 *   - `gptq_v2` (any grid): AutoGPTQ's config rejects the checkpoint_format ("Unknown
 *     quantization format"); vLLM reads gptq_v2 zero points only since its PR #26092 (October
 *     2025), older releases take them as v1 (off by one); GPTQModel loads it;
 *   - in_features not a multiple of group_size: vLLM's gptq and gptq_marlin layers raise ("input
 *     size is not aligned"), as do GPTQModel's kernels that do not pad (its torch kernel pads);
 *   - the Marlin kernel (vLLM's default for symmetric 4/8-bit groups of -1/32/64/128, GPTQModel's
 *     marlin backend) needs out_features % 64 == 0 and in_features % 128 == 0; vLLM then has to
 *     be run with --quantization gptq;
 *   - group sizes other than -1, 16, 32, 64, 128 (or in_features): GPTQModel has no kernel for
 *     them.
 * Rows and columns that are not multiples of 32 are refused outright (every loader sizes
 * qweight and qzeros as features // 32 · bits). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/pack.h"
#include "core/status.h"
#include "io/export_internal.h"

static const char *format_name(const mq__export_job *job) {
  return mq_export_format_names[job->a->format];
}

/* ---- warnings ---- */

void mq__export_gptq_format_warnings(const mq__export_job *job) {
  const mq_quant_options *o = &job->meta->opts;
  const int gs = o->group_size;
  if (job->a->format == MQ_EXPORT_GPTQ && !o->sym)
    MQ_WARN("export: asymmetric --format gptq (zero points stored minus 1): GPTQModel refuses "
            "to load it (sym=false with checkpoint_format gptq); AutoGPTQ and vLLM load it "
            "(--format gptq_v2 for GPTQModel)");
  if (job->a->format == MQ_EXPORT_GPTQ_V2)
    MQ_WARN("export: --format gptq_v2: AutoGPTQ refuses it (unknown checkpoint_format) and vLLM "
            "before PR #26092 (Oct 2025) reads its zero points as v1, off by one; GPTQModel "
            "loads it");
  if (gs > 0 && gs != 16 && gs != 32 && gs != 64 && gs != 128)
    MQ_WARN("export: group size %d: GPTQModel has no kernel for it (-1, 16, 32, 64, 128); "
            "AutoGPTQ and vLLM's gptq kernels take it", gs);
}

/* One line per problem of a layer shape that some consumer's kernels refuse, once per shape. */
static void shape_warnings(mq__export_job *job, const char *module, size_t rows, size_t cols) {
  const mq_quant_options *o = &job->meta->opts;
  const int gs = o->group_size;
  for (size_t i = 0; i < job->nwarned; i++)
    if (job->warned[i][0] == rows && job->warned[i][1] == cols) return;
  int unaligned = gs > 0 && cols % (size_t)gs != 0;
  int marlin_grid = o->sym && (o->bits == 4 || o->bits == 8) &&
                    (gs <= 0 || gs == 32 || gs == 64 || gs == 128);
  int marlin_shape = rows % 64 == 0 && cols % 128 == 0;
  if (!unaligned && (!marlin_grid || marlin_shape)) return;
  if (job->nwarned < MQ__EXPORT_MAX_WARNED) { /* beyond that: one line per layer */
    job->warned[job->nwarned][0] = rows;
    job->warned[job->nwarned][1] = cols;
    job->nwarned++;
  }
  if (unaligned)
    MQ_WARN("export: %s (and any %zux%zu layer): in_features %zu is not a multiple of group "
            "size %d: vLLM refuses it (gptq and gptq_marlin); GPTQModel's torch kernel (it "
            "pads) loads it", module, rows, cols, cols, gs);
  if (marlin_grid && !marlin_shape && !unaligned)
    MQ_WARN("export: %s (and any %zux%zu layer): out_features %zu %s a multiple of 64, "
            "in_features %zu %s a multiple of 128: the Marlin kernel refuses it (vLLM: run with "
            "--quantization gptq; GPTQModel: another backend)", module, rows, cols, rows,
            rows % 64 ? "is not" : "is", cols, cols % 128 ? "is not" : "is");
}

/* ---- planning ---- */

mq_status mq__export_plan_gptq(mq__export_job *job, mq_st_writer *w,
                               const mq_result_tensor_info *ti, mq_error *err) {
  mq_status st = MQ_OK;
  const char *m = ti->module;
  const int bits = job->meta->opts.bits;
  size_t rows = ti->shape[0], cols = ti->shape[1];
  char name[600];
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    MQ_FAIL(err, MQ_EINPUT, "%s: %d-bit codes have no %s layout (2, 3, 4 or 8 bits)", job->a->in,
            bits, format_name(job));
  if (rows % 32 != 0 || cols % 32 != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: %zux%zu: the %s layout needs rows and columns that "
            "are multiples of 32", job->a->in, m, rows, cols, format_name(job));
  if (ti->ngroups != mq_ngroups(cols, job->meta->opts.group_size))
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: %zu groups, but group_size %d over %zu columns "
            "makes %zu", job->a->in, m, ti->ngroups, job->meta->opts.group_size, cols,
            mq_ngroups(cols, job->meta->opts.group_size));
  if (strlen(m) + 10 > sizeof name)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: name too long", job->a->in, m);
  shape_warnings(job, m, rows, cols);
  size_t qw[2] = {cols * (size_t)bits / 32, rows}, qz[2] = {ti->ngroups, rows * (size_t)bits / 32};
  size_t sc[2] = {ti->ngroups, rows}, gi[1] = {cols};
  snprintf(name, sizeof name, "%s.qweight", m);
  MQ_CHECK(mq__export_add_item(job, w, name, MQ__EX_QWEIGHT, m, MQ_STW_I32, 2, qw, err));
  snprintf(name, sizeof name, "%s.qzeros", m);
  MQ_CHECK(mq__export_add_item(job, w, name, MQ__EX_QZEROS, m, MQ_STW_I32, 2, qz, err));
  snprintf(name, sizeof name, "%s.scales", m);
  MQ_CHECK(mq__export_add_item(job, w, name, MQ__EX_SCALES, m, MQ_STW_F16, 2, sc, err));
  snprintf(name, sizeof name, "%s.g_idx", m);
  MQ_CHECK(mq__export_add_item(job, w, name, MQ__EX_GIDX, m, MQ_STW_I32, 1, gi, err));
cleanup:
  return st;
}

/* ---- data ---- */

/* The packed layer `module`, read once for its four gptq tensors (usually adjacent). */
static mq_status cached_layer(mq__export_job *job, const char *module, mq_error *err) {
  if (job->layer_module != NULL && strcmp(job->layer_module, module) == 0) return MQ_OK;
  mq_layer_result_free(&job->layer);
  job->layer_module = NULL;
  mq_status st = mq_result_tensors_read_layer(&job->src, module, &job->layer, err);
  if (st == MQ_OK) job->layer_module = module;
  return st;
}

/* int32 [ngroups, rows·bits/32]: group g's zero points (v1: minus 1) packed along the rows. */
static mq_status fill_qzeros(mq__export_job *job, const char *module, int32_t *out,
                             mq_error *err) {
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
                format_name(job), (int)lo, (int)hi, v1 && z == 0 ? "; use --format gptq_v2" : "");
      codes[r] = (uint8_t)(z - (v1 ? 1 : 0));
    }
    uint32_t *w = (uint32_t *)(void *)(out + g * zw);
    mq_pack_row(codes, l->rows, l->bits, w);
  }
cleanup:
  mq_free(codes);
  return st;
}

/* --allow-requantize: what storing h (float16 [ngroups, rows]) instead of the layer's scales
 * adds to Σ (ŵ_export − ŵ)², and Σ ŵ² of the same rows (those with a changed scale). */
static mq_status add_rounding_error(mq__export_job *job, const uint16_t *h, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_layer_result *l = &job->layer;
  uint8_t *codes = mq_alloc(l->cols, 1);
  MQ_CHECK_ALLOC(err, codes, l->cols);
  for (size_t r = 0; r < l->rows; r++) {
    int changed = 0;
    for (size_t g = 0; g < l->ngroups; g++)
      changed |= mq_st_f16_to_f32(h[g * l->rows + r]) != l->scales[r * l->ngroups + g];
    if (!changed) continue;
    mq_unpack_row(l->qweight + r * l->words, l->cols, l->bits, codes);
    for (size_t c = 0; c < l->cols; c++) {
      size_t g = (size_t)l->g_idx[c];
      float d = (float)((int32_t)codes[c] - l->zeros[r * l->ngroups + g]);
      float w = l->scales[r * l->ngroups + g] * d, w16 = mq_st_f16_to_f32(h[g * l->rows + r]) * d;
      job->sq_err += ((double)w16 - (double)w) * ((double)w16 - (double)w);
      job->sq_ref += (double)w * (double)w;
    }
  }
cleanup:
  mq_free(codes);
  return st;
}

/* float16 [ngroups, rows]: every scale must be a float16 value (see the top of the file). */
static mq_status fill_scales(mq__export_job *job, const char *module, uint16_t *h,
                             mq_error *err) {
  mq_status st = MQ_OK;
  const mq_layer_result *l = &job->layer;
  size_t rounded = 0;
  for (size_t g = 0; g < l->ngroups; g++)
    for (size_t r = 0; r < l->rows; r++) {
      float s = l->scales[r * l->ngroups + g];
      uint16_t v = mq_stw_f32_to_f16(s);
      if ((v & 0x7c00u) == 0x7c00u || ((v & 0x7fffu) == 0 && s != 0.0f))
        MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: scale %g (row %zu, group %zu) is outside "
                "the float16 range of the gptq format", job->a->in, module, (double)s, r, g);
      float back = mq_st_f16_to_f32(v);
      if (back != s) {
        double rel = fabs((double)back - (double)s) / fabs((double)s);
        if (!job->a->allow_requantize)
          MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: scale %.9g (row %zu, group %zu) is not a "
                  "float16 value (rounding moves it by %.2g relative): quantize with "
                  "--scale-dtype float16 for an exact export, or pass --allow-requantize to "
                  "round the scales", job->a->in, module, (double)s, r, g, rel);
        if (rel > job->max_rel_scale) job->max_rel_scale = rel;
        rounded++;
      }
      h[g * l->rows + r] = v;
    }
  if (rounded > 0) MQ_CHECK(add_rounding_error(job, h, err));
  job->scales_rounded += rounded;
cleanup:
  return st;
}

mq_status mq__export_fill_gptq(mq__export_job *job, const mq__export_item *it, void *buf,
                               mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(cached_layer(job, it->name, err));
  const mq_layer_result *l = &job->layer;
  if (it->kind == MQ__EX_QWEIGHT) { /* [words, rows]: the transpose of the result's [rows, words] */
    uint32_t *q = buf;
    for (size_t k = 0; k < l->words; k++)
      for (size_t r = 0; r < l->rows; r++) q[k * l->rows + r] = l->qweight[r * l->words + k];
  } else if (it->kind == MQ__EX_QZEROS) {
    MQ_CHECK(fill_qzeros(job, it->name, buf, err));
  } else if (it->kind == MQ__EX_SCALES) {
    MQ_CHECK(fill_scales(job, it->name, buf, err));
  } else { /* g_idx int32 [cols] */
    int gs = job->meta->opts.group_size > 0 ? job->meta->opts.group_size : (int)l->cols;
    memcpy(buf, l->g_idx, l->cols * sizeof *l->g_idx);
    for (size_t c = 0; c < l->cols; c++)
      if ((size_t)l->g_idx[c] != c / (size_t)gs) job->desc_act = 1;
  }
cleanup:
  return st;
}

mq_status mq__export_gptq_precheck(mq__export_job *job, const char *module, mq_error *err) {
  mq_status st = MQ_OK;
  uint16_t *h = NULL;
  MQ_CHECK(cached_layer(job, module, err));
  size_t n = job->layer.rows * job->layer.ngroups;
  h = mq_alloc(n ? n : 1, sizeof *h);
  MQ_CHECK_ALLOC(err, h, n * sizeof *h);
  MQ_CHECK(fill_scales(job, module, h, err));
  job->scales_rounded = 0; /* counted again when the tensor is written */
  job->sq_err = job->sq_ref = job->max_rel_scale = 0.0;
cleanup:
  mq_free(h);
  return st;
}

json_t *mq__export_quantization_config(const mq__export_job *job) {
  const mq_quant_options *o = &job->meta->opts;
  return json_pack("{s:s, s:i, s:i, s:b, s:b, s:b, s:f, s:b, s:s}", "quant_method", "gptq",
                   "bits", o->bits, "group_size", o->group_size, "desc_act",
                   o->act_order || job->desc_act, "sym", o->sym, "static_groups",
                   o->static_groups, "damp_percent", isfinite(o->damp) ? o->damp : 0.01,
                   "true_sequential", 1, "checkpoint_format",
                   job->a->format == MQ_EXPORT_GPTQ_V2 ? "gptq_v2" : "gptq");
}

void mq__export_gptq_report(const mq__export_job *job) {
  mq_export_report *r = job->a->report;
  double rel = job->sq_ref > 0 ? sqrt(job->sq_err / job->sq_ref) : 0.0;
  if (job->scales_rounded > 0)
    MQ_WARN("export: rounded %zu scale(s) to float16 (codes kept): added squared error %.6g "
            "(relative %.3g), largest scale change %.3g", job->scales_rounded, job->sq_err, rel,
            job->max_rel_scale);
  if (r == NULL) return;
  r->requantized_blocks = job->scales_rounded;
  r->codes_changed = 0;
  r->added_sq_err = job->sq_err;
  r->rel_err = rel;
  r->max_rel_scale = job->max_rel_scale;
}
