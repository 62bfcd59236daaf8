/* Bytes this rank handed to MPI reductions (exact sums, panel fetches): the payload, not what
 * the reduction algorithm moved on the wire, and not ScaLAPACK's own traffic inside pdpotrf. */
#ifndef MQ_DIST_COMM_STATS_H
#define MQ_DIST_COMM_STATS_H

#include <stddef.h>

void mq_dist_bytes_add(size_t bytes);
size_t mq_dist_bytes_sent(void);
void mq_dist_bytes_reset(void);

#endif
