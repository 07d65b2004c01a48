/*
 * pipes: anonymous pipes holding data, by flag:
 *   --full            a full 64 KiB pipe whose ends parent and child both hold (inherited
 *                     across fork); after SIGTERM the parent closes its ends and the child
 *                     reads every byte, in order, then end of file
 *   --large           a 1 MiB pipe (F_SETPIPE_SZ), full, both ends in this process: the read
 *                     end O_NONBLOCK, the write end also at a second fd (dup)
 *   --blocked-writer  a child blocked in write(2) on the full pipe, 256 KiB to write in all;
 *                     after SIGTERM the parent reads every byte once, then end of file
 *   --packets         packet mode (O_DIRECT) on the write end: four messages, read back one
 *                     a read, the last read short (the rest of that packet is dropped)
 *   --closed-ends     a pipe whose read end is closed (writes fail with EPIPE) and one whose
 *                     write end is closed, holding bytes (read, then end of file)
 *   --fifo            a named pipe of 256 KiB (F_SETPIPE_SZ) holding 100 KiB, open for
 *                     reading twice (O_NONBLOCK) and for writing once
 *   --fifo-writer     a named pipe open for writing only, which no process reads (its reader
 *                     closed): writes fail with EPIPE until a reader opens it again
 * Byte i of a stream is i % 251, so a lost, repeated or reordered byte shows.
 */
#include "scenario.h"
#include <sys/ioctl.h>

#define BLOCKED_TOTAL (256 * 1024)

static int ends[2] = {-1, -1};
static int second_write = -1;
static int other[2] = {-1, -1};
static pid_t child;

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i % 251);
}

static int write_pattern(int fd, size_t from, size_t count)
{
    static unsigned char buf[65536];
    while (count > 0) {
        size_t n = count < sizeof buf ? count : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(from + i);
        if (sc_write_all(fd, buf, n) < 0)
            return -1;
        from += n;
        count -= n;
    }
    return 0;
}

/* Reads from `fd` until end of file (or EAGAIN when `nonblocking`), checking every byte
 * against the pattern; returns how many were read, or -1 after a failure recorded. */
static ssize_t read_pattern(int fd, int nonblocking, const char *what)
{
    static unsigned char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && nonblocking && errno == EAGAIN)
            return (ssize_t)total;
        if (n < 0) {
            sc_fail("%s: read after %zu bytes: %s", what, total, strerror(errno));
            return -1;
        }
        if (n == 0)
            return (ssize_t)total;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern(total + (size_t)i)) {
                sc_fail("%s: byte %zu is %u, expected %u", what, total + (size_t)i, buf[i], pattern(total + (size_t)i));
                return -1;
            }
        total += (size_t)n;
    }
}

static int queued(int fd)
{
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

static int child_status(void)
{
    int status = 0;
    pid_t r = sc_wait_child(child, &status, 20000);
    if (!sc_check(r == child, "the child %d was not reaped (waitpid returned %d)", (int)child, (int)r))
        return -1;
    char text[64];
    sc_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with %s", sc_status_text(status, text, sizeof text));
    return status;
}

static volatile sig_atomic_t child_go;

static void on_usr1(int sig)
{
    (void)sig;
    child_go = 1;
}

/* --full: the child, told to by SIGUSR1, reads the 64 KiB and then end of file. */
static void full(void)
{
    if (pipe2(ends, O_CLOEXEC) < 0)
        sc_die("pipe2");
    if (write_pattern(ends[1], 0, 65536) < 0)
        sc_die("filling the pipe");
    sc_handle(SIGUSR1, on_usr1, 0);
    child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        while (!child_go)
            pause();
        close(ends[1]);
        if (queued(ends[0]) != 65536)
            _exit(10);
        _exit(read_pattern(ends[0], 0, "child") == 65536 ? 0 : 11);
    }
    sc_wait_in_pause(child);
}

static void full_check(void)
{
    sc_check(queued(ends[0]) == 65536, "the pipe holds %d bytes, expected 65536", queued(ends[0]));
    sc_check(fcntl(ends[0], F_GETPIPE_SZ) == 65536, "capacity %d", fcntl(ends[0], F_GETPIPE_SZ));
    close(ends[0]);
    close(ends[1]);
    kill(child, SIGUSR1);
    child_status();
}

/* --large: 1 MiB, both ends here. */
static void large(void)
{
    if (pipe2(ends, O_CLOEXEC) < 0 || fcntl(ends[0], F_SETPIPE_SZ, 1 << 20) < 0)
        sc_die("pipe2 and F_SETPIPE_SZ");
    if (write_pattern(ends[1], 0, 1 << 20) < 0)
        sc_die("filling the pipe");
    if (fcntl(ends[0], F_SETFL, O_NONBLOCK) < 0 || (second_write = dup(ends[1])) < 0)
        sc_die("O_NONBLOCK and dup");
}

static void large_check(void)
{
    sc_check(fcntl(ends[0], F_GETPIPE_SZ) == 1 << 20, "capacity %d, expected 1 MiB", fcntl(ends[0], F_GETPIPE_SZ));
    sc_check(queued(ends[0]) == 1 << 20, "the pipe holds %d bytes, expected 1 MiB", queued(ends[0]));
    sc_check(fcntl(ends[0], F_GETFL) & O_NONBLOCK, "the read end is blocking");
    sc_check(!(fcntl(ends[1], F_GETFL) & O_NONBLOCK), "the write end is non-blocking");
    /* One description at both write fds: a flag set through one shows at the other. */
    fcntl(second_write, F_SETFL, O_NONBLOCK);
    sc_check(fcntl(ends[1], F_GETFL) & O_NONBLOCK, "the two write fds are not one open file description");
    char byte = 0;
    sc_check(write(ends[1], &byte, 1) < 0 && errno == EAGAIN, "a write to the full pipe did not fail with EAGAIN");
    struct stat st;
    sc_check(fstat(ends[0], &st) == 0 && st.st_uid == getuid() && (st.st_mode & 07777) == 0600, "the pipe's owner or mode changed");
    ssize_t n = read_pattern(ends[0], 1, "read end");
    sc_check(n == 1 << 20, "read %zd bytes, expected 1 MiB", n);
    close(ends[1]);
    close(second_write);
    sc_check(read(ends[0], &byte, 1) == 0, "no end of file once the write end is closed");
}

/* --blocked-writer: the child writes 256 KiB, blocking when the pipe is full. */
static void blocked_writer(void)
{
    if (pipe2(ends, O_CLOEXEC) < 0)
        sc_die("pipe2");
    child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        close(ends[0]);
        _exit(write_pattern(ends[1], 0, BLOCKED_TOTAL) == 0 ? 0 : 12);
    }
    close(ends[1]);
    ends[1] = -1;
    /* ready once the pipe is full and the child blocked in write (1) */
    char path[64], text[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)child);
    for (;;) {
        ssize_t n = sc_read_file(path, text, sizeof text - 1);
        if (queued(ends[0]) == 65536 && n > 2 && strncmp(text, "1 ", 2) == 0)
            break;
        sc_sleep_ms(1);
    }
}

static void blocked_writer_check(void)
{
    ssize_t n = read_pattern(ends[0], 0, "parent");
    sc_check(n == BLOCKED_TOTAL, "read %zd bytes, expected %d", n, BLOCKED_TOTAL);
    child_status();
}

/* --packets: four messages written in packet mode. */
static const size_t message_sizes[] = {10, 100, 1000, 4096};

static void packets(void)
{
    if (pipe2(ends, O_CLOEXEC | O_DIRECT) < 0 || fcntl(ends[0], F_SETFL, O_NONBLOCK) < 0)
        sc_die("pipe2(O_DIRECT)");
    size_t from = 0;
    for (size_t i = 0; i < sizeof message_sizes / sizeof message_sizes[0]; i++) {
        if (write_pattern(ends[1], from, message_sizes[i]) < 0)
            sc_die("writing a packet");
        from += message_sizes[i];
    }
}

static void packets_check(void)
{
    sc_check(fcntl(ends[1], F_GETFL) & O_DIRECT, "the write end left packet mode");
    sc_check(fcntl(ends[0], F_GETFL) & O_NONBLOCK, "the read end is blocking");
    static unsigned char buf[8192];
    size_t from = 0;
    for (size_t i = 0; i < 3; i++) {
        ssize_t n = read(ends[0], buf, sizeof buf);
        if (!sc_check(n == (ssize_t)message_sizes[i], "read %zu returned %zd, expected the %zu-byte packet", i, n, message_sizes[i]))
            return;
        for (ssize_t k = 0; k < n; k++)
            if (!sc_check(buf[k] == pattern(from + (size_t)k), "packet %zu: byte %zd is wrong", i, k))
                return;
        from += (size_t)n;
    }
    ssize_t n = read(ends[0], buf, 5);
    sc_check(n == 5 && buf[0] == pattern(from) && buf[4] == pattern(from + 4), "the short read of the last packet returned %zd", n);
    n = read(ends[0], buf, sizeof buf);
    sc_check(n < 0 && errno == EAGAIN, "the rest of the last packet was not dropped (read returned %zd)", n);
    /* still in packet mode: two writes, two reads */
    sc_check(write(ends[1], "ab", 2) == 2 && write(ends[1], "cd", 2) == 2, "writes failed");
    sc_check(read(ends[0], buf, sizeof buf) == 2 && read(ends[0], buf, sizeof buf) == 2, "new packets merged");
}

/* --closed-ends: ends[1] has no reader; other[0] has no writer and holds 3000 bytes. */
static void closed_ends(void)
{
    if (pipe2(ends, O_CLOEXEC) < 0 || pipe2(other, O_CLOEXEC) < 0)
        sc_die("pipe2");
    close(ends[0]);
    ends[0] = -1;
    if (write_pattern(other[1], 0, 3000) < 0)
        sc_die("writing");
    close(other[1]);
    other[1] = -1;
    signal(SIGPIPE, SIG_IGN);
}

static void closed_ends_check(void)
{
    char byte = 0;
    sc_check(write(ends[1], &byte, 1) < 0 && errno == EPIPE, "a write with no reader did not fail with EPIPE");
    ssize_t n = read_pattern(other[0], 0, "reader without writer");
    sc_check(n == 3000, "read %zd bytes, expected 3000, then end of file", n);
}

/* --fifo: ends[0] and other[0] read the FIFO, ends[1] writes it. */
#define FIFO_HELD (100 * 1024)

static void fifo(void)
{
    char path[PATH_MAX];
    sc_path(path, sizeof path, "pipes.fifo");
    unlink(path);
    if (mkfifo(path, 0600) < 0)
        sc_die("mkfifo");
    if ((ends[0] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 || (ends[1] = open(path, O_WRONLY | O_CLOEXEC)) < 0
        || (other[0] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
        sc_die("opening the FIFO");
    if (fcntl(ends[1], F_SETPIPE_SZ, 256 * 1024) < 0 || write_pattern(ends[1], 0, FIFO_HELD) < 0)
        sc_die("filling the FIFO");
}

static void fifo_check(void)
{
    sc_check(fcntl(ends[0], F_GETPIPE_SZ) == 256 * 1024, "capacity %d, expected 256 KiB", fcntl(ends[0], F_GETPIPE_SZ));
    sc_check(queued(other[0]) == FIFO_HELD, "the FIFO holds %d bytes, expected %d", queued(other[0]), FIFO_HELD);
    ssize_t n = read_pattern(ends[0], 1, "FIFO reader");
    sc_check(n == FIFO_HELD, "read %zd bytes, expected %d", n, FIFO_HELD);
    close(ends[1]);
    char byte;
    sc_check(read(other[0], &byte, 1) == 0, "no end of file once the writer is closed");
}

/* --fifo-writer: ends[1] writes a FIFO no process reads. */
static char fifo_path[PATH_MAX];

static void fifo_writer(void)
{
    sc_path(fifo_path, sizeof fifo_path, "pipes.fifo");
    unlink(fifo_path);
    if (mkfifo(fifo_path, 0600) < 0)
        sc_die("mkfifo");
    signal(SIGPIPE, SIG_IGN);
    int reader = open(fifo_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (reader < 0 || (ends[1] = open(fifo_path, O_WRONLY | O_CLOEXEC)) < 0)
        sc_die("opening the FIFO");
    close(reader);
}

static void fifo_writer_check(void)
{
    char byte = 7;
    sc_check(write(ends[1], &byte, 1) < 0 && errno == EPIPE, "a write with no reader did not fail with EPIPE");
    int reader = open(fifo_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    sc_check(reader >= 0 && write(ends[1], &byte, 1) == 1, "the writer does not reach a new reader");
    char got = 0;
    sc_check(read(reader, &got, 1) == 1 && got == 7, "the new reader did not read the byte written");
    close(reader);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "pipes");
    sc_install_sigterm(0);
    if (sc_has_flag("--full"))
        full();
    else if (sc_has_flag("--large"))
        large();
    else if (sc_has_flag("--blocked-writer"))
        blocked_writer();
    else if (sc_has_flag("--packets"))
        packets();
    else if (sc_has_flag("--closed-ends"))
        closed_ends();
    else if (sc_has_flag("--fifo"))
        fifo();
    else if (sc_has_flag("--fifo-writer"))
        fifo_writer();
    else
        sc_die("no pipe chosen");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    if (sc_has_flag("--full"))
        full_check();
    else if (sc_has_flag("--large"))
        large_check();
    else if (sc_has_flag("--blocked-writer"))
        blocked_writer_check();
    else if (sc_has_flag("--packets"))
        packets_check();
    else if (sc_has_flag("--closed-ends"))
        closed_ends_check();
    else if (sc_has_flag("--fifo-writer"))
        fifo_writer_check();
    else
        fifo_check();
    sc_finish();
}
