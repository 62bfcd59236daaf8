/* The progress hooks of `quantize` (calibrate.c): the run's work per phase on this rank from
 * the plan's formulas (model/plan.h), the label of the layer being done, and the forward
 * passes' windows as they go (core/progress.h prints and estimates). Local: no MPI; every rank
 * calls, only the rank that logs prints. */
#ifndef MQ_MODEL_RUN_PROGRESS_H
#define MQ_MODEL_RUN_PROGRESS_H

#include <stddef.h>

#include "io/hfconfig.h"
#include "model/plan.h"
#include "mpiquant.h"

/* A run of every block of cfg with options o: nw windows of L tokens on this rank, which is
 * `rank` of `nranks` (its share of each layer's rows in the sweep). */
void mq_run_progress_begin(const mq_llama_config *cfg, const mq_quant_options *o, size_t L,
                           size_t nw, int rank, int nranks);
/* Linear `which` of block `block` (0-based) starts; read_back: an interrupted run wrote it
 * already, so the engine's work on it is not coming. */
void mq_run_progress_layer(int block, int which, int read_back);
/* Window `done` (1-based) of this rank's nw has been through a forward stage of this kind
 * (mq_plan_window_flops). */
void mq_run_progress_window(mq_plan_stage kind, size_t in_cols, size_t out_cols, size_t done,
                            size_t nw);
/* Ends the run's progress (later ticks of the layer engine count for nothing). */
void mq_run_progress_end(void);

#endif
