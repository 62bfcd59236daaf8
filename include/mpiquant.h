/* mpiquant: MPI-distributed post-training quantization (OPTQ/GPTQ, Qronos, RTN).
 *
 * Public API (docs/ARCHITECTURE.md). Everything collective runs on a context created on a
 * communicator (mq_ctx_create / mq_ctx_destroy); a call marked "Collective" must be made by
 * every rank of the context with the same arguments where it says so, and returns the status
 * all ranks agreed on, the cause in mq_ctx_error() of the rank(s) that failed. Status codes
 * equal the program's exit statuses (docs/CONTRACT.md): 0 ok, 1 other failure, 2 usage, 3 bad
 * input, 4 numerical failure. */
#ifndef MPIQUANT_H
#define MPIQUANT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpiquant/numerics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the context ---- */

typedef struct mq_ctx mq_ctx;

/* Collective over comm (duplicates it). Returns MQ_OK, or MQ_EFAIL with *ctx NULL. */
int mq_ctx_create(MPI_Comm comm, mq_ctx **ctx);
/* Collective. Accepts NULL and *ctx == NULL; nulls the handle. */
void mq_ctx_destroy(mq_ctx **ctx);
int mq_ctx_rank(const mq_ctx *ctx);
int mq_ctx_size(const mq_ctx *ctx);
MPI_Comm mq_ctx_comm(const mq_ctx *ctx);
/* This rank's first failure (status MQ_OK when it had none: another rank failed). */
const mq_error *mq_ctx_error(const mq_ctx *ctx);
/* Log level of the library's progress lines (0 quiet … 3 info [default], 4 debug): "[mpiquant]"
 * lines on stderr from rank 0. */
void mq_ctx_set_verbosity(mq_ctx *ctx, int level);

/* ---- one layer, distributed over the ranks of a context ---- */

/* Which calibration inputs: X of the full-precision model, or X̃ of the partially quantized
 * one (defaults to X when a layer has none). */
typedef enum mq_samples { MQ_SAMPLES_X = 0, MQ_SAMPLES_XQ = 1 } mq_samples;
/* Which second-moment matrix a layer given without samples provides: H = X̃ᵀX̃/n, G = X̃ᵀX/n. */
typedef enum mq_matrix { MQ_MATRIX_H = 0, MQ_MATRIX_G = 1 } mq_matrix;

/* What a layer is: its shape and which data the source can serve. */
typedef struct mq_layer_desc {
  const char *name; /* for messages and results */
  size_t rows, cols;
  size_t n;         /* calibration samples; 0 when only H (and G) are given */
  int has_x, has_xq, has_h, has_g;
} mq_layer_desc;

/* Where a layer's data comes from. Callbacks are called on any rank, for any range, possibly
 * several times; they return MQ_OK or a status with err filled. */
typedef struct mq_layer_source {
  mq_layer_desc desc;
  uint64_t layer_id; /* stochastic-rounding key */
  /* samples [first, first+count), row-major [count, cols] */
  mq_status (*read_samples)(void *user, mq_samples which, size_t first, size_t count,
                            double *buf, mq_error *err);
  /* rows [first, first+count) of W, row-major [count, cols] */
  mq_status (*read_weight_rows)(void *user, size_t first, size_t count, float *W,
                                mq_error *err);
  /* layers without samples: H or G, row-major [cols, cols] */
  mq_status (*read_matrix)(void *user, mq_matrix which, double *buf, mq_error *err);
  /* optional (NULL: H is read whole): rows [first, first+count) of H and its diagonal, so a
   * distributed factor never needs H whole on a rank */
  mq_status (*read_h_rows)(void *user, size_t first, size_t count, double *buf, mq_error *err);
  mq_status (*read_h_diag)(void *user, double *diag, mq_error *err);
  void *user;
} mq_layer_source;

/* Collective. Quantizes a layer: H (and G) summed exactly from every rank's share of the
 * samples (the same bits on any rank count), factored locally or with ScaLAPACK (opts->factor),
 * the rows split over the ranks. res receives this rank's rows [*row0, *row0 + res->rows) of
 * the packed result and the layer's scalars (errors, bounds, λ), identical on every rank. */
mq_status mq_quantize_layer(mq_ctx *ctx, const mq_layer_source *src, const mq_quant_options *opts,
                            mq_layer_result *res, size_t *row0);

/* The same from arrays every rank holds whole: W [rows, cols] and either samples X [n, cols]
 * (and X̃ = Xq, NULL for X̃ = X) or, with n = 0, H (and G for Qronos) [cols, cols]; all
 * row-major. Collective. */
typedef struct mq_layer_arrays {
  const char *name;
  size_t rows, cols, n;
  const float *W, *X, *Xq;
  const double *H, *G;
} mq_layer_arrays;
mq_status mq_quantize_layer_arrays(mq_ctx *ctx, const mq_layer_arrays *a,
                                   const mq_quant_options *opts, mq_layer_result *res,
                                   size_t *row0);

/* ---- whole models ---- */

typedef struct mq_model_quantize_args {
  const char *model_dir; /* Hugging Face layout: config.json, *.safetensors */
  const char *calib;     /* calibration tokens (.npy, .h5 /tokens, raw bytes) */
  const char *out;       /* result file (HDF5) */
  const char *json;      /* per-layer report, or NULL */
  size_t nsamples;       /* windows */
  size_t seqlen;         /* tokens per window; 0 = 2048 capped by the model */
  int resume;            /* continue a partial result file of the same settings */
  mq_quant_options opts;
  /* mixtures of experts: groups of ranks quantizing experts side by side (0 or 1: one group;
   * results do not depend on it); calibrate every expert on every token; experts the router
   * sends fewer tokens than expert_min_tokens are calibrated on every token */
  int expert_groups;
  int experts_all_tokens;
  size_t expert_min_tokens;
  /* node-local scratch: with spill set, the activation streams live in a file there (mapped;
   * the kernel writes them back under memory pressure) instead of in memory */
  const char *spill_dir;
  int spill;
} mq_model_quantize_args;

/* Collective. Quantizes every linear layer of the model block by block and writes a complete
 * result file at args->out (or none). */
mq_status mq_quantize_model(mq_ctx *ctx, const mq_model_quantize_args *args);

typedef struct mq_perplexity_args {
  const char *model_dir, *tokens;
  const char *quantized; /* result file whose tensors replace the checkpoint's, or NULL */
  size_t seqlen;         /* 0: 2048 capped by the model */
  size_t nwindows;       /* 0: all */
} mq_perplexity_args;

typedef struct mq_perplexity {
  double perplexity, nll; /* exp(mean NLL), mean NLL */
  size_t tokens, seqlen;  /* predicted tokens, window length */
} mq_perplexity;

/* Collective. Perplexity over non-overlapping windows; the same value on any rank count. */
mq_status mq_model_perplexity(mq_ctx *ctx, const mq_perplexity_args *args, mq_perplexity *out);

#ifdef __cplusplus
}
#endif
#endif /* MPIQUANT_H */
