/*
 * ptys: two ptys with both ends in the tree.
 *
 * The first: the root holds its master, in packet mode, with the slave's termios changed
 * (non-canonical, no echo, VINTR ^E, VMIN 1) and a window of 33x101 (640x480 pixels). A child
 * leads a session whose controlling terminal is its slave (opened without O_NOCTTY), with the
 * slave in exclusive mode, and which holds /dev/tty open too; its child, a grandchild in a
 * process group of its own, is the terminal's foreground group.
 * The second: master and slave both in the root, the slave non-blocking, chmod 0600 (as
 * `mesg n` does), and the pty locked (TIOCSPTLCK) once the slave was open.
 *
 * After SIGTERM the root checks what the master shows (packet mode, termios, window, session,
 * foreground group), then talks to its peers through the first pty: SIGUSR1 asks the child
 * to answer through its /dev/tty with what it sees of its terminal (its session's, its foreground
 * group, exclusive mode, /dev/tty still /dev/tty); SIGUSR2 asks the grandchild, in the foreground, to read the line the root wrote through
 * /dev/tty, opened then, and answer through it.
 * Through the second: bytes each way, the lock (TIOCGPTPEER fails with EIO), the slave's mode.
 *
 * --shell-job: run from a shell on a terminal and restored as a shell job (`restore -j`): its
 * session is then amber restore's, taken as it is.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

static int master1 = -1, slave1 = -1, master2 = -1, slave2 = -1, tty1 = -1;
static pid_t child, grandchild;

/* Both ends of the first pty are non-canonical without echo; the second's are raw. */
static void set_terminal(int fd, int intr)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        sc_die("tcgetattr");
    t.c_lflag &= ~(ICANON | ECHO);
    t.c_cc[VINTR] = intr;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &t) != 0)
        sc_die("tcsetattr");
}

static void answer(int fd, const char *text)
{
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        _exit(3);
}

/* The child, the session leader in the background: answers with what it sees of its terminal. */
static void on_child_usr1(int signal)
{
    (void)signal;
    char reply[256];
    int exclusive = -1;
    ioctl(slave1, TIOCGEXCL, &exclusive);
    struct stat status;
    char link[64], target[64] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", tty1);
    int devtty = fstat(tty1, &status) == 0 && status.st_rdev == makedev(5, 0) &&
                 readlink(link, target, sizeof target - 1) > 0 && strcmp(target, "/dev/tty") == 0;
    snprintf(reply, sizeof reply, "child sid %d pgrp %d excl %d devtty %d\n", (int)tcgetsid(slave1) == (int)getpid(),
             (int)tcgetpgrp(slave1) == (int)grandchild, exclusive, devtty);
    answer(tty1, reply);
}

/* The grandchild, the foreground group: reads the line the root wrote through its controlling
 * terminal, opened now as /dev/tty, and answers through it. */
static void on_grandchild_usr2(int signal)
{
    (void)signal;
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) {
        answer(slave1, "grandchild has no /dev/tty\n");
        return;
    }
    char line[64] = {0}, reply[256];
    ssize_t n = read(tty, line, sizeof line - 1);
    snprintf(reply, sizeof reply, "grandchild read '%.*s' foreground %d\n", n > 0 ? (int)n : 0, line,
             (int)tcgetpgrp(tty) == (int)getpid());
    answer(tty, reply);
    close(tty);
}

static void grandchild_setup(void)
{
    sc_handle(SIGUSR2, on_grandchild_usr2, 0);
}

static void child_setup(void)
{
    if (setsid() < 0)
        _exit(1);
    slave1 = open(ptsname(master1), O_RDWR | O_CLOEXEC);
    if (slave1 < 0 || tcgetsid(slave1) != getpid())
        _exit(2);
    if (ioctl(slave1, TIOCEXCL) != 0)
        _exit(2);
    sc_handle(SIGUSR1, on_child_usr1, 0);
    grandchild = fork();
    if (grandchild < 0)
        _exit(2);
    if (grandchild == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        setpgid(0, 0);
        grandchild = getpid();
        grandchild_setup();
        for (;;)
            pause();
    }
    setpgid(grandchild, grandchild);
    if (tcsetpgrp(slave1, grandchild) != 0)
        _exit(2);
    tty1 = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty1 < 0)
        _exit(2);
}

/* Reads from the first master until `expected` arrived (each packet-mode read starts with a
 * status byte, 0 for data; the slave's output turns "\n" into "\r\n"), within 5 s. */
static void expect_from_master(const char *expected, const char *what)
{
    char got[512] = {0};
    size_t have = 0;
    for (int waited = 0; waited < 5000 && !strstr(got, expected); waited += 10) {
        struct pollfd ready = {master1, POLLIN, 0};
        if (poll(&ready, 1, 10) != 1)
            continue;
        char packet[256];
        ssize_t n = read(master1, packet, sizeof packet);
        if (n <= 1 || packet[0] != 0 || have + n >= sizeof got)
            break;
        memcpy(got + have, packet + 1, n - 1);
        have += n - 1;
    }
    sc_check(strstr(got, expected) != NULL, "%s: the master read '%s', expected '%s'", what, got, expected);
}

static void check_first(void)
{
    int packet = -1;
    sc_check(ioctl(master1, TIOCGPKT, &packet) == 0 && packet == 1, "packet mode is %d", packet);
    struct termios t;
    if (sc_check(tcgetattr(master1, &t) == 0, "tcgetattr of the first master"))
        sc_check(!(t.c_lflag & (ICANON | ECHO)) && t.c_cc[VINTR] == 5 && t.c_cc[VMIN] == 1,
                 "termios lflag %#o VINTR %d VMIN %d", t.c_lflag, t.c_cc[VINTR], t.c_cc[VMIN]);
    struct winsize size;
    if (sc_check(ioctl(master1, TIOCGWINSZ, &size) == 0, "TIOCGWINSZ"))
        sc_check(size.ws_row == 33 && size.ws_col == 101 && size.ws_xpixel == 640 && size.ws_ypixel == 480,
                 "window %dx%d (%dx%d pixels)", size.ws_row, size.ws_col, size.ws_xpixel, size.ws_ypixel);
    pid_t session = -1, foreground = -1;
    ioctl(master1, TIOCGSID, &session);
    ioctl(master1, TIOCGPGRP, &foreground);
    sc_check(session == child, "the first pty is the terminal of session %d, expected %d", session, child);
    sc_check(foreground == grandchild, "its foreground group is %d, expected %d", foreground, grandchild);

    kill(child, SIGUSR1);
    expect_from_master("child sid 1 pgrp 1 excl 1 devtty 1\r\n", "the child's answer");
    if (sc_check(write(master1, "ping", 4) == 4, "write to the first master")) {
        kill(grandchild, SIGUSR2);
        expect_from_master("grandchild read 'ping' foreground 1\r\n", "the grandchild's answer");
    }
}

static void check_second(void)
{
    int locked = -1;
    sc_check(ioctl(master2, TIOCGPTLCK, &locked) == 0 && locked == 1, "the second pty's lock is %d", locked);
    struct stat status;
    if (sc_check(fstat(slave2, &status) == 0, "fstat of the second slave"))
        sc_check((status.st_mode & 07777) == 0600, "the second slave's mode is %o", status.st_mode & 07777);
    char buffer[16] = {0};
    sc_check(read(slave2, buffer, sizeof buffer) < 0 && errno == EAGAIN, "the second slave held '%s'", buffer);
    if (sc_check(write(master2, "down", 4) == 4, "write to the second master")) {
        struct pollfd ready = {slave2, POLLIN, 0};
        poll(&ready, 1, 5000);
        ssize_t n = read(slave2, buffer, sizeof buffer - 1);
        sc_check(n == 4 && memcmp(buffer, "down", 4) == 0, "the second slave read %zd bytes", n);
    }
    if (sc_check(write(slave2, "up", 2) == 2, "write to the second slave")) {
        struct pollfd ready = {master2, POLLIN, 0};
        poll(&ready, 1, 5000);
        ssize_t n = read(master2, buffer, sizeof buffer - 1);
        sc_check(n == 2 && memcmp(buffer, "up", 2) == 0, "the second master read %zd bytes", n);
    }
    /* Last: a failed open of a locked pty's slave leaves its open slaves failing with EIO. */
    int peer = ioctl(master2, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    sc_check(peer < 0 && errno == EIO, "the locked pty opened its slave again (%d, errno %d)", peer, errno);
    if (peer >= 0)
        close(peer);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "ptys");
    sc_install_sigterm(0);
    master1 = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master1 < 0 || grantpt(master1) != 0 || unlockpt(master1) != 0)
        sc_die("posix_openpt");
    set_terminal(master1, 5);
    struct winsize size = {33, 101, 640, 480};
    int on = 1;
    if (ioctl(master1, TIOCSWINSZ, &size) != 0 || ioctl(master1, TIOCPKT, &on) != 0)
        sc_die("TIOCSWINSZ, TIOCPKT");

    master2 = posix_openpt(O_RDWR | O_NOCTTY);
    if (master2 < 0 || grantpt(master2) != 0 || unlockpt(master2) != 0)
        sc_die("posix_openpt");
    slave2 = open(ptsname(master2), O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (slave2 < 0)
        sc_die("open the second slave");
    set_terminal(slave2, 3);
    if (fchmod(slave2, 0600) != 0 || ioctl(master2, TIOCSPTLCK, &on) != 0)
        sc_die("fchmod, TIOCSPTLCK");

    child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    /* The child's own group: its grandchild went into its own group before the child paused. */
    pid_t foreground = -1;
    for (int waited = 0; waited < 5000; waited += 10) {
        ioctl(master1, TIOCGPGRP, &foreground);
        if (foreground != child && foreground > 0)
            break;
        sc_sleep_ms(10);
    }
    grandchild = foreground;
    sc_wait_in_pause(grandchild);
    sc_ready();
    sc_wait_for_term();
    if (sc_has_flag("--shell-job"))
        sc_snap.sid = getsid(0);
    sc_check_common();

    check_first();
    check_second();
    kill(grandchild, SIGKILL);
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    sc_finish();
}
