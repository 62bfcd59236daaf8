/* Balanced contiguous partitions: the parts cover [0, n) in order without gaps or overlap,
 * sizes differ by at most one and the larger parts come first. Serial. */
#include <stddef.h>

#include "parallel/partition.h"
#include "mq_test.h"

static void check(size_t n, int nparts) {
  size_t next = 0, smallest = n, largest = 0;
  for (int p = 0; p < nparts; p++) {
    size_t first = 0, count = 0;
    mq_partition(n, nparts, p, &first, &count);
    MQ_EXPECT_EQ_INT(first, next); /* contiguous, in order: covers and never overlaps */
    MQ_EXPECT_EQ_INT(count, n / (size_t)nparts + ((size_t)p < n % (size_t)nparts ? 1 : 0));
    if (count < smallest) smallest = count;
    if (count > largest) largest = count;
    next = first + count;
  }
  MQ_EXPECT_EQ_INT(next, n);
  MQ_EXPECT_LE(largest - smallest, 1);
}

static void check_out_of_range(void) {
  size_t first = 1, count = 1;
  mq_partition(10, 3, 3, &first, &count);
  MQ_EXPECT_EQ_INT(count, 0);
  mq_partition(10, 0, 0, &first, &count);
  MQ_EXPECT_EQ_INT(count, 0);
  mq_partition(10, 3, -1, &first, &count);
  MQ_EXPECT_EQ_INT(count, 0);
}

int main(void) {
  const size_t sizes[] = {0, 1, 5, 7, 100};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
    for (int parts = 1; parts <= 5; parts++) check(sizes[k], parts);
  check_out_of_range();
  return mq_test_finish("test_partition");
}
