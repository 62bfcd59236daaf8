/* Internals of the tokenizer (io/tokenizer.h), shared by its files:
 *   tokenizer_map.c     hash maps (token string -> id, id pair -> merge, the piece cache)
 *   tokenizer_utf8.c    UTF-8: lossy cleaning, decoding, White_Space, growable buffers
 *   tokenizer_regex.c   patterns: Oniguruma syntax of tokenizer.json -> PCRE2, find, replace
 *   tokenizer_json.c    loading tokenizer.json: the file, added tokens, the post-processor
 *   tokenizer_json_model.c      the BPE vocabulary and merges
 *   tokenizer_json_pipe.c       normalizers and pre-tokenizers
 *   tokenizer_norm.c    normalizers (Prepend, Replace, NFC/NFD/NFKC/NFKD, Strip)
 *   tokenizer_pretok.c  pre-tokenizers (Split, ByteLevel, Metaspace, Replace, Digits)
 *   tokenizer_bpe.c     the BPE model: units, merges by rank, the piece cache
 *   tokenizer_encode.c  one document: added tokens, normalizer, pre-tokenizer, model, template
 *   tokenizer_docs.c    text files (.txt, .jsonl) -> documents -> ids
 * Semantics follow Hugging Face's Rust `tokenizers` crate (the library that reads these files
 * for transformers); where that crate's behaviour is named below it is the reference. */
#ifndef MQ_IO_TOKENIZER_INTERNAL_H
#define MQ_IO_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "io/tokenizer.h"

/* Largest token id accepted (ids index bitmaps at load; real vocabularies are < 2^20). */
#define MQ_TOK_MAX_ID ((1 << 24) - 1)
/* Largest merges list accepted. */
#define MQ_TOK_MAX_MERGES (1 << 24)
/* Pieces up to this many bytes are cached (piece -> ids); longer ones are first cut where no
 * merge can join two neighbouring units (exact, see tokenizer_bpe.c). */
#define MQ_TOK_CACHE_KEY_MAX 256
/* The cache stops growing at this many entries (about 70 MB; memory stays bounded on any text). */
#define MQ_TOK_CACHE_MAX_ENTRIES (1u << 20)

/* ---- growable buffers (tokenizer_utf8.c) ---- */

typedef struct mq_tok_bytes {
  char *p; /* [cap] bytes, [n] used; mq_alloc'd */
  size_t n, cap;
} mq_tok_bytes;

mq_status mq__tok_bytes_reserve(mq_tok_bytes *b, size_t cap, mq_error *err);
mq_status mq__tok_bytes_append(mq_tok_bytes *b, const void *data, size_t n, mq_error *err);
void mq__tok_bytes_free(mq_tok_bytes *b);
/* Grows *arr ([*cap] elements of size elem) to hold at least need elements (doubling). */
mq_status mq__tok_grow(void **arr, size_t *cap, size_t need, size_t elem, mq_error *err);
mq_status mq__tok_ids_push(mq_token_buf *b, int32_t id, mq_error *err);
mq_status mq__tok_ids_append(mq_token_buf *b, const int32_t *ids, size_t n, mq_error *err);

/* ---- UTF-8 (tokenizer_utf8.c) ---- */

/* Valid UTF-8: 1 when s[0..n) is well-formed, else 0. */
int mq__tok_utf8_valid(const unsigned char *s, size_t n);
/* Lossy decoding as WHATWG/Node and Rust's from_utf8_lossy: every maximal ill-formed subpart
 * becomes U+FFFD. Writes the cleaned text into dst (replacing its contents). */
mq_status mq__tok_utf8_clean(const unsigned char *s, size_t n, mq_tok_bytes *dst, mq_error *err);
/* Length of the (valid) UTF-8 character starting with lead byte b: 1..4. */
static inline size_t mq__tok_utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}
/* Code point of the valid character at s (length from mq__tok_utf8_len). */
uint32_t mq__tok_utf8_cp(const unsigned char *s, size_t len);
/* Writes cp as UTF-8 into out[4]; returns its length. */
size_t mq__tok_utf8_put(uint32_t cp, unsigned char *out);
/* Unicode White_Space (PropList.txt), what Rust's char::is_whitespace tests. */
int mq__tok_is_white_space(uint32_t cp);
/* A short printable copy of a token for messages ("..." when cut). */
void mq__tok_printable(const char *s, size_t n, char *out, size_t size);

/* ---- hash maps (tokenizer_map.c) ---- */

/* Byte string -> uint64 value. Keys are copied into an arena. A slot keeps 32 bits of the
 * hash, so a probe touches an entry and its key only when they are likely to match. */
typedef struct mq_tok_slot {
  uint32_t entry; /* entry index + 1; 0 = empty */
  uint32_t tag;   /* high half of the key's hash */
} mq_tok_slot;

typedef struct mq_tok_entry {
  uint64_t key_off; /* offset of the key in keys.p */
  uint64_t val;
  uint32_t key_len;
} mq_tok_entry;

typedef struct mq_tok_strmap {
  mq_tok_slot *slot; /* [cap], cap a power of two */
  size_t cap;
  mq_tok_entry *entry; /* [ecap], [n] used */
  size_t n, ecap;
  mq_tok_bytes keys;
} mq_tok_strmap;

uint64_t mq__tok_hash(const void *data, size_t n);
/* 1 and *val when key is present, else 0. */
int mq__tok_strmap_get(const mq_tok_strmap *m, const char *key, size_t n, uint64_t *val);
/* Inserts or overwrites; *existed (may be NULL) says which. */
mq_status mq__tok_strmap_put(mq_tok_strmap *m, const char *key, size_t n, uint64_t val,
                             int *existed, mq_error *err);
void mq__tok_strmap_free(mq_tok_strmap *m);

/* uint64 key (never UINT64_MAX) -> uint64 value: merges keyed (left id << 32 | right id). */
typedef struct mq_tok_u64map {
  uint64_t *key; /* [cap], UINT64_MAX = empty */
  uint64_t *val; /* [cap] */
  size_t cap, n;
} mq_tok_u64map;

int mq__tok_u64map_get(const mq_tok_u64map *m, uint64_t key, uint64_t *val);
mq_status mq__tok_u64map_put(mq_tok_u64map *m, uint64_t key, uint64_t val, mq_error *err);
void mq__tok_u64map_free(mq_tok_u64map *m);

/* ---- patterns (tokenizer_regex.c) ---- */

/* A tokenizer.json pattern: {"String": s} (literal) or {"Regex": r} (Oniguruma syntax,
 * translated to PCRE2 with Unicode properties and JIT-compiled). */
typedef struct mq_tok_pattern {
  pcre2_code *re; /* NULL for a literal */
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit;
  char *lit; /* [lit_len] literal bytes (mq_alloc'd) */
  size_t lit_len;
} mq_tok_pattern;

/* Compiles a regex given in Oniguruma syntax. where: "pre_tokenizer.Split" etc. for messages
 * "<path>: <where>: ...". */
mq_status mq__tok_pattern_regex(const char *path, const char *where, const char *src, size_t len,
                                mq_tok_pattern *p, mq_error *err);
mq_status mq__tok_pattern_literal(const char *path, const char *where, const char *s, size_t len,
                                  mq_tok_pattern *p, mq_error *err);
/* The first match in s[from..n): *found = 0 when none, else [*ms, *me). Empty matches are
 * returned (callers advance past them). */
mq_status mq__tok_pattern_find(const char *path, const mq_tok_pattern *p, const char *s, size_t n,
                               size_t from, int *found, size_t *ms, size_t *me, mq_error *err);
/* dst = s with every non-overlapping match replaced by rep[rep_len]. */
mq_status mq__tok_pattern_replace(const char *path, const mq_tok_pattern *p, const char *s,
                                  size_t n, const char *rep, size_t rep_len, mq_tok_bytes *dst,
                                  mq_error *err);
void mq__tok_pattern_free(mq_tok_pattern *p);

/* ---- pipeline pieces ---- */

typedef enum mq_tok_norm_kind {
  MQ_TOK_NORM_PREPEND,
  MQ_TOK_NORM_REPLACE,
  MQ_TOK_NORM_NFC,
  MQ_TOK_NORM_NFD,
  MQ_TOK_NORM_NFKC,
  MQ_TOK_NORM_NFKD,
  MQ_TOK_NORM_STRIP
} mq_tok_norm_kind;

typedef struct mq_tok_norm {
  mq_tok_norm_kind kind;
  mq_tok_pattern pat; /* REPLACE */
  char *str;          /* [len] PREPEND text or REPLACE content (mq_alloc'd) */
  size_t len;
  int left, right; /* STRIP */
} mq_tok_norm;

typedef enum mq_tok_pre_kind {
  MQ_TOK_PRE_SPLIT,       /* Split, Digits, ByteLevel's regex */
  MQ_TOK_PRE_REPLACE,     /* Replace */
  MQ_TOK_PRE_METASPACE,   /* Metaspace */
  MQ_TOK_PRE_PREFIX_SPACE /* ByteLevel add_prefix_space */
} mq_tok_pre_kind;

/* Split behaviours (Rust SplitDelimiterBehavior). */
typedef enum mq_tok_behavior {
  MQ_TOK_REMOVED,
  MQ_TOK_ISOLATED,
  MQ_TOK_MERGED_WITH_PREVIOUS,
  MQ_TOK_MERGED_WITH_NEXT,
  MQ_TOK_CONTIGUOUS
} mq_tok_behavior;

typedef enum mq_tok_prepend {
  MQ_TOK_PREPEND_ALWAYS,
  MQ_TOK_PREPEND_FIRST,
  MQ_TOK_PREPEND_NEVER
} mq_tok_prepend;

typedef struct mq_tok_pre {
  mq_tok_pre_kind kind;
  mq_tok_pattern pat;       /* SPLIT, REPLACE; METASPACE: the replacement as a literal */
  mq_tok_behavior behavior; /* SPLIT (METASPACE split: MERGED_WITH_NEXT) */
  int invert;               /* SPLIT */
  char *str;                /* [len] REPLACE content / METASPACE replacement (mq_alloc'd) */
  size_t len;
  mq_tok_prepend prepend; /* METASPACE */
  int split;              /* METASPACE */
} mq_tok_pre;

/* A piece of a split: [start, end) and whether it is a match. */
typedef struct mq_tok_span {
  size_t start, end;
  int match;
} mq_tok_span;

/* Added tokens, matched leftmost-longest in the text (Rust AddedVocabulary). */
typedef struct mq_tok_added {
  char *content; /* [len] as matched (normalized when the token is) — mq_alloc'd */
  size_t len;
  int32_t id;
  int lstrip, rstrip;
} mq_tok_added;

typedef struct mq_tok_matcher {
  mq_tok_added *tok; /* [n], sorted by first two bytes, then by length descending */
  size_t n;
  uint32_t *first;     /* [65537] tok[first[k] .. first[k+1]) start with the 2 bytes k (hi, lo) */
  uint32_t *single;    /* [257] same for one-byte tokens, by byte */
  uint8_t starts[256]; /* byte can start a token */
} mq_tok_matcher;

struct mq_tokenizer {
  char *path; /* "<dir>/tokenizer.json" for messages (mq_alloc'd) */

  /* ---- the BPE model ---- */
  mq_tok_strmap vocab;  /* token string as in the file -> id */
  mq_tok_strmap pieces; /* byte-level mode: the vocabulary decoded to raw bytes -> id (what
                           the model sees; char mode looks pieces up in vocab) */
  mq_tok_u64map merges; /* (left << 32 | right) -> (rank << 32 | merged id) */
  mq_tok_u64map joins;  /* junction unit pairs of the merges (codepoints or bytes) -> 1 */
  int byte_level;       /* a ByteLevel pre-tokenizer: units are bytes */
  int byte_fallback, fuse_unk, ignore_merges;
  int cut_ok;               /* 0 when merges involve byte-fallback or unk tokens: never cut */
  int32_t unk_id;           /* -1: no unk token */
  int32_t byte_unit[256];   /* byte-level: id of each byte's character, -1 when missing */
  int32_t fallback_id[256]; /* <0xHH> ids, -1 when missing */
  int32_t max_id;           /* largest id of the vocabulary and the added tokens */

  /* ---- pipeline ---- */
  mq_tok_norm *norm; /* [nnorm], capacity norm_cap */
  size_t nnorm, norm_cap;
  mq_tok_pre *pre; /* [npre], capacity pre_cap */
  size_t npre, pre_cap;
  mq_tok_matcher added_raw;  /* tokens matched before normalization */
  mq_tok_matcher added_norm; /* normalized tokens, matched in the normalized text */
  int32_t *prefix, *suffix;  /* [nprefix], [nsuffix]: the post-processor's special tokens */
  size_t nprefix, nsuffix;

  /* ---- cache: piece -> ids ---- */
  mq_tok_strmap cache; /* value: offset << 16 | count into cache_ids */
  int32_t *cache_ids;  /* [cache_cap] */
  size_t cache_n, cache_cap;
  uint64_t unit_cache_key[4096]; /* char mode: codepoint + 1 -> unit id cache (0 = empty) */
  int32_t unit_cache_val[4096];

  /* ---- scratch (an encoder is single-threaded) ---- */
  mq_tok_bytes clean;     /* UTF-8-cleaned document */
  mq_tok_bytes nbuf[2];   /* normalizer ping-pong */
  mq_tok_bytes *lvl_buf;  /* [npre] per pre-tokenizer level */
  mq_tok_span **lvl_span; /* [npre] per level spans, capacity lvl_span_cap[k] */
  size_t *lvl_span_cap;   /* [npre] */
  void *sym;              /* bpe symbols, capacity sym_cap */
  size_t sym_cap;
  void *heap; /* bpe merge queue, capacity heap_cap */
  size_t heap_cap;
  uint32_t *ucp; /* utf8proc code point buffer, capacity ucp_cap */
  size_t ucp_cap;
};

/* tokenizer_json*.c: the sections of tokenizer.json, in this order (each needs the ones before):
 * normalizer, pre_tokenizer, model, added_tokens, post_processor. */
mq_status mq__tok_parse_normalizer(mq_tokenizer *t, const json_t *j, mq_error *err);
mq_status mq__tok_parse_pre_tokenizer(mq_tokenizer *t, const json_t *j, mq_error *err);
mq_status mq__tok_parse_model(mq_tokenizer *t, const json_t *j, mq_error *err);
mq_status mq__tok_parse_added(mq_tokenizer *t, const json_t *j, mq_error *err);
mq_status mq__tok_parse_post_processor(mq_tokenizer *t, const json_t *j, mq_error *err);

/* Field readers: a missing or null field gives the default; a field of the wrong type is
 * MQ_EINPUT "<path>: <where>.<key>: ...". */
mq_status mq__tok_json_bool(const mq_tokenizer *t, const char *where, const json_t *obj,
                            const char *key, int dflt, int *out, mq_error *err);
/* *s NULL when missing or null. */
mq_status mq__tok_json_str(const mq_tokenizer *t, const char *where, const json_t *obj,
                           const char *key, const char **s, size_t *len, mq_error *err);
/* obj must be an object with a string "type". */
mq_status mq__tok_json_type(const mq_tokenizer *t, const char *where, const json_t *obj,
                            const char **type, mq_error *err);
/* {"String": s} or {"Regex": r}. */
mq_status mq__tok_json_pattern(const mq_tokenizer *t, const char *where, const json_t *obj,
                               mq_tok_pattern *p, mq_error *err);

/* tokenizer_norm.c: the normalizer chain on s[n]; the result (out, out_n) is in t's buffers
 * or s itself. */
mq_status mq__tok_normalize(mq_tokenizer *t, const char *s, size_t n, const char **out,
                            size_t *out_n, mq_error *err);
void mq__tok_norm_free(mq_tok_norm *nm);

/* tokenizer_pretok.c: pre-tokenizer levels from `level` on, then the model. at_origin: the
 * piece starts at offset 0 of the document (Metaspace prepend_scheme "first"). */
mq_status mq__tok_pretokenize(mq_tokenizer *t, size_t level, const char *s, size_t n, int at_origin,
                              mq_token_buf *out, mq_error *err);
void mq__tok_pre_free(mq_tok_pre *p);

/* tokenizer_bpe.c: the ids of one pre-token (the model step). */
mq_status mq__tok_model(mq_tokenizer *t, const char *s, size_t n, mq_token_buf *out, mq_error *err);
/* tokenizer_encode.c: added-token matchers; the matcher owns tok (freed with it, also when
 * building fails). */
mq_status mq__tok_matcher_build(mq_tok_matcher *m, mq_tok_added *tok, size_t n, mq_error *err);
void mq__tok_matcher_free(mq_tok_matcher *m);

#endif
