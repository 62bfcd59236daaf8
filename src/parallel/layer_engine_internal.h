/* The insides of one layer's run through the engine, shared by its modules only:
 * layer_engine.c (orchestration), hessian_sums.c (exact sums and the distributed H's fills),
 * lambda_auto.c (held-out λ), layer_errors.c (the error pass). Not an interface. */
#ifndef MQ_PARALLEL_LAYER_ENGINE_INTERNAL_H
#define MQ_PARALLEL_LAYER_ENGINE_INTERNAL_H

#include "core/layer.h"
#include "core/measure.h"
#include "parallel/ctx.h"
#include "parallel/layer_engine.h"
#include "parallel/layer_plan.h"
#include "parallel/scalapack_factor.h"

/* Everything the steps of one layer share. */
typedef struct layer_run {
  mq_ctx *ctx;
  MPI_Comm comm; /* ctx->comm */
  const mq_layer_source *src;
  const mq_layer_extras *x; /* never NULL */
  const mq_layer_desc *desc;
  mq_layer_plan plan;
  int qronos;
  int gram_f32;       /* each chunk's Gram products in float32 (mq_quant_options) */
  size_t row0, nrows; /* this rank's rows */
  size_t chunk;       /* samples per chunk of the sums */
  float *W;           /* this rank's rows of W [nrows, cols] */
  float *W_every_row; /* [rows, cols] when plan.every_row; else NULL */
  double *X, *Xq;     /* [chunk, cols] sample buffers */
  double *Hdiag;      /* distributed H: its diagonal [cols]; else NULL */
  int panel_scale, panel_scale_g; /* distributed H from samples: the exact sums' scales of H's
                                     and G's panels (from mq__sums_diag) */
  double *gram_H, *gram_G, *gram_XX; /* MQ_ERRORS_GRAMS: X̃ᵀX̃, X̃ᵀX, XᵀX over n [cols, cols] */
} layer_run;

/* W and D = W − Ŵ in double, row-major [rows, cols], for the rows whose errors this rank
 * measures: its own rows, or every row (plan.every_row). */
typedef struct weight_delta {
  double *Wd, *D;
  size_t rows;
} weight_delta;

/* ---- chunks of the samples (hessian_sums.c) ---- */

/* Chunk k of the samples is [k·chunk, (k+1)·chunk) ∩ [first, first+count); this rank's chunks
 * are [*k0, *k1), chunk k's first sample and length by mq__chunk_len. */
void mq__chunks(const layer_run *r, size_t first, size_t count, size_t *k0, size_t *k1);
size_t mq__chunk_len(const layer_run *r, size_t first, size_t count, size_t k, size_t *start);

/* ---- sums (hessian_sums.c) ---- */

/* Collective. H = X̃ᵀX̃/count (and G = X̃ᵀX/count, Hxx = XᵀX/count when not NULL) over samples
 * [first, first+count), bit-identical for any number of ranks. */
mq_status mq__sums_gram(layer_run *r, size_t first, size_t count, double *H, double *G,
                        double *Hxx, mq_error *err);
/* Collective. diag(H) exactly, before any of H; fixes the panels' scales. */
mq_status mq__sums_diag(layer_run *r, double *diag, mq_error *err);
/* The distributed factor's fills (scalapack_factor.h's mq_dist_fill_fn): from the samples in
 * panels (collective) or from the file's rows of H (local). ctx is the layer_run. */
mq_status mq__fill_from_samples(void *ctx, mq_dist_factor *f, const size_t *perm, mq_error *err);
mq_status mq__fill_from_rows(void *ctx, mq_dist_factor *f, const size_t *perm, mq_error *err);
/* Qronos with a distributed H (core/layer.h's qronos_panels). Collective. */
mq_status mq__qronos_from_samples(void *ctx, const size_t *perm, const float *Wcm, size_t rows,
                                  double *target, float *V, mq_error *err);

/* ---- one factor and sweep (layer_engine.c) ---- */

/* Collective. This rank's rows quantized with H (and G) consumed, with the plan's factor;
 * with H = NULL (distributed H) the factor reads its blocks of H itself. */
mq_status mq__factor_and_sweep(layer_run *r, double *H, double *G, const mq_quant_options *o,
                               mq_layer_result *res, mq_rows_info *info, mq_error *err);

/* ---- --lambda auto (lambda_auto.c) ---- */

/* Collective. 80/20 split of the samples, six damps, the smallest held-out error wins; sets
 * o->lambda (mode absolute) and the trace in `trace`. */
mq_status mq__choose_lambda(layer_run *r, mq_quant_options *o, mq_layer_result *trace,
                            mq_error *err);

/* ---- errors (layer_errors.c) ---- */

/* Collective. Every rank's rows of Ŵ into What_every_row [rows, cols] on every rank. */
mq_status mq__gather_dequantized(const layer_run *r, const mq_layer_result *res,
                                 float *What_every_row, mq_error *err);
/* Local. The delta of this rank's rows, or of every row when What_every_row is given. */
mq_status mq__weight_delta_make(const layer_run *r, const mq_layer_result *res,
                                const float *What_every_row, weight_delta *d, mq_error *err);
void mq__weight_delta_free(weight_delta *d);
/* Local. The error sums of d's rows over the samples [first, first+count) this rank measures. */
mq_status mq__sample_errors(layer_run *r, size_t first, size_t count, const weight_delta *d,
                            mq_err_accum *acc, mq_linf_accum *linf, mq_error *err);
/* Collective. err, rel_err, err_floor, bound_linf and the summed scalars of res. */
mq_status mq__finish_errors(layer_run *r, const double *H_given, const float *What_every_row,
                            const mq_quant_options *o, const mq_rows_info *info,
                            mq_layer_result *res, mq_error *err);

#endif
