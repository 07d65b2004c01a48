/*
 * unsupported_shared_memory: a parent and its child share an anonymous MAP_SHARED page
 * (inherited across fork); the child counts in it. Amber saves each process's pages on their
 * own, so `amber dump` must refuse, naming the process and the shared memory, and leave both
 * running, untraced. After SIGTERM the parent checks the count still moves (the sharing
 * holds), then kills and reaps the child. The child dies with the parent (PR_SET_PDEATHSIG).
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/wait.h>

static volatile uint64_t *shared;
static pid_t child;

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_shared_memory");
    sc_install_sigterm(0);
    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        sc_die("mmap");
    child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        signal(SIGTERM, SIG_DFL);
        for (;;) {
            (*shared)++;
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    while (*shared == 0) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    uint64_t seen = *shared;
    while (*shared == seen) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int status;
    sc_check(waitpid(child, &status, WNOHANG) == 0, "the child %d is gone", (int)child);
    kill(child, SIGKILL);
    sc_check(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
             "the child did not die from SIGKILL");
    sc_finish();
}
