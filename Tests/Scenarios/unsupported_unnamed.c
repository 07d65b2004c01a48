/*
 * unsupported_unnamed: a file without a name amber refuses, by the flag given:
 *   --memfd-outside    a memfd a process outside the tree holds open too (a grandchild,
 *                      orphaned at once, which exits when this process is gone)
 *   --memfd-mapped-outside  a memfd such a process maps (its fd closed)
 *   --deleted-outside  a deleted file such a process holds open too
 *   --future-write-map  a memfd this process maps shared, then sealed with F_SEAL_FUTURE_WRITE
 *   --deleted-in-removed  a deleted file whose directory was removed too
 *   --tmpfile-linked   an O_TMPFILE file linked since as "linked" (its link still shows "#INODE")
 * After SIGTERM it checks the file still holds what it held.
 */
#include "scenario.h"
#include <sys/mman.h>

static void outside_holder(int fd, int map)
{
    pid_t parent = getpid();
    if (sc_fork_outside() == 0) {
        if (map) {
            if (mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
                _exit(1);
            close(fd);
        }
        while (kill(parent, 0) == 0)
            sleep(1);
        _exit(0);
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_unnamed");
    sc_install_sigterm(0);
    int fd;
    char path[PATH_MAX];
    if (sc_has_flag("--deleted-in-removed")) {
        char removed[PATH_MAX];
        sc_path(removed, sizeof removed, "removed");
        sc_fmt(path, sizeof path, "%s/gone", removed);
        if (mkdir(removed, 0700) != 0)
            sc_die("mkdir %s", removed);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || unlink(path) != 0 || rmdir(removed) != 0)
            sc_die("creating and removing %s", path);
    } else if (sc_has_flag("--deleted-outside")) {
        sc_path(path, sizeof path, "gone");
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || unlink(path) != 0)
            sc_die("creating and removing %s", path);
    } else if (sc_has_flag("--tmpfile-linked")) {
        char from[64];
        fd = open(sc_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        sc_fmt(from, sizeof from, "/proc/self/fd/%d", fd);
        sc_path(path, sizeof path, "linked");
        if (fd < 0 || linkat(AT_FDCWD, from, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0)
            sc_die("linking an O_TMPFILE file as %s", path);
    } else if (sc_has_flag("--future-write-map")) {
        fd = memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    } else {
        fd = memfd_create("held", MFD_CLOEXEC);
    }
    if (fd < 0 || pwrite(fd, "still here", 10, 0) != 10 || ftruncate(fd, 4096) != 0)
        sc_die("making the file");
    if (sc_has_flag("--memfd-outside") || sc_has_flag("--deleted-outside"))
        outside_holder(fd, 0);
    else if (sc_has_flag("--memfd-mapped-outside"))
        outside_holder(fd, 1);
    else if (sc_has_flag("--future-write-map")) {
        if (mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED ||
            fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0)
            sc_die("mmap and seal");
    } else if (!sc_has_flag("--deleted-in-removed") && !sc_has_flag("--tmpfile-linked"))
        sc_die("no flag");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    char buffer[10];
    sc_check(pread(fd, buffer, 10, 0) == 10 && memcmp(buffer, "still here", 10) == 0, "the file changed");
    sc_finish();
}
