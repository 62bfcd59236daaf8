#include "core/qronos.h"

#include <string.h>

#include "core/blas.h"
#include "core/hessian.h"
#include "core/mem.h"
#include "core/optq.h"
#include "core/status.h"

/* The first targets from row c0 = perm[0] of G (g) and H (h). */
static void first_target_rows(const double *h, const double *g, size_t cols, const size_t *perm,
                              const float *Wcm, size_t rows, double *target) {
  size_t c0 = perm[0];
  for (size_t r = 0; r < rows; r++) target[r] = 0.0;
  for (size_t p = 0; p < cols; p++) { /* column by column: Wcm's columns are contiguous */
    size_t k = perm[p];
    double coef = g[k] - (k == c0 ? 0.0 : h[k]);
    const float *w = Wcm + p * rows;
    for (size_t r = 0; r < rows; r++) target[r] += coef * (double)w[r];
  }
  for (size_t r = 0; r < rows; r++) target[r] /= h[c0];
}

void mq_qronos_first_target(const double *H, const double *G, size_t cols, const size_t *perm,
                            const float *Wcm, size_t rows, double *target) {
  first_target_rows(H + perm[0] * cols, G + perm[0] * cols, cols, perm, Wcm, rows, target);
}

void mq_qronos_panel(const double *Hp, const double *Gp, size_t p0, size_t h, size_t cols,
                     const size_t *perm, const size_t *pos, const float *Wcm, const float *W0,
                     size_t rows, double *target, float *V, float *scratch) {
  size_t c0 = perm[0];
  if (c0 >= p0 && c0 < p0 + h)
    first_target_rows(Hp + (c0 - p0) * cols, Gp + (c0 - p0) * cols, cols, perm, Wcm, rows, target);
  if (V == NULL || rows == 0) return;
  float *D = scratch, *Y = scratch + h * cols; /* [h, cols] G − H rows; [h, rows] their V rows */
  for (size_t k = 0; k < h * cols; k++) D[k] = (float)(Gp[k] - Hp[k]);
  for (size_t r0 = 0; r0 < rows; r0 += MQ_ROW_BLOCK) { /* one call per row block (optq.h) */
    int m = (int)(rows - r0 < MQ_ROW_BLOCK ? rows - r0 : MQ_ROW_BLOCK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)h, m, (int)cols, 1.0f, D,
                (int)cols, W0 + r0 * cols, (int)cols, 0.0f, Y + r0, (int)rows);
  }
  for (size_t i = 0; i < h; i++) /* row i of the panel is processing position pos[p0 + i] */
    memcpy(V + pos[p0 + i] * rows, Y + i * rows, rows * sizeof *V);
}

mq_status mq_qronos_mismatch(double *G, const double *H, size_t cols, const size_t *perm,
                             const float *Wcm, size_t rows, float *V, mq_error *err) {
  mq_status st = MQ_OK;
  float *W0 = mq_alloc(rows * cols, sizeof *W0); /* row-major [rows, cols], original order */
  float *Df = mq_alloc(cols * cols, sizeof *Df);
  uint8_t *done = mq_alloc(cols, 1);
  double *row = mq_alloc(cols, sizeof *row);
  MQ_CHECK_ALLOC(err, W0 && Df && done && row, cols * cols * sizeof *Df);
  for (size_t k = 0; k < cols * cols; k++) G[k] -= H[k]; /* Δ = G − H, exact enough in double */
  mq_permute_rows(G, cols, cols, perm, done, row);
  for (size_t k = 0; k < cols * cols; k++) Df[k] = (float)G[k];
  enum { TILE = 64 };
  for (size_t r0 = 0; r0 < rows; r0 += TILE) /* back to original order, in cache-sized tiles */
    for (size_t p = 0; p < cols; p++)
      for (size_t r = r0; r < r0 + TILE && r < rows; r++) W0[r * cols + perm[p]] = Wcm[p * rows + r];
  /* float like the sweep it feeds: half the time of DGEMM; one call per row block (optq.h) */
  for (size_t r0 = 0; r0 < rows; r0 += MQ_ROW_BLOCK) {
    int m = (int)(rows - r0 < MQ_ROW_BLOCK ? rows - r0 : MQ_ROW_BLOCK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cols, m, (int)cols, 1.0f, Df,
                (int)cols, W0 + r0 * cols, (int)cols, 0.0f, V + r0, (int)rows);
  }
cleanup:
  mq_free(W0);
  mq_free(Df);
  mq_free(done);
  mq_free(row);
  return st;
}

/* T·Rᵀ = V solved backwards over column blocks, reading R only through panels:
 * V[:, J] = T[:, J]·R_JJᵀ + Σ_{K>J} T[:, K]·R[J, K]ᵀ, so once T[:, K] is known its share is
 * removed from every earlier column with one GEMM, whose operand R[:k1, K] is in panel K. */
mq_status mq_qronos_refit_share(const mq_factorizer *f, size_t cols, float *V, size_t rows,
                                int block, double *t_sq, double *tiles, mq_error *err) {
  mq_status st = MQ_OK;
  size_t B = (size_t)block;
  double *dpanel = mq_alloc(cols * B, sizeof *dpanel);
  float *panel = mq_alloc(cols * B, sizeof *panel);
  if (!(dpanel && panel))
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                  cols * B * sizeof *dpanel);
  MQ_CHECK(mq_factorizer_agree(f, st)); /* the panel fetches below may be collective */
  *t_sq = 0.0;
  for (size_t k2 = cols, k1; k2 > 0; k2 = k1) {
    k1 = k2 > B ? k2 - B : 0;
    size_t width = k2 - k1, ld = k2;
    MQ_CHECK(f->panel(f->ctx, k1, width, dpanel, err)); /* collective: also without rows */
    if (rows == 0) continue;
    for (size_t k = 0; k < ld * width; k++) panel[k] = (float)dpanel[k];
    float *Tk = V + k1 * rows;
    for (size_t r0 = 0; r0 < rows; r0 += MQ_ROW_BLOCK) { /* one call per row block (optq.h) */
      int m = (int)(rows - r0 < MQ_ROW_BLOCK ? rows - r0 : MQ_ROW_BLOCK);
      cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, m, (int)width,
                  1.0f, panel + k1, (int)ld, Tk + r0, (int)rows);
      if (k1 > 0)
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, m, (int)k1, (int)width, -1.0f,
                    Tk + r0, (int)rows, panel, (int)ld, 1.0f, V + r0, (int)rows);
    }
  }
  for (size_t r0 = 0, tile = 0; r0 < rows; r0 += MQ_ROW_TILE, tile++) {
    size_t r1 = r0 + MQ_ROW_TILE < rows ? r0 + MQ_ROW_TILE : rows;
    double t = 0.0;
    for (size_t k = 0; k < cols; k++)
      for (size_t r = r0; r < r1; r++) t += (double)V[k * rows + r] * (double)V[k * rows + r];
    if (tiles != NULL) tiles[tile * MQ_TILE_COUNT + MQ_TILE_T] = t;
    *t_sq += t;
  }
cleanup:
  mq_free(dpanel);
  mq_free(panel);
  return st;
}
