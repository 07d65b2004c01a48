/*
 * unsupported_orphaned_session: a session whose leader has exited. The root is a child
 * subreaper; its child L calls setsid() and forks M, then exits, so M is reparented to the
 * root while it stays in L's session. No clone3 from a restored root can put M back into a
 * session nobody leads: `amber dump` of the root must refuse, naming M and its session, and
 * leave both running, untraced. After SIGTERM the root checks M is its child and still in
 * L's session, then kills and reaps it (L was reaped before ready). M has no parent-death
 * signal: it would fire when L exits; the runner's clean-up kills it with the root's tree.
 */
#include "scenario.h"
#include <sys/wait.h>

static pid_t leader, member;

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_orphaned_session");
    sc_install_sigterm(0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        sc_die("PR_SET_CHILD_SUBREAPER");
    char member_file[PATH_MAX];
    sc_fmt(member_file, sizeof member_file, "%s/member-pid", sc_dir);
    leader = fork();
    if (leader < 0)
        sc_die("fork");
    if (leader == 0) {
        if (setsid() < 0)
            _exit(3);
        pid_t m = fork();
        if (m < 0)
            _exit(4);
        if (m == 0) {
            signal(SIGTERM, SIG_DFL);
            for (;;)
                pause();
        }
        char text[32];
        int n = snprintf(text, sizeof text, "%d", (int)m);
        int fd = open(member_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || sc_write_all(fd, text, (size_t)n) != 0)
            _exit(5);
        close(fd);
        _exit(0);
    }
    int status;
    if (waitpid(leader, &status, 0) != leader || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        sc_die("the session leader failed (status 0x%x)", status);
    char text[32];
    ssize_t n = sc_read_file(member_file, text, sizeof text - 1);
    if (n <= 0)
        sc_die("no member PID");
    text[n] = 0;
    member = (pid_t)atoi(text);
    /* ready once the member is ours and asleep in pause() (system call 34) */
    for (;;) {
        char path[64], line[256], stat[512];
        snprintf(path, sizeof path, "/proc/%d/syscall", (int)member);
        ssize_t s = sc_read_file(path, line, sizeof line - 1);
        snprintf(path, sizeof path, "/proc/%d/stat", (int)member);
        ssize_t t = sc_read_file(path, stat, sizeof stat - 1);
        int ppid = 0;
        if (t > 0) {
            stat[t] = 0;
            char *p = strrchr(stat, ')');
            if (p)
                sscanf(p + 1, " %*c %d", &ppid);
        }
        if (s > 3 && strncmp(line, "34 ", 3) == 0 && ppid == getpid())
            break;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(waitpid(member, &status, WNOHANG) == 0, "the member %d is gone or not our child", (int)member);
    sc_check(getsid(member) == leader, "the member is in session %d, not %d", (int)getsid(member), (int)leader);
    kill(member, SIGKILL);
    sc_check(waitpid(member, &status, 0) == member && WIFSIGNALED(status), "the member did not die from SIGKILL");
    sc_finish();
}
