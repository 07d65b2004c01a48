/*
 * interrupted_waits: threads blocked without a time limit in calls the kernel ends with EINTR
 * when their thread stops, and never restarts (signal(7)): epoll_wait(-1) and epoll_pwait2
 * (no timeout), each on an eventfd of its own, and sigwaitinfo for SIGUSR1; and poll(-1) on an
 * eventfd, which the kernel resumes after a stop as restart_syscall, no longer poll to a later
 * dump. A dump's freeze ends each such wait; the thread must go on waiting, after a restore as
 * in a process left running, and after a restore that follows a dump that left it running. After SIGTERM the main thread wakes each (a write to its eventfd, SIGUSR1 to the
 * thread), and each must have returned only then, with what woke it.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

enum { EPOLL_WAIT, SIGWAIT, EPOLL_PWAIT2, POLL, WAITS };

static int epoll_fd[WAITS], event_fd[WAITS];
static pthread_t threads[WAITS];
static volatile int started[WAITS], woken, early[WAITS], result[WAITS];

static void *wait_in(void *which)
{
    int kind = (int)(intptr_t)which;
    struct epoll_event event;
    __atomic_store_n(&started[kind], 1, __ATOMIC_RELEASE);
    if (kind == SIGWAIT) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        result[kind] = sigwaitinfo(&usr1, NULL);
    } else if (kind == EPOLL_WAIT) {
        result[kind] = epoll_wait(epoll_fd[kind], &event, 1, -1);
    } else if (kind == POLL) {
        struct pollfd watched = {.fd = event_fd[kind], .events = POLLIN};
        result[kind] = poll(&watched, 1, -1);
    } else {
        result[kind] = (int)syscall(SYS_epoll_pwait2, epoll_fd[kind], &event, 1, NULL, NULL, 8);
    }
    if (!__atomic_load_n(&woken, __ATOMIC_ACQUIRE))
        early[kind] = errno ? errno : -1;
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "interrupted_waits");
    /* Only the main thread takes SIGTERM; SIGUSR1 only the sigwaitinfo thread, by waiting. */
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    sc_install_sigterm(0);
    for (int kind = 0; kind < WAITS; kind++) {
        struct epoll_event event = {.events = EPOLLIN};
        if ((event_fd[kind] = eventfd(0, EFD_CLOEXEC)) < 0 || (epoll_fd[kind] = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(epoll_fd[kind], EPOLL_CTL_ADD, event_fd[kind], &event) != 0)
            sc_die("an epoll instance");
        if (pthread_create(&threads[kind], NULL, wait_in, (void *)(intptr_t)kind) != 0)
            sc_die("pthread_create");
        while (!__atomic_load_n(&started[kind], __ATOMIC_ACQUIRE))
            usleep(1000);
    }
    sigdelset(&blocked, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
    usleep(20000);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    for (int kind = 0; kind < WAITS; kind++)
        sc_check(!early[kind], "wait %d ended before it was woken (errno %d)", kind, early[kind]);
    __atomic_store_n(&woken, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    if (write(event_fd[EPOLL_WAIT], &one, 8) != 8 || write(event_fd[EPOLL_PWAIT2], &one, 8) != 8 ||
        write(event_fd[POLL], &one, 8) != 8 || pthread_kill(threads[SIGWAIT], SIGUSR1) != 0)
        sc_die("waking the threads");
    for (int kind = 0; kind < WAITS; kind++)
        pthread_join(threads[kind], NULL);
    sc_check(result[EPOLL_WAIT] == 1 && result[EPOLL_PWAIT2] == 1 && result[SIGWAIT] == SIGUSR1 && result[POLL] == 1,
             "the waits returned %d, %d, %d and %d, not 1, the signal, 1 and 1", result[EPOLL_WAIT], result[SIGWAIT],
             result[EPOLL_PWAIT2], result[POLL]);
    sc_finish();
}
