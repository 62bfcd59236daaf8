#include "parallel/exact_sum.h"
#include "parallel/ctx.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/blas.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/partition.h"

/* Arithmetic is done on the unsigned type: additions wrap modulo 2^128 (defined behaviour), so
 * the integer sum is associative and commutative even if a partial sum leaves the signed range;
 * only the final sum has to fit, and reading it back as two's complement is exact. */
typedef unsigned __int128 u128;

enum { FIXED_BYTES = 16 };

/* The hot loop works on the two 64-bit words of an accumulator: GCC spills __int128 variable
 * shifts and negations to the stack, which made it ~5x slower. may_alias (GCC/Clang, like
 * __int128 itself) makes reading and writing the __int128 objects through this type defined. */
typedef uint64_t __attribute__((may_alias)) word;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
enum { LO = 0, HI = 1 };
#else
enum { LO = 1, HI = 0 };
#endif

/* MPI counts are int: longer arrays are reduced in pieces of at most this many elements. */
static const size_t allreduce_chunk = (size_t)INT_MAX;

int mq_exact_sum_scale(double bound) {
  /* Headroom: the caller's bound holds for every partial and final sum (Σ|v| is always such a
   * bound), so a scaled exact sum is ≤ bound·2^e ≤ 2^125; each of K contributions adds a
   * rounding error ≤ 1/2, so every integer sum stays below 2^125 + K/2 < 2^127 for any
   * K < 2^126: none leaves the signed 128-bit range. (The additions wrap modulo 2^128, so
   * strictly only the final sums need the bound.) The last bit weighs 2^−e ≈ bound·2^−125:
   * a sum near the bound keeps ~73 bits beyond a double's 52. */
  if (!(bound > 0)) return 0; /* every sum is 0 (or NaN): any scale is as good */
  if (isinf(bound)) bound = DBL_MAX;
  int k;
  double m = frexp(bound, &k); /* bound = m·2^k, m ∈ [1/2, 1) */
  /* m·2^(k+e) ≤ 2^125 ⇔ k + e ≤ 125, or k + e ≤ 126 when m is exactly 1/2. */
  return (m == 0.5 ? 126 : 125) - k;
}

mq_status mq_exact_sum_init(mq_exact_sum *s, size_t len, int scale_exp, mq_error *err) {
  mq_status st = MQ_OK;
  s->len = len;
  s->scale_exp = scale_exp;
  s->acc = mq_calloc(len, sizeof *s->acc);
  MQ_CHECK_ALLOC(err, s->acc, len * sizeof *s->acc);
cleanup:
  if (st != MQ_OK) s->len = 0;
  return st;
}

void mq_exact_sum_free(mq_exact_sum *s) {
  mq_free(s->acc);
  s->acc = NULL;
  s->len = 0;
}

static u128 saturate(int neg) {
  u128 max = ((u128)1 << 127) - 1;
  return neg ? -max : max;
}

/* m·2^−s rounded half to even, for s ≥ 1. m < 2^53, so for s ≥ 64 the value is below 1/2. */
static u128 shift_right_even(uint64_t m, long long s) {
  if (s >= 64) return 0;
  uint64_t q = m >> s, r = m & ((UINT64_C(1) << s) - 1), half = UINT64_C(1) << (s - 1);
  if (r > half || (r == half && (q & 1))) q++;
  return q;
}

/* round_half_even(v·2^e) in two's complement, for any v (add_one inlines the common case).
 * A finite double is ±m·2^x with an integer m < 2^53; reading m and x from the bits is the
 * frexp split (exact, subnormals included) without a libm call. Then v·2^e = m·2^(x+e) is an
 * integer shift of m: exact, and no intermediate double can overflow or underflow, unlike
 * ldexp(v, e) followed by a conversion (which also breaks above 2^53). Out of contract
 * (|v·2^e| ≥ 2^127, ±inf) saturates; NaN gives 0. */
static u128 to_fixed(double v, int e) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  int neg = (int)(bits >> 63), biased = (int)((bits >> 52) & 0x7ff);
  uint64_t m = bits & ((UINT64_C(1) << 52) - 1);
  if (biased == 0x7ff) return m != 0 ? 0 : saturate(neg);
  if (biased != 0) m |= UINT64_C(1) << 52;
  if (m == 0) return 0;
  long long sh = (biased != 0 ? biased - 1075 : -1074) + (long long)e; /* v·2^e = ±m·2^sh */
  u128 q;
  if (sh >= 0) {
    long long len = 64 - __builtin_clzll(m); /* bits of m */
    if (len + sh > 127) return saturate(neg);
    q = (u128)m << sh;
  } else {
    q = shift_right_even(m, -sh);
  }
  return neg ? -q : q;
}

static int top_bit(u128 a) { /* a ≠ 0 */
  uint64_t hi = (uint64_t)(a >> 64), lo = (uint64_t)a;
  return hi != 0 ? 127 - __builtin_clzll(hi) : 63 - __builtin_clzll(lo);
}

/* n·2^−e correctly rounded (half to even) to double, n in two's complement. With p the top bit
 * of |n|, the double keeps the bits of weight ≥ 2^t, t = max(p − 52, e − 1074): 53 significant
 * bits, fewer where the result is subnormal. Rounding |n| >> t half to even on the discarded
 * bits gives the correctly rounded significand q ≤ 2^53 directly, so (double)q is exact, and
 * q·2^(t−e) is a multiple of 2^−1074 that either is representable or overflows (correctly, to
 * inf): the final ldexp is exact. One rounding in all, never two. */
static double from_fixed(u128 n, int e) {
  int neg = (int)(n >> 127);
  u128 a = neg ? -n : n; /* also right for −2^127: a = 2^127 */
  if (a == 0) return 0.0;
  long long p = top_bit(a), t = p - 52 > (long long)e - 1074 ? p - 52 : (long long)e - 1074;
  u128 q = a;
  if (t >= 128) {
    q = 0; /* |n| < 2^127 ≤ half the last kept weight */
  } else if (t > 0) {
    u128 r = a & (((u128)1 << t) - 1), half = (u128)1 << (t - 1);
    q = a >> t;
    if (r > half || (r == half && (q & 1))) q++;
  } else {
    t = 0; /* every bit is kept */
  }
  long long x = t - (long long)e;
  uint64_t m = (uint64_t)q;
  if (m == UINT64_C(1) << 53) m >>= 1, x++; /* rounding carried into a new bit */
  long long biased = x + 52 + 1023;
  if ((m >> 52) == 1 && biased >= 1 && biased <= 2046) { /* a normal double: its bits directly */
    uint64_t bits = ((uint64_t)neg << 63) | ((uint64_t)biased << 52) | (m & ((UINT64_C(1) << 52) - 1));
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
  }
  if (x > INT_MAX / 2) x = INT_MAX / 2; /* beyond any double: ldexp gives inf either way */
  double d = ldexp((double)m, (int)x);
  return neg ? -d : d;
}

/* acc += (hi, lo), modulo 2^128. */
static inline void add_words(word *acc, uint64_t lo, uint64_t hi) {
  uint64_t sum = acc[LO] + lo;
  acc[HI] += hi + (sum < lo);
  acc[LO] = sum;
}

/* The common case, a normal v with v·2^e = ±m·2^sh, 0 ≤ sh ≤ 74: an integer below 2^127 (m <
 * 2^53), so no rounding, and the shift and the two's-complement negation stay in words.
 * Everything else (sh < 0 needs rounding; zeros, subnormals, out of range) takes to_fixed. */
static inline void add_one(word *acc, double v, int e) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  int biased = (int)((bits >> 52) & 0x7ff);
  long long sh = biased - 1075 + (long long)e;
  if (biased == 0 || biased == 0x7ff || sh < 0 || sh > 74) {
    u128 q = to_fixed(v, e);
    add_words(acc, (uint64_t)q, (uint64_t)(q >> 64));
    return;
  }
  uint64_t m = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52), lo, hi;
  if (sh < 64) {
    lo = m << sh;
    hi = (m >> 1) >> (63 - sh); /* m >> (64 − sh) without a shift by 64 at sh = 0 */
  } else {
    lo = 0;
    hi = m << (sh - 64);
  }
  uint64_t neg = -(bits >> 63), one = neg & 1; /* v < 0: −x = ~x + 1 */
  lo = (lo ^ neg) + one;
  hi = (hi ^ neg) + (lo < one);
  add_words(acc, lo, hi);
}

/* Loops over the accumulators share them among the rank's threads (core/blas.h) once they are
 * long enough to pay for it; each accumulator is added to by one thread only, so the bits never
 * depend on the thread count. */
enum { PARALLEL_MIN = 1 << 16 };

/* acc[k] += v[k] for every k, v of type T (float widens exactly), on the rank's threads. */
#define MQ_DEFINE_ADD(name, T)                                                              \
  void name(mq_exact_sum *s, const T *v) {                                                \
    word *acc = (word *)s->acc;                                                           \
    long long len = (long long)s->len;                                                    \
    int threads = mq_blas_threads(), e = s->scale_exp;                                    \
    _Pragma("omp parallel for schedule(static) num_threads(threads) if (threads > 1 && len > PARALLEL_MIN)") \
    for (long long k = 0; k < len; k++) add_one(acc + 2 * k, (double)v[k], e);            \
  }
MQ_DEFINE_ADD(mq_exact_sum_add, double)
MQ_DEFINE_ADD(mq_exact_sum_add_float, float)

/* Where row i's upper part P[i, i:] starts in the packed triangle. */
static size_t packed_row(size_t i, size_t cols) { return i * cols - i * (i - 1) / 2; }

/* The upper triangle of P [cols, cols] of type T, row by row into the packed accumulators.
 * Rows are taken a few at a time by whichever thread is free: they shorten down the matrix. */
#define MQ_DEFINE_ADD_UPPER(name, T)                                                        \
  void name(mq_exact_sum *s, const T *P, size_t cols) {                                   \
    word *acc = (word *)s->acc;                                                           \
    int threads = mq_blas_threads(), e = s->scale_exp;                                    \
    long long n = (long long)cols;                                                        \
    _Pragma("omp parallel for schedule(dynamic, 16) num_threads(threads) if (threads > 1 && s->len > PARALLEL_MIN)") \
    for (long long i = 0; i < n; i++) {                                                   \
      word *a = acc + 2 * packed_row((size_t)i, cols);                                    \
      const T *row = P + (size_t)i * cols;                                                \
      for (long long j = i; j < n; j++) add_one(a + 2 * (j - i), (double)row[j], e);      \
    }                                                                                     \
  }
MQ_DEFINE_ADD_UPPER(mq_exact_sum_add_upper, double)
MQ_DEFINE_ADD_UPPER(mq_exact_sum_add_upper_float, float)

/* 2^x as a double, for a normal power x ∈ [−1022, 1023]. */
static double power_of_two(int x) {
  uint64_t bits = (uint64_t)(x + 1023) << 52;
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

/* from_fixed's common case in hardware arithmetic: |n| < 2^126 keeps its top 64 bits in m with
 * every lower bit ORed into m's last bit (a sticky bit: m has 64 significant bits, the double
 * keeps 53, so the sticky bit only decides rounding where the discarded bits are nonzero,
 * exactly as the bits it stands for would); one correctly rounded conversion of m, then one
 * exact multiplication by a power of two when the result is a normal double. Returns 0 to
 * mean "take from_fixed": n = 0, and results that are subnormal or out of range. */
static int from_fixed_fast(u128 n, int e, double *out) {
  int neg = (int)(n >> 127);
  u128 a = neg ? -n : n;
  uint64_t hi = (uint64_t)(a >> 64), lo = (uint64_t)a, m = lo;
  if (hi >> 62 != 0 || a == 0) return 0;
  int s = hi != 0 ? 64 - __builtin_clzll(hi) : 0; /* 0 … 62: a >> s fits 64 bits */
  if (s > 0) m = (uint64_t)(a >> s) | ((lo & ((UINT64_C(1) << s) - 1)) != 0);
  long long x = (long long)s - e;
  if (x < -1022 || x > 1023) return 0;
  double d = (double)m * power_of_two((int)x);
  if (!(d >= DBL_MIN && d <= DBL_MAX)) return 0; /* subnormal or overflow */
  *out = neg ? -d : d;
  return 1;
}

void mq_exact_sum_result_range(const mq_exact_sum *s, size_t first, double *out, size_t n) {
  const u128 *acc = (const u128 *)s->acc + first;
  int threads = mq_blas_threads(), e = s->scale_exp;
  long long len = (long long)n;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && len > PARALLEL_MIN)
  for (long long k = 0; k < len; k++)
    if (!from_fixed_fast(acc[k], e, out + k)) out[k] = from_fixed(acc[k], e);
}

void mq_exact_sum_result(const mq_exact_sum *s, double *out) {
  mq_exact_sum_result_range(s, 0, out, s->len);
}

/* The user reduction: elementwise 128-bit integer addition. MPI buffers carry no alignment
 * promise beyond bytes, hence memcpy. */
static void add_fixed(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type;
  const unsigned char *src = in;
  unsigned char *dst = inout;
  for (int i = 0; i < *len; i++) {
    u128 a, b;
    memcpy(&a, src + (size_t)i * FIXED_BYTES, FIXED_BYTES);
    memcpy(&b, dst + (size_t)i * FIXED_BYTES, FIXED_BYTES);
    b += a;
    memcpy(dst + (size_t)i * FIXED_BYTES, &b, FIXED_BYTES);
  }
}

/* The 128-bit datatype and its addition. Created per call: no global MPI state to initialise
 * or free, and the cost is negligible next to the reduction. 16 bytes of a homogeneous
 * machine's native __int128. */
static mq_status fixed_type_op(MPI_Datatype *type, MPI_Op *op, mq_error *err) {
  mq_status st = MQ_OK;
  if (MPI_Type_contiguous(FIXED_BYTES, MPI_BYTE, type) != MPI_SUCCESS ||
      MPI_Type_commit(type) != MPI_SUCCESS)
    MQ_FAIL(err, MQ_EFAIL, "exact sum: cannot create the 128-bit MPI datatype");
  if (MPI_Op_create(add_fixed, 1, op) != MPI_SUCCESS)
    MQ_FAIL(err, MQ_EFAIL, "exact sum: cannot create the 128-bit MPI reduction");
cleanup:
  return st;
}

static void fixed_type_op_free(MPI_Datatype *type, MPI_Op *op) {
  if (*op != MPI_OP_NULL) MPI_Op_free(op);
  if (*type != MPI_DATATYPE_NULL) MPI_Type_free(type);
}

mq_status mq_exact_sum_allreduce(mq_exact_sum *s, mq_ctx *ctx, mq_error *err) {
  mq_status st = MQ_OK;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
  MQ_CHECK(fixed_type_op(&type, &op, err));
  /* Every rank holds the same len, so every rank makes the same sequence of calls. */
  for (size_t done = 0; done < s->len;) {
    size_t n = s->len - done < allreduce_chunk ? s->len - done : allreduce_chunk;
    mq__ctx_count(ctx, n * sizeof *s->acc);
    if (MPI_Allreduce(MPI_IN_PLACE, s->acc + done, (int)n, type, op, ctx->comm) != MPI_SUCCESS)
      MQ_FAIL(err, MQ_EFAIL, "exact sum: MPI_Allreduce of %zu values failed", n);
    done += n;
  }
cleanup:
  fixed_type_op_free(&type, &op);
  return st;
}

/* One piece of at most INT_MAX values: slice q of the piece is rank q's share (mq_partition),
 * counts and displacements in values. */
static void slices(size_t n, int size, int *counts, int *displs) {
  for (int q = 0; q < size; q++) {
    size_t first, count;
    mq_partition(n, size, q, &first, &count);
    counts[q] = (int)count;
    displs[q] = (int)first;
  }
}

/* Values per message of the pairwise exchange: 8 MiB, so the receive buffer stays small and
 * every count fits an int. */
enum { EXCHANGE_VALUES = 1 << 19, EXCHANGE_TAG = 0x6d71 };

/* dst[k] += src[k] for k < n (wrapping: see u128). */
static void add_fixed_values(u128 *dst, const u128 *src, int n) {
  int threads = mq_blas_threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n > PARALLEL_MIN)
  for (int k = 0; k < n; k++) dst[k] += src[k];
}

/* Reduce-scatter of acc[0, n) by pairwise exchange: in step s = 1 … P−1 each rank sends rank
 * (r+s) mod P that rank's slice of its accumulators and adds what rank (r−s) mod P sends it
 * into its own slice, which ends at acc + displs[rank] holding the sum over all ranks. Each rank
 * sends 16·n·(P−1)/P bytes, as the bandwidth-optimal algorithms do. Point to point, because
 * Open MPI's MPI_Reduce_scatter and MPI_Allreduce with a user-defined op were 2–5× slower
 * than this on the same data (tests/parallel/bench_exact_reduce.c). Every rank runs the same
 * number of messages per step (the longest slice's), so no message is left unmatched. tmp:
 * EXCHANGE_VALUES accumulators. */
static mq_status exchange_slices(u128 *acc, const int *counts, const int *displs, mq_ctx *ctx,
                                 u128 *tmp, mq_error *err) {
  mq_status st = MQ_OK;
  int rank = ctx->rank, size = ctx->size, longest = 0;
  for (int q = 0; q < size; q++) longest = counts[q] > longest ? counts[q] : longest;
  u128 *mine = acc + displs[rank];
  for (int step = 1; step < size; step++) {
    int to = (rank + step) % size, from = (rank - step + size) % size;
    for (int off = 0; off < longest; off += EXCHANGE_VALUES) {
      int ns = counts[to] - off, nr = counts[rank] - off;
      ns = ns < 0 ? 0 : ns > EXCHANGE_VALUES ? EXCHANGE_VALUES : ns;
      nr = nr < 0 ? 0 : nr > EXCHANGE_VALUES ? EXCHANGE_VALUES : nr;
      if (MPI_Sendrecv(acc + displs[to] + off, ns * FIXED_BYTES, MPI_BYTE, to, EXCHANGE_TAG, tmp,
                       nr * FIXED_BYTES, MPI_BYTE, from, EXCHANGE_TAG, ctx->comm,
                       MPI_STATUS_IGNORE) != MPI_SUCCESS)
        MQ_FAIL(err, MQ_EFAIL, "exact sum: MPI_Sendrecv of %d values failed", ns);
      add_fixed_values(mine + off, tmp, nr);
    }
  }
cleanup:
  return st;
}

/* Each rank reduces a contiguous slice of the accumulators (reduce-scatter) and converts only
 * that slice; the doubles, half the accumulators' size, are then gathered in place into out.
 * An allreduce of the accumulators moves 16 bytes per value through both of its halves
 * (reduce-scatter and allgather, as MPI implements it for long vectors) and converts every
 * value on every rank; this moves 16 bytes through the first half and 8 through the second,
 * and converts len/P values per rank. The integer sum is exact and the conversion a function
 * of it, so the bits are those of mq_exact_sum_allreduce + mq_exact_sum_result. */
mq_status mq_exact_sum_reduce_to_double(mq_exact_sum *s, mq_ctx *ctx, double *out,
                                        mq_error *err) {
  mq_status st = MQ_OK;
  int *counts = mq_alloc((size_t)ctx->size, 2 * sizeof *counts), *displs = counts + ctx->size;
  u128 *tmp = ctx->size > 1 ? mq_alloc(EXCHANGE_VALUES, sizeof *tmp) : NULL;
  st = counts && (tmp || ctx->size == 1)
           ? MQ_OK
           : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (exact sum exchange)");
  MQ_AGREE(ctx->comm, st); /* before the first message: a rank that failed must not hang one */
  /* Every rank holds the same len, so every rank makes the same sequence of calls. */
  for (size_t done = 0; done < s->len;) {
    size_t n = s->len - done < allreduce_chunk ? s->len - done : allreduce_chunk;
    slices(n, ctx->size, counts, displs);
    mq__ctx_count(ctx, n * sizeof *s->acc);
    MQ_CHECK(exchange_slices((u128 *)s->acc + done, counts, displs, ctx, tmp, err));
    size_t first = done + (size_t)displs[ctx->rank];
    mq_exact_sum_result_range(s, first, out + first, (size_t)counts[ctx->rank]);
    mq__ctx_count(ctx, n * sizeof *out);
    if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out + done, counts, displs,
                       MPI_DOUBLE, ctx->comm) != MPI_SUCCESS)
      MQ_FAIL(err, MQ_EFAIL, "exact sum: MPI_Allgatherv of %zu values failed", n);
    done += n;
  }
cleanup:
  mq_free(counts);
  mq_free(tmp);
  return st;
}
