/*
 * memory: every kind of private memory area a single-threaded process has.
 *
 *  - malloc'ed blocks of many sizes (16 B ... 4 MiB, so both brk heap and mmap'ed chunks),
 *    each with its own pattern, some freed again to leave holes;
 *  - a 256 MiB anonymous mapping filled from a PRNG (the seed is kept; verified by
 *    re-generating the sequence);
 *  - a sparse 16 MiB anonymous mapping: some pages written, some explicitly zeroed, the rest
 *    never touched (must all read as zero);
 *  - a MAP_PRIVATE mapping of a file it creates next to --outfile (mapped from a nonzero file
 *    offset), with some pages modified and one cleared (copied on write, then all zeros):
 *    modified pages keep the new data, the cleared one reads zeros, untouched pages match the
 *    file, and the file itself is unchanged;
 *  - a read-only region (r--p, contents checked), an empty PROT_NONE region (---p), and a
 *    PROT_NONE region that held data before it was protected (---p; data checked after
 *    mprotect(PROT_READ));
 *  - a region grown with mremap (forced to move by a neighbour), both parts checked;
 *  - /proc/self/maps at SIGTERM equal to /proc/self/maps at ready, line for line;
 *  - the program break equal to its value at ready, and brk/sbrk and malloc still grow.
 */
#include "scenario.h"
#include <malloc.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define MiB (1024UL * 1024UL)

/* ---- malloc'ed blocks ---- */
static const size_t sizes[] = {16,    17,    24,     32,     48,     64,     100,     128,   255,
                               256,   512,   1000,   1024,   4000,   4096,   4097,    8192,  16384,
                               65536, 131071, 131072, 131073, 262144, 1 * MiB, 3 * MiB, 4 * MiB};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define COPIES 3
static unsigned char *blocks[NSIZES * COPIES];

static unsigned char block_byte(size_t k, size_t j)
{
    return (unsigned char)(k * 131 + j * 7 + (j >> 9) * 13 + 1);
}

/* ---- PRNG region ---- */
#define BIG_SIZE (256 * MiB)
static uint64_t big_seed = 0x243F6A8885A308D3ULL;
static uint64_t *big;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* ---- sparse region ---- */
#define SPARSE_PAGES 4096
static unsigned char *sparse;
static int sparse_kind(size_t p) /* 0 untouched, 1 written, 2 written then zeroed */
{
    if (p % 7 == 0)
        return 1;
    if (p % 11 == 0)
        return 2;
    return 0;
}

/* ---- private file mapping ---- */
#define FILE_PAGES 16
#define MAP_FIRST 2  /* mapped from file page 2 ... */
#define MAP_PAGES 12 /* ... for 12 pages */
static char map_path[PATH_MAX];
static unsigned char *fmap;
static const int modified_pages[] = {1, 5, 11}; /* indexes into the mapping, fully rewritten */
#define CLEARED_PAGE 7                            /* written, then cleared: it must not show the file */
#define BYTE_PAGE 6                             /* one byte changed in this one */
#define BYTE_OFF 1234
static unsigned char file_byte(size_t off) { return (unsigned char)(off * 3 + (off >> 12) * 17 + 5); }
static unsigned char new_byte(size_t off) { return (unsigned char)~file_byte(off) ^ 0x5a; }

/* ---- protections ---- */
#define RO_PAGES 8
#define NONE_PAGES 4
static unsigned char *ro, *none_empty, *none_data;
static unsigned char ro_byte(size_t i) { return (unsigned char)(i * 11 + 3); }
static unsigned char none_byte(size_t i) { return (unsigned char)(i * 13 + 9); }

/* ---- mremap ---- */
#define GROW_FROM 4
#define GROW_TO 32
static unsigned char *grown, *grown_old;
static unsigned char grow_a(size_t i) { return (unsigned char)(i * 5 + 1); }
static unsigned char grow_b(size_t i) { return (unsigned char)(i * 9 + 2); }

/* ---- maps and brk ---- */
static char maps_ready[256 * 1024], maps_term[256 * 1024];
static ssize_t maps_ready_len, maps_term_len;
static void *brk_ready;

static int maps_line(const char *maps, size_t len, const void *addr, char *line, size_t size)
{
    char key[32];
    int klen = snprintf(key, sizeof key, "%lx-", (unsigned long)addr);
    const char *p = maps, *end = maps + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        if ((size_t)(nl - p) > (size_t)klen && memcmp(p, key, (size_t)klen) == 0) {
            size_t l = (size_t)(nl - p) < size - 1 ? (size_t)(nl - p) : size - 1;
            memcpy(line, p, l);
            line[l] = 0;
            return 1;
        }
        p = nl + 1;
    }
    return 0;
}

/* Check the permissions field of the area starting at addr in the maps text. */
static void check_perms(const char *maps, size_t len, const void *addr, const char *perms, const char *what)
{
    char line[512];
    if (!sc_check(maps_line(maps, len, addr, line, sizeof line), "%s at %p not in /proc/self/maps", what, addr))
        return;
    char *sp = strchr(line, ' ');
    sc_check(sp && strncmp(sp + 1, perms, 4) == 0, "%s: maps line '%s', expected %s", what, line, perms);
}

static void compare_maps(void)
{
    if (maps_ready_len == maps_term_len && memcmp(maps_ready, maps_term, (size_t)maps_ready_len) == 0)
        return;
    /* find the first differing line */
    const char *a = maps_ready, *b = maps_term;
    const char *ae = a + maps_ready_len, *be = b + maps_term_len;
    while (a < ae && b < be) {
        const char *an = memchr(a, '\n', (size_t)(ae - a)), *bn = memchr(b, '\n', (size_t)(be - b));
        if (!an)
            an = ae;
        if (!bn)
            bn = be;
        if (an - a != bn - b || memcmp(a, b, (size_t)(an - a)) != 0) {
            sc_fail("/proc/self/maps differs: was '%.*s', now '%.*s'", (int)(an - a), a, (int)(bn - b), b);
            return;
        }
        a = an + 1;
        b = bn + 1;
    }
    if (a < ae)
        sc_fail("/proc/self/maps lost lines, first: '%.*s'", (int)strcspn(a, "\n"), a);
    else
        sc_fail("/proc/self/maps gained lines, first: '%.*s'", (int)strcspn(b, "\n"), b);
}

static void *xmmap(size_t len, int prot)
{
    void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        sc_die("mmap %zu", len);
    return p;
}

static void setup(void)
{
    /* malloc'ed blocks */
    for (size_t k = 0; k < NSIZES * COPIES; k++) {
        size_t sz = sizes[k % NSIZES];
        blocks[k] = malloc(sz);
        if (!blocks[k])
            sc_die("malloc %zu", sz);
        for (size_t j = 0; j < sz; j++)
            blocks[k][j] = block_byte(k, j);
    }
    for (size_t k = 0; k < NSIZES * COPIES; k += 4) { /* leave holes */
        free(blocks[k]);
        blocks[k] = NULL;
    }

    /* PRNG region */
    big = xmmap(BIG_SIZE, PROT_READ | PROT_WRITE);
    uint64_t s = big_seed;
    for (size_t i = 0; i < BIG_SIZE / 8; i++)
        big[i] = xorshift(&s);

    /* sparse region */
    sparse = xmmap(SPARSE_PAGES * PAGE, PROT_READ | PROT_WRITE);
    for (size_t p = 0; p < SPARSE_PAGES; p++) {
        int kind = sparse_kind(p);
        if (kind == 0)
            continue;
        for (size_t i = 0; i < PAGE; i += 64)
            sparse[p * PAGE + i] = (unsigned char)(p + i / 64 + 1);
        if (kind == 2)
            memset(sparse + p * PAGE, 0, PAGE);
    }

    /* private file mapping */
    sc_path(map_path, sizeof map_path, "memory-map.dat");
    int fd = open(map_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        sc_die("open %s", map_path);
    static unsigned char filebuf[FILE_PAGES * PAGE];
    for (size_t i = 0; i < sizeof filebuf; i++)
        filebuf[i] = file_byte(i);
    if (sc_write_all(fd, filebuf, sizeof filebuf) < 0)
        sc_die("write %s", map_path);
    fmap = mmap(NULL, MAP_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, MAP_FIRST * PAGE);
    if (fmap == MAP_FAILED)
        sc_die("mmap %s", map_path);
    close(fd);
    for (size_t m = 0; m < sizeof modified_pages / sizeof modified_pages[0]; m++) {
        size_t page = (size_t)modified_pages[m];
        for (size_t i = 0; i < PAGE; i++)
            fmap[page * PAGE + i] = new_byte((MAP_FIRST + page) * PAGE + i);
    }
    fmap[BYTE_PAGE * PAGE + BYTE_OFF] = new_byte((MAP_FIRST + BYTE_PAGE) * PAGE + BYTE_OFF);
    memset(fmap + CLEARED_PAGE * PAGE, 0, PAGE);
    /* read (but do not write) another page, so it is resident and still clean */
    volatile unsigned char sink = fmap[3 * PAGE + 7];
    (void)sink;

    /* read-only region */
    ro = xmmap(RO_PAGES * PAGE, PROT_READ | PROT_WRITE);
    for (size_t i = 0; i < RO_PAGES * PAGE; i++)
        ro[i] = ro_byte(i);
    if (mprotect(ro, RO_PAGES * PAGE, PROT_READ) < 0)
        sc_die("mprotect ro");

    /* PROT_NONE regions */
    none_empty = xmmap(NONE_PAGES * PAGE, PROT_NONE);
    none_data = xmmap(NONE_PAGES * PAGE, PROT_READ | PROT_WRITE);
    for (size_t i = 0; i < NONE_PAGES * PAGE; i++)
        none_data[i] = none_byte(i);
    if (mprotect(none_data, NONE_PAGES * PAGE, PROT_NONE) < 0)
        sc_die("mprotect none");

    /* mremap: block growth in place with a neighbour, so the area has to move */
    grown_old = xmmap(GROW_FROM * PAGE, PROT_READ | PROT_WRITE);
    for (size_t i = 0; i < GROW_FROM * PAGE; i++)
        grown_old[i] = grow_a(i);
    void *fence = mmap(grown_old + GROW_FROM * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                       -1, 0);
    (void)fence; /* if the neighbour is taken already, growth in place is blocked anyway */
    grown = mremap(grown_old, GROW_FROM * PAGE, GROW_TO * PAGE, MREMAP_MAYMOVE);
    if (grown == MAP_FAILED)
        sc_die("mremap");
    for (size_t i = GROW_FROM * PAGE; i < GROW_TO * PAGE; i++)
        grown[i] = grow_b(i);
}

static void check_blocks(void)
{
    for (size_t k = 0; k < NSIZES * COPIES; k++) {
        if (!blocks[k])
            continue;
        size_t sz = sizes[k % NSIZES];
        for (size_t j = 0; j < sz; j++)
            if (blocks[k][j] != block_byte(k, j)) {
                sc_fail("malloc block %zu (%zu bytes) differs at byte %zu", k, sz, j);
                break;
            }
    }
}

static void check_big(void)
{
    uint64_t s = big_seed;
    for (size_t i = 0; i < BIG_SIZE / 8; i++)
        if (big[i] != xorshift(&s)) {
            sc_fail("256 MiB PRNG region differs at byte offset %zu", i * 8);
            return;
        }
}

static void check_sparse(void)
{
    for (size_t p = 0; p < SPARSE_PAGES; p++) {
        int kind = sparse_kind(p);
        for (size_t i = 0; i < PAGE; i++) {
            unsigned char want = (kind == 1 && i % 64 == 0) ? (unsigned char)(p + i / 64 + 1) : 0;
            if (sparse[p * PAGE + i] != want) {
                sc_fail("sparse region page %zu (%s) differs at byte %zu", p,
                        kind == 0 ? "never touched" : kind == 1 ? "written" : "zeroed", i);
                return;
            }
        }
    }
}

static void check_file_mapping(void)
{
    static unsigned char filebuf[FILE_PAGES * PAGE];
    int fd = open(map_path, O_RDONLY | O_CLOEXEC);
    if (!sc_check(fd >= 0, "cannot reopen %s", map_path))
        return;
    ssize_t n = pread(fd, filebuf, sizeof filebuf, 0);
    close(fd);
    sc_check(n == (ssize_t)sizeof filebuf, "%s has %zd bytes", map_path, n);
    for (size_t i = 0; i < sizeof filebuf; i++)
        if (filebuf[i] != file_byte(i)) {
            sc_fail("the file behind the private mapping changed at byte %zu", i);
            break;
        }
    for (size_t page = 0; page < MAP_PAGES; page++) {
        int modified = 0;
        for (size_t m = 0; m < sizeof modified_pages / sizeof modified_pages[0]; m++)
            if ((size_t)modified_pages[m] == page)
                modified = 1;
        for (size_t i = 0; i < PAGE; i++) {
            size_t off = (MAP_FIRST + page) * PAGE + i;
            unsigned char want = file_byte(off);
            if (modified || (page == BYTE_PAGE && i == BYTE_OFF))
                want = new_byte(off);
            if (page == CLEARED_PAGE)
                want = 0;
            if (fmap[page * PAGE + i] != want) {
                sc_fail("private file mapping page %zu (%s) differs at byte %zu", page,
                        modified                ? "modified"
                        : page == CLEARED_PAGE  ? "cleared"
                        : page == BYTE_PAGE     ? "one byte modified"
                                                : "untouched",
                        i);
                break;
            }
        }
    }
}

static void check_regions(void)
{
    check_perms(maps_term, (size_t)maps_term_len, ro, "r--p", "read-only region");
    check_perms(maps_term, (size_t)maps_term_len, none_empty, "---p", "empty PROT_NONE region");
    check_perms(maps_term, (size_t)maps_term_len, none_data, "---p", "PROT_NONE region with data");
    check_perms(maps_term, (size_t)maps_term_len, grown, "rw-p", "mremap-grown region");
    check_perms(maps_term, (size_t)maps_term_len, fmap, "rw-p", "private file mapping");
    char line[512];
    if (maps_line(maps_term, (size_t)maps_term_len, fmap, line, sizeof line)) {
        char want[64];
        snprintf(want, sizeof want, " %08lx ", MAP_FIRST * PAGE);
        sc_check(strstr(line, map_path) != NULL && strstr(line, want) != NULL,
                 "private file mapping: maps line '%s' lacks the file or offset", line);
    }
    if (maps_line(maps_term, (size_t)maps_term_len, grown, line, sizeof line)) {
        unsigned long s = 0, e = 0;
        sscanf(line, "%lx-%lx", &s, &e);
        sc_check(e - s >= GROW_TO * PAGE, "mremap-grown region: maps line '%s' is shorter than %lu pages", line,
                 (unsigned long)GROW_TO);
    }

    for (size_t i = 0; i < RO_PAGES * PAGE; i++)
        if (ro[i] != ro_byte(i)) {
            sc_fail("read-only region differs at byte %zu", i);
            break;
        }
    for (size_t i = 0; i < GROW_TO * PAGE; i++) {
        unsigned char want = i < GROW_FROM * PAGE ? grow_a(i) : grow_b(i);
        if (grown[i] != want) {
            sc_fail("mremap-grown region differs at byte %zu (%s part)", i, i < GROW_FROM * PAGE ? "old" : "new");
            break;
        }
    }
    if (sc_check(mprotect(none_data, NONE_PAGES * PAGE, PROT_READ) == 0, "mprotect(PROT_NONE region, PROT_READ): %s",
                 strerror(errno))) {
        for (size_t i = 0; i < NONE_PAGES * PAGE; i++)
            if (none_data[i] != none_byte(i)) {
                sc_fail("PROT_NONE region lost its data at byte %zu", i);
                break;
            }
    }
}

static void check_growth(void)
{
    void *old = sbrk((intptr_t)MiB);
    if (sc_check(old != (void *)-1, "sbrk(1 MiB) failed: %s", strerror(errno))) {
        memset(old, 0xa5, MiB);
        sc_check(sbrk(0) == (char *)old + MiB, "sbrk(0) %p after growing from %p", sbrk(0), old);
        unsigned char *p = old;
        for (size_t i = 0; i < MiB; i += 4096)
            if (p[i] != 0xa5) {
                sc_fail("memory from sbrk does not hold what was written");
                break;
            }
        sc_check(brk((char *)old + 2 * MiB) == 0, "brk(+2 MiB) failed: %s", strerror(errno));
        memset((char *)old + MiB, 0x5a, MiB);
    }
    enum { N = 3000 };
    static unsigned char *more[N];
    for (int i = 0; i < N; i++) {
        size_t sz = 64 + (size_t)(i % 50) * 100;
        more[i] = malloc(sz);
        if (!sc_check(more[i] != NULL, "malloc(%zu) failed after restore", sz))
            return;
        memset(more[i], i & 0xff, sz);
    }
    unsigned char *huge = malloc(64 * MiB);
    if (sc_check(huge != NULL, "malloc(64 MiB) failed after restore")) {
        for (size_t i = 0; i < 64 * MiB; i += 4096)
            huge[i] = (unsigned char)(i >> 12);
        for (size_t i = 0; i < 64 * MiB; i += 4096)
            if (huge[i] != (unsigned char)(i >> 12)) {
                sc_fail("64 MiB malloc block does not hold what was written");
                break;
            }
        free(huge);
    }
    for (int i = 0; i < N; i++) {
        size_t sz = 64 + (size_t)(i % 50) * 100;
        for (size_t j = 0; j < sz; j++)
            if (more[i][j] != (i & 0xff)) {
                sc_fail("malloc block %d allocated after restore was overwritten", i);
                return;
            }
        free(more[i]);
    }
    /* the old blocks must have survived the new allocations */
    check_blocks();
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "memory");
    sc_install_sigterm(0);
    setup();

    sc_snapshot();
    brk_ready = sbrk(0);
    maps_ready_len = sc_read_file("/proc/self/maps", maps_ready, sizeof maps_ready);
    if (maps_ready_len < 0)
        sc_die("reading /proc/self/maps");
    sc_publish_pid();

    sc_wait_for_term();

    /* Nothing may allocate or map before this. */
    maps_term_len = sc_read_file("/proc/self/maps", maps_term, sizeof maps_term);
    if (sc_check(maps_term_len >= 0, "cannot read /proc/self/maps"))
        compare_maps();
    void *b = sbrk(0);
    sc_check_common();
    sc_check(b == brk_ready, "program break %p at SIGTERM, was %p at ready", b, brk_ready);

    check_blocks();
    check_big();
    check_sparse();
    check_file_mapping();
    check_regions();
    check_growth();
    sc_finish();
}
