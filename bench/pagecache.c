/* Prints the nanoseconds it takes to write 1 GiB of PRNG data, already in memory, into new
   files in the directory argv[1] (page cache, not fsynced) with argv[2] threads, each writing
   its share into a file of its own in 1 MiB writes; the files are removed afterwards. This is
   what a dump of 1 GiB cannot beat: the pages must reach the page cache. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#define SIZE ((size_t)1 << 30)
#define CHUNK ((size_t)1 << 20)
static char *data;
static size_t share;
static const char *directory;
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static void *write_share(void *arg) {
    long index = (long)arg;
    char name[4096];
    snprintf(name, sizeof name, "%s/pagecache-%ld.img", directory, index);
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(name); exit(1); }
    for (size_t done = 0; done < share; done += CHUNK)
        if (write(fd, data + index * share + done, CHUNK) != (ssize_t)CHUNK) { perror("write"); exit(1); }
    close(fd);
    return 0;
}
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: pagecache DIR WRITERS\n"); return 2; }
    directory = argv[1];
    long writers = atol(argv[2]);
    if (writers < 1 || writers > 8) return 2;
    share = SIZE / writers;
    data = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) return 1;
    unsigned long long x = 88172645463325252ULL;
    for (size_t i = 0; i < SIZE / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; ((unsigned long long *)data)[i] = x; }
    pthread_t threads[8];
    long long t0 = now();
    for (long i = 0; i < writers; i++) pthread_create(&threads[i], 0, write_share, (void *)i);
    for (long i = 0; i < writers; i++) pthread_join(threads[i], 0);
    long long t1 = now();
    printf("%lld\n", t1 - t0);
    for (long i = 0; i < writers; i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s/pagecache-%ld.img", directory, i);
        unlink(name);
    }
    return 0;
}
