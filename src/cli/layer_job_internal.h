/* The insides of a layer job (layer_job.c) shared with its measurement half (layer_measure.c):
 * the job's state, the chunking of the samples, and the error pass. Not a public interface. */
#ifndef MQ_CLI_LAYER_JOB_INTERNAL_H
#define MQ_CLI_LAYER_JOB_INTERNAL_H

#include "cli/layer_job.h"
#include "core/layer.h"
#include "core/measure.h"

/* Everything a layer's steps share. */
typedef struct job {
  MPI_Comm comm;
  int rank, nranks;
  const mq_layer_source *src;
  const mq_h5_layer_info *li;
  int qronos;     /* needs G = X̃ᵀX/n */
  size_t row0, nrows; /* this rank's rows */
  size_t chunk;       /* samples per chunk of the sums (MQ_CHUNK or the source's) */
  float *W;       /* [nrows, cols] */
  float *Wall;    /* every row of W [rows, cols] when need_all_rows; else NULL */
  int need_all_rows; /* data-parallel sources whose errors come from the samples (not the
                        Grams), or --lambda auto with Qronos: they measure every row */
  double *X, *Xq; /* [chunk, cols] sample buffers */
  double *Hdiag;  /* distributed H (H never whole on a rank): its diagonal [cols]; else NULL */
  int panel_scale, panel_scale_g; /* distributed H from samples: the exact sums' scales of H's
                                     and G's panels (from samples_diag) */
  double *eH, *eG, *eHxx; /* errors from the Grams (data-parallel sources): X̃ᵀX̃, X̃ᵀX, XᵀX
                             over n, [cols, cols]; else NULL */
} job;

/* W and D = W − Ŵ in double, row-major [rows, cols], for the rows whose errors this rank
 * measures: its own rows, or every row when What_all is given (data-parallel sources, whose
 * samples are split instead). */
typedef struct residual {
  double *Wd, *D;
  size_t rows;
} residual;

/* Collective: the worst status of all ranks, so none enters the next collective alone. */
mq_status mq__job_agree(const job *j, mq_status st);

/* Chunk k of the samples is [k·chunk, (k+1)·chunk) ∩ [first, first+count); this rank's chunks
 * are [*k0, *k1) (see layer_measure.c), chunk k's first sample and length by chunk_len. */
void mq__job_chunks(const job *j, size_t first, size_t count, size_t *k0, size_t *k1);
size_t mq__job_chunk_len(const job *j, size_t first, size_t count, size_t k, size_t *start);

/* Collective. Every rank's rows of Ŵ, dequantized, into What_all [rows, cols] on every rank. */
mq_status mq__job_gather_dequantized(const job *j, const mq_layer_result *res, float *What_all,
                                     mq_error *err);
/* Local. The residual of this rank's rows, or of every row when What_all is given. */
mq_status mq__residual_make(const job *j, const mq_layer_result *res, const float *What_all,
                            residual *r, mq_error *err);
void mq__residual_free(residual *r);
/* Local. The error sums of r's rows over the samples [first, first+count) this rank measures. */
mq_status mq__job_sample_errors(job *j, size_t first, size_t count, const residual *r,
                                mq_err_accum *acc, mq_linf_accum *linf, mq_error *err);
/* Collective. err, rel_err, err_floor, bound_linf and the summed scalars of res. */
mq_status mq__job_finish_errors(job *j, const double *Hgiven, const float *What_all,
                                const mq_quant_options *o, const mq_layer_aux *aux, int measure,
                                mq_layer_result *res, mq_error *err);

#endif
