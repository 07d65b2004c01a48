/*
 * credentials_thread: a process whose threads have different credentials. The main thread
 * keeps the runner's (root); a second thread, with raw system calls (glibc's set*id would
 * change every thread), takes supplementary groups {2000}, gids 2000/2001/2002, uids
 * 1000/1001/1002 and fsuid 1001, which clears its capabilities but for the inheritable set,
 * which it had made CAP_KILL alone. The euid change made the process non-dumpable.
 * After SIGTERM each thread checks its own credentials, read back with get*id, capget and
 * /proc/thread-self/status.
 */
#include "credentials.h"
#include <pthread.h>

static char worker_result[4096];
static char worker_lines_before[1024];
static volatile int stop;
static pthread_barrier_t ready;

static void *worker(void *arg)
{
    (void)arg;
    /* raising an inheritable capability needs it permitted (or CAP_SETPCAP): before the drop */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0)
        sc_die("worker: capget");
    data[0].inheritable = 1u << CAP_KILL;
    data[1].inheritable = 0;
    if (syscall(SYS_capset, &header, data) < 0)
        sc_die("worker: capset");
    gid_t groups[] = {2000};
    if (prctl(PR_SET_NAME, "creds-worker", 0, 0, 0) < 0 || syscall(SYS_setgroups, 1, groups) < 0 ||
        syscall(SYS_setresgid, 2000, 2001, 2002) < 0 || syscall(SYS_setresuid, 1000, 1001, 1002) < 0)
        sc_die("worker: setgroups, setresgid or setresuid");
    syscall(SYS_setfsuid, 1001);
    credential_lines("/proc/thread-self/status", worker_lines_before, sizeof worker_lines_before);
    pthread_barrier_wait(&ready);
    while (!stop)
        sc_sleep_ms(10);
    size_t len = 0;
#define NOTE(...) len += (size_t)snprintf(worker_result + len, len < sizeof worker_result ? sizeof worker_result - len : 0, __VA_ARGS__)
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    if (r != 1000 || e != 1001 || s != 1002)
        NOTE("worker: uids %u %u %u; ", r, e, s);
    getresgid(&gr, &ge, &gs);
    if (gr != 2000 || ge != 2001 || gs != 2002)
        NOTE("worker: gids %u %u %u; ", gr, ge, gs);
    long fsuid = syscall(SYS_setfsuid, -1);
    if (fsuid != 1001)
        NOTE("worker: fsuid %ld; ", fsuid);
    gid_t now[4];
    int n = (int)syscall(SYS_getgroups, 4, now);
    if (n != 1 || now[0] != 2000)
        NOTE("worker: %d supplementary groups; ", n);
    uint64_t effective = 0, permitted = 0, inheritable = 0;
    if (capabilities(&effective, &permitted, &inheritable) < 0 || effective != 0 || permitted != 0 ||
        inheritable != 1u << CAP_KILL)
        NOTE("worker: capabilities effective %#llx permitted %#llx inheritable %#llx; ", (unsigned long long)effective,
             (unsigned long long)permitted, (unsigned long long)inheritable);
    char lines[1024];
    credential_lines("/proc/thread-self/status", lines, sizeof lines);
    if (strcmp(lines, worker_lines_before) != 0)
        NOTE("worker: /proc/thread-self/status says %s, was %s; ", lines, worker_lines_before);
#undef NOTE
    return NULL;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "credentials_thread");
    sc_install_sigterm(0);
    pthread_t thread;
    sc_start_workers(&thread, 1, worker, &ready);
    static char lines_before[1024];
    credential_lines("/proc/thread-self/status", lines_before, sizeof lines_before);
    uint64_t effective_before = 0, permitted_before = 0, inheritable_before = 0;
    if (capabilities(&effective_before, &permitted_before, &inheritable_before) < 0)
        sc_die("capget");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    sc_check(r == sc_snap.uid && e == sc_snap.euid && s == sc_snap.euid, "main thread: uids %u %u %u", r, e, s);
    uint64_t effective = 0, permitted = 0, inheritable = 0;
    sc_check(capabilities(&effective, &permitted, &inheritable) == 0 && effective == effective_before &&
                 permitted == permitted_before && inheritable == inheritable_before,
             "main thread: capabilities effective %#llx permitted %#llx inheritable %#llx, were %#llx %#llx %#llx",
             (unsigned long long)effective, (unsigned long long)permitted, (unsigned long long)inheritable,
             (unsigned long long)effective_before, (unsigned long long)permitted_before,
             (unsigned long long)inheritable_before);
    char lines[1024];
    credential_lines("/proc/thread-self/status", lines, sizeof lines);
    sc_check(strcmp(lines, lines_before) == 0, "main thread: /proc/thread-self/status says %s, was %s", lines, lines_before);
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    sc_check(dumpable == 0, "dumpable %d, expected 0 (the worker's euid change)", dumpable);
    stop = 1;
    pthread_join(thread, NULL);
    sc_check(worker_result[0] == 0, "%s", worker_result);
    sc_finish();
}
