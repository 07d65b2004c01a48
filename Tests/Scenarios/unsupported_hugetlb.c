/*
 * unsupported_hugetlb: a process mapping a file of a hugetlbfs it mounted (MAP_SHARED |
 * MAP_NORESERVE, so no huge page need be free): VmFlags "ht", which restore cannot map again.
 * `amber dump` must refuse, naming the area's flag, and leave the process running. After
 * SIGTERM it checks the mapping is still there, then unmaps it and unmounts the hugetlbfs.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/mount.h>

#define HUGE_PAGE (2UL << 20)

static char mount_dir[PATH_MAX], file[PATH_MAX];

int main(int argc, char **argv)
{
    sc_init(argc, argv, "unsupported_hugetlb");
    sc_install_sigterm(0);
    sc_path(mount_dir, sizeof mount_dir, "hugetlbfs");
    sc_path(file, sizeof file, "hugetlbfs/area");
    if (mkdir(mount_dir, 0700) != 0 || mount("none", mount_dir, "hugetlbfs", 0, "pagesize=2M") != 0)
        sc_die("mounting hugetlbfs on %s", mount_dir);
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)HUGE_PAGE) != 0)
        sc_die("creating %s", file);
    void *area = mmap(NULL, HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (area == MAP_FAILED)
        sc_die("mmap %s", file);
    close(fd);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    sc_check(msync(area, HUGE_PAGE, MS_ASYNC) == 0, "the hugetlb mapping is gone: %s", strerror(errno));
    munmap(area, HUGE_PAGE);
    sc_check(unlink(file) == 0 && umount(mount_dir) == 0 && rmdir(mount_dir) == 0, "removing the hugetlbfs: %s", strerror(errno));
    sc_finish();
}
