/* GGUF v3 writer (io/gguf_write.h). Key/value pairs are serialized as they are added into one
 * growing buffer; tensor infos are serialized at write time, when their offsets are known. */
#include "io/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/safetensors_write.h"

enum { /* value types of the key/value section (gguf_type) */
  GT_UINT32 = 4, GT_INT32 = 5, GT_FLOAT32 = 6, GT_BOOL = 7, GT_STRING = 8, GT_ARRAY = 9
};

typedef struct gguf_tensor {
  char *name;
  mq_ggml_type type;
  int ndim;
  uint64_t ne[MQ_GGUF_MAX_DIMS]; /* ne[0] contiguous */
  uint64_t nbytes, offset;       /* offset relative to the data section */
  mq_gguf_fill_fn fill;
  void *ctx;
  size_t tag;
} gguf_tensor;

struct mq_gguf_writer {
  uint8_t *kv;     /* [kv_len] serialized key/value pairs */
  size_t kv_len, kv_cap;
  char **keys;     /* [nkeys] for the duplicate check */
  size_t nkeys, keys_cap;
  gguf_tensor *t;  /* [n] in file order */
  size_t n, cap;
  uint64_t data_len; /* bytes of the data section so far (padded) */
};

const char *mq_ggml_type_name(mq_ggml_type t) {
  switch (t) {
  case MQ_GGML_F32: return "F32";
  case MQ_GGML_F16: return "F16";
  case MQ_GGML_BF16: return "BF16";
  case MQ_GGML_Q4_0: return "Q4_0";
  case MQ_GGML_Q4_1: return "Q4_1";
  case MQ_GGML_Q5_0: return "Q5_0";
  case MQ_GGML_Q5_1: return "Q5_1";
  case MQ_GGML_Q8_0: return "Q8_0";
  }
  return "?";
}

size_t mq_ggml_block_values(mq_ggml_type t) {
  switch (t) {
  case MQ_GGML_F32: case MQ_GGML_F16: case MQ_GGML_BF16: return 1;
  case MQ_GGML_Q4_0: case MQ_GGML_Q4_1: case MQ_GGML_Q5_0: case MQ_GGML_Q5_1:
  case MQ_GGML_Q8_0: return 32;
  }
  return 0;
}

size_t mq_ggml_block_bytes(mq_ggml_type t) {
  switch (t) {
  case MQ_GGML_F32: return 4;
  case MQ_GGML_F16: case MQ_GGML_BF16: return 2;
  case MQ_GGML_Q4_0: return 18; /* d, qs[16] */
  case MQ_GGML_Q4_1: return 20; /* d, m, qs[16] */
  case MQ_GGML_Q5_0: return 22; /* d, qh[4], qs[16] */
  case MQ_GGML_Q5_1: return 24; /* d, m, qh[4], qs[16] */
  case MQ_GGML_Q8_0: return 34; /* d, qs[32] */
  }
  return 0;
}

static uint64_t align_up(uint64_t x) {
  return (x + MQ_GGUF_ALIGNMENT - 1) / MQ_GGUF_ALIGNMENT * MQ_GGUF_ALIGNMENT;
}

/* ---- little-endian serialization into a growing buffer ---- */

typedef struct bytes {
  uint8_t **p;
  size_t *len, *cap;
} bytes;

static int reserve(bytes b, size_t more) {
  if (*b.len + more <= *b.cap) return 1;
  size_t cap = *b.cap ? *b.cap : 4096;
  while (cap < *b.len + more) cap *= 2;
  uint8_t *q = mq_alloc(cap, 1);
  if (q == NULL) return 0;
  if (*b.len) memcpy(q, *b.p, *b.len);
  mq_free(*b.p);
  *b.p = q;
  *b.cap = cap;
  return 1;
}

static int put(bytes b, const void *src, size_t n) {
  if (!reserve(b, n)) return 0;
  memcpy(*b.p + *b.len, src, n);
  *b.len += n;
  return 1;
}

static int put_u32(bytes b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  return put(b, x, 4);
}

static int put_u64(bytes b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
  return put(b, x, 8);
}

static int put_str(bytes b, const char *s) {
  size_t n = strlen(s);
  return put_u64(b, n) && put(b, s, n);
}

static int put_f32(bytes b, float f) {
  uint32_t v;
  memcpy(&v, &f, 4);
  return put_u32(b, v);
}

/* ---- handle ---- */

mq_status mq_gguf_create(mq_gguf_writer **out, mq_error *err) {
  mq_status st = MQ_OK;
  *out = mq_calloc(1, sizeof **out);
  MQ_CHECK_ALLOC(err, *out, sizeof **out);
cleanup:
  return st;
}

void mq_gguf_free(mq_gguf_writer **w) {
  if (w == NULL || *w == NULL) return;
  for (size_t i = 0; i < (*w)->nkeys; i++) mq_free((*w)->keys[i]);
  for (size_t i = 0; i < (*w)->n; i++) mq_free((*w)->t[i].name);
  mq_free((*w)->keys);
  mq_free((*w)->t);
  mq_free((*w)->kv);
  mq_free(*w);
  *w = NULL;
}

static char *copy_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = mq_alloc(n, 1);
  if (c != NULL) memcpy(c, s, n);
  return c;
}

/* Grows an array of elem-byte items to hold n + 1. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return 1;
  size_t nc = *cap ? 2 * *cap : 32;
  void *q = mq_alloc(nc, elem);
  if (q == NULL) return 0;
  if (n) memcpy(q, *arr, n * elem);
  mq_free(*arr);
  *arr = q;
  *cap = nc;
  return 1;
}

/* Checks the key, records it and writes its name and value type. */
static mq_status begin_kv(mq_gguf_writer *w, const char *key, uint32_t type, mq_error *err) {
  mq_status st = MQ_OK;
  bytes b = {&w->kv, &w->kv_len, &w->kv_cap};
  if (key == NULL || key[0] == '\0') MQ_FAIL(err, MQ_EINPUT, "gguf: empty metadata key");
  for (size_t i = 0; i < w->nkeys; i++)
    if (!strcmp(w->keys[i], key)) MQ_FAIL(err, MQ_EINPUT, "%s: duplicate GGUF metadata key", key);
  MQ_CHECK_ALLOC(err, grow((void **)&w->keys, &w->keys_cap, w->nkeys, sizeof *w->keys), 64);
  w->keys[w->nkeys] = copy_str(key);
  MQ_CHECK_ALLOC(err, w->keys[w->nkeys], strlen(key) + 1);
  w->nkeys++;
  MQ_CHECK_ALLOC(err, put_str(b, key) && put_u32(b, type), strlen(key) + 12);
cleanup:
  return st;
}

#define KV_SCALAR(fn, ctype, gtype, putter)                                                  \
  mq_status fn(mq_gguf_writer *w, const char *key, ctype v, mq_error *err) {                 \
    mq_status st = MQ_OK;                                                                    \
    bytes b = {&w->kv, &w->kv_len, &w->kv_cap};                                              \
    MQ_CHECK(begin_kv(w, key, gtype, err));                                                  \
    MQ_CHECK_ALLOC(err, putter, 8);                                                          \
  cleanup:                                                                                   \
    return st;                                                                               \
  }

KV_SCALAR(mq_gguf_kv_u32, uint32_t, GT_UINT32, put_u32(b, v))
KV_SCALAR(mq_gguf_kv_i32, int32_t, GT_INT32, put_u32(b, (uint32_t)v))
KV_SCALAR(mq_gguf_kv_f32, float, GT_FLOAT32, put_f32(b, v))
KV_SCALAR(mq_gguf_kv_bool, int, GT_BOOL, put(b, &(uint8_t){(uint8_t)(v != 0)}, 1))
KV_SCALAR(mq_gguf_kv_str, const char *, GT_STRING, put_str(b, v))

mq_status mq_gguf_kv_strs(mq_gguf_writer *w, const char *key, const char *const *v, size_t n,
                          mq_error *err) {
  mq_status st = MQ_OK;
  bytes b = {&w->kv, &w->kv_len, &w->kv_cap};
  MQ_CHECK(begin_kv(w, key, GT_ARRAY, err));
  MQ_CHECK_ALLOC(err, put_u32(b, GT_STRING) && put_u64(b, n), 12);
  for (size_t i = 0; i < n; i++) MQ_CHECK_ALLOC(err, put_str(b, v[i]), strlen(v[i]) + 8);
cleanup:
  return st;
}

mq_status mq_gguf_kv_f32s(mq_gguf_writer *w, const char *key, const float *v, size_t n,
                          mq_error *err) {
  mq_status st = MQ_OK;
  bytes b = {&w->kv, &w->kv_len, &w->kv_cap};
  MQ_CHECK(begin_kv(w, key, GT_ARRAY, err));
  MQ_CHECK_ALLOC(err, put_u32(b, GT_FLOAT32) && put_u64(b, n) && reserve(b, 4 * n), 4 * n + 12);
  for (size_t i = 0; i < n; i++) (void)put_f32(b, v[i]);
cleanup:
  return st;
}

mq_status mq_gguf_kv_i32s(mq_gguf_writer *w, const char *key, const int32_t *v, size_t n,
                          mq_error *err) {
  mq_status st = MQ_OK;
  bytes b = {&w->kv, &w->kv_len, &w->kv_cap};
  MQ_CHECK(begin_kv(w, key, GT_ARRAY, err));
  MQ_CHECK_ALLOC(err, put_u32(b, GT_INT32) && put_u64(b, n) && reserve(b, 4 * n), 4 * n + 12);
  for (size_t i = 0; i < n; i++) (void)put_u32(b, (uint32_t)v[i]);
cleanup:
  return st;
}

mq_status mq_gguf_add_tensor(mq_gguf_writer *w, const char *name, mq_ggml_type t, int ndim,
                             const uint64_t *ne, mq_gguf_fill_fn fill, void *ctx, size_t tag,
                             mq_error *err) {
  mq_status st = MQ_OK;
  size_t bv = mq_ggml_block_values(t), bb = mq_ggml_block_bytes(t);
  if (name == NULL || name[0] == '\0') MQ_FAIL(err, MQ_EINPUT, "gguf: empty tensor name");
  if (bv == 0) MQ_FAIL(err, MQ_EINPUT, "%s: unknown ggml type %d", name, (int)t);
  if (ndim < 1 || ndim > MQ_GGUF_MAX_DIMS)
    MQ_FAIL(err, MQ_EINPUT, "%s: %d dimensions (1..%d)", name, ndim, MQ_GGUF_MAX_DIMS);
  for (size_t i = 0; i < w->n; i++)
    if (!strcmp(w->t[i].name, name)) MQ_FAIL(err, MQ_EINPUT, "%s: duplicate tensor name", name);
  if (ne[0] % bv != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: row length %llu is not a multiple of the %s block (%zu)", name,
            (unsigned long long)ne[0], mq_ggml_type_name(t), bv);
  uint64_t nbytes = ne[0] / bv * bb;
  for (int d = 1; d < ndim; d++) {
    if (ne[d] == 0 || nbytes > UINT64_MAX / 2 / ne[d])
      MQ_FAIL(err, MQ_EINPUT, "%s: dimension %d is %llu (empty or too large)", name, d,
              (unsigned long long)ne[d]);
    nbytes *= ne[d];
  }
  if (ne[0] == 0 || nbytes > (uint64_t)SIZE_MAX / 2)
    MQ_FAIL(err, MQ_EINPUT, "%s: empty or too large", name);
  MQ_CHECK_ALLOC(err, grow((void **)&w->t, &w->cap, w->n, sizeof *w->t), sizeof *w->t);
  gguf_tensor *x = &w->t[w->n];
  *x = (gguf_tensor){.type = t, .ndim = ndim, .nbytes = nbytes, .offset = w->data_len,
                     .fill = fill, .ctx = ctx, .tag = tag};
  memcpy(x->ne, ne, (size_t)ndim * sizeof *ne);
  x->name = copy_str(name);
  MQ_CHECK_ALLOC(err, x->name, strlen(name) + 1);
  w->n++;
  w->data_len = align_up(w->data_len + nbytes);
cleanup:
  return st;
}

size_t mq_gguf_tensor_count(const mq_gguf_writer *w) { return w->n; }

/* Header + key/values + tensor infos, into *out (mq_alloc'd, [*len]), unpadded. */
static mq_status build_head(const mq_gguf_writer *w, uint8_t **out, size_t *len, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cap = 0;
  bytes b = {out, len, &cap};
  *out = NULL;
  *len = 0;
  int ok = put(b, "GGUF", 4) && put_u32(b, 3) && put_u64(b, w->n) && put_u64(b, w->nkeys) &&
           put(b, w->kv, w->kv_len);
  for (size_t i = 0; ok && i < w->n; i++) {
    const gguf_tensor *x = &w->t[i];
    ok = put_str(b, x->name) && put_u32(b, (uint32_t)x->ndim);
    for (int d = 0; ok && d < x->ndim; d++) ok = put_u64(b, x->ne[d]);
    ok = ok && put_u32(b, (uint32_t)x->type) && put_u64(b, x->offset);
  }
  MQ_CHECK_ALLOC(err, ok, *len + 4096);
cleanup:
  if (st != MQ_OK) {
    mq_free(*out);
    *out = NULL;
  }
  return st;
}

uint64_t mq_gguf_file_size(const mq_gguf_writer *w) {
  uint64_t head = 24 + w->kv_len;
  for (size_t i = 0; i < w->n; i++) head += 8 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].ndim + 12;
  return align_up(head) + w->data_len;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

mq_status mq_gguf_write(mq_gguf_writer *w, const char *path, mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = NULL;
  uint8_t *head = NULL;
  void *buf = NULL;
  size_t hlen = 0, maxbytes = 1;
  int created = 0;
  static const uint8_t zeros[MQ_GGUF_ALIGNMENT];
  if (!host_is_little_endian())
    MQ_FAIL(err, MQ_EFAIL, "%s: GGUF writing needs a little-endian host", path);
  MQ_CHECK(build_head(w, &head, &hlen, err));
  for (size_t i = 0; i < w->n; i++)
    if (w->t[i].nbytes > maxbytes) maxbytes = (size_t)w->t[i].nbytes;
  buf = mq_alloc(maxbytes, 1);
  MQ_CHECK_ALLOC(err, buf, maxbytes);
  f = fopen(path, "wb");
  if (f == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create: %s", path, strerror(errno));
  created = 1;
  size_t pad = (size_t)(align_up(hlen) - hlen);
  if (fwrite(head, 1, hlen, f) != hlen || fwrite(zeros, 1, pad, f) != pad)
    MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  uint64_t pos = 0; /* within the data section */
  for (size_t i = 0; i < w->n; i++) {
    const gguf_tensor *x = &w->t[i];
    size_t gap = (size_t)(x->offset - pos);
    if (gap && fwrite(zeros, 1, gap, f) != gap)
      MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
    memset(buf, 0, (size_t)x->nbytes);
    MQ_CHECK(x->fill(x->ctx, x->tag, buf, (size_t)x->nbytes, err));
    if (fwrite(buf, 1, (size_t)x->nbytes, f) != x->nbytes)
      MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
    pos = x->offset + x->nbytes;
  }
  /* pad the last tensor too, so the file size is the data section's aligned size */
  size_t tail = (size_t)(align_up(pos) - pos);
  if (tail && fwrite(zeros, 1, tail, f) != tail)
    MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  MQ_CHECK(mq_stw_finish_file(&f, path, err));
cleanup:
  if (f != NULL) fclose(f);
  if (st != MQ_OK && created) (void)remove(path);
  mq_free(buf);
  mq_free(head);
  return st;
}
