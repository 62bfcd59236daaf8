/* Open-addressing hash maps of the tokenizer (tokenizer_internal.h): linear probing, load factor
 * at most 1/2, capacities powers of two. */
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ULL;
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ULL;
  return x ^ (x >> 32);
}

/* 8 bytes at a time (unaligned loads through memcpy), then the tail; the length is mixed in. */
uint64_t mq__tok_hash(const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xFF51AFD7ED558CCDULL);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ mix(w)) * 0xC4CEB9FE1A85EC53ULL;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  for (size_t k = 0; k < n; k++) w |= (uint64_t)p[k] << (8 * k);
  return mix(h ^ w ^ 0x2545F4914F6CDD1DULL);
}

/* ---- string map ---- */

static size_t str_find(const mq_tok_strmap *m, const char *key, size_t n, uint64_t h, int *found) {
  size_t mask = m->cap - 1, i = (size_t)h & mask;
  uint32_t tag = (uint32_t)(h >> 32);
  for (;;) {
    mq_tok_slot sl = m->slot[i];
    if (sl.entry == 0) {
      *found = 0;
      return i;
    }
    if (sl.tag == tag) {
      const mq_tok_entry *e = &m->entry[sl.entry - 1];
      if (e->key_len == n && memcmp(m->keys.p + e->key_off, key, n) == 0) {
        *found = 1;
        return i;
      }
    }
    i = (i + 1) & mask;
  }
}

int mq__tok_strmap_get(const mq_tok_strmap *m, const char *key, size_t n, uint64_t *val) {
  if (m->cap == 0) return 0;
  int found;
  size_t i = str_find(m, key, n, mq__tok_hash(key, n), &found);
  if (found) *val = m->entry[m->slot[i].entry - 1].val;
  return found;
}

static mq_status str_rehash(mq_tok_strmap *m, size_t ncap, mq_error *err) {
  mq_status st = MQ_OK;
  mq_tok_slot *slot = mq_calloc(ncap, sizeof *slot);
  MQ_CHECK_ALLOC(err, slot, ncap * sizeof *slot);
  for (size_t e = 0; e < m->n; e++) {
    uint64_t h = mq__tok_hash(m->keys.p + m->entry[e].key_off, m->entry[e].key_len);
    size_t i = (size_t)h & (ncap - 1);
    while (slot[i].entry) i = (i + 1) & (ncap - 1);
    slot[i] = (mq_tok_slot){(uint32_t)(e + 1), (uint32_t)(h >> 32)};
  }
  mq_free(m->slot);
  m->slot = slot;
  m->cap = ncap;
cleanup:
  return st;
}

mq_status mq__tok_strmap_put(mq_tok_strmap *m, const char *key, size_t n, uint64_t val,
                             int *existed, mq_error *err) {
  mq_status st = MQ_OK;
  if (n > UINT32_MAX) MQ_FAIL(err, MQ_EFAIL, "internal error: hash key of %zu bytes", n);
  if (m->n >= UINT32_MAX - 1) MQ_FAIL(err, MQ_EFAIL, "internal error: hash map full");
  if ((m->n + 1) * 2 > m->cap) MQ_CHECK(str_rehash(m, m->cap ? m->cap * 2 : 1024, err));
  uint64_t h = mq__tok_hash(key, n);
  int found;
  size_t i = str_find(m, key, n, h, &found);
  if (existed) *existed = found;
  if (found) {
    m->entry[m->slot[i].entry - 1].val = val;
    goto cleanup;
  }
  if (m->n == m->ecap) {
    void *p = m->entry;
    MQ_CHECK(mq__tok_grow(&p, &m->ecap, m->n + 1, sizeof(mq_tok_entry), err));
    m->entry = p;
  }
  m->entry[m->n] = (mq_tok_entry){m->keys.n, val, (uint32_t)n};
  MQ_CHECK(mq__tok_bytes_append(&m->keys, key, n, err));
  m->slot[i] = (mq_tok_slot){(uint32_t)(m->n + 1), (uint32_t)(h >> 32)};
  m->n++;
cleanup:
  return st;
}

void mq__tok_strmap_free(mq_tok_strmap *m) {
  mq_free(m->slot);
  mq_free(m->entry);
  mq__tok_bytes_free(&m->keys);
  memset(m, 0, sizeof *m);
}

/* ---- uint64 map ---- */

int mq__tok_u64map_get(const mq_tok_u64map *m, uint64_t key, uint64_t *val) {
  if (m->cap == 0) return 0;
  size_t mask = m->cap - 1, i = (size_t)mix(key) & mask;
  for (;;) {
    uint64_t k = m->key[i];
    if (k == key) {
      *val = m->val[i];
      return 1;
    }
    if (k == UINT64_MAX) return 0;
    i = (i + 1) & mask;
  }
}

static mq_status u64_rehash(mq_tok_u64map *m, size_t ncap, mq_error *err) {
  mq_status st = MQ_OK;
  uint64_t *key = mq_alloc(ncap, sizeof *key), *val = mq_alloc(ncap, sizeof *val);
  MQ_CHECK_ALLOC(err, key && val, ncap * sizeof *key);
  memset(key, 0xFF, ncap * sizeof *key);
  for (size_t j = 0; j < m->cap; j++) {
    if (m->key[j] == UINT64_MAX) continue;
    size_t i = (size_t)mix(m->key[j]) & (ncap - 1);
    while (key[i] != UINT64_MAX) i = (i + 1) & (ncap - 1);
    key[i] = m->key[j];
    val[i] = m->val[j];
  }
  mq_free(m->key);
  mq_free(m->val);
  m->key = key;
  m->val = val;
  m->cap = ncap;
  key = val = NULL;
cleanup:
  mq_free(key);
  mq_free(val);
  return st;
}

mq_status mq__tok_u64map_put(mq_tok_u64map *m, uint64_t key, uint64_t val, mq_error *err) {
  mq_status st = MQ_OK;
  if (key == UINT64_MAX) MQ_FAIL(err, MQ_EFAIL, "internal error: reserved hash key");
  if ((m->n + 1) * 2 > m->cap) MQ_CHECK(u64_rehash(m, m->cap ? m->cap * 2 : 1024, err));
  size_t mask = m->cap - 1, i = (size_t)mix(key) & mask;
  while (m->key[i] != UINT64_MAX && m->key[i] != key) i = (i + 1) & mask;
  if (m->key[i] == UINT64_MAX) m->n++;
  m->key[i] = key;
  m->val[i] = val;
cleanup:
  return st;
}

void mq__tok_u64map_free(mq_tok_u64map *m) {
  mq_free(m->key);
  mq_free(m->val);
  memset(m, 0, sizeof *m);
}
