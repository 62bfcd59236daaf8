/* Balanced contiguous partitions: part p of n items over P parts gets n/P items, the first
 * n%P parts one more. Parts may be empty (n < P). Used for rows and for sample chunks. */
#ifndef MQ_DIST_PARTITION_H
#define MQ_DIST_PARTITION_H

#include <stddef.h>

void mq_partition(size_t n, int nparts, int part, size_t *first, size_t *count);

#endif
