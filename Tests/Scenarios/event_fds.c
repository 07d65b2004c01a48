/*
 * event_fds: eventfds with their counters: 5 (non-blocking), 2^40 + 7 (blocking, above what
 * eventfd2 takes), the largest 2^64 - 2, 3 in semaphore mode (read 1 at a time), and one shared
 * with a child and dup'ed. After SIGTERM each reads back its exact counter, then EAGAIN where
 * non-blocking; the semaphore gives 1, 1, 1; the child, signalled, writes 42 to the shared one
 * and the parent reads it by its dup: one open file description in both processes.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/eventfd.h>

#define BIG ((1ULL << 40) + 7)
#define LARGEST 0xfffffffffffffffeULL

static int small_fd, big_fd, largest_fd, semaphore_fd, shared_fd, shared_dup;

static void on_usr1(int signal)
{
    (void)signal;
    uint64_t value = 42;
    if (write(shared_fd, &value, sizeof value) != sizeof value)
        _exit(3);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

static void check_read(int fd, const char *name, uint64_t expected)
{
    uint64_t value = 0;
    ssize_t n = read(fd, &value, sizeof value);
    sc_check(n == sizeof value && value == expected, "%s read %zd bytes, %llu, expected %llu", name, n,
             (unsigned long long)value, (unsigned long long)expected);
}

static void check_empty(int fd, const char *name)
{
    uint64_t value = 0;
    ssize_t n = read(fd, &value, sizeof value);
    sc_check(n < 0 && errno == EAGAIN, "%s is not empty and non-blocking: read gave %zd, %llu", name, n, (unsigned long long)value);
}

static void check_flags(int fd, const char *name, int nonblocking)
{
    int flags = fcntl(fd, F_GETFL);
    sc_check(flags >= 0 && (flags & O_ACCMODE) == O_RDWR && !!(flags & O_NONBLOCK) == nonblocking,
             "%s has the flags %#o, expected O_RDWR%s", name, flags, nonblocking ? " | O_NONBLOCK" : "");
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "event_fds");
    sc_install_sigterm(0);
    small_fd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
    big_fd = eventfd(0, 0);
    largest_fd = eventfd(0, EFD_NONBLOCK);
    semaphore_fd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    shared_fd = eventfd(0, 0);
    if (small_fd < 0 || big_fd < 0 || largest_fd < 0 || semaphore_fd < 0 || shared_fd < 0)
        sc_die("eventfd");
    uint64_t big = BIG, largest = LARGEST;
    if (write(big_fd, &big, sizeof big) != sizeof big || write(largest_fd, &largest, sizeof largest) != sizeof largest)
        sc_die("write to an eventfd");
    shared_dup = dup(shared_fd);
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_flags(small_fd, "the eventfd of 5", 1);
    check_flags(big_fd, "the eventfd of 2^40 + 7", 0);
    check_flags(semaphore_fd, "the semaphore eventfd", 1);
    check_read(small_fd, "the eventfd of 5", 5);
    check_empty(small_fd, "the eventfd of 5");
    check_read(big_fd, "the eventfd of 2^40 + 7", BIG);
    check_read(largest_fd, "the eventfd of 2^64 - 2", LARGEST);
    check_empty(largest_fd, "the eventfd of 2^64 - 2");
    for (int i = 0; i < 3; i++)
        check_read(semaphore_fd, "the semaphore eventfd", 1);
    check_empty(semaphore_fd, "the semaphore eventfd");

    /* The shared one: the child's write shows through the parent's dup, within 5 s. */
    kill(child, SIGUSR1);
    struct pollfd ready = {shared_dup, POLLIN, 0};
    if (sc_check(poll(&ready, 1, 5000) == 1, "the child's write to the shared eventfd never reached the parent"))
        check_read(shared_dup, "the shared eventfd", 42);
    uint64_t one = 1;
    if (sc_check(write(shared_fd, &one, sizeof one) == sizeof one, "write to the shared eventfd"))
        check_read(shared_dup, "the shared eventfd's dup", 1);
    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child is gone");
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    sc_finish();
}
