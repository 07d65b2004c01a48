/*
 * unsupported_seccomp_listener: a seccomp filter that hands getpriority to a user-space
 * supervisor (SECCOMP_RET_USER_NOTIF). Its listener fd is closed again, so the process has no
 * fd amber would refuse on its own: the dump must refuse the filter (the listener could live
 * in any process). With no listener left the kernel answers ENOSYS, which the check expects.
 */
#include "scenario.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_seccomp_listener");
    sc_install_sigterm(0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sc_die("PR_SET_NO_NEW_PRIVS");
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {sizeof program / sizeof program[0], program};
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
    if (listener < 0)
        sc_die("seccomp filter with a listener");
    close((int)listener);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    errno = 0;
    long r = syscall(SYS_getpriority, PRIO_PROCESS, 0);
    sc_check(r == -1 && errno == ENOSYS, "getpriority returned %ld (errno %d), expected ENOSYS with no listener", r, errno);
    sc_finish();
}
