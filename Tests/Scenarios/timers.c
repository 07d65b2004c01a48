/*
 * timers: an interval ITIMER_REAL (SIGALRM every 100 ms), armed ITIMER_VIRTUAL and ITIMER_PROF
 * that never fire here, and three POSIX timers with IDs 1, 3 and 4 (0 and 2 were deleted, so a
 * restore that takes the lowest free ID gets them wrong): SIGRTMIN+1 every 50 ms on
 * CLOCK_BOOTTIME, SIGUSR1 every 200 ms on CLOCK_REALTIME aimed at the main thread, and a
 * one-shot SIGUSR2 on CLOCK_MONOTONIC 4 s after it was armed. After SIGTERM: each periodic
 * timer still fires over a one-second window (counts in a wide range, not a timing check),
 * every signal carried its timer's ID and value, and the one-shot fires once, never before
 * its 4 s are up (the time left carried over, not restarted at 0), and not never.
 */
#include "scenario.h"
#include <sys/time.h>

#define ONE_SHOT_NS (4LL * 1000 * 1000 * 1000)

enum { ALARM, FAST, SLOW, ONE_SHOT, COUNT };
static const char *names[COUNT] = {"ITIMER_REAL", "SIGRTMIN+1 timer", "SIGUSR1 timer", "one-shot timer"};
static int ids[COUNT] = {-1, 1, 3, 4};
static const uint64_t values[COUNT] = {0, 0xa1, 0xb2, 0xc3};
static volatile sig_atomic_t fired[COUNT];
static volatile sig_atomic_t wrong_siginfo;
static int64_t armed_at, one_shot_at;

static void on_timer(int signal, siginfo_t *info, void *context)
{
    (void)context;
    int which = signal == SIGALRM ? ALARM : signal == SIGUSR1 ? SLOW : signal == SIGUSR2 ? ONE_SHOT : FAST;
    if (which != ALARM && (info->si_code != SI_TIMER || info->si_timerid != ids[which] ||
                           (uint64_t)(uintptr_t)info->si_value.sival_ptr != values[which]))
        wrong_siginfo++;
    if (which == ONE_SHOT)
        one_shot_at = sc_now_ns(CLOCK_MONOTONIC);
    fired[which]++;
}

static int make_timer(clockid_t clock, int notify, int signal, uint64_t value)
{
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = notify;
    event.sigev_signo = signal;
    event.sigev_value.sival_ptr = (void *)(uintptr_t)value;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    int id = -1;
    if (syscall(SYS_timer_create, clock, &event, &id) < 0)
        sc_die("timer_create");
    return id;
}

static void arm(int id, int64_t first_ns, int64_t interval_ns)
{
    struct itimerspec time = {{interval_ns / 1000000000, interval_ns % 1000000000}, {first_ns / 1000000000, first_ns % 1000000000}};
    if (syscall(SYS_timer_settime, id, 0, &time, NULL) < 0)
        sc_die("timer_settime(%d)", id);
}

static int64_t interval_of(int id, int64_t *remaining)
{
    struct itimerspec time;
    if (syscall(SYS_timer_gettime, id, &time) < 0)
        return -1;
    *remaining = time.it_value.tv_sec * 1000000000LL + time.it_value.tv_nsec;
    return time.it_interval.tv_sec * 1000000000LL + time.it_interval.tv_nsec;
}

static void check_itimer(int which, const char *name, time_t first, time_t interval)
{
    struct itimerval now;
    getitimer(which, &now);
    sc_check(now.it_interval.tv_sec == interval && now.it_interval.tv_usec == 0, "%s interval %ld.%06ld s, expected %ld s",
             name, (long)now.it_interval.tv_sec, (long)now.it_interval.tv_usec, (long)interval);
    sc_check((now.it_value.tv_sec > 0 || now.it_value.tv_usec > 0) && now.it_value.tv_sec <= first,
             "%s has %ld.%06ld s left, expected more than 0 and about %ld s", name, (long)now.it_value.tv_sec,
             (long)now.it_value.tv_usec, (long)first);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "timers");
    sc_install_sigterm(0);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_timer;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    int signals[] = {SIGALRM, SIGRTMIN + 1, SIGUSR1, SIGUSR2};
    for (int i = 0; i < 4; i++)
        if (sigaction(signals[i], &action, NULL) < 0)
            sc_die("sigaction");

    int filler0 = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0);
    int fast = make_timer(CLOCK_BOOTTIME, SIGEV_SIGNAL, SIGRTMIN + 1, values[FAST]);
    int filler2 = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0);
    int slow = make_timer(CLOCK_REALTIME, SIGEV_THREAD_ID, SIGUSR1, values[SLOW]);
    int one_shot = make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR2, values[ONE_SHOT]);
    if (filler0 != 0 || fast != ids[FAST] || filler2 != 2 || slow != ids[SLOW] || one_shot != ids[ONE_SHOT])
        sc_die("timer IDs %d %d %d %d %d, expected 0 to 4", filler0, fast, filler2, slow, one_shot);
    syscall(SYS_timer_delete, filler0);
    syscall(SYS_timer_delete, filler2);
    arm(fast, 50000000, 50000000);
    arm(slow, 200000000, 200000000);
    struct itimerval alarm_every = {{0, 100000}, {0, 100000}};
    struct itimerval virtual_time = {{9, 0}, {1000, 0}};
    struct itimerval profile_time = {{7, 0}, {2000, 0}};
    if (setitimer(ITIMER_REAL, &alarm_every, NULL) < 0 || setitimer(ITIMER_VIRTUAL, &virtual_time, NULL) < 0 ||
        setitimer(ITIMER_PROF, &profile_time, NULL) < 0)
        sc_die("setitimer");
    armed_at = sc_now_ns(CLOCK_MONOTONIC);
    arm(one_shot, ONE_SHOT_NS, 0);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    check_itimer(ITIMER_VIRTUAL, "ITIMER_VIRTUAL", 1000, 9);
    check_itimer(ITIMER_PROF, "ITIMER_PROF", 2000, 7);
    struct itimerval real;
    getitimer(ITIMER_REAL, &real);
    sc_check(real.it_interval.tv_sec == 0 && real.it_interval.tv_usec == 100000, "ITIMER_REAL interval %ld.%06ld s, expected 0.1 s",
             (long)real.it_interval.tv_sec, (long)real.it_interval.tv_usec);
    int64_t left;
    sc_check(interval_of(fast, &left) == 50000000, "timer %d interval is not 50 ms", fast);
    sc_check(interval_of(slow, &left) == 200000000, "timer %d interval is not 200 ms", slow);
    sc_check(interval_of(one_shot, &left) == 0, "timer %d is not one-shot", one_shot);
    sc_check(interval_of(0, &left) < 0 && errno == EINVAL && interval_of(2, &left) < 0 && errno == EINVAL,
             "timer 0 or 2 exists, but both were deleted");

    /* Each periodic timer keeps firing: 10, 20 and 5 times in a second, give or take a lot. */
    int before[COUNT];
    for (int i = 0; i < COUNT; i++)
        before[i] = fired[i];
    sc_sleep_ms(1000);
    const int low[COUNT] = {2, 4, 1}, high[COUNT] = {40, 80, 20};
    for (int i = 0; i < ONE_SHOT; i++) {
        int delta = fired[i] - before[i];
        sc_check(delta >= low[i] && delta <= high[i], "%s fired %d times in a second, expected about %d", names[i], delta,
                 i == ALARM ? 10 : i == FAST ? 20 : 5);
    }

    /* The one-shot: fires once, not before its time; the runner's timeout bounds the wait. */
    while (fired[ONE_SHOT] == 0)
        sc_sleep_ms(20);
    sc_sleep_ms(100);
    sc_check(fired[ONE_SHOT] == 1, "the one-shot timer fired %d times", (int)fired[ONE_SHOT]);
    sc_check(one_shot_at - armed_at >= ONE_SHOT_NS, "the one-shot timer fired %lld ms after it was armed, before its 4 s",
             (long long)((one_shot_at - armed_at) / 1000000));
    sc_check(wrong_siginfo == 0, "%d timer signals had the wrong si_code, timer ID or value", (int)wrong_siginfo);
    sc_finish();
}
