/*
 * pidfds: pidfds of the tree's processes: of a child (blocking), of this process (PIDFD_NONBLOCK)
 * and of this process's leader thread (PIDFD_THREAD); the child holds one of its parent, and a
 * second child, forked after them, inherits all three (one description in two processes). After
 * SIGTERM each names its process again: fdinfo's Pid, the flags, a signal sent through the
 * child's pidfd reaches it (it answers on a pipe), and once the child is killed through it, its
 * pidfd is readable and waitid(P_PIDFD) collects it.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/syscall.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

static int answer[2], parent_pidfd = -1;

static void on_usr1(int signal)
{
    (void)signal;
    char byte = parent_pidfd >= 0 ? 'y' : 'n';
    if (write(answer[1], &byte, 1) != 1)
        _exit(3);
}

static void child_setup(void)
{
    parent_pidfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
    sc_handle(SIGUSR1, on_usr1, 0);
}

static long fdinfo_pid(int fd)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    ssize_t n = sc_read_file(path, text, sizeof text);
    const char *line = n > 0 ? strstr(text, "\nPid:") : NULL;
    return line ? strtol(line + 5, NULL, 10) : -2;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "pidfds");
    sc_install_sigterm(0);
    if (pipe(answer) != 0)
        sc_die("pipe");
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    int of_child = (int)syscall(SYS_pidfd_open, child, 0);
    int of_self = (int)syscall(SYS_pidfd_open, getpid(), PIDFD_NONBLOCK);
    int of_thread = (int)syscall(SYS_pidfd_open, getpid(), PIDFD_THREAD);
    if (of_child < 0 || of_self < 0 || of_thread < 0)
        sc_die("pidfd_open");
    pid_t second = sc_fork_paused_child(NULL);
    sc_wait_in_pause(second);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(fdinfo_pid(of_child) == child, "the child's pidfd is of %ld, not %d", fdinfo_pid(of_child), child);
    sc_check(fdinfo_pid(of_self) == getpid(), "this process's pidfd is of %ld", fdinfo_pid(of_self));
    sc_check(fdinfo_pid(of_thread) == getpid(), "the leader thread's pidfd is of %ld", fdinfo_pid(of_thread));
    sc_check(!(fcntl(of_child, F_GETFL) & (O_NONBLOCK | O_EXCL)), "the child's pidfd has flags %#o",
             fcntl(of_child, F_GETFL));
    sc_check((fcntl(of_self, F_GETFL) & (O_NONBLOCK | O_EXCL)) == O_NONBLOCK, "the PIDFD_NONBLOCK pidfd has flags %#o",
             fcntl(of_self, F_GETFL));
    sc_check((fcntl(of_thread, F_GETFL) & (O_NONBLOCK | O_EXCL)) == O_EXCL, "the PIDFD_THREAD pidfd has flags %#o",
             fcntl(of_thread, F_GETFL));

    char byte = 0;
    sc_check(syscall(SYS_pidfd_send_signal, of_child, SIGUSR1, NULL, 0) == 0, "pidfd_send_signal: %s", strerror(errno));
    struct pollfd reply = {answer[0], POLLIN, 0};
    if (sc_check(poll(&reply, 1, 5000) == 1, "the child never answered the signal sent through its pidfd"))
        sc_check(read(answer[0], &byte, 1) == 1 && byte == 'y', "the child answered %c (n: it has no pidfd of its parent)",
                 byte);
    struct pollfd running = {of_child, POLLIN, 0};
    sc_check(poll(&running, 1, 0) == 0, "the child's pidfd is readable while it runs");
    sc_check(syscall(SYS_pidfd_send_signal, of_child, SIGKILL, NULL, 0) == 0, "pidfd_send_signal SIGKILL: %s",
             strerror(errno));
    struct pollfd exited = {of_child, POLLIN, 0};
    sc_check(poll(&exited, 1, 5000) == 1, "the child's pidfd never became readable at its exit");
    siginfo_t info = {0};
    sc_check(waitid(P_PIDFD, of_child, &info, WEXITED) == 0 && info.si_pid == child && info.si_status == SIGKILL,
             "waitid(P_PIDFD) gave pid %d, status %d", info.si_pid, info.si_status);
    kill(second, SIGKILL);
    waitpid(second, NULL, 0);
    sc_finish();
}
