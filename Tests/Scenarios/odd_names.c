/*
 * odd_names: files whose names /proc/PID/maps shows misleadingly. In the directory of
 * --outfile it creates "x (deleted)" (a name maps would take for a deleted file) and
 * "new\nline" (a name maps escapes as "new\012line"), and holds each open (O_RDWR, offset
 * 100) and mapped (MAP_PRIVATE, its first page written; MAP_SHARED read-only).
 *
 * After SIGTERM: each fd and each mapping is the same file as the path names (device and
 * inode), the offsets are kept (common check), the private page keeps its change and the
 * shared mapping shows the file.
 */
#include "scenario.h"
#include <sys/mman.h>

#define SIZE 8192
static const char *names[] = {"x (deleted)", "new\nline"};
static char paths[2][PATH_MAX];
static int fds[2];
static unsigned char *private_maps[2], *shared_maps[2];

static unsigned char byte_of(int file, size_t i) { return (unsigned char)(i * 13 + file * 101 + 5); }

static void check_same_file(const char *what, const struct stat *st, const char *path)
{
    struct stat want;
    sc_check(stat(path, &want) == 0 && st->st_dev == want.st_dev && st->st_ino == want.st_ino,
             "%s is not the file %s", what, path);
}

static void check_mapping(unsigned char *map, const char *path)
{
    char link[128];
    struct stat st;
    sc_fmt(link, sizeof link, "/proc/self/map_files/%lx-%lx", (unsigned long)map, (unsigned long)map + SIZE);
    if (!sc_check(stat(link, &st) == 0, "stat %s: %s", link, strerror(errno)))
        return;
    check_same_file(link, &st, path);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "odd_names");
    sc_install_sigterm(0);
    for (int f = 0; f < 2; f++) {
        static unsigned char buf[SIZE];
        for (size_t i = 0; i < SIZE; i++)
            buf[i] = byte_of(f, i);
        sc_path(paths[f], sizeof paths[f], names[f]);
        fds[f] = open(paths[f], O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fds[f] < 0 || sc_write_all(fds[f], buf, SIZE) < 0 || lseek(fds[f], 100, SEEK_SET) != 100)
            sc_die("creating %s", paths[f]);
        private_maps[f] = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[f], 0);
        shared_maps[f] = mmap(0, SIZE, PROT_READ, MAP_SHARED, fds[f], 0);
        if (private_maps[f] == MAP_FAILED || shared_maps[f] == MAP_FAILED)
            sc_die("mmap %s", paths[f]);
        private_maps[f][0] = 'P';
    }
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    for (int f = 0; f < 2; f++) {
        struct stat st;
        sc_check(fstat(fds[f], &st) == 0, "fstat %d", fds[f]);
        check_same_file("the open fd", &st, paths[f]);
        check_mapping(private_maps[f], paths[f]);
        check_mapping(shared_maps[f], paths[f]);
        sc_check(private_maps[f][0] == 'P', "the private page of %s lost its change", paths[f]);
        int same = 1;
        for (size_t i = 1; i < SIZE; i++)
            same &= private_maps[f][i] == byte_of(f, i);
        for (size_t i = 0; i < SIZE; i++)
            same &= shared_maps[f][i] == byte_of(f, i);
        sc_check(same, "a mapping of %s does not show the file", paths[f]);
    }
    sc_finish();
}
