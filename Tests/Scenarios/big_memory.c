/*
 * big_memory: a process with much memory, for dumps that take long enough to watch or to
 * interrupt (progress on a terminal, an `amber dump` killed part way).
 *
 * --mib N (64 by default) MiB of private anonymous memory hold PRNG data, every page of it.
 *
 * Checks after SIGTERM: every word holds its data.
 */
#include "scenario.h"
#include <sys/mman.h>

static uint64_t value_at(size_t index)
{
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ (index * 0xD1B54A32D192ED03ULL);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 29);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "big_memory");
    sc_install_sigterm(0);
    size_t mib = 64;
    for (int i = 0; i + 1 < sc_argc_extra; i++)
        if (!strcmp(sc_argv_extra[i], "--mib"))
            mib = (size_t)atoi(sc_argv_extra[i + 1]);
    size_t words = (mib << 20) / 8;
    uint64_t *area = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        sc_die("mmap");
    for (size_t i = 0; i < words; i++)
        area[i] = value_at(i);
    sc_ready();

    struct timespec tick = {0, 10 * 1000 * 1000};
    while (!sc_term)
        nanosleep(&tick, NULL);

    sc_check_common();
    for (size_t i = 0; i < words; i++)
        if (!sc_check(area[i] == value_at(i), "word %zu of %zu MiB does not hold its data", i, mib))
            break;
    sc_finish();
}
