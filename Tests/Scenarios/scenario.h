/*
 * Shared code for Amber's scenario programs.
 *
 * A scenario sets up its state, calls sc_ready() (which writes its PID to the
 * --pidfile), waits for SIGTERM, then checks its state and calls sc_finish(),
 * which writes "PASS" or "FAIL: <what>" to the --outfile and exits 0 or 1.
 *
 * sc_ready() also snapshots state every scenario should keep across a dump and
 * restore (PID, process group, session, comm, cwd, umask, rlimits, exe, the fd
 * table with targets, flags and offsets); sc_check_common() compares it.  Call
 * sc_check_common() right after the wait, before the scenario's own checks open
 * or move anything.
 *
 * Everything here keeps its data in static storage: after a restore, the
 * paths and snapshots are back in memory like everything else.
 */
#ifndef AMBER_SCENARIO_H
#define AMBER_SCENARIO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

static char sc_pidfile[PATH_MAX];
static char sc_outfile[PATH_MAX];
static char sc_dir[PATH_MAX]; /* directory of --outfile: scenarios create their files here */
static const char *sc_name = "scenario";

/* Every helper is static and some scenarios do not use all of them. */
#define SC_FN static __attribute__((unused))

static volatile sig_atomic_t sc_term;   /* set by the SIGTERM handler */
static char sc_failures[4096];          /* "; "-separated list of failed checks */
static int sc_nfail;

/* Extra arguments (everything that is not --pidfile/--outfile), for scenarios that take options. */
static int sc_argc_extra;
static char **sc_argv_extra;

/* ---- failure reporting ---------------------------------------------------------------- */

SC_FN void sc_vfail(const char *fmt, va_list ap)
{
    size_t len = strlen(sc_failures);
    if (sc_nfail > 0 && len + 3 < sizeof sc_failures) {
        strcat(sc_failures, "; ");
        len += 2;
    }
    if (len < sizeof sc_failures - 1)
        vsnprintf(sc_failures + len, sizeof sc_failures - len, fmt, ap);
    for (char *p = sc_failures + len; *p; p++) /* the verdict stays one line */
        if (*p == '\n')
            *p = '|';
    sc_nfail++;
}

__attribute__((format(printf, 1, 2))) SC_FN void sc_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sc_vfail(fmt, ap);
    va_end(ap);
}

/* Record a failure unless cond holds; returns cond. */
__attribute__((format(printf, 2, 3))) SC_FN int sc_check(int cond, const char *fmt, ...)
{
    if (!cond) {
        va_list ap;
        va_start(ap, fmt);
        sc_vfail(fmt, ap);
        va_end(ap);
    }
    return cond;
}

/* Setup failed before the scenario was ready: say why on stderr and exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) SC_FN void sc_die(const char *fmt, ...)
{
    char buf[1024];
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 64, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof buf - 64)
        n = sizeof buf - 64;
    n += snprintf(buf + n, 64, " (errno %d: %s)\n", e, strerror(e));
    if (write(2, "setup failed: ", 14) < 0 || write(2, buf, (size_t)n) < 0) {
    }
    _exit(2);
}

/* snprintf into a path-sized buffer; a path that does not fit is a setup error. */
__attribute__((format(printf, 3, 4))) SC_FN void sc_fmt(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        sc_die("formatting '%s'", fmt);
    }
}

SC_FN int sc_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write the verdict with open/write/close and exit: 0 on PASS, 1 on FAIL. */
__attribute__((noreturn)) SC_FN void sc_finish(void)
{
    char buf[sizeof sc_failures + 16];
    int n;
    if (sc_nfail == 0)
        n = snprintf(buf, sizeof buf, "PASS\n");
    else
        n = snprintf(buf, sizeof buf, "FAIL: %s\n", sc_failures);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = (int)strlen(buf);
    int fd = open(sc_outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sc_write_all(fd, buf, (size_t)n) < 0 || close(fd) < 0)
        _exit(3);
    _exit(sc_nfail == 0 ? 0 : 1);
}

/* ---- small helpers ---------------------------------------------------------------------- */

SC_FN void sc_path(char *out, size_t size, const char *name)
{
    sc_fmt(out, size, "%s/%s", sc_dir, name);
}

/* Makes the directory "private" (mode 0700) in the scenario's directory, enters it, writes
 * "secret!" to its file "mapped" (mode 0600) and maps that private and read-only: what a
 * process keeps after it gives up the rights to reach it. Returns the mapping. */
SC_FN char *sc_private_mapping(void)
{
    char directory[PATH_MAX];
    sc_path(directory, sizeof directory, "private");
    int file;
    if ((mkdir(directory, 0700) != 0 && errno != EEXIST) || chdir(directory) != 0 ||
        (file = open("mapped", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 || write(file, "secret!", 7) != 7)
        sc_die("the private directory and file");
    char *mapping = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, file, 0);
    close(file);
    if (mapping == MAP_FAILED)
        sc_die("mapping the private file");
    return mapping;
}

/* Read a whole (small) file such as one under /proc into buf; returns length or -1. */
SC_FN ssize_t sc_read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t total = 0;
    for (;;) {
        if (total == size) {
            close(fd);
            errno = EFBIG;
            return -1;
        }
        ssize_t n = read(fd, buf + total, size - total);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    close(fd);
    return (ssize_t)total;
}

SC_FN int64_t sc_now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

SC_FN void sc_on_sigterm(int sig)
{
    (void)sig;
    sc_term = 1;
}

/* Install `handler` for `sig` with `flags` (SA_*), masking nothing else while it runs. */
SC_FN void sc_handle(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0)
        sc_die("sigaction(%d)", sig);
}

/* Install the default SIGTERM handler (sets sc_term). */
SC_FN void sc_install_sigterm(int flags)
{
    sc_handle(SIGTERM, sc_on_sigterm, flags);
}

/* Start `count` threads, thread i (1..count) running worker((void *)(intptr_t)i), with SIGTERM
 * blocked in them so that only the main thread takes it. With `ready`, set up here as a barrier
 * for count + 1, return once every worker has waited on it (after setting up its state). */
SC_FN void sc_start_workers(pthread_t *threads, int count, void *(*worker)(void *), pthread_barrier_t *ready)
{
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    if (ready)
        pthread_barrier_init(ready, NULL, (unsigned)count + 1);
    for (int i = 1; i <= count; i++)
        if (pthread_create(&threads[i - 1], NULL, worker, (void *)(intptr_t)i) != 0)
            sc_die("pthread_create");
    if (ready)
        pthread_barrier_wait(ready);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
}

/* Sleep in short slices until SIGTERM arrives. */
SC_FN void sc_wait_for_term(void)
{
    while (!sc_term) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- argument parsing --------------------------------------------------------------------- */

SC_FN void sc_init(int argc, char **argv, const char *name)
{
    sc_name = name;
    sc_argv_extra = calloc((size_t)argc + 1, sizeof(char *));
    if (!sc_argv_extra)
        sc_die("calloc");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pidfile") == 0 && i + 1 < argc) {
            snprintf(sc_pidfile, sizeof sc_pidfile, "%s", argv[++i]);
        } else if (strcmp(argv[i], "--outfile") == 0 && i + 1 < argc) {
            snprintf(sc_outfile, sizeof sc_outfile, "%s", argv[++i]);
        } else {
            sc_argv_extra[sc_argc_extra++] = argv[i];
        }
    }
    if (!sc_pidfile[0] || !sc_outfile[0]) {
        fprintf(stderr, "usage: %s --pidfile FILE --outfile FILE [options]\n", argv[0]);
        exit(64);
    }
    snprintf(sc_dir, sizeof sc_dir, "%s", sc_outfile);
    char *slash = strrchr(sc_dir, '/');
    if (slash == sc_dir)
        sc_dir[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(sc_dir, sizeof sc_dir, ".");
    /* Make the directory absolute: scenarios may chdir. */
    if (sc_dir[0] != '/') {
        char cwd[PATH_MAX], tmp[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            sc_die("getcwd");
        sc_fmt(tmp, sizeof tmp, "%s/%s", cwd, sc_dir);
        snprintf(sc_dir, sizeof sc_dir, "%s", tmp);
        if (sc_outfile[0] != '/') {
            sc_fmt(tmp, sizeof tmp, "%s/%s", cwd, sc_outfile);
            snprintf(sc_outfile, sizeof sc_outfile, "%s", tmp);
        }
        if (sc_pidfile[0] != '/') {
            sc_fmt(tmp, sizeof tmp, "%s/%s", cwd, sc_pidfile);
            snprintf(sc_pidfile, sizeof sc_pidfile, "%s", tmp);
        }
    }
}

SC_FN int sc_has_flag(const char *flag)
{
    for (int i = 0; i < sc_argc_extra; i++)
        if (strcmp(sc_argv_extra[i], flag) == 0)
            return 1;
    return 0;
}

/* ---- the common snapshot ------------------------------------------------------------------ */

#define SC_MAX_FDS 256
struct sc_fd {
    int fd;
    int flags;     /* F_GETFL */
    int fdflags;   /* F_GETFD */
    off_t offset;  /* lseek(fd, 0, SEEK_CUR), or -1 with sc_fd.seek_errno */
    int seek_errno;
    char target[PATH_MAX];
};

static struct {
    pid_t pid, pgid, sid;
    uid_t uid, euid;
    gid_t gid, egid;
    mode_t umask;
    char comm[32];
    char cwd[PATH_MAX];
    char exe[PATH_MAX];
    struct rlimit limits[RLIM_NLIMITS];
    int nfds;
    struct sc_fd fds[SC_MAX_FDS];
} sc_snap;

SC_FN int sc_list_fds(struct sc_fd *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == self)
            continue;
        if (n == max)
            break;
        struct sc_fd *f = &out[n++];
        memset(f, 0, sizeof *f);
        f->fd = fd;
        f->flags = fcntl(fd, F_GETFL);
        f->fdflags = fcntl(fd, F_GETFD);
        errno = 0;
        f->offset = lseek(fd, 0, SEEK_CUR);
        f->seek_errno = f->offset < 0 ? errno : 0;
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, f->target, sizeof f->target - 1);
        f->target[len < 0 ? 0 : len] = 0;
    }
    closedir(d);
    /* sort by fd number */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1].fd > out[j].fd; j--) {
            struct sc_fd t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    /* A restored pipe or socket is another inode, a restored pty may have another number: name
     * each by its order of first appearance ("pipe:#0", "socket:#1", "pts:#2"), which keeps
     * which fds are on one pipe, socket or pty. So is an O_TMPFILE file, named
     * "DIR/#INODE (deleted)" after its inode: "O_TMPFILE:#3". */
    static char seen[SC_MAX_FDS][PATH_MAX];
    int pipes = 0;
    for (int i = 0; i < n; i++) {
        const char *hash = strrchr(out[i].target, '/');
        unsigned long inode;
        char rest[16] = "";
        int temporary = hash && sscanf(hash, "/#%lu%15[^\n]", &inode, rest) == 2 && strcmp(rest, " (deleted)") == 0;
        const char *kind = strncmp(out[i].target, "pipe:[", 6) == 0 ? "pipe"
                           : strncmp(out[i].target, "socket:[", 8) == 0 ? "socket"
                           : strncmp(out[i].target, "/dev/pts/", 9) == 0 && isdigit((unsigned char)out[i].target[9]) ? "pts"
                           : temporary ? "O_TMPFILE" : NULL;
        if (!kind)
            continue;
        int k = 0;
        while (k < pipes && strcmp(seen[k], out[i].target) != 0)
            k++;
        if (k == pipes)
            snprintf(seen[pipes++], sizeof seen[0], "%s", out[i].target);
        snprintf(out[i].target, sizeof out[i].target, "%s:#%d", kind, k);
    }
    return n;
}

/* The working directory as /proc shows it: getcwd fails (ENOENT) in one that was removed,
 * which the link still names, followed by " (deleted)".  0, or -1 with errno set. */
SC_FN int sc_cwd(char *out, size_t size)
{
    ssize_t len = readlink("/proc/self/cwd", out, size - 1);
    if (len < 0)
        return -1;
    out[len] = 0;
    return 0;
}

SC_FN void sc_snapshot(void)
{
    sc_snap.pid = getpid();
    sc_snap.pgid = getpgid(0);
    sc_snap.sid = getsid(0);
    sc_snap.uid = getuid();
    sc_snap.euid = geteuid();
    sc_snap.gid = getgid();
    sc_snap.egid = getegid();
    sc_snap.umask = umask(0);
    umask(sc_snap.umask);
    prctl(PR_GET_NAME, sc_snap.comm, 0, 0, 0);
    if (sc_cwd(sc_snap.cwd, sizeof sc_snap.cwd) != 0)
        sc_die("readlink /proc/self/cwd");
    ssize_t len = readlink("/proc/self/exe", sc_snap.exe, sizeof sc_snap.exe - 1);
    sc_snap.exe[len < 0 ? 0 : len] = 0;
    for (int r = 0; r < RLIM_NLIMITS; r++)
        getrlimit(r, &sc_snap.limits[r]);
    sc_snap.nfds = sc_list_fds(sc_snap.fds, SC_MAX_FDS);
    if (sc_snap.nfds < 0)
        sc_die("listing /proc/self/fd");
}

/* Compare everything sc_ready() recorded. */
SC_FN void sc_check_common(void)
{
    static struct sc_fd now[SC_MAX_FDS];
    sc_check(getpid() == sc_snap.pid, "getpid() %d, was %d", getpid(), sc_snap.pid);
    sc_check((pid_t)syscall(SYS_gettid) == sc_snap.pid, "gettid() %ld, was %d", (long)syscall(SYS_gettid), sc_snap.pid);
    sc_check(getpgid(0) == sc_snap.pgid, "process group %d, was %d", getpgid(0), sc_snap.pgid);
    sc_check(getsid(0) == sc_snap.sid, "session %d, was %d", getsid(0), sc_snap.sid);
    sc_check(getuid() == sc_snap.uid && geteuid() == sc_snap.euid && getgid() == sc_snap.gid && getegid() == sc_snap.egid,
             "credentials changed");
    /* 0: the parent is outside our PID namespace (we are its init) */
    pid_t ppid = getppid();
    sc_check(ppid >= 0 && (ppid <= 1 || kill(ppid, 0) == 0 || errno == EPERM), "getppid() %d is not a live process", ppid);

    mode_t m = umask(0);
    umask(m);
    sc_check(m == sc_snap.umask, "umask %03o, was %03o", m, sc_snap.umask);

    char comm[32] = {0};
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    sc_check(strcmp(comm, sc_snap.comm) == 0, "comm '%s', was '%s'", comm, sc_snap.comm);

    char cwd[PATH_MAX];
    if (sc_check(sc_cwd(cwd, sizeof cwd) == 0, "readlink /proc/self/cwd failed: %s", strerror(errno)))
        sc_check(strcmp(cwd, sc_snap.cwd) == 0, "cwd '%s', was '%s'", cwd, sc_snap.cwd);

    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len < 0 ? 0 : len] = 0;
    sc_check(strcmp(exe, sc_snap.exe) == 0, "/proc/self/exe '%s', was '%s'", exe, sc_snap.exe);

    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit l;
        getrlimit(r, &l);
        sc_check(l.rlim_cur == sc_snap.limits[r].rlim_cur && l.rlim_max == sc_snap.limits[r].rlim_max,
                 "rlimit %d is %llu/%llu, was %llu/%llu", r, (unsigned long long)l.rlim_cur,
                 (unsigned long long)l.rlim_max, (unsigned long long)sc_snap.limits[r].rlim_cur,
                 (unsigned long long)sc_snap.limits[r].rlim_max);
    }

    int n = sc_list_fds(now, SC_MAX_FDS);
    if (!sc_check(n >= 0, "cannot list /proc/self/fd"))
        return;
    int i = 0, j = 0;
    while (i < sc_snap.nfds || j < n) {
        struct sc_fd *a = i < sc_snap.nfds ? &sc_snap.fds[i] : NULL;
        struct sc_fd *b = j < n ? &now[j] : NULL;
        if (a && (!b || a->fd < b->fd)) {
            sc_fail("fd %d (%s) is missing", a->fd, a->target);
            i++;
        } else if (b && (!a || b->fd < a->fd)) {
            sc_fail("unexpected fd %d (%s)", b->fd, b->target);
            j++;
        } else {
            sc_check(strcmp(a->target, b->target) == 0, "fd %d is '%s', was '%s'", a->fd, b->target, a->target);
            sc_check(a->flags == b->flags, "fd %d F_GETFL %#o, was %#o", a->fd, b->flags, a->flags);
            sc_check(a->fdflags == b->fdflags, "fd %d F_GETFD %d, was %d", a->fd, b->fdflags, a->fdflags);
            sc_check(a->offset == b->offset && a->seek_errno == b->seek_errno,
                     "fd %d offset %lld (errno %d), was %lld (errno %d)", a->fd, (long long)b->offset,
                     b->seek_errno, (long long)a->offset, a->seek_errno);
            i++;
            j++;
        }
    }
}

/* Write text to path through a temporary file and rename(), so a reader never sees a
 * partial file.  Returns 0, or -1 with errno set. */
SC_FN int sc_write_file_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (sc_write_all(fd, text, strlen(text)) < 0) {
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return -1;
    return rename(tmp, path);
}

/* Publish a PID to the --pidfile (atomically).  A launcher that starts the real scenario
 * root (in a new PID namespace, say) publishes the root's PID as it sees it. */
SC_FN void sc_publish_pid_value(pid_t pid)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d\n", (int)pid);
    if (sc_write_file_atomic(sc_pidfile, buf) < 0)
        sc_die("writing %s", sc_pidfile);
}

/* Publish our own PID.  sc_ready() is sc_snapshot() followed by this; a scenario that must
 * record something after the snapshot calls the two itself. */
SC_FN void sc_publish_pid(void)
{
    sc_publish_pid_value(getpid());
}

/* Forks a child that dies with its parent (PR_SET_PDEATHSIG), takes SIGTERM's default action,
 * runs `setup` (if any) and then sleeps in pause() for good. Returns its PID. */
SC_FN pid_t sc_fork_paused_child(void (*setup)(void))
{
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent)
            _exit(1);
        signal(SIGTERM, SIG_DFL);
        if (setup)
            setup();
        for (;;)
            pause();
    }
    return child;
}

/* Forks a grandchild outside the tree: its parent exits at once, so the test's subreaper takes
 * it, holding what this process holds. Returns 0 in the grandchild and its PID here, once its
 * parent is reaped (the grandchild exists by then). */
SC_FN pid_t sc_fork_outside(void)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        sc_die("pipe2");
    pid_t middle = fork();
    if (middle < 0)
        sc_die("fork");
    if (middle == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            close(report[0]);
            close(report[1]);
            return 0;
        }
        _exit(grandchild > 0 && write(report[1], &grandchild, sizeof grandchild) == sizeof grandchild ? 0 : 1);
    }
    close(report[1]);
    pid_t grandchild = 0;
    int status;
    if (waitpid(middle, &status, 0) != middle || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        read(report[0], &grandchild, sizeof grandchild) != sizeof grandchild || grandchild <= 0)
        sc_die("the fork of a grandchild outside the tree");
    close(report[0]);
    return grandchild;
}

/* Waits until process `pid` sleeps in pause() (system call 34). */
SC_FN void sc_wait_in_pause(pid_t pid)
{
    char path[64], text[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    for (;;) {
        ssize_t n = sc_read_file(path, text, sizeof text - 1);
        if (n > 3 && strncmp(text, "34 ", 3) == 0)
            return;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

SC_FN void sc_ready(void)
{
    sc_snapshot();
    sc_publish_pid();
}

/* ---- helpers for scenarios with several processes or threads ------------------------------ */

SC_FN void sc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000 * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Wait up to timeout_ms for path to exist: 0 once it does, -1 on timeout. */
SC_FN int sc_wait_for_file(const char *path, int timeout_ms)
{
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + (int64_t)timeout_ms * 1000000;
    while (access(path, F_OK) != 0) {
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
            return -1;
        struct timespec ts = {0, 500 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* waitpid(pid) for up to timeout_ms: returns what waitpid returned (the PID, or -1 with
 * errno), or 0 on timeout.  pid may be -1 (any child). */
SC_FN pid_t sc_wait_child(pid_t pid, int *status, int timeout_ms)
{
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r != 0 && !(r < 0 && errno == EINTR))
            return r;
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
            return 0;
        struct timespec ts = {0, 500 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Describe a wait status ("exit 3", "signal 9") into buf. */
SC_FN const char *sc_status_text(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "signal %d%s", WTERMSIG(status), WCOREDUMP(status) ? " (core)" : "");
    else
        snprintf(buf, size, "status %#x", status);
    return buf;
}

/* Exit status of a tree node whose parent changed while it waited (a failed setup): it gives up. */
#define SC_ORPHANED 4

/* Tree scenarios, in node `me`: tell each child node (kids[k] is its node number, pid_of[node]
 * its PID as this process sees it) to check with SIGUSR1, reap each within budget_ms expecting
 * exit 0, and make sure there is no other child. */
SC_FN void sc_check_child_nodes(int me, const int *kids, int nkids, const pid_t *pid_of, int budget_ms)
{
    for (int k = 0; k < nkids; k++) {
        int j = kids[k];
        sc_check(kill(pid_of[j], SIGUSR1) == 0, "node %d: cannot signal child node %d (pid %d): %s", me, j,
                 (int)pid_of[j], strerror(errno));
    }
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + (int64_t)budget_ms * 1000000;
    for (int k = 0; k < nkids; k++) {
        int j = kids[k], st = 0;
        int left = (int)((deadline - sc_now_ns(CLOCK_MONOTONIC)) / 1000000);
        pid_t r = sc_wait_child(pid_of[j], &st, left > 0 ? left : 1);
        char s[64];
        if (r == 0)
            sc_fail("node %d: child node %d (pid %d) did not finish", me, j, (int)pid_of[j]);
        else if (r != pid_of[j])
            sc_fail("node %d: waitpid(%d) for child node %d returned %d (%s)", me, (int)pid_of[j], j, (int)r,
                    strerror(errno));
        else
            sc_check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %d: child node %d (pid %d) ended with %s%s", me, j,
                     (int)pid_of[j], sc_status_text(st, s, sizeof s),
                     WIFEXITED(st) && WEXITSTATUS(st) == SC_ORPHANED ? " (it saw its parent change and gave up)" : "");
    }
    int st;
    pid_t extra = waitpid(-1, &st, WNOHANG);
    sc_check(extra < 0 && errno == ECHILD, "node %d: unexpected child (waitpid(-1) returned %d)", me, (int)extra);
}

/* Write this process's own verdict ("PASS" or "FAIL: ...", one line) to path, for a parent
 * to collect; returns 0 on PASS, 1 on FAIL (use it as the exit status). */
SC_FN int sc_write_result(const char *path)
{
    static char buf[sizeof sc_failures + 16];
    if (sc_nfail == 0)
        snprintf(buf, sizeof buf, "PASS\n");
    else
        snprintf(buf, sizeof buf, "FAIL: %s\n", sc_failures);
    if (sc_write_file_atomic(path, buf) < 0)
        return 3;
    return sc_nfail == 0 ? 0 : 1;
}

/* The NSpid line of /proc/PID/status (or self when pid is 0), fields separated by single
 * spaces, e.g. "4711 3 1"; returns the number of fields (-1 on error).  /proc is the
 * host's, but NSpid lists the PID in every namespace from the host's down to ours. */
SC_FN int sc_read_nspid(pid_t pid, char *out, size_t size)
{
    char path[64], buf[4096];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *line = strstr(buf, "\nNSpid:");
    if (!line)
        return -1;
    line += 7;
    int fields = 0;
    size_t len = 0;
    for (char *p = line; *p && *p != '\n';) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '\n')
            break;
        if (fields > 0 && len + 1 < size)
            out[len++] = ' ';
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (len + 1 < size)
                out[len++] = *p;
            p++;
        }
        fields++;
    }
    if (size)
        out[len < size ? len : size - 1] = 0;
    return fields;
}

/* Everything after the first field of an NSpid line (the PIDs below the host's), or "" */
SC_FN const char *sc_nspid_inner(const char *nspid)
{
    const char *sp = strchr(nspid, ' ');
    return sp ? sp + 1 : "";
}

/* ---- scenarios whose root is the init of a new PID namespace ------------------------------ */

/* The process the runner starts becomes a launcher: it unshares a PID namespace and forks
 * the scenario root, PID 1 there; sc_pidns_launch() returns in that root.  The launcher
 * waits until the root calls sc_pidns_root_ready(), writes the root's PID (as the
 * launcher, one namespace up, sees it) to --pidfile and exits 0; the root is then
 * reparented (to the runner, a child subreaper) and is the process the runner dumps,
 * signals and reads the verdict of. */
SC_FN void sc_pidns_launch(void)
{
    char marker[PATH_MAX + 16];
    sc_fmt(marker, sizeof marker, "%s.ns-ready", sc_pidfile);
    unlink(marker);
    if (unshare(CLONE_NEWPID) < 0)
        sc_die("unshare(CLONE_NEWPID)");
    pid_t child = fork();
    if (child < 0)
        sc_die("fork (the namespace init)");
    if (child == 0) {
        if (getpid() != 1)
            sc_die("the namespace init has PID %d, not 1", getpid());
        return;
    }
    for (;;) {
        if (access(marker, F_OK) == 0)
            break;
        int st;
        if (waitpid(child, &st, WNOHANG) == child) {
            char s[64];
            errno = 0;
            sc_die("the namespace init %d ended during setup (%s)", (int)child, sc_status_text(st, s, sizeof s));
        }
        struct timespec ts = {0, 500 * 1000};
        nanosleep(&ts, NULL);
    }
    unlink(marker);
    sc_publish_pid_value(child);
    _exit(0);
}

/* In the namespace init: snapshot (as sc_ready() does) and tell the launcher we are ready. */
SC_FN void sc_pidns_root_ready(void)
{
    char marker[PATH_MAX + 16];
    sc_snapshot();
    sc_fmt(marker, sizeof marker, "%s.ns-ready", sc_pidfile);
    if (sc_write_file_atomic(marker, "ready\n") < 0)
        sc_die("writing %s", marker);
}

/* The process's areas as smaps shows them, each header line with its VmFlags line, into out. */
SC_FN void sc_area_lines(char *out, size_t size)
{
    static char text[1 << 20];
    ssize_t n = sc_read_file("/proc/self/smaps", text, sizeof text - 1);
    if (n < 0)
        sc_die("reading /proc/self/smaps");
    text[n] = 0;
    size_t used = 0;
    out[0] = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        /* Area lines start with the address in lower-case hex; field names with a capital. */
        int header = (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
        if (!header && strncmp(line, "VmFlags:", 8) != 0)
            continue;
        int len = snprintf(out + used, size - used, "%s%s", line, header ? " | " : "\n");
        if (len < 0 || (size_t)len >= size - used)
            sc_die("smaps too long");
        used += (size_t)len;
    }
}

/* Fails naming the first area whose sc_area_lines line differs. */
SC_FN void sc_check_areas_alike(char *before, char *after)
{
    if (strcmp(before, after) == 0)
        return;
    char *b = before, *a = after;
    while (*b && *b == *a) {
        b++;
        a++;
    }
    while (b > before && b[-1] != '\n')
        b--, a--;
    char *bend = strchr(b, '\n'), *aend = strchr(a, '\n');
    sc_fail("areas differ: was '%.*s', now '%.*s'", bend ? (int)(bend - b) : (int)strlen(b), b,
            aend ? (int)(aend - a) : (int)strlen(a), a);
}

/* The state letter /proc/PID/stat shows for `pid` (S, T, Z...), or '?'. */
SC_FN char sc_state_of(pid_t pid)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (n <= 0)
        return '?';
    text[n] = 0;
    char *p = strrchr(text, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* ---- a thread waiting for a priority-inheritance mutex ------------------------------------ */

struct sc_pi_waiter {
    pthread_mutex_t *mutex;
    pthread_t thread;
    volatile int taken;
};

static void *sc_pi_take(void *arg)
{
    struct sc_pi_waiter *waiter = arg;
    if (pthread_mutex_lock(waiter->mutex) == 0) {
        waiter->taken = 1;
        pthread_mutex_unlock(waiter->mutex);
    }
    return NULL;
}

/* Locks a PI mutex on the second page of an area of its own (a lazy restore writes an area's
 * first page before the tree runs), never touched again, and starts a thread that waits for it
 * in the kernel (FUTEX_LOCK_PI): a dump's freeze makes the kernel take it again once the
 * thread runs, with page faults disabled. */
SC_FN void sc_pi_waiter_start(struct sc_pi_waiter *waiter)
{
    char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_mutexattr_t attributes;
    if (pages == MAP_FAILED || pthread_mutexattr_init(&attributes) != 0 ||
        pthread_mutexattr_setprotocol(&attributes, PTHREAD_PRIO_INHERIT) != 0)
        sc_die("a PI mutex");
    pages[0] = 1;
    waiter->mutex = (pthread_mutex_t *)(pages + 4096 + 64);
    waiter->taken = 0;
    if (pthread_mutex_init(waiter->mutex, &attributes) != 0 || pthread_mutex_lock(waiter->mutex) != 0 ||
        pthread_create(&waiter->thread, NULL, sc_pi_take, waiter) != 0)
        sc_die("a thread waiting for a PI mutex");
    /* It waits in the kernel once the mutex's word has the waiters bit. */
    while (!(__atomic_load_n((int *)waiter->mutex, __ATOMIC_ACQUIRE) & 0x80000000))
        usleep(1000);
    usleep(20000);
}

/* Unlocks the mutex: the waiting thread must take it. */
SC_FN int sc_pi_waiter_finish(struct sc_pi_waiter *waiter)
{
    pthread_mutex_unlock(waiter->mutex);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    int joined = pthread_timedjoin_np(waiter->thread, NULL, &until);
    return joined == 0 && waiter->taken;
}

#endif
