/*
 * unsupported_shared_fd_table: a child made with clone(CLONE_FILES) shares its parent's
 * descriptor table; a descriptor the child opens shows up in the parent. A restored tree has
 * one table per process, so `amber dump` must refuse, naming the child and the table, and
 * leave both running, untraced. After SIGTERM the parent checks the table is still shared
 * (a descriptor it opens appears in the child's /proc fd directory), then kills and reaps the
 * child. The child dies with the parent (PR_SET_PDEATHSIG).
 */
#include "scenario.h"
#include <sched.h>
#include <sys/wait.h>

static pid_t child;

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_shared_fd_table");
    sc_install_sigterm(0);
    child = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, NULL);
    if (child < 0)
        sc_die("clone(CLONE_FILES)");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        for (;;)
            pause();
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)child, fd);
    sc_check(fd >= 0 && access(path, F_OK) == 0, "fd %d opened by the parent is not in the child's table", fd);
    close(fd);
    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child %d is gone", (int)child);
    kill(child, SIGKILL);
    sc_check(waitpid(child, &status, 0) == child && WIFSIGNALED(status), "the child did not die from SIGKILL");
    sc_finish();
}
