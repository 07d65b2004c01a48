/*
 * signals: dispositions, the blocked mask, pending signals and the alternate stack.
 *
 * Set up:
 *  - handlers with distinct sa_flags and sa_mask: SIGUSR1 (SA_SIGINFO|SA_RESTART),
 *    SIGUSR2 (SA_NODEFER|SA_RESETHAND), SIGHUP (SA_ONSTACK|SA_SIGINFO), SIGINT (SA_SIGINFO),
 *    SIGCHLD (SA_NOCLDSTOP|SA_RESTART), SIGRTMIN+2 and SIGRTMIN+4 (SA_SIGINFO);
 *    SIGPIPE and SIGALRM ignored; SIGWINCH and SIGQUIT explicitly default;
 *  - blocked: SIGUSR1, SIGINT, SIGRTMIN+2, SIGRTMIN+4, SIGRTMIN+6 (nothing pending for it);
 *  - pending: SIGUSR1 queued to the process with value 0x1234 (shared pending), SIGRTMIN+2
 *    queued twice with values 11 and 22 (shared), SIGRTMIN+4 queued to the thread with value
 *    33 (rt_tgsigqueueinfo: private pending), SIGINT raised (private pending);
 *  - an alternate signal stack;
 *  - SIGTRAP blocked and queued to the thread with value 44: at its default disposition, or
 *    with --trap-handler caught by a handler (SA_SIGINFO). A restore single-steps injected
 *    calls, each forcing a SIGTRAP, only while neither is so.
 *
 * After SIGTERM: every disposition 1..64 equals what sigaction() reported at ready (handler,
 * flags including SA_RESTORER, restorer, mask; for SIG_DFL but SIGCHLD the handler alone,
 * which is what a dump keeps) and the expected handlers are where they
 * were put; the blocked mask and the pending set are exactly what they were; no handler ran
 * early; sigaltstack() reports the same stack. Then the pending signals are unblocked: each
 * handler must run with its si_value, si_code SI_QUEUE (SI_TKILL for SIGINT), si_pid == our
 * PID, and SIGRTMIN+2 in queue order. SIGHUP raised now must run on the alternate stack, and
 * SIGUSR2 must run once and reset to SIG_DFL.
 */
#include "scenario.h"

#define NSIG_MAX 64
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel flag glibc sets; not exported by <signal.h> */
#endif

static struct sigaction recorded[NSIG_MAX + 1];
static int recorded_ok[NSIG_MAX + 1];
static sigset_t blocked_ready, pending_ready;
static stack_t altstack_ready;
static char altstack[64 * 1024] __attribute__((aligned(16)));

/* what the handlers saw */
static volatile int usr1_runs, usr2_runs, int_runs, hup_runs, rt2_runs, rt4_runs, chld_runs;
static volatile int usr1_value, usr1_code, usr1_pid;
static volatile int int_code, int_pid;
static volatile int rt2_values[4], rt2_codes[4], rt2_pids[4];
static volatile int rt4_value, rt4_code, rt4_pid;
static volatile int hup_on_altstack, hup_ss_flags;
static volatile int trap_runs, trap_value;
static int trap_handler;

static void h_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr1_runs++;
    usr1_value = si->si_value.sival_int;
    usr1_code = si->si_code;
    usr1_pid = si->si_pid;
}

static void h_usr2(int sig)
{
    (void)sig;
    usr2_runs++;
}

static void h_int(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int_runs++;
    int_code = si->si_code;
    int_pid = si->si_pid;
}

static void h_hup(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    char local;
    hup_runs++;
    hup_on_altstack = &local >= altstack && &local < altstack + sizeof altstack;
    stack_t now;
    if (sigaltstack(NULL, &now) == 0)
        hup_ss_flags = now.ss_flags;
}

static void h_trap(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    trap_runs++;
    trap_value = si->si_value.sival_int;
}

static void h_chld(int sig)
{
    (void)sig;
    chld_runs++;
}

static void h_rt2(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int i = rt2_runs++;
    if (i < 4) {
        rt2_values[i] = si->si_value.sival_int;
        rt2_codes[i] = si->si_code;
        rt2_pids[i] = si->si_pid;
    }
}

static void h_rt4(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    rt4_runs++;
    rt4_value = si->si_value.sival_int;
    rt4_code = si->si_code;
    rt4_pid = si->si_pid;
}

static void set_handler(int sig, void *handler, int flags, const int *mask_sigs)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = handler;
    else
        sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    for (; mask_sigs && *mask_sigs; mask_sigs++)
        sigaddset(&sa.sa_mask, *mask_sigs);
    if (sigaction(sig, &sa, NULL) < 0)
        sc_die("sigaction(%d)", sig);
}

static int RT(int n) { return SIGRTMIN + n; }

static void setup(void)
{
    int m_usr1[] = {SIGUSR2, SIGHUP, 0};
    int m_usr2[] = {SIGINT, 0};
    int m_hup[] = {SIGQUIT, RT(3), 0};
    int m_int[] = {SIGUSR1, SIGWINCH, 0};
    int m_rt[] = {RT(7), 0};
    set_handler(SIGUSR1, (void *)h_usr1, SA_SIGINFO | SA_RESTART, m_usr1);
    set_handler(SIGUSR2, (void *)h_usr2, SA_NODEFER | SA_RESETHAND, m_usr2);
    set_handler(SIGHUP, (void *)h_hup, SA_ONSTACK | SA_SIGINFO, m_hup);
    set_handler(SIGINT, (void *)h_int, SA_SIGINFO, m_int);
    set_handler(SIGCHLD, (void *)h_chld, SA_NOCLDSTOP | SA_RESTART, NULL);
    set_handler(RT(2), (void *)h_rt2, SA_SIGINFO, m_rt);
    set_handler(RT(4), (void *)h_rt4, SA_SIGINFO | SA_RESTART, NULL);
    set_handler(SIGPIPE, (void *)SIG_IGN, 0, NULL);
    set_handler(SIGALRM, (void *)SIG_IGN, SA_RESTART, NULL);
    set_handler(SIGWINCH, (void *)SIG_DFL, 0, NULL);
    set_handler(SIGQUIT, (void *)SIG_DFL, 0, NULL);
    sc_install_sigterm(SA_RESTART);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGINT);
    sigaddset(&block, RT(2));
    sigaddset(&block, RT(4));
    sigaddset(&block, RT(6));
    sigaddset(&block, SIGTRAP);
    if (trap_handler)
        set_handler(SIGTRAP, (void *)h_trap, SA_SIGINFO, NULL);
    if (sigprocmask(SIG_BLOCK, &block, NULL) < 0)
        sc_die("sigprocmask");

    union sigval v;
    v.sival_int = 0x1234;
    if (sigqueue(getpid(), SIGUSR1, v) < 0)
        sc_die("sigqueue SIGUSR1");
    v.sival_int = 11;
    if (sigqueue(getpid(), RT(2), v) < 0)
        sc_die("sigqueue RT2");
    v.sival_int = 22;
    if (sigqueue(getpid(), RT(2), v) < 0)
        sc_die("sigqueue RT2");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = RT(4);
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = 33;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), RT(4), &si) < 0)
        sc_die("rt_tgsigqueueinfo RT4");
    si.si_signo = SIGTRAP;
    si.si_value.sival_int = 44;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), SIGTRAP, &si) < 0)
        sc_die("rt_tgsigqueueinfo SIGTRAP");
    if (raise(SIGINT) != 0)
        sc_die("raise SIGINT");

    stack_t ss;
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 0;
    if (sigaltstack(&ss, NULL) < 0)
        sc_die("sigaltstack");

    /* record */
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        recorded_ok[sig] = sigaction(sig, NULL, &recorded[sig]) == 0;
    sigprocmask(SIG_BLOCK, NULL, &blocked_ready);
    sigpending(&pending_ready);
    sigaltstack(NULL, &altstack_ready);
}

static int same_set(const sigset_t *a, const sigset_t *b, int *first_diff)
{
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        if (sigismember(a, sig) != sigismember(b, sig)) {
            *first_diff = sig;
            return 0;
        }
    return 1;
}

static void check_dispositions(void)
{
    for (int sig = 1; sig <= NSIG_MAX; sig++) {
        struct sigaction now;
        int ok = sigaction(sig, NULL, &now) == 0;
        if (!sc_check(ok == recorded_ok[sig], "sigaction(%d) %s now", sig, ok ? "works" : "fails"))
            continue;
        if (!ok)
            continue;
        struct sigaction *was = &recorded[sig];
        sc_check(now.sa_handler == was->sa_handler, "signal %d handler %p, was %p", sig, (void *)now.sa_handler,
                 (void *)was->sa_handler);
        /* amber keeps only the handler of a default disposition (SIGCHLD's flags act with SIG_DFL too) */
        if (was->sa_handler == SIG_DFL && sig != SIGCHLD)
            continue;
        sc_check(now.sa_flags == was->sa_flags, "signal %d sa_flags %#x, was %#x", sig, now.sa_flags, was->sa_flags);
        sc_check(now.sa_restorer == was->sa_restorer, "signal %d sa_restorer %p, was %p", sig,
                 (void *)now.sa_restorer, (void *)was->sa_restorer);
        int d = 0;
        sc_check(same_set(&now.sa_mask, &was->sa_mask, &d), "signal %d sa_mask differs at signal %d", sig, d);
    }
    /* and they are what setup() installed */
    struct { int sig; void *h; int flags; } want[] = {
        {SIGUSR1, (void *)h_usr1, SA_SIGINFO | SA_RESTART},
        {SIGUSR2, (void *)h_usr2, SA_NODEFER | SA_RESETHAND},
        {SIGHUP, (void *)h_hup, SA_ONSTACK | SA_SIGINFO},
        {SIGINT, (void *)h_int, SA_SIGINFO},
        {SIGCHLD, (void *)h_chld, SA_NOCLDSTOP | SA_RESTART},
        {RT(2), (void *)h_rt2, SA_SIGINFO},
        {RT(4), (void *)h_rt4, SA_SIGINFO | SA_RESTART},
        {SIGPIPE, (void *)SIG_IGN, 0},
        {SIGALRM, (void *)SIG_IGN, SA_RESTART},
        {SIGWINCH, (void *)SIG_DFL, 0},
        {SIGQUIT, (void *)SIG_DFL, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct sigaction now;
        sigaction(want[i].sig, NULL, &now);
        sc_check((void *)now.sa_handler == want[i].h, "signal %d has handler %p, expected %p", want[i].sig,
                 (void *)now.sa_handler, want[i].h);
        int flags = now.sa_flags & ~SA_RESTORER;
        sc_check(flags == want[i].flags, "signal %d has flags %#x, expected %#x", want[i].sig, flags, want[i].flags);
    }
    struct sigaction usr1;
    sigaction(SIGUSR1, NULL, &usr1);
    sc_check(sigismember(&usr1.sa_mask, SIGUSR2) && sigismember(&usr1.sa_mask, SIGHUP) &&
                 !sigismember(&usr1.sa_mask, SIGINT),
             "SIGUSR1 sa_mask is not {SIGUSR2, SIGHUP}");
    struct sigaction hup;
    sigaction(SIGHUP, NULL, &hup);
    sc_check(sigismember(&hup.sa_mask, SIGQUIT) && sigismember(&hup.sa_mask, RT(3)), "SIGHUP sa_mask lacks SIGQUIT or SIGRTMIN+3");
}

static void check_masks(void)
{
    sigset_t now;
    int d = 0;
    sigprocmask(SIG_BLOCK, NULL, &now);
    sc_check(same_set(&now, &blocked_ready, &d), "blocked mask differs at signal %d (%s now)", d,
             sigismember(&now, d) ? "blocked" : "not blocked");
    sigpending(&now);
    sc_check(same_set(&now, &pending_ready, &d), "pending set differs at signal %d (%s now)", d,
             sigismember(&now, d) ? "pending" : "not pending");
    int expect_pending[] = {SIGUSR1, SIGINT, RT(2), RT(4), SIGTRAP};
    for (size_t i = 0; i < 5; i++)
        sc_check(sigismember(&now, expect_pending[i]), "signal %d is not pending", expect_pending[i]);
    sc_check(!sigismember(&now, RT(6)), "SIGRTMIN+6 is pending but was never sent");
    sc_check(usr1_runs == 0 && int_runs == 0 && rt2_runs == 0 && rt4_runs == 0 && hup_runs == 0 && usr2_runs == 0 &&
                 chld_runs == 0 && trap_runs == 0,
             "a handler ran before its signal was unblocked or raised (usr1 %d int %d rt2 %d rt4 %d hup %d usr2 %d chld %d)",
             usr1_runs, int_runs, rt2_runs, rt4_runs, hup_runs, usr2_runs, chld_runs);

    stack_t ss;
    sigaltstack(NULL, &ss);
    sc_check(ss.ss_sp == altstack_ready.ss_sp && ss.ss_size == altstack_ready.ss_size &&
                 ss.ss_flags == altstack_ready.ss_flags,
             "sigaltstack is %p/%zu/%#x, was %p/%zu/%#x", ss.ss_sp, ss.ss_size, ss.ss_flags, altstack_ready.ss_sp,
             altstack_ready.ss_size, altstack_ready.ss_flags);
    sc_check(ss.ss_sp == altstack && ss.ss_size == sizeof altstack && ss.ss_flags == 0,
             "sigaltstack is not the one set up (%p/%zu/%#x)", ss.ss_sp, ss.ss_size, ss.ss_flags);
}

static void check_delivery(void)
{
    pid_t me = getpid();
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGUSR1);
    sigaddset(&unblock, SIGINT);
    sigaddset(&unblock, RT(2));
    sigaddset(&unblock, RT(4));
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);

    sc_check(usr1_runs == 1, "SIGUSR1 handler ran %d times after unblocking", usr1_runs);
    sc_check(usr1_value == 0x1234, "SIGUSR1 si_value %#x, expected 0x1234", usr1_value);
    sc_check(usr1_code == SI_QUEUE, "SIGUSR1 si_code %d, expected SI_QUEUE", usr1_code);
    sc_check(usr1_pid == me, "SIGUSR1 si_pid %d, expected %d", usr1_pid, me);
    sc_check(int_runs == 1, "SIGINT handler ran %d times after unblocking", int_runs);
    sc_check(int_code == SI_TKILL, "SIGINT si_code %d, expected SI_TKILL", int_code);
    sc_check(int_pid == me, "SIGINT si_pid %d, expected %d", int_pid, me);
    sc_check(rt2_runs == 2, "SIGRTMIN+2 handler ran %d times, expected 2 (both queued)", rt2_runs);
    sc_check(rt2_values[0] == 11 && rt2_values[1] == 22, "SIGRTMIN+2 values %d, %d; expected 11, 22 in that order",
             rt2_values[0], rt2_values[1]);
    sc_check(rt2_codes[0] == SI_QUEUE && rt2_codes[1] == SI_QUEUE, "SIGRTMIN+2 si_code %d, %d", rt2_codes[0], rt2_codes[1]);
    sc_check(rt2_pids[0] == me && rt2_pids[1] == me, "SIGRTMIN+2 si_pid %d, %d", rt2_pids[0], rt2_pids[1]);
    sc_check(rt4_runs == 1, "SIGRTMIN+4 handler ran %d times", rt4_runs);
    sc_check(rt4_value == 33 && rt4_code == SI_QUEUE && rt4_pid == me,
             "SIGRTMIN+4 (thread-directed) si_value %d si_code %d si_pid %d", rt4_value, rt4_code, rt4_pid);

    /* SIGTRAP: taken by its handler, or at its default (which would end the process) by sigtimedwait. */
    sigset_t trap;
    sigemptyset(&trap);
    sigaddset(&trap, SIGTRAP);
    if (trap_handler) {
        sigprocmask(SIG_UNBLOCK, &trap, NULL);
        sc_check(trap_runs == 1 && trap_value == 44, "SIGTRAP handler ran %d times, si_value %d", trap_runs, trap_value);
    } else {
        struct timespec now = {0, 0};
        siginfo_t taken;
        int got = sigtimedwait(&trap, &taken, &now);
        sc_check(got == SIGTRAP && taken.si_value.sival_int == 44 && taken.si_code == SI_QUEUE,
                 "queued SIGTRAP: sigtimedwait %d, si_value %d, si_code %d", got, got == SIGTRAP ? taken.si_value.sival_int : 0,
                 got == SIGTRAP ? taken.si_code : 0);
    }

    sigset_t pend;
    sigpending(&pend);
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        sc_check(!sigismember(&pend, sig), "signal %d still pending after unblocking", sig);

    raise(SIGHUP);
    sc_check(hup_runs == 1, "SIGHUP handler ran %d times", hup_runs);
    sc_check(hup_on_altstack, "SA_ONSTACK handler did not run on the alternate stack");
    sc_check(hup_ss_flags == SS_ONSTACK, "sigaltstack in the SA_ONSTACK handler says flags %#x", hup_ss_flags);

    raise(SIGUSR2);
    sc_check(usr2_runs == 1, "SIGUSR2 handler ran %d times", usr2_runs);
    struct sigaction after;
    sigaction(SIGUSR2, NULL, &after);
    sc_check(after.sa_handler == SIG_DFL, "SIGUSR2 (SA_RESETHAND) not reset to SIG_DFL after delivery");

    /* SIG_IGN really ignores */
    raise(SIGPIPE);
    raise(SIGALRM);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "signals");
    trap_handler = sc_has_flag("--trap-handler");
    setup();
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    check_dispositions();
    check_masks();
    check_delivery();
    sc_finish();
}
