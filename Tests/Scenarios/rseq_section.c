/*
 * rseq_section: a thread that runs restartable sequences without pause, through glibc's rseq
 * registration: each section (described by a struct rseq_cs of its own) points rseq_cs at its
 * descriptor, checks it still runs on the CPU it read, spins a
 * few milliseconds, then reads rseq_cs again and its CPU, and commits by adding one to that
 * CPU's counter. The kernel aborts a section it preempts (its abort handler counts it), so a
 * commit always sees its own descriptor in rseq_cs and the CPU it started on. A dump stops the
 * thread in a section almost always; amber's injected calls must not let it commit after.
 * After SIGTERM: no commit saw rseq_cs cleared or another CPU, there were commits, and the
 * registration is still there (registering again gives EBUSY).
 */
#include "scenario.h"
#include <sys/rseq.h>

static volatile struct rseq *registration;
static long commits, aborts, cleared, moved;
static long per_cpu[1024];

/* One section; 0 when it committed, 1 when the kernel aborted it. */
static int section(int cpu)
{
    uint64_t seen = 0, own = 0;
    int now = -1;
    __asm__ __volatile__ goto(".pushsection __rseq_cs, \"aw\"\n\t"
                              ".balign 32\n\t"
                              "3:\n\t"
                              ".long 0, 0\n\t"
                              ".quad 1f, (2f - 1f), 4f\n\t"
                              ".popsection\n\t"
                              "leaq 3b(%%rip), %%rax\n\t"
                              "movq %%rax, %[own]\n\t"
                              "movq %%rax, %[rseq_cs]\n\t"
                              "1:\n\t"
                              "cmpl %[cpu], %[cpu_id]\n\t"
                              "jnz 4f\n\t"
                              "movq $5000000, %%rcx\n\t"
                              "5:\n\t"
                              "decq %%rcx\n\t"
                              "jnz 5b\n\t"
                              "movq %[rseq_cs], %%rcx\n\t"
                              "movq %%rcx, %[seen]\n\t"
                              "movl %[cpu_id], %%ecx\n\t"
                              "movl %%ecx, %[now]\n\t"
                              "addq $1, %[counter]\n\t"
                              "2:\n\t"
                              ".pushsection __rseq_failure, \"ax\"\n\t"
                              /* ud1 with the signature glibc registered, as the kernel checks */
                              ".byte 0x0f, 0xb9, 0x3d\n\t"
                              ".long 0x53053053\n\t"
                              "4:\n\t"
                              "jmp %l[abort]\n\t"
                              ".popsection\n\t"
                              :
                              : [cpu] "r"(cpu), [cpu_id] "m"(registration->cpu_id),
                                [rseq_cs] "m"(registration->rseq_cs), [seen] "m"(seen), [own] "m"(own),
                                [now] "m"(now), [counter] "m"(per_cpu[cpu & 1023])
                              : "memory", "cc", "rax", "rcx"
                              : abort);
    if (seen != own)
        cleared++;
    if (now != cpu)
        moved++;
    commits++;
    return 0;
abort:
    aborts++;
    return 1;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "rseq_section");
    sc_install_sigterm(0);
    if (__rseq_size == 0)
        sc_die("glibc registered no rseq area");
    registration = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    for (int i = 0; i < 20; i++)
        section((int)registration->cpu_id_start);
    sc_ready();
    while (!sc_term)
        section((int)registration->cpu_id_start);
    sc_check_common();
    sc_check(cleared == 0, "%ld sections committed with rseq_cs no longer theirs (of %ld)", cleared, commits);
    sc_check(moved == 0, "%ld sections committed on another CPU than they started on (of %ld)", moved, commits);
    sc_check(commits > 0, "no section committed (%ld aborted)", aborts);
    long again = syscall(SYS_rseq, registration, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
    sc_check(again == -1 && errno == EBUSY, "registering rseq again gave %ld (errno %d), not EBUSY", again, errno);
    sc_finish();
}
