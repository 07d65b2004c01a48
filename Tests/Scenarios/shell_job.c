/*
 * shell_job: a program run from a shell on a terminal (ShellJobTests types it into a tmux
 * window), dumped with `dump -j` and restored with `restore -j` in another window, on
 * another terminal.
 *
 * Sets up: fds 0, 1 and 2 on the terminal (one description, the shell's), fd 3 /dev/tty
 * opened O_RDWR | O_NONBLOCK, fd 4 the terminal by its name opened O_WRONLY | O_APPEND with
 * close-on-exec, and a child in its process group.
 *
 * Checks after SIGTERM, against the terminal it runs on then (its controlling terminal, maybe
 * another than at the start): every fd is on that terminal, with the flags it had; fds 0-2
 * are still one description and fds 3 and 4 descriptions of their own; fd 3 is /dev/tty;
 * it leads its process group, is not a session leader, and its group is the terminal's
 * foreground group in its session; the child has the same terminal, group and session.
 *
 * --open TTY: fd 5 is TTY too, another terminal than its own (which `dump -j` refuses).
 */
#include "scenario.h"

#include <sys/ioctl.h>
#include <termios.h>

#define KCMP_FILE 0
#define FDS 5

static int flags_at_start[FDS];
static pid_t child;

/* The device of the terminal fd is on (TIOCGDEV), 0 if none. */
static unsigned int terminal_of(int fd)
{
    unsigned int device = 0;
    return ioctl(fd, TIOCGDEV, &device) == 0 ? device : 0;
}

/* Field `number` (1-based, after the comm) of /proc/PID/stat, -1 if it cannot be read. */
static long stat_field(pid_t pid, int number)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 1;
    for (int field = 3; field < number; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    return strtol(p + 1, NULL, 10);
}

static int same_description(int a, int b)
{
    return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "shell_job");
    sc_install_sigterm(0);
    const char *name = ttyname(0);
    if (!name)
        sc_die("stdin is no terminal");
    if (open("/dev/tty", O_RDWR | O_NONBLOCK) != 3)
        sc_die("open /dev/tty as fd 3");
    if (open(name, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC) != 4)
        sc_die("open %s as fd 4", name);
    unsigned int terminal = (unsigned int)stat_field(getpid(), 7);
    for (int fd = 0; fd < FDS; fd++) {
        flags_at_start[fd] = fcntl(fd, F_GETFL);
        if (terminal_of(fd) != terminal)
            sc_die("fd %d is not on the controlling terminal", fd);
    }
    const char *other = sc_argc_extra == 2 && strcmp(sc_argv_extra[0], "--open") == 0 ? sc_argv_extra[1] : NULL;
    if (other && open(other, O_WRONLY | O_NOCTTY) != 5)
        sc_die("open %s as fd 5", other);
    child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        for (;;)
            pause();
    }
    sc_ready();
    sc_wait_for_term();

    terminal = (unsigned int)stat_field(getpid(), 7);
    sc_check(terminal != 0, "no controlling terminal");
    for (int fd = 0; fd < FDS; fd++) {
        sc_check(terminal_of(fd) == terminal, "fd %d is on terminal %#x, the controlling one is %#x", fd,
                 terminal_of(fd), terminal);
        sc_check(fcntl(fd, F_GETFL) == flags_at_start[fd], "fd %d has flags %#o, had %#o", fd, fcntl(fd, F_GETFL),
                 flags_at_start[fd]);
        sc_check(fcntl(fd, F_GETFD) == (fd == 4 ? FD_CLOEXEC : 0), "fd %d close-on-exec %d", fd,
                 fcntl(fd, F_GETFD));
    }
    sc_check(same_description(0, 1) && same_description(0, 2), "fds 0, 1 and 2 are not one description");
    sc_check(!same_description(0, 3) && !same_description(0, 4) && !same_description(3, 4),
             "fds 3 and 4 share a description");
    char link[PATH_MAX];
    ssize_t length = readlink("/proc/self/fd/3", link, sizeof link - 1);
    link[length > 0 ? length : 0] = 0;
    sc_check(strcmp(link, "/dev/tty") == 0, "fd 3 is %s, not /dev/tty", link);
    sc_check(getpgrp() == getpid(), "group %d, not its own", getpgrp());
    sc_check(getsid(0) != getpid(), "a session leader");
    sc_check(tcgetsid(0) == getsid(0), "the terminal's session %d, its own %d", tcgetsid(0), getsid(0));
    sc_check(tcgetpgrp(0) == getpgrp(), "the terminal's foreground group is %d, not its own", tcgetpgrp(0));
    sc_check(stat_field(child, 5) == getpgrp() && stat_field(child, 6) == getsid(0) &&
                 stat_field(child, 7) == (long)terminal,
             "the child is in group %ld, session %ld, on terminal %#lx", stat_field(child, 5), stat_field(child, 6),
             stat_field(child, 7));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sc_finish();
}
