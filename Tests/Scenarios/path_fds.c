/*
 * path_fds: descriptors opened with O_PATH, on a regular file (path.dat, in the directory of
 * --outfile) and on that directory (O_PATH | O_DIRECTORY).
 *
 * After SIGTERM: both are still O_PATH (F_GETFL, also in the common check) and the same
 * files (device and inode), and the directory one still works as a dirfd for openat.
 */
#include "scenario.h"

static int file_fd, dir_fd;
static char file_path[PATH_MAX];

static void check_same(int fd, const char *path)
{
    struct stat have, want;
    sc_check(fstat(fd, &have) == 0 && stat(path, &want) == 0 && have.st_dev == want.st_dev && have.st_ino == want.st_ino,
             "fd %d is not %s", fd, path);
    int flags = fcntl(fd, F_GETFL);
    sc_check(flags >= 0 && (flags & O_PATH), "fd %d (%s) is not O_PATH: flags 0%o", fd, path, flags);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "path_fds");
    sc_install_sigterm(0);
    sc_path(file_path, sizeof file_path, "path.dat");
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sc_write_all(fd, "path", 4) < 0 || close(fd) < 0)
        sc_die("creating %s", file_path);
    file_fd = open(file_path, O_PATH);
    dir_fd = open(sc_dir, O_PATH | O_DIRECTORY);
    if (file_fd < 0 || dir_fd < 0)
        sc_die("open O_PATH");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_same(file_fd, file_path);
    check_same(dir_fd, sc_dir);
    int through = openat(dir_fd, "path.dat", O_RDONLY | O_CLOEXEC);
    char buf[4];
    sc_check(through >= 0 && read(through, buf, 4) == 4 && memcmp(buf, "path", 4) == 0,
             "openat through the O_PATH directory fd fails");
    if (through >= 0)
        close(through);
    sc_finish();
}
