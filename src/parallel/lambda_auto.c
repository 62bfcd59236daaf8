/* --lambda auto (ALGORITHMS §3.3, docs/NUMERICS.md): the samples split 80/20 into a fit and a
 * held-out part, the layer quantized for six damps on the fit part, the λ with the smallest
 * held-out error kept (the first on ties). Larger λ loosens the bound but keeps updated weights
 * inside the grid range; held-out data settles the trade-off. */
#include <math.h>
#include <string.h>

#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/layer_engine_internal.h"

static const double auto_damps[MQ_LAMBDA_AUTO_CANDIDATES] = {1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1};

/* Collective. One candidate: quantize on the fit samples, held-out error on the rest, summed
 * over all ranks' rows. */
static mq_status heldout_error(layer_run *r, const double *Hfit, const double *Gfit,
                               const double *Hval, size_t nfit, const mq_quant_options *o,
                               double *out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, n = r->desc->n;
  mq_layer_result res = {0};
  weight_delta d = {0};
  int all = r->qronos && r->x->samples_local; /* split samples need every row */
  double *H = mq_memdup(Hfit, cols * cols, sizeof(double)), *G = mq_memdup(Gfit, cols * cols, sizeof(double));
  float *What_every_row = all ? mq_alloc(r->desc->rows * cols, sizeof *What_every_row) : NULL;
  st = H && (G || !Gfit) && (What_every_row || !all)
           ? MQ_OK
           : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory");
  MQ_AGREE(r->comm, st);
  MQ_CHECK(mq__factor_and_sweep(r, H, G, o, &res, NULL, err));
  if (all) MQ_CHECK(mq__gather_dequantized(r, &res, What_every_row, err));
  double mine = 0.0;
  st = mq__weight_delta_make(r, &res, What_every_row, &d, err);
  if (st == MQ_OK && r->qronos) { /* the mismatched objective ‖X_val w − X̃_val q‖²/n_val */
    mq_err_accum acc = {0};
    st = mq__sample_errors(r, nfit, n - nfit, &d, &acc, NULL, err);
    mine = acc.err_sum / (double)(n - nfit);
  } else if (st == MQ_OK) { /* Σ_rows (w−q)ᵀ H_val (w−q); Wd is free scratch now */
    mine = mq_quadratic_form_sum(Hval, d.D, d.rows, cols, d.Wd);
  }
  MQ_AGREE(r->comm, st);
  MPI_Allreduce(&mine, out, 1, MPI_DOUBLE, MPI_SUM, r->comm);
cleanup:
  mq_layer_result_free(&res);
  mq__weight_delta_free(&d);
  mq_free(H);
  mq_free(G);
  mq_free(What_every_row);
  return st;
}

/* Mean of diag(H) after the dead-input patch (§3.1), which is what λ = damp·mean refers to. */
static double mean_diag_patched(const double *H, size_t cols) {
  double s = 0.0;
  for (size_t c = 0; c < cols; c++) s += H[c * cols + c] == 0.0 ? 1.0 : H[c * cols + c];
  return s / (double)cols;
}

/* Local: what --lambda auto needs from the layer. */
static mq_status check_layer(const layer_run *r, size_t nfit, mq_error *err) {
  const mq_layer_desc *d = r->desc;
  if (!d->has_x)
    return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                    "/layers/%s: --lambda auto needs calibration samples X, the layer has only H",
                    d->name);
  if (nfit < 1 || nfit == d->n)
    return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                    "/layers/%s: --lambda auto needs at least 2 samples (has %zu)", d->name, d->n);
  return MQ_OK;
}

mq_status mq__choose_lambda(layer_run *r, mq_quant_options *o, mq_layer_result *trace,
                            mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, n = r->desc->n, nfit = n * 4 / 5;
  int need_g = r->qronos && r->desc->has_xq;
  double *Hfit = mq_alloc(cols * cols, sizeof *Hfit), *Hval = mq_alloc(cols * cols, sizeof *Hval);
  double *Gfit = need_g ? mq_alloc(cols * cols, sizeof *Gfit) : NULL;
  if (!(Hfit && Hval && (Gfit || !need_g)))
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (--lambda auto)");
  else
    st = check_layer(r, nfit, err);
  MQ_AGREE(r->comm, st);
  MQ_CHECK(mq__sums_gram(r, 0, nfit, Hfit, Gfit, NULL, err));
  MQ_CHECK(mq__sums_gram(r, nfit, n - nfit, Hval, NULL, NULL, err));
  double mean = mean_diag_patched(Hfit, cols), best = INFINITY;
  mq_quant_options c = *o;
  c.lambda_mode = MQ_LAMBDA_ABSOLUTE;
  trace->lambda_ncand = MQ_LAMBDA_AUTO_CANDIDATES;
  for (int k = 0; k < MQ_LAMBDA_AUTO_CANDIDATES; k++) {
    c.lambda = auto_damps[k] * mean;
    trace->lambda_cand[k] = c.lambda;
    MQ_CHECK(heldout_error(r, Hfit, Gfit, Hval, nfit, &c, &trace->lambda_heldout[k], err));
    MQ_DEBUG("%s: lambda %.4g (damp %g): held-out error %.6g", r->desc->name, c.lambda,
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
