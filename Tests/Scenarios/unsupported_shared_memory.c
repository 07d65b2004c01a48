/*
 * unsupported_shared_memory: shared memory amber refuses, by flag:
 *   --outside  an anonymous MAP_SHARED page this process shares with a process outside its
 *              tree (a grandchild, orphaned at once), which counts in it: restored, the tree's
 *              copy would be an object of its own
 *   --sysv     a System V shared memory segment attached (shmat), and removed (IPC_RMID)
 * `amber dump` must refuse, naming the process and the memory, and leave it running, untraced.
 * After SIGTERM it checks the memory still works (the count still moves; the segment holds
 * what it wrote). The grandchild exits once this process is gone.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

static volatile uint64_t *shared;

static void sleep_ms(void)
{
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_shared_memory");
    sc_install_sigterm(0);
    if (sc_has_flag("--sysv")) {
        int id = shmget((key_t)(0x616d0000 | (getpid() & 0xffff)), 4096, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0)
            sc_die("shmget");
        shared = shmat(id, NULL, 0);
        if (shared == (void *)-1)
            sc_die("shmat");
        if (shmctl(id, IPC_RMID, NULL) != 0)
            sc_die("shmctl IPC_RMID");
        shared[0] = 0x5359535621;
    } else if (sc_has_flag("--outside")) {
        shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shared == MAP_FAILED)
            sc_die("mmap");
        pid_t self = getpid();
        if (sc_fork_outside() == 0) {
            while (kill(self, 0) == 0) {
                shared[0]++;
                sleep_ms();
            }
            _exit(0);
        }
        while (shared[0] == 0)
            sleep_ms();
    } else {
        sc_die("no memory chosen");
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (sc_has_flag("--sysv")) {
        sc_check(shared[0] == 0x5359535621, "the segment holds %llx", (unsigned long long)shared[0]);
    } else {
        uint64_t seen = shared[0];
        int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 5000000000LL;
        while (shared[0] == seen && sc_now_ns(CLOCK_MONOTONIC) < deadline)
            sleep_ms();
        sc_check(shared[0] != seen, "the count stopped at %llu", (unsigned long long)seen);
    }
    sc_finish();
}
