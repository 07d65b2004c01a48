/*
 * counter: a loop that counts with a short nanosleep between steps.
 *
 * Checks after SIGTERM: the counter was not reset (it is at least the value it had when
 * the scenario became ready, plus the steps counted since in a stack variable) and its
 * copies in .bss and on the heap agree; counting goes on (100 more
 * steps, each increasing); getpid() and gettid() are the PID recorded at start, and the
 * PID in /proc/self/stat agrees; getppid() is a live process and /proc/self/stat agrees.
 */
#include "scenario.h"

static volatile uint64_t counter;
static volatile uint64_t shadow; /* always counter * 7 + 3 */
static volatile uint64_t *heap_counter; /* a copy on the heap */
static pid_t pid_at_start;

static void step(void)
{
    uint64_t c = counter + 1;
    counter = c;
    shadow = c * 7 + 3;
    *heap_counter = c;
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void stat_ids(pid_t *pid, pid_t *ppid)
{
    char buf[1024];
    *pid = *ppid = -1;
    ssize_t n = sc_read_file("/proc/self/stat", buf, sizeof buf - 1);
    if (n <= 0)
        return;
    buf[n] = 0;
    *pid = atoi(buf);
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (p) {
        char state;
        int pp;
        if (sscanf(p + 1, " %c %d", &state, &pp) == 2)
            *ppid = pp;
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "counter");
    pid_at_start = getpid();
    sc_install_sigterm(0);
    heap_counter = malloc(sizeof *heap_counter);
    if (!heap_counter)
        sc_die("malloc");
    *heap_counter = 0;

    for (int i = 0; i < 10; i++)
        step();
    uint64_t at_ready = counter;
    sc_ready();

    /* steps since ready, counted on the stack: .bss, heap and stack must stay consistent */
    volatile uint64_t steps = 0;
    while (!sc_term) {
        step();
        steps = steps + 1;
    }

    sc_check_common();
    uint64_t at_term = counter;
    sc_check(at_term >= at_ready, "counter %llu went back below %llu (the value at ready)",
             (unsigned long long)at_term, (unsigned long long)at_ready);
    sc_check(at_term == at_ready + steps, "counter %llu is not %llu (value at ready) + %llu (steps counted on the stack)",
             (unsigned long long)at_term, (unsigned long long)at_ready, (unsigned long long)steps);
    sc_check(shadow == at_term * 7 + 3, "shadow copy %llu does not match counter %llu",
             (unsigned long long)shadow, (unsigned long long)at_term);
    sc_check(*heap_counter == at_term, "heap copy %llu does not match counter %llu",
             (unsigned long long)*heap_counter, (unsigned long long)at_term);
    uint64_t last = at_term;
    for (int i = 0; i < 100; i++) {
        step();
        if (!sc_check(counter == last + 1, "counter did not increase after %llu", (unsigned long long)last))
            break;
        last = counter;
    }

    sc_check(getpid() == pid_at_start, "getpid() %d, recorded %d at start", getpid(), pid_at_start);
    sc_check((pid_t)syscall(SYS_gettid) == pid_at_start, "gettid() %ld, recorded %d at start",
             (long)syscall(SYS_gettid), pid_at_start);
    pid_t spid, sppid;
    stat_ids(&spid, &sppid);
    sc_check(spid == pid_at_start, "/proc/self/stat says pid %d, recorded %d", spid, pid_at_start);
    pid_t ppid = getppid();
    sc_check(ppid >= 1, "getppid() %d", ppid);
    sc_check(sppid == ppid, "/proc/self/stat says ppid %d, getppid() %d", sppid, ppid);
    char path[64], st[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", ppid);
    sc_check(ppid == 1 || sc_read_file(path, st, sizeof st) > 0, "parent %d has no /proc entry", ppid);

    sc_finish();
}
