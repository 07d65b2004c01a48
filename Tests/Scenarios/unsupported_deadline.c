/*
 * unsupported_deadline: a second thread runs under SCHED_DEADLINE (1 ms every 10 ms). Amber does
 * not restore a deadline thread's runtime, deadline and period yet: `amber dump` must refuse,
 * naming the process and the thread, and leave it running untouched. After SIGTERM the thread
 * checks it is still a deadline thread with the same parameters.
 */
#include "scenario.h"
#include <pthread.h>

struct deadline_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static volatile int stop;
static char result[256];
static pthread_barrier_t ready;

static void *worker(void *arg)
{
    (void)arg;
    struct deadline_attr attr = {.size = sizeof attr, .policy = 6 /* SCHED_DEADLINE */, .runtime = 1000000, .deadline = 10000000, .period = 10000000};
    if (syscall(SYS_sched_setattr, 0, &attr, 0) < 0)
        sc_die("sched_setattr(SCHED_DEADLINE)");
    pthread_barrier_wait(&ready);
    while (!stop)
        sc_sleep_ms(10);
    struct deadline_attr now;
    memset(&now, 0, sizeof now);
    if (syscall(SYS_sched_getattr, 0, &now, sizeof now, 0) < 0)
        snprintf(result, sizeof result, "sched_getattr: %s", strerror(errno));
    else if (now.policy != 6 || now.runtime != attr.runtime || now.deadline != attr.deadline || now.period != attr.period)
        snprintf(result, sizeof result, "the thread is now policy %u, runtime %llu, deadline %llu, period %llu", now.policy,
                 (unsigned long long)now.runtime, (unsigned long long)now.deadline, (unsigned long long)now.period);
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_deadline");
    sc_install_sigterm(0);
    pthread_t thread;
    sc_start_workers(&thread, 1, worker, &ready);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    stop = 1;
    pthread_join(thread, NULL);
    sc_check(result[0] == 0, "%s", result);
    sc_finish();
}
