/* Qronos (ALGORITHMS §4) as OPTQ on the ridge fit w* = (H+λI)⁻¹(G+λI)w with a special first
 * column. Why that is the same algorithm: Qronos' step 2 refits w_2: to
 * (A₂₂)⁻¹((G+λI)₂:,: w − H₂:,₁ q₁) with A = H+λI; since A w* = (G+λI)w this equals
 * w*₂: + A₂₂⁻¹A₂:,₁(w*₁ − q₁), exactly OPTQ's update after column 1 applied to w*, and step 3
 * is OPTQ with A₂₂, whose factor is the trailing block of R. Only column 1 differs: it rounds
 * s = (G₁,:w − H₁,₂:w₂:)/H₁₁ instead of w*₁. The sweep needs w* only through
 * T = W(G−H)ᵀR⁻ᵀ (see optq.h), one GEMM and one triangular solve over OPTQ.
 *
 * Error accounting: err_floor = ‖r₁‖² = e₁² + ‖(X−X̃)w‖²/n − ‖R⁻¹(G−H)w‖² (exact at λ = 0:
 * the least-squares residual of the refit plus column 1's share; the last term is the part of
 * the mismatch (X−X̃)w that X̃'s columns can absorb, whose norm is ‖t‖ with t = R⁻¹(G−H)w). */
#ifndef MQ_CORE_QRONOS_H
#define MQ_CORE_QRONOS_H

#include <stddef.h>
#include <stdint.h>

#include "core/factorizer.h"
#include "mpiquant/numerics.h"

/* target[r] = (G[c0,:]·w_r − Σ_{k≠c0} H[c0,k]·w_rk) / H[c0,c0], c0 = perm[0]; H, G row-major
 * [cols, cols] in original order (H without λ); Wcm [cols, rows] column-major in processing
 * order (dead columns zero). */
void mq_qronos_first_target(const double *H, const double *G, size_t cols, const size_t *perm,
                            const float *Wcm, size_t rows, double *target);

/* The same two from row panels when H and G are never whole (distributed H): rows
 * [p0, p0+h) of H and G (Hp, Gp row-major [h, cols], original order) give V's rows at the
 * processing positions pos[p0 … p0+h−1] and, when they hold row perm[0], the first targets.
 * W0: W row-major [rows, cols] in original order (dead columns zero); V may be NULL (X̃ = X);
 * scratch: floats [h·cols + h·rows]. */
void mq_qronos_panel(const double *Hp, const double *Gp, size_t p0, size_t h, size_t cols,
                     const size_t *perm, const size_t *pos, const float *Wcm, const float *W0,
                     size_t rows, double *target, float *V, float *scratch);

/* Before the factor: V [cols, rows] column-major in processing order = W(G−H)ᵀ, i.e.
 * V[p·rows + r] = Σ_k (G−H)[perm[p], k]·w_rk, in float like the sweep it feeds. G is consumed
 * (overwritten by G−H with its rows permuted). One SGEMM. */
mq_status mq_qronos_mismatch(double *G, const double *H, size_t cols, const size_t *perm,
                             const float *Wcm, size_t rows, float *V, mq_error *err);

/* After the factor: T = V·R⁻ᵀ in place — the [cols, rows] column-major input of the sweep;
 * *t_sq = ‖T‖²_F, summed tile by tile (MQ_ROW_TILE rows) and, when tiles is not NULL, each
 * tile's share stored at tiles[tile·MQ_TILE_COUNT + MQ_TILE_T]. R is read through the
 * factorizer's panels (blocks of `block` columns, fetched last to first; collective when the
 * factorizer is, also for rows = 0). */
mq_status mq_qronos_refit_share(const mq_factorizer *f, size_t cols, float *V, size_t rows,
                                int block, double *t_sq, double *tiles, mq_error *err);

#endif
