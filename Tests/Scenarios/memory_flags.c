/*
 * memory_flags: areas whose kernel flags (VmFlags in /proc/self/smaps) differ only by madvise
 * advice, locking or how they were mapped, side by side in one mapping so that restoring them
 * without their flags would merge them: MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP,
 * MADV_SEQUENTIAL, MADV_RANDOM, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE, mlock and
 * mlock2(MLOCK_ONFAULT); apart, MAP_NORESERVE, MAP_DROPPABLE, MAP_GROWSDOWN and an mseal'ed
 * area, and a file open read-write mapped MAP_SHARED and PROT_READ. With --lock-future,
 * mlockall(MCL_FUTURE | MCL_ONFAULT) last. Every area's maps line and VmFlags line are saved
 * before sc_ready and compared after SIGTERM; then the shared mapping is made writable and a
 * write reaches the file, and (--lock-future) a new mapping comes out locked on fault.
 */
#include "scenario.h"
#include <sys/mman.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#define SYS_mseal_ 462

static char before[1 << 16], after[1 << 16];
static char shared_path[PATH_MAX];
static char *shared_map;

/* Each area's first line and VmFlags line, one pair per line of `out`. */
static void *map(size_t pages, int prot, int flags)
{
    void *p = mmap(NULL, pages * 4096, prot, flags | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        sc_die("mmap %zu pages, flags %#x", pages, flags);
    memset(p, 0x5a, pages * 4096);
    return p;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "memory_flags");
    sc_install_sigterm(0);
    int lock_future = sc_has_flag("--lock-future");

    /* Side by side in one mapping: one page each, one area each. */
    static const int advice[] = {MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_SEQUENTIAL,
                                 MADV_RANDOM, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE};
    const size_t count = sizeof advice / sizeof advice[0];
    char *row = map(count + 4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    for (size_t i = 0; i < count; i++)
        if (madvise(row + i * 4096, 4096, advice[i]) != 0)
            sc_die("madvise(%d)", advice[i]);
    if (mlock(row + count * 4096, 4096) != 0)
        sc_die("mlock");
    if (mlock2(row + (count + 1) * 4096, 4096, MLOCK_ONFAULT) != 0)
        sc_die("mlock2(MLOCK_ONFAULT)");

    map(2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE);
    map(2, PROT_READ | PROT_WRITE, MAP_DROPPABLE);
    map(2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_GROWSDOWN);
    char *sealed = map(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    if (mprotect(sealed, 4096, PROT_READ) != 0 || syscall(SYS_mseal_, sealed, 4096, 0) != 0)
        sc_die("mseal");

    sc_path(shared_path, sizeof shared_path, "shared-file");
    int fd = open(shared_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        sc_die("creating %s", shared_path);
    shared_map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (shared_map == MAP_FAILED)
        sc_die("mmap %s shared", shared_path);
    close(fd);

    if (lock_future && mlockall(MCL_FUTURE | MCL_ONFAULT) != 0)
        sc_die("mlockall(MCL_FUTURE | MCL_ONFAULT)");

    /* Once before saving the areas: sc_ready's own allocations then find room in the heap. */
    sc_snapshot();
    sc_area_lines(before, sizeof before);
    sc_ready();
    sc_wait_for_term();
    sc_area_lines(after, sizeof after);
    sc_check_common();

    sc_check_areas_alike(before, after);

    int writable = mprotect(shared_map, 4096, PROT_READ | PROT_WRITE) == 0;
    if (sc_check(writable, "mprotect of the shared file mapping to PROT_WRITE: %s", strerror(errno))) {
        shared_map[0] = 'Z';
        char byte = 0;
        int check = open(shared_path, O_RDONLY | O_CLOEXEC);
        sc_check(check >= 0 && pread(check, &byte, 1, 0) == 1 && byte == 'Z', "the write through the shared mapping did not reach the file");
        close(check);
    }

    if (lock_future) {
        char *fresh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char lines[1 << 16], start[32];
        sc_area_lines(lines, sizeof lines);
        snprintf(start, sizeof start, "%lx-", (unsigned long)fresh);
        char *line = strstr(lines, start);
        char *end = line ? strchr(line, '\n') : NULL;
        if (end)
            *end = 0;
        sc_check(line && strstr(line, " lo ") && strstr(line, " lf "), "a new mapping is not locked on fault (mlockall(MCL_FUTURE | MCL_ONFAULT) lost): %s", line ? line : "(no area)");
    }
    sc_finish();
}
