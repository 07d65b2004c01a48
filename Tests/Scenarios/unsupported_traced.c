/*
 * unsupported_traced: the root traces its child (PTRACE_SEIZE, then PTRACE_INTERRUPT: the child
 * sits in a ptrace stop), as a debugger would. A task has one tracer and amber cannot restore
 * the tracing: `amber dump` must refuse, naming the child and its tracer, and leave both as
 * they were. After SIGTERM the root checks the child is still its tracee, stopped, then lets it
 * go, kills and reaps it.
 * With --outside the root traces a process outside the tree instead: a grandchild whose parent
 * exited, so that the test's subreaper is its parent. The dump's kill would detach it, so
 * `amber dump` must refuse, naming the root and that process; after SIGTERM the root checks it
 * still traces it, stopped, then lets it go and kills it (the subreaper reaps it).
 */
#include "scenario.h"
#include <sys/ptrace.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_traced");
    sc_install_sigterm(0);
    int outside = sc_has_flag("--outside");
    pid_t child;
    if (outside) {
        child = sc_fork_outside();
        if (child == 0) {
            for (;;)
                pause();
        }
    } else {
        child = sc_fork_paused_child(NULL);
    }
    if (ptrace(PTRACE_SEIZE, child, NULL, NULL) != 0)
        sc_die("PTRACE_SEIZE");
    if (ptrace(PTRACE_INTERRUPT, child, NULL, NULL) != 0)
        sc_die("PTRACE_INTERRUPT");
    int status;
    if (waitpid(child, &status, __WALL) != child || !WIFSTOPPED(status))
        sc_die("waitpid for the ptrace stop");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)child);
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (sc_check(n > 0, "the child %d has no /proc entry", (int)child)) {
        text[n] = 0;
        char *tracer = strstr(text, "TracerPid:");
        sc_check(tracer && atoi(tracer + 10) == getpid(), "the child's tracer is no longer the root");
        sc_check(strstr(text, "State:\tt") != NULL, "the child is no longer in its ptrace stop");
    }
    sc_check(ptrace(PTRACE_DETACH, child, NULL, NULL) == 0, "PTRACE_DETACH: %s", strerror(errno));
    kill(child, SIGKILL);
    if (outside)
        sc_finish();
    pid_t r = waitpid(child, &status, 0);
    sc_check(r == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child did not die from SIGKILL (status %#x)", status);
    sc_finish();
}
