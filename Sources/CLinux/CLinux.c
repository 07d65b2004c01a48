#define _GNU_SOURCE
#include "CLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>
#include <dlfcn.h>
#include <linux/netlink.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static long result(long r) { return r < 0 ? -errno : r; }

long amber_ptrace(long request, pid_t pid, uint64_t addr, uint64_t data) {
    errno = 0;
    long r = ptrace((enum __ptrace_request)request, pid, (void *)addr, (void *)data);
    // PEEK requests return data, so errno (not the value) tells failure.
    if (r == -1 && errno != 0) return -errno;
    return r;
}

long amber_ptrace_getregset(pid_t pid, long type, void *buffer, size_t *length) {
    struct iovec iov = { buffer, *length };
    long r = ptrace(PTRACE_GETREGSET, pid, (void *)type, &iov);
    if (r < 0) return -errno;
    *length = iov.iov_len;
    return 0;
}

long amber_ptrace_setregset(pid_t pid, long type, const void *buffer, size_t length) {
    struct iovec iov = { (void *)buffer, length };
    return result(ptrace(PTRACE_SETREGSET, pid, (void *)type, &iov));
}

long amber_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long local_count,
                            const struct iovec *remote, unsigned long remote_count) {
    return result(syscall(SYS_process_vm_readv, pid, local, local_count, remote, remote_count, 0UL));
}

long amber_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long local_count,
                             const struct iovec *remote, unsigned long remote_count) {
    return result(syscall(SYS_process_vm_writev, pid, local, local_count, remote, remote_count, 0UL));
}

long amber_pidfd_open(pid_t pid) { return result(syscall(SYS_pidfd_open, (long)pid, 0L)); }
long amber_pidfd_getfd(int pidfd, int fd) { return result(syscall(SYS_pidfd_getfd, (long)pidfd, (long)fd, 0L)); }
long amber_pidfd_send_signal(int pidfd, int signal) {
    return result(syscall(SYS_pidfd_send_signal, (long)pidfd, (long)signal, NULL, 0L));
}
long amber_tgkill(pid_t tgid, pid_t tid, int signal) { return result(syscall(SYS_tgkill, tgid, tid, signal)); }

long amber_flistxattr_length(int fd) { return result(syscall(SYS_flistxattr, fd, NULL, 0)); }

long amber_prlimit_set(pid_t pid, int resource, uint64_t soft, uint64_t hard) {
    uint64_t limit[2] = {soft, hard};
    return result(syscall(SYS_prlimit64, pid, resource, limit, NULL));
}

long amber_get_robust_list(pid_t pid, uint64_t *head, uint64_t *length) {
    void *h = NULL;
    size_t l = 0;
    long r = syscall(SYS_get_robust_list, pid, &h, &l);
    if (r < 0) return -errno;
    *head = (uint64_t)h;
    *length = l;
    return 0;
}

long amber_pagemap_scan(int pagemap_fd, struct amber_pm_scan_arg *arg) {
    return result(ioctl(pagemap_fd, AMBER_PAGEMAP_SCAN, arg));
}

// The libnftables calls amber uses (libnftables.h, stable since 0.9).
static struct {
    void *(*ctx_new)(uint32_t flags);
    void (*ctx_free)(void *ctx);
    int (*buffer_output)(void *ctx);
    int (*buffer_error)(void *ctx);
    const char *(*get_error_buffer)(void *ctx);
    int (*run_cmd_from_buffer)(void *ctx, const char *buf);
} nftables;
static pthread_once_t nftables_once = PTHREAD_ONCE_INIT;

static void load_nftables(void) {
    void *library = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) return;
    nftables.ctx_free = dlsym(library, "nft_ctx_free");
    nftables.buffer_output = dlsym(library, "nft_ctx_buffer_output");
    nftables.buffer_error = dlsym(library, "nft_ctx_buffer_error");
    nftables.get_error_buffer = dlsym(library, "nft_ctx_get_error_buffer");
    nftables.run_cmd_from_buffer = dlsym(library, "nft_run_cmd_from_buffer");
    if (nftables.ctx_free && nftables.buffer_output && nftables.buffer_error && nftables.get_error_buffer &&
        nftables.run_cmd_from_buffer)
        nftables.ctx_new = dlsym(library, "nft_ctx_new");
}

// libnftables opens its netlink socket without SOCK_CLOEXEC: kept open, it would pass to every
// program amber runs. Amber has no other nf_tables socket.
static void nft_sockets_close_on_exec(void) {
    DIR *descriptors = opendir("/proc/self/fd");
    if (descriptors == NULL) return;
    struct dirent *entry;
    while ((entry = readdir(descriptors)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        int fd = atoi(entry->d_name), domain = 0, protocol = 0;
        socklen_t length = sizeof(domain);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_NETLINK) continue;
        length = sizeof(protocol);
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0 || protocol != NETLINK_NETFILTER)
            continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(descriptors);
}

// The context kept, and the network namespace (device, inode) its socket is in.
static pthread_mutex_t nftables_lock = PTHREAD_MUTEX_INITIALIZER;
static void *nftables_kept;
static struct stat nftables_namespace;

long amber_nft_run(const char *commands, char *error, size_t error_size) {
    pthread_once(&nftables_once, load_nftables);
    if (nftables.ctx_new == NULL) return -ENOENT;
    // When the thread's namespace cannot be told, the context is not kept.
    struct stat namespace = {0};
    int known = stat("/proc/thread-self/ns/net", &namespace) == 0;
    pthread_mutex_lock(&nftables_lock);
    if (nftables_kept != NULL && (!known || nftables_namespace.st_dev != namespace.st_dev ||
                                  nftables_namespace.st_ino != namespace.st_ino)) {
        nftables.ctx_free(nftables_kept);
        nftables_kept = NULL;
    }
    int made = nftables_kept == NULL;
    if (made) {
        nftables_kept = nftables.ctx_new(0);
        if (nftables_kept == NULL) {
            pthread_mutex_unlock(&nftables_lock);
            return -ENOMEM;
        }
        nftables.buffer_output(nftables_kept);
        nftables.buffer_error(nftables_kept);
        nftables_namespace = namespace;
    }
    long status = nftables.run_cmd_from_buffer(nftables_kept, commands) == 0 ? 0 : 1;
    if (made && status == 0 && known) nft_sockets_close_on_exec();
    if (status != 0 || !known) {
        // A new context for the next run: this one's error buffer holds this run's errors.
        if (status != 0 && error_size > 0) {
            const char *text = nftables.get_error_buffer(nftables_kept);
            size_t length = text ? strcspn(text, "\n") : 0;
            if (length >= error_size) length = error_size - 1;
            if (length > 0) memcpy(error, text, length);
            error[length] = 0;
        }
        nftables.ctx_free(nftables_kept);
        nftables_kept = NULL;
    }
    pthread_mutex_unlock(&nftables_lock);
    return status;
}

long amber_userfaultfd(uint64_t flags) {
    return result(syscall(323, flags));
}

long amber_uffdio_api(int fd, struct amber_uffdio_api *api) {
    return result(ioctl(fd, _IOWR(0xAA, 0x3F, struct amber_uffdio_api), api));
}

long amber_uffdio_register(int fd, struct amber_uffdio_register *reg) {
    return result(ioctl(fd, _IOWR(0xAA, 0x00, struct amber_uffdio_register), reg));
}

long amber_uffdio_unregister(int fd, struct amber_uffdio_range *range) {
    return result(ioctl(fd, _IOR(0xAA, 0x01, struct amber_uffdio_range), range));
}

long amber_uffdio_wake(int fd, struct amber_uffdio_range *range) {
    return result(ioctl(fd, _IOR(0xAA, 0x02, struct amber_uffdio_range), range));
}

long amber_uffdio_copy(int fd, struct amber_uffdio_copy *copy) {
    return result(ioctl(fd, _IOWR(0xAA, 0x03, struct amber_uffdio_copy), copy));
}

long amber_uffdio_zeropage(int fd, struct amber_uffdio_zeropage *zeropage) {
    return result(ioctl(fd, _IOWR(0xAA, 0x04, struct amber_uffdio_zeropage), zeropage));
}

long amber_uffdio_writeprotect(int fd, struct amber_uffdio_writeprotect *wp) {
    return result(ioctl(fd, _IOWR(0xAA, 0x06, struct amber_uffdio_writeprotect), wp));
}

long amber_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2) {
    return result(syscall(SYS_kcmp, (long)pid1, (long)pid2, 0L /* KCMP_FILE */, (long)fd1, (long)fd2));
}

long amber_memfd_create(const char *name, unsigned int flags) { return result(syscall(SYS_memfd_create, name, flags)); }
long amber_statfs_type(const char *path, uint64_t *type) {
    struct statfs status;
    if (statfs(path, &status) != 0) return -errno;
    *type = (uint64_t)status.f_type;
    return 0;
}

long amber_kcmp(pid_t pid1, pid_t pid2, int type) {
    return result(syscall(SYS_kcmp, (long)pid1, (long)pid2, (long)type, 0L, 0L));
}

long amber_sched_getaffinity(pid_t pid, size_t size, uint64_t *mask) {
    return result(syscall(SYS_sched_getaffinity, (long)pid, (long)size, mask));
}

long amber_sched_setaffinity(pid_t pid, size_t size, const uint64_t *mask) {
    return result(syscall(SYS_sched_setaffinity, (long)pid, (long)size, mask));
}

long amber_sched_getattr(pid_t tid, void *attr, unsigned size) {
    return result(syscall(SYS_sched_getattr, (long)tid, attr, (long)size, 0L));
}

long amber_keyctl(int operation, uint64_t arg2, uint64_t arg3, uint64_t arg4, uint64_t arg5) {
    return result(syscall(SYS_keyctl, (long)operation, arg2, arg3, arg4, arg5));
}

long amber_ioprio_get(pid_t tid) {
    return result(syscall(SYS_ioprio_get, 1L /* IOPRIO_WHO_PROCESS */, (long)tid));
}

long amber_ioprio_set(pid_t tid, int ioprio) {
    return result(syscall(SYS_ioprio_set, 1L /* IOPRIO_WHO_PROCESS */, (long)tid, (long)ioprio));
}

const char *amber_secure_getenv(const char *name) {
    return secure_getenv(name);
}

long amber_getcpu(void) {
    unsigned cpu = 0;
    long r = syscall(SYS_getcpu, &cpu, NULL, NULL);
    return r < 0 ? -errno : (long)cpu;
}

long amber_prctl(int option, uint64_t arg2, uint64_t arg3, uint64_t arg4, uint64_t arg5) {
    return result(prctl(option, arg2, arg3, arg4, arg5));
}

long amber_personality(unsigned long persona) {
    return result(personality(persona));
}

long amber_openat2(const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct { uint64_t flags, mode, resolve; } how = {flags, mode, resolve};
    return result(syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how));
}

long amber_thread_setfsuid(uint32_t uid) {
    return syscall(SYS_setfsuid, uid);
}

long amber_thread_setfsgid(uint32_t gid) {
    return syscall(SYS_setfsgid, gid);
}

long amber_thread_setgroups(size_t count, const uint32_t *groups) {
    return result(syscall(SYS_setgroups, count, groups));
}

long amber_thread_seteuid(uint32_t uid) {
    return result(syscall(SYS_setresuid, -1, uid, -1));
}

long amber_thread_setegid(uint32_t gid) {
    return result(syscall(SYS_setresgid, -1, gid, -1));
}

long amber_xgetbv0(uint64_t *value) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    *value = ((uint64_t)hi << 32) | lo;
    return 0;
}

// Raw syscalls for the helper child, which must not touch libc state (errno, TID cache).
static inline long raw_syscall4(long n, long a, long b, long c, long d) {
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

// In a new helper child: default signal handlers, nothing blocked, no fd but `kept_fd`, and
// the capabilities of `bounding_drop` out of its bounding set.
static inline void helper_start_clean(int kept_fd, uint64_t bounding_drop) {
    for (long cap = 0; cap < 64; cap++) {
        if (bounding_drop & (1ULL << cap)) raw_syscall4(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0);
    }
    struct amber_kernel_sigaction dfl = {0};
    for (long sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        raw_syscall4(SYS_rt_sigaction, sig, (long)&dfl, 0, 8);
    }
    uint64_t none = 0;
    raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8);
    if (kept_fd > 0) raw_syscall4(SYS_close_range, 0, kept_fd - 1, 0, 0);
    raw_syscall4(SYS_close_range, kept_fd + 1, ~0U, 0, 0);
}

long amber_clone3_stopped_helper(const pid_t *set_tid, size_t set_tid_count, uint64_t flags, int exit_signal, int kept_fd, pid_t awaited_child, uint64_t bounding_drop) {
    struct amber_clone_args args = {0};
    args.flags = flags;
    args.exit_signal = (uint64_t)exit_signal;
    args.set_tid = (uint64_t)set_tid;
    args.set_tid_size = set_tid_count;
    long r = raw_syscall4(SYS_clone3, (long)&args, sizeof(args), 0, 0);
    if (r != 0) return r;
    // Child: a copy of the caller's memory; only raw syscalls from here on.
    helper_start_clean(kept_fd, bounding_drop);
    // Become traced by the caller and stop: the caller sees a SIGSTOP signal-delivery stop
    // and takes over from there, so no job-control stop is ever left behind.
    // Untraced, its SIGSTOP would be a job-control stop that the caller, waiting for a
    // ptrace stop, never sees: exit instead, so that the caller reports it.
    if (raw_syscall4(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) < 0) raw_syscall4(SYS_exit_group, AMBER_HELPER_UNTRACEABLE, 0, 0, 0);
    long self = raw_syscall4(SYS_getpid, 0, 0, 0, 0);
    raw_syscall4(SYS_kill, self, SIGSTOP, 0, 0);
    for (;;) {
        int status = 0;
        long reaped = raw_syscall4(SYS_wait4, -1, (long)&status, __WALL, 0);
        if (reaped == -ECHILD) raw_syscall4(SYS_pause, 0, 0, 0, 0);
        if (reaped != awaited_child) continue;
        long code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
        raw_syscall4(SYS_exit_group, code, 0, 0, 0);
    }
}

long amber_clone3_sibling_helper(const pid_t *set_tid, size_t set_tid_count, uint64_t flags, int kept_fd, uint64_t bounding_drop) {
    struct amber_clone_args args = {0};
    args.flags = flags | CLONE_PARENT;
    args.set_tid = (uint64_t)set_tid;
    args.set_tid_size = set_tid_count;
    long r = raw_syscall4(SYS_clone3, (long)&args, sizeof(args), 0, 0);
    if (r != 0) return r;
    // Child of the caller's parent: a copy of the caller's memory; only raw syscalls from here
    // on. It cannot ask to be traced (its tracer would be that parent): it waits in pause(),
    // where the caller, having seized it, finds it ready.
    helper_start_clean(kept_fd, bounding_drop);
    for (;;) raw_syscall4(SYS_pause, 0, 0, 0, 0);
}

long amber_pipe2(int ends[2], int flags) {
    return result(syscall(SYS_pipe2, ends, (long)flags));
}

long amber_tee(int from, int to, size_t length, unsigned flags) {
    return result(syscall(SYS_tee, (long)from, (long)to, length, (long)flags));
}

long amber_eventfd2(unsigned int count, int flags) { return result(syscall(SYS_eventfd2, count, flags)); }

long amber_signalfd4(uint64_t mask, int flags) {
    return result(syscall(SYS_signalfd4, -1L, &mask, sizeof mask, (long)flags));
}

long amber_timerfd_create(int clock, int flags) { return result(syscall(SYS_timerfd_create, (long)clock, (long)flags)); }

long amber_timerfd_settime(int fd, int flags, int64_t interval_ns, int64_t value_ns) {
    struct itimerspec time = {
        {interval_ns / 1000000000, interval_ns % 1000000000},
        {value_ns / 1000000000, value_ns % 1000000000},
    };
    return result(syscall(SYS_timerfd_settime, (long)fd, (long)flags, &time, NULL));
}

long amber_timerfd_gettime(int fd, int64_t *interval_ns, int64_t *value_ns) {
    struct itimerspec time;
    long ret = result(syscall(SYS_timerfd_gettime, (long)fd, &time));
    if (ret < 0) return ret;
    *interval_ns = (int64_t)time.it_interval.tv_sec * 1000000000 + time.it_interval.tv_nsec;
    *value_ns = (int64_t)time.it_value.tv_sec * 1000000000 + time.it_value.tv_nsec;
    return 0;
}

long amber_timerfd_set_ticks(int fd, uint64_t ticks) {
    return result(ioctl(fd, _IOW('T', 0, uint64_t), &ticks));
}

long amber_kcmp_epoll_target(pid_t pid, int fd, int epoll_fd, int target_fd) {
    struct {
        uint32_t efd, tfd, toff;
    } slot = {(uint32_t)epoll_fd, (uint32_t)target_fd, 0};
    return result(syscall(SYS_kcmp, (long)pid, (long)pid, 7L /* KCMP_EPOLL_TFD */, (long)fd, &slot));
}

long amber_pidfd_open_flags(pid_t pid, unsigned flags) { return result(syscall(SYS_pidfd_open, (long)pid, (long)flags)); }

long amber_epoll_create1(int flags) { return result(syscall(SYS_epoll_create1, (long)flags)); }

long amber_inotify_init1(int flags) { return result(syscall(SYS_inotify_init1, (long)flags)); }

long amber_inotify_add_watch(int fd, const char *path, uint32_t mask) {
    return result(syscall(SYS_inotify_add_watch, (long)fd, path, (long)mask));
}

long amber_inotify_rm_watch(int fd, int wd) { return result(syscall(SYS_inotify_rm_watch, (long)fd, (long)wd)); }

long amber_open_by_handle_at(int mount_fd, int type, const uint8_t *bytes, uint32_t size, int flags) {
    struct {
        uint32_t handle_bytes;
        int32_t handle_type;
        uint8_t f_handle[128];
    } handle = {size, type, {0}};
    if (size > sizeof handle.f_handle) return -EINVAL;
    __builtin_memcpy(handle.f_handle, bytes, size);
    return result(syscall(SYS_open_by_handle_at, (long)mount_fd, &handle, (long)flags));
}

long amber_accept4(int fd, int flags) { return result(syscall(SYS_accept4, (long)fd, NULL, NULL, (long)flags)); }

long amber_setns(int fd, int type) { return result(syscall(SYS_setns, (long)fd, (long)type)); }

long amber_unshare(int flags) { return result(syscall(SYS_unshare, (long)flags)); }

long amber_pivot_root(const char *new_root, const char *put_old) {
    return result(syscall(SYS_pivot_root, new_root, put_old));
}

long amber_openat2_in_root(int root, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct { uint64_t flags, mode, resolve; } how = {flags, mode, resolve};
    return result(syscall(SYS_openat2, root, path, &how, sizeof how));
}

long amber_open_tree_in_namespace(int namespace_fd, const char *path) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
        return -errno;
    long child = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) {
        int error = errno;
        close(pair[0]);
        close(pair[1]);
        return -error;
    }
    if (child == 0) {
        /* Raw system calls only: a child of a process of several threads. */
        long fd = syscall(SYS_setns, namespace_fd, CLONE_NEWNS);
        if (fd == 0)
            fd = syscall(SYS_open_tree, AT_FDCWD, path, 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC);
        int error = fd < 0 ? errno : 0;
        union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
        struct iovec part = {&error, sizeof error};
        struct msghdr message = {0};
        message.msg_iov = &part;
        message.msg_iovlen = 1;
        if (fd >= 0) {
            message.msg_control = control.buffer;
            message.msg_controllen = sizeof control.buffer;
            struct cmsghdr *header = CMSG_FIRSTHDR(&message);
            header->cmsg_level = SOL_SOCKET;
            header->cmsg_type = SCM_RIGHTS;
            header->cmsg_len = CMSG_LEN(sizeof(int));
            int sent = (int)fd;
            __builtin_memcpy(CMSG_DATA(header), &sent, sizeof sent);
        }
        syscall(SYS_sendmsg, pair[1], &message, 0);
        syscall(SYS_exit_group, 0);
    }
    close(pair[1]);
    int error = EIO;
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct iovec part = {&error, sizeof error};
    struct msghdr message = {0};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;
    long received;
    do {
        received = recvmsg(pair[0], &message, MSG_CMSG_CLOEXEC);
    } while (received < 0 && errno == EINTR);
    int fd = -1;
    struct cmsghdr *header = received > 0 ? CMSG_FIRSTHDR(&message) : NULL;
    if (header && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(header), sizeof fd);
    close(pair[0]);
    while (waitpid((pid_t)child, NULL, __WALL) < 0 && errno == EINTR) {
    }
    if (fd >= 0)
        return fd;
    return -(error ? error : EIO);
}

long amber_fsmount_new(const char *type) {
    long context = syscall(SYS_fsopen, type, 1L /* FSOPEN_CLOEXEC */);
    if (context < 0) return -errno;
    long made = syscall(SYS_fsconfig, context, 6L /* FSCONFIG_CMD_CREATE */, NULL, NULL, 0L);
    long mount = made < 0 ? -1 : syscall(SYS_fsmount, context, 1L /* FSMOUNT_CLOEXEC */, 0L);
    int saved = errno;
    close((int)context);
    return mount < 0 ? -saved : mount;
}

/* A ptrace witness (amber_spawn_ptrace_witness) runs this program, amber or a program of the
   library's, as AMBER_PTRACE_WITNESS_NAME UID GID: with a memory of its own, it takes those
   IDs, drops every capability, makes itself dumpable and exits, before anything else runs. */
__attribute__((constructor(101))) static void amber_ptrace_witness(int argc, char **argv) {
    if (argc != 3 || !argv || !argv[0] || strcmp(argv[0], AMBER_PTRACE_WITNESS_NAME) != 0)
        return;
    char *end;
    unsigned long uid = strtoul(argv[1], &end, 10);
    int valid = *argv[1] && !*end;
    unsigned long gid = strtoul(argv[2], &end, 10);
    valid = valid && *argv[2] && !*end;
    struct { uint32_t version; int pid; } header = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    uint32_t none[6] = {0};
    if (!valid || syscall(SYS_setresgid, gid, gid, gid) != 0 || syscall(SYS_setresuid, uid, uid, uid) != 0
        || syscall(SYS_capset, &header, none) != 0 || syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
        syscall(SYS_exit_group, 1);
    syscall(SYS_exit_group, 0);
}

long amber_spawn_ptrace_witness(int program, int pid_ns, int own_pid_ns, unsigned uid, unsigned gid) {
    char uid_text[16], gid_text[16];
    snprintf(uid_text, sizeof uid_text, "%u", uid);
    snprintf(gid_text, sizeof gid_text, "%u", gid);
    char *argv[] = {AMBER_PTRACE_WITNESS_NAME, uid_text, gid_text, NULL};
    char *envp[] = {NULL};
    if (pid_ns >= 0 && syscall(SYS_setns, pid_ns, CLONE_NEWPID) != 0)
        return -errno;
    /* Written by the child, which shares our memory until it execs. No signal reaches it
       before then: a handler of ours would run on our memory in another process. */
    volatile int error = 0;
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t witness = vfork();
    if (witness == 0) {
        /* Raw system calls only, on our memory and stack: the child of a process of several
           threads. It keeps none of our descriptors (the program's is close-on-exec). */
        if ((program > 0 && syscall(SYS_close_range, 0, program - 1, 0) != 0)
            || syscall(SYS_close_range, program + 1, ~0U, 0) != 0)
            error = errno;
        else {
            syscall(SYS_execveat, program, "", argv, envp, AT_EMPTY_PATH);
            error = errno;
        }
        syscall(SYS_exit, 127);
    }
    int spawned = witness < 0 ? errno : error;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (pid_ns >= 0 && syscall(SYS_setns, own_pid_ns, CLONE_NEWPID) != 0)
        abort(); /* this thread's next children would be made in the tree's PID namespace */
    if (witness < 0)
        return -spawned;
    /* Once it has exited, its IDs and dumpability are final. */
    siginfo_t exited = {0};
    while (waitid(P_PID, witness, &exited, WEXITED | WNOWAIT | __WALL) < 0 && errno == EINTR) {
    }
    if (spawned || exited.si_code != CLD_EXITED || exited.si_status != 0) {
        while (waitpid(witness, NULL, __WALL) < 0 && errno == EINTR) {
        }
        return -(spawned ? spawned : EPERM);
    }
    return witness;
}

long amber_landlock_abi_version(void) {
    return result(syscall(444 /* landlock_create_ruleset */, NULL, 0L, 1L /* LANDLOCK_CREATE_RULESET_VERSION */));
}
