/*
 * seccomp_strict: a thread in strict mode, which may only read, write, exit and sigreturn,
 * blocked in read() on a FIFO (opened O_RDWR) at dump time; every injected call of dump and
 * restore would kill it unless seccomp is suspended. The main thread is not under seccomp.
 * After SIGTERM the main thread checks Seccomp 1 in the worker's /proc status and 0 in its
 * own, writes a byte to the request FIFO; the worker reads it, writes its complement to the
 * answer FIFO and exits with a raw exit(2); the main thread must read that answer.
 */
#include "scenario.h"
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>

#define REQUEST 0x3c

static int request_fd = -1, answer_fd = -1;
static volatile pid_t worker_tid;

static int open_fifo(const char *name)
{
    char path[PATH_MAX];
    sc_path(path, sizeof path, name);
    unlink(path);
    if (mkfifo(path, 0600) < 0)
        sc_die("mkfifo %s", path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        sc_die("open %s", path);
    return fd;
}

/* Only raw read, write and exit once in strict mode: anything else kills the thread. */
static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL) != 0)
        sc_die("seccomp(SECCOMP_SET_MODE_STRICT)");
    unsigned char byte = 0;
    while (syscall(SYS_read, request_fd, &byte, 1) != 1) {
    }
    byte = (unsigned char)~byte;
    syscall(SYS_write, answer_fd, &byte, 1);
    syscall(SYS_exit, 0);
    return NULL;
}

/* "Seccomp:" of /proc/self/task/TID/status, or -1. */
static int seccomp_mode(pid_t tid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *m = strstr(buf, "\nSeccomp:");
    return m ? atoi(m + 9) : -1;
}

/* Whether the worker is blocked in read (syscall 0), by /proc/self/task/TID/syscall. */
static int worker_in_read(void)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)worker_tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    return n > 2 && buf[0] == '0' && buf[1] == ' ';
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "seccomp_strict");
    sc_install_sigterm(0);
    request_fd = open_fifo("seccomp_strict.request");
    answer_fd = open_fifo("seccomp_strict.answer");
    pthread_t thread;
    sc_start_workers(&thread, 1, worker, NULL);
    for (int waited = 0; !worker_tid || seccomp_mode(worker_tid) != 1 || !worker_in_read(); waited++) {
        if (waited > 5000)
            sc_die("the worker did not block in read in strict mode");
        sc_sleep_ms(1);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    int mode = seccomp_mode(worker_tid);
    sc_check(mode == 1, "worker: Seccomp %d, expected 1 (strict)", mode);
    mode = seccomp_mode(getpid());
    sc_check(mode == 0, "main thread: Seccomp %d, expected 0", mode);
    unsigned char byte = REQUEST;
    if (sc_check(write(request_fd, &byte, 1) == 1, "write to the request FIFO: %s", strerror(errno))) {
        struct pollfd answer = {answer_fd, POLLIN, 0};
        if (sc_check(poll(&answer, 1, 5000) == 1, "the strict-mode worker did not answer"))
            if (sc_check(read(answer_fd, &byte, 1) == 1, "read the answer: %s", strerror(errno)))
                sc_check(byte == (unsigned char)~REQUEST, "answer %#x, expected %#x", byte, (unsigned char)~REQUEST);
    }
    pthread_join(thread, NULL);
    sc_finish();
}
