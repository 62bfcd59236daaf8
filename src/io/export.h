/* Deployable checkpoints from a complete result file (`mpiquant export`, docs/CONTRACT.md):
 * plain dequantized weights, or the GPTQ layouts of AutoGPTQ/transformers (v1) and GPTQModel
 * (v2), written as DIR/model.safetensors (or shards and their index) + config.json
 * (+ quantize_config.json, the checkpoint's tokenizer files); or one GGUF file for llama.cpp
 * (io/gguf_llama.h). Local: one rank does all the work. */
#ifndef MQ_IO_EXPORT_H
#define MQ_IO_EXPORT_H

#include <stdint.h>

#include "mpiquant.h"

typedef enum mq_export_format {
  MQ_EXPORT_GPTQ = 0,    /* AutoGPTQ / transformers: zero points stored minus 1 */
  MQ_EXPORT_GPTQ_V2 = 1, /* GPTQModel v2: zero points as they are */
  MQ_EXPORT_DEQUANT = 2, /* every weight dequantized in the model's dtype */
  MQ_EXPORT_GGUF = 3     /* llama.cpp: the quantized linears in ggml blocks (io/gguf_llama.h) */
} mq_export_format;

typedef enum mq_export_dtype {
  MQ_EXPORT_DTYPE_AUTO = 0, /* config.json's torch_dtype (or dtype), float32 when unknown */
  MQ_EXPORT_DTYPE_F32 = 1,
  MQ_EXPORT_DTYPE_F16 = 2,
  MQ_EXPORT_DTYPE_BF16 = 3
} mq_export_dtype;

/* Spellings on the command line (index = enum value). */
extern const char *const mq_export_format_names[4]; /* "gptq", "gptq_v2", "dequant", "gguf" */
extern const char *const mq_export_dtype_names[4];  /* "auto", "float32", "float16", "bfloat16" */

/* transformers' and GPTQModel's default shard limit, "4GB" (bytes of tensor data per file). */
#define MQ_EXPORT_DEFAULT_SHARD_SIZE 4000000000ULL

typedef struct mq_export_args {
  const char *in;    /* result file */
  const char *out;   /* output directory (created if missing) */
  const char *model; /* original checkpoint for what the result file lacks, or NULL */
  mq_export_format format;
  mq_export_dtype dtype; /* dequant; gguf: the non-quantized 2-D tensors (auto: as stored) */
  int force;             /* an existing non-empty output directory is replaced whole */
  uint64_t max_shard_size; /* gptq/dequant: bytes of tensor data per safetensors file above
                              which the weights are sharded (0: MQ_EXPORT_DEFAULT_SHARD_SIZE) */
  /* gguf and gptq: round scales that are not float16 values (else refused); gguf also
   * re-quantizes the codes of those blocks, gptq keeps them (io/export_gptq.c) */
  int allow_requantize;
  /* gguf only */
  int dequantize;        /* write the quantized linears dequantized (F32, or --dtype) */
  struct mq_export_report *report; /* optional: what --allow-requantize changed */
} mq_export_args;

/* What a gguf or gptq export changed (all zero when it was exact). */
typedef struct mq_export_report {
  size_t requantized_blocks; /* gguf: (row, 32-column block) pairs whose scale or minimum was
                                rounded; gptq: (row, group) pairs whose scale was rounded */
  size_t codes_changed;      /* codes that moved to another grid point (gptq: 0) */
  double added_sq_err;       /* Σ (ŵ_gguf − ŵ_result)² */
  double rel_err;            /* sqrt(added_sq_err / Σ ŵ_result²) */
  double max_rel_scale;      /* largest |f16(s) − s| / s */
  double seconds;
} mq_export_report;

/* Local. Files are written into a staging folder that replaces the output folder only when
 * everything is written (gguf: the one file under a temporary name), so a failed export leaves
 * nothing that looks complete. */
mq_status mq_export_checkpoint(const mq_export_args *a, mq_error *err);

#endif
