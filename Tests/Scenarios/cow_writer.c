/*
 * cow_writer: writes its memory without pause, for `dump --cow`.
 *
 * Each writer thread owns a slice of pages of a 64 MiB private anonymous area (a 4 MiB heap
 * block with --heap too). A pass goes down its slice from the highest page (against the dump,
 * which copies upwards): it checks that the page holds exactly the pattern of the previous
 * pass, then writes the pattern of this one (every word of page i of generation g is a
 * function of g, i and the word's place). The generation and the place in the pass live in
 * the thread's registers and memory, so a restored copy goes on from the freeze: a page the
 * image took from after the freeze (a newer generation) or torn fails its next check.
 *
 * Options: --threads N (writer threads, default 1); --tree (a child does the same, and
 * reports through its exit status); --kernel-write (one more writer fills its pages by read()
 * from a pipe, so the kernel writes them for it); --fork (a thread forks a child every 20 ms
 * for 800 ms; the area is MADV_DONTFORK, so no child has a copy of it); --move (a thread moves a filled 64 MiB
 * area above the others by mremap every millisecond, back and forth: a dump --cow then fails,
 * naming the process, and the process runs on unharmed); --robust-exits (8 threads each lock a
 * robust mutex on a page of its own, untouched since, and exit holding it 30 to 400 ms after
 * ready, while a dump started then copies: the kernel's writes for an exiting thread, owner-died in the mutex and the cleared TID
 * a join waits for, land on pages the dump may still protect); --pi-waiter (a thread waits in
 * the kernel for a priority-inheritance mutex on a page untouched since: the kernel takes it
 * again once the thread runs, with page faults disabled, where the dump may still protect it).
 *
 * Checks after SIGTERM: every writer ran passes since ready; each stops at the end of a pass,
 * then every page of every slice holds its last pass's pattern; the child passed.
 */
#include "scenario.h"
#include <sys/mman.h>

#define AREA_SIZE (64UL << 20)
#define PAGE 4096UL
#define MAX_WRITERS 9

struct writer {
    unsigned char *base;
    size_t pages;
    uint64_t first_page; /* the slice's pages are first_page.. in the pattern */
    volatile uint64_t generation; /* the pass being written; pages hold generation - 1 before */
    volatile uint64_t passes;
    int kernel_write;
    int pipe[2];
    char failure[256];
};

static struct writer writers[MAX_WRITERS];
static int nwriters;
static volatile int stop;
static unsigned char *churned; /* --move: where the moving area is, and the other place */
static unsigned char *elsewhere;
static volatile uint64_t forks;

/* --robust-exits */
#define HOLDERS 8
static pthread_mutex_t *held[HOLDERS];
static pthread_t holders[HOLDERS];
static struct timespec holders_start;
static volatile int holding;
static struct sc_pi_waiter pi_waiter;

static void *hold_and_exit(void *arg)
{
    static const int after_ms[HOLDERS] = {30, 60, 90, 120, 160, 200, 300, 400};
    long i = (long)arg;
    pthread_mutex_lock(held[i]);
    __atomic_add_fetch(&holding, 1, __ATOMIC_SEQ_CST);
    struct timespec until = holders_start;
    until.tv_sec += after_ms[i] / 1000;
    until.tv_nsec += (after_ms[i] % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
    return NULL; /* exits holding the mutex */
}

static void start_holders(void)
{
    unsigned char *pages = mmap(NULL, HOLDERS * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED)
        sc_die("mmap");
    pthread_mutexattr_t robust;
    pthread_mutexattr_init(&robust);
    pthread_mutexattr_setrobust(&robust, PTHREAD_MUTEX_ROBUST);
    clock_gettime(CLOCK_MONOTONIC, &holders_start);
    for (long i = 0; i < HOLDERS; i++) {
        held[i] = (pthread_mutex_t *)(pages + i * PAGE + 64);
        pthread_mutex_init(held[i], &robust);
        if (pthread_create(&holders[i], NULL, hold_and_exit, (void *)i))
            sc_die("pthread_create");
    }
    while (holding < HOLDERS)
        usleep(1000);
}

static void check_holders(void)
{
    for (int i = 0; i < HOLDERS; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        int r = pthread_timedjoin_np(holders[i], NULL, &until);
        if (!sc_check(r == 0, "holder %d: join: %s", i, strerror(r)))
            continue;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        r = pthread_mutex_timedlock(held[i], &until);
        sc_check(r == EOWNERDEAD, "holder %d's robust mutex: %s, not EOWNERDEAD", i, strerror(r));
    }
}

static uint64_t word(uint64_t generation, uint64_t page, uint64_t index)
{
    return (generation * 0x9E3779B97F4A7C15ULL) ^ (page << 12 | index) ^ 0x5bd1e995ULL;
}

static void fill(uint64_t *words, uint64_t generation, uint64_t page)
{
    for (uint64_t i = 0; i < PAGE / 8; i++)
        words[i] = word(generation, page, i);
}

static int holds(const uint64_t *words, uint64_t generation, uint64_t page)
{
    for (uint64_t i = 0; i < PAGE / 8; i++)
        if (words[i] != word(generation, page, i))
            return 0;
    return 1;
}

static void describe(struct writer *w, size_t index, uint64_t expected)
{
    const uint64_t *words = (const uint64_t *)(w->base + index * PAGE);
    uint64_t page = w->first_page + index;
    uint64_t found = words[0] ^ (page << 12) ^ 0x5bd1e995ULL;
    snprintf(w->failure, sizeof w->failure,
             "page %llu of a slice does not hold generation %llu (its first word is generation %llu's%s)",
             (unsigned long long)page, (unsigned long long)expected,
             (unsigned long long)(found * 0xF1DE83E19937733DULL) /* the inverse of the multiplier */,
             holds(words, expected + 1, page) ? ", a later pass" : "");
}

static void *run_writer(void *argument)
{
    struct writer *w = argument;
    static __thread uint64_t buffer[PAGE / 8];
    while (!w->failure[0]) {
        uint64_t generation = w->generation;
        for (size_t index = w->pages; index-- > 0;) {
            uint64_t *words = (uint64_t *)(w->base + index * PAGE);
            uint64_t page = w->first_page + index;
            if (!holds(words, generation - 1, page)) {
                describe(w, index, generation - 1);
                return NULL;
            }
            if (w->kernel_write) {
                fill(buffer, generation, page);
                if (write(w->pipe[1], buffer, PAGE) != (ssize_t)PAGE || read(w->pipe[0], words, PAGE) != (ssize_t)PAGE) {
                    snprintf(w->failure, sizeof w->failure, "pipe write/read: %s", strerror(errno));
                    return NULL;
                }
            } else {
                fill(words, generation, page);
            }
        }
        w->generation = generation + 1;
        w->passes = w->passes + 1;
        if (stop)
            break;
    }
    return NULL;
}

static void *churn(void *argument)
{
    (void)argument;
    while (!stop) {
        usleep(1000);
        if (mremap(churned, AREA_SIZE, AREA_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, elsewhere) != elsewhere ||
            mmap(churned, AREA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != churned) {
            snprintf(writers[0].failure, sizeof writers[0].failure, "mremap: %s", strerror(errno));
            return NULL;
        }
        unsigned char *was = churned;
        churned = elsewhere;
        elsewhere = was;
    }
    return NULL;
}

static pid_t children[40];
static volatile int nchildren;

/* --fork: a child every 20 ms for 800 ms, around the dump. Each waits for its parent's
   SIGKILL, so that none exits during a dump (a process of the tree that exits during a dump
   --cow takes pages not yet copied with it). The writers' area is MADV_DONTFORK, so that no
   child holds a copy: one forked just before the freeze and unmapping its copy during the
   copy would take pages not yet copied with it too. */
static void *fork_often(void *argument)
{
    struct writer *w = argument;
    while (!stop && nchildren < (int)(sizeof children / sizeof children[0])) {
        pid_t child = fork();
        if (child == 0) {
            for (;;)
                syscall(SYS_pause);
        }
        if (child < 0) {
            snprintf(w->failure, sizeof w->failure, "fork: %s", strerror(errno));
            return NULL;
        }
        children[nchildren] = child;
        nchildren = nchildren + 1;
        forks = forks + 1;
        usleep(20000);
    }
    return NULL;
}

static int run(int threads, int kernel_write, int tree)
{
    if (sc_has_flag("--move")) {
        /* Mapped first, so above the others: a dump copies it last. The other place is kept
           mapped PROT_NONE, so that nothing else lands there. */
        churned = mmap(NULL, 2 * AREA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (churned == MAP_FAILED)
            sc_die("mmap");
        elsewhere = churned + AREA_SIZE;
        if (mprotect(churned, AREA_SIZE, PROT_READ | PROT_WRITE))
            sc_die("mprotect");
        memset(churned, 0x5a, AREA_SIZE);
    }
    unsigned char *area = mmap(NULL, AREA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        sc_die("mmap");
    if (sc_has_flag("--fork") && madvise(area, AREA_SIZE, MADV_DONTFORK))
        sc_die("madvise");
    unsigned char *heap = NULL;
    if (sc_has_flag("--heap") && posix_memalign((void **)&heap, PAGE, 4UL << 20))
        sc_die("posix_memalign");
    int slices = threads + (kernel_write ? 1 : 0);
    size_t per = AREA_SIZE / PAGE / slices;
    for (int t = 0; t < slices; t++) {
        struct writer *w = &writers[nwriters++];
        w->base = area + t * per * PAGE;
        w->pages = per;
        w->first_page = t * per;
        w->generation = 1;
        w->kernel_write = kernel_write && t == slices - 1;
        if (w->kernel_write && pipe(w->pipe))
            sc_die("pipe");
    }
    if (heap) {
        struct writer *w = &writers[nwriters++];
        w->base = heap;
        w->pages = (4UL << 20) / PAGE;
        w->first_page = 1UL << 20;
        w->generation = 1;
    }
    for (int t = 0; t < nwriters; t++)
        for (size_t index = 0; index < writers[t].pages; index++)
            fill((uint64_t *)(writers[t].base + index * PAGE), 0, writers[t].first_page + index);
    pthread_t ids[MAX_WRITERS];
    for (int t = 1; t < nwriters; t++)
        if (pthread_create(&ids[t], NULL, run_writer, &writers[t]))
            sc_die("pthread_create");
    pid_t child = -1;
    if (tree) {
        child = fork();
        if (child < 0)
            sc_die("fork");
        if (child == 0) {
            /* The child writes in its main thread until its parent's SIGTERM. */
            nwriters = 1;
            writers[0].generation = writers[0].generation;
            sc_install_sigterm(0);
            pthread_t own;
            if (pthread_create(&own, NULL, run_writer, &writers[0]))
                _exit(2);
            while (!sc_term && !writers[0].failure[0])
                pause();
            stop = 1;
            pthread_join(own, NULL);
            if (writers[0].failure[0]) {
                fprintf(stderr, "child: %s\n", writers[0].failure);
                _exit(1);
            }
            _exit(0);
        }
    }
    pthread_t own, helper;
    if (pthread_create(&own, NULL, run_writer, &writers[0]))
        sc_die("pthread_create");
    ids[0] = own;
    int helping = churned || sc_has_flag("--fork");
    if (helping && pthread_create(&helper, NULL, churned ? churn : fork_often, &writers[0]))
        sc_die("pthread_create");
    /* Every writer has written a pass before the dump may start. */
    for (int t = 0; t < nwriters; t++)
        while (writers[t].passes == 0 && !writers[t].failure[0])
            usleep(1000);
    if (sc_has_flag("--robust-exits"))
        start_holders();
    if (sc_has_flag("--pi-waiter"))
        sc_pi_waiter_start(&pi_waiter);
    uint64_t at_ready[MAX_WRITERS];
    for (int t = 0; t < nwriters; t++)
        at_ready[t] = writers[t].passes;
    sc_ready();
    while (!sc_term) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sc_check_common();
    stop = 1;
    for (int t = 0; t < nwriters; t++)
        pthread_join(ids[t], NULL);
    if (helping)
        pthread_join(helper, NULL);
    if (sc_has_flag("--robust-exits"))
        check_holders();
    if (sc_has_flag("--pi-waiter"))
        sc_check(sc_pi_waiter_finish(&pi_waiter), "the thread waiting for the PI mutex did not take it");
    if (sc_has_flag("--fork")) {
        sc_check(forks > 0, "no child was forked");
        for (int c = 0; c < nchildren; c++) {
            int status;
            kill(children[c], SIGKILL);
            if (waitpid(children[c], &status, 0) != children[c] || !WIFSIGNALED(status))
                sc_fail("child %d did not end by SIGKILL", (int)children[c]);
        }
    }
    for (int t = 0; t < nwriters; t++) {
        struct writer *w = &writers[t];
        if (w->failure[0]) {
            sc_fail("writer %d: %s", t, w->failure);
            continue;
        }
        sc_check(w->passes > at_ready[t], "writer %d wrote no pass since ready", t);
        for (size_t index = 0; index < w->pages; index++)
            if (!holds((uint64_t *)(w->base + index * PAGE), w->generation - 1, w->first_page + index)) {
                describe(w, index, w->generation - 1);
                sc_fail("writer %d at the end: %s", t, w->failure);
                break;
            }
    }
    if (child > 0) {
        kill(child, SIGTERM);
        int status;
        if (waitpid(child, &status, 0) != child)
            sc_fail("waitpid child: %s", strerror(errno));
        else
            sc_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status 0x%x)", status);
    }
    return 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "cow_writer");
    sc_install_sigterm(0);
    int threads = 1;
    for (int i = 0; i + 1 < sc_argc_extra; i++)
        if (!strcmp(sc_argv_extra[i], "--threads"))
            threads = atoi(sc_argv_extra[i + 1]);
    if (threads < 1 || threads > 6)
        sc_die("--threads takes 1 to 6");
    run(threads, sc_has_flag("--kernel-write"), sc_has_flag("--tree"));
    sc_finish();
}
