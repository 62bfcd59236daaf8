#include "parallel/layer_groups.h"

#include <string.h>

#include "core/layer_scalars.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/ctx.h"

/* What the ranks outside the computing group need of a layer: shape, the scalar table, the
 * --lambda auto trace and the phases, as doubles (exact for these values). */
enum { SH_COLS, SH_NGROUPS, SH_WORDS, SH_BITS, SH_NCAND, SH_SCALARS,
       SH_CAND = SH_SCALARS + MQ_LAYER_SCALAR_COUNT,
       SH_HELD = SH_CAND + MQ_LAMBDA_AUTO_CANDIDATES,
       SH_PHASES = SH_HELD + MQ_LAMBDA_AUTO_CANDIDATES,
       SH_COUNT = SH_PHASES + (int)(sizeof(mq_layer_phases) / sizeof(double)) };

static void pack_layer(const mq_layer_result *r, const mq_layer_phases *ph, double *v) {
  double *s = v + SH_SCALARS;
  v[SH_COLS] = (double)r->cols;
  v[SH_NGROUPS] = (double)r->ngroups;
  v[SH_WORDS] = (double)r->words;
  v[SH_BITS] = r->bits;
  v[SH_NCAND] = r->lambda_ncand;
#define MQ_PACK_SCALAR(field, kind, ...) *s++ = (double)r->field;
  MQ_LAYER_SCALARS(MQ_PACK_SCALAR)
#undef MQ_PACK_SCALAR
  memcpy(v + SH_CAND, r->lambda_cand, sizeof r->lambda_cand);
  memcpy(v + SH_HELD, r->lambda_heldout, sizeof r->lambda_heldout);
  memcpy(v + SH_PHASES, ph, sizeof *ph);
}

static void unpack_layer(const double *v, mq_layer_result *r, mq_layer_phases *ph) {
  const double *s = v + SH_SCALARS;
  *r = (mq_layer_result){.cols = (size_t)v[SH_COLS], .ngroups = (size_t)v[SH_NGROUPS],
                         .words = (size_t)v[SH_WORDS], .bits = (int)v[SH_BITS],
                         .lambda_ncand = (int)v[SH_NCAND]};
#define MQ_UNPACK_SCALAR(field, kind, ...) r->field = (__typeof__(r->field))(*s++);
  MQ_LAYER_SCALARS(MQ_UNPACK_SCALAR)
#undef MQ_UNPACK_SCALAR
  memcpy(r->lambda_cand, v + SH_CAND, sizeof r->lambda_cand);
  memcpy(r->lambda_heldout, v + SH_HELD, sizeof r->lambda_heldout);
  memcpy(ph, v + SH_PHASES, sizeof *ph);
}

int mq__layer_group_of(int rank, int groups, int size) {
  return (int)((long)rank * groups / size);
}

int mq__layer_group_root(int g, int groups, int size) {
  return (int)(((long)g * size + groups - 1) / groups);
}

mq_status mq__layer_groups_share(mq_ctx *ctx, int root, int owner, mq_layer_result *res,
                                 mq_layer_phases *ph) {
  mq_status st = MQ_OK;
  double v[SH_COUNT];
  if (ctx->rank == root) pack_layer(res, ph, v);
  MPI_Bcast(v, SH_COUNT, MPI_DOUBLE, root, ctx->comm);
  if (!owner) {
    unpack_layer(v, res, ph);
    res->g_idx = mq_alloc(res->cols, sizeof *res->g_idx);
    if (res->g_idx == NULL)
      st = mq__fail(&ctx->err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (g_idx)");
  }
  MQ_AGREE(ctx->comm, st);
  MPI_Bcast(res->g_idx, (int)res->cols, MPI_INT32_T, root, ctx->comm);
cleanup:
  return st;
}

/* Collective over ctx. Layers [first, first + G) ∩ [0, count): each group computes its own,
 * then every layer is handed to consume() on every rank. */
static mq_status run_round(mq_ctx *ctx, mq_ctx *group, int G, int g, size_t first,
                           const mq_layer_list *list, const mq_quant_options *opts) {
  mq_status st = MQ_OK;
  mq_layer_result mine = {0}, shared = {0};
  mq_layer_phases my_phases = {0};
  size_t row0 = 0;
  if (first + (size_t)g < list->count) {
    const mq_layer_source *src = list->source(list->user, first + (size_t)g);
    st = mq__layer_engine_run(group, src, NULL, opts, &mine, &row0, &my_phases);
    mq__ctx_adopt_error(ctx, group);
  }
  MQ_AGREE(ctx->comm, st);
  for (int k = 0; k < G && first + (size_t)k < list->count; k++) {
    int root = mq__layer_group_root(k, G, ctx->size), owner = k == g;
    mq_layer_result *res = owner ? &mine : &shared;
    mq_layer_phases phases = my_phases;
    MQ_CHECK(mq__layer_groups_share(ctx, root, owner, res, &phases));
    MQ_AGREE(ctx->comm, list->consume(list->user, first + (size_t)k, res, owner ? row0 : 0,
                                      &phases));
    mq_layer_result_free(&shared);
  }
cleanup:
  mq_layer_result_free(&mine);
  mq_layer_result_free(&shared);
  return st;
}

mq_status mq_layer_groups_run(mq_ctx *ctx, int groups, const mq_layer_list *list,
                              const mq_quant_options *opts) {
  mq_status st = MQ_OK;
  mq_ctx *group = NULL;
  int G = groups < 1 ? 1 : groups > ctx->size ? ctx->size : groups;
  int g = mq__layer_group_of(ctx->rank, G, ctx->size); /* contiguous ranks */
  MQ_CHECK(mq__ctx_split(ctx, g, &group));
  for (size_t first = 0; first < list->count; first += (size_t)G)
    MQ_CHECK(run_round(ctx, group, G, g, first, list, opts));
cleanup:
  mq_ctx_destroy(&group);
  return st;
}
