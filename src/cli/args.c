/* Parsing of option values and of the quantization options shared by `layer` and `quantize`. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/status.h"

const char mq_cli_quant_help[] =
    "Quantization options [default]:\n"
    "  --method rtn|optq|qronos   algorithm [optq]\n"
    "  --rounding nearest|stochastic\n"
    "                             round to nearest, or unbiased stochastic rounding keyed by\n"
    "                             (seed, layer, row, column) [nearest]\n"
    "  --bits B                   bits per weight, 2..8 [4]\n"
    "  --group-size G             columns per group sharing a scale, -1 = whole row [128]\n"
    "  --sym | --asym             symmetric grid (zero = 2^(B-1)) or asymmetric [sym]\n"
    "  --act-order | --no-act-order\n"
    "                             process columns by decreasing diag(H) [act-order]\n"
    "  --static-groups            group parameters from the original weights [off]\n"
    "  --mse                      search the clipping range per group (GPTQ's grid search)\n"
    "  --scale-dtype float32|float16\n"
    "                             float16: every scale rounded up to a float16 value before it\n"
    "                             quantizes, so GPTQ and GGUF exports store exactly the weights\n"
    "                             that were optimised [float32]\n"
    "  --gram-products double|float32\n"
    "                             how each chunk of calibration samples' X~'X~ (and X~'X) is\n"
    "                             computed before the chunks are summed exactly: float32\n"
    "                             (SSYRK/SGEMM) is ~2x faster with ~1e-7 relative error in H,\n"
    "                             like the reference GPTQ's float32 accumulation; results stay\n"
    "                             bit-identical across rank counts either way [double]\n"
    "  --damp F                   lambda = F * mean(diag H) [0.01]\n"
    "  --lambda V                 absolute lambda instead of --damp\n"
    "  --block-size B             columns per sweep block [128]\n"
    "  --seed S                   stochastic rounding seed [0]\n"
    "  --factor auto|local|scalapack\n"
    "                             where H + lambda*I is factored: auto = ScaLAPACK when\n"
    "                             replicated H copies would exceed --mem-per-rank [auto]\n"
    "  --mem-per-rank SIZE        memory budget per rank, e.g. 1.5G, 800M\n"
    "                             [node memory / ranks on the node]\n";

mq_status mq_cli_value(int argc, char **argv, int *i, const char **out, mq_error *err) {
  mq_status st = MQ_OK;
  if (*i + 1 >= argc) MQ_FAIL(err, MQ_EUSAGE, "%s: missing value", argv[*i]);
  *out = argv[++*i];
cleanup:
  return st;
}

mq_status mq_cli_parse_int(const char *opt, const char *text, long lo, long hi, long *out,
                           mq_error *err) {
  mq_status st = MQ_OK;
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0')
    MQ_FAIL(err, MQ_EUSAGE, "%s: '%s' is not an integer", opt, text);
  if (v < lo || v > hi) MQ_FAIL(err, MQ_EUSAGE, "%s: %ld is out of range (%ld..%ld)", opt, v, lo, hi);
  *out = v;
cleanup:
  return st;
}

mq_status mq_cli_parse_u64(const char *opt, const char *text, uint64_t *out, mq_error *err) {
  mq_status st = MQ_OK;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
    MQ_FAIL(err, MQ_EUSAGE, "%s: '%s' is not a non-negative integer", opt, text);
  *out = (uint64_t)v;
cleanup:
  return st;
}

mq_status mq_cli_parse_double(const char *opt, const char *text, double *out, mq_error *err) {
  mq_status st = MQ_OK;
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite(v))
    MQ_FAIL(err, MQ_EUSAGE, "%s: '%s' is not a number", opt, text);
  *out = v;
cleanup:
  return st;
}

mq_status mq_cli_parse_choice(const char *opt, const char *text, const char *const *names,
                              int count, int *out, mq_error *err) {
  for (int k = 0; k < count; k++) {
    if (strcmp(text, names[k]) == 0) {
      *out = k;
      return MQ_OK;
    }
  }
  return mq__fail(err, MQ_EUSAGE, __FILE__, __LINE__, "%s: unknown value '%s'", opt, text);
}

static mq_status parse_lambda(const char *text, mq_quant_options *o, mq_error *err) {
  if (strcmp(text, "auto") == 0) {
    o->lambda_mode = MQ_LAMBDA_AUTO;
    return MQ_OK;
  }
  o->lambda_mode = MQ_LAMBDA_ABSOLUTE;
  return mq_cli_parse_double("--lambda", text, &o->lambda, err);
}

/* Flags without a value. Returns 1 when arg was one. */
static int quant_flag(const char *arg, mq_quant_options *o) {
  if (strcmp(arg, "--sym") == 0) o->sym = 1;
  else if (strcmp(arg, "--asym") == 0) o->sym = 0;
  else if (strcmp(arg, "--act-order") == 0) o->act_order = 1;
  else if (strcmp(arg, "--no-act-order") == 0) o->act_order = 0;
  else if (strcmp(arg, "--static-groups") == 0) o->static_groups = 1;
  else if (strcmp(arg, "--mse") == 0) o->mse = 1;
  else return 0;
  return 1;
}

mq_status mq_cli_quant_option(int argc, char **argv, int *i, mq_quant_options *o, int *used,
                              mq_error *err) {
  static const char *const factors[] = {"auto", "local", "scalapack"};
  mq_status st = MQ_OK;
  const char *arg = argv[*i], *v = NULL;
  long n = 0;
  int k = 0;
  *used = 1;
  if (quant_flag(arg, o)) return MQ_OK;
  static const char *const valued[] = {"--method", "--rounding", "--bits", "--group-size",
                                       "--damp", "--lambda", "--block-size", "--seed",
                                       "--factor", "--mem-per-rank", "--scale-dtype",
                                       "--gram-products"};
  int is_valued = 0;
  for (size_t q = 0; q < sizeof valued / sizeof *valued; q++) is_valued |= !strcmp(arg, valued[q]);
  if (!is_valued) {
    *used = 0;
    return MQ_OK;
  }
  MQ_CHECK(mq_cli_value(argc, argv, i, &v, err));
  if (!strcmp(arg, "--method")) {
    MQ_CHECK(mq_cli_parse_choice(arg, v, mq_method_names, 3, &k, err));
    o->method = (mq_method)k;
  } else if (!strcmp(arg, "--rounding")) {
    MQ_CHECK(mq_cli_parse_choice(arg, v, mq_rounding_names, 2, &k, err));
    o->rounding = (mq_rounding)k;
  } else if (!strcmp(arg, "--bits")) {
    MQ_CHECK(mq_cli_parse_int(arg, v, 2, 8, &n, err));
    o->bits = (int)n;
  } else if (!strcmp(arg, "--group-size")) {
    MQ_CHECK(mq_cli_parse_int(arg, v, -(1L << 30), 1L << 30, &n, err));
    if (n == 0 || n < -1) MQ_FAIL(err, MQ_EUSAGE, "--group-size: %ld is neither positive nor -1", n);
    o->group_size = (int)n;
  } else if (!strcmp(arg, "--damp")) {
    MQ_CHECK(mq_cli_parse_double(arg, v, &o->damp, err));
    o->lambda_mode = MQ_LAMBDA_DAMP;
  } else if (!strcmp(arg, "--lambda")) {
    MQ_CHECK(parse_lambda(v, o, err));
  } else if (!strcmp(arg, "--block-size")) {
    MQ_CHECK(mq_cli_parse_int(arg, v, 1, 1L << 20, &n, err));
    o->block_size = (int)n;
  } else if (!strcmp(arg, "--seed")) {
    MQ_CHECK(mq_cli_parse_u64(arg, v, &o->seed, err));
  } else if (!strcmp(arg, "--factor")) {
    MQ_CHECK(mq_cli_parse_choice(arg, v, factors, 3, &k, err));
    o->factor = (mq_factor_mode)k;
  } else if (!strcmp(arg, "--scale-dtype")) {
    static const char *const dtypes[] = {"float32", "float16"};
    MQ_CHECK(mq_cli_parse_choice(arg, v, dtypes, 2, &k, err));
    o->scale_fp16 = k;
  } else if (!strcmp(arg, "--gram-products")) {
    static const char *const precisions[] = {"double", "float32"};
    MQ_CHECK(mq_cli_parse_choice(arg, v, precisions, 2, &k, err));
    o->gram_f32 = k;
  } else if (!strcmp(arg, "--mem-per-rank")) {
    MQ_CHECK(mq_cli_parse_bytes(arg, v, &o->mem_per_rank, err));
  }
cleanup:
  return st;
}

mq_status mq_cli_parse_bytes(const char *opt, const char *text, uint64_t *out, mq_error *err) {
  mq_status st = MQ_OK;
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  double unit = 1.0;
  if (end != text && *end != '\0') {
    switch (*end) {
      case 'K': case 'k': unit = 1024.0; break;
      case 'M': case 'm': unit = 1024.0 * 1024.0; break;
      case 'G': case 'g': unit = 1024.0 * 1024.0 * 1024.0; break;
      case 'T': case 't': unit = 1024.0 * 1024.0 * 1024.0 * 1024.0; break;
      default: unit = 0.0;
    }
    if (unit != 0.0 && (end[1] == '\0' || (end[1] == 'B' && end[2] == '\0') ||
                        (end[1] == 'i' && end[2] == 'B' && end[3] == '\0')))
      end = (char *)"";
  }
  if (errno != 0 || end == text || *end != '\0' || !(v > 0) || !isfinite(v * unit) ||
      v * unit > 1.8e19)
    MQ_FAIL(err, MQ_EUSAGE, "%s: '%s' is not a size (e.g. 1.5G, 800M, 4096)", opt, text);
  *out = (uint64_t)(v * unit);
cleanup:
  return st;
}

mq_status mq_cli_shared_option(mq_cli *cli, int argc, char **argv, int *i,
                               mq_quant_options *o, int *help, int *used, mq_error *err) {
  *used = 1;
  if (!strcmp(argv[*i], "--help") || !strcmp(argv[*i], "-h")) {
    *help = 1;
    return MQ_OK;
  }
  if (mq_cli_common_option(cli, argv[*i])) return MQ_OK;
  return o != NULL ? mq_cli_quant_option(argc, argv, i, o, used, err) : (*used = 0, MQ_OK);
}

mq_status mq_cli_int_value(int argc, char **argv, int *i, long lo, long hi, long *out,
                           mq_error *err) {
  mq_status st = MQ_OK;
  const char *v = NULL;
  MQ_CHECK(mq_cli_value(argc, argv, i, &v, err));
  MQ_CHECK(mq_cli_parse_int(argv[*i - 1], v, lo, hi, out, err));
cleanup:
  return st;
}

int mq_cli_prologue(mq_cli *cli, mq_status *st, int help, const char *help_text,
                    const char *help_extra) {
  if (help) {
    if (cli->ctx->rank == 0) printf("%s%s", help_text, help_extra != NULL ? help_extra : "");
    *st = MQ_OK;
    return 0;
  }
  if (*st != MQ_OK) {
    *st = mq_agree(cli->ctx->comm, *st);
    return 0;
  }
  mq_ctx_set_verbosity(cli->ctx, cli->quiet ? MQ_LOG_WARN : cli->verbose ? MQ_LOG_DEBUG : MQ_LOG_INFO);
  return 1;
}

int mq_cli_common_option(mq_cli *cli, const char *arg) {
  if (!strcmp(arg, "--verbose") || !strcmp(arg, "-v")) cli->verbose = 1;
  else if (!strcmp(arg, "--quiet") || !strcmp(arg, "-q")) cli->quiet = 1;
  else return 0;
  return 1;
}
