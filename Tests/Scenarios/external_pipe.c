/*
 * external_pipe: a process whose stdin and stdout are pipes to a process outside its tree
 * (the test), which a dump leaves outside (--external pipe:[INODE]) and a restore plugs with
 * new pipes (--inherit-fd fd[N]:pipe:[INODE]).
 *
 * fd 0 reads lines from the test; fd 1 and fd 9 (a dup of it, close-on-exec) write to it. A
 * child holds stdout too. For each line L read, the parent writes "echo: L" to fd 1, then the
 * child writes "child: L" to its fd 1 and the parent "again: L" to fd 9, in that order. At
 * the end of stdin it checks its state (the fd table, with fds 0, 1 and 9 on the pipes given
 * back), that it read exactly the lines given by --lines N, writes "done" and its verdict, and
 * exits. No SIGTERM: the test ends it by closing its stdin.
 *
 * --socket: fds 0 and 1 are one unix stream socket instead, whose peer the test holds
 * (--external unix:[INODE], --inherit-fd fd[N]:unix:[INODE]); the test ends its input with
 * shutdown(SHUT_WR).
 */
#include "scenario.h"

static int tell[2] = {-1, -1}; /* parent -> child: the line to echo */
static int ack[2] = {-1, -1};  /* child -> parent: echoed */
static pid_t child = -1;

/* One line from fd 0 into buf (without its newline): its length, or -1 at the end of stdin. */
static int read_line(char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t got = read(0, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return n > 0 ? (int)n : -1;
        if (c == '\n')
            break;
        if (n + 1 < size)
            buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static void write_line(int fd, const char *prefix, const char *line)
{
    char out[512];
    sc_fmt(out, sizeof out, "%s: %s\n", prefix, line);
    if (sc_write_all(fd, out, strlen(out)) < 0)
        sc_die("writing to fd %d", fd);
}

static void run_child(void)
{
    close(tell[1]);
    close(ack[0]);
    char line[256];
    ssize_t n;
    while ((n = read(tell[0], line, sizeof line - 1)) > 0) {
        line[n] = 0;
        write_line(1, "child", line);
        if (write(ack[1], "k", 1) != 1)
            _exit(2);
    }
    _exit(n == 0 ? 0 : 3);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "external_pipe");
    int expected = -1;
    int socket_given = 0;
    for (int i = 0; i < sc_argc_extra; i++) {
        if (strcmp(sc_argv_extra[i], "--lines") == 0 && i + 1 < sc_argc_extra)
            expected = atoi(sc_argv_extra[i + 1]);
        if (strcmp(sc_argv_extra[i], "--socket") == 0)
            socket_given = 1;
    }
    if (expected < 0)
        sc_die("usage: [--socket] --lines N");
    struct stat in, out;
    if (fstat(0, &in) < 0 || fstat(1, &out) < 0)
        sc_die("fstat of stdin or stdout");
    if (socket_given && !(S_ISSOCK(in.st_mode) && in.st_ino == out.st_ino))
        sc_die("stdin and stdout must be one socket");
    if (!socket_given && !(S_ISFIFO(in.st_mode) && S_ISFIFO(out.st_mode)))
        sc_die("stdin and stdout must be pipes");
    if (dup3(1, 9, O_CLOEXEC) != 9)
        sc_die("dup3");
    if (pipe2(tell, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0)
        sc_die("pipe2");
    child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0)
        run_child();
    close(tell[0]);
    close(ack[1]);
    sc_ready();

    int lines = 0;
    char line[256];
    while (read_line(line, sizeof line) >= 0) {
        lines++;
        write_line(1, "echo", line);
        if (sc_write_all(tell[1], line, strlen(line)) < 0)
            sc_die("telling the child");
        char k;
        if (read(ack[0], &k, 1) != 1)
            sc_die("the child did not echo");
        write_line(9, "again", line);
    }
    sc_check_common();
    sc_check(lines == expected, "read %d lines, expected %d", lines, expected);
    close(tell[1]);
    int status;
    sc_check(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child did not exit 0 (status %#x)", status);
    if (sc_write_all(1, "done\n", 5) < 0)
        sc_fail("writing done: %s", strerror(errno));
    sc_finish();
}
