/*
 * inet_dual_stack: inet sockets on wildcard addresses, dual-stack IPv6 and connected UDP:
 *   - a TCP listener on [::] taking IPv4 too (IPV6_V6ONLY 0), backlog 5;
 *   - a TCP listener on 0.0.0.0, backlog 9, with TCP_DEFER_ACCEPT, TCP_FASTOPEN,
 *     TCP_USER_TIMEOUT, TCP_KEEPINTVL, TCP_KEEPCNT, SO_SNDBUF (locked), SO_RCVLOWAT,
 *     SO_PRIORITY, IP_TTL and IP_FREEBIND;
 *   - a UDP socket on [::] taking IPv4 too, with IPV6_UNICAST_HOPS and IPV6_TCLASS, and one on
 *     0.0.0.0 with IP_RECVERR, IP_MULTICAST_TTL and IP_MULTICAST_LOOP 0;
 *   - UDP sockets connected: one bound to 127.0.0.1 connected to a peer connected back, one
 *     never bound (connect chose its port), one on ::1 to ::1, and an AF_INET6 one connected to
 *     a v4-mapped address (::ffff:127.0.0.1).
 * After SIGTERM each has its address, peer and options; clients of both families connect to
 * the listeners (an IPv4 one is seen as ::ffff:127.0.0.1 on [::]) and exchange bytes, datagrams
 * of both families go both ways, and a connected socket still takes datagrams from its peer
 * only.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

static int any6_tcp, any4_tcp, any6_udp, any4_udp, connected4, peer4, auto4, hub4, connected6, peer6, mapped6;
static struct sockaddr_storage local_of[64], peer_of[64];
static int sndbuf_kept;

static int make_socket(int family, int type)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0 || fd >= 64)
        sc_die("socket");
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

static socklen_t size_of(const struct sockaddr_storage *address)
{
    return address->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* 127.0.0.1 or ::1 (loopback), 0.0.0.0 or :: (any), or ::ffff:127.0.0.1 (mapped), port `port`. */
static struct sockaddr_storage address(int family, const char *which, int port)
{
    struct sockaddr_storage result = {0};
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&result;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = strcmp(which, "any") == 0 ? htonl(INADDR_ANY) : htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&result;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        if (strcmp(which, "loopback") == 0)
            in6->sin6_addr = in6addr_loopback;
        else if (strcmp(which, "mapped") == 0)
            inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr);
        else
            in6->sin6_addr = in6addr_any;
    }
    return result;
}

static int port_of(const struct sockaddr_storage *address)
{
    return ntohs(address->ss_family == AF_INET ? ((const struct sockaddr_in *)address)->sin_port
                                               : ((const struct sockaddr_in6 *)address)->sin6_port);
}

static void remember(int fd)
{
    socklen_t size = sizeof local_of[fd];
    if (getsockname(fd, (struct sockaddr *)&local_of[fd], &size) != 0)
        sc_die("getsockname");
    size = sizeof peer_of[fd];
    if (getpeername(fd, (struct sockaddr *)&peer_of[fd], &size) != 0 && errno != ENOTCONN)
        sc_die("getpeername");
}

static void bind_to(int fd, struct sockaddr_storage to)
{
    if (bind(fd, (struct sockaddr *)&to, size_of(&to)) != 0)
        sc_die("bind");
}

static void connect_to(int fd, struct sockaddr_storage to)
{
    if (connect(fd, (struct sockaddr *)&to, size_of(&to)) != 0)
        sc_die("connect");
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return a->ss_family == b->ss_family && memcmp(a, b, size_of(a)) == 0;
}

static void check_names(int fd, const char *name)
{
    struct sockaddr_storage now = {0}, peer = {0};
    socklen_t size = sizeof now;
    sc_check(getsockname(fd, (struct sockaddr *)&now, &size) == 0 && same_address(&now, &local_of[fd]),
             "%s is not bound to its address any more", name);
    size = sizeof peer;
    int connected = getpeername(fd, (struct sockaddr *)&peer, &size) == 0;
    if (peer_of[fd].ss_family == 0)
        sc_check(!connected && errno == ENOTCONN, "%s is connected now", name);
    else
        sc_check(connected && same_address(&peer, &peer_of[fd]), "%s is not connected to its peer any more", name);
}

static int wait_readable(int fd, int milliseconds)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, milliseconds) == 1 && (entry.revents & POLLIN);
}

/* A client of `family` connects to `listener` through `to`, sends first (for TCP_DEFER_ACCEPT),
 * the listener accepts, bytes go both ways; the accepted socket's peer is the client as
 * `peer_family` shows it (AF_INET6 for an IPv4 client of a dual-stack listener). */
static void check_tcp(int listener, int family, const char *which, int peer_family, const char *name)
{
    struct sockaddr_storage to = address(family, which, port_of(&local_of[listener]));
    int client = make_socket(family, SOCK_STREAM);
    if (connect(client, (struct sockaddr *)&to, size_of(&to)) != 0 || send(client, "ping", 4, 0) != 4) {
        sc_fail("%s: connect: %s", name, strerror(errno));
        close(client);
        return;
    }
    struct sockaddr_storage peer = {0};
    socklen_t size = sizeof peer;
    int server = wait_readable(listener, 5000) ? accept4(listener, (struct sockaddr *)&peer, &size, SOCK_CLOEXEC) : -1;
    char buf[16] = {0};
    sc_check(server >= 0 && peer.ss_family == peer_family && wait_readable(server, 5000) &&
                 recv(server, buf, sizeof buf, 0) == 4 && memcmp(buf, "ping", 4) == 0 && send(server, "pong", 4, 0) == 4 &&
                 wait_readable(client, 5000) && recv(client, buf, sizeof buf, 0) == 4 && memcmp(buf, "pong", 4) == 0,
             "%s: the connection does not carry bytes both ways (peer family %d)", name, peer.ss_family);
    if (server >= 0)
        close(server);
    close(client);
}

/* A client of `family` sends to `socket_fd` through `to`; the datagram comes from the client as
 * `from_family` shows it, and the reply goes back. */
static void check_udp(int socket_fd, int family, const char *which, int from_family, const char *name)
{
    struct sockaddr_storage to = address(family, which, port_of(&local_of[socket_fd]));
    int client = make_socket(family, SOCK_DGRAM);
    struct sockaddr_storage from = {0};
    socklen_t size = sizeof from;
    char buf[16] = {0};
    sc_check(sendto(client, "datagram", 8, 0, (struct sockaddr *)&to, size_of(&to)) == 8 &&
                 wait_readable(socket_fd, 5000) &&
                 recvfrom(socket_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &size) == 8 &&
                 memcmp(buf, "datagram", 8) == 0 && from.ss_family == from_family &&
                 sendto(socket_fd, "reply", 5, 0, (struct sockaddr *)&from, size) == 5 && wait_readable(client, 5000) &&
                 recv(client, buf, sizeof buf, 0) == 5 && memcmp(buf, "reply", 5) == 0,
             "%s: datagrams do not go both ways (from family %d)", name, from.ss_family);
    close(client);
}

/* `fd`, connected, sends with send(2) to `receiver`, which sees it come from `fd`'s address;
 * when `answers`, `receiver` sends back and `fd` reads it. */
static void check_connected(int fd, int receiver, int answers, const char *name)
{
    struct sockaddr_storage from = {0};
    socklen_t size = sizeof from;
    char buf[16] = {0};
    struct sockaddr_storage expected = local_of[fd];
    if (expected.ss_family == AF_INET6 && local_of[receiver].ss_family == AF_INET) {
        /* An AF_INET6 socket sending to a v4-mapped address: the receiver sees IPv4. */
        struct sockaddr_in *in = (struct sockaddr_in *)&expected;
        int port = port_of(&local_of[fd]);
        memset(&expected, 0, sizeof expected);
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    sc_check(send(fd, "to peer", 7, 0) == 7 && wait_readable(receiver, 5000) &&
                 recvfrom(receiver, buf, sizeof buf, 0, (struct sockaddr *)&from, &size) == 7 &&
                 memcmp(buf, "to peer", 7) == 0 && same_address(&from, &expected),
             "%s: its peer does not get its datagram from its address", name);
    if (answers)
        sc_check(send(receiver, "back", 4, 0) == 4 && wait_readable(fd, 5000) && recv(fd, buf, sizeof buf, 0) == 4 &&
                     memcmp(buf, "back", 4) == 0,
                 "%s: the peer's answer does not arrive", name);
}

/* A socket that is not `fd`'s peer sends to it: a connected socket does not take the datagram. */
static void check_filtered(int fd, const char *name)
{
    int stranger = make_socket(local_of[fd].ss_family, SOCK_DGRAM);
    sc_check(sendto(stranger, "stranger", 8, 0, (struct sockaddr *)&local_of[fd], size_of(&local_of[fd])) == 8 &&
                 !wait_readable(fd, 200),
             "%s takes datagrams from others than its peer", name);
    close(stranger);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "inet_dual_stack");
    sc_install_sigterm(0);

    any6_tcp = make_socket(AF_INET6, SOCK_STREAM);
    set_int(any6_tcp, IPPROTO_IPV6, IPV6_V6ONLY, 0);
    bind_to(any6_tcp, address(AF_INET6, "any", 0));
    if (listen(any6_tcp, 5) != 0)
        sc_die("listen");

    any4_tcp = make_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
    set_int(any4_tcp, IPPROTO_TCP, TCP_DEFER_ACCEPT, 4);
    set_int(any4_tcp, IPPROTO_TCP, TCP_FASTOPEN, 16);
    set_int(any4_tcp, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
    set_int(any4_tcp, IPPROTO_TCP, TCP_KEEPINTVL, 11);
    set_int(any4_tcp, IPPROTO_TCP, TCP_KEEPCNT, 4);
    set_int(any4_tcp, SOL_SOCKET, SO_SNDBUF, 65536);
    set_int(any4_tcp, SOL_SOCKET, SO_RCVLOWAT, 3);
    set_int(any4_tcp, SOL_SOCKET, SO_PRIORITY, 5);
    set_int(any4_tcp, IPPROTO_IP, IP_TTL, 33);
    set_int(any4_tcp, IPPROTO_IP, IP_FREEBIND, 1);
    sndbuf_kept = get_int(any4_tcp, SOL_SOCKET, SO_SNDBUF);
    bind_to(any4_tcp, address(AF_INET, "any", 0));
    if (listen(any4_tcp, 9) != 0)
        sc_die("listen");

    any6_udp = make_socket(AF_INET6, SOCK_DGRAM);
    set_int(any6_udp, IPPROTO_IPV6, IPV6_V6ONLY, 0);
    set_int(any6_udp, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 17);
    set_int(any6_udp, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
    bind_to(any6_udp, address(AF_INET6, "any", 0));
    any4_udp = make_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
    set_int(any4_udp, IPPROTO_IP, IP_RECVERR, 1);
    set_int(any4_udp, IPPROTO_IP, IP_MULTICAST_TTL, 3);
    set_int(any4_udp, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
    bind_to(any4_udp, address(AF_INET, "any", 0));

    connected4 = make_socket(AF_INET, SOCK_DGRAM);
    peer4 = make_socket(AF_INET, SOCK_DGRAM);
    hub4 = make_socket(AF_INET, SOCK_DGRAM);
    auto4 = make_socket(AF_INET, SOCK_DGRAM);
    connected6 = make_socket(AF_INET6, SOCK_DGRAM);
    peer6 = make_socket(AF_INET6, SOCK_DGRAM);
    mapped6 = make_socket(AF_INET6, SOCK_DGRAM);
    bind_to(connected4, address(AF_INET, "loopback", 0));
    bind_to(peer4, address(AF_INET, "loopback", 0));
    bind_to(hub4, address(AF_INET, "loopback", 0));
    bind_to(peer6, address(AF_INET6, "loopback", 0));
    remember(peer4);
    remember(hub4);
    remember(peer6);
    connect_to(connected4, local_of[peer4]);
    remember(connected4);
    connect_to(peer4, local_of[connected4]);
    connect_to(auto4, local_of[hub4]);
    connect_to(connected6, local_of[peer6]);
    struct sockaddr_storage hub_mapped = address(AF_INET6, "mapped", port_of(&local_of[hub4]));
    connect_to(mapped6, hub_mapped);
    int all[] = {any6_tcp, any4_tcp, any6_udp, any4_udp, connected4, peer4, auto4, hub4, connected6, peer6, mapped6};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        remember(all[i]);

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    const char *names[] = {"the [::] listener", "the 0.0.0.0 listener", "the [::] UDP socket", "the 0.0.0.0 UDP socket",
                           "the connected UDP socket", "its peer", "the UDP socket connect bound",
                           "the unconnected UDP socket", "the connected IPv6 UDP socket", "its IPv6 peer",
                           "the IPv6 UDP socket connected to a v4-mapped address"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        check_names(all[i], names[i]);
    sc_check(get_int(any6_tcp, IPPROTO_IPV6, IPV6_V6ONLY) == 0 && get_int(any6_udp, IPPROTO_IPV6, IPV6_V6ONLY) == 0,
             "a [::] socket is IPv6-only now");
    sc_check(get_int(any4_tcp, IPPROTO_TCP, TCP_FASTOPEN) == 16 && get_int(any4_tcp, IPPROTO_TCP, TCP_USER_TIMEOUT) == 12345 &&
                 get_int(any4_tcp, IPPROTO_TCP, TCP_KEEPINTVL) == 11 && get_int(any4_tcp, IPPROTO_TCP, TCP_KEEPCNT) == 4 &&
                 get_int(any4_tcp, IPPROTO_TCP, TCP_DEFER_ACCEPT) > 0,
             "the 0.0.0.0 listener lost a TCP option");
    sc_check(get_int(any4_tcp, SOL_SOCKET, SO_SNDBUF) == sndbuf_kept && (get_int(any4_tcp, SOL_SOCKET, SO_BUF_LOCK) & 1) &&
                 get_int(any4_tcp, SOL_SOCKET, SO_RCVLOWAT) == 3 && get_int(any4_tcp, SOL_SOCKET, SO_PRIORITY) == 5 &&
                 get_int(any4_tcp, IPPROTO_IP, IP_TTL) == 33 && get_int(any4_tcp, IPPROTO_IP, IP_FREEBIND) == 1,
             "the 0.0.0.0 listener lost a socket or IP option (SO_SNDBUF %d, was %d; SO_BUF_LOCK %d)",
             get_int(any4_tcp, SOL_SOCKET, SO_SNDBUF), sndbuf_kept, get_int(any4_tcp, SOL_SOCKET, SO_BUF_LOCK));
    sc_check(get_int(any6_udp, IPPROTO_IPV6, IPV6_UNICAST_HOPS) == 17 && get_int(any6_udp, IPPROTO_IPV6, IPV6_TCLASS) == 0x20,
             "the [::] UDP socket lost IPV6_UNICAST_HOPS or IPV6_TCLASS");
    sc_check(get_int(any4_udp, IPPROTO_IP, IP_RECVERR) == 1 && get_int(any4_udp, IPPROTO_IP, IP_MULTICAST_TTL) == 3 &&
                 get_int(any4_udp, IPPROTO_IP, IP_MULTICAST_LOOP) == 0,
             "the 0.0.0.0 UDP socket lost IP_RECVERR or a multicast option");

    check_tcp(any6_tcp, AF_INET6, "loopback", AF_INET6, "the [::] listener, from ::1");
    check_tcp(any6_tcp, AF_INET, "loopback", AF_INET6, "the [::] listener, from 127.0.0.1");
    check_tcp(any4_tcp, AF_INET, "loopback", AF_INET, "the 0.0.0.0 listener");
    check_udp(any6_udp, AF_INET6, "loopback", AF_INET6, "the [::] UDP socket, from ::1");
    check_udp(any6_udp, AF_INET, "loopback", AF_INET6, "the [::] UDP socket, from 127.0.0.1");
    check_udp(any4_udp, AF_INET, "loopback", AF_INET, "the 0.0.0.0 UDP socket");

    check_connected(connected4, peer4, 1, "the connected UDP socket");
    check_connected(auto4, hub4, 0, "the UDP socket connect bound");
    check_connected(connected6, peer6, 0, "the connected IPv6 UDP socket");
    check_connected(mapped6, hub4, 0, "the IPv6 UDP socket connected to a v4-mapped address");
    check_filtered(connected4, "the connected UDP socket");
    check_filtered(connected6, "the connected IPv6 UDP socket");
    sc_finish();
}
