/* A sample long-running job for the demo: counts once every 100 ms and prints its PID and count. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct timespec tick = {0, 100 * 1000 * 1000};
    for (unsigned long count = 0;; count++) {
        printf("pid %d count %lu\n", getpid(), count);
        nanosleep(&tick, NULL);
    }
}
