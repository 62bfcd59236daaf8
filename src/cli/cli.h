/* The command-line layer: argument parsing, the command table, printing; nothing else (the work
 * is the library's, include/mpiquant.h and src/). The only place that may exit or call
 * MPI_Abort. Every command is collective over MPI_COMM_WORLD and returns the status all ranks
 * agreed on. */
#ifndef MQ_CLI_H
#define MQ_CLI_H

#include <mpi.h>
#include <stdio.h>

#include "mpiquant.h"
#include "parallel/ctx.h"

/* A command's view of the run: the context over MPI_COMM_WORLD (rank, size, the error record)
 * and the verbosity options. */
typedef struct mq_cli {
  mq_ctx *ctx;
  int verbose, quiet;
} mq_cli;

/* Option parsing helpers: each returns MQ_EUSAGE with "<option>: ..." in err on bad input. */
mq_status mq_cli_parse_int(const char *opt, const char *text, long lo, long hi, long *out,
                           mq_error *err);
mq_status mq_cli_parse_double(const char *opt, const char *text, double *out, mq_error *err);
mq_status mq_cli_parse_u64(const char *opt, const char *text, uint64_t *out, mq_error *err);
/* A byte count with an optional binary unit: 4096, 800M, 1.5G, 2GiB. */
mq_status mq_cli_parse_bytes(const char *opt, const char *text, uint64_t *out, mq_error *err);
/* text must be one of names[0 … count−1]; *out = its index. */
mq_status mq_cli_parse_choice(const char *opt, const char *text, const char *const *names,
                              int count, int *out, mq_error *err);
/* The value of option argv[*i] (advances *i); MQ_EUSAGE when missing. */
mq_status mq_cli_value(int argc, char **argv, int *i, const char **out, mq_error *err);

/* Tries to consume a quantization option at argv[*i] (SPEC.md "Quantization options").
 * Returns MQ_OK and sets *used = 1 when it was one; *used = 0 when it is not a quantization
 * option. */
mq_status mq_cli_quant_option(int argc, char **argv, int *i, mq_quant_options *o, int *used,
                              mq_error *err);
/* Between a command's parse and its run: prints the help (help_text + help_extra, which may be
 * NULL) on rank 0 when asked, agrees on a parse failure, sets the log level from --verbose /
 * --quiet. Returns 1 when the command should run; else 0 with *st the status to return. */
int mq_cli_prologue(mq_cli *cli, mq_status *st, int help, const char *help_text,
                    const char *help_extra);
/* What every command's parse loop tries first at argv[*i]: --help/-h (sets *help), --verbose /
 * --quiet, and with o != NULL the quantization options; *used = 1 when it was one of them. */
mq_status mq_cli_shared_option(mq_cli *cli, int argc, char **argv, int *i,
                               mq_quant_options *o, int *help, int *used, mq_error *err);
/* The integer value of option argv[*i] in [lo, hi] (advances *i). */
mq_status mq_cli_int_value(int argc, char **argv, int *i, long lo, long hi, long *out,
                           mq_error *err);
/* Common options (--verbose, --quiet); same convention. */
int mq_cli_common_option(mq_cli *cli, const char *arg);
extern const char mq_cli_quant_help[];

/* `eval`: perplexity of a checkpoint, or of a result file over it (mq_model_perplexity).
 * Collective; the last stdout line on rank 0 is "perplexity <value>". `quantize --eval` calls
 * it too. */
typedef struct mq_eval_args {
  const char *model, *tokens, *quantized, *json;
  long seqlen;   /* 0: default (2048 capped by the model) */
  long nwindows; /* 0: all */
} mq_eval_args;
mq_status mq_cli_eval(mq_cli *cli, const mq_eval_args *a);

int mq_cmd_layer(mq_cli *cli, int argc, char **argv);
int mq_cmd_quantize(mq_cli *cli, int argc, char **argv);
int mq_cmd_inspect(mq_cli *cli, int argc, char **argv);
int mq_cmd_export(mq_cli *cli, int argc, char **argv);
int mq_cmd_bench(mq_cli *cli, int argc, char **argv);
int mq_cmd_study(mq_cli *cli, int argc, char **argv);
int mq_cmd_eval(mq_cli *cli, int argc, char **argv);
int mq_cmd_tokenize(mq_cli *cli, int argc, char **argv);
int mq_cmd_plan(mq_cli *cli, int argc, char **argv); /* src/cli/cmd_plan.c */

#endif
