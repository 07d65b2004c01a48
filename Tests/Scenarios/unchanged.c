/*
 * unchanged: a process with a wide spread of state that a dump with --leave-running reads and
 * must leave exactly as it was: a handler (with its flags and mask) for every signal that can
 * have one, SIGTRAP among them, some ignored, a blocked mask and a pending signal per thread
 * and per process, a second thread, an interval timer and a POSIX timer, files open and
 * mapped, areas with madvise flags. The test compares what /proc shows of it before and after
 * the dump; after SIGTERM the process itself reads every disposition back and checks its
 * pending signals and timer.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/time.h>

static void handler(int sig)
{
    (void)sig;
}

static struct sigaction wanted[65];
static pthread_barrier_t ready;
static pthread_t thread;

static void *worker(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_kill(pthread_self(), SIGRTMIN + 2);
    pthread_barrier_wait(&ready);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unchanged");
    sc_install_sigterm(0);
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGTERM || (sig > 31 && sig < SIGRTMIN))
            continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        if (sig % 5 == 0 && sig != SIGTRAP) {
            action.sa_handler = SIG_IGN;
        } else {
            action.sa_handler = handler;
            action.sa_flags = (sig % 2 ? SA_RESTART : 0) | (sig % 3 ? SA_NODEFER : 0) | (sig == SIGTRAP ? SA_ONSTACK : 0);
            sigemptyset(&action.sa_mask);
            sigaddset(&action.sa_mask, sig % 30 + 1);
        }
        if (sigaction(sig, &action, NULL) != 0)
            sc_die("sigaction(%d)", sig);
        memset(&wanted[sig], 0, sizeof wanted[sig]);
        sigaction(sig, NULL, &wanted[sig]);
    }
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR2);
    sigaddset(&blocked, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    kill(getpid(), SIGUSR2);
    sc_start_workers(&thread, 1, worker, &ready);

    struct itimerval interval = {{100, 0}, {1000, 0}};
    setitimer(ITIMER_REAL, &interval, NULL);
    timer_t timer;
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_SIGNAL;
    event.sigev_signo = SIGRTMIN + 1;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0)
        sc_die("timer_create");
    struct itimerspec spec = {{0, 0}, {2000, 0}};
    timer_settime(timer, 0, &spec, NULL);

    char path[PATH_MAX];
    sc_path(path, sizeof path, "data");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 3 * 4096) != 0)
        sc_die("data file");
    char *mapped = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *anon = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED || anon == MAP_FAILED)
        sc_die("mmap");
    mapped[4096] = 1;
    memset(anon, 7, 8 * 4096);
    madvise(anon + 4 * 4096, 4 * 4096, MADV_DONTFORK);
    mprotect(anon + 12 * 4096, 2 * 4096, PROT_READ);

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    for (int sig = 1; sig <= 64; sig++) {
        if (wanted[sig].sa_handler == NULL && wanted[sig].sa_flags == 0)
            continue;
        struct sigaction now;
        memset(&now, 0, sizeof now);
        sigaction(sig, NULL, &now);
        /* The kernel keeps 64 signals: only the first 8 bytes of the mask are its. */
        sc_check(now.sa_handler == wanted[sig].sa_handler && now.sa_flags == wanted[sig].sa_flags
                     && memcmp(&now.sa_mask, &wanted[sig].sa_mask, 8) == 0,
                 "signal %d: handler %p flags %#x, set %p flags %#x", sig, (void *)now.sa_handler, now.sa_flags,
                 (void *)wanted[sig].sa_handler, wanted[sig].sa_flags);
    }
    sigset_t pending;
    sigpending(&pending);
    sc_check(sigismember(&pending, SIGUSR2), "the pending SIGUSR2 is gone");
    struct itimerval left;
    getitimer(ITIMER_REAL, &left);
    sc_check(left.it_interval.tv_sec == 100 && left.it_value.tv_sec > 900, "ITIMER_REAL is now %ld s, every %ld s",
             (long)left.it_value.tv_sec, (long)left.it_interval.tv_sec);
    sc_check(mapped[4096] == 1 && anon[0] == 7, "memory changed");
    sc_finish();
}
