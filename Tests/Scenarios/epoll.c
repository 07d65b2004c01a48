/*
 * epoll: two epoll instances, shared with a child.
 *   outer (blocking): a pipe with a byte in it (level-triggered, not yet collected), an eventfd
 *     (edge-triggered, 0), another eventfd (EPOLLEXCLUSIVE, 0), the inner instance, and a pipe
 *     whose write end only the child holds;
 *   inner (O_NONBLOCK): an eventfd of 1 (edge-triggered, already reported by an epoll_wait) and an eventfd (one-shot, 0): it has nothing to report.
 * After SIGTERM each instance reports exactly what it would have: the pending level-triggered
 * pipe (again and again), nothing of the reported edge; then each new event once (an eventfd
 * written again, the one-shot firing once, the inner
 * instance becoming readable, the child's write), and EPOLL_CTL_DEL by the same fd numbers.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int outer, inner, pending[2], edge, exclusive, inner_edge, one_shot, child_pipe[2];

static void on_usr1(int signal)
{
    (void)signal;
    if (write(child_pipe[1], "c", 1) != 1)
        _exit(3);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

static void add(int instance, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event event = {.events = events, .data.u64 = data};
    if (epoll_ctl(instance, EPOLL_CTL_ADD, fd, &event) != 0)
        sc_die("epoll_ctl add of fd %d", fd);
}

/* What `instance` reports now, as a bit per data value 1..8, checked against `expected`. */
static void expect(int instance, const char *name, unsigned expected, const char *when)
{
    struct epoll_event events[16];
    int count = epoll_wait(instance, events, 16, 0);
    unsigned seen = 0;
    for (int i = 0; i < count; i++)
        seen |= 1u << events[i].data.u64;
    sc_check(count >= 0 && seen == expected, "%s %s: reported %#x (%d events), expected %#x", name, when, seen, count,
             expected);
}

static void bump(int eventfd_fd)
{
    uint64_t one = 1;
    if (write(eventfd_fd, &one, sizeof one) != sizeof one)
        sc_fail("write to an eventfd");
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "epoll");
    sc_install_sigterm(0);
    outer = epoll_create1(EPOLL_CLOEXEC);
    inner = epoll_create1(0);
    edge = eventfd(0, EFD_NONBLOCK);
    exclusive = eventfd(0, EFD_NONBLOCK);
    one_shot = eventfd(0, EFD_NONBLOCK);
    inner_edge = eventfd(1, EFD_NONBLOCK);
    if (outer < 0 || inner < 0 || edge < 0 || exclusive < 0 || one_shot < 0 || inner_edge < 0 || pipe(pending) ||
        pipe2(child_pipe, O_NONBLOCK))
        sc_die("making the files");
    if (fcntl(inner, F_SETFL, O_NONBLOCK) != 0)
        sc_die("F_SETFL O_NONBLOCK");
    add(inner, inner_edge, EPOLLIN | EPOLLET, 1);
    add(inner, one_shot, EPOLLIN | EPOLLONESHOT, 2);
    add(outer, pending[0], EPOLLIN, 3);
    add(outer, edge, EPOLLIN | EPOLLET, 4);
    add(outer, exclusive, EPOLLIN | EPOLLEXCLUSIVE, 5);
    add(outer, inner, EPOLLIN, 6);
    add(outer, child_pipe[0], EPOLLIN, 7);
    if (write(pending[1], "p", 1) != 1)
        sc_die("write to the pending pipe");
    expect(inner, "the inner instance", 1u << 1, "at the start");
    pid_t child = sc_fork_paused_child(child_setup);
    close(child_pipe[1]);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check((fcntl(inner, F_GETFL) & O_NONBLOCK) && !(fcntl(outer, F_GETFL) & O_NONBLOCK),
             "O_NONBLOCK of the instances changed");
    expect(inner, "the inner instance", 0, "before anything happened");
    expect(outer, "the outer instance", 1u << 3, "before anything happened");
    expect(outer, "the outer instance", 1u << 3, "asked again");

    bump(edge);
    expect(outer, "the outer instance", 1u << 3 | 1u << 4, "after the edge-triggered eventfd was written");
    expect(outer, "the outer instance", 1u << 3, "after the edge was reported");
    bump(exclusive);
    expect(outer, "the outer instance", 1u << 3 | 1u << 5, "after the exclusive eventfd was written");

    bump(inner_edge);
    expect(outer, "the outer instance", 1u << 3 | 1u << 5 | 1u << 6, "after the inner eventfd was written again");
    expect(inner, "the inner instance", 1u << 1, "after its eventfd was written again");
    expect(inner, "the inner instance", 0, "after the new edge was reported");
    bump(one_shot);
    expect(inner, "the inner instance", 1u << 2, "after the one-shot eventfd was written");
    expect(inner, "the inner instance", 0, "after the one-shot fired");

    kill(child, SIGUSR1);
    struct pollfd written = {child_pipe[0], POLLIN, 0};
    sc_check(poll(&written, 1, 5000) == 1, "the child's write to its pipe never came");
    expect(outer, "the outer instance", 1u << 3 | 1u << 5 | 1u << 7, "after the child wrote to its pipe");

    sc_check(epoll_ctl(outer, EPOLL_CTL_DEL, pending[0], NULL) == 0, "EPOLL_CTL_DEL of the pending pipe by its fd: %s",
             strerror(errno));
    sc_check(epoll_ctl(outer, EPOLL_CTL_DEL, exclusive, NULL) == 0, "EPOLL_CTL_DEL of the exclusive eventfd: %s",
             strerror(errno));
    struct epoll_event again = {.events = EPOLLIN, .data.u64 = 8};
    sc_check(epoll_ctl(outer, EPOLL_CTL_MOD, edge, &again) == 0, "EPOLL_CTL_MOD of the edge eventfd: %s",
             strerror(errno));
    expect(outer, "the outer instance", 1u << 7 | 1u << 8, "after the changes");

    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child is gone");
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    sc_finish();
}
