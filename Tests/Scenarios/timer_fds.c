/*
 * timer_fds: timerfds of each kind.
 *   periodic  CLOCK_MONOTONIC, non-blocking, every 50 ms
 *   far       CLOCK_BOOTTIME, a one-shot 1000 s away
 *   expired   CLOCK_MONOTONIC, a one-shot that fired once and was not read
 *   ticking   CLOCK_MONOTONIC, every 250 ms, fired 3 times and not read before the dump
 *   wall      CLOCK_REALTIME, absolute, 600 s from when it was set, TFD_TIMER_CANCEL_ON_SET
 *   absolute  CLOCK_MONOTONIC, absolute, 500 s from when it was set
 * After SIGTERM: the clocks, flags and settime flags are as set (fdinfo); the periodic timer
 * keeps its 50 ms and ticks about 10 times in half a second; the far one is armed, one-shot,
 * with at most 1000 s and more than 900 s left; the expired one reads 1; the ticking one
 * reads at least its 3 expirations; the wall-clock one fires at the same wall-clock time, the
 * absolute monotonic one has at most 500 s and more than 400 s left.
 */
#include "scenario.h"
#include <sys/timerfd.h>

#define MS 1000000LL
#define S 1000000000LL

enum { PERIODIC, FAR, EXPIRED, TICKING, WALL, ABSOLUTE, COUNT };
static const char *names[COUNT] = {"the periodic timerfd", "the far timerfd", "the expired timerfd", "the ticking timerfd",
                                   "the wall-clock timerfd", "the absolute monotonic timerfd"};
static const int clocks[COUNT] = {CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_MONOTONIC};
static const int settime_flags[COUNT] = {0, 0, 0, 0, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, TFD_TIMER_ABSTIME};
static int fds[COUNT];
static int64_t wall_expiry;

static struct timespec spec(int64_t ns)
{
    return (struct timespec){ns / S, ns % S};
}

static int64_t ns_of(struct timespec time)
{
    return time.tv_sec * S + time.tv_nsec;
}

static void set(int which, int64_t value, int64_t interval)
{
    struct itimerspec time = {spec(interval), spec(value)};
    if (timerfd_settime(fds[which], settime_flags[which], &time, NULL) != 0)
        sc_die("timerfd_settime of %s", names[which]);
}

static int64_t left(int which, int64_t *interval)
{
    struct itimerspec time;
    if (timerfd_gettime(fds[which], &time) != 0)
        return -1;
    *interval = ns_of(time.it_interval);
    return ns_of(time.it_value);
}

static uint64_t ticks(int which)
{
    uint64_t count = 0;
    if (read(fds[which], &count, sizeof count) != sizeof count)
        return 0;
    return count;
}

static void check_info(int which)
{
    char path[64], text[512], expected[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fds[which]);
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (!sc_check(n > 0, "cannot read %s", path))
        return;
    text[n] = 0;
    snprintf(expected, sizeof expected, "clockid: %d\n", clocks[which]);
    sc_check(strstr(text, expected) != NULL, "%s is not on clock %d: %s", names[which], clocks[which], text);
    snprintf(expected, sizeof expected, "settime flags: 0%o\n", settime_flags[which]);
    sc_check(strstr(text, expected) != NULL, "%s does not have the settime flags 0%o: %s", names[which], settime_flags[which], text);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "timer_fds");
    sc_install_sigterm(0);
    for (int i = 0; i < COUNT; i++)
        if ((fds[i] = timerfd_create(clocks[i], i == PERIODIC || i == EXPIRED || i == TICKING ? TFD_NONBLOCK : 0)) < 0)
            sc_die("timerfd_create of %s", names[i]);
    set(PERIODIC, 50 * MS, 50 * MS);
    set(FAR, 1000 * S, 0);
    set(EXPIRED, 1 * MS, 0);
    set(TICKING, 10 * MS, 250 * MS);
    wall_expiry = sc_now_ns(CLOCK_REALTIME) + 600 * S;
    set(WALL, wall_expiry, 0);
    set(ABSOLUTE, sc_now_ns(CLOCK_MONOTONIC) + 500 * S, 0);
    /* The ticking timer fires at 10, 260 and 510 ms. */
    sc_sleep_ms(600);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    uint64_t ticking = ticks(TICKING);
    sc_check(ticking >= 3, "the ticking timerfd read %llu expirations, expected its 3 before the dump and more",
             (unsigned long long)ticking);
    uint64_t expired = ticks(EXPIRED);
    sc_check(expired == 1, "the expired timerfd read %llu expirations, expected 1", (unsigned long long)expired);
    for (int i = 0; i < COUNT; i++) {
        check_info(i);
        int nonblocking = !!(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
        sc_check(nonblocking == (i == PERIODIC || i == EXPIRED || i == TICKING), "%s has O_NONBLOCK %d", names[i], nonblocking);
    }

    int64_t interval = -1, remaining;
    remaining = left(PERIODIC, &interval);
    sc_check(interval == 50 * MS && remaining > 0 && remaining <= 50 * MS, "%s has %lld ns left and an interval of %lld ns, expected 50 ms",
             names[PERIODIC], (long long)remaining, (long long)interval);
    ticks(PERIODIC);
    sc_sleep_ms(500);
    uint64_t periodic = ticks(PERIODIC);
    sc_check(periodic >= 4 && periodic <= 20, "%s ticked %llu times in 500 ms, expected about 10", names[PERIODIC], (unsigned long long)periodic);

    remaining = left(FAR, &interval);
    sc_check(interval == 0 && remaining > 900 * S && remaining <= 1000 * S, "%s has %lld ms left, interval %lld ns, expected a one-shot with about 1000 s",
             names[FAR], (long long)(remaining / MS), (long long)interval);
    remaining = left(EXPIRED, &interval);
    sc_check(interval == 0 && remaining == 0, "%s is armed again: %lld ns left", names[EXPIRED], (long long)remaining);
    remaining = left(WALL, &interval);
    int64_t wall_left = wall_expiry - sc_now_ns(CLOCK_REALTIME);
    sc_check(interval == 0 && remaining > 0 && llabs(remaining - wall_left) < 1 * S, "%s has %lld ms left, expected %lld ms (the same wall-clock time)",
             names[WALL], (long long)(remaining / MS), (long long)(wall_left / MS));
    remaining = left(ABSOLUTE, &interval);
    sc_check(interval == 0 && remaining > 400 * S && remaining <= 500 * S, "%s has %lld ms left, expected at most 500 s", names[ABSOLUTE],
             (long long)(remaining / MS));
    sc_finish();
}
