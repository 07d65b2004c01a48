/*
 * tree: a process tree of 50 live processes, up to 9 levels deep, with 3 sessions and 6
 * process groups, all made inside the tree (the root starts with setsid()).
 *
 * The shape is the table below. Each node is forked by its parent, applies its action
 * (new process group, new session, or joining the group of an earlier node), names itself
 * "tree-N", forks its own children one after the other (each must be ready before the next
 * is forked) and then writes "ready-N" with its pid, ppid, pgid and sid. So the root is ready
 * once the whole tree is. Special cases:
 *  - node 16 leads a process group that nodes 17 and 21 (its siblings, not its children) and
 *    their descendants join; then the root kills node 16 and reaps it, so that group lives on
 *    without its leader (its PID is in use only as a process group ID);
 *  - node 5 is a child of the session leader (the root) in another process group, and so is
 *    node 28 (child of the session leader 23);
 *  - session 3 is made by node 9, five levels down, whose chain reaches depth 9.
 * Sessions: root (0), 23, 9. Groups: 0, 5, 16 (leader gone), 23, 28, 9.
 *
 * Before ready, the root checks the shape from every ready file (50 processes, 3 sessions,
 * 6 groups, node 16's PID free but its group alive) and each node checks its own ids
 * against the design.
 * After SIGTERM: the root checks, for every node, getpgid(pid)/getsid(pid) and the parent in
 * /proc/PID/stat against the ready file (except the root's own parent, the runner or amber), that node 16's PID is still free (ESRCH) while its
 * group exists; then every process (told by its parent with SIGUSR1, top down) runs
 * sc_check_common() and checks getpid(), getppid(), getpgid(0), getsid(0) and /proc/self/stat
 * against what it recorded, and that its stdout and stderr are still the open file descriptions
 * its parent's are (kcmp), then SIGUSR1s its children, reaps each (PID and exit 0 expected,
 * and no other child), writes "res-N" and exits. The root gathers every res-N.
 * A node that sees getppid() change while it waits exits at once with 4 (so a tree whose
 * setup failed halfway does not linger); its parent reports that.
 */
#include "scenario.h"
#include <linux/kcmp.h>

enum { INHERIT, NEWPG, SETSID, JOINPG, LEADER_EXITS };

struct node {
    int parent;
    int action;
    int arg; /* JOINPG: the node whose group to join */
};

#define N 51
#define GONE 16 /* the group leader that exits */
static const struct node nodes[N] = {
    [0] = {-1, SETSID, 0},
    [1] = {0, INHERIT, 0},      [2] = {1, INHERIT, 0},      [3] = {1, INHERIT, 0},
    [4] = {3, INHERIT, 0},
    [5] = {0, NEWPG, 0}, /* child of the session leader, in another group */
    [6] = {5, INHERIT, 0},      [7] = {5, INHERIT, 0},      [8] = {7, INHERIT, 0},
    [9] = {8, SETSID, 0}, /* the third session */
    [10] = {9, INHERIT, 0},     [11] = {10, INHERIT, 0},    [12] = {11, INHERIT, 0},
    [13] = {12, INHERIT, 0},    [14] = {9, INHERIT, 0},     [15] = {9, INHERIT, 0},
    [16] = {0, LEADER_EXITS, 0},
    [17] = {0, JOINPG, GONE},   [18] = {17, INHERIT, 0},    [19] = {17, INHERIT, 0},
    [20] = {19, INHERIT, 0},    [21] = {0, JOINPG, GONE},   [22] = {21, INHERIT, 0},
    [23] = {0, SETSID, 0}, /* the second session */
    [24] = {23, INHERIT, 0},    [25] = {23, INHERIT, 0},    [26] = {25, INHERIT, 0},
    [27] = {25, INHERIT, 0},
    [28] = {23, NEWPG, 0}, /* child of the session leader 23, in another group */
    [29] = {28, INHERIT, 0},    [30] = {28, INHERIT, 0},    [31] = {30, INHERIT, 0},
    [32] = {31, INHERIT, 0},    [33] = {32, INHERIT, 0},
    [34] = {0, INHERIT, 0},     [35] = {34, INHERIT, 0},    [36] = {34, INHERIT, 0},
    [37] = {36, INHERIT, 0},    [38] = {6, INHERIT, 0},     [39] = {6, INHERIT, 0},
    [40] = {14, INHERIT, 0},    [41] = {14, INHERIT, 0},    [42] = {15, INHERIT, 0},
    [43] = {24, INHERIT, 0},    [44] = {24, INHERIT, 0},    [45] = {26, INHERIT, 0},
    [46] = {29, INHERIT, 0},    [47] = {29, INHERIT, 0},    [48] = {22, INHERIT, 0},
    [49] = {18, INHERIT, 0},    [50] = {35, INHERIT, 0},
};
#define EXPECT_LIVE 50
#define EXPECT_SESSIONS 3
#define EXPECT_GROUPS 6

struct ids {
    pid_t pid, ppid, pgid, sid;
};

static int me;                 /* this process's node */
static pid_t pids[N];          /* PIDs of the nodes forked so far, as this process knows them */
static struct ids rec;         /* this process's ids, recorded before ready */
static struct ids all[N];      /* root: every node's ready file */
static int kids[N], nkids;     /* this process's child nodes (live ones) */
static volatile sig_atomic_t told;

static void on_usr1(int sig)
{
    (void)sig;
    told = 1;
}

static int group_node(int i)
{
    switch (nodes[i].action) {
    case NEWPG:
    case SETSID:
    case LEADER_EXITS:
        return i;
    case JOINPG:
        return nodes[i].arg;
    default:
        return group_node(nodes[i].parent);
    }
}

static int session_node(int i)
{
    return nodes[i].action == SETSID ? i : session_node(nodes[i].parent);
}

static int depth(int i)
{
    return nodes[i].parent < 0 ? 0 : 1 + depth(nodes[i].parent);
}

static void node_file(char *out, size_t size, const char *kind, int i)
{
    char name[64];
    snprintf(name, sizeof name, "%s-%d", kind, i);
    sc_path(out, size, name);
}

/* Whether /proc speaks of our PID namespace: not so after a restore into a new one
 * (amber restore --new-pidns), where /proc is still the host's and shows its PIDs. */
static int proc_shows_own_pids(void)
{
    char buf[64];
    ssize_t n = sc_read_file("/proc/self/stat", buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return atoi(buf) == getpid();
}

static struct ids current_ids(void)
{
    struct ids x = {getpid(), getppid(), getpgid(0), getsid(0)};
    return x;
}

/* pid, ppid, pgrp and session fields of /proc/PID/stat (0 for self) */
static int stat_ids(pid_t pid, struct ids *out)
{
    char path[64], buf[1024];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    char state;
    int pp, pg, ss;
    if (!p || sscanf(p + 1, " %c %d %d %d", &state, &pp, &pg, &ss) != 4)
        return -1;
    out->pid = atoi(buf);
    out->ppid = pp;
    out->pgid = pg;
    out->sid = ss;
    return 0;
}

static void node_main(int i);

/* Fork node j as a child of this process and wait until its subtree is ready. */
static void spawn(int j)
{
    char ready[PATH_MAX];
    node_file(ready, sizeof ready, "ready", j);
    pid_t pid = fork();
    if (pid < 0)
        sc_die("fork node %d", j);
    if (pid == 0) {
        node_main(j);
        _exit(99); /* not reached */
    }
    pids[j] = pid;
    kids[nkids++] = j;
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + 10LL * 1000000000;
    while (access(ready, F_OK) != 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char s[64];
            errno = 0;
            sc_die("node %d (pid %d) ended during setup: %s", j, (int)pid, sc_status_text(st, s, sizeof s));
        }
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline) {
            errno = ETIMEDOUT;
            sc_die("node %d (pid %d) not ready", j, (int)pid);
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Set up node i in this (new) process: its action, its name, its children. */
static void setup_node(int i)
{
    me = i;
    nkids = 0;
    pids[i] = getpid();
    switch (nodes[i].action) {
    case NEWPG:
    case LEADER_EXITS:
        if (setpgid(0, 0) < 0)
            sc_die("node %d: setpgid(0, 0)", i);
        break;
    case SETSID:
        if (setsid() < 0)
            sc_die("node %d: setsid() (the root must not be a process group leader: start it without job control)", i);
        break;
    case JOINPG:
        if (setpgid(0, pids[nodes[i].arg]) < 0)
            sc_die("node %d: setpgid(0, %d)", i, (int)pids[nodes[i].arg]);
        break;
    }
    char comm[16];
    snprintf(comm, sizeof comm, "tree-%d", i);
    prctl(PR_SET_NAME, comm, 0, 0, 0);

    rec = current_ids();
    errno = 0;
    if (i > 0 && rec.ppid != pids[nodes[i].parent])
        sc_die("node %d: parent %d, expected node %d = %d", i, (int)rec.ppid, nodes[i].parent,
               (int)pids[nodes[i].parent]);
    if (rec.pgid != pids[group_node(i)])
        sc_die("node %d: process group %d, expected node %d = %d", i, (int)rec.pgid, group_node(i),
               (int)pids[group_node(i)]);
    if (rec.sid != pids[session_node(i)])
        sc_die("node %d: session %d, expected node %d = %d", i, (int)rec.sid, session_node(i),
               (int)pids[session_node(i)]);

    for (int j = 0; j < N; j++)
        if (nodes[j].parent == i)
            spawn(j);
}

static void write_ready(int i)
{
    char path[PATH_MAX], text[128];
    node_file(path, sizeof path, "ready", i);
    snprintf(text, sizeof text, "%d %d %d %d\n", (int)rec.pid, (int)rec.ppid, (int)rec.pgid, (int)rec.sid);
    if (sc_write_file_atomic(path, text) < 0)
        sc_die("writing %s", path);
}

/* After SIGTERM/SIGUSR1: this process's own checks. */
static void check_self(void)
{
    sc_check_common();
    struct ids now = current_ids();
    sc_check(now.pid == rec.pid, "node %d: getpid() %d, was %d", me, (int)now.pid, (int)rec.pid);
    /* the root's parent is whoever runs it (after a restore: the runner or amber) */
    if (me != 0) {
        sc_check(now.ppid == rec.ppid, "node %d: getppid() %d, was %d", me, (int)now.ppid, (int)rec.ppid);
        /* inherited across fork: one open file description for the whole tree, as before the dump */
        for (int fd = 1; fd <= 2; fd++)
            sc_check(syscall(SYS_kcmp, now.pid, now.ppid, KCMP_FILE, fd, fd) == 0,
                     "node %d: fd %d is not the open file description its parent's fd %d is", me, fd, fd);
    } else
        rec.ppid = now.ppid;
    sc_check(now.pgid == rec.pgid, "node %d: getpgid(0) %d, was %d", me, (int)now.pgid, (int)rec.pgid);
    sc_check(now.sid == rec.sid, "node %d: getsid(0) %d, was %d", me, (int)now.sid, (int)rec.sid);
    sc_check((pid_t)syscall(SYS_gettid) == rec.pid, "node %d: gettid() %ld, was %d", me, (long)syscall(SYS_gettid),
             (int)rec.pid);
    struct ids st;
    if (sc_check(stat_ids(0, &st) == 0, "node %d: cannot read /proc/self/stat", me) && proc_shows_own_pids())
        sc_check(st.pid == rec.pid && st.ppid == rec.ppid && st.pgid == rec.pgid && st.sid == rec.sid,
                 "node %d: /proc/self/stat says pid %d ppid %d pgrp %d session %d, recorded %d %d %d %d", me,
                 (int)st.pid, (int)st.ppid, (int)st.pgid, (int)st.sid, (int)rec.pid, (int)rec.ppid, (int)rec.pgid,
                 (int)rec.sid);
    /* the design, from the PIDs this process knew at setup */
    sc_check(rec.pgid == pids[group_node(me)] && rec.sid == pids[session_node(me)],
             "node %d: recorded group/session do not match the design", me);
}

static void node_main(int i)
{
    signal(SIGTERM, SIG_DFL);
    setup_node(i);
    /* names, fds and the rest as they are now, for sc_check_common() */
    sc_snapshot();
    write_ready(i);
    while (!told) {
        if (getppid() != rec.ppid)
            _exit(SC_ORPHANED); /* the parent died (a failed setup): do not linger */
        sc_sleep_ms(20);
    }
    check_self();
    sc_check_child_nodes(me, kids, nkids, pids, 9000 - 700 * depth(i));
    char path[PATH_MAX];
    node_file(path, sizeof path, "res", i);
    _exit(sc_write_result(path));
}

static int read_ready(int i, struct ids *out)
{
    char path[PATH_MAX], buf[128];
    node_file(path, sizeof path, "ready", i);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    int a, b, c, d;
    if (sscanf(buf, "%d %d %d %d", &a, &b, &c, &d) != 4)
        return -1;
    out->pid = a;
    out->ppid = b;
    out->pgid = c;
    out->sid = d;
    return 0;
}

static int count_distinct(pid_t *v, int n)
{
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= v[j] == v[i];
        distinct += !seen;
    }
    return distinct;
}

/* The root's view of the whole tree; before ready (die) and after SIGTERM (fail). */
static void check_tree(int setup)
{
    pid_t sids[N], pgids[N];
    int live = 0;
    for (int i = 0; i < N; i++) {
        if (i == GONE)
            continue;
        struct ids *x = &all[i];
        pgids[live] = x->pgid;
        sids[live] = x->sid;
        live++;
        /* the kernel's view now */
        pid_t pg = getpgid(x->pid), sd = getsid(x->pid);
        struct ids st;
        int ok = stat_ids(x->pid, &st) == 0;
        if (!sc_check(pg == x->pgid && sd == x->sid, "node %d (pid %d): getpgid %d getsid %d, recorded %d %d", i,
                      (int)x->pid, (int)pg, (int)sd, (int)x->pgid, (int)x->sid))
            continue;
        if (!proc_shows_own_pids())
            continue;
        if (sc_check(ok, "node %d (pid %d): no /proc/PID/stat", i, (int)x->pid))
            sc_check((i == 0 || st.ppid == x->ppid) && st.pgid == x->pgid && st.sid == x->sid,
                     "node %d (pid %d): /proc/PID/stat says ppid %d pgrp %d session %d, recorded %d %d %d", i,
                     (int)x->pid, (int)st.ppid, (int)st.pgid, (int)st.sid, (int)x->ppid, (int)x->pgid, (int)x->sid);
        if (i > 0)
            sc_check(x->ppid == all[nodes[i].parent].pid, "node %d: parent %d is not node %d (%d)", i, (int)x->ppid,
                     nodes[i].parent, (int)all[nodes[i].parent].pid);
    }
    sc_check(live == EXPECT_LIVE, "%d live processes, expected %d", live, EXPECT_LIVE);
    int ns = count_distinct(sids, live), ng = count_distinct(pgids, live);
    sc_check(ns == EXPECT_SESSIONS, "%d sessions, expected %d", ns, EXPECT_SESSIONS);
    sc_check(ng == EXPECT_GROUPS, "%d process groups, expected %d", ng, EXPECT_GROUPS);

    /* the group whose leader is gone: its PID is no process, but the group is there */
    pid_t gone = pids[GONE];
    errno = 0;
    int r = kill(gone, 0);
    sc_check(r < 0 && errno == ESRCH, "PID %d (the exited group leader) is in use: kill() returned %d (%s)", (int)gone,
             r, strerror(errno));
    sc_check(kill(-gone, 0) == 0, "process group %d (leader exited) is gone: %s", (int)gone, strerror(errno));
    sc_check(all[17].pgid == gone && all[22].pgid == gone && all[49].pgid == gone,
             "nodes 17, 22, 49 are not in group %d", (int)gone);
    /* children of a session leader in another group */
    sc_check(all[5].sid == all[0].pid && all[5].pgid != all[0].pgid && all[5].ppid == all[0].pid,
             "node 5 is not a child of the session leader in another group");
    sc_check(all[28].sid == all[23].pid && all[28].pgid != all[23].pgid && all[28].ppid == all[23].pid,
             "node 28 is not a child of the session leader 23 in another group");
    if (setup && sc_nfail) {
        errno = 0;
        sc_die("the tree is not as designed: %s", sc_failures);
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "tree");
    for (int i = 0; i < N; i++) {
        char path[PATH_MAX];
        node_file(path, sizeof path, "ready", i);
        unlink(path);
        node_file(path, sizeof path, "res", i);
        unlink(path);
    }
    sc_install_sigterm(0);
    sc_handle(SIGUSR1, on_usr1, 0);

    setup_node(0);
    /* node 16's group has its members: the leader goes */
    int st;
    if (kill(pids[GONE], SIGKILL) < 0 || waitpid(pids[GONE], &st, 0) != pids[GONE] || !WIFSIGNALED(st) ||
        WTERMSIG(st) != SIGKILL)
        sc_die("killing and reaping node %d", GONE);
    for (int k = 0; k < nkids; k++)
        if (kids[k] == GONE)
            kids[k--] = kids[--nkids];
    write_ready(0);
    for (int i = 0; i < N; i++)
        if (i != GONE && read_ready(i, &all[i]) < 0)
            sc_die("reading ready-%d", i);
    check_tree(1);

    sc_ready();
    sc_wait_for_term();

    check_self();
    check_tree(0);
    sc_check_child_nodes(me, kids, nkids, pids, 10000);
    for (int i = 1; i < N; i++) {
        if (i == GONE)
            continue;
        char path[PATH_MAX], buf[1024];
        node_file(path, sizeof path, "res", i);
        ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
        if (!sc_check(n > 0, "node %d (pid %d) wrote no result", i, (int)all[i].pid))
            continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        sc_check(strcmp(buf, "PASS") == 0, "node %d: %s", i, buf);
    }
    sc_finish();
}
