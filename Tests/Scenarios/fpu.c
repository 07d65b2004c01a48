/*
 * fpu: register state held live across the checkpoint.
 *
 * One inline-asm block loads distinct 256-bit patterns into ymm0-ymm15, distinct 64-bit
 * patterns into r8-r15, two 80-bit values onto the x87 stack, a non-default x87 control
 * word and a non-default MXCSR (round toward zero, FZ, DAZ), then spins (pause) on a
 * volatile flag that the SIGTERM handler sets. Nothing but that loop runs while it waits,
 * so a dump taken then finds the values only in the registers. After the flag is seen the
 * block stores everything and puts the default control word and MXCSR back; the C code then
 * compares. The kernel saves and restores the registers around the handler, so the handler
 * does not disturb them from the program's point of view.
 *
 * Also checked: a TLS variable (reached through fs_base) and errno.
 */
#include "scenario.h"
#include <stddef.h>

struct regstate {
    unsigned char ymm_in[16][32];
    unsigned char ymm_out[16][32];
    uint64_t gpr_in[8];
    uint64_t gpr_out[8];
    unsigned char x87_in[2][16]; /* 80-bit values, 16-byte slots */
    unsigned char x87_out[2][16];
    uint16_t fcw_in, fcw_out, fcw_orig, pad0;
    uint32_t mxcsr_in, mxcsr_out, mxcsr_orig, pad1;
} __attribute__((aligned(64)));

static struct regstate R;
static volatile int flag;
static __thread uint64_t tls_value = 0x7151715171517151ULL;

static void on_term(int sig)
{
    (void)sig;
    sc_term = 1;
    flag = 1;
}

static void spin_with_registers(void)
{
    __asm__ volatile(
        "fnstcw %c[fcw_orig](%[r])\n\t"
        "stmxcsr %c[mx_orig](%[r])\n\t"
        "vmovdqu %c[yin]+0(%[r]), %%ymm0\n\t"
        "vmovdqu %c[yin]+32(%[r]), %%ymm1\n\t"
        "vmovdqu %c[yin]+64(%[r]), %%ymm2\n\t"
        "vmovdqu %c[yin]+96(%[r]), %%ymm3\n\t"
        "vmovdqu %c[yin]+128(%[r]), %%ymm4\n\t"
        "vmovdqu %c[yin]+160(%[r]), %%ymm5\n\t"
        "vmovdqu %c[yin]+192(%[r]), %%ymm6\n\t"
        "vmovdqu %c[yin]+224(%[r]), %%ymm7\n\t"
        "vmovdqu %c[yin]+256(%[r]), %%ymm8\n\t"
        "vmovdqu %c[yin]+288(%[r]), %%ymm9\n\t"
        "vmovdqu %c[yin]+320(%[r]), %%ymm10\n\t"
        "vmovdqu %c[yin]+352(%[r]), %%ymm11\n\t"
        "vmovdqu %c[yin]+384(%[r]), %%ymm12\n\t"
        "vmovdqu %c[yin]+416(%[r]), %%ymm13\n\t"
        "vmovdqu %c[yin]+448(%[r]), %%ymm14\n\t"
        "vmovdqu %c[yin]+480(%[r]), %%ymm15\n\t"
        "movq %c[gin]+0(%[r]), %%r8\n\t"
        "movq %c[gin]+8(%[r]), %%r9\n\t"
        "movq %c[gin]+16(%[r]), %%r10\n\t"
        "movq %c[gin]+24(%[r]), %%r11\n\t"
        "movq %c[gin]+32(%[r]), %%r12\n\t"
        "movq %c[gin]+40(%[r]), %%r13\n\t"
        "movq %c[gin]+48(%[r]), %%r14\n\t"
        "movq %c[gin]+56(%[r]), %%r15\n\t"
        "fldt %c[xin](%[r])\n\t"      /* x87_in[0], ends up in st(1) */
        "fldt %c[xin]+16(%[r])\n\t"   /* x87_in[1], in st(0) */
        "fldcw %c[fcw_in](%[r])\n\t"
        "ldmxcsr %c[mx_in](%[r])\n\t"
        "1:\n\t"
        "pause\n\t"
        "cmpl $0, (%[flag])\n\t"
        "je 1b\n\t"
        "stmxcsr %c[mx_out](%[r])\n\t"
        "fnstcw %c[fcw_out](%[r])\n\t"
        "fstpt %c[xout]+16(%[r])\n\t"  /* st(0) -> x87_out[1] */
        "fstpt %c[xout](%[r])\n\t"     /* st(1) -> x87_out[0] */
        "vmovdqu %%ymm0, %c[yout]+0(%[r])\n\t"
        "vmovdqu %%ymm1, %c[yout]+32(%[r])\n\t"
        "vmovdqu %%ymm2, %c[yout]+64(%[r])\n\t"
        "vmovdqu %%ymm3, %c[yout]+96(%[r])\n\t"
        "vmovdqu %%ymm4, %c[yout]+128(%[r])\n\t"
        "vmovdqu %%ymm5, %c[yout]+160(%[r])\n\t"
        "vmovdqu %%ymm6, %c[yout]+192(%[r])\n\t"
        "vmovdqu %%ymm7, %c[yout]+224(%[r])\n\t"
        "vmovdqu %%ymm8, %c[yout]+256(%[r])\n\t"
        "vmovdqu %%ymm9, %c[yout]+288(%[r])\n\t"
        "vmovdqu %%ymm10, %c[yout]+320(%[r])\n\t"
        "vmovdqu %%ymm11, %c[yout]+352(%[r])\n\t"
        "vmovdqu %%ymm12, %c[yout]+384(%[r])\n\t"
        "vmovdqu %%ymm13, %c[yout]+416(%[r])\n\t"
        "vmovdqu %%ymm14, %c[yout]+448(%[r])\n\t"
        "vmovdqu %%ymm15, %c[yout]+480(%[r])\n\t"
        "movq %%r8, %c[gout]+0(%[r])\n\t"
        "movq %%r9, %c[gout]+8(%[r])\n\t"
        "movq %%r10, %c[gout]+16(%[r])\n\t"
        "movq %%r11, %c[gout]+24(%[r])\n\t"
        "movq %%r12, %c[gout]+32(%[r])\n\t"
        "movq %%r13, %c[gout]+40(%[r])\n\t"
        "movq %%r14, %c[gout]+48(%[r])\n\t"
        "movq %%r15, %c[gout]+56(%[r])\n\t"
        "fldcw %c[fcw_orig](%[r])\n\t"
        "ldmxcsr %c[mx_orig](%[r])\n\t"
        "vzeroupper\n\t"
        :
        : [r] "r"(&R), [flag] "r"(&flag), [yin] "i"(offsetof(struct regstate, ymm_in)),
          [yout] "i"(offsetof(struct regstate, ymm_out)), [gin] "i"(offsetof(struct regstate, gpr_in)),
          [gout] "i"(offsetof(struct regstate, gpr_out)), [xin] "i"(offsetof(struct regstate, x87_in)),
          [xout] "i"(offsetof(struct regstate, x87_out)), [fcw_in] "i"(offsetof(struct regstate, fcw_in)),
          [fcw_out] "i"(offsetof(struct regstate, fcw_out)), [fcw_orig] "i"(offsetof(struct regstate, fcw_orig)),
          [mx_in] "i"(offsetof(struct regstate, mxcsr_in)), [mx_out] "i"(offsetof(struct regstate, mxcsr_out)),
          [mx_orig] "i"(offsetof(struct regstate, mxcsr_orig))
        : "memory", "cc", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "xmm0", "xmm1", "xmm2", "xmm3",
          "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static void setup(void)
{
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++)
            R.ymm_in[r][b] = (unsigned char)(0x11 * r + 7 * b + 0x20 + (b >= 16 ? 0x80 : 0)); /* upper halves differ */
    for (int i = 0; i < 8; i++)
        R.gpr_in[i] = 0x0123456789abcdefULL * (uint64_t)(i + 3) ^ ((uint64_t)(i + 8) << 56);
    /* two 80-bit values no double can hold: 64-bit mantissas with low bits set */
    static const unsigned char x0[10] = {0xbf, 0xba, 0xfe, 0xca, 0xef, 0xbe, 0xad, 0xde, 0x05, 0x40};
    static const unsigned char x1[10] = {0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0xff, 0xfe, 0xbf};
    memcpy(R.x87_in[0], x0, 10);
    memcpy(R.x87_in[1], x1, 10);
    R.fcw_in = 0x0b7f;      /* all exceptions masked, 64-bit precision, round up (default 0x037f) */
    R.mxcsr_in = 0xffc0;    /* all masked, round toward zero, FZ, DAZ (default 0x1f80) */
    memset(R.ymm_out, 0, sizeof R.ymm_out);
}

static void check(void)
{
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++)
            if (R.ymm_out[r][b] != R.ymm_in[r][b]) {
                sc_fail("ymm%d byte %d is %#x, expected %#x (%s half)", r, b, R.ymm_out[r][b], R.ymm_in[r][b],
                        b < 16 ? "xmm" : "upper");
                break;
            }
    static const char *names[8] = {"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
    for (int i = 0; i < 8; i++)
        sc_check(R.gpr_out[i] == R.gpr_in[i], "%s is %#llx, expected %#llx", names[i],
                 (unsigned long long)R.gpr_out[i], (unsigned long long)R.gpr_in[i]);
    for (int i = 0; i < 2; i++)
        sc_check(memcmp(R.x87_out[i], R.x87_in[i], 10) == 0, "x87 value %d changed", i);
    sc_check(R.fcw_out == R.fcw_in, "x87 control word %#x, expected %#x", R.fcw_out, R.fcw_in);
    sc_check(R.mxcsr_out == R.mxcsr_in, "MXCSR %#x, expected %#x", R.mxcsr_out, R.mxcsr_in);
    sc_check(R.fcw_orig == 0x037f, "x87 control word at start %#x (not the default)", R.fcw_orig);
    sc_check(R.mxcsr_orig == 0x1f80, "MXCSR at start %#x (not the default)", R.mxcsr_orig);
    sc_check(tls_value == 0x7151715171517151ULL, "TLS variable is %#llx", (unsigned long long)tls_value);
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "fpu");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        sc_die("sigaction");
    setup();
    errno = 4321;
    sc_ready();
    errno = 4321;
    spin_with_registers();
    int e = errno;
    sc_check(e == 4321, "errno (TLS) is %d, expected 4321", e);
    sc_check_common();
    check();
    sc_finish();
}
