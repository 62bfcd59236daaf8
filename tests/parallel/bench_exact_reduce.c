/* The exact sums' reduction alone, as the Hessian phase ends it: the packed triangle of a
 * cols-column H as 128-bit accumulators on every rank, reduced to doubles on every rank
 *   (a) by MPI_Allreduce of the accumulators, then every rank converting every value;
 *   (b) by mq_exact_sum_reduce_to_double: reduce-scatter, each rank converting its slice,
 *       allgather of the doubles.
 * Prints the best of --reps seconds of each (maximum over ranks) and checks that both give the
 * same bits. A benchmark: it asserts nothing about time.
 *     mpirun -np 2 bench_exact_reduce [cols [reps]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "parallel/ctx.h"
#include "parallel/exact_sum.h"

static void fill(mq_exact_sum *s, int rank) {
  double *v = mq_alloc(s->len + 1, sizeof *v);
  for (size_t k = 0; k < s->len; k++) v[k] = (double)((k * 2654435761u + (size_t)rank) % 1000003) * 1e-3;
  mq_exact_sum_add(s, v);
  mq_free(v);
}

/* Seconds of one variant, the slowest rank's. */
static double timed(mq_ctx *ctx, int variant, mq_exact_sum *s, double *out) {
  mq_error err;
  mq_error_clear(&err);
  fill(s, ctx->rank);
  MPI_Barrier(ctx->comm);
  double t0 = MPI_Wtime();
  if (variant == 0) {
    mq_exact_sum_allreduce(s, ctx, &err);
    mq_exact_sum_result(s, out);
  } else {
    mq_exact_sum_reduce_to_double(s, ctx, out, &err);
  }
  double dt = MPI_Wtime() - t0, worst;
  MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, ctx->comm);
  memset(s->acc, 0, s->len * sizeof *s->acc);
  return worst;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  mq_ctx *ctx = NULL;
  mq_ctx_create(MPI_COMM_WORLD, &ctx);
  size_t cols = argc > 1 ? (size_t)atol(argv[1]) : 6144, tri = cols * (cols + 1) / 2;
  int reps = argc > 2 ? atoi(argv[2]) : 3, rc = 0;
  mq_exact_sum s;
  mq_error err;
  mq_error_clear(&err);
  double *a = mq_alloc(tri, sizeof *a), *b = mq_alloc(tri, sizeof *b);
  if (a == NULL || b == NULL || mq_exact_sum_init(&s, tri, 40, &err) != MQ_OK) {
    fprintf(stderr, "bench_exact_reduce: out of memory\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  double best[2] = {1e300, 1e300};
  for (int r = 0; r < reps; r++) {
    for (int v = 0; v < 2; v++) {
      double t = timed(ctx, v, &s, v == 0 ? a : b);
      if (t < best[v]) best[v] = t;
    }
  }
  if (memcmp(a, b, tri * sizeof *a) != 0) rc = 1;
  if (ctx->rank == 0)
    printf("exact reduction of a %zu-column triangle (%.1f MiB of accumulators), %d rank(s), "
           "best of %d: allreduce + convert all %.3f s; reduce-scatter + convert slice + "
           "allgather %.3f s (%.2fx); same bits: %s\n",
           cols, (double)tri * 16 / 1048576.0, ctx->size, reps, best[0], best[1],
           best[0] / best[1], rc == 0 ? "yes" : "NO");
  mq_exact_sum_free(&s);
  mq_free(a);
  mq_free(b);
  mq_ctx_destroy(&ctx);
  MPI_Finalize();
  return rc;
}
