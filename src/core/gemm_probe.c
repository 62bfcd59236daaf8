#include "core/gemm_probe.h"

#include <math.h>

#include "core/blas.h"
#include "core/log.h"
#include "core/mem.h"

double mq_gemm_rate(int n, int single) {
  size_t len = (size_t)n * (size_t)n;
  void *a = mq_calloc(len, 8), *b = mq_calloc(len, 8), *c = mq_calloc(len, 8);
  double best = 0.0;
  for (int rep = 0; a && b && c && rep < 3; rep++) {
    double t0 = mq_wtime();
    if (single)
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    else
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    best = fmax(best, 2.0 * n * (double)n * n / (mq_wtime() - t0) / 1e9);
  }
  mq_free(a);
  mq_free(b);
  mq_free(c);
  return best;
}


double mq_syrk_rate(int n, int k, int single) {
  size_t la = (size_t)n * (size_t)k, lc = (size_t)n * (size_t)n;
  void *a = mq_calloc(la, 8), *c = mq_calloc(lc, 8);
  double best = 0.0;
  for (size_t i = 0; a && i < la; i++) /* nonzero data: some BLAS kernels shortcut zeros */
    if (single) ((float *)a)[i] = (float)(i % 7) * 0.25f;
    else ((double *)a)[i] = (double)(i % 7) * 0.25;
  for (int rep = 0; a && c && rep < 3; rep++) {
    double t0 = mq_wtime();
    if (single)
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.0f, a, n, 0.0f, c, n);
    else
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.0, a, n, 0.0, c, n);
    best = fmax(best, (double)n * (double)n * k / (mq_wtime() - t0) / 1e9);
  }
  mq_free(a);
  mq_free(c);
  return best;
}
