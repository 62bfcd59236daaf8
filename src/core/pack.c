#include "core/pack.h"

#include <string.h>

#include "mpiquant/numerics.h"

void mq_pack_row(const uint8_t *codes, size_t cols, int bits, uint32_t *words) {
  size_t nwords = mq_packed_words(cols, bits);
  memset(words, 0, nwords * sizeof *words);
  for (size_t c = 0; c < cols; c++) {
    size_t bit = c * (size_t)bits;
    size_t w = bit / 32, off = bit % 32;
    uint64_t v = (uint64_t)codes[c] << off; /* may spill into the next word */
    words[w] |= (uint32_t)v;
    if (off + (size_t)bits > 32) words[w + 1] |= (uint32_t)(v >> 32);
  }
}

void mq_unpack_row(const uint32_t *words, size_t cols, int bits, uint8_t *codes) {
  uint32_t mask = (1u << bits) - 1u;
  for (size_t c = 0; c < cols; c++) {
    size_t bit = c * (size_t)bits;
    size_t w = bit / 32, off = bit % 32;
    uint64_t v = words[w] >> off;
    if (off + (size_t)bits > 32) v |= (uint64_t)words[w + 1] << (32 - off);
    codes[c] = (uint8_t)(v & mask);
  }
}
