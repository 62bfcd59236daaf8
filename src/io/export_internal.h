/* One Hugging Face export's state (io/export.h), shared by export.c (plan, files, publishing)
 * and export_gptq.c (the GPTQ tensors, their checks and the consumers' warnings). Internal. */
#ifndef MQ_IO_EXPORT_INTERNAL_H
#define MQ_IO_EXPORT_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

#include "io/export.h"
#include "io/result_tensors.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

typedef enum mq__export_kind {
  MQ__EX_DEQUANT,       /* "<module>.weight" dequantized */
  MQ__EX_QWEIGHT,       /* gptq tensors of a module */
  MQ__EX_QZEROS,
  MQ__EX_SCALES,
  MQ__EX_GIDX,
  MQ__EX_RESULT_TENSOR, /* /model/tensors/<name> */
  MQ__EX_CKPT_TENSOR    /* --model checkpoint tensor */
} mq__export_kind;

typedef struct mq__export_item {
  mq__export_kind kind;
  const char *name; /* source tensor name (owned by the source or checkpoint) or module */
  mq_stw_dtype dtype;
} mq__export_item;

#define MQ__EXPORT_MAX_WARNED 32

typedef struct mq__export_job {
  const mq_export_args *a;
  mq_tensor_source src;
  mq_st_model *ckpt;           /* --model checkpoint when its tensors are used, else NULL */
  json_t *config;              /* config.json to write (NULL: none known) */
  const mq_result_meta *meta;
  mq__export_item *items;      /* [nitems] the writer's tags index this */
  size_t nitems;
  mq_layer_result layer;       /* gptq: the packed layer last read */
  const char *layer_module;    /* its module name (NULL: none) */
  int desc_act;                /* some g_idx is not c / group_size */
  /* gptq: layer shapes already warned about ([rows, cols]), so one line per shape */
  size_t warned[MQ__EXPORT_MAX_WARNED][2];
  size_t nwarned;
  /* gptq --allow-requantize: scales rounded to float16 (codes kept) */
  size_t scales_rounded;       /* (row, group) pairs whose scale changed */
  double sq_err, sq_ref;       /* Σ (ŵ_export − ŵ)², Σ ŵ² over the layers with a change */
  double max_rel_scale;        /* largest |f16(s) − s| / s */
} mq__export_job;

/* Declares tensor `tensor` of the writer with its fill source (kind, name). */
mq_status mq__export_add_item(mq__export_job *job, mq_st_writer *w, const char *tensor,
                              mq__export_kind kind, const char *name, mq_stw_dtype dt, int ndim,
                              const size_t *shape, mq_error *err);

/* gptq/gptq_v2: the four tensors of quantized layer ti after checking the layout holds it
 * (MQ_EINPUT otherwise); warns once per shape that a consumer's kernels refuse. */
mq_status mq__export_plan_gptq(mq__export_job *job, mq_st_writer *w,
                               const mq_result_tensor_info *ti, mq_error *err);
/* The warnings about the format as a whole: which consumers refuse it. Before writing. */
void mq__export_gptq_format_warnings(const mq__export_job *job);
/* Checks the scales of one layer before anything is written (a result quantized without
 * --scale-dtype float16 fails here, early); the writing checks every layer. */
mq_status mq__export_gptq_precheck(mq__export_job *job, const char *module, mq_error *err);
/* Fills buf with item it (a gptq kind). */
mq_status mq__export_fill_gptq(mq__export_job *job, const mq__export_item *it, void *buf,
                               mq_error *err);
/* The quantization_config object (after the data: desc_act depends on the g_idx seen). */
json_t *mq__export_quantization_config(const mq__export_job *job);
/* Prints and reports (a->report) what --allow-requantize changed. */
void mq__export_gptq_report(const mq__export_job *job);

#endif
