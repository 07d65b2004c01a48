/* bench target for the lazy restore: holds 1 GiB of touched anonymous PRNG data, as big.c,
   creates the file argv[1] when ready, then watches its parent PID every 100 us. A restore
   gives it a new parent (the restorer): it then writes CLOCK_REALTIME in ns into the file
   argv[2], the moment it ran again, and goes on sleeping. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 64;
    size_t size = (size_t)1 << 30;
    uint64_t *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < size / 8; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = x;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd);
    pid_t parent = getppid();
    int told = 0;
    struct timespec t = {0, 100 * 1000};
    for (;;) {
        if (!told && getppid() != parent) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            char line[32];
            int n = snprintf(line, sizeof line, "%lld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
            fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) { if (write(fd, line, (size_t)n) != n) return 1; close(fd); }
            told = 1;
        }
        nanosleep(&t, 0);
    }
}
