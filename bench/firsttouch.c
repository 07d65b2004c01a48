/* Prints the nanoseconds it takes to mmap 1 GiB of fresh anonymous memory
   and write one byte per 4 KiB page (CLOCK_MONOTONIC), then to unmap it. */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(void) {
    size_t size = (size_t)1 << 30;
    long long t0 = now();
    volatile char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    long long t1 = now();
    printf("%lld\n", t1 - t0);
    return 0;
}
