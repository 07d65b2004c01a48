/*
 * unsupported_setns: a task that entered a PID namespace from outside. The root has two
 * children: A, the init of a new PID namespace, and B, which joins A's namespace with setns
 * and forks C there. C is B's child but lives in a namespace that is not inside B's, which
 * no clone3 from a restored B can recreate: `amber dump` of the root must refuse, naming C,
 * and leave all four running, untraced. After SIGTERM the root checks A and B are still its
 * children and that C still runs in A's namespace, then kills C (which B reaps, exiting 0),
 * reaps B and kills and reaps A. Every child dies with its parent (PR_SET_PDEATHSIG).
 * --unshare: the root also calls unshare(CLONE_NEWPID) once they all run, so that its next
 * children would be made in a new PID namespace: refused too, naming the root.
 */
#include "scenario.h"
#include <sched.h>
#include <sys/wait.h>

static pid_t a, b;
static char c_file[PATH_MAX];

static void sleep_forever(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGTERM, SIG_DFL);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_setns");
    sc_install_sigterm(0);
    sc_fmt(c_file, sizeof c_file, "%s/c-pid", sc_dir);
    a = (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
    if (a < 0)
        sc_die("clone(CLONE_NEWPID)");
    if (a == 0)
        sleep_forever();
    b = fork();
    if (b < 0)
        sc_die("fork");
    if (b == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)a);
        int ns = open(path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWPID) != 0)
            _exit(3);
        close(ns);
        pid_t c = fork();
        if (c < 0)
            _exit(4);
        if (c == 0)
            sleep_forever();
        /* B cannot name C by its PID out here: publish C's PID as the host sees it. */
        char line[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
        ssize_t n = sc_read_file(path, line, sizeof line - 1);
        if (n <= 0)
            _exit(5);
        line[n] = 0;
        int fd = open(c_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || sc_write_all(fd, line, strlen(line)) != 0)
            _exit(6);
        close(fd);
        signal(SIGTERM, SIG_DFL);
        int status;
        _exit(waitpid(c, &status, 0) == c && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : 7);
    }
    char text[64];
    for (;;) {
        ssize_t n = sc_read_file(c_file, text, sizeof text - 1);
        if (n > 0)
            break;
        int status;
        if (waitpid(b, &status, WNOHANG) == b)
            sc_die("B failed to set up (status 0x%x)", status);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    text[sizeof text - 1] = 0;
    pid_t c = (pid_t)atoi(text);
    if (sc_has_flag("--unshare") && unshare(CLONE_NEWPID) != 0)
        sc_die("unshare(CLONE_NEWPID)");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    int status;
    sc_check(waitpid(a, &status, WNOHANG) == 0, "A (%d) is gone", (int)a);
    sc_check(waitpid(b, &status, WNOHANG) == 0, "B (%d) is gone", (int)b);
    char c_ns[64], a_ns[64], path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)c);
    ssize_t cn = readlink(path, c_ns, sizeof c_ns - 1);
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)a);
    ssize_t an = readlink(path, a_ns, sizeof a_ns - 1);
    sc_check(cn > 0 && an > 0 && cn == an && memcmp(c_ns, a_ns, (size_t)cn) == 0, "C (%d) is not in A's PID namespace", (int)c);
    kill(c, SIGKILL);
    sc_check(waitpid(b, &status, 0) == b && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "B did not reap C killed by SIGKILL (status 0x%x)", status);
    kill(a, SIGKILL);
    sc_check(waitpid(a, &status, 0) == a && WIFSIGNALED(status), "A did not die from SIGKILL");
    sc_finish();
}
