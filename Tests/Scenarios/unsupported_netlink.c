/*
 * unsupported_netlink: holds a netlink socket amber does not restore, chosen by a flag:
 *   --queued     a NETLINK_ROUTE socket with the kernel's answer to a link dump queued, not read
 *   --connected  a NETLINK_ROUTE socket connected to another socket's port id
 *   --uevent     a NETLINK_KOBJECT_UEVENT socket (udev's), bound to its groups
 * `amber dump` must refuse it, naming the process, the socket and why, and leave it as it was:
 * after SIGTERM the queued answer is read whole up to NLMSG_DONE, the connected socket still
 * reaches its peer, the uevent socket still has its group.
 */
#include "scenario.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>

static char buffer[65536];

static int readable(int fd)
{
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, 5000) == 1 && (entry.revents & POLLIN);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_netlink");
    sc_install_sigterm(0);
    int fd = -1, peer = -1;
    struct sockaddr_nl address = {.nl_family = AF_NETLINK};
    socklen_t size = sizeof address;
    if (sc_has_flag("--queued")) {
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        struct {
            struct nlmsghdr header;
            struct ifinfomsg link;
        } request = {{NLMSG_LENGTH(sizeof(struct ifinfomsg)), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 9001, 0},
                     {.ifi_family = AF_UNSPEC}};
        if (fd < 0 || sendto(fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&address, size) < 0 ||
            !readable(fd))
            sc_die("RTM_GETLINK");
    } else if (sc_has_flag("--connected")) {
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        peer = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0 || peer < 0 || bind(peer, (struct sockaddr *)&address, size) != 0 ||
            getsockname(peer, (struct sockaddr *)&address, &size) != 0 ||
            connect(fd, (struct sockaddr *)&address, size) != 0)
            sc_die("connect");
    } else if (sc_has_flag("--uevent")) {
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
        address.nl_groups = 1;
        if (fd < 0 || bind(fd, (struct sockaddr *)&address, size) != 0)
            sc_die("NETLINK_KOBJECT_UEVENT");
    } else {
        sc_die("no socket chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--queued")) {
        int done = 0;
        while (!done && readable(fd)) {
            ssize_t count = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (count <= 0)
                break;
            for (struct nlmsghdr *message = (struct nlmsghdr *)buffer; NLMSG_OK(message, (size_t)count);
                 message = NLMSG_NEXT(message, count))
                if (message->nlmsg_seq == 9001 && message->nlmsg_type == NLMSG_DONE)
                    done = 1;
        }
        sc_check(done, "the link dump's answer is not there up to NLMSG_DONE");
    } else if (sc_has_flag("--connected")) {
        struct nlmsghdr message = {.nlmsg_len = NLMSG_LENGTH(0), .nlmsg_type = 0x100, .nlmsg_seq = 9002};
        sc_check(send(fd, &message, message.nlmsg_len, 0) == (ssize_t)message.nlmsg_len && readable(peer) &&
                     recv(peer, buffer, sizeof buffer, 0) == (ssize_t)message.nlmsg_len,
                 "the connected socket no longer reaches its peer");
    } else {
        struct sockaddr_nl now;
        size = sizeof now;
        sc_check(getsockname(fd, (struct sockaddr *)&now, &size) == 0 && now.nl_groups == 1,
                 "the uevent socket left its group");
    }
    sc_finish();
}
