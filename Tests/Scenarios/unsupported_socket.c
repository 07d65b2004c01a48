/*
 * unsupported_socket: holds a connected UNIX socket pair with data queued in it, its reader
 * passing credentials (SO_PASSCRED), which the queued data would come back without: `amber
 * dump` must refuse this process, naming it and the socket, and leave it running untouched. After SIGTERM it checks the queued bytes are
 * still there, in order, and that both ends still work.
 */
#include "scenario.h"
#include <sys/socket.h>

static int sv[2];
static const char msg[] = "queued before the dump attempt";

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_socket");
    sc_install_sigterm(0);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        sc_die("socketpair");
    if (sc_write_all(sv[0], msg, sizeof msg) < 0)
        sc_die("write");
    if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int)) != 0)
        sc_die("SO_PASSCRED");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char buf[128];
    ssize_t n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n == (ssize_t)sizeof msg && memcmp(buf, msg, sizeof msg) == 0,
             "the socket's queued data changed (recv returned %zd)", n);
    n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
    sc_check(n < 0 && errno == EAGAIN, "more data than was sent (recv returned %zd)", n);
    sc_check(send(sv[1], "pong", 4, 0) == 4 && recv(sv[0], buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                 memcmp(buf, "pong", 4) == 0,
             "the socket pair no longer works");
    sc_finish();
}
