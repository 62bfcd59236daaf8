/* A quantized layer of a result file (mq_layer_result: codes, float32 scales, integer zero
 * points, g_idx) written as ggml's 32-value blocks, exactly or not at all.
 *
 * mpiquant's grid dequantizes Ŵ[r,c] = s·(code − z) with s = scales[r,g], z = zeros[r,g],
 * g = g_idx[c] (docs/NUMERICS.md §2). The ggml block types that say the same thing:
 *
 *   bits  grid  type  stored q          block value        exact when
 *   4     sym   Q4_0  code  (z = 8)     d·(q − 8)          d = s
 *   4     asym  Q4_1  code              d·q + m            d = s, m = −s·z
 *   5     sym   Q5_0  code  (z = 16)    d·(q − 16)         d = s
 *   5     asym  Q5_1  code              d·q + m            d = s, m = −s·z
 *   8     sym   Q8_0  code − 128 (int8) d·q                d = s
 *
 * with d and m float16. A block holds 32 consecutive columns of one row and has one d (and m),
 * so every column of a block must share one group: g_idx[32k .. 32k+31] equal (any group size
 * that is a multiple of 32 in original column order, one group per row, or static groups;
 * act-order without static groups is refused), and the row length a multiple of 32. Other bit
 * widths (2, 3, 6, 7, and 8 asym) have no block type with the same grid and are refused: storing
 * 3-bit codes in Q4_0 would be exact but silently larger than the result.
 *
 * Exactness: s (and −s·z, computed exactly in double) must convert to float16 without change.
 * Then d·(q − o) and d·q + m equal s·(code − z) exactly in float32 (an 11-bit significand times
 * an integer of at most 8 bits), which is what the result file's Ŵ is (mq_layer_result_dequantize
 * rounds the exact double product once). A scale that does not convert exactly is refused
 * (MQ_EINPUT, naming layer, row, group and the relative change) unless requantization is
 * allowed: then d = f16(s), m = f16(f32(−s·z)) (round to nearest even) and every code of the
 * block becomes the nearest on the new grid to the result's Ŵ (half to even, clamped to
 * 0..2^bits − 1); the added error is accumulated in mq_gguf_requant_stats.
 *
 * Byte layout of a block (little-endian): Q4_0 d, qs[16]; Q4_1 d, m, qs[16]; Q5_0 d, qh[4],
 * qs[16]; Q5_1 d, m, qh[4], qs[16]; Q8_0 d, qs[32] (int8). Nibbles: qs[j] holds value j in its
 * low 4 bits and value j+16 in its high 4 bits (j < 16); the 5th bit of value j is bit j of the
 * little-endian uint32 qh. */
#ifndef MQ_IO_GGUF_BLOCKS_H
#define MQ_IO_GGUF_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf_write.h"
#include "mpiquant.h"

/* The block type of a grid: MQ_OK and *t, or MQ_EINPUT "<what>: <reason>" naming why it does
 * not fit. */
mq_status mq_gguf_block_type(int bits, int sym, const char *what, mq_ggml_type *t, mq_error *err);

/* Checks that l's columns can be cut into blocks of 32 of one group each (cols % 32 == 0,
 * g_idx constant on every block). MQ_EINPUT "<what>: ..." otherwise. */
mq_status mq_gguf_check_layout(const mq_layer_result *l, const char *what, mq_error *err);

typedef struct mq_gguf_requant_stats {
  size_t blocks;        /* (row, block) pairs whose d or m was rounded to float16 */
  size_t codes_changed; /* codes that moved to another grid point */
  double sq_err;        /* Σ (ŵ_gguf − ŵ_result)² over those blocks */
  double sq_ref;        /* Σ ŵ_result² over every value encoded */
  double max_rel_scale; /* largest |f16(s) − s| / |s| seen */
} mq_gguf_requant_stats;

/* Encodes row `row` of l (checked with mq_gguf_check_layout) as type t into
 * out[cols / 32 · mq_ggml_block_bytes(t)]. allow_requant: round inexact scales and re-quantize
 * (stats updated; stats may be NULL otherwise). Errors: MQ_EINPUT "<what>: scale ... (row r,
 * group g) ..." for a scale that is not exact (without allow_requant) or outside float16's
 * range, "<what>: zero point ..." for a zero point other than 2^(bits−1) with a symmetric type;
 * MQ_EFAIL on out of memory. */
mq_status mq_gguf_encode_row(const mq_layer_result *l, mq_ggml_type t, size_t row,
                             int allow_requant, const char *what, uint8_t *out,
                             mq_gguf_requant_stats *stats, mq_error *err);

#endif
