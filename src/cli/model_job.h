/* Whole-model quantization (`mpiquant quantize`, SPEC.md): calibration windows drawn from a
 * token file and split across ranks (data parallel), then block by block two streams of hidden
 * states — the full-precision model's (X) and the quantized-so-far model's (X̃) — feed the
 * layer engine (cli/layer_job.h) in the true-sequential order [q,k,v] -> [o] -> [gate,up] ->
 * [down], each group's inputs recomputed after the previous group is quantized. Every rank
 * receives each layer's Ŵ and advances both streams for its windows.
 *
 * Results do not depend on the rank count: a window's activations are computed alike wherever
 * it lives (model/llama.h), and each window is one chunk of the exact Hessian sums.
 *
 * Memory per rank: the block being processed (fp and quantized weights) + the non-block tensors
 * of the rank 0 writer, and for its w windows of L tokens
 *   4 bytes · w · L · (2·hidden + 4·max(hidden, heads·head_dim, intermediate)),
 * plus the layer engine's cols² doubles for H (and G) and every row's W, Ŵ in double for the
 * error pass. */
#ifndef MQ_CLI_MODEL_JOB_H
#define MQ_CLI_MODEL_JOB_H

#include <mpi.h>
#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_model_job_args {
  const char *model_dir, *calib, *out, *json;
  const char *eval; /* quantize --eval TOKENS (run by the command after the job) */
  size_t nsamples; /* windows */
  size_t seqlen;   /* tokens per window; 0 = 2048 capped by max_position_embeddings */
  int resume;      /* continue a partial result file of the same settings */
  mq_quant_options opts;
} mq_model_job_args;

/* Collective over comm. Writes a complete result file (or none) at args->out. */
mq_status mq_model_job_run(MPI_Comm comm, const mq_model_job_args *args, mq_error *err);

#endif
