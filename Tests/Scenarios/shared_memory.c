/*
 * shared_memory: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) across fork.
 *   A  16 pages the parent and two children share. Its page 7 was dropped from the parent's
 *      page tables (MADV_DONTNEED: its data stays in the object, no process has it mapped in);
 *      child 1 was forked before the parent made page 15 read-only, child 2 after (it inherits
 *      the two areas).
 *   B  8 pages the parent and both children share; child 1 unmapped its first two pages and
 *      moved its last two elsewhere (mremap), so its areas map B at offsets 2 and 6 pages.
 *   C  4 pages only the parent maps.
 *   F  a file of 2 pages the parent and both children map MAP_SHARED.
 * After SIGTERM every process checks the contents, and that maps shows each area as
 * "/dev/zero (deleted)" with its offset and protection; then they write to each other in turn
 * (child 1 into A, B and F, the parent into A, child 2 into A and F) and each checks it reads what the
 * other wrote: the sharing holds. Byte j of page i of object o is (o * 31 + i * 7 + j) % 251.
 * A child reports a failed check by its exit status.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL

static unsigned char *a, *b, *c, *f;
static unsigned char *b_moved; /* child 1: B's last two pages */
static pid_t child1, child2;
static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

static unsigned char pattern(int object, size_t page, size_t byte)
{
    return (unsigned char)((object * 31 + page * 7 + byte) % 251);
}

static void fill(unsigned char *area, int object, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        for (size_t j = 0; j < PAGE; j++)
            area[i * PAGE + j] = pattern(object, i, j);
}

/* Whether `pages` pages at `area` hold object's pattern from page `first` on. */
static int holds(const unsigned char *area, int object, size_t first, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        for (size_t j = 0; j < PAGE; j++)
            if (area[i * PAGE + j] != pattern(object, first + i, j))
                return 0;
    return 1;
}

/* Whether maps has an area from `start` to `end` with permissions `perms` at `offset` in
 * "/dev/zero (deleted)". */
static int mapped(const void *start, const void *end, const char *perms, unsigned long offset)
{
    static char text[65536];
    ssize_t n = sc_read_file("/proc/self/maps", text, sizeof text - 1);
    if (n <= 0)
        return 0;
    text[n] = 0;
    char head[64];
    snprintf(head, sizeof head, "%lx-%lx %s %08lx ", (unsigned long)start, (unsigned long)end, perms, offset);
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = 0;
        int match = strncmp(line, head, strlen(head)) == 0 && strstr(line, " /dev/zero (deleted)") != NULL;
        if (eol)
            *eol = '\n';
        if (match)
            return 1;
    }
    return 0;
}

static void wait_for_go(void)
{
    while (!go)
        pause();
    go = 0;
}

static int child1_checks(void)
{
    if (!mapped(a, a + 16 * PAGE, "rw-s", 0))
        return 10;
    if (!mapped(b + 2 * PAGE, b + 6 * PAGE, "rw-s", 2 * PAGE) || !mapped(b_moved, b_moved + 2 * PAGE, "rw-s", 6 * PAGE))
        return 11;
    if (!holds(a, 1, 0, 16))
        return 12;
    if (!holds(b + 2 * PAGE, 2, 2, 4) || !holds(b_moved, 2, 6, 2))
        return 13;
    if (f[0] != 'F')
        return 14;
    a[3 * PAGE] = 'c';
    b_moved[0] = 'm';
    f[PAGE] = '1';
    return 0;
}

static int child2_checks(void)
{
    if (!mapped(a, a + 15 * PAGE, "rw-s", 0) || !mapped(a + 15 * PAGE, a + 16 * PAGE, "r--s", 15 * PAGE))
        return 20;
    if (!mapped(b, b + 8 * PAGE, "rw-s", 0))
        return 21;
    if (a[4 * PAGE] != 'p' || !holds(a + 5 * PAGE, 1, 5, 11))
        return 22;
    if (f[PAGE] != '1')
        return 23;
    a[5 * PAGE] = 'd';
    f[PAGE + 1] = '2';
    return 0;
}

static pid_t start_child(int (*checks)(void), void (*setup)(void))
{
    pid_t pid = fork();
    if (pid < 0)
        sc_die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        if (setup)
            setup();
        wait_for_go();
        _exit(checks());
    }
    sc_wait_in_pause(pid);
    return pid;
}

static void child1_setup(void)
{
    if (munmap(b, 2 * PAGE) != 0)
        _exit(2);
    void *place = mmap(NULL, 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (place == MAP_FAILED)
        _exit(3);
    b_moved = mremap(b + 6 * PAGE, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, place);
    if (b_moved == MAP_FAILED)
        _exit(4);
}

static void run_child(pid_t pid, const char *name)
{
    sc_check(kill(pid, SIGUSR1) == 0, "cannot signal %s: %s", name, strerror(errno));
    int status = 0;
    pid_t r = sc_wait_child(pid, &status, 20000);
    char text[64];
    sc_check(r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s ended with %s", name,
             r == pid ? sc_status_text(status, text, sizeof text) : "no status");
}

static unsigned char *map_shared(size_t pages)
{
    void *area = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        sc_die("mmap");
    return area;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "shared_memory");
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, 0);
    a = map_shared(16);
    b = map_shared(8);
    char path[PATH_MAX];
    sc_path(path, sizeof path, "mapped");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)(2 * PAGE)) != 0)
        sc_die("creating %s", path);
    f = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (f == MAP_FAILED)
        sc_die("mmap %s", path);
    close(fd);
    f[0] = 'F';
    fill(a, 1, 16);
    fill(b, 2, 8);
    if (madvise(a + 7 * PAGE, PAGE, MADV_DONTNEED) != 0)
        sc_die("madvise");
    child1 = start_child(child1_checks, child1_setup);
    if (mprotect(a + 15 * PAGE, PAGE, PROT_READ) != 0)
        sc_die("mprotect");
    child2 = start_child(child2_checks, NULL);
    c = map_shared(4);
    fill(c, 3, 4);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(mapped(a, a + 15 * PAGE, "rw-s", 0) && mapped(a + 15 * PAGE, a + 16 * PAGE, "r--s", 15 * PAGE),
             "A is not mapped as it was");
    sc_check(mapped(b, b + 8 * PAGE, "rw-s", 0) && mapped(c, c + 4 * PAGE, "rw-s", 0), "B or C is not mapped as it was");
    sc_check(holds(a, 1, 0, 16), "A lost its contents (page 7 is in no page table)");
    sc_check(holds(b, 2, 0, 8), "B lost its contents");
    sc_check(holds(c, 3, 0, 4), "C lost its contents");

    run_child(child1, "child 1");
    sc_check(a[3 * PAGE] == 'c', "child 1's write into A does not show in the parent");
    sc_check(b[6 * PAGE] == 'm', "child 1's write into its moved part of B does not show in the parent");
    a[4 * PAGE] = 'p';
    run_child(child2, "child 2");
    sc_check(a[5 * PAGE] == 'd', "child 2's write into A does not show in the parent");
    sc_check(f[PAGE] == '1' && f[PAGE + 1] == '2', "the children's writes into the file F do not show in the parent");
    c[0] = 'x';
    sc_check(c[0] == 'x', "C is not writable");
    sc_finish();
}
