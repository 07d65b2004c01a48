/*
 * unsupported_state: one kind of state amber does not restore yet, chosen by a flag, which
 * `amber dump` must refuse by name, leaving the process running untouched:
 *   --chroot            a child with its own root directory
 *   --autogroup         a child leading a session whose autogroup has nice 5
 *   --mempolicy         the process's NUMA policy is MPOL_PREFERRED (set_mempolicy)
 *   --mbind             one area has the NUMA policy MPOL_BIND (mbind)
 *   --thread-mempolicy  a second thread's own NUMA policy is MPOL_PREFERRED (set_mempolicy)
 *   --thread-personality a second thread's own personality is ADDR_NO_RANDOMIZE
 *   --group-left        a child in the process group of its sibling, which has moved back to
 *                       the root's group since (setpgid)
 *   --gdt-tls           a second thread with a GDT TLS entry of its own (set_thread_area
 *                       through int 0x80, the 32-bit call)
 *   --user-dispatch     syscall user dispatch on (PR_SET_SYSCALL_USER_DISPATCH)
 *   --thread-keyring    a thread keyring
 *   --process-keyring   a process keyring
 *   --session-keys      a session keyring of its own holding a key
 *   --guard-regions     a page of an area made a guard region (MADV_GUARD_INSTALL)
 *   --ldt               a local descriptor table entry (modify_ldt)
 *   --vfork             a child waiting in vfork for its own child, which shares its memory
 *                       and does not exec
 *   --landlock          the process sandboxed by Landlock (it may not make FIFOs)
 *   --thread-landlock   a second thread alone sandboxed by Landlock
 *   --ctty              a child leading a session whose controlling terminal is a pty
 *                       (the child keeps no fd on it; the root keeps the master)
 *   --robust-mutex      a robust, process-shared mutex held in a file mapped shared (the
 *                       dump's kill would mark it owner-died there for other processes)
 *   --shared-file       a regular file's open file description (its offset) shared with a
 *                       process outside the tree (a grandchild, orphaned at once, which exits
 *                       when this process is gone)
 *   --shared-locked-log the same for a file opened O_WRONLY | O_APPEND (which may be shared)
 *                       whose description holds a flock (`exec 9>>lock; flock 9; prog &`)
 *   --shared-directory  a directory's open file description, read part way (its offset in
 *                       the entries), shared so with a process outside the tree
 *   --thread-unshare-fs     a second thread with a working directory and umask of its own
 *                           (unshare(CLONE_FS), then umask 077)
 *   --thread-unshare-files  a second thread with a descriptor table of its own
 *                           (unshare(CLONE_FILES))
 *   --owner             a pipe's read end with an owner (F_SETOWN) and a signal (F_SETSIG),
 *                       without O_ASYNC
 *   --fd-at-limit       a descriptor at the last number its hard RLIMIT_NOFILE allows (the
 *                       restorer's too, started as the test starts it)
 *   --stopped-fatal     a child stopped (SIGSTOP), then sent SIGHUP, which ends it once it is
 *                       continued
 *   --stopped-twice     a child stopped (SIGSTOP), then sent SIGSTOP again, which stays pending
 *   --leader-exited     a child forked, then the main thread ended by pthread_exit: a second
 *                       thread runs on, checks and reports (zdtm pthread02)
 *   --root-pdeath       this process (the root) has the parent death signal SIGHUP, tied to
 *                       its parent outside the tree
 *   --deleted-xattr     a deleted file with an extended attribute (user.amber)
 *   --deleted-noatime   a deleted file made no-atime by chattr (FS_NOATIME_FL), which its
 *                       directory is not
 *   --unmapped-vvar     a child that unmapped its [vvar] area (then only pauses: its vDSO reads
 *                       clocks from it)
 *   --session-outside   a child leading a session of its own, with a grandchild forked out of
 *                       the tree (orphaned at once) still in that session, as a daemon's double
 *                       fork leaves it
 * After SIGTERM the process checks the state is still there.
 */
#include "scenario.h"
#include <sys/file.h>
#include <asm/ldt.h>
#include <sys/personality.h>
#include <pthread.h>
#include <sys/mman.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/xattr.h>

static pthread_mutex_t *robust;
static int shared_file = -1;
static off_t directory_offset = -1;

#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_READ 11
#define KEY_SPEC_THREAD_KEYRING -1
#define KEY_SPEC_PROCESS_KEYRING -2
#define KEY_SPEC_SESSION_KEYRING -3
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
#define PR_SYS_DISPATCH_ON 1

static pid_t child = -1, group_leader = -1;
static char selector; /* SYSCALL_DISPATCH_FILTER_ALLOW */


static int pty_master = -1;

/* A grandchild outside the tree holding shared_file (only it: not this process's log too),
   until this process is gone. */
static void share_outside(void)
{
    pid_t self = getpid();
    if (sc_fork_outside() == 0) {
        close(1);
        close(2);
        while (kill(self, 0) == 0)
            usleep(20 * 1000);
        _exit(0);
    }
}

static void take_terminal(void)
{
    setsid();
    int slave = open(ptsname(pty_master), O_RDWR);
    if (slave < 0)
        _exit(3);
    close(slave);
}

static void enter_chroot(void)
{
    if (chroot(sc_dir) != 0)
        _exit(3);
}

/* Waits in vfork for a child that sleeps on its memory and dies with it. */
static void wait_in_vfork(void)
{
    if (vfork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        for (;;)
            pause();
    }
}

static void lower_autogroup(void)
{
    setsid();
    int fd = open("/proc/self/autogroup", O_WRONLY);
    if (fd < 0 || write(fd, "5", 1) != 1)
        _exit(3);
    close(fd);
}

#define MADV_GUARD_INSTALL 102
static char *guarded_area;

/* Whether the second page of `guarded_area` still faults as a guard region does. */
static int guard_faults(void)
{
    char byte;
    int mem = open("/proc/self/mem", O_RDONLY);
    ssize_t got = pread(mem, &byte, 1, (off_t)(uintptr_t)(guarded_area + 4096));
    close(mem);
    return got < 0 && errno == EIO;
}

/* Puts the calling thread in a Landlock domain that forbids making FIFOs (nothing the
   scenario does): 0, or -1 with errno set. */
static int forbid_fifos(void)
{
    struct { unsigned long long handled_access_fs; } ruleset = {1ULL << 10 /* LANDLOCK_ACCESS_FS_MAKE_FIFO */};
    long fd = syscall(444 /* landlock_create_ruleset */, &ruleset, sizeof ruleset, 0);
    if (fd < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    long restricted = syscall(446 /* landlock_restrict_self */, fd, 0);
    close((int)fd);
    return restricted == 0 ? 0 : -1;
}

/* Whether making a FIFO is refused as a Landlock domain refuses it. */
static int fifos_forbidden(void)
{
    char path[sizeof sc_dir + 16];
    snprintf(path, sizeof path, "%s/landlock-fifo", sc_dir);
    if (mkfifo(path, 0600) == 0) {
        unlink(path);
        return 0;
    }
    return errno == EACCES;
}

/* The setting of --thread-* modes, made in a thread of its own (so not in the leader); the
   thread then waits. thread_setting_made is 1 once it is made, -1 if that failed. */
static int (*thread_setting)(void);
static int thread_setting_made;

static void *make_thread_setting(void *unused)
{
    (void)unused;
    __atomic_store_n(&thread_setting_made, thread_setting() == 0 ? 1 : -1, __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

static void make_in_thread(int (*setting)(void), const char *what)
{
    pthread_t thread;
    thread_setting = setting;
    if (pthread_create(&thread, NULL, make_thread_setting, NULL) != 0)
        sc_die("pthread_create");
    while (!__atomic_load_n(&thread_setting_made, __ATOMIC_ACQUIRE))
        usleep(1000);
    if (thread_setting_made < 0)
        sc_die("%s", what);
}

/* set_thread_area (243 in the 32-bit table) with a struct user_desc below 4 GiB; 0 on success. */
static int set_gdt_entry(void)
{
    struct user_desc *descriptor =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (descriptor == MAP_FAILED)
        return -1;
    *descriptor = (struct user_desc){.entry_number = (unsigned)-1, .base_addr = 0x1000, .limit = 0xfff,
                                     .seg_32bit = 1, .useable = 1};
    int result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(243), "b"((uint32_t)(uintptr_t)descriptor) : "memory");
    return result == 0 && descriptor->entry_number >= 12 ? 0 : -1;
}

static int no_randomize(void)
{
    return personality(ADDR_NO_RANDOMIZE) < 0 ? -1 : 0;
}

static pid_t unshared_thread;

static int unshare_fs(void)
{
    unshared_thread = (pid_t)syscall(SYS_gettid);
    if (unshare(CLONE_FS) != 0)
        return -1;
    umask(077);
    return 0;
}

static int unshare_files(void)
{
    unshared_thread = (pid_t)syscall(SYS_gettid);
    return unshare(CLONE_FILES);
}

/* Whether the thread of --thread-unshare-* still has its own `resource` (KCMP_FILES 2, KCMP_FS 3). */
static int thread_has_own(int resource)
{
    return syscall(SYS_kcmp, getpid(), unshared_thread, resource, 0, 0) != 0;
}

static int owned_pipe[2] = {-1, -1};
static int at_limit = -1;
static int deleted_file = -1;

static int prefer_node0(void)
{
    unsigned long node0 = 1;
    return syscall(SYS_set_mempolicy, MPOL_PREFERRED, &node0, 64);
}

static long keyctl(long operation, long a, long b, long c)
{
    return syscall(SYS_keyctl, operation, a, b, c, 0L);
}

/* --leader-exited: the second thread, once the main one has ended, does what main would but
   the common checks (its /proc/self, the leader's, shows a zombie). */
static void *outlive_leader(void *unused)
{
    (void)unused;
    sc_wait_for_term();
    sc_check(kill(child, 0) == 0, "the child is gone");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sc_finish();
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_state");
    sc_install_sigterm(0);
    static char area[8192] __attribute__((aligned(4096)));
    unsigned long node0 = 1;
    long key = -1;
    if (sc_has_flag("--chroot")) {
        child = sc_fork_paused_child(enter_chroot);
        sc_wait_in_pause(child);
    } else if (sc_has_flag("--ctty")) {
        pty_master = posix_openpt(O_RDWR | O_NOCTTY);
        if (pty_master < 0 || grantpt(pty_master) != 0 || unlockpt(pty_master) != 0)
            sc_die("posix_openpt");
        child = sc_fork_paused_child(take_terminal);
        sc_wait_in_pause(child);
        close(pty_master);
    } else if (sc_has_flag("--group-left")) {
        group_leader = sc_fork_paused_child(NULL);
        child = sc_fork_paused_child(NULL);
        sc_wait_in_pause(group_leader);
        sc_wait_in_pause(child);
        if (setpgid(group_leader, group_leader) != 0 || setpgid(child, group_leader) != 0 ||
            setpgid(group_leader, getpgid(0)) != 0)
            sc_die("setpgid");
    } else if (sc_has_flag("--autogroup")) {
        child = sc_fork_paused_child(lower_autogroup);
        sc_wait_in_pause(child);
    } else if (sc_has_flag("--mempolicy")) {
        if (syscall(SYS_set_mempolicy, MPOL_PREFERRED, &node0, 64) != 0)
            sc_die("set_mempolicy");
    } else if (sc_has_flag("--thread-mempolicy")) {
        make_in_thread(prefer_node0, "set_mempolicy in a thread");
    } else if (sc_has_flag("--gdt-tls")) {
        make_in_thread(set_gdt_entry, "set_thread_area in a thread");
    } else if (sc_has_flag("--thread-personality")) {
        make_in_thread(no_randomize, "personality in a thread");
    } else if (sc_has_flag("--guard-regions")) {
        guarded_area = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (guarded_area == MAP_FAILED)
            sc_die("mmap");
        memset(guarded_area, 7, 4 * 4096);
        if (madvise(guarded_area + 4096, 4096, MADV_GUARD_INSTALL) != 0)
            sc_die("MADV_GUARD_INSTALL");
    } else if (sc_has_flag("--vfork")) {
        char path[64], state = 0;
        child = sc_fork_paused_child(wait_in_vfork);
        snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
        for (int tries = 0; tries < 1000 && state != 'D'; tries++) {
            FILE *stat = fopen(path, "r");
            if (stat && fscanf(stat, "%*d (%*[^)]) %c", &state) != 1)
                state = 0;
            if (stat)
                fclose(stat);
            usleep(1000);
        }
        if (state != 'D')
            sc_die("the child is not waiting in vfork");
    } else if (sc_has_flag("--robust-mutex")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "robust-mutex");
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            sc_die("robust-mutex file");
        robust = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        pthread_mutexattr_t attributes;
        pthread_mutexattr_init(&attributes);
        pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        if (robust == MAP_FAILED || pthread_mutex_init(robust, &attributes) != 0 || pthread_mutex_lock(robust) != 0)
            sc_die("robust mutex");
    } else if (sc_has_flag("--shared-file")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "shared-file");
        shared_file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (shared_file < 0 || write(shared_file, "root\n", 5) != 5)
            sc_die("shared-file");
        share_outside();
    } else if (sc_has_flag("--shared-locked-log")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "shared-locked-log");
        shared_file = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (shared_file < 0 || flock(shared_file, LOCK_EX) != 0)
            sc_die("shared-locked-log");
        share_outside();
    } else if (sc_has_flag("--shared-directory")) {
        char path[PATH_MAX], entry[PATH_MAX + 16];
        sc_path(path, sizeof path, "shared-directory");
        mkdir(path, 0700);
        for (int i = 0; i < 64; i++) {
            sc_fmt(entry, sizeof entry, "%s/entry-%d", path, i);
            int made = open(entry, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (made < 0)
                sc_die("shared-directory entry");
            close(made);
        }
        shared_file = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char entries[256];
        if (shared_file < 0 || syscall(SYS_getdents64, shared_file, entries, sizeof entries) <= 0)
            sc_die("shared-directory");
        directory_offset = lseek(shared_file, 0, SEEK_CUR);
        share_outside();
    } else if (sc_has_flag("--thread-unshare-fs")) {
        make_in_thread(unshare_fs, "unshare(CLONE_FS) in a thread");
    } else if (sc_has_flag("--thread-unshare-files")) {
        make_in_thread(unshare_files, "unshare(CLONE_FILES) in a thread");
    } else if (sc_has_flag("--deleted-xattr") || sc_has_flag("--deleted-noatime")) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, "deleted-with-attributes");
        deleted_file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int flags = 0;
        if (deleted_file < 0 || unlink(path) != 0)
            sc_die("a deleted file");
        if (sc_has_flag("--deleted-xattr") ? fsetxattr(deleted_file, "user.amber", "v1", 2, 0) != 0
                                           : ioctl(deleted_file, FS_IOC_GETFLAGS, &flags) != 0 ||
                                                 (flags |= FS_NOATIME_FL, ioctl(deleted_file, FS_IOC_SETFLAGS, &flags) != 0))
            sc_die("setting the deleted file's attribute");
    } else if (sc_has_flag("--unmapped-vvar")) {
        unsigned long start = 0, end = 0;
        char line[256];
        FILE *maps = fopen("/proc/self/maps", "r");
        while (maps && fgets(line, sizeof line, maps))
            if (strstr(line, "[vvar]\n") && sscanf(line, "%lx-%lx", &start, &end) == 2)
                break;
        if (maps)
            fclose(maps);
        if (!end)
            sc_die("no [vvar] area");
        int report[2];
        if (pipe(report) != 0)
            sc_die("pipe");
        child = fork();
        if (child == 0) {
            char done = munmap((void *)start, end - start) == 0 ? 1 : 0;
            if (write(report[1], &done, 1) != 1)
                _exit(3);
            for (;;)
                pause();
        }
        char done = 0;
        if (child < 0 || read(report[0], &done, 1) != 1 || !done)
            sc_die("unmapping [vvar] in a child");
        close(report[0]);
        close(report[1]);
    } else if (sc_has_flag("--session-outside")) {
        pid_t self = getpid();
        child = fork();
        if (child == 0) {
            if (setsid() < 0)
                _exit(3);
            if (sc_fork_outside() == 0) {
                while (kill(self, 0) == 0)
                    usleep(20 * 1000);
                _exit(0);
            }
            for (;;)
                pause();
        }
        if (child < 0)
            sc_die("fork");
        for (int tries = 0; getsid(child) != child; tries++) {
            if (tries == 1000)
                sc_die("the child did not lead a session");
            usleep(1000);
        }
    } else if (sc_has_flag("--leader-exited")) {
        child = fork();
        if (child == 0) {
            for (;;)
                pause();
        }
        pthread_t thread;
        if (child < 0 || pthread_create(&thread, NULL, outlive_leader, NULL) != 0)
            sc_die("a child and a second thread");
        sc_ready();
        pthread_exit(NULL);
    } else if (sc_has_flag("--root-pdeath")) {
        if (prctl(PR_SET_PDEATHSIG, SIGHUP, 0, 0, 0) != 0)
            sc_die("PR_SET_PDEATHSIG");
    } else if (sc_has_flag("--stopped-fatal") || sc_has_flag("--stopped-twice")) {
        child = fork();
        if (child == 0) {
            for (;;)
                pause();
        }
        int status;
        if (child < 0 || kill(child, SIGSTOP) != 0 || waitpid(child, &status, WUNTRACED) != child ||
            kill(child, sc_has_flag("--stopped-twice") ? SIGSTOP : SIGHUP) != 0)
            sc_die("a stopped child with a signal pending");
    } else if (sc_has_flag("--fd-at-limit")) {
        struct rlimit limit;
        if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
            sc_die("RLIMIT_NOFILE");
        limit.rlim_cur = limit.rlim_max;
        at_limit = (int)limit.rlim_max - 1;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0 || dup2(0, at_limit) != at_limit)
            sc_die("a descriptor at %d", at_limit);
    } else if (sc_has_flag("--owner")) {
        if (pipe(owned_pipe) != 0 || fcntl(owned_pipe[0], F_SETOWN, getpid()) != 0 ||
            fcntl(owned_pipe[0], F_SETSIG, SIGUSR1) != 0)
            sc_die("a pipe with an owner");
    } else if (sc_has_flag("--ldt")) {
        struct { unsigned entry, base, limit, flags; } data_segment = {0, 0, 0xfffff, 0x51 /* 32-bit, present, pages */};
        if (syscall(SYS_modify_ldt, 1, &data_segment, sizeof data_segment) != 0)
            sc_die("modify_ldt");
    } else if (sc_has_flag("--landlock")) {
        if (forbid_fifos() != 0)
            sc_die("landlock_restrict_self");
    } else if (sc_has_flag("--thread-landlock")) {
        make_in_thread(forbid_fifos, "landlock_restrict_self in a thread");
    } else if (sc_has_flag("--mbind")) {
        if (syscall(SYS_mbind, area, sizeof area, MPOL_BIND, &node0, 64, 0) != 0)
            sc_die("mbind");
    } else if (sc_has_flag("--user-dispatch")) {
        if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) != 0)
            sc_die("PR_SET_SYSCALL_USER_DISPATCH");
    } else if (sc_has_flag("--thread-keyring")) {
        if ((key = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 1, 0)) < 0)
            sc_die("thread keyring");
    } else if (sc_has_flag("--process-keyring")) {
        if ((key = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1, 0)) < 0)
            sc_die("process keyring");
    } else if (sc_has_flag("--session-keys")) {
        if (keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0) < 0 || syscall(SYS_add_key, "user", "amber-test", "value", 5, KEY_SPEC_SESSION_KEYRING) < 0)
            sc_die("session keyring with a key");
    } else {
        sc_die("no state chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    if (sc_has_flag("--stopped-fatal")) {
        int status = 0;
        sc_check(kill(child, SIGCONT) == 0 && waitpid(child, &status, 0) == child && WIFSIGNALED(status) &&
                     WTERMSIG(status) == SIGHUP,
                 "the stopped child did not end by its pending SIGHUP once continued (status 0x%x)", status);
        child = -1;
    }
    if (group_leader > 0) {
        sc_check(getpgid(child) == group_leader && getpgid(group_leader) == getpgid(0),
                 "the groups changed: the child's is %d, its sibling's %d", (int)getpgid(child),
                 (int)getpgid(group_leader));
        kill(group_leader, SIGKILL);
        waitpid(group_leader, NULL, 0);
    }
    if (child > 0) {
        sc_check(kill(child, 0) == 0, "the child is gone");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (sc_has_flag("--mempolicy")) {
        int mode = -1;
        syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 0);
        sc_check(mode == MPOL_PREFERRED, "the memory policy is %d", mode);
    }
    if (sc_has_flag("--guard-regions"))
        sc_check(guard_faults() && guarded_area[0] == 7, "the guard region is gone or the area changed");
    if (sc_has_flag("--ldt")) {
        unsigned char entry[8];
        sc_check(syscall(SYS_modify_ldt, 0, entry, sizeof entry) == (long)sizeof entry, "the LDT is gone");
    }
    if (sc_has_flag("--landlock"))
        sc_check(fifos_forbidden(), "the process is no longer sandboxed by Landlock");
    if (sc_has_flag("--shared-file"))
        sc_check(lseek(shared_file, 0, SEEK_CUR) == 5, "the shared file's offset moved");
    if (sc_has_flag("--shared-directory"))
        sc_check(directory_offset > 0 && lseek(shared_file, 0, SEEK_CUR) == directory_offset,
                 "the shared directory's offset moved");
    if (sc_has_flag("--robust-mutex")) {
        /* Another process must find it held, not owner-died (EOWNERDEAD) nor free. */
        pid_t other = fork();
        if (other == 0)
            _exit(pthread_mutex_trylock(robust) == EBUSY ? 0 : 1);
        int status = 0;
        waitpid(other, &status, 0);
        sc_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process could take the robust mutex");
    }
    if (sc_has_flag("--thread-unshare-fs"))
        sc_check(thread_has_own(3), "the thread shares its leader's working directory and umask");
    if (sc_has_flag("--thread-unshare-files"))
        sc_check(thread_has_own(2), "the thread shares its leader's descriptor table");
    if (sc_has_flag("--deleted-xattr")) {
        char value[4] = {0};
        sc_check(fgetxattr(deleted_file, "user.amber", value, sizeof value) == 2 && memcmp(value, "v1", 2) == 0,
                 "the deleted file's extended attribute is gone");
    }
    if (sc_has_flag("--deleted-noatime")) {
        int flags = 0;
        sc_check(ioctl(deleted_file, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_NOATIME_FL),
                 "the deleted file's no-atime flag is gone");
    }
    if (sc_has_flag("--root-pdeath")) {
        int signal = 0;
        sc_check(prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0) == 0 && signal == SIGHUP, "the parent death signal is %d",
                 signal);
    }
    if (sc_has_flag("--fd-at-limit"))
        sc_check(fcntl(at_limit, F_GETFD) >= 0, "fd %d is gone", at_limit);
    if (sc_has_flag("--owner"))
        sc_check(fcntl(owned_pipe[0], F_GETOWN) == getpid() && fcntl(owned_pipe[0], F_GETSIG) == SIGUSR1,
                 "the pipe's owner or signal changed");
    if (sc_has_flag("--thread-keyring"))
        sc_check(keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 0, 0) == key, "the thread keyring changed");
    if (sc_has_flag("--process-keyring"))
        sc_check(keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 0, 0) == key, "the process keyring changed");
    if (sc_has_flag("--session-keys")) {
        long id = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0);
        sc_check(keyctl(KEYCTL_READ, id, 0, 0) == 4, "the session keyring lost its key");
    }
    sc_finish();
}
