/*
 * fork_churn: a tree that forks without pause, so that every dump finds children born after
 * it listed the tree (the checks before the freeze must take them for the tree's, not for
 * processes outside it). The root holds the master of a pty and a shared anonymous counter;
 * its child leads a session on the pty's slave (its controlling terminal, non-canonical) and
 * forks a child every millisecond, which adds one to the counter through the shared mapping
 * and exits 5 ms later. After SIGTERM the counter went on growing, and the session leader is still there.
 */
#include "scenario.h"
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

static volatile uint64_t *counter;
static pid_t leader;

static void lead(int master)
{
    if (setsid() < 0)
        _exit(2);
    int slave = open(ptsname(master), O_RDWR);
    struct termios modes;
    if (slave < 0 || tcgetattr(slave, &modes) != 0)
        _exit(3);
    modes.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    if (tcsetattr(slave, TCSANOW, &modes) != 0)
        _exit(4);
    close(master);
    for (;;) {
        if (fork() == 0) {
            __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
            usleep(5000);
            _exit(0);
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        usleep(1000);
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "fork_churn");
    sc_install_sigterm(0);
    counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (counter == MAP_FAILED || master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
        sc_die("the counter and the pty");
    leader = fork();
    if (leader < 0)
        sc_die("fork");
    if (leader == 0)
        lead(master);
    while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < 20)
        usleep(1000);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    uint64_t now = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
    usleep(100 * 1000);
    sc_check(__atomic_load_n(counter, __ATOMIC_SEQ_CST) > now, "the session leader no longer forks");
    sc_check(kill(leader, 0) == 0, "the session leader is gone");
    kill(leader, SIGKILL);
    waitpid(leader, NULL, 0);
    sc_finish();
}
