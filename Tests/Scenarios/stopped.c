/*
 * stopped: a parent with three stopped children, each of which must come back stopped with its
 * parent seeing what it saw before:
 *  - "collected" was stopped by SIGSTOP and the parent already collected the stop with
 *    waitpid(WUNTRACED): it must not be reported again;
 *  - "pending" was stopped by SIGTSTP (default disposition) and has a second thread: the
 *    parent has not collected it, so waitid(WSTOPPED) must still report SIGTSTP;
 *  - "caught" blocks nothing but handles SIGTSTP (so only SIGSTOP stops it) and was stopped by
 *    SIGSTOP, not yet collected;
 *  - "nested" was stopped by SIGSTOP, not yet collected, after it stopped a child of its own
 *    (a job with children, suspended), whose stop it has not collected either.
 * The parent counts the SIGCHLDs it handles: a restore must not deliver one more. After the
 * checks every child is continued (SIGCONT) and must run again, then is killed and reaped.
 */
#include "scenario.h"
#include <sys/wait.h>

static volatile sig_atomic_t chld_count;
static pid_t collected, pending, caught, nested, grandchild;

static void on_chld(int sig)
{
    (void)sig;
    chld_count++;
}

static void on_tstp(int sig)
{
    (void)sig;
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static pid_t spawn(int threaded, int catch_tstp)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        sc_die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent)
            _exit(1);
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        if (catch_tstp)
            signal(SIGTSTP, on_tstp);
        if (threaded) {
            pthread_t thread;
            if (pthread_create(&thread, NULL, sleeper, NULL) != 0)
                _exit(1);
        }
        for (;;)
            pause();
    }
    return pid;
}

/* "nested", and its child, stopped by it: its PID comes back through a pipe. */
static void spawn_nested(void)
{
    int report[2];
    if (pipe(report) != 0)
        sc_die("pipe");
    nested = fork();
    if (nested < 0)
        sc_die("fork");
    if (nested == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        pid_t child = fork();
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            for (;;)
                pause();
        }
        if (child < 0 || kill(child, SIGSTOP) != 0 || write(report[1], &child, sizeof child) != sizeof child)
            _exit(1);
        for (;;)
            pause();
    }
    close(report[1]);
    if (read(report[0], &grandchild, sizeof grandchild) != sizeof grandchild)
        sc_die("reading the nested child's child");
    close(report[0]);
}

static void wait_for_state(pid_t pid, char state)
{
    while (sc_state_of(pid) != state)
        sc_sleep_ms(1);
}

/* The stop not yet collected, without collecting it: its signal, or 0. */
static int uncollected_stop(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WSTOPPED | WNOWAIT | WNOHANG) != 0)
        return -1;
    return info.si_pid == pid && info.si_code == CLD_STOPPED ? info.si_status : 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "stopped");
    sc_install_sigterm(0);
    sc_handle(SIGCHLD, on_chld, SA_RESTART);
    collected = spawn(0, 0);
    pending = spawn(1, 0);
    caught = spawn(0, 1);
    spawn_nested();
    /* Each child sleeps (its thread too) before it is stopped. */
    wait_for_state(collected, 'S');
    wait_for_state(pending, 'S');
    wait_for_state(caught, 'S');
    wait_for_state(nested, 'S');
    wait_for_state(grandchild, 'T');
    sc_sleep_ms(20);

    kill(collected, SIGSTOP);
    int status;
    if (waitpid(collected, &status, WUNTRACED) != collected || !WIFSTOPPED(status))
        sc_die("waitpid(WUNTRACED) of the first child");
    kill(pending, SIGTSTP);
    kill(caught, SIGSTOP);
    kill(nested, SIGSTOP);
    wait_for_state(pending, 'T');
    wait_for_state(caught, 'T');
    wait_for_state(nested, 'T');
    while (uncollected_stop(pending) == 0 || uncollected_stop(caught) == 0 || uncollected_stop(nested) == 0)
        sc_sleep_ms(1);
    /* Every SIGCHLD of the three stops has been handled (all stopped, none blocked). */
    sc_sleep_ms(20);
    int chld_before = chld_count;

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(chld_count == chld_before, "%d SIGCHLDs were handled, %d before", (int)chld_count, chld_before);
    sc_check(sc_state_of(collected) == 'T', "the collected child is in state %c, not T", sc_state_of(collected));
    sc_check(sc_state_of(pending) == 'T', "the pending child is in state %c, not T", sc_state_of(pending));
    sc_check(sc_state_of(caught) == 'T', "the child that catches SIGTSTP is in state %c, not T", sc_state_of(caught));
    int stop = uncollected_stop(collected);
    sc_check(stop == 0, "the stop the parent had collected is reported again (%d)", stop);
    stop = uncollected_stop(pending);
    sc_check(stop == SIGTSTP, "the uncollected stop reports %d, not SIGTSTP", stop);
    stop = uncollected_stop(caught);
    sc_check(stop == SIGSTOP, "the uncollected stop of the child that catches SIGTSTP reports %d, not SIGSTOP", stop);
    sc_check(sc_state_of(nested) == 'T' && sc_state_of(grandchild) == 'T',
             "the stopped child with a stopped child is in state %c, its child in %c, not both T", sc_state_of(nested),
             sc_state_of(grandchild));
    stop = uncollected_stop(nested);
    sc_check(stop == SIGSTOP, "the uncollected stop of the child with a stopped child reports %d, not SIGSTOP", stop);
    if (waitpid(pending, &status, WUNTRACED | WNOHANG) == pending)
        sc_check(WIFSTOPPED(status) && WSTOPSIG(status) == SIGTSTP, "waitpid reports %#x for the pending child", status);
    else
        sc_fail("waitpid(WUNTRACED) does not report the pending child's stop");

    pid_t children[] = {collected, pending, caught, nested};
    for (int i = 0; i < 4; i++) {
        kill(children[i], SIGCONT);
        wait_for_state(children[i], 'S');
        kill(children[i], SIGKILL);
        pid_t r = waitpid(children[i], &status, 0);
        sc_check(r == children[i] && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                 "child %d did not die from SIGKILL (status %#x)", (int)children[i], status);
    }
    sc_finish();
}
