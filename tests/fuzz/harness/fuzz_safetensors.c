/* libFuzzer: the safetensors reader (io/safetensors.h) on one file: header length, JSON,
 * dtypes, shapes against byte lengths, offsets; then every tensor read as float32. */
#include <stdint.h>
#include <stdlib.h>

#include "core/mem.h"
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = mq_fuzz_file(data, size, ".safetensors");
  mq_st_model *m = NULL;
  mq_error err;
  if (path == NULL || mq_st_open_dir(path, &m, &err) != MQ_OK) return 0;
  for (size_t i = 0; i < mq_st_count(m); i++) {
    mq_st_tensor_info info;
    const char *name = mq_st_name(m, i);
    if (!mq_st_find(m, name, &info) || info.count > MQ_FUZZ_MAX_ELEMS) continue;
    float *x = mq_alloc(info.count + 1, sizeof *x);
    if (x != NULL) (void)mq_st_read_f32(m, name, x, info.count, &err);
    mq_free(x);
  }
  mq_st_close(&m);
  return 0;
}
