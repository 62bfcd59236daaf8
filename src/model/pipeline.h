/* The state of one `quantize` run shared by its two files (internal to src/model): calibrate.c
 * runs the blocks; calibrate_setup.c draws the windows, opens the checkpoint and the streams,
 * writes what is not quantized, keys --resume and closes the run. */
#ifndef MQ_MODEL_PIPELINE_H
#define MQ_MODEL_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "io/checkpoint_source.h"
#include "io/h5result.h"
#include "io/hfconfig.h"
#include "io/report.h"
#include "io/spill.h"
#include "model/llama.h"
#include "model/output_errors.h"
#include "mpiquant.h"
#include "parallel/ctx.h"
#include "parallel/hessian_cache.h"
#include "parallel/layer_engine.h"

enum { MQ_CHUNK_TOKENS = 1024 };

/* Everything the blocks share. Activations are row-major, one row per token, the rank's
 * windows one after the other. */
typedef struct pipeline {
  mq_ctx *ctx;
  MPI_Comm comm; /* ctx->comm */
  int rank, nranks;
  const mq_model_quantize_args *args;
  mq_quant_options opts;
  mq_llama_config cfg;
  mq_tensor_source ckpt;
  size_t L, nwin, w0, nw; /* tokens per window; windows: all, this rank's first and count */
  size_t chunk_windows;   /* windows per chunk of the exact Hessian sums */
  int32_t *tokens;        /* this rank's windows [nw, L] */
  mq_llama_ctx fwd;       /* forward-pass workspace of one window */
  size_t width;           /* max(hidden, heads·head_dim, intermediate) */
  float *hf, *hq;         /* residual streams, full precision / quantized [nw·L, hidden] */
  float *af, *aq, *bf, *bq; /* stage outputs of each stream [nw·L, width] */
  const float *xf, *xq;   /* the current group's inputs (one of the above) */
  size_t xcols;           /* their columns */
  const float *w_src;     /* the weights of the layer being quantized [rows, cols] */
  float *fused_w, *fused_what; /* a fused layer's W and Ŵ, its linears' rows stacked (owned) */
  const char *layer_name; /* its module name (messages) */
  mq_hessian_cache cache;
  /* A group's layers wait, quantized, until the forward stage after the group has measured
   * their output errors (output_errors.h); then they are written and reported. */
  struct pending {
    int active;
    const mq_llama_fused *fused; /* the fused layer (Phi-3) this is, at its first linear */
    mq_layer_result res; /* this rank's rows and the layer's scalars */
    size_t row0;
    mq_layer_phases phases;
  } pending[MQ_LIN_COUNT];
  mq_output_errors *oe;
  mq_h5_result *rf;
  int resumed;            /* rf is a partial file of an earlier run: written layers are read */
  uint64_t calib_hash;    /* FNV-1a of the calibration tokens (part of the resume key) */
  mq_report *report;
  size_t layers_done, layers_total;
  size_t layers_quantized; /* by this run (layers_done also counts those read back) */
  int block;              /* the block being quantized (messages) */
  size_t experts_all_tokens; /* mixture of experts: calibrated on every token (too few routed) */
  mq_spill spill;         /* --spill-dir: the streams' file mapping (else they are mq_alloc'd) */
  double t_start, t_forward, t_layers;
} pipeline;

/* Local. Config, checkpoint, window length, this rank's windows. */
mq_status mq__pipeline_open_local(pipeline *p, mq_error *err);
/* Collective (the calibration text is tokenized split across the ranks). The windows' tokens
 * of this rank, and the calibration hash. */
mq_status mq__pipeline_draw_windows(pipeline *p, mq_error *err);
/* Local. Buffers (in memory or, with --spill-dir, in a file mapping); both streams start as the
 * embeddings of this rank's windows. */
mq_status mq__pipeline_open_streams(pipeline *p, mq_error *err);
/* Collective. /model/config and every tensor that is not a quantized linear's weight. */
mq_status mq__pipeline_write_model_part(pipeline *p, mq_error *err);
/* Everything the codes depend on; --resume continues only a file with the same key. */
void mq__pipeline_resume_key(const pipeline *p, char *key, size_t len);
/* Collective (the result file's abort). Releases everything; accepts a partly opened run. */
void mq__pipeline_close(pipeline *p);

#endif
