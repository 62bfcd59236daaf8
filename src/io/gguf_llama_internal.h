/* Shared between gguf_llama.c (tensor plan, data, the export) and gguf_llama_meta.c (config.json
 * and the metadata keys). Not a public interface. */
#ifndef MQ_IO_GGUF_LLAMA_INTERNAL_H
#define MQ_IO_GGUF_LLAMA_INTERNAL_H

#include <jansson.h>

#include "io/export.h"
#include "io/gguf_blocks.h"
#include "io/gguf_write.h"
#include "io/hfconfig.h"
#include "io/result_tensors.h"
#include "io/safetensors.h"

typedef enum gg_kind {
  GG_BLOCKS,    /* quantized module in ggml blocks */
  GG_DEQUANT,   /* quantized module dequantized ("<module>.weight" of the result source) */
  GG_TENSOR,    /* /model/tensors/<name> of the result file */
  GG_CKPT,      /* --model checkpoint tensor */
  GG_ROPE_FREQS /* computed from rope_scaling (llama3) */
} gg_kind;

typedef struct gg_item {
  gg_kind kind;
  const char *src;   /* module (GG_BLOCKS) or tensor name, owned by the source; NULL: computed */
  char name[64];     /* GGUF tensor name */
  mq_ggml_type type;
  int ndim;          /* 1 or 2 */
  size_t rows, cols; /* source shape, row-major; 1-D: rows = 1 */
  size_t heads;      /* q/k (weight or bias): rows are per-head rotary halves of `heads` heads;
                        0: rows kept in order */
  int layer, slot;   /* file order: layer -2 rope, -1 embedding, 0.. blocks, n_layers the head */
} gg_item;

typedef struct gg_job {
  const mq_export_args *a;
  mq_tensor_source src;       /* the result file */
  mq_st_model *ckpt;          /* --model checkpoint when the result has no /model/tensors */
  const mq_result_meta *meta;
  mq_llama_config cfg;        /* config.json, validated */
  json_t *config;             /* the same, as JSON (extra keys) */
  gg_item *items;             /* [nitems] in file order after planning */
  size_t nitems, cap;
  mq_ggml_type qtype;         /* block type of the quantized linears */
  mq_ggml_type linear_type;   /* type they are written in (qtype, or F32/F16/BF16 dequantized) */
  mq_gguf_requant_stats stats;
} gg_job;

/* gguf_llama_meta.c */
/* config.json from /model/config of the result file, else --model DIR; fills job->cfg and
 * job->config and refuses architectures other than Llama/Mistral. */
mq_status mq__gguf_load_config(gg_job *job, mq_error *err);
/* The general.*, llama.*, mpiquant.* keys and the tokenizer section. */
mq_status mq__gguf_add_metadata(const gg_job *job, mq_gguf_writer *w, mq_error *err);
/* rope_freqs.weight values: out[head_dim / 2]. */
void mq__gguf_rope_freqs(const mq_llama_config *cfg, float *out);

#endif
