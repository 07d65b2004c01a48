/*
 * deleted_cwd: this process and a child work in "removed-directory", made with mode 0750,
 * entered by both and removed. After SIGTERM both are still in it: the link reads
 * "<dir>/removed-directory (deleted)" as before, it has no link and its mode, the child's and
 * this process's are one directory, nothing can be made in it, and its name is free.
 */
#include "scenario.h"

static char directory[PATH_MAX];

int main(int argc, char **argv)
{
    sc_init(argc, argv, "deleted_cwd");
    sc_install_sigterm(0);
    sc_path(directory, sizeof directory, "removed-directory");
    if (mkdir(directory, 0750) != 0 || chmod(directory, 0750) != 0 || chdir(directory) != 0)
        sc_die("making and entering %s", directory);
    pid_t child = sc_fork_paused_child(NULL);
    sc_wait_in_pause(child);
    if (rmdir(directory) != 0)
        sc_die("removing %s", directory);
    char expected[PATH_MAX + 16];
    snprintf(expected, sizeof expected, "%s (deleted)", directory);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char link[64], cwd[PATH_MAX];
    ssize_t n = readlink("/proc/self/cwd", cwd, sizeof cwd - 1);
    cwd[n < 0 ? 0 : n] = 0;
    sc_check(strcmp(cwd, expected) == 0, "the working directory is '%s', expected '%s'", cwd, expected);
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)child);
    n = readlink(link, cwd, sizeof cwd - 1);
    cwd[n < 0 ? 0 : n] = 0;
    sc_check(strcmp(cwd, expected) == 0, "the child's working directory is '%s', expected '%s'", cwd, expected);
    struct stat own = {0}, childs = {0};
    sc_check(stat(".", &own) == 0 && S_ISDIR(own.st_mode) && own.st_nlink == 0 && (own.st_mode & 07777) == 0750 &&
                 own.st_uid == getuid(),
             "the working directory has %lu links, mode %o, uid %u; expected 0, 0750, %u", (unsigned long)own.st_nlink,
             own.st_mode & 07777, own.st_uid, getuid());
    sc_check(stat(link, &childs) == 0 && childs.st_dev == own.st_dev && childs.st_ino == own.st_ino,
             "the child works in another directory than this process");
    sc_check(open("made-in-it", O_WRONLY | O_CREAT | O_CLOEXEC, 0600) < 0 && errno == ENOENT,
             "a file could be made in the removed directory");
    sc_check(access(directory, F_OK) != 0 && errno == ENOENT, "%s has a name again", directory);
    int status;
    sc_check(kill(child, SIGKILL) == 0 && waitpid(child, &status, 0) == child, "the child %d is gone", (int)child);
    sc_finish();
}
