/* bench target (e): 30,000 separate memory areas (or argv[2]), one touched page each.
   One anonymous mapping whose pages alternate between read-write and read-only, so that the
   kernel cannot merge neighbours; then creates the file argv[1] to say it is ready, and sleeps. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t areas = argc > 2 ? strtoul(argv[2], 0, 10) : 30000, page = 4096;
    char *p = mmap(0, areas * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (size_t i = 0; i < areas; i++) p[i * page] = (char)(i | 1);
    for (size_t i = 1; i < areas; i += 2)
        if (mprotect(p + i * page, page, PROT_READ) != 0) return 1;
    if (argc > 1) { int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
