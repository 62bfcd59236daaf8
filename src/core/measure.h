/* Error measurement (SPEC.md attributes err, rel_err) and quadratic forms. */
#ifndef MQ_CORE_MEASURE_H
#define MQ_CORE_MEASURE_H

#include <stddef.h>

/* Σ_rows dᵀ A d for D row-major [rows, cols], A symmetric [cols, cols]. scratch: [rows, cols].
 * One DSYMM. */
double mq_quadratic_form_sum(const double *A, const double *D, size_t rows, size_t cols,
                             double *scratch);

/* Running sums of ‖XWᵀ − X̃Ŵᵀ‖² and ‖XWᵀ‖² over sample chunks. */
typedef struct mq_err_accum {
  double err_sum, ref_sum;
  size_t n;
} mq_err_accum;

/* One chunk: X, Xq row-major [count, cols] (Xq NULL means X̃ = X; Xq is overwritten with
 * X − X̃ when given); W, D = W − Ŵ row-major [rows, cols] double; Y scratch [count, rows].
 * XWᵀ − X̃Ŵᵀ is formed as (X − X̃)Wᵀ + X̃Dᵀ so no large terms cancel. */
void mq_err_accumulate(mq_err_accum *acc, const double *X, double *Xq, size_t count,
                       size_t cols, const double *W, const double *D, size_t rows, double *Y);

/* err and rel_err from H alone (X̃ = X): Σ dᵀHd, Σ wᵀHw. scratch [rows, cols]. */
void mq_err_from_hessian(mq_err_accum *acc, const double *H, const double *W, const double *D,
                         size_t rows, size_t cols, double *scratch);

static inline double mq_err_value(const mq_err_accum *a) { return a->err_sum / (double)a->n; }
double mq_err_relative(const mq_err_accum *a);

#endif
