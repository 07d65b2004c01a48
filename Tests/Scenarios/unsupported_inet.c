/*
 * unsupported_inet: holds an inet socket amber does not restore, chosen by a flag:
 *   --established   a TCP connection on loopback (both ends in this process)
 *   --udp-queued    a bound UDP socket with a datagram queued
 *   --udp-connected a UDP socket connected to a port nothing takes datagrams on, the ICMP error
 *                   its datagram brought back pending (ECONNREFUSED)
 *   --mark          a TCP socket with SO_MARK set (which the restore does not set again)
 *   --outside       a bound UDP socket a process outside the tree holds too (a grandchild,
 *                   orphaned at once, which exits when this process is gone)
 * `amber dump` must refuse it, naming the process, the socket and why, and leave it as it was:
 * after SIGTERM the connection carries
 * bytes, the queued datagram is read whole, the connected UDP socket reports its error.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int bound_socket(int type, struct sockaddr_in *address)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    socklen_t size = sizeof *address;
    memset(address, 0, sizeof *address);
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)address, sizeof *address) != 0 ||
        getsockname(fd, (struct sockaddr *)address, &size) != 0)
        sc_die("socket");
    return fd;
}

static int readable(int fd)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, 5000) == 1;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_inet");
    sc_install_sigterm(0);
    struct sockaddr_in address, peer_address;
    int fd = -1, peer = -1;
    char buf[32] = {0};
    if (sc_has_flag("--established")) {
        int listener = bound_socket(SOCK_STREAM, &address);
        peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen(listener, 4) != 0 || connect(peer, (struct sockaddr *)&address, sizeof address) != 0 ||
            send(peer, "waiting", 7, 0) != 7)
            sc_die("connect");
        if (!readable(listener) || (fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
            sc_die("accept");
        close(listener);
    } else if (sc_has_flag("--udp-queued") || sc_has_flag("--udp-connected")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        peer = bound_socket(SOCK_DGRAM, &peer_address);
        if (sc_has_flag("--udp-connected")) {
            /* The peer goes, so the datagram sent to its port comes back as an ICMP error. */
            close(peer);
            struct pollfd entry = {fd, POLLERR, 0};
            if (connect(fd, (struct sockaddr *)&peer_address, sizeof peer_address) != 0 || send(fd, "lost", 4, 0) != 4 ||
                poll(&entry, 1, 5000) != 1 || !(entry.revents & POLLERR))
                sc_die("no error pending");
        }
        if (sc_has_flag("--udp-queued") &&
            sendto(peer, "queued datagram", 15, 0, (struct sockaddr *)&address, sizeof address) != 15)
            sc_die("sendto");
    } else if (sc_has_flag("--mark")) {
        int mark = 7;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
            sc_die("SO_MARK");
    } else if (sc_has_flag("--outside")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        pid_t parent = getpid();
        pid_t child = fork();
        if (child < 0)
            sc_die("fork");
        if (child == 0) {
            if (fork() != 0)
                _exit(0);
            while (kill(parent, 0) == 0)
                sleep(1);
            _exit(0);
        }
        int status;
        if (waitpid(child, &status, 0) != child)
            sc_die("waitpid");
    } else {
        sc_die("no socket chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--established")) {
        sc_check(readable(fd) && recv(fd, buf, sizeof buf, 0) == 7 && memcmp(buf, "waiting", 7) == 0 &&
                     send(fd, "back", 4, 0) == 4 && readable(peer) && recv(peer, buf, sizeof buf, 0) == 4,
                 "the connection no longer carries its bytes");
    } else if (sc_has_flag("--udp-queued")) {
        sc_check(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 15 && memcmp(buf, "queued datagram", 15) == 0,
                 "the queued datagram changed");
        sc_check(recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "more datagrams than were sent");
    } else if (sc_has_flag("--udp-connected")) {
        sc_check(recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == ECONNREFUSED,
                 "the connected UDP socket's pending error is gone");
    } else if (sc_has_flag("--outside")) {
        int sender = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sc_check(sendto(sender, "to the shared socket", 20, 0, (struct sockaddr *)&address, sizeof address) == 20 &&
                     readable(fd) && recv(fd, buf, sizeof buf, 0) == 20,
                 "the shared UDP socket no longer receives");
    } else {
        int mark = 0;
        socklen_t size = sizeof mark;
        sc_check(getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &size) == 0 && mark == 7, "SO_MARK is %d", mark);
    }
    sc_finish();
}
