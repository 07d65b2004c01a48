/*
 * restart_read: a read() blocked at dump time must restart after restore.
 *
 * It creates a named FIFO next to --outfile, opens it O_RDWR (so the read blocks on an
 * empty FIFO instead of seeing EOF) and blocks in read(fd, buf, 64). The SIGTERM handler
 * (SA_RESTART) writes one known byte into the same fd. The read, restarted by the kernel
 * after the handler, must return exactly 1 with that byte; EINTR, 0, a raw kernel value
 * (such as 512) or other bytes fail. Afterwards the FIFO must be empty.
 * The runner can tell the process is in read from /proc/PID/syscall (0 = read).
 */
#include "scenario.h"

#define MAGIC 0x5a

static int fifo_fd = -1;
static char fifo_path[PATH_MAX];

static void on_term(int sig)
{
    (void)sig;
    int saved = errno;
    unsigned char b = MAGIC;
    sc_term = 1;
    if (write(fifo_fd, &b, 1) != 1)
        sc_term = 2;
    errno = saved;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "restart_read");
    sc_path(fifo_path, sizeof fifo_path, "restart_read.fifo");
    unlink(fifo_path);
    if (mkfifo(fifo_path, 0600) < 0)
        sc_die("mkfifo %s", fifo_path);
    fifo_fd = open(fifo_path, O_RDWR | O_CLOEXEC);
    if (fifo_fd < 0)
        sc_die("open %s", fifo_path);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        sc_die("sigaction");

    static unsigned char buf[64];
    memset(buf, 0xee, sizeof buf);
    sc_ready();

    errno = 0;
    ssize_t n = read(fifo_fd, buf, sizeof buf);
    int e = errno;

    sc_check_common();
    sc_check(sc_term == 1, "SIGTERM handler %s", sc_term == 2 ? "could not write to the FIFO" : "did not run");
    if (sc_check(n == 1, "read returned %zd (errno %d), expected 1", n, e)) {
        sc_check(buf[0] == MAGIC, "read returned byte %#x, expected %#x", buf[0], MAGIC);
        int rest_ok = 1;
        for (size_t i = 1; i < sizeof buf; i++)
            rest_ok &= buf[i] == 0xee;
        sc_check(rest_ok, "read wrote past the one byte it returned");
    }
    int fl = fcntl(fifo_fd, F_GETFL);
    fcntl(fifo_fd, F_SETFL, fl | O_NONBLOCK);
    unsigned char extra;
    errno = 0;
    ssize_t m = read(fifo_fd, &extra, 1);
    sc_check(m < 0 && errno == EAGAIN, "the FIFO is not empty after the read (read returned %zd, errno %d)", m, errno);
    struct stat st;
    sc_check(fstat(fifo_fd, &st) == 0 && S_ISFIFO(st.st_mode), "fd %d is not a FIFO any more", fifo_fd);
    struct stat pst;
    sc_check(stat(fifo_path, &pst) == 0 && pst.st_ino == st.st_ino && pst.st_dev == st.st_dev,
             "fd %d is not the FIFO at %s", fifo_fd, fifo_path);
    sc_finish();
}
