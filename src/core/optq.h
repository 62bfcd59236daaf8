/* The blocked OPTQ sweep (ALGORITHMS §4) over any subset of rows, written with R (R Rᵀ = H+λI,
 * upper; U = R⁻¹) instead of U so the factor needs one Cholesky only.
 *
 * Why it is the same algorithm: GPTQ's right-looking updates leave column k ≥ i at
 *   w_k⁽ⁱ⁾ = w_k + (R₂₂⁻ᵀ R₁₂ᵀ d₁)_k,   d = w − q (original w),
 * with R₁₂ = R[:i, i:], R₂₂ = R[i:, i:] (block inverse of R). For the columns of one block
 * only R's diagonal block enters, so a block starts from the corrections
 *   C = (D[:, :i1] · R[:i1, blk]) · R_bb⁻¹     (one GEMM + one TRSM, all rows)
 * (current weights = W_blk + C), and inside the block the usual rank-1 updates with
 * U_bb = R_bb⁻¹ run on row tiles that stay in cache. e_i = (w_i − q_i + C_i)·R_ii and
 * Σe² = Σ(w−q)ᵀ(H+λI)(w−q) (§5). */
#ifndef MQ_CORE_OPTQ_H
#define MQ_CORE_OPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "core/factorizer.h"
#include "core/grid.h"
#include "mpiquant/numerics.h"

/* Rows per BLAS call on W's rows. OpenBLAS computes a row of a GEMM differently depending on
 * the call's shape (its small-matrix kernels), so a row's result would depend on how many rows
 * a rank holds. Every BLAS call on rows therefore covers one block of MQ_ROW_BLOCK rows counted
 * from the layer's first row, and ranks own whole blocks (the last block may be shorter): the
 * same call computes the same row on any number of ranks. */
#define MQ_ROW_BLOCK 128
/* Rows per tile of the sweep. Tiles start at the rank's first row, a multiple of MQ_ROW_BLOCK,
 * so they are the same tiles of the layer on any number of ranks; sums kept per tile and added
 * in the layer's row order have the same bits on any number of ranks (layer_errors.c). */
#define MQ_ROW_TILE 64
/* The per-tile sums (mq_rows_info.tiles, mq_sweep.tiles): loss, bound, the parts of both from
 * processing column 0, and Qronos' ‖T‖² share. */
enum { MQ_TILE_LOSS, MQ_TILE_BOUND, MQ_TILE_E0, MQ_TILE_BOUND0, MQ_TILE_T, MQ_TILE_COUNT };

typedef struct mq_sweep {
  size_t rows, cols;
  float *W;               /* [cols, rows] column-major, processing order; in: weights (dead
                             columns zeroed), out: D = W − Q */
  const mq_factorizer *factor; /* R's panels (already factored) */
  const mq_grid *grid;
  int group_size;         /* > 0, or -1 (one group per row) */
  int static_groups;      /* scales/zeros given on input */
  const int32_t *col_group; /* [cols] group index of each processing column */
  const size_t *orig_col; /* [cols] original column of each processing column */
  size_t row0;            /* global index of the first row (stochastic key); a multiple of
                             MQ_ROW_BLOCK unless rows ≤ MQ_ROW_BLOCK on one rank */
  size_t ngroups;
  float *scales;          /* [rows, ngroups] (output, or input with static groups) */
  int32_t *zeros;         /* [rows, ngroups] */
  uint8_t *codes;         /* [cols, rows] output codes, processing order */
  int block_size;
  /* Qronos (NULL for OPTQ): T = V·R⁻ᵀ with V = W(G−H)ᵀ, [cols, rows] column-major, processing
   * order — the sweep on the ridge fit w* = (H+λI)⁻¹(G+λI)w needs w* only through
   * (D·R[:i1, blk] + T_blk)·R_bb⁻¹ with D = w − q, so w* is never formed; and first_target
   * [rows], the scalar step 1 rounds for column 0 instead of its current weight. */
  const float *T;
  const double *first_target;
  /* outputs */
  double loss;            /* Σ e² */
  double bound;           /* Σ δ²·R_ii²/4 (= δ²/(4U_ii²)) */
  int64_t clipped;
  double e0_sq, bound0;   /* the parts of loss and bound from processing column 0 */
  double *tiles;          /* NULL, or per tile of MQ_ROW_TILE rows [ntiles, MQ_TILE_COUNT]: the
                             four sums above by tile (MQ_TILE_T untouched) */
  double gemm_seconds, gemm_flops; /* the block-start GEMM+TRSM (the BLAS-3 part) */
} mq_sweep;

mq_status mq_optq_sweep(mq_sweep *s, mq_error *err);

#endif
