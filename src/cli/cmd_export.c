/* `mpiquant export --in O.h5 --format gptq|gptq_v2|dequant|gguf --out DIR [--model DIR]`: a
 * deployable checkpoint from a complete result file (io/export.h). Rank 0 does all the work;
 * the other ranks wait and return the agreed status. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/checkpoint_source.h"
#include "io/export.h"
#include "io/paths.h"
#include "parallel/ctx.h"

static const char export_help[] =
    "usage: mpiquant export --in O.h5 --format gptq|gptq_v2|dequant|gguf --out DIR [--model DIR]\n"
    "\n"
    "Writes a Hugging Face checkpoint DIR/model.safetensors (or shards with\n"
    "model.safetensors.index.json) + DIR/config.json from a complete result file, or with\n"
    "--format gguf one GGUF file for llama.cpp. DIR (its parent must exist) is written whole or\n"
    "not at all.\n"
    "Runs on rank 0 (any launch works).\n"
    "\n"
    "  --in O.h5          result file of `quantize` (or `layer`)\n"
    "  --format F         dequant: plain weights W = scale*(q - zero) in the model's dtype;\n"
    "                     gptq: AutoGPTQ/transformers layout (qweight, qzeros = zero-1, fp16\n"
    "                     scales, g_idx; 2, 3, 4 or 8 bits; rows and columns multiples of 32;\n"
    "                     torch_dtype float16); asymmetric grids: GPTQModel refuses v1;\n"
    "                     gptq_v2: the same with zeros stored as they are (GPTQModel v2;\n"
    "                     AutoGPTQ refuses it). gptq formats need float16 scales: quantize\n"
    "                     with --scale-dtype float16 (else refused, exit 3). Shapes or grids\n"
    "                     a consumer's kernels refuse are named in warnings.\n"
    "                     gguf: llama.cpp (Llama/Mistral): 4-bit sym -> Q4_0, asym -> Q4_1,\n"
    "                     5-bit -> Q5_0/Q5_1, 8-bit sym -> Q8_0; groups must not split a\n"
    "                     32-column block (no act-order; group size a multiple of 32) and\n"
    "                     every scale must be exact in float16, else it is refused (exit 3)\n"
    "  --out DIR          output directory (gguf: X.gguf, or DIR for DIR/model.gguf), built\n"
    "                     beside it and renamed into place; never an input or a folder holding\n"
    "                     one; DIR.lock keeps a second export from writing it\n"
    "  --force            replace an existing non-empty DIR whole (else refused: exit 2)\n"
    "  --model DIR        original checkpoint: config.json and the non-quantized tensors when\n"
    "                     the result file has no /model (files from `layer`); its tokenizer and\n"
    "                     generation files (tokenizer.json, tokenizer_config.json,\n"
    "                     generation_config.json, ...) are copied; gguf: its tokenizer.json\n"
    "                     (without one, only a 256-token byte vocabulary)\n"
    "                     (refused when O.h5 records another checkpoint: exit 3)\n"
    "  --max-shard-size S gptq/dequant: bytes of tensor data per safetensors file before the\n"
    "                     weights are sharded (K/M/G = 2^10/2^20/2^30) [4000000000, \"4GB\"]\n"
    "  --dtype D          dequant: auto|float32|float16|bfloat16 [auto: config.json's\n"
    "                     torch_dtype, float32 when unknown]; gguf: the embeddings and head\n"
    "                     [auto: as stored; norms and biases are always float32]\n"
    "  --allow-requantize gguf: round inexact scales to float16 and re-quantize their codes to\n"
    "                     the nearest on the new grid; gptq: round the scales to float16, keep\n"
    "                     the codes (prints the added error)\n"
    "  --dequantize       gguf: write the quantized linears dequantized (float32, or --dtype)\n"
    "                     instead of in blocks\n"
    "  --verbose | --quiet\n";

/* ---- argument parsing ---- */

static mq_status parse_export_args(mq_cli *cli, int argc, char **argv, mq_export_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  const char *format = NULL, *dtype = NULL, *shard = NULL;
  int choice = 0;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, NULL, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--in")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->in, err));
    else if (!strcmp(argv[i], "--out")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->out, err));
    else if (!strcmp(argv[i], "--model")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->model, err));
    else if (!strcmp(argv[i], "--format")) MQ_CHECK(mq_cli_value(argc, argv, &i, &format, err));
    else if (!strcmp(argv[i], "--dtype")) MQ_CHECK(mq_cli_value(argc, argv, &i, &dtype, err));
    else if (!strcmp(argv[i], "--max-shard-size"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &shard, err));
    else if (!strcmp(argv[i], "--allow-requantize")) a->allow_requantize = 1;
    else if (!strcmp(argv[i], "--dequantize")) a->dequantize = 1;
    else if (!strcmp(argv[i], "--force")) a->force = 1;
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant export --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the result file)");
  if (format == NULL) MQ_FAIL(err, MQ_EUSAGE, "--format: missing (gptq, gptq_v2, dequant or gguf)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the output directory)");
  MQ_CHECK(mq_cli_parse_choice("--format", format, mq_export_format_names, 4, &choice, err));
  a->format = (mq_export_format)choice;
  if (dtype != NULL) {
    MQ_CHECK(mq_cli_parse_choice("--dtype", dtype, mq_export_dtype_names, 4, &choice, err));
    a->dtype = (mq_export_dtype)choice;
    if (a->format != MQ_EXPORT_DEQUANT && a->format != MQ_EXPORT_GGUF)
      MQ_FAIL(err, MQ_EUSAGE, "--dtype: only with --format dequant or gguf (gptq scales are "
              "float16)");
  }
  if (a->dequantize && a->format != MQ_EXPORT_GGUF)
    MQ_FAIL(err, MQ_EUSAGE, "--dequantize: only with --format gguf");
  if (a->allow_requantize && a->format == MQ_EXPORT_DEQUANT)
    MQ_FAIL(err, MQ_EUSAGE, "--allow-requantize: only with --format gguf, gptq or gptq_v2");
  if (shard != NULL) {
    if (a->format == MQ_EXPORT_GGUF)
      MQ_FAIL(err, MQ_EUSAGE, "--max-shard-size: not with --format gguf (one file)");
    MQ_CHECK(mq_cli_parse_bytes("--max-shard-size", shard, &a->max_shard_size, err));
  }
  if (a->allow_requantize && a->dequantize)
    MQ_FAIL(err, MQ_EUSAGE, "--allow-requantize: nothing is re-quantized with --dequantize");
cleanup:
  return st;
}

int mq_cmd_export(mq_cli *cli, int argc, char **argv) {
  mq_export_report report = {0};
  mq_export_args a = {.report = &report};
  int help = 0;
  mq_status st = parse_export_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, export_help, NULL)) return st;
  size_t olen = strlen(a.out);
  int gguf_file = a.format == MQ_EXPORT_GGUF && olen > 5 && !strcmp(a.out + olen - 5, ".gguf");
  mq_run_paths rp = {0}; /* inputs never written, outputs locked, before anything is created */
  mq_run_paths_input(&rp, "--in", a.in, MQ_PATH_FILE);
  mq_run_paths_input(&rp, "--model", a.model, MQ_PATH_CHECKPOINT);
  mq_run_paths_output(&rp, "--out", a.out, gguf_file ? MQ_PATH_FILE : MQ_PATH_DIR,
                      a.force || a.format == MQ_EXPORT_GGUF); /* gguf: DIR/model.gguf only */
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK && cli->ctx->rank == 0 && a.model != NULL) /* made from this checkpoint? */
    st = mq_checkpoint_check_result_file(a.in, a.model, &cli->ctx->err);
  if (st == MQ_OK && cli->ctx->rank == 0)
    st = mq_export_checkpoint(&a, &cli->ctx->err); /* the others wait in the agreement */
  st = mq_agree(cli->ctx->comm, st);
  mq_run_paths_release(&rp);
  if (st == MQ_OK && cli->ctx->rank == 0 && a.allow_requantize) /* gguf, gptq, gptq_v2 */
    printf("requantized blocks %zu codes_changed %zu added_sq_err %.9g rel_err %.6g "
           "max_rel_scale_change %.6g\n", report.requantized_blocks, report.codes_changed,
           report.added_sq_err, report.rel_err, report.max_rel_scale);
  return st;
}
