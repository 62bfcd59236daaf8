#include "cli/layer_job.h"

#include <math.h>
#include <string.h>

#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"

enum { MQ_SAMPLE_CHUNK = 1024 }; /* samples per read: bounds the memory of the X buffers */

static const double auto_damps[MQ_LAMBDA_AUTO_CANDIDATES] = {1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1};

/* Everything read once per layer. */
typedef struct job {
  mq_h5_problem *pf;
  size_t index;
  const mq_h5_layer_info *li;
  int qronos;       /* needs G = X̃ᵀX/n */
  float *W;         /* [rows, cols] */
  double *X, *Xq;   /* [MQ_SAMPLE_CHUNK, cols] buffers */
} job;

/* H = X̃ᵀX̃ (and, with need_g, G = X̃ᵀX) over samples [first, first+count), divided by count.
 * G stays NULL-equivalent (untouched) when the file has no Xq: then G = H. */
static mq_status accumulate(job *j, size_t first, size_t count, double *H, double *G,
                            mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  memset(H, 0, cols * cols * sizeof *H);
  if (G != NULL) memset(G, 0, cols * cols * sizeof *G);
  for (size_t s = first; s < first + count; s += MQ_SAMPLE_CHUNK) {
    size_t c = first + count - s < MQ_SAMPLE_CHUNK ? first + count - s : MQ_SAMPLE_CHUNK;
    MQ_CHECK(mq_h5_read_samples(j->pf, j->index, 'Q', s, c, j->Xq, err));
    mq_hessian_accumulate(H, cols, j->Xq, c);
    if (G != NULL) {
      MQ_CHECK(mq_h5_read_samples(j->pf, j->index, 'X', s, c, j->X, err));
      mq_hessian_cross_accumulate(G, cols, j->Xq, j->X, c);
    }
  }
  mq_hessian_finalize(H, cols, count);
  if (G != NULL) mq_hessian_scale(G, cols, count);
cleanup:
  return st;
}

/* Σ over samples [first, first+count) of the error sums (err, ref, mismatch), and with linf
 * the ℓ∞ statistics. */
static mq_status sample_errors(job *j, size_t first, size_t count, const double *Wd,
                               const double *D, mq_err_accum *acc, mq_linf_accum *linf,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = j->li->rows, cols = j->li->cols;
  size_t cap = count < MQ_SAMPLE_CHUNK ? count : MQ_SAMPLE_CHUNK;
  double *Y = mq_alloc(cap * rows, sizeof *Y), *diff = mq_alloc(cap * (cols + rows), sizeof *diff);
  MQ_CHECK_ALLOC(err, Y && diff, cap * (cols + rows) * sizeof *diff);
  for (size_t s = first; s < first + count; s += cap) {
    size_t c = first + count - s < cap ? first + count - s : cap;
    MQ_CHECK(mq_h5_read_samples(j->pf, j->index, 'X', s, c, j->X, err));
    if (j->li->has_xq) MQ_CHECK(mq_h5_read_samples(j->pf, j->index, 'Q', s, c, j->Xq, err));
    mq_err_accumulate(acc, j->X, j->li->has_xq ? j->Xq : NULL, c, cols, Wd, D, rows, Y, diff);
    if (linf != NULL) mq_linf_accumulate(linf, j->li->has_xq ? j->Xq : j->X, c, diff);
  }
cleanup:
  mq_free(Y);
  mq_free(diff);
  return st;
}

/* W and D = W − Ŵ in double, row-major [rows, cols]. */
static mq_status weights_and_residual(const job *j, const mq_layer_result *res, double *Wd,
                                      double *D, mq_error *err) {
  mq_status st = MQ_OK;
  size_t n = j->li->rows * j->li->cols;
  float *What = mq_alloc(n, sizeof *What);
  MQ_CHECK_ALLOC(err, What, n * sizeof *What);
  MQ_CHECK(mq_layer_result_dequantize(res, What, err));
  for (size_t k = 0; k < n; k++) {
    Wd[k] = j->W[k];
    D[k] = (double)j->W[k] - (double)What[k];
  }
cleanup:
  mq_free(What);
  return st;
}

/* Quantizes with H (and G) consumed; fills res. */
static mq_status quantize(job *j, double *H, double *G, const mq_quant_options *o,
                          mq_layer_result *res, mq_layer_aux *aux, mq_error *err) {
  mq_layer_input in = {.name = j->li->name, .layer_id = j->index, .rows = j->li->rows,
                       .cols = j->li->cols, .W = j->W, .H = H, .G = G};
  return mq_layer_quantize(&in, o, res, aux, err);
}

/* Mean of diag(H) after the dead-input patch (§3.1), which is what λ = damp·mean refers to. */
static double mean_diag_patched(const double *H, size_t cols) {
  double s = 0.0;
  for (size_t c = 0; c < cols; c++) s += H[c * cols + c] == 0.0 ? 1.0 : H[c * cols + c];
  return s / (double)cols;
}

/* One candidate of --lambda auto: quantize on the fit samples, held-out error on the rest. */
static mq_status heldout_error(job *j, const double *Hfit, const double *Gfit, const double *Hval,
                               size_t nfit, const mq_quant_options *o, double *out,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = j->li->rows, cols = j->li->cols;
  mq_layer_result res = {0};
  double *H = mq_alloc(cols * cols, sizeof *H), *G = NULL;
  double *Wd = mq_alloc(rows * cols, sizeof *Wd), *D = mq_alloc(rows * cols, sizeof *D);
  MQ_CHECK_ALLOC(err, H && Wd && D, cols * cols * sizeof *H);
  memcpy(H, Hfit, cols * cols * sizeof *H);
  if (Gfit != NULL) {
    G = mq_alloc(cols * cols, sizeof *G);
    MQ_CHECK_ALLOC(err, G, cols * cols * sizeof *G);
    memcpy(G, Gfit, cols * cols * sizeof *G);
  }
  MQ_CHECK(quantize(j, H, G, o, &res, NULL, err));
  MQ_CHECK(weights_and_residual(j, &res, Wd, D, err));
  if (j->qronos) { /* the mismatched objective ‖X_val w − X̃_val q‖²/n_val */
    mq_err_accum acc = {0};
    MQ_CHECK(sample_errors(j, nfit, j->li->n - nfit, Wd, D, &acc, NULL, err));
    *out = mq_err_value(&acc);
  } else { /* Σ_rows (w−q)ᵀ H_val (w−q) */
    *out = mq_quadratic_form_sum(Hval, D, rows, cols, Wd); /* Wd is free: scratch */
  }
cleanup:
  mq_layer_result_free(&res);
  mq_free(H);
  mq_free(G);
  mq_free(Wd);
  mq_free(D);
  return st;
}

/* ALGORITHMS §3.3: 80/20 split of the samples, six damps, smallest held-out error wins. */
static mq_status choose_lambda(job *j, mq_quant_options *o, mq_layer_result *trace,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, n = j->li->n, nfit = n * 4 / 5;
  double *Hfit = mq_alloc(cols * cols, sizeof *Hfit), *Hval = mq_alloc(cols * cols, sizeof *Hval);
  double *Gfit = NULL;
  MQ_CHECK_ALLOC(err, Hfit && Hval, cols * cols * sizeof *Hfit);
  if (!j->li->has_x)
    MQ_FAIL(err, MQ_EINPUT, "/layers/%s: --lambda auto needs calibration samples X, the layer has only H",
            j->li->name);
  if (nfit < 1 || nfit == n)
    MQ_FAIL(err, MQ_EINPUT, "/layers/%s: --lambda auto needs at least 2 samples (has %zu)", j->li->name, n);
  if (j->qronos && j->li->has_xq) {
    Gfit = mq_alloc(cols * cols, sizeof *Gfit);
    MQ_CHECK_ALLOC(err, Gfit, cols * cols * sizeof *Gfit);
  }
  MQ_CHECK(accumulate(j, 0, nfit, Hfit, Gfit, err));
  MQ_CHECK(accumulate(j, nfit, n - nfit, Hval, NULL, err));
  double mean = mean_diag_patched(Hfit, cols), best = INFINITY;
  mq_quant_options c = *o;
  c.lambda_mode = MQ_LAMBDA_ABSOLUTE;
  trace->lambda_ncand = MQ_LAMBDA_AUTO_CANDIDATES;
  for (int k = 0; k < MQ_LAMBDA_AUTO_CANDIDATES; k++) {
    c.lambda = auto_damps[k] * mean;
    trace->lambda_cand[k] = c.lambda;
    MQ_CHECK(heldout_error(j, Hfit, Gfit, Hval, nfit, &c, &trace->lambda_heldout[k], err));
    MQ_DEBUG("%s: lambda %.4g (damp %g): held-out error %.6g", j->li->name, c.lambda,
             auto_damps[k], trace->lambda_heldout[k]);
    if (trace->lambda_heldout[k] < best) {
      best = trace->lambda_heldout[k];
      o->lambda = c.lambda;
    }
  }
  o->lambda_mode = MQ_LAMBDA_ABSOLUTE;
cleanup:
  mq_free(Hfit);
  mq_free(Hval);
  mq_free(Gfit);
  return st;
}

/* err, rel_err, err_floor (Qronos), bound_linf (stochastic) from the samples, or from H. */
static mq_status finish_errors(job *j, const double *Hgiven, const double *R,
                               const mq_quant_options *o, const mq_layer_aux *aux,
                               mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = j->li->rows, cols = j->li->cols;
  double *Wd = mq_alloc(rows * cols, sizeof *Wd), *D = mq_alloc(rows * cols, sizeof *D);
  double *scratch = NULL;
  mq_linf_accum linf = {0};
  mq_err_accum acc = {0};
  MQ_CHECK_ALLOC(err, Wd && D, rows * cols * sizeof *D);
  MQ_CHECK(weights_and_residual(j, res, Wd, D, err));
  int want_linf = o->rounding == MQ_ROUND_STOCHASTIC && j->li->has_x && !j->qronos;
  if (want_linf)
    MQ_CHECK(mq_linf_init(&linf, res, aux->perm, o->method == MQ_METHOD_RTN ? NULL : R, j->li->n, err));
  if (j->li->has_x) {
    MQ_CHECK(sample_errors(j, 0, j->li->n, Wd, D, &acc, want_linf ? &linf : NULL, err));
  } else {
    scratch = mq_alloc(rows * cols, sizeof *scratch);
    MQ_CHECK_ALLOC(err, scratch, rows * cols * sizeof *scratch);
    mq_err_from_hessian(&acc, Hgiven, Wd, D, rows, cols, scratch);
  }
  res->err = mq_err_value(&acc);
  res->rel_err = mq_err_relative(&acc);
  if (want_linf) res->bound_linf = mq_linf_bound(&linf);
  if (j->qronos) {
    /* ‖(X − X̃)w‖²/n is known from the samples, or is 0 when X̃ = X; unknown for H+G files */
    int known = j->li->has_x || !j->li->has_g;
    double mismatch = j->li->has_x ? acc.mismatch_sum / (double)j->li->n : 0.0;
    res->err_floor = known ? aux->e0_sq + mismatch - aux->t_sq : NAN;
    res->bound_l2 += res->err_floor;
  }
cleanup:
  mq_linf_free(&linf);
  mq_free(Wd);
  mq_free(D);
  mq_free(scratch);
  return st;
}

mq_status mq_layer_job_run(mq_h5_problem *pf, size_t index, const mq_quant_options *opts,
                           mq_layer_result *res, double *timing_hessian, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_layer_info *li = mq_h5_problem_layer(pf, index);
  size_t rows = li->rows, cols = li->cols;
  size_t cap = li->n < MQ_SAMPLE_CHUNK ? li->n : MQ_SAMPLE_CHUNK;
  job j = {.pf = pf, .index = index, .li = li, .qronos = opts->method == MQ_METHOD_QRONOS};
  mq_quant_options o = *opts;
  mq_layer_result trace = {0};
  mq_layer_aux aux = {0};
  double *H = mq_alloc(cols * cols, sizeof *H), *G = NULL, *Hgiven = NULL;
  j.W = mq_alloc(rows * cols, sizeof *j.W);
  j.X = mq_alloc(cap * cols, sizeof *j.X);
  j.Xq = mq_alloc(cap * cols, sizeof *j.Xq);
  MQ_CHECK_ALLOC(err, H && j.W && (cap == 0 || (j.X && j.Xq)), cols * cols * sizeof *H);
  MQ_CHECK(mq_h5_read_weights(pf, index, j.W, err));
  int need_g = j.qronos && (li->has_x ? li->has_xq : li->has_g);
  if (need_g) {
    G = mq_alloc(cols * cols, sizeof *G);
    MQ_CHECK_ALLOC(err, G, cols * cols * sizeof *G);
  }
  if (o.lambda_mode == MQ_LAMBDA_AUTO) MQ_CHECK(choose_lambda(&j, &o, &trace, err));
  double t0 = mq_wtime();
  if (li->has_x) {
    MQ_CHECK(accumulate(&j, 0, li->n, H, G, err));
  } else {
    MQ_CHECK(mq_h5_read_matrix(pf, index, 'H', H, err));
    if (need_g) MQ_CHECK(mq_h5_read_matrix(pf, index, 'G', G, err));
    Hgiven = mq_alloc(cols * cols, sizeof *Hgiven); /* errors need H before it is factored */
    MQ_CHECK_ALLOC(err, Hgiven, cols * cols * sizeof *Hgiven);
    memcpy(Hgiven, H, cols * cols * sizeof *H);
  }
  *timing_hessian = mq_wtime() - t0;
  MQ_CHECK(quantize(&j, H, G, &o, res, &aux, err));
  MQ_CHECK(finish_errors(&j, Hgiven, aux.factored ? H : NULL, &o, &aux, res, err));
  res->lambda_ncand = trace.lambda_ncand;
  memcpy(res->lambda_cand, trace.lambda_cand, sizeof res->lambda_cand);
  memcpy(res->lambda_heldout, trace.lambda_heldout, sizeof res->lambda_heldout);
  res->seconds += *timing_hessian;
cleanup:
  mq_layer_aux_free(&aux);
  mq_free(H);
  mq_free(G);
  mq_free(Hgiven);
  mq_free(j.W);
  mq_free(j.X);
  mq_free(j.Xq);
  return st;
}
