#include "core/hessian.h"

#include <stdlib.h>
#include <string.h>

#include "core/blas.h"

void mq_hessian_accumulate(double *H, size_t cols, const double *Xc, size_t count) {
  if (count == 0) return;
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)count, 1.0, Xc, (int)cols,
              1.0, H, (int)cols);
}

/* Tiles of 64×64 doubles keep both the rows read and the columns written in cache. */
enum { MQ_TILE = 64 };

void mq_hessian_finalize(double *H, size_t cols, size_t n) {
  double inv = 1.0 / (double)n;
  for (size_t i0 = 0; i0 < cols; i0 += MQ_TILE) {
    size_t i1 = i0 + MQ_TILE < cols ? i0 + MQ_TILE : cols;
    for (size_t j0 = i0; j0 < cols; j0 += MQ_TILE) {
      size_t j1 = j0 + MQ_TILE < cols ? j0 + MQ_TILE : cols;
      for (size_t i = i0; i < i1; i++) {
        for (size_t j = j0 > i ? j0 : i; j < j1; j++) {
          double v = H[i * cols + j] * inv;
          H[i * cols + j] = v;
          H[j * cols + i] = v;
        }
      }
    }
  }
}

/* Rows [i0, i1) of the packed triangle moved to their places in M, last row first: row i's
 * cols−i values go from packed offset i·cols − i(i−1)/2 to i·cols + i, at or after where they
 * are and past every earlier row's packed values, so nothing still to be moved is overwritten
 * (the caller goes through the blocks last to first, too). */
static void unpack_rows(double *M, size_t cols, size_t i0, size_t i1) {
  for (size_t i = i1; i-- > i0;) {
    size_t k = i * cols - i * (i - 1) / 2; /* i = 0: 0 · (SIZE_MAX) = 0 */
    memmove(M + i * cols + i, M + k, (cols - i) * sizeof *M);
  }
}

/* Small tiles for the mirror: the strided side of the transposition (32 rows × 4 cache lines)
 * stays in L1. */
enum { MQ_MIRROR_TILE = 32 };

/* The tile of block rows [i0, i1) × columns [j0, j1) (j0 ≥ i0) divided by n, and mirrored into
 * rows [j0, j1), columns [i0, i1): those rows' lower parts, which the packed values of the rows
 * still to be moved (all above i0) never reach. */
static void scale_mirror_tile(double *M, size_t cols, size_t i0, size_t i1, size_t j0,
                              size_t j1, double inv) {
  for (size_t i = i0; i < i1; i++)
    for (size_t j = j0 > i ? j0 : i; j < j1; j++) M[i * cols + j] *= inv;
  for (size_t j = j0; j < j1; j++) { /* contiguous writes along row j */
    size_t iend = j < i1 ? j : i1;
    for (size_t i = i0; i < iend; i++) M[j * cols + i] = M[i * cols + j];
  }
}

void mq_hessian_from_packed(double *M, size_t cols, size_t n) {
  double inv = 1.0 / (double)n;
  size_t nblocks = (cols + MQ_MIRROR_TILE - 1) / MQ_MIRROR_TILE;
  int threads = mq_blas_threads();
  for (size_t b = nblocks; b-- > 0;) {
    size_t i0 = b * MQ_MIRROR_TILE, i1 = i0 + MQ_MIRROR_TILE < cols ? i0 + MQ_MIRROR_TILE : cols;
    unpack_rows(M, cols, i0, i1);
    long long tiles = (long long)(nblocks - b);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 16)
    for (long long t = 0; t < tiles; t++) {
      size_t j0 = i0 + (size_t)t * MQ_MIRROR_TILE;
      size_t j1 = j0 + MQ_MIRROR_TILE < cols ? j0 + MQ_MIRROR_TILE : cols;
      scale_mirror_tile(M, cols, i0, i1, j0, j1, inv);
    }
  }
}

void mq_hessian_cross_accumulate(double *G, size_t cols, const double *Xqc, const double *Xc,
                                 size_t count) {
  if (count == 0) return;
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cols, (int)cols, (int)count, 1.0, Xqc,
              (int)cols, Xc, (int)cols, 1.0, G, (int)cols);
}

void mq_hessian_scale(double *G, size_t cols, size_t n) {
  double inv = 1.0 / (double)n;
  for (size_t k = 0; k < cols * cols; k++) G[k] *= inv;
}

size_t mq_hessian_fix_dead(double *H, size_t cols, uint8_t *dead) {
  size_t count = 0;
  for (size_t j = 0; j < cols; j++) {
    dead[j] = H[j * cols + j] == 0.0;
    if (dead[j]) {
      H[j * cols + j] = 1.0;
      count++;
    }
  }
  return count;
}

double mq_hessian_mean_diag(const double *H, size_t cols) {
  double s = 0.0;
  for (size_t j = 0; j < cols; j++) s += H[j * cols + j];
  return s / (double)cols;
}

/* qsort is not stable: ties are broken by the column index, which makes it stable. */
static const double *order_diag;
static size_t order_stride; /* cols + 1 in a matrix, 1 in a vector */

static int by_diag_desc(const void *a, const void *b) {
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  double di = order_diag[i * order_stride], dj = order_diag[j * order_stride];
  if (di != dj) return di > dj ? -1 : 1;
  return i < j ? -1 : (i > j);
}

static void order_by(const double *d, size_t stride, size_t cols, int act_order, size_t *perm) {
  for (size_t j = 0; j < cols; j++) perm[j] = j;
  if (!act_order) return;
  order_diag = d;
  order_stride = stride;
  qsort(perm, cols, sizeof *perm, by_diag_desc);
}

void mq_hessian_order(const double *H, size_t cols, int act_order, size_t *perm) {
  order_by(H, cols + 1, cols, act_order, perm);
}

void mq_hessian_order_diag(const double *diag, size_t cols, int act_order, size_t *perm) {
  order_by(diag, 1, cols, act_order, perm);
}

void mq_permute_rows(double *A, size_t nrows, size_t len, const size_t *sigma, uint8_t *done,
                     double *row) {
  memset(done, 0, nrows);
  for (size_t start = 0; start < nrows; start++) {
    if (done[start] || sigma[start] == start) continue;
    memcpy(row, A + start * len, len * sizeof *row);
    size_t a = start;
    while (sigma[a] != start) {
      memcpy(A + a * len, A + sigma[a] * len, len * sizeof *row);
      done[a] = 1;
      a = sigma[a];
    }
    memcpy(A + a * len, row, len * sizeof *row);
    done[a] = 1;
  }
}
