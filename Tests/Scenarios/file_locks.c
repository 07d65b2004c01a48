/*
 * file_locks: file locks of every kind that comes back, held by a root and its child.
 *  - "flock-ex": the root's flock LOCK_EX.
 *  - "flock-sh": a flock LOCK_SH on a description root and child share (inherited).
 *  - "records": the root's POSIX locks write 10-19, read 100-199, write 1000-EOF; the child's
 *    own read lock 150-249 through an open file of its own (two processes' read locks overlap).
 *  - "ofd": OFD locks on one description of the root: write 0-99, read 200-EOF.
 *  - "shm": the close rule. Both map it MAP_SHARED (as sqlite maps a WAL's -shm file), so the
 *    restorer opens it once for the tree and every process closes it at its clean-up, which
 *    drops every POSIX lock of that process on the file: the root holds write 0-0 and the
 *    child read 8-15 on it through fds of their own.
 * After SIGTERM a new process (not in the dumped tree) checks each: a flock of its own on a
 * new open file fails with EWOULDBLOCK where it must (and a shared one on "flock-sh" succeeds),
 * F_GETLK and F_OFD_GETLK report every lock with its range, type and owner (the root's or the
 * child's PID, or -1 for OFD), and the gaps between them as unlocked. The root checks its
 * common state and that the child is still there, then kills it.
 */
#include "scenario.h"
#include <sys/file.h>
#include <sys/mman.h>

static char flock_ex[PATH_MAX], flock_sh[PATH_MAX], records[PATH_MAX], ofd[PATH_MAX], shm[PATH_MAX];

static int open_file(const char *path, int flags)
{
    int fd = open(path, flags | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        sc_die("open %s", path);
    return fd;
}

static void set_lock(int fd, int command, short type, off_t start, off_t length)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = length};
    if (fcntl(fd, command, &lock) != 0)
        sc_die("lock %d-%lld on fd %d", (int)start, (long long)length, fd);
}

/* The child: its own read locks on "records" and "shm", through fds of its own. */
static void child_setup(void)
{
    set_lock(open_file(records, O_RDONLY), F_SETLK, F_RDLCK, 150, 100);
    set_lock(open_file(shm, O_RDWR), F_SETLK, F_RDLCK, 8, 8);
}

/* Whether `probe` (a write or read lock of `type` on `start`, `length`) is reported blocked by
 * exactly (`expect_type`, `expect_start`, `expect_length`, `expect_pid`), or free when
 * `expect_type` is F_UNLCK. */
static int reports(int fd, int command, short type, off_t start, off_t length, short expect_type, off_t expect_start,
    off_t expect_length, pid_t expect_pid)
{
    struct flock probe = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = length};
    if (fcntl(fd, command, &probe) != 0)
        return 0;
    if (expect_type == F_UNLCK)
        return probe.l_type == F_UNLCK;
    return probe.l_type == expect_type && probe.l_start == expect_start && probe.l_len == expect_length
        && probe.l_pid == expect_pid;
}

/* Runs in a new process: returns a bit per failed check (the process exits with the first one's number + 1). */
static int probe_locks(pid_t root, pid_t child)
{
    int failed = 0;
    int fd = open(flock_ex, O_RDONLY | O_CLOEXEC);
    if (!(fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK))
        failed |= 1 << 0;
    fd = open(flock_sh, O_RDONLY | O_CLOEXEC);
    if (!(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK))
        failed |= 1 << 1;
    if (!(fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == 0))
        failed |= 1 << 2;

    fd = open(records, O_RDWR | O_CLOEXEC);
    if (!reports(fd, F_GETLK, F_RDLCK, 10, 10, F_WRLCK, 10, 10, root))
        failed |= 1 << 3;
    if (!reports(fd, F_GETLK, F_WRLCK, 100, 50, F_RDLCK, 100, 100, root))
        failed |= 1 << 4;
    if (!reports(fd, F_GETLK, F_WRLCK, 200, 50, F_RDLCK, 150, 100, child))
        failed |= 1 << 5;
    if (!reports(fd, F_GETLK, F_RDLCK, 5000, 1, F_WRLCK, 1000, 0, root))
        failed |= 1 << 6;
    if (!reports(fd, F_GETLK, F_WRLCK, 20, 80, F_UNLCK, 0, 0, 0) || !reports(fd, F_GETLK, F_WRLCK, 250, 750, F_UNLCK, 0, 0, 0))
        failed |= 1 << 7;
    if (!reports(fd, F_GETLK, F_RDLCK, 100, 150, F_UNLCK, 0, 0, 0))
        failed |= 1 << 8;

    fd = open(ofd, O_RDWR | O_CLOEXEC);
    if (!reports(fd, F_OFD_GETLK, F_RDLCK, 50, 10, F_WRLCK, 0, 100, -1))
        failed |= 1 << 9;
    if (!reports(fd, F_OFD_GETLK, F_WRLCK, 300, 1, F_RDLCK, 200, 0, -1))
        failed |= 1 << 10;
    if (!reports(fd, F_OFD_GETLK, F_WRLCK, 100, 100, F_UNLCK, 0, 0, 0) || !reports(fd, F_OFD_GETLK, F_RDLCK, 200, 10, F_UNLCK, 0, 0, 0))
        failed |= 1 << 11;

    fd = open(shm, O_RDWR | O_CLOEXEC);
    if (!reports(fd, F_GETLK, F_RDLCK, 0, 1, F_WRLCK, 0, 1, root))
        failed |= 1 << 12;
    if (!reports(fd, F_GETLK, F_WRLCK, 0, 100, F_WRLCK, 0, 1, root) || !reports(fd, F_GETLK, F_WRLCK, 1, 100, F_RDLCK, 8, 8, child))
        failed |= 1 << 13;
    return failed;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "file_locks");
    sc_install_sigterm(0);
    sc_path(flock_ex, sizeof flock_ex, "flock-ex");
    sc_path(flock_sh, sizeof flock_sh, "flock-sh");
    sc_path(records, sizeof records, "records");
    sc_path(ofd, sizeof ofd, "ofd");
    sc_path(shm, sizeof shm, "shm");

    if (flock(open_file(flock_ex, O_RDWR), LOCK_EX) != 0)
        sc_die("flock LOCK_EX");
    if (flock(open_file(flock_sh, O_RDONLY), LOCK_SH) != 0)
        sc_die("flock LOCK_SH");
    int records_fd = open_file(records, O_RDWR);
    set_lock(records_fd, F_SETLK, F_WRLCK, 10, 10);
    set_lock(records_fd, F_SETLK, F_RDLCK, 100, 100);
    set_lock(records_fd, F_SETLK, F_WRLCK, 1000, 0);
    int ofd_fd = open_file(ofd, O_RDWR);
    set_lock(ofd_fd, F_OFD_SETLK, F_WRLCK, 0, 100);
    set_lock(ofd_fd, F_OFD_SETLK, F_RDLCK, 200, 0);
    int shm_fd = open_file(shm, O_RDWR);
    if (ftruncate(shm_fd, 4096) != 0)
        sc_die("ftruncate %s", shm);
    volatile char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (shared == MAP_FAILED)
        sc_die("mmap %s", shm);
    shared[0] = 1;
    set_lock(shm_fd, F_SETLK, F_WRLCK, 0, 1);
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    pid_t root = getpid();
    pid_t probe = fork();
    if (probe == 0) {
        int failed = probe_locks(root, child);
        _exit(failed ? 1 + __builtin_ctz(failed) : 0);
    }
    int status = 0;
    int reaped = probe > 0 && waitpid(probe, &status, 0) == probe;
    sc_check(reaped && WIFEXITED(status) && WEXITSTATUS(status) == 0, "a lock is not as it was: the probe's check %d failed (status 0x%x)",
        WIFEXITED(status) ? WEXITSTATUS(status) - 1 : -1, status);
    sc_check(shared[0] == 1, "the shared mapping of %s lost its byte", shm);
    sc_check(kill(child, 0) == 0, "the child %d is gone", (int)child);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sc_finish();
}
