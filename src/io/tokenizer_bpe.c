/* The BPE model (tokenizer_internal.h): one pre-token -> ids, as the Rust crate's BPE does it.
 *   units: byte-level: each byte's alphabet character; otherwise each character of the vocabulary,
 *          else its <0xHH> byte tokens (byte_fallback), else unk (consecutive ones fused when
 *          fuse_unk), else dropped;
 *   merges: repeatedly the adjacent pair of lowest rank, leftmost first (a min-heap keyed by
 *          rank, then position; stale entries skipped);
 *   ignore_merges: a pre-token that is itself in the vocabulary is one token.
 * Speed: pieces up to MQ_TOK_CACHE_KEY_MAX bytes are cached. Longer ones (a whole SentencePiece
 * document has no pre-tokenizer) are first cut between two units that no merge joins: a symbol
 * spanning such a boundary would have been made by a merge whose left part ends with the first
 * unit and whose right part starts with the second, and there is none, so the cut changes
 * nothing (t->joins holds the junction of every merge; unknown units are never cut apart, since
 * fuse_unk joins them; merges of byte-fallback or unk tokens switch cutting off). */
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

typedef struct sym {
  int32_t id;
  int32_t prev, next; /* -1 at the ends */
  int32_t alive;
} sym;

typedef struct qent {
  uint64_t key;                /* rank << 32 | position of the left symbol */
  int32_t left, right, merged; /* ids of the pair and of the result */
} qent;

static void heap_push(qent *h, size_t *n, qent e) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (h[up].key <= e.key) break;
    h[i] = h[up];
    i = up;
  }
  h[i] = e;
}

static qent heap_pop(qent *h, size_t *n) {
  qent top = h[0], last = h[--(*n)];
  size_t i = 0, cnt = *n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= cnt) break;
    if (c + 1 < cnt && h[c + 1].key < h[c].key) c++;
    if (last.key <= h[c].key) break;
    h[i] = h[c];
    i = c;
  }
  if (cnt) h[i] = last;
  return top;
}

static void try_pair(const mq_tokenizer *t, qent *h, size_t *nh, const sym *sy, int32_t pos) {
  uint64_t v;
  int32_t right = sy[sy[pos].next].id;
  if (mq__tok_u64map_get(&t->merges, (uint64_t)sy[pos].id << 32 | (uint32_t)right, &v))
    heap_push(h, nh,
              (qent){(v & 0xFFFFFFFF00000000ULL) | (uint32_t)pos, sy[pos].id, right,
                     (int32_t)(uint32_t)v});
}

/* Char mode: id of the one-character token c (cp, bytes s[len]), or -1. */
static int32_t char_unit(mq_tokenizer *t, uint32_t cp, const char *s, size_t len) {
  size_t slot = cp & 4095;
  if (t->unit_cache_key[slot] == (uint64_t)cp + 1) return t->unit_cache_val[slot];
  uint64_t v;
  int32_t id = mq__tok_strmap_get(&t->vocab, s, len, &v) ? (int32_t)v : -1;
  t->unit_cache_key[slot] = (uint64_t)cp + 1;
  t->unit_cache_val[slot] = id;
  return id;
}

/* BPE of one word s[n] (no cache), ids appended to out. */
static mq_status bpe_word(mq_tokenizer *t, const char *s, size_t n, mq_token_buf *out,
                          mq_error *err) {
  mq_status st = MQ_OK;
  const unsigned char *u = (const unsigned char *)s;
  if (n >= INT32_MAX / 4) /* symbol positions are int32 */
    MQ_FAIL(err, MQ_EINPUT, "%s: a piece of %zu bytes between pre-tokenizer splits is too long",
            t->path, n);
  if (n + 1 > t->sym_cap) {
    mq_free(t->sym);
    mq_free(t->heap);
    t->sym = t->heap = NULL;
    t->sym_cap = t->heap_cap = 0;
    t->sym = mq_alloc(n + 1, sizeof(sym));
    t->heap = mq_alloc(3 * n + 4, sizeof(qent));
    MQ_CHECK_ALLOC(err, t->sym && t->heap, (3 * n + 4) * sizeof(qent));
    t->sym_cap = n + 1;
    t->heap_cap = 3 * n + 4;
  }
  sym *sy = t->sym;
  qent *h = t->heap;
  int32_t ns = 0;
  int last_unk = 0;
#define ADD(x) (sy[ns] = (sym){(x), ns - 1, ns + 1, 1}, ns++)
  for (size_t i = 0; i < n;) {
    size_t len = t->byte_level ? 1 : mq__tok_utf8_len(u[i]);
    int32_t id =
        t->byte_level ? t->byte_unit[u[i]] : char_unit(t, mq__tok_utf8_cp(u + i, len), s + i, len);
    if (id >= 0) {
      ADD(id);
      last_unk = 0;
    } else {
      int fb = t->byte_fallback;
      for (size_t k = 0; fb && k < len; k++) fb = t->fallback_id[u[i + k]] >= 0;
      if (fb) {
        for (size_t k = 0; k < len; k++) ADD(t->fallback_id[u[i + k]]);
        last_unk = 0;
      } else if (t->unk_id >= 0 && !(t->fuse_unk && last_unk)) {
        ADD(t->unk_id);
        last_unk = 1;
      } /* else: no unk token, the character is dropped (as the Rust crate does) */
    }
    i += len;
  }
#undef ADD
  if (ns == 0) goto cleanup;
  sy[ns - 1].next = -1;
  size_t nh = 0;
  for (int32_t k = 0; k + 1 < ns; k++) try_pair(t, h, &nh, sy, k);
  while (nh > 0) {
    qent e = heap_pop(h, &nh);
    int32_t pos = (int32_t)(uint32_t)e.key, nx = sy[pos].next;
    if (!sy[pos].alive || nx < 0 || sy[pos].id != e.left || sy[nx].id != e.right) continue;
    sy[pos].id = e.merged;
    sy[nx].alive = 0;
    sy[pos].next = sy[nx].next;
    if (sy[nx].next >= 0) sy[sy[nx].next].prev = pos;
    if (sy[pos].prev >= 0) try_pair(t, h, &nh, sy, sy[pos].prev);
    if (sy[pos].next >= 0) try_pair(t, h, &nh, sy, pos);
  }
  for (int32_t k = 0; k >= 0; k = sy[k].next) MQ_CHECK(mq__tok_ids_push(out, sy[k].id, err));
cleanup:
  return st;
}

/* BPE through the cache (n <= MQ_TOK_CACHE_KEY_MAX). */
static mq_status cached_word(mq_tokenizer *t, const char *s, size_t n, mq_token_buf *out,
                             mq_error *err) {
  mq_status st = MQ_OK;
  uint64_t v;
  if (mq__tok_strmap_get(&t->cache, s, n, &v)) {
    MQ_CHECK(mq__tok_ids_append(out, t->cache_ids + (v >> 16), v & 0xFFFF, err));
    goto cleanup;
  }
  size_t start = out->n;
  MQ_CHECK(bpe_word(t, s, n, out, err));
  if (t->cache.n < MQ_TOK_CACHE_MAX_ENTRIES) {
    size_t cnt = out->n - start;
    void *p = t->cache_ids;
    MQ_CHECK(mq__tok_grow(&p, &t->cache_cap, t->cache_n + cnt, sizeof(int32_t), err));
    t->cache_ids = p;
    memcpy(t->cache_ids + t->cache_n, out->ids + start, cnt * sizeof(int32_t));
    MQ_CHECK(mq__tok_strmap_put(&t->cache, s, n, (uint64_t)t->cache_n << 16 | cnt, NULL, err));
    t->cache_n += cnt;
  }
cleanup:
  return st;
}

static mq_status word(mq_tokenizer *t, const char *s, size_t n, mq_token_buf *out, mq_error *err) {
  return n <= MQ_TOK_CACHE_KEY_MAX ? cached_word(t, s, n, out, err) : bpe_word(t, s, n, out, err);
}

/* Whether the unit (byte, or character cp at s[len]) is outside the vocabulary. */
static int unknown(mq_tokenizer *t, uint32_t cp, const char *s, size_t len) {
  return t->byte_level ? t->byte_unit[cp] < 0 : char_unit(t, cp, s, len) < 0;
}

mq_status mq__tok_model(mq_tokenizer *t, const char *s, size_t n, mq_token_buf *out,
                        mq_error *err) {
  mq_status st = MQ_OK;
  const unsigned char *u = (const unsigned char *)s;
  if (t->ignore_merges) {
    uint64_t v;
    if (mq__tok_strmap_get(t->byte_level ? &t->pieces : &t->vocab, s, n, &v)) {
      MQ_CHECK(mq__tok_ids_push(out, (int32_t)v, err));
      goto cleanup;
    }
  }
  if (n <= MQ_TOK_CACHE_KEY_MAX || !t->cut_ok) {
    MQ_CHECK(word(t, s, n, out, err));
    goto cleanup;
  }
  size_t start = 0, plen = t->byte_level ? 1 : mq__tok_utf8_len(u[0]);
  uint32_t prev = t->byte_level ? u[0] : mq__tok_utf8_cp(u, plen);
  for (size_t i = plen; i < n;) {
    size_t len = t->byte_level ? 1 : mq__tok_utf8_len(u[i]);
    uint32_t cp = t->byte_level ? u[i] : mq__tok_utf8_cp(u + i, len);
    uint64_t v;
    if (!mq__tok_u64map_get(&t->joins, (uint64_t)prev << 32 | cp, &v) &&
        !(unknown(t, prev, s + i - plen, plen) && unknown(t, cp, s + i, len))) {
      MQ_CHECK(word(t, s + start, i - start, out, err));
      start = i;
    }
    prev = cp;
    plen = len;
    i += len;
  }
  MQ_CHECK(word(t, s + start, n - start, out, err));
cleanup:
  return st;
}
