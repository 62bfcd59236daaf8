/* H (and G, XᵀX) kept for the next layer with the same inputs (q, k, v; gate, up). The caller
 * sets valid = 0 when the inputs change and keep = 1 when another layer with these inputs
 * follows; the engine fills it on a miss. Owned by the caller (mq_hessian_cache_free). Not
 * used with --lambda auto. */
#ifndef MQ_PARALLEL_HESSIAN_CACHE_H
#define MQ_PARALLEL_HESSIAN_CACHE_H

#include <stddef.h>

typedef struct mq_hessian_cache {
  double *H, *G, *Hxx; /* [cols, cols]: X̃ᵀX̃/n, X̃ᵀX/n, XᵀX/n (G, Hxx NULL when not needed) */
  size_t cols;
  int valid;
  int keep;
} mq_hessian_cache;

void mq_hessian_cache_free(mq_hessian_cache *c);

/* Local. Copies H (and G, Hxx where not NULL) out of the cache when it holds them for a layer
 * of `cols` columns; returns 0 (a miss) otherwise. c may be NULL. */
int mq_hessian_cache_fetch(const mq_hessian_cache *c, size_t cols, double *H, double *G,
                           double *Hxx);
/* Local. Keeps copies for the next layer when c->keep; a failed copy only costs the next layer
 * its own sums. c may be NULL. */
void mq_hessian_cache_store(mq_hessian_cache *c, size_t cols, const double *H, const double *G,
                            const double *Hxx);

#endif
