#include "parallel/hessian_cache.h"

#include <string.h>

#include "core/mem.h"

void mq_hessian_cache_free(mq_hessian_cache *c) {
  mq_free(c->H);
  mq_free(c->G);
  mq_free(c->Hxx);
  *c = (mq_hessian_cache){0};
}

static void copy_matrix(double *dst, const double *src, size_t cols) {
  if (dst != NULL) memcpy(dst, src, cols * cols * sizeof *dst);
}

int mq_hessian_cache_fetch(const mq_hessian_cache *c, size_t cols, double *H, double *G,
                           double *Hxx) {
  int hit = c != NULL && c->valid && c->cols == cols && (c->G || !G) && (c->Hxx || !Hxx);
  if (!hit) return 0;
  copy_matrix(H, c->H, cols);
  if (G != NULL) copy_matrix(G, c->G, cols);
  if (Hxx != NULL) copy_matrix(Hxx, c->Hxx, cols);
  return 1;
}

void mq_hessian_cache_store(mq_hessian_cache *c, size_t cols, const double *H, const double *G,
                            const double *Hxx) {
  if (c == NULL || !c->keep) return; /* the last layer of a group: no copies */
  mq_hessian_cache_free(c);
  c->keep = 1;
  c->H = mq_memdup(H, cols * cols, sizeof(double));
  c->G = mq_memdup(G, cols * cols, sizeof(double));
  c->Hxx = mq_memdup(Hxx, cols * cols, sizeof(double));
  c->cols = cols;
  c->valid = c->H != NULL && (c->G != NULL || !G) && (c->Hxx != NULL || !Hxx);
}
