/*
 * mapping_runs: areas back to back that differ in protection, and in whether the kernel
 * accounts them (VM_ACCOUNT, "ac" in VmFlags), as a restore maps them in runs: thread stacks as
 * glibc makes them (PROT_NONE, then the stack above each guard made writable), an area made
 * read-only after it was written (accounted) between writable ones, one never writable (not
 * accounted) right below an accounted one and a PROT_NONE one right above, and a private file
 * mapping in four pieces at offsets that continue each other: read-only, written, written then
 * read-only, written. Every area's maps line and VmFlags line are saved before sc_ready and
 * compared after SIGTERM, and every page still holds what was written to it.
 */
#include "scenario.h"
#include <sys/mman.h>

#define PAGE 4096
#define STACKS 3

static char before[1 << 16], after[1 << 16];

/* Each area's first line and VmFlags line, one pair per line of `out`. */
static void fill(char *page, int value) { memset(page, value, PAGE); }

static void check_page(const char *page, int value, const char *what)
{
    for (int i = 0; i < PAGE; i++)
        if (page[i] != (char)value) {
            sc_fail("%s: byte %d is %d, not %d", what, i, page[i], value);
            return;
        }
}

static void protect(void *address, size_t pages, int prot)
{
    if (mprotect(address, pages * PAGE, prot) != 0)
        sc_die("mprotect %p, %zu pages, %d", address, pages, prot);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "mapping_runs");
    sc_install_sigterm(0);

    /* Stacks: a guard page and two stack pages each, all mapped PROT_NONE first. */
    char *stacks = mmap(NULL, STACKS * 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stacks == MAP_FAILED)
        sc_die("mmap stacks");
    for (int i = 0; i < STACKS; i++) {
        char *stack = stacks + (3 * i + 1) * PAGE;
        protect(stack, 2, PROT_READ | PROT_WRITE);
        fill(stack, 'a' + i);
        fill(stack + PAGE, 'A' + i);
    }

    /* In a reservation: read-only never written, written, written then read-only, written, PROT_NONE. */
    char *mixed = mmap(NULL, 6 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mixed == MAP_FAILED)
        sc_die("mmap reservation");
    if (mmap(mixed, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED
        || mmap(mixed + PAGE, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
               == MAP_FAILED)
        sc_die("mmap into the reservation");
    for (int i = 1; i < 4; i++)
        fill(mixed + i * PAGE, '0' + i);
    protect(mixed + 2 * PAGE, 1, PROT_READ);

    /* A file in four pieces: read-only (never written), written, written then read-only, written. */
    char path[PATH_MAX];
    sc_path(path, sizeof path, "mapped-file");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        sc_die("creating %s", path);
    char page[PAGE];
    for (int i = 0; i < 4; i++) {
        memset(page, 'f' + i, PAGE);
        if (write(fd, page, PAGE) != PAGE)
            sc_die("writing %s", path);
    }
    char *file = mmap(NULL, 4 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (file == MAP_FAILED || mmap(file, PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED
        || mmap(file + PAGE, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, PAGE) == MAP_FAILED)
        sc_die("mmap %s", path);
    close(fd);
    for (int i = 1; i < 4; i++)
        fill(file + i * PAGE, 'F' + i);
    protect(file + 2 * PAGE, 1, PROT_READ);

    sc_snapshot();
    sc_area_lines(before, sizeof before);
    sc_ready();
    sc_wait_for_term();
    sc_area_lines(after, sizeof after);
    sc_check_common();

    sc_check_areas_alike(before, after);
    for (int i = 0; i < STACKS; i++) {
        check_page(stacks + (3 * i + 1) * PAGE, 'a' + i, "a stack's lower page");
        check_page(stacks + (3 * i + 2) * PAGE, 'A' + i, "a stack's upper page");
    }
    check_page(mixed, 0, "the read-only page never written");
    for (int i = 1; i < 4; i++)
        check_page(mixed + i * PAGE, '0' + i, "a written page of the reservation");
    check_page(file, 'f', "the file's read-only page");
    for (int i = 1; i < 4; i++)
        check_page(file + i * PAGE, 'F' + i, "a written page of the file mapping");
    sc_finish();
}
