/* bench target (f): one process holding 500 pipes and 500 unix stream socketpairs, with
   4 KiB queued in each pipe and in each direction of each socketpair: 2,000 fds, 6 MiB
   queued. What a dump and a restore cost per open file and per byte in flight. Creates the
   file argv[1] once everything is queued. */
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
enum { PIPES = 500, SOCKETPAIRS = 500, QUEUED = 4096 };
static int fill(int fd, char seed) {
    char buf[QUEUED];
    for (int i = 0; i < QUEUED; i++) buf[i] = (char)(seed + i);
    return write(fd, buf, sizeof buf) == (ssize_t)sizeof buf ? 0 : -1;
}
int main(int argc, char **argv) {
    setsid();
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_max < 2100) return 1;
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) return 1;
    for (int i = 0; i < PIPES; i++) {
        int p[2];
        if (pipe(p) != 0 || fill(p[1], (char)i) != 0) return 1;
    }
    for (int i = 0; i < SOCKETPAIRS; i++) {
        int s[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0) return 1;
        if (fill(s[0], (char)i) != 0 || fill(s[1], (char)(i + 1)) != 0) return 1;
    }
    if (argc > 1) { int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644); if (fd >= 0) close(fd); }
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
