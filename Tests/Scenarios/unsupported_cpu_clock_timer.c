/*
 * unsupported_cpu_clock_timer: holds a POSIX timer on the CPU-time clock of its child, another
 * process. Amber cannot restore that (the child may come back after its parent, or not be
 * dumped at all): `amber dump` must refuse, naming the process and the timer, and leave it
 * running untouched. After SIGTERM it checks the timer is still armed, then ends the child.
 */
#include "scenario.h"

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_cpu_clock_timer");
    sc_install_sigterm(0);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
            _exit(1);
        for (;;)
            pause();
    }
    clockid_t clock;
    if (clock_getcpuclockid(child, &clock) != 0)
        sc_die("clock_getcpuclockid");
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_NONE;
    timer_t timer;
    if (timer_create(clock, &event, &timer) < 0)
        sc_die("timer_create");
    struct itimerspec time = {{0, 0}, {1000, 0}};
    if (timer_settime(timer, 0, &time, NULL) < 0)
        sc_die("timer_settime");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    struct itimerspec now;
    sc_check(timer_gettime(timer, &now) == 0 && now.it_value.tv_sec > 0, "the timer on the child's CPU clock is gone or disarmed");
    kill(child, SIGKILL);
    int status;
    sc_check(waitpid(child, &status, 0) == child, "the child is gone");
    sc_finish();
}
