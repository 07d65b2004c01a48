/*
 * files: open files with offsets and modes, shared and unshared open file descriptions.
 *
 * In the directory of --outfile it creates and opens:
 *   ro      ro.dat       O_RDONLY, offset 1234, no FD_CLOEXEC
 *   ro2     ro.dat       O_RDONLY|O_CLOEXEC opened again (its own offset, 77: not shared with ro)
 *   app     append.log   O_WRONLY|O_APPEND, FD_CLOEXEC set with fcntl
 *   rw      rw.dat       O_RDWR, offset 3001 (after writing 'X' at 3000)
 *   rw_dup  dup(rw)      shares rw's offset
 *   100     dup2(rw,100) shares rw's offset too, at an unusual number
 *   nb      nb.dat       O_RDONLY|O_NONBLOCK, offset 7
 *   17      wr17.dat     O_WRONLY|O_TRUNC, moved to fd 17 with dup2, "seventeen" written
 *   null    /dev/null    O_RDWR
 *   zero    /dev/zero    O_RDONLY
 *   urandom /dev/urandom O_RDONLY|O_CLOEXEC
 * and leaves a hole in the fd numbers. stdout and stderr (the runner's log file, one open
 * file description) get a line each before the dump and after the restore.
 *
 * After SIGTERM: the whole fd table is as recorded (common check: numbers, targets, F_GETFL,
 * F_GETFD, offsets), and explicitly: offsets, F_GETFL access mode/O_APPEND/O_NONBLOCK,
 * FD_CLOEXEC; reads return the right bytes; writes land at the right offset (the append fd at
 * the end, rw at 3001, fd 17 after "seventeen"); seeking rw moves rw_dup and fd 100 but not
 * ro/ro2 (and seeking ro does not move ro2); the device fds are the same devices and behave;
 * the log file holds exactly the four lines in order, nothing overwritten.
 */
#include "scenario.h"
#include <sys/sysmacros.h>

static int ro, ro2, app, rw, rw_dup, nb, null_fd, zero_fd, urandom_fd;
#define FD17 17
#define FD100 100
static char p_ro[PATH_MAX], p_app[PATH_MAX], p_rw[PATH_MAX], p_nb[PATH_MAX], p_17[PATH_MAX];
static char log_path[PATH_MAX];
static int log_checked;

static const char out1[] = "files: stdout before\n";
static const char err1[] = "files: stderr before\n";
static const char out2[] = "files: stdout after\n";
static const char err2[] = "files: stderr after\n";

static unsigned char ro_byte(size_t i) { return (unsigned char)(i * 7 + 1); }
static unsigned char rw_byte(size_t i) { return (unsigned char)('a' + i % 26); }

static void make_file(const char *path, size_t size, unsigned char (*byte)(size_t))
{
    static unsigned char buf[8192];
    for (size_t i = 0; i < size; i++)
        buf[i] = byte(i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || sc_write_all(fd, buf, size) < 0 || close(fd) < 0)
        sc_die("creating %s", path);
}

static int xopen(const char *path, int flags)
{
    int fd = open(path, flags, 0644);
    if (fd < 0)
        sc_die("open %s", path);
    return fd;
}

static void xseek(int fd, off_t off)
{
    if (lseek(fd, off, SEEK_SET) != off)
        sc_die("lseek %d", fd);
}

static void xwrite(int fd, const char *s)
{
    if (sc_write_all(fd, s, strlen(s)) < 0)
        sc_die("write %d", fd);
}

static void setup(void)
{
    sc_path(p_ro, sizeof p_ro, "ro.dat");
    sc_path(p_app, sizeof p_app, "append.log");
    sc_path(p_rw, sizeof p_rw, "rw.dat");
    sc_path(p_nb, sizeof p_nb, "nb.dat");
    sc_path(p_17, sizeof p_17, "wr17.dat");
    make_file(p_ro, 4096, ro_byte);
    make_file(p_rw, 8192, rw_byte);
    make_file(p_nb, 100, ro_byte);
    int f = xopen(p_app, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
    xwrite(f, "line0\n");
    close(f);

    /* a hole at the low numbers: open two, close the first later */
    int hole = xopen("/dev/null", O_RDONLY);

    ro = xopen(p_ro, O_RDONLY);
    xseek(ro, 1234);
    ro2 = xopen(p_ro, O_RDONLY | O_CLOEXEC);
    xseek(ro2, 77);
    app = xopen(p_app, O_WRONLY | O_APPEND);
    if (fcntl(app, F_SETFD, FD_CLOEXEC) < 0)
        sc_die("F_SETFD");
    xwrite(app, "before\n");
    rw = xopen(p_rw, O_RDWR);
    xseek(rw, 3000);
    xwrite(rw, "X");
    rw_dup = dup(rw);
    if (rw_dup < 0 || dup2(rw, FD100) != FD100)
        sc_die("dup");
    nb = xopen(p_nb, O_RDONLY | O_NONBLOCK);
    xseek(nb, 7);
    int w = xopen(p_17, O_WRONLY | O_CREAT | O_TRUNC);
    if (dup2(w, FD17) != FD17)
        sc_die("dup2 17");
    close(w);
    xwrite(FD17, "seventeen");
    null_fd = xopen("/dev/null", O_RDWR);
    zero_fd = xopen("/dev/zero", O_RDONLY);
    urandom_fd = xopen("/dev/urandom", O_RDONLY | O_CLOEXEC);
    close(hole);

    /* stdout/stderr: the runner's log file */
    struct stat st;
    if (fstat(1, &st) == 0 && S_ISREG(st.st_mode)) {
        ssize_t len = readlink("/proc/self/fd/1", log_path, sizeof log_path - 1);
        log_path[len < 0 ? 0 : len] = 0;
        log_checked = len > 0 && lseek(1, 0, SEEK_CUR) == 0;
    }
    xwrite(1, out1);
    xwrite(2, err1);
}

static off_t pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

static void check_fd(const char *name, int fd, off_t want_off, int want_mode, int want_cloexec)
{
    off_t off = pos(fd);
    sc_check(off == want_off, "%s (fd %d) offset %lld, expected %lld", name, fd, (long long)off, (long long)want_off);
    int fl = fcntl(fd, F_GETFL);
    int mask = O_ACCMODE | O_APPEND | O_NONBLOCK;
    sc_check(fl >= 0 && (fl & mask) == want_mode, "%s (fd %d) F_GETFL %#o, expected %#o in %#o", name, fd, fl, want_mode,
             mask);
    int fdfl = fcntl(fd, F_GETFD);
    sc_check(fdfl >= 0 && ((fdfl & FD_CLOEXEC) != 0) == want_cloexec, "%s (fd %d) FD_CLOEXEC is %s", name, fd,
             (fdfl & FD_CLOEXEC) ? "set" : "clear");
}

static ssize_t read_file(const char *path, char *buf, size_t size)
{
    ssize_t n = sc_read_file(path, buf, size);
    sc_check(n >= 0, "cannot read %s: %s", path, strerror(errno));
    return n;
}

static void check_device(const char *name, int fd, unsigned maj, unsigned min)
{
    struct stat st;
    sc_check(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == maj && minor(st.st_rdev) == min,
             "%s (fd %d) is not the character device %u:%u", name, fd, maj, min);
}

static void check(void)
{
    /* positions and modes, before touching anything */
    check_fd("ro", ro, 1234, O_RDONLY, 0);
    check_fd("ro2", ro2, 77, O_RDONLY, 1);
    check_fd("append", app, 13, O_WRONLY | O_APPEND, 1);
    check_fd("rw", rw, 3001, O_RDWR, 0);
    check_fd("rw dup", rw_dup, 3001, O_RDWR, 0);
    check_fd("fd 100", FD100, 3001, O_RDWR, 0);
    check_fd("nonblocking", nb, 7, O_RDONLY | O_NONBLOCK, 0);
    check_fd("fd 17", FD17, 9, O_WRONLY, 0);
    check_fd("/dev/null", null_fd, 0, O_RDWR, 0);
    check_fd("/dev/zero", zero_fd, 0, O_RDONLY, 0);
    check_fd("/dev/urandom", urandom_fd, 0, O_RDONLY, 1);
    check_device("/dev/null", null_fd, 1, 3);
    check_device("/dev/zero", zero_fd, 1, 5);
    check_device("/dev/urandom", urandom_fd, 1, 9);

    /* reads continue where they were */
    unsigned char buf[200];
    ssize_t n = read(ro, buf, 100);
    int ok = n == 100;
    for (int i = 0; ok && i < 100; i++)
        ok = buf[i] == ro_byte(1234 + (size_t)i);
    sc_check(ok, "read from ro at 1234 returned %zd bytes, not the file's", n);
    sc_check(pos(ro2) == 77, "reading ro moved ro2 (a separate open of the same file) to %lld", (long long)pos(ro2));
    n = read(ro2, buf, 10);
    ok = n == 10;
    for (int i = 0; ok && i < 10; i++)
        ok = buf[i] == ro_byte(77 + (size_t)i);
    sc_check(ok, "read from ro2 at 77 returned %zd bytes, not the file's", n);
    n = read(nb, buf, 200);
    ok = n == 93;
    for (int i = 0; ok && i < 93; i++)
        ok = buf[i] == ro_byte(7 + (size_t)i);
    sc_check(ok, "read from the O_NONBLOCK fd at 7 returned %zd bytes (expected the last 93)", n);

    /* writes land where they should */
    xwrite(app, "after\n");
    static char text[16384];
    n = read_file(p_app, text, sizeof text - 1);
    if (n >= 0) {
        text[n] = 0;
        sc_check(strcmp(text, "line0\nbefore\nafter\n") == 0, "append.log holds '%s'", text);
    }
    xwrite(rw, "Y");
    sc_check(pos(rw_dup) == 3002 && pos(FD100) == 3002, "writing rw did not move its dups (%lld, %lld)",
             (long long)pos(rw_dup), (long long)pos(FD100));
    n = read_file(p_rw, text, sizeof text - 1);
    if (n >= 0) {
        sc_check(n == 8192, "rw.dat is %zd bytes, expected 8192", n);
        int bad = -1;
        for (int i = 0; i < n && bad < 0; i++) {
            char want = i == 3000 ? 'X' : i == 3001 ? 'Y' : (char)rw_byte((size_t)i);
            if (text[i] != want)
                bad = i;
        }
        sc_check(bad < 0, "rw.dat differs at byte %d", bad);
    }
    xwrite(FD17, "-more");
    n = read_file(p_17, text, sizeof text - 1);
    if (n >= 0) {
        text[n] = 0;
        sc_check(strcmp(text, "seventeen-more") == 0, "wr17.dat holds '%s'", text);
    }

    /* sharing holds, and does not leak to separate opens */
    lseek(rw, 500, SEEK_SET);
    sc_check(pos(rw_dup) == 500 && pos(FD100) == 500, "seeking rw to 500 left its dups at %lld and %lld",
             (long long)pos(rw_dup), (long long)pos(FD100));
    lseek(FD100, 600, SEEK_SET);
    sc_check(pos(rw) == 600, "seeking fd 100 to 600 left rw at %lld", (long long)pos(rw));
    lseek(ro, 10, SEEK_SET);
    sc_check(pos(ro2) == 87, "seeking ro moved ro2 to %lld", (long long)pos(ro2));

    /* devices behave */
    memset(buf, 1, sizeof buf);
    sc_check(read(zero_fd, buf, 64) == 64 && buf[0] == 0 && buf[63] == 0, "/dev/zero does not read zeros");
    sc_check(read(urandom_fd, buf, 64) == 64, "/dev/urandom does not read");
    sc_check(write(null_fd, "x", 1) == 1 && read(null_fd, buf, 1) == 0, "/dev/null does not behave");

    /* the log file: lines continue after the ones written before the dump */
    xwrite(1, out2);
    xwrite(2, err2);
    if (log_checked) {
        char want[256];
        snprintf(want, sizeof want, "%s%s%s%s", out1, err1, out2, err2);
        n = read_file(log_path, text, sizeof text - 1);
        if (n >= 0) {
            text[n] = 0;
            sc_check(strcmp(text, want) == 0, "the log file %s holds '%s'", log_path, text);
        }
        sc_check(pos(1) == (off_t)strlen(want) && pos(2) == (off_t)strlen(want), "stdout/stderr offsets %lld/%lld, expected %zu",
                 (long long)pos(1), (long long)pos(2), strlen(want));
    } else {
        sc_fail("stdout is not a regular file at offset 0: the runner must send it to a fresh log file");
    }
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "files");
    sc_install_sigterm(0);
    setup();
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    check();
    sc_finish();
}
