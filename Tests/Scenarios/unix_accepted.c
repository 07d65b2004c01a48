/*
 * unix_accepted: connections accepted from unix listeners, with their clients.
 *   - a stream listener on a path, with two accepted connections whose clients are in two
 *     children: each client sent "c2s N" (queued at the accepted socket), each accepted socket
 *     sent "s2c N" (queued at the client); the second accepted socket is then shut down for
 *     writing; a third client, in this process, waits on the listener, not accepted;
 *   - a seqpacket listener on an abstract name with SO_PASSCRED, at an fd after its
 *     connection's, with one accepted connection (SO_PASSCRED turned off) whose client is in
 *     this process, records queued both ways.
 * After SIGTERM the accepted sockets are named by their listener's address and their clients
 * see that address as their peer's (their own is empty); each side reads what was queued (the
 * second client then its end of file) and they keep talking; the listener then accepts the
 * pending client, and a new one; the seqpacket listener a new one.
 */
#include "scenario.h"
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static int listener, accepted[2], clients[2], pending, seq_listener, seq_accepted, seq_client;
static int child_index;
static struct sockaddr_un listener_address, seq_address;
static socklen_t listener_length, seq_length;

static int same_address(int fd, int peer, const struct sockaddr_un *expected, socklen_t length)
{
    struct sockaddr_un address;
    socklen_t size = sizeof address;
    int result = peer ? getpeername(fd, (struct sockaddr *)&address, &size)
                      : getsockname(fd, (struct sockaddr *)&address, &size);
    return result == 0 && size == length && memcmp(&address, expected, length) == 0;
}

static int unnamed(int fd)
{
    struct sockaddr_un address;
    socklen_t size = sizeof address;
    return getsockname(fd, (struct sockaddr *)&address, &size) == 0 && size == sizeof(sa_family_t);
}

/* In a child, on SIGUSR1: the client reads what its accepted socket sent (the second, then its
 * end of file), checks its addresses and answers. */
static void on_usr1(int signal)
{
    (void)signal;
    int client = clients[child_index];
    char buf[64], expected[8];
    expected[0] = 's', expected[1] = '2', expected[2] = 'c', expected[3] = ' ', expected[4] = (char)('0' + child_index);
    int ok = recv(client, buf, sizeof buf, MSG_DONTWAIT) == 5 && memcmp(buf, expected, 5) == 0;
    if (child_index == 1)
        ok = ok && recv(client, buf, sizeof buf, MSG_DONTWAIT) == 0;
    else
        ok = ok && recv(client, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN;
    ok = ok && same_address(client, 1, &listener_address, listener_length) && unnamed(client);
    send(client, ok ? "child ok" : "child KO", 8, MSG_DONTWAIT);
}

static void child_setup(void)
{
    close(listener);
    close(pending);
    close(seq_listener);
    close(seq_accepted);
    close(seq_client);
    close(accepted[0]);
    close(accepted[1]);
    close(clients[1 - child_index]);
    sc_handle(SIGUSR1, on_usr1, 0);
}

static void expect(int fd, const char *what, const char *expected, size_t length)
{
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n == (ssize_t)length && memcmp(buf, expected, length) == 0, "%s: read %zd bytes instead of \"%s\"", what, n,
             expected);
}

static void check_connection(int index, pid_t child)
{
    char message[16];
    snprintf(message, sizeof message, "c2s %d", index);
    sc_check(same_address(accepted[index], 0, &listener_address, listener_length),
             "accepted socket %d is not named by its listener's address", index);
    struct sockaddr_un address;
    socklen_t size = sizeof address;
    sc_check(getpeername(accepted[index], (struct sockaddr *)&address, &size) == 0 && size == sizeof(sa_family_t),
             "accepted socket %d has a peer name (length %u) though its client is unbound", index, (unsigned)size);
    expect(accepted[index], "what the client sent", message, 5);
    kill(child, SIGUSR1);
    struct pollfd ready = {accepted[index], POLLIN, 0};
    if (sc_check(poll(&ready, 1, 5000) == 1, "client %d never answered", index))
        expect(accepted[index], "the client's answer", "child ok", 8);
    if (index == 1) {
        sc_check(send(accepted[1], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE,
                 "the accepted socket shut down for writing sends again");
    } else {
        sc_check(send(accepted[0], "more", 4, MSG_DONTWAIT) == 4, "accepted socket 0 cannot send again");
    }
}

static void check_pending_and_new(void)
{
    int next = accept(listener, NULL, NULL);
    if (sc_check(next >= 0, "the listener has no pending connection to accept (errno %d)", errno)) {
        sc_check(send(pending, "pending", 7, 0) == 7 && send(next, "hi", 2, 0) == 2,
                 "the pending connection does not send");
        expect(next, "the pending connection", "pending", 7);
        expect(pending, "the pending client", "hi", 2);
        close(next);
    }
    int client = socket(AF_UNIX, SOCK_STREAM, 0);
    if (!sc_check(connect(client, (struct sockaddr *)&listener_address, listener_length) == 0,
                  "cannot connect to the listener (errno %d)", errno))
        return;
    int fresh = accept(listener, NULL, NULL);
    char buf[8];
    sc_check(fresh >= 0 && send(client, "new", 3, 0) == 3 && recv(fresh, buf, sizeof buf, 0) == 3,
             "the listener does not accept a new connection");
    close(fresh);
    close(client);
}

static void check_seqpacket(void)
{
    sc_check(same_address(seq_accepted, 0, &seq_address, seq_length),
             "the accepted seqpacket socket is not named by its listener's abstract address");
    sc_check(same_address(seq_client, 1, &seq_address, seq_length),
             "the seqpacket client's peer is not named by the listener's abstract address");
    sc_check(unnamed(seq_client), "the seqpacket client got a name");
    int passes = -1;
    socklen_t size = sizeof passes;
    sc_check(getsockopt(seq_listener, SOL_SOCKET, SO_PASSCRED, &passes, &size) == 0 && passes == 1,
             "the seqpacket listener lost SO_PASSCRED");
    size = sizeof passes;
    sc_check(getsockopt(seq_accepted, SOL_SOCKET, SO_PASSCRED, &passes, &size) == 0 && passes == 0,
             "the accepted seqpacket socket got SO_PASSCRED, which it had turned off");
    expect(seq_accepted, "the first record", "r1", 2);
    expect(seq_accepted, "the second record", "r22", 3);
    expect(seq_client, "the server's record", "srv", 3);
    sc_check(send(seq_client, "again", 5, 0) == 5, "the seqpacket client cannot send again");
    expect(seq_accepted, "the record sent after the restore", "again", 5);
    int client = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    int fresh = -1;
    sc_check(connect(client, (struct sockaddr *)&seq_address, seq_length) == 0 &&
                 (fresh = accept(seq_listener, NULL, NULL)) >= 0 && send(client, "new", 3, 0) == 3,
             "the seqpacket listener does not accept a new connection (errno %d)", errno);
    if (fresh >= 0)
        expect(fresh, "the new seqpacket connection", "new", 3);
    close(fresh);
    close(client);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unix_accepted");
    sc_install_sigterm(0);
    memset(&listener_address, 0, sizeof listener_address);
    listener_address.sun_family = AF_UNIX;
    sc_path(listener_address.sun_path, sizeof listener_address.sun_path, "listener.sock");
    unlink(listener_address.sun_path);
    listener_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(listener_address.sun_path) + 1);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&listener_address, listener_length) != 0 || listen(listener, 4) != 0)
        sc_die("listen");
    for (int i = 0; i < 2; i++) {
        char message[16];
        clients[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        if (clients[i] < 0 || connect(clients[i], (struct sockaddr *)&listener_address, listener_length) != 0 ||
            (accepted[i] = accept(listener, NULL, NULL)) < 0)
            sc_die("connect and accept %d", i);
        snprintf(message, sizeof message, "c2s %d", i);
        if (send(clients[i], message, 5, 0) != 5)
            sc_die("send from client %d", i);
        snprintf(message, sizeof message, "s2c %d", i);
        if (send(accepted[i], message, 5, 0) != 5)
            sc_die("send to client %d", i);
    }
    if (shutdown(accepted[1], SHUT_WR) != 0)
        sc_die("shutdown");
    pending = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(pending, (struct sockaddr *)&listener_address, listener_length) != 0)
        sc_die("pending connection");

    memset(&seq_address, 0, sizeof seq_address);
    seq_address.sun_family = AF_UNIX;
    int n = snprintf(seq_address.sun_path + 1, sizeof seq_address.sun_path - 1, "amber-accepted-%d", (int)getpid());
    seq_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    seq_listener = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    seq_client = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    int on = 1, off = 0;
    if (bind(seq_listener, (struct sockaddr *)&seq_address, seq_length) != 0 || listen(seq_listener, 2) != 0 ||
        setsockopt(seq_listener, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
        connect(seq_client, (struct sockaddr *)&seq_address, seq_length) != 0 ||
        (seq_accepted = accept(seq_listener, NULL, NULL)) < 0 ||
        setsockopt(seq_accepted, SOL_SOCKET, SO_PASSCRED, &off, sizeof off) != 0)
        sc_die("seqpacket connection");
    if (send(seq_client, "r1", 2, 0) != 2 || send(seq_client, "r22", 3, 0) != 3 || send(seq_accepted, "srv", 3, 0) != 3)
        sc_die("seqpacket records");
    /* The seqpacket listener's fd comes after its connection's: a restore that makes fds in order
     * meets the connection before its listener. */
    int moved = fcntl(seq_listener, F_DUPFD, 100);
    if (moved < 0 || close(seq_listener) != 0)
        sc_die("move the seqpacket listener");
    seq_listener = moved;

    pid_t children[2];
    for (int i = 0; i < 2; i++) {
        child_index = i;
        children[i] = sc_fork_paused_child(child_setup);
    }
    for (int i = 0; i < 2; i++) {
        sc_wait_in_pause(children[i]);
        close(clients[i]);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    for (int i = 0; i < 2; i++)
        check_connection(i, children[i]);
    check_pending_and_new();
    check_seqpacket();
    for (int i = 0; i < 2; i++) {
        int status;
        sc_check(waitpid(children[i], &status, WNOHANG) == 0, "child %d is gone", i);
        kill(children[i], SIGKILL);
        waitpid(children[i], &status, 0);
    }
    sc_finish();
}
