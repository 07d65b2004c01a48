/* bench target for incremental dumps: holds 1 GiB of touched anonymous PRNG data, creates the
   file argv[1] when ready; on SIGUSR1 writes one word in 1% of its pages (every 100th), then
   creates argv[1] with ".written" appended. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t asked;
static void on_usr1(int sig) { (void)sig; asked = 1; }
static void touch(const char *path) { int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
int main(int argc, char **argv) {
    size_t size = (size_t)1 << 30;
    uint64_t *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || argc < 2) return 1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < size / 8; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = x;
    }
    signal(SIGUSR1, on_usr1);
    touch(argv[1]);
    struct timespec t = {0, 5 * 1000 * 1000};
    while (!asked) nanosleep(&t, 0);
    for (size_t page = 0; page < size / 4096; page += 100) p[page * 512] = ~p[page * 512];
    char written[4096];
    snprintf(written, sizeof written, "%s.written", argv[1]);
    touch(written);
    for (;;) nanosleep(&t, 0);
}
