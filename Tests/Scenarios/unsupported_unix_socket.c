/*
 * unsupported_unix_socket: a unix socket amber refuses, by flag:
 *   --peer-outside    the other socket of a stream pair is held by a process outside the tree
 *                     (a grandchild, orphaned at once, which reads until end of file and exits)
 *   --peer-in-flight  the other socket of a stream pair is held by no process: it is in flight
 *                     in an SCM_RIGHTS message queued on a second pair
 *   --unlinked        a datagram socket bound to a path whose socket file was unlinked since
 *   --connected-outside  a datagram socket connected to one bound to a path that a process
 *                     outside the tree holds (as a logger's socket to /dev/log)
 *   --accepted        a connection accepted from a listener closed since, with its client
 *   --accepted-outside  a client whose listener and accepted socket a process outside the tree
 *                     holds
 *   --accepted-client-closed  a connection accepted from a listener, its client closed since
 *   --accepted-listener-outside  an accepted socket and its client whose listener a process
 *                     outside the tree holds
 *   --oob             a stream pair whose queue holds "ab" and an out-of-band byte "c" (MSG_OOB)
 *   --mark            a stream pair, one socket with SO_MARK set (which needs CAP_NET_ADMIN)
 *   --filter          a stream pair, one socket with a classic BPF filter that accepts all
 *   --owner           a stream pair, one socket owned by this process for SIGURG (F_SETOWN)
 *   --reset           a stream pair whose other socket was closed with a byte unread: the one
 *                     left holds an error (ECONNRESET) for its next read
 *   --waiting-client-closed  a listener with a connection waiting whose client closed since
 * After SIGTERM it checks the sockets still work as they did.
 */
#include "scenario.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/filter.h>

static int pair[2] = {-1, -1}, carrier[2] = {-1, -1}, bound = -1;
static struct sockaddr_un address;

static void send_descriptor(int through, int passed)
{
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control = {0};
    struct iovec data = {"fd", 2};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    struct cmsghdr *rights = CMSG_FIRSTHDR(&message);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(rights), &passed, sizeof(int));
    if (sendmsg(through, &message, 0) != 2)
        sc_die("sendmsg");
}

static int receive_descriptor(int from)
{
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control = {0};
    char buf[2];
    struct iovec data = {buf, sizeof buf};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    if (recvmsg(from, &message, MSG_DONTWAIT) != 2)
        return -1;
    struct cmsghdr *rights = CMSG_FIRSTHDR(&message);
    int fd = -1;
    if (rights && rights->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(rights), sizeof(int));
    return fd;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_unix_socket");
    sc_install_sigterm(0);
    signal(SIGPIPE, SIG_IGN);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        sc_die("socketpair");
    if (sc_has_flag("--peer-outside")) {
        pid_t child = fork();
        if (child < 0)
            sc_die("fork");
        if (child == 0) {
            if (fork() != 0)
                _exit(0);
            close(pair[0]);
            char buf[64];
            while (read(pair[1], buf, sizeof buf) > 0) {
            }
            _exit(0);
        }
        int status;
        if (waitpid(child, &status, 0) != child)
            sc_die("waitpid");
        close(pair[1]);
        pair[1] = -1;
    } else if (sc_has_flag("--oob")) {
        if (send(pair[1], "ab", 2, 0) != 2 || send(pair[1], "c", 1, MSG_OOB) != 1)
            sc_die("send MSG_OOB");
    } else if (sc_has_flag("--mark")) {
        if (setsockopt(pair[0], SOL_SOCKET, SO_MARK, &(int){7}, sizeof(int)) != 0)
            sc_die("SO_MARK");
    } else if (sc_has_flag("--owner")) {
        if (fcntl(pair[0], F_SETOWN, getpid()) != 0)
            sc_die("F_SETOWN");
    } else if (sc_has_flag("--reset")) {
        if (send(pair[0], "x", 1, 0) != 1)
            sc_die("send");
        close(pair[1]);
        pair[1] = -1;
    } else if (sc_has_flag("--waiting-client-closed")) {
        address.sun_family = AF_UNIX;
        snprintf(address.sun_path, sizeof address.sun_path, "/tmp/amber-unsupported-%d-waiting.sock", (int)getpid());
        unlink(address.sun_path);
        bound = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (bound < 0 || client < 0 || bind(bound, (struct sockaddr *)&address, sizeof address) != 0 ||
            listen(bound, 4) != 0 || connect(client, (struct sockaddr *)&address, sizeof address) != 0)
            sc_die("a connection waiting on a listener");
        close(client);
    } else if (sc_has_flag("--filter")) {
        struct sock_filter accept_all = BPF_STMT(BPF_RET | BPF_K, 0xffff);
        struct sock_fprog program = {1, &accept_all};
        if (setsockopt(pair[0], SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0)
            sc_die("SO_ATTACH_FILTER");
    } else if (sc_has_flag("--peer-in-flight")) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, carrier) < 0)
            sc_die("socketpair");
        send_descriptor(carrier[0], pair[1]);
        close(pair[1]);
        pair[1] = -1;
    } else if (sc_has_flag("--unlinked") || sc_has_flag("--connected-outside") || sc_has_flag("--accepted") ||
               sc_has_flag("--accepted-outside") || sc_has_flag("--accepted-listener-outside") ||
               sc_has_flag("--accepted-client-closed")) {
        address.sun_family = AF_UNIX;
        /* The test's directory makes too long a path for sun_path. */
        snprintf(address.sun_path, sizeof address.sun_path, "/tmp/amber-unsupported-%d-bound.sock", (int)getpid());
        unlink(address.sun_path);
        int client_closed = sc_has_flag("--accepted-client-closed");
        int accepted = sc_has_flag("--accepted") || sc_has_flag("--accepted-outside") ||
                       sc_has_flag("--accepted-listener-outside") || client_closed;
        bound = socket(AF_UNIX, (accepted ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
        if (bound < 0 || bind(bound, (struct sockaddr *)&address, sizeof address) != 0)
            sc_die("bind");
        close(pair[0]);
        close(pair[1]);
        if (sc_has_flag("--unlinked")) {
            unlink(address.sun_path);
        } else if (accepted) {
            if (listen(bound, 1) != 0 || (pair[0] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
                connect(pair[0], (struct sockaddr *)&address, sizeof address) != 0 ||
                (pair[1] = accept4(bound, NULL, NULL, SOCK_CLOEXEC)) < 0)
                sc_die("accept");
            int listener_outside = sc_has_flag("--accepted-listener-outside");
            if (sc_has_flag("--accepted-outside") || listener_outside) {
                /* The listener (and the accepted socket, unless the listener alone) go to a
                 * grandchild, orphaned at once, which exits once this process is gone; this
                 * process keeps the client (and the accepted socket). */
                pid_t parent = getpid();
                pid_t child = fork();
                if (child < 0)
                    sc_die("fork");
                if (child == 0) {
                    if (fork() != 0)
                        _exit(0);
                    close(pair[0]);
                    if (listener_outside)
                        close(pair[1]);
                    while (kill(parent, 0) == 0)
                        sc_sleep_ms(20);
                    _exit(0);
                }
                int status;
                if (waitpid(child, &status, 0) != child)
                    sc_die("waitpid");
                if (!listener_outside) {
                    close(pair[1]);
                    pair[1] = -1;
                }
            }
            if (client_closed) {
                close(pair[0]);
                pair[0] = -1;
            } else {
                close(bound);
                bound = -1;
            }
        } else {
            /* The bound socket goes to a grandchild, orphaned at once, which exits once this
             * process is gone; this process keeps a socket connected to it. */
            int sync[2];
            if (pipe2(sync, O_CLOEXEC) < 0)
                sc_die("pipe2");
            pid_t parent = getpid();
            if (sc_fork_outside() == 0) {
                close(sync[0]);
                close(sync[1]);
                char buf[16];
                while (recv(bound, buf, sizeof buf, MSG_DONTWAIT) != 0 && kill(parent, 0) == 0)
                    sc_sleep_ms(20);
                _exit(0);
            }
            close(sync[1]);
            char byte;
            if (read(sync[0], &byte, 1) != 0)
                sc_die("sync");
            close(sync[0]);
            close(bound);
            bound = -1;
            if ((pair[0] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
                connect(pair[0], (struct sockaddr *)&address, sizeof address) != 0)
                sc_die("connect");
        }
    } else {
        sc_die("no socket chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--mark")) {
        int mark = 0;
        socklen_t size = sizeof mark;
        sc_check(getsockopt(pair[0], SOL_SOCKET, SO_MARK, &mark, &size) == 0 && mark == 7, "SO_MARK is gone");
    } else if (sc_has_flag("--owner")) {
        sc_check(fcntl(pair[0], F_GETOWN) == getpid(), "the socket's owner is gone");
    } else if (sc_has_flag("--reset")) {
        char buf[8];
        sc_check(recv(pair[0], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == ECONNRESET,
                 "the socket's pending error (ECONNRESET) is gone");
    } else if (sc_has_flag("--waiting-client-closed")) {
        char buf[8];
        int accepted = accept(bound, NULL, NULL);
        sc_check(accepted >= 0 && recv(accepted, buf, sizeof buf, MSG_DONTWAIT) == 0,
                 "the waiting connection is gone or does not read its end of file");
    } else if (sc_has_flag("--filter")) {
        socklen_t blocks = 0;
        sc_check(getsockopt(pair[0], SOL_SOCKET, SO_GET_FILTER, NULL, &blocks) == 0 && blocks == 1,
                 "the filter is gone");
    } else if (sc_has_flag("--oob")) {
        char urgent = 0, buf[8];
        sc_check(recv(pair[0], &urgent, 1, MSG_OOB | MSG_DONTWAIT) == 1 && urgent == 'c',
                 "the out-of-band byte is gone");
        sc_check(recv(pair[0], buf, sizeof buf, MSG_DONTWAIT) == 2 && memcmp(buf, "ab", 2) == 0,
                 "the bytes before the out-of-band one are gone");
    } else if (sc_has_flag("--peer-outside") || sc_has_flag("--connected-outside") || sc_has_flag("--accepted-outside")) {
        sc_check(send(pair[0], "still", 5, MSG_DONTWAIT) == 5, "the socket no longer sends to the outside reader");
    } else if (sc_has_flag("--accepted-client-closed")) {
        char buf[8];
        sc_check(recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) == 0, "the accepted socket does not read its end of file");
    } else if (sc_has_flag("--unlinked")) {
        struct sockaddr_un name;
        socklen_t size = sizeof name;
        sc_check(getsockname(bound, (struct sockaddr *)&name, &size) == 0 && strcmp(name.sun_path, address.sun_path) == 0,
                 "the socket lost its address");
    } else if (sc_has_flag("--accepted") || sc_has_flag("--accepted-listener-outside")) {
        char buf[8];
        sc_check(send(pair[0], "ping", 4, MSG_DONTWAIT) == 4 && recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) == 4,
                 "the accepted connection no longer works");
    } else {
        pair[1] = receive_descriptor(carrier[1]);
        char buf[8];
        sc_check(pair[1] >= 0, "the socket in flight is gone");
        sc_check(send(pair[0], "ping", 4, MSG_DONTWAIT) == 4 && recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                     memcmp(buf, "ping", 4) == 0,
                 "the pair no longer works once its socket in flight is received");
    }
    if (address.sun_path[0])
        unlink(address.sun_path);
    sc_finish();
}
