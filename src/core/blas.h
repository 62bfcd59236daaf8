/* BLAS through OpenBLAS' cblas.h; the few LAPACK routines we call are declared here because
 * Debian ships no LAPACKE for OpenBLAS by default (Fortran calling convention, hidden string
 * lengths passed as size_t). */
#ifndef MQ_CORE_BLAS_H
#define MQ_CORE_BLAS_H

#include <stddef.h>
#include <cblas.h> /* OpenBLAS: also openblas_get_num_threads() */
#ifdef MQ_NO_OPENBLAS_THREADS /* another BLAS (cmake/MqLinalg.cmake): the sweep uses one thread */
static inline int openblas_get_num_threads(void) { return 1; }
#endif

/* Threads of this rank: as many as BLAS uses (OPENBLAS_NUM_THREADS), so one knob sets them for
 * the BLAS calls and for mpiquant's own loops around them alike. */
static inline int mq_blas_threads(void) {
  int t = openblas_get_num_threads();
  return t > 1 ? t : 1;
}

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda,
             int *info, size_t uplo_len, size_t diag_len);

#endif
