/*
 * scheduling: scheduling state per thread and per process. The main thread runs at nice 10,
 * pinned to one CPU (CPU 1 when there are two), with timer slack 12345 ns and I/O priority
 * best-effort 6; a second thread runs under SCHED_BATCH at nice 5 on CPU 0, slack 777000 ns,
 * I/O class idle; a third under SCHED_RR priority 3 with SCHED_RESET_ON_FORK, I/O real-time 2.
 * The process has oom_score_adj 123. After SIGTERM each thread checks its own state.
 */
#include "scenario.h"
#include <pthread.h>

#define IOPRIO(class, level) ((class) << 13 | (level))

struct expected {
    const char *name;
    int policy; /* with SCHED_RESET_ON_FORK */
    int priority;
    int nice;
    int cpu;
    unsigned long slack; /* 0: not checked (a real-time thread's slack is the kernel's) */
    int ioprio;
};

static struct expected want[3];
static char results[3][1024];
static volatile int stop;
static pthread_barrier_t ready;

static void check_self(int index)
{
    struct expected *e = &want[index];
    char *out = results[index];
    size_t len = 0;
#define NOTE(...) len += (size_t)snprintf(out + len, len < sizeof results[0] ? sizeof results[0] - len : 0, __VA_ARGS__)
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int policy = sched_getscheduler(0);
    if (policy != e->policy)
        NOTE("%s: policy %#x, expected %#x; ", e->name, policy, e->policy);
    struct sched_param param;
    sched_getparam(0, &param);
    if (param.sched_priority != e->priority)
        NOTE("%s: priority %d, expected %d; ", e->name, param.sched_priority, e->priority);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (nice != e->nice)
        NOTE("%s: nice %d, expected %d; ", e->name, nice, e->nice);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    sched_getaffinity(0, sizeof cpus, &cpus);
    if (CPU_COUNT(&cpus) != 1 || !CPU_ISSET(e->cpu, &cpus))
        NOTE("%s: affinity has %d CPUs, expected only CPU %d; ", e->name, CPU_COUNT(&cpus), e->cpu);
    unsigned long slack = (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (e->slack && slack != e->slack)
        NOTE("%s: timer slack %lu ns, expected %lu; ", e->name, slack, e->slack);
    long ioprio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
    if (ioprio != e->ioprio)
        NOTE("%s: I/O priority %#lx, expected %#x; ", e->name, ioprio, e->ioprio);
#undef NOTE
}

static void set_self(int index)
{
    struct expected *e = &want[index];
    pid_t tid = (pid_t)syscall(SYS_gettid);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(e->cpu, &cpus);
    if (sched_setaffinity(0, sizeof cpus, &cpus) < 0)
        sc_die("sched_setaffinity(%s)", e->name);
    if (prctl(PR_SET_TIMERSLACK, e->slack ? e->slack : 1000, 0, 0, 0) < 0)
        sc_die("PR_SET_TIMERSLACK(%s)", e->name);
    if (setpriority(PRIO_PROCESS, (id_t)tid, e->nice) < 0)
        sc_die("setpriority(%s)", e->name);
    if (syscall(SYS_ioprio_set, 1, 0, e->ioprio) < 0)
        sc_die("ioprio_set(%s)", e->name);
    struct sched_param param = {.sched_priority = e->priority};
    if (sched_setscheduler(0, e->policy, &param) < 0)
        sc_die("sched_setscheduler(%s)", e->name);
}

static void *worker(void *arg)
{
    int index = (int)(intptr_t)arg;
    set_self(index);
    pthread_barrier_wait(&ready);
    while (!stop)
        sc_sleep_ms(10);
    check_self(index);
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "scheduling");
    sc_install_sigterm(0);
    int last = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 1 : 0;
    want[0] = (struct expected){"main", SCHED_OTHER, 0, 10, last, 12345, IOPRIO(2, 6)};
    want[1] = (struct expected){"batch", SCHED_BATCH, 0, 5, 0, 777000, IOPRIO(3, 0)};
    want[2] = (struct expected){"rr", SCHED_RR | SCHED_RESET_ON_FORK, 3, 0, last, 0, IOPRIO(1, 2)};
    pthread_t threads[2];
    sc_start_workers(threads, 2, worker, &ready);
    set_self(0);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "123\n", 4) != 4 || close(fd) < 0)
        sc_die("writing oom_score_adj");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    check_self(0);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 3; i++)
        sc_check(results[i][0] == 0, "%s", results[i]);
    char text[32] = {0};
    ssize_t n = sc_read_file("/proc/self/oom_score_adj", text, sizeof text - 1);
    sc_check(n > 0 && atoi(text) == 123, "oom_score_adj is %s, expected 123", n > 0 ? text : "unreadable");
    sc_finish();
}
