/* libFuzzer: token files (io/tokens.h). The first byte picks the kind, the second the
 * vocabulary (256 << (b % 8)), the rest is the file: 0 .npy (the bytes), 1 .h5 (a recipe for
 * /tokens, fuzz_h5build.h: an integer 1-D dataset or a hostile one), 2 raw bytes (a 256-token
 * vocabulary). */
#include <stdint.h>

#include "core/mem.h"
#include "fuzz_h5build.h"
#include "io/tokens.h"

static double v_token(fdp *f, size_t k, void *ctx) {
  (void)k;
  (void)ctx;
  return (double)fdp_bytes(f, 2);
}

static void build(fdp *f, hid_t file) {
  hsize_t n[1] = {fdp_range(f, 0, 600)};
  fz_dataset(f, file, "tokens", (fdp_u8(f) & 1) ? H5T_STD_I32LE : H5T_STD_U16LE, 1, n, v_token,
             NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mq_fuzz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int kind = data[0] % 3;
  const char *path = kind == 1 ? fz_build(data + 2, size - 2, ".h5", build)
                               : mq_fuzz_file(data + 2, size - 2, kind == 0 ? ".npy" : ".bin");
  int vocab = kind == 2 ? 256 : 256 << (data[1] % 8);
  int32_t *tok = NULL;
  size_t n = 0;
  mq_error err;
  if (path != NULL && mq_tokens_read(path, vocab, &tok, &n, &err) == MQ_OK) mq_free(tok);
  return 0;
}
