/*
 * pending_interrupt: a signal pending at the freeze whose handler ends the call it interrupts.
 * A child's thread blocks in read() on a pipe; SIGUSR1 has a handler without SA_RESTART, which
 * only that thread lets through. The parent stops the child (SIGSTOP), then sends it SIGUSR1:
 * the signal waits, and the read the stop interrupted waits to be restarted. After SIGTERM the
 * parent continues the child: the handler runs once and read() returns -1 with EINTR, as the
 * kernel decides for a handler without SA_RESTART (signal(7)); it must not go back to waiting.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/wait.h>

static volatile sig_atomic_t handled;

static void on_usr1(int signal)
{
    (void)signal;
    handled++;
}

static int data[2], report[2];

static void *reader(void *unused)
{
    (void)unused;
    char byte;
    ssize_t n = read(data[0], &byte, 1);
    int result[3] = {(int)n, n < 0 ? errno : 0, (int)handled};
    if (write(report[1], result, sizeof result) != sizeof result)
        _exit(3);
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "pending_interrupt");
    sc_install_sigterm(0);
    if (pipe(data) != 0 || pipe(report) != 0)
        sc_die("pipe");
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        struct sigaction action = {.sa_handler = on_usr1};
        sigaction(SIGUSR1, &action, NULL);
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        pthread_t thread;
        /* The thread lets SIGUSR1 through; the main thread, blocking it, only waits. */
        pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
        if (pthread_create(&thread, NULL, reader, NULL) != 0)
            _exit(2);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        for (;;)
            pause();
    }
    /* The reader waits in read() before the child is stopped and signalled. */
    char task[64];
    for (int tries = 0; tries < 5000; tries++) {
        snprintf(task, sizeof task, "/proc/%d/task", (int)child);
        char syscall_path[PATH_MAX], text[512] = {0};
        int threads = 0, in_read = 0;
        DIR *dir = opendir(task);
        for (struct dirent *entry; dir && (entry = readdir(dir));) {
            if (entry->d_name[0] == '.')
                continue;
            threads++;
            snprintf(syscall_path, sizeof syscall_path, "%s/%s/syscall", task, entry->d_name);
            if (sc_read_file(syscall_path, text, sizeof text - 1) > 0 && strncmp(text, "0 ", 2) == 0)
                in_read = 1;
        }
        if (dir)
            closedir(dir);
        if (threads == 2 && in_read)
            break;
        usleep(1000);
    }
    kill(child, SIGSTOP);
    while (sc_state_of(child) != 'T')
        usleep(1000);
    kill(child, SIGUSR1);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    kill(child, SIGCONT);
    int result[3] = {0, 0, 0};
    struct pollfd ready = {report[0], POLLIN, 0};
    if (sc_check(poll(&ready, 1, 5000) == 1, "the read the signal interrupted did not return") &&
        sc_check(read(report[0], result, sizeof result) == sizeof result, "no report from the reader"))
        sc_check(result[0] == -1 && result[1] == EINTR && result[2] == 1,
                 "read() returned %d (errno %d) after %d handler runs, not -1 with EINTR after one", result[0],
                 result[1], result[2]);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sc_finish();
}
