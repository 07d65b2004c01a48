/*
 * mnt_namespace: a tree in a mount namespace of its own, made as a container runtime makes
 * one. Run from a copy of its binary in its directory (DIR).
 *
 * The process the runner starts is a launcher. It makes a root directory DIR/rootfs holding
 * the files its binary maps (its libraries, at their own paths, and the loader at
 * /lib64/ld-linux-x86-64.so.2) and busybox (Debian's busybox-static) at /bin/busybox,
 * unshares a mount and a PID namespace and forks PID 1 of the new namespace, which: makes
 * every mount private; binds DIR/rootfs on itself; mounts a tmpfs at /tmp (mode 1777, size 8m);
 * binds DIR at DIR inside it (the bind mount of the host the dump names with --external
 * mnt[DIR]:scenario-dir: the binary and the verdict are there); mounts a tmpfs at /dev (mode 755) with
 * null (mknod 1:3) and a symbolic link fd -> /proc/self/fd, a tmpfs at /dev/shm (nosuid,
 * nodev), proc at /proc (nosuid, nodev, noexec) and sysfs read-only at
 * /sys; enters DIR/rootfs with pivot_root, detaches the old root, and execs the binary again
 * with --inner. The launcher writes PID 1's PID (as it sees it) to --pidfile once it is ready
 * and exits.
 *
 * Inner (PID 1): writes files into its tmpfs mounts (/tmp/work/notes of 100 KiB with mode 0640
 * and set times, a directory /tmp/work/empty of mode 0700, a symbolic link /tmp/work/link ->
 * notes, /dev/shm/segment), makes /tmp/work its working directory, opens /tmp/work/log
 * (append, one line written), /tmp/work/notes read-only at offset 4096, and /dev/null, forks a
 * child that execs busybox sleep (the tree), records its /proc/self/mountinfo (every field but
 * the mount IDs and the device) and is ready.
 *
 * After SIGTERM: sc_check_common(); the mountinfo is the same (mount points, options,
 * propagation, types, sources, the filesystems' options), the tmpfs files are as written
 * (contents, modes, times, link target, /dev/null a character device 1:3), the working
 * directory is /tmp/work, the open files are at their offsets and are the files their paths
 * reach (a line appended through the fd lands in /tmp/work/log), /proc is of its own PID
 * namespace (/proc/self is 1, /proc/1/comm its comm), /sys is read-only, /dev/null discards a
 * write, and the busybox child runs on as its child. It kills and reaps the child.
 *
 * Also in /tmp/work: "sparse", 12 MiB long with "end" in its last page and holes elsewhere
 * (more than the 8 MiB tmpfs holds, were it not sparse), and "ghost", open and unlinked: after
 * SIGTERM sparse holds what it held in fewer than 1 MiB of blocks, and /tmp/work's modification
 * time is as it was (the restore makes ghost there again and unlinks it).
 *
 * --overlay: PID 1 also mounts an overlay at /mnt (its directories in DIR), which a dump
 * refuses, naming it; so are, each by its flag, what a dump refuses of a mount or a tmpfs file:
 * --nosymfollow (a tmpfs at /mnt mounted with MS_NOSYMFOLLOW), --deleted-bind (a directory of
 * DIR bound at /mnt, then removed), --spaced-source (a tmpfs at /mnt whose source is "two words"),
 * --hard-link (/tmp/work/notes2, a second name of notes), --xattr (a user.note attribute on
 * notes), --chattr (notes made append-only, FS_APPEND_FL).
 */
#include "scenario.h"
#include <sys/file.h>

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/sysmacros.h>

#define NOTES_SIZE (100 * 1024)

static char rootfs[PATH_MAX];

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (in < 0 || out < 0)
        sc_die("copying %s to %s", from, to);
    char buffer[65536];
    ssize_t n;
    while ((n = read(in, buffer, sizeof buffer)) > 0)
        if (sc_write_all(out, buffer, (size_t)n) != 0)
            sc_die("writing %s", to);
    close(in);
    close(out);
}

/* mkdir -p of `path` under rootfs */
static void make_dirs(const char *path)
{
    char full[PATH_MAX * 2];
    sc_fmt(full, sizeof full, "%s%s", rootfs, path);
    for (char *p = full + strlen(rootfs) + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(full, 0755) != 0 && errno != EEXIST)
            sc_die("mkdir %s", full);
        *p = '/';
    }
    if (mkdir(full, 0755) != 0 && errno != EEXIST)
        sc_die("mkdir %s", full);
}

/* The root directory: every file the binary maps but itself, at its path, and busybox. */
static void make_rootfs(void)
{
    sc_path(rootfs, sizeof rootfs, "rootfs");
    if (mkdir(rootfs, 0755) != 0)
        sc_die("mkdir %s", rootfs);
    const char *dirs[] = {"/tmp", "/dev", "/proc", "/sys", "/bin", "/lib64", "/mnt"};
    const char *overlay[] = {"lower", "upper", "work"};
    for (size_t i = 0; i < sizeof overlay / sizeof overlay[0] && sc_has_flag("--overlay"); i++) {
        char path[PATH_MAX];
        sc_path(path, sizeof path, overlay[i]);
        if (mkdir(path, 0755) != 0)
            sc_die("mkdir %s", path);
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        make_dirs(dirs[i]);
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        sc_die("fopen /proc/self/maps");
    char line[PATH_MAX + 128], self[PATH_MAX] = {0};
    if (readlink("/proc/self/exe", self, sizeof self - 1) < 0)
        sc_die("readlink /proc/self/exe");
    while (fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (!path)
            continue;
        path[strcspn(path, "\n")] = 0;
        if (strcmp(path, self) == 0)
            continue;
        char to[PATH_MAX * 2];
        sc_fmt(to, sizeof to, "%s%s", rootfs, path);
        if (access(to, F_OK) == 0)
            continue;
        char parent[PATH_MAX];
        sc_fmt(parent, sizeof parent, "%s", path);
        *strrchr(parent, '/') = 0;
        make_dirs(parent);
        copy_file(path, to, 0755);
        if (strstr(path, "/ld-linux-x86-64.so.2")) {
            char interp[PATH_MAX * 2];
            sc_fmt(interp, sizeof interp, "%s/lib64/ld-linux-x86-64.so.2", rootfs);
            if (symlink(path, interp) != 0)
                sc_die("symlink %s", interp);
        }
    }
    fclose(maps);
    char busybox[PATH_MAX * 2];
    sc_fmt(busybox, sizeof busybox, "%s/bin/busybox", rootfs);
    copy_file("/bin/busybox", busybox, 0755);
}

static void must_mount(const char *source, const char *target, const char *type, unsigned long flags,
                       const char *data)
{
    char full[PATH_MAX * 2];
    sc_fmt(full, sizeof full, "%s%s", rootfs, target);
    if (mount(source, full, type, flags, data) != 0)
        sc_die("mount %s at %s", type ? type : source, full);
}

/* PID 1 of the new namespaces: the mounts, pivot_root, exec. */
static void make_namespace(char **argv)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        sc_die("making / private");
    if (mount(rootfs, rootfs, NULL, MS_BIND, NULL) != 0)
        sc_die("binding %s", rootfs);
    must_mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777,size=8m");
    /* After /tmp, which DIR may be in. */
    make_dirs(sc_dir);
    must_mount(sc_dir, sc_dir, NULL, MS_BIND, NULL);
    must_mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=1m");
    char path[PATH_MAX * 2];
    sc_fmt(path, sizeof path, "%s/dev/shm", rootfs);
    if (mkdir(path, 01777) != 0 || chmod(path, 01777) != 0)
        sc_die("mkdir %s", path);
    sc_fmt(path, sizeof path, "%s/dev/null", rootfs);
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) != 0 || chmod(path, 0666) != 0)
        sc_die("mknod %s", path);
    sc_fmt(path, sizeof path, "%s/dev/fd", rootfs);
    if (symlink("/proc/self/fd", path) != 0)
        sc_die("symlink %s", path);
    must_mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=4m");
    must_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    must_mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    if (sc_has_flag("--nosymfollow"))
        must_mount("tmpfs", "/mnt", "tmpfs", MS_NOSYMFOLLOW, "size=1m");
    if (sc_has_flag("--spaced-source"))
        must_mount("two words", "/mnt", "tmpfs", 0, "size=1m");
    if (sc_has_flag("--deleted-bind")) {
        char gone[PATH_MAX];
        sc_path(gone, sizeof gone, "gone");
        if (mkdir(gone, 0755) != 0)
            sc_die("mkdir %s", gone);
        must_mount(gone, "/mnt", NULL, MS_BIND, NULL);
        if (rmdir(gone) != 0)
            sc_die("rmdir %s", gone);
    }
    if (sc_has_flag("--overlay")) {
        char options[PATH_MAX * 4];
        sc_fmt(options, sizeof options, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", sc_dir, sc_dir, sc_dir);
        must_mount("overlay", "/mnt", "overlay", 0, options);
    }
    if (chdir(rootfs) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
        chdir("/") != 0)
        sc_die("pivot_root into %s", rootfs);
    /* stdin was the host's /dev/null, which the namespace does not reach: its own instead. */
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) != 0)
        sc_die("opening /dev/null");
    close(null);
    char *args[64];
    int n = 0;
    for (; argv[n] && n < 60; n++)
        args[n] = argv[n];
    args[n++] = "--inner";
    args[n] = NULL;
    execv("/proc/self/exe", args);
    sc_die("exec");
}

/* ---- inner: PID 1 in its namespaces ---- */

static char mounts_before[16384];
static int log_fd = -1, notes_fd = -1, null_fd = -1, ghost_fd = -1;
static struct stat work_before;
#define SPARSE_SIZE (12 << 20)
static pid_t sleeper;
static const struct timespec notes_times[2] = {{1700000000, 123456789}, {1600000000, 987654321}};

/* /proc/self/mountinfo without the mount IDs and devices (fields 1-3). */
static void read_mounts(char *out, size_t size)
{
    char text[16384];
    ssize_t n = sc_read_file("/proc/self/mountinfo", text, sizeof text - 1);
    if (n < 0)
        sc_die("reading /proc/self/mountinfo");
    text[n] = 0;
    out[0] = 0;
    size_t used = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *rest = line;
        for (int field = 0; field < 3 && rest; field++)
            rest = strchr(rest, ' ') ? strchr(rest, ' ') + 1 : NULL;
        if (!rest)
            sc_die("a mountinfo line of fewer fields: %s", line);
        used += (size_t)snprintf(out + used, size - used, "%s\n", rest);
        if (used >= size)
            sc_die("mountinfo too long");
    }
}

static void fill_notes(char *buffer)
{
    for (int i = 0; i < NOTES_SIZE; i++)
        buffer[i] = (char)('a' + (i * 7) % 26);
}

static void write_files(void)
{
    if (mkdir("/tmp/work", 0755) != 0 || mkdir("/tmp/work/empty", 0700) != 0)
        sc_die("mkdir /tmp/work");
    static char notes[NOTES_SIZE];
    fill_notes(notes);
    int fd = open("/tmp/work/notes", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0 || sc_write_all(fd, notes, sizeof notes) != 0 || fchmod(fd, 0640) != 0)
        sc_die("writing /tmp/work/notes");
    close(fd);
    if (utimensat(AT_FDCWD, "/tmp/work/notes", notes_times, 0) != 0)
        sc_die("utimensat");
    if (symlink("notes", "/tmp/work/link") != 0)
        sc_die("symlink");
    fd = open("/dev/shm/segment", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || sc_write_all(fd, "shared\n", 7) != 0)
        sc_die("writing /dev/shm/segment");
    close(fd);
    if (chdir("/tmp/work") != 0)
        sc_die("chdir /tmp/work");
    log_fd = open("log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0 || sc_write_all(log_fd, "before\n", 7) != 0 || flock(log_fd, LOCK_EX) != 0)
        sc_die("writing and locking /tmp/work/log");
    notes_fd = open("/tmp/work/notes", O_RDONLY);
    if (notes_fd < 0 || lseek(notes_fd, 4096, SEEK_SET) != 4096)
        sc_die("opening /tmp/work/notes");
    null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0)
        sc_die("opening /dev/null");
    fd = open("/tmp/work/sparse", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || pwrite(fd, "end", 3, SPARSE_SIZE - 3) != 3)
        sc_die("writing /tmp/work/sparse");
    close(fd);
    ghost_fd = open("/tmp/work/ghost", O_RDWR | O_CREAT | O_EXCL, 0600);
    if (ghost_fd < 0 || sc_write_all(ghost_fd, "boo", 3) != 0 || unlink("/tmp/work/ghost") != 0)
        sc_die("making /tmp/work/ghost");
    if (sc_has_flag("--hard-link") && link("/tmp/work/notes", "/tmp/work/notes2") != 0)
        sc_die("link");
    if (sc_has_flag("--xattr") && setxattr("/tmp/work/notes", "user.note", "x", 1, 0) != 0)
        sc_die("setxattr");
    int flags = FS_APPEND_FL, notes_file = open("/tmp/work/notes", O_RDONLY | O_CLOEXEC);
    if (sc_has_flag("--chattr") && (notes_file < 0 || ioctl(notes_file, FS_IOC_SETFLAGS, &flags) != 0))
        sc_die("chattr +a");
    close(notes_file);
    if (stat("/tmp/work", &work_before) != 0)
        sc_die("stat /tmp/work");
}

static void start_sleeper(void)
{
    sleeper = fork();
    if (sleeper < 0)
        sc_die("fork");
    if (sleeper == 0) {
        execl("/bin/busybox", "sleep", "1000", (char *)NULL);
        _exit(127);
    }
    char exe[PATH_MAX] = {0}, path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)sleeper);
    for (int i = 0; i < 10000; i++) {
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        exe[n < 0 ? 0 : n] = 0;
        if (strcmp(exe, "/bin/busybox") == 0)
            return;
        int status;
        if (waitpid(sleeper, &status, WNOHANG) == sleeper) {
            char text[64];
            errno = 0;
            sc_die("busybox sleep ended: %s", sc_status_text(status, text, sizeof text));
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sc_die("busybox sleep did not start: its exe is '%s'", exe);
}

static void check_file(const char *path, mode_t mode, const struct timespec *times)
{
    struct stat st;
    if (!sc_check(lstat(path, &st) == 0, "lstat %s: %s", path, strerror(errno)))
        return;
    sc_check(st.st_mode == mode, "%s has mode 0%o, was 0%o", path, st.st_mode, mode);
    if (times)
        sc_check(st.st_mtim.tv_sec == times[1].tv_sec && st.st_mtim.tv_nsec == times[1].tv_nsec,
                 "%s modified at %ld.%09ld, was %ld.%09ld", path, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                 (long)times[1].tv_sec, times[1].tv_nsec);
}

static void check_after(void)
{
    static char mounts_now[16384];
    read_mounts(mounts_now, sizeof mounts_now);
    sc_check(strcmp(mounts_now, mounts_before) == 0, "the mounts are now\n%s\nthey were\n%s", mounts_now,
             mounts_before);

    static char notes[NOTES_SIZE + 1], expected[NOTES_SIZE];
    fill_notes(expected);
    sc_check(sc_read_file("/tmp/work/notes", notes, sizeof notes) == NOTES_SIZE &&
                 memcmp(notes, expected, NOTES_SIZE) == 0,
             "/tmp/work/notes lost its contents");
    check_file("/tmp/work/notes", S_IFREG | 0640, notes_times);
    check_file("/tmp/work/empty", S_IFDIR | 0700, NULL);
    check_file("/tmp", S_IFDIR | 01777, NULL);
    check_file("/dev/shm", S_IFDIR | 01777, NULL);
    char target[64] = {0};
    sc_check(readlink("/tmp/work/link", target, sizeof target - 1) == 5 && strcmp(target, "notes") == 0,
             "/tmp/work/link points to '%s'", target);
    char shared[16] = {0};
    sc_check(sc_read_file("/dev/shm/segment", shared, sizeof shared - 1) == 7 && strcmp(shared, "shared\n") == 0,
             "/dev/shm/segment holds '%s'", shared);
    struct stat st;
    sc_check(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
             "/dev/null is not the null device");
    sc_check(write(null_fd, "x", 1) == 1, "writing to /dev/null: %s", strerror(errno));

    struct stat sparse = {0}, work = {0};
    char end[4] = {0}, boo[4] = {0};
    int sparse_fd = open("/tmp/work/sparse", O_RDONLY | O_CLOEXEC);
    sc_check(sparse_fd >= 0 && fstat(sparse_fd, &sparse) == 0 && sparse.st_size == SPARSE_SIZE &&
                 pread(sparse_fd, end, 3, SPARSE_SIZE - 3) == 3 && strcmp(end, "end") == 0 &&
                 sparse.st_blocks * 512 < (1 << 20),
             "/tmp/work/sparse is %lld bytes in %lld blocks, ending '%s'", (long long)sparse.st_size,
             (long long)sparse.st_blocks, end);
    close(sparse_fd);
    sc_check(pread(ghost_fd, boo, 3, 0) == 3 && strcmp(boo, "boo") == 0, "the unlinked ghost holds '%s'", boo);
    /* The log's lock is held again, though the file, made again in a new tmpfs, changed. */
    int other = open("/tmp/work/log", O_RDONLY | O_CLOEXEC);
    sc_check(other >= 0 && flock(other, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK,
             "/tmp/work/log is not locked by its flock any more");
    close(other);
    sc_check(stat("/tmp/work", &work) == 0 && work.st_mtim.tv_sec == work_before.st_mtim.tv_sec &&
                 work.st_mtim.tv_nsec == work_before.st_mtim.tv_nsec,
             "/tmp/work was modified at %ld.%09ld, now at %ld.%09ld", (long)work_before.st_mtim.tv_sec,
             work_before.st_mtim.tv_nsec, (long)work.st_mtim.tv_sec, work.st_mtim.tv_nsec);
    char cwd[PATH_MAX] = {0};
    sc_check(getcwd(cwd, sizeof cwd) && strcmp(cwd, "/tmp/work") == 0, "working directory '%s'", cwd);
    char byte = 0;
    sc_check(read(notes_fd, &byte, 1) == 1 && byte == expected[4096], "notes fd is not at offset 4096");
    struct stat by_fd, by_path;
    sc_check(fstat(notes_fd, &by_fd) == 0 && stat("/tmp/work/notes", &by_path) == 0 && by_fd.st_ino == by_path.st_ino &&
                 by_fd.st_dev == by_path.st_dev,
             "the notes fd is not on /tmp/work/notes");
    sc_check(sc_write_all(log_fd, "after\n", 6) == 0, "appending to the log: %s", strerror(errno));
    char log[64] = {0};
    sc_check(sc_read_file("/tmp/work/log", log, sizeof log - 1) == 13 && strcmp(log, "before\nafter\n") == 0,
             "/tmp/work/log holds '%s'", log);

    char self[16] = {0};
    sc_check(readlink("/proc/self", self, sizeof self - 1) > 0 && strcmp(self, "1") == 0,
             "/proc/self is '%s', not 1: /proc is not of its own PID namespace", self);
    char comm[32] = {0}, own[32] = {0};
    prctl(PR_GET_NAME, own, 0, 0, 0);
    sc_check(sc_read_file("/proc/1/comm", comm, sizeof comm - 1) > 0 && strncmp(comm, own, strlen(own)) == 0,
             "/proc/1/comm is '%s', not '%s'", comm, own);
    sc_check(mkdir("/sys/amber", 0755) != 0 && errno == EROFS, "/sys is not read-only");

    char exe[PATH_MAX] = {0}, path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)sleeper);
    sc_check(readlink(path, exe, sizeof exe - 1) > 0 && strcmp(exe, "/bin/busybox") == 0,
             "the busybox child %d runs '%s'", (int)sleeper, exe);
    int status;
    sc_check(kill(sleeper, SIGKILL) == 0 && waitpid(sleeper, &status, 0) == sleeper && WIFSIGNALED(status),
             "the busybox child %d is not ours to reap", (int)sleeper);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "mnt_namespace");
    if (!sc_has_flag("--inner")) {
        make_rootfs();
        if (unshare(CLONE_NEWNS) != 0)
            sc_die("unshare(CLONE_NEWNS)");
        sc_pidns_launch();
        make_namespace(argv);
    }
    sc_install_sigterm(0);
    write_files();
    start_sleeper();
    read_mounts(mounts_before, sizeof mounts_before);
    sc_pidns_root_ready();
    sc_wait_for_term();
    sc_check_common();
    check_after();
    sc_finish();
}
