/* bench target for the cost of write tracking: maps 1 GiB and touches every page, creates the
   file argv[1] when ready; on SIGUSR1 writes one word in every page, and writes the nanoseconds
   that took to the file argv[1] with ".ns" appended. Tracked (after `amber pre-dump`), each page's
   first write takes a write-protect fault. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t asked;
static void on_usr1(int sig) { (void)sig; asked = 1; }
static int64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ll + t.tv_nsec; }
int main(int argc, char **argv) {
    size_t size = (size_t)1 << 30;
    volatile uint64_t *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || argc < 2) return 1;
    for (size_t page = 0; page < size / 4096; page++) p[page * 512] = page + 1;
    signal(SIGUSR1, on_usr1);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
    struct timespec t = {0, 2 * 1000 * 1000};
    while (!asked) nanosleep(&t, 0);
    int64_t start = now();
    for (size_t page = 0; page < size / 4096; page++) p[page * 512] += 1;
    int64_t elapsed = now() - start;
    char path[4096], text[64];
    snprintf(path, sizeof path, "%s.ns", argv[1]);
    snprintf(text, sizeof text, "%lld\n", (long long)elapsed);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { if (write(fd, text, strlen(text)) < 0) return 1; close(fd); }
    for (;;) nanosleep(&t, 0);
}
