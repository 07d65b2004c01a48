/*
 * zombies: children that have ended and are left unreaped at dump time.
 *
 * Six children, each named "zombie-N" (prctl) before it ends: three exit with 3, 7 and 42,
 * one exits with 0, one kills itself with SIGUSR2 (default action, no core), one is killed
 * by the parent with SIGKILL. SIGCHLD is blocked, so it stays pending in the parent. The
 * parent is ready once waitid(WNOWAIT) reports every one of them ended (with its status), so
 * all six are zombies when the scenario is dumped; a seventh child stays alive in pause()
 * so the tree also has a live member.
 *
 * After SIGTERM: each zombie is still there as our child: /proc/PID/stat says state Z,
 * parent us, its name; waitid(P_PID, WNOWAIT) reports the same si_code and si_status; SIGCHLD
 * is still pending. Then waitpid(-1) reaps them one by one: every PID returned is one of
 * ours, exactly once, with its own exit status or signal; the live child is then killed and
 * reaped (SIGKILL), and waitpid(-1) says ECHILD.
 */
#include "scenario.h"

#define NZ 6
struct child {
    pid_t pid;
    int exit_code;  /* -1: ends by a signal */
    int signal;     /* the signal that ends it */
    int by_parent;  /* the parent sends the signal */
    int reaped;
    char name[16];
};

static struct child kids[NZ] = {
    {0, 3, 0, 0, 0, ""},        {0, 7, 0, 0, 0, ""},       {0, 42, 0, 0, 0, ""},
    {0, 0, 0, 0, 0, ""},        {0, -1, SIGUSR2, 0, 0, ""}, {0, -1, SIGKILL, 1, 0, ""},
};
static pid_t live_child;

static int expected_code(const struct child *c) { return c->exit_code >= 0 ? CLD_EXITED : CLD_KILLED; }
static int expected_status(const struct child *c) { return c->exit_code >= 0 ? c->exit_code : c->signal; }

static char proc_state(pid_t pid, pid_t *ppid, char *comm, size_t size)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close)
        return 0;
    snprintf(comm, size, "%.*s", (int)(close - open - 1), open + 1);
    char state;
    int pp;
    if (sscanf(close + 1, " %c %d", &state, &pp) != 2)
        return 0;
    *ppid = pp;
    return state;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "zombies");
    sc_install_sigterm(0);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
        sc_die("sigprocmask");

    for (int i = 0; i < NZ; i++) {
        struct child *c = &kids[i];
        snprintf(c->name, sizeof c->name, "zombie-%d", i);
        pid_t pid = fork();
        if (pid < 0)
            sc_die("fork");
        if (pid == 0) {
            prctl(PR_SET_NAME, c->name, 0, 0, 0);
            if (c->exit_code >= 0)
                _exit(c->exit_code);
            if (!c->by_parent) {
                signal(c->signal, SIG_DFL);
                sigset_t s;
                sigemptyset(&s);
                sigprocmask(SIG_SETMASK, &s, NULL);
                kill(getpid(), c->signal);
            }
            for (;;)
                pause();
        }
        c->pid = pid;
    }
    live_child = fork();
    if (live_child < 0)
        sc_die("fork");
    if (live_child == 0) {
        prctl(PR_SET_NAME, "zombies-live", 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        pid_t parent = getppid();
        while (getppid() == parent) /* gone with the parent if its setup fails */
            sc_sleep_ms(20);
        _exit(4);
    }

    /* wait (without reaping) until each has ended as designed */
    for (int i = 0; i < NZ; i++) {
        struct child *c = &kids[i];
        if (c->by_parent) {
            /* wait until it runs under its own name, then kill it */
            char comm[32];
            pid_t pp;
            int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 5000000000LL;
            while (!(proc_state(c->pid, &pp, comm, sizeof comm) && strcmp(comm, c->name) == 0)) {
                if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
                    sc_die("child %d never named itself", i);
                sc_sleep_ms(1);
            }
            if (kill(c->pid, c->signal) < 0)
                sc_die("kill %d", (int)c->pid);
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOWAIT) < 0)
            sc_die("waitid %d", (int)c->pid);
        errno = 0;
        if (si.si_pid != c->pid || si.si_code != expected_code(c) || si.si_status != expected_status(c))
            sc_die("child %d (pid %d) ended with code %d status %d, expected %d %d", i, (int)c->pid, si.si_code,
                   si.si_status, expected_code(c), expected_status(c));
    }
    sigset_t pend;
    sigpending(&pend);
    errno = 0;
    if (!sigismember(&pend, SIGCHLD))
        sc_die("SIGCHLD is not pending");

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sigpending(&pend);
    sc_check(sigismember(&pend, SIGCHLD), "SIGCHLD is no longer pending");
    for (int i = 0; i < NZ; i++) {
        struct child *c = &kids[i];
        char comm[32] = "";
        pid_t pp = -1;
        char st = proc_state(c->pid, &pp, comm, sizeof comm);
        sc_check(st == 'Z', "child %d (pid %d) is in state '%c', not a zombie", i, (int)c->pid, st ? st : '?');
        sc_check(pp == getpid(), "zombie %d (pid %d) has parent %d", i, (int)c->pid, (int)pp);
        sc_check(strcmp(comm, c->name) == 0, "zombie %d (pid %d) is named '%s', was '%s'", i, (int)c->pid, comm,
                 c->name);
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOWAIT | WNOHANG);
        if (sc_check(r == 0 && si.si_pid == c->pid, "waitid(WNOWAIT) for zombie %d (pid %d): r %d si_pid %d (%s)", i,
                     (int)c->pid, r, (int)si.si_pid, strerror(errno)))
            sc_check(si.si_code == expected_code(c) && si.si_status == expected_status(c),
                     "zombie %d (pid %d): si_code %d si_status %d, expected %d %d", i, (int)c->pid, si.si_code,
                     si.si_status, expected_code(c), expected_status(c));
    }
    sc_check(kill(live_child, 0) == 0, "the live child %d is gone", (int)live_child);

    /* reap them in whatever order the kernel gives */
    for (int n = 0; n < NZ; n++) {
        int status = 0;
        pid_t r = waitpid(-1, &status, WNOHANG);
        if (!sc_check(r > 0, "waitpid(-1) #%d returned %d (%s) with %d zombies left", n, (int)r,
                      r < 0 ? strerror(errno) : "nothing ready", NZ - n))
            break;
        int found = 0;
        for (int i = 0; i < NZ; i++) {
            struct child *c = &kids[i];
            if (c->pid != r)
                continue;
            found = 1;
            sc_check(!c->reaped, "zombie %d (pid %d) reaped twice", i, (int)r);
            c->reaped = 1;
            char s[64];
            if (c->exit_code >= 0)
                sc_check(WIFEXITED(status) && WEXITSTATUS(status) == c->exit_code,
                         "zombie %d (pid %d): %s, expected exit %d", i, (int)r, sc_status_text(status, s, sizeof s),
                         c->exit_code);
            else
                sc_check(WIFSIGNALED(status) && WTERMSIG(status) == c->signal && !WCOREDUMP(status),
                         "zombie %d (pid %d): %s, expected signal %d", i, (int)r, sc_status_text(status, s, sizeof s),
                         c->signal);
        }
        sc_check(found, "waitpid(-1) returned %d, which is not one of the zombies", (int)r);
    }
    for (int i = 0; i < NZ; i++)
        sc_check(kids[i].reaped, "zombie %d (pid %d) was never reaped", i, (int)kids[i].pid);

    int status;
    kill(live_child, SIGKILL);
    pid_t r = sc_wait_child(live_child, &status, 5000);
    sc_check(r == live_child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
             "the live child %d: waitpid returned %d, status %#x", (int)live_child, (int)r, status);
    r = waitpid(-1, &status, WNOHANG);
    sc_check(r < 0 && errno == ECHILD, "an unexpected child is left (waitpid(-1) returned %d)", (int)r);
    sc_finish();
}
