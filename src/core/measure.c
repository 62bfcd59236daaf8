#include "core/measure.h"

#include <math.h>

#include "core/blas.h"

double mq_quadratic_form_sum(const double *A, const double *D, size_t rows, size_t cols,
                             double *scratch) {
  if (rows == 0) return 0.0;
  cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0, A, (int)cols, D,
              (int)cols, 0.0, scratch, (int)cols);
  double s = 0.0;
  for (size_t k = 0; k < rows * cols; k++) s += D[k] * scratch[k];
  return s;
}

static double sum_squares(const double *a, size_t len) {
  double s = 0.0;
  for (size_t k = 0; k < len; k++) s += a[k] * a[k];
  return s;
}

void mq_err_accumulate(mq_err_accum *acc, const double *X, double *Xq, size_t count,
                       size_t cols, const double *W, const double *D, size_t rows, double *Y) {
  int m = (int)count, n = (int)rows, k = (int)cols;
  acc->n += count;
  if (count == 0 || rows == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, X, k, W, k, 0.0, Y, n);
  acc->ref_sum += sum_squares(Y, count * rows);
  if (Xq == NULL) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, X, k, D, k, 0.0, Y, n);
  } else {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, Xq, k, D, k, 0.0, Y, n);
    for (size_t i = 0; i < count * cols; i++) Xq[i] = X[i] - Xq[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, Xq, k, W, k, 1.0, Y, n);
  }
  acc->err_sum += sum_squares(Y, count * rows);
}

void mq_err_from_hessian(mq_err_accum *acc, const double *H, const double *W, const double *D,
                         size_t rows, size_t cols, double *scratch) {
  acc->n = 1; /* H is already divided by n */
  acc->err_sum = mq_quadratic_form_sum(H, D, rows, cols, scratch);
  acc->ref_sum = mq_quadratic_form_sum(H, W, rows, cols, scratch);
}

double mq_err_relative(const mq_err_accum *a) {
  return a->ref_sum > 0 ? sqrt(a->err_sum / a->ref_sum) : (a->err_sum > 0 ? INFINITY : 0.0);
}
