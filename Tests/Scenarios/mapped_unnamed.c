/*
 * mapped_unnamed: files without a name that are mapped.
 *   M  a memfd "mapped memfd" of 4 pages, sealed against growing and shrinking, which the
 *      parent has open and maps twice: whole, MAP_SHARED; and its pages 1-3, MAP_PRIVATE, where
 *      it wrote 'P' into the first (a private copy) and left the others the file's. A child,
 *      forked after, closed its descriptor: it only maps M (both areas, inherited).
 *   D  a deleted file of 2 pages, mapped whole MAP_SHARED and its page 1 read-only MAP_PRIVATE
 *      by both, open by no process (closed, then unlinked).
 * After SIGTERM the parent checks maps names each area as before ("/memfd:mapped memfd
 * (deleted)", "PATH (deleted)") at its offset and protection, the contents, M's size and
 * seals, that D's name is still free; that a write through its descriptor shows in its shared
 * mapping and in the private one's untouched page but not in its copied page, and a write into
 * the shared mapping shows through the descriptor. Then the child, signalled, checks it sees the
 * parent's write and writes into M and D, which the parent then reads through its descriptor
 * and its mappings: one memfd and one deleted file for both processes. Byte j of page i of M
 * is 'a' + i, of D 'A' + i. A child reports a failed check by its exit status.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL

static int memfd_fd;
static char *m_shared, *m_private, *d_shared, *d_private;
static char deleted_path[256];

/* Whether the page at `page` is all `byte` past its first `skip` bytes. */
static int page_is(const char *page, char byte, size_t skip)
{
    for (size_t i = skip; i < PAGE; i++)
        if (page[i] != byte)
            return 0;
    return 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    if (memcmp(m_shared, "fd-write", 8) != 0)
        _exit(10);
    if (!page_is(m_shared + 3 * PAGE, 'd', 4) || m_private[2 * PAGE] != 'l' || m_private[0] != 'P')
        _exit(11);
    if (!page_is(d_shared, 'A', 0) || !page_is(d_private, 'B', 0))
        _exit(12);
    memcpy(m_shared + PAGE + 100, "child", 5);
    memcpy(d_shared + PAGE + 200, "child", 5);
    _exit(0);
}

static void child_setup(void)
{
    close(memfd_fd);
    sc_handle(SIGUSR1, on_usr1, 0);
}

/* Whether maps has an area from `start` to `end` with permissions `perms` at `offset` in
 * the file named `name` (with " (deleted)"). */
static int mapped(const void *start, size_t pages, const char *perms, unsigned long offset, const char *name)
{
    static char text[65536];
    ssize_t n = sc_read_file("/proc/self/maps", text, sizeof text - 1);
    if (n <= 0)
        return 0;
    text[n] = 0;
    char head[64], tail[300];
    snprintf(head, sizeof head, "%lx-%lx %s %08lx ", (unsigned long)start, (unsigned long)start + pages * PAGE, perms,
             offset);
    snprintf(tail, sizeof tail, " %s (deleted)\n", name);
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *eol = strchr(line, '\n');
        if (strncmp(line, head, strlen(head)) == 0 && eol && (size_t)(eol + 1 - line) > strlen(tail) &&
            strncmp(eol + 1 - strlen(tail), tail, strlen(tail)) == 0)
            return 1;
    }
    return 0;
}

static void *map(size_t pages, int prot, int flags, int fd, off_t offset)
{
    void *area = mmap(0, pages * PAGE, prot, flags, fd, offset);
    if (area == MAP_FAILED)
        sc_die("mmap");
    return area;
}

static void check_bytes(off_t offset, const char *expected, size_t length, const char *what)
{
    char buffer[64];
    ssize_t n = pread(memfd_fd, buffer, length, offset);
    sc_check(n == (ssize_t)length && memcmp(buffer, expected, length) == 0, "%s: read %zd bytes at %lld through the fd",
             what, n, (long long)offset);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "mapped_unnamed");
    sc_install_sigterm(0);
    memfd_fd = memfd_create("mapped memfd", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    if (memfd_fd < 0 || ftruncate(memfd_fd, 4 * PAGE) != 0)
        sc_die("memfd_create");
    m_shared = map(4, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_fd, 0);
    for (int i = 0; i < 4; i++)
        memset(m_shared + i * PAGE, 'a' + i, PAGE);
    if (fcntl(memfd_fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0)
        sc_die("sealing the memfd");
    m_private = map(3, PROT_READ | PROT_WRITE, MAP_PRIVATE, memfd_fd, PAGE);
    m_private[0] = 'P';

    sc_path(deleted_path, sizeof deleted_path, "mapped-deleted");
    int fd = open(deleted_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, 2 * PAGE) != 0)
        sc_die("creating %s", deleted_path);
    d_shared = map(2, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    d_private = map(1, PROT_READ, MAP_PRIVATE, fd, PAGE);
    memset(d_shared, 'A', PAGE);
    memset(d_shared + PAGE, 'B', PAGE);
    if (close(fd) != 0 || unlink(deleted_path) != 0)
        sc_die("unlinking %s", deleted_path);

    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(mapped(m_shared, 4, "rw-s", 0, "/memfd:mapped memfd"), "M's shared area is not mapped as it was");
    sc_check(mapped(m_private, 3, "rw-p", PAGE, "/memfd:mapped memfd"), "M's private area is not mapped as it was");
    sc_check(mapped(d_shared, 2, "rw-s", 0, deleted_path), "D's shared area is not mapped as it was");
    sc_check(mapped(d_private, 1, "r--p", PAGE, deleted_path), "D's private area is not mapped as it was");
    for (int i = 0; i < 4; i++)
        sc_check(page_is(m_shared + i * PAGE, 'a' + i, 0), "M's page %d does not hold what it held", i);
    sc_check(m_private[0] == 'P' && page_is(m_private, 'b', 1), "M's private copy does not hold what it held");
    sc_check(page_is(m_private + PAGE, 'c', 0) && page_is(m_private + 2 * PAGE, 'd', 0),
             "M's private area does not hold the file's pages");
    sc_check(page_is(d_shared, 'A', 0) && page_is(d_shared + PAGE, 'B', 0) && page_is(d_private, 'B', 0),
             "D does not hold what it held");
    struct stat status = {0};
    sc_check(fstat(memfd_fd, &status) == 0 && status.st_size == 4 * PAGE && status.st_nlink == 0,
             "M is %lld bytes with %lu links", (long long)status.st_size, (unsigned long)status.st_nlink);
    sc_check(fcntl(memfd_fd, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), "M has the seals %#x",
             fcntl(memfd_fd, F_GET_SEALS));
    sc_check(access(deleted_path, F_OK) != 0 && errno == ENOENT, "D's name %s was taken", deleted_path);

    /* One file for the descriptor and both areas: a write through one shows where it is not copied. */
    sc_check(pwrite(memfd_fd, "fd-write", 8, 0) == 8 && pwrite(memfd_fd, "x", 1, PAGE) == 1 &&
                 pwrite(memfd_fd, "late", 4, 3 * PAGE) == 4,
             "cannot write M through the fd");
    sc_check(memcmp(m_shared, "fd-write", 8) == 0, "the write through M's fd does not show in its shared area");
    sc_check(m_private[0] == 'P', "the write through M's fd shows in the private copy");
    sc_check(memcmp(m_private + 2 * PAGE, "late", 4) == 0,
             "the write through M's fd does not show in the private area's page it did not copy");
    memcpy(m_shared + 2 * PAGE + 50, "parent", 6);
    check_bytes(2 * PAGE + 50, "parent", 6, "the write into M's shared area");

    /* The child maps the same files. */
    kill(child, SIGUSR1);
    int child_status;
    char text[64];
    pid_t r = sc_wait_child(child, &child_status, 20000);
    sc_check(r == child && WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0, "the child ended with %s",
             r == child ? sc_status_text(child_status, text, sizeof text) : "no status");
    check_bytes(PAGE + 100, "child", 5, "the child's write into M");
    sc_check(memcmp(m_shared + PAGE + 100, "child", 5) == 0, "the child's write into M does not show in the parent's area");
    sc_check(memcmp(d_shared + PAGE + 200, "child", 5) == 0 && memcmp(d_private + 200, "child", 5) == 0,
             "the child's write into D does not show in the parent's areas");
    sc_finish();
}
