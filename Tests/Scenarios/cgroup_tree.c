/*
 * cgroup_tree: a process and its child in cgroups the test made.
 *   --join DIR        the process moves itself into the cgroup directory DIR (repeatable)
 *   --unshare         then makes a cgroup namespace of its own (rooted at those cgroups)
 *   --then-join DIR   after that, moves itself into DIR (repeatable): the namespace's root
 *                     cgroup then holds no process, and may enable v2 controllers below it
 *   --child-join DIR  the child, forked after, moves itself into DIR (repeatable)
 *   --child-unshare   the child makes a cgroup namespace of its own (which amber refuses)
 * At ready it keeps its /proc/self/cgroup and its child's /proc/PID/cgroup. After SIGTERM both
 * must read the same (in a cgroup namespace, relative to its root: the same even when the
 * restore put the tree elsewhere), and the child must still be its paused child.
 */
#include "scenario.h"

#define MAX_JOINS 8

static const char *joins[MAX_JOINS], *child_joins[MAX_JOINS], *then_joins[MAX_JOINS];
static int njoins, nchild_joins, nthen_joins, unshare_own, child_unshare;
static char own_before[4096], child_before[4096];
static pid_t child;

static void join(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
        fprintf(stderr, "cgroup_tree: cannot join %s: %s\n", dir, strerror(errno));
        _exit(2);
    }
    close(fd);
}

static void read_cgroup(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    ssize_t n = sc_read_file(path, out, size - 1);
    out[n > 0 ? n : 0] = 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "cgroup_tree");
    for (int i = 0; i < sc_argc_extra; i++) {
        const char *arg = sc_argv_extra[i];
        if (!strcmp(arg, "--join") && i + 1 < sc_argc_extra && njoins < MAX_JOINS)
            joins[njoins++] = sc_argv_extra[++i];
        else if (!strcmp(arg, "--child-join") && i + 1 < sc_argc_extra && nchild_joins < MAX_JOINS)
            child_joins[nchild_joins++] = sc_argv_extra[++i];
        else if (!strcmp(arg, "--then-join") && i + 1 < sc_argc_extra && nthen_joins < MAX_JOINS)
            then_joins[nthen_joins++] = sc_argv_extra[++i];
        else if (!strcmp(arg, "--unshare"))
            unshare_own = 1;
        else if (!strcmp(arg, "--child-unshare"))
            child_unshare = 1;
    }
    sc_install_sigterm(0);
    for (int i = 0; i < njoins; i++)
        join(joins[i]);
    if (unshare_own && unshare(CLONE_NEWCGROUP) != 0) {
        fprintf(stderr, "cgroup_tree: unshare(CLONE_NEWCGROUP): %s\n", strerror(errno));
        return 2;
    }
    for (int i = 0; i < nthen_joins; i++)
        join(then_joins[i]);
    int ready[2];
    if (pipe(ready) != 0)
        return 2;
    child = fork();
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 0; i < nchild_joins; i++)
            join(child_joins[i]);
        if (child_unshare && unshare(CLONE_NEWCGROUP) != 0)
            _exit(2);
        close(ready[0]);
        close(ready[1]);
        for (;;)
            pause();
    }
    close(ready[1]);
    char byte;
    /* the child closes its end once it is in its cgroups */
    while (read(ready[0], &byte, 1) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    sc_wait_in_pause(child);
    read_cgroup(getpid(), own_before, sizeof own_before);
    read_cgroup(child, child_before, sizeof child_before);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char own_after[4096], child_after[4096];
    read_cgroup(getpid(), own_after, sizeof own_after);
    read_cgroup(child, child_after, sizeof child_after);
    sc_check(!strcmp(own_before, own_after), "its cgroups were [%s], now [%s]", own_before, own_after);
    sc_check(!strcmp(child_before, child_after), "its child's cgroups were [%s], now [%s]", child_before,
             child_after);
    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child %d is gone", (int)child);
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    sc_finish();
}
