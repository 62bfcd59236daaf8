/* mpiquant's types and numerics that need no MPI: status codes and the error record, the
 * quantization options, a layer's packed result and its dequantization. Included by
 * mpiquant.h; the serial core (src/core) uses only this. */
#ifndef MPIQUANT_NUMERICS_H
#define MPIQUANT_NUMERICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_VERSION_MAJOR 0
#define MQ_VERSION_MINOR 1
#define MQ_VERSION_PATCH 0
#define MQ_VERSION_STRING "0.1.0"
#define MQ_FORMAT_VERSION 1
#define MQ_LAMBDA_AUTO_CANDIDATES 6 /* damp ∈ {1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1} */

typedef enum mq_status {
  MQ_OK = 0,
  MQ_EFAIL = 1,    /* anything else: out of memory, I/O failure on write, internal error */
  MQ_EUSAGE = 2,   /* bad command line */
  MQ_EINPUT = 3,   /* unreadable, malformed or inconsistent input */
  MQ_ENUMERIC = 4, /* numerical failure no fallback could fix */
  MQ_EINTERRUPTED = 5 /* stopped at a safe point by SIGTERM/SIGUSR1; resumable (--resume) */
} mq_status;

/* Error record threaded through every call: the first failure is kept with its origin. */
typedef struct mq_error {
  mq_status status;
  char msg[512];    /* "<file or option>: <what is wrong>", no trailing newline */
  const char *file; /* source location that raised it (for --verbose) */
  int line;
} mq_error;

void mq_error_clear(mq_error *err);
const char *mq_status_name(mq_status st);

typedef enum mq_method { MQ_METHOD_RTN = 0, MQ_METHOD_OPTQ = 1, MQ_METHOD_QRONOS = 2 } mq_method;
typedef enum mq_rounding { MQ_ROUND_NEAREST = 0, MQ_ROUND_STOCHASTIC = 1 } mq_rounding;
typedef enum mq_lambda_mode {
  MQ_LAMBDA_DAMP = 0,     /* λ = damp · mean(diag H) */
  MQ_LAMBDA_ABSOLUTE = 1, /* λ = lambda */
  MQ_LAMBDA_AUTO = 2      /* held-out selection (ALGORITHMS §3.3) */
} mq_lambda_mode;

typedef enum mq_factor_mode {
  MQ_FACTOR_AUTO = 0,     /* local while the layer fits comfortably on a rank */
  MQ_FACTOR_LOCAL = 1,    /* every rank factors its own copy (LAPACK) */
  MQ_FACTOR_SCALAPACK = 2 /* 2-D block-cyclic pdpotrf, panels fetched just in time */
} mq_factor_mode;

typedef struct mq_quant_options {
  mq_method method;
  mq_rounding rounding;
  int bits;          /* 2..8 */
  int group_size;    /* > 0, or -1 for one group per output row */
  int sym;           /* 1 symmetric, 0 asymmetric */
  int act_order;     /* process columns by decreasing diag(H) */
  int static_groups; /* group parameters from the original W, original order */
  int mse;           /* grid search of the clipping range */
  mq_lambda_mode lambda_mode;
  double damp;       /* for MQ_LAMBDA_DAMP */
  double lambda;     /* for MQ_LAMBDA_ABSOLUTE */
  int block_size;    /* sweep block size B */
  uint64_t seed;     /* stochastic rounding key */
  mq_factor_mode factor;
  uint64_t mem_per_rank; /* bytes a rank may use for a layer (auto factor); 0 = node memory /
                            ranks on the node */
  int scale_fp16;    /* every scale rounded up to a float16 value before it quantizes: the
                        codes are then exactly what a float16-scale format (GPTQ, GGUF) stores */
  int gram_f32;      /* each chunk's Gram products (X̃ᵀX̃, X̃ᵀX) in float32 (SSYRK/SGEMM)
                        instead of double: ~2× faster, ~1e-7 relative error in H; the chunks
                        are still summed exactly, so H keeps its bits on any rank count */
} mq_quant_options;

/* The spellings of the enums on the command line and in result files (index = enum value). */
extern const char *const mq_method_names[3];   /* "rtn", "optq", "qronos" */
extern const char *const mq_rounding_names[2]; /* "nearest", "stochastic" */

/* Fills the SPEC.md defaults: optq, nearest, 4 bits, group 128, sym, act-order, damp 0.01,
 * block 128, seed 0. */
void mq_quant_options_init(mq_quant_options *opts);
/* Checks ranges; on failure fills err (MQ_EUSAGE) naming the option. */
mq_status mq_quant_options_check(const mq_quant_options *opts, mq_error *err);

/* Number of uint32 words of one packed row: ceil(cols·bits/32). */
size_t mq_packed_words(size_t cols, int bits);
/* Number of groups of a row. */
size_t mq_ngroups(size_t cols, int group_size);

/* The quantized layer and its error accounting (SPEC.md result format). Arrays owned by the
 * result, released by mq_layer_result_free(). Row-major. */
typedef struct mq_layer_result {
  size_t rows, cols, ngroups, words; /* words = mq_packed_words(cols, bits) */
  int bits;
  uint32_t *qweight; /* [rows, words]   packed codes, columns in original order */
  float *scales;     /* [rows, ngroups] */
  int32_t *zeros;    /* [rows, ngroups] */
  int32_t *g_idx;    /* [cols]          group of each original column */
  double lambda;     /* absolute λ actually used (after any escalation) */
  double loss;       /* Σ_rows (w−q)ᵀ(H+λI)(w−q) accumulated by the sweep (Σ e²) */
  double err;        /* ‖XWᵀ − X̃Ŵᵀ‖²_F / n (from H when no X was given) */
  double rel_err;    /* ‖XWᵀ − X̃Ŵᵀ‖_F / ‖XWᵀ‖_F */
  double bound_l2;   /* a-priori bound of ALGORITHMS §6 */
  double bound_linf; /* NaN when not applicable */
  double err_floor;  /* Qronos ‖r₁‖²; 0 otherwise */
  int64_t clipped;   /* entries whose rounding hit the grid range */
  int lambda_raises; /* times λ was multiplied by 10 after a failed Cholesky */
  int64_t samples;   /* calibration samples (tokens) H was summed over */
  int64_t routed;    /* of the tokens, those the router sent to this expert (== samples for a
                        dense layer; an expert below --expert-min-tokens is calibrated on every
                        token: routed < samples) */
  int lambda_ncand;  /* --lambda auto: candidates tried (0 otherwise) */
  double lambda_cand[MQ_LAMBDA_AUTO_CANDIDATES];    /* absolute λ of each candidate */
  double lambda_heldout[MQ_LAMBDA_AUTO_CANDIDATES]; /* held-out error of each candidate */
  double seconds;
} mq_layer_result;

void mq_layer_result_free(mq_layer_result *res);
/* Ŵ[r, c] = scales[r, g] · (code[r, c] − zeros[r, g]), g = g_idx[c]: the dequantized rows of
 * res, row-major [res->rows, res->cols]. The one definition the engine, eval and export use. */
mq_status mq_layer_result_dequantize(const mq_layer_result *res, float *What, mq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MPIQUANT_NUMERICS_H */
