/*
 * unsupported_inet: holds an inet socket amber does not restore, chosen by a flag:
 *   --established   a TCP connection on loopback (both ends in this process)
 *   --udp-queued    a bound UDP socket with a datagram queued
 *   --udp-connected a UDP socket connected to a port nothing takes datagrams on, the ICMP error
 *                   its datagram brought back pending (ECONNREFUSED)
 *   --mark          a TCP socket with SO_MARK set (which the restore does not set again)
 *   --no-check      a UDP socket with SO_NO_CHECK set (which the restore does not set again)
 *   --udp-shut-write  a bound UDP socket shut down for writing (shutdown(SHUT_WR)): sending fails
 *                   with EPIPE
 *   --ipv6-hopopts  an IPv6 UDP socket with a sticky hop-by-hop options header (IPV6_HOPOPTS)
 *   --md5           a TCP listener with an MD5 signature key for loopback (TCP_MD5SIG): a client
 *                   with the key connects, one without cannot
 *   --outside       a bound UDP socket a process outside the tree holds too (a grandchild,
 *                   orphaned at once, which exits when this process is gone)
 *   --opt-id        a bound UDP socket with SO_TIMESTAMPING's SOF_TIMESTAMPING_OPT_ID that sent
 *                   two datagrams: the next one's timestamp key is 2
 *   --ebpf-filter   a bound UDP socket with an eBPF socket filter (SO_ATTACH_BPF) that takes
 *                   every datagram
 * `amber dump` must refuse it, naming the process, the socket and why, and leave it as it was:
 * after SIGTERM the connection carries
 * bytes, the queued datagram is read whole, the connected UDP socket reports its error.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/bpf.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <sys/syscall.h>

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

/* Gives `fd` the MD5 signature key of --md5 for segments to and from loopback. */
static int sign_for_loopback(int fd)
{
    struct tcp_md5sig signature = {0};
    struct sockaddr_in *peer = (struct sockaddr_in *)&signature.tcpm_addr;
    peer->sin_family = AF_INET;
    peer->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signature.tcpm_keylen = 9;
    memcpy(signature.tcpm_key, "amber-md5", 9);
    return setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &signature, sizeof signature);
}

/* Whether a client, signing or not, connects to the listener at `address` within 300 ms. */
static int connects(const struct sockaddr_in *address, int signing)
{
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (client < 0 || (signing && sign_for_loopback(client) != 0))
        sc_die("client");
    int error = 0;
    socklen_t size = sizeof error;
    struct pollfd entry = {client, POLLOUT, 0};
    int connected = (connect(client, (const struct sockaddr *)address, sizeof *address) == 0 || errno == EINPROGRESS) &&
                    poll(&entry, 1, 300) == 1 && getsockopt(client, SOL_SOCKET, SO_ERROR, &error, &size) == 0 &&
                    error == 0;
    close(client);
    return connected;
}

/* The key of the timestamps in `fd`'s error queue once one of at least `wanted` comes
 * (struct sock_extended_err's ee_data, SO_EE_ORIGIN_TIMESTAMPING); -1 if none comes. */
static long next_key(int fd, unsigned wanted)
{
    long key = -1;
    for (int tries = 0; tries < 100 && key < (long)wanted; tries++) {
        char control[256], data[16];
        struct iovec part = {data, sizeof data};
        struct msghdr message = {.msg_iov = &part, .msg_iovlen = 1, .msg_control = control,
                                 .msg_controllen = sizeof control};
        if (recvmsg(fd, &message, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
            sc_sleep_ms(10);
            continue;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
            struct sock_extended_err *error = (struct sock_extended_err *)CMSG_DATA(c);
            if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) && error->ee_origin == SO_EE_ORIGIN_TIMESTAMPING)
                key = error->ee_data;
        }
    }
    return key;
}

/* A hop-by-hop options header of 8 bytes: no next header yet, length 0, a PadN option of 4. */
static const unsigned char hop_by_hop[8] = {0, 0, 1, 4, 0, 0, 0, 0};

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
    } else if (sc_has_flag("--udp-shut-write")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        /* Not connected, it answers ENOTCONN, yet shuts the socket down all the same. */
        if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN)
            sc_die("shutdown");
    } else if (sc_has_flag("--no-check")) {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &(int){1}, sizeof(int)) != 0)
            sc_die("SO_NO_CHECK");
    } else if (sc_has_flag("--ipv6-hopopts")) {
        fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_HOPOPTS, hop_by_hop, sizeof hop_by_hop) != 0)
            sc_die("IPV6_HOPOPTS");
    } else if (sc_has_flag("--md5")) {
        fd = bound_socket(SOCK_STREAM, &address);
        if (listen(fd, 4) != 0 || sign_for_loopback(fd) != 0)
            sc_die("TCP_MD5SIG");
    } else if (sc_has_flag("--outside")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        pid_t parent = getpid();
        if (sc_fork_outside() == 0) {
            while (kill(parent, 0) == 0)
                sleep(1);
            _exit(0);
        }
    } else if (sc_has_flag("--opt-id")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        peer = bound_socket(SOCK_DGRAM, &peer_address);
        int flags = SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
        if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0 ||
            sendto(fd, "1", 1, 0, (struct sockaddr *)&peer_address, sizeof peer_address) != 1 ||
            sendto(fd, "2", 1, 0, (struct sockaddr *)&peer_address, sizeof peer_address) != 1 || next_key(fd, 1) != 1 ||
            recv(peer, buf, sizeof buf, 0) != 1 || recv(peer, buf, sizeof buf, 0) != 1)
            sc_die("SOF_TIMESTAMPING_OPT_ID");
    } else if (sc_has_flag("--ebpf-filter")) {
        fd = bound_socket(SOCK_DGRAM, &address);
        /* r0 = 0xffff (the bytes of each packet to keep); exit */
        struct bpf_insn program[] = {
            {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0xffff},
            {.code = BPF_JMP | BPF_EXIT},
        };
        union bpf_attr attr = {.prog_type = BPF_PROG_TYPE_SOCKET_FILTER, .insn_cnt = 2,
                               .insns = (uintptr_t)program, .license = (uintptr_t)"GPL"};
        int loaded = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
        if (loaded < 0 || setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &loaded, sizeof loaded) != 0)
            sc_die("SO_ATTACH_BPF");
        close(loaded);
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
    } else if (sc_has_flag("--opt-id")) {
        sc_check(sendto(fd, "3", 1, 0, (struct sockaddr *)&peer_address, sizeof peer_address) == 1 && next_key(fd, 2) == 2,
                 "the datagram sent after has another timestamp key than 2");
    } else if (sc_has_flag("--ebpf-filter")) {
        int sender = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sc_check(sendto(sender, "filtered", 8, 0, (struct sockaddr *)&address, sizeof address) == 8 && readable(fd) &&
                     recv(fd, buf, sizeof buf, 0) == 8,
                 "the filtered UDP socket no longer receives");
        socklen_t size = 0;
        sc_check(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &size) < 0 && errno == EACCES,
                 "the socket's eBPF filter is gone");
    } else if (sc_has_flag("--md5")) {
        sc_check(connects(&address, 1), "a client with the listener's MD5 key does not connect");
        sc_check(!connects(&address, 0), "a client without the MD5 key connects: the listener lost its key");
    } else if (sc_has_flag("--ipv6-hopopts")) {
        unsigned char header[sizeof hop_by_hop] = {0};
        socklen_t size = sizeof header;
        sc_check(getsockopt(fd, IPPROTO_IPV6, IPV6_HOPOPTS, header, &size) == 0 && size == sizeof hop_by_hop &&
                     memcmp(header, hop_by_hop, size) == 0,
                 "the hop-by-hop options header changed");
    } else if (sc_has_flag("--udp-shut-write")) {
        signal(SIGPIPE, SIG_IGN);
        sc_check(sendto(fd, "x", 1, 0, (struct sockaddr *)&address, sizeof address) < 0 && errno == EPIPE,
                 "the socket sends: its shutdown is gone");
    } else if (sc_has_flag("--no-check")) {
        int value = 0;
        socklen_t size = sizeof value;
        sc_check(getsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &value, &size) == 0 && value == 1, "SO_NO_CHECK is %d", value);
    } else {
        int mark = 0;
        socklen_t size = sizeof mark;
        sc_check(getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &size) == 0 && mark == 7, "SO_MARK is %d", mark);
    }
    sc_finish();
}
