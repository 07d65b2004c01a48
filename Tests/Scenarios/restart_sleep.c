/*
 * restart_sleep: sleeps that a dump interrupts must finish correctly after restore.
 *
 * Once ready it sleeps in two phases, each timed with CLOCK_MONOTONIC:
 *  - "rel": the nanosleep system call (raw SYS_nanosleep, relative, 3 s), looping on EINTR
 *    with the remaining time the kernel wrote back;
 *  - "abs": clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to a deadline 2 s after the
 *    phase starts, looping on EINTR.
 * The order is rel then abs, or abs then rel with --abs-first (so a runner that dumps during
 * the first phase can cover either kind). The runner can tell which sleep the process is in
 * from /proc/PID/syscall (35 = nanosleep, 230 = clock_nanosleep).
 *
 * Every return must be 0 or EINTR (never a raw kernel restart value such as 512, 513, 514 or
 * 516); each phase must last at least its requested time; SIGTERM (handler without
 * SA_RESTART) only sets a flag, and the verdict is written once both sleeps have completed.
 */
#include "scenario.h"

#define REL_SECONDS 3
#define ABS_SECONDS 2

static int64_t rel_elapsed, abs_elapsed, abs_late;
static int rel_eintr, abs_eintr;

static void sleep_rel(void)
{
    struct timespec req = {REL_SECONDS, 0}, rem;
    int64_t t0 = sc_now_ns(CLOCK_MONOTONIC);
    for (;;) {
        memset(&rem, 0xff, sizeof rem);
        errno = 0;
        long r = syscall(SYS_nanosleep, &req, &rem);
        if (r == 0)
            break;
        int e = errno;
        if (!sc_check(r == -1 && e == EINTR, "nanosleep returned %ld, errno %d (expected 0, or -1 with EINTR)", r, e))
            break;
        rel_eintr++;
        if (!sc_check(rem.tv_sec >= 0 && rem.tv_sec <= REL_SECONDS && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000L,
                      "nanosleep's remaining time is garbage: %lld.%09ld", (long long)rem.tv_sec, rem.tv_nsec))
            break;
        req = rem;
    }
    rel_elapsed = sc_now_ns(CLOCK_MONOTONIC) - t0;
}

static void sleep_abs(void)
{
    int64_t t0 = sc_now_ns(CLOCK_MONOTONIC);
    int64_t deadline = t0 + (int64_t)ABS_SECONDS * 1000000000;
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    for (;;) {
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (r == 0)
            break;
        if (!sc_check(r == EINTR, "clock_nanosleep(TIMER_ABSTIME) returned %d (expected 0 or EINTR)", r))
            break;
        abs_eintr++;
    }
    int64_t t1 = sc_now_ns(CLOCK_MONOTONIC);
    abs_elapsed = t1 - t0;
    abs_late = t1 - deadline;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "restart_sleep");
    int abs_first = sc_has_flag("--abs-first");
    sc_install_sigterm(0); /* no SA_RESTART: SIGTERM interrupts the sleeps with EINTR */
    sc_ready();

    if (abs_first) {
        sleep_abs();
        sleep_rel();
    } else {
        sleep_rel();
        sleep_abs();
    }
    sc_wait_for_term();

    sc_check_common();
    sc_check(rel_elapsed >= (int64_t)REL_SECONDS * 1000000000,
             "relative nanosleep of %d s ended after %lld ns (%d EINTR)", REL_SECONDS, (long long)rel_elapsed,
             rel_eintr);
    sc_check(abs_late >= 0, "clock_nanosleep(TIMER_ABSTIME) returned %lld ns before its deadline (%d EINTR)",
             (long long)-abs_late, abs_eintr);
    sc_check(abs_elapsed >= (int64_t)ABS_SECONDS * 1000000000, "absolute sleep of %d s ended after %lld ns",
             ABS_SECONDS, (long long)abs_elapsed);
    sc_finish();
}
