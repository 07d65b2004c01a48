/*
 * unix_bound: bound unix sockets and listeners.
 *   - a datagram socket bound to a path, its socket file given mode 0640;
 *   - a datagram socket bound to an abstract name;
 *   - a stream listener on a path with a backlog of 7 and two connections not accepted yet,
 *     from sockets this process holds (the first O_NONBLOCK);
 *   - a seqpacket listener on an abstract name, nothing pending;
 *   - a datagram socket bound through a directory that is a symbolic link (as /var/run is one
 *     to /run), its name the path through the link.
 * After SIGTERM each has its address and its socket file (type, mode); a new socket reaches
 * each bound datagram socket by its address; the listener accepts the two connections in the
 * order they were made, each carrying data both ways, then a new one; the seqpacket listener
 * accepts a new connection.
 */
#include "scenario.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static int dgram_path, dgram_abstract, listener, pending[2], seq_listener, dgram_linked;
static struct sockaddr_un dgram_path_address, dgram_abstract_address, listener_address, seq_address,
    linked_address;
static socklen_t dgram_abstract_length, seq_length;

static socklen_t abstract_address(struct sockaddr_un *address, const char *what)
{
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    int n = snprintf(address->sun_path + 1, sizeof address->sun_path - 1, "amber-%s-%d", what, (int)getpid());
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void path_address(struct sockaddr_un *address, const char *name)
{
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    sc_path(address->sun_path, sizeof address->sun_path, name);
    unlink(address->sun_path);
}

static void check_name(int fd, const struct sockaddr_un *expected, socklen_t length, const char *name)
{
    struct sockaddr_un address;
    socklen_t size = sizeof address;
    sc_check(getsockname(fd, (struct sockaddr *)&address, &size) == 0 && size == length &&
                 memcmp(&address, expected, length) == 0,
             "%s has another address (length %u, expected %u)", name, (unsigned)size, (unsigned)length);
}

static void check_reaches(const struct sockaddr_un *address, socklen_t length, int server, const char *name)
{
    int client = socket(AF_UNIX, SOCK_DGRAM, 0);
    char buf[16];
    sc_check(sendto(client, "hi", 2, 0, (const struct sockaddr *)address, length) == 2 &&
                 recv(server, buf, sizeof buf, MSG_DONTWAIT) == 2 && memcmp(buf, "hi", 2) == 0,
             "%s no longer receives what is sent to its address (errno %d)", name, errno);
    close(client);
}

static void check_accepts_pending(void)
{
    for (int i = 0; i < 2; i++) {
        char message[8];
        snprintf(message, sizeof message, "conn %d", i);
        sc_check(send(pending[i], message, 6, MSG_DONTWAIT) == 6, "pending connection %d cannot send", i);
    }
    for (int i = 0; i < 2; i++) {
        char expected[8], buf[16];
        snprintf(expected, sizeof expected, "conn %d", i);
        int accepted = accept(listener, NULL, NULL);
        if (!sc_check(accepted >= 0, "the listener has no connection %d to accept (errno %d)", i, errno))
            return;
        ssize_t n = recv(accepted, buf, sizeof buf, MSG_DONTWAIT);
        sc_check(n == 6 && memcmp(buf, expected, 6) == 0, "connection %d accepted in the wrong order or without its data",
                 i);
        sc_check(send(accepted, "back", 4, 0) == 4 && recv(pending[i], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                     memcmp(buf, "back", 4) == 0,
                 "the accepted connection %d does not reach its client", i);
        close(accepted);
    }
    sc_check((fcntl(pending[0], F_GETFL) & O_NONBLOCK) != 0, "the first pending connection lost O_NONBLOCK");
    sc_check((fcntl(pending[1], F_GETFL) & O_NONBLOCK) == 0, "the second pending connection got O_NONBLOCK");
}

static void check_new_connection(const struct sockaddr_un *address, socklen_t length, int server, int type,
                                 const char *name)
{
    int client = socket(AF_UNIX, type, 0);
    if (!sc_check(connect(client, (const struct sockaddr *)address, length) == 0, "cannot connect to %s (errno %d)",
                  name, errno))
        return;
    int accepted = accept(server, NULL, NULL);
    char buf[8];
    sc_check(accepted >= 0 && send(client, "new", 3, 0) == 3 && recv(accepted, buf, sizeof buf, 0) == 3,
             "%s does not accept a new connection", name);
    close(accepted);
    close(client);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unix_bound");
    sc_install_sigterm(0);
    dgram_path = socket(AF_UNIX, SOCK_DGRAM, 0);
    path_address(&dgram_path_address, "dgram.sock");
    if (bind(dgram_path, (struct sockaddr *)&dgram_path_address, sizeof dgram_path_address) != 0 ||
        chmod(dgram_path_address.sun_path, 0640) != 0)
        sc_die("bind to a path");
    dgram_abstract = socket(AF_UNIX, SOCK_DGRAM, 0);
    dgram_abstract_length = abstract_address(&dgram_abstract_address, "dgram");
    if (bind(dgram_abstract, (struct sockaddr *)&dgram_abstract_address, dgram_abstract_length) != 0)
        sc_die("bind to an abstract name");
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    path_address(&listener_address, "listener.sock");
    if (bind(listener, (struct sockaddr *)&listener_address, sizeof listener_address) != 0 || listen(listener, 7) != 0)
        sc_die("listen");
    for (int i = 0; i < 2; i++) {
        pending[i] = socket(AF_UNIX, SOCK_STREAM | (i == 0 ? SOCK_NONBLOCK : 0), 0);
        if (connect(pending[i], (struct sockaddr *)&listener_address, sizeof listener_address) != 0)
            sc_die("connect");
    }
    seq_listener = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    seq_length = abstract_address(&seq_address, "seqpacket");
    if (bind(seq_listener, (struct sockaddr *)&seq_address, seq_length) != 0 || listen(seq_listener, 3) != 0)
        sc_die("listen seqpacket");
    char real[108], link[108];
    sc_path(real, sizeof real, "real");
    sc_path(link, sizeof link, "linked");
    dgram_linked = socket(AF_UNIX, SOCK_DGRAM, 0);
    path_address(&linked_address, "linked/through.sock");
    if ((mkdir(real, 0755) != 0 && errno != EEXIST) || (symlink(real, link) != 0 && errno != EEXIST) ||
        bind(dgram_linked, (struct sockaddr *)&linked_address, sizeof linked_address) != 0)
        sc_die("bind through a linked directory");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    socklen_t linked_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(linked_address.sun_path) + 1);
    check_name(dgram_linked, &linked_address, linked_length, "the datagram socket bound through a linked directory");
    char in_real[PATH_MAX];
    sc_path(in_real, sizeof in_real, "real/through.sock");
    struct stat linked_file;
    sc_check(lstat(in_real, &linked_file) == 0 && S_ISSOCK(linked_file.st_mode),
             "the socket file bound through the link is not in the directory the link leads to");
    check_reaches(&linked_address, sizeof linked_address, dgram_linked,
                  "the datagram socket bound through a linked directory");

    socklen_t path_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(dgram_path_address.sun_path) + 1);
    check_name(dgram_path, &dgram_path_address, path_length, "the datagram socket bound to a path");
    check_name(dgram_abstract, &dgram_abstract_address, dgram_abstract_length,
               "the datagram socket bound to an abstract name");
    check_name(seq_listener, &seq_address, seq_length, "the seqpacket listener");
    struct stat file;
    sc_check(lstat(dgram_path_address.sun_path, &file) == 0 && S_ISSOCK(file.st_mode) && (file.st_mode & 07777) == 0640,
             "the socket file is not a socket of mode 0640 (mode %o)", (unsigned)file.st_mode);
    check_reaches(&dgram_path_address, sizeof dgram_path_address, dgram_path, "the datagram socket bound to a path");
    check_reaches(&dgram_abstract_address, dgram_abstract_length, dgram_abstract,
                  "the datagram socket bound to an abstract name");
    check_accepts_pending();
    check_new_connection(&listener_address, sizeof listener_address, listener, SOCK_STREAM, "the stream listener");
    check_new_connection(&seq_address, seq_length, seq_listener, SOCK_SEQPACKET, "the seqpacket listener");
    sc_finish();
}
