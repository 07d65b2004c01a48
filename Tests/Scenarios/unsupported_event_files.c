/*
 * unsupported_event_files: one descriptor amber refuses, by the flag given:
 *   --epoll           an epoll instance watching a pipe by an fd closed since (the pipe lives
 *                     on in a dup)
 *   --epoll-edge      an epoll instance with something to report (a pipe holding a byte) and an
 *                     edge-triggered watch of a ready eventfd
 *   --epoll-fired     an epoll instance with a one-shot watch that fired
 *   --pidfd-outside   a pidfd of this process's parent, outside the tree
 *   --pidfd-reaped    a pidfd of a child that exited and was reaped
 *   --userfaultfd, --io-uring, --perf, --fanotify, --bpf-map, --kvm-vm
 *                     a userfaultfd, an io_uring, a software perf event, a fanotify group, a
 *                     BPF array map, a KVM virtual machine (/dev/kvm closed again)
 *   --inotify         an inotify instance with an event queued and not read
 *   --timerfd-alarm   a timerfd on CLOCK_BOOTTIME_ALARM (armed 1000 s away)
 *   --eventfd-append  an eventfd given O_APPEND by F_SETFL
 *   --eventfd-outside an eventfd a process outside the tree holds too (a grandchild, orphaned
 *                     at once, which exits when this process is gone)
 *   --timerfd-outside a timerfd a process outside the tree holds so too
 *   --inotify-outside an inotify instance a process outside the tree holds so too
 *   --signalfd-outside a signalfd (of SIGUSR2) a process outside the tree holds so too
 * After SIGTERM it checks the object is still there and works.
 */
#include "scenario.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/kvm.h>
#include <linux/perf_event.h>
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_event_files");
    sc_install_sigterm(0);
    int fd = -1;
    if (sc_has_flag("--epoll") || sc_has_flag("--epoll-edge") || sc_has_flag("--epoll-fired")) {
        fd = epoll_create1(EPOLL_CLOEXEC);
        int files[2], ready = eventfd(1, EFD_CLOEXEC);
        if (fd < 0 || ready < 0 || pipe2(files, O_CLOEXEC) != 0)
            sc_die("making the files");
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = 1}, out;
        if (sc_has_flag("--epoll")) {
            if (epoll_ctl(fd, EPOLL_CTL_ADD, files[0], &event) != 0 || dup(files[0]) < 0 || close(files[0]) != 0)
                sc_die("the watch of a closed fd");
        } else if (sc_has_flag("--epoll-edge")) {
            struct epoll_event edge = {.events = EPOLLIN | EPOLLET, .data.u64 = 2};
            if (write(files[1], "x", 1) != 1 || epoll_ctl(fd, EPOLL_CTL_ADD, files[0], &event) != 0 ||
                epoll_ctl(fd, EPOLL_CTL_ADD, ready, &edge) != 0)
                sc_die("the edge-triggered watch");
        } else {
            event.events = EPOLLIN | EPOLLONESHOT;
            if (epoll_ctl(fd, EPOLL_CTL_ADD, ready, &event) != 0 || epoll_wait(fd, &out, 1, 0) != 1)
                sc_die("the one-shot watch");
        }
    } else if (sc_has_flag("--userfaultfd")) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    } else if (sc_has_flag("--io-uring")) {
        struct io_uring_params params = {0};
        fd = (int)syscall(SYS_io_uring_setup, 4, &params);
    } else if (sc_has_flag("--perf")) {
        struct perf_event_attr attr = {.type = PERF_TYPE_SOFTWARE, .size = sizeof attr,
                                       .config = PERF_COUNT_SW_CPU_CLOCK, .disabled = 1};
        fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    } else if (sc_has_flag("--fanotify")) {
        fd = fanotify_init(FAN_CLOEXEC | FAN_CLASS_NOTIF, O_RDONLY);
    } else if (sc_has_flag("--bpf-map")) {
        union bpf_attr attr = {.map_type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 1};
        fd = (int)syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    } else if (sc_has_flag("--kvm-vm")) {
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        fd = kvm >= 0 ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
        if (kvm >= 0)
            close(kvm);
    } else if (sc_has_flag("--pidfd-outside")) {
        fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
    } else if (sc_has_flag("--pidfd-reaped")) {
        pid_t child = fork();
        if (child == 0)
            _exit(0);
        fd = (int)syscall(SYS_pidfd_open, child, 0);
        int status;
        if (waitpid(child, &status, 0) != child)
            sc_die("waitpid");
    } else if (sc_has_flag("--inotify")) {
        fd = inotify_init1(IN_CLOEXEC);
        char path[PATH_MAX];
        sc_path(path, sizeof path, "inotify-queued");
        int file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || file < 0 || inotify_add_watch(fd, path, IN_MODIFY) < 0 || write(file, "x", 1) != 1)
            sc_die("the queued event");
    } else if (sc_has_flag("--timerfd-alarm")) {
        fd = timerfd_create(CLOCK_BOOTTIME_ALARM, 0);
        struct itimerspec time = {{0, 0}, {1000, 0}};
        if (fd >= 0 && timerfd_settime(fd, 0, &time, NULL) != 0)
            sc_die("timerfd_settime");
    } else if (sc_has_flag("--eventfd-append")) {
        fd = eventfd(7, 0);
        if (fd >= 0 && fcntl(fd, F_SETFL, O_APPEND) != 0)
            sc_die("F_SETFL O_APPEND");
    } else if (sc_has_flag("--eventfd-outside") || sc_has_flag("--timerfd-outside") || sc_has_flag("--inotify-outside")
               || sc_has_flag("--signalfd-outside")) {
        sigset_t usr2;
        sigemptyset(&usr2);
        sigaddset(&usr2, SIGUSR2);
        fd = sc_has_flag("--eventfd-outside")    ? eventfd(0, EFD_CLOEXEC)
             : sc_has_flag("--inotify-outside")  ? inotify_init1(IN_CLOEXEC)
             : sc_has_flag("--signalfd-outside") ? signalfd(-1, &usr2, SFD_CLOEXEC)
                                                 : timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
        if (fd < 0)
            sc_die("making the object");
        pid_t parent = getpid();
        if (sc_fork_outside() == 0) {
            while (kill(parent, 0) == 0)
                sleep(1);
            _exit(0);
        }
    }
    if (fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        sc_die("making the object");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    if (sc_has_flag("--timerfd-alarm")) {
        struct itimerspec time;
        sc_check(timerfd_gettime(fd, &time) == 0 && time.it_value.tv_sec > 900, "the alarm timerfd is no longer armed");
    } else if (sc_has_flag("--eventfd-outside")) {
        uint64_t value = 5;
        sc_check(write(fd, &value, sizeof value) == sizeof value, "the write to the shared eventfd failed");
        value = 0;
        sc_check(read(fd, &value, sizeof value) == sizeof value && value == 5, "the shared eventfd lost its count");
    } else if (sc_has_flag("--eventfd-append")) {
        uint64_t value = 0;
        sc_check(read(fd, &value, sizeof value) == sizeof value && value == 7 && (fcntl(fd, F_GETFL) & O_APPEND), "the eventfd changed");
    } else {
        sc_check(fcntl(fd, F_GETFD) == FD_CLOEXEC, "the descriptor is gone");
    }
    sc_finish();
}
