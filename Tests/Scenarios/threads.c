/*
 * threads: one process, 8 threads (main + 7 pthreads), each with its own state.
 *
 * Every thread i (0 is main) has:
 *  - registers held across the checkpoint: an inline-asm loop loads distinct values into
 *    rbx, r8-r10, r12-r15 and ymm0-ymm15, then sleeps in nanosleep (10 ms, a raw syscall,
 *    which preserves all of them) until a flag is set, and stores them again; a dump finds
 *    the values only in the thread's registers;
 *  - a distinct __thread value (and its address and fs_base recorded);
 *  - a distinct blocked mask (pthread_sigmask): SIGRTMIN+i, plus SIGTERM in all but main
 *    (so SIGTERM goes to main), plus SIGUSR1 in thread 5;
 *  - its own name (pthread_setname_np "thr-i"; main keeps the process name);
 * thread 3 has a sigaltstack (the others have none), and thread 5 has a thread-directed
 * SIGUSR1 pending (pthread_kill before ready; /proc/.../task/TID/status SigPnd, not ShdPnd).
 * Ready once every thread sits in nanosleep inside its register loop.
 *
 * After SIGTERM (main's handler ends main's loop): main checks the common state, its own
 * registers, TLS, mask, and that /proc/self/task lists exactly the 8 recorded TIDs; then it
 * sets the flag for the threads. Each thread checks gettid(), pthread_self(), its TLS value
 * and address, fs_base, mask, name (pthread_getname_np and /proc/self/task/TID/comm), the
 * registers, its sigaltstack (thread 3 then raises SIGHUP on itself: the SA_ONSTACK handler
 * must run on that stack, in that thread); thread 5 checks SIGUSR1 is still pending for it
 * alone, unblocks it and its handler must run once, in thread 5, with SI_TKILL from our PID.
 * Main joins every thread with pthread_timedjoin_np (which needs clear_child_tid to work),
 * then /proc/self/task must list main only.
 */
#include "scenario.h"
#include <asm/prctl.h>
#include <pthread.h>
#include <stddef.h>

#define NT 8
#define ALT_THREAD 3
#define PENDING_THREAD 5

struct regs {
    unsigned char yin[16][32];
    unsigned char yout[16][32];
    uint64_t gin[8];
    uint64_t gout[8];
    struct timespec ts;
    volatile int *flag;
} __attribute__((aligned(64)));

struct thr {
    struct regs R;
    pthread_t handle;
    pid_t tid;
    int idx;
    char name[16];
    sigset_t mask;
    uint64_t *tls_addr;
    uint64_t fsbase;
    stack_t alt;
    volatile int started;
    int nfail;
    char fails[2048];
};

static struct thr T[NT];
static __thread uint64_t tls_val;
static volatile int threads_go;   /* main → threads: check now */
static volatile int main_go;      /* SIGTERM → main's register loop */
static char altstack[64 * 1024] __attribute__((aligned(16)));
static volatile int hup_runs, hup_tid, hup_on_alt;
static volatile int usr1_runs, usr1_tid, usr1_code, usr1_pid;

static const char *gpr_names[8] = {"rbx", "r8", "r9", "r10", "r12", "r13", "r14", "r15"};

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static uint64_t get_fsbase(void)
{
    unsigned long v = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &v);
    return v;
}

__attribute__((format(printf, 2, 3))) static void tfail(struct thr *t, const char *fmt, ...)
{
    size_t len = strlen(t->fails);
    if (t->nfail > 0 && len + 3 < sizeof t->fails) {
        strcat(t->fails, "; ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    if (len < sizeof t->fails - 1)
        vsnprintf(t->fails + len, sizeof t->fails - len, fmt, ap);
    va_end(ap);
    t->nfail++;
}

#define TCHECK(t, cond, ...)                                                                                           \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            tfail(t, __VA_ARGS__);                                                                                     \
    } while (0)

static void on_term(int sig)
{
    (void)sig;
    sc_term = 1;
    main_go = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    char local;
    hup_runs++;
    hup_tid = gettid_();
    hup_on_alt = &local >= altstack && &local < altstack + sizeof altstack;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr1_runs++;
    usr1_tid = gettid_();
    usr1_code = si->si_code;
    usr1_pid = si->si_pid;
}

/* Load the registers, sleep in nanosleep until *R->flag, store them. */
static void hold_registers(struct regs *R)
{
    __asm__ volatile(
        "vmovdqu %c[yin]+0(%%rdx), %%ymm0\n\t"
        "vmovdqu %c[yin]+32(%%rdx), %%ymm1\n\t"
        "vmovdqu %c[yin]+64(%%rdx), %%ymm2\n\t"
        "vmovdqu %c[yin]+96(%%rdx), %%ymm3\n\t"
        "vmovdqu %c[yin]+128(%%rdx), %%ymm4\n\t"
        "vmovdqu %c[yin]+160(%%rdx), %%ymm5\n\t"
        "vmovdqu %c[yin]+192(%%rdx), %%ymm6\n\t"
        "vmovdqu %c[yin]+224(%%rdx), %%ymm7\n\t"
        "vmovdqu %c[yin]+256(%%rdx), %%ymm8\n\t"
        "vmovdqu %c[yin]+288(%%rdx), %%ymm9\n\t"
        "vmovdqu %c[yin]+320(%%rdx), %%ymm10\n\t"
        "vmovdqu %c[yin]+352(%%rdx), %%ymm11\n\t"
        "vmovdqu %c[yin]+384(%%rdx), %%ymm12\n\t"
        "vmovdqu %c[yin]+416(%%rdx), %%ymm13\n\t"
        "vmovdqu %c[yin]+448(%%rdx), %%ymm14\n\t"
        "vmovdqu %c[yin]+480(%%rdx), %%ymm15\n\t"
        "movq %c[gin]+0(%%rdx), %%rbx\n\t"
        "movq %c[gin]+8(%%rdx), %%r8\n\t"
        "movq %c[gin]+16(%%rdx), %%r9\n\t"
        "movq %c[gin]+24(%%rdx), %%r10\n\t"
        "movq %c[gin]+32(%%rdx), %%r12\n\t"
        "movq %c[gin]+40(%%rdx), %%r13\n\t"
        "movq %c[gin]+48(%%rdx), %%r14\n\t"
        "movq %c[gin]+56(%%rdx), %%r15\n\t"
        "1:\n\t"
        "movl %[nr], %%eax\n\t"
        "leaq %c[ts](%%rdx), %%rdi\n\t"
        "xorl %%esi, %%esi\n\t"
        "syscall\n\t"
        "movq %c[flag](%%rdx), %%rax\n\t"
        "cmpl $0, (%%rax)\n\t"
        "je 1b\n\t"
        "vmovdqu %%ymm0, %c[yout]+0(%%rdx)\n\t"
        "vmovdqu %%ymm1, %c[yout]+32(%%rdx)\n\t"
        "vmovdqu %%ymm2, %c[yout]+64(%%rdx)\n\t"
        "vmovdqu %%ymm3, %c[yout]+96(%%rdx)\n\t"
        "vmovdqu %%ymm4, %c[yout]+128(%%rdx)\n\t"
        "vmovdqu %%ymm5, %c[yout]+160(%%rdx)\n\t"
        "vmovdqu %%ymm6, %c[yout]+192(%%rdx)\n\t"
        "vmovdqu %%ymm7, %c[yout]+224(%%rdx)\n\t"
        "vmovdqu %%ymm8, %c[yout]+256(%%rdx)\n\t"
        "vmovdqu %%ymm9, %c[yout]+288(%%rdx)\n\t"
        "vmovdqu %%ymm10, %c[yout]+320(%%rdx)\n\t"
        "vmovdqu %%ymm11, %c[yout]+352(%%rdx)\n\t"
        "vmovdqu %%ymm12, %c[yout]+384(%%rdx)\n\t"
        "vmovdqu %%ymm13, %c[yout]+416(%%rdx)\n\t"
        "vmovdqu %%ymm14, %c[yout]+448(%%rdx)\n\t"
        "vmovdqu %%ymm15, %c[yout]+480(%%rdx)\n\t"
        "movq %%rbx, %c[gout]+0(%%rdx)\n\t"
        "movq %%r8, %c[gout]+8(%%rdx)\n\t"
        "movq %%r9, %c[gout]+16(%%rdx)\n\t"
        "movq %%r10, %c[gout]+24(%%rdx)\n\t"
        "movq %%r12, %c[gout]+32(%%rdx)\n\t"
        "movq %%r13, %c[gout]+40(%%rdx)\n\t"
        "movq %%r14, %c[gout]+48(%%rdx)\n\t"
        "movq %%r15, %c[gout]+56(%%rdx)\n\t"
        "vzeroupper\n\t"
        :
        : "d"(R), [nr] "i"(SYS_nanosleep), [yin] "i"(offsetof(struct regs, yin)),
          [yout] "i"(offsetof(struct regs, yout)), [gin] "i"(offsetof(struct regs, gin)),
          [gout] "i"(offsetof(struct regs, gout)), [ts] "i"(offsetof(struct regs, ts)),
          [flag] "i"(offsetof(struct regs, flag))
        : "memory", "cc", "rax", "rcx", "rdi", "rsi", "r11", "rbx", "r8", "r9", "r10", "r12", "r13", "r14", "r15",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15");
}

static uint64_t tls_expected(int i) { return 0x7100000000000000ULL | (uint64_t)(i + 1) * 0x111111111ULL; }

static void prepare(struct thr *t, int i, volatile int *flag)
{
    t->idx = i;
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++)
            t->R.yin[r][b] = (unsigned char)(i * 37 + r * 11 + b * 3 + 1 + (b >= 16 ? 0x80 : 0));
    for (int k = 0; k < 8; k++)
        t->R.gin[k] = ((uint64_t)(i + 1) << 60) ^ ((uint64_t)(k + 1) * 0x0101010101010101ULL) ^ 0x5a5a00005a5a0000ULL;
    t->R.ts.tv_sec = 0;
    t->R.ts.tv_nsec = 10 * 1000 * 1000;
    t->R.flag = flag;
    sigemptyset(&t->mask);
    sigaddset(&t->mask, SIGRTMIN + i);
    if (i != 0)
        sigaddset(&t->mask, SIGTERM);
    if (i == PENDING_THREAD)
        sigaddset(&t->mask, SIGUSR1);
    if (i == 0)
        prctl(PR_GET_NAME, t->name, 0, 0, 0); /* main keeps the process name */
    else
        snprintf(t->name, sizeof t->name, "thr-%d", i);
}

/* Per-thread setup, in the thread itself. */
static void setup_self(struct thr *t)
{
    t->tid = gettid_();
    tls_val = tls_expected(t->idx);
    t->tls_addr = &tls_val;
    t->fsbase = get_fsbase();
    if (t->idx != 0 && pthread_setname_np(pthread_self(), t->name) != 0)
        sc_die("pthread_setname_np");
    if (pthread_sigmask(SIG_SETMASK, &t->mask, NULL) != 0)
        sc_die("pthread_sigmask");
    if (t->idx == ALT_THREAD) {
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) < 0)
            sc_die("sigaltstack");
    }
    sigaltstack(NULL, &t->alt);
}

static int same_set(const sigset_t *a, const sigset_t *b, int *diff)
{
    for (int s = 1; s <= 64; s++)
        if (sigismember(a, s) != sigismember(b, s)) {
            *diff = s;
            return 0;
        }
    return 1;
}

/* SigPnd (thread-private) and ShdPnd (process-wide) of a thread */
static int pending_words(pid_t tid, uint64_t *thread_pnd, uint64_t *shared_pnd)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *a = strstr(buf, "\nSigPnd:"), *b = strstr(buf, "\nShdPnd:");
    if (!a || !b)
        return -1;
    *thread_pnd = strtoull(a + 8, NULL, 16);
    *shared_pnd = strtoull(b + 8, NULL, 16);
    return 0;
}

/* After the loop: everything this thread can check about itself. */
static void check_self(struct thr *t)
{
    int i = t->idx;
    TCHECK(t, gettid_() == t->tid, "thread %d: gettid() %d, was %d", i, (int)gettid_(), (int)t->tid);
    TCHECK(t, getpid() == T[0].tid, "thread %d: getpid() %d, expected %d", i, (int)getpid(), (int)T[0].tid);
    TCHECK(t, pthread_equal(pthread_self(), t->handle), "thread %d: pthread_self() changed", i);
    TCHECK(t, tls_val == tls_expected(i), "thread %d: TLS value %#llx, expected %#llx", i,
           (unsigned long long)tls_val, (unsigned long long)tls_expected(i));
    TCHECK(t, &tls_val == t->tls_addr, "thread %d: TLS at %p, was %p", i, (void *)&tls_val, (void *)t->tls_addr);
    TCHECK(t, get_fsbase() == t->fsbase, "thread %d: fs_base %#llx, was %#llx", i, (unsigned long long)get_fsbase(),
           (unsigned long long)t->fsbase);
    sigset_t now;
    int d = 0;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    TCHECK(t, same_set(&now, &t->mask, &d), "thread %d: blocked mask differs at signal %d (%s now)", i, d,
           sigismember(&now, d) ? "blocked" : "not blocked");
    char name[32] = "", comm[64] = "", path[96];
    pthread_getname_np(pthread_self(), name, sizeof name);
    TCHECK(t, strcmp(name, t->name) == 0, "thread %d: pthread_getname_np '%s', was '%s'", i, name, t->name);
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)t->tid);
    ssize_t n = sc_read_file(path, comm, sizeof comm - 1);
    comm[n > 0 ? n : 0] = 0;
    comm[strcspn(comm, "\n")] = 0;
    TCHECK(t, strcmp(comm, t->name) == 0, "thread %d: %s is '%s', expected '%s'", i, path, comm, t->name);
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++)
            if (t->R.yout[r][b] != t->R.yin[r][b]) {
                tfail(t, "thread %d: ymm%d byte %d is %#x, expected %#x", i, r, b, t->R.yout[r][b], t->R.yin[r][b]);
                break;
            }
    for (int k = 0; k < 8; k++)
        TCHECK(t, t->R.gout[k] == t->R.gin[k], "thread %d: %s is %#llx, expected %#llx", i, gpr_names[k],
               (unsigned long long)t->R.gout[k], (unsigned long long)t->R.gin[k]);
    stack_t ss;
    sigaltstack(NULL, &ss);
    TCHECK(t, ss.ss_sp == t->alt.ss_sp && ss.ss_size == t->alt.ss_size && ss.ss_flags == t->alt.ss_flags,
           "thread %d: sigaltstack %p/%zu/%#x, was %p/%zu/%#x", i, ss.ss_sp, ss.ss_size, ss.ss_flags, t->alt.ss_sp,
           t->alt.ss_size, t->alt.ss_flags);
    if (i == ALT_THREAD)
        TCHECK(t, ss.ss_sp == altstack && ss.ss_size == sizeof altstack && ss.ss_flags == 0,
               "thread %d: not its sigaltstack", i);
    else
        TCHECK(t, ss.ss_flags == SS_DISABLE, "thread %d has a sigaltstack (flags %#x)", i, ss.ss_flags);
}

static void check_alt_thread(struct thr *t)
{
    pthread_kill(pthread_self(), SIGHUP);
    TCHECK(t, hup_runs == 1, "SIGHUP handler ran %d times", hup_runs);
    TCHECK(t, hup_tid == t->tid, "SIGHUP handler ran in thread %d, not %d", hup_tid, (int)t->tid);
    TCHECK(t, hup_on_alt, "SA_ONSTACK handler did not run on thread %d's sigaltstack", t->idx);
}

static void check_pending_thread(struct thr *t)
{
    sigset_t pend;
    sigpending(&pend);
    TCHECK(t, sigismember(&pend, SIGUSR1), "SIGUSR1 is not pending in thread %d", t->idx);
    uint64_t tp = 0, sp = 0;
    if (pending_words(t->tid, &tp, &sp) == 0) {
        TCHECK(t, tp & (1ULL << (SIGUSR1 - 1)), "SIGUSR1 not in thread %d's SigPnd (%#llx)", t->idx,
               (unsigned long long)tp);
        TCHECK(t, !(sp & (1ULL << (SIGUSR1 - 1))), "SIGUSR1 is process-wide pending (ShdPnd %#llx)",
               (unsigned long long)sp);
    } else {
        tfail(t, "cannot read thread %d's status", t->idx);
    }
    TCHECK(t, usr1_runs == 0, "the SIGUSR1 handler ran before it was unblocked");
    sigset_t u;
    sigemptyset(&u);
    sigaddset(&u, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &u, NULL);
    TCHECK(t, usr1_runs == 1, "SIGUSR1 handler ran %d times after unblocking", usr1_runs);
    TCHECK(t, usr1_tid == t->tid, "SIGUSR1 handler ran in thread %d, not %d", usr1_tid, (int)t->tid);
    TCHECK(t, usr1_code == SI_TKILL && usr1_pid == getpid(), "SIGUSR1 si_code %d si_pid %d (expected SI_TKILL, %d)",
           usr1_code, usr1_pid, (int)getpid());
}

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    setup_self(t);
    t->started = 1;
    hold_registers(&t->R);
    check_self(t);
    if (t->idx == ALT_THREAD)
        check_alt_thread(t);
    if (t->idx == PENDING_THREAD)
        check_pending_thread(t);
    return (void *)(intptr_t)t->nfail;
}

static int task_list(pid_t *tids, int max)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && n < max)
            tids[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

static int in_syscall(pid_t tid, int nr)
{
    char path[96], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return atoi(buf) == nr && buf[0] >= '0' && buf[0] <= '9';
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "threads");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        sc_die("sigaction(SIGTERM)");
    sa.sa_handler = on_hup;
    sa.sa_flags = SA_ONSTACK;
    if (sigaction(SIGHUP, &sa, NULL) < 0)
        sc_die("sigaction(SIGHUP)");
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGUSR1, &sa, NULL) < 0)
        sc_die("sigaction(SIGUSR1)");

    prepare(&T[0], 0, &main_go);
    T[0].handle = pthread_self();
    for (int i = 1; i < NT; i++) {
        prepare(&T[i], i, &threads_go);
        if (pthread_create(&T[i].handle, NULL, thread_main, &T[i]) != 0)
            sc_die("pthread_create %d", i);
    }
    setup_self(&T[0]);
    /* ready once every thread sleeps inside its register loop */
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 10000000000LL;
    for (int i = 1; i < NT; i++)
        while (!T[i].started || !in_syscall(T[i].tid, SYS_nanosleep)) {
            if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
                sc_die("thread %d never reached its loop", i);
            sc_sleep_ms(1);
        }
    if (pthread_kill(T[PENDING_THREAD].handle, SIGUSR1) != 0)
        sc_die("pthread_kill");
    uint64_t tp = 0, sp = 0;
    errno = 0;
    if (pending_words(T[PENDING_THREAD].tid, &tp, &sp) < 0 || !(tp & (1ULL << (SIGUSR1 - 1))) ||
        (sp & (1ULL << (SIGUSR1 - 1))))
        sc_die("SIGUSR1 is not pending in thread %d alone (SigPnd %#llx ShdPnd %#llx)", PENDING_THREAD,
               (unsigned long long)tp, (unsigned long long)sp);

    sc_ready();
    hold_registers(&T[0].R);

    sc_check_common();
    check_self(&T[0]);
    pid_t tids[64];
    int n = task_list(tids, 64);
    sc_check(n == NT, "/proc/self/task lists %d threads, expected %d", n, NT);
    for (int i = 0; i < NT; i++) {
        int found = 0;
        for (int k = 0; k < n; k++)
            found |= tids[k] == T[i].tid;
        sc_check(found, "thread %d (TID %d) is not in /proc/self/task", i, (int)T[i].tid);
    }

    threads_go = 1;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    for (int i = 1; i < NT; i++) {
        void *ret = NULL;
        int r = pthread_timedjoin_np(T[i].handle, &ret, &dl);
        if (!sc_check(r == 0, "joining thread %d (TID %d): %s", i, (int)T[i].tid, strerror(r)))
            continue;
        sc_check((intptr_t)ret == T[i].nfail, "thread %d returned %ld, recorded %d failures", i, (long)(intptr_t)ret,
                 T[i].nfail);
    }
    for (int i = 0; i < NT; i++)
        if (T[i].nfail)
            sc_fail("%s", T[i].fails);
    /* A joined thread has cleared its TID (what wakes the join) but may not have left the
       thread list yet: give it up to a second. */
    n = task_list(tids, 64);
    for (int tries = 0; n != 1 && tries < 200; tries++) {
        usleep(5000);
        n = task_list(tids, 64);
    }
    sc_check(n == 1 && tids[0] == getpid(), "after joining, /proc/self/task lists %d threads", n);
    sc_finish();
}
