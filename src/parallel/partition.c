#include "parallel/partition.h"

/* The first n%P parts take one extra item, so sizes differ by at most one and a part's range
 * follows from its index alone: every rank computes every range without communication. A part
 * index outside [0, nparts) (or nparts < 1) gets the empty range at the end, so loops over it
 * do nothing. */
void mq_partition(size_t n, int nparts, int part, size_t *first, size_t *count) {
  if (nparts < 1 || part < 0 || part >= nparts) {
    *first = n;
    *count = 0;
    return;
  }
  size_t p = (size_t)part, base = n / (size_t)nparts, extra = n % (size_t)nparts;
  *count = base + (p < extra ? 1 : 0);
  *first = p * base + (p < extra ? p : extra);
}
