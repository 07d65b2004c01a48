/*
 * unix_peer_credentials: the credentials the kernel records for a unix socket's peer side
 * (SO_PEERCRED, SO_PEERGROUPS), which a restore must not turn into the restorer's (root's).
 * This process (root) listens on an abstract name; a child that became uid and gid 1000 with
 * group 1000 alone connects twice (one connection accepted, one left waiting) and makes a
 * socket pair, at fds 100 to 103. After SIGTERM the accepted socket, and the one accepted now,
 * show the child's credentials; the child's client shows this process's (root's); the child's
 * pair shows the child's (read through pidfd_getfd). Process IDs are not checked: a restored
 * peer shows the restorer's.
 */
#include "scenario.h"
#include <grp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

enum { USER = 1000, CLIENT = 100, WAITING = 101, PAIR = 102 };

static struct sockaddr_un address = {.sun_family = AF_UNIX};
static socklen_t address_size;

static void place(int fd, int at)
{
    if (fd < 0 || dup2(fd, at) != at || close(fd) != 0)
        _exit(3);
}

static void become_user_and_connect(void)
{
    gid_t group = USER;
    if (setgroups(1, &group) != 0 || setresgid(USER, USER, USER) != 0 || setresuid(USER, USER, USER) != 0)
        _exit(2);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    place(socket(AF_UNIX, SOCK_STREAM, 0), CLIENT);
    place(socket(AF_UNIX, SOCK_STREAM, 0), WAITING);
    int pair[2];
    if (connect(CLIENT, (struct sockaddr *)&address, address_size) != 0 ||
        connect(WAITING, (struct sockaddr *)&address, address_size) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
        _exit(4);
    place(pair[0], PAIR);
    place(pair[1], PAIR + 1);
}

static void check_peer(int fd, uid_t uid, const char *what)
{
    struct ucred peer = {0};
    gid_t groups[8];
    socklen_t size = sizeof peer, groups_size = sizeof groups;
    sc_check(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0 && peer.uid == uid && peer.gid == uid,
             "%s: SO_PEERCRED uid %u gid %u, not %u", what, peer.uid, peer.gid, uid);
    if (uid == USER)
        sc_check(getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &groups_size) == 0 &&
                     groups_size == sizeof(gid_t) && groups[0] == USER,
                 "%s: SO_PEERGROUPS is not {%d}", what, USER);
}

static void check_child_peer(int pidfd, int fd, uid_t uid, const char *what)
{
    int copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (!sc_check(copy >= 0, "%s: pidfd_getfd: %s", what, strerror(errno)))
        return;
    check_peer(copy, uid, what);
    close(copy);
}

static void check_all(pid_t child, int accepted)
{
    int pidfd = syscall(SYS_pidfd_open, child, 0);
    check_peer(accepted, USER, "the accepted connection");
    check_child_peer(pidfd, CLIENT, 0, "the child's client");
    check_child_peer(pidfd, PAIR, USER, "the child's pair");
    check_child_peer(pidfd, PAIR + 1, USER, "the child's pair's other socket");
    close(pidfd);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unix_peer_credentials");
    sc_install_sigterm(0);
    int name = snprintf(address.sun_path + 1, sizeof address.sun_path - 1, "amber-peer-credentials-%d", getpid());
    address_size = offsetof(struct sockaddr_un, sun_path) + 1 + name;
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, address_size) != 0 || listen(listener, 4) != 0)
        sc_die("listen");
    pid_t child = sc_fork_paused_child(become_user_and_connect);
    sc_wait_in_pause(child);
    int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (accepted < 0)
        sc_die("accept");
    check_all(child, accepted);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_all(child, accepted);
    int later = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (sc_check(later >= 0, "the waiting connection is gone: %s", strerror(errno)))
        check_peer(later, USER, "the connection accepted after the restore");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sc_finish();
}
