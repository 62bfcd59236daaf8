/* The plan of a `quantize` run (model/plan.h): memory, flops and time from the config alone. */
#include "model/plan.h"

#include <math.h>
#include <stdio.h>

#include "core/gemm_probe.h"
#include "core/mem.h"
#include "core/status.h"
#include "model/llama.h"
#include "parallel/layer_plan.h"

enum { CHUNK_TOKENS = 1024 }; /* calibrate.c: windows per chunk of the exact sums */
enum { ATT_ROWS = 128, HEAD_ROWS = 64 }; /* llama.c's attention and logits tiles */
#define PANEL_BYTES (64.0 * 1048576.0) /* a ScaLAPACK-path H panel at most (README) */
/* Resident bytes a run holds that neither the allocator counts nor the plan's own process
 * shows, fitted to the demo model at 1-3 ranks on one node (tests/slurm/run_plan.py): Open MPI's
 * shared-memory transport per other rank of the node (per-peer FIFOs and fragments), and the
 * buffers of HDF5's collective writes. */
#define PEER_BYTES (4.0 * 1048576.0)
#define IO_BYTES (8.0 * 1048576.0)

/* Efficiencies against the probe rates (README "Layer benchmark": the exact sums and the
 * in-block sweep run below GEMM speed; one window's GEMMs are smaller than the probe's). */
#define EFF_FORWARD 0.7
#define EFF_GRAMS 0.5
#define EFF_FACTOR 0.5
#define EFF_SWEEP 0.3

static double maxd(double a, double b) { return a > b ? a : b; }

/* This process's resident bytes besides mpiquant's counted allocations; 0 when unknown. */
static double resident_base(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = 0.0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmRSS: %lf", &kib) == 1) break;
  if (f != NULL) fclose(f);
  return kib > 0 ? maxd(0.0, kib * 1024.0 - (double)mq_mem_current()) : 0.0;
}

/* One layer in the engine, bytes per rank (README "Memory per rank"; c cols, r rows, P ranks,
 * samples local in chunks of 1024): max(Hessian phase, sweep phase) plus the sample buffers. */
static void engine_bytes(const mq_plan_args *a, mq_factor_mode f, double r, double c,
                         double *hessian, double *sweep) {
  double P = a->ranks, c2 = c * c, samples = 16.0 * 1024.0 * c;
  int qronos = a->opts.method == MQ_METHOD_QRONOS;
  if (f == MQ_FACTOR_SCALAPACK) {
    /* hessian_sums.c's panels: rows of H filling 64 MiB, at least 64, at most all of them */
    double panel = 8.0 * c * fmin(fmax(64.0, floor(PANEL_BYTES / (8.0 * c))), c);
    double panels = (qronos ? 5.0 : 4.0) * panel + (qronos ? 4.0 * c * r / P : 0.0);
    *hessian = 12.0 * c2 / P + 16.0 * c * r / P + 8.0 * 128.0 * c + panels + samples;
    *sweep = 12.0 * c2 / P + 16.0 * c * r / P + 8.0 * 128.0 * c + samples;
  } else if (qronos) { /* G and its sums, G−H in float, T; the Grams X̃ᵀX, XᵀX and copies */
    *hessian = 48.0 * c2 + 8.0 * c * r / P + 32.0 * c2 + samples;
    *sweep = 20.0 * c2 + 17.0 * c * r / P + 32.0 * c2 + samples;
  } else { /* H, one chunk's partial sum, the 128-bit sums of H's triangle | R, W twice, codes */
    *hessian = 24.0 * c2 + 4.0 * c * r / P + samples;
    *sweep = 8.0 * c2 + 13.0 * c * r / P + samples;
  }
}

/* The engine's own rule (parallel/layer_plan.h) for a layer of c columns from samples. */
static double replicated_bytes(const mq_plan_args *a, double c) {
  mq_layer_desc d = {.cols = (size_t)c, .has_x = 1, .has_xq = 1};
  return mq__layer_replicated_bytes(&d, a->opts.method == MQ_METHOD_QRONOS);
}

/* ---- mixtures of experts (moe_calibrate.c) ---- */

static int sparse_blocks(const mq_llama_config *cfg) {
  int n = 0;
  for (int b = 0; b < cfg->num_hidden_layers; b++) n += mq_llama_is_moe(cfg, b);
  return n;
}

/* Weights (floats) of a sparse block's experts, and of its attention. */
static double expert_weights(const mq_llama_config *cfg) {
  double w = 0.0;
  for (size_t e = 0; e < mq_llama_expert_count(cfg); e++)
    for (int k = 0; k < MQ_EXP_COUNT; k++) {
      size_t r, c;
      mq_llama_expert_shape(cfg, e, (mq_expert_linear)k, &r, &c);
      w += (double)r * (double)c;
    }
  return w;
}

static double attention_weights(const mq_llama_config *cfg) {
  double w = 0.0;
  for (int k = MQ_LIN_Q; k <= MQ_LIN_O; k++) {
    size_t r, c;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &r, &c);
    w += (double)r * (double)c;
  }
  return w;
}

/* Flops of all experts of one sparse block over n tokens (each routed to k experts, the shared
 * one to all): forward products per stream, Gram sums, factors, sweeps. */
static void expert_work(const mq_llama_config *cfg, mq_method method, double n, double *lin,
                        double *grams, double *factor, double *sweep) {
  double E = cfg->num_experts, k = cfg->experts_per_tok, hid = cfg->hidden_size;
  *lin = *grams = *factor = *sweep = 2.0 * n * hid * E; /* the router */
  *grams = *factor = *sweep = 0.0;
  int rtn = method == MQ_METHOD_RTN, qronos = method == MQ_METHOD_QRONOS;
  for (size_t e = 0; e < mq_llama_expert_count(cfg); e++) {
    size_t r, c, rd, cd;
    mq_llama_expert_shape(cfg, e, MQ_EXP_GATE, &r, &c);
    mq_llama_expert_shape(cfg, e, MQ_EXP_DOWN, &rd, &cd);
    double tokens = e < (size_t)cfg->num_experts ? n * k / E : n, width = (double)r;
    *lin += tokens * 3.0 * 2.0 * hid * width;
    if (rtn) continue;
    *grams += tokens * (hid * hid + width * width) * (qronos ? 4.0 : 1.0);
    *factor += (hid * hid * hid + width * width * width) / 3.0 * (qronos ? 2.0 : 1.0);
    *sweep += (2.0 * width * hid * hid + hid * width * width) * (qronos ? 2.0 : 1.0);
  }
}

/* The memory of a run of a->ranks ranks, ranks_per_node of them per node. */
static void memory(const mq_llama_config *cfg, const mq_plan_args *a, mq_model_plan *p) {
  double L = (double)p->L, hid = cfg->hidden_size, inter = cfg->intermediate_size;
  double qdim = (double)cfg->num_attention_heads * cfg->head_dim;
  double kvdim = (double)cfg->num_key_value_heads * cfg->head_dim;
  double vocab = cfg->vocab_size, width = maxd(hid, maxd(qdim, inter));
  /* windows of the busiest rank: whole chunks, the first ones on rank 0 */
  size_t cw = p->L >= CHUNK_TOKENS ? 1 : CHUNK_TOKENS / p->L;
  size_t nchunks = (p->nwin + cw - 1) / cw, per = (nchunks + (size_t)a->ranks - 1) / (size_t)a->ranks;
  p->windows_per_rank = per * cw < p->nwin ? per * cw : p->nwin;
  double w = (double)p->windows_per_rank;
  mq_plan_memory *m = &p->mem;
  *m = (mq_plan_memory){0};
  m->tokens = 4.0 * w * L;
  m->streams = 4.0 * w * L * (2.0 * hid + 4.0 * width);
  double att = L * (qdim + 2.0 * kvdim) + ATT_ROWS * L;
  double work = maxd(maxd(att, L * inter), maxd(HEAD_ROWS * vocab, L * hid));
  m->forward = 4.0 * (L * (hid + qdim + inter) + work) + 8.0 * L * cfg->head_dim;
  m->outer = 4.0 * vocab * hid * (cfg->tie_word_embeddings ? 1.0 : 2.0) + 4.0 * hid;
  double block = 0.0;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t r, c;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &r, &c);
    block += (double)r * (double)c;
  }
  if (sparse_blocks(cfg) > 0) /* a sparse block holds its experts, not a dense MLP */
    block = maxd(block, attention_weights(cfg) + expert_weights(cfg));
  m->block = 2.0 * 4.0 * block; /* full precision and quantized, float32 */
  m->outputs = 4.0 * L * (qdim + 2.0 * kvdim); /* the armed q, k, v products of one window */
  if (sparse_blocks(cfg) > 0) { /* a round's rows of one expert (one group: sent and kept,
                                   received; both streams) and the forward's expert scratch */
    double widest = maxd(cfg->moe_intermediate_size, cfg->shared_expert_intermediate_size);
    double share = cfg->shared_expert_intermediate_size > 0
                       ? 1.0 : (double)cfg->experts_per_tok / cfg->num_experts;
    m->outputs = maxd(m->outputs, 24.0 * share * w * L * maxd(hid, widest));
    m->forward += 4.0 * L * (3.0 * hid + 2.0 * widest + cfg->num_experts);
  }
  /* the engine at its largest layer; groups of several layers keep H cached (8·c²) */
  double worst = -1.0;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t r, c;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &r, &c);
    double h, s, cache = (k == MQ_LIN_Q || k == MQ_LIN_K || k == MQ_LIN_GATE) ? 8.0 * (double)c * (double)c : 0.0;
    engine_bytes(a, p->factor, (double)r, (double)c, &h, &s);
    if (maxd(h, s) + cache > worst) {
      worst = maxd(h, s) + cache;
      m->engine_hessian = h + cache;
      m->engine_sweep = s + cache;
    }
  }
  double base = m->tokens + m->streams + m->forward;
  m->setup = base + m->outer;
  m->layers = base + m->block + m->outputs + maxd(m->engine_hessian, m->engine_sweep);
  m->peak = maxd(m->setup, m->layers);
  /* the stage buffers af/aq only ever hold hidden-wide inputs, bf/bq the attention output or
   * the MLP activations: the rest of their pages is never touched (not resident) */
  m->untouched = 4.0 * w * L * (2.0 * (width - hid) + 2.0 * (width - maxd(qdim, inter)));
  int peers = (a->ranks_per_node > 0 ? a->ranks_per_node : 1) - 1;
  m->resident = p->resident_base + IO_BYTES + PEER_BYTES * peers + m->peak - m->untouched;
}

void mq_plan_linear_work(const mq_llama_config *cfg, mq_method method, mq_llama_linear which,
                         double n, double rows, double *grams, double *factor, double *sweep) {
  size_t ri, ci;
  mq_llama_linear_shape(cfg, which, &ri, &ci);
  double c = (double)ci;
  int first = which == MQ_LIN_Q || which == MQ_LIN_O || which == MQ_LIN_GATE ||
              which == MQ_LIN_DOWN;
  int rtn = method == MQ_METHOD_RTN;
  *grams = !rtn && first ? n * c * c * (method == MQ_METHOD_QRONOS ? 4.0 : 1.0) : 0.0;
  *factor = rtn ? 0.0 : c * c * c / 3.0;
  *sweep = rtn ? 0.0 : rows * c * c;
}

/* Causal attention of one window: QKᵀ and PV over the lower triangle. */
static double attention_flops(const mq_llama_config *cfg, double L) {
  return 4.0 * L * L * cfg->num_attention_heads * cfg->head_dim / 2.0;
}

double mq_plan_window_flops(const mq_llama_config *cfg, size_t L, mq_plan_stage kind,
                            size_t in_cols, size_t out_cols) {
  double T = (double)L, hid = cfg->hidden_size, inter = cfg->intermediate_size;
  double qdim = (double)cfg->num_attention_heads * cfg->head_dim;
  double kvdim = (double)cfg->num_key_value_heads * cfg->head_dim;
  if (kind == MQ_STAGE_NORM) return 0.0;
  if (kind == MQ_STAGE_RESIDUAL) return 2.0 * 2.0 * T * (double)in_cols * hid;
  if ((double)out_cols == inter && inter != qdim) return 2.0 * 2.0 * T * hid * 2.0 * inter;
  return 2.0 * (2.0 * T * hid * (qdim + 2.0 * kvdim) + attention_flops(cfg, T));
}

static void flops(const mq_llama_config *cfg, const mq_plan_args *a, mq_model_plan *p) {
  double n = (double)p->tokens, L = (double)p->L, nb = cfg->num_hidden_layers;
  double lin = 0.0, grams = 0.0, factor = 0.0, sweep = 0.0;
  /* Qronos factors twice (H, then the refit's solves) and sweeps with its refit */
  double twice = a->opts.method == MQ_METHOD_QRONOS ? 2.0 : 1.0;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t ri, ci;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &ri, &ci);
    lin += 2.0 * (double)ri * (double)ci;
    double g, f, s;
    mq_plan_linear_work(cfg, a->opts.method, (mq_llama_linear)k, n, (double)ri, &g, &f, &s);
    grams += g;
    factor += twice * f;
    sweep += twice * s;
  }
  /* both streams, every window, every block */
  p->flops_forward = 2.0 * nb * (double)p->nwin * (L * lin + attention_flops(cfg, L));
  p->flops_grams = nb * grams;
  p->flops_factor = nb * factor;
  p->flops_sweep = nb * sweep;
  double ns = sparse_blocks(cfg);
  if (ns > 0) { /* sparse blocks: experts instead of the dense MLP */
    double elin, eg, ef, es, dlin = 0.0, dg = 0.0, df = 0.0, ds = 0.0;
    expert_work(cfg, a->opts.method, n, &elin, &eg, &ef, &es);
    for (int k = MQ_LIN_GATE; k < MQ_LIN_COUNT; k++) {
      size_t ri, ci;
      mq_llama_linear_shape(cfg, (mq_llama_linear)k, &ri, &ci);
      double g, f, s;
      mq_plan_linear_work(cfg, a->opts.method, (mq_llama_linear)k, n, (double)ri, &g, &f, &s);
      dlin += 2.0 * (double)ri * (double)ci * n;
      dg += g;
      df += twice * f;
      ds += twice * s;
    }
    /* the experts' inputs of the full-precision stream are computed on the quantized
     * stream's tokens too: three streams' worth of expert products */
    p->flops_forward += ns * (1.5 * 2.0 * elin - 2.0 * dlin);
    p->flops_grams += ns * (eg - dg);
    p->flops_factor += ns * (ef - df);
    p->flops_sweep += ns * (es - ds);
  }
}

static void times(mq_model_plan *p, int ranks, int threads, double *total) {
  double P = ranks, t = threads;
  double s = p->rate_sgemm * 1e9 * t, d = p->rate_dgemm * 1e9 * t, y = p->rate_dsyrk * 1e9 * t;
  if (s <= 0 || d <= 0 || y <= 0) {
    *total = 0.0;
    return;
  }
  p->sec_forward = p->flops_forward / P / (EFF_FORWARD * s);
  p->sec_grams = p->flops_grams / P / (EFF_GRAMS * y);
  /* local: every rank factors each layer; ScaLAPACK: split */
  p->sec_factor = p->flops_factor / (p->factor == MQ_FACTOR_SCALAPACK ? P : 1.0) / (EFF_FACTOR * d);
  p->sec_sweep = p->flops_sweep / P / (EFF_SWEEP * s);
  *total = p->sec_forward + p->sec_grams + p->sec_factor + p->sec_sweep;
}

/* The factor `auto` picks for the largest layer: layer_plan.c's rule. */
static void resolve_factor(const mq_plan_args *a, mq_model_plan *p) {
  double c = (double)p->cols_max;
  p->replicated_bytes = replicated_bytes(a, c);
  p->budget_bytes = a->opts.mem_per_rank > 0 ? (double)a->opts.mem_per_rank
                                             : a->node_mem / (a->ranks_per_node > 0 ? a->ranks_per_node : 1);
  p->factor = a->opts.factor;
  if (p->factor == MQ_FACTOR_AUTO)
    p->factor = p->replicated_bytes > p->budget_bytes && a->opts.method != MQ_METHOD_RTN &&
                        a->ranks > 1 ? MQ_FACTOR_SCALAPACK : MQ_FACTOR_LOCAL;
}

/* The smallest number of nodes (1, 2, 4, … 1024) on which a run with one rank per core fits
 * (fewer ranks per node with more threads each when a rank needs more than its share). */
static void suggest(const mq_llama_config *cfg, const mq_plan_args *a, mq_model_plan *p) {
  mq_plan_args t = *a;
  mq_model_plan q = *p;
  p->sug_nodes = 0;
  for (int nodes = 1; nodes <= 1024; nodes *= 2) {
    for (int rpn = a->node_cores; rpn >= 1; rpn /= 2) {
      t.ranks = nodes * rpn;
      t.ranks_per_node = rpn;
      if ((size_t)t.ranks > p->nwin && rpn > 1) continue; /* more ranks than windows */
      resolve_factor(&t, &q);
      memory(cfg, &t, &q);
      if (q.mem.peak * rpn > 0.9 * a->node_mem) continue;
      p->sug_nodes = nodes;
      p->sug_ranks_per_node = rpn;
      p->sug_threads = a->node_cores / rpn;
      p->sug_peak = q.mem.peak;
      times(&q, t.ranks, p->sug_threads, &p->sug_seconds);
      return;
    }
  }
}

mq_status mq_model_plan_make(const mq_llama_config *cfg, const mq_plan_args *a,
                             mq_model_plan *p, mq_error *err) {
  mq_status st = MQ_OK;
  *p = (mq_model_plan){0};
  size_t maxpos = cfg->max_position_embeddings > 0 ? (size_t)cfg->max_position_embeddings : 0;
  size_t window = cfg->sliding_window > 0 ? (size_t)cfg->sliding_window : 0;
  p->L = a->seqlen > 0 ? a->seqlen : 2048;
  if (a->seqlen == 0 && maxpos > 0 && p->L > maxpos) p->L = maxpos;
  if (a->seqlen == 0 && window > 0 && p->L > window) p->L = window;
  if (maxpos > 0 && p->L > maxpos)
    MQ_FAIL(err, MQ_EUSAGE, "--seqlen: %zu exceeds the model's max_position_embeddings (%zu)",
            p->L, maxpos);
  if (window > 0 && p->L > window)
    MQ_FAIL(err, MQ_EUSAGE, "--seqlen: %zu exceeds the model's sliding_window (%zu)", p->L, window);
  p->nwin = a->nsamples;
  p->tokens = p->nwin * p->L;
  for (int k = 0; k < MQ_LIN_COUNT; k++) {
    size_t r, c;
    mq_llama_linear_shape(cfg, (mq_llama_linear)k, &r, &c);
    if (c > p->cols_max) p->cols_max = c, p->rows_at_cols_max = r;
  }
  if (a->probe) {
    p->rate_sgemm = mq_gemm_rate(512, 1);
    p->rate_dgemm = mq_gemm_rate(512, 0);
    p->rate_dsyrk = mq_syrk_rate(512, 1024, 0);
  }
  p->resident_base = resident_base();
  resolve_factor(a, p);
  memory(cfg, a, p);
  flops(cfg, a, p);
  times(p, a->ranks, 1, &p->sec_total);
  suggest(cfg, a, p);
cleanup:
  return st;
}
