/* Result grids as ggml blocks (io/gguf_blocks.h). */
#include "io/gguf_blocks.h"

#include <math.h>
#include <string.h>

#include "core/mem.h"
#include "core/pack.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

#define QK 32 /* values per block */

mq_status mq_gguf_block_type(int bits, int sym, const char *what, mq_ggml_type *t,
                             mq_error *err) {
  mq_status st = MQ_OK;
  if (bits == 4) *t = sym ? MQ_GGML_Q4_0 : MQ_GGML_Q4_1;
  else if (bits == 5) *t = sym ? MQ_GGML_Q5_0 : MQ_GGML_Q5_1;
  else if (bits == 8 && sym) *t = MQ_GGML_Q8_0;
  else if (bits == 8)
    MQ_FAIL(err, MQ_EINPUT, "%s: 8-bit asymmetric grid has no GGUF block type (Q8_0 is "
            "symmetric: quantize with --sym)", what);
  else
    MQ_FAIL(err, MQ_EINPUT, "%s: %d-bit grid has no GGUF block type with the same grid (Q4_0/"
            "Q4_1 take 4 bits, Q5_0/Q5_1 5, Q8_0 8 sym; K-quants use other scales)", what, bits);
cleanup:
  return st;
}

mq_status mq_gguf_check_layout(const mq_layer_result *l, const char *what, mq_error *err) {
  mq_status st = MQ_OK;
  if (l->cols == 0 || l->cols % QK != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %zu columns: GGUF blocks need a multiple of %d", what, l->cols,
            QK);
  for (size_t b = 0; b < l->cols / QK; b++)
    for (size_t c = b * QK + 1; c < (b + 1) * QK; c++)
      if (l->g_idx[c] != l->g_idx[b * QK])
        MQ_FAIL(err, MQ_EINPUT, "%s: columns %zu and %zu share a 32-value GGUF block but belong "
                "to groups %d and %d (act-order groups or a group size that is not a multiple "
                "of 32; quantize with --no-act-order or --static-groups)", what, b * QK, c,
                (int)l->g_idx[b * QK], (int)l->g_idx[c]);
cleanup:
  return st;
}

static int type_is_sym(mq_ggml_type t) {
  return t == MQ_GGML_Q4_0 || t == MQ_GGML_Q5_0 || t == MQ_GGML_Q8_0;
}

static int type_bits(mq_ggml_type t) {
  return t == MQ_GGML_Q8_0 ? 8 : (t == MQ_GGML_Q5_0 || t == MQ_GGML_Q5_1) ? 5 : 4;
}

static void put_f16(uint8_t *p, uint16_t h) {
  p[0] = (uint8_t)h;
  p[1] = (uint8_t)(h >> 8);
}

/* Writes one block of stored values q[32] (already offset for Q8_0) with d (and m). */
static void pack_block(mq_ggml_type t, uint16_t d, uint16_t m, const int *q, uint8_t *out) {
  put_f16(out, d);
  if (t == MQ_GGML_Q8_0) {
    for (int j = 0; j < QK; j++) out[2 + j] = (uint8_t)(int8_t)q[j];
    return;
  }
  uint8_t *qs = out + 2;
  if (t == MQ_GGML_Q4_1 || t == MQ_GGML_Q5_1) {
    put_f16(out + 2, m);
    qs += 2;
  }
  if (t == MQ_GGML_Q5_0 || t == MQ_GGML_Q5_1) {
    uint32_t qh = 0;
    for (int j = 0; j < QK; j++) qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) qs[k] = (uint8_t)(qh >> (8 * k));
    qs += 4;
  }
  for (int j = 0; j < QK / 2; j++)
    qs[j] = (uint8_t)((q[j] & 0xf) | ((q[j + QK / 2] & 0xf) << 4));
}

/* float16 of x, 0 when it is not finite in float16 (inf after rounding, or x not finite) and
 * *ok cleared. */
static uint16_t to_f16(double x, int *ok) {
  uint16_t h = mq_stw_f32_to_f16((float)x);
  if (!isfinite(x) || (h & 0x7c00u) == 0x7c00u) *ok = 0;
  return h;
}

mq_status mq_gguf_encode_row(const mq_layer_result *l, mq_ggml_type t, size_t row,
                             int allow_requant, const char *what, uint8_t *out,
                             mq_gguf_requant_stats *stats, mq_error *err) {
  mq_status st = MQ_OK;
  const int sym = type_is_sym(t), bits = type_bits(t), maxq = (1 << bits) - 1;
  const int32_t zt = 1 << (bits - 1);           /* the symmetric types' zero point */
  const int off = t == MQ_GGML_Q8_0 ? 128 : 0;  /* stored = code − off */
  const size_t bb = mq_ggml_block_bytes(t), nb = l->cols / QK;
  uint8_t *codes = mq_alloc(l->cols, 1);
  MQ_CHECK_ALLOC(err, codes, l->cols);
  mq_unpack_row(l->qweight + row * l->words, l->cols, l->bits, codes);
  for (size_t b = 0; b < nb; b++) {
    const int32_t g = l->g_idx[b * QK];
    const float s = l->scales[row * l->ngroups + (size_t)g];
    const int32_t z = l->zeros[row * l->ngroups + (size_t)g];
    const uint8_t *cb = codes + b * QK;
    int q[QK], ok = 1;
    if (sym && z != zt)
      MQ_FAIL(err, MQ_EINPUT, "%s: zero point %d (row %zu, group %d) is not %d: the grid is not "
              "the symmetric one %s stores", what, (int)z, row, (int)g, (int)zt,
              mq_ggml_type_name(t));
    const double mexact = -(double)s * (double)z; /* exact: 24-bit × 8-bit significands */
    uint16_t d = to_f16(s, &ok), m = sym ? 0 : to_f16(mexact, &ok);
    if (!ok || (s != 0.0f && (d & 0x7fffu) == 0))
      MQ_FAIL(err, MQ_EINPUT, "%s: scale %g (row %zu, group %d) or its minimum is outside "
              "the float16 range of %s", what, (double)s, row, (int)g, mq_ggml_type_name(t));
    const double df = (double)mq_st_f16_to_f32(d);
    double mf = sym ? 0.0 : (double)mq_st_f16_to_f32(m);
    const int exact = df == (double)s && (sym || mf == mexact);
    if (stats != NULL) {
      double rel = s != 0.0f ? fabs(df - (double)s) / fabs((double)s) : 0.0;
      if (rel > stats->max_rel_scale) stats->max_rel_scale = rel;
      for (int j = 0; j < QK; j++) {
        double v = (double)(float)((double)s * (double)(cb[j] - z));
        stats->sq_ref += v * v;
      }
    }
    if (exact) {
      for (int j = 0; j < QK; j++) q[j] = cb[j] - off;
      pack_block(t, d, m, q, out + b * bb);
      continue;
    }
    if (!allow_requant) {
      if (df != (double)s)
        MQ_FAIL(err, MQ_EINPUT, "%s: scale %.9g (row %zu, group %d) is not exactly representable "
                "in float16 (%s stores d as float16: %.9g, relative change %.3g); quantize with "
                "float16 scales or export with --allow-requantize", what, (double)s, row, (int)g,
                mq_ggml_type_name(t), df, fabs(df - (double)s) / fabs((double)s));
      MQ_FAIL(err, MQ_EINPUT, "%s: minimum -scale*zero = %.9g (row %zu, group %d) is not exactly "
              "representable in float16 (%s stores m as float16: %.9g, relative change %.3g); "
              "export with --allow-requantize", what, mexact, row, (int)g, mq_ggml_type_name(t),
              mf, fabs(mf - mexact) / fabs(mexact));
    }
    /* Re-quantize: m is rounded through float32 (documented in the header). */
    if (!sym) {
      m = mq_stw_f32_to_f16((float)mexact);
      mf = (double)mq_st_f16_to_f32(m);
    }
    for (int j = 0; j < QK; j++) {
      const double v = (double)(float)((double)s * (double)(cb[j] - z)); /* the result's Ŵ */
      double c = df != 0.0 ? nearbyint(sym ? v / df + zt : (v - mf) / df) : (sym ? zt : 0);
      c = c < 0 ? 0 : c > maxq ? maxq : c;
      const int code = (int)c;
      const double nv = sym ? (double)(float)(df * (code - zt)) : (double)(float)(df * code + mf);
      if (stats != NULL) {
        stats->codes_changed += code != cb[j];
        stats->sq_err += (nv - v) * (nv - v);
      }
      q[j] = code - off;
    }
    if (stats != NULL) stats->blocks++;
    pack_block(t, d, m, q, out + b * bb);
  }
cleanup:
  mq_free(codes);
  return st;
}
