/*
 * flags: prctl flags with non-default values. The process is not dumpable, is a child
 * subreaper, has THP disabled except where madvised, memory-deny-write-execute and personality
 * ADDR_NO_RANDOMIZE | STICKY_TIMEOUTS; the main thread has parent-death signal SIGWINCH, the
 * late machine-check kill policy and no_new_privs, a named second thread has parent-death
 * signal SIGURG, the early machine-check policy and no no_new_privs (both signals are
 * ignored by default: after a detached restore the restorer, the new parent, exits).
 * The main thread also has cpuid faulting on (ARCH_SET_CPUID 0), the worker rdtsc faulting
 * (PR_SET_TSC PR_TSC_SIGSEGV: it only sleeps by nanosleep, never reads the vDSO clock); the
 * process has coredump_filter 0x3b and a private futex hash of 64 slots.
 * After SIGTERM each thread checks its own flags.
 */
#include "scenario.h"
#include <pthread.h>
#include <sys/personality.h>

#ifndef PR_THP_DISABLE_EXCEPT_ADVISED
#define PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
#endif
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN (1UL << 0)
#endif
#define PERSONALITY (ADDR_NO_RANDOMIZE | STICKY_TIMEOUTS)
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH 78
#define PR_FUTEX_HASH_SET_SLOTS 1
#define PR_FUTEX_HASH_GET_SLOTS 2
#endif
#define COREDUMP_FILTER "0x3b"

static char worker_result[512];
static volatile int stop;
static pthread_barrier_t ready;

static void *worker(void *arg)
{
    (void)arg;
    if (prctl(PR_SET_NAME, "flags-worker", 0, 0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGURG, 0, 0, 0) < 0 ||
        prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) < 0 || prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) < 0)
        sc_die("worker prctl");
    pthread_barrier_wait(&ready);
    while (!stop)
        sc_sleep_ms(10);
    size_t len = 0;
#define NOTE(...) len += (size_t)snprintf(worker_result + len, len < sizeof worker_result ? sizeof worker_result - len : 0, __VA_ARGS__)
    int signal = -1;
    prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0);
    if (signal != SIGURG)
        NOTE("worker: parent-death signal %d, expected SIGURG; ", signal);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
        NOTE("worker: no_new_privs is set, was not; ");
    int mce = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
    if (mce != PR_MCE_KILL_EARLY)
        NOTE("worker: machine-check kill policy %d, expected early (%d); ", mce, PR_MCE_KILL_EARLY);
    char name[32] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    if (strcmp(name, "flags-worker") != 0)
        NOTE("worker: name '%s', expected 'flags-worker'; ", name);
    int persona = personality(0xffffffff);
    if (persona != PERSONALITY)
        NOTE("worker: personality %#x, expected %#x; ", persona, PERSONALITY);
    int tsc = -1;
    prctl(PR_GET_TSC, &tsc, 0, 0, 0);
    if (tsc != PR_TSC_SIGSEGV)
        NOTE("worker: PR_GET_TSC %d, expected PR_TSC_SIGSEGV; ", tsc);
    if (syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0) != 1)
        NOTE("worker: cpuid faults, it did not; ");
#undef NOTE
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "flags");
    sc_install_sigterm(0);
    if (personality(PERSONALITY) < 0)
        sc_die("personality");
    pthread_t thread;
    sc_start_workers(&thread, 1, worker, &ready);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0) < 0 ||
        prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0) < 0 || prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_LATE, 0, 0) < 0)
        sc_die("prctl");
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0)
        sc_die("ARCH_SET_CPUID 0");
    if (prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, 64, 0, 0) != 0)
        sc_die("PR_FUTEX_HASH_SET_SLOTS 64");
    int filter = open("/proc/self/coredump_filter", O_WRONLY | O_CLOEXEC);
    if (filter < 0 || write(filter, COREDUMP_FILTER, strlen(COREDUMP_FILTER)) < 0)
        sc_die("coredump_filter");
    close(filter);
    /* Last: they cannot be undone. */
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sc_die("PR_SET_MDWE or PR_SET_NO_NEW_PRIVS");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    sc_check(dumpable == 0, "dumpable %d, expected 0", dumpable);
    int subreaper = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    sc_check(subreaper == 1, "child subreaper %d, expected 1", subreaper);
    int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    sc_check(thp == (1 | PR_THP_DISABLE_EXCEPT_ADVISED), "THP disable %d, expected %d", thp, 1 | PR_THP_DISABLE_EXCEPT_ADVISED);
    int signal = -1;
    prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0);
    sc_check(signal == SIGWINCH, "parent-death signal %d, expected SIGWINCH", signal);
    sc_check(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs is not set");
    int mdwe = prctl(PR_GET_MDWE, 0, 0, 0, 0);
    sc_check(mdwe == PR_MDWE_REFUSE_EXEC_GAIN, "memory-deny-write-execute %d, expected %lu", mdwe, PR_MDWE_REFUSE_EXEC_GAIN);
    int mce = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
    sc_check(mce == PR_MCE_KILL_LATE, "machine-check kill policy %d, expected late (%d)", mce, PR_MCE_KILL_LATE);
    int persona = personality(0xffffffff);
    sc_check(persona == PERSONALITY, "personality %#x, expected %#x", persona, PERSONALITY);
    sc_check(syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0) == 0, "cpuid does not fault");
    int tsc = -1;
    prctl(PR_GET_TSC, &tsc, 0, 0, 0);
    sc_check(tsc == PR_TSC_ENABLE, "PR_GET_TSC %d in the main thread, expected PR_TSC_ENABLE", tsc);
    int slots = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    sc_check(slots == 64, "the futex hash has %d slots, expected 64", slots);
    char text[32] = {0};
    sc_read_file("/proc/self/coredump_filter", text, sizeof text - 1);
    sc_check(strtoul(text, NULL, 16) == strtoul(COREDUMP_FILTER, NULL, 16), "coredump_filter %s, expected %s", text, COREDUMP_FILTER);
    stop = 1;
    pthread_join(thread, NULL);
    sc_check(worker_result[0] == 0, "%s", worker_result);
    sc_finish();
}
