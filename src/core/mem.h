/* Every allocation of the numerics goes through here: 64-byte aligned (AVX-512 friendly),
 * counted, so the program can report current and peak bytes. Thread-safe counters. */
#ifndef MQ_CORE_MEM_H
#define MQ_CORE_MEM_H

#include <stddef.h>

/* Returns NULL on failure or when count*size overflows. Memory is not zeroed. */
void *mq_alloc(size_t count, size_t size);
/* Same, zero-filled; a big block comes faulted in at once (mem.c): for memory that will be
 * used whole. */
void *mq_calloc(size_t count, size_t size);
/* A counted copy of count·size bytes of src; NULL when src is NULL or on failure. */
void *mq_memdup(const void *src, size_t count, size_t size);
/* Accepts NULL. */
void mq_free(void *ptr);
/* Bytes currently allocated through mq_alloc, and the high-water mark. */
size_t mq_mem_current(void);
size_t mq_mem_peak(void);
/* Test hook: the k-th allocation from now (k > 0) returns NULL, once. */
void mq_mem_fail_nth(long k);
void *mq__mem_injected(void);

#endif
