/*
 * unsupported_pipe: a pipe amber refuses, by flag:
 *   --outside-reader  the read end of the pipe this process writes to is held by a process
 *                     outside its tree (a grandchild, orphaned at once, which reads until end
 *                     of file and exits)
 *   --unread          a pipe holding bytes whose read end is closed: no process can read them
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
        pid_t child = fork();
        if (child < 0)
            sc_die("fork");
        if (child == 0) {
            if (fork() != 0)
                _exit(0);
            close(ends[1]);
            char buf[64];
            while (read(ends[0], buf, sizeof buf) > 0) {
            }
            _exit(0);
        }
        int status;
        if (waitpid(child, &status, 0) != child)
            sc_die("waitpid");
        close(ends[0]);
        ends[0] = -1;
    } else if (sc_has_flag("--unread")) {
        if (write(ends[1], "unread", 6) != 6)
            sc_die("write");
        close(ends[0]);
        ends[0] = -1;
        signal(SIGPIPE, SIG_IGN);
    } else {
        sc_die("no pipe chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    if (sc_has_flag("--outside-reader")) {
        sc_check(write(ends[1], "x", 1) == 1, "the write to the outside reader failed: %s", strerror(errno));
    } else {
        int n = -1;
        sc_check(ioctl(ends[1], FIONREAD, &n) == 0 && n == 6, "the pipe holds %d bytes, expected 6", n);
        sc_check(write(ends[1], "x", 1) < 0 && errno == EPIPE, "a write with no reader did not fail with EPIPE");
    }
    sc_finish();
}
