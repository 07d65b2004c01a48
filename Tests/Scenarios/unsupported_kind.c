/*
 * unsupported_kind: holds one object Amber cannot restore yet, chosen by a flag, so that a
 * refused dump can be checked to name what the object is:
 *   --hugetlb     a MAP_HUGETLB area (needs a free huge page)
 *   --aio         an AIO ring (io_setup)
 *   --shmem       an fd on shared anonymous memory, opened through /proc/self/map_files
 *   --pty         a pty slave whose master is closed (its /dev/pts entry is gone)
 *   --unix, --inet, --inet6, --netlink, --packet   a socket of that family (raw ICMP for inet;
 *                 NETLINK_GENERIC for netlink; unix: with a descriptor in flight in its queue)
 *   --mqueue      a POSIX message queue (its fd shows the queue's name, no path)
 *   --async       a named pipe with signal-driven I/O (O_ASYNC, F_SETOWN)
 *   --dnotify     a directory watched by dnotify (fcntl F_NOTIFY), signalling with SIGRTMIN+1
 *   --opath-socket  an O_PATH descriptor of a unix socket's file
 *   --proc-thread   /proc/PID/task/TID/comm of its second thread, open
 *   --proc-fdinfo   /proc/self/fdinfo/N of a descriptor above it, open
 *   --immutable   a file open for writing, made immutable since (FS_IMMUTABLE_FL); cleared after
 *   --psi         a PSI trigger written to /proc/pressure/memory (poll then reports memory stalls)
 * After SIGTERM it checks the object is still there and works.
 */
#include "scenario.h"
#include <mqueue.h>
#include <linux/aio_abi.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <pty.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

static char *area;
static size_t area_size;
static aio_context_t aio;
static int fd = -1;
static char queue_name[64];
static char watched[PATH_MAX];
static volatile sig_atomic_t notified;
static pid_t thread_id;
static char immutable_path[PATH_MAX];

static void *wait_forever(void *unused)
{
    (void)unused;
    __atomic_store_n(&thread_id, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

static void on_notification(int signal)
{
    (void)signal;
    notified = 1;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_kind");
    sc_install_sigterm(0);
    if (sc_has_flag("--hugetlb")) {
        area_size = 2 << 20;
        area = mmap(0, area_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (area == MAP_FAILED)
            sc_die("mmap MAP_HUGETLB");
        area[0] = 'h';
    } else if (sc_has_flag("--aio")) {
        if (syscall(SYS_io_setup, 8, &aio) < 0)
            sc_die("io_setup");
    } else if (sc_has_flag("--shmem")) {
        area_size = 4096;
        area = mmap(0, area_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (area == MAP_FAILED)
            sc_die("mmap");
        area[0] = 's';
        char path[128];
        sc_fmt(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)area, (unsigned long)area + area_size);
        if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
            sc_die("open %s", path);
    } else if (sc_has_flag("--pty")) {
        int master;
        if (openpty(&master, &fd, 0, 0, 0) < 0)
            sc_die("openpty");
        close(master);
    } else if (sc_has_flag("--unix")) {
        /* A datagram pair whose queue holds a descriptor in flight (SCM_RIGHTS). */
        int pair[2], passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0 || passed < 0)
            sc_die("socketpair");
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
        if (sendmsg(pair[1], &message, 0) != 2)
            sc_die("sendmsg");
        close(passed);
        fd = pair[0];
    } else if (sc_has_flag("--inet")) {
        fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    } else if (sc_has_flag("--inet6")) {
        fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    } else if (sc_has_flag("--netlink")) {
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    } else if (sc_has_flag("--packet")) {
        fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    } else if (sc_has_flag("--mqueue")) {
        snprintf(queue_name, sizeof queue_name, "/amber-scenario-%d", (int)getpid());
        fd = mq_open(queue_name, O_CREAT | O_RDWR | O_CLOEXEC, 0600, NULL);
        if (fd < 0)
            sc_die("mq_open");
    } else if (sc_has_flag("--async")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "fifo");
        if (mkfifo(path, 0600) != 0 || (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
            sc_die("fifo");
        if (fcntl(fd, F_SETOWN, getpid()) != 0 || fcntl(fd, F_SETFL, O_ASYNC) != 0)
            sc_die("O_ASYNC");
    } else if (sc_has_flag("--dnotify")) {
        sc_path(watched, sizeof watched, "watched");
        if (mkdir(watched, 0700) != 0 || (fd = open(watched, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            sc_die("directory");
        signal(SIGRTMIN + 1, on_notification);
        if (fcntl(fd, F_SETSIG, SIGRTMIN + 1) != 0 || fcntl(fd, F_NOTIFY, DN_CREATE | DN_MULTISHOT) != 0)
            sc_die("F_NOTIFY");
    } else if (sc_has_flag("--opath-socket")) {
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        sc_path(address.sun_path, sizeof address.sun_path, "sock");
        int bound = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (bound < 0 || bind(bound, (struct sockaddr *)&address, sizeof address) != 0 || close(bound) != 0 ||
            (fd = open(address.sun_path, O_PATH | O_CLOEXEC)) < 0)
            sc_die("O_PATH of a socket file");
    } else if (sc_has_flag("--proc-thread")) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, wait_forever, NULL) != 0)
            sc_die("pthread_create");
        while (!__atomic_load_n(&thread_id, __ATOMIC_ACQUIRE))
            usleep(1000);
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)thread_id);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            sc_die("open %s", path);
    } else if (sc_has_flag("--proc-fdinfo")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", 100);
        if (dup2(0, 100) != 100 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            sc_die("open %s", path);
    } else if (sc_has_flag("--psi")) {
        const char trigger[] = "some 150000 2000000";
        if ((fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0 ||
            write(fd, trigger, sizeof trigger) != (ssize_t)sizeof trigger)
            sc_die("a PSI trigger");
    } else if (sc_has_flag("--immutable")) {
        sc_path(immutable_path, sizeof immutable_path, "immutable");
        int flags = FS_IMMUTABLE_FL;
        if ((fd = open(immutable_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 || ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0)
            sc_die("chattr +i");
    } else {
        sc_die("no object chosen");
    }
    if (fd < 0 && !area && !aio)
        sc_die("socket");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--hugetlb"))
        sc_check(area[0] == 'h', "the hugetlb area changed");
    if (sc_has_flag("--immutable")) {
        int flags = 0;
        sc_check((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, "the immutable file's descriptor is not open to write");
        sc_check(ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0, "chattr -i: %s", strerror(errno));
    }
    if (sc_has_flag("--psi")) {
        const char again[] = "some 150000 2000000";
        sc_check(write(fd, again, sizeof again) < 0 && errno == EBUSY, "the PSI trigger is gone: a second one was taken");
    }
    if (sc_has_flag("--opath-socket") || sc_has_flag("--proc-thread") || sc_has_flag("--proc-fdinfo"))
        sc_check(fcntl(fd, F_GETFD) >= 0, "the descriptor is gone");
    if (sc_has_flag("--aio"))
        sc_check(syscall(SYS_io_destroy, aio) == 0, "io_destroy: %s", strerror(errno));
    if (sc_has_flag("--shmem")) {
        char byte = 0;
        sc_check(pread(fd, &byte, 1, 0) == 1 && byte == 's', "the shmem fd does not read the shared area");
    }
    if (sc_has_flag("--mqueue")) {
        struct mq_attr attributes;
        sc_check(mq_getattr(fd, &attributes) == 0, "mq_getattr: %s", strerror(errno));
        mq_unlink(queue_name);
    }
    if (sc_has_flag("--async"))
        sc_check(fcntl(fd, F_GETFL) & O_ASYNC && fcntl(fd, F_GETOWN) == getpid(), "signal-driven I/O is off");
    if (sc_has_flag("--dnotify")) {
        int created = openat(fd, "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        sc_check(created >= 0, "creating %s/new: %s", watched, strerror(errno));
        for (int i = 0; i < 200 && !notified; i++)
            usleep(5000);
        sc_check(notified, "no dnotify signal for a file created in the watched directory");
    }
    if (fd >= 0 && !sc_has_flag("--pty") && !sc_has_flag("--shmem") && !sc_has_flag("--mqueue")
        && !sc_has_flag("--async") && !sc_has_flag("--dnotify") && !sc_has_flag("--opath-socket") &&
        !sc_has_flag("--proc-thread") && !sc_has_flag("--proc-fdinfo") && !sc_has_flag("--immutable") &&
        !sc_has_flag("--psi")) {
        int family = 0;
        socklen_t size = sizeof family;
        sc_check(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &size) == 0, "the socket is gone");
    }
    sc_finish();
}
