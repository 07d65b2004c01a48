/*
 * pidns_reaper: a PID namespace init (the dump root, launched as in pidns.c) that has to
 * reap orphans.
 *
 * The init (PID 1) forks a child C (PID 2), which forks two grandchildren: G, which stays
 * alive, and Z, which exits at once with status 9 (C does not reap it). Then C exits with 5
 * and the init reaps C (status checked). G and the zombie Z are orphans: the kernel
 * reparents both to the namespace init. G waits until getppid() is 1, then writes its ready
 * file. So at dump time the init has two children it did not fork: G, alive, and Z, a zombie.
 *
 * After SIGTERM: the init checks the common state, that Z is still its zombie child
 * (waitid WNOWAIT: exit 9) and G its live child, then SIGUSR1s G. G checks getpid(),
 * getppid() == 1, its NSpid (all but the host's PID), and exits with 77 (or 1). The init then
 * reaps with waitpid(-1): it must get exactly G (exit 77) and Z (exit 9), each once, and then
 * ECHILD.
 */
#include "scenario.h"

#define G_EXIT 77
#define Z_EXIT 9
#define C_EXIT 5

static volatile sig_atomic_t told;

static void on_usr1(int sig)
{
    (void)sig;
    told = 1;
}

static void file(char *out, size_t size, const char *name) { sc_path(out, size, name); }

static void grandchild_g(void)
{
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_NAME, "reaper-orphan", 0, 0, 0);
    pid_t self = getpid();
    char nspid[128], path[PATH_MAX], text[160];
    int levels = sc_read_nspid(0, nspid, sizeof nspid);
    /* wait for C to go: then our parent is the namespace init */
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 10000000000LL;
    while (getppid() != 1) {
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
            _exit(2);
        sc_sleep_ms(1);
    }
    sc_snapshot();
    snprintf(text, sizeof text, "%d\n", (int)self);
    file(path, sizeof path, "orphan-ready");
    if (sc_write_file_atomic(path, text) < 0)
        _exit(2);
    while (!told)
        sc_sleep_ms(20);
    sc_check_common();
    char now[128];
    int lnow = sc_read_nspid(0, now, sizeof now);
    int ok = sc_nfail == 0 && getpid() == self && getppid() == 1 && lnow == levels && levels == 2 &&
             strcmp(sc_nspid_inner(now), sc_nspid_inner(nspid)) == 0;
    if (!ok) {
        sc_fail("orphan: getpid() %d (was %d), getppid() %d, NSpid '%s' (was '%s')", (int)getpid(), (int)self,
                (int)getppid(), now, nspid);
        file(path, sizeof path, "orphan-result");
        sc_write_result(path);
        _exit(1);
    }
    _exit(G_EXIT);
}

static void child_c(void)
{
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_NAME, "reaper-child", 0, 0, 0);
    pid_t z = fork();
    if (z < 0)
        _exit(2);
    if (z == 0) {
        prctl(PR_SET_NAME, "reaper-zombie", 0, 0, 0);
        _exit(Z_EXIT);
    }
    pid_t g = fork();
    if (g < 0)
        _exit(2);
    if (g == 0)
        grandchild_g();
    /* Z must have ended (not reaped: WNOWAIT) before we go */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT) < 0 || si.si_status != Z_EXIT)
        _exit(3);
    char path[PATH_MAX], text[64];
    snprintf(text, sizeof text, "%d %d\n", (int)g, (int)z);
    file(path, sizeof path, "grandchildren");
    if (sc_write_file_atomic(path, text) < 0)
        _exit(2);
    _exit(C_EXIT);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "pidns_reaper");
    const char *stale[] = {"orphan-ready", "orphan-result", "grandchildren"};
    for (size_t i = 0; i < 3; i++) {
        char path[PATH_MAX];
        file(path, sizeof path, stale[i]);
        unlink(path);
    }
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, 0);

    sc_pidns_launch(); /* returns in the namespace init */
    char nspid[128];
    int levels = sc_read_nspid(0, nspid, sizeof nspid);
    errno = 0;
    if (levels != 2 || strcmp(sc_nspid_inner(nspid), "1") != 0)
        sc_die("the init's NSpid is '%s'", nspid);

    pid_t c = fork();
    if (c < 0)
        sc_die("fork");
    if (c == 0)
        child_c();
    int st = 0;
    char s[64];
    errno = 0;
    if (sc_wait_child(c, &st, 10000) != c || !WIFEXITED(st) || WEXITSTATUS(st) != C_EXIT)
        sc_die("the child %d: %s, expected exit %d", (int)c, sc_status_text(st, s, sizeof s), C_EXIT);
    char path[PATH_MAX], buf[64];
    file(path, sizeof path, "grandchildren");
    int g = 0, z = 0;
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        sscanf(buf, "%d %d", &g, &z);
    }
    if (g <= 0 || z <= 0)
        sc_die("no grandchildren file");
    file(path, sizeof path, "orphan-ready");
    if (sc_wait_for_file(path, 10000) < 0)
        sc_die("the orphan is not ready");
    /* both orphans are ours now: Z a zombie */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT | WNOHANG) < 0 || si.si_pid != z || si.si_status != Z_EXIT)
        sc_die("the orphaned zombie %d is not our child", z);

    sc_pidns_root_ready();
    sc_wait_for_term();
    sc_check_common();
    sc_check(getpid() == 1 && getppid() == 0, "the init has getpid() %d getppid() %d", (int)getpid(), (int)getppid());
    char now[128];
    int lnow = sc_read_nspid(0, now, sizeof now);
    sc_check(lnow == levels && strcmp(sc_nspid_inner(now), sc_nspid_inner(nspid)) == 0, "the init's NSpid '%s', was '%s'",
             now, nspid);

    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT | WNOHANG);
    sc_check(r == 0 && si.si_pid == z && si.si_code == CLD_EXITED && si.si_status == Z_EXIT,
             "the orphaned zombie %d: waitid %d, si_pid %d si_code %d si_status %d", z, r, (int)si.si_pid, si.si_code,
             si.si_status);
    sc_check(kill(g, 0) == 0, "the orphan %d is gone", g);
    sc_check(kill(g, SIGUSR1) == 0, "cannot signal the orphan %d: %s", g, strerror(errno));

    int got_g = 0, got_z = 0;
    for (int k = 0; k < 2; k++) {
        st = 0;
        pid_t w = sc_wait_child(-1, &st, 8000);
        if (!sc_check(w > 0, "waitpid(-1) #%d returned %d (%s)", k, (int)w, w < 0 ? strerror(errno) : "timeout"))
            break;
        if (w == g) {
            got_g++;
            sc_check(WIFEXITED(st) && WEXITSTATUS(st) == G_EXIT, "the orphan %d: %s, expected exit %d", g,
                     sc_status_text(st, s, sizeof s), G_EXIT);
        } else if (w == z) {
            got_z++;
            sc_check(WIFEXITED(st) && WEXITSTATUS(st) == Z_EXIT, "the orphaned zombie %d: %s, expected exit %d", z,
                     sc_status_text(st, s, sizeof s), Z_EXIT);
        } else {
            sc_fail("waitpid(-1) returned %d, neither orphan (%d, %d)", (int)w, g, z);
        }
    }
    sc_check(got_g == 1 && got_z == 1, "reaped the orphan %d times and the zombie %d times", got_g, got_z);
    pid_t w = waitpid(-1, &st, WNOHANG);
    sc_check(w < 0 && errno == ECHILD, "an unexpected child is left (waitpid(-1) returned %d)", (int)w);
    file(path, sizeof path, "orphan-result");
    char res[1024];
    n = sc_read_file(path, res, sizeof res - 1);
    if (n > 0) {
        res[n] = 0;
        res[strcspn(res, "\n")] = 0;
        sc_fail("orphan: %s", res);
    }
    sc_finish();
}
