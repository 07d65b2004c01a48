/*
 * netlink_sockets: the netlink sockets a network tool holds between requests:
 *   - a non-blocking NETLINK_ROUTE socket bound by the kernel (its port id is the PID), in the
 *     link and IPv4 address groups and group 33 (past the 32 of the bind mask), with
 *     NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK and SO_RCVBUF; the sock_diag socket with SO_KEEPALIVE,
 *     SO_REUSEADDR, SO_PASSSEC, SO_RCVLOWAT 9, SO_LINGER (on, 5 s) and SO_MAX_PACING_RATE;
 *   - a NETLINK_ROUTE datagram socket bound to a port id of its own choosing;
 *   - a NETLINK_SOCK_DIAG socket never bound (port id 0).
 * After SIGTERM each has its port id, groups and options; the kernel answers a link dump on the
 * first and a unix socket dump on the third, and the first two send each other messages by
 * port id, each seeing the other's as the sender.
 * --own-namespace: all of it in a network namespace of its own (unshare(CLONE_NEWNET)), which
 * a restore makes again.
 */
#include "scenario.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif
#ifndef NETLINK_LIST_MEMBERSHIPS
#define NETLINK_LIST_MEMBERSHIPS 9
#endif

static int route, route_own, diag;
static struct sockaddr_nl name_of[3];
static uint32_t groups_of[3][4];
static int rcvbuf;
static char buffer[65536];

static int make_socket(int type, int protocol)
{
    int fd = socket(AF_NETLINK, type | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        sc_die("socket(AF_NETLINK, %d)", protocol);
    return fd;
}

static void set_int(int fd, int level, int name, int value)
{
    if (setsockopt(fd, level, name, &value, sizeof value) != 0)
        sc_die("setsockopt(%d, %d)", level, name);
}

static int get_int(int fd, int level, int name)
{
    int value = -12345;
    socklen_t size = sizeof value;
    if (getsockopt(fd, level, name, &value, &size) != 0)
        return -12345;
    return value;
}

static void bind_to(int fd, uint32_t port_id, uint32_t groups)
{
    struct sockaddr_nl address = {.nl_family = AF_NETLINK, .nl_pid = port_id, .nl_groups = groups};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0)
        sc_die("bind");
}

static void names(int fd, struct sockaddr_nl *name, uint32_t groups[4])
{
    socklen_t size = sizeof *name;
    memset(groups, 0, 4 * sizeof groups[0]);
    if (getsockname(fd, (struct sockaddr *)name, &size) != 0)
        sc_die("getsockname");
    size = 4 * sizeof groups[0];
    if (getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &size) != 0)
        sc_die("NETLINK_LIST_MEMBERSHIPS");
}

static void check_names(int index, int fd, const char *what)
{
    struct sockaddr_nl now;
    uint32_t groups[4];
    names(fd, &now, groups);
    sc_check(now.nl_pid == name_of[index].nl_pid && now.nl_groups == name_of[index].nl_groups,
             "%s: port id %u, groups %#x; was %u, %#x", what, now.nl_pid, now.nl_groups, name_of[index].nl_pid,
             name_of[index].nl_groups);
    sc_check(memcmp(groups, groups_of[index], sizeof groups) == 0, "%s: its memberships changed", what);
}

static int readable(int fd)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, 5000) == 1 && (entry.revents & POLLIN);
}

/* Sends a dump request of `type` (with `body`) to the kernel and reads the answers to it (other
 * messages, notifications of the groups, are passed over) up to NLMSG_DONE; returns how many
 * answers came before it, or -1. Each answer must be addressed to `port_id` (any for ANY_PORT). */
#define ANY_PORT 0xffffffffu
static int kernel_dump(int fd, uint16_t type, const void *body, size_t size, uint32_t seq, uint32_t port_id)
{
    struct {
        struct nlmsghdr header;
        char body[64];
    } request = {0};
    request.header.nlmsg_len = NLMSG_LENGTH(size);
    request.header.nlmsg_type = type;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = seq;
    memcpy(request.body, body, size);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return -1;
    int answers = 0;
    for (;;) {
        if (!readable(fd))
            return -1;
        ssize_t count = recv(fd, buffer, sizeof buffer, 0);
        if (count <= 0)
            return -1;
        for (struct nlmsghdr *message = (struct nlmsghdr *)buffer; NLMSG_OK(message, (size_t)count);
             message = NLMSG_NEXT(message, count)) {
            if (message->nlmsg_seq != seq)
                continue;
            if ((port_id != ANY_PORT && message->nlmsg_pid != port_id) || message->nlmsg_type == NLMSG_ERROR)
                return -1;
            if (message->nlmsg_type == NLMSG_DONE)
                return answers;
            answers++;
        }
    }
}

/* `from` sends a message to `to`'s port id, which `to` reads with `from`'s port id as sender. */
static int user_message(int from, int to, uint32_t to_port, uint32_t from_port, uint32_t seq)
{
    struct nlmsghdr message = {.nlmsg_len = NLMSG_LENGTH(0), .nlmsg_type = 0x100, .nlmsg_seq = seq};
    struct sockaddr_nl address = {.nl_family = AF_NETLINK, .nl_pid = to_port};
    if (sendto(from, &message, message.nlmsg_len, 0, (struct sockaddr *)&address, sizeof address) < 0)
        return 0;
    for (;;) {
        struct sockaddr_nl sender = {0};
        socklen_t size = sizeof sender;
        if (!readable(to))
            return 0;
        ssize_t count = recvfrom(to, buffer, sizeof buffer, 0, (struct sockaddr *)&sender, &size);
        struct nlmsghdr *got = (struct nlmsghdr *)buffer;
        if (count < (ssize_t)sizeof *got)
            return 0;
        if (got->nlmsg_type == 0x100 && got->nlmsg_seq == seq)
            return sender.nl_pid == from_port;
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "netlink_sockets");
    sc_install_sigterm(0);
    /* A unix socket pair of the namespace's own, for the sock_diag dump to show. */
    int pair[2];
    if (sc_has_flag("--own-namespace") &&
        (unshare(CLONE_NEWNET) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0))
        sc_die("unshare(CLONE_NEWNET)");

    route = make_socket(SOCK_RAW | SOCK_NONBLOCK, NETLINK_ROUTE);
    set_int(route, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    set_int(route, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
    set_int(route, SOL_SOCKET, SO_RCVBUF, 200000);
    bind_to(route, 0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR);
    set_int(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 33);
    rcvbuf = get_int(route, SOL_SOCKET, SO_RCVBUF);
    route_own = make_socket(SOCK_DGRAM, NETLINK_ROUTE);
    bind_to(route_own, 0x40000000u | (uint32_t)getpid(), 0);
    diag = make_socket(SOCK_DGRAM, NETLINK_SOCK_DIAG);
    set_int(diag, SOL_SOCKET, SO_KEEPALIVE, 1);
    set_int(diag, SOL_SOCKET, SO_REUSEADDR, 1);
    set_int(diag, SOL_SOCKET, SO_PASSSEC, 1);
    set_int(diag, SOL_SOCKET, SO_RCVLOWAT, 9);
    struct linger linger = {1, 5};
    uint64_t pacing = 123456;
    if (setsockopt(diag, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) != 0 ||
        setsockopt(diag, SOL_SOCKET, SO_MAX_PACING_RATE, &pacing, sizeof pacing) != 0)
        sc_die("SO_LINGER or SO_MAX_PACING_RATE");
    names(route, &name_of[0], groups_of[0]);
    names(route_own, &name_of[1], groups_of[1]);
    names(diag, &name_of[2], groups_of[2]);
    if (name_of[0].nl_pid != (uint32_t)getpid())
        sc_die("the kernel gave the route socket port id %u", name_of[0].nl_pid);

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_names(0, route, "the route socket");
    check_names(1, route_own, "the route socket with its own port id");
    check_names(2, diag, "the sock_diag socket");
    sc_check(get_int(route, SOL_NETLINK, NETLINK_EXT_ACK) == 1 && get_int(route, SOL_NETLINK, NETLINK_GET_STRICT_CHK) == 1 &&
                 get_int(route, SOL_SOCKET, SO_RCVBUF) == rcvbuf,
             "the route socket lost an option (SO_RCVBUF %d, was %d)", get_int(route, SOL_SOCKET, SO_RCVBUF), rcvbuf);
    struct linger linger_now = {0};
    uint64_t pacing_now = 0;
    socklen_t option_size = sizeof linger_now;
    sc_check(get_int(diag, SOL_SOCKET, SO_KEEPALIVE) == 1 && get_int(diag, SOL_SOCKET, SO_REUSEADDR) == 1 &&
                 get_int(diag, SOL_SOCKET, SO_PASSSEC) == 1 && get_int(diag, SOL_SOCKET, SO_RCVLOWAT) == 9 &&
                 getsockopt(diag, SOL_SOCKET, SO_LINGER, &linger_now, &option_size) == 0 && linger_now.l_onoff == 1 &&
                 linger_now.l_linger == 5,
             "the sock_diag socket lost SO_KEEPALIVE, SO_REUSEADDR, SO_PASSSEC, SO_RCVLOWAT or SO_LINGER");
    option_size = sizeof pacing_now;
    sc_check(getsockopt(diag, SOL_SOCKET, SO_MAX_PACING_RATE, &pacing_now, &option_size) == 0 && pacing_now == 123456,
             "the sock_diag socket's SO_MAX_PACING_RATE is %llu", (unsigned long long)pacing_now);
    sc_check(get_int(route, SOL_SOCKET, SO_PROTOCOL) == NETLINK_ROUTE && get_int(route, SOL_SOCKET, SO_TYPE) == SOCK_RAW &&
                 get_int(route_own, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM &&
                 get_int(diag, SOL_SOCKET, SO_PROTOCOL) == NETLINK_SOCK_DIAG,
             "a socket changed its protocol or type");

    struct ifinfomsg link = {.ifi_family = AF_UNSPEC};
    sc_check(kernel_dump(route, RTM_GETLINK, &link, sizeof link, 7001, name_of[0].nl_pid) > 0,
             "the kernel does not answer a link dump on the route socket");
    struct unix_diag_req unix_request = {.sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_show = UDIAG_SHOW_NAME};
    sc_check(kernel_dump(diag, SOCK_DIAG_BY_FAMILY, &unix_request, sizeof unix_request, 7002, ANY_PORT) > 0,
             "the kernel does not answer a unix socket dump on the sock_diag socket");
    struct sockaddr_nl bound;
    socklen_t size = sizeof bound;
    sc_check(getsockname(diag, (struct sockaddr *)&bound, &size) == 0 && bound.nl_pid != 0 &&
                 kernel_dump(diag, SOCK_DIAG_BY_FAMILY, &unix_request, sizeof unix_request, 7003, bound.nl_pid) > 0,
             "the sock_diag socket is not bound by its first send (port id %u)", bound.nl_pid);
    sc_check(user_message(route_own, route, name_of[0].nl_pid, name_of[1].nl_pid, 7004),
             "the route socket does not get a message sent to its port id");
    sc_check(user_message(route, route_own, name_of[1].nl_pid, name_of[0].nl_pid, 7005),
             "the socket with its own port id does not get a message sent to it");
    sc_finish();
}
