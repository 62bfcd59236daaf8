#include "core/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Each block carries a 64-byte header: its size, and for a mapped block where the mapping
 * starts and how long it is, so frees can be counted and unmapped. */
enum { MQ_MEM_ALIGN = 64 };
typedef struct block_header {
  size_t bytes;
  void *map;       /* NULL: from posix_memalign */
  size_t map_len;
} block_header;

/* Blocks from this size on (H, its exact accumulators, activation streams: up to GiBs) are
 * mapped directly; zeroed ones (mq_calloc) are faulted in writable at once
 * (MADV_POPULATE_WRITE, Linux ≥ 5.14): the kernel zeroes and maps the pages in one call, 1.6×
 * faster than faulting them in one by one at first touch, and no pass over memory that is zero
 * already is needed. (Transparent
 * huge pages were slower still on the development VM, 2–8× and erratic, so none are asked
 * for.) */
static const size_t map_from = (size_t)32 << 20;
_Static_assert(sizeof(block_header) <= MQ_MEM_ALIGN, "the header fits its 64 bytes");

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

/* A mapped block, zero: the header at the (page-aligned) start. populate: fault it in now
 * (only a speed-up: older kernels refuse it, and the pages then fault in at first touch). */
static void *map_block(size_t bytes, int populate) {
  size_t len = bytes + MQ_MEM_ALIGN;
  void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return NULL;
#ifdef MADV_POPULATE_WRITE
  if (populate) (void)madvise(map, len, MADV_POPULATE_WRITE);
#else
  (void)populate;
#endif
  block_header *h = map;
  *h = (block_header){.bytes = bytes, .map = map, .map_len = len};
  return h;
}

static void *alloc_block(size_t count, size_t size, int populate, int *zeroed) {
  if (size != 0 && count > (SIZE_MAX - MQ_MEM_ALIGN) / size) return NULL;
  size_t bytes = count * size;
  void *base = NULL;
  *zeroed = 0;
  if (atomic_load(&fail_countdown) > 0 && atomic_fetch_sub(&fail_countdown, 1) == 1)
    return mq__mem_injected();
  if (bytes >= map_from && (base = map_block(bytes, populate)) != NULL) {
    *zeroed = 1;
  } else {
    if (posix_memalign(&base, MQ_MEM_ALIGN, bytes + MQ_MEM_ALIGN) != 0) return NULL;
    *(block_header *)base = (block_header){.bytes = bytes};
  }
  note_alloc(bytes);
  return (char *)base + MQ_MEM_ALIGN;
}

void *mq_alloc(size_t count, size_t size) {
  int zeroed;
  return alloc_block(count, size, 0, &zeroed);
}

/* A mapped block is zero already: no pass over it. Populated, because zeroed memory is asked
 * for to be added to (accumulators: a read first, then a write, two faults per page when left
 * to first touch) and all of it is used; mq_alloc's blocks fault in as they are used, so a
 * buffer sized for the worst case costs only the pages it touches. */
void *mq_calloc(size_t count, size_t size) {
  int zeroed;
  void *p = alloc_block(count, size, 1, &zeroed);
  if (p != NULL && !zeroed) memset(p, 0, count * size);
  return p;
}

void *mq_memdup(const void *src, size_t count, size_t size) {
  void *p = src == NULL ? NULL : mq_alloc(count, size);
  if (p != NULL) memcpy(p, src, count * size);
  return p;
}

void mq_free(void *ptr) {
  if (ptr == NULL) return;
  block_header *h = (block_header *)((char *)ptr - MQ_MEM_ALIGN);
  atomic_fetch_sub(&mem_current, h->bytes);
  if (h->map != NULL) munmap(h->map, h->map_len);
  else free(h);
}

size_t mq_mem_current(void) { return atomic_load(&mem_current); }
size_t mq_mem_peak(void) { return atomic_load(&mem_peak); }
