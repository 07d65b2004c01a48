/*
 * unsupported_pty: a pty with both ends in the process, in a state amber refuses:
 *   --canonical  the slave in canonical mode (ICANON), "par" typed into it without a newline
 *                (a partial line no interface shows)
 *   --queued     "abc" written by the slave, not read by the master
 *   --typed      "xyz" written by the master, not read by the (non-canonical) slave
 *   --hangup     the slave opened and closed again: only the master is left
 *   --devtty     a child holding /dev/tty (and the slave) of a pty that is no session's controlling
 *                terminal any more (its leader, the child, gave it up with TIOCNOTTY)
 * After SIGTERM the process checks the pty still holds what it held: a refused dump takes nothing.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>

static int master = -1, slave = -1;
static pid_t child = -1;

static void give_up_terminal(void)
{
    if (setsid() < 0)
        _exit(2);
    int own = open(ptsname(master), O_RDWR);
    int tty = open("/dev/tty", O_RDWR);
    signal(SIGHUP, SIG_IGN);
    if (own < 0 || tty < 0 || ioctl(tty, TIOCNOTTY) != 0)
        _exit(2);
}

static void raw_slave(void)
{
    struct termios t;
    if (tcgetattr(slave, &t) != 0)
        sc_die("tcgetattr");
    t.c_lflag &= ~(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(slave, TCSANOW, &t) != 0)
        sc_die("tcsetattr");
}

static void expect(int fd, const char *expected, const char *what)
{
    char got[64] = {0};
    struct pollfd ready = {fd, POLLIN, 0};
    ssize_t n = poll(&ready, 1, 5000) == 1 ? read(fd, got, sizeof got - 1) : -1;
    sc_check(n == (ssize_t)strlen(expected) && memcmp(got, expected, n) == 0, "%s read %zd bytes '%s', expected '%s'",
             what, n, n > 0 ? got : "", expected);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_pty");
    sc_install_sigterm(0);
    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
        sc_die("posix_openpt");
    slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (slave < 0)
        sc_die("open %s", ptsname(master));
    if (sc_has_flag("--canonical")) {
        struct termios t;
        if (tcgetattr(slave, &t) != 0)
            sc_die("tcgetattr");
        t.c_lflag &= ~ECHO;
        if (tcsetattr(slave, TCSANOW, &t) != 0 || write(master, "par", 3) != 3)
            sc_die("typing into the slave");
    } else if (sc_has_flag("--queued")) {
        raw_slave();
        if (write(slave, "abc", 3) != 3)
            sc_die("write to the slave");
    } else if (sc_has_flag("--typed")) {
        raw_slave();
        if (write(master, "xyz", 3) != 3)
            sc_die("write to the master");
    } else if (sc_has_flag("--hangup")) {
        close(slave);
        slave = -1;
    } else if (sc_has_flag("--devtty")) {
        close(slave);
        slave = -1;
        child = sc_fork_paused_child(give_up_terminal);
        sc_wait_in_pause(child);
    } else {
        sc_die("no mode given");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--canonical")) {
        if (sc_check(write(master, "tial\n", 5) == 5, "write to the master"))
            expect(slave, "partial\n", "the slave");
    } else if (sc_has_flag("--queued")) {
        expect(master, "abc", "the master");
    } else if (sc_has_flag("--typed")) {
        expect(slave, "xyz", "the slave");
    } else if (sc_has_flag("--devtty")) {
        int status;
        sc_check(waitpid(child, &status, WNOHANG) == 0, "the child is gone");
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
    } else {
        struct pollfd ready = {master, POLLIN, 0};
        sc_check(poll(&ready, 1, 0) == 1 && (ready.revents & POLLHUP), "the master shows no hang-up (%#x)", ready.revents);
    }
    sc_finish();
}
