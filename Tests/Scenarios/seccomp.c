/*
 * seccomp: filter chains, shared and per thread. With no_new_privs the main thread installs
 * a filter that kills the process on getpriority and a second that makes getitimer fail with
 * EXDEV (a chain of 2); a second thread, which inherits both, adds its own filter making
 * getrusage fail with ENOTTY (a chain of 3). Amber's dump injects getitimer itself: without
 * the filters suspended it would fail.
 * After SIGTERM: Seccomp 2 and the filter counts of both threads in /proc, getitimer fails
 * with EXDEV, permitted calls work (getrusage in the main thread), a forked child that calls
 * getpriority dies by SIGSYS; the second thread sees its own filter, then installs one more
 * with SECCOMP_FILTER_FLAG_TSYNC, which succeeds only if the two filters it shares with the
 * main thread are the main thread's very filters.
 */
#include "scenario.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/time.h>

static char worker_result[512];
static volatile int go;
static volatile pid_t worker_tid;
static pthread_barrier_t ready;

/* A filter that answers `ret` for syscall `nr` and allows everything else. */
static long install(int nr, unsigned ret, unsigned flags)
{
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, ret),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {sizeof program / sizeof program[0], program};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

/* "Seccomp:" and "Seccomp_filters:" of /proc/self/task/TID/status; 0 when read. */
static int seccomp_status(pid_t tid, int *mode, int *filters)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *m = strstr(buf, "\nSeccomp:"), *f = strstr(buf, "\nSeccomp_filters:");
    if (!m || !f)
        return -1;
    *mode = atoi(m + 9);
    *filters = atoi(f + 17);
    return 0;
}

static void *worker(void *arg)
{
    (void)arg;
    if (install(SYS_getrusage, SECCOMP_RET_ERRNO | ENOTTY, 0) != 0)
        sc_die("worker: seccomp filter");
    worker_tid = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    while (!go)
        sc_sleep_ms(10);
    size_t len = 0;
#define NOTE(...) len += (size_t)snprintf(worker_result + len, len < sizeof worker_result ? sizeof worker_result - len : 0, __VA_ARGS__)
    struct rusage usage;
    errno = 0;
    if (getrusage(RUSAGE_THREAD, &usage) != -1 || errno != ENOTTY)
        NOTE("worker: getrusage gave errno %d, expected ENOTTY from its own filter; ", errno);
    struct itimerval timer;
    errno = 0;
    if (getitimer(ITIMER_REAL, &timer) != -1 || errno != EXDEV)
        NOTE("worker: getitimer gave errno %d, expected EXDEV from the inherited filter; ", errno);
    long synced = install(SYS_acct, SECCOMP_RET_ERRNO | EPERM, SECCOMP_FILTER_FLAG_TSYNC);
    if (synced != 0)
        NOTE("worker: a TSYNC filter returned %ld (errno %d): the threads do not share their first two filters; ", synced, errno);
#undef NOTE
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "seccomp");
    sc_install_sigterm(0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sc_die("PR_SET_NO_NEW_PRIVS");
    if (install(SYS_getpriority, SECCOMP_RET_KILL_PROCESS, 0) != 0 || install(SYS_getitimer, SECCOMP_RET_ERRNO | EXDEV, 0) != 0)
        sc_die("seccomp filters");
    pthread_t thread;
    sc_start_workers(&thread, 1, worker, &ready);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    int mode = -1, filters = -1;
    if (sc_check(seccomp_status(getpid(), &mode, &filters) == 0, "cannot read the main thread's seccomp status"))
        sc_check(mode == 2 && filters == 2, "main thread: Seccomp %d with %d filters, expected 2 with 2", mode, filters);
    if (sc_check(seccomp_status(worker_tid, &mode, &filters) == 0, "cannot read the worker's seccomp status"))
        sc_check(mode == 2 && filters == 3, "worker: Seccomp %d with %d filters, expected 2 with 3", mode, filters);
    struct itimerval timer;
    errno = 0;
    sc_check(getitimer(ITIMER_REAL, &timer) == -1 && errno == EXDEV, "getitimer gave errno %d, expected EXDEV from the second filter", errno);
    struct rusage usage;
    sc_check(getrusage(RUSAGE_SELF, &usage) == 0, "getrusage, which the main thread's filters allow, failed: %s", strerror(errno));

    pid_t child = fork();
    if (child == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        syscall(SYS_getpriority, PRIO_PROCESS, 0);
        _exit(0);
    }
    if (sc_check(child > 0, "fork: %s", strerror(errno))) {
        int st = 0;
        char text[64];
        pid_t r = sc_wait_child(child, &st, 5000);
        if (sc_check(r == child, "waitpid(%d) returned %d", (int)child, (int)r))
            sc_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "the child that called getpriority ended with %s, expected SIGSYS",
                     sc_status_text(st, text, sizeof text));
    }

    go = 1;
    pthread_join(thread, NULL);
    sc_check(worker_result[0] == 0, "%s", worker_result);
    sc_finish();
}
