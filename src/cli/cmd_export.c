/* `mpiquant export --in O.h5 --format gptq|gptq_v2|dequant --out DIR [--model DIR]`: a
 * deployable checkpoint from a complete result file (io/export.h). Rank 0 does all the work;
 * the other ranks wait and return the agreed status. */
#include <string.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/export.h"
#include "parallel/ctx.h"

static const char export_help[] =
    "usage: mpiquant export --in O.h5 --format gptq|gptq_v2|dequant --out DIR [--model DIR]\n"
    "\n"
    "Writes a Hugging Face checkpoint DIR/model.safetensors (+ DIR/config.json) from a complete\n"
    "result file. DIR is created if missing. Runs on rank 0 (any launch works).\n"
    "\n"
    "  --in O.h5          result file of `quantize` (or `layer`)\n"
    "  --format F         dequant: plain weights W = scale*(q - zero) in the model's dtype;\n"
    "                     gptq: AutoGPTQ/transformers layout (qweight, qzeros = zero-1, fp16\n"
    "                     scales, g_idx; 2, 3, 4 or 8 bits; rows and columns multiples of 32);\n"
    "                     gptq_v2: the same with zeros stored as they are (GPTQModel v2)\n"
    "  --out DIR          output directory\n"
    "  --model DIR        original checkpoint: config.json and the non-quantized tensors when\n"
    "                     the result file has no /model (files from `layer`)\n"
    "  --dtype D          dequant only: auto|float32|float16|bfloat16 [auto: config.json's\n"
    "                     torch_dtype, float32 when unknown]\n"
    "  --verbose | --quiet\n";

/* ---- argument parsing ---- */

static mq_status parse_export_args(mq_cli *cli, int argc, char **argv, mq_export_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  const char *format = NULL, *dtype = NULL;
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
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant export --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the result file)");
  if (format == NULL) MQ_FAIL(err, MQ_EUSAGE, "--format: missing (gptq, gptq_v2 or dequant)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the output directory)");
  MQ_CHECK(mq_cli_parse_choice("--format", format, mq_export_format_names, 3, &choice, err));
  a->format = (mq_export_format)choice;
  if (dtype != NULL) {
    MQ_CHECK(mq_cli_parse_choice("--dtype", dtype, mq_export_dtype_names, 4, &choice, err));
    a->dtype = (mq_export_dtype)choice;
    if (a->format != MQ_EXPORT_DEQUANT)
      MQ_FAIL(err, MQ_EUSAGE, "--dtype: only with --format dequant (gptq scales are float16)");
  }
cleanup:
  return st;
}

int mq_cmd_export(mq_cli *cli, int argc, char **argv) {
  mq_export_args a = {0};
  int help = 0;
  mq_status st = parse_export_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, export_help, NULL)) return st;
  if (cli->ctx->rank == 0) st = mq_export_checkpoint(&a, &cli->ctx->err); /* the others wait in the agreement */
  return mq_agree(cli->ctx->comm, st);
}
