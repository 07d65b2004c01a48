/*
 * signal_fds: SIGUSR1, SIGUSR2 and SIGRTMIN+2 blocked; a non-blocking signalfd for SIGUSR1
 * and a blocking one for SIGUSR2 and SIGRTMIN+2. SIGUSR1 and SIGRTMIN+2 (with the value 77) are
 * pending at the dump. After SIGTERM each signalfd reads its pending signal, with its sender and
 * value, and then nothing; the masks are as before (fdinfo's sigmask) and the signals still
 * blocked.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/signalfd.h>

static int usr1_fd, others_fd;
static sigset_t blocked;

static void check_mask(int fd, const char *name, const char *expected)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (!sc_check(n > 0, "cannot read %s", path))
        return;
    text[n] = 0;
    char *line = strstr(text, "sigmask:");
    sc_check(line && strncmp(line + strlen("sigmask:\t"), expected, strlen(expected)) == 0, "%s has %s, expected sigmask %s", name,
             line ? line : "no sigmask", expected);
}

static void check_signal(int fd, const char *name, int signal, int value)
{
    struct signalfd_siginfo info;
    memset(&info, 0, sizeof info);
    ssize_t n = read(fd, &info, sizeof info);
    sc_check(n == sizeof info && (int)info.ssi_signo == signal && (pid_t)info.ssi_pid == getpid() && (value < 0 || info.ssi_int == value),
             "%s read %zd bytes: signal %u from %u with %d, expected signal %d from %d", name, n, info.ssi_signo, info.ssi_pid,
             info.ssi_int, signal, (int)getpid());
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "signal_fds");
    sc_install_sigterm(0);
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGUSR2);
    sigaddset(&blocked, SIGRTMIN + 2);
    if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0)
        sc_die("sigprocmask");
    sigset_t usr1, others;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&others);
    sigaddset(&others, SIGUSR2);
    sigaddset(&others, SIGRTMIN + 2);
    usr1_fd = signalfd(-1, &usr1, SFD_NONBLOCK | SFD_CLOEXEC);
    others_fd = signalfd(-1, &others, 0);
    if (usr1_fd < 0 || others_fd < 0)
        sc_die("signalfd");
    union sigval value = {.sival_int = 77};
    if (kill(getpid(), SIGUSR1) != 0 || sigqueue(getpid(), SIGRTMIN + 2, value) != 0)
        sc_die("queueing the signals");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char others_mask[32];
    snprintf(others_mask, sizeof others_mask, "%016llx", (1ULL << (SIGUSR2 - 1)) | (1ULL << (SIGRTMIN + 2 - 1)));
    check_mask(usr1_fd, "the SIGUSR1 signalfd", "0000000000000200");
    check_mask(others_fd, "the SIGUSR2 and SIGRTMIN+2 signalfd", others_mask);
    sc_check((fcntl(usr1_fd, F_GETFL) & O_NONBLOCK) && !(fcntl(others_fd, F_GETFL) & O_NONBLOCK),
             "O_NONBLOCK is not on the SIGUSR1 signalfd alone");
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    sc_check(sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2) && sigismember(&now, SIGRTMIN + 2), "the signals are no longer blocked");

    check_signal(usr1_fd, "the SIGUSR1 signalfd", SIGUSR1, -1);
    struct signalfd_siginfo info;
    sc_check(read(usr1_fd, &info, sizeof info) < 0 && errno == EAGAIN, "the SIGUSR1 signalfd reads a second signal");
    struct pollfd ready = {others_fd, POLLIN, 0};
    if (sc_check(poll(&ready, 1, 0) == 1, "SIGRTMIN+2 is not pending for the other signalfd"))
        check_signal(others_fd, "the SIGUSR2 and SIGRTMIN+2 signalfd", SIGRTMIN + 2, 77);
    sc_check(poll(&ready, 1, 0) == 0, "the other signalfd reads a second signal");
    /* It still reads what comes: SIGUSR2 now. */
    kill(getpid(), SIGUSR2);
    check_signal(others_fd, "the SIGUSR2 and SIGRTMIN+2 signalfd", SIGUSR2, -1);
    sc_finish();
}
