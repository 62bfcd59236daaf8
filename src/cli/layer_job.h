/* One layer of a problem file, end to end and collective over a communicator (ALGORITHMS §7):
 * the calibration samples are split across ranks in fixed chunks (512 samples) whose H (and G) contributions
 * are summed exactly (dist/exact_sum.h), so H has the same bits on any number of ranks; the
 * output rows are split across ranks, each sweeping its own; err, rel_err, err_floor and
 * bound_linf are measured on each rank's rows and reduced. --lambda auto picks λ on held-out
 * samples (ALGORITHMS §3.3). */
#ifndef MQ_CLI_LAYER_JOB_H
#define MQ_CLI_LAYER_JOB_H

#include <mpi.h>

#include "io/h5problem.h"
#include "mpiquant.h"

/* H (and G) kept for the next layer with the same inputs (q, k, v; gate, up): the caller
 * sets valid = 0 when the inputs change; the job fills it on a miss. Owned by the caller
 * (mq_hessian_cache_free). Not used with --lambda auto. */
typedef struct mq_hessian_cache {
  double *H, *G, *Hxx; /* [cols, cols]: X̃ᵀX̃/n, X̃ᵀX/n, XᵀX/n (G, Hxx NULL when not needed) */
  size_t cols;
  int valid;
  int keep; /* set by the caller: another layer with these inputs follows, so store them */
} mq_hessian_cache;

void mq_hessian_cache_free(mq_hessian_cache *c);

/* Where a layer's data comes from: a problem file, memory (bench), or activations spread over
 * the ranks (quantize). */
typedef struct mq_layer_source {
  mq_h5_layer_info info; /* name, rows, cols, n, has_x, has_xq, has_h, has_g */
  uint64_t layer_id;     /* stochastic-rounding key */
  /* samples [first, first+count) of X ('X') or X̃ ('Q'), row-major [count, cols] */
  mq_status (*read_samples)(void *ctx, char which, size_t first, size_t count, double *buf,
                            mq_error *err);
  /* rows [first, first+count) of W, row-major [count, cols] */
  mq_status (*read_weight_rows)(void *ctx, size_t first, size_t count, float *W, mq_error *err);
  /* H ('H') or G ('G'), row-major [cols, cols] (files without samples) */
  mq_status (*read_matrix)(void *ctx, char which, double *buf, mq_error *err);
  /* Rows [first, first+count) of H, and its diagonal: what a distributed H is filled from
   * (OPTQ with the ScaLAPACK factor). NULL: H is always read whole. */
  mq_status (*read_h_rows)(void *ctx, size_t first, size_t count, double *buf, mq_error *err);
  mq_status (*read_h_diag)(void *ctx, double *diag, mq_error *err);
  void *ctx;
  int skip_errors; /* bench: no measurement pass (err, rel_err, err_floor, bound_linf = NaN) */
  /* Data-parallel sources: this rank holds only samples [local_first, local_first+local_count)
   * and read_samples is asked for nothing else. The sums are chunked at multiples of `chunk`
   * (local_first must be one; so must the local end unless it is n), so H keeps its bits on any
   * rank count as long as every chunk is computed alike. Errors are then measured on the local
   * samples for every row (bound_linf is NaN). read_weight_rows must serve every row. */
  int samples_local;
  size_t local_first, local_count, chunk;
  float *dequant_out;       /* when not NULL: every row's Ŵ [rows, cols], on every rank */
  mq_hessian_cache *cache;  /* may be NULL */
} mq_layer_source;

typedef struct mq_h5_source_ctx {
  mq_h5_problem *pf;
  size_t index;
} mq_h5_source_ctx;

void mq_layer_source_h5(mq_layer_source *src, mq_h5_source_ctx *ctx, mq_h5_problem *pf,
                        size_t index);

/* Seconds per phase, the maximum over ranks, and what crossed the network. */
typedef struct mq_layer_phases {
  double hessian, factor, refit, sweep, sweep_gemm, pack, errors, total;
  double hessian_flops, factor_flops, refit_flops, sweep_flops, sweep_gemm_flops;
  double comm_bytes; /* bytes this rank sent in reductions and panel fetches, summed over ranks */
} mq_layer_phases;

/* Collective over comm. res receives this rank's rows [*row0, *row0 + res->rows) (arrays owned
 * by res) and the layer's scalars, identical on every rank. phases may be NULL. On failure
 * every rank returns the same status; the message is on the rank(s) that failed. */
mq_status mq_layer_job_run(MPI_Comm comm, const mq_layer_source *src,
                           const mq_quant_options *opts, mq_layer_result *res, size_t *row0,
                           mq_layer_phases *phases, mq_error *err);

#endif
