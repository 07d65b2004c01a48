/*
 * second_thread: a second thread counting with a short sleep. After SIGTERM the main thread
 * checks the second thread still counts (it waits for the counter to move, with no time
 * limit of its own: the runner's timeout bounds it), that it has the same TID, and joins it.
 */
#include "scenario.h"
#include <pthread.h>

static volatile uint64_t ticks;
static volatile int stop;
static volatile pid_t worker_tid;

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    while (!stop) {
        ticks++;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return (void *)0x600d;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "second_thread");
    sc_install_sigterm(0);
    pthread_t t;
    sc_start_workers(&t, 1, worker, NULL);
    while (ticks == 0 || worker_tid == 0) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    uint64_t seen = ticks;
    while (ticks == seen) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)worker_tid);
    ssize_t n = sc_read_file(path, stat, sizeof stat - 1);
    sc_check(n > 0, "the second thread %d has no /proc entry", (int)worker_tid);
    stop = 1;
    void *ret = NULL;
    sc_check(pthread_join(t, &ret) == 0 && ret == (void *)0x600d, "the second thread did not finish normally");
    sc_finish();
}
