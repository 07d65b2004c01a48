// XXH64 as described in xxHash's doc/xxhash_spec.md (seed fixed to 0).
#include "CChecksum.h"

#include <string.h>

static const uint64_t prime1 = 0x9E3779B185EBCA87ULL;
static const uint64_t prime2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t prime3 = 0x165667B19E3779F9ULL;
static const uint64_t prime4 = 0x85EBCA77C2B2AE63ULL;
static const uint64_t prime5 = 0x27D4EB2F165667C5ULL;

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// The algorithm reads little-endian words; memcpy keeps unaligned reads defined.
static inline uint64_t read64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t read32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t round64(uint64_t acc, uint64_t lane) {
    acc += lane * prime2;
    acc = rotl(acc, 31);
    return acc * prime1;
}

static inline uint64_t merge(uint64_t acc, uint64_t lane) {
    acc ^= round64(0, lane);
    return acc * prime1 + prime4;
}

// Consumes whole 32-byte stripes and returns how many bytes it used.
static size_t consume_stripes(uint64_t acc[4], const uint8_t *p, size_t length) {
    uint64_t v1 = acc[0], v2 = acc[1], v3 = acc[2], v4 = acc[3];
    const uint8_t *const start = p;
    const uint8_t *const limit = p + (length & ~(size_t)31);
    while (p < limit) {
        v1 = round64(v1, read64(p));
        v2 = round64(v2, read64(p + 8));
        v3 = round64(v3, read64(p + 16));
        v4 = round64(v4, read64(p + 24));
        p += 32;
    }
    acc[0] = v1; acc[1] = v2; acc[2] = v3; acc[3] = v4;
    return (size_t)(p - start);
}

// Folds the length and the last (< 32) bytes into the converged accumulator.
static uint64_t finish(uint64_t h, uint64_t total_length, const uint8_t *p, size_t length) {
    h += total_length;
    for (; length >= 8; p += 8, length -= 8) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * prime1 + prime4;
    }
    if (length >= 4) {
        h ^= (uint64_t)read32(p) * prime1;
        h = rotl(h, 23) * prime2 + prime3;
        p += 4;
        length -= 4;
    }
    for (; length > 0; p++, length--) {
        h ^= (uint64_t)*p * prime5;
        h = rotl(h, 11) * prime1;
    }
    h ^= h >> 33;
    h *= prime2;
    h ^= h >> 29;
    h *= prime3;
    h ^= h >> 32;
    return h;
}

static uint64_t converge(const uint64_t acc[4]) {
    uint64_t h = rotl(acc[0], 1) + rotl(acc[1], 7) + rotl(acc[2], 12) + rotl(acc[3], 18);
    for (int i = 0; i < 4; i++) h = merge(h, acc[i]);
    return h;
}

void amber_xxh64_reset(struct amber_xxh64_state *state) {
    memset(state, 0, sizeof *state);
    state->accumulators[0] = prime1 + prime2;
    state->accumulators[1] = prime2;
    state->accumulators[2] = 0;
    state->accumulators[3] = -prime1;
}

void amber_xxh64_update(struct amber_xxh64_state *state, const void *bytes, size_t length) {
    const uint8_t *p = bytes;
    state->total_length += length;
    if (state->buffered + length < 32) {
        if (length > 0) memcpy(state->buffer + state->buffered, p, length);
        state->buffered += (uint32_t)length;
        return;
    }
    if (state->buffered > 0) {
        size_t fill = 32 - state->buffered;
        memcpy(state->buffer + state->buffered, p, fill);
        consume_stripes(state->accumulators, state->buffer, 32);
        p += fill;
        length -= fill;
        state->buffered = 0;
    }
    size_t used = consume_stripes(state->accumulators, p, length);
    p += used;
    length -= used;
    if (length > 0) memcpy(state->buffer, p, length);
    state->buffered = (uint32_t)length;
}

uint64_t amber_xxh64_digest(const struct amber_xxh64_state *state) {
    uint64_t h = state->total_length >= 32 ? converge(state->accumulators) : prime5;
    return finish(h, state->total_length, state->buffer, state->buffered);
}

uint64_t amber_xxh64(const void *bytes, size_t length) {
    const uint8_t *p = bytes;
    if (length < 32) return finish(prime5, length, p, length);
    uint64_t acc[4] = { prime1 + prime2, prime2, 0, -prime1 };
    size_t used = consume_stripes(acc, p, length);
    return finish(converge(acc), length, p + used, length - used);
}
