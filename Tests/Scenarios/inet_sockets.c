/*
 * inet_sockets: the sockets a server holds between connections:
 *   - a non-blocking TCP listener on 127.0.0.1 (the port given by --port N, else any) with
 *     backlog 7, SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, TCP_NODELAY, TCP_KEEPIDLE, SO_RCVBUF;
 *   - a TCP listener on [::1] with backlog 3, IPV6_V6ONLY and SO_REUSEPORT, shared with a child;
 *   - a TCP listener on 127.0.0.1 without SO_REUSEADDR that served a connection and closed it
 *     first: the connection is in TIME_WAIT on the listener's port (not with --no-time-wait);
 *   - a TCP socket bound to 127.0.0.1 and not listening, and a fresh one with TCP_NODELAY;
 *   - a non-blocking UDP socket bound to 127.0.0.1 with IP_TOS and SO_BROADCAST, one bound to
 *     [::1] with IPV6_RECVPKTINFO, and a fresh UDP socket.
 * After SIGTERM each has its address, options and backlog, and works with a peer: clients
 * connect to the listeners (the child accepts on the shared one) and exchange bytes, the bound
 * TCP socket listens and takes a connection, the fresh one connects, datagrams go both ways.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int listener4, listener6, served4, bound_tcp, fresh_tcp, udp4, udp6, fresh_udp;
static struct sockaddr_storage address_of[64];

static int make_socket(int family, int type)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
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

static void bind_to(int fd, int family, int port)
{
    struct sockaddr_storage address = {0};
    socklen_t size;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&address;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        size = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_addr = in6addr_loopback;
        size = sizeof *in6;
    }
    if (bind(fd, (struct sockaddr *)&address, size) != 0)
        sc_die("bind");
    size = sizeof address_of[fd];
    if (getsockname(fd, (struct sockaddr *)&address_of[fd], &size) != 0)
        sc_die("getsockname");
}

static socklen_t size_of(const struct sockaddr_storage *address)
{
    return address->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void check_address(int fd, const char *name)
{
    struct sockaddr_storage now = {0};
    socklen_t size = sizeof now;
    sc_check(getsockname(fd, (struct sockaddr *)&now, &size) == 0 && size == size_of(&address_of[fd]) &&
                 memcmp(&now, &address_of[fd], size) == 0,
             "%s is not bound to its address any more", name);
}

static int wait_readable(int fd)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, 5000) == 1 && (entry.revents & POLLIN);
}

/* `client` connects to `to`, this process accepts on `listener`, and bytes go both ways. */
static void check_connection(int client, const struct sockaddr_storage *to, int listener, const char *name)
{
    if (connect(client, (const struct sockaddr *)to, size_of(to)) != 0) {
        sc_fail("%s: connect: %s", name, strerror(errno));
        return;
    }
    if (!wait_readable(listener)) {
        sc_fail("%s: no connection to accept", name);
        return;
    }
    int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    char buf[16] = {0};
    sc_check(server >= 0 && send(client, "ping", 4, 0) == 4 && wait_readable(server) &&
                 recv(server, buf, sizeof buf, 0) == 4 && memcmp(buf, "ping", 4) == 0 && send(server, "pong", 4, 0) == 4 &&
                 wait_readable(client) && recv(client, buf, sizeof buf, 0) == 4 && memcmp(buf, "pong", 4) == 0,
             "%s: the connection does not carry bytes both ways", name);
    if (server >= 0)
        close(server);
}

static void check_datagrams(int socket_fd, const char *name)
{
    int client = make_socket(address_of[socket_fd].ss_family, SOCK_DGRAM);
    struct sockaddr_storage from = {0};
    socklen_t size = sizeof from;
    char buf[16] = {0};
    sc_check(sendto(client, "datagram", 8, 0, (struct sockaddr *)&address_of[socket_fd], size_of(&address_of[socket_fd])) == 8 &&
                 wait_readable(socket_fd) &&
                 recvfrom(socket_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &size) == 8 &&
                 memcmp(buf, "datagram", 8) == 0 && sendto(socket_fd, "reply", 5, 0, (struct sockaddr *)&from, size) == 5 &&
                 wait_readable(client) && recv(client, buf, sizeof buf, 0) == 5 && memcmp(buf, "reply", 5) == 0,
             "%s: datagrams do not go both ways", name);
    close(client);
}

static void check_tcp_backlog(int fd, unsigned expected, const char *name)
{
    struct tcp_info info = {0};
    socklen_t size = sizeof info;
    sc_check(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) == 0 && info.tcpi_state == TCP_LISTEN &&
                 info.tcpi_sacked == expected,
             "%s: state %d, backlog %u, expected LISTEN with %u", name, info.tcpi_state, info.tcpi_sacked, expected);
}

/* The child holds the IPv6 listener too; on SIGUSR1 it accepts one connection on it and exits 0. */
static volatile sig_atomic_t child_go;
static void on_usr1(int signal)
{
    (void)signal;
    child_go = 1;
}

static void child(void)
{
    while (!child_go)
        pause();
    struct pollfd entry = {listener6, POLLIN, 0};
    if (poll(&entry, 1, 5000) != 1)
        _exit(2);
    int server = accept4(listener6, NULL, NULL, 0);
    char buf[4];
    if (server < 0 || recv(server, buf, 4, MSG_WAITALL) != 4 || memcmp(buf, "kid?", 4) != 0 ||
        send(server, "kid!", 4, 0) != 4)
        _exit(3);
    _exit(0);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "inet_sockets");
    sc_install_sigterm(0);
    int port = 0, time_wait = 1;
    for (int i = 0; i < sc_argc_extra; i++) {
        if (strcmp(sc_argv_extra[i], "--port") == 0 && i + 1 < sc_argc_extra)
            port = atoi(sc_argv_extra[i + 1]);
        if (strcmp(sc_argv_extra[i], "--no-time-wait") == 0)
            time_wait = 0;
    }

    listener4 = make_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
    set_int(listener4, SOL_SOCKET, SO_REUSEADDR, 1);
    set_int(listener4, SOL_SOCKET, SO_KEEPALIVE, 1);
    set_int(listener4, SOL_SOCKET, SO_RCVBUF, 100000);
    set_int(listener4, IPPROTO_TCP, TCP_NODELAY, 1);
    set_int(listener4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
    struct linger linger = {1, 3};
    if (setsockopt(listener4, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) != 0)
        sc_die("SO_LINGER");
    bind_to(listener4, AF_INET, port);
    if (listen(listener4, 7) != 0)
        sc_die("listen");
    int rcvbuf = get_int(listener4, SOL_SOCKET, SO_RCVBUF);

    listener6 = make_socket(AF_INET6, SOCK_STREAM);
    set_int(listener6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    set_int(listener6, SOL_SOCKET, SO_REUSEPORT, 1);
    bind_to(listener6, AF_INET6, 0);
    if (listen(listener6, 3) != 0)
        sc_die("listen");

    /* The server side closes first, so the TIME_WAIT is its own, on the listener's port. */
    served4 = make_socket(AF_INET, SOCK_STREAM);
    bind_to(served4, AF_INET, 0);
    if (listen(served4, 2) != 0)
        sc_die("listen");
    if (time_wait) {
        int served_client = make_socket(AF_INET, SOCK_STREAM);
        if (connect(served_client, (struct sockaddr *)&address_of[served4], size_of(&address_of[served4])) != 0)
            sc_die("connect");
        int served = accept4(served4, NULL, NULL, SOCK_CLOEXEC);
        char end;
        if (served < 0 || close(served) != 0 || recv(served_client, &end, 1, 0) != 0 || close(served_client) != 0)
            sc_die("the served connection");
    }

    bound_tcp = make_socket(AF_INET, SOCK_STREAM);
    bind_to(bound_tcp, AF_INET, 0);
    fresh_tcp = make_socket(AF_INET, SOCK_STREAM);
    set_int(fresh_tcp, IPPROTO_TCP, TCP_NODELAY, 1);

    udp4 = make_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
    set_int(udp4, IPPROTO_IP, IP_TOS, 0x10);
    set_int(udp4, SOL_SOCKET, SO_BROADCAST, 1);
    bind_to(udp4, AF_INET, 0);
    udp6 = make_socket(AF_INET6, SOCK_DGRAM);
    set_int(udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    bind_to(udp6, AF_INET6, 0);
    fresh_udp = make_socket(AF_INET, SOCK_DGRAM);

    sc_handle(SIGUSR1, on_usr1, 0);
    pid_t kid = fork();
    if (kid < 0)
        sc_die("fork");
    if (kid == 0)
        child();

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_address(listener4, "the IPv4 listener");
    check_address(listener6, "the IPv6 listener");
    check_address(served4, "the listener beside its TIME_WAIT");
    check_address(bound_tcp, "the bound TCP socket");
    check_address(udp4, "the IPv4 UDP socket");
    check_address(udp6, "the IPv6 UDP socket");
    check_tcp_backlog(listener4, 7, "the IPv4 listener");
    check_tcp_backlog(listener6, 3, "the IPv6 listener");
    sc_check(port == 0 || ntohs(((struct sockaddr_in *)&address_of[listener4])->sin_port) == port,
             "the IPv4 listener is not on port %d", port);
    sc_check(get_int(listener4, SOL_SOCKET, SO_REUSEADDR) == 1 && get_int(listener4, SOL_SOCKET, SO_KEEPALIVE) == 1 &&
                 get_int(listener4, IPPROTO_TCP, TCP_NODELAY) == 1 && get_int(listener4, IPPROTO_TCP, TCP_KEEPIDLE) == 77 &&
                 get_int(listener4, SOL_SOCKET, SO_RCVBUF) == rcvbuf,
             "the IPv4 listener lost an option (SO_RCVBUF %d, was %d)", get_int(listener4, SOL_SOCKET, SO_RCVBUF), rcvbuf);
    struct linger now = {0};
    socklen_t size = sizeof now;
    sc_check(getsockopt(listener4, SOL_SOCKET, SO_LINGER, &now, &size) == 0 && now.l_onoff == 1 && now.l_linger == 3,
             "the IPv4 listener's SO_LINGER is %d, %d", now.l_onoff, now.l_linger);
    sc_check(get_int(listener6, IPPROTO_IPV6, IPV6_V6ONLY) == 1 && get_int(listener6, SOL_SOCKET, SO_REUSEPORT) == 1,
             "the IPv6 listener lost IPV6_V6ONLY or SO_REUSEPORT");
    sc_check(get_int(fresh_tcp, IPPROTO_TCP, TCP_NODELAY) == 1, "the fresh TCP socket lost TCP_NODELAY");
    sc_check(get_int(udp4, IPPROTO_IP, IP_TOS) == 0x10 && get_int(udp4, SOL_SOCKET, SO_BROADCAST) == 1,
             "the IPv4 UDP socket lost IP_TOS or SO_BROADCAST");
    sc_check(get_int(udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO) == 1, "the IPv6 UDP socket lost IPV6_RECVPKTINFO");
    sc_check(get_int(listener4, SOL_SOCKET, SO_ACCEPTCONN) == 1 && get_int(bound_tcp, SOL_SOCKET, SO_ACCEPTCONN) == 0,
             "SO_ACCEPTCONN changed");
    struct sockaddr_storage unbound = {0};
    size = sizeof unbound;
    sc_check(getsockname(fresh_tcp, (struct sockaddr *)&unbound, &size) == 0 &&
                 ((struct sockaddr_in *)&unbound)->sin_port == 0,
             "the fresh TCP socket is bound");

    check_connection(make_socket(AF_INET, SOCK_STREAM), &address_of[listener4], listener4, "the IPv4 listener");
    check_connection(fresh_tcp, &address_of[listener4], listener4, "the fresh TCP socket");
    sc_check(get_int(served4, SOL_SOCKET, SO_REUSEADDR) == 0, "the listener beside its TIME_WAIT has SO_REUSEADDR");
    check_connection(make_socket(AF_INET, SOCK_STREAM), &address_of[served4], served4, "the listener beside its TIME_WAIT");
    sc_check(listen(bound_tcp, 1) == 0, "the bound TCP socket cannot listen: %s", strerror(errno));
    check_connection(make_socket(AF_INET, SOCK_STREAM), &address_of[bound_tcp], bound_tcp, "the bound TCP socket");
    check_datagrams(udp4, "the IPv4 UDP socket");
    check_datagrams(udp6, "the IPv6 UDP socket");
    char buf[16];
    sc_check(sendto(fresh_udp, "fresh", 5, 0, (struct sockaddr *)&address_of[udp4], size_of(&address_of[udp4])) == 5 &&
                 wait_readable(udp4) && recv(udp4, buf, sizeof buf, 0) == 5,
             "the fresh UDP socket cannot send");

    /* The child accepts on the shared IPv6 listener: one socket in both processes. */
    int client = make_socket(AF_INET6, SOCK_STREAM);
    sc_check(kill(kid, SIGUSR1) == 0, "cannot signal the child");
    sc_check(connect(client, (struct sockaddr *)&address_of[listener6], size_of(&address_of[listener6])) == 0 &&
                 send(client, "kid?", 4, 0) == 4 && wait_readable(client) && recv(client, buf, 4, MSG_WAITALL) == 4 &&
                 memcmp(buf, "kid!", 4) == 0,
             "the child did not answer on the shared IPv6 listener");
    int status = 0;
    sc_check(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child ended with status %#x", status);
    sc_finish();
}
