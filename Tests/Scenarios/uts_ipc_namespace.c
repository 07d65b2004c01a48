/*
 * uts_ipc_namespace: a tree (the root and a paused child) in a UTS and/or IPC namespace of its
 * own, which the root made with unshare before forking. --uts: the hostname and domainname
 * are set. --ipc: two sysctls of the IPC namespace are changed (kernel.msgmax,
 * fs.mqueue.msg_max); with --sysv-object a System V message queue is left in it, with
 * --mqueue-object a POSIX message queue (both of which `amber dump` must refuse, naming them).
 * After SIGTERM the root checks that it is still in a namespace of its own (not the one it
 * started in), that the child is in the same one, and the names; for IPC, the sysctls, that
 * the namespace holds no System V object, and that a new message queue can be made, used and
 * removed in it.
 */
#include "scenario.h"
#include <mqueue.h>
#include <sys/msg.h>
#include <sys/utsname.h>

#define HOSTNAME "amber-uts-host"
#define DOMAINNAME "amber-uts-domain"
#define MSGMAX "4321"
#define MQ_MSG_MAX "17"

static void write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || sc_write_all(fd, value, strlen(value)) != 0)
        sc_die("writing %s to %s", value, path);
    close(fd);
}

static int sysctl_is(const char *path, const char *value)
{
    char text[64] = {0};
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    if (n > 0 && text[n - 1] == '\n')
        text[n - 1] = 0;
    return n > 0 && strcmp(text, value) == 0;
}

static void namespace_of(pid_t pid, const char *kind, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, kind);
    memset(out, 0, size);
    if (readlink(path, out, size - 1) < 0)
        sc_fail("readlink %s: %s", path, strerror(errno));
}

/* The number of System V objects /proc/sysvipc/KIND lists (its first line is a header). */
static int sysv_objects(const char *kind)
{
    char path[64], text[8192] = {0};
    snprintf(path, sizeof path, "/proc/sysvipc/%s", kind);
    if (sc_read_file(path, text, sizeof text - 1) < 0)
        return -1;
    int lines = 0;
    for (char *c = text; *c; c++)
        lines += *c == '\n';
    return lines - 1;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "uts_ipc_namespace");
    sc_install_sigterm(0);
    int uts = sc_has_flag("--uts"), ipc = sc_has_flag("--ipc");
    char before_uts[128], before_ipc[128];
    namespace_of(getpid(), "uts", before_uts, sizeof before_uts);
    namespace_of(getpid(), "ipc", before_ipc, sizeof before_ipc);
    if (unshare((uts ? CLONE_NEWUTS : 0) | (ipc ? CLONE_NEWIPC : 0)) != 0)
        sc_die("unshare: %s", strerror(errno));
    if (uts && (sethostname(HOSTNAME, strlen(HOSTNAME)) != 0 || setdomainname(DOMAINNAME, strlen(DOMAINNAME)) != 0))
        sc_die("naming the UTS namespace: %s", strerror(errno));
    int queue = -1;
    if (ipc) {
        write_sysctl("/proc/sys/kernel/msgmax", MSGMAX "\n");
        write_sysctl("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX "\n");
        if (sc_has_flag("--sysv-object") && (queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600)) < 0)
            sc_die("msgget: %s", strerror(errno));
        if (sc_has_flag("--mqueue-object")) {
            mqd_t mq = mq_open("/amber-scenario", O_CREAT | O_RDWR | O_CLOEXEC, 0600, NULL);
            if (mq == (mqd_t)-1)
                sc_die("mq_open: %s", strerror(errno));
            mq_close(mq);
        }
    }
    pid_t child = sc_fork_paused_child(NULL);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char ours[128], theirs[128];
    if (uts) {
        namespace_of(getpid(), "uts", ours, sizeof ours);
        namespace_of(child, "uts", theirs, sizeof theirs);
        sc_check(strcmp(ours, before_uts) != 0, "back in the UTS namespace %s it started in", before_uts);
        sc_check(strcmp(ours, theirs) == 0, "the child is in the UTS namespace %s, not %s", theirs, ours);
        struct utsname names;
        sc_check(uname(&names) == 0 && strcmp(names.nodename, HOSTNAME) == 0, "hostname %s, not " HOSTNAME,
                 names.nodename);
        sc_check(strcmp(names.domainname, DOMAINNAME) == 0, "domainname %s, not " DOMAINNAME, names.domainname);
    }
    if (ipc) {
        namespace_of(getpid(), "ipc", ours, sizeof ours);
        namespace_of(child, "ipc", theirs, sizeof theirs);
        sc_check(strcmp(ours, before_ipc) != 0, "back in the IPC namespace %s it started in", before_ipc);
        sc_check(strcmp(ours, theirs) == 0, "the child is in the IPC namespace %s, not %s", theirs, ours);
        sc_check(sysctl_is("/proc/sys/kernel/msgmax", MSGMAX), "kernel.msgmax is no longer " MSGMAX);
        sc_check(sysctl_is("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX), "fs.mqueue.msg_max is no longer " MQ_MSG_MAX);
        if (queue >= 0) {
            sc_check(msgctl(queue, IPC_RMID, NULL) == 0, "removing the message queue %d: %s", queue, strerror(errno));
        } else {
            sc_check(sysv_objects("msg") == 0 && sysv_objects("sem") == 0 && sysv_objects("shm") == 0,
                     "the namespace holds System V objects");
        }
        if (sc_has_flag("--mqueue-object"))
            sc_check(mq_unlink("/amber-scenario") == 0, "mq_unlink: %s", strerror(errno));
        struct {
            long type;
            char text[8];
        } sent = {1, "hello"}, got = {0, ""};
        int made = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        sc_check(made >= 0, "msgget in the namespace: %s", strerror(errno));
        if (made >= 0) {
            sc_check(msgsnd(made, &sent, sizeof sent.text, IPC_NOWAIT) == 0 &&
                         msgrcv(made, &got, sizeof got.text, 1, IPC_NOWAIT) == (ssize_t)sizeof got.text &&
                         strcmp(got.text, "hello") == 0,
                     "a message through a new queue: %s", strerror(errno));
            sc_check(msgctl(made, IPC_RMID, NULL) == 0, "removing the new queue: %s", strerror(errno));
        }
    }
    int status;
    sc_check(kill(child, SIGKILL) == 0 && waitpid(child, &status, 0) == child, "the child %d is gone", (int)child);
    sc_finish();
}
