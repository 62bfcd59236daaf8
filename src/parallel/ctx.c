#include "parallel/ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"

mq_status mq_agree(MPI_Comm comm, mq_status mine) {
  int local = (int)mine, all = 0;
  if (MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) return MQ_EFAIL;
  return (mq_status)all;
}

/* Test hook: MQ_INJECT_ALLOC_FAILURE="<rank>:<k>" makes the k-th counted allocation on world
 * rank <rank> fail, so the tests can check that the failing rank's own cause is printed. */
static void inject_alloc_failure(void) {
  const char *spec = getenv("MQ_INJECT_ALLOC_FAILURE");
  int world = 0, rank = -1;
  long k = 0;
  if (spec == NULL || sscanf(spec, "%d:%ld", &rank, &k) != 2) return;
  MPI_Comm_rank(MPI_COMM_WORLD, &world);
  if (world == rank && k > 0) mq_mem_fail_nth(k);
}

int mq_ctx_create(MPI_Comm comm, mq_ctx **out) {
  mq_ctx *ctx = calloc(1, sizeof *ctx);
  int ok = ctx != NULL && MPI_Comm_dup(comm, &ctx->comm) == MPI_SUCCESS;
  if (!ok) {
    free(ctx);
    *out = NULL;
    return MQ_EFAIL;
  }
  MPI_Comm_rank(ctx->comm, &ctx->rank);
  MPI_Comm_size(ctx->comm, &ctx->size);
  mq_error_clear(&ctx->err);
  ctx->verbosity = MQ_LOG_INFO;
  if (comm == MPI_COMM_WORLD) inject_alloc_failure();
  *out = ctx;
  return MQ_OK;
}

void mq_ctx_destroy(mq_ctx **pctx) {
  mq_ctx *ctx = *pctx;
  if (ctx == NULL) return;
  if (ctx->comm != MPI_COMM_NULL) MPI_Comm_free(&ctx->comm);
  free(ctx);
  *pctx = NULL;
}

int mq_ctx_rank(const mq_ctx *ctx) { return ctx->rank; }
int mq_ctx_size(const mq_ctx *ctx) { return ctx->size; }
MPI_Comm mq_ctx_comm(const mq_ctx *ctx) { return ctx->comm; }
const mq_error *mq_ctx_error(const mq_ctx *ctx) { return &ctx->err; }

void mq_ctx_set_verbosity(mq_ctx *ctx, int level) {
  ctx->verbosity = level;
  mq_log_setup((mq_log_level)level, ctx->rank, 0);
}

mq_status mq__ctx_split(mq_ctx *ctx, int color, mq_ctx **out) {
  MPI_Comm sub = MPI_COMM_NULL;
  mq_status st = MQ_OK;
  *out = NULL;
  if (MPI_Comm_split(ctx->comm, color, ctx->rank, &sub) != MPI_SUCCESS)
    st = mq__fail(&ctx->err, MQ_EFAIL, __FILE__, __LINE__, "MPI_Comm_split failed");
  if (st == MQ_OK && mq_ctx_create(sub, out) != MQ_OK)
    st = mq__fail(&ctx->err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (context)");
  if (sub != MPI_COMM_NULL) MPI_Comm_free(&sub);
  if (*out != NULL) (*out)->verbosity = ctx->verbosity;
  return mq_agree(ctx->comm, st);
}

void mq__ctx_adopt_error(mq_ctx *parent, const mq_ctx *child) {
  if (child->err.status == MQ_OK || parent->err.status != MQ_OK) return;
  parent->err = child->err;
}

void mq__ctx_count(mq_ctx *ctx, size_t bytes) {
  ctx->sent.bytes += (double)bytes;
  ctx->sent.messages += 1.0;
}

void mq__ctx_counters_reset(mq_ctx *ctx) { ctx->sent = (mq_comm_counters){0, 0}; }
