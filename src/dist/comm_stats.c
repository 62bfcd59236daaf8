#include "dist/comm_stats.h"

static size_t bytes_sent; /* one MPI process, one thread in MPI: no atomics needed */

void mq_dist_bytes_add(size_t bytes) { bytes_sent += bytes; }
size_t mq_dist_bytes_sent(void) { return bytes_sent; }
void mq_dist_bytes_reset(void) { bytes_sent = 0; }
