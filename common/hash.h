/*
 * hash.h - the one integer hash of both sides: MurmurHash3's 64-bit
 * finalizer, which spreads every input bit over all 64 output bits, for
 * open-addressing tables keyed by ids, data words and addresses.
 */
#ifndef CW_HASH_H
#define CW_HASH_H

#include <stdint.h>

static inline uint64_t cw_hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

#endif
