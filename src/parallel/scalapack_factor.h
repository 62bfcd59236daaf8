/* The distributed factor (ALGORITHMS §3.4, §7) for layers whose cols×cols factor should not be
 * replicated: R with R Rᵀ = Hp + λI (Hp = H permuted by perm, R = JLJ where J(Hp+λI)J = LLᵀ,
 * exactly the factor of src/core/factor.h) computed by ScaLAPACK's pdpotrf on a 2-D
 * block-cyclic BLACS grid built from the communicator; the sweep then fetches column panels of
 * R just in time, so no rank ever holds the whole cols×cols factor. */
#ifndef MQ_DIST_SCALAPACK_FACTOR_H
#define MQ_DIST_SCALAPACK_FACTOR_H

#include <mpi.h>
#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_dist_factor mq_dist_factor;

/* Collective over ctx (its traffic is counted there). Builds the BLACS grid (as square as
 * possible, nprow·npcol = size of the communicator) and
 * the block-cyclic layout (block nb×nb) of the reversed permuted matrix
 * B = J·Hp·J, B[a,b] = H[perm[n−1−a], perm[n−1−b]]. */
mq_status mq_dist_factor_create(mq_ctx *ctx, size_t cols, int nb, mq_dist_factor **out,
                                mq_error *err);
void mq_dist_factor_destroy(mq_dist_factor **f); /* collective; nulls the handle */

/* Local storage of B for this rank (column-major local array, ScaLAPACK layout) and a way to
 * fill it: for each local entry, its global (a, b). Filled by mq_dist_factor_set_from(). */
size_t mq_dist_factor_local_len(const mq_dist_factor *f);

/* Collective. Fills the local blocks of B from a replicated H (row-major [cols, cols]) — the
 * simple path, used when H fits on every rank; `H_owner` callers with distributed H use
 * mq_dist_factor_local_entry() instead. */
void mq_dist_factor_set_from(mq_dist_factor *f, const double *H, const size_t *perm);

/* Filling B from H's rows without ever holding H whole (H symmetric): B's column b is row
 * perm[n−1−b] of H, permuted. nloc local columns; the H row that local column lj needs; and
 * the fill itself from that row (hrow [cols], original order). */
size_t mq_dist_factor_local_cols(const mq_dist_factor *f);
size_t mq_dist_factor_column_source(const mq_dist_factor *f, size_t lj, const size_t *perm);
void mq_dist_factor_set_column(mq_dist_factor *f, size_t lj, const double *hrow,
                               const size_t *perm);
/* For local element k (0 ≤ k < local_len): its global row a and column b in B. */
void mq_dist_factor_local_entry(const mq_dist_factor *f, size_t k, size_t *a, size_t *b);
double *mq_dist_factor_local(mq_dist_factor *f);

/* Collective. pdpotrf of B + λI with the same λ escalation as the local factor (×10, or
 * 1e-6·mean diag from 0, up to 6 times, warning naming `layer`); MQ_ENUMERIC after that. The
 * diagonal of B must be restorable: the function keeps a copy of the local diagonal and local
 * lower triangle it needs. */
mq_status mq_dist_factor_cholesky(mq_dist_factor *f, double *lambda, int *raises,
                                  const char *layer, mq_error *err);

/* Collective. The panel of R for sweep block [i1, i1+width): R[0 : i1+width, i1 : i1+width]
 * in double, column-major with leading dimension i1+width (upper part valid: R[i,j] for i ≤ j;
 * entries below the diagonal are set to 0), identical on every rank. Built from the local
 * pieces of L (R[a,b] = L[n−1−a, n−1−b]) by one MPI_Allreduce(SUM) of a zero-filled buffer
 * (each entry has exactly one owner, so the sum is exact). */
mq_status mq_dist_factor_panel(mq_dist_factor *f, size_t i1, size_t width, double *panel,
                               mq_error *err);

/* Bytes this rank holds for the factor (for reports). */
size_t mq_dist_factor_bytes(const mq_dist_factor *f);

#endif
