/*
 * unsupported_namespace: a child in a namespace or cgroup other than its parent's (and
 * amber's). One option picks which: --uts (hostname "inner"), --mnt, --ipc, --net, --cgroupns,
 * --time (the child unshares CLONE_NEWTIME and forks a grandchild, which is in the new time
 * namespace), --cgroup (the child is moved into a new cgroup under the root's, in the memory
 * hierarchy of cgroup v1 if there is one, else in cgroup v2). `amber
 * dump` of the root must refuse, naming the child and the namespace or cgroup, and leave them
 * running. After SIGTERM the root checks the child is still there and still apart, kills and
 * reaps it, and removes the cgroup it made.
 */
#include "scenario.h"

static char ready_file[PATH_MAX];
static char cgroup_dir[PATH_MAX];

struct kind {
    const char *flag;
    const char *ns;
    int clone_flag;
};

static const struct kind kinds[] = {
    {"--uts", "uts", CLONE_NEWUTS},   {"--mnt", "mnt", CLONE_NEWNS},
    {"--ipc", "ipc", CLONE_NEWIPC},   {"--net", "net", CLONE_NEWNET},
    {"--cgroupns", "cgroup", CLONE_NEWCGROUP}, {"--time", "time", CLONE_NEWTIME},
    {"--cgroup", NULL, 0},
};

static void sleep_forever(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGTERM, SIG_DFL);
    for (;;)
        pause();
}

static void child(const struct kind *kind)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGTERM, SIG_DFL);
    if (kind->clone_flag) {
        if (unshare(kind->clone_flag) != 0)
            _exit(3);
        if (kind->clone_flag == CLONE_NEWUTS && sethostname("inner", 5) != 0)
            _exit(4);
        if (kind->clone_flag == CLONE_NEWTIME) {
            pid_t grandchild = fork();
            if (grandchild < 0)
                _exit(5);
            if (grandchild == 0)
                sleep_forever();
        }
    }
    int fd = open(ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        _exit(6);
    close(fd);
    for (;;)
        pause();
}

/* A new cgroup directory under ours, in `out`: in the cgroup v1 memory hierarchy if there is
 * one, else in the v2 hierarchy (mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup). */
static void new_cgroup(char *out, size_t size)
{
    char text[4096];
    ssize_t n = sc_read_file("/proc/self/cgroup", text, sizeof text - 1);
    if (n < 0)
        sc_die("reading /proc/self/cgroup");
    text[n] = 0;
    const char *memory = NULL, *unified = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *controllers = strchr(line, ':');
        if (controllers && strncmp(controllers + 1, "memory:", 7) == 0)
            memory = controllers + 8;
        else if (strncmp(line, "0::", 3) == 0)
            unified = line + 3;
    }
    const char *path = memory ? memory : unified;
    const char *mount = memory ? "/sys/fs/cgroup/memory" : access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0 ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
    if (!path)
        sc_die("no memory or cgroup v2 line in /proc/self/cgroup");
    sc_fmt(out, size, "%s%s/amber-scenario-%d", mount, strcmp(path, "/") == 0 ? "" : path, (int)getpid());
}

static int same_namespace(pid_t pid, const char *ns)
{
    char path[64], ours[128] = {0}, theirs[128] = {0};
    snprintf(path, sizeof path, "/proc/self/ns/%s", ns);
    if (readlink(path, ours, sizeof ours - 1) < 0)
        return -1;
    /* The child's own time namespace stays; its children's is the new one. */
    snprintf(path, sizeof path, "/proc/%d/ns/%s%s", (int)pid, ns, strcmp(ns, "time") == 0 ? "_for_children" : "");
    if (readlink(path, theirs, sizeof theirs - 1) < 0)
        return -1;
    return strcmp(ours, theirs) == 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_namespace");
    sc_install_sigterm(0);
    const struct kind *kind = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (sc_has_flag(kinds[i].flag))
            kind = &kinds[i];
    if (!kind)
        sc_die("which namespace: --uts, --mnt, --ipc, --net, --cgroupns, --time or --cgroup");
    sc_path(ready_file, sizeof ready_file, "child-ready");
    pid_t c = fork();
    if (c < 0)
        sc_die("fork");
    if (c == 0)
        child(kind);
    if (sc_wait_for_file(ready_file, 10000) != 0)
        sc_die("the child did not set up");
    if (!kind->ns) {
        new_cgroup(cgroup_dir, sizeof cgroup_dir);
        char procs[PATH_MAX + 16], number[32];
        sc_fmt(procs, sizeof procs, "%s/cgroup.procs", cgroup_dir);
        snprintf(number, sizeof number, "%d\n", (int)c);
        int fd;
        if (mkdir(cgroup_dir, 0755) != 0 || (fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0 || sc_write_all(fd, number, strlen(number)) != 0)
            sc_die("moving the child into %s", cgroup_dir);
        close(fd);
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    if (kind->ns) {
        sc_check(same_namespace(c, kind->ns) == 0, "the child is no longer in a %s namespace of its own", kind->ns);
    } else {
        char ours[4096] = {0}, theirs[4096] = {0}, path[64];
        snprintf(path, sizeof path, "/proc/%d/cgroup", (int)c);
        sc_check(sc_read_file("/proc/self/cgroup", ours, sizeof ours - 1) > 0 && sc_read_file(path, theirs, sizeof theirs - 1) > 0 && strcmp(ours, theirs) != 0,
                 "the child is no longer in a cgroup of its own");
    }
    int status;
    sc_check(kill(c, SIGKILL) == 0 && waitpid(c, &status, 0) == c, "the child %d is gone", (int)c);
    if (!kind->ns)
        sc_check(rmdir(cgroup_dir) == 0, "rmdir %s: %s", cgroup_dir, strerror(errno));
    sc_finish();
}
