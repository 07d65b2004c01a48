/*
 * unsupported_lock: a process holding a file lock, which restore cannot take again yet. One
 * option picks which: --flock (flock LOCK_EX), --posix (fcntl F_SETLK write lock), --ofd
 * (fcntl F_OFD_SETLK write lock), --lease (fcntl F_SETLEASE read lease). `amber dump` must
 * refuse, naming the kind of lock and the file, and leave the process running. After SIGTERM
 * it checks it still holds the lock: another open file (or, for a POSIX lock, a child) sees it.
 */
#include "scenario.h"
#include <sys/file.h>

static char path[PATH_MAX];

/* Whether a write lock on the whole file through a new open file would conflict. */
static int ofd_conflicts(void)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int result = fcntl(fd, F_OFD_GETLK, &probe) == 0 ? probe.l_type != F_UNLCK : -1;
    close(fd);
    return result;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_lock");
    sc_install_sigterm(0);
    sc_path(path, sizeof path, "locked-file");
    int lease = sc_has_flag("--lease");
    int fd = open(path, (lease ? O_RDONLY : O_RDWR) | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && lease) {
        int created = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (created < 0)
            sc_die("creating %s", path);
        close(created);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        sc_die("open %s", path);
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (sc_has_flag("--flock")) {
        if (flock(fd, LOCK_EX) != 0)
            sc_die("flock");
    } else if (sc_has_flag("--posix")) {
        if (fcntl(fd, F_SETLK, &whole) != 0)
            sc_die("F_SETLK");
    } else if (sc_has_flag("--ofd")) {
        if (fcntl(fd, F_OFD_SETLK, &whole) != 0)
            sc_die("F_OFD_SETLK");
    } else if (lease) {
        if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0)
            sc_die("F_SETLEASE");
    } else {
        sc_die("which lock: --flock, --posix, --ofd or --lease");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--flock")) {
        int other = open(path, O_RDONLY | O_CLOEXEC);
        sc_check(other >= 0 && flock(other, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK, "the flock lock is no longer held");
        close(other);
    } else if (sc_has_flag("--posix")) {
        pid_t c = fork();
        if (c == 0) {
            struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            _exit(fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_WRLCK && probe.l_pid == getppid() ? 0 : 1);
        }
        int status;
        sc_check(c > 0 && waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the POSIX lock is no longer held");
    } else if (sc_has_flag("--ofd")) {
        sc_check(ofd_conflicts() == 1, "the OFD lock is no longer held");
    } else {
        sc_check(fcntl(fd, F_GETLEASE) == F_RDLCK, "the lease is no longer held (F_GETLEASE %d)", fcntl(fd, F_GETLEASE));
    }
    sc_finish();
}
