/* Independent layers on groups of ranks (ALGORITHMS §7, "ranks split layers"): the ranks of a
 * context form G groups of contiguous ranks; group k quantizes layers k, k+G, … on its own
 * sub-communicator (each group splitting rows and samples as the engine does), and every
 * layer's result then reaches every rank, in layer order, for a collective consumer such as
 * the parallel HDF5 writer. With one group every layer is spread over all ranks; with more,
 * small layers stop paying for collectives over ranks that have little to do. Results do not
 * depend on G (rows are dealt in fixed blocks, sums are exact). */
#ifndef MQ_PARALLEL_LAYER_GROUPS_H
#define MQ_PARALLEL_LAYER_GROUPS_H

#include <stddef.h>

#include "mpiquant.h"
#include "parallel/layer_engine.h"

typedef struct mq_layer_list {
  size_t count;
  /* The source of layer i; called on the ranks of the group that computes it. */
  const mq_layer_source *(*source)(void *user, size_t i);
  /* Collective over the whole context, layer order: layer i's result. A rank of the group that
   * computed it holds its rows [row0, row0 + res->rows); every other rank rows = 0 with the
   * shape, scalars and g_idx. ph: the group's phases. */
  mq_status (*consume)(void *user, size_t i, const mq_layer_result *res, size_t row0,
                       const mq_layer_phases *ph);
  void *user;
} mq_layer_list;

/* The group of `rank` when `size` ranks form `groups` groups of contiguous ranks, and group
 * g's first rank. */
int mq__layer_group_of(int rank, int groups, int size);
int mq__layer_group_root(int g, int groups, int size);
/* Collective over ctx. The layer the group whose first rank is `root` computed reaches every
 * rank: the group's ranks (owner = 1) keep their rows, the others get rows = 0 with the shape,
 * scalars, g_idx and phases. */
mq_status mq__layer_groups_share(mq_ctx *ctx, int root, int owner, mq_layer_result *res,
                                 mq_layer_phases *ph);

/* Collective over ctx. groups is clamped to [1, size of ctx]. */
mq_status mq_layer_groups_run(mq_ctx *ctx, int groups, const mq_layer_list *list,
                              const mq_quant_options *opts);

#endif
