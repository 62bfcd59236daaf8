/* Packing round trip for every bit width (3, 5, 6, 7 cross 32-bit words), checked against a
 * bit-by-bit reading of the SPEC.md stream definition. */
#include <stdint.h>
#include <stdlib.h>

#include "core/pack.h"
#include "mpiquant/numerics.h"
#include "mq_test.h"

/* Stream bit k is bit k%32 of word k/32; code c occupies bits c·b … c·b+b−1, LSB first. */
static unsigned spec_code(const uint32_t *words, size_t c, int bits) {
  unsigned v = 0;
  for (int j = 0; j < bits; j++) {
    size_t k = c * (size_t)bits + (size_t)j;
    v |= ((words[k / 32] >> (k % 32)) & 1u) << j;
  }
  return v;
}

int main(void) {
  srand(7);
  size_t widths[] = {1, 7, 31, 32, 33, 64, 100, 333};
  for (int bits = 2; bits <= 8; bits++) {
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
      size_t cols = widths[w];
      uint8_t codes[333], back[333];
      uint32_t words[333];
      for (size_t c = 0; c < cols; c++) codes[c] = (uint8_t)(rand() % (1 << bits));
      codes[0] = (uint8_t)((1 << bits) - 1); /* all ones at a word boundary */
      mq_pack_row(codes, cols, bits, words);
      mq_unpack_row(words, cols, bits, back);
      size_t bad = 0, bad_spec = 0;
      for (size_t c = 0; c < cols; c++) {
        bad += back[c] != codes[c];
        bad_spec += spec_code(words, c, bits) != codes[c];
      }
      MQ_EXPECT_EQ_INT(bad, 0);
      MQ_EXPECT_EQ_INT(bad_spec, 0);
      /* bits past the last code are zero (the file is deterministic) */
      size_t nw = mq_packed_words(cols, bits), used = cols * (size_t)bits;
      if (used % 32 != 0) MQ_EXPECT_EQ_INT(words[nw - 1] >> (used % 32), 0);
      MQ_EXPECT_EQ_INT(nw, (cols * (size_t)bits + 31) / 32);
    }
  }
  return mq_test_finish("test_pack");
}
