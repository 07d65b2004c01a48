/*
 * futex_wait: threads blocked in futex waits at dump time.
 *
 *  - waiter 1: raw FUTEX_WAIT_PRIVATE on word1 (no timeout), in a loop while word1 == 0;
 *  - waiter 2: raw FUTEX_WAIT (not private) on word2 with a relative 600 s timeout, looping
 *    the same way (an interrupted timed wait may come back as EINTR: it just waits again);
 *  - waiter 3: pthread_cond_wait on a condition variable, while a predicate is 0.
 * Ready once each waiter is blocked in futex() (/proc/self/task/TID/syscall says 202, with
 * its own word as first argument for the raw ones); the main thread sleeps as usual.
 *
 * After SIGTERM: each waiter is blocked in futex() again within 5 s (same word); the main
 * thread stores a value into each word and FUTEX_WAKEs it (exactly one waiter must be woken:
 * the restored thread really waits on that word), and signals the condition variable under
 * the mutex; then it joins each waiter (pthread_timedjoin_np). Each waiter checks it saw the
 * value, that its last futex() returned 0 (it was woken, not interrupted or timed out),
 * that no futex() failed other than with EAGAIN/EINTR, and its TID.
 */
#include "scenario.h"
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>

#define NW 3

struct waiter {
    pthread_t handle;
    pid_t tid;
    volatile int started;
    int index;
    uint32_t seen;     /* the value it saw when it stopped waiting */
    int last_ret;      /* last futex()/pthread_cond_wait() result */
    int wakes;         /* futex() returned 0 */
    int interrupted;   /* EINTR */
    int again;         /* EAGAIN */
    int other_errors;
    int last_errno;
    pid_t tid_after;
};

static struct waiter W[NW];
static _Atomic uint32_t word1, word2;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint32_t pred3;

#define VALUE1 0x5eed0001u
#define VALUE2 0x5eed0002u
#define VALUE3 0x5eed0003u

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void wait_raw(struct waiter *w, _Atomic uint32_t *word, int op, int timed)
{
    uint32_t v;
    while ((v = atomic_load(word)) == 0) {
        struct timespec ts = {600, 0};
        long r = futex(word, op, 0, timed ? &ts : NULL);
        w->last_ret = (int)r;
        if (r == 0) {
            w->wakes++;
        } else {
            w->last_errno = errno;
            if (errno == EINTR)
                w->interrupted++;
            else if (errno == EAGAIN)
                w->again++;
            else
                w->other_errors++;
        }
    }
    w->seen = v;
}

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->tid = gettid_();
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* SIGTERM goes to main */
    w->started = 1;
    switch (w->index) {
    case 0:
        wait_raw(w, &word1, FUTEX_WAIT_PRIVATE, 0);
        break;
    case 1:
        wait_raw(w, &word2, FUTEX_WAIT, 1);
        break;
    case 2:
        pthread_mutex_lock(&mu);
        while (pred3 == 0) {
            int r = pthread_cond_wait(&cv, &mu);
            w->last_ret = r;
            if (r == 0)
                w->wakes++;
            else
                w->other_errors++;
        }
        w->seen = pred3;
        pthread_mutex_unlock(&mu);
        break;
    }
    w->tid_after = gettid_();
    return NULL;
}

/* The thread is blocked in futex(); for raw waiters also on the given word. */
static int in_futex(pid_t tid, const void *word)
{
    char path[96], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    ssize_t n = sc_read_file(path, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (buf[0] < '0' || buf[0] > '9' || atoi(buf) != SYS_futex)
        return 0;
    if (!word)
        return 1;
    char *sp = strchr(buf, ' ');
    return sp && strtoull(sp + 1, NULL, 16) == (unsigned long long)(uintptr_t)word;
}

static const void *word_of(int i) { return i == 0 ? (void *)&word1 : i == 1 ? (void *)&word2 : NULL; }

static int wait_in_futex(int i, int timeout_ms)
{
    int64_t deadline = sc_now_ns(CLOCK_MONOTONIC) + (int64_t)timeout_ms * 1000000;
    while (!W[i].started || !in_futex(W[i].tid, word_of(i))) {
        if (sc_now_ns(CLOCK_MONOTONIC) > deadline)
            return -1;
        sc_sleep_ms(1);
    }
    return 0;
}

int main(int argc, char **argv)
{
    sc_init(argc, argv, "futex_wait");
    sc_install_sigterm(0);
    for (int i = 0; i < NW; i++) {
        W[i].index = i;
        if (pthread_create(&W[i].handle, NULL, waiter_main, &W[i]) != 0)
            sc_die("pthread_create");
    }
    for (int i = 0; i < NW; i++)
        if (wait_in_futex(i, 10000) < 0)
            sc_die("waiter %d never blocked in futex()", i);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();

    for (int i = 0; i < NW; i++)
        sc_check(wait_in_futex(i, 5000) == 0, "waiter %d (TID %d) is not blocked in futex() on its word", i,
                 (int)W[i].tid);
    sc_check(atomic_load(&word1) == 0 && atomic_load(&word2) == 0 && pred3 == 0, "a word changed before the wake");

    atomic_store(&word1, VALUE1);
    long r1 = futex(&word1, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    sc_check(r1 == 1, "FUTEX_WAKE_PRIVATE on word1 woke %ld waiters, expected 1", r1);
    atomic_store(&word2, VALUE2);
    long r2 = futex(&word2, FUTEX_WAKE, INT_MAX, NULL);
    sc_check(r2 == 1, "FUTEX_WAKE on word2 woke %ld waiters, expected 1", r2);
    pthread_mutex_lock(&mu);
    pred3 = VALUE3;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    static const uint32_t want[NW] = {VALUE1, VALUE2, VALUE3};
    for (int i = 0; i < NW; i++) {
        int r = pthread_timedjoin_np(W[i].handle, NULL, &dl);
        if (!sc_check(r == 0, "joining waiter %d (TID %d): %s", i, (int)W[i].tid, strerror(r)))
            continue;
        struct waiter *w = &W[i];
        sc_check(w->seen == want[i], "waiter %d saw %#x, expected %#x", i, w->seen, want[i]);
        sc_check(w->last_ret == 0 && w->wakes >= 1,
                 "waiter %d was not woken by the wake: last return %d (errno %d), %d wakes", i, w->last_ret,
                 w->last_errno, w->wakes);
        sc_check(w->other_errors == 0, "waiter %d: %d unexpected futex errors (last errno %d)", i, w->other_errors,
                 w->last_errno);
        sc_check(w->tid_after == w->tid, "waiter %d: gettid() %d, was %d", i, (int)w->tid_after, (int)w->tid);
    }
    sc_finish();
}
