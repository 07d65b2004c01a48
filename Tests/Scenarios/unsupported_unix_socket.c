/*
 * unsupported_unix_socket: a unix socket amber refuses, by flag:
 *   --peer-outside    the other socket of a stream pair is held by a process outside the tree
 *                     (a grandchild, orphaned at once, which reads until end of file and exits)
 *   --peer-in-flight  the other socket of a stream pair is held by no process: it is in flight
 *                     in an SCM_RIGHTS message queued on a second pair
 * After SIGTERM it checks the pair still works as it did.
 */
#include "scenario.h"
#include <sys/socket.h>

static int pair[2] = {-1, -1}, carrier[2] = {-1, -1};

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
    } else if (sc_has_flag("--peer-in-flight")) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, carrier) < 0)
            sc_die("socketpair");
        send_descriptor(carrier[0], pair[1]);
        close(pair[1]);
        pair[1] = -1;
    } else {
        sc_die("no socket chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--peer-outside")) {
        sc_check(send(pair[0], "still", 5, MSG_DONTWAIT) == 5, "the pair no longer sends to the outside reader");
    } else {
        pair[1] = receive_descriptor(carrier[1]);
        char buf[8];
        sc_check(pair[1] >= 0, "the socket in flight is gone");
        sc_check(send(pair[0], "ping", 4, MSG_DONTWAIT) == 4 && recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                     memcmp(buf, "ping", 4) == 0,
                 "the pair no longer works once its socket in flight is received");
    }
    sc_finish();
}
