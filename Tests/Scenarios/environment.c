/*
 * environment: the process's surroundings.
 *
 * Set up: chdir into a directory it creates next to --outfile (with a space in its name) and
 * leaves a marker file there; umask 027; soft limits changed below their hard limits
 * (RLIMIT_NOFILE and RLIMIT_STACK lowered, RLIMIT_CORE set to a value between 0 and the hard
 * limit; no hard limit is raised), after it put a descriptor at two below its first soft
 * RLIMIT_NOFILE (the restorer's too, started as the test starts it: the restore opens its own
 * above the process's); comm set with prctl(PR_SET_NAME).
 * It must be run with the extra arguments  --extra "two words" --utf8 "ü€"  and the
 * environment variable AMBER_SCENARIO_VAR="hello world" (it fails if they are missing, so a
 * runner that forgets them does not pass by accident).
 *
 * After SIGTERM: cwd (getcwd, /proc/self/cwd, and a relative open of the marker), umask,
 * every soft and hard limit, comm (prctl and /proc/self/comm), and /proc/self/cmdline and
 * /proc/self/environ byte for byte as read at start; argv[] and getenv() still agree.
 */
#include "scenario.h"

#define COMM "amber-env-scen"
static int high_fd = -1;
#define ENV_NAME "AMBER_SCENARIO_VAR"
#define ENV_VALUE "hello world"

static char dir_path[PATH_MAX];
static char cmdline_start[64 * 1024], environ_start[256 * 1024];
static ssize_t cmdline_len, environ_len;
static struct rlimit limits_set[RLIM_NLIMITS];
static char **saved_argv;
static int saved_argc;

static void lower(int resource, rlim_t want)
{
    struct rlimit l;
    if (getrlimit(resource, &l) < 0)
        sc_die("getrlimit %d", resource);
    if (l.rlim_max != RLIM_INFINITY && want > l.rlim_max)
        want = l.rlim_max;
    if (l.rlim_cur != RLIM_INFINITY && want >= l.rlim_cur && resource != RLIMIT_CORE)
        want = l.rlim_cur / 2;
    l.rlim_cur = want;
    if (setrlimit(resource, &l) < 0)
        sc_die("setrlimit %d", resource);
}

static int arg_present(const char *a, const char *b)
{
    for (int i = 0; i + 1 < saved_argc; i++)
        if (strcmp(saved_argv[i], a) == 0 && strcmp(saved_argv[i + 1], b) == 0)
            return 1;
    return 0;
}

static void compare_blob(const char *what, const char *path, const char *was, ssize_t was_len)
{
    static char now[256 * 1024];
    ssize_t n = sc_read_file(path, now, sizeof now);
    if (!sc_check(n >= 0, "cannot read %s: %s", path, strerror(errno)))
        return;
    if (n == was_len && memcmp(now, was, (size_t)n) == 0)
        return;
    ssize_t i = 0;
    while (i < n && i < was_len && now[i] == was[i])
        i++;
    sc_fail("%s changed: %zd bytes, was %zd; first difference at byte %zd", what, n, was_len, i);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "environment");
    saved_argc = argc;
    saved_argv = argv;
    sc_install_sigterm(0);

    if (!arg_present("--extra", "two words") || !arg_present("--utf8", "ü€"))
        sc_fail("run without the extra arguments --extra \"two words\" --utf8 \"ü€\"");
    const char *v = getenv(ENV_NAME);
    if (!v || strcmp(v, ENV_VALUE) != 0)
        sc_fail("run without %s=\"%s\" in the environment", ENV_NAME, ENV_VALUE);

    sc_path(dir_path, sizeof dir_path, "env work dir");
    if (mkdir(dir_path, 0755) < 0 && errno != EEXIST)
        sc_die("mkdir %s", dir_path);
    if (chdir(dir_path) < 0)
        sc_die("chdir %s", dir_path);
    int fd = open("marker", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sc_write_all(fd, "marker\n", 7) < 0 || close(fd) < 0)
        sc_die("marker");

    umask(027);
    struct rlimit first;
    if (getrlimit(RLIMIT_NOFILE, &first) != 0 || first.rlim_cur < 16)
        sc_die("RLIMIT_NOFILE");
    high_fd = (int)first.rlim_cur - 2;
    if (dup2(0, high_fd) != high_fd)
        sc_die("dup2 to fd %d", high_fd);
    lower(RLIMIT_NOFILE, 512);
    lower(RLIMIT_STACK, 4 * 1024 * 1024);
    lower(RLIMIT_CORE, 12345 * 1024);
    for (int r = 0; r < RLIM_NLIMITS; r++)
        getrlimit(r, &limits_set[r]);
    if (prctl(PR_SET_NAME, COMM, 0, 0, 0) < 0)
        sc_die("PR_SET_NAME");

    cmdline_len = sc_read_file("/proc/self/cmdline", cmdline_start, sizeof cmdline_start);
    environ_len = sc_read_file("/proc/self/environ", environ_start, sizeof environ_start);
    if (cmdline_len <= 0 || environ_len < 0)
        sc_die("reading /proc/self/cmdline or environ");

    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    char cwd[PATH_MAX];
    if (sc_check(getcwd(cwd, sizeof cwd) != NULL, "getcwd: %s", strerror(errno)))
        sc_check(strcmp(cwd, dir_path) == 0, "cwd is '%s', expected '%s'", cwd, dir_path);
    char link[PATH_MAX];
    ssize_t len = readlink("/proc/self/cwd", link, sizeof link - 1);
    link[len < 0 ? 0 : len] = 0;
    sc_check(strcmp(link, dir_path) == 0, "/proc/self/cwd is '%s', expected '%s'", link, dir_path);
    char marker[16];
    ssize_t m = sc_read_file("marker", marker, sizeof marker);
    sc_check(m == 7 && memcmp(marker, "marker\n", 7) == 0, "relative open of 'marker' in the cwd failed");

    mode_t mask = umask(0);
    umask(mask);
    sc_check(mask == 027, "umask is %03o, expected 027", mask);

    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit l;
        getrlimit(r, &l);
        sc_check(l.rlim_cur == limits_set[r].rlim_cur && l.rlim_max == limits_set[r].rlim_max,
                 "rlimit %d is %llu/%llu, set %llu/%llu", r, (unsigned long long)l.rlim_cur,
                 (unsigned long long)l.rlim_max, (unsigned long long)limits_set[r].rlim_cur,
                 (unsigned long long)limits_set[r].rlim_max);
    }
    sc_check(limits_set[RLIMIT_NOFILE].rlim_cur <= 512, "RLIMIT_NOFILE soft limit was not lowered");
    sc_check(fcntl(high_fd, F_GETFD) >= 0, "fd %d is gone", high_fd);

    char comm[32] = {0};
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    sc_check(strcmp(comm, COMM) == 0, "comm (prctl) is '%s', expected '%s'", comm, COMM);
    char pcomm[64];
    ssize_t cl = sc_read_file("/proc/self/comm", pcomm, sizeof pcomm - 1);
    pcomm[cl < 0 ? 0 : cl] = 0;
    sc_check(strcmp(pcomm, COMM "\n") == 0, "/proc/self/comm is '%s'", pcomm);

    compare_blob("/proc/self/cmdline", "/proc/self/cmdline", cmdline_start, cmdline_len);
    compare_blob("/proc/self/environ", "/proc/self/environ", environ_start, environ_len);
    sc_check(arg_present("--extra", "two words") && arg_present("--utf8", "ü€"), "argv[] lost the extra arguments");
    v = getenv(ENV_NAME);
    sc_check(v && strcmp(v, ENV_VALUE) == 0, "getenv(%s) is '%s'", ENV_NAME, v ? v : "(null)");
    /* the strings /proc shows are the ones argv points at */
    sc_check(strcmp(cmdline_start, argv[0]) == 0, "/proc/self/cmdline starts with '%s', argv[0] is '%s'",
             cmdline_start, argv[0]);

    sc_finish();
}
