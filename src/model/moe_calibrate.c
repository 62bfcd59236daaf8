/* The experts of a mixture-of-experts block in `quantize` (see moe_calibrate.h).
 *
 * Samples of expert e: chunk c (windows [c·cw, (c+1)·cw)) holds counts[e, c] of them, the
 * routed tokens of its windows in window then token order. Ranks hold whole chunks of windows
 * (the pipeline's partition); the group that quantizes e holds whole chunks too (its own
 * partition of the same chunks), so a round of experts is one exchange: each rank sends each
 * group the rows of that group's expert in its chunks. Chunk k of expert e is then samples
 * [bounds[k], bounds[k+1]) of the engine's variable chunks (layer_engine.h). */
#include "model/moe_calibrate.h"

#include <limits.h>
#include <string.h>

#include "core/blas.h"
#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/ctx.h"
#include "parallel/hessian_cache.h"
#include "parallel/layer_engine.h"
#include "parallel/layer_groups.h"
#include "parallel/partition.h"

typedef enum stage { STAGE_GATE_UP, STAGE_DOWN } stage;

typedef struct moe_state {
  const mq_moe_run *m;
  const mq_llama_block *fp;
  mq_llama_block *q;
  const float *xf, *xq;   /* post-attention norm, both streams [nw·L, hidden] */
  size_t E, k, hid;       /* experts (with the shared one), experts per token, hidden */
  size_t nchunks;
  int32_t *sel;           /* the quantized stream's routing [nw·L, k] */
  uint64_t *counts;       /* [E, nchunks] samples of expert e in chunk c */
  uint64_t *routed;       /* [E] tokens the router sends to expert e */
  unsigned char *every;   /* [E] calibrated on every token */
  int G, g;               /* expert groups, this rank's */
  mq_ctx *group;
  float *gather, *act, *up; /* one window's scratch [L, hidden], [L, widest], [L, widest] */
} moe_state;

/* The samples an engine run of one expert reads. */
typedef struct expert_samples {
  const moe_state *s;
  size_t e;
  mq_expert_linear which;
  float *X, *Xq;          /* this group rank's samples [n_local, cols], global order */
  size_t first, count, cols;
  size_t *bounds;         /* [nchunks + 1] */
} expert_samples;

static size_t chunk_windows_in(const moe_state *s, size_t c) {
  size_t cw = s->m->chunk_windows, a = c * cw, b = a + cw < s->m->nwin ? a + cw : s->m->nwin;
  return b - a;
}

/* This rank's (pipeline) chunks, and those of rank r. */
static void pipeline_chunks(const moe_state *s, int r, size_t *c0, size_t *nc) {
  mq_partition(s->nchunks, s->m->ctx->size, r, c0, nc);
}

/* Chunks of group rank q (of gsize) in the group partition. */
static void group_chunks(const moe_state *s, int gsize, int q, size_t *c0, size_t *nc) {
  mq_partition(s->nchunks, gsize, q, c0, nc);
}

/* Tokens of expert e in local window w: tok[0..n), returned n. */
static size_t window_tokens(const moe_state *s, size_t e, size_t w, int32_t *tok) {
  size_t L = s->m->L;
  if (s->every[e]) {
    for (size_t t = 0; t < L; t++) tok[t] = (int32_t)t;
    return L;
  }
  return mq_llama_expert_tokens(s->m->cfg, s->sel + w * L * s->k, L, e, tok);
}

/* Collective. Routing of the quantized stream, each expert's samples per chunk, and which
 * experts fall back to every token. */
static mq_status count_samples(moe_state *s, int32_t *tok, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  size_t L = m->L, E = s->E, nc = s->nchunks;
  for (size_t w = 0; w < m->nw; w++)
    mq_llama_route(m->fwd, s->fp, s->xq + w * L * s->hid, s->sel + w * L * s->k,
                   m->fwd->moe_weight);
  for (size_t e = 0; e < E; e++) {
    s->every[e] = 0;
    for (size_t w = 0; w < m->nw; w++)
      s->counts[e * nc + (m->w0 + w) / m->chunk_windows] += window_tokens(s, e, w, tok);
  }
  mq__ctx_count(m->ctx, E * nc * sizeof *s->counts);
  MPI_Allreduce(MPI_IN_PLACE, s->counts, (int)(E * nc), MPI_UINT64_T, MPI_SUM, m->ctx->comm);
  for (size_t e = 0; e < E; e++) {
    s->routed[e] = 0;
    for (size_t c = 0; c < nc; c++) s->routed[e] += s->counts[e * nc + c];
    /* an expert no token reaches has no H at all: never below one token */
    s->every[e] = m->all_tokens || s->routed[e] < (m->min_tokens > 1 ? m->min_tokens : 1);
    if (!s->every[e]) continue;
    for (size_t c = 0; c < nc; c++) s->counts[e * nc + c] = chunk_windows_in(s, c) * L;
    if (!m->all_tokens) {
      (*m->experts_all_tokens)++;
      MQ_INFO("block %d expert %zu: %llu routed tokens, fewer than --expert-min-tokens %zu: "
              "calibrated on all %zu tokens", s->fp->layer, e, (unsigned long long)s->routed[e],
              m->min_tokens, m->nwin * L);
    }
  }
  (void)err;
  return st;
}

static size_t expert_cols(const moe_state *s, size_t e, stage sg) {
  size_t rows, cols;
  mq_llama_expert_shape(s->m->cfg, e, sg == STAGE_GATE_UP ? MQ_EXP_GATE : MQ_EXP_DOWN, &rows,
                        &cols);
  return cols;
}

/* Local. Expert e's rows of this rank's windows for stage sg, both streams, window order:
 * the stage's inputs (gate/up: the norm's rows; down: the SwiGLU of the fp (quantized) expert
 * on the fp (quantized) stream's rows, the GEMMs the forward pass runs). */
static void build_rows(moe_state *s, size_t e, stage sg, int32_t *tok, float *X, float *Xq) {
  const mq_moe_run *m = s->m;
  size_t L = m->L, hid = s->hid, cols = expert_cols(s, e, sg), at = 0;
  for (size_t w = 0; w < m->nw; w++) {
    size_t n = window_tokens(s, e, w, tok);
    for (int stream = 0; stream < 2; stream++) {
      const float *x = (stream ? s->xq : s->xf) + w * L * hid;
      float *out = (stream ? Xq : X) + at * cols;
      float *rows = sg == STAGE_GATE_UP ? out : s->gather;
      for (size_t i = 0; i < n; i++)
        memcpy(rows + i * hid, x + (size_t)tok[i] * hid, hid * sizeof *rows);
      if (sg == STAGE_DOWN) {
        const mq_llama_expert *ex = stream ? &s->q->experts[e] : &s->fp->experts[e];
        mq_llama_expert_act(m->cfg, ex, s->gather, n, out, s->up);
      }
    }
    at += n;
  }
}

/* Samples of expert e in chunks [c0, c0 + n). */
static size_t samples_in(const moe_state *s, size_t e, size_t c0, size_t n) {
  size_t total = 0;
  for (size_t c = c0; c < c0 + n; c++) total += (size_t)s->counts[e * s->nchunks + c];
  return total;
}

/* Overlap of chunk ranges [a0, a0+an) and [b0, b0+bn): first chunk and count. */
static size_t overlap(size_t a0, size_t an, size_t b0, size_t bn, size_t *first) {
  size_t lo = a0 > b0 ? a0 : b0, hi = a0 + an < b0 + bn ? a0 + an : b0 + bn;
  *first = lo;
  return hi > lo ? hi - lo : 0;
}

/* Collective over the context. Round `round` of stage sg: experts J[0..nj) go to groups
 * 0..nj-1; this rank receives its group's expert's rows (mine->X, Xq) for its group chunks. */
static mq_status exchange(moe_state *s, stage sg, const size_t *J, size_t nj, int32_t *tok,
                          expert_samples *mine, float **keepX, float **keepXq, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  int P = m->ctx->size, G = s->G;
  int *cnt = mq_alloc(4 * (size_t)P, sizeof *cnt), *sdisp = cnt + P, *rcnt = cnt + 2 * P,
      *rdisp = cnt + 3 * P;
  float *sendX = NULL, *sendXq = NULL;
  size_t pc0, pnc, total = 0;
  pipeline_chunks(s, m->ctx->rank, &pc0, &pnc);
  for (size_t j = 0; j < nj; j++) total += samples_in(s, J[j], pc0, pnc) * expert_cols(s, J[j], sg);
  sendX = mq_alloc(total + 1, sizeof *sendX);
  sendXq = mq_alloc(total + 1, sizeof *sendXq);
  st = cnt && sendX && sendXq ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                 "out of memory (%zu expert samples)", total);
  if (st == MQ_OK && total > (size_t)INT_MAX)
    st = mq__fail(err, MQ_EUSAGE, __FILE__, __LINE__, "an expert exchange of %zu values exceeds "
                  "one MPI message: use more ranks or fewer --nsamples", total);
  MQ_AGREE(m->ctx->comm, st);
  size_t at = 0;
  for (size_t j = 0; j < nj; j++) {
    build_rows(s, J[j], sg, tok, sendX + at, sendXq + at);
    at += samples_in(s, J[j], pc0, pnc) * expert_cols(s, J[j], sg);
  }
  /* send: rank d of group j gets expert J[j]'s rows of my chunks that d holds */
  at = 0;
  for (int d = 0; d < P; d++) {
    int j = mq__layer_group_of(d, G, P), root = mq__layer_group_root(j, G, P);
    int gsize = mq__layer_group_root(j + 1, G, P) - root;
    size_t gc0, gnc, c0, n = 0;
    if ((size_t)j < nj) {
      group_chunks(s, gsize, d - root, &gc0, &gnc);
      n = overlap(pc0, pnc, gc0, gnc, &c0);
      n = samples_in(s, J[j], c0, n) * expert_cols(s, J[j], sg);
    }
    cnt[d] = (int)n;
    sdisp[d] = (int)at;
    at += n;
  }
  /* receive: my group's expert's rows of my group chunks, from the ranks holding them */
  size_t gc0 = 0, gnc = 0, rtotal = 0;
  int root = mq__layer_group_root(s->g, G, P), gsize = mq__layer_group_root(s->g + 1, G, P) - root;
  if ((size_t)s->g < nj) group_chunks(s, gsize, m->ctx->rank - root, &gc0, &gnc);
  for (int r = 0; r < P; r++) {
    size_t sc0, snc, c0, n = 0;
    pipeline_chunks(s, r, &sc0, &snc);
    if ((size_t)s->g < nj) {
      size_t nch = overlap(sc0, snc, gc0, gnc, &c0);
      n = samples_in(s, J[s->g], c0, nch) * expert_cols(s, J[s->g], sg);
    }
    rcnt[r] = (int)n;
    rdisp[r] = (int)rtotal;
    rtotal += n;
  }
  mine->X = mq_alloc(rtotal + 1, sizeof *mine->X);
  mine->Xq = mq_alloc(rtotal + 1, sizeof *mine->Xq);
  st = mine->X && mine->Xq ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                              "out of memory (%zu expert samples)", rtotal);
  MQ_AGREE(m->ctx->comm, st);
  mq__ctx_count(m->ctx, 2 * total * sizeof(float));
  MPI_Alltoallv(sendX, cnt, sdisp, MPI_FLOAT, mine->X, rcnt, rdisp, MPI_FLOAT, m->ctx->comm);
  MPI_Alltoallv(sendXq, cnt, sdisp, MPI_FLOAT, mine->Xq, rcnt, rdisp, MPI_FLOAT, m->ctx->comm);
  if ((size_t)s->g < nj) { /* the engine's view: global order, chunk bounds */
    size_t e = J[s->g];
    for (size_t c = 0; c < s->nchunks; c++)
      mine->bounds[c + 1] = mine->bounds[c] + (size_t)s->counts[e * s->nchunks + c];
    mine->first = mine->bounds[gc0];
    mine->count = mine->bounds[gc0 + gnc] - mine->first;
    mine->cols = expert_cols(s, e, sg);
  }
  *keepX = sendX; /* this rank's windows' rows: the error measurement reads them */
  *keepXq = sendXq;
  sendX = sendXq = NULL;
cleanup:
  mq_free(cnt);
  mq_free(sendX);
  mq_free(sendXq);
  return st;
}

static mq_status read_expert_samples(void *user, mq_samples which, size_t first, size_t count,
                                     double *buf, mq_error *err) {
  const expert_samples *x = user;
  if (first < x->first || first + count > x->first + x->count)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                    "internal error: expert samples %zu..%zu are not on this rank", first,
                    first + count);
  const float *src = (which == MQ_SAMPLES_X ? x->X : x->Xq) + (first - x->first) * x->cols;
  for (size_t k = 0; k < count * x->cols; k++) buf[k] = src[k];
  return MQ_OK;
}

static mq_status read_expert_rows(void *user, size_t first, size_t count, float *W,
                                  mq_error *err) {
  const expert_samples *x = user;
  const float *w = x->s->fp->experts[x->e].w[x->which];
  (void)err;
  memcpy(W, w + first * x->cols, count * x->cols * sizeof *W);
  return MQ_OK;
}

/* The linears of stage sg, and whether each was written by an interrupted run. */
static int stage_linears(stage sg, mq_expert_linear *lin) {
  if (sg == STAGE_DOWN) {
    lin[0] = MQ_EXP_DOWN;
    return 1;
  }
  lin[0] = MQ_EXP_GATE;
  lin[1] = MQ_EXP_UP;
  return 2;
}

/* Local. Per window of this rank: Σ(y − ŷ)² and Σy² of expert e's linear `which` over the
 * window's rows X, X̃ (window order, as build_rows left them), y = x·Wᵀ, ŷ = x̃·Ŵᵀ: one GEMM shape
 * per window, so the same bits wherever the window runs. sums [nw, 2]. */
static mq_status window_errors(moe_state *s, size_t e, mq_expert_linear which, const float *X,
                               const float *Xq, int32_t *tok, double *sums, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  size_t rows, cols, at = 0;
  mq_llama_expert_shape(m->cfg, e, which, &rows, &cols);
  float *Y = mq_alloc(m->L * rows + 1, sizeof *Y), *Yq = mq_alloc(m->L * rows + 1, sizeof *Yq);
  MQ_CHECK_ALLOC(err, Y && Yq, 2 * m->L * rows * sizeof *Y);
  for (size_t w = 0; w < m->nw; w++) {
    size_t n = window_tokens(s, e, w, tok);
    double d2 = 0.0, y2 = 0.0;
    if (n > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f,
                  X + at * cols, (int)cols, s->fp->experts[e].w[which], (int)cols, 0.0f, Y,
                  (int)rows);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f,
                  Xq + at * cols, (int)cols, s->q->experts[e].w[which], (int)cols, 0.0f, Yq,
                  (int)rows);
    }
    for (size_t k = 0; k < n * rows; k++) {
      double d = (double)Y[k] - (double)Yq[k];
      d2 += d * d;
      y2 += (double)Y[k] * (double)Y[k];
    }
    sums[2 * w] = d2;
    sums[2 * w + 1] = y2;
    at += n;
  }
cleanup:
  mq_free(Y);
  mq_free(Yq);
  return st;
}

/* Collective. err and rel_err of expert e's linear from every rank's windows, added in window
 * order: exact on any number of ranks and groups (the engine's own error sums would follow the
 * split of rows and samples). */
static mq_status measure(moe_state *s, size_t e, mq_expert_linear which, const float *X,
                         const float *Xq, int32_t *tok, mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  int P = m->ctx->size;
  double *mine = mq_alloc(2 * m->nw + 1, sizeof *mine), *all = mq_alloc(2 * m->nwin + 1,
                                                                        sizeof *all);
  int *cnt = mq_alloc(2 * (size_t)P, sizeof *cnt), *disp = cnt + P;
  st = mine && all && cnt ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                             "out of memory (expert errors)");
  if (st == MQ_OK) st = window_errors(s, e, which, X, Xq, tok, mine, err);
  MQ_AGREE(m->ctx->comm, st);
  for (int r = 0; r < P; r++) { /* rank r's windows, from the pipeline's chunks */
    size_t c0, nc;
    pipeline_chunks(s, r, &c0, &nc);
    size_t w0 = c0 * m->chunk_windows, w1 = (c0 + nc) * m->chunk_windows;
    w0 = w0 < m->nwin ? w0 : m->nwin;
    w1 = w1 < m->nwin ? w1 : m->nwin;
    cnt[r] = (int)(2 * (w1 - w0));
    disp[r] = (int)(2 * w0);
  }
  mq__ctx_count(m->ctx, 2 * m->nw * sizeof *mine);
  MPI_Allgatherv(mine, (int)(2 * m->nw), MPI_DOUBLE, all, cnt, disp, MPI_DOUBLE, m->ctx->comm);
  mq_err_accum acc = {.n = (size_t)res->samples};
  for (size_t w = 0; w < m->nwin; w++) { /* window order */
    acc.err_sum += all[2 * w];
    acc.ref_sum += all[2 * w + 1];
  }
  res->err = mq_err_value(&acc);
  res->rel_err = mq_err_relative(&acc);
cleanup:
  mq_free(mine);
  mq_free(all);
  mq_free(cnt);
  return st;
}

/* Collective. One finished layer of the round: its scalars and Ŵ reach every rank, its output
 * error is measured on every rank's windows, then it is written. */
static mq_status publish(moe_state *s, size_t j, size_t e, mq_expert_linear which,
                         const float *X, const float *Xq, int32_t *tok, mq_layer_result *res,
                         size_t row0, mq_layer_phases *ph, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  char name[200];
  size_t rows, cols;
  mq_llama_expert_shape(m->cfg, e, which, &rows, &cols);
  mq_llama_expert_name(m->cfg, s->fp->layer, e, which, name, sizeof name);
  int root = mq__layer_group_root((int)j, s->G, m->ctx->size), owner = s->g == (int)j;
  if (owner) res->routed = (int64_t)s->routed[e];
  MQ_CHECK(mq__layer_groups_share(m->ctx, root, owner, res, ph));
  mq__ctx_count(m->ctx, rows * cols * sizeof(float));
  MPI_Bcast(s->q->experts[e].w[which], (int)(rows * cols), MPI_FLOAT, root, m->ctx->comm);
  MQ_CHECK(measure(s, e, which, X, Xq, tok, res, err));
  MQ_CHECK(m->hooks.write(m->hooks.user, name, rows, owner ? row0 : 0, res, ph, err));
cleanup:
  return st;
}

/* Collective. One round: experts J[0..nj) on groups 0..nj-1, the linears each still needs. */
static mq_status run_round(moe_state *s, stage sg, const size_t *J, size_t nj, int32_t *tok,
                           const unsigned char *todo, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  mq_expert_linear lin[2];
  int nl = stage_linears(sg, lin);
  mq_layer_result res[2] = {{0}};
  mq_layer_phases ph[2] = {{0}};
  size_t row0[2] = {0, 0};
  expert_samples x = {.s = s};
  mq_hessian_cache cache = {0};
  float *myX = NULL, *myXq = NULL; /* this rank's windows' rows of the round's experts */
  x.bounds = mq_calloc(s->nchunks + 1, sizeof *x.bounds);
  MQ_AGREE(m->ctx->comm, x.bounds ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                     "out of memory (chunk bounds)"));
  MQ_CHECK(exchange(s, sg, J, nj, tok, &x, &myX, &myXq, err));
  double t0 = mq_wtime();
  if ((size_t)s->g < nj) {
    size_t e = J[s->g], nbig = 0;
    for (size_t c = 0; c < s->nchunks; c++)
      if (x.bounds[c + 1] - x.bounds[c] > nbig) nbig = x.bounds[c + 1] - x.bounds[c];
    int root = mq__layer_group_root(s->g, s->G, m->ctx->size);
    size_t gc0, gnc;
    group_chunks(s, mq__layer_group_root(s->g + 1, s->G, m->ctx->size) - root,
                 m->ctx->rank - root, &gc0, &gnc);
    for (int l = 0; l < nl && st == MQ_OK; l++) {
      if (!todo[(size_t)s->g * 2 + (size_t)l]) continue;
      char name[200];
      size_t rows, cols;
      x.e = e;
      x.which = lin[l];
      mq_llama_expert_shape(m->cfg, e, lin[l], &rows, &cols);
      mq_llama_expert_name(m->cfg, s->fp->layer, e, lin[l], name, sizeof name);
      mq_layer_source src = {
          .desc = {.name = name, .rows = rows, .cols = cols, .n = x.bounds[s->nchunks],
                   .has_x = 1, .has_xq = 1},
          .layer_id = (1ULL << 62) | ((uint64_t)s->fp->layer << 32) | ((uint64_t)e << 2) |
                      (uint64_t)lin[l],
          .read_samples = read_expert_samples, .read_weight_rows = read_expert_rows, .user = &x};
      cache.keep = l + 1 < nl;
      mq_layer_extras extras = {.samples_local = 1, .local_first = x.first,
                                .local_count = x.count, .chunk = nbig,
                                .chunk_bounds = x.bounds, .chunk_first = gc0, .chunk_count = gnc,
                                .dequant_out = s->q->experts[e].w[lin[l]], .cache = &cache,
                                .errors_by_caller = 1};
      st = mq__layer_engine_run(s->group, &src, &extras, m->opts, &res[l], &row0[l], &ph[l]);
    }
    mq__ctx_adopt_error(m->ctx, s->group);
  }
  MQ_AGREE(m->ctx->comm, st);
  *m->t_layers += mq_wtime() - t0;
  size_t at = 0, pc0, pnc;
  pipeline_chunks(s, m->ctx->rank, &pc0, &pnc);
  for (size_t j = 0; j < nj; j++) { /* every expert's layers, in expert order */
    for (int l = 0; l < nl; l++) {
      if (!todo[j * 2 + (size_t)l]) continue;
      mq_layer_result other = {0};
      mq_layer_phases other_ph = {0};
      int mine = s->g == (int)j;
      st = publish(s, j, J[j], lin[l], myX + at, myXq + at, tok, mine ? &res[l] : &other,
                   row0[l], mine ? &ph[l] : &other_ph, err);
      mq_layer_result_free(&other);
      MQ_CHECK(st);
    }
    at += samples_in(s, J[j], pc0, pnc) * expert_cols(s, J[j], sg);
  }
cleanup:
  for (int l = 0; l < 2; l++) mq_layer_result_free(&res[l]);
  mq_hessian_cache_free(&cache);
  mq_free(myX);
  mq_free(myXq);
  mq_free(x.X);
  mq_free(x.Xq);
  mq_free(x.bounds);
  return st;
}

/* Collective. Stage sg for every expert: layers an interrupted run wrote are read back; the
 * others are quantized G experts at a time. */
static mq_status run_stage(moe_state *s, stage sg, int32_t *tok, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  mq_expert_linear lin[2];
  int nl = stage_linears(sg, lin);
  size_t *J = mq_alloc((size_t)s->G + 1, sizeof *J), nj = 0;
  unsigned char *todo = mq_calloc(2 * (size_t)s->G + 2, 1);
  MQ_AGREE(m->ctx->comm, J && todo ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                      "out of memory (expert rounds)"));
  for (size_t e = 0; e < s->E; e++) {
    int any = 0;
    for (int l = 0; l < nl; l++) {
      char name[200];
      size_t rows, cols;
      mq_llama_expert_shape(m->cfg, e, lin[l], &rows, &cols);
      mq_llama_expert_name(m->cfg, s->fp->layer, e, lin[l], name, sizeof name);
      int done = m->hooks.done(m->hooks.user, name);
      if (done)
        MQ_CHECK(m->hooks.read_back(m->hooks.user, name, rows, cols, s->q->experts[e].w[lin[l]],
                                    err));
      todo[nj * 2 + (size_t)l] = (unsigned char)!done;
      any |= !done;
    }
    if (any) J[nj++] = e;
    if (nj == (size_t)s->G || (e + 1 == s->E && nj > 0)) {
      MQ_CHECK(run_round(s, sg, J, nj, tok, todo, err));
      nj = 0;
      memset(todo, 0, 2 * (size_t)s->G + 2);
    }
  }
cleanup:
  mq_free(J);
  mq_free(todo);
  return st;
}

/* Local. q's experts: Ŵ buffers of every linear (filled by the stages). */
static mq_status alloc_quantized(moe_state *s, mq_error *err) {
  mq_status st = MQ_OK;
  mq_llama_block *q = s->q;
  q->experts = mq_calloc(s->E, sizeof *q->experts);
  MQ_CHECK_ALLOC(err, q->experts, s->E * sizeof *q->experts);
  q->nexperts = s->E;
  for (size_t e = 0; e < s->E; e++) {
    q->experts[e].inter = s->fp->experts[e].inter;
    for (int k = 0; k < MQ_EXP_COUNT; k++) {
      size_t rows, cols;
      mq_llama_expert_shape(s->m->cfg, e, (mq_expert_linear)k, &rows, &cols);
      q->experts[e].w[k] = mq_alloc(rows * cols, sizeof(float));
      MQ_CHECK_ALLOC(err, q->experts[e].w[k], rows * cols * sizeof(float));
    }
  }
cleanup:
  return st;
}

void mq__moe_release_quantized(mq_llama_block *q) {
  for (size_t e = 0; q->experts != NULL && e < q->nexperts; e++)
    for (int k = 0; k < MQ_EXP_COUNT; k++) mq_free(q->experts[e].w[k]);
  mq_free(q->experts);
  q->experts = NULL;
  q->nexperts = 0;
}

/* Local. Both streams through the block's MLP, window by window. */
static void advance_streams(const moe_state *s, float *hf, float *hq) {
  const mq_moe_run *m = s->m;
  double t0 = mq_wtime();
  size_t L = m->L, hid = s->hid;
  for (size_t w = 0; w < m->nw; w++) {
    mq_llama_moe(m->fwd, s->fp, s->xf + w * L * hid, hf + w * L * hid);
    mq_llama_moe(m->fwd, s->q, s->xq + w * L * hid, hq + w * L * hid);
  }
  *m->t_forward += mq_wtime() - t0;
}

static mq_status state_open(moe_state *s, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_moe_run *m = s->m;
  const mq_llama_config *cfg = m->cfg;
  size_t L = m->L, widest = (size_t)cfg->moe_intermediate_size;
  if ((size_t)cfg->shared_expert_intermediate_size > widest)
    widest = (size_t)cfg->shared_expert_intermediate_size;
  s->E = mq_llama_expert_count(cfg);
  s->k = (size_t)cfg->experts_per_tok;
  s->hid = (size_t)cfg->hidden_size;
  s->nchunks = (m->nwin + m->chunk_windows - 1) / m->chunk_windows;
  s->sel = mq_alloc(m->nw * L * s->k + 1, sizeof *s->sel);
  s->counts = mq_calloc(s->E * s->nchunks, sizeof *s->counts);
  s->routed = mq_calloc(s->E, sizeof *s->routed);
  s->every = mq_calloc(s->E, 1);
  s->gather = mq_alloc(L * s->hid, sizeof *s->gather);
  s->act = mq_alloc(L * widest, sizeof *s->act);
  s->up = mq_alloc(L * widest, sizeof *s->up);
  MQ_CHECK_ALLOC(err, s->sel && s->counts && s->routed && s->every && s->gather && s->act && s->up,
                 L * (s->hid + 2 * widest) * sizeof(float));
  MQ_CHECK(alloc_quantized(s, err));
  int groups = m->groups < 1 ? 1 : m->groups;
  if ((size_t)groups > s->E) groups = (int)s->E;
  s->G = groups > m->ctx->size ? m->ctx->size : groups;
  s->g = mq__layer_group_of(m->ctx->rank, s->G, m->ctx->size);
cleanup:
  return st;
}

static void state_close(moe_state *s) {
  mq_ctx_destroy(&s->group);
  mq_free(s->sel);
  mq_free(s->counts);
  mq_free(s->routed);
  mq_free(s->every);
  mq_free(s->gather);
  mq_free(s->act);
  mq_free(s->up);
}

mq_status mq__moe_quantize_block(const mq_moe_run *m, const mq_llama_block *fp,
                                 mq_llama_block *q, const float *xf, const float *xq, float *hf,
                                 float *hq, mq_error *err) {
  mq_status st = MQ_OK;
  moe_state s = {.m = m, .fp = fp, .q = q, .xf = xf, .xq = xq};
  int32_t *tok = mq_alloc(m->L + 1, sizeof *tok);
  q->router = fp->router; /* full precision, shared */
  q->shared_gate = fp->shared_gate;
  st = tok ? state_open(&s, err)
           : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (token list)");
  MQ_AGREE(m->ctx->comm, st);
  MQ_CHECK(mq__ctx_split(m->ctx, s.g, &s.group));
  MQ_CHECK(count_samples(&s, tok, err));
  MQ_CHECK(run_stage(&s, STAGE_GATE_UP, tok, err));
  MQ_CHECK(run_stage(&s, STAGE_DOWN, tok, err));
  advance_streams(&s, hf, hq);
cleanup:
  state_close(&s);
  mq_free(tok);
  return st;
}
