/*
 * private_paths: a process and its child that dropped privilege (to uid and gid 65534) after
 * the process entered a directory only root may enter (0700) and mapped, private and read-only,
 * a file only root may read (0600) there, then closed it; the child, forked after the drop,
 * shares both. Its own directory is given to 65534 first, for its result. After SIGTERM each
 * checks its working directory and the mapping (the child through the pipe it answers on).
 */
#include "scenario.h"
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define NOBODY 65534

static const char *mapping;
static int answer[2] = {-1, -1};

static int paths_intact(void)
{
    char cwd[PATH_MAX] = "";
    return getcwd(cwd, sizeof cwd) && strlen(cwd) >= 8 && strcmp(cwd + strlen(cwd) - 8, "/private") == 0 &&
           memcmp(mapping, "secret!", 7) == 0;
}

static void on_usr1(int signal)
{
    (void)signal;
    char verdict = paths_intact() ? 'y' : 'n';
    _exit(write(answer[1], &verdict, 1) == 1 ? 0 : 3);
}

static void child_setup(void)
{
    sc_handle(SIGUSR1, on_usr1, 0);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "private_paths");
    sc_install_sigterm(0);
    mapping = sc_private_mapping();
    if (pipe(answer) != 0 || chown(sc_dir, NOBODY, NOBODY) != 0)
        sc_die("a pipe, and the scenario's directory given away");
    if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        sc_die("dropping privilege");
    /* The uid change made it non-dumpable: its child's /proc/PID/syscall would be root's. */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
        sc_die("PR_SET_DUMPABLE");
    pid_t child = sc_fork_paused_child(child_setup);
    sc_wait_in_pause(child);
    sc_ready();
    sc_wait_for_term();
    sc_check(paths_intact(), "the working directory or the private file's mapping changed");
    char verdict = 0;
    int status = 0;
    sc_check(kill(child, SIGUSR1) == 0 && read(answer[0], &verdict, 1) == 1 && verdict == 'y',
             "the child's working directory or mapping changed");
    waitpid(child, &status, 0);
    sc_finish();
}
