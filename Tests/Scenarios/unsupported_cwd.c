/*
 * unsupported_cwd: a child whose working directory restore could not reopen by its path.
 * --gone-proc: /proc/PID of a grandchild it killed and reaped. `amber dump` of the root must
 * refuse, naming the child and the directory, and leave both running. After SIGTERM the root checks the child still has
 * that working directory, then kills and reaps it.
 */
#include "scenario.h"

static char ready_file[PATH_MAX];
static char directory[PATH_MAX];

static void child(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGTERM, SIG_DFL);
    pid_t gone = fork();
    if (gone < 0)
        _exit(3);
    if (gone == 0) {
        for (;;)
            pause();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)gone);
    int status;
    if (chdir(path) != 0 || kill(gone, SIGKILL) != 0 || waitpid(gone, &status, 0) != gone)
        _exit(4);
    sc_fmt(directory, sizeof directory, "%s", path);
    int fd = open(ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sc_write_all(fd, directory, strlen(directory)) != 0)
        _exit(5);
    close(fd);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_cwd");
    sc_install_sigterm(0);
    if (!sc_has_flag("--gone-proc"))
        sc_die("--gone-proc");
    sc_path(ready_file, sizeof ready_file, "child-ready");
    pid_t c = fork();
    if (c < 0)
        sc_die("fork");
    if (c == 0)
        child();
    if (sc_wait_for_file(ready_file, 10000) != 0)
        sc_die("the child did not set up");
    char expected[PATH_MAX] = {0};
    for (int tries = 0; sc_read_file(ready_file, expected, sizeof expected - 1) <= 0; tries++) {
        if (tries > 10000)
            sc_die("reading %s", ready_file);
        sc_sleep_ms(1);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char link[64], cwd[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)c);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    cwd[n < 0 ? 0 : n] = 0;
    sc_check(strncmp(cwd, expected, strlen(expected)) == 0, "the child's cwd is '%s', was '%s'", cwd, expected);
    int status;
    sc_check(kill(c, SIGKILL) == 0 && waitpid(c, &status, 0) == c, "the child %d is gone", (int)c);
    sc_finish();
}
