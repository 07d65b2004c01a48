/*
 * credentials_tree: a root parent and a child that dropped privilege. As root, the child sets
 * securebits (keep-caps, noroot and its lock), drops CAP_SYS_BOOT from its bounding set, then
 * takes supplementary groups {1000, 1001}, gids 1000/1001/1002 (real, effective, saved) with
 * fsgid 1000, uids 1000/1001/1002 with fsuid 1002, keeps only CAP_NET_BIND_SERVICE (permitted,
 * effective, inheritable and ambient) and, after the uid change cleared it, sets its
 * parent-death signal again (SIGKILL, so that a killed scenario leaves no child). The change of
 * euid made it non-dumpable (fs.suid_dumpable 0). Its audit login uid is CHILD_LOGINUID (set as
 * root through /proc/self/loginuid). It opened its result file before dropping. With
 * --private-paths it also entered, before dropping, a directory only root may enter (0700),
 * mapped, private and read-only, a file only root may read (0600) there, then closed it, and
 * bound a unix listener there.
 * After SIGTERM the parent checks its own credentials are unchanged and tells the child
 * (SIGUSR1) to check all of its own, read back with get*id, capget, prctl and /proc/self/status.
 */
#include "credentials.h"
#include <grp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/fsuid.h>
#include <linux/securebits.h>

#define CHILD_UID_R 1000
#define CHILD_UID_E 1001
#define CHILD_UID_S 1002
#define CHILD_FSUID 1002
#define CHILD_GID_R 1000
#define CHILD_GID_E 1001
#define CHILD_GID_S 1002
#define CHILD_FSGID 1000
#define CHILD_SECUREBITS (SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED)
#define CHILD_CAPS (1ULL << CAP_NET_BIND_SERVICE)
#define CHILD_LOGINUID 4321

static volatile sig_atomic_t checking;

static void on_usr1(int sig)
{
    (void)sig;
    checking = 1;
}

static const char *private_mapping;
static int private_listener = -1;

static void child_setup(int ready)
{
    uint64_t caps = CHILD_CAPS;
    if (sc_has_flag("--private-paths")) {
        private_mapping = sc_private_mapping();
        /* The test's directory makes too long a path for sun_path: one of /tmp, root's alone. */
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        snprintf(address.sun_path, sizeof address.sun_path, "/tmp/amber-private-%d", (int)getppid());
        if (mkdir(address.sun_path, 0700) != 0 && errno != EEXIST)
            sc_die("mkdir %s", address.sun_path);
        strcat(address.sun_path, "/app.sock");
        unlink(address.sun_path);
        private_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (private_listener < 0 || bind(private_listener, (struct sockaddr *)&address, sizeof address) != 0 ||
            listen(private_listener, 4) != 0)
            sc_die("a unix listener in the private directory (%s)", address.sun_path);
    }
    char loginuid[16];
    int fd = open("/proc/self/loginuid", O_WRONLY);
    int length = snprintf(loginuid, sizeof loginuid, "%d", CHILD_LOGINUID);
    if (fd < 0 || write(fd, loginuid, (size_t)length) != length)
        sc_die("write /proc/self/loginuid");
    close(fd);
    if (prctl(PR_SET_SECUREBITS, CHILD_SECUREBITS, 0, 0, 0) < 0)
        sc_die("PR_SET_SECUREBITS");
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) < 0)
        sc_die("PR_CAPBSET_DROP");
    gid_t groups[] = {1000, 1001};
    if (setgroups(2, groups) < 0 || setresgid(CHILD_GID_R, CHILD_GID_E, CHILD_GID_S) < 0 ||
        setresuid(CHILD_UID_R, CHILD_UID_E, CHILD_UID_S) < 0)
        sc_die("setgroups, setresgid or setresuid");
    /* fs IDs within real, effective and saved need no privilege */
    setfsgid(CHILD_FSGID);
    setfsuid(CHILD_FSUID);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{(uint32_t)caps, (uint32_t)caps, (uint32_t)caps}, {0, 0, 0}};
    if (syscall(SYS_capset, &header, data) < 0)
        sc_die("capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) < 0)
        sc_die("PR_CAP_AMBIENT_RAISE");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        sc_die("PR_SET_PDEATHSIG");
    if (write(ready, "r", 1) != 1)
        sc_die("write to the parent");
    close(ready);
}

static void child_check(pid_t parent, const char *lines_before)
{
    if (sc_has_flag("--private-paths")) {
        char cwd[PATH_MAX] = "";
        sc_check(getcwd(cwd, sizeof cwd) && strlen(cwd) >= 8 && strcmp(cwd + strlen(cwd) - 8, "/private") == 0,
                 "child: working directory %s", cwd);
        sc_check(memcmp(private_mapping, "secret!", 7) == 0, "child: the private file's mapping changed");
        struct sockaddr_un name = {0};
        socklen_t size = sizeof name;
        int listening = 0;
        socklen_t length = sizeof listening;
        sc_check(getsockname(private_listener, (struct sockaddr *)&name, &size) == 0 &&
                     strstr(name.sun_path, "/amber-private-") != NULL &&
                     getsockopt(private_listener, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening,
                 "child: the listener in the private directory is gone (%s)", name.sun_path);
    }
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    sc_check(r == CHILD_UID_R && e == CHILD_UID_E && s == CHILD_UID_S, "child: uids %u %u %u", r, e, s);
    getresgid(&gr, &ge, &gs);
    sc_check(gr == CHILD_GID_R && ge == CHILD_GID_E && gs == CHILD_GID_S, "child: gids %u %u %u", gr, ge, gs);
    int fsuid = setfsuid(-1), fsgid = setfsgid(-1);
    sc_check(fsuid == CHILD_FSUID && fsgid == CHILD_FSGID, "child: fsuid %d, fsgid %d", fsuid, fsgid);
    gid_t groups[8];
    int n = getgroups(8, groups);
    sc_check(n == 2 && groups[0] == 1000 && groups[1] == 1001, "child: %d supplementary groups", n);
    uint64_t effective = 0, permitted = 0, inheritable = 0;
    if (sc_check(capabilities(&effective, &permitted, &inheritable) == 0, "child: capget failed"))
        sc_check(effective == CHILD_CAPS && permitted == CHILD_CAPS && inheritable == CHILD_CAPS,
                 "child: capabilities effective %#llx permitted %#llx inheritable %#llx", (unsigned long long)effective,
                 (unsigned long long)permitted, (unsigned long long)inheritable);
    sc_check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 1, "child: no ambient CAP_NET_BIND_SERVICE");
    sc_check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) == 0, "child: ambient CAP_CHOWN");
    sc_check(prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) == 0, "child: CAP_SYS_BOOT is back in the bounding set");
    sc_check(prctl(PR_CAPBSET_READ, CAP_CHOWN, 0, 0, 0) == 1, "child: CAP_CHOWN left the bounding set");
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    sc_check(bits == CHILD_SECUREBITS, "child: securebits %#x, expected %#x", bits, CHILD_SECUREBITS);
    sc_check(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) == 1, "child: keep-caps is off");
    sc_check(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0, "child: no_new_privs is set");
    int signal = -1;
    prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0);
    sc_check(signal == SIGKILL, "child: parent-death signal %d, expected SIGKILL", signal);
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    sc_check(dumpable == 0, "child: dumpable %d, expected 0", dumpable);
    sc_check(getppid() == parent, "child: parent %d, expected %d", getppid(), parent);
    char loginuid[16] = "";
    ssize_t length = sc_read_file("/proc/self/loginuid", loginuid, sizeof loginuid - 1);
    loginuid[length > 0 ? length : 0] = 0;
    sc_check(atoi(loginuid) == CHILD_LOGINUID, "child: login uid %s, expected %d", loginuid, CHILD_LOGINUID);
    char lines[2048];
    credential_lines("/proc/self/status", lines, sizeof lines);
    sc_check(strcmp(lines, lines_before) == 0, "child: /proc/self/status says %s, was %s", lines, lines_before);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "credentials_tree");
    sc_install_sigterm(0);
    pid_t parent = getpid();
    char result_path[PATH_MAX];
    sc_path(result_path, sizeof result_path, "child-result");
    unlink(result_path);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        sc_die("pipe2");
    pid_t child = fork();
    if (child < 0)
        sc_die("fork");
    if (child == 0) {
        close(ready[0]);
        signal(SIGTERM, SIG_DFL);
        signal(SIGUSR1, on_usr1);
        /* opened as root: the child cannot create files in the scenario directory any more */
        int result = open(result_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (result < 0)
            sc_die("open %s", result_path);
        child_setup(ready[1]);
        static char lines_before[2048];
        credential_lines("/proc/self/status", lines_before, sizeof lines_before);
        while (!checking) {
            if (getppid() != parent)
                _exit(SC_ORPHANED);
            sc_sleep_ms(10);
        }
        child_check(parent, lines_before);
        char verdict[sizeof sc_failures + 16];
        int len = snprintf(verdict, sizeof verdict, sc_nfail ? "FAIL: %s\n" : "PASS\n", sc_failures);
        if (write(result, verdict, (size_t)len) != len)
            _exit(3);
        _exit(sc_nfail ? 1 : 0);
    }
    close(ready[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1)
        sc_die("the child did not get ready");
    close(ready[0]);
    static char lines_before[2048];
    credential_lines("/proc/self/status", lines_before, sizeof lines_before);
    int bits_before = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    char lines[2048];
    credential_lines("/proc/self/status", lines, sizeof lines);
    sc_check(strcmp(lines, lines_before) == 0, "parent: /proc/self/status says %s, was %s", lines, lines_before);
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    sc_check(bits == bits_before, "parent: securebits %#x, was %#x", bits, bits_before);
    int kids[] = {1};
    pid_t pid_of[] = {parent, child};
    sc_check_child_nodes(0, kids, 1, pid_of, 10000);
    char verdict[1024];
    ssize_t n = sc_read_file(result_path, verdict, sizeof verdict - 1);
    verdict[n > 0 ? n : 0] = 0;
    if (n > 0 && verdict[n - 1] == '\n')
        verdict[n - 1] = 0;
    sc_check(strcmp(verdict, "PASS") == 0, "child's verdict: %s", n > 0 ? verdict : "none");
    if (sc_has_flag("--private-paths")) {
        char directory[64];
        snprintf(directory, sizeof directory, "/tmp/amber-private-%d", (int)parent);
        char socket_path[80];
        snprintf(socket_path, sizeof socket_path, "%s/app.sock", directory);
        unlink(socket_path);
        rmdir(directory);
    }
    sc_finish();
}
