/*
 * unsupported_lock: a process holding a read lease (fcntl F_SETLEASE), which restore does not
 * take again. `amber dump` must refuse, naming the lease and the file, and leave the process
 * running. After SIGTERM it checks it still holds the lease.
 */
#include "scenario.h"

int main(int argc, char **argv)
{
    char path[PATH_MAX];
    sc_init(argc, argv, "unsupported_lock");
    sc_install_sigterm(0);
    sc_path(path, sizeof path, "locked-file");
    int created = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (created < 0)
        sc_die("creating %s", path);
    close(created);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        sc_die("open %s", path);
    if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0)
        sc_die("F_SETLEASE");
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    sc_check(fcntl(fd, F_GETLEASE) == F_RDLCK, "the lease is no longer held (F_GETLEASE %d)", fcntl(fd, F_GETLEASE));
    sc_finish();
}
