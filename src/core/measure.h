/* Error measurement (SPEC.md attributes err, rel_err) and quadratic forms. */
#ifndef MQ_CORE_MEASURE_H
#define MQ_CORE_MEASURE_H

#include <stddef.h>

#include "mpiquant/numerics.h"

/* Σ_rows dᵀ A d for D row-major [rows, cols], A symmetric [cols, cols]. scratch: [rows, cols].
 * One DSYMM. */
double mq_quadratic_form_sum(const double *A, const double *D, size_t rows, size_t cols,
                             double *scratch);

/* Running sums of ‖XWᵀ − X̃Ŵᵀ‖² and ‖XWᵀ‖² over sample chunks. */
typedef struct mq_err_accum {
  double err_sum, ref_sum;
  double mismatch_sum; /* Σ ‖(X − X̃)Wᵀ‖² (Qronos' err_floor) */
  size_t n;
} mq_err_accum;

/* One chunk: X, Xq row-major [count, cols] (Xq NULL means X̃ = X); W, D = W − Ŵ row-major
 * [rows, cols] double; Y scratch [count, rows]; diff scratch [count, cols] (used when Xq).
 * XWᵀ − X̃Ŵᵀ is formed as (X − X̃)Wᵀ + X̃Dᵀ so no large terms cancel. */
void mq_err_accumulate(mq_err_accum *acc, const double *X, const double *Xq, size_t count,
                       size_t cols, const double *W, const double *D, size_t rows, double *Y,
                       double *diff);

/* The same sums from the Gram matrices instead of the samples, all divided by n: H = X̃ᵀX̃,
 * G = X̃ᵀX, Hxx = XᵀX (row-major [cols, cols]). With d = w − ŵ, Xw − X̃ŵ = (X − X̃)w + X̃d, so
 *   ‖Xw − X̃ŵ‖² = wᵀEw + 2·dᵀFw + dᵀHd,   ‖Xw‖² = wᵀHxx w,   E = Hxx − G − Gᵀ + H, F = G − H,
 * the form around d keeping the small terms free of cancellation when X̃ ≈ X.
 * mq_err_grams_prepare forms E [cols, cols] and turns G into F in place, once per layer;
 * mq_err_from_grams then costs four rows×cols² products per block of rows, instead of three
 * n×rows×cols ones. acc->n = 1 (sums already per sample). scratch [rows, cols]. */
void mq_err_grams_prepare(const double *H, double *G, const double *Hxx, size_t cols, double *E);
void mq_err_from_grams(mq_err_accum *acc, const double *H, const double *F, const double *Hxx,
                       const double *E, const double *W, const double *D, size_t rows,
                       size_t cols, double *scratch);

/* err and rel_err from H alone (X̃ = X): Σ dᵀHd, Σ wᵀHw. scratch [rows, cols]. */
void mq_err_from_hessian(mq_err_accum *acc, const double *H, const double *W, const double *D,
                         size_t rows, size_t cols, double *scratch);

/* The ℓ∞ bound of ALGORITHMS §6 for stochastic rounding. For every row r of W it tracks
 * max_k Σ_i V_ki²·s_ri over samples k, V = X̂Uᵀ = (X̃/√n)·R⁻ᵀ in processing order (U = R⁻¹;
 * R = NULL means U = I, for RTN), s_ri = (δ_ri/U_ii)² = (δ_ri·R_ii)². */
typedef struct mq_linf_accum {
  size_t rows, cols, n;
  const size_t *perm; /* [cols] processing order */
  const double *R;    /* [cols, cols] column-major upper, processing order, or NULL */
  double *S;          /* row-major [cols, rows]: s_ri, i in processing order (owned) */
  double *rowmax;     /* [rows] (owned) */
} mq_linf_accum;

/* S from the result's steps: δ_ri = scales[r, g_idx[perm[i]]]. */
mq_status mq_linf_init(mq_linf_accum *a, const mq_layer_result *res, const size_t *perm,
                       const double *R, size_t n, mq_error *err);
/* One chunk of X̃ rows (row-major [count, cols], original column order). scratch: [count,
 * cols + rows]. */
void mq_linf_accumulate(mq_linf_accum *a, const double *Xt, size_t count, double *scratch);
/* The bound sqrt(2·ln(2n/p)·m), p = 0.01, for m = the largest rowmax_r (over all ranks' rows). */
double mq_linf_bound(double max_rowmax, size_t n);
void mq_linf_free(mq_linf_accum *a);

static inline double mq_err_value(const mq_err_accum *a) { return a->err_sum / (double)a->n; }
double mq_err_relative(const mq_err_accum *a);

#endif
