/* Whole-model quantization (`mpiquant quantize`, mq_quantize_model in mpiquant.h): calibration windows drawn from a
 * token file and split across ranks (data parallel), then block by block two streams of hidden
 * states — the full-precision model's (X) and the quantized-so-far model's (X̃) — feed the
 * layer engine (parallel/layer_engine.h) in the true-sequential order [q,k,v] -> [o] -> [gate,up] ->
 * [down], each group's inputs recomputed after the previous group is quantized. Every rank
 * receives each layer's Ŵ and advances both streams for its windows. Phi-3 (cfg.fused): [q,k,v]
 * and [gate,up] are one layer each, qkv_proj and gate_up_proj, as its checkpoint stores them.
 * Gemma 2 (cfg.gemma2): the same groups and inputs; its residual stages add the post-normed
 * products, and each layer's output error is still measured on its own x·Wᵀ (model/llama.h).
 *
 * Results do not depend on the rank count: a window's activations are computed alike wherever
 * it lives (model/llama.h), and each window is one chunk of the exact Hessian sums.
 *
 * Memory per rank: the block being processed (fp and quantized weights; a fused layer of Phi-3
 * adds its W and Ŵ stacked while it is quantized) + the non-block tensors
 * of the rank 0 writer, and for its w windows of L tokens
 *   4 bytes · w · L · (2·hidden + 4·max(hidden, heads·head_dim, intermediate)),
 * plus the layer engine's cols² doubles for H (and G) and every row's W, Ŵ in double for the
 * error pass. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/layer.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/checkpoint_source.h"
#include "io/h5result.h"
#include "io/hfconfig.h"
#include "io/report.h"
#include "model/llama.h"
#include "model/moe_calibrate.h"
#include "model/output_errors.h"
#include "model/pipeline.h"
#include "model/run_progress.h"
#include "parallel/ctx.h"
#include "parallel/interrupt.h"
#include "parallel/layer_engine.h"

/* ---- the layer engine's view of the activations ---- */

static mq_status act_samples(void *user, mq_samples which, size_t first, size_t count,
                             double *buf, mq_error *err) {
  const pipeline *p = user;
  const float *x = which == MQ_SAMPLES_X ? p->xf : p->xq;
  size_t lo = p->w0 * p->L, cols = p->xcols;
  if (first < lo || first + count > lo + p->nw * p->L)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                    "internal error: samples %zu..%zu are not on this rank", first, first + count);
  const float *src = x + (first - lo) * cols;
  for (size_t k = 0; k < count * cols; k++) {
    buf[k] = src[k];
    if (!isfinite(buf[k])) /* float32 overflow in the forward pass: no result is trustworthy */
      return mq__fail(err, MQ_ENUMERIC, __FILE__, __LINE__,
                      "%s: non-finite activation (token %zu of the calibration windows, %s "
                      "stream) entering this layer", p->layer_name, first + k / cols,
                      which == MQ_SAMPLES_X ? "full-precision" : "quantized");
  }
  return MQ_OK;
}

static mq_status act_weight_rows(void *user, size_t first, size_t count, float *W,
                                 mq_error *err) {
  const pipeline *p = user;
  (void)err;
  memcpy(W, p->w_src + first * p->xcols, count * p->xcols * sizeof *W);
  return MQ_OK;
}

/* ---- one layer ---- */

/* ---- progress and interruption (issue 12) ---- */

/* ETA: the remaining layers at this run's cost per quantized layer (layer engine) plus its cost
 * per layer of everything else (forward passes, writes), which layers read back by --resume
 * pay too (their block's streams are still advanced). */
static void progress(pipeline *p, int block, const char *name, const mq_layer_result *res) {
  p->layers_done++;
  p->layers_quantized++;
  double elapsed = mq_wtime() - p->t_start;
  double engine = p->t_layers / (double)p->layers_quantized;
  double other = (elapsed - p->t_layers) / (double)p->layers_done;
  double eta = (engine + other) * (double)(p->layers_total - p->layers_done);
  MQ_INFO("block %d/%d %s: rel_err %.4g  bound %.4g  lambda %.3g  %.2fs  layer %zu/%zu  "
          "elapsed %.1fs  ETA %.1fs", block + 1, p->cfg.num_hidden_layers, name, res->rel_err,
          res->bound_l2, res->lambda, res->seconds, p->layers_done, p->layers_total, elapsed, eta);
}

/* Collective. A safe point: every layer so far is written and flushed. Stops every rank
 * together (MQ_EINTERRUPTED) when any received SIGTERM/SIGUSR1 (parallel/interrupt.h); not
 * after the last layer, where finishing is quicker than stopping. */
static mq_status safe_point(pipeline *p, mq_error *err) {
  if (p->layers_done == p->layers_total) return MQ_OK;
  return mq_interrupt_check(p->comm, err);
}
/* ---- end of progress and interruption ---- */

/* Collective. A layer an interrupted run already wrote (--resume): its Ŵ from the file, read
 * by every rank, instead of quantizing it again — the same bits the engine would give. */
static mq_status resume_linear(pipeline *p, int block, const char *name, size_t rows,
                               size_t cols, float *What, mq_error *err) {
  mq_status st = MQ_OK;
  mq_layer_result res = {0};
  st = mq_h5_result_read_layer(p->rf, name, p->opts.bits, &res, err);
  if (st == MQ_OK && (res.rows != rows || res.cols != cols))
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: /layers/%s: --resume: shape %zux%zu, "
                  "the model has %zux%zu", p->args->out, name, res.rows, res.cols, rows, cols);
  if (st == MQ_OK) st = mq_layer_result_dequantize(&res, What, err);
  MQ_AGREE(p->comm, st);
  p->layers_done++;
  MQ_INFO("block %d/%d %s: written by the interrupted run, read back", block + 1,
          p->cfg.num_hidden_layers, name);
cleanup:
  mq_layer_result_free(&res);
  return st;
}

/* Collective. Quantizes linear `which` of block `block` from the current inputs; its Ŵ (every
 * row) goes into q->w[which]. */
static mq_status quantize_linear(pipeline *p, int block, mq_llama_linear which,
                                 const mq_llama_block *fp, mq_llama_block *q, mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  size_t rows, cols;
  snprintf(name, sizeof name, "model.layers.%d.%s", block, mq_llama_linear_names[which]);
  mq_llama_linear_shape(&p->cfg, which, &rows, &cols);
  q->w[which] = mq_alloc(rows * cols, sizeof *q->w[which]);
  st = q->w[which] ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (%s)", name);
  MQ_AGREE(p->comm, st);
  int done = p->resumed && mq_h5_result_layer_done(p->rf, name);
  MPI_Allreduce(MPI_IN_PLACE, &done, 1, MPI_INT, MPI_MIN, p->comm);
  mq_run_progress_layer(block, (int)which, done); /* progress lines (run_progress.h) */
  if (done) {
    p->cache.valid = 0; /* the next layer of the group computes its own H */
    return resume_linear(p, block, name, rows, cols, q->w[which], err);
  }
  p->w_src = fp->w[which];
  p->layer_name = name;
  mq_layer_source src = {
      .desc = {.name = name, .rows = rows, .cols = cols, .n = p->nwin * p->L, .has_x = 1,
               .has_xq = 1},
      .layer_id = (uint64_t)block * MQ_LIN_COUNT + (uint64_t)which,
      .read_samples = act_samples, .read_weight_rows = act_weight_rows, .user = p};
  mq_layer_extras extras = {
      .samples_local = 1, .local_first = p->w0 * p->L, .local_count = p->nw * p->L,
      .chunk = p->chunk_windows * p->L, .dequant_out = q->w[which], .cache = &p->cache,
      .errors_by_caller = 1};
  double t0 = mq_wtime();
  struct pending *pl = &p->pending[which];
  MQ_CHECK(mq__layer_engine_run(p->ctx, &src, &extras, &p->opts, &pl->res, &pl->row0,
                                &pl->phases));
  pl->active = 1;
  p->t_layers += mq_wtime() - t0;
  if (isnan(pl->res.err)) MQ_AGREE(p->comm, mq_output_errors_arm(p->oe, which, err));
cleanup:
  return st;
}

/* Local. Copies rows between a fused layer's stacked buffer all [rows, hidden] and its
 * linears' weights w[first..last]: into all when to_all, else out of it. */
static void fused_copy(const mq_llama_config *cfg, const mq_llama_fused *f, float *all,
                       float *const *w, int to_all) {
  size_t row0 = 0;
  for (int k = (int)f->first; k <= (int)f->last; k++) {
    size_t rows = 0, cols = 0;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &rows, &cols);
    if (to_all) memcpy(all + row0 * cols, w[k], rows * cols * sizeof *all);
    else memcpy(w[k], all + row0 * cols, rows * cols * sizeof *all);
    row0 += rows;
  }
}

/* Collective. Quantizes fused module f of block `block` (Phi-3's qkv_proj or gate_up_proj) as
 * ONE layer under its own name from the current inputs: W is the covered linears' rows stacked
 * (OPTQ's rows are independent given H, so this is the layer the checkpoint has), and its Ŵ
 * (every row) is split back into q->w[first..last] for the quantized stream. Its output error
 * is measured over all the covered linears' products (write_group). */
static mq_status quantize_fused(pipeline *p, int block, const mq_llama_fused *f,
                                const mq_llama_block *fp, mq_llama_block *q, mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  size_t rows = mq_llama_fused_rows(&p->cfg, f), cols = (size_t)p->cfg.hidden_size;
  snprintf(name, sizeof name, "model.layers.%d.%s", block, f->module);
  p->fused_w = mq_alloc(rows * cols, sizeof *p->fused_w);
  p->fused_what = mq_alloc(rows * cols, sizeof *p->fused_what);
  int ok = p->fused_w != NULL && p->fused_what != NULL;
  for (int k = (int)f->first; k <= (int)f->last; k++) {
    size_t r = 0, c = 0;
    mq_llama_linear_shape(&p->cfg, (mq_llama_linear)k, &r, &c);
    q->w[k] = mq_alloc(r * c, sizeof *q->w[k]);
    ok = ok && q->w[k] != NULL;
  }
  st = ok ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (%s)", name);
  MQ_AGREE(p->comm, st);
  int done = p->resumed && mq_h5_result_layer_done(p->rf, name);
  MPI_Allreduce(MPI_IN_PLACE, &done, 1, MPI_INT, MPI_MIN, p->comm);
  for (int k = (int)f->last; k >= (int)f->first; k--) /* progress: ends labelled first */
    mq_run_progress_layer(block, k, done);
  p->cache.valid = 0;
  p->cache.keep = 0; /* the group's only layer */
  if (done) {
    MQ_CHECK(resume_linear(p, block, name, rows, cols, p->fused_what, err));
  } else {
    fused_copy(&p->cfg, f, p->fused_w, fp->w, 1);
    p->w_src = p->fused_w; /* the engine's weight rows */
    p->layer_name = name;
    mq_layer_source src = {
        .desc = {.name = name, .rows = rows, .cols = cols, .n = p->nwin * p->L, .has_x = 1,
                 .has_xq = 1},
        .layer_id = (uint64_t)block * MQ_LIN_COUNT + (uint64_t)f->first,
        .read_samples = act_samples, .read_weight_rows = act_weight_rows, .user = p};
    mq_layer_extras extras = {
        .samples_local = 1, .local_first = p->w0 * p->L, .local_count = p->nw * p->L,
        .chunk = p->chunk_windows * p->L, .dequant_out = p->fused_what, .cache = &p->cache,
        .errors_by_caller = 1};
    double t0 = mq_wtime();
    struct pending *pl = &p->pending[f->first];
    MQ_CHECK(mq__layer_engine_run(p->ctx, &src, &extras, &p->opts, &pl->res, &pl->row0,
                                  &pl->phases));
    pl->active = 1;
    pl->fused = f;
    p->t_layers += mq_wtime() - t0;
    for (int k = (int)f->first; isnan(pl->res.err) && k <= (int)f->last; k++)
      MQ_AGREE(p->comm, mq_output_errors_arm(p->oe, (mq_llama_linear)k, err));
  }
  fused_copy(&p->cfg, f, p->fused_what, q->w, 0);
cleanup:
  mq_free(p->fused_w);
  mq_free(p->fused_what);
  p->fused_w = p->fused_what = NULL;
  p->w_src = NULL;
  return st;
}

/* Collective. The group's quantized layers [first, last], their output errors measured by the
 * stage that just ran: written and reported in order. */
static mq_status write_group(pipeline *p, int block, mq_llama_linear first, mq_llama_linear last,
                             mq_error *err) {
  mq_status st = MQ_OK;
  char name[160];
  for (int k = (int)first; k <= (int)last; k++) {
    struct pending *pl = &p->pending[k];
    if (!pl->active) continue; /* read back by --resume */
    size_t rows, cols;
    mq_llama_linear_shape(&p->cfg, (mq_llama_linear)k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s", block, mq_llama_linear_names[k]);
    mq_llama_linear upto = (mq_llama_linear)k; /* the linears whose products are its output */
    if (pl->fused != NULL) {
      rows = mq_llama_fused_rows(&p->cfg, pl->fused);
      snprintf(name, sizeof name, "model.layers.%d.%s", block, pl->fused->module);
      upto = pl->fused->last;
    }
    if (isnan(pl->res.err))
      MQ_CHECK(mq_output_errors_finish_range(p->oe, p->ctx, (mq_llama_linear)k, upto,
                                             p->nwin * p->L, &pl->res.err, &pl->res.rel_err));
    MQ_CHECK(mq_h5_result_write_layer(p->rf, name, rows, pl->row0, &pl->res, err));
    mq_report_set_number(p->report, "seconds_forward_rank0", p->t_forward); /* so far */
    mq_report_layer(p->report, name, &pl->res, rows, &pl->phases);
    progress(p, block, name, &pl->res);
    mq_layer_result_free(&pl->res);
    pl->active = 0;
    pl->fused = NULL;
  }
cleanup:
  return st;
}

static void pending_free(pipeline *p) {
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    mq_layer_result_free(&p->pending[k].res);
    p->pending[k].active = 0;
    p->pending[k].fused = NULL;
  }
}

/* ---- the experts of a mixture-of-experts block (moe_calibrate.h) ---- */

static int expert_done(void *user, const char *name) {
  pipeline *p = user;
  int done = p->resumed && mq_h5_result_layer_done(p->rf, name);
  MPI_Allreduce(MPI_IN_PLACE, &done, 1, MPI_INT, MPI_MIN, p->comm);
  return done;
}

static mq_status expert_read_back(void *user, const char *name, size_t rows, size_t cols,
                                  float *What, mq_error *err) {
  pipeline *p = user;
  return resume_linear(p, p->block, name, rows, cols, What, err);
}

static mq_status expert_write(void *user, const char *name, size_t total_rows, size_t row0,
                              mq_layer_result *res, const mq_layer_phases *ph, mq_error *err) {
  mq_status st = MQ_OK;
  pipeline *p = user;
  MQ_CHECK(mq_h5_result_write_layer(p->rf, name, total_rows, row0, res, err));
  mq_report_layer(p->report, name, res, total_rows, ph);
  progress(p, p->block, name, res);
cleanup:
  return st;
}

/* Collective. The experts of block fp, inputs af/aq (the post-attention norm); both streams
 * advanced. */
static mq_status quantize_experts(pipeline *p, const mq_llama_block *fp, mq_llama_block *q,
                                  mq_error *err) {
  const mq_model_quantize_args *a = p->args;
  mq_moe_run run = {
      .ctx = p->ctx, .cfg = &p->cfg, .opts = &p->opts, .fwd = &p->fwd, .L = p->L,
      .nwin = p->nwin, .chunk_windows = p->chunk_windows, .w0 = p->w0, .nw = p->nw,
      .groups = a->expert_groups, .all_tokens = a->experts_all_tokens,
      .min_tokens = a->expert_min_tokens,
      .hooks = {.done = expert_done, .read_back = expert_read_back, .write = expert_write,
                .user = p},
      .t_forward = &p->t_forward, .t_layers = &p->t_layers,
      .experts_all_tokens = &p->experts_all_tokens};
  return mq__moe_quantize_block(&run, fp, q, p->af, p->aq, p->hf, p->hq, err);
}

/* ---- one block ---- */

typedef void (*stage_fn)(mq_llama_ctx *, const mq_llama_block *, const float *in, float *out);

static void stage_attn_input(mq_llama_ctx *c, const mq_llama_block *b, const float *in, float *out) {
  mq_llama_attn_input(c, b, in, out);
}
static void stage_mlp_input(mq_llama_ctx *c, const mq_llama_block *b, const float *in, float *out) {
  mq_llama_mlp_input(c, b, in, out);
}

/* Local. out = stage(in) window by window for both streams (fp weights on the fp stream,
 * quantized-so-far weights on the other); the next group reads out. */
static void run_stage(pipeline *p, stage_fn fn, const mq_llama_block *fp, const mq_llama_block *q,
                      const float *in_f, const float *in_q, size_t in_cols, float *out_f,
                      float *out_q, size_t out_cols) {
  double t0 = mq_wtime();
  p->fwd.tap = mq_output_errors_armed(p->oe) ? mq_output_errors_tap(p->oe) : NULL;
  for (size_t w = 0; w < p->nw; w++) {
    size_t a = w * p->L;
    mq_output_errors_window(p->oe, w, 0);
    fn(&p->fwd, fp, in_f + a * in_cols, out_f + a * out_cols);
    mq_output_errors_window(p->oe, w, 1);
    fn(&p->fwd, q, in_q + a * in_cols, out_q + a * out_cols);
    mq_run_progress_window(fn == stage_attn_input || fn == stage_mlp_input ? MQ_STAGE_NORM
                           : MQ_STAGE_LINEARS, in_cols, out_cols, w + 1, p->nw);
  }
  p->fwd.tap = NULL;
  p->xf = out_f;
  p->xq = out_q;
  p->xcols = out_cols;
  p->t_forward += mq_wtime() - t0;
}

/* Local. h += x·Wᵀ for linear `which`, both streams. */
static void run_residual(pipeline *p, mq_llama_linear which, const mq_llama_block *fp,
                         const mq_llama_block *q) {
  double t0 = mq_wtime();
  size_t hid = (size_t)p->cfg.hidden_size;
  p->fwd.tap = mq_output_errors_armed(p->oe) ? mq_output_errors_tap(p->oe) : NULL;
  for (size_t w = 0; w < p->nw; w++) {
    size_t a = w * p->L;
    mq_output_errors_window(p->oe, w, 0);
    mq_llama_residual(&p->fwd, fp, which, p->xf + a * p->xcols, p->hf + a * hid);
    mq_output_errors_window(p->oe, w, 1);
    mq_llama_residual(&p->fwd, q, which, p->xq + a * p->xcols, p->hq + a * hid);
    mq_run_progress_window(MQ_STAGE_RESIDUAL, p->xcols, hid, w + 1, p->nw);
  }
  p->fwd.tap = NULL;
  p->t_forward += mq_wtime() - t0;
}

static void attention_stage(mq_llama_ctx *c, const mq_llama_block *b, const float *in, float *out) {
  mq_llama_attention(c, b, in, out);
}
static void mlp_act_stage(mq_llama_ctx *c, const mq_llama_block *b, const float *in, float *out) {
  mq_llama_mlp_act(c, b, in, out);
}

/* Collective. Quantizes linears [first, last] from the current inputs; they share them, so
 * they share H (and G). A fused config's [q,k,v] and [gate,up] are one layer each. */
static mq_status quantize_group(pipeline *p, int block, mq_llama_linear first,
                                mq_llama_linear last, const mq_llama_block *fp,
                                mq_llama_block *q, mq_error *err) {
  mq_status st = MQ_OK;
  p->cache.valid = 0; /* new inputs */
  const mq_llama_fused *f = mq_llama_fused_of(&p->cfg, first);
  if (f != NULL) return quantize_fused(p, block, f, fp, q, err); /* Phi-3: one layer */
  for (int k = (int)first; k <= (int)last; k++) {
    p->cache.keep = k < (int)last;
    MQ_CHECK(quantize_linear(p, block, (mq_llama_linear)k, fp, q, err));
  }
cleanup:
  return st;
}

/* Collective. One block: the four groups in the true-sequential order, then both streams
 * advanced through it. */
static mq_status run_block(pipeline *p, int block, mq_error *err) {
  mq_status st = MQ_OK;
  mq_llama_block fp = {0}, q = {0};
  size_t hid = (size_t)p->cfg.hidden_size, inter = (size_t)p->cfg.intermediate_size;
  size_t attn = (size_t)p->cfg.num_attention_heads * (size_t)p->cfg.head_dim;
  p->block = block;
  st = mq_llama_block_load(&p->ckpt, &p->cfg, block, &fp, err);
  if (st != MQ_OK) mq__error_blame(err, p->args->model_dir);
  MQ_AGREE(p->comm, st);
  q = fp; /* norms, biases, router shared; the weights are replaced as they are quantized */
  memset(q.w, 0, sizeof q.w);
  q.experts = NULL;
  q.nexperts = 0;
  run_stage(p, stage_attn_input, &fp, &fp, p->hf, p->hq, hid, p->af, p->aq, hid);
  MQ_CHECK(quantize_group(p, block, MQ_LIN_Q, MQ_LIN_V, &fp, &q, err));
  run_stage(p, attention_stage, &fp, &q, p->af, p->aq, hid, p->bf, p->bq, attn);
  MQ_CHECK(write_group(p, block, MQ_LIN_Q, MQ_LIN_V, err));
  MQ_CHECK(safe_point(p, err)); /* interrupt */
  MQ_CHECK(quantize_group(p, block, MQ_LIN_O, MQ_LIN_O, &fp, &q, err));
  run_residual(p, MQ_LIN_O, &fp, &q);
  MQ_CHECK(write_group(p, block, MQ_LIN_O, MQ_LIN_O, err));
  MQ_CHECK(safe_point(p, err)); /* interrupt */
  run_stage(p, stage_mlp_input, &fp, &fp, p->hf, p->hq, hid, p->af, p->aq, hid);
  if (fp.moe) {
    MQ_CHECK(quantize_experts(p, &fp, &q, err));
    MQ_CHECK(safe_point(p, err)); /* interrupt */
    goto cleanup;
  }
  MQ_CHECK(quantize_group(p, block, MQ_LIN_GATE, MQ_LIN_UP, &fp, &q, err));
  run_stage(p, mlp_act_stage, &fp, &q, p->af, p->aq, hid, p->bf, p->bq, inter);
  MQ_CHECK(write_group(p, block, MQ_LIN_GATE, MQ_LIN_UP, err));
  MQ_CHECK(safe_point(p, err)); /* interrupt */
  MQ_CHECK(quantize_group(p, block, MQ_LIN_DOWN, MQ_LIN_DOWN, &fp, &q, err));
  run_residual(p, MQ_LIN_DOWN, &fp, &q);
  MQ_CHECK(write_group(p, block, MQ_LIN_DOWN, MQ_LIN_DOWN, err));
  MQ_CHECK(safe_point(p, err)); /* interrupt */
cleanup:
  pending_free(p); /* after an interruption: nothing half-written */
  for (int k = 0; k < MQ_LIN_COUNT; k++) mq_free(q.w[k]);
  mq__moe_release_quantized(&q);
  mq_llama_block_free(&fp);
  mq_hessian_cache_free(&p->cache); /* also after an interruption inside a group */
  return st;
}

/* The run's figures in the --json report: what ran, and where the seconds went. */
static void report_run(pipeline *p, double total, double forward, double layers) {
  mq_report_set_string(p->report, "model", p->args->model_dir);
  mq_report_set_number(p->report, "nsamples", (double)p->nwin);
  mq_report_set_number(p->report, "seqlen", (double)p->L);
  mq_report_set_number(p->report, "seconds_total", total);
  mq_report_set_number(p->report, "seconds_forward_max_over_ranks", forward);
  mq_report_set_number(p->report, "seconds_layer_engine", layers);
  mq_report_set_number(p->report, "experts_calibrated_on_all_tokens",
                       (double)p->experts_all_tokens);
}

mq_status mq_quantize_model(mq_ctx *ctx, const mq_model_quantize_args *args) {
  mq_status st = MQ_OK;
  mq_error *err = &ctx->err;
  MPI_Comm comm = ctx->comm;
  pipeline p = {.ctx = ctx, .comm = comm, .rank = ctx->rank, .nranks = ctx->size, .args = args,
                .opts = args->opts};
  MQ_AGREE(comm, mq_quant_options_check(&args->opts, err));
  p.t_start = mq_wtime();
  st = mq__pipeline_open_local(&p, err);
  MQ_AGREE(comm, st);
  MQ_AGREE(comm, mq__pipeline_draw_windows(&p, err)); /* collective: the text is tokenized split over ranks */
  MQ_AGREE(comm, mq__pipeline_open_streams(&p, err));
  int nb = p.cfg.num_hidden_layers;
  p.layers_total = 0;
  for (int b = 0; b < nb; b++)
    p.layers_total += mq_llama_is_moe(&p.cfg, b)
                          ? (size_t)MQ_LIN_GATE + MQ_EXP_COUNT * mq_llama_expert_count(&p.cfg)
                      : p.cfg.fused ? 4 /* qkv_proj, o_proj, gate_up_proj, down_proj */
                                    : (size_t)MQ_LIN_COUNT;
  mq_run_progress_begin(&p.cfg, &p.opts, p.L, p.nw, p.rank, p.nranks); /* run_progress.h */
  MQ_INFO("%s: %d blocks, hidden %d, %zu windows x %zu tokens (%zu on this rank), %d ranks",
          args->model_dir, nb, p.cfg.hidden_size, p.nwin, p.L, p.nw, p.nranks);
  p.report = mq_report_create(args->json, p.rank, p.nranks, &p.opts);
  report_run(&p, NAN, NAN, NAN); /* model, sizes from the first layer on; seconds at the end */
  char key[640];
  mq__pipeline_resume_key(&p, key, sizeof key);
  mq_result_meta meta = {.opts = p.opts, .nranks = p.nranks, .resume_key = key};
  mq_resume_state state = MQ_RESUME_NONE;
  if (args->resume) MQ_CHECK(mq_h5_result_open_resume(comm, args->out, key, &p.rf, &state, err));
  if (state == MQ_RESUME_COMPLETE) {
    MQ_INFO("%s: complete already; nothing to resume", args->out);
    goto cleanup;
  }
  p.resumed = state == MQ_RESUME_PARTIAL;
  if (p.resumed) MQ_CHECK(mq_h5_result_clear_model(p.rf, err));
  else MQ_CHECK(mq_h5_result_create(comm, args->out, &meta, &p.rf, err));
  MQ_CHECK(mq_h5_result_set_checkpoint(
      p.rf, mq_checkpoint_source_hash(&p.ckpt, p.cfg.json_text, p.cfg.json_len), err));
  MQ_CHECK(mq__pipeline_write_model_part(&p, err));
  MQ_CHECK(safe_point(&p, err)); /* interrupt: before the first block */
  for (int b = 0; b < nb; b++) MQ_CHECK(run_block(&p, b, err));
  MQ_CHECK(mq_h5_result_finish(&p.rf, err));
  double total = mq_wtime() - p.t_start, fwd = p.t_forward, eng = p.t_layers;
  MPI_Allreduce(MPI_IN_PLACE, &fwd, 1, MPI_DOUBLE, MPI_MAX, comm);
  report_run(&p, total, fwd, eng);
  MQ_AGREE(comm, mq_report_finish(&p.report, comm, err));
  MQ_INFO("done: %zu layers in %.1fs (forward passes %.1fs, layer engine %.1fs, rest %.1fs)",
          p.layers_total, total, fwd, eng, total - fwd - eng);
cleanup:
  /* interrupt: the file holds every layer written so far and stays for --resume */
  if (st == MQ_EINTERRUPTED && p.rf != NULL) {
    mq_h5_result_keep_partial(p.rf);
    MQ_INFO("interrupted after layer %zu of %zu (%zu quantized by this run): %s keeps every "
            "finished layer, not complete; rerun with --resume", p.layers_done, p.layers_total,
            p.layers_quantized, args->out);
  }
  mq__pipeline_close(&p);
  return st;
}
