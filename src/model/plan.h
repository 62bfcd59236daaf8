/* `mpiquant plan`: what a `quantize` run of a checkpoint will need, from its config.json alone
 * and without quantizing anything — memory per rank in each phase, the factor `--factor auto`
 * will choose, the flops of each phase, a time estimate at GEMM/SYRK rates measured on the spot
 * (core/gemm_probe.h), and an allocation that fits a node. Local and serial (no MPI).
 *
 * The memory formulas of `quantize` live here, in one place (README "Memory per rank"): the
 * streams and stage buffers of calibrate.c, one window's forward workspace (llama.c), the block
 * weights in float32 (full precision and quantized), the output errors' products of a group
 * (output_errors.c), and the layer engine of the largest layer (layer_plan.c's replicated
 * k·8·c² rule decides the factor). The busiest rank is rank 0: the first chunks of windows and
 * the writer of the non-block tensors. */
#ifndef MQ_MODEL_PLAN_H
#define MQ_MODEL_PLAN_H

#include <stddef.h>

#include "io/hfconfig.h"
#include "model/llama.h"
#include "mpiquant.h"

typedef struct mq_plan_args {
  size_t nsamples;         /* windows */
  size_t seqlen;           /* 0: 2048 capped by the model (as quantize) */
  int ranks;               /* P: the ranks of the planned run */
  int ranks_per_node;      /* ranks sharing one node's memory (--factor auto's budget) */
  int node_cores;          /* cores of a node */
  double node_mem;         /* bytes of a node */
  int probe;               /* measure the rates (0: none, the times are left at 0) */
  mq_quant_options opts;   /* method, factor, mem_per_rank */
} mq_plan_args;

/* Bytes per rank. The phases hold these at once: setup = tokens + streams + forward workspace +
 * the non-block tensors (rank 0); layers = tokens + streams + forward + block weights + output
 * products of a group + the engine (its Hessian phase or its sweep, whichever is larger). */
typedef struct mq_plan_memory {
  double tokens, streams, forward, outer, block, outputs, engine_hessian, engine_sweep;
  double setup, layers, peak; /* what mpiquant's allocator counts (peak_counted_bytes_per_rank) */
  double untouched; /* of the streams: stage buffers sized for the widest stage, never filled */
  double resident;  /* resident_base + peak − untouched (max_resident_bytes_per_rank) */
} mq_plan_memory;

typedef struct mq_model_plan {
  size_t L, nwin, windows_per_rank, tokens; /* tokens = nwin·L */
  size_t cols_max, rows_at_cols_max;        /* the largest layer (the engine's peak) */
  mq_factor_mode factor;                    /* what auto resolves to (or as given) */
  double replicated_bytes, budget_bytes;    /* auto's comparison for the largest layer */
  mq_plan_memory mem;
  /* flops of the whole run (all ranks): forward passes of both streams, Gram sums
   * (X̃ᵀX̃, and for Qronos X̃ᵀX and XᵀX), factors (replicated: every rank does each), sweeps */
  double flops_forward, flops_grams, flops_factor, flops_sweep;
  double rate_sgemm, rate_dgemm, rate_dsyrk; /* GFLOP/s of one rank, measured (0: not) */
  double resident_base; /* what this process holds besides counted allocations (VmRSS minus
                           mq_mem_current, after the probes touched BLAS' buffers): libraries
                           and MPI, as a quantize rank holds them */
  double sec_forward, sec_grams, sec_factor, sec_sweep, sec_total; /* per rank, estimated */
  /* suggested allocation for the given node shape */
  int sug_nodes, sug_ranks_per_node, sug_threads;
  double sug_peak, sug_seconds;
} mq_model_plan;

/* The layer engine's work on linear `which` for n samples and `rows` of its rows, in the units
 * its progress ticks count (core/progress.h): the Gram sums n·c² (Qronos 4·n·c²: X̃ᵀX̃, XᵀX and
 * X̃ᵀX), only for the first linear of a group sharing its inputs (q, o, gate, down: the others
 * reuse the cached H); the factor c³/3; the sweep rows·c². All zero for RTN. */
void mq_plan_linear_work(const mq_llama_config *cfg, mq_method method, mq_llama_linear which,
                         double n, double rows, double *grams, double *factor, double *sweep);
/* Flops of one calibrate.c forward stage on one window of L tokens, both streams: a norm
 * (none), a stage with linears (to out_cols: q, k, v and attention; or gate, up and the
 * activation when out_cols is the intermediate width) or a residual linear (in_cols → hidden). */
typedef enum mq_plan_stage { MQ_STAGE_NORM, MQ_STAGE_LINEARS, MQ_STAGE_RESIDUAL } mq_plan_stage;
double mq_plan_window_flops(const mq_llama_config *cfg, size_t L, mq_plan_stage kind,
                            size_t in_cols, size_t out_cols);

/* Local. The plan of quantizing the model of cfg with a. MQ_EUSAGE when --seqlen exceeds the
 * model's limits (as quantize). */
mq_status mq_model_plan_make(const mq_llama_config *cfg, const mq_plan_args *a,
                             mq_model_plan *p, mq_error *err);

#endif
