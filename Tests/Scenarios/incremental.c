/*
 * incremental: memory that keeps changing while the process is pre-dumped, then dumped with
 * --prev-images-dir (amber pre-dump, incremental dumps).
 *
 * A region of 4096 pages: page p holds, in every 8-byte word w, pattern(p, version[p], w).
 * Writer threads (--threads N, 1 by default) go on rewriting pages with the next version,
 * setting in_flight[thread] to the page around each write, and count their writes in
 * `writes`. A process forked before ready (--child) does the same in its own copy and
 * reports its verdict by its exit status.
 *
 * On SIGUSR1 (sent between the pre-dump and the dump) the main thread springs the traps of an
 * incremental dump, then writes the file "traps-done": it drops half of a filled area with
 * MADV_DONTNEED (the pre-dump holds those pages, which must come back as zeros), maps a new
 * area and fills it, and moves a filled area elsewhere with mremap.
 *
 * Checks after SIGTERM: every page matches its version (a page of a thread's in-flight write
 * may hold the old or the next version in each word); the versions add up to `writes` (a stale
 * version page would not); the traps' areas hold what they must; writing goes on.
 */
#include "scenario.h"
#include <sys/mman.h>

#define PAGES 4096
#define PAGE 4096
#define WORDS (PAGE / 8)
#define MAX_THREADS 8
#define TRAP_PAGES 64

static uint8_t *region;
static uint32_t *version;
static volatile int64_t in_flight[MAX_THREADS];
static volatile uint64_t writes_by[MAX_THREADS];
static volatile int stop_writers;
static int nthreads = 1;
static volatile sig_atomic_t traps_asked;
static uint8_t *dropped, *late, *moved;
static int traps_sprung;

static uint64_t pattern(uint64_t p, uint64_t v, uint64_t w)
{
    uint64_t x = (p << 40) ^ (v << 16) ^ w ^ 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

static void write_page(uint64_t p, uint32_t v)
{
    uint64_t *words = (uint64_t *)(region + p * PAGE);
    for (int w = 0; w < WORDS; w++)
        words[w] = pattern(p, v, w);
}

static void *writer(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t p = (uint64_t)me * 977;
    while (!stop_writers) {
        /* A few pages only, each often: most pages stay as the pre-dump copied them. */
        p = (p * 6364136223846793005ull + 1442695040888963407ull + me);
        uint64_t page = (p >> 33) % (PAGES / 16) + (uint64_t)me * (PAGES / 16) % PAGES;
        in_flight[me] = (int64_t)page;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint32_t v = __atomic_add_fetch(&version[page], 1, __ATOMIC_SEQ_CST);
        write_page(page, v);
        writes_by[me]++;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        in_flight[me] = -1;
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
    traps_asked = 1;
}

static uint8_t *filled(int pages, int seed)
{
    uint8_t *area = mmap(NULL, (size_t)pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        sc_die("mmap");
    for (int i = 0; i < pages * PAGE; i++)
        area[i] = (uint8_t)(i * 7 + seed) | 1;
    return area;
}

static int holds(const uint8_t *area, int first, int pages, int seed)
{
    for (int i = first * PAGE; i < (first + pages) * PAGE; i++)
        if (area[i] != ((uint8_t)(i * 7 + seed) | 1))
            return 0;
    return 1;
}

static void spring_traps(void)
{
    if (madvise(dropped + TRAP_PAGES / 2 * PAGE, TRAP_PAGES / 2 * PAGE, MADV_DONTNEED) != 0)
        sc_die("madvise");
    late = filled(TRAP_PAGES, 3);
    uint8_t *away = mmap(NULL, TRAP_PAGES * PAGE * 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (away == MAP_FAILED)
        sc_die("mmap");
    moved = mremap(moved, TRAP_PAGES * PAGE, TRAP_PAGES * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, away + TRAP_PAGES * PAGE);
    if (moved == MAP_FAILED)
        sc_die("mremap");
    traps_sprung = 1;
    char path[PATH_MAX];
    sc_path(path, sizeof path, "traps-done");
    sc_write_file_atomic(path, "done\n");
}

static void check_memory(const char *when)
{
    uint64_t total = 0;
    for (int t = 0; t < nthreads; t++)
        total += writes_by[t];
    uint64_t versions = 0;
    for (int p = 0; p < PAGES; p++)
        versions += version[p];
    /* A thread stopped between its version increment and its count adds one. */
    int64_t slack = 0;
    for (int t = 0; t < nthreads; t++)
        slack += in_flight[t] >= 0;
    if (versions < total || versions > total + (uint64_t)slack)
        sc_fail("%s: versions add up to %llu, %llu writes counted", when, (unsigned long long)versions,
                (unsigned long long)total);
    int bad = 0;
    for (int p = 0; p < PAGES && bad < 3; p++) {
        int inflight = 0;
        for (int t = 0; t < nthreads; t++)
            inflight |= in_flight[t] == p;
        const uint64_t *words = (const uint64_t *)(region + (size_t)p * PAGE);
        for (int w = 0; w < WORDS; w++) {
            uint64_t v = version[p];
            if (words[w] == pattern(p, v, w) || (inflight && (words[w] == pattern(p, v - 1, w))))
                continue;
            sc_fail("%s: page %d word %d does not hold version %u", when, p, w, version[p]);
            bad++;
            break;
        }
    }
    if (traps_sprung) {
        if (!holds(dropped, 0, TRAP_PAGES / 2, 1))
            sc_fail("%s: the kept half of the MADV_DONTNEED area changed", when);
        for (int i = TRAP_PAGES / 2 * PAGE; i < TRAP_PAGES * PAGE; i++)
            if (dropped[i] != 0) {
                sc_fail("%s: a page dropped by MADV_DONTNEED is not zero (byte %d)", when, i);
                break;
            }
        if (!holds(late, 0, TRAP_PAGES, 3))
            sc_fail("%s: the area mapped after the pre-dump changed", when);
        if (!holds(moved, 0, TRAP_PAGES, 2))
            sc_fail("%s: the area moved by mremap changed", when);
    }
}

static void run(void)
{
    region = mmap(NULL, (size_t)PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    version = mmap(NULL, PAGES * sizeof *version, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || version == MAP_FAILED)
        sc_die("mmap");
    for (int p = 0; p < PAGES; p++)
        write_page(p, 0);
    for (int t = 0; t < MAX_THREADS; t++)
        in_flight[t] = -1;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "incremental");
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, 0);
    for (int i = 0; i + 1 < sc_argc_extra; i++)
        if (strcmp(sc_argv_extra[i], "--threads") == 0)
            nthreads = atoi(sc_argv_extra[i + 1]);
    if (nthreads < 1 || nthreads > MAX_THREADS)
        sc_die("--threads 1..%d", MAX_THREADS);
    run();
    dropped = filled(TRAP_PAGES, 1);
    moved = filled(TRAP_PAGES, 2);
    pid_t child = -1;
    if (sc_has_flag("--child")) {
        child = fork();
        if (child < 0)
            sc_die("fork");
    }
    pthread_t threads[MAX_THREADS];
    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&threads[t], NULL, writer, (void *)(intptr_t)t) != 0)
            sc_die("pthread_create");
    if (child == 0) {
        while (!sc_term)
            pause();
        stop_writers = 1;
        for (int t = 0; t < nthreads; t++)
            pthread_join(threads[t], NULL);
        check_memory("child");
        _exit(sc_nfail == 0 ? 0 : 1);
    }
    sc_ready();
    while (!sc_term) {
        if (traps_asked && !traps_sprung)
            spring_traps();
        sc_sleep_ms(5);
    }
    sc_check_common();
    stop_writers = 1;
    for (int t = 0; t < nthreads; t++)
        pthread_join(threads[t], NULL);
    check_memory("after the dump");
    /* Writing goes on, and reads back. */
    uint64_t before = writes_by[0];
    stop_writers = 0;
    pthread_create(&threads[0], NULL, writer, (void *)(intptr_t)0);
    sc_sleep_ms(50);
    stop_writers = 1;
    pthread_join(threads[0], NULL);
    sc_check(writes_by[0] > before, "writing did not go on");
    check_memory("after more writes");
    if (child > 0) {
        kill(child, SIGTERM);
        int status;
        char text[64];
        if (sc_wait_child(child, &status, 5000) != child)
            sc_fail("the child did not exit");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            sc_fail("the child's memory check failed: %s", sc_status_text(status, text, sizeof text));
    }
    sc_finish();
}
