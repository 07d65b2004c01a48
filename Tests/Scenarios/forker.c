/*
 * forker: a process that forks short-lived children in a tight loop the whole time, also
 * while it is being dumped, plus three long-lived children.
 *
 * Each short-lived child n checks that getppid() is the forker and exits at once with
 * n % 97 (or 120 if its parent is wrong); the forker reaps it with waitpid(pid) and checks the
 * PID returned and the status. The loop counts forks and reaps, keeps the last 8 child PIDs
 * and statuses, and (in a stack variable as well as in .bss) the number of mismatches. A dump
 * may catch a child just forked, running or already a zombie: the restored forker must reap it
 * with the right status all the same.
 *
 * The three long-lived children (named "forker-keep-N") record their PID and parent and wait
 * for SIGUSR1; then they check getpid()/getppid() and exit with 10+N (or 1 if a check failed).
 *
 * After SIGTERM: forks == reaps (the child in flight, if any, has been reaped with the right
 * status), no mismatches, at least 100 forks since start and the count since ready agrees
 * with the stack copy; the last 8 child PIDs are positive, distinct and none of the long-lived
 * ones; forking still works (100 more children, statuses checked); the long-lived children are
 * our children with the PIDs recorded, each checks itself and exits 10+N; then there is no
 * other child (ECHILD).
 */
#include "scenario.h"

#define NKEEP 3
#define RING 8

static pid_t keep[NKEEP];
static pid_t me;
static volatile uint64_t forks, reaps, mismatches;
static volatile pid_t last_pid[RING];
static volatile int last_status[RING];
static volatile sig_atomic_t told;

static void on_usr1(int sig)
{
    (void)sig;
    told = 1;
}

/* One short-lived child: fork, reap, check. Returns 0 if everything matched. */
static int one_child(void)
{
    uint64_t n = forks;
    int code = (int)(n % 97);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(getppid() == me ? code : 120);
    forks = n + 1;
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    reaps = reaps + 1;
    last_pid[n % RING] = r;
    last_status[n % RING] = status;
    if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status) != code) {
        mismatches = mismatches + 1;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "forker");
    me = getpid();
    sc_install_sigterm(SA_RESTART);
    sc_handle(SIGUSR1, on_usr1, 0);

    for (int i = 0; i < NKEEP; i++) {
        char ready[PATH_MAX], name[32];
        snprintf(name, sizeof name, "keep-ready-%d", i);
        sc_path(ready, sizeof ready, name);
        unlink(ready);
        pid_t pid = fork();
        if (pid < 0)
            sc_die("fork");
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            snprintf(name, sizeof name, "forker-keep-%d", i);
            prctl(PR_SET_NAME, name, 0, 0, 0);
            pid_t self = getpid(), parent = getppid();
            sc_snapshot();
            if (sc_write_file_atomic(ready, "ready\n") < 0)
                _exit(2);
            while (!told) {
                if (getppid() != parent)
                    _exit(4); /* the forker died (a failed setup): do not linger */
                sc_sleep_ms(20);
            }
            sc_check_common();
            sc_check(getpid() == self && getppid() == parent, "keep");
            _exit(sc_nfail == 0 ? 10 + i : 1);
        }
        keep[i] = pid;
        if (sc_wait_for_file(ready, 10000) < 0)
            sc_die("long-lived child %d not ready", i);
    }

    /* a good number of forks before ready, so the loop runs at full speed when dumped */
    for (int i = 0; i < 100; i++)
        if (one_child() != 0)
            sc_die("short-lived child %d", i);
    uint64_t at_ready = forks;
    sc_ready();

    volatile uint64_t since_ready = 0;
    while (!sc_term) {
        if (one_child() < 0) {
            sc_fail("fork failed after %llu children: %s", (unsigned long long)forks, strerror(errno));
            break;
        }
        since_ready = since_ready + 1;
    }

    sc_check_common();
    sc_check(forks == reaps, "%llu forks but %llu reaps", (unsigned long long)forks, (unsigned long long)reaps);
    sc_check(mismatches == 0, "%llu children returned the wrong PID or status", (unsigned long long)mismatches);
    sc_check(forks >= 100, "only %llu forks", (unsigned long long)forks);
    sc_check(forks == at_ready + since_ready, "fork count %llu is not %llu (at ready) + %llu (counted on the stack)",
             (unsigned long long)forks, (unsigned long long)at_ready, (unsigned long long)since_ready);
    int nring = forks < RING ? (int)forks : RING;
    for (int i = 0; i < nring; i++) {
        uint64_t n = forks - 1 - (uint64_t)i;
        pid_t p = last_pid[n % RING];
        int st = last_status[n % RING];
        sc_check(p > 0 && p != me, "child #%llu had PID %d", (unsigned long long)n, (int)p);
        sc_check(WIFEXITED(st) && WEXITSTATUS(st) == (int)(n % 97), "child #%llu (pid %d) status %#x",
                 (unsigned long long)n, (int)p, st);
        for (int k = 0; k < NKEEP; k++)
            sc_check(p != keep[k], "child #%llu has the PID of long-lived child %d", (unsigned long long)n, k);
        for (int j = 0; j < i; j++)
            sc_check(p != last_pid[(forks - 1 - (uint64_t)j) % RING], "children #%llu and a later one share PID %d",
                     (unsigned long long)n, (int)p);
    }

    uint64_t before = forks;
    for (int i = 0; i < 100; i++)
        if (!sc_check(one_child() == 0, "fork after SIGTERM (#%d): %s", i, strerror(errno)))
            break;
    sc_check(forks == before + 100 && reaps == forks && mismatches == 0, "after 100 more: forks %llu reaps %llu",
             (unsigned long long)forks, (unsigned long long)reaps);

    for (int i = 0; i < NKEEP; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)keep[i]);
        ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
        int pp = -1;
        if (n > 0) {
            buf[n] = 0;
            char *p = strrchr(buf, ')');
            char state;
            if (p)
                sscanf(p + 1, " %c %d", &state, &pp);
        }
        sc_check(pp == me, "long-lived child %d (pid %d) has parent %d", i, (int)keep[i], pp);
        sc_check(kill(keep[i], SIGUSR1) == 0, "cannot signal long-lived child %d (pid %d): %s", i, (int)keep[i],
                 strerror(errno));
    }
    for (int i = 0; i < NKEEP; i++) {
        int st = 0;
        pid_t r = sc_wait_child(keep[i], &st, 5000);
        char s[64];
        sc_check(r == keep[i] && WIFEXITED(st) && WEXITSTATUS(st) == 10 + i,
                 "long-lived child %d (pid %d): waitpid returned %d, %s (expected exit %d)", i, (int)keep[i], (int)r,
                 sc_status_text(st, s, sizeof s), 10 + i);
    }
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    sc_check(r < 0 && errno == ECHILD, "an unexpected child is left (waitpid(-1) returned %d)", (int)r);
    sc_finish();
}
