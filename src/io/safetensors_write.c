#include "io/safetensors_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/mem.h"
#include "core/status.h"

typedef struct stw_tensor {
  char *name;
  mq_stw_dtype dtype;
  int ndim;
  size_t shape[MQ_STW_MAX_DIMS];
  size_t nbytes;
  mq_stw_fill_fn fill;
  void *ctx;
  size_t tag;
  size_t shard; /* 0 until mq_stw_shard assigns one */
} stw_tensor;

struct mq_st_writer {
  size_t n, cap;
  stw_tensor *t;  /* [n] in declaration order until sorted: by (shard, data order) */
  size_t nshards; /* 1 until mq_stw_shard */
  json_t *meta;   /* "__metadata__" object */
};

static const char *const dtype_names[4] = {"F32", "F16", "BF16", "I32"};
static const size_t dtype_sizes[4] = {4, 2, 2, 4};

const char *mq_stw_dtype_name(mq_stw_dtype dt) {
  return (unsigned)dt < 4 ? dtype_names[dt] : "?";
}

size_t mq_stw_dtype_size(mq_stw_dtype dt) {
  return (unsigned)dt < 4 ? dtype_sizes[dt] : 0;
}

uint16_t mq_stw_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u); /* round half to even; carries into the exponent (inf) */
  return (uint16_t)(x >> 16);
}

uint16_t mq_stw_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) /* inf, or NaN: keep the top payload bits, force quiet */
    return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (a < 0x38800000u) {                                    /* below 2^-14: subnormal */
    if (a <= 0x33000000u) return (uint16_t)sign;            /* <= 2^-25: ties to even 0 */
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    unsigned shift = 126u - (a >> 23); /* value·2^24 = mant >> shift; shift in 14..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* may become the smallest normal */
    return (uint16_t)(sign | q);
  }
  uint32_t h = (((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13), rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry into the exponent is right */
  return (uint16_t)(sign | h);
}

mq_status mq_stw_create(mq_st_writer **out, mq_error *err) {
  mq_status st = MQ_OK;
  *out = mq_calloc(1, sizeof **out);
  MQ_CHECK_ALLOC(err, *out, sizeof **out);
  (*out)->nshards = 1;
  (*out)->meta = json_object();
  MQ_CHECK_ALLOC(err, (*out)->meta, 64);
cleanup:
  if (st != MQ_OK) mq_stw_free(out);
  return st;
}

void mq_stw_free(mq_st_writer **w) {
  if (w == NULL || *w == NULL) return;
  for (size_t i = 0; i < (*w)->n; i++) mq_free((*w)->t[i].name);
  mq_free((*w)->t);
  json_decref((*w)->meta);
  mq_free(*w);
  *w = NULL;
}

size_t mq_stw_count(const mq_st_writer *w) {
  return w->n;
}

mq_status mq_stw_set_metadata(mq_st_writer *w, const char *key, const char *value, mq_error *err) {
  mq_status st = MQ_OK;
  json_t *v = json_string(value);
  if (v == NULL) MQ_FAIL(err, MQ_EINPUT, "__metadata__: %s: value is not valid UTF-8", key);
  if (json_object_set_new(w->meta, key, v) != 0)
    MQ_FAIL(err, MQ_EINPUT, "__metadata__: %s: bad key", key);
cleanup:
  return st;
}

mq_status mq_stw_add(mq_st_writer *w, const char *name, mq_stw_dtype dtype, int ndim,
                     const size_t *shape, mq_stw_fill_fn fill, void *ctx, size_t tag,
                     mq_error *err) {
  mq_status st = MQ_OK;
  if (name[0] == '\0' || strcmp(name, "__metadata__") == 0)
    MQ_FAIL(err, MQ_EINPUT, "'%s': not a valid tensor name", name);
  if ((unsigned)dtype >= 4 || ndim < 0 || ndim > MQ_STW_MAX_DIMS)
    MQ_FAIL(err, MQ_EFAIL, "%s: bad dtype or rank (internal error)", name);
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->t[i].name, name) == 0) MQ_FAIL(err, MQ_EINPUT, "%s: tensor written twice", name);
  size_t nbytes = dtype_sizes[dtype];
  for (int d = 0; d < ndim; d++) {
    if (shape[d] != 0 && nbytes > SIZE_MAX / shape[d])
      MQ_FAIL(err, MQ_EINPUT, "%s: tensor size overflows", name);
    nbytes *= shape[d];
  }
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    stw_tensor *t = mq_alloc(cap, sizeof *t);
    MQ_CHECK_ALLOC(err, t, cap * sizeof *t);
    if (w->n) memcpy(t, w->t, w->n * sizeof *t);
    mq_free(w->t);
    w->t = t;
    w->cap = cap;
  }
  stw_tensor *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  size_t len = strlen(name) + 1;
  t->name = mq_alloc(len, 1);
  MQ_CHECK_ALLOC(err, t->name, len);
  memcpy(t->name, name, len);
  t->dtype = dtype;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->nbytes = nbytes;
  t->fill = fill;
  t->ctx = ctx;
  t->tag = tag;
  w->n++;
cleanup:
  return st;
}

/* Data order: larger elements first (each tensor then starts aligned to its element size, as
 * the reference writer arranges it), then by name. */
static int cmp_data_order(const void *pa, const void *pb) {
  const stw_tensor *a = pa, *b = pb;
  if (a->shard != b->shard) return a->shard < b->shard ? -1 : 1;
  size_t sa = dtype_sizes[a->dtype], sb = dtype_sizes[b->dtype];
  if (sa != sb) return sa > sb ? -1 : 1;
  return strcmp(a->name, b->name);
}

/* The header JSON of tensors t[lo, hi) (compact, keys sorted), padded with spaces to make
 * 8 + length a multiple of 8. *text from malloc (jansson), *len its padded length. */
static mq_status build_header(const mq_st_writer *w, size_t lo, size_t hi, char **text,
                              size_t *len, mq_error *err) {
  mq_status st = MQ_OK;
  json_t *root = json_object();
  char *s = NULL;
  MQ_CHECK_ALLOC(err, root, 64);
  if (json_object_size(w->meta) > 0 && json_object_set(root, "__metadata__", w->meta) != 0)
    MQ_FAIL(err, MQ_EFAIL, "safetensors header: out of memory");
  size_t off = 0;
  for (size_t i = lo; i < hi; i++) {
    const stw_tensor *t = &w->t[i];
    json_t *shape = json_array();
    json_t *desc = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_names[t->dtype], "shape",
                             shape, "data_offsets", (json_int_t)off,
                             (json_int_t)(off + t->nbytes));
    if (shape == NULL || desc == NULL) MQ_FAIL(err, MQ_EFAIL, "safetensors header: out of memory");
    for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
    if (json_object_set_new(root, t->name, desc) != 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: not a valid UTF-8 tensor name", t->name);
    off += t->nbytes;
  }
  s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  MQ_CHECK_ALLOC(err, s, 1);
  size_t n = strlen(s), padded = (n + 7) / 8 * 8;
  char *p = realloc(s, padded + 1);
  MQ_CHECK_ALLOC(err, p, padded + 1);
  s = p;
  memset(s + n, ' ', padded - n);
  s[padded] = '\0';
  *text = s;
  *len = padded;
  s = NULL;
cleanup:
  free(s);
  json_decref(root);
  return st;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  uint8_t b;
  memcpy(&b, &one, 1);
  return b == 1;
}

mq_status mq_stw_finish_file(FILE **f, const char *path, mq_error *err) {
  mq_status st = MQ_OK;
  int ok = fflush(*f) == 0 && fsync(fileno(*f)) == 0;
  int rc = fclose(*f);
  *f = NULL;
  if (!ok || rc != 0) MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
cleanup:
  return st;
}

/* Writes tensors t[lo, hi) (already in data order) as one file at path. */
static mq_status write_range(mq_st_writer *w, size_t lo, size_t hi, const char *path,
                             mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = NULL;
  char *header = NULL;
  void *buf = NULL;
  size_t hlen = 0, maxbytes = 1;
  int created = 0;
  if (!host_is_little_endian())
    MQ_FAIL(err, MQ_EFAIL, "%s: safetensors writing needs a little-endian host", path);
  MQ_CHECK(build_header(w, lo, hi, &header, &hlen, err));
  for (size_t i = lo; i < hi; i++)
    if (w->t[i].nbytes > maxbytes) maxbytes = w->t[i].nbytes;
  buf = mq_alloc(maxbytes, 1);
  MQ_CHECK_ALLOC(err, buf, maxbytes);
  f = fopen(path, "wb");
  if (f == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create: %s", path, strerror(errno));
  created = 1;
  uint8_t lenbytes[8];
  for (int k = 0; k < 8; k++) lenbytes[k] = (uint8_t)((uint64_t)hlen >> (8 * k));
  if (fwrite(lenbytes, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen)
    MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  for (size_t i = lo; i < hi; i++) {
    const stw_tensor *t = &w->t[i];
    if (t->nbytes == 0) continue;
    MQ_CHECK(t->fill(t->ctx, t->tag, buf, t->nbytes, err));
    if (fwrite(buf, 1, t->nbytes, f) != t->nbytes)
      MQ_FAIL(err, MQ_EFAIL, "%s: write failed: %s", path, strerror(errno));
  }
  MQ_CHECK(mq_stw_finish_file(&f, path, err));
cleanup:
  if (f != NULL) fclose(f);
  if (st != MQ_OK && created) (void)remove(path);
  mq_free(buf);
  free(header);
  return st;
}

mq_status mq_stw_write(mq_st_writer *w, const char *path, mq_error *err) {
  for (size_t i = 0; i < w->n; i++) w->t[i].shard = 0; /* one file: every tensor */
  w->nshards = 1;
  if (w->n) qsort(w->t, w->n, sizeof *w->t, cmp_data_order);
  return write_range(w, 0, w->n, path, err);
}

static int cmp_name(const void *pa, const void *pb) {
  return strcmp(((const stw_tensor *)pa)->name, ((const stw_tensor *)pb)->name);
}

size_t mq_stw_shard(mq_st_writer *w, uint64_t max_bytes) {
  size_t shard = 0;
  uint64_t used = 0;
  if (w->n) qsort(w->t, w->n, sizeof *w->t, cmp_name);
  for (size_t i = 0; i < w->n; i++) {
    uint64_t nb = w->t[i].nbytes;
    if (used > 0 && used + nb > max_bytes) { /* the next shard (a larger tensor: alone) */
      shard++;
      used = 0;
    }
    w->t[i].shard = shard;
    used += nb;
  }
  w->nshards = shard + 1;
  if (w->n) qsort(w->t, w->n, sizeof *w->t, cmp_data_order);
  return w->nshards;
}

mq_status mq_stw_write_shard(mq_st_writer *w, size_t k, const char *path, mq_error *err) {
  size_t lo = 0, hi;
  while (lo < w->n && w->t[lo].shard < k) lo++;
  for (hi = lo; hi < w->n && w->t[hi].shard == k; hi++) continue;
  return write_range(w, lo, hi, path, err);
}

uint64_t mq_stw_total_bytes(const mq_st_writer *w) {
  uint64_t total = 0;
  for (size_t i = 0; i < w->n; i++) total += w->t[i].nbytes;
  return total;
}

const char *mq_stw_tensor(const mq_st_writer *w, size_t i, size_t *shard) {
  if (i >= w->n) return NULL;
  if (shard != NULL) *shard = w->t[i].shard;
  return w->t[i].name;
}
