/* The calibration Hessian H = X̃ᵀX̃/n (ALGORITHMS §1, §3): accumulated in double, then prepared
 * for the sweep (dead inputs, act-order). H is row-major [cols, cols]; being symmetric it is
 * the same matrix in column-major. */
#ifndef MQ_CORE_HESSIAN_H
#define MQ_CORE_HESSIAN_H

#include <stddef.h>
#include <stdint.h>

/* H (upper triangle, row-major) += Xcᵀ Xc for a chunk Xc row-major [count, cols]. One DSYRK. */
void mq_hessian_accumulate(double *H, size_t cols, const double *Xc, size_t count);
/* Mirrors the upper triangle into the lower one and divides by n. */
void mq_hessian_finalize(double *H, size_t cols, size_t n);

/* M's first cols(cols+1)/2 entries hold the upper triangle of a sum of n outer products,
 * packed row by row (entry (i, j ≥ i) at i·cols − i(i−1)/2 + j − i): it becomes the whole
 * symmetric matrix [cols, cols] divided by n, in place, in one pass on the rank's threads. */
void mq_hessian_from_packed(double *M, size_t cols, size_t n);

/* G (row-major [cols, cols]) += Xqcᵀ Xc for a chunk (Qronos' G = X̃ᵀX/n). One DGEMM. */
void mq_hessian_cross_accumulate(double *G, size_t cols, const double *Xqc, const double *Xc,
                                 size_t count);
/* G /= n. */
void mq_hessian_scale(double *G, size_t cols, size_t n);

/* Dead inputs (§3.1): every j with H_jj == 0 gets H_jj = 1 and dead[j] = 1. Returns the count. */
size_t mq_hessian_fix_dead(double *H, size_t cols, uint8_t *dead);
/* Processing order (§3.2): perm[p] = original column processed at position p; with act_order
 * the stable argsort of diag(H) descending, else the identity. */
void mq_hessian_order(const double *H, size_t cols, int act_order, size_t *perm);
/* The same from the diagonal alone, diag [cols]. */
void mq_hessian_order_diag(const double *diag, size_t cols, int act_order, size_t *perm);
double mq_hessian_mean_diag(const double *H, size_t cols);

/* Rows of A (row-major [nrows, len]) permuted in place: new row a = old row sigma[a]. Follows
 * the cycles of sigma with one spare row (row [len]; done [nrows] scratch), so no second
 * matrix is needed. */
void mq_permute_rows(double *A, size_t nrows, size_t len, const size_t *sigma, uint8_t *done,
                     double *row);

#endif
