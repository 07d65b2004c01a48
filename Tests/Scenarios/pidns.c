/*
 * pidns: nested PID namespaces, three levels below the host's.
 *
 * The process the runner starts is only a launcher (sc_pidns_launch): it unshares a PID
 * namespace and forks node 0, PID 1 of namespace 1 and the dump root; it writes node 0's
 * host PID to the pidfile once the whole tree is ready, and exits. Nodes (a table below):
 *   namespace 1: 0 (init), 1, 2, 2's child 3, and 4, which is created with
 *                clone(CLONE_NEWPID) and so is the init of namespace 2;
 *   namespace 2: 4 (init), 5, 5's child 6, and 7, the init of namespace 3 (clone again);
 *   namespace 3: 7 (init), 8, 9, 9's child 10.
 * Each node records, before ready, its NSpid line from /proc/self/status (the host's /proc:
 * it lists the PID at every level, from the host's down), getpid() and getppid() (0 for an
 * init: its parent is outside its namespace), checks them against the design (inits are PID
 * 1, the number of levels is right, the parent is the right node) and writes "ready-N". A
 * node is ready once its children are; the root tells the launcher when the tree is.
 *
 * After SIGTERM (the root) or SIGUSR1 (every other node, from its parent, top down): every
 * node runs sc_check_common(), checks getpid() and getppid() against what it recorded, and
 * that NSpid has the same number of levels and the same PIDs at every level but the first
 * (the host's, which a restore may change); it then SIGUSR1s its children, reaps each (PID
 * and exit 0), checks it has no other child, writes "res-N" and exits. The root collects all.
 * A node that sees getppid() change while it waits exits at once with 4 (see tree.c).
 */
#include "scenario.h"

#define N 11
struct node {
    int parent;
    int new_ns; /* created with clone(CLONE_NEWPID): the init of a new namespace */
};
static const struct node nodes[N] = {
    [0] = {-1, 1}, [1] = {0, 0}, [2] = {0, 0}, [3] = {2, 0},  [4] = {0, 1}, [5] = {4, 0},
    [6] = {5, 0},  [7] = {4, 1}, [8] = {7, 0}, [9] = {7, 0},  [10] = {9, 0},
};

struct rec {
    pid_t pid, ppid; /* as seen in the node's own namespace */
    int levels;
    char nspid[128];
};

static int me;
static pid_t kid_pid[N]; /* PIDs of this node's children, in this node's namespace */
static int kids[N], nkids;
static struct rec rec;
static volatile sig_atomic_t told;

static void on_usr1(int sig)
{
    (void)sig;
    told = 1;
}

/* namespace level below the host's: 1 for node 0 */
static int ns_level(int i)
{
    int l = nodes[i].new_ns;
    return nodes[i].parent < 0 ? l : l + ns_level(nodes[i].parent);
}

static int depth(int i) { return nodes[i].parent < 0 ? 0 : 1 + depth(nodes[i].parent); }

static void node_file(char *out, size_t size, const char *kind, int i)
{
    char name[64];
    snprintf(name, sizeof name, "%s-%d", kind, i);
    sc_path(out, size, name);
}

static void node_main(int i, pid_t parent_pid);

static void spawn(int j)
{
    char ready[PATH_MAX];
    node_file(ready, sizeof ready, "ready", j);
    pid_t self = getpid();
    pid_t pid = nodes[j].new_ns ? (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, 0) : fork();
    if (pid < 0)
        sc_die("creating node %d", j);
    if (pid == 0) {
        node_main(j, nodes[j].new_ns ? 0 : self);
        _exit(99);
    }
    kid_pid[j] = pid;
    kids[nkids++] = j;
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 10LL * 1000000000;
    while (access(ready, F_OK) != 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char s[64];
            errno = 0;
            sc_die("node %d ended during setup: %s", j, sc_status_text(st, s, sizeof s));
        }
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline) {
            errno = ETIMEDOUT;
            sc_die("node %d not ready", j);
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void record(int i, pid_t parent_pid)
{
    me = i;
    nkids = 0;
    char comm[16];
    snprintf(comm, sizeof comm, "pidns-%d", i);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    rec.pid = getpid();
    rec.ppid = getppid();
    rec.levels = sc_read_nspid(0, rec.nspid, sizeof rec.nspid);
    errno = 0;
    if (rec.levels != ns_level(i) + 1)
        sc_die("node %d: NSpid '%s' has %d levels, expected %d", i, rec.nspid, rec.levels, ns_level(i) + 1);
    const char *last = strrchr(rec.nspid, ' ');
    if (!last || atoi(last + 1) != rec.pid)
        sc_die("node %d: NSpid '%s' does not end in getpid() %d", i, rec.nspid, (int)rec.pid);
    if (nodes[i].new_ns && rec.pid != 1)
        sc_die("node %d: a namespace init with PID %d", i, (int)rec.pid);
    if (rec.ppid != parent_pid)
        sc_die("node %d: getppid() %d, expected %d", i, (int)rec.ppid, (int)parent_pid);
}

static void write_ready(int i)
{
    char path[PATH_MAX], text[256];
    node_file(path, sizeof path, "ready", i);
    snprintf(text, sizeof text, "%d %d %s\n", (int)rec.pid, (int)rec.ppid, rec.nspid);
    if (sc_write_file_atomic(path, text) < 0)
        sc_die("writing %s", path);
}

static void check_self(void)
{
    sc_check_common();
    sc_check(getpid() == rec.pid, "node %d: getpid() %d, was %d", me, (int)getpid(), (int)rec.pid);
    sc_check(getppid() == rec.ppid, "node %d: getppid() %d, was %d", me, (int)getppid(), (int)rec.ppid);
    char now[128];
    int levels = sc_read_nspid(0, now, sizeof now);
    sc_check(levels == rec.levels, "node %d: NSpid '%s' has %d levels, was '%s' (%d)", me, now, levels, rec.nspid,
             rec.levels);
    sc_check(strcmp(sc_nspid_inner(now), sc_nspid_inner(rec.nspid)) == 0,
             "node %d: NSpid '%s', was '%s' (only the first, the host's, may change)", me, now, rec.nspid);
}

static void setup_children(int i)
{
    for (int j = 0; j < N; j++)
        if (nodes[j].parent == i)
            spawn(j);
}

static void node_main(int i, pid_t parent_pid)
{
    signal(SIGTERM, SIG_DFL);
    record(i, parent_pid);
    setup_children(i);
    sc_snapshot();
    write_ready(i);
    while (!told) {
        if (getppid() != rec.ppid)
            _exit(SC_ORPHANED); /* the parent died (a failed setup): do not linger */
        sc_sleep_ms(20);
    }
    check_self();
    sc_check_child_nodes(me, kids, nkids, kid_pid, 9000 - 700 * depth(i));
    char path[PATH_MAX];
    node_file(path, sizeof path, "res", i);
    _exit(sc_write_result(path));
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "pidns");
    for (int i = 0; i < N; i++) {
        char path[PATH_MAX];
        node_file(path, sizeof path, "ready", i);
        unlink(path);
        node_file(path, sizeof path, "res", i);
        unlink(path);
    }
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, 0);

    sc_pidns_launch(); /* returns in node 0, PID 1 of the new namespace */
    record(0, 0);
    setup_children(0);
    write_ready(0);
    sc_pidns_root_ready();
    sc_wait_for_term();

    check_self();
    sc_check_child_nodes(me, kids, nkids, kid_pid, 10000);
    for (int i = 1; i < N; i++) {
        char path[PATH_MAX], buf[1024];
        node_file(path, sizeof path, "res", i);
        ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
        if (!sc_check(n > 0, "node %d wrote no result", i))
            continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        sc_check(strcmp(buf, "PASS") == 0, "node %d: %s", i, buf);
    }
    sc_finish();
}
