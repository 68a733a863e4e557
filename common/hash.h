/*
 * hash.h - the hashes of both sides. cw_hash64: MurmurHash3's 64-bit
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

/* The one hash of a sequence of words (stacks, code keys, text): FNV-1a's
 * step with a shift that mixes the high bits down. Start from
 * CW_HASH_SEED; tables that keep 0 for a free slot or it with 1. */
#define CW_HASH_SEED 0xcbf29ce484222325ull
static inline uint64_t cw_hash_step(uint64_t h, uint64_t word)
{
    h = (h ^ word) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

#endif
