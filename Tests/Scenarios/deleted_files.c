/*
 * deleted_files: "gone", created, filled ("still here" at 0, "tail" at 64 KiB), made 1 MiB long
 * (a sparse tail), mode 0640, modified at 123456.987654321 (futimens), unlinked and left at offset 3, with a second description of it
 * (reopened through /proc/self/fd, read-only and non-blocking, at 7); "empty", unlinked with
 * nothing in it; and "log", write-only, appending and O_NOFOLLOW (as sqlite opens its temp
 * files), holding "abc"; "heap", read-write and O_NOFOLLOW, one page mapped shared and written
 * through the mapping (Python's multiprocessing heap). A child shares them all but "heap". After SIGTERM each is still deleted (no link, its /proc
 * link as before), holds what it held with its size and mode, its name is free, and the child,
 * signalled, writes through its copy what the parent then reads through both descriptions.
 * With --deleted-exe it first runs from a copy of its program ("program-copy"), removed once
 * it runs (an upgraded or removed program): its /proc/self/exe still names the copy, deleted.
 */
#include "scenario.h"
#include <sys/mman.h>

#define MIB (1 << 20)

static int gone_fd, reader_fd, empty_fd, log_fd, heap_fd;
static char gone_path[PATH_MAX], empty_path[PATH_MAX], log_path[PATH_MAX], heap_path[PATH_MAX];
static char *heap;

static void on_usr1(int signal)
{
    (void)signal;
    if (pwrite(gone_fd, "child!", 6, 100) != 6)
        _exit(3);
    _exit(0);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

static void check_bytes(int fd, off_t offset, const char *expected, size_t length, const char *what)
{
    char buffer[64];
    ssize_t n = pread(fd, buffer, length, offset);
    sc_check(n == (ssize_t)length && memcmp(buffer, expected, length) == 0, "%s: read %zd bytes at %lld, not the %zu expected",
             what, n, (long long)offset, length);
}

static void check_file(int fd, off_t size, mode_t mode, const char *what)
{
    struct stat status = {0};
    sc_check(fstat(fd, &status) == 0 && status.st_size == size && (status.st_mode & 07777) == mode &&
                 status.st_nlink == 0 && status.st_uid == getuid(),
             "%s: size %lld, mode %o, %lu links, uid %u; expected %lld, %o, 0, %u", what, (long long)status.st_size,
             status.st_mode & 07777, (unsigned long)status.st_nlink, status.st_uid, (long long)size, mode, getuid());
}

static char exe_copy[PATH_MAX];

/* --deleted-exe: runs again from a copy of the program (the same PID), then removes the copy. */
static void run_from_deleted_copy(int argc, char **argv)
{
    sc_path(exe_copy, sizeof exe_copy, "program-copy");
    if (sc_has_flag("--from-copy")) {
        if (unlink(exe_copy) != 0)
            sc_die("unlink %s", exe_copy);
        return;
    }
    static char program[1 << 20];
    int from = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ssize_t size = from < 0 ? -1 : read(from, program, sizeof program);
    int to = open(exe_copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (size <= 0 || size == (ssize_t)sizeof program || to < 0 || sc_write_all(to, program, (size_t)size) < 0)
        sc_die("copying the program to %s", exe_copy);
    close(from);
    close(to);
    char **again = calloc((size_t)argc + 2, sizeof(char *));
    for (int i = 0; i < argc; i++)
        again[i] = argv[i];
    again[argc] = "--from-copy";
    execv(exe_copy, again);
    sc_die("execv %s", exe_copy);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "deleted_files");
    if (sc_has_flag("--deleted-exe"))
        run_from_deleted_copy(argc, argv);
    sc_install_sigterm(0);
    sc_path(gone_path, sizeof gone_path, "gone");
    sc_path(empty_path, sizeof empty_path, "empty");
    sc_path(log_path, sizeof log_path, "log-file");
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CREAT | O_EXCL, 0600);
    if (log_fd < 0 || write(log_fd, "abc", 3) != 3 || unlink(log_path) != 0)
        sc_die("making %s", log_path);
    gone_fd = open(gone_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    empty_fd = open(empty_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (gone_fd < 0 || empty_fd < 0)
        sc_die("creating the files");
    if (pwrite(gone_fd, "still here", 10, 0) != 10 || pwrite(gone_fd, "tail", 4, 64 << 10) != 4 ||
        ftruncate(gone_fd, MIB) != 0 || fchmod(gone_fd, 0640) != 0 || lseek(gone_fd, 3, SEEK_SET) != 3)
        sc_die("filling %s", gone_path);
    struct timespec times[2] = {{0, UTIME_OMIT}, {123456, 987654321}};
    if (futimens(gone_fd, times) != 0)
        sc_die("setting the modification time of %s", gone_path);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", gone_fd);
    reader_fd = open(path, O_RDONLY | O_NONBLOCK);
    if (reader_fd < 0 || lseek(reader_fd, 7, SEEK_SET) != 7)
        sc_die("reopening %s", gone_path);
    if (unlink(gone_path) != 0 || unlink(empty_path) != 0)
        sc_die("unlinking the files");
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    /* The parent's alone: a description the child shared would be made first, with its flags. */
    sc_path(heap_path, sizeof heap_path, "heap");
    heap_fd = open(heap_path, O_RDWR | O_NOFOLLOW | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (heap_fd < 0 || unlink(heap_path) != 0 || ftruncate(heap_fd, 4096) != 0 ||
        (heap = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, heap_fd, 0)) == MAP_FAILED)
        sc_die("making %s", heap_path);
    memcpy(heap, "heap", 4);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--deleted-exe")) {
        char link[PATH_MAX + 16], expected[PATH_MAX + 16];
        ssize_t n = readlink("/proc/self/exe", link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        snprintf(expected, sizeof expected, "%s (deleted)", exe_copy);
        sc_check(strcmp(link, expected) == 0, "/proc/self/exe is %s, expected %s", link, expected);
    }
    check_file(gone_fd, MIB, 0640, "the deleted file");
    struct stat modified = {0};
    sc_check(fstat(gone_fd, &modified) == 0 && modified.st_mtim.tv_sec == 123456 && modified.st_mtim.tv_nsec == 987654321,
             "the deleted file's modification time is %lld.%09ld", (long long)modified.st_mtim.tv_sec,
             modified.st_mtim.tv_nsec);
    check_bytes(gone_fd, 0, "still here", 10, "the deleted file");
    check_bytes(reader_fd, 64 << 10, "tail", 4, "the deleted file's tail");
    char zeros[64] = {0};
    check_bytes(reader_fd, MIB - 64, zeros, 64, "the deleted file's sparse end");
    check_file(empty_fd, 0, 0600, "the empty deleted file");
    sc_check(access(gone_path, F_OK) != 0 && errno == ENOENT, "%s has a name again", gone_path);
    sc_check(access(empty_path, F_OK) != 0 && errno == ENOENT, "%s has a name again", empty_path);
    check_file(log_fd, 3, 0600, "the appending deleted file");
    sc_check(write(log_fd, "d", 1) == 1 && lseek(log_fd, 0, SEEK_CUR) == 4, "the appending deleted file does not append");

    sc_check(memcmp(heap, "heap", 4) == 0, "the mapped deleted file lost its bytes");
    sc_check(pwrite(heap_fd, "HEAP", 4, 0) == 4 && memcmp(heap, "HEAP", 4) == 0,
             "the mapped deleted file's mapping does not see what its descriptor writes");
    sc_check(fcntl(heap_fd, F_GETFL) & O_NOFOLLOW, "the mapped deleted file's description lost O_NOFOLLOW");

    kill(child, SIGUSR1);
    int status;
    sc_check(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child did not write to the deleted file");
    check_bytes(gone_fd, 100, "child!", 6, "the child's write to the deleted file");
    check_bytes(reader_fd, 100, "child!", 6, "the child's write, through the second description");
    sc_finish();
}
