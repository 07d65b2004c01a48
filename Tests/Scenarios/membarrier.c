/*
 * membarrier: a process registered for the private expedited membarrier commands (plain,
 * SYNC_CORE and RSEQ) and as a target of global expedited barriers. After SIGTERM each
 * private command must still succeed (without its registration it fails with EPERM), and
 * MEMBARRIER_CMD_GET_REGISTRATIONS must report all four registrations.
 */
#include "scenario.h"
#include <linux/membarrier.h>

static const struct {
    int command, registration;
    const char *name;
} commands[] = {
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, "PRIVATE_EXPEDITED"},
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, "PRIVATE_EXPEDITED_SYNC_CORE"},
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, "PRIVATE_EXPEDITED_RSEQ"},
};
#define GET_REGISTRATIONS (1 << 9)
#define REGISTERED (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED \
                    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ)

int main(int argc, char **argv)
{
    sc_init(argc, argv, "membarrier");
    sc_install_sigterm(0);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (syscall(SYS_membarrier, commands[i].registration, 0, 0) != 0)
            sc_die("membarrier(MEMBARRIER_CMD_REGISTER_%s)", commands[i].name);
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0)
        sc_die("membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        long result = syscall(SYS_membarrier, commands[i].command, 0, 0);
        sc_check(result == 0, "membarrier(MEMBARRIER_CMD_%s) failed: %s", commands[i].name, strerror(errno));
    }
    long registered = syscall(SYS_membarrier, GET_REGISTRATIONS, 0, 0);
    sc_check(registered == REGISTERED, "MEMBARRIER_CMD_GET_REGISTRATIONS reports %#lx, registered %#x", registered, REGISTERED);
    sc_finish();
}
