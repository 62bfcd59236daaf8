/* The distributed layer engine (ALGORITHMS: docs/NUMERICS.md §7): one layer, collective over a
 * context. The calibration samples are split across ranks in fixed chunks whose H (and G)
 * contributions are summed exactly (exact_sum.h), so H has the same bits on any number of
 * ranks; the output rows are dealt in fixed blocks and each rank sweeps its own; the errors
 * and bounds are measured and reduced. What runs where is decided once per layer by the plan
 * (layer_plan.h). mq_quantize_layer() (mpiquant.h) is this engine without the extras. */
#ifndef MQ_PARALLEL_LAYER_ENGINE_H
#define MQ_PARALLEL_LAYER_ENGINE_H

#include <stddef.h>

#include "mpiquant.h"
#include "parallel/hessian_cache.h"
#include "parallel/traffic.h"

/* What callers inside the library add to a source (all zero: a plain public call). */
typedef struct mq_layer_extras {
  int skip_errors; /* bench: no measurement (err, rel_err, err_floor, bound_linf = NaN) */
  int errors_by_caller; /* err and rel_err left NaN for the caller to measure (OPTQ and RTN;
                           Qronos too, its err_floor still from the Grams) */
  /* Data-parallel sources: this rank holds only samples [local_first, local_first+local_count)
   * and read_samples is asked for nothing else. The sums are chunked at multiples of `chunk`
   * (local_first must be one; so must the local end unless it is n), so H keeps its bits on
   * any rank count as long as every chunk is computed alike. read_weight_rows must serve every
   * row. */
  int samples_local;
  size_t local_first, local_count, chunk;
  /* Data-parallel sources whose chunks differ in size (the tokens routed to an expert): chunk
   * k is samples [chunk_bounds[k], chunk_bounds[k+1]) (may be empty), this rank holds chunks
   * [chunk_first, chunk_first + chunk_count), and `chunk` is the largest one's length. */
  const size_t *chunk_bounds;
  size_t chunk_first, chunk_count;
  float *dequant_out;      /* when not NULL: every row's Ŵ [rows, cols], on every rank */
  mq_hessian_cache *cache; /* H (and G) shared by the layers of a group; may be NULL */
} mq_layer_extras;

/* Seconds per phase, the maximum over ranks, and what crossed the network. */
typedef struct mq_layer_phases {
  double hessian, factor, refit, sweep, sweep_gemm, pack, errors, total;
  double hessian_flops, factor_flops, refit_flops, sweep_flops, sweep_gemm_flops;
  double comm_bytes;    /* payload the ranks handed to MPI, summed over ranks */
  double comm_messages; /* collective calls they made, summed over ranks */
  /* the layer's plan (layer_plan.h: mq_plan_factor, mq_plan_h_home, mq_plan_errors), as
   * doubles like every field here (layer groups ship the struct as doubles) */
  double plan_factor, plan_h_home, plan_errors;
  /* MPI traffic per rank and phase (traffic.h: what counts), measured by the mpiquant
   * executable's PMPI wrappers, ScaLAPACK's included: the maximum over ranks of each phase's
   * bytes and of its messages (the two maxima may come from different ranks); traffic_bytes_all
   * is the bytes of every phase summed over ranks. All 0 and traffic_measured 0 where the
   * wrappers are not linked (library users). */
  double traffic_bytes[MQ_TRAFFIC_PHASES], traffic_messages[MQ_TRAFFIC_PHASES];
  double traffic_bytes_all, traffic_measured;
} mq_layer_phases;

/* Collective over ctx. As mq_quantize_layer(), with extras (may be NULL) and the phases (may
 * be NULL). On failure every rank returns the same status; the cause is in the error record
 * of the rank(s) that failed. */
mq_status mq__layer_engine_run(mq_ctx *ctx, const mq_layer_source *src,
                               const mq_layer_extras *extras, const mq_quant_options *opts,
                               mq_layer_result *res, size_t *row0, mq_layer_phases *phases);

#endif
