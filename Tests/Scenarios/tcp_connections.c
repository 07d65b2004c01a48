/*
 * tcp_connections: established TCP connections over loopback, for `amber dump --tcp-established`.
 *   (default)     a server (this process, with its listener) and a client (a child) connected over
 *                 127.0.0.1; each sent until its send queue was full and read nothing, so both
 *                 receive queues and both send queues hold data (the send queues what was never
 *                 sent: the peer's window is closed). After SIGTERM both read everything the other sent, byte for byte,
 *                 send a trailer with their count and shut their writing down, and each checks
 *                 the other's count, its MSS, window scaling, SACK and timestamps as before.
 *   --server PORT a server listening on 127.0.0.1:PORT for the test's one connection: once it
 *                 accepted it, it sends until its send queue is full (the test reads nothing
 *                 yet) and writes the count to OUTFILE.sent. After SIGTERM it reads what the
 *                 test sent (its size in OUTFILE.expect, written by the test), checks it and
 *                 answers "done".
 *   --inet6       the same over ::1.
 *   --v4-mapped   the same over IPv6 sockets on ::ffff:127.0.0.1 (dual-stack sockets with an IPv4
 *                 peer, whose packets are IPv4 ones).
 *   --own-namespace the same in a network namespace of its own (unshare(CLONE_NEWNET), loopback
 *                 up), which a restore makes again.
 *   --read-shut-down a connection in this process whose client shut its reading down (SHUT_RD)
 *                 and left interactive mode (TCP_QUICKACK 0), and whose server clamped its
 *                 window (TCP_WINDOW_CLAMP 20000): after SIGTERM the client still reads the end at
 *                 once and its writing reaches the server; both options are as set.
 *   --half-closed a connection in this process whose one end shut its writing down: FIN_WAIT2
 *                 and CLOSE_WAIT, which amber refuses by name; both ends still carry data after.
 *   --shared      a connection in this process whose server socket a child shares (forked
 *                 with it, as a forking server's child is before its parent closes its copy):
 *                 after SIGTERM the child's copy sends what the client reads, and the client's
 *                 bytes reach the parent's copy.
 *   --peek-offset a connection in this process whose server holds "abcdef" and peeked "ab" with
 *                 SO_PEEK_OFF on: amber refuses it (its MSG_PEEK would move the offset); after,
 *                 the next peek still gives "cd".
 *   --accepted-below a connection in this process accepted from a listener without SO_REUSEADDR
 *                 whose descriptor is above the connection's: after SIGTERM the connection
 *                 carries bytes and the listener takes another.
 *   --zero-copy   a connection in this process whose server sent with MSG_ZEROCOPY (SO_ZEROCOPY):
 *                 amber refuses it (the completions' count is read nowhere); after, its next
 *                 zero-copy send completes as number 1.
 *   --stamped-queue a connection in this process whose server asked for SO_TIMESTAMP and holds
 *                 "stamped" unread: amber refuses it (bytes queued again have no arrival time);
 *                 after, the server reads them with their SCM_TIMESTAMP.
 * Byte i of what a side sends is pattern(seed, i); the server's seed is 1, the client's 2 and the
 * test's 3.
 */
#include "scenario.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static unsigned char pattern(int seed, uint64_t i)
{
    return (unsigned char)((i * 7 + (uint64_t)seed * 31 + i / 251) & 0xff);
}

/* Sends the pattern from *sent on until the send queue is full; returns the bytes sent in all. */
static uint64_t fill(int fd, int seed, uint64_t sent)
{
    unsigned char chunk[4096];
    for (;;) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = pattern(seed, sent + i);
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN)
                return sent;
            sc_die("send");
        }
        sent += (uint64_t)n;
    }
}

struct tcp_shape {
    int mss;
    unsigned char options, wscale;
};

static struct tcp_shape shape(int fd)
{
    struct tcp_info info;
    socklen_t size = sizeof info;
    struct tcp_shape s = {0, 0, 0};
    socklen_t int_size = sizeof s.mss;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) == 0) {
        s.options = info.tcpi_options;
        s.wscale = (unsigned char)(info.tcpi_snd_wscale | info.tcpi_rcv_wscale << 4);
    }
    getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &s.mss, &int_size);
    return s;
}

static void check_shape(const char *who, int fd, struct tcp_shape before)
{
    struct tcp_shape now = shape(fd);
    /* Above 32767 (loopback's 65483) the restored connection sends with what TCP_MAXSEG takes. */
    int largest = 32767 - ((now.options & TCPI_OPT_TIMESTAMPS) ? 12 : 0);
    sc_check(now.mss == before.mss || (before.mss > largest && now.mss == largest), "%s: MSS %d, was %d", who, now.mss,
             before.mss);
    sc_check(now.options == before.options, "%s: TCP options 0x%x, were 0x%x", who, now.options, before.options);
    sc_check(now.wscale == before.wscale, "%s: window scales 0x%x, were 0x%x", who, now.wscale, before.wscale);
}

/* Both ways at once, without blocking: sends the rest of its pattern (from `sent` to `total`) and
 * then the 8-byte count `total`, shuts its writing down, and reads the other side's pattern and
 * count to the end. Returns the bytes read before the count; checks every byte. */
static uint64_t exchange(const char *who, int fd, int seed, uint64_t sent, uint64_t total, int peer_seed)
{
    unsigned char out[4096], in[4096];
    unsigned char trailer[8];
    uint64_t got = 0, trailer_at = 0;
    unsigned char tail[8];
    size_t tail_len = 0;
    int writing = 1, reading = 1, wrong = 0;
    memcpy(trailer, &total, 8);
    uint64_t to_send = total + 8;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 20 * 1000000000LL;
    while ((writing || reading) && sc_now_ns(CLOCK_MONOTONIC) < deadline) {
        struct pollfd entry = {fd, (short)((writing ? POLLOUT : 0) | (reading ? POLLIN : 0)), 0};
        if (poll(&entry, 1, 1000) < 0 && errno != EINTR)
            sc_die("poll");
        if (writing && (entry.revents & POLLOUT)) {
            size_t n = 0;
            for (; n < sizeof out && sent + n < to_send; n++)
                out[n] = sent + n < total ? pattern(seed, sent + n) : trailer[sent + n - total];
            ssize_t w = send(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (uint64_t)w;
            else if (w < 0 && errno != EAGAIN) {
                sc_fail("%s: send: %s", who, strerror(errno));
                writing = 0;
            }
            if (sent == to_send) {
                shutdown(fd, SHUT_WR);
                writing = 0;
            }
        }
        if (reading && (entry.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = recv(fd, in, sizeof in, MSG_DONTWAIT);
            if (r == 0) {
                reading = 0;
            } else if (r < 0) {
                if (errno != EAGAIN) {
                    sc_fail("%s: recv: %s", who, strerror(errno));
                    reading = 0;
                }
            } else {
                /* The last 8 bytes are the count: keep them aside until the end. */
                for (ssize_t i = 0; i < r; i++) {
                    if (tail_len == 8) {
                        if (tail[0] != pattern(peer_seed, got) && !wrong) {
                            sc_fail("%s: byte %llu is 0x%x, expected 0x%x", who, (unsigned long long)got, tail[0],
                                    pattern(peer_seed, got));
                            wrong = 1;
                        }
                        got++;
                        memmove(tail, tail + 1, 7);
                        tail_len = 7;
                    }
                    tail[tail_len++] = in[i];
                }
            }
        }
    }
    sc_check(!writing && !reading, "%s: the exchange did not end in 20 s (sent %llu of %llu, read %llu)", who,
             (unsigned long long)sent, (unsigned long long)to_send, (unsigned long long)got);
    memcpy(&trailer_at, tail, 8);
    sc_check(tail_len == 8 && trailer_at == got, "%s: read %llu bytes, the peer says it sent %llu", who,
             (unsigned long long)got, (unsigned long long)trailer_at);
    return got;
}

/* AF_INET, or AF_INET6 with --inet6 or --v4-mapped: 127.0.0.1, ::1 or ::ffff:127.0.0.1. */
static int family = AF_INET, v4_mapped;

static int loopback_listener(int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, small = 131072;
    struct sockaddr_storage address;
    socklen_t size;
    memset(&address, 0, sizeof address);
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_addr = in6addr_loopback;
        if (v4_mapped)
            inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr);
        size = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&address;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        size = sizeof *in;
    }
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) != 0 ||
        bind(fd, (struct sockaddr *)&address, size) != 0 || listen(fd, 4) != 0)
        sc_die("listen");
    return fd;
}

static void connected_pair(int *listener, int *server, int *client)
{
    struct sockaddr_storage address;
    socklen_t size = sizeof address;
    int small = 131072;
    *listener = loopback_listener(0);
    *client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*client < 0 || getsockname(*listener, (struct sockaddr *)&address, &size) != 0 ||
        setsockopt(*client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) != 0 ||
        connect(*client, (struct sockaddr *)&address, size) != 0 ||
        (*server = accept4(*listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
        sc_die("connect");
}

static int run_pair(void)
{
    static int listener, server, client, go[2];
    static uint64_t server_sent, client_sent;
    static struct tcp_shape server_shape, client_shape;
    connected_pair(&listener, &server, &client);
    server_sent = fill(server, 1, 0);
    client_sent = fill(client, 2, 0);
    server_shape = shape(server);
    client_shape = shape(client);
    if (pipe2(go, O_CLOEXEC) != 0)
        sc_die("pipe");
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        char byte;
        close(server);
        close(listener);
        close(go[1]);
        while (read(go[0], &byte, 1) < 0 && errno == EINTR) {
        }
        check_shape("client", client, client_shape);
        uint64_t got = exchange("client", client, 2, client_sent, client_sent + 100000, 1);
        sc_check(got == server_sent + 1000, "client read %llu bytes of the server's %llu", (unsigned long long)got,
                 (unsigned long long)(server_sent + 1000));
        if (sc_nfail > 0 && write(2, sc_failures, strlen(sc_failures)) < 0)
            _exit(3);
        _exit(sc_nfail == 0 ? 0 : 1);
    }
    close(client);
    close(go[0]);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    check_shape("server", server, server_shape);
    if (write(go[1], "g", 1) != 1)
        sc_fail("cannot start the client");
    uint64_t got = exchange("server", server, 1, server_sent, server_sent + 1000, 2);
    sc_check(got == client_sent + 100000, "server read %llu bytes of the client's %llu", (unsigned long long)got,
             (unsigned long long)(client_sent + 100000));
    int status = 0;
    pid_t waited;
    while ((waited = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
    }
    sc_check(waited == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the client failed (status 0x%x%s%s)",
             status, waited < 0 ? ": " : "", waited < 0 ? strerror(errno) : "");
    sc_finish();
}

static int run_server(int port)
{
    static int listener, connection;
    static uint64_t sent;
    static char path[PATH_MAX + 16];
    listener = loopback_listener(port);
    sc_ready();
    while ((connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        if (errno != EINTR)
            sc_die("accept");
    }
    sent = fill(connection, 1, 0);
    char text[32];
    sc_fmt(path, sizeof path, "%s.sent", sc_outfile);
    snprintf(text, sizeof text, "%llu", (unsigned long long)sent);
    if (sc_write_file_atomic(path, text) != 0)
        sc_die("write %s", path);
    sc_wait_for_term();
    sc_fmt(path, sizeof path, "%s.expect", sc_outfile);
    FILE *expect = fopen(path, "r");
    unsigned long long expected = 0;
    sc_check(expect && fscanf(expect, "%llu", &expected) == 1, "no %s", path);
    if (expect)
        fclose(expect);
    int flags = fcntl(connection, F_GETFL);
    fcntl(connection, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval timeout = {10, 0};
    setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    unsigned char in[4096];
    uint64_t got = 0;
    int wrong = 0;
    while (got < expected) {
        ssize_t r = recv(connection, in, sizeof in, 0);
        if (r <= 0) {
            sc_fail("recv after %llu of %llu bytes: %s", (unsigned long long)got, expected,
                    r == 0 ? "end of stream" : strerror(errno));
            break;
        }
        for (ssize_t i = 0; i < r; i++, got++)
            if (in[i] != pattern(3, got) && !wrong) {
                sc_fail("byte %llu from the test is 0x%x, expected 0x%x", (unsigned long long)got, in[i],
                        pattern(3, got));
                wrong = 1;
            }
    }
    sc_check(send(connection, "done", 4, 0) == 4, "send done: %s", strerror(errno));
    sc_finish();
}

static int run_read_shut_down(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    if (shutdown(client, SHUT_RD) != 0 || setsockopt(client, IPPROTO_TCP, TCP_QUICKACK, &(int){0}, sizeof(int)) != 0 ||
        setsockopt(server, IPPROTO_TCP, TCP_WINDOW_CLAMP, &(int){20000}, sizeof(int)) != 0)
        sc_die("shutdown");
    sc_ready();
    sc_wait_for_term();
    char buf[8] = {0};
    int value = -1;
    socklen_t size = sizeof value;
    sc_check(getsockopt(client, IPPROTO_TCP, TCP_QUICKACK, &value, &size) == 0 && value == 0,
             "the client's TCP_QUICKACK is %d", value);
    sc_check(getsockopt(server, IPPROTO_TCP, TCP_WINDOW_CLAMP, &value, &size) == 0 && value == 20000,
             "the server's TCP_WINDOW_CLAMP is %d", value);
    struct pollfd entry = {client, POLLIN | POLLRDHUP, 0};
    sc_check(poll(&entry, 1, 0) == 1 && (entry.revents & POLLRDHUP), "the client's reading is not shut down (0x%x)",
             entry.revents);
    sc_check(recv(client, buf, sizeof buf, MSG_DONTWAIT) == 0, "the client reads past its SHUT_RD");
    sc_check(send(client, "still", 5, 0) == 5 && recv(server, buf, sizeof buf, 0) == 5 && memcmp(buf, "still", 5) == 0,
             "the client's writing does not reach the server");
    sc_finish();
}

static int run_half_closed(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    if (shutdown(client, SHUT_WR) != 0)
        sc_die("shutdown");
    sc_sleep_ms(50);
    sc_ready();
    sc_wait_for_term();
    char buf[8] = {0};
    sc_check(recv(server, buf, sizeof buf, 0) == 0, "the server does not see the client's end");
    sc_check(send(server, "late", 4, 0) == 4 && recv(client, buf, sizeof buf, 0) == 4 && memcmp(buf, "late", 4) == 0,
             "the half-closed connection does not carry the server's bytes");
    sc_finish();
}

static int run_shared(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    pid_t child = fork();
    if (child == 0) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        int signal = 0;
        sigwait(&usr1, &signal);
        _exit(send(server, "child", 5, 0) == 5 ? 0 : 1);
    }
    if (child < 0)
        sc_die("fork");
    sc_ready();
    sc_wait_for_term();
    char buf[8] = {0};
    int status = 0;
    sc_check(kill(child, SIGUSR1) == 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                 WEXITSTATUS(status) == 0,
             "the child's copy of the connection does not send");
    sc_check(recv(client, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "child", 5) == 0,
             "the client does not read what the child sent");
    sc_check(send(client, "back", 4, 0) == 4 && recv(server, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "back", 4) == 0,
             "the parent's copy does not read what the client sent");
    sc_finish();
}

static int run_peek_offset(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    char buf[8] = {0};
    if (setsockopt(server, SOL_SOCKET, SO_PEEK_OFF, &(int){0}, sizeof(int)) != 0 || send(client, "abcdef", 6, 0) != 6)
        sc_die("a peek offset");
    sc_sleep_ms(50);
    if (recv(server, buf, 2, MSG_PEEK) != 2)
        sc_die("peek");
    sc_ready();
    sc_wait_for_term();
    sc_check(recv(server, buf, 2, MSG_PEEK | MSG_DONTWAIT) == 2 && memcmp(buf, "cd", 2) == 0,
             "the peek offset moved: the next peek gave \"%.2s\"", buf);
    sc_finish();
}

static int run_accepted_below(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    /* The listener moves above the connection's descriptors, and gives up SO_REUSEADDR. */
    if (dup2(listener, 100) != 100 || close(listener) != 0 ||
        setsockopt(100, SOL_SOCKET, SO_REUSEADDR, &(int){0}, sizeof(int)) != 0)
        sc_die("moving the listener");
    listener = 100;
    sc_ready();
    sc_wait_for_term();
    char buf[8] = {0};
    sc_check(send(client, "below", 5, 0) == 5 && recv(server, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "below", 5) == 0,
             "the accepted connection does not carry bytes");
    struct sockaddr_storage address;
    socklen_t size = sizeof address;
    int another = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sc_check(getsockname(listener, (struct sockaddr *)&address, &size) == 0 &&
                 connect(another, (struct sockaddr *)&address, size) == 0 && accept4(listener, NULL, NULL, 0) >= 0,
             "the listener does not take another connection");
    sc_finish();
}

/* The number of the last zero-copy send completed (struct sock_extended_err of origin
 * SO_EE_ORIGIN_ZEROCOPY, read from the error queue) once it is at least `wanted`; -1 if none comes. */
static long zero_copy_completed(int fd, unsigned wanted)
{
    long last = -1;
    for (int tries = 0; tries < 100 && last < (long)wanted; tries++) {
        char control[128];
        struct msghdr message = {.msg_control = control, .msg_controllen = sizeof control};
        if (recvmsg(fd, &message, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
            sc_sleep_ms(10);
            continue;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
            struct sock_extended_err *error = (struct sock_extended_err *)CMSG_DATA(c);
            if (error->ee_origin == SO_EE_ORIGIN_ZEROCOPY)
                last = error->ee_data;
        }
    }
    return last;
}

static int run_zero_copy(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    char buf[16] = {0};
    if (setsockopt(server, SOL_SOCKET, SO_ZEROCOPY, &(int){1}, sizeof(int)) != 0 ||
        send(server, "copied", 6, MSG_ZEROCOPY) != 6 || recv(client, buf, 6, MSG_WAITALL) != 6 ||
        zero_copy_completed(server, 0) != 0)
        sc_die("a zero-copy send");
    sc_ready();
    sc_wait_for_term();
    sc_check(send(server, "again", 5, MSG_ZEROCOPY) == 5 && recv(client, buf, 5, MSG_WAITALL) == 5,
             "the zero-copy send after does not arrive");
    long last = zero_copy_completed(server, 1);
    sc_check(last == 1, "the last zero-copy completion is number %ld, not 1", last);
    sc_finish();
}

static int run_stamped_queue(void)
{
    static int listener, server, client;
    connected_pair(&listener, &server, &client);
    /* The kernel turns receive timestamps on for the whole system a moment after the first
     * socket asks (net_enable_timestamp defers it to a work item). */
    if (setsockopt(server, SOL_SOCKET, SO_TIMESTAMP, &(int){1}, sizeof(int)) != 0)
        sc_die("SO_TIMESTAMP");
    sc_sleep_ms(100);
    if (send(client, "stamped", 7, 0) != 7)
        sc_die("a stamped queue");
    sc_sleep_ms(50);
    sc_ready();
    sc_wait_for_term();
    char buf[16] = {0}, control[128];
    struct iovec part = {buf, 7};
    struct msghdr message = {.msg_iov = &part, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    int stamped = 0;
    sc_check(recvmsg(server, &message, MSG_WAITALL) == 7 && memcmp(buf, "stamped", 7) == 0, "the queued bytes changed");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c))
        stamped |= c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMP;
    sc_check(stamped, "the queued bytes came without their SCM_TIMESTAMP");
    sc_finish();
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "tcp_connections");
    sc_install_sigterm(0);
    if (sc_has_flag("--own-namespace")) {
        struct ifreq loopback = {0};
        strcpy(loopback.ifr_name, "lo");
        int control = -1;
        if (unshare(CLONE_NEWNET) != 0 || (control = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
            ioctl(control, SIOCGIFFLAGS, &loopback) != 0)
            sc_die("a network namespace of its own");
        loopback.ifr_flags |= IFF_UP;
        if (ioctl(control, SIOCSIFFLAGS, &loopback) != 0)
            sc_die("loopback up");
        close(control);
    }
    if (sc_has_flag("--inet6") || sc_has_flag("--v4-mapped"))
        family = AF_INET6;
    v4_mapped = sc_has_flag("--v4-mapped");
    if (sc_has_flag("--half-closed"))
        return run_half_closed();
    if (sc_has_flag("--peek-offset"))
        return run_peek_offset();
    if (sc_has_flag("--zero-copy"))
        return run_zero_copy();
    if (sc_has_flag("--accepted-below"))
        return run_accepted_below();
    if (sc_has_flag("--stamped-queue"))
        return run_stamped_queue();
    if (sc_has_flag("--shared"))
        return run_shared();
    if (sc_has_flag("--read-shut-down"))
        return run_read_shut_down();
    for (int i = 0; i + 1 < sc_argc_extra; i++)
        if (strcmp(sc_argv_extra[i], "--server") == 0)
            return run_server(atoi(sc_argv_extra[i + 1]));
    return run_pair();
}
