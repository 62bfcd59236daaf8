/* One layer, end to end on the rows the caller holds: prepare H (dead inputs, order, λ), factor,
 * sweep (or RTN), pack. Errors against samples are measured separately (measure.h) because the
 * samples stream from a file. */
#ifndef MQ_CORE_LAYER_H
#define MQ_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

typedef struct mq_layer_timing {
  double prepare, factor, sweep, sweep_gemm, pack; /* seconds */
  double factor_flops, sweep_flops, sweep_gemm_flops;
} mq_layer_timing;

/* W row-major [rows, cols] (not modified); H row-major [cols, cols] symmetric, = X̃ᵀX̃/n, is
 * CONSUMED: OPTQ factors it in place (RTN only patches its dead diagonal entries, §3.1).
 * name: for messages; layer_id: stochastic-rounding key. Fills res (arrays allocated here,
 * released by mq_layer_result_free) except err, rel_err, bound_linf, which the caller measures
 * (set to NaN here). */
mq_status mq_layer_quantize(const char *name, uint64_t layer_id, const float *W, size_t rows,
                            size_t cols, double *H, const mq_quant_options *opts,
                            mq_layer_result *res, mq_layer_timing *timing, mq_error *err);

/* Ŵ row-major [rows, cols] from the packed result. */
mq_status mq_layer_result_dequantize(const mq_layer_result *res, float *What, mq_error *err);

#endif
