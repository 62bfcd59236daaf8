/* The qweight bit stream of SPEC.md: per row, the code of column c occupies stream bits
 * c·bits … c·bits+bits−1, least significant first; stream bit k is bit k%32 of word k/32. */
#ifndef MQ_CORE_PACK_H
#define MQ_CORE_PACK_H

#include <stddef.h>
#include <stdint.h>

/* codes [cols] (each < 2^bits) -> words [mq_packed_words(cols, bits)], fully overwritten. */
void mq_pack_row(const uint8_t *codes, size_t cols, int bits, uint32_t *words);
/* words -> codes [cols]. */
void mq_unpack_row(const uint32_t *words, size_t cols, int bits, uint8_t *codes);

#endif
