#include "core/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Each block carries a 64-byte header holding its size, so frees can be counted. */
enum { MQ_MEM_ALIGN = 64 };

static atomic_size_t mem_current;
static atomic_size_t mem_peak;
static atomic_long fail_countdown; /* > 0: that many allocations until one fails (tests) */

void mq_mem_fail_nth(long k) { atomic_store(&fail_countdown, k); }

/* The injected failure, out of line so a debugger can stop on it (break mq__mem_injected). */
__attribute__((noinline)) void *mq__mem_injected(void) { return NULL; }

static void note_alloc(size_t bytes) {
  size_t now = atomic_fetch_add(&mem_current, bytes) + bytes;
  size_t peak = atomic_load(&mem_peak);
  while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {
  }
}

void *mq_alloc(size_t count, size_t size) {
  if (size != 0 && count > (SIZE_MAX - MQ_MEM_ALIGN) / size) return NULL;
  size_t bytes = count * size;
  void *base = NULL;
  if (atomic_load(&fail_countdown) > 0 && atomic_fetch_sub(&fail_countdown, 1) == 1)
    return mq__mem_injected();
  if (posix_memalign(&base, MQ_MEM_ALIGN, bytes + MQ_MEM_ALIGN) != 0) return NULL;
  *(size_t *)base = bytes;
  note_alloc(bytes);
  return (char *)base + MQ_MEM_ALIGN;
}

void *mq_calloc(size_t count, size_t size) {
  void *p = mq_alloc(count, size);
  if (p != NULL) memset(p, 0, count * size);
  return p;
}

void *mq_memdup(const void *src, size_t count, size_t size) {
  void *p = src == NULL ? NULL : mq_alloc(count, size);
  if (p != NULL) memcpy(p, src, count * size);
  return p;
}

void mq_free(void *ptr) {
  if (ptr == NULL) return;
  void *base = (char *)ptr - MQ_MEM_ALIGN;
  atomic_fetch_sub(&mem_current, *(size_t *)base);
  free(base);
}

size_t mq_mem_current(void) { return atomic_load(&mem_current); }
size_t mq_mem_peak(void) { return atomic_load(&mem_peak); }
