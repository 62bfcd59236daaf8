/* GGUF tokenizer section (io/gguf_vocab.h). */
#include "io/gguf_vocab.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"

enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

/* The split regex of Llama 3's tokenizer.json (after JSON decoding). */
static const char llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100 upwards in byte order. Writes the UTF-8 of byte b's character into s[3]. */
static void byte_token(unsigned b, char s[3]) {
  unsigned cp = b, n = 0;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174))) {
    for (unsigned k = 0; k < b; k++)
      n += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174));
    cp = 256 + n;
  }
  if (cp < 0x80) {
    s[0] = (char)cp;
    s[1] = '\0';
  } else {
    s[0] = (char)(0xc0 | (cp >> 6));
    s[1] = (char)(0x80 | (cp & 0x3f));
    s[2] = '\0';
  }
}

static mq_status add_byte_vocab(mq_gguf_writer *w, mq_error *err) {
  mq_status st = MQ_OK;
  char text[256][3];
  const char *tok[256];
  int32_t type[256];
  for (unsigned b = 0; b < 256; b++) {
    byte_token(b, text[b]);
    tok[b] = text[b];
    type[b] = TT_NORMAL;
  }
  MQ_CHECK(mq_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2", err));
  MQ_CHECK(mq_gguf_kv_str(w, "tokenizer.ggml.pre", "default", err));
  MQ_CHECK(mq_gguf_kv_strs(w, "tokenizer.ggml.tokens", tok, 256, err));
  MQ_CHECK(mq_gguf_kv_i32s(w, "tokenizer.ggml.token_type", type, 256, err));
  MQ_CHECK(mq_gguf_kv_strs(w, "tokenizer.ggml.merges", tok, 0, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", 0, err));
  MQ_CHECK(mq_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", 0, err));
  MQ_CHECK(mq_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", 0, err));
  MQ_CHECK(mq_gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0, err));
cleanup:
  return st;
}

/* ---- tokenizer.json ---- */

typedef struct hf_tok {
  const char *path;  /* tokenizer.json, for messages */
  json_t *root, *cfg; /* tokenizer.json; tokenizer_config.json or NULL */
  size_t n;          /* entries of tokens/types (the model's vocabulary size) */
  const char **tok;  /* [n] borrowed from root, or pad[] */
  int32_t *type;     /* [n] */
  char *pad;         /* [n * 32] "[PAD<id>]" texts for ids no token has */
  const char **merges; /* [nmerges] borrowed, or in mbuf */
  size_t nmerges;
  char *mbuf;        /* joined "a b" merges when tokenizer.json stores pairs */
} hf_tok;

/* "llama-bpe", "gpt-2", or NULL for a pre-tokenizer llama.cpp would not reproduce. Sets
 * *byte_level when a ByteLevel step is present. */
static const char *pre_name(const json_t *pt, int *byte_level) {
  const char *split = NULL;
  int gpt2_regex = 0, nsteps = 0, other = 0;
  const json_t *steps = json_object_get(pt, "pretokenizers");
  size_t n = json_is_array(steps) ? json_array_size(steps) : 1;
  for (size_t i = 0; i < n; i++) {
    const json_t *s = json_is_array(steps) ? json_array_get(steps, i) : pt;
    const char *type = json_string_value(json_object_get(s, "type"));
    nsteps++;
    if (type != NULL && !strcmp(type, "ByteLevel")) {
      *byte_level = 1;
      gpt2_regex |= json_is_true(json_object_get(s, "use_regex"));
    } else if (type != NULL && !strcmp(type, "Split")) {
      split = json_string_value(json_object_get(json_object_get(s, "pattern"), "Regex"));
    } else {
      other = 1;
    }
  }
  if (other) return NULL;
  if (split != NULL && !gpt2_regex && !strcmp(split, llama3_regex)) return "llama-bpe";
  if (split == NULL && gpt2_regex && nsteps == 1) return "gpt-2";
  return NULL;
}

/* <dir>/<name> as a JSON object into *out, or *out = NULL when the file does not exist. */
static mq_status load_json(const char *dir, const char *name, char *path, size_t plen,
                           json_t **out, mq_error *err) {
  mq_status st = MQ_OK;
  json_error_t je;
  *out = NULL;
  snprintf(path, plen, "%s/%s", dir, name);
  if (access(path, F_OK) != 0) return MQ_OK;
  *out = json_load_file(path, 0, &je);
  if (*out == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: not valid JSON: %s", path, je.text);
  if (!json_is_object(*out)) MQ_FAIL(err, MQ_EINPUT, "%s: not a JSON object", path);
cleanup:
  if (st != MQ_OK) {
    json_decref(*out);
    *out = NULL;
  }
  return st;
}

/* tokens/types by id from model.vocab and added_tokens; ids must be dense below n. */
static mq_status hf_tokens(hf_tok *h, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *vocab = json_object_get(json_object_get(h->root, "model"), "vocab");
  const json_t *added = json_object_get(h->root, "added_tokens");
  const char *key;
  const json_t *v;
  if (!json_is_object(vocab)) MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: missing", h->path);
  h->tok = mq_calloc(h->n, sizeof *h->tok);
  h->type = mq_alloc(h->n, sizeof *h->type);
  h->pad = mq_alloc(h->n, 32);
  MQ_CHECK_ALLOC(err, h->tok && h->type && h->pad, h->n * 32);
  json_object_foreach((json_t *)vocab, key, v) {
    json_int_t id = json_integer_value(v);
    if (!json_is_integer(v) || id < 0 || (size_t)id >= h->n)
      MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: token id %lld of '%.40s' is outside the model's "
              "%zu embedding rows", h->path, (long long)id, key, h->n);
    h->tok[id] = key;
    h->type[id] = TT_NORMAL;
  }
  for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
    const json_t *a = json_array_get(added, i);
    json_int_t id = json_integer_value(json_object_get(a, "id"));
    const char *content = json_string_value(json_object_get(a, "content"));
    if (content == NULL || id < 0 || (size_t)id >= h->n)
      MQ_FAIL(err, MQ_EINPUT, "%s: added_tokens[%zu]: bad id or content (model has %zu rows)",
              h->path, i, h->n);
    h->tok[id] = content;
    h->type[id] = json_is_true(json_object_get(a, "special")) ? TT_CONTROL : TT_USER_DEFINED;
  }
  for (size_t id = 0; id < h->n; id++)
    if (h->tok[id] == NULL) { /* embedding rows no token uses, as llama.cpp's converter pads */
      snprintf(h->pad + 32 * id, 32, "[PAD%zu]", id);
      h->tok[id] = h->pad + 32 * id;
      h->type[id] = TT_UNUSED;
    }
cleanup:
  return st;
}

/* model.merges: strings "a b" or pairs ["a", "b"]. */
static mq_status hf_merges(hf_tok *h, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *m = json_object_get(json_object_get(h->root, "model"), "merges");
  size_t n = json_is_array(m) ? json_array_size(m) : 0, bytes = 0;
  if (!json_is_array(m)) MQ_FAIL(err, MQ_EINPUT, "%s: model.merges: missing", h->path);
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(m, i);
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1)))
      bytes += json_string_length(json_array_get(e, 0)) + json_string_length(json_array_get(e, 1)) + 2;
    else if (!json_is_string(e))
      MQ_FAIL(err, MQ_EINPUT, "%s: model.merges[%zu]: neither \"a b\" nor [a, b]", h->path, i);
  }
  h->merges = mq_alloc(n ? n : 1, sizeof *h->merges);
  h->mbuf = mq_alloc(bytes ? bytes : 1, 1);
  MQ_CHECK_ALLOC(err, h->merges && h->mbuf, bytes + n * sizeof *h->merges);
  char *p = h->mbuf;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(m, i);
    if (json_is_string(e)) {
      h->merges[i] = json_string_value(e);
      continue;
    }
    int k = sprintf(p, "%s %s", json_string_value(json_array_get(e, 0)),
                    json_string_value(json_array_get(e, 1)));
    h->merges[i] = p;
    p += k + 1;
  }
  h->nmerges = n;
cleanup:
  return st;
}

/* A special token id: config.json's <key>_token_id (first of a list), else the id of
 * tokenizer_config.json's <key>_token text; -1 when neither. */
static long special_id(const hf_tok *h, const json_t *config, const char *key) {
  char name[32];
  snprintf(name, sizeof name, "%s_token_id", key);
  const json_t *v = json_object_get(config, name);
  if (json_is_array(v)) v = json_array_get(v, 0);
  if (json_is_integer(v) && json_integer_value(v) >= 0 && (size_t)json_integer_value(v) < h->n)
    return (long)json_integer_value(v);
  snprintf(name, sizeof name, "%s_token", key);
  v = json_object_get(h->cfg, name);
  if (json_is_object(v)) v = json_object_get(v, "content");
  const char *text = json_string_value(v);
  for (size_t id = 0; text != NULL && id < h->n; id++)
    if (!strcmp(h->tok[id], text)) return (long)id;
  return -1;
}

static mq_status add_hf_vocab(mq_gguf_writer *w, hf_tok *h, const json_t *config, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *model = json_object_get(h->root, "model");
  const char *mtype = json_string_value(json_object_get(model, "type"));
  int byte_level = 0;
  const char *pre = pre_name(json_object_get(h->root, "pre_tokenizer"), &byte_level);
  if (mtype == NULL || strcmp(mtype, "BPE") != 0 || json_is_true(json_object_get(model, "byte_fallback")))
    MQ_FAIL(err, MQ_EINPUT, "%s: model type %s%s is not carried over (byte-level BPE only; "
            "SentencePiece-style vocabularies need tokenizer.model's scores: convert the "
            "tokenizer with llama.cpp's tools)", h->path, mtype ? mtype : "?",
            json_is_true(json_object_get(model, "byte_fallback")) ? " with byte_fallback" : "");
  if (!byte_level)
    MQ_FAIL(err, MQ_EINPUT, "%s: BPE without a ByteLevel pre-tokenizer is not carried over",
            h->path);
  if (pre == NULL)
    MQ_FAIL(err, MQ_EINPUT, "%s: pre-tokenizer not recognised (known: Llama 3's split regex, "
            "GPT-2's ByteLevel regex): llama.cpp would split text differently", h->path);
  MQ_CHECK(hf_tokens(h, err));
  MQ_CHECK(hf_merges(h, err));
  MQ_CHECK(mq_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2", err));
  MQ_CHECK(mq_gguf_kv_str(w, "tokenizer.ggml.pre", pre, err));
  MQ_CHECK(mq_gguf_kv_strs(w, "tokenizer.ggml.tokens", h->tok, h->n, err));
  MQ_CHECK(mq_gguf_kv_i32s(w, "tokenizer.ggml.token_type", h->type, h->n, err));
  MQ_CHECK(mq_gguf_kv_strs(w, "tokenizer.ggml.merges", h->merges, h->nmerges, err));
  long bos = special_id(h, config, "bos"), eos = special_id(h, config, "eos");
  if (bos >= 0) MQ_CHECK(mq_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err));
  if (eos >= 0) MQ_CHECK(mq_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err));
  const json_t *add_bos = json_object_get(h->cfg, "add_bos_token");
  if (json_is_boolean(add_bos))
    MQ_CHECK(mq_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(add_bos), err));
  const char *tmpl = json_string_value(json_object_get(h->cfg, "chat_template"));
  if (tmpl != NULL) MQ_CHECK(mq_gguf_kv_str(w, "tokenizer.chat_template", tmpl, err));
cleanup:
  return st;
}

mq_status mq_gguf_vocab_add(mq_gguf_writer *w, const char *tokenizer_dir, const json_t *config,
                            size_t vocab_size, char *kind, size_t kind_len, mq_error *err) {
  mq_status st = MQ_OK;
  hf_tok h = {.n = vocab_size};
  char *path = NULL, *cpath = NULL;
  int have_json = 0;
  if (tokenizer_dir != NULL) {
    size_t plen = strlen(tokenizer_dir) + 32;
    path = mq_alloc(plen, 1);
    cpath = mq_alloc(plen, 1);
    MQ_CHECK_ALLOC(err, path && cpath, plen);
    h.path = path;
    MQ_CHECK(load_json(tokenizer_dir, "tokenizer.json", path, plen, &h.root, err));
    have_json = h.root != NULL;
    if (have_json)
      MQ_CHECK(load_json(tokenizer_dir, "tokenizer_config.json", cpath, plen, &h.cfg, err));
  }
  if (have_json) {
    MQ_CHECK(add_hf_vocab(w, &h, config, err));
    snprintf(kind, kind_len, "byte-level BPE from tokenizer.json (%zu tokens, %zu merges)", h.n,
             h.nmerges);
  } else if (vocab_size == 256) {
    MQ_CHECK(add_byte_vocab(w, err));
    snprintf(kind, kind_len, "byte-level (256 byte tokens, no tokenizer.json)");
  } else {
    MQ_FAIL(err, MQ_EINPUT, "%s: no tokenizer.json: a vocabulary of %zu tokens cannot be written "
            "(give --model DIR with the checkpoint's tokenizer.json)",
            tokenizer_dir ? tokenizer_dir : "--model", vocab_size);
  }
cleanup:
  json_decref(h.root);
  json_decref(h.cfg);
  mq_free(h.tok);
  mq_free(h.type);
  mq_free(h.pad);
  mq_free(h.merges);
  mq_free(h.mbuf);
  mq_free(path);
  mq_free(cpath);
  return st;
}
