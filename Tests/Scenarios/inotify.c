/*
 * inotify: two inotify instances. The first (non-blocking) watches a directory (IN_CREATE,
 * wd 1) and a file in it (IN_MODIFY | IN_EXCL_UNLINK, wd 3: wd 2 was a watch removed, its
 * IN_IGNORED read); the second (blocking) watches the file once (IN_CLOSE_WRITE | IN_ONESHOT).
 * After SIGTERM nothing is queued; each new event comes with its wd (a file made in the
 * directory, a write to the file, the file closed after writing, then the one-shot's IN_IGNORED),
 * and adding the file again gives back its wd: the watch is on the same file. A third watches
 * the program's own executable for every event, and the directory holds a deleted file kept
 * open: neither the dump's reads nor the restore's opens and files made again show as events.
 */
#include "scenario.h"
#include <sys/inotify.h>
#include <sys/ioctl.h>

static char directory[PATH_MAX], file[PATH_MAX], made[PATH_MAX];

/* The next event of `instance`: its wd, mask and name. */
static int next_event(int instance, const char *name, int *wd, uint32_t *mask, char *what, size_t size)
{
    char buffer[sizeof(struct inotify_event) + NAME_MAX + 1] __attribute__((aligned(8)));
    ssize_t n = read(instance, buffer, sizeof(struct inotify_event));
    if (n != (ssize_t)sizeof(struct inotify_event)) {
        /* a read too small for a name fails with EINVAL: read the event with its name */
        n = read(instance, buffer, sizeof buffer);
    }
    if (!sc_check(n >= (ssize_t)sizeof(struct inotify_event), "%s: no event (%s)", name, strerror(errno)))
        return 0;
    struct inotify_event *event = (struct inotify_event *)buffer;
    *wd = event->wd;
    *mask = event->mask;
    snprintf(what, size, "%s", event->len ? event->name : "");
    return 1;
}

static void expect_event(int instance, const char *name, int wd, uint32_t mask, const char *what)
{
    int got_wd;
    uint32_t got_mask;
    char got[NAME_MAX + 1];
    if (next_event(instance, name, &got_wd, &got_mask, got, sizeof got))
        sc_check(got_wd == wd && got_mask == mask && strcmp(got, what) == 0,
                 "%s: event wd %d mask %#x name '%s', expected wd %d mask %#x name '%s'", name, got_wd, got_mask, got,
                 wd, mask, what);
}

static int queued(int instance)
{
    int count = -1;
    ioctl(instance, FIONREAD, &count);
    return count;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "inotify");
    sc_install_sigterm(0);
    sc_path(directory, sizeof directory, "inotify-dir");
    sc_fmt(file, sizeof file, "%s/watched", directory);
    sc_fmt(made, sizeof made, "%s/made", directory);
    if (mkdir(directory, 0755) != 0 && errno != EEXIST)
        sc_die("mkdir");
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        sc_die("create %s", file);
    close(fd);
    unlink(made);
    char scratch[PATH_MAX];
    sc_fmt(scratch, sizeof scratch, "%s/scratch.tmp", directory);
    int kept = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (kept < 0 || write(kept, "temporary", 9) != 9 || unlink(scratch) != 0)
        sc_die("the deleted file");
    char exe[PATH_MAX] = {0};
    int third = inotify_init1(IN_NONBLOCK);
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) <= 0 || third < 0 || inotify_add_watch(third, exe, IN_ALL_EVENTS) != 1)
        sc_die("watching the executable");
    int first = inotify_init1(IN_NONBLOCK | IN_CLOEXEC), second = inotify_init1(0);
    if (first < 0 || second < 0)
        sc_die("inotify_init1");
    int on_directory = inotify_add_watch(first, directory, IN_CREATE);
    int removed = inotify_add_watch(first, sc_dir, IN_ALL_EVENTS);
    if (removed < 0 || inotify_rm_watch(first, removed) != 0)
        sc_die("the removed watch");
    expect_event(first, "the removed watch", removed, IN_IGNORED, "");
    int on_file = inotify_add_watch(first, file, IN_MODIFY | IN_EXCL_UNLINK);
    int once = inotify_add_watch(second, file, IN_CLOSE_WRITE | IN_ONESHOT);
    if (on_directory != 1 || on_file != 3 || once != 1)
        sc_die("the wds are %d, %d and %d", on_directory, on_file, once);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    sc_check(queued(first) == 0 && queued(second) == 0 && queued(third) == 0, "events are queued: %d, %d and %d bytes",
             queued(first), queued(second), queued(third));
    sc_check(fcntl(first, F_GETFL) & O_NONBLOCK && !(fcntl(second, F_GETFL) & O_NONBLOCK),
             "O_NONBLOCK of the instances changed");
    fd = open(made, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        close(fd);
    expect_event(first, "the directory's watch", on_directory, IN_CREATE, "made");
    fd = open(file, O_WRONLY | O_APPEND);
    sc_check(fd >= 0 && write(fd, "x", 1) == 1, "write to %s", file);
    close(fd);
    expect_event(first, "the file's watch", on_file, IN_MODIFY, "");
    sc_check(queued(first) == 0, "the first instance has %d more bytes of events", queued(first));
    expect_event(second, "the one-shot watch", once, IN_CLOSE_WRITE, "");
    expect_event(second, "the one-shot watch", once, IN_IGNORED, "");
    sc_check(inotify_add_watch(first, file, IN_MODIFY | IN_MASK_ADD) == on_file,
             "adding the file again did not give its wd %d back", on_file);
    sc_check(inotify_rm_watch(first, on_directory) == 0, "inotify_rm_watch of the directory's wd: %s", strerror(errno));
    expect_event(first, "the directory's watch", on_directory, IN_IGNORED, "");
    sc_finish();
}
