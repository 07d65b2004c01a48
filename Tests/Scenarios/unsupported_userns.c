/*
 * unsupported_userns: a child in a user namespace of its own (unshare(CLONE_NEWUSER), no ID
 * maps). Its IDs and capabilities are relative to that namespace: `amber dump` must refuse,
 * naming the child and the user namespace, and leave the tree running untouched. After SIGTERM
 * the parent checks the child is still alive in its own namespace, kills it and reaps it.
 */
#include "scenario.h"

static int in_own_user_namespace(pid_t pid)
{
    char path[64], theirs[64] = "", ours[64] = "";
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    if (readlink(path, theirs, sizeof theirs - 1) < 0 || readlink("/proc/self/ns/user", ours, sizeof ours - 1) < 0)
        return 0;
    return strcmp(theirs, ours) != 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_userns");
    sc_install_sigterm(0);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        sc_die("pipe2");
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        close(ready[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        if (unshare(CLONE_NEWUSER) < 0)
            sc_die("unshare(CLONE_NEWUSER)");
        if (write(ready[1], "r", 1) != 1)
            _exit(2);
        close(ready[1]);
        for (;;)
            pause();
    }
    close(ready[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1)
        sc_die("the child did not get ready");
    close(ready[0]);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    int status;
    pid_t r = waitpid(child, &status, WNOHANG);
    sc_check(r == 0, "the child %d is gone (waitpid returned %d)", (int)child, (int)r);
    sc_check(in_own_user_namespace(child), "the child is not in a user namespace of its own");
    kill(child, SIGKILL);
    r = waitpid(child, &status, 0);
    sc_check(r == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
             "the child did not die from SIGKILL (status %#x)", status);
    sc_finish();
}
