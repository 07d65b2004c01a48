// Inside a runc container (built with cc -static, as the rootfs is busybox's alone): two
// processes talking over a pipe and a unix socket pair. The parent sends 1, 2, 3... down the
// pipe; the child answers each number plus one over the socket pair; the parent checks the
// answer and writes the last number answered to /tmp/pair. A wrong or missing answer writes
// FAIL to /tmp/pair-status and exits 1.
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *why) {
    FILE *status = fopen("/tmp/pair-status", "w");
    if (status) {
        fprintf(status, "FAIL: %s\n", why);
        fclose(status);
    }
    exit(1);
}

int main(void) {
    int pipe_ends[2], pair[2];
    if (pipe(pipe_ends) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) fail("pipe or socketpair");
    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        close(pipe_ends[1]);
        close(pair[0]);
        long number;
        while (read(pipe_ends[0], &number, sizeof number) == sizeof number) {
            number += 1;
            if (write(pair[1], &number, sizeof number) != sizeof number) _exit(1);
        }
        _exit(0);
    }
    close(pipe_ends[0]);
    close(pair[1]);
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (long number = 1;; number++) {
        long answer = 0;
        if (write(pipe_ends[1], &number, sizeof number) != sizeof number) fail("write to the pipe");
        if (read(pair[0], &answer, sizeof answer) != sizeof answer) fail("read from the socket pair");
        if (answer != number + 1) fail("wrong answer");
        FILE *out = fopen("/tmp/pair.new", "w");
        if (!out) fail("open /tmp/pair.new");
        fprintf(out, "%ld\n", number);
        fclose(out);
        rename("/tmp/pair.new", "/tmp/pair");
        nanosleep(&pause, NULL);
    }
}
