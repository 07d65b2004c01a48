/*
 * many_fds: enough pipes and unix socket pairs in one process that a dump reads their
 * records on every CPU at once (bench/fds.c in small), each holding data:
 *   24 pipes (fds 3 to 50), pipe i holding 100 * i + 1 bytes; every fourth one in packet
 *   mode (O_DIRECT) holding three packets instead; the write ends of every sixth one also
 *   at fds 51 to 54 (dup: one open file description)
 *   24 socket pairs (fds 55 to 102), stream, datagram and seqpacket in turn, each socket
 *   holding what the other sent: 37 * (k + 1) bytes of a stream, three messages otherwise;
 *   every fifth pair's first socket with a receive buffer of its own
 *   a child holding all of them too (inherited), which only waits
 * After SIGTERM every queue reads back byte for byte (packets and messages one a read),
 * each pair still carries a byte both ways, each pipe too, flags and buffers are as set.
 *   --passcred-queued   stream pairs 3 and 21 also have SO_PASSCRED set on their second
 *                       socket: what is queued at both sockets of each carries credentials,
 *                       which a dump refuses, naming fd 61 (pair 3's first socket), the lowest
 *                       (a datagram or seqpacket socket would bind itself when sending)
 * Byte j of queue q is (q * 7 + j) % 251, so a lost, repeated or reordered byte shows.
 */
#include "scenario.h"
#include <sys/ioctl.h>
#include <sys/socket.h>

#define PIPES 24
#define PAIRS 24
#define PACKETS 3

static int pipes[PIPES][2];
static int dups[PIPES];
static int pairs[PAIRS][2];
static pid_t child;

static unsigned char pattern(int queue, size_t j)
{
    return (unsigned char)(((size_t)queue * 7 + j) % 251);
}

static void fill(unsigned char *buf, int queue, size_t count)
{
    for (size_t j = 0; j < count; j++)
        buf[j] = pattern(queue, j);
}

static int packet_mode(int i) { return i % 4 == 1; }
static int pair_type(int k) { return k % 3 == 0 ? SOCK_STREAM : k % 3 == 1 ? SOCK_DGRAM : SOCK_SEQPACKET; }
static size_t packet_size(int i, int p) { return (size_t)(10 * i + p + 1); }
static size_t pipe_bytes(int i) { return (size_t)(100 * i + 1); }
static size_t stream_bytes(int k) { return (size_t)(37 * (k + 1)); }
static size_t message_size(int k, int m) { return (size_t)(5 * k + m + 1); }
static int custom_buffer(int k) { return k % 5 == 2; }
static int passcred(int k) { return sc_has_flag("--passcred-queued") && (k == 3 || k == 21); }

static void setup(void)
{
    static unsigned char buf[8192];
    for (int i = 0; i < PIPES; i++) {
        if (pipe(pipes[i]) != 0)
            sc_die("pipe");
        if (packet_mode(i)) {
            if (fcntl(pipes[i][1], F_SETFL, O_DIRECT) != 0)
                sc_die("O_DIRECT");
            for (int p = 0; p < PACKETS; p++) {
                fill(buf, i * 10 + p, packet_size(i, p));
                if (sc_write_all(pipes[i][1], buf, packet_size(i, p)) < 0)
                    sc_die("writing a packet");
            }
        } else {
            fill(buf, i, pipe_bytes(i));
            if (sc_write_all(pipes[i][1], buf, pipe_bytes(i)) < 0)
                sc_die("filling a pipe");
        }
    }
    for (int i = 0; i < PIPES; i++)
        dups[i] = i % 6 == 0 ? dup(pipes[i][1]) : -1;
    for (int k = 0; k < PAIRS; k++) {
        if (socketpair(AF_UNIX, pair_type(k), 0, pairs[k]) != 0)
            sc_die("socketpair");
        if (custom_buffer(k)) {
            int size = 12345;
            if (setsockopt(pairs[k][0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0)
                sc_die("SO_RCVBUF");
        }
        if (passcred(k)) {
            int on = 1;
            if (setsockopt(pairs[k][1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
                sc_die("SO_PASSCRED");
        }
        for (int side = 0; side < 2; side++) {
            int queue = 1000 + k * 2 + side;
            if (pair_type(k) == SOCK_STREAM) {
                fill(buf, queue, stream_bytes(k));
                if (sc_write_all(pairs[k][side], buf, stream_bytes(k)) < 0)
                    sc_die("sending on a stream");
                continue;
            }
            for (int m = 0; m < 3; m++) {
                fill(buf, queue * 3 + m, message_size(k, m));
                if (send(pairs[k][side], buf, message_size(k, m), 0) != (ssize_t)message_size(k, m))
                    sc_die("sending a message");
            }
        }
    }
}

/* Reads `count` bytes of queue `queue` from `fd` in one read (the whole queue, a packet or a
 * message), checking each; then that nothing more is there without waiting. */
static void read_one(int fd, int queue, size_t count, const char *what, int index)
{
    static unsigned char buf[8192];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK)
        n = read(fd, buf, count);
    if (!sc_check(n == (ssize_t)count, "%s %d: read %zd bytes, expected %zu (%s)", what, index, n, count,
            n < 0 ? strerror(errno) : "ok"))
        return;
    for (size_t j = 0; j < count; j++)
        if (!sc_check(buf[j] == pattern(queue, j), "%s %d: byte %zu is %u, expected %u", what, index, j, buf[j],
                pattern(queue, j)))
            return;
}

static int queued(int fd)
{
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

static void check_pipes(void)
{
    for (int i = 0; i < PIPES; i++) {
        int flags = fcntl(pipes[i][1], F_GETFL);
        sc_check(!!(flags & O_DIRECT) == packet_mode(i), "pipe %d: packet mode %s", i,
            flags & O_DIRECT ? "set" : "lost");
        if (dups[i] >= 0) {
            fcntl(dups[i], F_SETFL, flags | O_NONBLOCK);
            sc_check(fcntl(pipes[i][1], F_GETFL) & O_NONBLOCK, "pipe %d: the dup is no longer on the same open file description", i);
            fcntl(dups[i], F_SETFL, flags);
        }
        if (packet_mode(i)) {
            for (int p = 0; p < PACKETS; p++)
                read_one(pipes[i][0], i * 10 + p, packet_size(i, p), "pipe", i);
        } else {
            read_one(pipes[i][0], i, pipe_bytes(i), "pipe", i);
        }
        sc_check(queued(pipes[i][0]) == 0, "pipe %d: %d bytes left", i, queued(pipes[i][0]));
        unsigned char byte = 42;
        sc_check(write(pipes[i][1], &byte, 1) == 1 && read(pipes[i][0], &byte, 1) == 1 && byte == 42,
            "pipe %d: a byte written does not come out", i);
    }
}

static void check_pairs(void)
{
    for (int k = 0; k < PAIRS; k++) {
        int type = 0;
        socklen_t length = sizeof type;
        getsockopt(pairs[k][0], SOL_SOCKET, SO_TYPE, &type, &length);
        sc_check(type == pair_type(k), "pair %d: type %d, expected %d", k, type, pair_type(k));
        if (custom_buffer(k)) {
            int size = 0;
            length = sizeof size;
            getsockopt(pairs[k][0], SOL_SOCKET, SO_RCVBUF, &size, &length);
            sc_check(size == 2 * 12345, "pair %d: receive buffer %d, expected %d", k, size, 2 * 12345);
        }
        for (int side = 0; side < 2; side++) {
            /* what the other side sent */
            int queue = 1000 + k * 2 + (1 - side);
            if (pair_type(k) == SOCK_STREAM) {
                read_one(pairs[k][side], queue, stream_bytes(k), "socket pair", k);
            } else {
                for (int m = 0; m < 3; m++)
                    read_one(pairs[k][side], queue * 3 + m, message_size(k, m), "socket pair", k);
            }
            unsigned char byte = (unsigned char)side, got = 0xff;
            sc_check(send(pairs[k][1 - side], &byte, 1, 0) == 1 && recv(pairs[k][side], &got, 1, MSG_DONTWAIT) == 1
                    && got == byte,
                "pair %d: a byte sent to side %d does not come out", k, side);
        }
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "many_fds");
    sc_install_sigterm(0);
    setup();
    child = sc_fork_paused_child(NULL);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    check_pipes();
    check_pairs();
    kill(child, SIGKILL);
    int status;
    sc_check(sc_wait_child(child, &status, 20000) == child, "the child %d was not reaped", (int)child);
    sc_finish();
}
