/* How one layer runs, decided once before any work (collective: every rank decides alike) and
 * logged with --verbose; the engine switches on it and derives nothing else. */
#ifndef MQ_PARALLEL_LAYER_PLAN_H
#define MQ_PARALLEL_LAYER_PLAN_H

#include "mpiquant.h"
#include "parallel/layer_engine.h"

typedef enum mq_plan_factor {
  MQ_PLAN_NO_FACTOR = 0,  /* RTN: no factor at all */
  MQ_PLAN_LOCAL = 1,      /* every rank factors its own copy (LAPACK) */
  MQ_PLAN_SCALAPACK = 2   /* 2-D block-cyclic pdpotrf, panels fetched just in time */
} mq_plan_factor;

typedef enum mq_plan_h_home {
  MQ_H_REPLICATED = 0,    /* every rank holds H whole (summed from samples, or read) */
  MQ_H_FILE_ROWS = 1,     /* distributed: the factor reads the rows of H it needs from the file */
  MQ_H_SAMPLE_PANELS = 2  /* distributed: H summed from the samples in row panels */
} mq_plan_h_home;

typedef enum mq_plan_errors {
  MQ_ERRORS_NONE = 0,     /* bench: not measured */
  MQ_ERRORS_SAMPLES = 1,  /* a pass over the samples */
  MQ_ERRORS_GRAMS = 2,    /* from X̃ᵀX̃, X̃ᵀX and XᵀX (shared by a group of layers) */
  MQ_ERRORS_H = 3,        /* layers given as H: from H */
  MQ_ERRORS_H_ROWS = 4,   /* layers given as H, distributed: streamed from H's rows */
  MQ_ERRORS_BY_CALLER = 5 /* the caller measures them (quantize: from the forward passes) */
} mq_plan_errors;

typedef struct mq_layer_plan {
  mq_plan_factor factor;
  mq_plan_h_home h_home;
  mq_plan_errors errors;
  int need_g;          /* Qronos with X̃ ≠ X: G = X̃ᵀX/n */
  int floor_only;      /* MQ_ERRORS_GRAMS for Qronos' err_floor alone: err and rel_err are the
                          caller's (errors_by_caller), so one rows×cols² product, not four */
  int every_row;       /* this rank measures every row (split samples), so W's every row and
                          every row's Ŵ are needed on every rank */
  int lambda_auto;     /* ALGORITHMS §3.3 held-out selection first */
  double replicated_bytes; /* what holding H (and its companions) whole costs a rank */
  double budget_bytes;     /* --mem-per-rank, else the node's memory over its ranks (min) */
} mq_layer_plan;

/* Collective over ctx. The plan for this layer and options; resolves opts->factor when auto. */
void mq__layer_plan_make(mq_ctx *ctx, const mq_layer_source *src, const mq_layer_extras *x,
                         mq_quant_options *opts, mq_layer_plan *plan);
/* What replicating H (and its companions) costs a rank for this layer: the rule --factor auto
 * and `mpiquant plan` share. */
double mq__layer_replicated_bytes(const mq_layer_desc *d, int qronos);
/* One line at debug level (--verbose). */
void mq__layer_plan_log(const mq_layer_plan *plan, const char *layer);

#endif
