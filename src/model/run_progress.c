/* Progress hooks of `quantize` (run_progress.h). */
#include "model/run_progress.h"

#include "core/optq.h"
#include "core/progress.h"
#include "model/llama.h"
#include "parallel/partition.h"

/* What the hooks need between calls: copied from the run's configuration at begin. */
static struct {
  int active, nblocks;
  int block, which;             /* the last layer begun (block −1: none yet) */
  mq_llama_config cfg; /* sizes only (its pointers are not followed) */
  mq_method method;
  size_t L;
  double tokens;                /* this rank's samples: nw·L */
  double rows[MQ_LIN_COUNT];    /* this rank's rows of each linear in the sweep */
} run;

/* This rank's rows of a layer: whole blocks of MQ_ROW_BLOCK (layer_engine.c's run_open). */
static double rows_share(size_t rows, int rank, int nranks) {
  size_t nblocks = (rows + MQ_ROW_BLOCK - 1) / MQ_ROW_BLOCK, b0, nb;
  mq_partition(nblocks, nranks, rank, &b0, &nb);
  size_t r0 = b0 * MQ_ROW_BLOCK < rows ? b0 * MQ_ROW_BLOCK : rows;
  size_t r1 = (b0 + nb) * MQ_ROW_BLOCK < rows ? (b0 + nb) * MQ_ROW_BLOCK : rows;
  return (double)(r1 - r0);
}

void mq_run_progress_begin(const mq_llama_config *cfg, const mq_quant_options *o, size_t L,
                           size_t nw, int rank, int nranks) {
  double work[MQ_PROGRESS_PHASES] = {0};
  run.active = 1;
  run.block = -1;
  run.which = MQ_LIN_DOWN; /* as if the block before the first had ended */
  run.cfg = *cfg;
  run.method = o->method;
  run.L = L;
  run.nblocks = cfg->num_hidden_layers;
  run.tokens = (double)nw * (double)L;
  size_t hid = (size_t)cfg->hidden_size;
  size_t qdim = (size_t)cfg->num_attention_heads * (size_t)cfg->head_dim;
  size_t inter = (size_t)cfg->intermediate_size;
  /* calibrate.c's stages of one block: q,k,v + attention, o, gate,up + activation, down */
  double block = mq_plan_window_flops(cfg, L, MQ_STAGE_LINEARS, hid, qdim) +
                 mq_plan_window_flops(cfg, L, MQ_STAGE_RESIDUAL, qdim, hid) +
                 mq_plan_window_flops(cfg, L, MQ_STAGE_LINEARS, hid, inter) +
                 mq_plan_window_flops(cfg, L, MQ_STAGE_RESIDUAL, inter, hid);
  work[MQ_PROGRESS_FORWARD] = (double)run.nblocks * (double)nw * block;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t r, c;
    double g, f, s;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &r, &c);
    run.rows[k] = rows_share(r, rank, nranks);
    mq_plan_linear_work(cfg, o->method, (mq_llama_linear)k, run.tokens, run.rows[k], &g, &f, &s);
    work[MQ_PROGRESS_SUMS] += (double)run.nblocks * g;
    work[MQ_PROGRESS_FACTOR] += (double)run.nblocks * f;
    work[MQ_PROGRESS_SWEEP] += (double)run.nblocks * s;
  }
  mq_progress_begin(work);
}

void mq_run_progress_layer(int block, int which, int read_back) {
  if (!run.active || which < 0 || which >= MQ_LIN_COUNT) return;
  run.block = block;
  run.which = which;
  mq_progress_where("block %d/%d %s", block + 1, run.nblocks, mq_llama_linear_names[which]);
  if (!read_back) return;
  double g, f, s;
  mq_plan_linear_work(&run.cfg, run.method, (mq_llama_linear)which, run.tokens, run.rows[which],
                      &g, &f, &s);
  mq_progress_forget(MQ_PROGRESS_SUMS, g);
  mq_progress_forget(MQ_PROGRESS_FACTOR, f);
  mq_progress_forget(MQ_PROGRESS_SWEEP, s);
}

void mq_run_progress_window(mq_plan_stage kind, size_t in_cols, size_t out_cols, size_t done,
                            size_t nw) {
  if (!run.active) return;
  if (done == 1) /* a stage starts: the block it belongs to (a norm after down_proj: the next) */
    mq_progress_where("block %d/%d",
                      run.block + 1 + (kind == MQ_STAGE_NORM && run.which == MQ_LIN_DOWN),
                      run.nblocks);
  mq_progress_tick(MQ_PROGRESS_FORWARD, nw ? (double)done / (double)nw : 1.0,
                   mq_plan_window_flops(&run.cfg, run.L, kind, in_cols, out_cols));
}

void mq_run_progress_end(void) {
  run.active = 0;
  mq_progress_end();
}
