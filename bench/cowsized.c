/* bench target for the copy-on-write dump: holds argv[2] MiB of touched anonymous PRNG data,
   in 2 MiB transparent huge pages when argv[3] is 1 (MADV_HUGEPAGE), in 4 KiB pages otherwise.
   Creates the file argv[1] to say it is ready, then sleeps. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    size_t size = (size_t)atol(argv[2]) << 20;
    uint64_t *p = mmap(0, size + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    p = (uint64_t *)(((uintptr_t)p + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
    madvise(p, size, atoi(argv[3]) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < size / 8; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = x;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
