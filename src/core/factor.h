/* The factor the sweep needs (ALGORITHMS §3.4), computed with one Cholesky and no inverse:
 * with J the reversal permutation, J(H+λI)J = LLᵀ gives R = JLJ, upper triangular with
 * R Rᵀ = H+λI. Then U = R⁻¹ is the upper factor with UᵀU = (H+λI)⁻¹ (U_ii = 1/R_ii), and the
 * sweep uses R directly (see optq.c), so the triangular inverse is never formed. Cost cols³/3. */
#ifndef MQ_CORE_FACTOR_H
#define MQ_CORE_FACTOR_H

#include <stddef.h>

#include "mpiquant/numerics.h"

/* Overwrites H (row-major [cols, cols], symmetric, original column order) with R: column-major,
 * upper triangle valid (the strict lower part is scratch), R Rᵀ = Hp + λI where
 * Hp[i,j] = H[perm[i], perm[j]]. In place, so a layer never holds two cols×cols matrices. On
 * Cholesky failure λ is multiplied by 10 (or set to 1e-6·mean diag when it was 0), up to 6
 * times, with a warning naming `layer`; *lambda and *raises report what was used. MQ_ENUMERIC
 * after that. */
mq_status mq_factor_reverse_cholesky(double *H, size_t cols, const size_t *perm,
                                     double *lambda, int *raises, const char *layer,
                                     mq_error *err);

/* The λ escalation shared by every factorizer: λ ← 10λ (or 1e-6·mean diag when λ = 0) with a
 * warning naming the layer and the failed pivot; MQ_ENUMERIC once it was raised 6 times. */
mq_status mq_factor_raise_lambda(double *lambda, int *raises, double mean_diag, int pivot,
                                 const char *layer, mq_error *err);

#endif
