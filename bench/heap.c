/* bench target: holds 1 GiB (or argv[2] MiB) of touched anonymous memory that looks like a
   program's heap, page by page: 35% text (words and spaces, as strings and buffers hold), 30%
   structs (pointers into the heap, small integers, flags, lengths), 25% mostly zero (a header,
   then a zero run: freed or reserved space), 10% PRNG bytes (compressed or hashed data).
   Creates the file argv[1] to say it is ready, and sleeps. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t x = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; }

static const char *words[] = {
    "the", "process", "memory", "page", "request", "response", "user", "session", "error", "value",
    "table", "index", "key", "count", "name", "http", "json", "status", "time", "buffer", "id",
    "config", "server", "client", "cache", "hit", "miss", "true", "false", "null", "list", "map",
};

int main(int argc, char **argv) {
    size_t size = (size_t)(argc > 2 ? atoi(argv[2]) : 1024) << 20;
    uint8_t *base = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 1;
    for (size_t page = 0; page < size / 4096; page++) {
        uint8_t *p = base + page * 4096;
        unsigned kind = next() % 100;
        if (kind < 35) {
            size_t at = 0;
            while (at < 4096) {
                const char *w = words[next() % (sizeof words / sizeof *words)];
                size_t n = strlen(w);
                if (at + n + 1 > 4096) { memset(p + at, ' ', 4096 - at); break; }
                memcpy(p + at, w, n);
                p[at + n] = (next() % 8) ? ' ' : '\n';
                at += n + 1;
            }
        } else if (kind < 65) {
            uint64_t *q = (uint64_t *)p;
            for (size_t i = 0; i < 512; i += 8) {
                q[i] = (uint64_t)(uintptr_t)base + (next() % size & ~7ull);
                q[i + 1] = (uint64_t)(uintptr_t)base + (next() % size & ~7ull);
                q[i + 2] = next() % 1000;
                q[i + 3] = next() % 4;
                q[i + 4] = 0;
                q[i + 5] = 64 << (next() % 6);
                q[i + 6] = (uint64_t)(uintptr_t)base + (next() % size & ~7ull);
                q[i + 7] = next() % 2 ? 0 : 0xffffffff;
            }
        } else if (kind < 90) {
            uint64_t *q = (uint64_t *)p;
            q[0] = 4096; q[1] = next() % 256; q[2] = (uint64_t)(uintptr_t)base + (next() % size & ~7ull);
        } else {
            uint64_t *q = (uint64_t *)p;
            for (size_t i = 0; i < 512; i++) q[i] = next();
        }
    }
    if (argc > 1) { int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
