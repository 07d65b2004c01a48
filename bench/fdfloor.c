/* The floor of a dump of bench/fds.c's 2,000 descriptors read from outside the target, with no
   parasite: the fewest per-descriptor system calls such a dump makes, timed without anything
   else a dump does (no freeze, no memory, no record, no kill). It does what both of amber's
   passes need of each descriptor -- a copy through one pidfd (pidfd_getfd), fstat of the copy,
   the read of /proc/PID/fdinfo/N through the open fdinfo directory, and the closes -- twice
   (before the freeze and on the frozen tree), then copies what every pipe and socket holds
   without consuming it: tee(2) of each pipe into one scratch pipe read back, a MSG_PEEK of each
   unix socket. It prints each phase's time in ms and how many bytes it copied.
   Usage: fdfloor PID [PASSES]   (PASSES: 1 or 2 probe passes, default 2; or "copy": two passes,
   the first as amber's running checks read a pipe or socket, fstat, F_GETFL and F_GETLK of the
   copy instead of the fdinfo)
   Run it against a bench/fds.c target beside `criu dump` of another one, in one sitting:
   CRIU reads each descriptor once, from inside the frozen task. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

enum { MAX_FDS = 65536 };
static int fds[MAX_FDS];
static int kinds[MAX_FDS]; /* 0 other, 1 pipe read end, 2 pipe write end, 3 socket */

/* One pass: every descriptor copied, its copy's status read, its fdinfo read, both closed;
   through_copy: a pipe's or socket's flags and locks read from the copy instead. */
static int probe_pass(int pidfd, int fdinfo_dir, int count, int through_copy) {
    char buf[4096];
    for (int i = 0; i < count; i++) {
        int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fds[i], 0);
        if (copy < 0) return -1;
        struct stat st;
        if (fstat(copy, &st) != 0) return -1;
        if (through_copy && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
            int flags = fcntl(copy, F_GETFL);
            struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            if (flags < 0 || fcntl(copy, F_GETLK, &lock) != 0) return -1;
            close(copy);
            kinds[i] = S_ISSOCK(st.st_mode) ? 3 : (flags & O_ACCMODE) == O_WRONLY ? 2 : 1;
            continue;
        }
        char name[16];
        snprintf(name, sizeof name, "%d", fds[i]);
        int info = openat(fdinfo_dir, name, O_RDONLY | O_CLOEXEC);
        if (info < 0) return -1;
        ssize_t n = read(info, buf, sizeof buf);
        close(info);
        close(copy);
        if (n <= 0) return -1;
        if (S_ISFIFO(st.st_mode)) {
            char *flags = strstr(buf, "flags:");
            kinds[i] = flags && (strtol(flags + 6, 0, 8) & O_ACCMODE) == O_WRONLY ? 2 : 1;
        } else {
            kinds[i] = S_ISSOCK(st.st_mode) ? 3 : 0;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fdfloor PID [PASSES]\n"); return 2; }
    int pid = atoi(argv[1]), copy_first = argc > 2 && strcmp(argv[2], "copy") == 0;
    int passes = argc > 2 && !copy_first ? atoi(argv[2]) : 2;
    double t0 = now_ms();
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *dir = opendir(path);
    snprintf(path, sizeof path, "/proc/%d/fdinfo", pid);
    int fdinfo_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pidfd < 0 || !dir || fdinfo_dir < 0) { perror("open"); return 1; }
    int count = 0;
    for (struct dirent *e; (e = readdir(dir)) && count < MAX_FDS;)
        if (e->d_name[0] != '.') fds[count++] = atoi(e->d_name);
    closedir(dir);
    double t1 = now_ms();
    double pass_ms[2] = {0, 0};
    for (int p = 0; p < passes && p < 2; p++) {
        double start = now_ms();
        if (probe_pass(pidfd, fdinfo_dir, count, copy_first && p == 0) != 0) { perror("probe"); return 1; }
        pass_ms[p] = now_ms() - start;
    }
    double t2 = now_ms();
    int scratch[2];
    if (pipe2(scratch, O_NONBLOCK | O_CLOEXEC) != 0) return 1;
    static char data[1 << 16];
    long copied = 0;
    for (int i = 0; i < count; i++) {
        if (kinds[i] != 1 && kinds[i] != 3) continue;
        int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fds[i], 0);
        if (copy < 0) return 1;
        if (kinds[i] == 1) {
            ssize_t n = tee(copy, scratch[1], sizeof data, SPLICE_F_NONBLOCK);
            if (n > 0) copied += read(scratch[0], data, (size_t)n);
        } else {
            ssize_t n = recv(copy, data, sizeof data, MSG_PEEK | MSG_DONTWAIT);
            if (n > 0) copied += n;
        }
        close(copy);
    }
    double t3 = now_ms();
    printf("fds %d setup %.1f pass1 %.1f pass2 %.1f data %.1f total %.1f ms copied %ld bytes\n", count, t1 - t0,
           pass_ms[0], pass_ms[1], t3 - t2, t3 - t0, copied);
    return 0;
}
