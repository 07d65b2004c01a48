// Runs a command as a child subreaper (PR_SET_CHILD_SUBREAPER) that reaps every orphan at once,
// as a container manager does (containerd-shim, conmon): a detached container's init is its
// child, not PID 1's (which reaps slowly on this machine). Exits with the command's status.
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: subreaper COMMAND [ARG...]\n");
        return 64;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
        return 1;
    }
    pid_t command = fork();
    if (command < 0) {
        perror("fork");
        return 1;
    }
    if (command == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    for (;;) {
        int status;
        pid_t reaped = wait(&status);
        if (reaped < 0) return 1;
        if (reaped == command) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
}
