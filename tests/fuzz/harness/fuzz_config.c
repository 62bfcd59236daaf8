/* libFuzzer: config.json of the Llama family (io/hfconfig.h): JSON, field types, limits,
 * divisibility, rope_scaling, both dtype spellings. */
#include <stdint.h>

#include "fuzz_common.h"
#include "io/hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = mq_fuzz_file(data, size, ".json");
  mq_llama_config cfg;
  mq_error err;
  if (path == NULL) return 0;
  if (mq_llama_config_read(path, &cfg, &err) == MQ_OK) mq_llama_config_free(&cfg);
  return 0;
}
