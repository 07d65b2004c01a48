/*
 * lazy_pages: memory that must come back bit for bit when its pages arrive after the process
 * runs again (restore --lazy-pages), touched in the ways that race with the background fill.
 *
 * A 96 MiB anonymous mapping and 1 MiB of heap hold PRNG data. The scenario polls its parent
 * PID every millisecond: a restore gives it a new parent (amber, which serves the pages), and
 * it then acts at once, while most pages are still missing (in a plain run, at SIGTERM):
 *
 *   (default)       checks every byte;
 *   --threads       four threads check the mapping at once, interleaved page by page;
 *   --tree          three children, each with its own data, check theirs when told over a pipe;
 *   --fork          forks: the child checks the mapping it never touched before the fork;
 *   --dontneed      madvise(MADV_DONTNEED)s 8 MiB: they read zeros, the rest its data;
 *   --kernel-read   write()s 64 KiB from untouched pages into a pipe (a read by the kernel)
 *                   and read()s it back into other untouched pages (a write by the kernel);
 *   --split         mprotect()s 8 MiB inside the mapping read-only, splitting its area (no
 *                   event tells amber), then checks every byte;
 *   --pi-waiter     a thread waits in pthread_mutex_lock on a priority-inheritance mutex the
 *                   main thread holds, on a page of its own never touched since: unlocked,
 *                   it takes it (the kernel takes a PI futex without waiting for a page).
 * In every mode /proc/self/cmdline reads the arguments the process was started with.
 *
 * At SIGTERM everything is checked again.
 */
#include "scenario.h"
#include <sys/mman.h>

#define PAGE 4096UL
#define MiB (1024UL * 1024UL)
#define AREA_SIZE (96 * MiB)
#define HEAP_SIZE (1 * MiB)
#define DROPPED_START (40 * MiB)
#define DROPPED_SIZE (8 * MiB)
#define CHILDREN 3

static uint64_t *area;
static uint64_t *heap;
static uint64_t seed = 0x9E3779B97F4A7C15ULL;
static pid_t parent_at_ready;
static int dropped;
static char acted_failure[512];

static uint64_t value_at(size_t index)
{
    uint64_t x = seed ^ (index * 0xD1B54A32D192ED03ULL);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 29);
}

static void fill(uint64_t *words, size_t count, size_t base)
{
    for (size_t i = 0; i < count; i++)
        words[i] = value_at(base + i);
}

/* Checks the words of pages first, first + step, ... of the area; 0 if all hold their data. */
static int check_area(size_t first, size_t step, char *why, size_t size)
{
    size_t per_page = PAGE / 8;
    for (size_t page = first; page < AREA_SIZE / PAGE; page += step) {
        int in_dropped = dropped && page * PAGE >= DROPPED_START && page * PAGE < DROPPED_START + DROPPED_SIZE;
        for (size_t i = 0; i < per_page; i++) {
            size_t index = page * per_page + i;
            uint64_t expected = in_dropped ? 0 : value_at(index);
            if (area[index] != expected) {
                snprintf(why, size, "area word %zu (page %zu): 0x%016llx, expected 0x%016llx", index, page,
                         (unsigned long long)area[index], (unsigned long long)expected);
                return -1;
            }
        }
    }
    return 0;
}

static int check_all(char *why, size_t size)
{
    for (size_t i = 0; i < HEAP_SIZE / 8; i++)
        if (heap[i] != value_at((AREA_SIZE + i) * 3)) {
            snprintf(why, size, "heap word %zu differs", i);
            return -1;
        }
    return check_area(0, 1, why, size);
}

static void act_failed(const char *fmt, ...)
{
    if (acted_failure[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(acted_failure, sizeof acted_failure, fmt, ap);
    va_end(ap);
}

/* ---- --threads ---- */
#define THREADS 4
static volatile int go;
static char thread_failure[THREADS][256];

static void *checker(void *arg)
{
    size_t n = (size_t)arg;
    while (!go && !sc_term) {
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (check_area(n, THREADS, thread_failure[n], sizeof thread_failure[n]) != 0)
        return (void *)1;
    return NULL;
}

/* ---- --tree ---- */
static pid_t children[CHILDREN];
static int to_child[CHILDREN][2], from_child[CHILDREN][2];

static void child_main(int n)
{
    seed += (uint64_t)(n + 1) * 0x1000193ULL;
    fill(area, AREA_SIZE / 8, 0);
    for (size_t i = 0; i < HEAP_SIZE / 8; i++)
        heap[i] = value_at((AREA_SIZE + i) * 3);
    char byte;
    for (;;) {
        if (read(to_child[n][0], &byte, 1) != 1)
            _exit(2);
        char why[256] = "";
        char verdict = check_all(why, sizeof why) == 0 ? 'P' : 'F';
        if (write(from_child[n][1], &verdict, 1) != 1)
            _exit(2);
        if (byte == 'q')
            _exit(0);
    }
}

/* One byte each way, again when SIGTERM interrupts it. */
static int ask_one(int n, char byte, char *verdict)
{
    ssize_t r;
    while ((r = write(to_child[n][1], &byte, 1)) < 0 && errno == EINTR)
        ;
    if (r != 1)
        return -1;
    while ((r = read(from_child[n][0], verdict, 1)) < 0 && errno == EINTR)
        ;
    return r == 1 ? 0 : -1;
}

static void ask_children(char byte, const char *when)
{
    for (int n = 0; n < CHILDREN; n++) {
        char verdict = 0;
        if (ask_one(n, byte, &verdict) != 0)
            act_failed("child %d did not answer %s", n, when);
        else if (verdict != 'P')
            act_failed("child %d's memory differs %s", n, when);
    }
}

/* ---- --kernel-read ---- */
static int kernel_pipe[2];

/* ---- --pi-waiter ---- */
static struct sc_pi_waiter pi_waiter;

static char cmdline[4096];
static ssize_t cmdline_length;

static void act(void)
{
    char why[256] = "", now[4096];
    ssize_t length = sc_read_file("/proc/self/cmdline", now, sizeof now);
    if (length != cmdline_length || memcmp(now, cmdline, (size_t)length) != 0)
        act_failed("/proc/self/cmdline reads %zd bytes, not its %zd bytes of arguments", length, cmdline_length);
    if (sc_has_flag("--pi-waiter")) {
        if (!sc_pi_waiter_finish(&pi_waiter))
            act_failed("the thread waiting for the PI mutex did not take it");
    } else if (sc_has_flag("--threads")) {
        go = 1;
    } else if (sc_has_flag("--tree")) {
        ask_children('c', "right after the restore");
    } else if (sc_has_flag("--fork")) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(check_all(why, sizeof why) == 0 ? 0 : 1);
        int status = 0;
        pid_t waited;
        do /* SIGTERM may come meanwhile */
            waited = pid < 0 ? -1 : waitpid(pid, &status, 0);
        while (waited < 0 && errno == EINTR);
        if (waited != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            act_failed("the child forked right after the restore found other memory (status 0x%x)", status);
    } else if (sc_has_flag("--split")) {
        if (mprotect((char *)area + 40 * MiB + 3 * PAGE, 8 * MiB, PROT_READ) != 0)
            act_failed("mprotect: %s", strerror(errno));
        else if (check_all(why, sizeof why) != 0)
            act_failed("after the area was split: %s", why);
    } else if (sc_has_flag("--dontneed")) {
        if (madvise((char *)area + DROPPED_START, DROPPED_SIZE, MADV_DONTNEED) != 0)
            act_failed("madvise: %s", strerror(errno));
        dropped = 1;
    } else if (sc_has_flag("--kernel-read")) {
        size_t length = 64 * 1024;
        char *from = (char *)area + 80 * MiB;
        char *to = (char *)area + 88 * MiB;
        if (write(kernel_pipe[1], from, length) != (ssize_t)length)
            act_failed("write() from untouched pages: %s", strerror(errno));
        else if (read(kernel_pipe[0], to, length) != (ssize_t)length)
            act_failed("read() into untouched pages: %s", strerror(errno));
        else if (memcmp(from, to, length) != 0)
            act_failed("the bytes read back differ from those written");
        /* The area holds its data again where the pipe put a copy of other pages. */
        fill((uint64_t *)to, length / 8, (88 * MiB) / 8);
    } else if (check_all(why, sizeof why) != 0) {
        act_failed("right after the restore: %s", why);
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "lazy_pages");
    sc_install_sigterm(0);
    area = mmap(NULL, AREA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    heap = malloc(HEAP_SIZE);
    if (area == MAP_FAILED || !heap)
        sc_die("allocate");
    fill(area, AREA_SIZE / 8, 0);
    for (size_t i = 0; i < HEAP_SIZE / 8; i++)
        heap[i] = value_at((AREA_SIZE + i) * 3);
    pthread_t threads[THREADS];
    if (sc_has_flag("--threads"))
        for (size_t n = 0; n < THREADS; n++)
            if (pthread_create(&threads[n], NULL, checker, (void *)n) != 0)
                sc_die("pthread_create");
    if (sc_has_flag("--tree"))
        for (int n = 0; n < CHILDREN; n++) {
            if (pipe(to_child[n]) != 0 || pipe(from_child[n]) != 0)
                sc_die("pipe");
            children[n] = fork();
            if (children[n] < 0)
                sc_die("fork");
            if (children[n] == 0)
                child_main(n);
        }
    if (sc_has_flag("--kernel-read") && pipe(kernel_pipe) != 0)
        sc_die("pipe");
    cmdline_length = sc_read_file("/proc/self/cmdline", cmdline, sizeof cmdline);
    if (cmdline_length <= 0)
        sc_die("/proc/self/cmdline");
    if (sc_has_flag("--pi-waiter"))
        sc_pi_waiter_start(&pi_waiter);
    parent_at_ready = getppid();
    sc_ready();
    int acted = 0;
    while (!sc_term) {
        if (!acted && getppid() != parent_at_ready) {
            act();
            acted = 1;
        }
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    sc_check_common();
    if (!acted)
        act();
    if (sc_has_flag("--threads")) {
        go = 1;
        for (size_t n = 0; n < THREADS; n++) {
            void *result = NULL;
            pthread_join(threads[n], &result);
            if (result)
                sc_fail("thread %zu: %s", n, thread_failure[n]);
        }
    }
    if (sc_has_flag("--tree")) {
        ask_children('q', "at SIGTERM");
        for (int n = 0; n < CHILDREN; n++) {
            int status = 0;
            if (waitpid(children[n], &status, 0) != children[n] || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                sc_fail("child %d ended with status 0x%x", n, status);
        }
    }
    if (acted_failure[0])
        sc_fail("%s", acted_failure);
    char why[256] = "";
    if (check_all(why, sizeof why) != 0)
        sc_fail("at SIGTERM: %s", why);
    sc_finish();
}
