/*
 * unix_sockets: unix socket pairs holding data both ways, with their options.
 *   - a stream pair: 100,000 bytes queued one way, 5 the other; the reader has SO_PEEK_OFF at 3
 *     and SO_RCVBUF set; the writer O_NONBLOCK with SO_SNDBUF set;
 *   - a datagram pair: datagrams of 1, 0, 3000 and 7 bytes one way, 2 the other; SO_PASSSEC on
 *     the reader;
 *   - a seqpacket pair: records of 5 and 11 bytes one way;
 *   - a stream pair shut down for writing one way, with 6 bytes still queued;
 *   - a stream pair and a seqpacket pair whose other end is closed, holding data;
 *   - a datagram pair whose other end is closed, with SO_PASSCRED;
 *   - an unconnected stream socket, with SO_PASSCRED, SO_KEEPALIVE, SO_REUSEADDR, SO_PRIORITY 3,
 *     SO_LINGER (on, 5 s), SO_RCVLOWAT 10, SO_RCVTIMEO 2.5 s, SO_MAX_PACING_RATE, SO_TXTIME and
 *     SO_BUF_LOCK 3 with neither buffer set;
 *   - SO_TIMESTAMP on the seqpacket reader (a record sent after the restore carries its
 *     SCM_TIMESTAMP), SO_PASSRIGHTS off on the datagram reader (an fd sent to it is refused).
 *   - a stream pair split with a child, which sent "from child" and has "to child" queued.
 *   - a seqpacket socket never connected;
 *   - a stream pair whose writer's SO_SNDBUFFORCE (as root) let it queue more than twice
 *     net.core.wmem_max allows, filled until it would block.
 * After SIGTERM each socket reads exactly what was queued, with its boundaries, then nothing;
 * its options, flags and shutdowns are as set; every pair still works both ways; the child,
 * signalled, reads what was queued for it and answers through the pair.
 */
#include "scenario.h"
#include <linux/net_tstamp.h>
#include <time.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/socket.h>

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83
#endif

#define BIG 100000

static int stream_pair[2], dgram_pair[2], seqpacket_pair[2], shut_pair[2], half_stream, half_seqpacket, half_dgram,
    unconnected, child_pair[2];
static unsigned char big[BIG];
static int sndbuf_set, rcvbuf_set;

static void on_usr1(int signal)
{
    (void)signal;
    char buf[64];
    ssize_t n = recv(child_pair[1], buf, sizeof buf, MSG_DONTWAIT);
    if (n == 8 && memcmp(buf, "to child", 8) == 0)
        send(child_pair[1], "child ok", 8, MSG_DONTWAIT);
    else
        send(child_pair[1], "child KO", 8, MSG_DONTWAIT);
}

static void child_setup(void)
{
    close(child_pair[0]);
    sc_handle(SIGUSR1, on_usr1, 0);
    if (send(child_pair[1], "from child", 10, 0) != 10)
        _exit(3);
}

static int int_option(int fd, int option)
{
    int value = -12345;
    socklen_t size = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, option, &value, &size) != 0)
        return -12345;
    return value;
}

static void expect_message(int fd, const char *name, const void *data, ssize_t length)
{
    static char buf[BIG + 16];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n == length && memcmp(buf, data, length) == 0, "%s: read %zd bytes, expected %zd", name, n, length);
}

static void expect_empty(int fd, const char *name)
{
    char buf[16];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n < 0 && errno == EAGAIN, "%s: more was queued (recv gave %zd, errno %d)", name, n, errno);
}

static void expect_end(int fd, const char *name)
{
    char buf[16];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n == 0, "%s: not at its end (recv gave %zd, errno %d)", name, n, errno);
}

static void expect_works(int pair[2], const char *name)
{
    char buf[16];
    sc_check(send(pair[0], "ping", 4, MSG_DONTWAIT) == 4 && recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                 memcmp(buf, "ping", 4) == 0,
             "%s no longer carries data from its first end to its second", name);
    sc_check(send(pair[1], "pong", 4, MSG_DONTWAIT) == 4 && recv(pair[0], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                 memcmp(buf, "pong", 4) == 0,
             "%s no longer carries data from its second end to its first", name);
}

static void check_stream(void)
{
    /* The peek offset is 3: a peek gives the bytes after the 3 peeked before the dump. */
    sc_check(int_option(stream_pair[1], SO_PEEK_OFF) == 3, "stream reader: SO_PEEK_OFF is %d, expected 3",
             int_option(stream_pair[1], SO_PEEK_OFF));
    unsigned char peeked[4];
    sc_check(recv(stream_pair[1], peeked, 4, MSG_PEEK | MSG_DONTWAIT) == 4 && memcmp(peeked, big + 3, 4) == 0,
             "stream reader: a peek does not continue at offset 3");
    sc_check(int_option(stream_pair[1], SO_RCVBUF) == rcvbuf_set, "stream reader: SO_RCVBUF is %d, expected %d",
             int_option(stream_pair[1], SO_RCVBUF), rcvbuf_set);
    sc_check(int_option(stream_pair[0], SO_SNDBUF) == sndbuf_set, "stream writer: SO_SNDBUF is %d, expected %d",
             int_option(stream_pair[0], SO_SNDBUF), sndbuf_set);
    sc_check(int_option(stream_pair[0], SO_BUF_LOCK) == SOCK_SNDBUF_LOCK &&
                 int_option(stream_pair[1], SO_BUF_LOCK) == SOCK_RCVBUF_LOCK,
             "stream pair: SO_BUF_LOCK is %d and %d, expected the one its buffer's setting gave",
             int_option(stream_pair[0], SO_BUF_LOCK), int_option(stream_pair[1], SO_BUF_LOCK));
    sc_check((fcntl(stream_pair[0], F_GETFL) & O_NONBLOCK) != 0, "stream writer: O_NONBLOCK is gone");
    sc_check((fcntl(stream_pair[1], F_GETFL) & O_NONBLOCK) == 0, "stream reader: O_NONBLOCK appeared");
    setsockopt(stream_pair[1], SOL_SOCKET, SO_PEEK_OFF, &(int){-1}, sizeof(int));
    static unsigned char got[BIG];
    size_t total = 0;
    while (total < BIG) {
        ssize_t n = recv(stream_pair[1], got + total, BIG - total, MSG_DONTWAIT);
        if (n <= 0)
            break;
        total += n;
    }
    sc_check(total == BIG && memcmp(got, big, BIG) == 0, "stream reader: read %zu of %d bytes, or other bytes", total,
             BIG);
    expect_empty(stream_pair[1], "stream reader");
    expect_message(stream_pair[0], "stream writer", "hello", 5);
    expect_empty(stream_pair[0], "stream writer");
    expect_works(stream_pair, "the stream pair");
}

static void check_datagrams(void)
{
    sc_check(int_option(dgram_pair[1], SO_PASSSEC) == 1, "datagram reader: SO_PASSSEC is not set");
    sc_check(int_option(dgram_pair[1], SO_PASSCRED) == 0, "datagram reader: SO_PASSCRED is set");
    sc_check(int_option(dgram_pair[1], SO_PEEK_OFF) == -1, "datagram reader: SO_PEEK_OFF is %d",
             int_option(dgram_pair[1], SO_PEEK_OFF));
    expect_message(dgram_pair[1], "datagram 1", "a", 1);
    expect_message(dgram_pair[1], "datagram 2 (empty)", "", 0);
    expect_message(dgram_pair[1], "datagram 3", big, 3000);
    expect_message(dgram_pair[1], "datagram 4", "seven!!", 7);
    expect_empty(dgram_pair[1], "datagram reader");
    expect_message(dgram_pair[0], "datagram back", "ok", 2);
    expect_empty(dgram_pair[0], "datagram writer");
    expect_works(dgram_pair, "the datagram pair");
}

static void check_seqpacket(void)
{
    expect_message(seqpacket_pair[1], "record 1", "first", 5);
    expect_message(seqpacket_pair[1], "record 2", "second part", 11);
    expect_empty(seqpacket_pair[1], "seqpacket reader");
    expect_empty(seqpacket_pair[0], "seqpacket writer");
    expect_works(seqpacket_pair, "the seqpacket pair");
}

static void check_shutdown(void)
{
    expect_message(shut_pair[1], "shut pair", "before", 6);
    expect_end(shut_pair[1], "the reader of the pair shut down for writing");
    sc_check(send(shut_pair[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE,
             "the pair's end shut down for writing still sends");
    char buf[8];
    sc_check(send(shut_pair[1], "back", 4, MSG_DONTWAIT) == 4 && recv(shut_pair[0], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                 memcmp(buf, "back", 4) == 0,
             "the other way of the half-shut pair no longer works");
}

static void check_halves(void)
{
    expect_message(half_stream, "stream whose peer closed", "left behind", 11);
    expect_end(half_stream, "stream whose peer closed");
    sc_check(send(half_stream, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE,
             "the stream whose peer closed still sends");
    expect_message(half_seqpacket, "seqpacket whose peer closed", "last", 4);
    expect_end(half_seqpacket, "seqpacket whose peer closed");
    expect_empty(half_dgram, "datagram whose peer closed");
    sc_check(send(half_dgram, "x", 1, MSG_DONTWAIT) < 0 && errno == ECONNREFUSED,
             "the datagram socket whose peer closed sends (errno %d)", errno);
    sc_check(int_option(half_dgram, SO_PASSCRED) == 1, "the datagram socket whose peer closed lost SO_PASSCRED");
    sc_check(int_option(unconnected, SO_PASSCRED) == 1, "the unconnected socket lost SO_PASSCRED");
    int type = int_option(unconnected, SO_TYPE);
    sc_check(type == SOCK_STREAM, "the unconnected socket is of type %d", type);
    sc_check(send(unconnected, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == ENOTCONN,
             "the unconnected socket sends (errno %d)", errno);
}

static void check_options(void)
{
    struct linger linger = {0};
    socklen_t size = sizeof linger;
    sc_check(int_option(unconnected, SO_KEEPALIVE) == 1 && int_option(unconnected, SO_REUSEADDR) == 1 &&
                 int_option(unconnected, SO_PRIORITY) == 3,
             "the unconnected socket lost SO_KEEPALIVE, SO_REUSEADDR or SO_PRIORITY");
    sc_check(getsockopt(unconnected, SOL_SOCKET, SO_LINGER, &linger, &size) == 0 && linger.l_onoff == 1 &&
                 linger.l_linger == 5,
             "the unconnected socket lost SO_LINGER");
    struct timeval timeout = {0};
    size = sizeof timeout;
    sc_check(int_option(unconnected, SO_RCVLOWAT) == 10 &&
                 getsockopt(unconnected, SOL_SOCKET, SO_RCVTIMEO, &timeout, &size) == 0 && timeout.tv_sec == 2 &&
                 timeout.tv_usec == 500000,
             "the unconnected socket lost SO_RCVLOWAT or SO_RCVTIMEO");
    uint64_t pacing = 0;
    struct sock_txtime txtime = {0};
    size = sizeof pacing;
    sc_check(getsockopt(unconnected, SOL_SOCKET, SO_MAX_PACING_RATE, &pacing, &size) == 0 && pacing == 123456,
             "the unconnected socket's SO_MAX_PACING_RATE is %llu", (unsigned long long)pacing);
    size = sizeof txtime;
    sc_check(getsockopt(unconnected, SOL_SOCKET, SO_TXTIME, &txtime, &size) == 0 && txtime.clockid == CLOCK_MONOTONIC,
             "the unconnected socket's SO_TXTIME clock is %d", txtime.clockid);
    sc_check(int_option(unconnected, SO_BUF_LOCK) == 3, "the unconnected socket's SO_BUF_LOCK is %d",
             int_option(unconnected, SO_BUF_LOCK));
    sc_check(int_option(seqpacket_pair[1], SO_TIMESTAMP) == 1, "seqpacket reader: SO_TIMESTAMP is off");
    if (send(seqpacket_pair[0], "stamped", 7, 0) != 7)
        sc_fail("seqpacket send after the restore");
    char data[16];
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct timeval))];
    } control;
    struct iovec vector = {data, sizeof data};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    struct cmsghdr *header = recvmsg(seqpacket_pair[1], &message, MSG_DONTWAIT) == 7 ? CMSG_FIRSTHDR(&message) : NULL;
    sc_check(header && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_TIMESTAMP,
             "seqpacket reader: no SCM_TIMESTAMP with a record");
    sc_check(int_option(dgram_pair[1], SO_PASSRIGHTS) == 0, "datagram reader: SO_PASSRIGHTS is on");
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } rights = {0};
    struct msghdr passing = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = &rights, .msg_controllen = sizeof rights};
    struct cmsghdr *passed = CMSG_FIRSTHDR(&passing);
    passed->cmsg_level = SOL_SOCKET;
    passed->cmsg_type = SCM_RIGHTS;
    passed->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(passed), &unconnected, sizeof(int));
    sc_check(sendmsg(dgram_pair[0], &passing, MSG_DONTWAIT) < 0 && errno == EPERM,
             "an fd was sent to the datagram reader with SO_PASSRIGHTS off (errno %d)", errno);
}

static void check_child(pid_t child)
{
    expect_message(child_pair[0], "the child's message", "from child", 10);
    kill(child, SIGUSR1);
    struct pollfd ready = {child_pair[0], POLLIN, 0};
    if (sc_check(poll(&ready, 1, 5000) == 1, "the child never answered through the pair"))
        expect_message(child_pair[0], "the child's answer", "child ok", 8);
}

static int fresh_seqpacket = -1;
static int forced_pair[2] = {-1, -1};
static long forced_queued;

/* Queues as much as a send buffer forced to 8 MiB lets the writer. */
static void fill_forced(void)
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, forced_pair) != 0 ||
        setsockopt(forced_pair[0], SOL_SOCKET, SO_SNDBUFFORCE, &(int){8 << 20}, sizeof(int)) != 0)
        sc_die("a stream pair with SO_SNDBUFFORCE");
    for (;;) {
        ssize_t n = send(forced_pair[0], big, BIG, MSG_DONTWAIT);
        if (n <= 0)
            break;
        forced_queued += n;
    }
}

static void check_forced(void)
{
    long got = 0;
    for (;;) {
        ssize_t n = recv(forced_pair[1], big, BIG, MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += n;
    }
    sc_check(got == forced_queued, "the forced pair held %ld bytes, not the %ld queued", got, forced_queued);
    int type = 0;
    socklen_t size = sizeof type;
    sc_check(getsockopt(fresh_seqpacket, SOL_SOCKET, SO_TYPE, &type, &size) == 0 && type == SOCK_SEQPACKET,
             "the seqpacket socket never connected is gone");
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unix_sockets");
    sc_install_sigterm(0);
    for (int i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    int closed[2], closed2[2], closed3[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, stream_pair) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dgram_pair) ||
        socketpair(AF_UNIX, SOCK_SEQPACKET, 0, seqpacket_pair) || socketpair(AF_UNIX, SOCK_STREAM, 0, shut_pair) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, closed) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, closed2) ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, closed3) || socketpair(AF_UNIX, SOCK_STREAM, 0, child_pair))
        sc_die("socketpair");
    unconnected = socket(AF_UNIX, SOCK_STREAM, 0);
    fresh_seqpacket = socket(AF_UNIX, SOCK_SEQPACKET, 0);

    setsockopt(stream_pair[0], SOL_SOCKET, SO_SNDBUF, &(int){300000}, sizeof(int));
    setsockopt(stream_pair[1], SOL_SOCKET, SO_RCVBUF, &(int){50000}, sizeof(int));
    sndbuf_set = int_option(stream_pair[0], SO_SNDBUF);
    rcvbuf_set = int_option(stream_pair[1], SO_RCVBUF);
    if (sc_write_all(stream_pair[0], big, BIG) < 0 || send(stream_pair[1], "hello", 5, 0) != 5)
        sc_die("stream send");
    fcntl(stream_pair[0], F_SETFL, O_NONBLOCK);
    setsockopt(stream_pair[1], SOL_SOCKET, SO_PEEK_OFF, &(int){0}, sizeof(int));
    char peeked[3];
    if (recv(stream_pair[1], peeked, 3, MSG_PEEK) != 3)
        sc_die("peek");

    if (send(dgram_pair[0], "a", 1, 0) != 1 || send(dgram_pair[0], "", 0, 0) != 0 ||
        send(dgram_pair[0], big, 3000, 0) != 3000 || send(dgram_pair[0], "seven!!", 7, 0) != 7 ||
        send(dgram_pair[1], "ok", 2, 0) != 2)
        sc_die("datagram send");
    setsockopt(dgram_pair[1], SOL_SOCKET, SO_PASSSEC, &(int){1}, sizeof(int));

    if (send(seqpacket_pair[0], "first", 5, 0) != 5 || send(seqpacket_pair[0], "second part", 11, 0) != 11)
        sc_die("seqpacket send");

    if (send(shut_pair[0], "before", 6, 0) != 6 || shutdown(shut_pair[0], SHUT_WR) != 0)
        sc_die("shutdown");

    if (send(closed[1], "left behind", 11, 0) != 11 || send(closed2[1], "last", 4, 0) != 4)
        sc_die("send before closing");
    close(closed[1]);
    close(closed2[1]);
    close(closed3[1]);
    half_stream = closed[0];
    half_seqpacket = closed2[0];
    half_dgram = closed3[0];
    setsockopt(half_dgram, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_KEEPALIVE, &(int){1}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_PRIORITY, &(int){3}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_LINGER, &(struct linger){1, 5}, sizeof(struct linger));
    setsockopt(unconnected, SOL_SOCKET, SO_RCVLOWAT, &(int){10}, sizeof(int));
    setsockopt(unconnected, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){2, 500000}, sizeof(struct timeval));
    if (setsockopt(unconnected, SOL_SOCKET, SO_MAX_PACING_RATE, &(uint64_t){123456}, sizeof(uint64_t)) != 0 ||
        setsockopt(unconnected, SOL_SOCKET, SO_TXTIME, &(struct sock_txtime){CLOCK_MONOTONIC, 0},
                   sizeof(struct sock_txtime)) != 0 ||
        setsockopt(unconnected, SOL_SOCKET, SO_BUF_LOCK, &(int){3}, sizeof(int)) != 0)
        sc_die("SO_MAX_PACING_RATE, SO_TXTIME or SO_BUF_LOCK");
    setsockopt(seqpacket_pair[1], SOL_SOCKET, SO_TIMESTAMP, &(int){1}, sizeof(int));
    if (setsockopt(dgram_pair[1], SOL_SOCKET, SO_PASSRIGHTS, &(int){0}, sizeof(int)) != 0)
        sc_die("SO_PASSRIGHTS");

    pid_t child = sc_fork_paused_child(child_setup);
    close(child_pair[1]);
    fill_forced();
    sc_wait_in_pause(child);
    if (send(child_pair[0], "to child", 8, 0) != 8)
        sc_die("send to the child");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_stream();
    check_datagrams();
    check_seqpacket();
    check_shutdown();
    check_halves();
    check_options();
    check_child(child);
    check_forced();
    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child is gone");
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    sc_finish();
}
