// Kernel structs and raw syscall wrappers that Swift's Glibc overlay lacks.
// Every function returns the kernel's result: >= 0 on success, -errno on failure.
#ifndef AMBER_CLINUX_H
#define AMBER_CLINUX_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <signal.h>

// x86_64 struct user_regs_struct (NT_PRSTATUS).
struct amber_user_regs {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
    uint64_t rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss;
    uint64_t fs_base, gs_base, ds, es, fs, gs;
};

// Kernel's struct ptrace_rseq_configuration.
struct amber_rseq_configuration {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
};

// Kernel's struct ptrace_peeksiginfo_args.
struct amber_peeksiginfo_args {
    uint64_t off;
    uint32_t flags;
    int32_t nr;
};

// Kernel's struct sigaction for rt_sigaction (not glibc's).
struct amber_kernel_sigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

// Kernel's struct prctl_mm_map (PR_SET_MM_MAP).
struct amber_prctl_mm_map {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint64_t auxv;
    uint32_t auxv_size;
    uint32_t exe_fd;
};

// PAGEMAP_SCAN (Linux 6.7): the kernel's struct pm_scan_arg and struct page_region.
struct amber_page_region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

struct amber_pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};

#define AMBER_PAGEMAP_SCAN 0xc0606610UL
#define AMBER_PAGE_IS_WPALLOWED (1UL << 0)
#define AMBER_PAGE_IS_WRITTEN (1UL << 1)
#define AMBER_PAGE_IS_FILE (1UL << 2)
#define AMBER_PAGE_IS_PRESENT (1UL << 3)
#define AMBER_PAGE_IS_SWAPPED (1UL << 4)
#define AMBER_PAGE_IS_PFNZERO (1UL << 5)
#define AMBER_PAGE_IS_HUGE (1UL << 6)

// userfaultfd (linux/userfaultfd.h; Debian 12's headers predate WP_ASYNC): the kernel's structs.
struct amber_uffdio_range {
    uint64_t start;
    uint64_t len;
};
struct amber_uffdio_api {
    uint64_t api;
    uint64_t features;
    uint64_t ioctls;
};
struct amber_uffdio_register {
    struct amber_uffdio_range range;
    uint64_t mode;
    uint64_t ioctls;
};
struct amber_uffdio_copy {
    uint64_t dst;
    uint64_t src;
    uint64_t len;
    uint64_t mode;
    int64_t copy;
};
struct amber_uffdio_zeropage {
    struct amber_uffdio_range range;
    uint64_t mode;
    int64_t zeropage;
};
struct amber_uffdio_writeprotect {
    struct amber_uffdio_range range;
    uint64_t mode;
};
// struct uffd_msg (32 bytes, packed): the event, then its arguments.
struct amber_uffd_msg {
    uint8_t event;
    uint8_t reserved1;
    uint16_t reserved2;
    uint32_t reserved3;
    uint64_t arg[3];
} __attribute__((packed));

// libnftables (Debian's libnftables1), loaded on first use: runs `commands` as one nft
// transaction in the calling thread's network namespace. 0 on success; -ENOENT when the
// library cannot be loaded; 1 when nft refused the commands, its first error line in `error`.
// The library's context is kept for the next run in the same namespace: closing its netlink
// socket after a transaction that changed the ruleset waits for the kernel's clean-up of
// that transaction (an RCU grace period, 10-40 ms on a loaded VM), so it is closed only when
// a run is refused, when a run is in another namespace, or when the process exits.
long amber_nft_run(const char *commands, char *error, size_t error_size);

long amber_userfaultfd(uint64_t flags);
long amber_uffdio_api(int fd, struct amber_uffdio_api *api);
long amber_uffdio_register(int fd, struct amber_uffdio_register *reg);
long amber_uffdio_unregister(int fd, struct amber_uffdio_range *range);
long amber_uffdio_wake(int fd, struct amber_uffdio_range *range);
long amber_uffdio_copy(int fd, struct amber_uffdio_copy *copy);
long amber_uffdio_zeropage(int fd, struct amber_uffdio_zeropage *zeropage);
long amber_uffdio_writeprotect(int fd, struct amber_uffdio_writeprotect *wp);

// Kernel's struct clone_args (clone3, CLONE_ARGS_SIZE_VER2).
struct amber_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

long amber_ptrace(long request, pid_t pid, uint64_t addr, uint64_t data);
long amber_ptrace_getregset(pid_t pid, long type, void *buffer, size_t *length);
long amber_ptrace_setregset(pid_t pid, long type, const void *buffer, size_t length);

long amber_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long local_count,
                            const struct iovec *remote, unsigned long remote_count);
long amber_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long local_count,
                             const struct iovec *remote, unsigned long remote_count);

long amber_pidfd_open(pid_t pid);
long amber_pidfd_getfd(int pidfd, int fd);
long amber_pidfd_send_signal(int pidfd, int signal);
long amber_tgkill(pid_t tgid, pid_t tid, int signal);
/* flistxattr(2) with no buffer: the length of the names of fd's extended attributes. */
long amber_flistxattr_length(int fd);
/* prlimit64(2) setting `resource` of `pid` to soft and hard (Glibc's overlay lacks prlimit). */
long amber_prlimit_set(pid_t pid, int resource, uint64_t soft, uint64_t hard);
long amber_get_robust_list(pid_t pid, uint64_t *head, uint64_t *length);
long amber_pagemap_scan(int pagemap_fd, struct amber_pm_scan_arg *arg);
long amber_xgetbv0(uint64_t *value);
long amber_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2);
/// statfs(2)'s f_type, the file system's magic number (sys/vfs.h is not in Glibc's module).
long amber_statfs_type(const char *path, uint64_t *type);
/* memfd_create(2): the file descriptor, or -errno. */
long amber_memfd_create(const char *name, unsigned int flags);
/// kcmp of a resource without an index (KCMP_VM, KCMP_FILES, KCMP_FS, KCMP_SIGHAND, KCMP_IO, KCMP_SYSVSEM).
long amber_kcmp(pid_t pid1, pid_t pid2, int type);
long amber_sched_getaffinity(pid_t pid, size_t size, uint64_t *mask);
long amber_sched_setaffinity(pid_t pid, size_t size, const uint64_t *mask);
long amber_getcpu(void);
/// ioprio_get/ioprio_set with IOPRIO_WHO_PROCESS: one task (thread) by its TID.
long amber_ioprio_get(pid_t tid);
long amber_keyctl(int operation, uint64_t arg2, uint64_t arg3, uint64_t arg4, uint64_t arg5);
/// sched_getattr(tid, attr, size, 0): the kernel's struct sched_attr, `size` bytes of it.
long amber_sched_getattr(pid_t tid, void *attr, unsigned size);
long amber_ioprio_set(pid_t tid, int ioprio);
long amber_prctl(int option, uint64_t arg2, uint64_t arg3, uint64_t arg4, uint64_t arg5);
long amber_personality(unsigned long persona);

/// glibc's secure_getenv, which Swift's Glibc module does not declare: NULL in a set-user-ID,
/// set-group-ID or file-capability program (AT_SECURE).
const char *amber_secure_getenv(const char *name);

/// openat2(AT_FDCWD, path, {flags, mode, resolve}).
long amber_openat2(const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
/* openat2 of `path` resolved in the directory `root` as if it were the root directory (RESOLVE_IN_ROOT is in `resolve`). */
long amber_openat2_in_root(int root, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
/// setfsuid, setfsgid and setgroups of the calling thread alone (raw syscalls; glibc's
/// setgroups would change every thread). setfs[ug]id return the previous ID.
long amber_thread_setfsuid(uint32_t uid);
long amber_thread_setfsgid(uint32_t gid);
long amber_thread_setgroups(size_t count, const uint32_t *groups);
/// setresuid(-1, uid, -1) and setresgid(-1, gid, -1) of the calling thread alone (raw
/// syscalls): its effective IDs, the saved ones kept to go back with.
long amber_thread_seteuid(uint32_t uid);
long amber_thread_setegid(uint32_t gid);

/// The exit status of a helper whose PTRACE_TRACEME failed; nothing else ends a helper before
/// it first stops.
enum { AMBER_HELPER_UNTRACEABLE = 237 };

/// Creates a helper task with the given PIDs (innermost namespace first) by a raw clone3; its
/// parent gets `exit_signal` when it ends.
/// The child runs only raw syscalls: it resets every signal disposition to default,
/// unblocks all signals, closes every fd but `kept_fd`, drops the capabilities of the mask
/// `bounding_drop` from its bounding set (PR_CAPBSET_DROP, failures ignored: the restore of
/// credentials drops what is left), becomes traced by the caller
/// (PTRACE_TRACEME) and stops itself with SIGSTOP. Resumed as it was, it reaps children until
/// `awaited_child` (a PID in its own namespace) ends, then exits with that child's status as
/// a shell reports it (code, or 128 + signal): a PID namespace's init. Returns the child's
/// PID in the caller's namespace. A child that cannot become traced exits at once with
/// AMBER_HELPER_UNTRACEABLE instead of stopping where the caller would never see it.
long amber_clone3_stopped_helper(const pid_t *set_tid, size_t set_tid_count, uint64_t flags, int exit_signal, int kept_fd, pid_t awaited_child, uint64_t bounding_drop);
/// Like amber_clone3_stopped_helper, but the helper is a child of the caller's parent
/// (CLONE_PARENT; its exit signal is the caller's) and untraced: it waits in pause() with no
/// descriptor but kept_fd and the same bounding set, for the caller to seize it. Returns its
/// PID, or -errno.
long amber_clone3_sibling_helper(const pid_t *set_tid, size_t set_tid_count, uint64_t flags, int kept_fd, uint64_t bounding_drop);

/// pipe2(2) and tee(2), which Glibc's module does not export (they need _GNU_SOURCE).
long amber_pipe2(int ends[2], int flags);
long amber_tee(int from, int to, size_t length, unsigned flags);
// eventfd2, signalfd4 (with a 64-bit mask, no fd: always a new one) and the timerfd calls,
// their struct itimerspec as its interval and value in nanoseconds.
long amber_eventfd2(unsigned int count, int flags);
long amber_signalfd4(uint64_t mask, int flags);
long amber_timerfd_create(int clock, int flags);
long amber_timerfd_settime(int fd, int flags, int64_t interval_ns, int64_t value_ns);
long amber_timerfd_gettime(int fd, int64_t *interval_ns, int64_t *value_ns);
// TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE): sets the expirations a read returns.
long amber_timerfd_set_ticks(int fd, uint64_t ticks);

/// kcmp KCMP_EPOLL_TFD: 0 when fd `fd` of `pid` is the file that the first watch added by fd
/// `target_fd` to the epoll instance at `epoll_fd` of `pid` is on.
long amber_kcmp_epoll_target(pid_t pid, int fd, int epoll_fd, int target_fd);

/// pidfd_open with its flags (PIDFD_NONBLOCK, PIDFD_THREAD).
long amber_pidfd_open_flags(pid_t pid, unsigned flags);

/// epoll_create1 (sys/epoll.h is not in Glibc's module).
long amber_epoll_create1(int flags);

/// inotify (sys/inotify.h is not in Glibc's module).
long amber_inotify_init1(int flags);
long amber_inotify_add_watch(int fd, const char *path, uint32_t mask);
long amber_inotify_rm_watch(int fd, int wd);
/// open_by_handle_at of the handle `bytes` (`size` of them) of `type`, on the mount of `mount_fd`.
long amber_open_by_handle_at(int mount_fd, int type, const uint8_t *bytes, uint32_t size, int flags);

/// accept4 of the oldest connection waiting on `fd`, with `flags` (SOCK_CLOEXEC), its peer's
/// address not asked for (accept4 is a GNU extension Glibc's module leaves out).
long amber_accept4(int fd, int flags);

/// setns and unshare of the calling thread (sched.h's are not in Glibc's module).
long amber_setns(int fd, int type);
long amber_unshare(int flags);

/// pivot_root of the calling thread (no libc wrapper): -errno on failure.
long amber_pivot_root(const char *new_root, const char *put_old);

/* A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE) in the mount
 * namespace `namespace_fd`, made by a child that enters it (setns into a mount namespace needs
 * a caller whose root and working directory are its own, which a child's are): the descriptor,
 * or -errno. */
long amber_open_tree_in_namespace(int namespace_fd, const char *path);

/// A detached mount of a new context of the file system `type` (fsopen, fsconfig's
/// FSCONFIG_CMD_CREATE, fsmount; not in Glibc's module): its descriptor, close-on-exec.
long amber_fsmount_new(const char *type);

/* A process that a thread of real user uid and group gid may reach by ptrace's rules unless a
 * Landlock domain (or another security module) stops it: a vforked child, made in the PID
 * namespace `pid_ns` (-1: ours; `own_pid_ns` is ours, put back for this thread's next
 * children), that keeps none of our descriptors and execs `program` (an open, close-on-exec
 * descriptor of the current program) with no environment as AMBER_PTRACE_WITNESS_NAME UID GID.
 * A constructor of this library then takes those IDs in every slot, drops every capability,
 * makes it dumpable and exits: it never holds our memory with the user's IDs. Returns its PID
 * once it has exited (a zombie, as we see it; the caller reaps it), or -errno. */
long amber_spawn_ptrace_witness(int program, int pid_ns, int own_pid_ns, unsigned uid, unsigned gid);

/* The name the current program runs as when it is a ptrace witness. */
#define AMBER_PTRACE_WITNESS_NAME "amber-ptrace-witness"

/* The Landlock ABI version the kernel runs (landlock_create_ruleset with
 * LANDLOCK_CREATE_RULESET_VERSION), or -errno: -ENOSYS without Landlock, -EOPNOTSUPP disabled. */
long amber_landlock_abi_version(void);

#endif
