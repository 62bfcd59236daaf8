/* Sums of doubles that are bit-identical whatever the number of ranks, the order of the
 * contributions and the reduction algorithm MPI picks (ALGORITHMS §7).
 *
 * Every contribution v is converted to a 128-bit fixed-point integer round(v · 2^scale_exp)
 * and integers are added (associative, exact unless the range overflows). scale_exp is agreed
 * before accumulation from a bound on the magnitude of the final sums (see
 * mq_exact_sum_scale), so the result carries ≥ 64 significant bits beyond what a double holds
 * and converts back to the same double on every rank count.
 *
 * The loops over the accumulators run on the rank's BLAS threads (core/blas.h); each
 * accumulator is added to by one thread, so the results do not depend on the thread count. */
#ifndef MQ_DIST_EXACT_SUM_H
#define MQ_DIST_EXACT_SUM_H

#include <mpi.h>
#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_exact_sum {
  size_t len;
  int scale_exp;
  __int128 *acc; /* [len] */
} mq_exact_sum;

/* The exponent for sums whose absolute value never exceeds `bound` (> 0), leaving headroom for
 * `terms` additions: the largest e with bound · 2^e · 2 ≤ 2^126. */
int mq_exact_sum_scale(double bound);

mq_status mq_exact_sum_init(mq_exact_sum *s, size_t len, int scale_exp, mq_error *err);
void mq_exact_sum_free(mq_exact_sum *s);
/* acc[k] += round(v[k] · 2^scale_exp) for k < len (round half to even; exact power-of-two
 * scaling). */
void mq_exact_sum_add(mq_exact_sum *s, const double *v);
/* The same for float values (widened exactly). */
void mq_exact_sum_add_float(mq_exact_sum *s, const float *v);
/* The upper triangle of P [cols, cols] (row-major) added to the accumulators as the packed
 * triangle, row by row: acc[i·cols − i(i−1)/2 + (j − i)] += P[i, j] for j ≥ i (len =
 * cols(cols+1)/2). */
void mq_exact_sum_add_upper(mq_exact_sum *s, const double *P, size_t cols);
void mq_exact_sum_add_upper_float(mq_exact_sum *s, const float *P, size_t cols);
/* Integer sum over ctx of every rank's acc, result on every rank. Collective. */
mq_status mq_exact_sum_allreduce(mq_exact_sum *s, mq_ctx *ctx, mq_error *err);
/* Collective. out[k] = the integer sum over ctx of every rank's acc[k], converted as
 * mq_exact_sum_result converts it, on every rank: the same bits as mq_exact_sum_allreduce
 * followed by mq_exact_sum_result, with a quarter less traffic and the conversion shared among
 * the ranks (reduce-scatter of the accumulators, allgather of the doubles). acc is clobbered;
 * out [len] must not overlap it. */
mq_status mq_exact_sum_reduce_to_double(mq_exact_sum *s, mq_ctx *ctx, double *out,
                                        mq_error *err);
/* out[k] = acc[k] · 2^−scale_exp, correctly rounded to double. */
void mq_exact_sum_result(const mq_exact_sum *s, double *out);
/* The same for acc[first … first+n) into out[0 … n). */
void mq_exact_sum_result_range(const mq_exact_sum *s, size_t first, double *out, size_t n);

#endif
