/* safetensors checkpoints (see safetensors.h). Layout of one file: u64 little-endian header
 * length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}, then the data buffer; offsets are relative to the buffer start. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/paths.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (F32 data is read in place)"
#endif

typedef struct st_shard {
  char *path;       /* for messages and the file itself */
  int fd;           /* -1 when closed */
  size_t data_start; /* 8 + header length */
  size_t data_len;   /* file size - data_start */
} st_shard;

typedef struct st_entry {
  char *name;
  size_t shard;  /* index into shards */
  size_t begin;  /* byte offset in the shard's data buffer */
  mq_st_tensor_info info;
} st_entry;

struct mq_st_model {
  char *dir;          /* as given, for "missing tensor" messages */
  size_t nshards;
  st_shard *shards;   /* [nshards] */
  size_t n, cap;
  st_entry *entries;  /* [n], sorted by name once open() finishes */
};

/* Raw bytes converted per pread in mq_st_read_f32 (F16/BF16). */
enum { READ_CHUNK = 1 << 20 };

static const size_t dtype_size[3] = {4, 2, 2};
static const char *const dtype_names[3] = {"F32", "F16", "BF16"};

const char *mq_st_dtype_name(mq_st_dtype dt) {
  return (unsigned)dt < 3 ? dtype_names[dt] : "?";
}

float mq_st_bf16_to_f32(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float mq_st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24, exact in float32 */
    float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13); /* inf, or nan with its payload */
  else
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *p = mq_alloc(len, 1);
  if (p) memcpy(p, s, len);
  return p;
}

static char *join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = mq_alloc(a + b + 2, 1);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

/* pread until count bytes are in or the file ends; returns 0 on success, -1 otherwise. */
static int pread_full(int fd, void *buf, size_t count, size_t offset) {
  char *p = buf;
  while (count > 0) {
    ssize_t got = pread(fd, p, count, (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    p += got;
    count -= (size_t)got;
    offset += (size_t)got;
  }
  return 0;
}

/* A JSON integer >= 0 as size_t; 0 if j is not one. */
static int json_size(const json_t *j, size_t *out) {
  if (!json_is_integer(j)) return 0;
  json_int_t v = json_integer_value(j);
  if (v < 0) return 0;
  if ((unsigned long long)v > (unsigned long long)SIZE_MAX) return 0;
  *out = (size_t)v;
  return 1;
}

/* Validates one header entry and appends it to m->entries. */
static mq_status add_entry(mq_st_model *m, size_t si, const char *name, const json_t *desc,
                           mq_error *err) {
  mq_status st = MQ_OK;
  const st_shard *sh = &m->shards[si];
  const char *path = sh->path;
  char *copy = NULL;
  st_entry e;
  memset(&e, 0, sizeof e);
  if (!json_is_object(desc)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: entry is not a JSON object", path, name);
  const json_t *jd = json_object_get(desc, "dtype"), *js = json_object_get(desc, "shape"),
               *jo = json_object_get(desc, "data_offsets");
  if (!json_is_string(jd)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing or non-string dtype", path, name);
  const char *dt = json_string_value(jd);
  int found = 0;
  for (int k = 0; k < 3; k++)
    if (strcmp(dt, dtype_names[k]) == 0) {
      e.info.dtype = (mq_st_dtype)k;
      found = 1;
    }
  if (!found)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: unsupported dtype %.40s (need F32, F16 or BF16)", path, name,
            dt);
  if (!json_is_array(js)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing or non-array shape", path, name);
  size_t nd = json_array_size(js);
  if (nd > MQ_ST_MAX_DIMS)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %zu dimensions (at most %d supported)", path, name, nd,
            MQ_ST_MAX_DIMS);
  e.info.ndim = (int)nd;
  size_t count = 1;
  for (size_t d = 0; d < nd; d++) {
    size_t v;
    if (!json_size(json_array_get(js, d), &v))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: shape entry %zu is not a non-negative integer", path, name,
              d);
    e.info.shape[d] = v;
    if (v != 0 && count > SIZE_MAX / v)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: shape overflows the element count", path, name);
    count *= v;
  }
  size_t es = dtype_size[e.info.dtype];
  if (count > SIZE_MAX / es)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: shape overflows the byte length", path, name);
  e.info.count = count;
  e.info.nbytes = count * es;
  size_t begin, end;
  if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_size(json_array_get(jo, 0), &begin) ||
      !json_size(json_array_get(jo, 1), &end))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: data_offsets must be two non-negative integers", path, name);
  if (begin > end)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: data_offsets [%zu, %zu] end before they begin", path, name,
            begin, end);
  if (end > sh->data_len)
    MQ_FAIL(err, MQ_EINPUT,
            "%s: %s: data_offsets [%zu, %zu] run past the data buffer (%zu bytes; file truncated?)",
            path, name, begin, end, sh->data_len);
  if (end - begin != e.info.nbytes)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: shape x %s needs %zu bytes, data_offsets give %zu", path,
            name, dt, e.info.nbytes, end - begin);
  copy = dup_str(name);
  MQ_CHECK_ALLOC(err, copy, strlen(name) + 1);
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 64;
    st_entry *grown = mq_alloc(cap, sizeof *grown);
    MQ_CHECK_ALLOC(err, grown, cap * sizeof *grown);
    if (m->n) memcpy(grown, m->entries, m->n * sizeof *grown);
    mq_free(m->entries);
    m->entries = grown;
    m->cap = cap;
  }
  e.name = copy;
  e.shard = si;
  e.begin = begin;
  m->entries[m->n++] = e;
  copy = NULL;
cleanup:
  mq_free(copy);
  return st;
}

static int cmp_begin(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->info.nbytes < y->info.nbytes ? -1 : x->info.nbytes > y->info.nbytes;
}

/* Entries [first, m->n) belong to one shard: no two non-empty byte ranges may overlap. */
static mq_status check_overlaps(mq_st_model *m, size_t first, const char *path, mq_error *err) {
  mq_status st = MQ_OK;
  qsort(m->entries + first, m->n - first, sizeof *m->entries, cmp_begin);
  const st_entry *last = NULL; /* the non-empty range reaching furthest so far */
  for (size_t i = first; i < m->n; i++) {
    const st_entry *e = &m->entries[i];
    if (e->info.nbytes == 0) continue;
    if (last && last->begin + last->info.nbytes > e->begin)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: data overlaps tensor %s", path, e->name, last->name);
    if (!last || e->begin + e->info.nbytes > last->begin + last->info.nbytes) last = e;
  }
cleanup:
  return st;
}

/* Opens shard si, validates its header and appends its tensors. */
static mq_status load_shard(mq_st_model *m, size_t si, mq_error *err) {
  mq_status st = MQ_OK;
  st_shard *sh = &m->shards[si];
  const char *path = sh->path;
  char *hdr = NULL;
  json_t *root = NULL;
  unsigned char lenbuf[8];
  MQ_CHECK(mq_path_open_regular(path, &sh->fd, err)); /* a FIFO must not block the open */
  struct stat sb;
  if (fstat(sh->fd, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot stat: %s", path, strerror(errno));
  size_t fsize = (size_t)sb.st_size;
  if (fsize < 8)
    MQ_FAIL(err, MQ_EINPUT, "%s: truncated (%zu bytes, a safetensors file needs at least 8)", path,
            fsize);
  if (pread_full(sh->fd, lenbuf, 8, 0) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot read header length", path);
  uint64_t n64 = 0;
  for (int k = 7; k >= 0; k--) n64 = (n64 << 8) | lenbuf[k];
  if (n64 > (uint64_t)(fsize - 8))
    MQ_FAIL(err, MQ_EINPUT, "%s: header length %llu exceeds the file size (%zu bytes)", path,
            (unsigned long long)n64, fsize);
  if (n64 > (uint64_t)MQ_ST_MAX_HEADER)
    MQ_FAIL(err, MQ_EINPUT, "%s: header length %llu exceeds the %zu-byte limit", path,
            (unsigned long long)n64, MQ_ST_MAX_HEADER);
  size_t hlen = (size_t)n64;
  if (hlen < 2) MQ_FAIL(err, MQ_EINPUT, "%s: header is not a JSON object", path);
  sh->data_start = 8 + hlen;
  sh->data_len = fsize - sh->data_start;
  hdr = mq_alloc(hlen, 1);
  MQ_CHECK_ALLOC(err, hdr, hlen);
  if (pread_full(sh->fd, hdr, hlen, 8) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot read header", path);
  json_error_t jerr;
  root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    MQ_FAIL(err, MQ_EINPUT, "%s: header is not valid JSON: %s (byte %d)", path, jerr.text,
            jerr.position);
  if (!json_is_object(root)) MQ_FAIL(err, MQ_EINPUT, "%s: header is not a JSON object", path);
  size_t first = m->n;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val)) MQ_FAIL(err, MQ_EINPUT, "%s: __metadata__ is not a JSON object", path);
      continue;
    }
    MQ_CHECK(add_entry(m, si, key, val, err));
  }
  MQ_CHECK(check_overlaps(m, first, path, err));
cleanup:
  json_decref(root);
  mq_free(hdr);
  return st;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static const st_entry *lookup(const mq_st_model *m, const char *name) {
  if (!m || !name || m->n == 0) return NULL;
  st_entry key;
  key.name = (char *)name;
  return bsearch(&key, m->entries, m->n, sizeof *m->entries, cmp_name);
}

static mq_status add_shard(mq_st_model *m, char *path, mq_error *err) {
  mq_status st = MQ_OK;
  st_shard *grown = mq_alloc(m->nshards + 1, sizeof *grown);
  MQ_CHECK_ALLOC(err, grown, (m->nshards + 1) * sizeof *grown);
  if (m->nshards) memcpy(grown, m->shards, m->nshards * sizeof *grown);
  mq_free(m->shards);
  m->shards = grown;
  memset(&m->shards[m->nshards], 0, sizeof *m->shards);
  m->shards[m->nshards].path = path;
  m->shards[m->nshards].fd = -1;
  m->nshards++;
cleanup:
  if (st != MQ_OK) mq_free(path);
  return st;
}

/* Index file: collects the distinct shard names of "weight_map" (order of first appearance). */
static mq_status load_index(mq_st_model *m, const char *ipath, json_t **root, mq_error *err) {
  mq_status st = MQ_OK;
  json_error_t jerr;
  char *text = NULL;
  size_t len = 0;
  MQ_CHECK(mq_path_read_all(ipath, MQ_ST_MAX_HEADER, &text, &len, err));
  *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  mq_free(text);
  if (!*root)
    MQ_FAIL(err, MQ_EINPUT, "%s: not valid JSON: %s (line %d)", ipath, jerr.text, jerr.line);
  const json_t *wm = json_object_get(*root, "weight_map");
  if (!json_is_object(wm)) MQ_FAIL(err, MQ_EINPUT, "%s: weight_map: missing or not an object", ipath);
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)wm, key, val) {
    if (!json_is_string(val))
      MQ_FAIL(err, MQ_EINPUT, "%s: weight_map: %s: shard name is not a string", ipath, key);
    const char *file = json_string_value(val);
    if (file[0] == '\0' || strchr(file, '/') || strcmp(file, "..") == 0 || strcmp(file, ".") == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: weight_map: %s: bad shard file name \"%.80s\"", ipath, key, file);
    char *p = join_path(m->dir, file);
    MQ_CHECK_ALLOC(err, p, strlen(m->dir) + strlen(file) + 2);
    int seen = 0;
    for (size_t s = 0; s < m->nshards && !seen; s++) seen = strcmp(m->shards[s].path, p) == 0;
    if (seen)
      mq_free(p);
    else
      MQ_CHECK(add_shard(m, p, err));
  }
  if (m->nshards == 0) MQ_FAIL(err, MQ_EINPUT, "%s: weight_map is empty", ipath);
cleanup:
  return st;
}

/* Every weight_map entry must name a tensor its shard holds. */
static mq_status check_index(const mq_st_model *m, const char *ipath, const json_t *root,
                             mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *wm = json_object_get(root, "weight_map");
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)wm, key, val) {
    const st_entry *e = lookup(m, key);
    const char *file = json_string_value(val);
    const char *shard = e ? strrchr(m->shards[e->shard].path, '/') + 1 : NULL;
    if (!e || strcmp(shard, file) != 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: weight_map: %s: not found in shard %s", ipath, key, file);
  }
cleanup:
  return st;
}

mq_status mq_st_open_dir(const char *dir, mq_st_model **out, mq_error *err) {
  mq_status st = MQ_OK;
  char *ipath = NULL, *fpath = NULL;
  json_t *index = NULL;
  *out = NULL;
  mq_st_model *m = mq_calloc(1, sizeof *m);
  MQ_CHECK_ALLOC(err, m, sizeof *m);
  m->dir = dup_str(dir);
  MQ_CHECK_ALLOC(err, m->dir, strlen(dir) + 1);
  struct stat sb;
  if (stat(dir, &sb) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", dir, strerror(errno));
  if (S_ISDIR(sb.st_mode)) {
    ipath = join_path(dir, "model.safetensors.index.json");
    fpath = join_path(dir, "model.safetensors");
    MQ_CHECK_ALLOC(err, ipath && fpath, strlen(dir) + 32);
    if (access(ipath, F_OK) == 0) {
      MQ_CHECK(load_index(m, ipath, &index, err));
    } else if (access(fpath, F_OK) == 0) {
      MQ_CHECK(add_shard(m, fpath, err));
      fpath = NULL;
    } else {
      MQ_FAIL(err, MQ_EINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
  } else {
    char *p = dup_str(dir);
    MQ_CHECK_ALLOC(err, p, strlen(dir) + 1);
    MQ_CHECK(add_shard(m, p, err));
  }
  for (size_t s = 0; s < m->nshards; s++) MQ_CHECK(load_shard(m, s, err));
  if (m->n > 1) qsort(m->entries, m->n, sizeof *m->entries, cmp_name);
  for (size_t i = 1; i < m->n; i++)
    if (strcmp(m->entries[i - 1].name, m->entries[i].name) == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: tensor appears in two shards (%s)",
              m->shards[m->entries[i].shard].path, m->entries[i].name,
              m->shards[m->entries[i - 1].shard].path);
  if (index) MQ_CHECK(check_index(m, ipath, index, err));
  *out = m;
  m = NULL;
cleanup:
  json_decref(index);
  mq_free(ipath);
  mq_free(fpath);
  mq_st_close(&m);
  return st;
}

void mq_st_close(mq_st_model **mp) {
  if (mp == NULL || *mp == NULL) return;
  mq_st_model *m = *mp;
  for (size_t s = 0; s < m->nshards; s++) {
    if (m->shards[s].fd >= 0) close(m->shards[s].fd);
    mq_free(m->shards[s].path);
  }
  for (size_t i = 0; i < m->n; i++) mq_free(m->entries[i].name);
  mq_free(m->entries);
  mq_free(m->shards);
  mq_free(m->dir);
  mq_free(m);
  *mp = NULL;
}

int mq_st_find(const mq_st_model *m, const char *name, mq_st_tensor_info *info) {
  const st_entry *e = lookup(m, name);
  if (!e) return 0;
  if (info) *info = e->info;
  return 1;
}

size_t mq_st_count(const mq_st_model *m) { return m ? m->n : 0; }

const char *mq_st_name(const mq_st_model *m, size_t i) {
  return (m && i < m->n) ? m->entries[i].name : NULL;
}

mq_status mq_st_read_f32(mq_st_model *m, const char *name, float *out, size_t count,
                         mq_error *err) {
  mq_status st = MQ_OK;
  uint16_t *buf = NULL;
  const st_entry *e = lookup(m, name);
  if (!e) MQ_FAIL(err, MQ_EINPUT, "%s: missing tensor %s", m ? m->dir : "(null)", name);
  const st_shard *sh = &m->shards[e->shard];
  if (count != e->info.count)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: has %zu elements, caller expects %zu", sh->path, name,
            e->info.count, count);
  size_t off = sh->data_start + e->begin; /* <= file size: checked at open */
  if (e->info.dtype == MQ_ST_F32) {
    if (pread_full(sh->fd, out, e->info.nbytes, off) != 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: short read", sh->path, name);
    goto cleanup;
  }
  size_t chunk = count < (size_t)READ_CHUNK / 2 ? count : (size_t)READ_CHUNK / 2;
  if (chunk == 0) goto cleanup;
  buf = mq_alloc(chunk, sizeof *buf);
  MQ_CHECK_ALLOC(err, buf, chunk * sizeof *buf);
  for (size_t i = 0; i < count; i += chunk) {
    size_t nb = count - i < chunk ? count - i : chunk;
    if (pread_full(sh->fd, buf, nb * 2, off + 2 * i) != 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: short read", sh->path, name);
    if (e->info.dtype == MQ_ST_F16)
      for (size_t k = 0; k < nb; k++) out[i + k] = mq_st_f16_to_f32(buf[k]);
    else
      for (size_t k = 0; k < nb; k++) out[i + k] = mq_st_bf16_to_f32(buf[k]);
  }
cleanup:
  mq_free(buf);
  return st;
}
