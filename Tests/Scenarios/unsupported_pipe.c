/*
 * unsupported_pipe: a pipe amber refuses, by flag:
 *   --outside-reader  the read end of the pipe this process writes to is held by a process
 *                     outside its tree (a grandchild, orphaned at once, which reads until end
 *                     of file and exits)
 *   --unread          a pipe holding bytes whose read end is closed: no process can read them
 *   --fifo-outside    a named pipe holding bytes that a process outside the tree (a grandchild,
 *                     orphaned at once, which exits when this process is gone) has open too
 *   --fifo-outside-empty  the same, empty: the dump's kill would close this process's end
 *                     under the outside writer all the same
 * After SIGTERM it checks the pipe still works as it did.
 */
#include "scenario.h"
#include <sys/ioctl.h>

static int ends[2] = {-1, -1};

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_pipe");
    sc_install_sigterm(0);
    if (pipe2(ends, O_CLOEXEC) < 0)
        sc_die("pipe2");
    if (sc_has_flag("--outside-reader")) {
        if (sc_fork_outside() == 0) {
            close(ends[1]);
            char buf[64];
            while (read(ends[0], buf, sizeof buf) > 0) {
            }
            _exit(0);
        }
        close(ends[0]);
        ends[0] = -1;
    } else if (sc_has_flag("--unread")) {
        if (write(ends[1], "unread", 6) != 6)
            sc_die("write");
        close(ends[0]);
        ends[0] = -1;
        signal(SIGPIPE, SIG_IGN);
    } else if (sc_has_flag("--fifo-outside") || sc_has_flag("--fifo-outside-empty")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "outside.fifo");
        unlink(path);
        if (mkfifo(path, 0600) < 0)
            sc_die("mkfifo");
        close(ends[0]);
        close(ends[1]);
        if ((ends[0] = open(path, O_RDWR | O_CLOEXEC)) < 0 ||
            (sc_has_flag("--fifo-outside") && write(ends[0], "held", 4) != 4))
            sc_die("filling the FIFO");
        ends[1] = -1;
        /* ready once the grandchild has it open: it then closes its end of `sync` */
        int sync[2];
        if (pipe2(sync, O_CLOEXEC) < 0)
            sc_die("pipe2");
        pid_t self = getpid();
        if (sc_fork_outside() == 0) {
            int held = open(path, O_WRONLY | O_NONBLOCK);
            close(sync[1]);
            while (held >= 0 && kill(self, 0) == 0)
                usleep(20 * 1000);
            _exit(0);
        }
        close(sync[1]);
        char byte;
        while (read(sync[0], &byte, 1) > 0) {
        }
        close(sync[0]);
    } else {
        sc_die("no pipe chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    if (sc_has_flag("--outside-reader")) {
        sc_check(write(ends[1], "x", 1) == 1, "the write to the outside reader failed: %s", strerror(errno));
    } else if (sc_has_flag("--fifo-outside")) {
        char buf[8] = {0};
        sc_check(read(ends[0], buf, sizeof buf) == 4 && memcmp(buf, "held", 4) == 0, "the FIFO lost what it held");
    } else if (sc_has_flag("--fifo-outside-empty")) {
        int n = -1;
        sc_check(ioctl(ends[0], FIONREAD, &n) == 0 && n == 0, "the empty FIFO holds %d bytes", n);
    } else {
        int n = -1;
        sc_check(ioctl(ends[1], FIONREAD, &n) == 0 && n == 6, "the pipe holds %d bytes, expected 6", n);
        sc_check(write(ends[1], "x", 1) < 0 && errno == EPIPE, "a write with no reader did not fail with EPIPE");
    }
    sc_finish();
}
