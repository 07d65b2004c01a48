// XXH64 (seed 0) for the image checksums, written from the public algorithm
// description. In C so that debug builds of Swift code still hash at memory speed.
#ifndef AMBER_CCHECKSUM_H
#define AMBER_CCHECKSUM_H

#include <stddef.h>
#include <stdint.h>

// Streaming state: fill it with amber_xxh64_reset, feed it any number of
// amber_xxh64_update calls of any length, read the hash with amber_xxh64_digest.
// The fields are private to the implementation.
struct amber_xxh64_state {
    uint64_t total_length;
    uint64_t accumulators[4];
    // Input not yet consumed: fewer than 32 bytes (one stripe).
    uint8_t buffer[32];
    uint32_t buffered;
};

void amber_xxh64_reset(struct amber_xxh64_state *state);
void amber_xxh64_update(struct amber_xxh64_state *state, const void *bytes, size_t length);
// Does not change the state: more input may follow.
uint64_t amber_xxh64_digest(const struct amber_xxh64_state *state);

// One-shot hash of a buffer; same result as reset + update + digest.
uint64_t amber_xxh64(const void *bytes, size_t length);

#endif
