/*
 * exit_signal: a child cloned to send its parent SIGUSR1 rather than SIGCHLD when it ends
 * (clone(2)'s exit signal), and one that sends nothing (exit signal 0). After restore each must
 * still have its exit signal (/proc/PID/stat field 38); when the first is killed its parent
 * gets SIGUSR1, and both are reaped with __WCLONE.
 */
#include "scenario.h"
#include <sched.h>
#include <sys/wait.h>

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_count++;
}

static char stack[2][64 * 1024] __attribute__((aligned(16)));

static int child_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (;;)
        pause();
    return 0;
}

static int exit_signal_of(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (n <= 0)
        return -1;
    text[n] = 0;
    char *p = strrchr(text, ')');
    int field = 2, value = -1;
    for (char *word = strtok(p + 1, " "); word; word = strtok(NULL, " "))
        if (++field == 38) {
            value = atoi(word);
            break;
        }
    return value;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "exit_signal");
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, SA_RESTART);
    pid_t usr1 = clone(child_main, stack[0] + sizeof stack[0], SIGUSR1, NULL);
    pid_t none = clone(child_main, stack[1] + sizeof stack[1], 0, NULL);
    if (usr1 < 0 || none < 0)
        sc_die("clone");
    while (exit_signal_of(usr1) != SIGUSR1 || exit_signal_of(none) != 0)
        sc_sleep_ms(1);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(exit_signal_of(usr1) == SIGUSR1, "the first child's exit signal is %d, not SIGUSR1", exit_signal_of(usr1));
    sc_check(exit_signal_of(none) == 0, "the second child's exit signal is %d, not 0", exit_signal_of(none));
    int status;
    kill(usr1, SIGKILL);
    pid_t r = waitpid(usr1, &status, __WCLONE);
    sc_check(r == usr1 && WIFSIGNALED(status), "waitpid(__WCLONE) of the first child returned %d (status %#x)", (int)r, status);
    sc_check(usr1_count == 1, "the parent got %d SIGUSR1 when the first child ended", (int)usr1_count);
    kill(none, SIGKILL);
    r = waitpid(none, &status, __WCLONE);
    sc_check(r == none && WIFSIGNALED(status), "waitpid(__WCLONE) of the second child returned %d (status %#x)", (int)r, status);
    sc_check(usr1_count == 1, "the parent got a signal when the second child ended");
    sc_finish();
}
