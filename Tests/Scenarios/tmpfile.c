/*
 * tmpfile: O_TMPFILE files in the scenario's directory.
 *   "open": made by O_TMPFILE read-write, holding "open data", left at offset 4, shared by a child;
 *   "mapped": made by O_TMPFILE, holding "mapped data", mapped shared, its fd closed.
 * After SIGTERM: each holds what it held; "open" is still unnamed ("#INODE (deleted)" of its own
 * inode) and can be linked, and then holds what the child wrote through its copy; the mapping
 * still is the file.
 */
#include "scenario.h"
#include <sys/mman.h>

static int open_fd;
static char *mapped;

static void on_usr1(int signal)
{
    (void)signal;
    if (pwrite(open_fd, "child", 5, 100) != 5)
        _exit(3);
    _exit(0);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

static int make_temporary(const char *contents)
{
    int fd = open(sc_dir, O_TMPFILE | O_RDWR, 0640);
    if (fd < 0 || pwrite(fd, contents, strlen(contents), 0) != (ssize_t)strlen(contents))
        sc_die("O_TMPFILE in %s", sc_dir);
    return fd;
}

static int link_to(int fd, const char *name)
{
    char from[64], to[PATH_MAX];
    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    sc_path(to, sizeof to, name);
    return linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW);
}

static void check_bytes(int fd, off_t offset, const char *expected, const char *what)
{
    char buffer[64];
    size_t length = strlen(expected);
    ssize_t n = pread(fd, buffer, length, offset);
    sc_check(n == (ssize_t)length && memcmp(buffer, expected, length) == 0, "%s: read %zd bytes, not \"%s\"", what, n,
             expected);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "tmpfile");
    sc_install_sigterm(0);
    open_fd = make_temporary("open data");
    if (lseek(open_fd, 4, SEEK_SET) != 4)
        sc_die("seeking the O_TMPFILE file");
    int mapped_fd = make_temporary("mapped data");
    mapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mapped_fd, 0);
    if (mapped == MAP_FAILED || ftruncate(mapped_fd, 4096) != 0)
        sc_die("mapping the O_TMPFILE file");
    close(mapped_fd);
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_bytes(open_fd, 0, "open data", "the O_TMPFILE file");
    sc_check(lseek(open_fd, 0, SEEK_CUR) == 4, "the O_TMPFILE file's offset moved");
    struct stat status = {0};
    char link[PATH_MAX] = {0}, expected[PATH_MAX], path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", open_fd);
    sc_check(fstat(open_fd, &status) == 0 && status.st_nlink == 0 && (status.st_mode & 07777) == 0640,
             "the O_TMPFILE file has %lu links, mode %o", (unsigned long)status.st_nlink, status.st_mode & 07777);
    sc_fmt(expected, sizeof expected, "%s/#%lu (deleted)", sc_dir, (unsigned long)status.st_ino);
    sc_check(readlink(path, link, sizeof link - 1) > 0 && strcmp(link, expected) == 0,
             "the O_TMPFILE file's link is \"%s\", not \"%s\"", link, expected);
    sc_check(memcmp(mapped, "mapped data", 11) == 0, "the mapped O_TMPFILE file lost its data");

    kill(child, SIGUSR1);
    int wait_status;
    sc_check(waitpid(child, &wait_status, 0) == child && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0,
             "the child did not write to the O_TMPFILE file");
    sc_check(link_to(open_fd, "open-linked") == 0, "the O_TMPFILE file cannot be linked: %s", strerror(errno));
    char open_linked[PATH_MAX];
    sc_path(open_linked, sizeof open_linked, "open-linked");
    int by_name = open(open_linked, O_RDONLY);
    check_bytes(by_name, 0, "open data", "the O_TMPFILE file linked after the restore");
    check_bytes(by_name, 100, "child", "the child's write, by the name linked");
    close(by_name);
    sc_finish();
}
