/*
 * memfd: three memfds. "amber memfd" (sealable) holds "hello" at 0 and a page of 'x' at 1 MiB,
 * is 3 MiB long (a sparse tail), mode 0640, sealed against growing and shrinking, at offset
 * 123, with a second description of it (reopened through /proc/self/fd, read-only, at 5).
 * "plain" (made without MFD_ALLOW_SEALING: F_SEAL_SEAL) holds "abc"; "noexec" (MFD_NOEXEC_SEAL)
 * holds ten bytes. A child shares them all. After SIGTERM each holds what it held, with its
 * size, mode and seals, the seals still refuse what they refused, the holes are holes, and
 * the child, signalled, writes through its copy what the parent then reads through both of
 * its descriptions: one memfd in both processes.
 * "script" holds a shell script, mode 0755, mapped shared and writable: executed with
 * execveat(AT_EMPTY_PATH), it exits 7, before and after (its own description counts as no
 * writer of it, so the exec is not refused with ETXTBSY). A second child runs `sleep` from a
 * memfd ("sleeper", fexecve, as runc re-executes itself): afterwards it still does, its exe
 * the memfd.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

#define MIB (1 << 20)

static int sealed_fd, reader_fd, plain_fd, noexec_fd, script_fd;

static int run_script(void)
{
    pid_t child = fork();
    if (child == 0) {
        char *args[] = {"script", NULL}, *environment[] = {NULL};
        syscall(SYS_execveat, script_fd, "", args, environment, AT_EMPTY_PATH);
        _exit(100 + errno);
    }
    int status;
    return waitpid(child, &status, 0) == child && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A child running `sleep` from a memfd copy of it. */
static pid_t start_sleeper(void)
{
    int program = open("/bin/sleep", O_RDONLY | O_CLOEXEC);
    int copy = memfd_create("sleeper", MFD_CLOEXEC);
    struct stat status;
    off_t offset = 0;
    if (program < 0 || copy < 0 || fstat(program, &status) != 0 ||
        sendfile(copy, program, &offset, (size_t)status.st_size) != status.st_size)
        sc_die("copying /bin/sleep into a memfd");
    close(program);
    pid_t child = fork();
    if (child == 0) {
        char *args[] = {"sleep", "1000", NULL};
        fexecve(copy, args, environ);
        _exit(99);
    }
    close(copy);
    return child;
}

static void on_usr1(int signal)
{
    (void)signal;
    if (pwrite(sealed_fd, "child!", 6, 200) != 6)
        _exit(3);
    _exit(0);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

static void check_bytes(int fd, off_t offset, const char *expected, size_t length, const char *what)
{
    char buffer[4096];
    ssize_t n = pread(fd, buffer, length, offset);
    sc_check(n == (ssize_t)length && memcmp(buffer, expected, length) == 0, "%s: read %zd bytes at %lld, not the %zu expected",
             what, n, (long long)offset, length);
}

static void check_file(int fd, off_t size, mode_t mode, int seals, const char *what)
{
    struct stat status = {0};
    sc_check(fstat(fd, &status) == 0 && status.st_size == size && (status.st_mode & 07777) == mode &&
                 status.st_nlink == 0,
             "%s: size %lld, mode %o, %lu links; expected %lld, %o, 0", what, (long long)status.st_size,
             status.st_mode & 07777, (unsigned long)status.st_nlink, (long long)size, mode);
    int now = fcntl(fd, F_GET_SEALS);
    sc_check(now == seals, "%s has the seals %#x, expected %#x", what, now, seals);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "memfd");
    sc_install_sigterm(0);
    sealed_fd = memfd_create("amber memfd", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    plain_fd = memfd_create("plain", 0);
    noexec_fd = memfd_create("noexec", MFD_NOEXEC_SEAL);
    if (sealed_fd < 0 || plain_fd < 0 || noexec_fd < 0)
        sc_die("memfd_create");
    char page[4096];
    memset(page, 'x', sizeof page);
    if (pwrite(sealed_fd, "hello", 5, 0) != 5 || pwrite(sealed_fd, page, sizeof page, MIB) != sizeof page ||
        ftruncate(sealed_fd, 3 * MIB) != 0 || fchmod(sealed_fd, 0640) != 0 ||
        fcntl(sealed_fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0 || lseek(sealed_fd, 123, SEEK_SET) != 123)
        sc_die("filling the sealed memfd");
    if (write(plain_fd, "abc", 3) != 3 || write(noexec_fd, "0123456789", 10) != 10)
        sc_die("filling the memfds");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", sealed_fd);
    reader_fd = open(path, O_RDONLY);
    if (reader_fd < 0 || lseek(reader_fd, 5, SEEK_SET) != 5)
        sc_die("reopening the memfd");
    static const char script[] = "#!/bin/sh\nexit 7\n";
    script_fd = memfd_create("script", 0);
    char *script_page = script_fd < 0 ? MAP_FAILED
                                      : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, script_fd, 0);
    if (script_page == MAP_FAILED || write(script_fd, script, sizeof script - 1) != sizeof script - 1 ||
        fchmod(script_fd, 0755) != 0)
        sc_die("making the script memfd");
    if (run_script() != 7)
        sc_die("the script memfd does not run");
    pid_t sleeper = start_sleeper();
    char exe[64], link[128] = {0};
    snprintf(exe, sizeof exe, "/proc/%d/exe", (int)sleeper);
    for (int tries = 0; tries < 2000 && (readlink(exe, link, sizeof link - 1) <= 0 || !strstr(link, "memfd:sleeper")); tries++)
        usleep(1000);
    if (!strstr(link, "memfd:sleeper"))
        sc_die("the sleeper does not run from its memfd");
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_file(sealed_fd, 3 * MIB, 0640, F_SEAL_GROW | F_SEAL_SHRINK, "the sealed memfd");
    check_bytes(sealed_fd, 0, "hello", 5, "the sealed memfd");
    check_bytes(reader_fd, MIB, page, sizeof page, "the sealed memfd's page at 1 MiB");
    char zeros[4096] = {0};
    check_bytes(sealed_fd, 2 * MIB, zeros, sizeof zeros, "the sealed memfd's tail");
    sc_check(lseek(reader_fd, MIB + 4096, SEEK_DATA) < 0 && errno == ENXIO,
             "the sealed memfd has data after its page at 1 MiB: its holes were filled");
    sc_check(ftruncate(sealed_fd, 4 * MIB) != 0 && errno == EPERM, "the sealed memfd grew");
    sc_check(ftruncate(sealed_fd, MIB) != 0 && errno == EPERM, "the sealed memfd shrank");
    check_file(plain_fd, 3, 0777, F_SEAL_SEAL, "the memfd made without sealing");
    check_bytes(plain_fd, 0, "abc", 3, "the memfd made without sealing");
    sc_check(fcntl(plain_fd, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM, "the memfd made without sealing took a seal");
    check_file(noexec_fd, 10, 0666, F_SEAL_EXEC, "the noexec memfd");
    check_bytes(noexec_fd, 0, "0123456789", 10, "the noexec memfd");
    sc_check(fchmod(noexec_fd, 0777) != 0 && errno == EPERM, "the noexec memfd became executable");

    /* The child's write shows through both of the parent's descriptions. */
    kill(child, SIGUSR1);
    int status;
    sc_check(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child did not write to the memfd");
    check_bytes(sealed_fd, 200, "child!", 6, "the child's write to the memfd");
    check_bytes(reader_fd, 200, "child!", 6, "the child's write, through the second description");
    int ran = run_script();
    sc_check(ran == 7, "the script memfd exits %d, not 7 (100 + errno: its exec failed)", ran);
    sc_check(script_page[0] == '#', "the script's shared mapping lost its bytes");
    memset(link, 0, sizeof link);
    sc_check(readlink(exe, link, sizeof link - 1) > 0 && strstr(link, "/memfd:sleeper") == link,
             "the sleeper's exe is %s, not its memfd", link);
    sc_check(kill(sleeper, SIGKILL) == 0 && waitpid(sleeper, &status, 0) == sleeper && WIFSIGNALED(status) &&
                 WTERMSIG(status) == SIGKILL,
             "the sleeper was not running");
    sc_finish();
}
