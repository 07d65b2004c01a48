/*
 * child_pause: a process with a child process (the child sleeps in pause()).
 * After SIGTERM the parent checks the child is still alive and its child, kills it and
 * reaps it (it must die from that SIGKILL, not before). The child dies with the parent
 * (PR_SET_PDEATHSIG), so a killed scenario leaves nothing behind.
 * --ignore-sigchld: the parent ignores SIGCHLD (SIG_IGN), so the kernel reaps its children
 * itself: after SIGTERM SIGCHLD is still ignored, and the killed child leaves no zombie
 * (waitpid waits for it, then fails with ECHILD).
 */
#include "scenario.h"
#include <sys/wait.h>

static pid_t child;

int main(int argc, char **argv)
{
    sc_init(argc, argv, "child_pause");
    sc_install_sigterm(0);
    int ignores = sc_has_flag("--ignore-sigchld");
    if (ignores)
        signal(SIGCHLD, SIG_IGN);
    child = sc_fork_paused_child(NULL);
    /* ready once the child sleeps in pause() */
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    int status;
    pid_t r = waitpid(child, &status, WNOHANG);
    sc_check(r == 0, "the child %d is gone (waitpid returned %d)", (int)child, (int)r);
    if (r == 0) {
        /* a dump stops it for a moment: it must be back in pause() (no time limit of our own) */
        sc_wait_in_pause(child);
        char path[64], stat[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
        ssize_t n = sc_read_file(path, stat, sizeof stat - 1);
        if (sc_check(n > 0, "the child %d has no /proc entry", (int)child)) {
            stat[n] = 0;
            char *p = strrchr(stat, ')');
            char state = 0;
            int ppid = 0;
            if (p)
                sscanf(p + 1, " %c %d", &state, &ppid);
            sc_check(ppid == getpid(), "the child's parent is %d", ppid);
            sc_check(state == 'S', "the child is in state %c, expected S", state);
        }
        kill(child, SIGKILL);
        r = waitpid(child, &status, 0);
        if (ignores) {
            struct sigaction action;
            sc_check(sigaction(SIGCHLD, NULL, &action) == 0 && action.sa_handler == SIG_IGN, "SIGCHLD is not ignored");
            sc_check(r < 0 && errno == ECHILD && kill(child, 0) != 0, "the killed child was not reaped by the kernel");
        } else {
            sc_check(r == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                     "the child did not die from SIGKILL (status %#x)", status);
        }
    }
    sc_finish();
}
