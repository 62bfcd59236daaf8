/* Where the factor R (R Rᵀ = Hp + λI, see factor.h) lives and how the sweep reads it: the
 * sweep and Qronos' refit only ever ask for column panels R[0 : i1+width, i1 : i1+width], so
 * the same numerics run on a replicated factor (every rank factors its own copy, LAPACK) or a
 * distributed one (ScaLAPACK, src/dist), where fetching a panel is collective. */
#ifndef MQ_CORE_FACTORIZER_H
#define MQ_CORE_FACTORIZER_H

#include <stddef.h>

#include "mpiquant/numerics.h"

typedef struct mq_factorizer {
  /* Factors Hp + λI, Hp[i,j] = H[perm[i], perm[j]] (H row-major [cols, cols], original order;
   * may be consumed), escalating λ on failure (×10, up to 6 times). Collective when the
   * factorizer is. */
  mq_status (*factor)(void *ctx, double *H, size_t cols, const size_t *perm, double *lambda,
                      int *raises, const char *layer, mq_error *err);
  /* R[0 : i1+width, i1 : i1+width], column-major with leading dimension i1+width, entries below
   * the diagonal 0. Collective when the factorizer is: every rank asks for the same panels in
   * the same order, also ranks without rows. */
  mq_status (*panel)(void *ctx, size_t i1, size_t width, double *panel, mq_error *err);
  /* The whole R (column-major upper, [cols, cols]) when this rank holds it, else NULL. */
  const double *(*full)(void *ctx);
  /* Collective factorizers: the worst status of all ranks, called before each collective step
   * that follows a step which can fail on one rank only (an allocation), so every rank leaves
   * together instead of one waiting in a collective the other never enters. NULL: local. */
  mq_status (*agree)(void *ctx, mq_status mine);
  void *ctx;
} mq_factorizer;

/* st agreed over the factorizer's ranks (st itself for a local factorizer or f = NULL). */
static inline mq_status mq_factorizer_agree(const mq_factorizer *f, mq_status st) {
  return f != NULL && f->agree != NULL ? f->agree(f->ctx, st) : st;
}

/* The replicated factorizer: factors in place in H's buffer (mq_factor_reverse_cholesky), then
 * panels are copies out of it. ctx points to an mq_local_factor owned by the caller. */
typedef struct mq_local_factor {
  double *R; /* the H buffer after factor(); not owned */
  size_t cols;
} mq_local_factor;

void mq_local_factorizer(mq_factorizer *f, mq_local_factor *ctx);

#endif
